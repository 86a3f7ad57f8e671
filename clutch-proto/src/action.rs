//! What the core asks of its driver: [`Action`]s, among them [`Event`]s for the
//! application and [`Notice`]s for the service manager.

use std::fmt;
use std::time::Duration;

use crate::{ExitStatus, Pid, RecycleCause, Signal, Slot, SpawnError, SpawnErrorKind, WorkerId};

/// One thing the driver must do. Drained with
/// [`ClusterState::poll_action`](crate::ClusterState::poll_action), in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a worker process for `slot`, then report
    /// [`Input::Spawned`](crate::Input::Spawned) or
    /// [`Input::SpawnFailed`](crate::Input::SpawnFailed) for `id`.
    Spawn {
        /// The new worker's id (`CLUTCH_WORKER_ID`).
        id: WorkerId,
        /// Its slot (`CLUTCH_WORKER_SLOT`).
        slot: Slot,
        /// Which generation of the program to run: it grows with every rolling restart and
        /// falls back when one fails, so a driver can keep what each generation runs.
        generation: u64,
    },
    /// Send `signal` to the worker `id` (whose pid is `pid`).
    Signal {
        /// The worker.
        id: WorkerId,
        /// Its pid (payload; a driver with pidfds signals through those).
        pid: Pid,
        /// What to send.
        signal: Signal,
    },
    /// Tell the application something happened.
    Event(Event),
    /// Tell the service manager (systemd's `NOTIFY_SOCKET`) about the master's state.
    Notify(Notice),
    /// Exit the master with this reason's [`code`](ExitReason::code). Always the last
    /// action: the state accepts no more input afterwards.
    Exit(ExitReason),
    /// Start the successor master of an upgrade: this master's program again (its path
    /// as started, so a freshly deployed file is what runs), with the listening sockets
    /// and the control socket handed over and a channel to say it serves on; then report
    /// [`SuccessorFact::Spawned`](crate::SuccessorFact::Spawned) or
    /// [`SuccessorFact::SpawnFailed`](crate::SuccessorFact::SpawnFailed). It must not
    /// die with this master, nor be contained as a worker.
    SpawnSuccessor,
    /// Send `signal` to the successor master (process `pid`, the one last reported
    /// spawned): an upgrade that failed, or this master's shutdown, stops it.
    SignalSuccessor {
        /// Its pid.
        pid: Pid,
        /// What to send.
        signal: Signal,
    },
}

