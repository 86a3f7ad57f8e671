//! Containment end to end: every process a worker starts ends with the cluster.
//!
//! Each worker below is a shell script that leaves behind a background child holding
//! the listening socket (fd 3), a `setsid`'d double-forked daemon, and (as root) a child
//! that changed its uid to `nobody` — then runs its "server". Whatever ends the worker
//! (a graceful stop, the forced kill, a SIGKILL of the worker alone, a SIGKILL of the
//! master), none of its descendants may be left, and the port must refuse connections.
//! Every case runs twice: with worker cgroups, and with the process-group fallback
//! (`CLUTCH_CONTAINMENT=group`).

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use common::{is_ours, kill_if_ours, skipped, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{Master, CLUTCH};

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// The worker: three kinds of descendants, each writing its pid to `$PIDS`, then the
/// "server" (`sleep`, or whatever `$SERVER` says), as a child of the shell (no `exec`).
const WORKER: &str = r#"#!/bin/sh
sleep 1000 &
echo "background $!" >> "$PIDS"
setsid sh -c 'sleep 1001 & echo "daemon $!" >> "$PIDS"' &
if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 1002 &
    echo "uid $!" >> "$PIDS"
fi
eval "${IGNORE_TERM:-}"
sleep 1003 &
echo "server $!" >> "$PIDS"
wait
"#;

/// A cluster of [`WORKER`]s, on a TCP port the OS chose.
struct Cluster {
    master: Master,
}

impl Cluster {
    fn start(mode: &str, workers: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let each = if is_root() { 4 } else { 3 };
        Self::start_with(WORKER, each, mode, workers, extra, envs)
    }

    /// A cluster of `script`s, each of which writes `each` descendants to `$PIDS`.
    fn start_with(
        script: &str,
        each: usize,
        mode: &str,
        workers: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.sh");
        std::fs::write(&path, script).unwrap();
        let script = path;
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let pids = dir.path().join("pids");
        let runtime = dir.path().to_owned();
        let mut args: Vec<OsString> = ["-w", workers, "--ready", "exec", "--log-format", "json"]
            .into_iter()
            .chain(["-l", "127.0.0.1:0"])
            .chain(extra.iter().copied())
            .chain(["--", "/bin/sh"])
            .map(Into::into)
            .collect();
        args.push(script.into());
        let mut all_envs = vec![
            ("PIDS", pids.to_str().unwrap()),
            ("CLUTCH_CONTAINMENT", mode),
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        ];
        all_envs.extend(envs.iter().copied());
        let master = Master::spawn(dir, &args, Stdio::from(stderr), &all_envs);
        let mut cluster = Self { master };
        let n: u64 = workers.parse().unwrap();
        let expect = n as usize * each;
        cluster
            .master
            .wait_until("every worker's descendants are running", |m| {
                m.ready() == n && descendants_in(&m.path("pids"), None).len() >= expect
            });
        cluster
    }

    fn descendants(&self) -> Vec<u32> {
        descendants_in(&self.master.path("pids"), None)
    }

    /// The TCP port, from the master's "listening on" line.
    fn port(&self) -> u16 {
        let log = std::fs::read_to_string(self.master.path("stderr")).unwrap();
        log.lines()
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

    /// `PIDS=…`: every descendant of this test's workers has it in its environment.
    fn marker(&self) -> String {
        format!("PIDS={}", self.master.path("pids").display())
    }

    /// Waits (5 s at most) until none of `pids` is this test's process any more.
    fn wait_gone(&self, pids: &[u32]) -> Result<(), Vec<u32>> {
        gone_within(pids, &self.marker())
    }

    fn signal_master(&self, signal: Signal) {
        self.master.signal(signal);
    }

    /// Asserts that no descendant outlives a generous bound, and that the port refuses.
    fn assert_nothing_left(&self, port: u16, what: &str) {
        self.assert_left_only(None, port, what);
    }

    /// The same, but for descendants of kind `except`.
    fn assert_left_only(&self, except: Option<&str>, port: u16, what: &str) {
        let all = descendants_in(&self.master.path("pids"), except);
        assert!(!all.is_empty());
        assert_eq!(
            self.wait_gone(&all),
            Ok(()),
            "{what}: descendants left behind"
        );
        // (A descendant let off may hold the port.) A process that is gone from /proc's
        // view of its memory may still be closing its files: wait, boundedly.
        if except.is_none() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "{what}: the port still accepts connections"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Waits (5 s at most) until none of `pids` is alive with `marker` in its environment.
fn gone_within(pids: &[u32], marker: &str) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| is_ours(p, marker))
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(alive);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The descendants the workers wrote to `file`, but those of kind `but` (`daemon`, …).
fn descendants_in(file: &Path, but: Option<&str>) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(kind, _)| Some(*kind) != but)
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The master first, so that nothing is respawned; then every descendant.
        if !self.master.exited {
            let _ = self.master.child.kill();
            let _ = self.master.child.wait();
            self.master.exited = true;
        }
        let marker = self.marker();
        for pid in self.descendants() {
            kill_if_ours(pid, &marker);
        }
    }
}

