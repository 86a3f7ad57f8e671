//! The master's `/metrics` endpoint (`--metrics ADDR`): a small HTTP/1.x server in the
//! master's own event loop, outside the workers' data path. The exposition itself is
//! [`crate::metrics`]; this module only speaks HTTP.
//!
//! Every connection is non-blocking and bounded, so no scraper can stall the loop: one
//! request per connection (a `GET` or `HEAD` of `/metrics`), its head at most
//! [`MAX_REQUEST`] bytes, the whole exchange within [`DEADLINE`], at most
//! [`MAX_CONNECTIONS`] at once (more are answered `503` and closed). The answer is
//! buffered per connection and written as the socket takes it; then the connection is
//! closed (`Connection: close`), after reading what the client still sends, so that an
//! early answer (`400`, `431`) is not lost to a reset.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` (`HEAD`: the same without the body) | `200`, Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it |
//! | another path | `404` |
//! | another method | `405`, with `Allow: GET, HEAD` |
//! | not HTTP/1.x | `400` |
//! | a head over [`MAX_REQUEST`] bytes | `431` |

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::engine::{write_queued, Queue};
use crate::metrics::MetricsFormat;
use crate::os::listen::{self, ListenAddr, ListenOptions, Listener, SocketFile, StdListener};
use crate::Error;

/// The longest request head accepted (request line and headers).
pub(crate) const MAX_REQUEST: usize = 8192;
/// How long one connection may take: sending its request and reading the answer.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered `503` and closed.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Connections accepted in one turn of the event loop; more wait for the next turn.
pub(crate) const ACCEPTS_PER_TURN: usize = 16;
/// The descriptors the server holds at most: its listener and its connections (for the
/// open-files check, `os/rlimit.rs`).
pub(crate) const FDS: u64 = 1 + MAX_CONNECTIONS as u64;

/// A request head, as far as it has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not all there yet.
    Incomplete,
    /// A scrape: answer with the metrics in `format`; `head`: without the body.
    Scrape { format: MetricsFormat, head: bool },
    /// Anything else, answered with this status and no metrics.
    Refuse(Refusal),
}

/// Why a request gets no metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    TooLarge,
}

impl Refusal {
    fn status(self) -> (u16, &'static str, &'static str) {
        match self {
            Self::BadRequest => (400, "Bad Request", "not an HTTP/1.x request\n"),
            Self::NotFound => (404, "Not Found", "not found: the metrics are at /metrics\n"),
            Self::MethodNotAllowed => (405, "Method Not Allowed", "only GET and HEAD\n"),
            Self::TooLarge => (
                431,
                "Request Header Fields Too Large",
                "request head over 8 KiB\n",
            ),
        }
    }
}

/// Reads a request head (outside input: never panics).
pub(crate) fn parse_request(input: &[u8]) -> Parsed {
    let end = find(input, b"\r\n\r\n").or_else(|| find(input, b"\n\n"));
    let Some(end) = end else {
        return if input.len() > MAX_REQUEST {
            Parsed::Refuse(Refusal::TooLarge)
        } else {
            Parsed::Incomplete
        };
    };
    if end > MAX_REQUEST {
        return Parsed::Refuse(Refusal::TooLarge);
    }
    let Ok(head) = std::str::from_utf8(&input[..end]) else {
        return Parsed::Refuse(Refusal::BadRequest);
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Refuse(Refusal::BadRequest);
    };
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method)
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
    {
        return Parsed::Refuse(Refusal::BadRequest);
    }
    let mut accept = String::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Refuse(Refusal::BadRequest);
        };
        if !is_token(name) {
            return Parsed::Refuse(Refusal::BadRequest);
        }
        if name.eq_ignore_ascii_case("accept") {
            if !accept.is_empty() {
                accept.push(',');
            }
            accept.push_str(value.trim());
        }
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::Refuse(Refusal::MethodNotAllowed),
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path != "/metrics" {
        return Parsed::Refuse(Refusal::NotFound);
    }
    Parsed::Scrape {
        format: MetricsFormat::from_accept(&accept),
        head,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A whole HTTP/1.1 answer that closes the connection.
fn response(
    status: (u16, &str),
    content_type: &str,
    extra: &str,
    body: &[u8],
    head: bool,
) -> Vec<u8> {
    let (code, reason) = status;
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let (code, reason, body) = refusal.status();
    let extra = if refusal == Refusal::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    response(
        (code, reason),
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        false,
    )
}

enum Socket {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Self::Tcp(s) => s,
            Self::Unix(s) => s,
        }
    }

    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buffer),
            Self::Unix(s) => s.read(buffer),
        }
    }

    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buffer),
            Self::Unix(s) => s.write(buffer),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading the request head.
    Request,
    /// A scrape: the driver writes the metrics (`answer`).
    Scrape,
    /// Writing the answer.
    Answering,
    /// The answer is written and the write side shut: reading what the client still
    /// sends until it closes (or the deadline).
    Lingering,
}