/// What the application hears about (the master's events).
///
/// gs-clutch's six events map as: `listening` → [`Listening`](Self::Listening),
/// `shutDown` → [`ShutDown`](Self::ShutDown), `workerStarted` →
/// [`WorkerStarted`](Self::WorkerStarted), `workerDied` → [`WorkerDied`](Self::WorkerDied),
/// `workerExit` → [`WorkerExit`](Self::WorkerExit), `noWorkers` →
/// [`NoWorkers`](Self::NoWorkers). The others are new.
///
/// Exhaustive on purpose (as quinn's `Event`): a driver that matches every variant, to
/// log each with its own words, gets a compile error when a variant is added, rather
/// than a silent catch-all. [`name`](Self::name) is each event's stable name for logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// gs-clutch `workerStarted`: a worker process exists (the driver reported its pid).
    WorkerStarted {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
        /// The generation it runs.
        generation: u64,
    },
    /// A worker could not be started at all (fork or exec failed). What follows depends
    /// on the error's [`kind`](SpawnError::kind): a boot failure
    /// ([`Exec`](SpawnErrorKind::Exec) once a worker has started,
    /// [`Other`](SpawnErrorKind::Other)), a retry that counts toward nothing
    /// ([`Resource`](SpawnErrorKind::Resource)), or, for an `Exec` failure before any
    /// worker ever started, a shutdown with [`ExitReason::StartupFailed`]. Never carries
    /// [`Cancelled`](SpawnErrorKind::Cancelled): see
    /// [`WorkerSpawnCancelled`](Self::WorkerSpawnCancelled).
    WorkerSpawnFailed {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// What went wrong (a `Cancelled` report for a worker that had no stop reason
        /// arrives here as `Resource`).
        error: SpawnError,
    },
    /// The driver did not start a worker the master had already decided to stop while
    /// it was being spawned (it reported [`SpawnErrorKind::Cancelled`]). Not a failure.
    WorkerSpawnCancelled {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Why it was to go.
        reason: StopReason,
    },
    /// A worker became ready.
    WorkerReady {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
    },
    /// gs-clutch `listening`: the first worker of this master became ready. Emitted once.
    Listening {
        /// The worker that made it.
        id: WorkerId,
    },
    /// A worker said it is stopping (`STOPPING=1`) on its own; it is replaced at once.
    WorkerStopping {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
    },
    /// A worker did not become ready within the boot timeout; it is killed and counts as
    /// a boot failure.
    WorkerBootTimedOut {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
    },
    /// A worker that sent heartbeats went silent: it gets the diagnostic signal (if any),
    /// then SIGKILL, and is replaced.
    WorkerHung {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
        /// How long since its last heartbeat.
        silent_for: Duration,
    },
    /// gs-clutch `workerDied`: a worker exited without the master asking.
    WorkerDied {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid, if it ever had one.
        pid: Option<Pid>,
        /// How it ended.
        status: ExitStatus,
        /// Whether it had become ready (false: a boot failure).
        was_ready: bool,
        /// How long it ran.
        uptime: Duration,
    },
    /// gs-clutch `workerExit`: a worker the master had asked to go (or that announced it
    /// was stopping) exited.
    WorkerExit {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid, if it ever had one.
        pid: Option<Pid>,
        /// How it ended.
        status: ExitStatus,
        /// Why it was asked to go.
        reason: StopReason,
    },
    /// A worker is being recycled: a successor is spawned in its slot (at once, or when
    /// the rolling restart under way ends, if that has not replaced it), and the worker
    /// is stopped gracefully (its exit's reason: [`StopReason::Recycled`]) only once
    /// the successor has passed probation. Emitted once per recycle; a successor that
    /// fails young is retried after the slot's backoff while the old worker serves on.
    WorkerRecycling {
        /// Worker id.
        id: WorkerId,
        /// Its slot.
        slot: Slot,
        /// Its pid.
        pid: Pid,
        /// Why.
        cause: RecycleCause,
    },
    /// A slot will be refilled after a backoff delay (its worker died young).
    RespawnDelayed {
        /// The slot.
        slot: Slot,
        /// How long until the refill.
        delay: Duration,
        /// Young failures in a row in this slot.
        consecutive_failures: u32,
    },
    /// gs-clutch `noWorkers`: the last worker process is gone.
    NoWorkers,
    /// Shutdown began: every worker was asked to stop.
    ShutdownStarted {
        /// What started it.
        trigger: ShutdownTrigger,
    },
    /// The graceful stop ran out of time (or a QUIT came, or another TERM/INT at least
    /// [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) after the shutdown began):
    /// every remaining worker is SIGKILLed.
    ShutdownForced {
        /// Workers that had to be killed.
        killed: usize,
    },
    /// gs-clutch `shutDown`: every worker is gone and the master exits next.
    ShutDown {
        /// Why the master exits, and with which code.
        reason: ExitReason,
    },
    /// No worker has been ready while the cluster kept failing for the breaker's window
    /// (see [`CrashBudget`](crate::CrashBudget)): the cluster shuts down with
    /// [`ExitReason::BreakerTripped`]. Never while a worker is ready.
    BreakerTripped {
        /// Failures (boot failures and deaths in probation) counted since the cluster
        /// began failing.
        failures: usize,
        /// The window.
        window: Duration,
    },
    /// Some slots keep failing (their workers die young and they wait in backoff); the
    /// cluster still runs what it can. The breaker never stops a ready worker: it waits
    /// for the cluster to have none. Emitted when the number of failing slots goes from
    /// zero to more.
    Degraded {
        /// Slots whose workers died young since their last worker passed probation.
        failing: usize,
        /// Slots whose worker is ready.
        ready: usize,
        /// The target worker count.
        target: usize,
    },
    /// No slot is failing any more: every failing slot's worker passed probation (or the
    /// slot was scaled away).
    Recovered,
    /// A rolling restart began.
    ReloadStarted {
        /// The generation it rolls out.
        generation: u64,
    },
    /// A reload was asked for while one runs; it starts when the current one finishes.
    ReloadQueued,
    /// Every slot runs a ready worker of the new generation.
    ReloadFinished {
        /// The generation rolled out.
        generation: u64,
        /// How long it took.
        took: Duration,
    },
    /// The rolling restart stopped; the old generation keeps serving where it was not yet
    /// replaced.
    ReloadFailed {
        /// The generation that failed.
        generation: u64,
        /// Why.
        reason: ReloadFailure,
    },
    /// The target worker count changed.
    Scaled {
        /// Old target.
        from: usize,
        /// New target.
        to: usize,
    },
    /// A signal was forwarded to every live worker (USR1, USR2).
    SignalForwarded {
        /// The signal.
        signal: Signal,
        /// How many workers got it.
        workers: usize,
    },
    /// A signal or command had no effect in this phase (a HUP during shutdown, a TTOU at
    /// one worker, a WINCH). Reported so nothing is dropped silently.
    Ignored {
        /// What was ignored, and why.
        reason: IgnoreReason,
    },
    /// A master signal had no effect, for a reason worth knowing: a USR1/USR2 that is not
    /// in [`Config::forward_signals`](crate::Config::forward_signals), or a TERM/INT
    /// within [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) of the shutdown's
    /// start, taken as a repeat of the request that began it.
    SignalIgnored {
        /// The signal.
        signal: Signal,
        /// Why it was ignored.
        why: SignalIgnoreReason,
    },
    /// An upgrade of the master began: a successor master is being started.
    UpgradeStarted,
    /// The successor master runs as `pid` and starts its own workers.
    UpgradeSpawned {
        /// Its pid.
        pid: Pid,
    },
    /// The successor said it serves (its workers ready and past probation): this master
    /// hands over to it — it stops its workers gracefully and exits
    /// ([`ExitReason::Upgraded`]).
    UpgradeHandedOver {
        /// The new master's pid.
        pid: Pid,
    },
    /// The upgrade failed and changed nothing: this master keeps serving with its
    /// workers, and whatever the successor started is gone (emitted once the successor
    /// has exited).
    UpgradeFailed {
        /// Why.
        cause: UpgradeFailure,
    },
    /// The successor this master handed over to exited while this master was still
    /// stopping its workers: nobody serves once they are gone, and this master's exit
    /// says so ([`ExitReason::SuccessorLost`]).
    SuccessorLost {
        /// Its pid.
        pid: Pid,
        /// How it ended.
        status: ExitStatus,
    },
}