const MODES: [&str; 2] = ["cgroup", "group"];

/// cgroups need a writable cgroup v2 hierarchy (root here); skipped, visibly, otherwise.
fn modes() -> Vec<&'static str> {
    if is_root() {
        MODES.to_vec()
    } else {
        skipped(
            "not root: the cgroup cases are skipped (they need a writable cgroup v2 hierarchy)",
        );
        vec!["group"]
    }
}

#[test]
fn a_graceful_stop_leaves_no_descendant() {
    for mode in modes() {
        let mut cluster = Cluster::start(mode, "2", &[], &[]);
        assert_eq!(cluster.master.status()["containment"], mode);
        let port = cluster.port();
        cluster.signal_master(Signal::SIGTERM);
        assert_eq!(cluster.master.wait_exit().code(), Some(0), "{mode}");
        cluster.assert_nothing_left(port, mode);
    }
}

#[test]
fn the_forced_kill_leaves_no_descendant() {
    for mode in modes() {
        // The shell ignores TERM (and so do the descendants it starts after the trap).
        let mut cluster = Cluster::start(
            mode,
            "1",
            &["--force-exit-timeout", "500ms"],
            &[("IGNORE_TERM", "trap '' TERM")],
        );
        let port = cluster.port();
        cluster.signal_master(Signal::SIGTERM);
        assert_eq!(cluster.master.wait_exit().code(), Some(4), "{mode}");
        cluster.assert_nothing_left(port, mode);
    }
}

#[test]
fn a_killed_worker_takes_its_descendants_with_it() {
    for mode in modes() {
        let mut cluster = Cluster::start(mode, "1", &[], &[]);
        let first = cluster.descendants();
        let worker = cluster.master.worker_pids()[0];
        kill(Pid::from_raw(worker as i32), Signal::SIGKILL).unwrap();
        assert_eq!(
            cluster.wait_gone(&first),
            Ok(()),
            "{mode}: the killed worker's descendants survived it"
        );
        cluster.master.wait_until("the worker is replaced", |m| {
            m.worker_pids().first().is_some_and(|&p| p != worker) && m.ready() == 1
        });
        let port = cluster.port();
        cluster.signal_master(Signal::SIGTERM);
        assert_eq!(cluster.master.wait_exit().code(), Some(0), "{mode}");
        cluster.assert_nothing_left(port, mode);
    }
}

/// A daemon that stays: `setsid`'d, so out of the worker's process group, and with a
/// child of its own. When the worker ends, the daemon is re-parented to the master; when
/// the master kills it, *its* child is re-parented to the master in turn — after the
/// master looked at its children. The master must look again until none is left.
const DAEMON_WITH_A_CHILD: &str = r#"#!/bin/sh
setsid sh -c 'sleep 1001 & echo "grandchild $!" >> "$PIDS"; echo "daemon $$" >> "$PIDS"; exec sleep 1002' &
exec sleep 1003
"#;

/// A daemon three generations deep, which cleaned its environment: no
/// `CLUTCH_WORKER_ID` tells the master whose it is, so (without cgroups) it lives until
/// the master's very end, and each kill there hands the master another generation.
const ANONYMOUS_DAEMON_WITH_GRANDCHILDREN: &str = r#"#!/bin/sh
env -u CLUTCH_WORKER_ID setsid sh -c '
    sh -c "sleep 1001 & echo \"grandchild \$!\" >> \"\$PIDS\"; echo \"child \$\$\" >> \"\$PIDS\"; exec sleep 1004" &
    echo "daemon $$" >> "$PIDS"
    exec sleep 1002' &
