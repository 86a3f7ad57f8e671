//! The upgrade of the master itself (issue 14), exec mode, end to end: `clutch run`
//! under a bounded HTTP load (connection-per-request and keep-alive clients), upgraded
//! with SIGUSR2 or `clutch upgrade`, to a good release and to bad ones.
//!
//! The workers are a Python server that stops gracefully on SIGTERM (it stops
//! accepting, answers what it is reading with `connection: close`, closes idle
//! connections) and names its release in an `x-build` header: the release is the
//! script's file, replaced (atomically, by rename) before the upgrade, as a deploy does.
//!
//! Every wait is on a condition with a deadline ([`PATIENCE`]); sockets are on loopback
//! ports the OS chooses; whatever the tests start is killed by pid, if it is still
//! theirs (the `UPGRADE_DIR=<dir>` variable in its environment), when they end.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "../../tests/tests/common/upgrade_load.rs"]
mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{is_alive, kill_if_ours, PATIENCE};
use load::{connect, exchange, Load};
use serde_json::Value;

const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

/// The worker, release `{build}`: it writes its port to `$UPGRADE_DIR/port-<pid>`, says
/// READY=1, and serves until SIGTERM; then it finishes gracefully.
const WORKER: &str = r#"
import os, signal, socket, threading
BUILD = "{build}"
stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
s = socket.socket(fileno=3)
s.settimeout(0.05)
d = os.environ["UPGRADE_DIR"]
tmp = os.path.join(d, "port.%d" % os.getpid())
with open(tmp, "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(tmp, os.path.join(d, "port-%d" % os.getpid()))
n = os.environ.get("NOTIFY_SOCKET")
n = "\0" + n[1:] if n and n[0] == "@" else n  # sd_notify: "@" is the abstract namespace
if n:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", n)
def serve(c):
    c.settimeout(0.05)
    data = b""
    idle = 0
    while True:
        if b"\r\n\r\n" not in data:
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                if not data and stopping.is_set():
                    break
                idle += 1
                if idle > 100:
                    break
                continue
            if not chunk:
                break
            idle = 0
            data += chunk
            continue
        head, data = data.split(b"\r\n\r\n", 1)
        close = b"connection: close" in head.lower() or stopping.is_set()
        body = b"ok"
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-build: " + BUILD.encode()
            + b"\r\nconnection: " + (b"close" if close else b"keep-alive") + b"\r\n\r\n" + body)
        if close:
            break
    c.close()
threads = []
while not stopping.is_set():
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    t = threading.Thread(target=serve, args=(c,))
    t.start()
    threads.append(t)
s.close()
for t in threads:
    t.join()
"#;

/// A worker release that never says READY=1 (it only sleeps).
const NEVER_READY: &str = "import time\nwhile True:\n    time.sleep(1)\n";

