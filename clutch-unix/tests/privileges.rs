//! Running the workers as another user, in another directory, with another umask and
//! environment — end to end, with a real root master and real `nobody` workers.
//!
//! What each worker got is read from the outside (`/proc/<pid>/status`, `cwd`,
//! `environ`) or written by the worker itself into a report file. The cases that change
//! users need root and say so when they are skipped; CI runs as root.
//!
//! Every wait is on a condition with [`PATIENCE`]; every process is cleaned up by pid.
//! Whatever a `nobody` worker must reach (its script, its report directory, the notify
//! directory's parent) is made reachable explicitly: `tempfile` makes 0700 directories.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{is_alive, skipped, wait_gone, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{Master, CLUTCH};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `true` (and a line on stderr saying so) when the test cannot run here.
fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    skipped(&format!(
        "{test}: skipped: not root (switching the workers' user needs a root master)"
    ));
    true
}

/// A temporary directory anyone may enter (and, with `0o777`, write to).
fn open_dir(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), mode);
    dir
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The `Uid:`, `Gid:`, `Groups:` and `Umask:` lines of `/proc/<pid>/status`.
fn status_of(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| matches!(*key, "Uid" | "Gid" | "Groups" | "Umask"))
        .map(|(key, value)| {
            (
                key.to_owned(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn environ_of(pid: u32) -> BTreeMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A worker in Python (the system's, which `nobody` can run: not a shim under /root)
/// that looks at what it may do, writes a report to `$REPORTS/<pid>`, says `READY=1`
/// itself, and serves `ok` on fd 3.
const WORKER: &str = r#"
import ctypes, os, socket
master = os.getppid()
report = {}
try:
    os.kill(master, 0)
    report["signal_master"] = "allowed"
except PermissionError:
    report["signal_master"] = "denied"
try:
    open("/proc/%d/environ" % master, "rb").read()
    report["read_master_environ"] = "allowed"
except PermissionError:
    report["read_master_environ"] = "denied"
libc = ctypes.CDLL(None, use_errno=True)
signal = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(signal))  # PR_GET_PDEATHSIG
report["pdeathsig"] = str(signal.value)
report["master"] = str(master)
path = os.path.join(os.environ["REPORTS"], str(os.getpid()))
with open(path + ".tmp", "w") as f:
    f.write("".join("%s=%s\n" % kv for kv in report.items()))
os.rename(path + ".tmp", path)
n = os.environ["NOTIFY_SOCKET"]
n = "\0" + n[1:] if n and n[0] == "@" else n  # sd_notify: "@" is the abstract namespace
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", n)
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
    c.close()
"#;

/// A root master with `workers` [`WORKER`]s as `nobody`, `--ready notify`.
struct NobodyCluster {
    master: Master,
    /// Where the workers write their reports (0777).
    reports: PathBuf,
}

impl NobodyCluster {
    fn start(workers: &str, listen: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        // The master's directory (its control socket, its stderr) stays private; the
        // workers get their own, open one.
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(dir.path(), 0o711);
        chmod(&shared, 0o755);
        let script = shared.join("worker.py");
        std::fs::write(&script, WORKER).unwrap();
        let reports = shared.join("reports");
        std::fs::create_dir(&reports).unwrap();
        chmod(&reports, 0o777);
        let listen = listen.replace("DIR", &dir.path().display().to_string());
        let mut args: Vec<OsString> = [
            "-w",
            workers,
            "--ready",
            "notify",
            "--user",
            "nobody",
            "--log-format",
            "json",
            "-l",
            &listen,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["--", "/usr/bin/python3"])
        .map(Into::into)
        .collect();
        args.push(script.into());
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut all_envs = vec![("REPORTS", reports.to_str().unwrap().to_owned())];
        all_envs.extend(envs.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let all_envs: Vec<(&str, &str)> = all_envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let master = Master::spawn(dir, &args, Stdio::from(stderr), &all_envs);
        let n: usize = workers.parse().unwrap();
        let mut cluster = Self { master, reports };
        cluster
            .master
            .wait_until("every worker is ready", |m| m.ready() == n as u64);
        cluster
    }

    /// Worker `pid`'s report (it is written before READY=1, so it is there by now).
    fn report(&self, pid: u32) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.reports.join(pid.to_string()))
            .unwrap_or_else(|e| panic!("worker {pid}'s report: {e}"));
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.master.path("stderr")).unwrap_or_default()
    }

    /// The TCP port, from the master's "listening on" line.
    fn port(&self) -> u16 {
        self.stderr()
            .lines()
            .find_map(|l| {
                let rest = &l[l.find("listening on 127.0.0.1:")? + 23..];
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .expect("a listening line")
    }

    /// The keeper: the master's child named `clutch-keeper`.
    fn keeper(&self) -> u32 {
        let master = self.master.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap();
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "clutch-keeper")
            })
            .expect("the master has a keeper")
    }
}

/// Root master, `nobody` workers on a TCP port the master bound: each worker has
/// nobody's uid, gid and groups (everywhere: real, effective, saved, filesystem), said
/// READY=1 through its notify socket, serves, and can neither signal nor inspect the
/// master. The master itself stays root.
#[test]
fn workers_run_as_nobody_say_ready_and_cannot_touch_the_master() {
    if skip_unless_root("workers_run_as_nobody_say_ready_and_cannot_touch_the_master") {
        return;
    }
    // Root's runtime directory is private (0700, as /run/user/0 is): the notify
    // directory must go where nobody can reach it, and does.
    let private = tempfile::tempdir().unwrap();
    chmod(private.path(), 0o700);
    let mut cluster = NobodyCluster::start(
        "2",
        "127.0.0.1:0",
        &[],
        &[("XDG_RUNTIME_DIR", private.path().to_str().unwrap())],
    );
    let pids = cluster.master.worker_pids();
    assert_eq!(pids.len(), 2);
    let nobody = format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}");
    for &pid in &pids {
        let status = status_of(pid);
        assert_eq!(status["Uid"], nobody, "worker {pid}: {status:?}");
        assert_eq!(status["Gid"], nobody, "worker {pid}: {status:?}");
        assert_eq!(
            status["Groups"],
            NOBODY.to_string(),
            "worker {pid}: {status:?}"
        );
        let report = cluster.report(pid);
        assert_eq!(report["master"], cluster.master.child.id().to_string());
        assert_eq!(
            report["signal_master"], "denied",
            "worker {pid}: {report:?}"
        );
        assert_eq!(
            report["read_master_environ"], "denied",
            "worker {pid}: {report:?}"
        );
        // The parent-death signal survived the uid change (it is set after it).
        assert_eq!(report["pdeathsig"], "9", "worker {pid}: {report:?}");
        let env = environ_of(pid);
        assert_eq!(env["USER"], "nobody");
        assert_eq!(env["LOGNAME"], "nobody");
        assert_eq!(env["HOME"], "/nonexistent");
        // In the abstract namespace: nothing of root's private runtime directory, or of
        // any directory, is needed to reach it.
        let socket = &env["NOTIFY_SOCKET"];
        let prefix = format!("@clutch/{}/", cluster.master.child.id());
        assert!(socket.starts_with(&prefix), "{socket}");
    }
    let master = status_of(cluster.master.child.id());
    assert_eq!(master["Uid"], "0 0 0 0", "the master keeps its privileges");
    // They serve on the port root bound.
    let port = cluster.port();
    let deadline = Instant::now() + PATIENCE;
    while common::get(port).map(|body| body != "ok").unwrap_or(true) {
        assert!(Instant::now() < deadline, "no answer on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A replacement is dropped the same way.
    cluster.master.kill_worker_and_wait(pids[0]);
    let replacement = *cluster
        .master
        .worker_pids()
        .iter()
        .find(|p| !pids.contains(p))
        .unwrap();
    assert_eq!(status_of(replacement)["Uid"], nobody);
    assert_eq!(cluster.master.stop(), 0, "{}", cluster.stderr());
}

/// Sends `READY=1` to `socket` (a path or `@name`) from python run by `setpriv` as
/// `uid` (group nobody, no other groups); python's exit code.
fn send_ready_as(uid: u32, socket: &str) -> Option<i32> {
    let script = "import socket, sys; n = sys.argv[1]; \
        n = '\\0' + n[1:] if n[0] == '@' else n; \
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', n)";
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
            socket,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
}

/// Another user can send to a `nobody` worker's abstract notify socket, and is dropped:
/// the master logs it. The workers' user is still heard.
#[test]
fn another_users_notification_to_a_nobody_worker_is_dropped_and_logged() {
    if skip_unless_root("another_users_notification_to_a_nobody_worker_is_dropped_and_logged") {
        return;
    }
    let mut cluster = NobodyCluster::start("1", "127.0.0.1:0", &[], &[]);
    let pid = cluster.master.worker_pids()[0];
    let socket = environ_of(pid)["NOTIFY_SOCKET"].clone();
    assert!(socket.starts_with("@clutch/"), "{socket}");
    // Delivered (nothing stops it at the kernel), then dropped for its credentials.
    assert_eq!(send_ready_as(NOBODY - 1, &socket), Some(0));
    let wanted = "a notification from another user (pid ";
    let uid = format!("uid {})", NOBODY - 1);
    let deadline = Instant::now() + PATIENCE;
    while !cluster
        .stderr()
        .lines()
        .any(|l| l.contains(wanted) && l.contains(&uid))
    {
        assert!(
            Instant::now() < deadline,
            "not logged:\n{}",
            cluster.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The workers' user is heard (a second READY=1 is harmless).
    assert_eq!(send_ready_as(NOBODY, &socket), Some(0));
    assert_eq!(cluster.master.ready(), 1);
    assert_eq!(cluster.master.stop(), 0, "{}", cluster.stderr());
}

/// `--notify-sockets directory` with `nobody` workers: each socket file is nobody's,
/// mode 0600, in a `root:nobody` 0710 directory outside root's private runtime
/// directory; another user is refused by the kernel, the workers' user is heard.
#[test]
fn nobody_workers_with_a_notify_directory_reach_their_socket_files() {
    if skip_unless_root("nobody_workers_with_a_notify_directory_reach_their_socket_files") {
        return;
    }
    let private = tempfile::tempdir().unwrap();
    chmod(private.path(), 0o700);
    let mut cluster = NobodyCluster::start(
        "2",
        "127.0.0.1:0",
        &["--notify-sockets", "directory"],
        &[("XDG_RUNTIME_DIR", private.path().to_str().unwrap())],
    );
    let pids = cluster.master.worker_pids();
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        let env = environ_of(pid);
        let socket = Path::new(&env["NOTIFY_SOCKET"]);
        assert!(
            !socket.starts_with(private.path()),
            "the notify socket {} is in a directory nobody cannot enter",
            socket.display()
        );
        let meta = std::fs::symlink_metadata(socket).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o600));
        let dir = std::fs::metadata(socket.parent().unwrap()).unwrap();
        assert_eq!(
            (dir.uid(), dir.gid(), dir.mode() & 0o777),
            (0, NOBODY, 0o710)
        );
        let socket = socket.to_str().unwrap();
        assert_eq!(send_ready_as(NOBODY - 1, socket), Some(1), "refused");
        assert_eq!(send_ready_as(NOBODY, socket), Some(0), "heard");
    }
    assert_eq!(cluster.master.stop(), 0, "{}", cluster.stderr());
}

/// The workers die with a SIGKILLed master of their parent-death signal alone: the
/// keeper (which would kill them too) is killed first.
#[test]
fn nobody_workers_die_with_a_killed_master() {
    if skip_unless_root("nobody_workers_die_with_a_killed_master") {
        return;
    }
    // The notify directory the dead master leaves goes with this test's directory.
    let runtime = open_dir(0o755);
    let mut cluster = NobodyCluster::start(
        "2",
        "unix:DIR/http.sock",
        &[],
        &[("XDG_RUNTIME_DIR", runtime.path().to_str().unwrap())],
    );
    let pids = cluster.master.worker_pids();
    assert_eq!(pids.len(), 2);
    let keeper = cluster.keeper();
    kill(Pid::from_raw(keeper as i32), Signal::SIGKILL).unwrap();
    // (The master reaps it: gone once not even a zombie.)
    assert_eq!(wait_gone(&[keeper], PATIENCE), Ok(()), "the keeper");
    assert!(
        pids.iter().all(|&p| is_alive(p)),
        "the workers outlived the keeper"
    );
    cluster.master.signal(Signal::SIGKILL);
    cluster.master.wait_exit();
    let left = wait_gone(&pids, PATIENCE);
    for pid in left.clone().err().unwrap_or_default() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    assert_eq!(left, Ok(()), "nobody workers outlived their master");
}

/// A worker that just sleeps, for what is seen from the outside: its cwd, its umask,
/// its environment.
fn sleeper(dir: tempfile::TempDir, extra: &[&str], envs: &[(&str, &str)]) -> (Master, u32) {
    let listen = format!("unix:{}", dir.path().join("http.sock").display());
    let args: Vec<OsString> = ["-w", "1", "--ready", "exec", "-l", &listen]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["--", "/bin/sleep", "1000"])
        .map(Into::into)
        .collect();
    let mut master = Master::spawn(dir, &args, Stdio::null(), envs);
    master.wait_until("the worker is ready", |m| m.ready() == 1);
    let pid = master.worker_pids()[0];
    (master, pid)
}

