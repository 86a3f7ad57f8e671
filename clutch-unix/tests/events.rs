//! `clutch events` end to end: the stream's order and schema (the master's own JSON log
//! lines), its text form, a subscriber too slow to keep up (dropped, while the master
//! keeps answering), the subscriber limit, the master's exit (the shutdown, then the
//! end of the stream) and a master that is not there.
//!
//! Every wait is on a condition with a generous deadline; every process started is
//! killed by pid (the `Master` harness, `Subscriber`'s drop).

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use clutch_unix::control::{Request, MAX_SUBSCRIBERS};
use common::PATIENCE;
use nix::sys::signal::Signal;
use serde_json::Value;

use support::{Master, CLUTCH};

/// Two `/bin/sleep` workers, ready once exec'd.
const SLEEPERS: [&str; 7] = ["-w", "2", "--ready", "exec", "--", "/bin/sleep", "1000"];

/// A `clutch events` child whose stdout lines arrive on a channel.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
    /// Every line received so far.
    seen: Vec<String>,
}

impl Subscriber {
    fn start(master: &Master, output: &str) -> Self {
        let mut child = Command::new(CLUTCH)
            .args(["events", "--output", output, "--control"])
            .arg(master.path("ctl.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, within PATIENCE; `None` at the end of the stream.
    fn next(&mut self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "no event line within {PATIENCE:?}; so far: {:#?}",
                    self.seen
                )
            }
        }
    }

    /// Skips lines until one satisfies `wanted`; returns it.
    fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.next() {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!("the stream ended before {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Skips JSON events until one named `name` whose fields satisfy `wanted`.
    fn until_event(&mut self, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let line = self.until(name, |line| {
            let event: Value = serde_json::from_str(line).expect("a JSON line");
            event["event"] == name && wanted(&event)
        });
        serde_json::from_str(&line).unwrap()
    }

    /// Waits until the subscription is on: SIGWINCH (which the master ignores, with an
    /// `ignored` event) until such an event arrives.
    fn wait_subscribed(&mut self, master: &Master) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            master.signal(Signal::SIGWINCH);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains("ignored") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no event within {PATIENCE:?}: {:#?}",
                self.seen
            );
        }
    }

    /// Its exit status and stderr, once it exited (within PATIENCE).
    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "clutch events did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr);
        (status, stderr)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr_file(master_dir: &tempfile::TempDir) -> (std::path::PathBuf, Stdio) {
    let path = master_dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    (path, Stdio::from(file))
}

/// A worker's death and its replacement, then a rolling restart, in order, with the
/// master's own JSON log schema; at `RUST_LOG=warn` on the master, the stream still
/// has every info event (tracing's callsite interest is rebuilt for the stream's
/// dispatcher); then the shutdown and the end of the stream, exit 0.
#[test]
fn the_json_stream_has_a_kill_and_a_reload_in_order_at_any_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let (stderr_path, stderr) = stderr_file(&dir);
    let listen = format!("unix:{}", dir.path().join("http.sock").display());
    let mut args: Vec<std::ffi::OsString> = vec!["--log-format".into(), "json".into()];
    args.extend(["-l", listen.as_str()].iter().map(Into::into));
    args.extend(SLEEPERS.iter().map(Into::into));
    let mut master = Master::spawn(dir, &args, stderr, &[("RUST_LOG", "warn")]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let mut events = Subscriber::start(&master, "json");
    events.wait_subscribed(&master);

    let victim = master.worker_pids()[0];
    master.kill_worker_and_wait(victim);
    let died = events.until_event("worker_died", |e| e["pid"] == victim);
    let slot = died["slot"].clone();
    let started = events.until_event("worker_started", |e| e["slot"] == slot);
    assert_ne!(started["worker"], died["worker"]);
    events.until_event("worker_ready", |e| e["worker"] == started["worker"]);

    let answer = master.ask(Request::Reload).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let reload = events.until_event("reload_started", |_| true);
    assert_eq!(reload["generation"], 2);
    // Both slots get a new worker before the rollout ends.
    for _ in 0..2 {
        events.until_event("worker_ready", |_| true);
    }
    events.until_event("reload_finished", |e| e["generation"] == 2);

    // The schema is the master's JSON log's: its own line for the same death (a
    // warning, so logged at RUST_LOG=warn) has the same fields and values.
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let logged: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "worker_died")
        .unwrap_or_else(|| panic!("no worker_died in the master's log:\n{log}"));
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("timestamp");
        v
    };
    assert_eq!(without_time(&logged), without_time(&died));
    assert!(died["timestamp"].is_string(), "{died}");
    assert_eq!(died["target"], "clutch_unix::engine::driver");
    // … while the info events stayed out of the master's own log.
    assert!(!log.contains("worker_ready"), "{log}");

    assert_eq!(master.stop(), 0);
    events.until_event("shutdown", |e| e["exit_code"] == 0);
    assert_eq!(events.next(), None, "the stream ends after the shutdown");
    let (status, stderr) = events.wait();
    assert!(status.success(), "{status}: {stderr}");
}

