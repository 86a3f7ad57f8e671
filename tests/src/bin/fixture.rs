//! A library-mode cluster with fault knobs, for the end-to-end tests.
//!
//! Serves `Worker: <id>` over HTTP like `examples/hello.rs`. Knobs (environment):
//! - `WORKERS`, `FORCE_EXIT_MS`, `BOOT_TIMEOUT_MS`, `MIN_UPTIME_MS` (the probation
//!   after ready): cluster settings;
//! - `FIXTURE_DIR`: where the master writes `port` (the bound port) and `events` (one
//!   JSON object per event and line, written as it happens: `event` (the variant's
//!   name), the fields the tests look at (`id`, `slot`, `pid`, `status`, `reason`,
//!   `killed`, `exit_code`) and `ns`, the CLOCK_MONOTONIC time it was seen, comparable
//!   across processes; see [`event_json`]);
//! - `FIXTURE_CRASH_AT_BOOT=1`: workers exit 1 before becoming ready;
//! - `FIXTURE_IGNORE_TERM=1`: workers block SIGTERM/SIGINT and never stop on their own;
//! - `FIXTURE_FDS=1`: each worker writes its open fds, as found at the top of `main`,
//!   to `FIXTURE_DIR/fds-<pid>`;
//! - `READINESS`: `notify` (default), `exec`, or a number of milliseconds;
//! - `FIXTURE_FLOOD=1`: once the file `FIXTURE_DIR/flood` exists, each worker calls
//!   `heartbeat()` many times, then `status()`, `ready()` and `stopping()`, timing every
//!   call, and writes what it saw to `FIXTURE_DIR/flood-<pid>` (see [`flood`]).
//!
//! - `FIXTURE_HANDLE=1`: the master drives itself through a `MasterHandle` from a thread
//!   of its own (status until every worker is ready, scale to 3, reload, stop) and from
//!   its `on_event` callback (refused there), and writes each answer to
//!   `FIXTURE_DIR/handle` (see [`drive_through_handle`]).
//!
//! - `FIXTURE_USR=1`: each worker receives the SIGUSR1/SIGUSR2 the master forwards
//!   (`Worker::user_signals`) and appends `usr1 <count>` / `usr2 <count>` to
//!   `FIXTURE_DIR/usr-<pid>` for each, `<count>` being `user_signal_count()` then.
//!
//! - `FIXTURE_RECYCLE_AFTER=N`: each worker asks to be recycled
//!   (`Worker::request_recycle`) once it has answered N requests, and serves on.
//! - `FIXTURE_CONTROL=PATH`: the master's control socket (for `clutch upgrade` and the
//!   like).
//!
//! Every worker writes its TCP port to `FIXTURE_DIR/port-<pid>` (for exec mode, where
//! the `clutch` master writes none), and answers with an `x-build` header: the two
//! characters of [`BUILD`] after its prefix, which the upgrade tests patch in a copy of
//! this binary (`v1` → `v2`) to tell a new build from the old; build `nr` is a release
//! whose workers never become ready (they wait for their stop). Connections are
//! keep-alive unless the request says `connection: close`; a worker that is stopping
//! answers the request it is reading with `connection: close`, and closes idle
//! connections.
//!
//! `fixture -- PROGRAM ARGS…` supervises that program instead (exec mode).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clutch_unix::{Cluster, Event, ExitStatus, Role, Worker};
use serde_json::{json, Value};

/// The build marker: `clutch-fixture-build:` then the build (`v1` as compiled).
static BUILD: [u8; 24] = *b"clutch-fixture-build:v1.";

/// This binary's build, as [`BUILD`] says it.
fn build() -> String {
    let marker = std::hint::black_box(&BUILD);
    String::from_utf8_lossy(&marker[21..23]).into_owned()
}

