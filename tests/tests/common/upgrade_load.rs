//! HTTP load for the upgrade tests (exec mode in `clutch-unix/tests/upgrade.rs`,
//! library mode in `tests/tests/upgrade.rs`): clients a connection per request and
//! keep-alive, counting answers by their `x-build` header.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::PATIENCE;

/// One `GET /` on `stream`; the `x-build` of the answer and whether it closes.
pub fn exchange(stream: &mut TcpStream, close: bool) -> std::io::Result<(String, bool)> {
    let request = if close {
        "GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nhost: t\r\n\r\n"
    };
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(&mut *stream);
    let mut status = String::new();
    if reader.read_line(&mut status)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before an answer",
        ));
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad status {status:?}")));
    }
    let (mut build, mut closes, mut length) = (String::new(), false, 0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let lower = line.to_ascii_lowercase();
        if line == "\r\n" || line.is_empty() {
            break;
        } else if let Some(v) = lower.strip_prefix("x-build:") {
            build = v.trim().to_owned();
        } else if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("connection:") {
            closes = lower.contains("close");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((build, closes))
}

pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Clients sending `GET /` back to back until [`Load::finish`] (or [`PATIENCE`]): half
/// of them a connection per request, half keep-alive. A keep-alive client whose reused
/// connection closes before any byte of an answer retries on a new one (RFC 9112
/// §9.3.1: the request was not answered, and GET is idempotent); any other error is a
/// failed request.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    /// The build of the last answers, per build.
    builds: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let builds = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let threads = (0..clients)
            .map(|n| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (errors, builds) = (errors.clone(), builds.clone());
                let keep_alive = n % 2 == 1;
                std::thread::spawn(move || {
                    let deadline = Instant::now() + 3 * PATIENCE;
                    let mut reused: Option<TcpStream> = None;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        let fresh = reused.is_none();
                        let result = match reused.take() {
                            Some(stream) => Ok(stream),
                            None => connect(port),
                        }
                        .and_then(|mut stream| {
                            let answer = exchange(&mut stream, !keep_alive)?;
                            Ok((stream, answer))
                        });
                        match result {
                            Ok((stream, (build, closes))) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                *builds.lock().unwrap().entry(build).or_default() += 1;
                                if keep_alive && !closes {
                                    reused = Some(stream);
                                }
                            }
                            // An idle keep-alive connection the server closed: retry.
                            Err(_) if !fresh => {}
                            Err(e) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                errors.lock().unwrap().push(e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            errors,
            builds,
            threads,
        }
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    pub fn seen(&self, build: &str) -> usize {
        self.builds.lock().unwrap().get(build).copied().unwrap_or(0)
    }

    /// Waits until `n` more answers came; false at the deadline.
    pub fn more(&self, n: usize) -> bool {
        let target = self.ok() + n;
        let deadline = Instant::now() + PATIENCE;
        while self.ok() < target {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops the clients; returns (answers, failures, the failures' errors).
    pub fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a load client panicked");
        }
        let errors = self.errors.lock().unwrap().clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}
