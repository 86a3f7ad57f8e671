//! The master's event loop: one `mio::Poll` holds every source of facts, and every
//! decision is the core's.
//!
//! ```text
//! loop {
//!     drain every action (spawn, signal, event, notify, exit)   ── carried out in order
//!     poll(timeout = core's deadline)                            ── EINTR retried
//!     signals, pidfds, notify sockets, control ──► handle(now, Input::…)
//!     deadline passed ──► handle(now, Input::Timeout)
//! }
//! ```
//!
//! An idle master has no deadline, so `poll` sleeps until the next fact: no ticks.
//!
//! # Every turn is bounded
//!
//! No source of input can starve the others (TigerBeetle's "put a limit on everything"):
//! one turn reads at most [`NOTIFY_PER_TURN`] datagrams from a worker (and at most
//! [`READ_PER_TURN`](crate::engine::output::READ_PER_TURN) bytes from each of its output
//! pipes), accepts at most
//! [`ACCEPTS_PER_TURN`](crate::engine::control_server::ACCEPTS_PER_TURN) control clients, and forks at most
//! [`SPAWNS_PER_TURN`] workers. What is left over is kept in a backlog and served in the
//! next turn, which then polls without waiting; so a `scale 1000` spawns in batches while
//! `status`, signals and worker exits are still answered between them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, Config, Event, ExitReason, ExitStatus, Input, Phase, Pid, RecycleCause,
    ReloadFailure, Reply, Signal, WorkerId, WorkerState,
};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::signal as sig;
use signal_hook_mio::v1_0::Signals;

use crate::control::{Request, Response, Status, WorkerStatus};
use crate::engine::control_server::{ControlServer, Waiting};
use crate::engine::events::Capture;
use crate::engine::handle::{HandleServer, REQUESTS_PER_TURN};
use crate::engine::metrics_server::MetricsServer;
use crate::engine::output::{self, Output, WorkerOutput};
use crate::engine::service::ServiceNotifier;
use crate::metrics::{Histogram, MetricsFormat, Snapshot, BOOT_BUCKETS};
use crate::os::contain::{Containment, KillMode, Tree};
use crate::os::credentials::Credentials;
use crate::os::listen::Listener;
use crate::os::memory::MemoryLimit;
use crate::os::notify::{
    NotifyListener, NotifyMessage, NotifySocketKind, NotifySockets, Received, Rejection,
};
use crate::os::process::{signal_from_number, signal_number, Process};
use crate::os::spawn::{master_error, Environment, SpawnSpec};
use crate::Error;

#[path = "upgrade.rs"]
pub(crate) mod upgrade;

const SIGNALS: Token = Token(0);
const CONTROL: Token = Token(1);
/// Worker tokens start here: `FIRST_WORKER + 5·id` is its pidfd, `+ 1` its notify socket,
/// `+ 2` its cgroup's `cgroup.events`, `+ 3` and `+ 4` the pipes of its stdout and stderr
/// (`--worker-output prefix|json`, see `output.rs`).
const FIRST_WORKER: usize = 2;
/// Tokens per worker.
const PER_WORKER: usize = 5;
/// Children reaped in one turn by the SIGCHLD sweep.
const REAPS_PER_TURN: usize = 256;
/// Control clients' tokens start here (far above any worker's).
const FIRST_CLIENT: usize = 1 << 60;
/// The in-process handles' waker (`handle.rs`), just below the clients.
pub(crate) const HANDLES: Token = Token(FIRST_CLIENT - 1);
/// The metrics listener (`--metrics`), below the handles' waker and the upgrade's two
/// tokens (`upgrade.rs`).
const METRICS: Token = Token(FIRST_CLIENT - 4);
/// Metrics connections' tokens start here (far above the control clients').
const FIRST_METRICS_CONNECTION: usize = 1 << 61;

/// Datagrams read from one worker's notify socket in one turn.
pub(crate) const NOTIFY_PER_TURN: usize = 64;
/// Workers forked in one turn. A fork and exec costs the master about half a millisecond,
/// so a turn spends at most about 10 ms spawning before it serves its other inputs.
pub(crate) const SPAWNS_PER_TURN: usize = 16;
/// A worker's rejected notify datagrams are logged at most once per this long; the line
/// then says how many were dropped in between.
const REJECTED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The signals the master handles; each is a core input. Their OS numbers come from
/// the one mapping there is, [`crate::os::process::signal_number`]. (SIGCHLD, not a core
/// input, drives the reaping sweep.)
const HANDLED: [Signal; 9] = [
    Signal::Term,
    Signal::Int,
    Signal::Quit,
    Signal::Hup,
    Signal::Ttin,
    Signal::Ttou,
    Signal::Usr1,
    Signal::Usr2,
    Signal::Winch,
];

/// What every worker runs.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) path: PathBuf,
    pub(crate) arg0: Option<OsString>,
    pub(crate) args: Vec<OsString>,
}

/// The application's event callback (gs-clutch's `clutch.on(...)`).
pub(crate) type EventHandler = Box<dyn FnMut(&Event)>;

/// Everything the loop needs, gathered (and validated) before anything is spawned.
pub(crate) struct Setup {
    pub(crate) config: Config,
    pub(crate) program: Program,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) on_event: EventHandler,
    pub(crate) service: ServiceNotifier,
    pub(crate) control: Option<ControlServer>,
    pub(crate) kill_mode: KillMode,
    /// This process's own program as it was started: what an upgrade executes.
    pub(crate) own_program: Option<Program>,
    /// In a new master an upgrade started: the old master.
    pub(crate) predecessor: Option<upgrade::Predecessor>,
    pub(crate) workers: WorkerProcess,
    /// `--max-worker-memory`: measured every interval, only when set.
    pub(crate) memory: Option<MemoryLimit>,
    /// `--worker-output`: the workers' stdout and stderr inherited, or read through pipes.
    pub(crate) worker_output: WorkerOutput,
    /// `--metrics`: the `/metrics` endpoint, bound before anything is spawned.
    pub(crate) metrics: Option<MetricsServer>,
    /// `--notify-sockets`: where the workers' notify sockets are.
    pub(crate) notify_sockets: NotifySocketKind,
}

/// How every worker process is set up besides its program: who it runs as, where, with
/// which umask and environment. Checked by the builder, before anything is spawned.
#[derive(Debug, Default)]
pub(crate) struct WorkerProcess {
    pub(crate) credentials: Option<Credentials>,
    /// Absolute.
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) umask: Option<u32>,
    /// Start from an empty environment instead of the master's.
    pub(crate) env_clear: bool,
    /// Set on top (names checked: none of [`crate::spawn::MANAGED_ENV_VARS`]).
    pub(crate) env: Vec<(OsString, OsString)>,
}

