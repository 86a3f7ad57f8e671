//! The control channel: a Unix stream socket on which a running master answers
//! `status`, `reload`, `scale`, `stop` and `upgrade`, and streams its `events`.
//!
//! # Protocol
//!
//! One request per connection, one JSON object on one line:
//!
//! ```text
//! {"command":"status"}
//! {"command":"reload"}
//! {"command":"scale","workers":4}
//! {"command":"stop"}
//! {"command":"events"}
//! {"command":"upgrade"}
//! {"command":"metrics"}                          (the text /metrics serves)
//! {"command":"metrics","format":"openmetrics"}
//! ```
//!
//! The master answers with one JSON object on one line, `{"ok":true,…}` or
//! `{"ok":false,"error":"…"}`, then closes the connection. `status` answers at once,
//! and so does `metrics` (`{"ok":true,"metrics":"…"}`); `scale` once the new target is set; `reload` once the rolling restart has finished or
//! failed (a failure is `ok: false`, and the old workers keep serving); `stop` once the
//! master is about to exit, with its `exit_code` — the connection then closes when the
//! master is gone.
//!
//! `events` subscribes: the master answers `{"ok":true,"subscribed":true}`, then writes
//! one line per event as it happens, each the object `clutch run --log-format json` logs
//! for it (`timestamp`, `level`, `message`, `event`, the event's fields, `target`), at
//! every level whatever `RUST_LOG` says. After its request the subscriber says nothing
//! (anything it sends, or its close, ends the subscription). At the master's exit it
//! gets the last events (`shutdown`) and then the end of the stream. The master never
//! waits for a subscriber: one that leaves more than [`MAX_SUBSCRIBER_BACKLOG`] bytes
//! unread is dropped, its stream ending with `{"ok":false,"error":"dropped: too slow…"}`
//! (as far as it reads). At most [`MAX_SUBSCRIBERS`] at once, each also a client.
//!
//! The socket is created mode 0600 (other users cannot connect). The master never blocks
//! on a client: requests over 4 KiB, garbage, clients that never finish their line
//! (10 s), and clients beyond 64 at once are answered with an error or dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use clutch_proto::{Phase, Pid, RecycleCause, Slot, StopReason, WorkerId, WorkerInfo, WorkerState};
use serde_json::{json, Value};

use crate::metrics::MetricsFormat;

/// The longest request line accepted.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once; more are turned away.
pub const MAX_CLIENTS: usize = 64;
/// Event subscribers at once (each also counts as a client); more are refused.
pub const MAX_SUBSCRIBERS: usize = 16;
/// The events a subscriber may leave unread in the master (beyond what its socket
/// holds) before it is dropped: 1 MiB, thousands of events.
pub const MAX_SUBSCRIBER_BACKLOG: usize = 1 << 20;

/// A control request.
///
/// Non-exhaustive: the protocol may learn commands (a signal to forward, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Workers and phase.
    Status,
    /// A rolling restart; answered when it ends.
    Reload,
    /// Set the worker count.
    Scale {
        /// The new target.
        workers: usize,
    },
    /// A graceful shutdown; answered when the master exits.
    Stop,
    /// An upgrade of the master itself (as `SIGUSR2`); answered when the new master
    /// serves and this one hands over, or when the upgrade failed.
    Upgrade,
    /// Subscribe to the master's events: answered at once, then one line per event
    /// (see the module docs).
    Events,
    /// The metrics `/metrics` serves, in `format` (`"format":"openmetrics"`; the
    /// Prometheus text format without it), read now.
    Metrics {
        /// The exposition format.
        format: MetricsFormat,
    },
}

