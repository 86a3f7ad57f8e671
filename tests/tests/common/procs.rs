//! Process and HTTP helpers shared by every end-to-end test (also included by
//! `clutch-unix/tests/cli.rs`).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Generous: the CI machine has two shared cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `pid: N` or `pid: Some(N)` in an event's `Debug` line.
pub fn pid_in(event: &str) -> Option<u32> {
    let rest = &event[event.find("pid: ")? + 5..];
    let rest = rest.strip_prefix("Some(").unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// True while `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// `GET /` with `connection: close`; the body, or the error.
pub fn get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!("bad response: {response:?}"))),
    }
}

/// The worker id in a `Worker: N` body.
pub fn worker_id(body: &str) -> u64 {
    body.trim()
        .strip_prefix("Worker: ")
        .and_then(|n| n.parse().ok())
        .expect("a Worker: N body")
}

pub fn wait_gone(pids: &[u32], within: Duration) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(alive);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends requests until `n` distinct workers have answered, for at most [`PATIENCE`]
/// (workers that are ready at exec may still be starting up). Returns the ids seen.
pub fn distinct_workers(port: u16, n: usize) -> std::collections::BTreeSet<u64> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < n && Instant::now() < deadline {
        match get(port) {
            Ok(body) => {
                seen.insert(worker_id(&body));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    seen
}