#[test]
fn chdir_umask_and_env_are_what_the_worker_gets() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = open_dir(0o755);
    let workdir_path = workdir.path().canonicalize().unwrap();
    let (mut master, pid) = sleeper(
        dir,
        &[
            "--chdir",
            workdir_path.to_str().unwrap(),
            "--umask",
            "027",
            "--env",
            "ADDED=1",
            "--env",
            "INHERITED=overridden",
            "--env",
            "WITH_EQUALS=a=b",
            "--env",
            "EMPTY=",
        ],
        &[("INHERITED", "from the master"), ("ALSO_INHERITED", "yes")],
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        workdir_path
    );
    assert_eq!(status_of(pid)["Umask"], "0027");
    let env = environ_of(pid);
    assert_eq!(env["ADDED"], "1");
    assert_eq!(
        env["INHERITED"], "overridden",
        "--env wins over the master's"
    );
    assert_eq!(env["WITH_EQUALS"], "a=b");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env["ALSO_INHERITED"], "yes", "the rest is passed through");
    assert_eq!(master.stop(), 0);
}

#[test]
fn env_clear_leaves_only_what_is_asked_for_and_what_clutch_sets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, pid) = sleeper(
        dir,
        &[
            "--env-clear",
            "--env",
            "KEPT=1",
            "--env",
            "PATH=/usr/bin:/bin",
        ],
        &[("DROPPED", "1")],
    );
    let env = environ_of(pid);
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "CLUTCH_WORKER_ID",
            "CLUTCH_WORKER_SLOT",
            "KEPT",
            "LISTEN_FDNAMES",
            "LISTEN_FDS",
            "LISTEN_PID",
            "NOTIFY_SOCKET",
            "PATH",
            "WATCHDOG_PID",
            "WATCHDOG_USEC",
        ],
        "{env:?}"
    );
    assert_eq!(env["LISTEN_PID"], pid.to_string());
    // Without --chdir and --umask: the master's.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::env::current_dir().unwrap()
    );
    // (Read, not set and restored: the other tests' threads create files meanwhile.)
    let own = status_of(std::process::id());
    assert_eq!(status_of(pid)["Umask"], own["Umask"]);
    assert_eq!(master.stop(), 0);
}