impl Event {
    /// The event's stable name, `snake_case`, for logs (`event = "worker_started"`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::WorkerStarted { .. } => "worker_started",
            Self::WorkerSpawnFailed { .. } => "worker_spawn_failed",
            Self::WorkerSpawnCancelled { .. } => "worker_spawn_cancelled",
            Self::WorkerReady { .. } => "worker_ready",
            Self::Listening { .. } => "listening",
            Self::WorkerStopping { .. } => "worker_stopping",
            Self::WorkerBootTimedOut { .. } => "worker_boot_timed_out",
            Self::WorkerHung { .. } => "worker_hung",
            Self::WorkerDied { .. } => "worker_died",
            Self::WorkerExit { .. } => "worker_exit",
            Self::WorkerRecycling { .. } => "worker_recycling",
            Self::RespawnDelayed { .. } => "respawn_delayed",
            Self::NoWorkers => "no_workers",
            Self::ShutdownStarted { .. } => "shutdown_started",
            Self::ShutdownForced { .. } => "shutdown_forced",
            Self::ShutDown { .. } => "shutdown",
            Self::BreakerTripped { .. } => "breaker_tripped",
            Self::Degraded { .. } => "degraded",
            Self::Recovered => "recovered",
            Self::ReloadStarted { .. } => "reload_started",
            Self::ReloadQueued => "reload_queued",
            Self::ReloadFinished { .. } => "reload_finished",
            Self::ReloadFailed { .. } => "reload_failed",
            Self::Scaled { .. } => "scaled",
            Self::SignalForwarded { .. } => "signal_forwarded",
            Self::Ignored { .. } => "ignored",
            Self::SignalIgnored { .. } => "signal_ignored",
            Self::UpgradeStarted => "upgrade_started",
            Self::UpgradeSpawned { .. } => "upgrade_spawned",
            Self::UpgradeHandedOver { .. } => "upgrade_handed_over",
            Self::UpgradeFailed { .. } => "upgrade_failed",
            Self::SuccessorLost { .. } => "successor_lost",
        }
    }
}

