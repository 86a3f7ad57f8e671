//! What a master leaves behind: nothing after any exit it returns through (a clean
//! stop, the crash breaker, a startup failure); no notify socket at all after a SIGKILL
//! (they are in the abstract namespace, gone with the master's descriptors); and what a
//! SIGKILLed master did leave is cleaned at the next start: its socket files are
//! replaced, and the notify directory of a master with `--notify-sockets directory` (or
//! of an older version) is removed. And a worker's notify socket, which may go to the
//! next worker, carries nothing of the worker before: no descendant of it speaks there.
//!
//! Every run points `XDG_RUNTIME_DIR` at a temporary directory of its own, so the test
//! owns the notify directory's parent and sees exactly what is in it.

#[path = "../../tests/tests/common/procs.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{wait_gone, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

/// The test's directory: `runtime/` is the master's `XDG_RUNTIME_DIR`; the sockets and
/// each run's stderr are beside it.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runtime")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runtime(&self) -> PathBuf {
        self.path("runtime")
    }

    /// The notify directories in the runtime directory.
    fn notify_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.runtime())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("clutch-"))
            })
            .collect();
        dirs.sort();
        dirs
    }

    /// `clutch run --log-format json ARGS`, stderr to `stderr-<n>`.
    fn clutch(&self, run: usize, args: &[&str]) -> Master {
        let stderr = self.path(&format!("stderr-{run}"));
        let child = Command::new(CLUTCH)
            .arg("run")
            .args(["--log-format", "json"])
            .args(args)
            .env("XDG_RUNTIME_DIR", self.runtime())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Master { child, stderr }
    }

    /// A cluster of one `sleep` worker on a unix listener and a control socket here.
    fn cluster(&self, run: usize) -> Master {
        self.cluster_with(run, &[])
    }

    /// [`cluster`](Self::cluster), with `extra` flags.
    fn cluster_with(&self, run: usize, extra: &[&str]) -> Master {
        let http = format!("unix:{}", self.path("http.sock").display());
        let control = self.path("ctl.sock").display().to_string();
        let mut args = vec!["--workers", "1", "-l", &http, "--control", &control];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sleep", "300"]);
        self.clutch(run, &args)
    }

    fn assert_clean(&self, after: &str) {
        assert_eq!(self.notify_dirs(), Vec::<PathBuf>::new(), "after {after}");
        for name in ["http.sock", "ctl.sock"] {
            assert!(
                std::fs::symlink_metadata(self.path(name)).is_err(),
                "{name} is left after {after}"
            );
        }
    }
}

struct Master {
    child: Child,
    stderr: PathBuf,
}

