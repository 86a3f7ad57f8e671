//! The control channel: a Unix stream socket on which a running master answers
//! `status`, `reload`, `scale` and `stop`.
//!
//! # Protocol
//!
//! One request per connection, one JSON object on one line:
//!
//! ```text
//! {"command":"status"}
//! {"command":"reload"}
//! {"command":"scale","workers":4}
//! {"command":"stop"}
//! ```
//!
//! The master answers with one JSON object on one line, `{"ok":true,…}` or
//! `{"ok":false,"error":"…"}`, then closes the connection. `status` answers at once;
//! `scale` once the new target is set; `reload` once the rolling restart has finished or
//! failed (a failure is `ok: false`, and the old workers keep serving); `stop` once the
//! master is about to exit, with its `exit_code` — the connection then closes when the
//! master is gone.
//!
//! The socket is created mode 0600 (other users cannot connect). The master never blocks
//! on a client: requests over 4 KiB, garbage, clients that never finish their line
//! (10 s), and clients beyond 64 at once are answered with an error or dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// The longest request line accepted.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once; more are turned away.
pub const MAX_CLIENTS: usize = 64;

/// A control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Workers and phase.
    Status,
    /// A rolling restart; answered when it ends.
    Reload,
    /// Set the worker count.
    Scale {
        /// The new target.
        workers: usize,
    },
    /// A graceful shutdown; answered when the master exits.
    Stop,
}

impl Request {
    /// The request as its protocol line (without the newline).
    #[must_use]
    pub fn to_line(&self) -> String {
        match self {
            Self::Status => json!({"command": "status"}),
            Self::Reload => json!({"command": "reload"}),
            Self::Scale { workers } => json!({"command": "scale", "workers": workers}),
            Self::Stop => json!({"command": "stop"}),
        }
        .to_string()
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status => f.write_str("status"),
            Self::Reload => f.write_str("reload"),
            Self::Scale { workers } => write!(f, "scale {workers}"),
            Self::Stop => f.write_str("stop"),
        }
    }
}

/// Parses one request line (outside input: never panics).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("a request is a JSON object")?;
    let command = object
        .get("command")
        .and_then(Value::as_str)
        .ok_or(r#"missing "command" (status, reload, scale or stop)"#)?;
    match command {
        "status" => Ok(Request::Status),
        "reload" => Ok(Request::Reload),
        "stop" => Ok(Request::Stop),
        "scale" => {
            let workers = object
                .get("workers")
                .and_then(Value::as_u64)
                .ok_or(r#"scale needs "workers": a whole number"#)?;
            let workers = usize::try_from(workers).map_err(|_| "workers: too large".to_owned())?;
            Ok(Request::Scale { workers })
        }
        other => Err(format!(
            "unknown command {other:?} (status, reload, scale or stop)"
        )),
    }
}

/// How long [`send_patiently`] retries a master that turns clients away as busy.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(3);

/// The answer to a client beyond [`MAX_CLIENTS`]: an error with `"busy": true`, so that a
/// client can tell "try again" from "no".
#[must_use]
pub fn busy_line() -> String {
    json!({"ok": false, "busy": true, "error": "too many control clients; try again"}).to_string()
}

/// [`send`], retried (20 ms, doubling to 200 ms) for up to [`BUSY_PATIENCE`] while the
/// master answers that it is busy. A master still busy after that gets an error saying
/// so, in one line.
pub fn send_patiently(path: &Path, request: Request, wait: Option<Duration>) -> io::Result<Value> {
    let give_up = std::time::Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        let answer = send(path, request, wait)?;
        if answer["busy"] != Value::Bool(true) {
            return Ok(answer);
        }
        if std::time::Instant::now() + pause > give_up {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the master at {} is busy ({MAX_CLIENTS} control clients at once); gave up \
                     after {} s",
                    path.display(),
                    BUSY_PATIENCE.as_secs()
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn parse_answer(line: &str) -> io::Result<Value> {
    serde_json::from_str(line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the master: {e}"),
        )
    })
}

/// An error answer.
#[must_use]
pub fn error_line(message: &str) -> String {
    json!({"ok": false, "error": message}).to_string()
}

/// Sends `request` to the master listening at `path` and returns its answer, waiting up
/// to `wait` (`None`: as long as it takes). For [`Request::Stop`], also waits until the
/// master is gone (it closes the connection by exiting).
pub fn send(path: &Path, request: Request, wait: Option<Duration>) -> io::Result<Value> {
    let stream = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("connecting to the control socket {}: {e}", path.display()),
        )
    })?;
    let mut writer = stream.try_clone()?;
    // A master that turns the client away (busy) answers at once and closes, maybe
    // before the request is written: then the write fails, and the answer is still
    // there to read.
    let sent = writer.write_all(format!("{}\n", request.to_line()).as_bytes());
    stream.set_read_timeout(wait)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if let Err(error) = sent {
        if reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            return parse_answer(&line);
        }
        return Err(error);
    }
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the master closed the connection without answering",
        ));
    }
    let answer = parse_answer(&line)?;
    if request == Request::Stop {
        // The master closes the socket by exiting.
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Reload,
            Request::Stop,
            Request::Scale { workers: 7 },
        ] {
            assert_eq!(parse_request(request.to_line().as_bytes()), Ok(request));
        }
    }

    #[test]
    fn bad_requests_say_why() {
        for (line, why) in [
            (&b"garbage"[..], "not JSON"),
            (b"[1,2]", "JSON object"),
            (b"{}", "missing"),
            (br#"{"command":"explode"}"#, "unknown command"),
            (br#"{"command":"scale"}"#, "whole number"),
            (br#"{"command":"scale","workers":-1}"#, "whole number"),
            (br#"{"command":"scale","workers":1.5}"#, "whole number"),
            (b"\xff\xfe", "not JSON"),
        ] {
            let err = parse_request(line).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }
}