/// The text form: one readable line per event, the event's fields after its message.
#[test]
fn the_text_stream_is_readable() {
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let mut events = Subscriber::start(&master, "text");
    events.wait_subscribed(&master);
    let answer = master.ask(Request::Scale { workers: 3 }).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let line = events.until("the third worker is ready", |l| l.contains("worker ready"));
    // `2026-12-02T10:03:11.123456Z  INFO worker ready  worker=3 slot=2 pid=4242`
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{line}");
    assert!(
        rest.trim_start()
            .starts_with("INFO worker ready  worker=3 slot=2 pid="),
        "{line}"
    );
    assert!(!line.contains('{'), "no JSON in the text form: {line}");
    assert_eq!(master.stop(), 0);
    events.until("the shutdown", |l| {
        l.contains("INFO shut down  exit_code=0")
    });
    assert_eq!(events.next(), None);
    let (status, stderr) = events.wait();
    assert!(status.success(), "{status}: {stderr}");
}

/// A subscriber that stops reading is dropped once 1 MiB of events waits for it, and
/// the master answers `status` promptly all along: a raw client that never reads, and
/// `clutch events` writing to a pipe nobody reads (once the pipe is read again, it
/// says it was dropped and exits 1). The events: SIGWINCH, which the master ignores
/// with an event each, as fast as it can take them.
#[test]
fn a_subscriber_too_slow_is_dropped_and_the_master_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (stderr_path, stderr) = stderr_file(&dir);
    let args: Vec<std::ffi::OsString> = ["-w", "1", "--ready", "exec", "--", "/bin/sleep", "1000"]
        .iter()
        .map(Into::into)
        .collect();
    // RUST_LOG=warn: the master's own log has the drops, not the flood.
    let mut master = Master::spawn(dir, &args, stderr, &[("RUST_LOG", "warn")]);
    master.wait_until("the worker is ready", |m| m.ready() == 1);

    let mut raw = UnixStream::connect(master.path("ctl.sock")).unwrap();
    raw.write_all(b"{\"command\":\"events\"}\n").unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    let expected = b"{\"ok\":true,\"subscribed\":true}\n";
    let mut first = [0u8; 30];
    raw.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &expected[..]);

    // `clutch events` with a pipe for stdout that the test does not read yet.
    let (pipe_read, pipe_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut cli = Command::new(CLUTCH)
        .args(["events", "--output", "json", "--control"])
        .arg(master.path("ctl.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(pipe_write))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let cli = Kill(&mut cli);

    let drops = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .matches("event subscriber too slow")
            .count()
    };
    let deadline = Instant::now() + PATIENCE * 4;
    let mut slowest = Duration::ZERO;
    let mut sent = 0u64;
    while drops(&stderr_path) < 2 {
        assert!(
            Instant::now() < deadline,
            "not both subscribers dropped after {sent} signals"
        );
        for _ in 0..200 {
            master.signal(Signal::SIGWINCH);
            sent += 1;
        }
        let asked = Instant::now();
        let status = master
            .ask(Request::Status)
            .expect("status during the flood");
        assert_eq!(status["ok"], true);
        slowest = slowest.max(asked.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(5),
        "status took {slowest:?} during the flood"
    );

    // The raw subscriber's stream: whole lines, then the farewell, then the end.
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8(rest).unwrap();
    let last = text.lines().last().unwrap();
    let farewell: Value = serde_json::from_str(last).unwrap();
    assert_eq!(farewell["ok"], false, "{last}");
    assert!(
        farewell["error"]
            .as_str()
            .unwrap()
            .starts_with("dropped: too slow"),
        "{last}"
    );
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }

    // The CLI, read again, reaches the farewell: it says so and exits 1.
    let mut pipe = std::fs::File::from(pipe_read);
    std::io::copy(&mut pipe, &mut std::io::sink()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = cli.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "clutch events did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut said = String::new();
    cli.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("dropped: too slow"), "{said}");

    // The master serves on.
    assert_eq!(master.ready(), 1);
    assert_eq!(master.stop(), 0);
}

/// At most MAX_SUBSCRIBERS at once: one more is refused in words, and a slot freed by
/// a subscriber that leaves is taken again.
#[test]
fn subscribers_are_limited() {
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let socket = master.path("ctl.sock");
    let subscribe = || {
        let stream = UnixStream::connect(&socket).unwrap();
        (&stream).write_all(b"{\"command\":\"events\"}\n").unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).unwrap();
        (stream, serde_json::from_str::<Value>(&answer).unwrap())
    };
    let mut held: Vec<UnixStream> = (0..MAX_SUBSCRIBERS)
        .map(|_| {
            let (stream, answer) = subscribe();
            assert_eq!(answer["subscribed"], true, "{answer}");
            stream
        })
        .collect();
    let (_, refused) = subscribe();
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("too many event subscribers"),
        "{refused}"
    );
    // Status still answers while the subscribers wait.
    assert_eq!(master.ready(), 2);
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, answer) = subscribe();
        if answer["subscribed"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place is not free: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No master: a clear error, exit 1.
#[test]
fn no_master_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(CLUTCH)
        .args(["events", "--control"])
        .arg(dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("clutch: connecting to the control socket")
            && stderr.contains("nobody.sock")
            && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