/// Writes `text` to `path` by rename, as a deploy replaces a file.
fn deploy(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if mode & 0o111 != 0 {
        // Executed: written by a child process (no ETXTBSY, see write_executable).
        return common::write_executable(path, text.as_bytes());
    }
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Cluster {
    child: Child,
    dir: tempfile::TempDir,
    /// The `clutch` file the master runs (a copy, when the test replaces it).
    port: u16,
    exited: bool,
}

impl Cluster {
    /// `CLUTCH_PATH run --workers 2 --ready notify … -- python3 DIR/worker.py`, the
    /// worker being release v1.
    fn start(clutch: &Path, extra: &[&str]) -> Self {
        Self::start_with(clutch, extra, &[])
    }

    fn start_with(clutch: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        deploy(
            &d.join("worker.py"),
            &WORKER.replace("{build}", "v1"),
            0o644,
        );
        let stderr = std::fs::File::create(d.join("stderr")).unwrap();
        let mut args: Vec<String> = [
            "run",
            "--workers",
            "2",
            "--ready",
            "notify",
            "--min-uptime",
            "500ms",
            "--log-format",
            "json",
            "-l",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push("--control".into());
        args.push(d.join("ctl.sock").display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push("--".into());
        args.push("python3".into());
        args.push(d.join("worker.py").display().to_string());
        let child = Command::new(clutch)
            .args(&args)
            .env("UPGRADE_DIR", &d)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut cluster = Self {
            child,
            dir,
            port: 0,
            exited: false,
        };
        cluster.wait_until("two workers proven", |c| {
            let s = c.status();
            s["ready"] == 2
                && s["workers"]
                    .as_array()
                    .is_some_and(|w| w.iter().all(|w| w["proven"] == true))
        });
        cluster.port = cluster.ports()[0];
        cluster
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn marker(&self) -> String {
        format!("UPGRADE_DIR={}", self.dir.path().display())
    }

    /// The ports the workers wrote (one socket: all the same).
    fn ports(&self) -> Vec<u16> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("port-"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
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

    fn events(&self, name: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["fields"]["event"] == name || l["event"] == name)
            .collect()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CLUTCH)
            .args(args)
            .arg("--control")
            .arg(self.path("ctl.sock"))
            .output()
            .unwrap()
    }

    /// The status answer, or null while there is none.
    fn status(&self) -> Value {
        let out = self.ctl(&["status", "--output", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if !self.exited {
                if let Some(status) = self.child.try_wait().unwrap() {
                    self.exited = true;
                    // The first master exiting is what an upgrade does: keep waiting.
                    let _ = status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every pid any master of this test logged: masters, workers.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .logs()
            .iter()
            .filter_map(|l| l["fields"]["pid"].as_u64().or(l["pid"].as_u64()))
            .map(|p| p as u32)
            .collect();
        pids.push(self.child.id());
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let ours = self.marker();
        for pid in self.pids() {
            kill_if_ours(pid, &ours);
        }
    }
}

/// The pid of the master answering the control socket now.
fn master_pid(cluster: &Cluster) -> Option<u32> {
    cluster.status()["pid"].as_u64().map(|p| p as u32)
}

/// A good release, upgraded to by SIGUSR2: the new workers serve release v2, the old
/// master is gone, the control socket answers from the new one, and not one request
/// failed on the way.
#[test]
fn sigusr2_upgrades_to_the_new_release_with_no_failed_request() {
    let mut cluster = Cluster::start(Path::new(CLUTCH), &[]);
    let old = cluster.child.id();
    let load = Load::start(cluster.port, 4);
    assert!(load.more(50), "the load is answered");
    deploy(
        &cluster.path("worker.py"),
        &WORKER.replace("{build}", "v2"),
        0o644,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    cluster.wait_until("the old master is gone", |_| !is_alive(old));
    let new = master_pid(&cluster).expect("the control socket answers");
    assert_ne!(new, old, "the new master answers");
    assert!(load.more(100), "the load is answered after the upgrade");
    let before = load.seen("v1");
    assert!(load.more(100));
    let (ok, failed, errors) = load.finish();
    assert_eq!(
        failed,
        0,
        "failed requests: {errors:?}\n{}",
        cluster.stderr()
    );
    assert!(ok > 250);
    let logs = cluster.stderr();
    assert!(before > 0, "v1 served before");
    assert!(logs.contains("upgrade_handed_over"), "{logs}");
    // After the old master's exit, only the new release answers.
    for _ in 0..20 {
        let (build, _) = exchange(&mut connect(cluster.port).unwrap(), true).unwrap();
        assert_eq!(build, "v2");
    }
    let status = cluster.status();
    assert_eq!(status["ready"], 2, "{status}");
    // The new master stops cleanly when asked, and the socket file goes with it.
    let out = cluster.ctl(&["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.wait_until("the new master is gone", |_| !is_alive(new));
    assert!(!cluster.path("ctl.sock").exists());
}

/// An upgrade to a `clutch` file that exits at start: `clutch upgrade` exits 1 with the
/// cause, the old master keeps serving, no request failed.
#[test]
fn an_upgrade_to_a_binary_that_exits_at_start_changes_nothing() {
    let bin = tempfile::tempdir().unwrap();
    let copy = bin.path().join("clutch");
    common::copy_executable(Path::new(CLUTCH), &copy);
    let cluster = Cluster::start(&copy, &[]);
    let old = cluster.child.id();
    let load = Load::start(cluster.port, 4);
    assert!(load.more(50));
    deploy(&copy, "#!/bin/sh\necho broken release >&2\nexit 1\n", 0o755);
    let out = cluster.ctl(&["upgrade"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "clutch upgrade: {stderr}");
    assert!(
        stderr.contains("exited before its workers served (exit code 1)"),
        "the cause: {stderr}"
    );
    assert!(load.more(100), "still served");
    let (_, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert_eq!(master_pid(&cluster), Some(old), "the old master answers");
    assert!(is_alive(old));
    assert_eq!(cluster.status()["ready"], 2);
    assert_eq!(cluster.events("worker_exit").len(), 0, "no worker stopped");
}

/// An upgrade whose new workers never become ready: the new master is stopped at the
/// upgrade's timeout (boot timeout + probation + 5 s), `clutch upgrade` exits 1 with the
/// cause, a second USR2 meanwhile is refused with a log line, the old master keeps
/// serving, no request failed, and nothing the new master started is left.
#[test]
fn an_upgrade_whose_workers_never_become_ready_changes_nothing() {
    // Long enough for Python to boot on a loaded machine; the upgrade then times out after
    // 8 s + the 0.5 s probation + 5 s.
    let mut cluster = Cluster::start(Path::new(CLUTCH), &["--boot-timeout", "8s"]);
    let old = cluster.child.id();
    let load = Load::start(cluster.port, 4);
    assert!(load.more(50));
    deploy(&cluster.path("worker.py"), NEVER_READY, 0o644);
    let control = cluster.path("ctl.sock");
    let upgrade = std::thread::spawn(move || {
        Command::new(CLUTCH)
            .args(["upgrade", "--control"])
            .arg(control)
            .output()
            .unwrap()
    });
    cluster.wait_until("the new master runs", |c| {
        !c.events("upgrade_spawned").is_empty()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    cluster.wait_until("the second USR2 is refused", |c| {
        c.stderr().contains("an upgrade is already under way")
    });
    let out = upgrade.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "clutch upgrade: {stderr}");
    assert!(
        stderr.contains("did not all become ready and pass probation"),
        "the cause: {stderr}"
    );
    assert!(load.more(100));
    let (_, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert_eq!(master_pid(&cluster), Some(old));
    let new = cluster.events("upgrade_spawned")[0]["fields"]["pid"]
        .as_u64()
        .or(cluster.events("upgrade_spawned")[0]["pid"].as_u64())
        .unwrap() as u32;
    assert!(!is_alive(new), "the new master is gone");
    // Every worker the new master started is gone too: only the old two are ours.
    let ours = cluster.marker();
    let started: Vec<u32> = cluster
        .events("worker_started")
        .iter()
        .filter_map(|l| l["fields"]["pid"].as_u64().or(l["pid"].as_u64()))
        .map(|p| p as u32)
        .collect();
    let live: Vec<u32> = started
        .into_iter()
        .filter(|&p| common::is_ours(p, &ours))
        .collect();
    assert_eq!(live.len(), 2, "only the old workers: {live:?}");
    assert_eq!(cluster.status()["ready"], 2);
}

/// Under a service manager (a fake one: a datagram socket as `NOTIFY_SOCKET`, read all
/// the time as systemd does): `RELOADING=1` when the upgrade begins, then one message
/// `MAINPID=<the new master>` with `READY=1`, no `STOPPING=1` from the old master, and
/// from then on the new master speaks to the service manager itself (its watchdog pings
/// go on after the old master is gone).
#[test]
fn under_a_service_manager_the_unit_follows_the_new_master() {
    use std::os::unix::net::UnixDatagram;
    let sockets = tempfile::tempdir().unwrap();
    let notify_path = sockets.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify_path).unwrap();
    let (sender, notifications) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = systemd.recv(&mut buf) {
            if sender
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let notify = notify_path.display().to_string();
    let mut cluster = Cluster::start_with(
        Path::new(CLUTCH),
        &[],
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "400000")],
    );
    let old = cluster.child.id();
    let mut received: Vec<String> = Vec::new();
    let expect = |what: &dyn Fn(&str) -> bool, received: &mut Vec<String>| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = received.iter().position(|m| what(m)) {
                return received.drain(..=i).next_back().unwrap();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match notifications.recv_timeout(left) {
                Ok(message) => received.push(message),
                Err(_) => panic!("not received; got {received:?}"),
            }
        }
    };
    expect(&|m| m.contains("READY=1"), &mut received);
    let out = cluster.ctl(&["upgrade"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new: u32 = stdout
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a pid in {stdout:?}"));
    let reloading = expect(&|m| m.contains("RELOADING=1"), &mut received);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let handover = expect(&|m| m.contains("MAINPID="), &mut received);
    assert_eq!(
        handover,
        format!("MAINPID={new}\nREADY=1"),
        "one message, naming the new master"
    );
    cluster.wait_until("the old master is gone", |_| !is_alive(old));
    while let Ok(message) = notifications.try_recv() {
        received.push(message);
    }
    assert!(
        !received.iter().any(|m| m.contains("STOPPING=1")),
        "the old master's stop is not the service's: {received:?}"
    );
    // Pings after the old master's exit can only be the new master's.
    received.clear();
    expect(&|m| m == "WATCHDOG=1", &mut received);
    let out = cluster.ctl(&["stop"]);
    assert!(out.status.success());
    let stopping = expect(&|m| m.contains("STOPPING=1"), &mut received);
    assert_eq!(stopping, "STOPPING=1", "the new master's own stop");
    cluster.wait_until("the new master is gone", |_| !is_alive(new));
}
