//! `--worker-output`: the workers' stdout and stderr through the master, end to end with
//! real processes. Each line attributed to the worker `status` names, stdout and stderr
//! kept apart, in both forms; a flood and a line that never ends do not stall the master
//! (lines cut, drops counted); `inherit` is today's behaviour; a pipe some process outside
//! the worker's tree keeps open does not leak the master's descriptors.
//!
//! Every wait is on a condition with a generous deadline; every process started is
//! killed by pid.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use common::PATIENCE;
use serde_json::Value;
use support::Master;

/// The lines a reader thread has collected so far.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Collects every line of `reader` (lossily decoded) on a thread of its own.
    fn collect(reader: impl Read + Send + 'static) -> Self {
        let lines = Self::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                        sink.0.lock().unwrap().push(text);
                    }
                }
            }
        });
        lines
    }

    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn matching(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.get().into_iter().filter(|l| keep(l)).collect()
    }
}

/// A master with `--worker-output MODE` and `args`, its stdout and stderr collected.
fn start(mode: &str, args: &[&str], envs: &[(&str, &str)]) -> (Master, Lines, Lines) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("http.sock").display());
    let mut all: Vec<std::ffi::OsString> = vec![
        "-l".into(),
        listen.into(),
        "--worker-output".into(),
        mode.into(),
    ];
    all.extend(args.iter().map(Into::into));
    let mut master = Master::spawn_with_stdout(dir, &all, Stdio::piped(), Stdio::piped(), envs);
    let stdout = Lines::collect(master.child.stdout.take().unwrap());
    let stderr = Lines::collect(master.child.stderr.take().unwrap());
    (master, stdout, stderr)
}

/// `(id, slot, pid)` of every worker `status` lists with a pid.
fn workers(master: &mut Master) -> Vec<(u64, u64, u64)> {
    master.status()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| Some((w["id"].as_u64()?, w["slot"].as_u64()?, w["pid"].as_u64()?)))
        .collect()
}

/// Each worker says who it is on stdout and on stderr, twice, then sleeps as the same
/// pid (`exec`), so `$$` is the pid `status` reports.
const TELL: &str = "echo \"out $CLUTCH_WORKER_ID $$\"; echo \"err $CLUTCH_WORKER_ID $$\" >&2; \
                    echo \"out $CLUTCH_WORKER_ID $$\"; echo \"err $CLUTCH_WORKER_ID $$\" >&2; \
                    exec sleep 600";

fn telling(workers: &str) -> Vec<&str> {
    vec![
        "-w", workers, "--ready", "exec", "--", "/bin/sh", "-c", TELL,
    ]
}

#[test]
fn prefix_attributes_every_line_to_its_worker_and_keeps_the_streams_apart() {
    let (mut master, stdout, stderr) = start("prefix", &telling("3"), &[]);
    let worker_line = |l: &str| l.starts_with('[');
    master.wait_until("every worker's lines came through", |_| {
        stdout.matching(worker_line).len() == 6 && stderr.matching(worker_line).len() == 6
    });
    let known = workers(&mut master);
    assert_eq!(known.len(), 3, "{known:?}");
    for (lines, word) in [(&stdout, "out"), (&stderr, "err")] {
        let mut seen = BTreeMap::new();
        for line in lines.matching(worker_line) {
            // `[slot id pid] out id pid`
            let (prefix, text) = line.split_once("] ").unwrap();
            let fields: Vec<u64> = prefix[1..].split(' ').map(|f| f.parse().unwrap()).collect();
            let [slot, id, pid] = fields[..] else {
                panic!("{line}")
            };
            assert!(known.contains(&(id, slot, pid)), "{line} not in {known:?}");
            assert_eq!(text, format!("{word} {id} {pid}"), "{line}");
            *seen.entry(id).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "{word}: {seen:?}");
        assert!(seen.values().all(|&n| n == 2), "{word}: {seen:?}");
    }
    // Nothing else reached the master's stdout: the log stays on stderr.
    assert_eq!(stdout.get().len(), 6, "{:?}", stdout.get());
    assert_eq!(master.status()["worker_lines_dropped"], 0);
    assert_eq!(master.stop(), 0);
}

