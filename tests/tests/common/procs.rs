//! Process and HTTP helpers shared by every end-to-end test (also included by
//! `clutch-unix/tests/cli.rs`).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Generous: the CI machine has two shared cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

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

/// True while `pid` is alive and its environment holds `needle` (`NAME=value`): the way
/// to tell a test's own process from an unrelated one that got its pid since (pids wrap
/// around quickly on a test machine: 32768 here, and tests start thousands of processes).
pub fn is_ours(pid: u32, needle: &str) -> bool {
    is_alive(pid)
        && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|&b| b == 0)
                .any(|var| var == needle.as_bytes())
        })
}

/// SIGKILLs `pid` if it is still the test's own (see [`is_ours`]).
pub fn kill_if_ours(pid: u32, needle: &str) {
    if is_ours(pid, needle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
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

/// Client threads sending `GET /` back to back until [`Load::finish`] (or [`PATIENCE`]),
/// counting answers and failures.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16, clients: usize) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + PATIENCE;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        let counter = if get(port).is_ok() { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Answers so far.
    pub fn ok(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the clients; returns (answers, failures).
    pub fn finish(self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a load client panicked");
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// A Python HTTP worker on the inherited socket (fd 3, TCP or unix) answering
/// `Worker: <CLUTCH_WORKER_ID>`: it checks the socket-activation variables, says
/// `READY=1` itself when it has a `NOTIFY_SOCKET`, and refuses to boot while the file
/// `$BROKEN` exists.
pub const PYTHON_WORKER: &str = r#"
import os, socket, sys
if os.path.exists(os.environ.get("BROKEN", "/nonexistent")):
    sys.exit(1)
assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID is this worker's pid"
assert os.environ["LISTEN_FDS"] == "1"
s = socket.socket(fileno=3)
n = os.environ.get("NOTIFY_SOCKET")
n = "\0" + n[1:] if n and n[0] == "@" else n  # sd_notify: "@" is the abstract namespace
if n:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", n)
wid = os.environ["CLUTCH_WORKER_ID"]
while True:
    c, _ = s.accept()
    c.recv(65536)
    body = ("Worker: " + wid).encode()
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    c.close()
"#;

/// Says why a test is skipped where the test harness does not hide it: straight to the
/// process's stderr (the harness captures only what `eprintln!` and `println!` write), so
/// a user who is not root sees what did not run.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{why}");
}

/// A JSON log line's timestamp (RFC 3339, UTC: what `--log-format json` writes), in
/// seconds since the epoch.
pub fn log_time(line: &serde_json::Value) -> f64 {
    let stamp = line["timestamp"].as_str().expect("a timestamp");
    let (date, time) = stamp.split_once('T').expect("RFC 3339");
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().expect("a date"));
    let (y, m, d) = (
        ymd.next().unwrap(),
        ymd.next().unwrap(),
        ymd.next().unwrap(),
    );
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + doe - 719_468;
    let mut hms = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse::<f64>().expect("a time"));
    let (h, min, sec) = (
        hms.next().unwrap(),
        hms.next().unwrap(),
        hms.next().unwrap(),
    );
    days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec
}

/// Puts an executable file with `bytes` at `path` (replacing what is there by a rename,
/// as a deploy does).
///
/// The bytes are written by a `cp` child process, never through a descriptor of this
/// one: a test binary runs its tests on parallel threads, and a child that another
/// thread forks inherits every descriptor this process has open until that child's
/// `execve` — a file open for writing in that window makes any `execve` of it fail with
/// `ETXTBSY` ("Text file busy"). A descriptor of `cp`'s is inherited by nobody.
pub fn write_executable(path: &std::path::Path, bytes: &[u8]) {
    // The bytes go to a file that is never executed; `cp` makes the one that is.
    let source = path.with_extension("bytes");
    std::fs::write(&source, bytes).unwrap();
    copy_executable(&source, path);
    std::fs::remove_file(&source).unwrap();
}

/// Copies `from` to an executable `to`, by a `cp` child process and a rename (see
/// [`write_executable`] for why not `std::fs::copy`).
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let staged = to.with_extension("staged");
    let status = std::process::Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(&staged)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp {} {}",
        from.display(),
        staged.display()
    );
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, to).unwrap();
}