/// `--chdir` is entered as the worker, `--user` with `--group`: both as asked.
#[test]
fn a_user_and_group_with_a_directory_and_umask() {
    if skip_unless_root("a_user_and_group_with_a_directory_and_umask") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let workdir = open_dir(0o755);
    let workdir_path = workdir.path().canonicalize().unwrap();
    let (mut master, pid) = sleeper(
        dir,
        &[
            "--user",
            "nobody",
            "--group",
            "12345",
            "--chdir",
            workdir_path.to_str().unwrap(),
            "--umask",
            "077",
            "--env-clear",
        ],
        &[],
    );
    let status = status_of(pid);
    assert_eq!(
        status["Uid"],
        format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}")
    );
    assert_eq!(status["Gid"], "12345 12345 12345 12345");
    assert_eq!(status["Umask"], "0077");
    // initgroups(nobody, 12345): the given group (nobody is a member of no other).
    assert_eq!(status["Groups"], "12345");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        workdir_path
    );
    let env = environ_of(pid);
    assert_eq!(env["USER"], "nobody");
    assert!(!env.contains_key("PATH"), "{env:?}");
    assert_eq!(master.stop(), 0);
}

/// `--group` alone: the master's uid, that one group, no other.
#[test]
fn a_group_alone_keeps_the_masters_uid() {
    if skip_unless_root("a_group_alone_keeps_the_masters_uid") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut master, pid) = sleeper(dir, &["--group", "nogroup"], &[]);
    let status = status_of(pid);
    assert_eq!(status["Uid"], "0 0 0 0");
    assert_eq!(
        status["Gid"],
        format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}")
    );
    assert_eq!(status["Groups"], NOBODY.to_string());
    // No user, so no USER from its entry: what the master had, if anything.
    assert_eq!(
        environ_of(pid).get("USER"),
        std::env::var("USER").ok().as_ref()
    );
    assert_eq!(master.stop(), 0);
}