/// Why a signal or command had no effect ([`Event::Ignored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// A HUP, TTIN or TTOU whose command (reload, scale up, scale down) the core
    /// refused: shutting down, in-process, or a worker count out of range (a TTOU at one
    /// worker is [`CommandError::BadWorkerCount`]`(0)`).
    Refused {
        /// The signal.
        signal: Signal,
        /// Why its command was refused.
        error: CommandError,
    },
    /// A signal with no meaning for the master (WINCH, ABRT, KILL).
    Meaningless(Signal),
    /// A shutdown command while the shutdown is under way.
    AlreadyShuttingDown,
    /// A request to recycle a worker ([`Input::Recycle`](crate::Input::Recycle)) that
    /// could not apply.
    Recycle {
        /// The worker.
        id: WorkerId,
        /// Why it was not recycled.
        why: RecycleIgnoreReason,
    },
}

/// Why a request to recycle a worker had no effect ([`IgnoreReason::Recycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecycleIgnoreReason {
    /// It is being recycled already (a repeated memory report, say).
    AlreadyRecycling,
    /// It does not serve a slot: booting, a successor in a rolling restart or a
    /// recycle, or leaving.
    NotServing,
    /// The cluster is shutting down.
    ShuttingDown,
}

impl fmt::Display for RecycleIgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AlreadyRecycling => "it is being recycled already",
            Self::NotServing => "it does not serve a slot (booting, a successor, or leaving)",
            Self::ShuttingDown => "the cluster is shutting down",
        })
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                signal: signal @ Signal::Hup,
                error,
            } => write!(f, "{signal}: no reload: {error}"),
            Self::Refused {
                signal: signal @ Signal::Ttin,
                error,
            } => write!(f, "{signal}: cannot add a worker now: {error}"),
            Self::Refused {
                signal: signal @ Signal::Ttou,
                error,
            } => write!(f, "{signal}: cannot remove a worker now: {error}"),
            Self::Refused {
                signal: signal @ Signal::Usr2,
                error,
            } => write!(f, "{signal}: no upgrade: {error}"),
            Self::Refused { signal, error } => write!(f, "{signal}: {error}"),
            Self::Meaningless(signal) => write!(f, "{signal} has no meaning for the master"),
            Self::AlreadyShuttingDown => f.write_str("shutdown already in progress"),
            Self::Recycle { id, why } => write!(f, "worker {id} not recycled: {why}"),
        }
    }
}

/// Why a master signal was ignored for a reason worth knowing ([`Event::SignalIgnored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignalIgnoreReason {
    /// A TERM/INT less than [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) after
    /// the shutdown began: a repeat of the request that began it.
    Repeat,
    /// A USR1/USR2 that is not in
    /// [`Config::forward_signals`](crate::Config::forward_signals).
    NotForwarded,
}

impl fmt::Display for SignalIgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Repeat => "a repeat: the shutdown began less than a second ago",
            Self::NotForwarded => "not among the signals forwarded to workers",
        })
    }
}

/// Why a worker was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The cluster is shutting down.
    Shutdown,
    /// Replaced by a ready successor in a rolling restart.
    Reload,
    /// A successor whose rolling restart was aborted.
    ReloadAborted,
    /// Its slot was removed by scaling down.
    ScaleDown,
    /// It did not become ready in time.
    BootTimeout,
    /// Its heartbeats stopped.
    Hung,
    /// It announced `STOPPING=1` itself.
    Announced,
    /// Recycled: its successor in the slot passed probation.
    Recycled,
    /// A recycle successor stopped because a rolling restart began (the rollout replaces
    /// the worker it was to replace; the recycle resumes after the rollout if the
    /// rollout did not).
    RecycleSuperseded,
}

impl StopReason {
    /// Lowercase name for logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::Reload => "reload",
            Self::ReloadAborted => "reload aborted",
            Self::ScaleDown => "scale down",
            Self::BootTimeout => "boot timeout",
            Self::Hung => "hung",
            Self::Announced => "announced stopping",
            Self::Recycled => "recycled",
            Self::RecycleSuperseded => "recycle superseded",
        }
    }
}

/// What started a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownTrigger {
    /// The master received this signal.
    Signal(Signal),
    /// The application (or the control channel) asked.
    Command,
    /// The crash breaker tripped.
    Breaker,
    /// The program could not be executed before any worker ever started
    /// ([`SpawnErrorKind::Exec`]): the exit is [`ExitReason::StartupFailed`].
    StartupFailed,
    /// An upgrade's successor master serves: this master hands over to it. The exit is
    /// [`ExitReason::Upgraded`].
    Upgrade,
}