#[test]
fn json_lines_are_the_logs_schema_with_the_worker_named() {
    let mut args = vec!["--log-format", "json"];
    args.extend(telling("2"));
    let (mut master, stdout, stderr) = start("json", &args, &[]);
    let output = |lines: &Lines| -> Vec<Value> {
        lines
            .get()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["event"] == "worker_output")
            .collect()
    };
    master.wait_until("every worker's lines came through", |_| {
        output(&stdout).len() == 4 && output(&stderr).len() == 4
    });
    let known = workers(&mut master);
    let generation = master.status()["generation"].as_u64().unwrap();
    for (lines, stream, word) in [(&stdout, "stdout", "out"), (&stderr, "stderr", "err")] {
        // Every line of the stream is JSON (the log's own lines among them on stderr).
        for line in output(lines) {
            let (id, slot, pid) = (
                line["worker"].as_u64().unwrap(),
                line["slot"].as_u64().unwrap(),
                line["pid"].as_u64().unwrap(),
            );
            assert!(known.contains(&(id, slot, pid)), "{line} not in {known:?}");
            assert_eq!(line["message"], format!("{word} {id} {pid}"), "{line}");
            assert_eq!(line["stream"], stream, "{line}");
            assert_eq!(line["generation"], generation, "{line}");
            assert_eq!(line["level"], "INFO", "{line}");
            assert_eq!(line["target"], "worker", "{line}");
            assert!(line.get("cut").is_none(), "{line}");
            let age = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                - common::log_time(&line);
            assert!((0.0..600.0).contains(&age), "{line}: {age}");
        }
    }
    assert_eq!(master.stop(), 0);
}

#[test]
fn inherit_leaves_the_workers_on_the_masters_own_stdout() {
    let (mut master, stdout, _stderr) = start(
        "inherit",
        &[
            "-w",
            "1",
            "--ready",
            "exec",
            "--",
            "/bin/sh",
            "-c",
            "echo \"plain $CLUTCH_WORKER_ID\"; exec sleep 600",
        ],
        &[],
    );
    master.wait_until("the worker's line came through", |_| {
        !stdout.get().is_empty()
    });
    assert_eq!(stdout.get(), ["plain 1"]);
    // No pipe of the master's: the worker's fd 1 is the master's own.
    let master_pid = master.child.id();
    let pid = master.worker_pids()[0];
    for fd in [1, 2] {
        let link = |pid: u32| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(link(pid), link(master_pid), "fd {fd}");
    }
    assert_eq!(master.stop(), 0);
}

/// A worker's children write through its pipes (their lines are the worker's), and its
/// last line, without a newline, is written once its tree has ended: before the master's
/// own exit.
#[test]
fn a_childs_lines_are_its_workers_and_a_last_partial_line_is_written_at_the_end() {
    let script = "sh -c 'echo from-child' & wait; printf 'last words'; exec sleep 600";
    let (mut master, stdout, _stderr) = start(
        "prefix",
        &["-w", "1", "--ready", "exec", "--", "/bin/sh", "-c", script],
        &[],
    );
    master.wait_until("the child's line came through", |_| {
        !stdout.get().is_empty()
    });
    let (id, slot, pid) = workers(&mut master)[0];
    let prefix = format!("[{slot} {id} {pid}] ");
    assert_eq!(stdout.get(), [format!("{prefix}from-child")]);
    assert_eq!(master.stop(), 0);
    // The master is gone, so its stdout ends: everything it wrote has been read by then.
    let deadline = Instant::now() + PATIENCE;
    while stdout.get().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no last line: {:?}",
            stdout.get()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        stdout.get(),
        [format!("{prefix}from-child"), format!("{prefix}last words")]
    );
}