impl Master {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (bounded) until `condition` holds on the log lines.
    fn wait_log(&mut self, what: &str, condition: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition(&self.logs()) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the master exited ({status}) before {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PATIENCE:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `n` workers are ready; their pids.
    fn wait_ready(&mut self, n: usize) -> Vec<u32> {
        self.wait_log("ready workers", |logs| {
            logs.iter().filter(|l| l["event"] == "worker_ready").count() >= n
        });
        self.logs()
            .iter()
            .filter(|l| l["event"] == "worker_started")
            .filter_map(|l| l["pid"].as_u64())
            .map(|pid| pid as u32)
            .collect()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the master did not exit in {PATIENCE:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// The abstract names in `/proc/net/unix` (`@` for the leading NUL) that begin with
/// `prefix`.
fn abstract_names(prefix: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// A worker's `NOTIFY_SOCKET`, from its environment.
fn notify_socket_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|value| String::from_utf8(value.to_vec()).unwrap())
        .unwrap_or_else(|| panic!("worker {pid} has no NOTIFY_SOCKET"))
}

/// The default: each worker's notify socket is an abstract name of its master's, one per
/// live worker (a dead worker's goes to its replacement where a cgroup proved the tree
/// gone, else it is closed), and all of them gone with a SIGKILLed master. No directory is made; the next master starts as if nothing was.
#[test]
fn a_sigkilled_master_leaves_no_notify_socket_behind() {
    let place = Place::new();
    let mut first = place.cluster(1);
    let workers = first.wait_ready(1);
    assert_eq!(workers.len(), 1, "{}", first.stderr());
    let prefix = format!("@clutch/{}/", first.pid());
    let socket = notify_socket_of(workers[0]);
    assert!(socket.starts_with(&prefix), "{socket}");
    assert!(socket.ends_with("/worker"), "{socket}");
    assert_eq!(abstract_names(&prefix), vec![socket.clone()]);
    assert_eq!(place.notify_dirs(), Vec::<PathBuf>::new(), "no directory");

    // A worker that dies leaves no name behind: its replacement's is the only one.
    kill(Pid::from_raw(workers[0] as i32), Signal::SIGKILL).unwrap();
    let pids = first.wait_ready(2);
    let replacement = *pids.iter().find(|p| !workers.contains(p)).unwrap();
    let second_socket = notify_socket_of(replacement);
    assert!(second_socket.starts_with(&prefix), "{second_socket}");
    assert_eq!(abstract_names(&prefix), vec![second_socket]);

    first.signal(Signal::SIGKILL);
    first.wait_exit();
    // Gone with the master's descriptors, before its workers (which hold only the name).
    assert_eq!(abstract_names(&prefix), Vec::<String>::new());
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    wait_gone(&pids, PATIENCE).expect("the workers are gone");
    assert_eq!(place.notify_dirs(), Vec::<PathBuf>::new());

    // The next start binds the same socket paths (the files left are stale).
    let mut second = place.cluster(2);
    second.wait_ready(1);
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit().code(), Some(0), "{}", second.stderr());
    place.assert_clean("a clean stop");
}

/// A notify socket speaks for one worker at a time. Worker 1 leaves a descendant, in a
/// session of its own (out of its process group), that says READY=1 on worker 1's socket
/// every 5 ms; then worker 1 crashes, past its probation. Its replacement never
/// says READY=1 itself, so it must not be counted ready: the master's boot timeout fires
/// for it. With cgroups (as root) the replacement gets worker 1's socket once the tree
/// read `populated 0`, so the descendant has died first; without, it gets a new one and
/// the descendant is hunted as an orphan.
#[test]
fn an_ended_workers_descendant_cannot_speak_for_the_next_worker() {
    const WORKER: &str = r#"
import os, socket, sys, time
n = os.environ["NOTIFY_SOCKET"]
a = "\0" + n[1:] if n[0] == "@" else n
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m):
    try:
        s.sendto(m, a)
    except OSError:
        time.sleep(0.001)
if os.environ["CLUTCH_WORKER_ID"] == "1":
    if os.fork() == 0:
        os.setsid()
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        while True:  # not a flood, which a hand-over would refuse: a steady voice
            say(b"READY=1")
            time.sleep(0.005)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    say(b"READY=1")
    time.sleep(0.6)
    os._exit(1)
time.sleep(300)
"#;
    let place = Place::new();
    let speaker = place.path("speaker");
    let speaker_arg = speaker.display().to_string();
    let mut master = place.clutch(
        1,
        &[
            "--workers",
            "1",
            "--ready",
            "notify",
            "--min-uptime",
            "100ms",
            "--boot-timeout",
            "1500ms",
            "--",
            "python3",
            "-c",
            WORKER,
            &speaker_arg,
        ],
    );
    let worker = |logs: &[Value], event: &str, id: u64| {
        logs.iter()
            .any(|l| l["event"] == event && l["worker"].as_u64() == Some(id))
    };
    master.wait_log("worker 2's boot timeout (or readiness)", |logs| {
        worker(logs, "worker_boot_timed_out", 2) || worker(logs, "worker_ready", 2)
    });
    let logs = master.logs();
    assert!(worker(&logs, "worker_died", 1), "{}", master.stderr());
    assert!(
        !worker(&logs, "worker_ready", 2),
        "worker 1's descendant spoke for worker 2:\n{}",
        master.stderr()
    );
    let speaker: u32 = std::fs::read_to_string(&speaker).unwrap().parse().unwrap();
    let gone = wait_gone(&[speaker], PATIENCE);
    master.signal(Signal::SIGTERM);
    master.wait_exit();
    if gone.is_err() {
        let _ = kill(Pid::from_raw(speaker as i32), Signal::SIGKILL);
    }
    gone.expect("worker 1's descendant ended with its tree");
}

/// `--notify-sockets directory`: a SIGKILLed master leaves its directory, and the next
/// master (in the default mode, which makes none) removes it, as it would an older
/// version's.
#[test]
fn a_sigkilled_masters_notify_directory_is_removed_at_the_next_start() {
    let place = Place::new();
    let mut first = place.cluster_with(1, &["--notify-sockets", "directory"]);
    let workers = first.wait_ready(1);
    assert_eq!(workers.len(), 1, "{}", first.stderr());
    let dirs = place.notify_dirs();
    assert_eq!(dirs.len(), 1, "one notify directory: {dirs:?}");
    let old = dirs[0].clone();
    assert!(old
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(&format!("clutch-{}-", first.pid())));
    assert!(notify_socket_of(workers[0]).starts_with(old.to_str().unwrap()));

    first.signal(Signal::SIGKILL);
    first.wait_exit();
    // The workers die of PR_SET_PDEATHSIG; kill them too, so nothing depends on it here.
    for &pid in &workers {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    wait_gone(&workers, PATIENCE).expect("the workers are gone");
    if !is_dir(&old) {
        // Something that outlives the master (a keeper process) removed it already: put
        // it back as a keeper killed with the master would have left it, so that the
        // next start's cleaning is what is tested.
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
    }

    // The next start binds the same socket paths (the files left are stale) and removes
    // the old directory.
    let mut second = place.cluster(2);
    second.wait_ready(1);
    assert!(
        !is_dir(&old),
        "the dead master's notify directory is still there"
    );
    assert_eq!(place.notify_dirs(), Vec::<PathBuf>::new());
    assert!(second.logs().iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.contains("removed the notify directory a dead master left"))));

    // And a clean stop leaves nothing.
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit().code(), Some(0), "{}", second.stderr());
    place.assert_clean("a clean stop");
}

