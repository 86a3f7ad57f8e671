//! The master's side of the control channel (the protocol is in [`crate::control`]).
//! Every client is non-blocking and bounded, so none can stall the event loop.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::control::{
    self, Request, RequestError, Response, MAX_CLIENTS, MAX_REQUEST, MAX_SUBSCRIBERS,
    MAX_SUBSCRIBER_BACKLOG, REQUEST_TIMEOUT,
};

/// Connections accepted in one turn of the event loop; more wait for the next turn.
pub(crate) const ACCEPTS_PER_TURN: usize = 16;
use crate::engine::{write_queued, Queue};
use crate::os::listen::{self, ListenAddr, ListenOptions, SocketFile, StdListener};
use crate::Error;

/// What a client is waiting for after its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Its request line.
    Request,
    /// Its request is being carried out; the driver answers or makes it wait.
    Handling,
    /// The end of the rollout of at least this generation.
    Reload { generation: u64 },
    /// The master's exit.
    Stop,
    /// The end of the upgrade under way (the handover, or its failure).
    Upgrade,
    /// Nothing: it subscribed to the events ([`ControlServer::publish`]), until it
    /// closes, is too slow, or the master exits.
    Events,
    /// Nothing: its answer is being written, then it is closed.
    Closing,
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    waiting: Waiting,
    /// When the client is dropped. It covers the whole exchange (sending the request,
    /// reading the answer: [`REQUEST_TIMEOUT`] each) and is lifted only while the client
    /// waits for the master itself (a rollout, the exit).
    deadline: Option<Instant>,
}

/// The listening control socket and its clients.
pub(crate) struct ControlServer {
    listener: UnixListener,
    /// The socket file, removed when the server is dropped (if it is still ours).
    _file: Option<SocketFile>,
    clients: HashMap<usize, Client>,
    next_client: usize,
    token_base: usize,
    /// Connections are accepted (until an upgrade hands the socket over).
    accepting: bool,
    /// Adopted from the master that started this one (an upgrade), whose pid this is:
    /// the socket file is this process's to remove only once that master is gone.
    adopted_from: Option<u32>,
}

impl ControlServer {
    /// Creates the socket at `path`, mode 0600; replaces a stale socket file, refuses a
    /// live one or a non-socket.
    pub(crate) fn bind(path: &Path) -> Result<Self, Error> {
        let addr = ListenAddr::Unix(path.to_owned());
        // Created 0600 from the start (no window where others could connect).
        let old_umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = listen::bind(
            &addr,
            &ListenOptions {
                unix_mode: Some(0o600),
                ..ListenOptions::default()
            },
        );
        rustix::process::umask(old_umask);
        let listener = bound.map_err(Error::Control)?;
        let (StdListener::Unix(listener), file) = listener.into_std_and_file() else {
            unreachable!("a unix address binds a unix socket")
        };
        listener.set_nonblocking(true).map_err(|e| {
            Error::io(
                format!("setting up the control socket {}", path.display()),
                e,
            )
        })?;
        Ok(Self {
            listener: UnixListener::from_std(listener),
            _file: file,
            clients: HashMap::new(),
            next_client: 0,
            token_base: 0,
            accepting: true,
            adopted_from: None,
        })
    }

    /// The control socket an upgrade's old master (process `predecessor`) handed over
    /// (named `clutch-control` in `LISTEN_FDNAMES`),
    /// bound at `path`. Both masters accept on it until the handover.
    pub(crate) fn adopt(
        listener: crate::os::listen::Listener,
        path: &Path,
        predecessor: Option<u32>,
    ) -> Result<Self, Error> {
        let (StdListener::Unix(listener), _) = listener.into_std_and_file() else {
            return Err(Error::io(
                format!("adopting the control socket {}", path.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "not a unix socket"),
            ));
        };
        listener.set_nonblocking(true).map_err(|e| {
            Error::io(
                format!("setting up the control socket {}", path.display()),
                e,
            )
        })?;
        Ok(Self {
            listener: UnixListener::from_std(listener),
            _file: SocketFile::adopted(path).ok(),
            clients: HashMap::new(),
            next_client: 0,
            token_base: 0,
            accepting: true,
            adopted_from: predecessor,
        })
    }

