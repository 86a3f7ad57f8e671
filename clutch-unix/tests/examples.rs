//! The examples, run as a user runs them. (`cargo test` builds examples before it runs
//! tests; run this file through `cargo test --workspace` or `-p clutch-unix`.)

#[path = "../../tests/tests/common/procs.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{distinct_workers, get, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn example(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_clutch"))
        .with_file_name("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p clutch-unix`, which builds the examples",
        path.display()
    );
    path
}

/// A port that was free a moment ago (the examples take `PORT`, not a port file).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Running {
    fn start(name: &str, port: u16, workers: &str) -> Self {
        let child = Command::new(example(name))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("WORKERS", workers)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Self(child);
        let deadline = Instant::now() + PATIENCE;
        while get(port).is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} never answered on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), signal).unwrap();
    }

    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the master did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Workers die with the master (PR_SET_PDEATHSIG).
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hello_answers_from_several_workers_and_ctrl_c_stops_it() {
    let port = free_port();
    let mut hello = Running::start("hello", port, "2");
    assert_eq!(distinct_workers(port, 2).len(), 2);
    hello.signal(Signal::SIGINT);
    assert_eq!(hello.wait(), Some(0));
    assert!(get(port).is_err(), "the port closes with the cluster");
}

#[test]
fn the_async_example_finishes_in_flight_requests_on_shutdown() {
    let port = free_port();
    let mut server = Running::start("async", port, "1");
    let slow = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        std::io::Write::write_all(
            &mut stream,
            b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).map(|_| response)
    });
    std::thread::sleep(Duration::from_millis(500)); // the request is in flight
    server.signal(Signal::SIGTERM);
    let response = slow.join().unwrap().expect("the slow request completes");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("(slow)"), "{response}");
    assert_eq!(server.wait(), Some(0));
}

#[test]
fn workers_0_runs_hello_in_process_with_the_same_shutdown() {
    let port = free_port();
    let mut hello = Running::start("hello", port, "0");
    assert_eq!(
        get(port).unwrap(),
        "Worker: 0",
        "in-process: no cluster, id 0"
    );
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", hello.0.id()))
        .unwrap_or_default();
    assert!(
        children.trim().is_empty(),
        "no worker processes: {children:?}"
    );
    hello.signal(Signal::SIGTERM);
    assert_eq!(hello.wait(), Some(0));
}

/// One `GET /` on a kept-alive connection; the answer's head (lowercased) and body.
fn keep_alive_get(
    reader: &mut std::io::BufReader<std::net::TcpStream>,
) -> std::io::Result<(String, String)> {
    use std::io::{BufRead, Read, Write};
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")?;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed before the whole answer: {head:?}"),
            ));
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no content-length: {head:?}")))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// Graceful shutdown never closes a keep-alive connection under a client that reuses
/// it: a connection that sat idle while shutdown began still has its next request
/// answered (with `connection: close`); one that stays idle is closed, and the worker
/// exits.
#[test]
fn hello_answers_a_request_on_a_connection_idle_when_shutdown_began() {
    let port = free_port();
    let mut hello = Running::start("hello", port, "1");
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        std::io::BufReader::new(stream)
    };
    let (mut idle, mut busy, mut never) = (connect(), connect(), connect());
    for connection in [&mut idle, &mut busy, &mut never] {
        let (head, body) = keep_alive_get(connection).unwrap();
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert!(body.starts_with("Worker: "), "{body}");
    }
    hello.signal(Signal::SIGTERM);
    // The busy connection learns when the worker has begun to stop: its answer closes.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (head, _) = keep_alive_get(&mut busy).expect("a busy connection is answered");
        if head.contains("connection: close") {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never began to stop");
    }
    // The scenario itself, not a wait for a condition: a client that takes a moment to
    // reuse its connection (beyond the worker's 200 ms idle tick, within its grace).
    std::thread::sleep(Duration::from_millis(400));
    let (head, body) = keep_alive_get(&mut idle).expect("the idle connection is answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.starts_with("Worker: "), "{body}");
    // The connection nobody reuses is closed (an orderly end of stream, not a reset),
    // and the cluster exits cleanly.
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut never, &mut rest);
    assert!(matches!(read, Ok(0)), "{read:?} {rest:?}");
    assert_eq!(hello.wait(), Some(0));
}