struct Connection {
    stream: Stream,
    input: Vec<u8>,
    output: Vec<u8>,
    stage: Stage,
    deadline: Instant,
}

/// The metrics listener and its connections.
pub(crate) struct MetricsServer {
    socket: Socket,
    /// A unix socket file, removed when the server is dropped (if it is still ours).
    file: Option<SocketFile>,
    /// What it is bound to (the real port for `:0`), for `status` and the log.
    addr: String,
    connections: HashMap<usize, Connection>,
    next: usize,
    token_base: usize,
    accepting: bool,
}

impl MetricsServer {
    /// Binds `addr` (TCP, or `unix:PATH`).
    pub(crate) fn bind(addr: &ListenAddr) -> Result<Self, Error> {
        let listener = listen::bind(addr, &ListenOptions::default()).map_err(Error::Metrics)?;
        Self::from_listener(listener)
    }

    /// The metrics socket an upgrade's old master handed over
    /// ([`METRICS_FD_NAME`](crate::engine::driver::upgrade::METRICS_FD_NAME)): both
    /// masters accept on it until the handover.
    pub(crate) fn adopt(listener: Listener) -> Result<Self, Error> {
        let mut server = Self::from_listener(listener)?;
        // A unix socket file stays the old master's until it is gone.
        if let Some(file) = server.file.take() {
            file.keep();
        }
        Ok(server)
    }

    fn from_listener(listener: Listener) -> Result<Self, Error> {
        let addr = listener.local_addr().to_string();
        let setup = |e| Error::io(format!("setting up the metrics socket {addr}"), e);
        let (socket, file) = match listener.into_std_and_file() {
            (StdListener::Tcp(l), file) => {
                l.set_nonblocking(true).map_err(setup)?;
                (Socket::Tcp(mio::net::TcpListener::from_std(l)), file)
            }
            (StdListener::Unix(l), file) => {
                l.set_nonblocking(true).map_err(setup)?;
                (Socket::Unix(mio::net::UnixListener::from_std(l)), file)
            }
        };
        Ok(Self {
            socket,
            file,
            addr,
            connections: HashMap::new(),
            next: 0,
            token_base: 0,
            accepting: true,
        })
    }

    /// Where it listens: `127.0.0.1:9100`, `unix:/run/metrics.sock`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The listening socket, to hand to an upgrade's new master.
    pub(crate) fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match &self.socket {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }

    /// An upgrade handed over: the new master accepts from now on (the connections here
    /// are still answered; a socket file is the new master's now).
    pub(crate) fn stop_accepting(&mut self, registry: &Registry) {
        self.accepting = false;
        let _ = match &mut self.socket {
            Socket::Tcp(l) => registry.deregister(l),
            Socket::Unix(l) => registry.deregister(l),
        };
        if let Some(file) = self.file.take() {
            file.keep();
        }
    }