impl Request {
    /// The request as its protocol line (without the newline).
    #[must_use]
    pub fn to_line(&self) -> String {
        match self {
            Self::Status => json!({"command": "status"}),
            Self::Reload => json!({"command": "reload"}),
            Self::Scale { workers } => json!({"command": "scale", "workers": workers}),
            Self::Stop => json!({"command": "stop"}),
            Self::Upgrade => json!({"command": "upgrade"}),
            Self::Events => json!({"command": "events"}),
            Self::Metrics {
                format: MetricsFormat::Prometheus,
            } => json!({"command": "metrics"}),
            Self::Metrics { format } => json!({"command": "metrics", "format": format.name()}),
        }
        .to_string()
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status => f.write_str("status"),
            Self::Reload => f.write_str("reload"),
            Self::Scale { workers } => write!(f, "scale {workers}"),
            Self::Stop => f.write_str("stop"),
            Self::Upgrade => f.write_str("upgrade"),
            Self::Events => f.write_str("events"),
            Self::Metrics { format } => write!(f, "metrics ({})", format.name()),
        }
    }
}

/// The master's answer to a [`Request`]: one JSON object on one line on the wire
/// ([`to_line`](Self::to_line)), `{"ok":true,…}` or `{"ok":false,"error":"…"}`.
///
/// The in-process [`MasterHandle`](crate::MasterHandle) answers with the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// `status`: the cluster as it is now.
    Status(Status),
    /// `scale`: the new worker target is set (workers start or stop from now on).
    Scaled {
        /// The new target.
        workers: usize,
    },
    /// `reload`: the rolling restart finished, every worker is of `generation`.
    Reloaded {
        /// The generation now serving.
        generation: u64,
        /// How long the rollout took.
        took: Duration,
    },
    /// `stop`: the master is about to exit with `exit_code`.
    Stopping {
        /// The master's exit status.
        exit_code: u8,
        /// Why, in words ([`ExitReason::describe`](clutch_proto::ExitReason::describe)).
        reason: String,
    },
    /// The request was refused, or failed (a rolling restart whose new workers did not
    /// prove themselves: the old ones keep serving).
    Failed {
        /// Why, for people.
        message: String,
    },
    /// Too many control clients at once ([`MAX_CLIENTS`]): try again.
    Busy,
    /// `upgrade`: the new master (process `pid`) serves, and this one hands over to it.
    Upgraded {
        /// The new master's pid.
        pid: u32,
    },
    /// `events`: the subscription is on; event lines follow.
    Subscribed,
    /// `metrics`: the exposition, in the format asked for (`{"ok":true,"metrics":"…"}`).
    Metrics {
        /// The text, as `/metrics` would serve it.
        text: String,
    },
}

/// The `status` answer: the cluster's phase and counts, and one entry per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The master's pid.
    pub pid: u32,
    /// The cluster's phase.
    pub phase: Phase,
    /// Workers wanted.
    pub target: usize,
    /// Workers ready.
    pub ready: usize,
    /// Worker processes alive.
    pub live: usize,
    /// Some slots keep failing while others serve.
    pub degraded: bool,
    /// Slots whose workers keep failing.
    pub failing_slots: usize,
    /// The newest generation (1 until the first rolling restart).
    pub generation: u64,
    /// Log lines the master dropped rather than block on its stderr.
    pub log_lines_dropped: u64,
    /// Lines of the workers' output (`--worker-output prefix|json`) the master dropped
    /// rather than block on its stdout or stderr.
    pub worker_lines_dropped: u64,
    /// How workers are contained: `"cgroup"` or `"group"` (process groups).
    pub containment: &'static str,
    /// Recycles begun (a worker replaced for its memory, its age, or at its request).
    pub recycles: u64,
    /// Where the master serves `/metrics` (`--metrics`; the port the OS chose for `:0`),
    /// `null` without it.
    pub metrics: Option<String>,
    /// Every worker process, leaving ones included.
    pub workers: Vec<WorkerStatus>,
}

