//! The upgrade of the master itself (issue 14), library mode, end to end: the fixture
//! (one binary, master and worker) run from a file that a deploy replaces, under a
//! bounded HTTP load, upgraded through its control socket.
//!
//! The new release is a copy of the fixture with its build marker patched (`v1` →
//! `v2`): a different file at the same path, so the test sees which binary the new
//! workers run (their `x-build` header). The new master runs it from the path the old
//! one was started by; the old master's own workers keep the old file (pinned).

mod common;
#[path = "common/upgrade_load.rs"]
mod load;

use std::path::Path;

use clutch_unix::control::{self, Request};
use common::{is_alive, kill_if_ours, Fixture};
use load::{connect, exchange, Load};

/// The fixture with its build marker changed to `build` (two characters).
fn release(build: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_fixture")).unwrap();
    let marker = b"clutch-fixture-build:v1.";
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let i = at + i;
        bytes[i + 21..i + 23].copy_from_slice(build.as_bytes());
        found += 1;
        at = i + marker.len();
    }
    assert!(found > 0, "no build marker in the fixture");
    bytes
}

/// Writes `bytes` to `path` by rename, as a deploy replaces a file.
/// A deploy: the new file renamed over the old one (written by a child process, so that
/// no thread of this test binary can make its `execve` fail with ETXTBSY).
fn deploy(path: &Path, bytes: &[u8]) {
    common::write_executable(path, bytes);
}

struct Upgradable {
    fixture: Fixture,
    bin: tempfile::TempDir,
}

impl Upgradable {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(envs: &[(&str, &str)]) -> Self {
        let bin = tempfile::tempdir().unwrap();
        let app = bin.path().join("app");
        deploy(&app, &release("v1"));
        let control = bin.path().join("ctl.sock").display().to_string();
        let mut all = vec![
            ("WORKERS", "2"),
            ("MIN_UPTIME_MS", "500"),
            ("FIXTURE_CONTROL", control.as_str()),
        ];
        all.extend_from_slice(envs);
        let mut fixture = Fixture::start_program(app.to_str().unwrap(), &[], &all);
        fixture.wait_ready(2);
        Self { fixture, bin }
    }

    fn app(&self) -> std::path::PathBuf {
        self.bin.path().join("app")
    }

    fn ask(&self, request: Request) -> serde_json::Value {
        control::send_patiently(&self.bin.path().join("ctl.sock"), request, None)
            .expect("the control socket answers")
    }
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        // The new master is not the test's child: kill it (and what it logged) by pid.
        let ours = format!("FIXTURE_DIR={}", self.fixture.dir.path().display());
        for event in self.fixture.events() {
            for pid in [&event["master"], &event["pid"]] {
                if let Some(pid) = pid.as_u64() {
                    kill_if_ours(pid as u32, &ours);
                }
            }
        }
    }
}

#[test]
fn an_upgrade_to_a_new_binary_serves_it_with_no_failed_request() {
    let mut cluster = Upgradable::start();
    let old = cluster.fixture.pid();
    let port = cluster.fixture.port;
    let load = Load::start(port, 4);
    assert!(load.more(50), "the load is answered");
    deploy(&cluster.app(), &release("v2"));
    let answer = cluster.ask(Request::Upgrade);
    assert_eq!(answer["ok"], true, "{answer}");
    let new = answer["pid"].as_u64().expect("the new master's pid") as u32;
    assert_ne!(new, old);
    cluster.fixture.wait_until("the old master is gone", |f| {
        f.child.try_wait().unwrap().is_some()
    });
    assert!(load.more(100), "answered after the upgrade");
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 150);
    for _ in 0..20 {
        let (build, _) = exchange(&mut connect(port).unwrap(), true).unwrap();
        assert_eq!(build, "v2", "the new workers run the new binary");
    }
    let status = cluster.ask(Request::Status);
    assert_eq!(status["pid"].as_u64(), Some(u64::from(new)), "{status}");
    assert_eq!(status["ready"], 2);
    // The old master exited 0, handing over.
    let exit = cluster.fixture.child.try_wait().unwrap().expect("exited");
    assert_eq!(exit.code(), Some(0));
    let shut_down: Vec<_> = cluster
        .fixture
        .named("shutdown")
        .into_iter()
        .filter(|e| e["master"].as_u64() == Some(u64::from(old)))
        .collect();
    assert_eq!(shut_down.len(), 1, "{}", cluster.fixture.events_text());
    let stop = cluster.ask(Request::Stop);
    assert_eq!(stop["ok"], true, "{stop}");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while is_alive(new) {
        assert!(std::time::Instant::now() < deadline, "the new master stops");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn an_upgrade_to_a_binary_that_exits_at_start_changes_nothing() {
    let cluster = Upgradable::start();
    let old = cluster.fixture.pid();
    let load = Load::start(cluster.fixture.port, 4);
    assert!(load.more(50));
    deploy(&cluster.app(), b"#!/bin/sh\nexit 1\n");
    let answer = cluster.ask(Request::Upgrade);
    assert_eq!(answer["ok"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("exited before its workers served"),
        "{error}"
    );
    assert!(load.more(100));
    let (_, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    let status = cluster.ask(Request::Status);
    assert_eq!(status["pid"].as_u64(), Some(u64::from(old)));
    assert_eq!(status["ready"], 2);
    assert_eq!(cluster.fixture.count("worker_exit"), 0, "no worker stopped");
}

#[test]
fn an_upgrade_whose_workers_never_become_ready_changes_nothing() {
    let mut cluster = Upgradable::start_with(&[("BOOT_TIMEOUT_MS", "5000")]);
    let old = cluster.fixture.pid();
    let load = Load::start(cluster.fixture.port, 4);
    assert!(load.more(50));
    deploy(&cluster.app(), &release("nr"));
    let answer = cluster.ask(Request::Upgrade);
    assert_eq!(answer["ok"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("did not all become ready and pass probation"),
        "{error}"
    );
    assert!(load.more(100));
    let (_, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    let status = cluster.ask(Request::Status);
    assert_eq!(status["pid"].as_u64(), Some(u64::from(old)));
    assert_eq!(status["ready"], 2);
    // The new master and every worker it started are gone; the old two serve on. (By
    // liveness: a worker's title overwrites its environment, where a marker would be.)
    let by = |f: &Fixture, new: bool| -> Vec<u32> {
        f.named("worker_started")
            .iter()
            .filter(|e| (e["master"].as_u64() != Some(u64::from(old))) == new)
            .filter_map(common::pid_of)
            .collect()
    };
    cluster
        .fixture
        .wait_until("what the new master started is gone", |f| {
            let new_masters: Vec<u32> = f
                .events()
                .iter()
                .filter_map(|e| e["master"].as_u64())
                .filter(|&m| m != u64::from(old))
                .map(|m| m as u32)
                .collect();
            !new_masters.is_empty()
                && new_masters.iter().all(|&m| !is_alive(m))
                && by(f, true).iter().all(|&p| !is_alive(p))
        });
    let old_workers = by(&cluster.fixture, false);
    assert_eq!(old_workers.len(), 2);
    assert!(
        old_workers.iter().all(|&p| is_alive(p)),
        "the old workers serve"
    );
    assert_eq!(cluster.fixture.count("upgrade_failed"), 1);
}