exec sleep 1003
"#;

#[test]
fn a_graceful_stop_ends_the_children_of_a_daemon() {
    for (mode, script, each) in modes().into_iter().flat_map(|mode| {
        [
            (DAEMON_WITH_A_CHILD, 2),
            (ANONYMOUS_DAEMON_WITH_GRANDCHILDREN, 3),
        ]
        .map(|(script, each)| (mode, script, each))
    }) {
        let mut cluster = Cluster::start_with(script, each, mode, "2", &[], &[]);
        let port = cluster.port();
        cluster.signal_master(Signal::SIGTERM);
        assert_eq!(cluster.master.wait_exit().code(), Some(0), "{mode}");
        cluster.assert_nothing_left(port, mode);
    }
}

#[test]
fn a_killed_worker_ends_the_children_of_its_daemon() {
    for mode in modes() {
        let mut cluster = Cluster::start_with(DAEMON_WITH_A_CHILD, 2, mode, "1", &[], &[]);
        let first = cluster.descendants();
        let worker = cluster.master.worker_pids()[0];
        kill(Pid::from_raw(worker as i32), Signal::SIGKILL).unwrap();
        assert_eq!(
            cluster.wait_gone(&first),
            Ok(()),
            "{mode}: the killed worker's daemon or its child survived it"
        );
        let port = cluster.port();
        cluster.signal_master(Signal::SIGTERM);
        assert_eq!(cluster.master.wait_exit().code(), Some(0), "{mode}");
        cluster.assert_nothing_left(port, mode);
    }
}

#[test]
fn a_killed_master_leaves_no_descendant() {
    for mode in modes() {
        let mut cluster = Cluster::start(mode, "2", &[], &[]);
        let port = cluster.port();
        cluster.signal_master(Signal::SIGKILL);
        cluster.master.wait_exit();
        // The workers die of PDEATHSIG; everything they started, of the keeper — all
        // but a setsid'd daemon without a cgroup: it left every process group, and its
        // parent (the master) is gone. The README says so. It holds the port, so the
        // port is checked once the test has killed it.
        if mode == "group" {
            cluster.assert_left_only(Some("daemon"), port, mode);
            for pid in cluster.descendants() {
                kill_if_ours(pid, &cluster.marker());
            }
        }
        cluster.assert_nothing_left(port, mode);
    }
}

/// A shell wrapper without `exec`: the server is the shell's child.
const WRAPPED: &str = r#"
import os, socket
s = socket.socket(fileno=3)
with open(os.environ["PIDS"], "a") as f:
    f.write("%d\n" % os.getpid())
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
    c.close()
"#;