/// One worker in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// Its id.
    pub id: WorkerId,
    /// Its slot.
    pub slot: Slot,
    /// Its pid, once spawned.
    pub pid: Option<Pid>,
    /// Where it is in its life.
    pub state: WorkerState,
    /// The generation it runs.
    pub generation: u64,
    /// Time since it was spawned.
    pub uptime: Duration,
    /// How many times its slot was refilled before it.
    pub restarts: u64,
    /// A rolling restart's or a recycle's new worker, not yet in its slot.
    pub successor: bool,
    /// Past its probation.
    pub proven: bool,
    /// Why the master asked it to go, if it did.
    pub stop_reason: Option<StopReason>,
    /// Why it is being recycled, while it is (its successor boots, or waits).
    pub recycling: Option<RecycleCause>,
    /// CPU time it has used, user and system (`"cpu_seconds"` in JSON, `null` when it
    /// cannot be read): its cgroup's, the whole tree's, when it has one; else its main
    /// process's. Read when asked for.
    pub cpu: Option<Duration>,
    /// Memory it holds, in bytes (`"memory_bytes"`, `null` when unknown): its cgroup's
    /// `memory.current` where the memory controller reaches it, else its main process's
    /// resident set. Read when asked for.
    pub memory_bytes: Option<u64>,
}

impl WorkerStatus {
    /// A worker as the core reports it, `now`, with what it has used.
    pub(crate) fn new(worker: &WorkerInfo, now: Instant, usage: crate::os::usage::Usage) -> Self {
        Self {
            id: worker.id,
            slot: worker.slot,
            pid: worker.pid,
            state: worker.state,
            generation: worker.generation,
            uptime: now.saturating_duration_since(worker.spawned_at),
            restarts: worker.restarts,
            successor: worker.successor,
            proven: worker.proven,
            stop_reason: worker.stop_reason,
            recycling: worker.recycling,
            cpu: usage.cpu,
            memory_bytes: usage.memory_bytes,
        }
    }
}

impl Response {
    /// A [`Failed`](Self::Failed) answer.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
        }
    }

    /// True for the answers with `"ok": true`.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Failed { .. } | Self::Busy)
    }

    /// The answer as a JSON value (what [`to_line`](Self::to_line) prints).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let millis = |d: &Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match self {
            Self::Status(status) => {
                let workers: Vec<Value> = status
                    .workers
                    .iter()
                    .map(|w| {
                        json!({
                            "id": w.id.0,
                            "slot": w.slot.0,
                            "pid": w.pid,
                            "state": w.state.name(),
                            "generation": w.generation,
                            "uptime_ms": millis(&w.uptime),
                            "restarts": w.restarts,
                            "successor": w.successor,
                            "proven": w.proven,
                            "stop_reason": w.stop_reason.map(StopReason::name),
                            "recycling": w.recycling.map(RecycleCause::name),
                            "cpu_seconds": w.cpu.map(|cpu| cpu.as_secs_f64()),
                            "memory_bytes": w.memory_bytes,
                        })
                    })
                    .collect();
                json!({
                    "ok": true,
                    "pid": status.pid,
                    "phase": status.phase.name(),
                    "target": status.target,
                    "ready": status.ready,
                    "live": status.live,
                    "degraded": status.degraded,
                    "failing_slots": status.failing_slots,
                    "generation": status.generation,
                    "log_lines_dropped": status.log_lines_dropped,
                    "worker_lines_dropped": status.worker_lines_dropped,
                    "containment": status.containment,
                    "recycles": status.recycles,
                    "metrics": status.metrics,
                    "workers": workers,
                })
            }
            Self::Scaled { workers } => json!({"ok": true, "workers": workers}),
            Self::Reloaded { generation, took } => {
                json!({"ok": true, "generation": generation, "took_ms": millis(took)})
            }
            Self::Stopping { exit_code, reason } => {
                json!({"ok": true, "exit_code": exit_code, "reason": reason})
            }
            Self::Failed { message } => json!({"ok": false, "error": message}),
            Self::Upgraded { pid } => json!({"ok": true, "pid": pid}),
            Self::Subscribed => json!({"ok": true, "subscribed": true}),
            Self::Metrics { text } => json!({"ok": true, "metrics": text}),
            Self::Busy => {
                json!({"ok": false, "busy": true, "error": "too many control clients; try again"})
            }
        }
    }

    /// The answer as its protocol line (without the newline).
    #[must_use]
    pub fn to_line(&self) -> String {
        self.to_json().to_string()
    }
}