#[test]
fn a_live_masters_sockets_and_directory_are_left_alone() {
    let place = Place::new();
    let mut first = place.cluster_with(1, &["--notify-sockets", "directory"]);
    first.wait_ready(1);
    let dirs = place.notify_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");

    // The same unix listener: refused, and the live one's files stay.
    let mut second = place.cluster(2);
    assert_eq!(second.wait_exit().code(), Some(1), "{}", second.stderr());
    assert!(
        second.stderr().contains("another process listens"),
        "{}",
        second.stderr()
    );
    assert_eq!(place.notify_dirs(), dirs);
    assert!(place.path("http.sock").exists() && place.path("ctl.sock").exists());
    assert!(std::os::unix::net::UnixStream::connect(place.path("http.sock")).is_ok());

    // A master with other sockets starts next to it and leaves its directory alone (its
    // own sockets are abstract: no directory).
    let other = format!("unix:{}", place.path("other.sock").display());
    let mut third = place.clutch(3, &["--workers", "1", "-l", &other, "--", "sleep", "300"]);
    third.wait_ready(1);
    assert_eq!(place.notify_dirs(), dirs);
    third.signal(Signal::SIGTERM);
    assert_eq!(third.wait_exit().code(), Some(0), "{}", third.stderr());
    assert_eq!(place.notify_dirs(), dirs);
    assert!(!place.path("other.sock").exists());

    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait_exit().code(), Some(0), "{}", first.stderr());
    place.assert_clean("a clean stop");
}

#[test]
fn the_crash_breaker_and_startup_failures_leave_nothing() {
    let place = Place::new();
    let http = format!("unix:{}", place.path("http.sock").display());
    let control = place.path("ctl.sock").display().to_string();

    // Every worker fails to boot: the breaker ends the master with 3.
    let mut breaker = place.clutch(
        1,
        &[
            "--workers",
            "1",
            "--ready",
            "notify",
            "-l",
            &http,
            "--control",
            &control,
            "--",
            "false",
        ],
    );
    assert_eq!(breaker.wait_exit().code(), Some(3), "{}", breaker.stderr());
    place.assert_clean("the crash breaker");

    // The control socket cannot be created (a file is in the way) after the listener
    // was bound: exit 1, and the listener's file is removed.
    let blocked = place.path("blocked");
    std::fs::write(&blocked, "x").unwrap();
    let mut startup = place.clutch(
        2,
        &[
            "-l",
            &http,
            "--control",
            &blocked.display().to_string(),
            "--",
            "sleep",
            "300",
        ],
    );
    assert_eq!(startup.wait_exit().code(), Some(1), "{}", startup.stderr());
    assert!(
        startup.stderr().contains("control socket"),
        "{}",
        startup.stderr()
    );
    assert_eq!(std::fs::read(&blocked).unwrap(), b"x");
    place.assert_clean("a startup failure");

    // The second listener cannot be bound: the first one's file is removed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
    let mut busy = place.clutch(3, &["-l", &http, "-l", &port, "--", "sleep", "300"]);
    assert_eq!(busy.wait_exit().code(), Some(1), "{}", busy.stderr());
    assert!(busy.stderr().contains("in use"), "{}", busy.stderr());
    place.assert_clean("a bind failure");
}