#[test]
fn a_shell_wrapper_without_exec_is_rolled_and_stopped_cleanly() {
    for mode in modes() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.py");
        std::fs::write(&server, WRAPPED).unwrap();
        let pids = dir.path().join("pids");
        let control_path = dir.path().join("ctl.sock");
        let mut child = Command::new(CLUTCH)
            .args(["run", "-w", "2", "--ready", "exec", "--control"])
            .arg(&control_path)
            .arg("-l")
            .arg(format!("unix:{}", dir.path().join("http.sock").display()))
            .args(["--", "/bin/sh", "-c"])
            .arg(format!("cd / && python3 {}", server.display()))
            .env("PIDS", &pids)
            .env("CLUTCH_CONTAINMENT", mode)
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let servers = |n: usize| -> Vec<u32> {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let all: Vec<u32> = std::fs::read_to_string(&pids)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                    .collect();
                if all.len() >= n {
                    return all;
                }
                assert!(Instant::now() < deadline, "{n} servers never started");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let old = servers(2);
        let answer = control::send(&control_path, Request::Reload, Some(PATIENCE)).unwrap();
        assert_eq!(
            answer["ok"],
            true,
            "{mode}: {answer}\n{}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        );
        // The old servers (the shells' children) got SIGTERM with their shells.
        let marker = format!("PIDS={}", pids.display());
        assert_eq!(
            gone_within(&old, &marker),
            Ok(()),
            "{mode}: old servers kept serving after the rollout"
        );
        let all = servers(4);
        let stopped = control::send(&control_path, Request::Stop, Some(PATIENCE)).unwrap();
        assert_eq!(stopped["exit_code"], 0, "{stopped}");
        assert_eq!(child.wait().unwrap().code(), Some(0));
        assert_eq!(gone_within(&all, &marker), Ok(()), "{mode}");
    }
}

/// Children of `pid` in the zombie state.
fn zombie_children(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = stat.rsplit(')').next().unwrap_or_default();
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .count()
}

#[test]
fn as_pid_1_of_a_pid_namespace_no_zombie_remains() {
    if !is_root() {
        skipped("as_pid_1_of_a_pid_namespace_no_zombie_remains: skipped: not root (unshare --pid needs root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    // Each worker double-forks 20 helpers that exit at once: the kernel re-parents them
    // to PID 1 (clutch), which must reap them.
    let script = format!(
        "for i in $(seq 20); do (sh -c 'exit 0' &); done; echo >> {}; exec sleep 1000",
        done.display()
    );
    let control_path = dir.path().join("ctl.sock");
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(CLUTCH)
        .args(["run", "-w", "2", "--ready", "exec", "--control"])
        .arg(&control_path)
        .arg("-l")
        .arg(format!("unix:{}", dir.path().join("http.sock").display()))
        .args(["--", "/bin/sh", "-c", &script])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let master = loop {
        // unshare's child is clutch, PID 1 inside.
        let children =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.parse::<u32>().unwrap();
        }
        assert!(Instant::now() < deadline, "clutch never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let zombies_gone = |at_least_written: usize| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let written = std::fs::read_to_string(&done)
                .unwrap_or_default()
                .lines()
                .count();
            if written >= at_least_written && zombie_children(master) == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "zombies of PID 1: {}",
                zombie_children(master)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    zombies_gone(2);
    let stopped = control::send(&control_path, Request::Stop, Some(PATIENCE)).unwrap();
    assert_eq!(stopped["exit_code"], 0, "{stopped}");
    assert!(child.wait().unwrap().success());
}

/// Counts the SIGTERMs it gets (one line each), and exits a moment after the first.
const TERM_COUNTER: &str = r#"
import os, signal, time
def term(*_):
    with open(os.environ["PIDS"] + ".terms", "a") as f:
        f.write("term\n")
signal.signal(signal.SIGTERM, term)
with open(os.environ["PIDS"], "a") as f:
    f.write("server %d\n" % os.getpid())
while not os.path.exists(os.environ["PIDS"] + ".terms"):
    time.sleep(0.01)
time.sleep(0.3)
"#;

#[test]
fn a_graceful_stop_signals_each_process_once() {
    // A second SIGTERM means "stop now" to many servers (clutch's own worker side among
    // them): the tree gets one, whichever mechanism holds it.
    for mode in modes() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let args: Vec<OsString> = ["-w", "1", "--ready", "exec", "-l", "127.0.0.1:0", "--"]
            .into_iter()
            .chain(["python3", "-c", TERM_COUNTER])
            .map(Into::into)
            .collect();
        let runtime = dir.path().to_owned();
        let envs = [
            ("PIDS", pids.to_str().unwrap()),
            ("CLUTCH_CONTAINMENT", mode),
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        ];
        let mut master = Master::spawn(dir, &args, Stdio::null(), &envs);
        master.wait_until("the worker runs", |m| {
            !descendants_in(&m.path("pids"), None).is_empty()
        });
        master.signal(Signal::SIGTERM);
        assert_eq!(master.wait_exit().code(), Some(0), "{mode}");
        let terms = std::fs::read_to_string(format!("{}.terms", pids.display())).unwrap();
        assert_eq!(terms.lines().count(), 1, "{mode}: {terms:?}");
    }
}

/// Every worker writes its cgroup and itself (the one descendant `Cluster` waits for);
/// the first burns CPU (`date` processes: its tree's)
/// until the test has seen enough of it and creates `$PIDS.stop`; then each sleeps.
const BURN_ONCE: &str = r#"#!/bin/sh
echo "cgroup $$ $(grep "^0::" /proc/self/cgroup | cut -d: -f3)" >> "$PIDS"
echo "worker $$" >> "$PIDS"
if mkdir "$PIDS.burning" 2>/dev/null; then
    while [ ! -e "$PIDS.stop" ]; do date > /dev/null; done
    echo "burned $$" >> "$PIDS"
fi
exec sleep 1000
"#;

/// An emptied cgroup is kept for the next worker (a mkdir and an rmdir saved per
/// respawn): the replacement gets its predecessor's cgroup, with nothing of it — no
/// process, and a CPU figure that starts from zero.
#[test]
fn a_replacement_reuses_an_emptied_cgroup_with_nothing_of_its_predecessor() {
    if !is_root() {
        return skipped("not root: worker cgroups need a writable cgroup v2 hierarchy");
    }
    let cgroups = |cluster: &Cluster| -> Vec<(u32, String)> {
        std::fs::read_to_string(cluster.master.path("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("cgroup "))
            .filter_map(|l| l.split_once(' '))
            .map(|(pid, path)| (pid.parse().unwrap(), path.to_owned()))
            .collect()
    };
    let cpu_of = |m: &mut Master, pid: u32| -> Option<f64> {
        let status = m.status();
        status["workers"]
            .as_array()?
            .iter()
            .find(|w| w["pid"].as_u64() == Some(u64::from(pid)))?["cpu_seconds"]
            .as_f64()
    };
    let mut cluster = Cluster::start_with(BURN_ONCE, 1, "cgroup", "1", &[], &[]);
    let first = cluster.master.worker_pids()[0];
    // However slowly a busy machine lets it burn: until its CPU figure says so.
    cluster
        .master
        .wait_until("the first worker has used 0.5 s of CPU", |m| {
            cpu_of(m, first).is_some_and(|used| used >= 0.5)
        });
    std::fs::write(cluster.master.path("pids.stop"), "").unwrap();
    cluster
        .master
        .wait_until("the first worker has stopped burning", |m| {
            std::fs::read_to_string(m.path("pids")).is_ok_and(|t| t.contains("burned "))
        });
    let burned = cpu_of(&mut cluster.master, first).expect("the first worker's CPU");
    assert!(burned >= 0.5, "the first worker used {burned} s of CPU");
    let (_, path) = cgroups(&cluster)[0].clone();

    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    cluster.master.wait_until("the worker is replaced", |m| {
        m.worker_pids().first().is_some_and(|&p| p != first) && m.ready() == 1
    });
    let second = cluster.master.worker_pids()[0];
    let deadline = Instant::now() + PATIENCE;
    let reused = loop {
        if let Some(found) = cgroups(&cluster)
            .into_iter()
            .find(|(pid, _)| *pid == second)
        {
            break found.1;
        }
        assert!(
            Instant::now() < deadline,
            "the replacement never wrote its cgroup"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        reused, path,
        "the replacement is not in its predecessor's cgroup"
    );
    // Once it has exec'd `sleep`, the shell's own children (mkdir, grep) are gone.
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_to_string(format!("/proc/{second}/comm")).unwrap_or_default() != "sleep\n" {
        assert!(
            Instant::now() < deadline,
            "the replacement never exec'd sleep"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = cgroup_dir(&path);
    let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(
        members.split_whitespace().collect::<Vec<_>>(),
        [second.to_string()],
        "only the replacement (its shell exec'd sleep) is in {path}"
    );
    let used = cpu_of(&mut cluster.master, second).expect("the replacement's CPU");
    assert!(
        used < burned / 4.0,
        "the replacement is said to have used {used} s of CPU: its predecessor's {burned} s \
         were counted"
    );
}

/// The directory of cgroup `path` (as `/proc/<pid>/cgroup` names it) on this machine.
fn cgroup_dir(path: &str) -> std::path::PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            if !rest.starts_with("cgroup2 ") {
                return None;
            }
            let mut fields = fields.split(' ').skip(3);
            let (root, mount) = (fields.next()?, fields.next()?);
            let relative = path.strip_prefix(root.trim_end_matches('/'))?;
            let dir = Path::new(mount).join(relative.trim_start_matches('/'));
            dir.is_dir().then_some(dir)
        })
        .expect("the cgroup's directory under a cgroup2 mount")
}