/// One worker floods its stdout, another writes a line that never ends on its stderr;
/// the master's stdout is a pipe nobody reads. `status` keeps answering, the endless line
/// comes out cut at 16 KiB, the flood is dropped and counted, and the master stops
/// cleanly.
#[test]
fn a_flood_and_an_endless_line_neither_stall_nor_swamp_the_master() {
    let script = "if [ \"$CLUTCH_WORKER_SLOT\" = 0 ]; then exec yes \"flood $CLUTCH_WORKER_ID\"; \
                  else head -c 100000 /dev/zero | tr '\\0' x >&2; exec sleep 600; fi";
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("http.sock").display());
    let args: Vec<std::ffi::OsString> = [
        "-l",
        &listen,
        "--worker-output",
        "prefix",
        "-w",
        "2",
        "--ready",
        "exec",
        "--",
        "/bin/sh",
        "-c",
        script,
    ]
    .iter()
    .map(Into::into)
    .collect();
    // The master's stdout: a pipe whose read end is held here and never read.
    let mut master = Master::spawn_with_stdout(dir, &args, Stdio::piped(), Stdio::piped(), &[]);
    let _unread = master.child.stdout.take().unwrap();
    let stderr = Lines::collect(master.child.stderr.take().unwrap());

    let ask = |master: &Master| {
        let asked = Instant::now();
        let answer = control::send(&master.path("ctl.sock"), Request::Status, Some(PATIENCE))
            .expect("status answers while the workers flood");
        (answer, asked.elapsed())
    };
    master.status(); // the control socket is up
    master.wait_until("lines are dropped", |m| {
        let (answer, took) = ask(m);
        assert!(took < Duration::from_secs(10), "status took {took:?}");
        answer["worker_lines_dropped"].as_u64().unwrap_or(0) > 0
    });
    // Still answering, however long the flood goes on.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (answer, took) = ask(&master);
        assert_eq!(answer["ok"], true, "{answer}");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(slowest < Duration::from_secs(10), "status took {slowest:?}");
    // `clutch status` says so too.
    let text = Command::new(support::CLUTCH)
        .args(["status", "--control"])
        .arg(master.path("ctl.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("worker output lines dropped"), "{text}");

    let cut = |l: &str| l.contains(" cut] ");
    master.wait_until("the endless line came out cut", |_| {
        !stderr.matching(cut).is_empty()
    });
    let line = stderr.matching(cut).remove(0);
    let (prefix, text) = line.split_once(" cut] ").unwrap();
    assert!(prefix.starts_with("[1 "), "slot 1's: {line:.80}");
    assert_eq!(text.len(), 16 * 1024, "cut at 16 KiB");
    assert!(text.bytes().all(|b| b == b'x'));
    // The rest of that line (100 000 bytes in all) was discarded, not written on.
    assert_eq!(
        stderr.matching(|l| l.contains("xxxx")).len(),
        1,
        "one cut line"
    );
    let warned = |l: &str| l.contains("workers' output lines dropped");
    master.wait_until("the drops are in the log", |_| {
        !stderr.matching(warned).is_empty()
    });
    assert_eq!(master.stop(), 0);
}

/// Receives descriptors over a unix socket and holds them forever: a process outside
/// every worker's tree that keeps a worker's pipes open.
const HOLDER: &str = r#"
import socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(64)
held = []
while True:
    client, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(client, 16, 8)
    held.extend(fds)
    client.close()
"#;

/// A worker that hands its stdout and stderr to the holder, says so, and sleeps.
const HANDER: &str = r#"
import os, socket, time
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["HOLDER"])
socket.send_fds(s, [b"x"], [1, 2])
s.close()
print("handed", os.environ["CLUTCH_WORKER_ID"], flush=True)
time.sleep(600)
"#;

/// Kills the holder by pid.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The interpreter itself (not a wrapper such as pyenv's shim, which would be the
/// worker's pid only until it execs).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn pipes_kept_open_outside_the_tree_do_not_leak_the_masters_descriptors() {
    let python = python();
    let holder_dir = tempfile::tempdir().unwrap();
    let socket = holder_dir.path().join("holder.sock");
    let holder = Holder(
        Command::new(&python)
            .args(["-c", HOLDER])
            .arg(&socket)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + PATIENCE;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the holder never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let hold = socket.display().to_string();
    let (mut master, stdout, _stderr) = start(
        "prefix",
        &["-w", "1", "--ready", "exec", "--", &python, "-c", HANDER],
        &[("HOLDER", &hold)],
    );
    let handed = |n: usize| {
        let stdout = stdout.clone();
        move |_: &mut Master| stdout.matching(|l| l.contains("handed")).len() >= n
    };
    master.wait_until("the first worker handed its pipes over", handed(1));
    let master_pid = master.child.id();
    let baseline = fd_count(master_pid);
    const RESPAWNS: usize = 8;
    for n in 1..=RESPAWNS {
        let pid = master.worker_pids()[0];
        master.kill_worker_and_wait(pid);
        master.wait_until("the next worker handed its pipes over", handed(n + 1));
    }
    // The holder has every worker's pipes, so none of them reached EOF ...
    let held = fd_count(holder.0.id());
    assert!(held >= 2 * (RESPAWNS + 1), "the holder holds {held} fds");
    // ... and yet the master holds only its live worker's.
    master.wait_until(
        "the master's descriptors are back to where they were",
        |_| fd_count(master_pid) <= baseline,
    );
    assert_eq!(master.stop(), 0);
}

