//! The driver's figures, measured on real processes (see docs/BENCHMARKS.md):
//!
//! ```sh
//! cargo run --release -p clutch-tests --bin driver-figures [-- --quick]
//! ```
//!
//! 1. master RSS with 2 and with 64 workers;
//! 2. master wakeups (context switches) and CPU time over 10 s idle;
//! 3. SIGKILL of a worker → death seen by the master → replacement exec'd → replacement
//!    ready (20 trials: median and max);
//! 4. SIGTERM → master exited, with workers that exit promptly (20 trials).
//!
//! Times come from CLOCK_MONOTONIC in every process: the fixture stamps each event with it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

fn monotonic_ns() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

struct Cluster {
    child: Child,
    dir: PathBuf,
}

impl Cluster {
    fn start(workers: usize) -> Self {
        let fixture = std::env::current_exe().unwrap().with_file_name("fixture");
        let dir =
            std::env::temp_dir().join(format!("clutch-figures-{}-{workers}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(fixture)
            .env("FIXTURE_DIR", &dir)
            .env("WORKERS", workers.to_string())
            // Workers count as healthy after 1 ms, so a killed one is replaced at once
            // (the figure is the driver's speed, not the backoff's delay).
            .env("MIN_UPTIME_MS", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fixture binary (build with --release -p clutch-tests)");
        let cluster = Self { child, dir };
        cluster.wait(|c| c.count("worker_ready") >= workers);
        cluster
    }

    /// The fixture's events: one JSON object each, `event` its name, `ns` its stamp.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("events"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == name).count()
    }

    fn wait(&self, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; events: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn live_workers(&self) -> Vec<u32> {
        let events = self.events();
        let pid = |e: &Value| e["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        let gone: Vec<u32> = events
            .iter()
            .filter(|e| e["event"] == "worker_died" || e["event"] == "worker_exit")
            .filter_map(pid)
            .collect();
        events
            .iter()
            .filter(|e| e["event"] == "worker_started")
            .filter_map(pid)
            .filter(|p| !gone.contains(p))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stamp(event: &Value) -> u128 {
    u128::from(event["ns"].as_u64().expect("a timestamp"))
}

fn status_kib_in(path: &str, key: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Context switches of every thread of `pid`, and its CPU time in clock ticks.
fn wakeups_and_ticks(pid: i32) -> (u64, u64) {
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches")
                || line.starts_with("nonvoluntary_ctxt_switches")
            {
                switches += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (switches, ticks)
}

fn median_max(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[values.len() - 1])
}

fn ms(ns: u128) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let trials = if quick { 5 } else { 20 };
    let idle = if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };

    for workers in [2, 64] {
        let cluster = Cluster::start(workers);
        std::thread::sleep(Duration::from_millis(200));
        // RSS counts every resident page mapped, including the clean code pages the master
        // shares with its workers (same binary, same libc); PSS divides shared pages among
        // their users; private pages are the master's alone.
        let rollup = format!("/proc/{}/smaps_rollup", cluster.pid());
        let private =
            status_kib_in(&rollup, "Private_Clean:") + status_kib_in(&rollup, "Private_Dirty:");
        println!(
            "master memory with {workers:>2} workers: RSS {} KiB, PSS {} KiB, private {private} KiB",
            status_kib_in(&rollup, "Rss:"),
            status_kib_in(&rollup, "Pss:"),
        );
    }

    let cluster = Cluster::start(2);
    std::thread::sleep(Duration::from_millis(200));
    let (switches0, ticks0) = wakeups_and_ticks(cluster.pid());
    std::thread::sleep(idle);
    let (switches1, ticks1) = wakeups_and_ticks(cluster.pid());
    println!(
        "master idle {:?}: {} wakeups (context switches), {} CPU ticks",
        idle,
        switches1 - switches0,
        ticks1 - ticks0
    );

    let (mut seen, mut exec, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..trials {
        let victim = cluster.live_workers()[0];
        let (died_before, ready_before) =
            (cluster.count("worker_died"), cluster.count("worker_ready"));
        let sent = monotonic_ns();
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        cluster.wait(|c| {
            c.count("worker_died") > died_before && c.count("worker_ready") > ready_before
        });
        let events = cluster.events();
        let died = events
            .iter()
            .filter(|e| e["event"] == "worker_died")
            .nth(died_before)
            .unwrap();
        let started = events
            .iter()
            .rfind(|e| e["event"] == "worker_started")
            .unwrap();
        let readied = events
            .iter()
            .rfind(|e| e["event"] == "worker_ready")
            .unwrap();
        seen.push(ms(stamp(died) - sent));
        exec.push(ms(stamp(started) - stamp(died)));
        ready.push(ms(stamp(readied) - sent));
        if trial + 1 < trials {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let report = |what: &str, values: Vec<f64>| {
        let (median, max) = median_max(values);
        println!("{what}: median {median:.3} ms, max {max:.3} ms ({trials} trials)");
    };
    report("SIGKILL → death seen by the master", seen);
    report("death seen → replacement exec'd (spawn reported)", exec);
    report("SIGKILL → replacement ready", ready);
    drop(cluster);

    let mut stop = Vec::new();
    for _ in 0..trials {
        let mut cluster = Cluster::start(2);
        let sent = Instant::now();
        kill(Pid::from_raw(cluster.pid()), Signal::SIGTERM).unwrap();
        let status = cluster.child.wait().unwrap();
        stop.push(sent.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status.code(), Some(0));
    }
    report("SIGTERM → master exited (2 prompt workers)", stop);
}