fn knob(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

fn millis(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("FIXTURE_DIR").expect("FIXTURE_DIR"));
    let worker = std::env::var_os("CLUTCH_WORKER_ID").is_some();
    if worker && knob("FIXTURE_FDS") {
        let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| e.ok())
            .map(|e| {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                format!("{} {}", e.file_name().to_string_lossy(), target.display())
            })
            .collect();
        std::fs::write(
            dir.join(format!("fds-{}", std::process::id())),
            fds.join("\n"),
        )
        .expect("writing fds");
    }
    if worker && knob("FIXTURE_CRASH_AT_BOOT") {
        std::process::exit(1);
    }
    if worker && knob("FIXTURE_IGNORE_TERM") {
        // Blocked before any thread exists: no thread of this worker will ever see them.
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGTERM);
        set.add(nix::sys::signal::Signal::SIGINT);
        set.thread_block().expect("blocking SIGTERM");
    }
    let mut cluster = Cluster::builder();
    cluster.listen("127.0.0.1:0").log(clutch_unix::Log::Stderr);
    if let Some(workers) = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()) {
        cluster.workers(workers);
    }
    if let Some(timeout) = millis("FORCE_EXIT_MS") {
        cluster.force_exit_timeout(timeout);
    }
    if let Some(timeout) = millis("BOOT_TIMEOUT_MS") {
        cluster.boot_timeout(timeout);
    }
    if let Some(min_uptime) = millis("MIN_UPTIME_MS") {
        cluster.min_uptime(min_uptime);
    }
    if let Some(path) = std::env::var_os("FIXTURE_CONTROL") {
        cluster.control(PathBuf::from(path));
    }
    if let Ok(mode) = std::env::var("FIXTURE_WORKER_OUTPUT") {
        cluster.worker_output(mode.parse().expect("FIXTURE_WORKER_OUTPUT"));
    }
    let mut events = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events"))
        .expect("events file");
    // With FIXTURE_HANDLE, the callback tries the master's handle once (on `Listening`):
    // on the loop's own thread it must be refused.
    let on_loop: std::sync::Arc<std::sync::OnceLock<clutch_unix::MasterHandle>> =
        Default::default();
    let mut tried = false;
    let (tries, report) = (on_loop.clone(), dir.join("handle"));
    cluster.on_event(move |event| {
        if let (Event::Listening { .. }, false, Some(handle)) = (event, tried, tries.get()) {
            tried = true;
            let refused = handle.status().expect_err("answered on its own loop");
            append(&report, &format!("on_event {refused:?}"));
        }
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let ns = now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128;
        let mut line = event_json(event);
        line["ns"] = serde_json::json!(ns as u64);
        // Which master saw it: an upgrade's new master appends to the same file.
        line["master"] = serde_json::json!(std::process::id());
        // One write per event: the file is read while it grows, and timed.
        let _ = events.write_all(format!("{line}\n").as_bytes());
    });
    match std::env::var("READINESS").ok().as_deref() {
        None | Some("notify") => {}
        Some("exec") => {
            cluster.readiness(clutch_unix::Readiness::Spawned);
        }
        Some(ms) => {
            let delay = Duration::from_millis(ms.parse().expect("READINESS in ms"));
            cluster.readiness(clutch_unix::Readiness::Delay(delay));
        }
    }
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    if let Some((program, args)) = args.split_first() {
        match cluster.supervise(program, args) {
            Ok(master) => {
                let port = master.listeners()[0].local_port().expect("a TCP port");
                write_atomically(&dir.join("port"), &port.to_string());
                master.run_and_exit()
            }
            Err(error) => {
                eprintln!("fixture: {error:#}");
                std::process::exit(1)
            }
        }
    }
    match cluster.start() {
        Ok(Role::Master(master)) => {
            let port = master.listeners()[0].local_port().expect("a TCP port");
            write_atomically(&dir.join("port"), &port.to_string());
            if knob("FIXTURE_HANDLE") {
                let handle = master.handle();
                let _ = on_loop.set(handle.clone());
                let driver = {
                    let (handle, dir) = (handle.clone(), dir.clone());
                    std::thread::spawn(move || drive_through_handle(&handle, &dir))
                };
                let reason = master.run().expect("the master runs");
                driver.join().expect("the handle's thread");
                // The loop is over: a handle gets no answer any more, and says why.
                let after = handle.status().expect_err("answered after the exit");
                append(&dir.join("handle"), &format!("after {after:?}"));
                std::process::exit(i32::from(reason.code()));
            }
            master.run_and_exit()
        }
        Ok(Role::Worker(worker)) => serve(worker),
        Err(error) => {
            eprintln!("fixture: {error:#}");
            std::process::exit(1)
        }
    }
}