impl WorkerProcess {
    /// With credentials: the workers' user must be able to execute `program` (checked
    /// by the mode bits, so that the mistake is one line at start, not a failed spawn).
    pub(crate) fn check_program(&self, program: &std::path::Path) -> Result<(), Error> {
        match &self.credentials {
            Some(credentials) if !credentials.can_execute(program) => {
                Err(crate::error::WorkerSettingError::ProgramNotExecutable {
                    path: program.to_path_buf(),
                    who: credentials.describe(),
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// The environment every worker starts from: the master's (or nothing), then the
    /// user's `USER`, `LOGNAME` and `HOME` when the workers run as a user with an entry
    /// in the user database (as `su -`, `runuser` and systemd's `User=` set them: a
    /// worker must not take root's home for its own), then the explicit settings. The
    /// variables clutch sets for each worker come on top, in `spawn`.
    fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        if let Some((name, home)) = self.credentials.as_ref().and_then(Credentials::user_entry) {
            env.push(("USER".into(), name.into()));
            env.push(("LOGNAME".into(), name.into()));
            env.push(("HOME".into(), home.as_os_str().to_owned()));
        }
        env.extend(self.env.iter().cloned());
        env
    }
}

/// A worker process the driver watches.
struct Handle {
    process: Process,
    notify: NotifyListener,
    rejected: RejectedLog,
    tree: Tree,
    /// The main process ended (this status) and its cgroup is being emptied: the core
    /// hears of the exit once `populated 0`.
    ending: Option<ExitStatus>,
}

/// Rate-limits the warnings about one worker's bad notify datagrams.
#[derive(Default)]
struct RejectedLog {
    last_logged: Option<Instant>,
    /// Rejections since the last line.
    unlogged: u64,
}

impl RejectedLog {
    /// Logs `why` unless a line for this worker was logged within the last
    /// [`REJECTED_LOG_EVERY`]; then it is only counted, for the next line.
    fn record(&mut self, id: WorkerId, why: &Rejection, now: Instant) {
        let due = self.last_logged.map_or(true, |at| {
            now.saturating_duration_since(at) >= REJECTED_LOG_EVERY
        });
        if !due {
            self.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut self.unlogged);
        self.last_logged = Some(now);
        if also == 0 {
            tracing::warn!(worker = id.0, "dropped {why}");
        } else {
            tracing::warn!(
                worker = id.0,
                also_dropped = also,
                "dropped {why}, and {also} more bad notifications before it"
            );
        }
    }

    /// The worker is gone: say what was not said yet.
    fn finish(&mut self, id: WorkerId) {
        if self.unlogged > 0 {
            tracing::warn!(
                worker = id.0,
                also_dropped = self.unlogged,
                "dropped {} more bad notifications from this worker",
                self.unlogged
            );
        }
    }
}

/// Who asked for a command, and so gets its answer: a control client, or an in-process
/// [`MasterHandle`](crate::MasterHandle) request.
#[derive(Debug, Clone, Copy)]
enum Asker {
    Client(usize),
    Handle(u64),
}

pub(crate) struct Driver {
    /// The in-process handles' requests and their waiting answers.
    handles: HandleServer,
    /// Handle requests may be queued beyond what this turn carried out.
    handles_pending: bool,
    /// The program file each generation runs (`pin.rs`).
    pins: crate::os::pin::Pins,
    poll: Poll,
    signals: Signals,
    cluster: ClusterState,
    setup: Setup,
    /// The workers' notify sockets (and an upgrade's new master's).
    notify_sockets: NotifySockets,
    workers: HashMap<WorkerId, Handle>,
    /// Facts gathered while carrying out actions (spawn reports), fed to the core once
    /// the drain is done (the contract: a full drain between two inputs).
    inputs: VecDeque<Input>,
    /// The detailed text of spawn failures this drain reports: the core hears only a
    /// kind and an errno, the log and the control client get the whole story.
    spawn_failures: HashMap<WorkerId, String>,
    env: Environment,
    title: Option<String>,
    /// Set once the core asked to exit.
    exit: Option<ExitReason>,
    /// Workers whose notify socket may hold more than this turn read.
    unread: BTreeSet<WorkerId>,
    /// Spawns the core asked for beyond this turn's [`SPAWNS_PER_TURN`], in order.
    deferred: VecDeque<(WorkerId, usize)>,
    /// Workers forked in this turn.
    spawned_this_turn: usize,
    /// The control socket may hold more connections than this turn accepted.
    accept_pending: bool,
    /// The SIGCHLD sweep may have more children to reap.
    sweep_pending: bool,
    containment: Containment,
    /// Workers by the pid of their main process, for the SIGCHLD sweep.
    by_pid: HashMap<Pid, WorkerId>,
    /// Workers whose main process ended this turn: their orphans are looked for once,
    /// at the turn's end (without cgroups).
    orphans_of: Vec<u64>,
    /// A child that was no worker's (an orphan of some worker's tree) was reaped since
    /// the last look for orphans: its own children may have come to the master.
    orphan_reaped: bool,
    /// When the workers' memory is measured next (only with a memory limit).
    memory_check_at: Option<Instant>,
    /// The new master of the upgrade under way, if one was started.
    successor: Option<upgrade::Successor>,
    /// New masters started so far (names their channels).
    successors: u64,
    /// The detailed text of the new master's spawn failure, for the `upgrade` answer.
    upgrade_detail: Option<String>,
    /// The new master's channel may hold more than this turn read.
    unread_successor: bool,
    /// This master handed over to a new one.
    handed_over: bool,
    /// The workers' output pipes (none with `--worker-output inherit`).
    output: Output,
    /// The event subscribers' lines (only while there are subscribers).
    capture: Capture,
    /// The metrics socket may hold more connections than this turn accepted.
    metrics_accept_pending: bool,
    /// The workers' boot-to-ready times, for `/metrics`.
    boot_times: Histogram,
}

impl Driver {
    /// The loop over `poll`, whose registry `handles` wakes.
    pub(crate) fn new(setup: Setup, poll: Poll, handles: HandleServer) -> Result<Self, Error> {
        let numbers: Vec<i32> = HANDLED.into_iter().filter_map(signal_number).collect();
        let mut signals =
            Signals::new(numbers).map_err(|e| Error::io("installing signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| Error::io("watching signals", e))?;
        // Every child the master gets — workers, and orphans of their trees — is reaped
        // by the SIGCHLD sweep (pidfds report the workers' exits first, where there are
        // pidfds).
        signals
            .add_signal(sig::SIGCHLD)
            .map_err(|e| Error::io("watching SIGCHLD", e))?;
        let containment = Containment::start(setup.config.workers(), setup.memory.is_some())?;
        let memory_check_at = setup.memory.map(|limit| Instant::now() + limit.interval);
        let notify_sockets =
            NotifySockets::create_for(setup.notify_sockets, setup.workers.credentials.as_ref())
                .map_err(|e| Error::io("creating the workers' notify sockets", e))?;
        let env = Environment::new(setup.workers.base_env())
            .map_err(|e| Error::io("preparing the workers' environment", e))?;
        let mut setup = setup;
        if let Some(control) = setup.control.as_mut() {
            control
                .register(poll.registry(), CONTROL, FIRST_CLIENT)
                .map_err(|e| Error::io("watching the control socket", e))?;
        }
        if let Some(metrics) = setup.metrics.as_mut() {
            metrics
                .register(poll.registry(), METRICS, FIRST_METRICS_CONNECTION)
                .map_err(|e| {
                    Error::io(format!("watching the metrics socket {}", metrics.addr()), e)
                })?;
            tracing::info!("metrics on {}", metrics.addr());
        }
        let cluster = ClusterState::new(setup.config.clone(), Instant::now());
        let pins = crate::os::pin::Pins::new(&setup.program.path, setup.listeners.len());
        let output = Output::new(setup.worker_output);
        Ok(Self {
            output,
            handles,
            handles_pending: true,
            pins,
            poll,
            signals,
            cluster,
            setup,
            notify_sockets,
            workers: HashMap::new(),
            inputs: VecDeque::new(),
            spawn_failures: HashMap::new(),
            env,
            title: None,
            exit: None,
            unread: BTreeSet::new(),
            deferred: VecDeque::new(),
            spawned_this_turn: 0,
            accept_pending: false,
            sweep_pending: false,
            containment,
            by_pid: HashMap::new(),
            orphans_of: Vec::new(),
            orphan_reaped: false,
            memory_check_at,
            successor: None,
            successors: 0,
            upgrade_detail: None,
            unread_successor: false,
            handed_over: false,
            capture: Capture::default(),
            metrics_accept_pending: false,
            boot_times: Histogram::new(&BOOT_BUCKETS),
        })
    }

    /// Runs the cluster to its end; returns why it ended.
    pub(crate) fn run(mut self) -> Result<ExitReason, Error> {
        let mut events = Events::with_capacity(256);
        self.handles.running_on_this_thread();
        self.drain();
        loop {
            if let Some(reason) = self.exit {
                // The last lines of workers whose pipes are still open.
                self.output.finish(self.poll.registry());
                self.containment.finish();
                self.handles.exiting(reason.code(), reason.describe());
                if let Some(control) = self.setup.control.as_mut() {
                    control.exiting(self.poll.registry(), reason.code(), reason.describe());
                    control.flush_all_blocking(Duration::from_millis(200));
                }
                return Ok(reason);
            }
            self.update_title();
            self.spawned_this_turn = 0;
            self.containment.new_turn();
            let timeout = if self.has_backlog() {
                Some(Duration::ZERO)
            } else {
                let client_deadline = self
                    .setup
                    .control
                    .as_ref()
                    .and_then(ControlServer::next_deadline);
                let metrics_deadline = self
                    .setup
                    .metrics
                    .as_ref()
                    .and_then(MetricsServer::next_deadline);
                [
                    self.cluster.poll_timeout(),
                    client_deadline,
                    metrics_deadline,
                    self.memory_check_at,
                ]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("waiting for events", e)),
            }
            for event in events.iter() {
                self.dispatch(event.token());
            }
            self.work_backlog();
            let by_pid = &self.by_pid;
            self.containment.kill_orphans_of(
                &self.orphans_of,
                std::mem::take(&mut self.orphan_reaped),
                |pid| by_pid.contains_key(&pid),
            );
            self.orphans_of.clear();
            let now = Instant::now();
            if let Some(control) = self.setup.control.as_mut() {
                control.expire(self.poll.registry(), now);
                if !control.has_subscribers() {
                    self.capture.release();
                }
            }
            if let Some(metrics) = self.setup.metrics.as_mut() {
                metrics.expire(self.poll.registry(), now);
            }
            if self.cluster.poll_timeout().is_some_and(|at| at <= now) {
                self.feed_at(now, Input::Timeout);
            }
            if self.memory_check_at.is_some_and(|at| at <= now) {
                self.check_memory(now);
            }
        }
    }

    /// Measures every worker that serves its slot and is not being recycled yet (see
    /// `os/memory.rs` for what is measured); one over the limit is reported to the core,
    /// which recycles it. Runs once per `--memory-check-interval`, only with a limit set.
    fn check_memory(&mut self, now: Instant) {
        let Some(limit) = self.setup.memory else {
            return;
        };
        self.memory_check_at = Some(now + limit.interval);
        let over: Vec<(WorkerId, u64)> = self
            .cluster
            .workers()
            .filter(|w| {
                w.state == WorkerState::Ready
                    && !w.successor
                    && w.recycling.is_none()
                    && w.stop_reason.is_none()
            })
            .filter_map(|w| {
                let handle = self.workers.get(&w.id).filter(|h| h.ending.is_none())?;
                let bytes = match handle
                    .tree
                    .cgroup()
                    .filter(|_| self.containment.measures_cgroup_memory())
                {
                    Some(cgroup) => cgroup.memory_current(),
                    None => crate::os::memory::resident_bytes(handle.process.pid()).ok(),
                }?;
                (bytes > limit.bytes).then_some((w.id, bytes))
            })
            .collect();
        for (id, bytes) in over {
            tracing::debug!(
                worker = id.0,
                bytes,
                limit = limit.bytes,
                "over the memory limit"
            );
            self.feed_at(
                now,
                Input::Recycle {
                    id,
                    cause: RecycleCause::Memory { bytes },
                },
            );
        }
    }

    /// Whether the last turn left work for the next one.
    fn has_backlog(&self) -> bool {
        !self.unread.is_empty()
            || !self.deferred.is_empty()
            || self.accept_pending
            || self.handles_pending
            || self.sweep_pending
            || self.unread_successor
            || self.output.has_backlog()
            || self.metrics_accept_pending
    }

    /// Goes on with what earlier turns left over, within this turn's bounds.
    fn work_backlog(&mut self) {
        if self.accept_pending {
            self.accept_clients();
        }
        if self.metrics_accept_pending {
            self.accept_metrics();
        }
        if self.handles_pending {
            self.handle_requests();
        }
        if self.sweep_pending {
            self.sweep();
        }
        if std::mem::take(&mut self.unread_successor) {
            self.successor_event(upgrade::SUCCESSOR_NOTIFY);
        }
        // Each worker once per turn, in id order; a flood stays in the set.
        let unread: Vec<WorkerId> = std::mem::take(&mut self.unread).into_iter().collect();
        for id in unread {
            self.read_notify(id);
        }
        self.output.work_backlog(self.poll.registry());
        while self.spawned_this_turn < SPAWNS_PER_TURN {
            let Some((id, slot)) = self.deferred.pop_front() else {
                break;
            };
            self.spawn_now(id, slot);
            self.drain();
        }
    }

    fn accept_clients(&mut self) {
        if let Some(control) = self.setup.control.as_mut() {
            self.accept_pending = control.accept(self.poll.registry(), Instant::now());
        }
    }

    fn accept_metrics(&mut self) {
        if let Some(metrics) = self.setup.metrics.as_mut() {
            self.metrics_accept_pending = metrics.accept(self.poll.registry(), Instant::now());
        }
    }

    /// A metrics connection is readable or writable: answer its scrape if complete.
    fn metrics_connection(&mut self, token: Token) {
        let Some(number) = self
            .setup
            .metrics
            .as_ref()
            .and_then(|m| m.connection_of(token))
        else {
            return;
        };
        let scrape = self
            .setup
            .metrics
            .as_mut()
            .and_then(|m| m.ready(self.poll.registry(), number));
        if let Some((format, head)) = scrape {
            let text = self.metrics_text(format);
            if let Some(metrics) = self.setup.metrics.as_mut() {
                metrics.answer(self.poll.registry(), number, format, head, &text);
            }
        }
    }

    /// The metrics as `/metrics` serves them, every figure read now.
    fn metrics_text(&self, format: MetricsFormat) -> String {
        let status = self.status();
        crate::metrics::render(
            &Snapshot {
                status: &status,
                stats: self.cluster.stats(),
                boot: &self.boot_times,
                master: crate::os::usage::of_this_process(),
            },
            format,
        )
    }

    /// What worker `id` has used, read now (see `os/usage.rs`); nothing for a worker
    /// not spawned yet, or whose main process has ended.
    fn usage_of(&self, id: WorkerId) -> crate::os::usage::Usage {
        match self.workers.get(&id).filter(|h| h.ending.is_none()) {
            Some(handle) => crate::os::usage::of_worker(
                handle.process.pid(),
                handle.tree.cgroup(),
                self.containment.measures_cgroup_memory(),
            ),
            None => crate::os::usage::Usage::default(),
        }
    }

    /// One input to the core, then a full drain (the driving contract).
    fn feed(&mut self, input: Input) {
        self.feed_at(Instant::now(), input);
    }

    /// [`feed`](Self::feed) at a time already read.
    fn feed_at(&mut self, now: Instant, input: Input) {
        // Facts always answer `Done`; commands go through `command`.
        let _ = self.cluster.handle(now, input);
        self.drain()
    }

    fn dispatch(&mut self, token: Token) {
        if token == SIGNALS {
            let received: Vec<i32> = self.signals.pending().collect();
            for number in received {
                if number == sig::SIGCHLD {
                    self.sweep();
                } else if let Some(signal) =
                    signal_from_number(number).filter(|signal| HANDLED.contains(signal))
                {
                    tracing::info!("caught signal {signal}");
                    self.feed(Input::Signal(signal));
                }
            }
            return;
        }
        if token == CONTROL {
            self.accept_clients();
            return;
        }
        if token == HANDLES {
            self.handle_requests();
            return;
        }
        if token == METRICS {
            self.accept_metrics();
            return;
        }
        if token.0 >= FIRST_METRICS_CONNECTION {
            return self.metrics_connection(token);
        }
        if self.successor_event(token) {
            return;
        }
        if token.0 >= FIRST_CLIENT {
            return self.control_client(token);
        }
        let index = token.0 - FIRST_WORKER;
        let id = WorkerId((index / PER_WORKER) as u64);
        match index % PER_WORKER {
            0 => self.check_exit(id),
            1 => self.read_notify(id),
            2 => self.check_tree(id),
            stream => self.output.readable(id, stream - 3, self.poll.registry()),
        }
    }

    /// A control client is readable or writable: carry out its request if complete.
    fn control_client(&mut self, token: Token) {
        let Some(control) = self.setup.control.as_mut() else {
            return;
        };
        let Some(number) = control.client_of(token) else {
            return;
        };
        let Some(request) = control.ready(self.poll.registry(), number) else {
            return;
        };
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                control.answer(
                    self.poll.registry(),
                    number,
                    &Response::failed(error.to_string()),
                );
                return;
            }
        };
        self.command(request, Asker::Client(number));
    }

    /// Carries out the requests the in-process handles queued, at most
    /// [`REQUESTS_PER_TURN`] per turn.
    fn handle_requests(&mut self) {
        for _ in 0..REQUESTS_PER_TURN {
            let Some((number, request)) = self.handles.next_request() else {
                self.handles_pending = false;
                return;
            };
            self.command(request, Asker::Handle(number));
        }
        self.handles_pending = self.handles.has_requests();
    }

    /// Answers whoever asked.
    fn answer(&mut self, asker: Asker, answer: &Response) {
        match asker {
            Asker::Client(number) => {
                if let Some(control) = self.setup.control.as_mut() {
                    control.answer(self.poll.registry(), number, answer);
                }
            }
            Asker::Handle(number) => self.handles.answer(number, answer),
        }
    }

    /// Keeps whoever asked waiting until `waiting` resolves.
    fn wait(&mut self, asker: Asker, waiting: Waiting) {
        match asker {
            Asker::Client(number) => {
                if let Some(control) = self.setup.control.as_mut() {
                    control.wait(number, waiting);
                }
            }
            Asker::Handle(number) => self.handles.wait(number, waiting),
        }
    }

    /// A request from a control client or a handle: carried out, then answered now or
    /// once what it waits for has happened.
    fn command(&mut self, request: Request, asker: Asker) {
        if matches!(
            request,
            Request::Status | Request::Events | Request::Metrics { .. }
        ) {
            // A readiness probe may ask every second: not worth a line each time.
            tracing::debug!(%request, "control request");
        } else {
            tracing::info!(%request, "control request");
        }
        let mut outcome: Option<Response> = None;
        match request {
            Request::Status => outcome = Some(Response::Status(self.status())),
            Request::Metrics { format } => {
                outcome = Some(Response::Metrics {
                    text: self.metrics_text(format),
                })
            }
            Request::Scale { workers } => {
                let need = crate::os::rlimit::fds_needed(
                    workers,
                    self.setup.listeners.len(),
                    self.setup.control.is_some(),
                ) + output::fds_per_worker(self.setup.worker_output) * workers as u64
                    + u64::from(self.setup.metrics.is_some()) * crate::engine::metrics_server::FDS;
                if let Some(limit) = crate::os::rlimit::fd_limit().filter(|&limit| limit < need) {
                    let error = format!(
                        "cannot run {workers} workers: they need about {need} open files \
                         and the limit (RLIMIT_NOFILE) is {limit}"
                    );
                    self.answer(asker, &Response::failed(error));
                    return;
                }
                outcome = Some(
                    match self.cluster.handle(Instant::now(), Input::Scale(workers)) {
                        Ok(_) => Response::Scaled { workers },
                        Err(e) => Response::failed(e.to_string()),
                    },
                );
                self.drain();
            }
            Request::Reload => {
                // The core answers with the generation whose rollout answers this request;
                // wait for it before the drain: with instant readiness a rollout can end
                // inside the very drain that follows the command.
                match self.cluster.handle(Instant::now(), Input::Reload) {
                    Ok(Reply::Reload { generation }) => {
                        self.wait(asker, Waiting::Reload { generation });
                    }
                    Ok(Reply::Done) => {}
                    Err(e) => outcome = Some(Response::failed(e.to_string())),
                }
                self.drain();
            }
            Request::Stop => {
                self.wait(asker, Waiting::Stop);
                self.feed(Input::Shutdown);
            }
            Request::Events => match asker {
                Asker::Client(number) => {
                    if let Some(control) = self.setup.control.as_mut() {
                        control.subscribe(self.poll.registry(), number);
                    }
                }
                Asker::Handle(_) => {
                    outcome = Some(Response::failed(
                        "events: in process, the cluster's on_event callback gets every event",
                    ));
                }
            },
            Request::Upgrade => {
                // Waiting first: a new master that cannot even be started fails the
                // upgrade inside the drain that follows.
                match self.cluster.handle(Instant::now(), Input::Upgrade) {
                    Ok(_) => self.wait(asker, Waiting::Upgrade),
                    Err(e) => outcome = Some(Response::failed(format!("no upgrade: {e}"))),
                }
                self.drain();
            }
        }
        if let Some(answer) = outcome {
            self.answer(asker, &answer);
        }
    }

    /// The `status` answer: phase, counts, and one entry per worker.
    fn status(&self) -> Status {
        let now = Instant::now();
        let line = self.cluster.status();
        Status {
            pid: std::process::id(),
            phase: line.phase,
            target: line.target,
            ready: line.ready,
            live: line.live,
            degraded: self.cluster.is_degraded(),
            failing_slots: line.failing,
            generation: self.cluster.generation(),
            log_lines_dropped: crate::log::dropped_lines(),
            worker_lines_dropped: self.output.dropped(),
            containment: self.containment.mechanism(),
            recycles: self.cluster.stats().recycles,
            metrics: self.setup.metrics.as_ref().map(|m| m.addr().to_owned()),
            workers: self
                .cluster
                .workers()
                .map(|w| WorkerStatus::new(&w, now, self.usage_of(w.id)))
                .collect(),
        }
    }

    /// Feeds the messages waiting on `id`'s notify socket to the core: at most
    /// [`NOTIFY_PER_TURN`] of them; if there may be more, `id` stays in the backlog.
    fn read_notify(&mut self, id: WorkerId) {
        for _ in 0..NOTIFY_PER_TURN {
            let Some(handle) = self.workers.get_mut(&id) else {
                return;
            };
            match handle.notify.recv_one() {
                Ok(Some(Received::Message(message))) => self.deliver(id, &message),
                Ok(Some(Received::Rejected(why))) => {
                    handle.rejected.record(id, &why, Instant::now());
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(worker = id.0, "reading the worker's notify socket: {e}");
                    return;
                }
            }
        }
        self.unread.insert(id);
    }

    fn deliver(&mut self, id: WorkerId, message: &NotifyMessage) {
        if message.ready {
            self.feed(Input::Ready { id });
        }
        if message.watchdog {
            self.feed(Input::Heartbeat { id });
        }
        if message.stopping {
            self.feed(Input::Stopping { id });
        }
        if message.recycle {
            self.feed(Input::Recycle {
                id,
                cause: RecycleCause::Requested,
            });
        }
        if let Some(status) = &message.status {
            tracing::debug!(worker = id.0, "worker status: {status}");
        }
    }

    /// The pidfd of `id` became readable: reap it.
    fn check_exit(&mut self, id: WorkerId) {
        let Some(handle) = self.workers.get_mut(&id) else {
            return;
        };
        if handle.ending.is_some() {
            return;
        }
        match handle.process.try_wait() {
            Ok(Some(status)) => self.main_exited(id, status),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(worker = id.0, "checking worker exit: {e}");
            }
        }
    }

    /// SIGCHLD: reaps every child that exited, at most [`REAPS_PER_TURN`] per turn. A
    /// worker's main process goes the way of [`Self::main_exited`]; anything else is an
    /// orphan of some worker's tree, re-parented to the master (a subreaper).
    fn sweep(&mut self) {
        self.sweep_pending = false;
        for _ in 0..REAPS_PER_TURN {
            match crate::os::process::reap_any_child() {
                Ok(Some((pid, status))) => match self.by_pid.get(&pid).copied() {
                    Some(id) => {
                        if let Some(handle) = self.workers.get_mut(&id) {
                            handle.process.set_reaped(status);
                            if handle.ending.is_none() {
                                self.main_exited(id, status);
                            }
                        }
                    }
                    None => {
                        if !self.successor_reaped(pid, status) {
                            tracing::debug!(pid, %status, "reaped an orphan");
                            self.orphan_reaped = true;
                        }
                    }
                },
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("reaping children: {e}");
                    return;
                }
            }
        }
        self.sweep_pending = true;
    }

    /// Worker `id`'s main process exited and was reaped: kill what is left of its tree;
    /// once the tree is gone (at once, or at `populated 0` of its cgroup), tell the core.
    fn main_exited(&mut self, id: WorkerId, status: ExitStatus) {
        // Messages sent just before the exit (READY=1, then a crash) come first.
        self.read_notify(id);
        let Some(handle) = self.workers.get_mut(&id) else {
            return;
        };
        let more = handle.tree.end();
        self.orphans_of.push(id.0);
        if more {
            if let Some(cgroup) = handle.tree.cgroup() {
                let token = Token(FIRST_WORKER + PER_WORKER * id.0 as usize + 2);
                let registered = self.poll.registry().register(
                    &mut SourceFd(&cgroup.events().as_raw_fd()),
                    token,
                    Interest::PRIORITY,
                );
                match registered {
                    Ok(()) => {
                        handle.ending = Some(status);
                        // It may have emptied between the check and the registration.
                        return self.check_tree(id);
                    }
                    Err(e) => tracing::warn!(worker = id.0, "watching the worker's cgroup: {e}"),
                }
            }
        }
        self.gone(id, status)
    }

    /// `cgroup.events` of an ending worker changed: gone once no process is left.
    fn check_tree(&mut self, id: WorkerId) {
        let Some(handle) = self.workers.get(&id) else {
            return;
        };
        let (Some(status), Some(cgroup)) = (handle.ending, handle.tree.cgroup()) else {
            return;
        };
        if cgroup.populated() {
            return;
        }
        self.gone(id, status)
    }

    /// Worker `id` and its whole tree are gone: forget it, tell the core.
    fn gone(&mut self, id: WorkerId, status: ExitStatus) {
        self.unread.remove(&id);
        if let Some(mut handle) = self.workers.remove(&id) {
            handle.rejected.finish(id);
            self.by_pid.remove(&handle.process.pid());
            self.containment.untrack(&handle.tree);
            // Its pidfd and (unless recycled) its notify socket are closed with the
            // handle, which takes them out of the poll: no deregistration needed. A
            // recycled notify socket stays registered, with this worker's token, whose
            // events find no worker, until the next worker's registration replaces it.
            if let Some(cgroup) = handle.tree.into_cgroup() {
                // The cgroup's files stay open in the pool: out of the poll they go.
                if handle.ending.is_some() {
                    let registry = self.poll.registry();
                    let _ = registry.deregister(&mut SourceFd(&cgroup.events().as_raw_fd()));
                }
                let target = self.cluster.target();
                if self.containment.recycle(cgroup, target) {
                    // No process of its tree is left to speak on its socket.
                    self.notify_sockets.recycle(handle.notify, target);
                }
            }
        }
        // Its last lines before the core hears of its end (and before the master's own
        // exit, if this was the last worker); the pipes close once read, EOF or not.
        self.output.gone(id, self.poll.registry());
        self.feed(Input::Exited { id, status })
    }

    /// Carries out every action, feeding the facts it learns back in, until the core has
    /// nothing more to say.
    fn drain(&mut self) {
        loop {
            while let Some(action) = self.cluster.poll_action() {
                self.execute(action);
            }
            let Some(input) = self.inputs.pop_front() else {
                // Every failure gathered in this drain has been reported by now.
                self.spawn_failures.clear();
                return;
            };
            // Spawn reports: facts, always `Done`.
            let _ = self.cluster.handle(Instant::now(), input);
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Spawn {
                id,
                slot,
                generation,
            } => {
                tracing::debug!(worker = id.0, slot = slot.0, generation, "spawning worker");
                if self.spawned_this_turn < SPAWNS_PER_TURN && self.deferred.is_empty() {
                    self.spawn_now(id, slot.0);
                } else {
                    self.deferred.push_back((id, slot.0));
                }
            }
            Action::Signal { id, signal, .. } => {
                if let Some(handle) = self.workers.get(&id) {
                    let tree = signal == Signal::Kill || self.setup.kill_mode == KillMode::Tree;
                    if tree {
                        handle.tree.signal(signal);
                    } else if let Err(e) = handle.process.signal(signal) {
                        tracing::warn!(worker = id.0, "sending {signal}: {e}");
                    }
                }
            }
            Action::Event(event) => {
                self.pins.on_event(&event);
                if let Event::WorkerReady { id, .. } = event {
                    if let Some(worker) = self.cluster.worker(id) {
                        let booted = Instant::now().saturating_duration_since(worker.spawned_at);
                        self.boot_times.observe(booted);
                    }
                }
                let detail = self.spawn_detail(&event);
                let detail = detail.as_deref();
                log_event(&event, detail);
                if let Some(control) = self.setup.control.as_mut() {
                    if control.has_subscribers() {
                        let lines = self.capture.lines(|| log_event(&event, detail));
                        control.publish(self.poll.registry(), &lines);
                    }
                }
                let ended = match &event {
                    Event::ReloadFinished { generation, took } => Some((
                        *generation,
                        Response::Reloaded {
                            generation: *generation,
                            took: *took,
                        },
                    )),
                    Event::ReloadFailed { generation, reason } => Some((
                        *generation,
                        Response::failed(format!(
                            "rolling restart failed: {}; the old workers keep serving",
                            with_detail(reason, detail)
                        )),
                    )),
                    _ => None,
                };
                if let Some((generation, answer)) = ended {
                    if let Some(control) = self.setup.control.as_mut() {
                        control.reload_ended(self.poll.registry(), generation, &answer);
                    }
                    self.handles.reload_ended(generation, &answer);
                }
                self.upgrade_event(&event);
                (self.setup.on_event)(&event);
            }
            // For the old master that started this one, not the service manager.
            Action::Notify(clutch_proto::Notice::Serving) => self.tell_predecessor(),
            Action::Notify(notice) => self.setup.service.send(&notice),
            Action::Exit(reason) => self.exit = Some(reason),
            Action::SpawnSuccessor => self.spawn_successor(),
            Action::SignalSuccessor { signal, .. } => self.signal_successor(signal),
        }
    }

    /// Forks worker `id` now, unless the core decided it goes while it waited in the
    /// backlog; queues the outcome as the core's next input.
    fn spawn_now(&mut self, id: WorkerId, slot: usize) {
        if self
            .cluster
            .worker(id)
            .is_some_and(|w| w.stop_reason.is_some())
        {
            let error = clutch_proto::SpawnError::new(clutch_proto::SpawnErrorKind::Cancelled);
            self.inputs.push_back(Input::SpawnFailed { id, error });
            return;
        }
        self.spawned_this_turn += 1;
        match self.spawn(id, slot) {
            Ok(pid) => self.inputs.push_back(Input::Spawned { id, pid }),
            Err((error, detail)) => {
                // The next fork would most likely fail the same way: let the core hear
                // of this one first (the rest wait in the backlog, and a program that
                // cannot be executed at all is then one line, not one per worker).
                self.spawned_this_turn = SPAWNS_PER_TURN;
                self.spawn_failures.insert(id, detail);
                self.inputs.push_back(Input::SpawnFailed { id, error });
            }
        }
    }

    /// Forks worker `id`; a failure comes as the core must hear it and as the log tells it.
    fn spawn(
        &mut self,
        id: WorkerId,
        slot: usize,
    ) -> Result<Pid, (clutch_proto::SpawnError, String)> {
        let notify = self.notify_sockets.bind_worker(id.0).map_err(|e| {
            master_error(
                &e,
                format_args!("creating the notify socket of worker {id}"),
            )
        })?;
        let program = &self.setup.program;
        // The generation's pinned program file, if it has one (see `pin.rs`).
        let generation = self.cluster.worker(id).map_or(1, |w| w.generation);
        // The worker's stdout and stderr pipes: (read end, write end) each.
        let pipes = if self.output.piped() {
            let pipe = || {
                output::pipe().map_err(|e| {
                    master_error(&e, format_args!("creating the output pipes of worker {id}"))
                })
            };
            Some([pipe()?, pipe()?])
        } else {
            None
        };
        let mut spec = SpawnSpec::new(&program.path)
            .args(program.args.iter().cloned())
            .base_env(&self.env)
            .notify_socket(notify.address())
            .worker(id.0, slot);
        let workers = &self.setup.workers;
        if let Some(credentials) = &workers.credentials {
            spec = spec.credentials(credentials.clone());
        }
        if let Some(dir) = &workers.current_dir {
            spec = spec.current_dir(dir);
        }
        if let Some(mask) = workers.umask {
            spec = spec.umask(mask);
        }
        if let Some(file) = self.pins.file(generation) {
            spec = spec.program_file(file);
        }
        if let Some(arg0) = &program.arg0 {
            spec = spec.arg0(arg0.clone());
        }
        if let Some(timeout) = self.setup.config.hang().timeout {
            spec = spec.watchdog_usec(timeout.as_micros() as u64);
        }
        for listener in &self.setup.listeners {
            spec = spec.listener(listener.name(), listener.as_fd());
        }
        if let Some([(_, out), (_, err)]) = &pipes {
            spec = spec.stdout(out.as_fd()).stderr(err.as_fd());
        }
        let cgroup = self.containment.worker_cgroup(id.0);
        if let Some(cgroup) = &cgroup {
            spec = spec.cgroup_dir(cgroup.dir());
        }
        let spawned = spec.spawn();
        drop(spec);
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                // The child that failed has exited (and was reaped): its cgroup is empty.
                if let Some(cgroup) = cgroup {
                    self.containment.recycle(cgroup, self.cluster.target());
                }
                return Err((e.to_core(), crate::error::Chain(&e).to_string()));
            }
        };
        // The master's copies of the write ends go now, or their EOF would never come.
        let reads = pipes.map(|[(out, _), (err, _)]| [out, err]);
        let pid = child.pid;
        let mut process = Process::from(child);
        // The worker leads its own process group (the child made sure).
        let tree = Tree::new(pid, cgroup);
        self.containment.track(&tree);
        let watched = self.watch(id, &process, &notify).and_then(|()| {
            let Some(reads) = reads else { return Ok(()) };
            let who = output::Who {
                id: id.0,
                slot,
                pid,
                generation,
            };
            let base = FIRST_WORKER + PER_WORKER * id.0 as usize;
            self.output
                .add(
                    id,
                    who,
                    reads,
                    [Token(base + 3), Token(base + 4)],
                    self.poll.registry(),
                )
                .map_err(|e| master_error(&e, format_args!("watching worker {id}'s output")))
        });
        if let Err(error) = watched {
            // The core will hear that this spawn failed: no process of it may be left
            // running on the shared sockets.
            tree.end();
            self.containment.untrack(&tree);
            if let Err(e) = process.kill_and_reap() {
                tracing::warn!(
                    worker = id.0,
                    pid,
                    "reaping a worker that could not be watched: {e}"
                );
            }
            return Err(error);
        }
        self.workers.insert(
            id,
            Handle {
                process,
                notify,
                rejected: RejectedLog::default(),
                tree,
                ending: None,
            },
        );
        self.by_pid.insert(pid, id);
        Ok(pid)
    }

    /// Registers a new worker's pidfd and notify socket with the loop.
    fn watch(
        &mut self,
        id: WorkerId,
        process: &Process,
        notify: &NotifyListener,
    ) -> Result<(), (clutch_proto::SpawnError, String)> {
        let registry = self.poll.registry();
        let base = FIRST_WORKER + PER_WORKER * id.0 as usize;
        // (No pidfd on this kernel: the SIGCHLD sweep notices the exit.)
        if let Some(fd) = process.pidfd() {
            registry
                .register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(base),
                    Interest::READABLE,
                )
                .map_err(|e| master_error(&e, format_args!("watching worker {id}")))?;
        }
        let mut source = SourceFd(&notify.as_fd().as_raw_fd());
        // A recycled socket is still registered, with its earlier worker's token.
        if notify.is_recycled() {
            registry.reregister(&mut source, Token(base + 1), Interest::READABLE)
        } else {
            registry.register(&mut source, Token(base + 1), Interest::READABLE)
        }
        .map_err(|e| master_error(&e, format_args!("watching worker {id}'s notify socket")))?;
        Ok(())
    }

    /// The detailed text of the spawn failure `event` is about, if this drain saw one.
    fn spawn_detail(&self, event: &Event) -> Option<String> {
        let id = match event {
            Event::WorkerSpawnFailed { id, .. }
            | Event::ReloadFailed {
                reason: ReloadFailure::SpawnFailed { id, .. },
                ..
            } => *id,
            _ => return None,
        };
        self.spawn_failures.get(&id).cloned()
    }

    fn update_title(&mut self) {
        if !self.setup.config.title() {
            return;
        }
        let name = self.setup.config.name();
        let title = match self.cluster.phase() {
            _ if self.handed_over => format!("{name}: master process (old) <shutting down>"),
            Phase::Stopping | Phase::Exited => format!("{name}: master process <shutting down>"),
            _ => format!(
                "{name}: master process [numworkers: {}]",
                self.cluster.live_workers()
            ),
        };
        if self.title.as_deref() != Some(title.as_str()) {
            if let Err(e) = crate::os::title::set_title(&title) {
                tracing::debug!("setting the process title: {e}");
            }
            self.title = Some(title);
        }
    }
}