impl fmt::Display for ShutdownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(signal) => write!(f, "{signal}"),
            Self::Command => f.write_str("command"),
            Self::Breaker => f.write_str("breaker"),
            Self::StartupFailed => f.write_str("startup_failed"),
            Self::Upgrade => f.write_str("upgrade"),
        }
    }
}

/// Why a rolling restart failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReloadFailure {
    /// A new-generation worker exited before it was ready.
    WorkerDied {
        /// The worker.
        id: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
    /// A new-generation worker did not become ready within the boot timeout.
    BootTimeout {
        /// The worker.
        id: WorkerId,
    },
    /// A new-generation worker announced `STOPPING=1` before it was ready.
    WorkerStopped {
        /// The worker.
        id: WorkerId,
    },
    /// A new-generation worker died while in probation: ready, but for less than
    /// [`Config::min_uptime`](crate::Config::min_uptime).
    DiedInProbation {
        /// The worker.
        id: WorkerId,
        /// How it ended.
        status: ExitStatus,
        /// How long it had been ready.
        ready_for: Duration,
    },
    /// A new-generation worker announced `STOPPING=1` or went silent (hung) while in
    /// probation.
    LeftInProbation {
        /// The worker.
        id: WorkerId,
        /// How long it had been ready.
        ready_for: Duration,
        /// How it left.
        how: ProbationLeave,
    },
    /// A new-generation worker could not be spawned (for a
    /// [`Resource`](SpawnErrorKind::Resource) error: the master could not start it).
    SpawnFailed {
        /// The worker.
        id: WorkerId,
        /// The driver's report.
        error: SpawnError,
    },
    /// The cluster began shutting down.
    ShuttingDown,
}

impl fmt::Display for ReloadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WorkerDied { id, status } => {
                write!(f, "new worker {id} exited before it was ready ({status})")
            }
            Self::BootTimeout { id } => {
                write!(
                    f,
                    "new worker {id} did not become ready within the boot timeout"
                )
            }
            Self::WorkerStopped { id } => {
                write!(
                    f,
                    "new worker {id} announced it was stopping before it was ready"
                )
            }
            Self::DiedInProbation {
                id,
                status,
                ready_for,
            } => write!(
                f,
                "new worker {id} exited {:.1} s after it was ready, in its probation ({status})",
                ready_for.as_secs_f64()
            ),
            Self::LeftInProbation { id, ready_for, how } => write!(
                f,
                "new worker {id} {how} {:.1} s after it was ready, in its probation",
                ready_for.as_secs_f64()
            ),
            Self::SpawnFailed { id, error } if error.kind == SpawnErrorKind::Resource => {
                write!(f, "the master could not start new worker {id}: {error}")
            }
            Self::SpawnFailed { id, error } => {
                write!(f, "new worker {id} failed to start: {error}")
            }
            Self::ShuttingDown => write!(f, "the cluster is shutting down"),
        }
    }
}

/// Why an upgrade of the master failed ([`Event::UpgradeFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpgradeFailure {
    /// The successor master could not be started.
    SpawnFailed(SpawnError),
    /// The successor master exited before it said it serves (it could not adopt the
    /// sockets, its workers could not be executed, its crash breaker tripped, …).
    Exited(ExitStatus),
    /// The successor master did not say it serves within
    /// [`Config::upgrade_timeout`](crate::Config::upgrade_timeout) (its workers never
    /// became ready, or not for their probation): it was stopped.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// This master began shutting down: the successor was stopped.
    ShuttingDown,
}

impl fmt::Display for UpgradeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SpawnFailed(error) => write!(f, "the new master could not be started: {error}"),
            Self::Exited(status) => {
                write!(f, "the new master exited before its workers served ({status})")
            }
            Self::TimedOut { after } => write!(
                f,
                "the new master's workers did not all become ready and pass probation within {:.1} s",
                after.as_secs_f64()
            ),
            Self::ShuttingDown => f.write_str("the master is shutting down"),
        }
    }
}

/// How a new-generation worker in probation left without dying
/// ([`ReloadFailure::LeftInProbation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbationLeave {
    /// It announced `STOPPING=1`.
    Announced,
    /// Its heartbeats stopped.
    Hung,
}

impl fmt::Display for ProbationLeave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Announced => "announced it was stopping",
            Self::Hung => "hung",
        })
    }
}