/// An event as the tests read it: its name ([`Event::name`], as in the master's log) and
/// typed fields, never its `Debug` text.
fn event_json(event: &Event) -> Value {
    let status = |status: &ExitStatus| match status {
        ExitStatus::Code(code) => json!({ "code": code }),
        ExitStatus::Signaled(signal) => json!({ "signal": signal }),
    };
    match event {
        Event::WorkerStarted { id, slot, pid, .. } => {
            json!({"event": event.name(), "id": id.0, "slot": slot.0, "pid": pid})
        }
        Event::WorkerReady { id, slot, pid } => {
            json!({"event": event.name(), "id": id.0, "slot": slot.0, "pid": pid})
        }
        Event::WorkerRecycling {
            id,
            slot,
            pid,
            cause,
        } => json!({
            "event": event.name(), "id": id.0, "slot": slot.0, "pid": pid, "cause": cause.name(),
        }),
        Event::WorkerDied {
            id,
            slot,
            pid,
            status: exit,
            ..
        } => json!({
            "event": event.name(), "id": id.0, "slot": slot.0, "pid": pid, "status": status(exit),
        }),
        Event::WorkerExit {
            id,
            slot,
            pid,
            status: exit,
            reason,
        } => json!({
            "event": event.name(), "id": id.0, "slot": slot.0, "pid": pid, "status": status(exit),
            "reason": reason.name(),
        }),
        Event::Listening { id } => json!({"event": event.name(), "id": id.0}),
        Event::ShutdownStarted { .. } => json!({"event": event.name()}),
        Event::ShutdownForced { killed } => json!({"event": event.name(), "killed": killed}),
        Event::ShutDown { reason } => json!({"event": event.name(), "exit_code": reason.code()}),
        Event::NoWorkers => json!({"event": event.name()}),
        Event::RespawnDelayed { slot, .. } => json!({"event": event.name(), "slot": slot.0}),
        Event::BreakerTripped { .. } => json!({"event": event.name()}),
        Event::ReloadStarted { generation } => {
            json!({"event": event.name(), "generation": generation})
        }
        Event::ReloadFinished { generation, .. } => {
            json!({"event": event.name(), "generation": generation})
        }
        Event::ReloadFailed { generation, .. } => {
            json!({"event": event.name(), "generation": generation})
        }
        Event::SignalIgnored { signal, .. } => {
            json!({"event": event.name(), "signal": signal.name()})
        }
        Event::SignalForwarded { signal, workers } => {
            json!({"event": event.name(), "signal": signal.name(), "workers": workers})
        }
        // The rest by name only: what the tests do not look into.
        other => json!({ "event": other.name() }),
    }
}

/// Appends one line to `path`.
fn append(path: &std::path::Path, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening a report file");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("writing a report line");
}