/// A rollout's failure as people should read it: with the driver's own account of the
/// spawn failure behind it, when there was one.
fn with_detail(reason: &ReloadFailure, detail: Option<&str>) -> String {
    match (reason, detail) {
        (ReloadFailure::SpawnFailed { .. }, Some(detail)) => format!("{reason}: {detail}"),
        _ => reason.to_string(),
    }
}

/// The driver's log line for each event (gs-clutch's wording where it had one). Every
/// line carries `event = "<name>"` ([`Event::name`]) and the event's fields, so `--log-format json` gives
/// one machine-readable line per event.
///
/// `detail` is the driver's own account of the spawn failure the event is about, if any.
fn log_event(event: &Event, detail: Option<&str>) {
    use tracing::{debug, error, info, warn};
    let name = event.name();
    match event {
        Event::WorkerStarted {
            id,
            slot,
            pid,
            generation,
        } => {
            info!(
                event = name,
                worker = id.0,
                slot = slot.0,
                pid,
                generation,
                "Worker started"
            )
        }
        Event::WorkerSpawnFailed {
            id,
            slot,
            error: core,
        } => {
            let error = detail.map_or_else(|| core.to_string(), str::to_owned);
            error!(
                event = name,
                worker = id.0,
                slot = slot.0,
                kind = core.kind.name(),
                errno = core.errno,
                error,
                "worker failed to start"
            )
        }
        Event::WorkerSpawnCancelled { id, slot, reason } => debug!(
            event = name,
            worker = id.0,
            slot = slot.0,
            reason = reason.name(),
            "worker not started: it was stopped before its turn"
        ),
        Event::SignalIgnored { signal, why } => info!(
            event = name,
            signal = signal.name(),
            %why,
            "signal ignored"
        ),
        Event::WorkerReady { id, slot, pid } => {
            info!(
                event = name,
                worker = id.0,
                slot = slot.0,
                pid,
                "worker ready"
            )
        }
        Event::Listening { id } => info!(event = name, worker = id.0, "listening"),
        Event::WorkerStopping { id, slot, pid } => {
            info!(
                event = name,
                worker = id.0,
                slot = slot.0,
                pid,
                "worker is stopping on its own"
            )
        }
        Event::WorkerBootTimedOut { id, slot, pid } => warn!(
            event = name,
            worker = id.0,
            slot = slot.0,
            pid,
            "worker did not become ready in time"
        ),
        Event::WorkerHung {
            id,
            slot,
            pid,
            silent_for,
        } => warn!(
            event = name,
            worker = id.0,
            slot = slot.0,
            pid,
            silent_ms = silent_for.as_millis() as u64,
            "worker hung"
        ),
        Event::WorkerDied {
            id,
            slot,
            pid,
            status,
            was_ready,
            uptime,
        } => warn!(
            event = name, worker = id.0, slot = slot.0, pid, %status, was_ready,
            uptime_ms = uptime.as_millis() as u64, "worker died unexpectedly"
        ),
        Event::WorkerExit {
            id,
            slot,
            pid,
            status,
            reason,
        } => info!(
            event = name, worker = id.0, slot = slot.0, pid, %status,
            reason = reason.name(), "worker exited"
        ),
        Event::WorkerRecycling {
            id,
            slot,
            pid,
            cause,
        } => info!(
            event = name,
            worker = id.0,
            slot = slot.0,
            pid,
            cause = cause.name(),
            memory_bytes = match cause {
                RecycleCause::Memory { bytes } => Some(*bytes),
                _ => None,
            },
            "recycling worker ({cause}): its successor starts first"
        ),
        Event::RespawnDelayed {
            slot,
            delay,
            consecutive_failures,
        } => info!(
            event = name,
            slot = slot.0,
            delay_ms = delay.as_millis() as u64,
            consecutive_failures,
            "respawn delayed (backoff)"
        ),
        Event::NoWorkers => info!(event = name, "no workers left"),
        Event::ShutdownStarted { trigger } => {
            info!(event = name, %trigger, "shutting down workers")
        }
        Event::ShutdownForced { killed } => {
            warn!(event = name, killed, "forcing shutdown")
        }
        Event::ShutDown { reason } => info!(
            event = name,
            exit_code = reason.code(),
            reason = reason.describe(),
            "shut down"
        ),
        Event::BreakerTripped { failures, window } => error!(
            event = name,
            failures,
            window_ms = window.as_millis() as u64,
            "no worker could stay up for the breaker's window: crash breaker tripped, shutting down"
        ),
        Event::Degraded {
            failing,
            ready,
            target,
        } => warn!(
            event = name,
            failing,
            ready,
            target,
            "degraded: some slots keep failing and wait in backoff; the ready workers keep serving"
        ),
        Event::Recovered => info!(event = name, "recovered: no slot is failing any more"),
        Event::ReloadStarted { generation } => {
            info!(event = name, generation, "rolling restart started")
        }
        Event::ReloadQueued => info!(event = name, "rolling restart queued"),
        Event::ReloadFinished { generation, took } => info!(
            event = name,
            generation,
            took_ms = took.as_millis() as u64,
            "rolling restart finished"
        ),
        Event::ReloadFailed { generation, reason } => error!(
            event = name,
            generation,
            reason = with_detail(reason, detail),
            "rolling restart failed; no further old worker is stopped"
        ),
        Event::Scaled { from, to } => info!(event = name, from, to, "worker count changed"),
        Event::SignalForwarded { signal, workers } => info!(
            event = name,
            signal = signal.name(),
            workers,
            "signal forwarded to workers"
        ),
        Event::Ignored { reason } => info!(event = name, what = %reason, "ignored"),
        Event::UpgradeStarted => info!(event = name, "upgrade: starting a new master"),
        Event::UpgradeSpawned { pid } => info!(
            event = name,
            pid, "upgrade: the new master runs and starts its workers"
        ),
        Event::UpgradeHandedOver { pid } => info!(
            event = name,
            pid, "upgrade: the new master serves; handing over and stopping the old workers"
        ),
        Event::UpgradeFailed { cause } => error!(
            event = name,
            %cause,
            "upgrade failed; this master keeps serving"
        ),
        Event::SuccessorLost { pid, status } => error!(
            event = name,
            pid,
            %status,
            "the new master exited after the handover; nobody serves once the old workers are gone"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every handled signal has an OS number, and that number leads back to it: a signal
    /// added to the core and to [`HANDLED`] without an OS mapping would silently never
    /// be installed.
    #[test]
    fn every_handled_signal_maps_both_ways() {
        for signal in HANDLED {
            let number = signal_number(signal).unwrap_or_else(|| panic!("{signal}: no number"));
            assert_eq!(signal_from_number(number), Some(signal));
            assert_ne!(number, sig::SIGCHLD);
        }
    }
}