/// A message for the service manager (systemd's sd_notify protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// `READY=1`: the first worker is ready, or a reload finished.
    Ready,
    /// `RELOADING=1`: a rolling restart began.
    Reloading,
    /// `STOPPING=1`: shutdown began.
    Stopping,
    /// `WATCHDOG=1`: the cluster is healthy.
    Watchdog,
    /// `STATUS=…`: the live counts changed.
    Status(StatusLine),
    /// `MAINPID=…` and `READY=1`, in one message: an upgrade handed over to this new
    /// master, and the `RELOADING=1` it began with ends. One message, because once
    /// `MAINPID=` is taken this master is no longer the main process, and with
    /// `NotifyAccess=main` systemd would refuse a `READY=1` sent after it.
    MainPid(Pid),
    /// For the master that started this one ([`Config::successor`]), not the service
    /// manager: every slot's worker is ready and past probation, so it may hand over.
    /// Sent once.
    ///
    /// [`Config::successor`]: crate::Config::successor
    Serving,
}

/// The counts behind a `STATUS=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusLine {
    /// Slots whose worker is ready.
    pub ready: usize,
    /// The target worker count.
    pub target: usize,
    /// Worker processes that exist (including leaving ones).
    pub live: usize,
    /// The cluster's phase.
    pub phase: crate::Phase,
    /// Slots whose workers keep dying young (the cluster is degraded when this is not
    /// zero).
    pub failing: usize,
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}/{} workers ready, {} processes",
            self.phase.name(),
            self.ready,
            self.target,
            self.live
        )?;
        if self.failing > 0 {
            write!(f, ", degraded: {} slots failing", self.failing)?;
        }
        Ok(())
    }
}

/// Why the master exits; [`code`](Self::code) is its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitReason {
    /// Every worker stopped within the force-exit timeout. Code 0.
    Clean,
    /// The crash breaker tripped: no worker was ready while workers kept failing (at
    /// boot or in probation) for the breaker's window. Code 3 (Gunicorn's "worker boot
    /// error").
    BreakerTripped,
    /// Some worker had to be SIGKILLed: the force-exit timeout ran out, or a QUIT (or a
    /// TERM/INT at least [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) into the
    /// shutdown) asked for an immediate stop. Code 4.
    Forced,
    /// The program could not be executed ([`SpawnErrorKind::Exec`]) before any worker
    /// ever started: a configuration error, not a crash. Code 1.
    StartupFailed,
    /// An upgrade handed over to the successor master, and this master's workers
    /// stopped. Code 0.
    Upgraded,
    /// An upgrade handed over to a successor master that exited before this master's
    /// workers had stopped: nobody serves now. Code 1.
    SuccessorLost,
}

impl ExitReason {
    /// The master's exit status.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::StartupFailed | Self::SuccessorLost => 1,
            Self::Upgraded => 0,
            Self::BreakerTripped => 3,
            Self::Forced => 4,
        }
    }

    /// A one-line explanation for stderr.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Clean => "all workers stopped; clean exit",
            Self::BreakerTripped => "no worker could stay up (every slot kept failing at boot or in probation); the crash breaker tripped",
            Self::Forced => "some workers did not stop in time and were killed",
            Self::StartupFailed => "the program could not be executed at start",
            Self::Upgraded => "handed over to the new master; the old workers stopped",
            Self::SuccessorLost => "handed over to a new master that then exited; nobody serves",
        }
    }
}

