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
