//! The master survives what surrounds it: its log's reader going away or stalling, a
//! worker flooding its notify socket, a mass scale-up, control clients that never read,
//! a low open-files limit. Each test is a failure once reproduced against a real
//! master; none of them may come back.
//!
//! Every wait is on a condition with a generous deadline; every process started is
//! killed by pid.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use common::{is_alive, PATIENCE};
use serde_json::Value;

use support::{Master, CLUTCH};

/// A pipe: (read end, write end as the child's stderr).
fn stderr_pipe() -> (std::fs::File, Stdio) {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    (std::fs::File::from(read), Stdio::from(write))
}

const SLEEPER: [&str; 4] = ["--ready", "exec", "--", "/bin/sleep"];

fn sleepers(workers: &str) -> Vec<&str> {
    let mut args = vec!["-w", workers];
    args.extend(SLEEPER);
    args.push("1000");
    args
}

/// Reads lines from `reader` until one contains `needle` (or PATIENCE runs out).
fn read_until(reader: &mut impl Read, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        let n = reader.read(&mut buffer).unwrap();
        assert!(n > 0, "stderr closed before {needle:?}:\n{text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    text
}

#[test]
fn the_master_survives_its_log_reader_going_away() {
    // `clutch run … 2>&1 | head -2`: the reader reads a little, then exits.
    let (mut reader, stderr) = stderr_pipe();
    let mut master = Master::start(&sleepers("2"), stderr, &[]);
    read_until(&mut reader, "worker_started");
    drop(reader);
    // Every later line meets EPIPE: the master goes on regardless.
    let before = master.worker_pids();
    assert_eq!(before.len(), 2);
    master.kill_worker_and_wait(before[0]);
    assert!(master.status()["log_lines_dropped"].as_u64().unwrap() > 0);
    assert!(is_alive(before[1]), "the other worker never noticed");
    assert_eq!(master.stop(), 0);
}

#[test]
fn a_full_log_pipe_never_stalls_the_master() {
    // Nobody reads stderr: the pipe fills, and the master must not block in write(2).
    let (mut reader, stderr) = stderr_pipe();
    let mut master = Master::start(&sleepers("2"), stderr, &[("RUST_LOG", "debug")]);
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    // Every status request logs a line at debug: far more than a pipe's 64 KiB.
    let deadline = Instant::now() + PATIENCE;
    while master.status()["log_lines_dropped"].as_u64().unwrap() == 0 {
        assert!(Instant::now() < deadline, "the pipe never filled");
    }
    // Still supervising: a killed worker is replaced, SIGTERM is acted on.
    let before = master.worker_pids();
    master.kill_worker_and_wait(before[0]);
    // Once the pipe drains, the next line says how many were dropped: empty it, make
    // the master log a line (a status request, at debug), and read.
    // (Should a line get through while the test drains, its notice is in what was
    // drained.)
    rustix::io::ioctl_fionbio(&reader, true).unwrap();
    let mut buffer = vec![0u8; 1 << 16];
    let mut drained = String::new();
    while let Ok(n @ 1..) = reader.read(&mut buffer) {
        drained.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    rustix::io::ioctl_fionbio(&reader, false).unwrap();
    let text = if drained.contains("log lines dropped") {
        drained
    } else {
        master.status();
        read_until(&mut reader, "log lines dropped")
    };
    assert!(text.contains("dropped="), "{text}");
    master.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(master.wait_exit().code(), Some(0));
}

/// A worker that floods its notify socket with datagrams holding no known key.
const FLOODER: &str = r#"
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n = os.environ["NOTIFY_SOCKET"]
n = "\0" + n[1:] if n and n[0] == "@" else n  # sd_notify: "@" is the abstract namespace
s.sendto(b"READY=1", n)
while True:
    try:
        s.sendto(b"GARBAGE=" + b"x" * 64, n)
    except BlockingIOError:
        pass
"#;

#[test]
fn a_worker_flooding_its_notify_socket_is_rate_limited_and_starves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut master = Master::start(
        &[
            "-w",
            "2",
            "--ready",
            "notify",
            "--log-format",
            "json",
            "--",
            "python3",
            "-c",
            FLOODER,
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
        &[],
    );
    master.wait_until("both flooders are ready", |m| m.ready() == 2);
    // While both flood, the master answers every request, and a killed worker is
    // replaced.
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        master.status();
        answered += 1;
    }
    assert!(answered > 0);
    let before = master.worker_pids();
    master.kill_worker_and_wait(before[0]);
    master.wait_until("the replacement flooder is ready", |m| m.ready() == 2);
    assert_eq!(master.stop(), 0);
    // Hundreds of thousands of bad datagrams; a handful of warning lines (the first of
    // each worker, then at most one per worker per 10 s, and a summary at its exit).
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text
        .lines()
        .filter(|l| l.contains("bad notification") || l.contains("no known key"))
        .count();
    assert!(warnings >= 2, "{text}");
    assert!(warnings <= 12, "{warnings} warning lines:\n{text}");
}

#[test]
fn a_mass_scale_up_spawns_in_batches_and_the_master_answers_between_them() {
    // Process groups only: this is about the loop's bounds, and a cgroup per worker
    // makes each spawn cost more (see docs/BENCHMARKS.md).
    // (A force-exit timeout long enough for 2000 workers to stop on a loaded machine.)
    let mut args = vec!["--force-exit-timeout", "3m"];
    args.extend(sleepers("1"));
    let mut master = Master::start(
        &args,
        Stdio::null(),
        &[(clutch_unix::CONTAINMENT_ENV, "group")],
    );
    master.wait_until("the first worker is ready", |m| m.ready() == 1);
    let answer = master.ask(Request::Scale { workers: 2000 }).expect("scale");
    assert_eq!(answer["ok"], true, "{answer}");
    // Status requests go on being answered while the wave is being spawned.
    let mut mid_wave = false;
    master.wait_until_within(6 * PATIENCE, "all 2000 workers are ready", |m| {
        let status = m.status();
        let ready = status["ready"].as_u64().unwrap();
        mid_wave |= ready > 1 && ready < 2000;
        status["ready"] == 2000
    });
    assert!(mid_wave, "no status was answered during the wave");

    // 64 clients ask for the (large) status and never read it: their slots expire, and
    // a `stop` gets through afterwards.
    let size = serde_json::to_string(&master.status()).unwrap().len();
    // (A unix stream socket takes about 240 KB before its writer has to wait.)
    assert!(
        size > 250_000,
        "a status of {size} bytes fills a socket buffer"
    );
    let hogs: Vec<UnixStream> = (0..control::MAX_CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(master.path("ctl.sock")).unwrap();
            s.write_all(format!("{}\n", Request::Status.to_line()).as_bytes())
                .unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + PATIENCE + control::REQUEST_TIMEOUT;
    let answer = loop {
        match master.ask(Request::Stop) {
            Ok(answer) if answer["ok"] == true => break answer,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "stop never got through: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(answer["exit_code"], 0, "{answer}");
    assert_eq!(master.wait_exit().code(), Some(0));
    drop(hogs);
}

#[test]
fn an_open_files_limit_too_low_for_the_workers_is_one_line_at_start() {
    // `ulimit -n 32` with 20 workers: not a crash loop of EMFILE spawns but one line.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {CLUTCH} run -w 20 --ready exec -l unix:{}/s.sock -- /bin/sleep 1000",
            dir.path().display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("open-files limit"), "{stderr}");
    assert!(lines[0].contains("20 workers"), "{stderr}");
}

#[test]
fn a_scale_beyond_the_open_files_limit_is_refused_and_the_workers_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("ctl.sock");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {CLUTCH} run -w 2 --ready exec --control {} -l unix:{}/s.sock -- /bin/sleep 1000",
            control.display(),
            dir.path().display()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match control::send(&control, Request::Status, Some(PATIENCE)) {
            Ok(status) if status["ready"] == 2 => break status,
            _ => {
                assert!(Instant::now() < deadline, "the cluster never became ready");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let answer = control::send(&control, Request::Scale { workers: 500 }, Some(PATIENCE)).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("RLIMIT_NOFILE"),
        "{answer}"
    );
    let after = control::send(&control, Request::Status, Some(PATIENCE)).unwrap();
    assert_eq!(after["ready"], 2);
    let pids = |s: &Value| -> Vec<u64> {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(pids(&after), pids(&status), "nothing was touched");
    let stopped = control::send(&control, Request::Stop, Some(PATIENCE)).unwrap();
    assert_eq!(stopped["exit_code"], 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Log lines a person and a log shipper can read: JSON types, `Display` forms.
#[test]
fn log_fields_have_json_types_and_text_lines_display_forms() {
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr");
        let mut args = vec!["--log-format", format];
        args.extend(sleepers("1"));
        let mut master = Master::start(
            &args,
            Stdio::from(std::fs::File::create(&log).unwrap()),
            &[],
        );
        master.wait_until("the worker is ready", |m| m.ready() == 1);
        let pid = master.worker_pids()[0];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        master.wait_until("the worker is replaced", |m| {
            m.worker_pids().first().is_some_and(|&p| p != pid)
        });
        master.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(master.wait_exit().code(), Some(0));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("Some("), "{text}");
        assert!(!text.contains("Signal(Term)"), "{text}");
        assert!(
            !text.contains("control request"),
            "status is logged at debug:\n{text}"
        );
        if format == "json" {
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            let died = lines.iter().find(|l| l["event"] == "worker_died").unwrap();
            assert_eq!(died["pid"].as_u64(), Some(u64::from(pid)), "{died}");
            let shutdown = lines
                .iter()
                .find(|l| l["event"] == "shutdown_started")
                .unwrap();
            assert_eq!(shutdown["trigger"], "SIGTERM", "{shutdown}");
        } else {
            assert!(text.contains(&format!("pid={pid}")), "{text}");
            assert!(text.contains("trigger=SIGTERM"), "{text}");
        }
    }
}

#[test]
fn user_signals_are_not_forwarded_in_exec_mode_unless_asked() {
    // `kill -USR1 <master>` (logrotate's habit) must not kill workers that do not handle
    // it: SIGUSR1's default action ends a process.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut master = Master::start(
        &{
            let mut args = vec!["--log-format", "json"];
            args.extend(sleepers("2"));
            args
        },
        Stdio::from(std::fs::File::create(&log).unwrap()),
        &[],
    );
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    let before = master.worker_pids();
    // (USR2, not forwarded, upgrades the master: tests/upgrade.rs.)
    master.signal(nix::sys::signal::Signal::SIGUSR1);
    master.wait_until("the signal is logged as ignored", |_| {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("\"signal_ignored\"")
            .count()
            >= 1
    });
    assert_eq!(master.worker_pids(), before, "no worker was touched");
    assert!(before.iter().all(|&p| is_alive(p)));
    assert_eq!(master.stop(), 0);

    // Asked for, USR1 reaches every worker (and sleep, which does not handle it, dies
    // of it and is replaced).
    let mut args = vec!["--forward-signals", "USR1"];
    args.extend(sleepers("2"));
    let mut master = Master::start(&args, Stdio::null(), &[]);
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    let before = master.worker_pids();
    master.signal(nix::sys::signal::Signal::SIGUSR1);
    master.wait_until("both workers died of USR1 and were replaced", |m| {
        let pids = m.worker_pids();
        pids.len() == 2 && pids.iter().all(|p| !before.contains(p))
    });
    assert_eq!(master.stop(), 0);
}

#[test]
fn two_interrupts_a_moment_apart_are_one_request() {
    // `timeout -s INT` signals the process and its group: two SIGINTs microseconds
    // apart. That is one request for a graceful stop, not "stop now" (exit 4).
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("ctl.sock");
    let mut child = Command::new("timeout")
        .args(["--preserve-status", "-s", "INT", "3"])
        .arg(CLUTCH)
        .args(["run", "-w", "2", "--ready", "exec", "--control"])
        .arg(&control)
        .arg("-l")
        .arg(format!("unix:{}/s.sock", dir.path().display()))
        .args(["--", "/bin/sleep", "1000"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let pids = loop {
        match control::send(&control, Request::Status, Some(PATIENCE)) {
            Ok(status) if status["ready"] == 2 => {
                break status["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["pid"].as_u64().unwrap() as u32)
                    .collect::<Vec<_>>()
            }
            _ => {
                assert!(Instant::now() < deadline, "the cluster never became ready");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a graceful stop, not a forced one");
    assert!(pids.iter().all(|&p| !is_alive(p)));
}

#[test]
fn a_program_that_cannot_be_executed_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    // Executable, but not a program: no `#!`, not ELF (ENOEXEC); and a script whose
    // interpreter does not exist (ENOENT from execve).
    // (Written by a child process: see common::write_executable.)
    let garbage = dir.path().join("garbage");
    common::write_executable(&garbage, b"this is not a program\n");
    let missing = dir.path().join("missing-interpreter");
    common::write_executable(&missing, b"#!/no/such/interpreter\n");
    for program in [&garbage, &missing] {
        let out = Command::new(CLUTCH)
            .args(["run", "-w", "4", "-l"])
            .arg(format!("unix:{}/s.sock", dir.path().display()))
            .arg("--")
            .arg(program)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot execute"), "{stderr}");
        assert!(
            !stderr.contains("breaker"),
            "not a crash loop, a startup error:\n{stderr}"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("clutch: "), "{stderr}");
    }
}

#[test]
fn a_client_meeting_a_busy_master_retries_then_says_so_in_one_line() {
    let mut master = Master::start(&sleepers("1"), Stdio::null(), &[]);
    master.wait_until("the worker is ready", |m| m.ready() == 1);
    // 64 clients that connect and say nothing hold every slot (for up to 10 s each).
    let hogs: Vec<UnixStream> = (0..control::MAX_CLIENTS)
        .map(|_| UnixStream::connect(master.path("ctl.sock")).unwrap())
        .collect();
    master.wait_until("the master turns clients away", |m| {
        control::send(&m.path("ctl.sock"), Request::Status, Some(PATIENCE))
            .is_ok_and(|answer| answer["busy"] == true)
    });
    let out = Command::new(CLUTCH)
        .args(["status", "--control"])
        .arg(master.path("ctl.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is busy"), "{stderr}");
    // Once they hang up, the same command gets through (retrying while the master
    // notices).
    drop(hogs);
    let out = Command::new(CLUTCH)
        .args(["status", "--output", "json", "--control"])
        .arg(master.path("ctl.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(master.stop(), 0);
}