/// Why the core refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandError {
    /// The cluster is shutting down (or has exited).
    ShuttingDown,
    /// `workers = 0`: there is no cluster to reload or scale.
    InProcess,
    /// A scale target outside `1..=MAX_WORKERS`.
    BadWorkerCount(usize),
    /// An upgrade is under way (its successor is starting, or being stopped).
    UpgradeUnderWay,
    /// This master's driver cannot start a successor ([`Config::upgrades`]).
    ///
    /// [`Config::upgrades`]: crate::Config::upgrades
    NoUpgrades,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShuttingDown => write!(f, "the cluster is shutting down"),
            Self::InProcess => write!(
                f,
                "no cluster: the application runs in-process (workers = 0)"
            ),
            Self::BadWorkerCount(n) => {
                write!(
                    f,
                    "worker count {n} is not from 1 to {}",
                    crate::MAX_WORKERS
                )
            }
            Self::UpgradeUnderWay => write!(f, "an upgrade is already under way"),
            Self::NoUpgrades => write!(f, "this master cannot start a new master"),
        }
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    //! The texts users read (log lines, status JSON, stderr), each variant's once.

    use super::*;
    use crate::Phase;

    #[test]
    fn stop_reasons_probation_leaves_and_triggers_read_as_documented() {
        let stop_reasons = [
            (StopReason::Shutdown, "shutdown"),
            (StopReason::Reload, "reload"),
            (StopReason::ReloadAborted, "reload aborted"),
            (StopReason::ScaleDown, "scale down"),
            (StopReason::BootTimeout, "boot timeout"),
            (StopReason::Hung, "hung"),
            (StopReason::Announced, "announced stopping"),
            (StopReason::Recycled, "recycled"),
            (StopReason::RecycleSuperseded, "recycle superseded"),
        ];
        for (reason, text) in stop_reasons {
            assert_eq!(reason.name(), text);
        }
        assert_eq!(
            ProbationLeave::Announced.to_string(),
            "announced it was stopping"
        );
        assert_eq!(ProbationLeave::Hung.to_string(), "hung");
        let triggers = [
            (ShutdownTrigger::Signal(Signal::Term), "SIGTERM"),
            (ShutdownTrigger::Command, "command"),
            (ShutdownTrigger::Breaker, "breaker"),
            (ShutdownTrigger::StartupFailed, "startup_failed"),
            (ShutdownTrigger::Upgrade, "upgrade"),
        ];
        for (trigger, text) in triggers {
            assert_eq!(trigger.to_string(), text);
        }
    }

    #[test]
    fn reload_failures_read_as_documented() {
        let id = WorkerId(7);
        let ready_for = Duration::from_millis(1250);
        let table = [
            (
                ReloadFailure::WorkerDied {
                    id,
                    status: ExitStatus::Code(2),
                },
                "new worker 7 exited before it was ready (exit code 2)",
            ),
            (
                ReloadFailure::BootTimeout { id },
                "new worker 7 did not become ready within the boot timeout",
            ),
            (
                ReloadFailure::WorkerStopped { id },
                "new worker 7 announced it was stopping before it was ready",
            ),
            (
                ReloadFailure::DiedInProbation {
                    id,
                    status: ExitStatus::Signaled(9),
                    ready_for,
                },
                "new worker 7 exited 1.2 s after it was ready, in its probation (signal 9)",
            ),
            (
                ReloadFailure::LeftInProbation {
                    id,
                    ready_for,
                    how: ProbationLeave::Hung,
                },
                "new worker 7 hung 1.2 s after it was ready, in its probation",
            ),
            (
                ReloadFailure::SpawnFailed {
                    id,
                    error: SpawnError::with_errno(SpawnErrorKind::Resource, 24),
                },
                "the master could not start new worker 7: the master ran out of resources (errno 24)",
            ),
            (
                ReloadFailure::SpawnFailed {
                    id,
                    error: SpawnError::new(SpawnErrorKind::Exec),
                },
                "new worker 7 failed to start: the program could not be executed",
            ),
            (
                ReloadFailure::ShuttingDown,
                "the cluster is shutting down",
            ),
        ];
        for (failure, text) in table {
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn status_lines_exit_reasons_and_refusals_read_as_documented() {
        let mut line = StatusLine {
            ready: 2,
            target: 3,
            live: 4,
            phase: Phase::Running,
            failing: 0,
        };
        assert_eq!(line.to_string(), "running: 2/3 workers ready, 4 processes");
        line.failing = 1;
        assert_eq!(
            line.to_string(),
            "running: 2/3 workers ready, 4 processes, degraded: 1 slots failing"
        );
        let exits = [
            (ExitReason::Clean, 0, "all workers stopped; clean exit"),
            (
                ExitReason::StartupFailed,
                1,
                "the program could not be executed at start",
            ),
            (ExitReason::BreakerTripped, 3, "no worker could stay up (every slot kept failing at boot or in probation); the crash breaker tripped"),
            (
                ExitReason::Forced,
                4,
                "some workers did not stop in time and were killed",
            ),
            (
                ExitReason::Upgraded,
                0,
                "handed over to the new master; the old workers stopped",
            ),
            (
                ExitReason::SuccessorLost,
                1,
                "handed over to a new master that then exited; nobody serves",
            ),
        ];
        for (reason, code, text) in exits {
            assert_eq!((reason.code(), reason.describe()), (code, text));
        }
        let refusals = [
            (
                CommandError::ShuttingDown,
                "the cluster is shutting down".to_owned(),
            ),
            (
                CommandError::InProcess,
                "no cluster: the application runs in-process (workers = 0)".to_owned(),
            ),
            (
                CommandError::BadWorkerCount(0),
                format!("worker count 0 is not from 1 to {}", crate::MAX_WORKERS),
            ),
        ];
        let refusals = refusals.into_iter().chain([
            (
                CommandError::UpgradeUnderWay,
                "an upgrade is already under way".to_owned(),
            ),
            (
                CommandError::NoUpgrades,
                "this master cannot start a new master".to_owned(),
            ),
        ]);
        for (error, text) in refusals {
            assert_eq!(error.to_string(), text);
        }
        let ignored = [
            (
                IgnoreReason::Refused {
                    signal: Signal::Hup,
                    error: CommandError::ShuttingDown,
                },
                "SIGHUP: no reload: the cluster is shutting down",
            ),
            (
                IgnoreReason::Refused {
                    signal: Signal::Ttin,
                    error: CommandError::ShuttingDown,
                },
                "SIGTTIN: cannot add a worker now: the cluster is shutting down",
            ),
            (
                IgnoreReason::Refused {
                    signal: Signal::Ttou,
                    error: CommandError::ShuttingDown,
                },
                "SIGTTOU: cannot remove a worker now: the cluster is shutting down",
            ),
            (
                IgnoreReason::Refused {
                    signal: Signal::Usr1,
                    error: CommandError::InProcess,
                },
                "SIGUSR1: no cluster: the application runs in-process (workers = 0)",
            ),
            (
                IgnoreReason::Refused {
                    signal: Signal::Usr2,
                    error: CommandError::UpgradeUnderWay,
                },
                "SIGUSR2: no upgrade: an upgrade is already under way",
            ),
            (
                IgnoreReason::Meaningless(Signal::Winch),
                "SIGWINCH has no meaning for the master",
            ),
            (
                IgnoreReason::AlreadyShuttingDown,
                "shutdown already in progress",
            ),
            (
                IgnoreReason::Recycle {
                    id: WorkerId(4),
                    why: RecycleIgnoreReason::AlreadyRecycling,
                },
                "worker 4 not recycled: it is being recycled already",
            ),
            (
                IgnoreReason::Recycle {
                    id: WorkerId(4),
                    why: RecycleIgnoreReason::NotServing,
                },
                "worker 4 not recycled: it does not serve a slot (booting, a successor, or leaving)",
            ),
            (
                IgnoreReason::Recycle {
                    id: WorkerId(4),
                    why: RecycleIgnoreReason::ShuttingDown,
                },
                "worker 4 not recycled: the cluster is shutting down",
            ),
        ];
        for (reason, text) in ignored {
            assert_eq!(reason.to_string(), text);
        }
        assert_eq!(
            SignalIgnoreReason::Repeat.to_string(),
            "a repeat: the shutdown began less than a second ago"
        );
        assert_eq!(
            SignalIgnoreReason::NotForwarded.to_string(),
            "not among the signals forwarded to workers"
        );
    }
}

#[cfg(test)]
mod upgrade_texts {
    //! The upgrade's texts, each variant's once.

    use super::*;

    #[test]
    fn upgrade_failures_read_as_documented() {
        let table = [
            (
                UpgradeFailure::SpawnFailed(SpawnError::new(SpawnErrorKind::Exec)),
                "the new master could not be started: the program could not be executed",
            ),
            (
                UpgradeFailure::Exited(ExitStatus::Code(1)),
                "the new master exited before its workers served (exit code 1)",
            ),
            (
                UpgradeFailure::TimedOut {
                    after: Duration::from_millis(7200),
                },
                "the new master's workers did not all become ready and pass probation within 7.2 s",
            ),
            (UpgradeFailure::ShuttingDown, "the master is shutting down"),
        ];
        for (failure, text) in table {
            assert_eq!(failure.to_string(), text);
        }
        let names = [
            (Event::UpgradeStarted, "upgrade_started"),
            (Event::UpgradeSpawned { pid: 1 }, "upgrade_spawned"),
            (Event::UpgradeHandedOver { pid: 1 }, "upgrade_handed_over"),
            (
                Event::UpgradeFailed {
                    cause: UpgradeFailure::ShuttingDown,
                },
                "upgrade_failed",
            ),
            (
                Event::SuccessorLost {
                    pid: 1,
                    status: ExitStatus::Code(0),
                },
                "successor_lost",
            ),
        ];
        for (event, name) in names {
            assert_eq!(event.name(), name);
        }
    }
}
