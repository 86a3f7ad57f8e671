//! Shared harness for the end-to-end tests: start the fixture cluster on a port the OS
//! chooses, read its events, talk HTTP to it, and clean up every process it started.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

mod procs;
pub use procs::*;

/// The `pid` field of an event.
pub fn pid_of(event: &Value) -> Option<u32> {
    event["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
}

pub struct Fixture {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    exited: Option<ExitStatus>,
}

impl Fixture {
    /// Starts the fixture master with these extra environment variables and waits until
    /// it has bound its port.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_program(env!("CARGO_BIN_EXE_fixture"), &[], envs)
    }

    pub fn start_program(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(program)
            .args(args)
            .env("FIXTURE_DIR", dir.path())
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting the fixture");
        let mut fixture = Self {
            child,
            dir,
            port: 0,
            exited: None,
        };
        let port_file = fixture.dir.path().join("port");
        fixture.wait_until("the master binds its port", |f| {
            f.check_alive();
            port_file.exists()
        });
        fixture.port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        fixture
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Every event the master reported so far, as the fixture wrote them: one JSON
    /// object each, `event` its name (a line still being written is left out).
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("events"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The events named `name`.
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    pub fn count(&self, name: &str) -> usize {
        self.named(name).len()
    }

    /// The events, one line each, for a failure message.
    pub fn events_text(&self) -> String {
        std::fs::read_to_string(self.path("events")).unwrap_or_default()
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the master exited early with {status}; stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Polls `condition` every 10 ms for up to [`PATIENCE`].
    pub fn wait_until(&mut self, what: &str, mut condition: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; events:\n{}\nstderr:\n{}",
                self.events_text(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_ready(&mut self, n: usize) {
        self.wait_until(&format!("{n} workers are ready"), |f| {
            f.count("worker_ready") >= n
        });
    }

    /// Pids of the workers that started and have not been reported gone.
    pub fn live_worker_pids(&self) -> Vec<u32> {
        let events = self.events();
        let pids = |names: &[&str]| -> Vec<u32> {
            events
                .iter()
                .filter(|e| names.iter().any(|name| e["event"] == *name))
                .filter_map(pid_of)
                .collect()
        };
        let started = pids(&["worker_started"]);
        let gone = pids(&["worker_died", "worker_exit"]);
        started.into_iter().filter(|p| !gone.contains(p)).collect()
    }

    /// Pids of live workers that have become ready.
    pub fn ready_worker_pids(&self) -> Vec<u32> {
        let ready: Vec<u32> = self
            .named("worker_ready")
            .iter()
            .filter_map(pid_of)
            .collect();
        self.live_worker_pids()
            .into_iter()
            .filter(|p| ready.contains(p))
            .collect()
    }

    pub fn all_worker_pids(&self) -> Vec<u32> {
        self.named("worker_started")
            .iter()
            .filter_map(pid_of)
            .collect()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signalling the master");
    }

    /// Waits for the master to exit (bounded) and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the master did not exit within {within:?}; events:\n{}\nstderr:\n{}",
                self.events_text(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Kill by pid, never by name: the master, then any worker it reported.
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Only processes that are still this test's (pids are reused).
        let ours = format!("FIXTURE_DIR={}", self.dir.path().display());
        for pid in self.all_worker_pids() {
            kill_if_ours(pid, &ours);
        }
    }
}
