//! Worker recycling end to end (issue 13), with real processes: a worker over
//! `--max-worker-memory`, workers past `--max-worker-age` (with their jitter), each
//! replaced successor first with no request failing under a steady load; and the idle
//! master's wakeups with and without memory sampling. (A library-mode worker asking to be
//! recycled is in `tests/tests/library_mode.rs`, beside the fixture it uses.)
//!
//! Every wait is on a condition with a deadline ([`PATIENCE`]); sockets live in temp
//! dirs; whatever the tests start is killed by pid when they end.

#[path = "../../tests/tests/common/procs.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{log_time, Load, PATIENCE};
use serde_json::Value;

const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

/// A Python HTTP worker on the inherited socket that stops gracefully: SIGTERM is
/// blocked and looked for between requests, so a request it accepted is always answered
/// (the zero-failure claim is clutch's, not a race in the test's worker). While the file
/// `$RECYCLE_DIR/leak` exists, each request it answers keeps 4 MiB more (written, so
/// resident).
const WORKER: &str = r#"
import os, select, signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
leak_file = os.path.join(os.environ["RECYCLE_DIR"], "leak")
s = socket.socket(fileno=3)
s.setblocking(False)
n = os.environ.get("NOTIFY_SOCKET")
n = "\0" + n[1:] if n and n[0] == "@" else n  # sd_notify: "@" is the abstract namespace
if n:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", n)
wid = os.environ["CLUTCH_WORKER_ID"]
kept = []
while signal.SIGTERM not in signal.sigpending():
    if not select.select([s], [], [], 0.05)[0]:
        continue
    try:
        c, _ = s.accept()
    except BlockingIOError:
        continue
    c.setblocking(True)
    c.recv(65536)
    if os.path.exists(leak_file):
        kept.append(b"x" * (4 << 20))
    body = ("Worker: " + wid).encode()
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    c.close()
"#;

struct Clutch {
    child: Child,
    dir: tempfile::TempDir,
    exited: bool,
}