/// Every mistake: one line on stderr, the exit code the README promises (2 for the
/// command line's fault, 1 for the system's), and no worker spawned.
#[test]
fn bad_settings_are_one_line_and_nothing_is_spawned() {
    let dir = open_dir(0o777);
    let marker = dir.path().join("spawned");
    let touch = format!("touch {}", marker.display());
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let file = file.display().to_string();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let private = private.display().to_string();
    let listen = format!("unix:{}", dir.path().join("http.sock").display());
    let mut cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["--user", "no-such-user-clutch"],
            2,
            "--user: no such user \"no-such-user-clutch\"".into(),
        ),
        (
            vec!["--group", "no-such-group-clutch"],
            2,
            "--group: no such group \"no-such-group-clutch\"".into(),
        ),
        (
            vec!["--user", "root", "--group", "no-such-group-clutch"],
            2,
            "no such group".into(),
        ),
        (
            vec!["--user", "4000000000"],
            2,
            "uid 4000000000 has no entry in the user database".into(),
        ),
        // -1 would mean "no change" to setresuid: never taken as a uid.
        (
            vec!["--user", "4294967295"],
            2,
            "no such user \"4294967295\"".into(),
        ),
        (vec!["--umask", "888"], 2, "'--umask <MODE>'".into()),
        (vec!["--umask", "1000"], 2, "not an octal umask".into()),
        (vec!["--umask", "rw"], 2, "not an octal umask".into()),
        (vec!["--env", "NO_EQUALS"], 2, "is not KEY=VALUE".into()),
        (vec!["--env", "=value"], 2, "is not KEY=VALUE".into()),
        (
            vec!["--env", "LISTEN_FDS=3"],
            2,
            "--env: LISTEN_FDS is set by clutch itself".into(),
        ),
        (
            vec!["--env", "NOTIFY_SOCKET=/x"],
            2,
            "NOTIFY_SOCKET is set by clutch itself".into(),
        ),
        (
            vec!["--chdir", "/no/such/dir"],
            1,
            "cannot use /no/such/dir as the workers' directory: No such file or directory".into(),
        ),
        (
            vec!["--chdir", &file],
            1,
            format!("cannot use {file} as the workers' directory: Not a directory"),
        ),
    ];
    // A program nobody may not run (behind a 0700 directory): the same kind of mistake.
    let hidden = format!("{private}/server");
    common::write_executable(
        Path::new(&hidden),
        format!("#!/bin/sh\n{touch}\n").as_bytes(),
    );
    if is_root() {
        cases.push((
            vec!["--user", "nobody", "--chdir", &private],
            1,
            format!("cannot use {private} as the workers' directory: user \"nobody\""),
        ));
        cases.push((
            vec!["--user", "nobody", "--", &hidden],
            1,
            format!("{hidden}: not executable by the workers' user, user \"nobody\""),
        ));
    }
    let run = |prefix: &[&str], args: &[&str]| {
        let mut command = Command::new(prefix.first().copied().unwrap_or(CLUTCH));
        command.args(prefix.iter().skip(1));
        if !prefix.is_empty() {
            command.arg(CLUTCH);
        }
        command.args(["run", "-l", &listen]).args(args);
        if !args.contains(&"--") {
            command.args(["--", "/bin/sh", "-c", &touch]);
        }
        command
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let check = |prefix: &[&str], args: &[&str], code: i32, needle: &str| {
        let out = run(prefix, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should say {needle:?}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {stderr:?}"
        );
        assert!(stderr.starts_with("clutch: "), "{args:?}: {stderr:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(!marker.exists(), "{args:?}: a worker was spawned");
    };
    for (args, code, needle) in &cases {
        check(&[], args, *code, needle);
    }
    // A master that is not root cannot switch: the system's limit, not the command
    // line's fault (exit 1). As root, the same master is run as nobody.
    let not_root: &[&str] = if is_root() {
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    check(
        not_root,
        &["--user", "root"],
        1,
        "that needs a master running as root, and this one runs as uid",
    );
    check(
        not_root,
        &["--group", "0"],
        1,
        "needs a master running as root",
    );
}

/// Where [`library_cluster`] works: set only in the process the test starts.
const LIBRARY_DIR: &str = "CLUTCH_PRIVILEGES_LIBRARY_DIR";

/// Library mode: the master re-executes its own program for the workers, which call
/// `Worker::ready()` as `nobody` — through a notify socket that user can reach. The
/// program is this test binary, run as [`library_cluster`] in a process of its own.
#[test]
fn library_mode_workers_say_ready_as_nobody() {
    if skip_unless_root("library_mode_workers_say_ready_as_nobody") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let nobody = clutch_unix::credentials::Credentials::resolve(Some("nobody"), None).unwrap();
    if !nobody.can_enter(exe.parent().unwrap()) {
        skipped(&format!(
            "library_mode_workers_say_ready_as_nobody: skipped: nobody cannot reach {}",
            exe.display()
        ));
        return;
    }
    let dir = open_dir(0o755);
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    chmod(&reports, 0o777);
    let mut child = Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            "library_cluster",
            "--test-threads=1",
            "--quiet",
        ])
        .env(LIBRARY_DIR, dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let control = dir.path().join("ctl.sock");
    let ask = |request| clutch_unix::control::send(&control, request, Some(PATIENCE));
    let stderr = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let deadline = Instant::now() + PATIENCE;
    let pids: Vec<u32> = loop {
        if let Ok(status) = ask(clutch_unix::control::Request::Status) {
            let pids: Vec<u32> = status["workers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|w| w["pid"].as_u64())
                .map(|p| p as u32)
                .collect();
            let reported = pids.iter().all(|p| reports.join(p.to_string()).exists());
            if status["ready"] == 2 && pids.len() == 2 && reported {
                break pids;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the library-mode master exited ({status}): {}", stderr());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the workers never became ready: {}", stderr());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for pid in &pids {
        let status = status_of(*pid);
        assert_eq!(
            status["Uid"],
            format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}")
        );
        // Written after READY=1, so maybe not yet when the master counted it.
        let report = reports.join(pid.to_string());
        let deadline = Instant::now() + PATIENCE;
        while !report.exists() {
            assert!(Instant::now() < deadline, "worker {pid} wrote no report");
            std::thread::sleep(Duration::from_millis(10));
        }
        let said = std::fs::read_to_string(&report).unwrap();
        assert_eq!(said, format!("ready as {NOBODY}"));
    }
    let stopped = ask(clutch_unix::control::Request::Stop).unwrap();
    assert_eq!(stopped["ok"], true, "{stopped}");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the master did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status}: {}", stderr());
    assert_eq!(wait_gone(&pids, PATIENCE), Ok(()));
}

/// The library-mode cluster of [`library_mode_workers_say_ready_as_nobody`]: the same
/// function is its master and, re-executed, each of its workers.
#[test]
#[ignore = "helper process, run by library_mode_workers_say_ready_as_nobody"]
fn library_cluster() {
    let dir = PathBuf::from(
        std::env::var_os(LIBRARY_DIR).expect("run by library_mode_workers_say_ready_as_nobody"),
    );
    let mut cluster = clutch_unix::Cluster::builder();
    cluster
        .workers(2)
        .user("nobody")
        .title(false)
        .readiness(clutch_unix::Readiness::Notify)
        .control(dir.join("ctl.sock"))
        .listen(format!("unix:{}", dir.join("lib.sock").display()));
    match cluster.start().unwrap() {
        clutch_unix::Role::Master(master) => {
            assert_eq!(master.run().unwrap(), clutch_unix::ExitReason::Clean);
        }
        clutch_unix::Role::Worker(worker) => {
            worker.ready().unwrap();
            let uid = rustix::process::getuid().as_raw();
            // Whole or not at all: the test may look as soon as the master counts it ready.
            let report = dir.join("reports").join(std::process::id().to_string());
            let partial = report.with_extension("tmp");
            std::fs::write(&partial, format!("ready as {uid}")).unwrap();
            std::fs::rename(&partial, &report).unwrap();
            worker.shutdown().wait();
        }
    }
}

/// `--print-config` refuses what is the settings' fault (an unknown user, from any
/// source: exit 2, naming the source) and leaves what the system says (the master's
/// privilege, the directory) to the start, which it does not attempt.
#[test]
fn print_config_refuses_an_unknown_user_and_leaves_the_system_to_the_start() {
    let print = |args: &[&str], envs: &[(&str, &str)]| {
        Command::new(CLUTCH)
            .args(["run", "--print-config"])
            .args(args)
            .args(["--", "/bin/true"])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = print(&[], &[("CLUTCH_USER", "no-such-user-clutch")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--user: no such user \"no-such-user-clutch\" (--user: env CLUTCH_USER)"),
        "{stderr}"
    );
    let out = print(&["--umask", "027", "--chdir", "/no/such/dir"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("umask = \"027\""), "{text}");
}