impl std::fmt::Display for Response {
    /// The protocol line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_line())
    }
}

/// Why a request line was refused (the master answers with its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON at all.
    NotJson {
        /// What the JSON parser said (a diagnostic, not for matching).
        detail: String,
    },
    /// JSON, but not an object.
    NotAnObject,
    /// No `"command"` string.
    MissingCommand,
    /// A command the master does not know.
    UnknownCommand {
        /// The command given.
        command: String,
    },
    /// `scale` without `"workers"` as a whole number.
    BadWorkers,
    /// `"workers"` beyond what this machine can count.
    TooManyWorkers,
    /// `metrics` with a `"format"` other than `"prometheus"` or `"openmetrics"`.
    BadFormat,
    /// No newline within [`MAX_REQUEST`] bytes.
    TooLong,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson { detail } => write!(f, "not JSON: {detail}"),
            Self::NotAnObject => f.write_str("a request is a JSON object"),
            Self::MissingCommand => {
                f.write_str(r#"missing "command" (status, reload, scale, stop, upgrade or events)"#)
            }
            Self::UnknownCommand { command } => write!(
                f,
                "unknown command {command:?} (status, reload, scale, stop, upgrade or events)"
            ),
            Self::BadWorkers => f.write_str(r#"scale needs "workers": a whole number"#),
            Self::TooManyWorkers => f.write_str("workers: too large"),
            Self::BadFormat => f.write_str(r#"metrics: "format" is "prometheus" or "openmetrics""#),
            Self::TooLong => write!(f, "request longer than {MAX_REQUEST} bytes"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses one request line (outside input: never panics).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| RequestError::NotJson {
        detail: e.to_string(),
    })?;
    let object = value.as_object().ok_or(RequestError::NotAnObject)?;
    let command = object
        .get("command")
        .and_then(Value::as_str)
        .ok_or(RequestError::MissingCommand)?;
    match command {
        "status" => Ok(Request::Status),
        "reload" => Ok(Request::Reload),
        "stop" => Ok(Request::Stop),
        "upgrade" => Ok(Request::Upgrade),
        "events" => Ok(Request::Events),
        "metrics" => match object.get("format").map(|f| f.as_str()) {
            None | Some(Some("prometheus")) => Ok(Request::Metrics {
                format: MetricsFormat::Prometheus,
            }),
            Some(Some("openmetrics")) => Ok(Request::Metrics {
                format: MetricsFormat::OpenMetrics,
            }),
            Some(_) => Err(RequestError::BadFormat),
        },
        "scale" => {
            let workers = object
                .get("workers")
                .and_then(Value::as_u64)
                .ok_or(RequestError::BadWorkers)?;
            let workers = usize::try_from(workers).map_err(|_| RequestError::TooManyWorkers)?;
            Ok(Request::Scale { workers })
        }
        other => Err(RequestError::UnknownCommand {
            command: other.to_owned(),
        }),
    }
}

/// How long [`send_patiently`] retries a master that turns clients away as busy.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(3);

/// [`send`], retried (20 ms, doubling to 200 ms) for up to [`BUSY_PATIENCE`] while the
/// master answers that it is busy ([`Response::Busy`]). A master still busy after that gets an error saying
/// so, in one line.
pub fn send_patiently(path: &Path, request: Request, wait: Option<Duration>) -> io::Result<Value> {
    let give_up = std::time::Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        let answer = send(path, request, wait)?;
        if answer["busy"] != Value::Bool(true) {
            return Ok(answer);
        }
        if std::time::Instant::now() + pause > give_up {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the master at {} is busy ({MAX_CLIENTS} control clients at once); gave up \
                     after {} s",
                    path.display(),
                    BUSY_PATIENCE.as_secs()
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn parse_answer(line: &str) -> io::Result<Value> {
    serde_json::from_str(line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the master: {e}"),
        )
    })
}

/// Sends `request` to the master listening at `path` and returns its answer, waiting up
/// to `wait` (`None`: as long as it takes). For [`Request::Stop`], also waits until the
/// master is gone (it closes the connection by exiting).
pub fn send(path: &Path, request: Request, wait: Option<Duration>) -> io::Result<Value> {
    let stream = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("connecting to the control socket {}: {e}", path.display()),
        )
    })?;
    let mut writer = stream.try_clone()?;
    // A master that turns the client away (busy) answers at once and closes, maybe
    // before the request is written: then the write fails, and the answer is still
    // there to read.
    let sent = writer.write_all(format!("{}\n", request.to_line()).as_bytes());
    stream.set_read_timeout(wait)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if let Err(error) = sent {
        if reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            return parse_answer(&line);
        }
        return Err(error);
    }
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the master closed the connection without answering",
        ));
    }
    let answer = parse_answer(&line)?;
    if request == Request::Stop {
        // The master closes the socket by exiting.
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
    }
    Ok(answer)
}