impl Clutch {
    /// `clutch run --log-format json --ready notify --control DIR/ctl.sock
    /// -l 127.0.0.1:0 ARGS -- python3 -c WORKER`.
    fn run(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut full: Vec<String> = [
            "run",
            "--log-format",
            "json",
            "--ready",
            "notify",
            "-l",
            "127.0.0.1:0",
            "--control",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        full.push(format!("{d}/ctl.sock"));
        full.extend(args.iter().map(|a| a.to_string()));
        full.extend(["--".into(), "python3".into(), "-c".into(), WORKER.into()]);
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(CLUTCH)
            .args(&full)
            .env("RECYCLE_DIR", dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            child,
            dir,
            exited: false,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    fn logs(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn named(&self, event: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["event"] == event)
            .collect()
    }

    /// The TCP port, from the master's "listening on" line.
    fn port(&mut self) -> u16 {
        let mut port = None;
        self.wait_until("the master listens", |c| {
            port = c.stderr().lines().find_map(|l| {
                let rest = &l[l.find("listening on 127.0.0.1:")? + 23..];
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            });
            port.is_some()
        });
        port.unwrap()
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = true;
                panic!(
                    "clutch exited ({status}) while waiting until {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The status answer, or null while the control socket is not there yet.
    fn status(&self) -> Value {
        clutch_unix::control::send(
            &self.path("ctl.sock"),
            clutch_unix::control::Request::Status,
            Some(PATIENCE),
        )
        .unwrap_or(Value::Null)
    }

    fn ready(&self) -> usize {
        self.status()["ready"].as_u64().unwrap_or(0) as usize
    }

    fn all_worker_pids(&self) -> Vec<u32> {
        self.named("worker_started")
            .iter()
            .filter_map(|l| l["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }
}

impl Drop for Clutch {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let ours = format!("RECYCLE_DIR={}", self.dir.path().display());
        for pid in self.all_worker_pids() {
            common::kill_if_ours(pid, &ours);
        }
    }
}

/// The master's voluntary context switches so far (its every thread): each one a
/// return from a blocking wait, that is a wakeup. (Preemptions, which a busy machine adds
/// while the master runs, are no wakeups of its own making.)
fn wakeups(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn a_worker_over_the_memory_limit_is_replaced_successor_first_failing_no_request() {
    let mut clutch = Clutch::run(&[
        "--workers",
        "2",
        "--max-worker-memory",
        "48M",
        "--memory-check-interval",
        "100ms",
    ]);
    clutch.wait_until("2 workers ready", |c| c.ready() == 2);
    let first = clutch.all_worker_pids();
    let port = clutch.port();
    std::fs::write(clutch.path("leak"), b"").unwrap();
    let load = Load::start(port, 2);
    // While the recycle is under way (a successor's probation, 2 s at least), status
    // says so.
    clutch.wait_until("status shows a worker recycling for its memory", |c| {
        c.status()["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["recycling"] == "memory")
    });
    // The successors must not be recycled in turn: the leak stops.
    std::fs::remove_file(clutch.path("leak")).unwrap();
    clutch.wait_until("a recycled worker exits", |c| {
        c.named("worker_exit")
            .iter()
            .any(|e| e["reason"] == "recycled")
    });
    let at_exit = load.ok();
    clutch.wait_until("requests are answered after the recycle", |_| {
        load.ok() > at_exit + 10
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{ok} ok:\n{}", clutch.stderr());

    let recycling = clutch.named("worker_recycling");
    let first_recycle = &recycling[0];
    assert_eq!(first_recycle["cause"], "memory", "{first_recycle}");
    assert!(
        first_recycle["memory_bytes"].as_u64().unwrap() > 48 << 20,
        "{first_recycle}"
    );
    assert!(first.contains(&(first_recycle["pid"].as_u64().unwrap() as u32)));
    let exit = clutch
        .named("worker_exit")
        .into_iter()
        .find(|e| e["reason"] == "recycled")
        .unwrap();
    // Its slot's successor was ready before it was stopped.
    let successor_ready = clutch.named("worker_ready").into_iter().find(|e| {
        e["slot"] == exit["slot"] && !first.contains(&(e["pid"].as_u64().unwrap() as u32))
    });
    let successor_ready = successor_ready.expect("the successor became ready");
    assert!(
        log_time(&successor_ready) <= log_time(&exit),
        "{}",
        clutch.stderr()
    );
    assert!(
        clutch.named("worker_died").is_empty(),
        "{}",
        clutch.stderr()
    );
    assert!(clutch.status()["recycles"].as_u64().unwrap() >= 1);
}

#[test]
fn workers_past_their_age_are_recycled_each_at_its_own_jittered_time() {
    let (age, jitter) = (3.0, 2.0);
    let mut clutch = Clutch::run(&[
        "--workers",
        "3",
        "--max-worker-age",
        "3s",
        "--max-worker-age-jitter",
        "2s",
        "--min-uptime",
        "1s",
    ]);
    clutch.wait_until("3 workers ready", |c| c.ready() == 3);
    let first = clutch.all_worker_pids();
    let port = clutch.port();
    let load = Load::start(port, 2);
    clutch.wait_until("every first worker was recycled and exited", |c| {
        let recycled: Vec<u64> = c
            .named("worker_exit")
            .iter()
            .filter(|e| e["reason"] == "recycled")
            .filter_map(|e| e["pid"].as_u64())
            .collect();
        first.iter().all(|p| recycled.contains(&u64::from(*p)))
    });
    let at_last = load.ok();
    clutch.wait_until("requests are answered after the recycles", |_| {
        load.ok() > at_last + 10
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{ok} ok:\n{}", clutch.stderr());

    // Each first worker's age at its recycle, by the master's own log: from its
    // worker_started line to its worker_recycling line.
    let started = clutch.named("worker_started");
    let recycling = clutch.named("worker_recycling");
    let mut ages = Vec::new();
    for pid in &first {
        let start = started.iter().find(|e| e["pid"] == *pid).unwrap();
        let recycle = recycling
            .iter()
            .find(|e| e["pid"] == *pid)
            .unwrap_or_else(|| panic!("pid {pid} never recycled:\n{}", clutch.stderr()));
        assert_eq!(recycle["cause"], "age", "{recycle}");
        ages.push(log_time(recycle) - log_time(start));
    }
    for &a in &ages {
        // Not before its age (the stamps are wall-clock milliseconds: a little slack);
        // by its age and jitter, plus what a loaded machine may add to the loop's turn.
        assert!(a >= age - 0.01, "a recycle at {a:.3} s: {ages:?}");
        assert!(a <= age + jitter + 1.5, "a recycle at {a:.3} s: {ages:?}");
    }
    let mut rounded: Vec<i64> = ages.iter().map(|a| (a * 100.0).round() as i64).collect();
    rounded.sort_unstable();
    rounded.dedup();
    assert!(rounded.len() > 1, "the jitter spread them: {ages:?}");
}

#[test]
fn the_idle_master_wakes_only_for_memory_sampling_and_only_when_it_is_on() {
    let window = Duration::from_secs(2);
    let idle = |args: &[&str]| {
        let mut clutch = Clutch::run(args);
        // Past their probation (whose end is a timer of its own), then settled (the
        // status answers woke it), then measured without a word to it.
        clutch.wait_until("2 workers proven", |c| {
            let status = c.status();
            let workers = status["workers"].as_array().cloned().unwrap_or_default();
            workers.len() == 2 && workers.iter().all(|w| w["proven"] == true)
        });
        std::thread::sleep(Duration::from_millis(300));
        let pid = clutch.child.id();
        let before = wakeups(pid);
        std::thread::sleep(window);
        wakeups(pid) - before
    };
    assert_eq!(idle(&["--workers", "2"]), 0, "no recycling: no wakeups");
    assert_eq!(
        idle(&["--workers", "2", "--max-worker-age", "1h"]),
        0,
        "an age limit is a timer far away: no wakeups"
    );
    let sampled = idle(&[
        "--workers",
        "2",
        "--max-worker-memory",
        "1G",
        "--memory-check-interval",
        "200ms",
    ]);
    // One wakeup per interval: about 10 in 2 s (a busy machine may delay some).
    assert!(
        (5..=15).contains(&sampled),
        "{sampled} wakeups in {window:?}"
    );
}