/// The master's own thread drives it through `handle`, writing `<step> <answer line>`
/// to `dir/handle` for each answer: `status` (polled, bounded, until every worker is
/// ready), `scale` (to 3), `status` (until 3 are ready), `reload`, `metrics` (its
/// finished-rollouts line), `stop`.
fn drive_through_handle(handle: &clutch_unix::MasterHandle, dir: &std::path::Path) {
    use clutch_unix::control::Response;
    let report = dir.join("handle");
    let wait_ready = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = handle.status().expect("status");
            if let Response::Status(status) = &answer {
                if status.ready >= n && status.live == n {
                    append(&report, &format!("status {answer}"));
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {n} ready: {answer}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_ready(2);
    append(
        &report,
        &format!("scale {}", handle.scale(3).expect("scale")),
    );
    wait_ready(3);
    // The event stream is the control socket's; in process, on_event is the way.
    let events = handle
        .request(clutch_unix::control::Request::Events)
        .expect("events");
    append(&report, &format!("events {events}"));
    append(
        &report,
        &format!("reload {}", handle.reload().expect("reload")),
    );
    let metrics = handle.metrics().expect("metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("clutch_rollouts_finished_total "))
        .unwrap_or("no clutch_rollouts_finished_total");
    append(&report, &format!("metrics {line}"));
    append(&report, &format!("stop {}", handle.stop().expect("stop")));
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn serve(mut worker: Worker) {
    let listener: TcpListener = worker.take_tcp_listener().expect("a TCP listener");
    listener.set_nonblocking(true).expect("non-blocking");
    if build() == "nr" {
        // The release whose workers never become ready: wait for the stop, say nothing.
        worker.shutdown().wait();
        return;
    }
    if let Some(dir) = std::env::var_os("FIXTURE_DIR") {
        let port = listener.local_addr().expect("a local address").port();
        let path = PathBuf::from(dir).join(format!("port-{}", std::process::id()));
        write_atomically(&path, &port.to_string());
    }
    if std::env::var_os("FIXTURE_WORKER_OUTPUT").is_some() {
        eprintln!("hello from worker {}", worker.id());
    }
    worker.ready().expect("ready");
    let worker = std::sync::Arc::new(worker);
    if knob("FIXTURE_FLOOD") {
        let worker = worker.clone();
        std::thread::spawn(move || flood(&worker));
    }
    if knob("FIXTURE_USR") {
        let worker = worker.clone();
        let dir = PathBuf::from(std::env::var_os("FIXTURE_DIR").expect("FIXTURE_DIR"));
        let report = dir.join(format!("usr-{}", std::process::id()));
        std::thread::spawn(move || loop {
            let name = match worker.user_signals().recv() {
                clutch_unix::Signal::Usr1 => "usr1",
                clutch_unix::Signal::Usr2 => "usr2",
                _ => "other",
            };
            append(&report, &format!("{name} {}", worker.user_signal_count()));
        });
    }
    let shutdown = worker.shutdown().clone();
    let id = worker.id();
    let recycle_after: Option<u64> = std::env::var("FIXTURE_RECYCLE_AFTER")
        .ok()
        .and_then(|n| n.parse().ok());
    let mut answered = 0u64;
    let build = build();
    let mut handlers = Vec::new();
    while !shutdown.is_requested() {
        match listener.accept() {
            Ok((stream, _)) => {
                answered += 1;
                if recycle_after == Some(answered) {
                    if let Err(e) = worker.request_recycle() {
                        eprintln!("fixture worker: request_recycle: {e:#}");
                    }
                }
                stream.set_nonblocking(false).expect("blocking stream");
                let (shutdown, build) = (shutdown.clone(), build.clone());
                handlers.push(std::thread::spawn(move || {
                    let _ = answer(stream, id, &build, &shutdown);
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Wait for a connection or the shutdown notice, whichever comes first.
                let _ = shutdown.wait_timeout(Duration::from_millis(2));
            }
            Err(e) => eprintln!("fixture worker: accept: {e}"),
        }
    }
    drop(listener);
    for handler in handlers {
        let _ = handler.join();
    }
}

/// Heartbeats sent once `FIXTURE_DIR/flood` exists (the test stops the master first).
const FLOOD_HEARTBEATS: usize = 2000;

/// Waits (bounded) for `FIXTURE_DIR/flood`, then floods the master with notifications,
/// timing each call, and writes `flood-<pid>`: `calls N`, `slowest_us N`, then one line
/// per final call, `ready ok|would_block|error: …` (and `status`, `stopping`).
fn flood(worker: &Worker) {
    let dir = PathBuf::from(std::env::var_os("FIXTURE_DIR").expect("FIXTURE_DIR"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !dir.join("flood").exists() {
        if std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = |result: Result<(), clutch_unix::Error>| match result {
        Ok(()) => "ok".to_owned(),
        Err(e) if e.is_would_block() => "would_block".to_owned(),
        Err(e) => format!("error: {e:#}"),
    };
    let mut slowest = Duration::ZERO;
    let mut timed = |call: &dyn Fn() -> Result<(), clutch_unix::Error>| {
        let start = std::time::Instant::now();
        let result = call();
        slowest = slowest.max(start.elapsed());
        result
    };
    let mut report = Vec::new();
    for _ in 0..FLOOD_HEARTBEATS {
        if let Err(e) = timed(&|| worker.heartbeat()) {
            report.push(format!("heartbeat error: {e:#}"));
        }
    }
    report.push(format!(
        "status {}",
        outcome(timed(&|| worker.status("flooding")))
    ));
    report.push(format!("ready {}", outcome(timed(&|| worker.ready()))));
    report.push(format!(
        "stopping {}",
        outcome(timed(&|| worker.stopping()))
    ));
    let mut lines = vec![
        format!("calls {}", FLOOD_HEARTBEATS + 3),
        format!("slowest_us {}", slowest.as_micros()),
    ];
    lines.extend(report);
    write_atomically(
        &dir.join(format!("flood-{}", std::process::id())),
        &lines.join("\n"),
    );
}

/// Requests on one connection, each answered `Worker: <id>` with an `x-build` header,
/// until the client asks `connection: close` or goes away, or the worker stops: then the
/// request being read is answered with `connection: close`, and an idle connection is
/// closed (a client retries a request on a reused connection that closed before any
/// answer, as HTTP allows).
fn answer(
    stream: TcpStream,
    id: u64,
    build: &str,
    shutdown: &clutch_unix::Shutdown,
) -> io::Result<()> {
    // Short reads: an idle connection notices the worker's stop within this.
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let mut idle = Duration::ZERO;
    loop {
        let mut close = false;
        let mut line = String::new();
        let mut started = false;
        loop {
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    started = true;
                    idle = Duration::ZERO;
                    let header = line.to_ascii_lowercase();
                    if header.starts_with("connection:") && header.contains("close") {
                        close = true;
                    }
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    line.clear();
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    started |= !line.is_empty();
                    if !started && shutdown.is_requested() {
                        // Idle, and the worker stops: close it.
                        return Ok(());
                    }
                    idle += Duration::from_millis(50);
                    if idle >= Duration::from_secs(5) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        close |= shutdown.is_requested();
        let body = format!("Worker: {id}");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-build: {build}\r\nconnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        stream.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}
