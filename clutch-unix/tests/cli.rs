//! The `clutch` command end to end: a non-Rust cluster, every control command, socket
//! activation, the master's own sd_notify, JSON logs, and every kind of bad input.
//!
//! (Here rather than in `tests/` because only the crate that owns a binary gets its path
//! in `CARGO_BIN_EXE_*`; the shared helpers are the same file.)

#[path = "../../tests/tests/common/procs.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{wait_gone, PATIENCE, PYTHON_WORKER};
use serde_json::Value;

const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

struct Clutch {
    child: Child,
    dir: tempfile::TempDir,
    exited: bool,
}

impl Clutch {
    /// `clutch run --log-format json --control DIR/ctl.sock -l unix:DIR/http.sock ARGS`.
    fn run(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut full: Vec<String> = vec![
            "run".into(),
            "--log-format".into(),
            "json".into(),
            "--control".into(),
            dir.path().join("ctl.sock").display().to_string(),
        ];
        if !args.contains(&"-l") {
            full.extend([
                "-l".into(),
                format!("unix:{}", dir.path().join("http.sock").display()),
            ]);
        }
        full.extend(args.iter().map(|a| a.to_string()));
        Self::spawn(Command::new(CLUTCH).args(&full), dir, envs)
    }

    fn spawn(command: &mut Command, dir: tempfile::TempDir, envs: &[(&str, &str)]) -> Self {
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = command
            .env("BROKEN", dir.path().join("broken"))
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
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

    /// clutch's JSON log lines (others, such as systemd-socket-activate's, are skipped;
    /// [`Self::assert_all_json`] checks there are none when clutch is alone).
    fn logs(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn assert_all_json(&self) {
        for line in self.stderr().lines() {
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "not a JSON log line: {line}"
            );
        }
    }

    fn count(&self, event: &str) -> usize {
        self.logs().iter().filter(|l| l["event"] == event).count()
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
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

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CLUTCH)
            .args(args)
            .arg("--control")
            .arg(self.path("ctl.sock"))
            .output()
            .unwrap()
    }