/// A bad mode, from the flag, the environment or the settings file, is a usage error
/// (exit 2, naming the setting) before anything is spawned.
#[test]
fn a_bad_mode_is_refused_before_anything_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let file = dir.path().join("clutch.toml");
    std::fs::write(&file, "worker-output = \"loud\"\n").unwrap();
    let touch = format!("touch {}", marker.display());
    let config = file.display().to_string();
    for (args, envs) in [
        (vec!["--worker-output", "loud"], vec![]),
        (vec![], vec![("CLUTCH_WORKER_OUTPUT", "loud")]),
        (vec!["--config", &config], vec![]),
    ] {
        let out = Command::new(support::CLUTCH)
            .arg("run")
            .args(&args)
            .args(["-w", "1", "--", "/bin/sh", "-c", &touch])
            .env_remove("CLUTCH_WORKER_OUTPUT")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {envs:?}: {stderr}");
        assert!(
            stderr.contains("worker-output") || stderr.contains("WORKER_OUTPUT"),
            "{stderr}"
        );
        assert!(stderr.contains("loud"), "{stderr}");
        assert!(!marker.exists(), "a worker was spawned");
    }
}

/// Kills, at the end, whatever of these pids is still the test's (by its `needle`
/// variable): the new master of an upgrade is no child of the test's.
struct Leftovers {
    pids: Vec<u32>,
    needle: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.pids {
            common::kill_if_ours(pid, &self.needle);
        }
    }
}

/// The pipes (`pipe:[inode]`) among `pid`'s descriptors above 2.
fn pipes_of(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd: u32 = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_str()?.to_owned();
            (target.starts_with("pipe:") && fd > 2).then_some(target)
        })
        .collect()
}

/// The pipes that are a worker's stdout and stderr.
fn output_of(worker: u32) -> std::collections::BTreeSet<String> {
    [1, 2]
        .iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/{worker}/fd/{fd}")).ok())
        .filter_map(|t| t.to_str().map(str::to_owned))
        .filter(|t| t.starts_with("pipe:"))
        .collect()
}

/// An upgrade's new master gets the old one's own stdout and stderr, none of its
/// workers' pipes (close-on-exec), and makes its own for its workers, whose lines come
/// through as before.
#[test]
fn an_upgraded_master_has_its_own_pipes_and_none_of_the_old_ones() {
    let script = "echo \"hello $CLUTCH_WORKER_ID $$\"; exec sleep 600";
    let tag = tempfile::tempdir().unwrap();
    let needle = format!("WORKER_OUTPUT_TEST={}", tag.path().display());
    let (mut master, stdout, _stderr) = start(
        "prefix",
        &[
            "-w",
            "1",
            "--ready",
            "exec",
            "--min-uptime",
            "100ms",
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
        &[("WORKER_OUTPUT_TEST", &tag.path().display().to_string())],
    );
    master.wait_until("the first worker's line came through", |_| {
        !stdout.get().is_empty()
    });
    let old_pid = master.child.id();
    let old_worker = master.worker_pids()[0];
    let old_output = output_of(old_worker);
    assert_eq!(old_output.len(), 2, "{old_output:?}");
    assert!(
        old_output.is_subset(&pipes_of(old_pid)),
        "the old master reads them"
    );
    let answer = master.ask(Request::Upgrade).expect("upgrade");
    assert_eq!(answer["ok"], true, "{answer}");
    let new_pid = answer["pid"].as_u64().unwrap() as u32;
    let mut leftovers = Leftovers {
        pids: vec![new_pid],
        needle,
    };
    assert_eq!(
        master.wait_exit().code(),
        Some(0),
        "the old master hands over"
    );

    // The new master answers on the same socket; its worker says hello.
    let deadline = Instant::now() + PATIENCE;
    let worker = loop {
        assert!(
            Instant::now() < deadline,
            "the new master's worker never spoke"
        );
        let status = master.ask(Request::Status).ok();
        let worker = status
            .filter(|s| s["pid"] == new_pid)
            .and_then(|s| s["workers"][0]["pid"].as_u64())
            .filter(|pid| {
                stdout
                    .get()
                    .iter()
                    .any(|l| l.ends_with(&format!("] hello 1 {pid}")))
            });
        if let Some(pid) = worker {
            break pid as u32;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    leftovers.pids.push(worker);
    let new_output = output_of(worker);
    assert_eq!(new_output.len(), 2, "{new_output:?}");
    let new_pipes = pipes_of(new_pid);
    assert!(
        new_output.is_subset(&new_pipes),
        "the new master reads its worker's"
    );
    assert!(
        new_pipes.is_disjoint(&old_output),
        "the new master got none of the old worker's pipes"
    );

    let answer = master.ask(Request::Stop).expect("stop the new master");
    assert_eq!(answer["ok"], true, "{answer}");
    let deadline = Instant::now() + PATIENCE;
    while common::is_alive(new_pid) {
        assert!(Instant::now() < deadline, "the new master did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}
