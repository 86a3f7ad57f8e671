//! A `clutch run` under test, steered through its control socket. Shared by this
//! crate's end-to-end tests (`#[path]`-included, as `tests/tests/common/procs.rs` is).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use serde_json::Value;

use super::common::{is_alive, PATIENCE};

pub const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

/// A `clutch run` whose stderr is whatever the test makes it.
pub struct Master {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub exited: bool,
}

impl Master {
    /// `clutch run --control DIR/ctl.sock -l unix:DIR/http.sock ARGS`, stderr to `stderr`.
    pub fn start(args: &[&str], stderr: Stdio, envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("unix:{}", dir.path().join("http.sock").display());
        let mut all: Vec<std::ffi::OsString> = vec!["-l".into(), listen.into()];
        all.extend(args.iter().map(Into::into));
        Self::spawn(dir, &all, stderr, envs)
    }

    /// `clutch run --control DIR/ctl.sock ARGS` (`RUST_LOG=info`, then `envs`), in `dir`.
    pub fn spawn(
        dir: tempfile::TempDir,
        args: &[std::ffi::OsString],
        stderr: Stdio,
        envs: &[(&str, &str)],
    ) -> Self {
        Self::spawn_with_stdout(dir, args, Stdio::null(), stderr, envs)
    }

    /// [`Self::spawn`] with the master's stdout too.
    pub fn spawn_with_stdout(
        dir: tempfile::TempDir,
        args: &[std::ffi::OsString],
        stdout: Stdio,
        stderr: Stdio,
        envs: &[(&str, &str)],
    ) -> Self {
        let child = Command::new(CLUTCH)
            .arg("run")
            .arg("--control")
            .arg(dir.path().join("ctl.sock"))
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            child,
            dir,
            exited: false,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ask(&self, request: Request) -> std::io::Result<Value> {
        control::send(&self.path("ctl.sock"), request, Some(PATIENCE))
    }

    /// The `status` answer, once the control socket answers at all.
    pub fn status(&mut self) -> Value {
        let mut last = None;
        self.wait_until("the master answers status", |m| {
            match m.ask(Request::Status) {
                Ok(answer) => {
                    last = Some(answer);
                    true
                }
                Err(_) => false,
            }
        });
        last.unwrap()
    }

    pub fn ready(&mut self) -> u64 {
        self.status()["ready"].as_u64().unwrap()
    }

    pub fn worker_pids(&mut self) -> Vec<u32> {
        self.status()["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }

    pub fn wait_until(&mut self, what: &str, done: impl FnMut(&mut Self) -> bool) {
        self.wait_until_within(PATIENCE, what, done);
    }

    /// [`Self::wait_until`] with a deadline of its own, for a big job (thousands of
    /// workers on a loaded machine).
    pub fn wait_until_within(
        &mut self,
        patience: Duration,
        what: &str,
        mut done: impl FnMut(&mut Self) -> bool,
    ) {
        let deadline = Instant::now() + patience;
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = true;
                panic!("clutch exited ({status}) while waiting until {what}");
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs worker `pid` and waits until the master has replaced it (as many workers
    /// as before, `pid` not among them).
    pub fn kill_worker_and_wait(&mut self, pid: u32) {
        let count = self.worker_pids().len();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        self.wait_until("the killed worker is replaced", |m| {
            let pids = m.worker_pids();
            pids.len() == count && !pids.contains(&pid)
        });
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = true;
                return status;
            }
            assert!(Instant::now() < deadline, "clutch did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `clutch stop` through the control socket; the master's exit code.
    pub fn stop(&mut self) -> i32 {
        let answer = self.ask(Request::Stop).expect("stop");
        assert_eq!(answer["ok"], true, "{answer}");
        self.wait_exit().code().expect("an exit code")
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let pids = if self.exited {
            Vec::new()
        } else {
            self.ask(Request::Status)
                .ok()
                .and_then(|s| {
                    s["workers"].as_array().map(|ws| {
                        ws.iter()
                            .filter_map(|w| w["pid"].as_u64())
                            .map(|p| p as u32)
                            .collect::<Vec<_>>()
                    })
                })
                .unwrap_or_default()
        };
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in pids {
            if is_alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