    fn status(&self) -> Value {
        let out = self.ctl(&["status", "--output", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn worker_pids(&self) -> Vec<u64> {
        self.status()["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["pid"].as_u64())
            .collect()
    }

    fn all_worker_pids(&self) -> Vec<u32> {
        self.logs()
            .iter()
            .filter(|l| l["event"] == "worker_started")
            .filter_map(|l| l["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = true;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "clutch did not exit:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Clutch {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Only processes that are still this test's: a worker that ended long ago may
        // have left its pid to somebody else's process.
        let ours = format!("BROKEN={}", self.path("broken").display());
        for pid in self.all_worker_pids() {
            common::kill_if_ours(pid, &ours);
        }
    }
}

fn get_unix(path: &Path) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .ok_or_else(|| std::io::Error::other(response))
}

fn python_cluster(workers: &str) -> Clutch {
    let mut clutch = Clutch::run(
        &[
            "-w",
            workers,
            "--ready",
            "notify",
            "--",
            "python3",
            "-c",
            PYTHON_WORKER,
        ],
        &[],
    );
    let n: usize = workers.parse().unwrap();
    clutch.wait_until("every worker is ready", |c| c.count("worker_ready") >= n);
    clutch
}

#[test]
fn a_python_cluster_serves_from_several_pids_and_the_logs_are_json() {
    let mut clutch = python_cluster("2");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 && Instant::now() < deadline {
        seen.insert(get_unix(&clutch.path("http.sock")).unwrap());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Every line clutch wrote parses as JSON and names its event.
    clutch.assert_all_json();
    let logs = clutch.logs();
    assert!(logs.iter().any(|l| l["event"] == "listening"), "{logs:#?}");
    let out = clutch.ctl(&["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("exit code 0"));
    assert_eq!(clutch.wait_exit().code(), Some(0));
    assert!(
        !clutch.path("ctl.sock").exists(),
        "the control socket is removed on exit"
    );
}

/// An sd_notify client that knows only paths (`sendto` of `NOTIFY_SOCKET` as it is), in
/// a shell script's helper process. Each worker writes where its message went.
const PATH_ONLY_WORKER: &str = r#"python3 -c '
import os, socket, sys
n = os.environ["NOTIFY_SOCKET"]
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", n)
    outcome = "sent"
except OSError as e:
    outcome = "failed"
open(os.path.join(sys.argv[1], os.environ["CLUTCH_WORKER_ID"]), "w").write(outcome + " " + n)
' "$0"; exec sleep 600"#;

/// By default a worker's `NOTIFY_SOCKET` is an `@name`, which a client that knows only
/// paths cannot reach (sd_notify(3) says `@` is the abstract namespace); with
/// `--notify-sockets directory` it is a path, and the same client makes its worker ready.
#[test]
fn a_path_only_notify_client_needs_notify_sockets_directory() {
    for (mode, expected) in [("abstract", "failed @clutch/"), ("directory", "sent /")] {
        let reports = tempfile::tempdir().unwrap();
        let reports_dir = reports.path().display().to_string();
        let mut clutch = Clutch::run(
            &[
                "-w",
                "2",
                "--ready",
                "notify",
                "--notify-sockets",
                mode,
                "--",
                "/bin/sh",
                "-c",
                PATH_ONLY_WORKER,
                &reports_dir,
            ],
            &[],
        );
        clutch.wait_until("both workers reported", |_| {
            ["1", "2"].iter().all(|id| reports.path().join(id).exists())
        });
        for id in ["1", "2"] {
            let report = std::fs::read_to_string(reports.path().join(id)).unwrap();
            assert!(
                report.starts_with(expected),
                "{mode}, worker {id}: {report}"
            );
        }
        if mode == "directory" {
            clutch.wait_until("both workers are ready", |c| c.count("worker_ready") == 2);
        } else {
            assert_eq!(clutch.count("worker_ready"), 0, "{}", clutch.stderr());
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(clutch.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(clutch.wait_exit().code(), Some(0), "{}", clutch.stderr());
    }
}

#[test]
fn status_scale_reload_and_stop_against_a_live_cluster() {
    let mut clutch = python_cluster("2");
    let mode = std::fs::metadata(clutch.path("ctl.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "other users are kept out");

    let text = clutch.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2/2 workers ready"), "{text}");

    let out = clutch.ctl(&["scale", "3"]);
    assert!(out.status.success());
    clutch.wait_until("the third worker is ready", |c| {
        c.count("worker_ready") >= 3
    });
    assert_eq!(clutch.status()["target"], 3);

    let before = clutch.worker_pids();
    let out = clutch.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2"));
    let status = clutch.status();
    assert_eq!(status["generation"], 2);
    let after = clutch.worker_pids();
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every worker replaced: {before:?} → {after:?}"
    );

    // A reload whose new workers cannot boot fails, and the old ones keep serving.
    std::fs::write(clutch.path("broken"), "").unwrap();
    let out = clutch.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rolling restart failed") && stderr.contains("old workers keep serving"),
        "{stderr}"
    );
    assert_eq!(
        clutch.worker_pids(),
        after,
        "the serving workers are untouched"
    );
    assert!(get_unix(&clutch.path("http.sock"))
        .unwrap()
        .starts_with("Worker: "));
    std::fs::remove_file(clutch.path("broken")).unwrap();

    assert_eq!(
        clutch.ctl(&["scale", "0"]).status.code(),
        Some(2),
        "usage error"
    );
    let out = clutch.ctl(&["stop"]);
    assert!(out.status.success());
    assert_eq!(clutch.wait_exit().code(), Some(0));
    let pids: Vec<u32> = after.iter().map(|&p| p as u32).collect();
    assert_eq!(wait_gone(&pids, Duration::from_secs(5)), Ok(()));
}

#[test]
fn the_control_socket_survives_bad_clients() {
    let clutch = python_cluster("1");
    let socket = clutch.path("ctl.sock");
    // A client that connects and never speaks, one that sends half a line.
    let _silent = UnixStream::connect(&socket).unwrap();
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(br#"{"command":"sta"#).unwrap();
    // Garbage and oversize requests get an error answer (two slots are taken: there is
    // room for them).
    for garbage in [
        &b"hello\n"[..],
        b"{\"command\":\"explode\"}\n",
        &[b'x'; 10_000][..],
    ] {
        let mut client = UnixStream::connect(&socket).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = client.write_all(garbage);
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{answer:?} is not one JSON answer: {e}"));
        assert_eq!(answer["ok"], false, "{answer}");
        assert_eq!(answer["busy"], Value::Null, "not turned away: {answer}");
    }
    // Many at once: those beyond the master's limit are turned away, not queued forever.
    let crowd: Vec<UnixStream> = (0..100)
        .filter_map(|_| UnixStream::connect(&socket).ok())
        .collect();
    drop(crowd);
    // And the master still answers, and still serves. It frees the crowd's slots when it
    // sees their hang-ups, which takes a moment: until then a request may be told "too
    // many control clients; try again", and trying again is what a client does (for a
    // few seconds, then it says the master is busy).
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let out = clutch.ctl(&["status", "--output", "json"]);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is busy") && Instant::now() < deadline,
            "status failed: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["ready"], 1);
    assert!(get_unix(&clutch.path("http.sock")).is_ok());
}

#[test]
fn socket_activation_through_systemd_socket_activate() {
    let activate = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-socket-activate (package systemd; .ci/run installs it)");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("ctl.sock").display().to_string();
    let mut command = Command::new(activate);
    command.args([
        "-l",
        &format!("127.0.0.1:{port}"),
        CLUTCH,
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--log-format",
        "json",
        "--control",
        &control,
        "--",
        "python3",
        "-c",
        PYTHON_WORKER,
    ]);
    let mut clutch = Clutch::spawn(&mut command, dir, &[]);
    // Like systemd, it starts clutch on the first connection; that connection waits in
    // the socket's queue until a worker accepts it.
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        match common::get(port) {
            Ok(body) => break body,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "never served: {e}\n{}",
                    clutch.stderr()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert!(body.starts_with("Worker: "));
    clutch.wait_until("both workers are ready", |c| c.count("worker_ready") >= 2);
    let logs = clutch.logs();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("passed by the service manager"))),
        "{logs:#?}"
    );
    assert!(clutch.ctl(&["stop"]).status.success());
    assert_eq!(clutch.wait_exit().code(), Some(0));
}

#[test]
fn the_master_reports_to_its_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify_path).unwrap();
    // Read all the time, as systemd does: the master never blocks on its service
    // manager, so a datagram that finds the socket's small queue full is dropped (a test
    // that stops reading during a reload would lose the READY=1 that ends it).
    let (sender, notifications) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = systemd.recv(&mut buf) {
            if sender
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return; // the test is over
            }
        }
    });
    let notify = notify_path.display().to_string();
    let mut clutch = Clutch::run(
        &[
            "-w",
            "2",
            "--ready",
            "notify",
            "--",
            "python3",
            "-c",
            PYTHON_WORKER,
        ],
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "400000")],
    );
    let mut received: Vec<String> = Vec::new();
    let expect = |what: &str, received: &mut Vec<String>| {
        let deadline = Instant::now() + PATIENCE;
        while !received.iter().any(|m| m.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match notifications.recv_timeout(left) {
                Ok(message) => received.push(message),
                Err(_) => panic!("no {what} in {received:?}"),
            }
        }
    };
    expect("READY=1", &mut received);
    expect("STATUS=", &mut received);
    expect("WATCHDOG=1", &mut received);
    clutch.wait_until("both workers are ready", |c| c.count("worker_ready") >= 2);
    assert!(clutch.ctl(&["reload"]).status.success());
    expect("RELOADING=1", &mut received);
    let reloading = received.iter().find(|m| m.contains("RELOADING=1")).unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let after_reload = received
        .iter()
        .rposition(|m| m.contains("RELOADING=1"))
        .unwrap();
    expect("READY=1", &mut received.split_off(after_reload + 1));
    assert!(clutch.ctl(&["stop"]).status.success());
    expect("STOPPING=1", &mut received);
    assert_eq!(clutch.wait_exit().code(), Some(0));
}

/// Every mistake: a one-line error naming the problem, a non-zero exit, nothing spawned.
#[test]
fn bad_input_is_refused_before_anything_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let spawn_marker = format!("touch {}", marker.display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let in_use =
        format!("clutch: cannot listen on {taken_addr}: Address already in use (os error 98)");
    let not_executable = dir.path().join("script");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let not_executable = not_executable.display().to_string();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["run", "--bogus", "--", "sh"],
            2,
            "unexpected argument '--bogus'",
        ),
        (vec!["run"], 2, "PROGRAM"),
        (
            vec!["run", "--", "/no/such/program"],
            1,
            "program not found",
        ),
        (vec!["run", "--", &not_executable], 1, "not executable"),
        (
            vec!["run", "-l", "localhost", "--", "sh"],
            2,
            "invalid listen address",
        ),
        (
            vec!["run", "-l", "999.1.1.1:80", "--", "sh"],
            2,
            "invalid listen address",
        ),
        (
            vec!["run", "--force-exit-timeout", "soon", "--", "sh"],
            2,
            "invalid duration",
        ),
        (
            vec!["run", "--boot-timeout", "10", "--", "sh"],
            2,
            "add a unit",
        ),
        (
            vec!["run", "-w", "0", "--", "sh"],
            2,
            "0 is not in 1..=4096",
        ),
        (
            vec!["run", "-w", "5000", "--", "sh"],
            2,
            "5000 is not in 1..=4096",
        ),
        (
            vec!["run", "-l", &taken_addr, "--", "sh", "-c", &spawn_marker],
            1,
            &in_use,
        ),
        (
            vec![
                "run",
                "-l",
                "127.0.0.1:0",
                "--control",
                "/no/such/dir/ctl.sock",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            1,
            "control socket",
        ),
        (
            vec!["run", "--ready", "whenever", "--", "sh"],
            2,
            "notify or exec",
        ),
        // Values each fine alone that the configuration refuses: still the command
        // line's fault (exit 2), found before anything runs, named by their flags.
        (
            vec!["run", "--ready", "90s", "--", "sh", "-c", &spawn_marker],
            2,
            "--ready 90s must be shorter than the --boot-timeout 60s",
        ),
        (
            vec![
                "run",
                "--ready",
                "2s",
                "--boot-timeout",
                "2s",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "shorter than the --boot-timeout",
        ),
        (
            vec![
                "run",
                "--force-exit-timeout",
                "0s",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "--force-exit-timeout: must be greater than zero",
        ),
        (
            vec![
                "run",
                "--boot-timeout",
                "0ms",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "--boot-timeout: must be greater than zero",
        ),
        (
            vec!["run", "--ready", "0s", "--", "sh", "-c", &spawn_marker],
            2,
            "--ready: must be greater than zero",
        ),
        (
            vec![
                "run",
                "--boot-timeout",
                "100000h",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "longer than the maximum",
        ),
        (
            vec!["run", "--name", "", "--", "sh", "-c", &spawn_marker],
            2,
            "--name",
        ),
        // The core's knobs, by their flags.
        (
            vec![
                "run",
                "--hang-signal",
                "KILL",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "KILL leaves nothing to diagnose",
        ),
        (
            vec![
                "run",
                "--backoff-max",
                "50ms",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "--backoff-max 50ms is below the --backoff-initial 100ms",
        ),
        (
            vec!["run", "--hang-grace", "0s", "--", "sh", "-c", &spawn_marker],
            2,
            "--hang-grace: must be greater than zero",
        ),
        (
            vec![
                "run",
                "--config",
                "/no/such.toml",
                "--",
                "sh",
                "-c",
                &spawn_marker,
            ],
            2,
            "cannot read the settings file /no/such.toml",
        ),
        // A usage error wins over a missing program: the command line is checked first.
        (
            vec!["run", "--boot-timeout", "0s", "--", "/no/such/program"],
            2,
            "--boot-timeout",
        ),
        (
            vec!["status", "--control", "/no/such.sock"],
            1,
            "control socket",
        ),
    ];
    for (args, code, needle) in cases {
        let out = Command::new(CLUTCH)
            .args(&args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "clutch {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "clutch {args:?}: {stderr:?} should mention {needle:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
        // The cause chain is printed once: never "…: Address already in use (os error
        // 98): Address already in use (os error 98)".
        assert!(
            stderr.matches("(os error").count() <= 1,
            "clutch {args:?}: the OS error once: {stderr:?}"
        );
        assert!(
            stderr.starts_with("clutch: "),
            "clutch {args:?}: {stderr:?} says who speaks"
        );
        assert!(!stderr.contains("panicked"), "clutch {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "clutch {args:?}: nothing on stdout");
        assert!(!marker.exists(), "clutch {args:?} spawned something");
    }
    drop(taken);
}

/// Bare `clutch`, like bare `git`: the usage with every command, on stderr, exit 2.
#[test]
fn bare_clutch_prints_its_usage_on_stderr_and_exits_2() {
    let out = Command::new(CLUTCH).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "usage goes to stderr");
    assert!(stderr.contains("Usage: clutch"), "{stderr}");
    for command in ["run", "status", "reload", "scale", "stop"] {
        assert!(stderr.contains(command), "{command} in {stderr}");
    }
}

/// `RUST_LOG` is documented where users look: `clutch run --help`.
#[test]
fn run_help_documents_rust_log() {
    let out = Command::new(CLUTCH)
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("RUST_LOG"), "{help}");
    assert!(
        help.contains("default\n`info`"),
        "the default level: {help}"
    );
    assert!(help.contains("RUST_LOG=clutch_unix=debug"), "{help}");
}

/// `clutch run` without `-l` (and not socket-activated) warns once that its workers get
/// no socket; with `-l` it does not.
#[test]
fn run_without_a_listener_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("ctl.sock").display().to_string();
    let mut command = Command::new(CLUTCH);
    command.args([
        "run",
        "-w",
        "1",
        "--ready",
        "exec",
        "--log-format",
        "json",
        "--control",
        &control,
        "--",
        "sleep",
        "600",
    ]);
    command.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    let mut clutch = Clutch::spawn(&mut command, dir, &[]);
    let warned = |c: &Clutch| {
        c.logs()
            .iter()
            .filter(|l| {
                l["level"] == "WARN"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no listening socket"))
            })
            .count()
    };
    clutch.wait_until("the worker is ready", |c| c.count("worker_ready") >= 1);
    assert_eq!(warned(&clutch), 1, "{}", clutch.stderr());
    let message = clutch
        .logs()
        .into_iter()
        .find(|l| l["level"] == "WARN")
        .unwrap();
    assert!(
        message["message"].as_str().unwrap().contains("--listen"),
        "names the flag: {message}"
    );
    assert!(clutch.ctl(&["stop"]).status.success());
    assert_eq!(clutch.wait_exit().code(), Some(0));

    let mut with_listener = python_cluster("1");
    assert_eq!(warned(&with_listener), 0, "{}", with_listener.stderr());
    assert!(with_listener.ctl(&["stop"]).status.success());
    assert_eq!(with_listener.wait_exit().code(), Some(0));
}

/// `clutch status | head -1`: a reader that goes away is no reason to panic. Every
/// client command, with its stdout a pipe whose reader is already closed, does its work
/// and exits 0, silently; one whose stderr is closed still exits with its code.
#[test]
fn client_commands_exit_quietly_when_stdout_is_closed() {
    let mut clutch = python_cluster("1");
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let run = |args: &[&str], stdout: Stdio, stderr: Stdio| {
        Command::new(CLUTCH)
            .args(args)
            .arg("--control")
            .arg(clutch.path("ctl.sock"))
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .unwrap()
    };
    for args in [
        &["status"][..],
        &["status", "--output", "json"],
        &["scale", "2"],
        &["reload"],
    ] {
        let out = run(args, Stdio::from(closed_pipe()), Stdio::piped());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "clutch {args:?}: {stderr}");
        assert!(stderr.is_empty(), "clutch {args:?} said: {stderr}");
    }
    // The commands did their work all the same.
    assert_eq!(clutch.status()["generation"], 2);
    assert_eq!(clutch.status()["target"], 2);
    // A failure whose message cannot be written still exits 1, not with a panic (101).
    let out = Command::new(CLUTCH)
        .args(["status", "--control", "/no/such.sock"])
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::from(closed_pipe()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["stop"], Stdio::from(closed_pipe()), Stdio::piped());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(clutch.wait_exit().code(), Some(0));
}
