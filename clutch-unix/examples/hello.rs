//! The gs-clutch README's example, in Rust: a web server answering `Worker: <id>`, run as
//! a cluster of one worker per CPU.
//!
//! ```sh
//! cargo run --release --example hello      # then: curl http://localhost:5000/
//! ```
//!
//! `PORT` (default 5000), `HOST` (default 0.0.0.0) and `WORKERS` (default: the number of
//! CPUs; 0 runs the server in-process) come from the environment, and `CONTROL`, a path
//! for the control socket (`clutch status|reload|upgrade --control PATH`). Ctrl-C (or SIGTERM)
//! shuts everything down: each worker stops accepting, answers every request it has
//! received (with `connection: close`), closes keep-alive connections once they are idle,
//! and exits; the master exits once every worker is gone.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clutch_unix::{Cluster, Log, Role, Shutdown, Worker};
use rustix::event::{poll, PollFd, PollFlags};

fn main() {
    if let Err(error) = run() {
        // `{:#}`: a clutch error with its whole chain of causes, each said once.
        eprintln!("hello: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".to_owned());
    let mut cluster = Cluster::builder();
    cluster.listen(format!("{host}:{port}")).log(Log::Stderr);
    if let Ok(workers) = std::env::var("WORKERS") {
        let workers = workers
            .parse()
            .map_err(|_| format!("WORKERS={workers:?} is not a number"))?;
        cluster.workers(workers);
    }
    if let Some(path) = std::env::var_os("CONTROL") {
        cluster.control(std::path::PathBuf::from(path));
    }
    match cluster.start()? {
        Role::Master(master) => master.run_and_exit(),
        Role::Worker(worker) => Ok(serve(worker)?),
    }
}

/// One worker: accept until shutdown (watching the listener and the shutdown notice in
/// one `poll`), each connection on a thread of its own ([`Threads`]), then wait for the
/// requests in flight.
fn serve(mut worker: Worker) -> io::Result<()> {
    let listener: TcpListener = worker
        .take_tcp_listener()
        .ok_or_else(|| io::Error::other("no TCP listener was passed to this worker"))?;
    // Non-blocking: another worker may take a connection we were woken for.
    listener.set_nonblocking(true)?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    worker.ready().map_err(io::Error::other)?;
    let shutdown = worker.shutdown().clone();
    let mut threads = Threads::new(worker.id(), shutdown.clone(), in_flight.clone());
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&shutdown, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                threads.run(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => eprintln!("hello: accept: {e}"),
        }
    }
    drop(listener); // our copy of the socket; the master still holds it for new workers
    threads.finish();
    while in_flight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The threads that answer connections, one connection each at a time. A thread that is
/// idle takes the next connection; a new one starts only when none is (a keep-alive
/// connection holds its thread for as long as it lasts). Starting a thread costs more
/// than answering a request whose connection then closes, so threads are kept, until one
/// has been idle for [`THREAD_IDLE`].
struct Threads {
    id: u64,
    shutdown: Shutdown,
    /// Connections being answered (or handed over and about to be).
    in_flight: Arc<AtomicUsize>,
    /// Threads waiting for a connection that none has been handed to yet: a connection
    /// is handed over only after one of them has been claimed (decremented), so every
    /// connection sent finds a thread that will take it.
    idle: Arc<AtomicUsize>,
    handover: Option<mpsc::Sender<TcpStream>>,
    waiting: Arc<Mutex<mpsc::Receiver<TcpStream>>>,
}

/// How long a thread waits for a next connection before it ends.
const THREAD_IDLE: Duration = Duration::from_secs(30);

impl Threads {
    fn new(id: u64, shutdown: Shutdown, in_flight: Arc<AtomicUsize>) -> Self {
        let (handover, waiting) = mpsc::channel();
        Self {
            id,
            shutdown,
            in_flight,
            idle: Arc::new(AtomicUsize::new(0)),
            handover: Some(handover),
            waiting: Arc::new(Mutex::new(waiting)),
        }
    }

    /// Answers `stream` on an idle thread, or on a new one.
    fn run(&mut self, stream: TcpStream) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            if let Some(handover) = &self.handover {
                let _ = handover.send(stream);
            }
            return;
        }
        let (id, shutdown) = (self.id, self.shutdown.clone());
        let (in_flight, idle, waiting) = (
            self.in_flight.clone(),
            self.idle.clone(),
            self.waiting.clone(),
        );
        std::thread::spawn(move || {
            let mut next = Some(stream);
            loop {
                if let Some(stream) = next.take() {
                    let _ = handle(stream, id, &shutdown);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    idle.fetch_add(1, Ordering::SeqCst);
                }
                let received = match waiting.lock() {
                    Ok(waiting) => waiting.recv_timeout(THREAD_IDLE),
                    Err(_) => return, // another thread panicked holding it
                };
                match received {
                    Ok(stream) => next = Some(stream),
                    Err(RecvTimeoutError::Timeout) => {
                        // Leave, unless every idle thread has been claimed: then a
                        // connection is on its way, and this thread is needed for it.
                        let left = idle
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                        if left.is_ok() {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    }

    /// No more connections: the idle threads end.
    fn finish(&mut self) {
        self.handover = None;
    }
}

/// How long a keep-alive connection that is idle when shutdown begins stays open for one
/// more request. HTTP/1.1 cannot tell a client "send nothing more", so closing an idle
/// connection races a client that is about to reuse it: its request meets a closed
/// socket. A client that has just read an answer sends its next request within
/// microseconds, unless it was descheduled; this grace covers that, and costs a worker's
/// exit at most this long only for connections that really sit idle.
const SHUTDOWN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// Answers every request on the connection with `Worker: <id>` (HTTP/1.1 keep-alive).
/// Once shutdown begins, every request already received — read, or waiting in the
/// socket — is answered with `connection: close`; only a connection idle between
/// requests (nothing of a next request received for [`SHUTDOWN_IDLE_GRACE`]) is closed.
fn handle(stream: TcpStream, id: u64, shutdown: &Shutdown) -> io::Result<()> {
    // Idle keep-alive connections wake up now and then to notice a shutdown.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let body = format!("Worker: {id}");
    // Bytes of the request being read. A read that times out keeps what it had read
    // (`read_until` appends before it fails), so a request that arrives in pieces is
    // never cut.
    let mut line = Vec::new();
    // When this connection was first seen idle after shutdown began.
    let mut idle_since_shutdown: Option<Instant> = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) && line.is_empty() => {
                if !shutdown.is_requested() {
                    continue;
                }
                let since = *idle_since_shutdown.get_or_insert_with(Instant::now);
                if since.elapsed() >= SHUTDOWN_IDLE_GRACE && !request_waiting(&reader)? {
                    return Ok(());
                }
                continue;
            }
            Err(e) if is_timeout(&e) => {
                // Part of a request line: wait for the rest.
                read_rest_of_line(&mut reader, &mut line)?;
            }
            Err(e) => return Err(e),
        }
        if !line.ends_with(b"\n") {
            return Ok(()); // the client closed in the middle of a request line
        }
        let http10 = line.trim_ascii_end().ends_with(b"HTTP/1.0");
        let mut keep_alive = !http10;
        loop {
            line.clear();
            read_rest_of_line(&mut reader, &mut line)?;
            if !line.ends_with(b"\n") {
                return Ok(()); // closed in the middle of the headers
            }
            let header = line.trim_ascii().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            match &header[..] {
                b"connection: close" => keep_alive = false,
                b"connection: keep-alive" if http10 => keep_alive = true,
                _ => {}
            }
        }
        keep_alive &= !shutdown.is_requested();
        let connection = if keep_alive { "keep-alive" } else { "close" };
        // One buffer, one write: `write!` straight onto the socket would send the
        // response in pieces, and Nagle's algorithm would hold each tail until the
        // client's delayed ACK (~40 ms per keep-alive request).
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes())?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Reads up to and including the next `\n` (appending to `line`), waiting through read
/// timeouts; stops short only at end of stream.
fn read_rest_of_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> io::Result<()> {
    while !line.ends_with(b"\n") {
        match reader.read_until(b'\n', line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// True when bytes of a next request have arrived (buffered, or in the socket), so the
/// connection is not idle and must not be closed under the client.
fn request_waiting(reader: &BufReader<TcpStream>) -> io::Result<bool> {
    if !reader.buffer().is_empty() {
        return Ok(true);
    }
    let stream = reader.get_ref();
    stream.set_nonblocking(true)?;
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(n) => Ok(n > 0), // 0: the client closed; nothing to answer
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