    /// The listening socket, to hand to an upgrade's new master.
    pub(crate) fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.listener.as_fd()
    }

    /// An upgrade handed over: the new master accepts from now on. The socket file
    /// stays (it is the new master's); the clients here are still answered.
    pub(crate) fn stop_accepting(&mut self, registry: &Registry) {
        self.accepting = false;
        let _ = registry.deregister(&mut self.listener);
        if let Some(file) = self._file.take() {
            file.keep();
        }
    }

    /// Makes client `number` an event subscriber (answered `subscribed`), unless there
    /// are [`MAX_SUBSCRIBERS`] already (answered with an error).
    pub(crate) fn subscribe(&mut self, registry: &Registry, number: usize) {
        if self.subscribers() >= MAX_SUBSCRIBERS {
            let refusal = Response::failed(format!(
                "too many event subscribers ({MAX_SUBSCRIBERS} at once); try again later"
            ));
            self.answer(registry, number, &refusal);
            return;
        }
        let Some(client) = self.clients.get_mut(&number) else {
            return;
        };
        client
            .output
            .extend_from_slice(Response::Subscribed.to_line().as_bytes());
        client.output.push(b'\n');
        client.waiting = Waiting::Events;
        client.deadline = None;
        tracing::debug!("control client subscribed to the events");
        self.flush(registry, number);
    }

    fn subscribers(&self) -> usize {
        self.clients
            .values()
            .filter(|c| c.waiting == Waiting::Events)
            .count()
    }

    /// Whether anyone subscribes to the events (only then are their lines made).
    pub(crate) fn has_subscribers(&self) -> bool {
        self.clients.values().any(|c| c.waiting == Waiting::Events)
    }

    /// Queues `lines` (whole lines) to every subscriber and writes what its socket
    /// takes now. A subscriber that would be left with more than
    /// [`MAX_SUBSCRIBER_BACKLOG`] bytes unwritten is dropped instead: its stream ends
    /// after the line under way with an error line, written as far as it reads, and
    /// it is closed then (or after [`REQUEST_TIMEOUT`]).
    pub(crate) fn publish(&mut self, registry: &Registry, lines: &[u8]) {
        let numbers: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting == Waiting::Events)
            .map(|(&n, _)| n)
            .collect();
        for number in numbers {
            let client = self.clients.get_mut(&number).expect("a subscriber");
            if client.output.len() + lines.len() <= MAX_SUBSCRIBER_BACKLOG {
                client.output.extend_from_slice(lines);
            } else {
                // The first line may be partly written: keep it whole, drop the rest.
                let end = client
                    .output
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                client.output.truncate(end);
                let farewell = Response::failed(format!(
                    "dropped: too slow (more than {} KiB of events unread)",
                    MAX_SUBSCRIBER_BACKLOG / 1024
                ));
                client
                    .output
                    .extend_from_slice(farewell.to_line().as_bytes());
                client.output.push(b'\n');
                client.waiting = Waiting::Closing;
                client.deadline = Some(Instant::now() + REQUEST_TIMEOUT);
                tracing::warn!(
                    "event subscriber too slow (more than {} KiB of events unread): dropped",
                    MAX_SUBSCRIBER_BACKLOG / 1024
                );
            }
            self.flush(registry, number);
        }
    }

    /// Answers every client waiting for the upgrade's end.
    pub(crate) fn upgrade_ended(&mut self, registry: &Registry, answer: &Response) {
        let numbers: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting == Waiting::Upgrade)
            .map(|(&n, _)| n)
            .collect();
        for number in numbers {
            self.answer(registry, number, answer);
        }
    }

    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        listener: Token,
        clients_from: usize,
    ) -> io::Result<()> {
        self.token_base = clients_from;
        registry.register(&mut self.listener, listener, Interest::READABLE)
    }

    /// Whether `token` belongs to a client of this server; its client number if so.
    pub(crate) fn client_of(&self, token: Token) -> Option<usize> {
        token.0.checked_sub(self.token_base)
    }

    /// Accepts pending connections, at most [`ACCEPTS_PER_TURN`]; returns whether more
    /// may be waiting (then call again in the next turn: the listener is edge-triggered).
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) -> bool {
        if !self.accepting {
            return false;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        // Best effort: a short answer on a fresh socket fits its buffer.
                        let busy = Response::Busy.to_line();
                        let _ = stream.write_all(format!("{busy}\n").as_bytes());
                        continue;
                    }
                    let number = self.next_client;
                    self.next_client += 1;
                    let token = Token(self.token_base + number);
                    if let Err(e) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("watching a control client: {e}");
                        continue;
                    }
                    let deadline = Some(now + REQUEST_TIMEOUT);
                    self.clients.insert(
                        number,
                        Client {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            waiting: Waiting::Request,
                            deadline,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accepting a control client: {e}");
                    return false;
                }
            }
        }
        true
    }

    /// The client became readable or writable: read its request if it is complete
    /// (returned for the driver to carry out), flush its answer, close it when done.
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        number: usize,
    ) -> Option<Result<Request, RequestError>> {
        let client = self.clients.get_mut(&number)?;
        let mut request = None;
        let mut closed = false;
        if client.waiting == Waiting::Request {
            let mut chunk = [0u8; 1024];
            loop {
                match client.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        client.input.extend_from_slice(&chunk[..n]);
                        if let Some(end) = client.input.iter().position(|&b| b == b'\n') {
                            request = Some(control::parse_request(&client.input[..end]));
                            break;
                        }
                        if client.input.len() > MAX_REQUEST {
                            request = Some(Err(RequestError::TooLong));
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if request.is_some() {
                client.waiting = Waiting::Handling;
            }
        }
        if client.waiting == Waiting::Events {
            // A subscriber says nothing after its request: its close (or anything it
            // sends) ends the subscription.
            let mut chunk = [0u8; 64];
            match client.stream.read(&mut chunk) {
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                _ => closed = true,
            }
        }
        if closed && request.is_none() {
            self.drop_client(registry, number);
            return None;
        }
        self.flush(registry, number);
        request
    }

    /// Queues `answer` (one line) for client `number`; it is closed once written unless it
    /// is told to wait.
    pub(crate) fn answer(&mut self, registry: &Registry, number: usize, answer: &Response) {
        let Some(client) = self.clients.get_mut(&number) else {
            return;
        };
        client.output.extend_from_slice(answer.to_line().as_bytes());
        client.output.push(b'\n');
        client.waiting = Waiting::Closing;
        if client.deadline.is_none() {
            // It waited for the master; now it has as long to read as it had to ask.
            client.deadline = Some(Instant::now() + REQUEST_TIMEOUT);
        }
        self.flush(registry, number);
    }

    /// Keeps client `number` open until `waiting` resolves.
    pub(crate) fn wait(&mut self, number: usize, waiting: Waiting) {
        if let Some(client) = self.clients.get_mut(&number) {
            client.waiting = waiting;
            client.deadline = None;
        }
    }

    /// Answers every client waiting for a rollout that `generation` ends.
    pub(crate) fn reload_ended(&mut self, registry: &Registry, generation: u64, answer: &Response) {
        let numbers: Vec<usize> = self
            .clients
            .iter()
            .filter(
                |(_, c)| matches!(c.waiting, Waiting::Reload { generation: g } if g <= generation),
            )
            .map(|(&n, _)| n)
            .collect();
        for number in numbers {
            self.answer(registry, number, answer);
        }
    }

    /// The master is exiting with `code`: answer everyone still waiting, as well as a
    /// non-blocking socket allows.
    pub(crate) fn exiting(&mut self, registry: &Registry, code: u8, reason: &str) {
        if let Some(predecessor) = self.adopted_from {
            // A new master whose upgrade failed: the old master still owns the file.
            if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
                == Some(predecessor)
            {
                if let Some(file) = self._file.take() {
                    file.keep();
                }
            }
        }
        let numbers: Vec<usize> = self.clients.keys().copied().collect();
        for number in numbers {
            let answer = match self.clients[&number].waiting {
                Waiting::Stop => Response::Stopping {
                    exit_code: code,
                    reason: reason.to_owned(),
                },
                Waiting::Reload { .. } | Waiting::Upgrade => {
                    Response::failed("the master is exiting")
                }
                Waiting::Events => {
                    // Its last events are queued: it is closed once they are written
                    // (or when this process exits).
                    let client = self.clients.get_mut(&number).expect("a client");
                    client.waiting = Waiting::Closing;
                    self.flush(registry, number);
                    continue;
                }
                Waiting::Request | Waiting::Handling | Waiting::Closing => continue,
            };
            self.answer(registry, number, &answer);
        }
    }

    /// The earliest request deadline of a client.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.clients.values().filter_map(|c| c.deadline).min()
    }

    /// Drops clients that did not send their request, or read their answer, in time.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&n, _)| n)
            .collect();
        for number in late {
            tracing::debug!(
                "control client too slow (no request, or its answer not read): dropped"
            );
            self.drop_client(registry, number);
        }
    }

    fn flush(&mut self, registry: &Registry, number: usize) {
        let Some(client) = self.clients.get_mut(&number) else {
            return;
        };
        match write_queued(&mut client.output, |bytes| client.stream.write(bytes)) {
            Queue::Pending => {}
            Queue::Written if client.waiting != Waiting::Closing => {}
            Queue::Written | Queue::Broken => self.drop_client(registry, number),
        }
    }

    fn drop_client(&mut self, registry: &Registry, number: usize) {
        if let Some(mut client) = self.clients.remove(&number) {
            let _ = registry.deregister(&mut client.stream);
        }
    }

    /// Last-chance flush before the process exits: wait a little for slow readers.
    pub(crate) fn flush_all_blocking(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        for client in self.clients.values_mut() {
            while !client.output.is_empty() && Instant::now() < deadline {
                match client.stream.write(&client.output) {
                    Ok(n) if n > 0 => {
                        client.output.drain(..n);
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