/// An `events` subscription ([`subscribe`]): the master's event lines, each parsed, as
/// they come.
///
/// The iterator ends at the end of the stream (the master exited, or closed it); a line
/// `{"ok":false,"error":…}` (the master dropped this subscriber: it read too slowly) is
/// an error with the master's words, and the last item.
#[derive(Debug)]
pub struct Subscription {
    reader: BufReader<UnixStream>,
    done: bool,
}

impl Subscription {
    /// The next event: its line as the master wrote it (without the newline) and its
    /// value; `None` at the end of the stream. (The iterator gives the values only.)
    pub fn next_line(&mut self) -> Option<io::Result<(String, Value)>> {
        if self.done {
            return None;
        }
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        let value = match parse_answer(&line) {
            Ok(value) => value,
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        if value["ok"] == Value::Bool(false) {
            self.done = true;
            let error = value["error"]
                .as_str()
                .unwrap_or("the master ended the stream");
            return Some(Err(io::Error::other(error.to_owned())));
        }
        line.truncate(line.trim_end().len());
        Some(Ok((line, value)))
    }
}

impl Iterator for Subscription {
    type Item = io::Result<Value>;

    fn next(&mut self) -> Option<io::Result<Value>> {
        self.next_line().map(|item| item.map(|(_, value)| value))
    }
}

/// Subscribes to the events of the master listening at `path` (`{"command":"events"}`,
/// retried as [`send_patiently`] does while the master is busy). Returns once the
/// master has said yes; its refusal is an error with its words.
pub fn subscribe(path: &Path) -> io::Result<Subscription> {
    let give_up = Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        let stream = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to the control socket {}: {e}", path.display()),
            )
        })?;
        let mut writer = &stream;
        let sent = writer.write_all(format!("{}\n", Request::Events.to_line()).as_bytes());
        // The answer comes at once: a master that does not answer within the request
        // deadline is not answering.
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        match (read, sent) {
            (Ok(n), _) if n > 0 => {}
            (_, Err(error)) | (Err(error), Ok(())) => return Err(error),
            (Ok(_), Ok(())) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the master closed the connection without answering",
                ))
            }
        }
        let answer = parse_answer(&line)?;
        if answer["subscribed"] == Value::Bool(true) {
            reader.get_ref().set_read_timeout(None)?;
            return Ok(Subscription {
                reader,
                done: false,
            });
        }
        if answer["busy"] == Value::Bool(true) && Instant::now() + pause <= give_up {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
            continue;
        }
        let error = answer["error"].as_str().unwrap_or("the master refused");
        return Err(io::Error::other(format!("the master refused: {error}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Reload,
            Request::Stop,
            Request::Scale { workers: 7 },
            Request::Upgrade,
            Request::Events,
            Request::Metrics {
                format: MetricsFormat::Prometheus,
            },
            Request::Metrics {
                format: MetricsFormat::OpenMetrics,
            },
        ] {
            assert_eq!(parse_request(request.to_line().as_bytes()), Ok(request));
        }
    }

    /// The wire format of every answer, byte for byte: `clutch status --output json` and
    /// every client depend on it.
    #[test]
    fn responses_keep_their_wire_format() {
        let worker = WorkerStatus {
            id: WorkerId(7),
            slot: Slot(1),
            pid: Some(4242),
            state: WorkerState::Ready,
            generation: 2,
            uptime: Duration::from_millis(1500),
            restarts: 3,
            successor: false,
            proven: true,
            stop_reason: Some(StopReason::Reload),
            recycling: Some(RecycleCause::Age),
            cpu: Some(Duration::from_millis(1250)),
            memory_bytes: Some(1 << 20),
        };
        let status = Status {
            pid: 99,
            phase: Phase::Running,
            target: 2,
            ready: 1,
            live: 2,
            degraded: false,
            failing_slots: 0,
            generation: 2,
            log_lines_dropped: 0,
            worker_lines_dropped: 0,
            containment: "group",
            recycles: 5,
            metrics: Some("127.0.0.1:9100".into()),
            workers: vec![worker],
        };
        for (response, line) in [
            (
                Response::Status(status),
                r#"{"containment":"group","degraded":false,"failing_slots":0,"generation":2,"live":2,"log_lines_dropped":0,"metrics":"127.0.0.1:9100","ok":true,"phase":"running","pid":99,"ready":1,"recycles":5,"target":2,"worker_lines_dropped":0,"workers":[{"cpu_seconds":1.25,"generation":2,"id":7,"memory_bytes":1048576,"pid":4242,"proven":true,"recycling":"age","restarts":3,"slot":1,"state":"ready","stop_reason":"reload","successor":false,"uptime_ms":1500}]}"#,
            ),
            (
                Response::Scaled { workers: 4 },
                r#"{"ok":true,"workers":4}"#,
            ),
            (
                Response::Reloaded {
                    generation: 3,
                    took: Duration::from_millis(2500),
                },
                r#"{"generation":3,"ok":true,"took_ms":2500}"#,
            ),
            (
                Response::Stopping {
                    exit_code: 0,
                    reason: "all workers stopped; clean exit".into(),
                },
                r#"{"exit_code":0,"ok":true,"reason":"all workers stopped; clean exit"}"#,
            ),
            (Response::failed("no"), r#"{"error":"no","ok":false}"#),
            (Response::Subscribed, r#"{"ok":true,"subscribed":true}"#),
            (
                Response::Busy,
                r#"{"busy":true,"error":"too many control clients; try again","ok":false}"#,
            ),
        ] {
            assert_eq!(response.to_line(), line);
            assert_eq!(response.is_ok(), line.contains(r#""ok":true"#), "{line}");
        }
    }

    #[test]
    fn bad_requests_say_why() {
        for (line, why) in [
            (&b"garbage"[..], "not JSON"),
            (b"[1,2]", "JSON object"),
            (b"{}", "missing"),
            (br#"{"command":"explode"}"#, "unknown command"),
            (br#"{"command":"scale"}"#, "whole number"),
            (br#"{"command":"scale","workers":-1}"#, "whole number"),
            (br#"{"command":"scale","workers":1.5}"#, "whole number"),
            (br#"{"command":"metrics","format":"xml"}"#, "openmetrics"),
            (b"\xff\xfe", "not JSON"),
        ] {
            let err = parse_request(line).expect_err(why);
            assert!(err.to_string().contains(why), "{err}");
        }
    }
}