    /// Watches the listener as `listener`; connection `n` gets token `connections_from + n`.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        listener: Token,
        connections_from: usize,
    ) -> io::Result<()> {
        self.token_base = connections_from;
        match &mut self.socket {
            Socket::Tcp(l) => registry.register(l, listener, Interest::READABLE),
            Socket::Unix(l) => registry.register(l, listener, Interest::READABLE),
        }
    }

    /// The connection `token` belongs to, if it is one of this server's.
    pub(crate) fn connection_of(&self, token: Token) -> Option<usize> {
        token.0.checked_sub(self.token_base)
    }

    /// Accepts pending connections, at most [`ACCEPTS_PER_TURN`]; returns whether more
    /// may be waiting (the listener is edge-triggered: call again next turn).
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) -> bool {
        if !self.accepting {
            return false;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let accepted = match &self.socket {
                Socket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Socket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            match accepted {
                Ok(mut stream) => {
                    if self.connections.len() >= MAX_CONNECTIONS {
                        // Best effort: a short answer on a fresh socket fits its buffer.
                        let busy = response(
                            (503, "Service Unavailable"),
                            "text/plain; charset=utf-8",
                            "Retry-After: 1\r\n",
                            b"too many metrics connections\n",
                            false,
                        );
                        // What the client already sent is read first: closing on unread
                        // data would reset the connection, and the answer with it.
                        let _ = stream.read(&mut [0u8; 4096]);
                        let _ = stream.write(&busy);
                        stream.shutdown_write();
                        tracing::debug!(
                            "metrics: {MAX_CONNECTIONS} connections already: one refused"
                        );
                        continue;
                    }
                    let number = self.next;
                    self.next += 1;
                    let token = Token(self.token_base + number);
                    if let Err(e) = registry.register(
                        stream.source(),
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("watching a metrics connection: {e}");
                        continue;
                    }
                    self.connections.insert(
                        number,
                        Connection {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            stage: Stage::Request,
                            deadline: now + DEADLINE,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(addr = %self.addr, "accepting a metrics connection: {e}");
                    return false;
                }
            }
        }
        true
    }

    /// Connection `number` became readable or writable: reads its request, writes its
    /// answer, closes it when done. Returns the format a complete scrape asks for (and
    /// whether it is a `HEAD`): the driver then calls [`answer`](Self::answer).
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        number: usize,
    ) -> Option<(MetricsFormat, bool)> {
        let connection = self.connections.get_mut(&number)?;
        let mut closed = false;
        let mut scrape = None;
        if matches!(connection.stage, Stage::Request | Stage::Lingering) {
            let mut chunk = [0u8; 4096];
            loop {
                match connection.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) if connection.stage == Stage::Lingering => {
                        let _ = n; // what comes after the answer is not read
                    }
                    Ok(n) => {
                        connection.input.extend_from_slice(&chunk[..n]);
                        match parse_request(&connection.input) {
                            Parsed::Incomplete => continue,
                            Parsed::Scrape { format, head } => {
                                connection.stage = Stage::Scrape;
                                scrape = Some((format, head));
                            }
                            Parsed::Refuse(refusal) => {
                                tracing::debug!(?refusal, "metrics: request refused");
                                connection.output = refusal_response(refusal);
                                connection.stage = Stage::Answering;
                            }
                        }
                        connection.input = Vec::new();
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed && connection.stage == Stage::Request && !connection.input.is_empty() {
            // It stopped sending halfway through a head: it may still read the answer.
            connection.output = refusal_response(Refusal::BadRequest);
            connection.stage = Stage::Answering;
        }
        let stage = connection.stage;
        if closed && matches!(stage, Stage::Request | Stage::Lingering) {
            self.close(registry, number);
            return None;
        }
        if stage == Stage::Answering {
            self.flush(registry, number);
        }
        scrape
    }

    /// Queues `body`, the metrics in `format`, as connection `number`'s answer (`head`:
    /// the headers only).
    pub(crate) fn answer(
        &mut self,
        registry: &Registry,
        number: usize,
        format: MetricsFormat,
        head: bool,
        body: &str,
    ) {
        let Some(connection) = self.connections.get_mut(&number) else {
            return;
        };
        connection.output = response(
            (200, "OK"),
            format.content_type(),
            "",
            body.as_bytes(),
            head,
        );
        connection.stage = Stage::Answering;
        self.flush(registry, number);
    }

    /// The earliest deadline of a connection.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.connections.values().map(|c| c.deadline).min()
    }

    /// Drops the connections past their deadline.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(&n, _)| n)
            .collect();
        for number in late {
            if self.connections[&number].stage != Stage::Lingering {
                tracing::debug!("metrics connection too slow (its request or its answer): dropped");
            }
            self.close(registry, number);
        }
    }

    fn flush(&mut self, registry: &Registry, number: usize) {
        let Some(connection) = self.connections.get_mut(&number) else {
            return;
        };
        match write_queued(&mut connection.output, |bytes| {
            connection.stream.write(bytes)
        }) {
            Queue::Pending => {}
            Queue::Broken => self.close(registry, number),
            Queue::Written => {
                // Written: say so with a FIN, then read what is left until the client closes.
                connection.output = Vec::new();
                connection.stream.shutdown_write();
                connection.stage = Stage::Lingering;
                // Whatever is already waiting, and the client's close, are read now or on
                // the next readiness.
                let _ = self.ready(registry, number);
            }
        }
    }

    fn close(&mut self, registry: &Registry, number: usize) {
        if let Some(mut connection) = self.connections.remove(&number) {
            let _ = registry.deregister(connection.stream.source());
        }
    }

    /// Connections open now (for tests and the log).
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        self.connections.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_are_gets_and_heads_of_metrics() {
        let get = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            parse_request(get),
            Parsed::Scrape {
                format: MetricsFormat::Prometheus,
                head: false
            }
        );
        let om =
            b"HEAD /metrics?x=1 HTTP/1.0\nAccept: application/openmetrics-text; version=1.0.0\n\n";
        assert_eq!(
            parse_request(om),
            Parsed::Scrape {
                format: MetricsFormat::OpenMetrics,
                head: true
            }
        );
    }

    #[test]
    fn everything_else_is_refused_with_its_status() {
        for (request, expected) in [
            (
                &b"GET / HTTP/1.1\r\n\r\n"[..],
                Parsed::Refuse(Refusal::NotFound),
            ),
            (
                b"GET /metrics/x HTTP/1.1\r\n\r\n",
                Parsed::Refuse(Refusal::NotFound),
            ),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                Parsed::Refuse(Refusal::MethodNotAllowed),
            ),
            (b"hello\r\n\r\n", Parsed::Refuse(Refusal::BadRequest)),
            (
                b"GET /metrics HTTP/2.0\r\n\r\n",
                Parsed::Refuse(Refusal::BadRequest),
            ),
            (
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                Parsed::Refuse(Refusal::BadRequest),
            ),
            (
                b"GET metrics HTTP/1.1\r\n\r\n",
                Parsed::Refuse(Refusal::BadRequest),
            ),
            (
                b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
                Parsed::Refuse(Refusal::BadRequest),
            ),
            (
                b"GET /metrics HTTP/1.1\r\n\xff: x\r\n\r\n",
                Parsed::Refuse(Refusal::BadRequest),
            ),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Parsed::Incomplete),
            (b"", Parsed::Incomplete),
        ] {
            assert_eq!(
                parse_request(request),
                expected,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(parse_request(&big), Parsed::Refuse(Refusal::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Parsed::Refuse(Refusal::TooLarge));
    }

    #[test]
    fn answers_close_and_say_their_length() {
        let text = String::from_utf8(refusal_response(Refusal::MethodNotAllowed)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nonly GET and HEAD\n"), "{text}");
        let head = response((200, "OK"), "text/plain", "", b"12345", true);
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("Content-Length: 5\r\n") && head.ends_with("\r\n\r\n"));
    }

    /// A real socket: a scrape in two pieces, answered; a silent client dropped at the
    /// deadline; the connections beyond the bound refused.
    #[test]
    fn a_server_answers_bounds_and_expires_its_connections() {
        let addr = ListenAddr::parse("127.0.0.1:0").unwrap();
        let mut server = MetricsServer::bind(&addr).unwrap();
        let poll = mio::Poll::new().unwrap();
        server.register(poll.registry(), Token(0), 1).unwrap();
        let port: u16 = server.addr().rsplit(':').next().unwrap().parse().unwrap();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        while server.connections() < 2 {
            assert!(Instant::now() < deadline);
            server.accept(poll.registry(), now);
        }
        client.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let numbers: Vec<usize> = server.connections.keys().copied().collect();
        let mut scrape = None;
        client.write_all(b"\r\n").unwrap();
        while scrape.is_none() {
            assert!(Instant::now() < deadline);
            for &n in &numbers {
                if let Some(s) = server.ready(poll.registry(), n) {
                    scrape = Some((n, s));
                }
            }
        }
        let (n, (format, head)) = scrape.unwrap();
        server.answer(poll.registry(), n, format, head, "x 1\n");
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nx 1\n"), "{answer}");
        // The client closed: the connection goes.
        drop(client);
        while server.connections() > 1 {
            assert!(Instant::now() < deadline);
            server.ready(poll.registry(), n);
        }
        server.expire(poll.registry(), now + DEADLINE);
        assert_eq!(
            server.connections(),
            0,
            "the silent one is dropped at its deadline"
        );
        drop(silent);
    }
}
