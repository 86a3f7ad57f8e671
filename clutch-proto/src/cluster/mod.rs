//! [`ClusterState`]: the whole supervision logic as a pure state machine.

mod breaker;
mod shutdown;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::action::{
    Action, CommandError, Event, IgnoreReason, Notice, ProbationLeave, ReloadFailure,
    ShutdownTrigger, SignalIgnoreReason, StatusLine, StopReason,
};
use crate::config::{Config, Readiness, MAX_WORKERS, QUICK_REFILL_BURST, QUICK_REFILL_INTERVAL};
use crate::input::{Input, Reply};
use breaker::Breaker;
use shutdown::Shutdown;

use crate::types::{
    ExitStatus, Pid, Signal, Slot, SpawnError, SpawnErrorKind, WorkerId, WorkerState,
};

/// A TERM or INT that arrives less than this long after the shutdown began is the same
/// request again, not "stop now": `timeout -s INT` signals both the process and its
/// group (two SIGINTs microseconds apart), and a control-channel `stop` followed by the
/// service manager's SIGTERM is common. One that arrives later forces the shutdown
/// (SIGKILL to every remaining worker, exit code 4). QUIT always forces.
pub const SIGNAL_REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// The generation the cluster starts with.
const FIRST_GENERATION: u64 = 1;

/// A supervised cluster of worker processes, as a pure state machine.
///
/// `ClusterState` decides everything a cluster master decides — when to spawn, whom to
/// signal, when a worker is hung, when a rollout advances or fails, when to give up — and
/// does nothing itself: no I/O, no clock, no syscalls. A driver (`clutch-unix` for real
/// processes, `clutch-sim` for simulated ones) feeds it facts and carries out the actions
/// it asks for.
///
/// # The driving contract
///
/// The methods come in three kinds:
///
/// * **getters** (`&self`): [`phase`](Self::phase), [`target`](Self::target),
///   [`workers`](Self::workers), [`status`](Self::status), [`stats`](Self::stats), …
/// * **[`handle`](Self::handle)`(now, input)`**, the one way in: every [`Input`] — facts
///   from the world (a worker was spawned, failed to spawn, said `READY=1`, `STOPPING=1`
///   or `WATCHDOG=1`, exited; the master got a signal; time passed) and commands from the
///   application (shutdown, shutdown-now, reload, scale). Facts never fail: every input
///   is legal in every phase, and reports about unknown or departed workers are ignored
///   (and counted in [`Stats::ignored_inputs`]). A command that cannot apply answers a
///   [`CommandError`]; a reload answers [`Reply::Reload`] with the generation whose
///   rollout will answer it.
/// * **`poll_*`**: what the driver must do next. After **every** `handle` call, drain
///   [`poll_action`](Self::poll_action) until it returns `None`, carrying out each
///   action in order; then ask [`poll_timeout`](Self::poll_timeout) when to deliver
///   [`Input::Timeout`] next, and wait for that deadline or the next fact, whichever
///   comes first.
///
/// Time is an input: every call takes `now`, which must never go backwards. The core
/// never reads a clock. A timeout tolerates early and spurious delivery.
///
/// After [`Action::Exit`] (always the last action) the state is inert: every input is
/// ignored and `poll_timeout` is `None`.
///
/// # Example
///
/// Driving a one-worker cluster by hand, the way a driver does:
///
/// ```
/// use std::time::{Duration, Instant};
/// use clutch_proto::{
///     Action, ClusterState, Config, Event, ExitReason, ExitStatus, Input, Reply, Signal,
/// };
///
/// let config = Config::builder().workers(1).build().unwrap();
/// let start = Instant::now();
/// let mut cluster = ClusterState::new(config, start);
///
/// // The core asks for a worker in slot 0.
/// let Some(Action::Spawn { id, slot, .. }) = cluster.poll_action() else { panic!() };
/// assert_eq!(slot.0, 0);
/// while cluster.poll_action().is_some() {}
///
/// // The driver forked it (pid 4242), and the worker said READY=1.
/// cluster.handle(start, Input::Spawned { id, pid: 4242 }).unwrap();
/// while cluster.poll_action().is_some() {}
/// cluster.handle(start + Duration::from_millis(20), Input::Ready { id }).unwrap();
/// let actions: Vec<Action> = std::iter::from_fn(|| cluster.poll_action()).collect();
/// assert!(actions.contains(&Action::Event(Event::Listening { id })));
///
/// // SIGTERM: the core asks the driver to forward TERM to the worker...
/// let t = start + Duration::from_secs(1);
/// cluster.handle(t, Input::Signal(Signal::Term)).unwrap();
/// let actions: Vec<Action> = std::iter::from_fn(|| cluster.poll_action()).collect();
/// assert!(actions.contains(&Action::Signal { id, pid: 4242, signal: Signal::Term }));
/// // ...and wants to hear back by the force-exit deadline at the latest.
/// assert_eq!(cluster.poll_timeout(), Some(t + Duration::from_millis(7500)));
///
/// // The worker exits; the master exits cleanly, last.
/// let exited = Input::Exited { id, status: ExitStatus::Code(0) };
/// cluster.handle(t + Duration::from_millis(5), exited).unwrap();
/// let actions: Vec<Action> = std::iter::from_fn(|| cluster.poll_action()).collect();
/// assert_eq!(actions.last(), Some(&Action::Exit(ExitReason::Clean)));
/// assert_eq!(cluster.poll_timeout(), None);
///
/// // A reload answers with its ticket: the generation whose rollout answers it
/// // (its `ReloadFinished` or `ReloadFailed` carries that generation).
/// let config = Config::builder().workers(2).build().unwrap();
/// let mut cluster = ClusterState::new(config, start);
/// while cluster.poll_action().is_some() {}
/// assert_eq!(cluster.handle(start, Input::Reload), Ok(Reply::Reload { generation: 2 }));
/// ```
pub struct ClusterState {
    config: Config,
    /// One entry per slot; `slots.len()` is the target worker count.
    slots: Vec<SlotState>,
    /// Every worker process that exists (or is being spawned), in id order so that
    /// iteration — and so every trace — is deterministic.
    workers: BTreeMap<WorkerId, Worker>,
    next_id: u64,
    /// The generation new spawns run.
    generation: u64,
    next_generation: u64,
    /// Serving (with a rollout, perhaps), stopping, or exited.
    lifecycle: Lifecycle,
    listening: bool,
    /// Some `Input::Spawned` was accepted: the program can be executed.
    ever_started: bool,
    /// Slots whose current worker is ready.
    ready_count: usize,
    /// Slots whose current worker is ready and passed probation.
    proven_count: usize,
    /// Slots with young deaths since their last worker passed probation.
    failing_slots: usize,
    /// Whether `Degraded` (rather than `Recovered`, or nothing yet) was the last said.
    degraded: bool,
    /// The crash breaker's count.
    breaker: Breaker,
    /// Every per-worker deadline and per-slot respawn time, in deadline order.
    timers: BTreeSet<(Instant, TimerKey)>,
    watchdog_at: Option<Instant>,
    actions: VecDeque<Action>,
    last_status: Option<StatusLine>,
    stats: Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// A ready worker's probation ends (ordered first: at equal times a worker passes
    /// probation before its other deadlines are looked at).
    Probation(WorkerId),
    /// A worker's own deadline, and which one it is.
    Worker(WorkerId, WorkerTimer),
    Respawn(usize),
}

/// Which of its deadlines a worker waits for (a worker has at most one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WorkerTimer {
    /// [`Readiness::Delay`]: a booting worker still alive then is ready (unless its boot
    /// timeout has passed by then).
    ReadinessDelay,
    /// A booting worker that has not said `READY=1` by then failed to boot.
    BootTimeout,
    /// A ready worker that sends heartbeats: is it silent for the hang timeout? (Re-armed
    /// from its last heartbeat when not.)
    HeartbeatCheck,
    /// A hung worker got the diagnostic signal: SIGKILL follows.
    HangGrace,
    /// A worker asked to stop (or announcing it stops) outside a shutdown: SIGKILL
    /// follows (during a shutdown the global force deadline bounds every worker).
    StopGrace,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The worker serving (or booting to serve) this slot.
    current: Option<WorkerId>,
    /// During a rolling restart: the new-generation worker booting to replace `current`.
    successor: Option<WorkerId>,
    /// Young deaths since the slot's last worker passed probation (drives the backoff).
    consecutive_failures: u32,
    /// Quick refills after deaths in probation: the theoretical time at which the slot's
    /// quota is back to empty (a GCRA, one refill per `QUICK_REFILL_INTERVAL`).
    quick_tat: Option<Instant>,
    /// When an empty slot will be refilled.
    respawn_at: Option<Instant>,
    /// Refills of this slot after a worker left it.
    restarts: u64,
}

#[derive(Debug)]
struct Worker {
    slot: Slot,
    generation: u64,
    /// Where it is in its life, with what belongs to that stage only.
    phase: WorkerPhase,
    spawned_at: Instant,
    started_at: Option<Instant>,
    ready_at: Option<Instant>,
    last_heartbeat: Option<Instant>,
    /// This worker's entry in `timers`, if any, and which deadline it is.
    deadline: Option<(Instant, WorkerTimer)>,
    /// When its probation ends (ready workers that have not yet passed it).
    probation_at: Option<Instant>,
    /// Ready for at least `min_uptime`.
    proven: bool,
}

#[derive(Debug)]
struct Rollout {
    generation: u64,
    from_generation: u64,
    started_at: Instant,
    /// Next slot to consider for replacement.
    cursor: usize,
    /// Slots with a successor booting or in probation.
    in_flight: usize,
    /// Slots whose current worker is of `generation`, ready and proven.
    ready: usize,
    /// Successors that are ready (in probation).
    ready_successors: usize,
    /// Another reload was asked for meanwhile.
    queued: bool,
}

/// The cluster's life: serving (perhaps with a rolling restart under way), shutting
/// down, or exited. A rollout cannot outlive the shutdown's start.
#[derive(Debug)]
enum Lifecycle {
    /// Serving, with the rolling restart under way if there is one.
    Serving(Option<Rollout>),
    /// Shutting down.
    Stopping(Shutdown),
    /// The exit action went out: inert.
    Exited,
}

impl Lifecycle {
    fn rollout(&self) -> Option<&Rollout> {
        match self {
            Self::Serving(rollout) => rollout.as_ref(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    fn rollout_mut(&mut self) -> Option<&mut Rollout> {
        match self {
            Self::Serving(rollout) => rollout.as_mut(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    /// Ends the rollout under way, if any, handing it over.
    fn take_rollout(&mut self) -> Option<Rollout> {
        match self {
            Self::Serving(rollout) => rollout.take(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    fn stopping(&self) -> Option<&Shutdown> {
        match self {
            Self::Stopping(shutdown) => Some(shutdown),
            Self::Serving(_) | Self::Exited => None,
        }
    }

    fn stopping_mut(&mut self) -> Option<&mut Shutdown> {
        match self {
            Self::Stopping(shutdown) => Some(shutdown),
            Self::Serving(_) | Self::Exited => None,
        }
    }

    fn is_stopping(&self) -> bool {
        matches!(self, Self::Stopping(_))
    }

    fn is_exited(&self) -> bool {
        matches!(self, Self::Exited)
    }
}

/// Where a worker stood relative to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Current,
    Successor,
    Detached,
}

/// The cluster's phase, derived from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No worker has become ready yet.
    Starting,
    /// Serving.
    Running,
    /// A rolling restart is under way.
    Reloading,
    /// Shutting down.
    Stopping,
    /// The exit action went out.
    Exited,
}

impl Phase {
    /// Lowercase name for status output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Reloading => "reloading",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters over the cluster's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Handler and command calls.
    pub inputs: u64,
    /// Reports about unknown or departed workers, and duplicates, that were ignored.
    pub ignored_inputs: u64,
    /// Spawn actions.
    pub spawns: u64,
    /// Spawns that failed (every kind but [`SpawnErrorKind::Cancelled`]).
    pub spawn_failures: u64,
    /// Spawns that failed because the master ran out of resources
    /// ([`SpawnErrorKind::Resource`]; also counted in `spawn_failures`, never in
    /// `boot_failures`).
    pub resource_failures: u64,
    /// Spawns the driver skipped because the worker was already to stop
    /// ([`SpawnErrorKind::Cancelled`]).
    pub spawns_cancelled: u64,
    /// Exits the master did not ask for.
    pub unexpected_exits: u64,
    /// Boot failures counted by the crash breaker.
    pub boot_failures: u64,
    /// Workers found hung.
    pub hung: u64,
    /// Rolling restarts that finished.
    pub reloads_finished: u64,
    /// Rolling restarts that failed.
    pub reloads_failed: u64,
}

/// A snapshot of one worker, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// Its slot.
    pub slot: Slot,
    /// The generation it runs.
    pub generation: u64,
    /// Its pid, once spawned.
    pub pid: Option<Pid>,
    /// Its life stage.
    pub state: WorkerState,
    /// When its spawn was asked for.
    pub spawned_at: Instant,
    /// When it became ready.
    pub ready_at: Option<Instant>,
    /// Its last heartbeat.
    pub last_heartbeat: Option<Instant>,
    /// Why it is leaving, if it is.
    pub stop_reason: Option<StopReason>,
    /// Refills of its slot so far (only for workers attached to a slot).
    pub restarts: u64,
    /// Whether it is the successor of its slot's worker in a rolling restart (booting,
    /// or ready and in probation).
    pub successor: bool,
    /// Whether it has been ready for at least [`Config::min_uptime`] (passed probation).
    pub proven: bool,
}

/// Where a worker is in its life. What belongs to one stage only lives in its variant:
/// a pid once spawned, a pending stop only while spawning, a stop reason once leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerPhase {
    /// A spawn was asked for; the driver has not reported the pid yet. `stop`: the
    /// master decided meanwhile that it goes — why, and the signal to send as soon as
    /// its pid is known.
    Spawning { stop: Option<(StopReason, Signal)> },
    /// Running, not ready yet.
    Booting { pid: Pid },
    /// Ready: serving.
    Ready { pid: Pid },
    /// The master decided it goes (or it announced it does): its exit is expected.
    Leaving {
        pid: Pid,
        reason: StopReason,
        how: Leaving,
    },
}

/// How a leaving worker is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// The diagnostic signal went out; SIGKILL follows after the grace.
    Hung,
    /// Asked to stop (SIGTERM sent), or said it is stopping (`STOPPING=1`).
    Stopping,
    /// SIGKILL sent; waiting for the exit.
    Killed,
}

impl Worker {
    fn pid(&self) -> Option<Pid> {
        match self.phase {
            WorkerPhase::Spawning { .. } => None,
            WorkerPhase::Booting { pid }
            | WorkerPhase::Ready { pid }
            | WorkerPhase::Leaving { pid, .. } => Some(pid),
        }
    }

    fn state(&self) -> WorkerState {
        match self.phase {
            WorkerPhase::Spawning { .. } => WorkerState::Spawning,
            WorkerPhase::Booting { .. } => WorkerState::Booting,
            WorkerPhase::Ready { .. } => WorkerState::Ready,
            WorkerPhase::Leaving { how, .. } => match how {
                Leaving::Hung => WorkerState::Hung,
                Leaving::Stopping => WorkerState::Stopping,
                Leaving::Killed => WorkerState::Killed,
            },
        }
    }

    /// Why the master decided it goes, once it did (while spawning, too).
    fn stop_reason(&self) -> Option<StopReason> {
        match self.phase {
            WorkerPhase::Spawning { stop } => stop.map(|(reason, _)| reason),
            WorkerPhase::Booting { .. } | WorkerPhase::Ready { .. } => None,
            WorkerPhase::Leaving { reason, .. } => Some(reason),
        }
    }
}

/// How a worker left its slot without being asked (or was removed for cause): decides
/// whether a rollout fails or the breaker counts, and how soon the slot is refilled.
#[derive(Debug, Clone, PartialEq)]
enum Departure {
    /// Before it was ready: a boot failure (the failure says how, for a rollout).
    Boot(ReloadFailure),
    /// Ready, but for less than the minimum uptime.
    Probation(ReloadFailure),
    /// After its probation: a one-off, replaced at once.
    Proven,
    /// The master could not start it (out of resources): not the program's fault. It
    /// fails a rollout whose successor it was; a current slot is only refilled.
    Resource(ReloadFailure),
}

impl Departure {
    /// How worker `w` departs at `now`: `at_boot` and `in_probation` (given how long it
    /// had been ready) say how, for a rollout.
    fn of(
        w: &Worker,
        now: Instant,
        at_boot: impl FnOnce() -> ReloadFailure,
        in_probation: impl FnOnce(Duration) -> ReloadFailure,
    ) -> Self {
        match (w.ready_at, w.proven) {
            (None, _) => Self::Boot(at_boot()),
            (Some(at), false) => Self::Probation(in_probation(now.saturating_duration_since(at))),
            (Some(_), true) => Self::Proven,
        }
    }

    /// How the life ended, for the backoff.
    fn death(&self) -> Death {
        match self {
            Self::Boot(_) | Self::Resource(_) => Death::Boot,
            Self::Probation(_) => Death::Probation,
            Self::Proven => Death::Proven,
        }
    }
}

/// How a departing worker's life ended, for the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// Before it was ready.
    Boot,
    /// Ready, but for less than the minimum uptime.
    Probation,
    /// After its probation: a one-off, replaced at once.
    Proven,
}

impl ClusterState {
    /// A cluster with `config`, starting at `now`: the first actions spawn every slot.
    #[must_use]
    pub fn new(config: Config, now: Instant) -> Self {
        let target = config.workers();
        let watchdog_at = config.service_watchdog().map(|interval| now + interval);
        let mut state = Self {
            config,
            slots: Vec::with_capacity(target),
            workers: BTreeMap::new(),
            next_id: 1,
            generation: FIRST_GENERATION,
            next_generation: FIRST_GENERATION + 1,
            lifecycle: Lifecycle::Serving(None),
            listening: false,
            ever_started: false,
            ready_count: 0,
            proven_count: 0,
            failing_slots: 0,
            degraded: false,
            breaker: Breaker::default(),
            timers: BTreeSet::new(),
            watchdog_at,
            actions: VecDeque::new(),
            last_status: None,
            stats: Stats::default(),
        };
        for index in 0..target {
            state.slots.push(SlotState::default());
            state.spawn(now, index, Role::Current);
        }
        state
    }

    // ----- getters ------------------------------------------------------------------

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The phase, derived from the state.
    #[must_use]
    pub fn phase(&self) -> Phase {
        match &self.lifecycle {
            Lifecycle::Exited => Phase::Exited,
            Lifecycle::Stopping(_) => Phase::Stopping,
            Lifecycle::Serving(Some(_)) => Phase::Reloading,
            Lifecycle::Serving(None) if !self.listening => Phase::Starting,
            Lifecycle::Serving(None) => Phase::Running,
        }
    }

    /// The target worker count (the number of slots).
    #[must_use]
    pub fn target(&self) -> usize {
        self.slots.len()
    }

    /// Worker processes that exist or are being spawned, leaving ones included.
    #[must_use]
    pub fn live_workers(&self) -> usize {
        self.workers.len()
    }

    /// Slots whose worker is ready.
    #[must_use]
    pub fn ready_workers(&self) -> usize {
        self.ready_count
    }

    /// The generation new spawns run.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The counts behind a status line.
    #[must_use]
    pub fn status(&self) -> StatusLine {
        StatusLine {
            ready: self.ready_count,
            target: self.slots.len(),
            live: self.workers.len(),
            phase: self.phase(),
            failing: if self.lifecycle.is_stopping() {
                0
            } else {
                self.failing_slots
            },
        }
    }

    /// Workers that are ready, successors in probation included: what serves.
    #[must_use]
    pub fn serving_workers(&self) -> usize {
        self.ready_count + self.lifecycle.rollout().map_or(0, |r| r.ready_successors)
    }

    /// Slots whose workers keep dying young (they died before ready or in probation
    /// since the slot's last worker passed probation).
    #[must_use]
    pub fn failing_slots(&self) -> usize {
        if self.lifecycle.is_stopping() {
            0
        } else {
            self.failing_slots
        }
    }

    /// True when some slots keep failing while the cluster runs (see
    /// [`Event::Degraded`]).
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        !self.lifecycle.is_exited() && self.failing_slots() > 0
    }

    /// Lifetime counters.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True once the exit action went out.
    #[must_use]
    pub fn is_exited(&self) -> bool {
        self.lifecycle.is_exited()
    }

    /// One worker, if it exists.
    #[must_use]
    pub fn worker(&self, id: WorkerId) -> Option<WorkerInfo> {
        self.workers.get(&id).map(|w| self.info(id, w))
    }

    /// Every worker, in id order.
    pub fn workers(&self) -> impl Iterator<Item = WorkerInfo> + '_ {
        self.workers.iter().map(|(&id, w)| self.info(id, w))
    }

    fn info(&self, id: WorkerId, w: &Worker) -> WorkerInfo {
        let role = self.role(id, w);
        WorkerInfo {
            id,
            slot: w.slot,
            generation: w.generation,
            pid: w.pid(),
            state: w.state(),
            spawned_at: w.spawned_at,
            ready_at: w.ready_at,
            last_heartbeat: w.last_heartbeat,
            stop_reason: w.stop_reason(),
            restarts: if role == Role::Detached {
                0
            } else {
                self.slots[w.slot.0].restarts
            },
            successor: role == Role::Successor,
            proven: w.proven,
        }
    }

    // ----- the one entry point -----------------------------------------------------

    /// Delivers one fact or command at `now`, which must never go backwards. Facts always
    /// answer [`Reply::Done`]; commands answer `Done`, [`Reply::Reload`] with the
    /// generation whose rollout answers a reload, or a [`CommandError`] when they cannot
    /// apply (after the exit every command answers [`CommandError::ShuttingDown`]).
    ///
    /// After every call, drain [`poll_action`](Self::poll_action).
    ///
    /// # Errors
    ///
    /// Only for commands ([`Input::is_command`]): see [`CommandError`].
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<Reply, CommandError> {
        match input {
            Input::Spawned { id, pid } => self.handle_spawned(now, id, pid),
            Input::SpawnFailed { id, error } => self.handle_spawn_failed(now, id, error),
            Input::Ready { id } => self.handle_ready(now, id),
            Input::Stopping { id } => self.handle_stopping(now, id),
            Input::Heartbeat { id } => self.handle_heartbeat(now, id),
            Input::Exited { id, status } => self.handle_exited(now, id, status),
            Input::Signal(signal) => self.handle_signal(now, signal),
            Input::Timeout => self.handle_timeout(now),
            Input::Shutdown => self.shutdown(now),
            Input::ShutdownNow => self.shutdown_now(now),
            Input::Reload => {
                return self
                    .reload(now)
                    .map(|generation| Reply::Reload { generation });
            }
            Input::Scale(workers) => return self.scale(now, workers).map(|()| Reply::Done),
        }
        Ok(Reply::Done)
    }

    // ----- facts from the world -----------------------------------------------------

    /// The driver started worker `id` as process `pid`.
    fn handle_spawned(&mut self, now: Instant, id: WorkerId, pid: Pid) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return self.ignore("spawned: unknown worker", id);
        };
        let WorkerPhase::Spawning { stop } = w.phase else {
            return self.ignore("spawned: duplicate report", id);
        };
        w.phase = WorkerPhase::Booting { pid };
        w.started_at = Some(now);
        self.ever_started = true;
        let (slot, generation) = (w.slot, w.generation);
        self.emit(Event::WorkerStarted {
            id,
            slot,
            pid,
            generation,
        });
        if let Some((reason, signal)) = stop {
            // The master decided this worker goes while it was being spawned.
            self.stop_worker(now, id, reason, signal);
        } else {
            match self.config.readiness() {
                Readiness::Spawned => self.mark_ready(now, id),
                Readiness::Delay(delay) => {
                    self.set_worker_deadline(id, Some((now + delay, WorkerTimer::ReadinessDelay)));
                }
                Readiness::Notify => {
                    let at = now + self.config.boot_timeout();
                    self.set_worker_deadline(id, Some((at, WorkerTimer::BootTimeout)));
                }
            }
        }
        self.settle(now);
    }

    /// [`Input::SpawnFailed`]: see there for what each kind of error leads to.
    fn handle_spawn_failed(&mut self, now: Instant, id: WorkerId, error: SpawnError) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get(&id) else {
            return self.ignore("spawn failed: unknown worker", id);
        };
        if w.state() != WorkerState::Spawning {
            return self.ignore("spawn failed: worker already running", id);
        }
        let (slot, generation, stop_reason) = (w.slot, w.generation, w.stop_reason());
        let mut error = error;
        if error.kind == SpawnErrorKind::Cancelled {
            if let Some(reason) = stop_reason {
                self.stats.spawns_cancelled += 1;
                self.detach(id);
                self.emit(Event::WorkerSpawnCancelled { id, slot, reason });
                self.remove_worker(id);
                self.settle(now);
                return;
            }
            // The driver skipped a worker the core still wants: not the program's fault.
            error.kind = SpawnErrorKind::Resource;
        }
        let kind = error.kind;
        self.stats.spawn_failures += 1;
        if kind == SpawnErrorKind::Resource {
            self.stats.resource_failures += 1;
        }
        let startup_failed = kind == SpawnErrorKind::Exec
            && !self.ever_started
            && generation == FIRST_GENERATION
            && !self.lifecycle.is_stopping();
        let role = self.detach(id);
        self.emit(Event::WorkerSpawnFailed { id, slot, error });
        self.remove_worker(id);
        if startup_failed {
            self.begin_shutdown(now, ShutdownTrigger::StartupFailed);
        } else if stop_reason.is_none() {
            let failure = ReloadFailure::SpawnFailed { id, error };
            let departure = if kind == SpawnErrorKind::Resource {
                Departure::Resource(failure)
            } else {
                Departure::Boot(failure)
            };
            self.after_departure(now, role, slot.0, generation, departure);
        }
        self.settle(now);
    }

    /// Worker `id` said it is ready (`READY=1`).
    fn handle_ready(&mut self, now: Instant, id: WorkerId) {
        if !self.accept_input() {
            return;
        }
        match self.workers.get(&id).map(|w| w.state()) {
            None => self.ignore("ready: unknown worker", id),
            Some(WorkerState::Booting) => {
                self.mark_ready(now, id);
                self.settle(now);
            }
            Some(_) => self.ignore("ready: worker not booting", id),
        }
    }

    /// Worker `id` said it is stopping on its own (`STOPPING=1`): it is replaced at once
    /// and its exit is expected.
    fn handle_stopping(&mut self, now: Instant, id: WorkerId) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get(&id) else {
            return self.ignore("stopping: unknown worker", id);
        };
        let (WorkerPhase::Booting { pid } | WorkerPhase::Ready { pid }) = w.phase else {
            return self.ignore("stopping: worker already leaving", id);
        };
        self.catch_up_probation(now, id);
        let w = &self.workers[&id];
        let (slot, generation) = (w.slot, w.generation);
        let departure = Departure::of(
            w,
            now,
            || ReloadFailure::WorkerStopped { id },
            |ready_for| ReloadFailure::LeftInProbation {
                id,
                ready_for,
                how: ProbationLeave::Announced,
            },
        );
        let role = self.detach(id);
        self.emit(Event::WorkerStopping { id, slot, pid });
        let w = self.workers.get_mut(&id).expect("worker exists");
        w.phase = WorkerPhase::Leaving {
            pid,
            reason: StopReason::Announced,
            how: Leaving::Stopping,
        };
        let kill_at = (!self.lifecycle.is_stopping()).then(|| {
            (
                now + self.config.force_exit_timeout(),
                WorkerTimer::StopGrace,
            )
        });
        self.set_worker_deadline(id, kill_at);
        self.after_departure(now, role, slot.0, generation, departure);
        self.settle(now);
    }

    /// Worker `id` sent a heartbeat (`WATCHDOG=1`). From its first heartbeat on, a ready
    /// worker that stays silent for the hang timeout is hung.
    fn handle_heartbeat(&mut self, now: Instant, id: WorkerId) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return self.ignore("heartbeat: unknown worker", id);
        };
        if w.state().is_leaving() || w.state() == WorkerState::Spawning {
            return self.ignore("heartbeat: worker not running", id);
        }
        let first = w.last_heartbeat.is_none();
        w.last_heartbeat = Some(now);
        // Later heartbeats only move `last_heartbeat`: the pending check re-arms itself
        // when it fires early (so a heartbeat costs O(1), not a timer-set update).
        if first && w.state() == WorkerState::Ready {
            if let Some(timeout) = self.config.hang().timeout {
                self.set_worker_deadline(id, Some((now + timeout, WorkerTimer::HeartbeatCheck)));
            }
        }
    }

    /// Worker `id` exited with `status`.
    fn handle_exited(&mut self, now: Instant, id: WorkerId, status: ExitStatus) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get(&id) else {
            return self.ignore("exited: unknown worker", id);
        };
        if w.stop_reason().is_none() {
            self.catch_up_probation(now, id);
        }
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid());
        let was_ready = w.ready_at.is_some();
        let departure = Departure::of(
            w,
            now,
            || ReloadFailure::WorkerDied { id, status },
            |ready_for| ReloadFailure::DiedInProbation {
                id,
                status,
                ready_for,
            },
        );
        let uptime = now.saturating_duration_since(w.started_at.unwrap_or(w.spawned_at));
        let stop_reason = w.stop_reason();
        let role = self.detach(id);
        match stop_reason {
            Some(reason) => self.emit(Event::WorkerExit {
                id,
                slot,
                pid,
                status,
                reason,
            }),
            None => {
                self.stats.unexpected_exits += 1;
                self.emit(Event::WorkerDied {
                    id,
                    slot,
                    pid,
                    status,
                    was_ready,
                    uptime,
                });
            }
        }
        self.remove_worker(id);
        if stop_reason.is_none() {
            self.after_departure(now, role, slot.0, generation, departure);
        }
        self.settle(now);
    }

    /// [`Input::Signal`]: see there (and the README's signal table).
    fn handle_signal(&mut self, now: Instant, signal: Signal) {
        if !self.accept_input() {
            return;
        }
        match signal {
            Signal::Term | Signal::Int => match self.lifecycle.stopping() {
                None => self.begin_shutdown(now, ShutdownTrigger::Signal(signal)),
                Some(stopping) if stopping.is_repeat(now) => {
                    self.emit(Event::SignalIgnored {
                        signal,
                        why: SignalIgnoreReason::Repeat,
                    });
                }
                Some(_) => self.force(now),
            },
            Signal::Quit => {
                if self.lifecycle.is_stopping() {
                    self.force(now);
                } else {
                    self.begin_shutdown(now, ShutdownTrigger::Signal(signal));
                }
            }
            Signal::Hup | Signal::Ttin | Signal::Ttou => {
                let result = match signal {
                    Signal::Hup => self.reload_inner(now).map(|_| ()),
                    Signal::Ttin => self.scale_inner(now, self.slots.len() + 1),
                    // Never below one worker.
                    _ => match self.slots.len().saturating_sub(1) {
                        0 => Err(CommandError::BadWorkerCount(0)),
                        to => self.scale_inner(now, to),
                    },
                };
                if let Err(error) = result {
                    self.emit(Event::Ignored {
                        reason: IgnoreReason::Refused { signal, error },
                    });
                }
            }
            Signal::Usr1 | Signal::Usr2 if !self.config.forward_signals().contains(signal) => {
                self.emit(Event::SignalIgnored {
                    signal,
                    why: SignalIgnoreReason::NotForwarded,
                });
            }
            Signal::Usr1 | Signal::Usr2 => {
                let targets: Vec<(WorkerId, Pid)> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.state() != WorkerState::Killed)
                    .filter_map(|(&id, w)| w.pid().map(|pid| (id, pid)))
                    .collect();
                for &(id, pid) in &targets {
                    self.actions.push_back(Action::Signal { id, pid, signal });
                }
                self.emit(Event::SignalForwarded {
                    signal,
                    workers: targets.len(),
                });
            }
            Signal::Winch | Signal::Abrt | Signal::Kill => {
                self.emit(Event::Ignored {
                    reason: IgnoreReason::Meaningless(signal),
                });
            }
        }
        self.settle(now);
    }

    /// Time passed. Call at (or after) [`poll_timeout`](Self::poll_timeout); early and
    /// spurious calls are harmless.
    fn handle_timeout(&mut self, now: Instant) {
        if !self.accept_input() {
            return;
        }
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            if matches!(self.breaker_at(), Some(due) if due <= at) {
                // The breaker's window ended first: it trips before, say, a refill due
                // at the same time is spawned for nothing.
                self.check_breaker(now);
                continue;
            }
            self.timers.pop_first();
            match key {
                TimerKey::Probation(id) => {
                    self.workers
                        .get_mut(&id)
                        .expect("probation of a live worker")
                        .probation_at = None;
                    self.prove(now, id);
                }
                TimerKey::Respawn(index) => {
                    self.slots[index].respawn_at = None;
                    self.spawn(now, index, Role::Current);
                }
                TimerKey::Worker(id, timer) => {
                    self.workers
                        .get_mut(&id)
                        .expect("timer of a live worker")
                        .deadline = None;
                    self.worker_deadline(now, id, timer);
                }
            }
            if self.lifecycle.is_exited() {
                return;
            }
        }
        if let Some(stopping) = self.lifecycle.stopping() {
            if stopping.force_at().is_some_and(|at| now >= at) {
                self.force(now);
            }
        }
        if let Some(at) = self.watchdog_at {
            if now >= at && !self.lifecycle.is_exited() {
                if self.is_service_healthy() {
                    self.actions.push_back(Action::Notify(Notice::Watchdog));
                }
                let interval = self.config.service_watchdog().expect("watchdog configured");
                self.watchdog_at = Some(now + interval);
            }
        }
        self.settle(now);
    }

    // ----- commands -----------------------------------------------------------------

    /// Starts a graceful shutdown (as SIGTERM does, but a second call does not force).
    fn shutdown(&mut self, now: Instant) {
        if !self.accept_input() {
            return;
        }
        self.begin_shutdown(now, ShutdownTrigger::Command);
        self.settle(now);
    }

    /// Stops now: shutdown if not begun, then SIGKILL every worker.
    fn shutdown_now(&mut self, now: Instant) {
        if !self.accept_input() {
            return;
        }
        self.begin_shutdown(now, ShutdownTrigger::Command);
        self.force(now);
        self.settle(now);
    }

    /// Starts a rolling restart (or queues one if one is under way); answers the
    /// generation whose rollout will answer the request.
    fn reload(&mut self, now: Instant) -> Result<u64, CommandError> {
        if !self.accept_input() {
            return Err(CommandError::ShuttingDown);
        }
        let result = self.reload_inner(now);
        self.settle(now);
        result
    }

    /// Sets the target worker count to `workers` (1 to [`MAX_WORKERS`]).
    fn scale(&mut self, now: Instant, workers: usize) -> Result<(), CommandError> {
        if !self.accept_input() {
            return Err(CommandError::ShuttingDown);
        }
        let result = self.scale_inner(now, workers);
        self.settle(now);
        result
    }

    // ----- what the driver must do --------------------------------------------------

    /// The next action, in order. Drain until `None` after every call that changes state.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.lifecycle.is_exited() {
            return None;
        }
        // Coalesced: one STATUS per drain, only when the counts changed.
        let status = self.status();
        if self.last_status != Some(status) {
            self.last_status = Some(status);
            return Some(Action::Notify(Notice::Status(status)));
        }
        None
    }

    /// When [`Input::Timeout`] is due; `None` when nothing is
    /// scheduled (an idle cluster sleeps until the next fact).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.lifecycle.is_exited() {
            return None;
        }
        let timer = self.timers.first().map(|&(at, _)| at);
        let force = self.lifecycle.stopping().and_then(Shutdown::force_at);
        [timer, force, self.watchdog_at, self.breaker_at()]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- internals: inputs --------------------------------------------------------

    fn accept_input(&mut self) -> bool {
        self.stats.inputs += 1;
        if self.lifecycle.is_exited() {
            self.stats.ignored_inputs += 1;
        }
        !self.lifecycle.is_exited()
    }

    fn ignore(&mut self, what: &'static str, id: WorkerId) {
        self.stats.ignored_inputs += 1;
        tracing::debug!(worker = id.0, "ignored input: {what}");
    }

    fn emit(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    fn role(&self, id: WorkerId, w: &Worker) -> Role {
        match self.slots.get(w.slot.0) {
            Some(slot) if slot.current == Some(id) => Role::Current,
            Some(slot) if slot.successor == Some(id) => Role::Successor,
            _ => Role::Detached,
        }
    }

    /// A report about a ready worker at or after its probation's end, before the
    /// probation timer was handled: it passed probation first.
    fn catch_up_probation(&mut self, now: Instant, id: WorkerId) {
        let w = &self.workers[&id];
        if !w.proven && w.probation_at.is_some_and(|at| at <= now) {
            self.set_probation(id, None);
            self.prove(now, id);
        }
    }

    fn is_service_healthy(&self) -> bool {
        self.lifecycle.is_stopping() || !self.listening || self.serving_workers() > 0
    }

    // ----- internals: slots and workers ---------------------------------------------

    fn spawn(&mut self, now: Instant, index: usize, role: Role) {
        let id = WorkerId(self.next_id);
        self.next_id += 1;
        let slot = Slot(index);
        let generation = self.generation;
        self.workers.insert(
            id,
            Worker {
                slot,
                generation,
                phase: WorkerPhase::Spawning { stop: None },
                spawned_at: now,
                started_at: None,
                ready_at: None,
                last_heartbeat: None,
                deadline: None,
                probation_at: None,
                proven: false,
            },
        );
        let slot_state = &mut self.slots[index];
        match role {
            Role::Current => slot_state.current = Some(id),
            Role::Successor => {
                slot_state.successor = Some(id);
                self.lifecycle
                    .rollout_mut()
                    .expect("successor only in a rollout")
                    .in_flight += 1;
            }
            Role::Detached => unreachable!("spawned workers always have a slot"),
        }
        self.stats.spawns += 1;
        self.actions.push_back(Action::Spawn {
            id,
            slot,
            generation,
        });
    }

    /// Takes `id` out of its slot, keeping the ready counts true. Returns where it stood.
    fn detach(&mut self, id: WorkerId) -> Role {
        let w = &self.workers[&id];
        let role = self.role(id, w);
        let slot = &mut self.slots.get_mut(w.slot.0);
        match (role, slot) {
            (Role::Current, Some(slot)) => {
                slot.current = None;
                if w.state() == WorkerState::Ready {
                    self.ready_count -= 1;
                    if w.proven {
                        self.proven_count -= 1;
                        if let Some(r) = self
                            .lifecycle
                            .rollout_mut()
                            .filter(|r| r.generation == w.generation)
                        {
                            r.ready -= 1;
                        }
                    }
                }
            }
            (Role::Successor, Some(slot)) => {
                slot.successor = None;
                let rollout = self
                    .lifecycle
                    .rollout_mut()
                    .expect("successor only in a rollout");
                rollout.in_flight -= 1;
                if w.state() == WorkerState::Ready {
                    rollout.ready_successors -= 1;
                }
            }
            _ => {}
        }
        self.set_probation(id, None);
        role
    }

    /// Makes `index`'s successor its current worker.
    fn promote(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let id = slot.successor.take().expect("a successor to promote");
        debug_assert!(slot.current.is_none());
        slot.current = Some(id);
        let rollout = self
            .lifecycle
            .rollout_mut()
            .expect("successor only in a rollout");
        rollout.in_flight -= 1;
        let w = &self.workers[&id];
        if w.state() == WorkerState::Ready {
            self.ready_count += 1;
            rollout.ready_successors -= 1;
            if w.proven {
                self.proven_count += 1;
                if rollout.generation == w.generation {
                    rollout.ready += 1;
                }
            }
        }
    }

    /// Worker `id` has been ready for the minimum uptime. A current worker makes its
    /// slot healthy again (and the breaker stops counting); a successor replaces its
    /// slot's old worker for good, which is stopped only now.
    fn prove(&mut self, now: Instant, id: WorkerId) {
        let w = self.workers.get_mut(&id).expect("worker to prove");
        w.proven = true;
        let (slot, generation) = (w.slot, w.generation);
        match self.role(id, &self.workers[&id]) {
            Role::Detached => return,
            Role::Current => {
                self.proven_count += 1;
                if let Some(r) = self
                    .lifecycle
                    .rollout_mut()
                    .filter(|r| r.generation == generation)
                {
                    r.ready += 1;
                }
            }
            Role::Successor => {
                if let Some(old) = self.slots[slot.0].current {
                    self.detach(old);
                    self.stop_worker(now, old, StopReason::Reload, Signal::Term);
                }
                self.promote(slot.0);
            }
        }
        self.set_failures(slot.0, 0);
        self.slots[slot.0].quick_tat = None;
        self.breaker.reset();
    }

    /// Sets slot `index`'s young-death count, keeping the failing-slot count true.
    fn set_failures(&mut self, index: usize, failures: u32) {
        let slot = &mut self.slots[index];
        let was = slot.consecutive_failures > 0;
        slot.consecutive_failures = failures;
        match (was, failures > 0) {
            (false, true) => self.failing_slots += 1,
            (true, false) => self.failing_slots -= 1,
            _ => {}
        }
    }

    fn set_probation(&mut self, id: WorkerId, at: Option<Instant>) {
        let w = self.workers.get_mut(&id).expect("worker for probation");
        if let Some(old) = std::mem::replace(&mut w.probation_at, at) {
            self.timers.remove(&(old, TimerKey::Probation(id)));
        }
        if let Some(at) = at {
            self.timers.insert((at, TimerKey::Probation(id)));
        }
    }

    fn remove_worker(&mut self, id: WorkerId) {
        let w = self.workers.remove(&id).expect("worker to remove");
        if let Some((at, timer)) = w.deadline {
            self.timers.remove(&(at, TimerKey::Worker(id, timer)));
        }
        if let Some(at) = w.probation_at {
            self.timers.remove(&(at, TimerKey::Probation(id)));
        }
        if self.workers.is_empty() {
            self.emit(Event::NoWorkers);
        }
    }

    fn set_worker_deadline(&mut self, id: WorkerId, deadline: Option<(Instant, WorkerTimer)>) {
        let w = self.workers.get_mut(&id).expect("worker for deadline");
        if let Some((at, timer)) = std::mem::replace(&mut w.deadline, deadline) {
            self.timers.remove(&(at, TimerKey::Worker(id, timer)));
        }
        if let Some((at, timer)) = deadline {
            self.timers.insert((at, TimerKey::Worker(id, timer)));
        }
    }

    fn set_respawn(&mut self, index: usize, at: Option<Instant>) {
        let slot = &mut self.slots[index];
        if let Some(old) = std::mem::replace(&mut slot.respawn_at, at) {
            self.timers.remove(&(old, TimerKey::Respawn(index)));
        }
        if let Some(at) = at {
            self.timers.insert((at, TimerKey::Respawn(index)));
        }
    }

    fn mark_ready(&mut self, now: Instant, id: WorkerId) {
        let hang_timeout = self.config.hang().timeout;
        let w = self.workers.get_mut(&id).expect("worker to mark ready");
        let WorkerPhase::Booting { pid } = w.phase else {
            unreachable!("only booting workers become ready")
        };
        w.phase = WorkerPhase::Ready { pid };
        w.ready_at = Some(now);
        let (slot, generation) = (w.slot, w.generation);
        // Becoming ready counts as a heartbeat for a worker that sends them.
        let hang_check = match (w.last_heartbeat.is_some(), hang_timeout) {
            (true, Some(timeout)) => {
                w.last_heartbeat = Some(now);
                Some((now + timeout, WorkerTimer::HeartbeatCheck))
            }
            _ => None,
        };
        self.set_worker_deadline(id, hang_check);
        self.set_probation(id, Some(now + self.config.min_uptime()));
        self.emit(Event::WorkerReady { id, slot, pid });
        let _ = generation;
        match self.role(id, &self.workers[&id]) {
            Role::Current => self.ready_count += 1,
            Role::Successor => {
                // The new worker serves, but its old counterpart goes only once it has
                // passed probation (`prove`).
                self.lifecycle
                    .rollout_mut()
                    .expect("successor only in a rollout")
                    .ready_successors += 1;
            }
            Role::Detached => unreachable!("booting workers are attached"),
        }
        if !self.listening {
            self.listening = true;
            self.emit(Event::Listening { id });
            self.actions.push_back(Action::Notify(Notice::Ready));
        }
    }

    /// Asks worker `id` to go with `signal` (TERM or KILL), remembering why. A worker still
    /// being spawned gets the signal as soon as its pid is known.
    fn stop_worker(&mut self, now: Instant, id: WorkerId, reason: StopReason, signal: Signal) {
        let shutting_down = self.lifecycle.is_stopping();
        let grace = self.config.force_exit_timeout();
        let w = self.workers.get_mut(&id).expect("worker to stop");
        // The first reason given is the one that counts.
        let (pid, reason) = match w.phase {
            WorkerPhase::Spawning { stop } => {
                let (reason, pending) = stop.unwrap_or((reason, signal));
                // A KILL decided earlier is not softened into a TERM.
                let pending = if pending == Signal::Kill {
                    pending
                } else {
                    signal
                };
                w.phase = WorkerPhase::Spawning {
                    stop: Some((reason, pending)),
                };
                return;
            }
            WorkerPhase::Booting { pid } | WorkerPhase::Ready { pid } => (pid, reason),
            WorkerPhase::Leaving {
                how: Leaving::Killed,
                ..
            } => return,
            WorkerPhase::Leaving {
                how: Leaving::Stopping,
                ..
            } if signal == Signal::Term => return,
            WorkerPhase::Leaving { pid, reason, .. } => (pid, reason),
        };
        let deadline = if signal == Signal::Kill {
            w.phase = WorkerPhase::Leaving {
                pid,
                reason,
                how: Leaving::Killed,
            };
            None
        } else {
            w.phase = WorkerPhase::Leaving {
                pid,
                reason,
                how: Leaving::Stopping,
            };
            // During shutdown the global force deadline bounds every worker.
            (!shutting_down).then(|| (now + grace, WorkerTimer::StopGrace))
        };
        self.actions.push_back(Action::Signal { id, pid, signal });
        self.set_worker_deadline(id, deadline);
    }

    /// Worker `id`'s deadline `timer` passed.
    fn worker_deadline(&mut self, now: Instant, id: WorkerId, timer: WorkerTimer) {
        let w = &self.workers[&id];
        match timer {
            WorkerTimer::ReadinessDelay => {
                let started = w.started_at.expect("booting workers have started");
                if now < started + self.config.boot_timeout() {
                    // The readiness delay ran out with the worker alive: it is ready.
                    self.mark_ready(now, id);
                } else {
                    self.boot_timed_out(now, id);
                }
            }
            WorkerTimer::BootTimeout => self.boot_timed_out(now, id),
            WorkerTimer::HeartbeatCheck => {
                let (Some(last), Some(timeout)) = (w.last_heartbeat, self.config.hang().timeout)
                else {
                    return;
                };
                if now < last + timeout {
                    let at = last + timeout;
                    self.set_worker_deadline(id, Some((at, WorkerTimer::HeartbeatCheck)));
                } else {
                    self.hung(now, id, now.saturating_duration_since(last));
                }
            }
            WorkerTimer::HangGrace | WorkerTimer::StopGrace => {
                // The reason given is ignored: a leaving worker keeps its own.
                self.stop_worker(now, id, StopReason::Shutdown, Signal::Kill);
            }
        }
    }

    fn boot_timed_out(&mut self, now: Instant, id: WorkerId) {
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid().expect("booting has a pid"));
        let role = self.detach(id);
        self.emit(Event::WorkerBootTimedOut { id, slot, pid });
        self.stop_worker(now, id, StopReason::BootTimeout, Signal::Kill);
        let departure = Departure::Boot(ReloadFailure::BootTimeout { id });
        self.after_departure(now, role, slot.0, generation, departure);
    }

    fn hung(&mut self, now: Instant, id: WorkerId, silent_for: Duration) {
        self.catch_up_probation(now, id);
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid().expect("ready has a pid"));
        let departure = Departure::of(
            w,
            now,
            || unreachable!("only ready workers hang"),
            |ready_for| ReloadFailure::LeftInProbation {
                id,
                ready_for,
                how: ProbationLeave::Hung,
            },
        );
        self.stats.hung += 1;
        let role = self.detach(id);
        self.emit(Event::WorkerHung {
            id,
            slot,
            pid,
            silent_for,
        });
        match self.config.hang().signal {
            Some(signal) => {
                let w = self.workers.get_mut(&id).expect("hung worker");
                w.phase = WorkerPhase::Leaving {
                    pid,
                    reason: StopReason::Hung,
                    how: Leaving::Hung,
                };
                self.actions.push_back(Action::Signal { id, pid, signal });
                let at = now + self.config.hang().grace;
                self.set_worker_deadline(id, Some((at, WorkerTimer::HangGrace)));
            }
            None => self.stop_worker(now, id, StopReason::Hung, Signal::Kill),
        }
        self.after_departure(now, role, slot.0, generation, departure);
    }

    /// A worker left slot `index` without being asked (or was removed for cause). A
    /// young death (at boot or in probation) fails a rollout it belonged to, or counts
    /// toward the crash breaker; then the slot is refilled (after a backoff if the
    /// worker died young). A [`Departure::Resource`] is not the program's: it still
    /// fails a rollout whose successor it hit, but a current worker's slot is only
    /// refilled.
    fn after_departure(
        &mut self,
        now: Instant,
        role: Role,
        index: usize,
        generation: u64,
        departure: Departure,
    ) {
        if self.lifecycle.is_stopping() {
            return;
        }
        let rollout_generation = self.lifecycle.rollout().map(|r| r.generation);
        let death = departure.death();
        match (role, departure) {
            (Role::Detached, _) => {}
            // A successor is promoted the moment it is proven (`prove`): it never
            // departs as a successor once proven.
            (Role::Successor, Departure::Proven) => {}
            (
                Role::Successor,
                Departure::Boot(failure)
                | Departure::Probation(failure)
                | Departure::Resource(failure),
            ) => {
                // The old worker still serves this slot; the rollout stops here.
                self.rollout_failed(now, failure);
            }
            (Role::Current, departure) => {
                if let Departure::Boot(failure) | Departure::Probation(failure) = departure {
                    if rollout_generation == Some(generation) {
                        self.rollout_failed(now, failure);
                    } else {
                        self.count_failure(now);
                        if self.lifecycle.is_stopping() {
                            return;
                        }
                    }
                }
                self.refill(now, index, death);
            }
        }
    }

    fn refill(&mut self, now: Instant, index: usize, death: Death) {
        if self.slots[index].successor.is_some() {
            // The old worker died while its successor boots: the successor takes over.
            self.promote(index);
            return;
        }
        self.slots[index].restarts += 1;
        if death == Death::Proven {
            // A one-off crash of a worker that had proven itself: replaced at once.
            self.set_failures(index, 0);
            self.spawn(now, index, Role::Current);
            return;
        }
        let failures = self.slots[index].consecutive_failures.saturating_add(1);
        self.set_failures(index, failures);
        let backoff = *self.config.backoff();
        let delay = if death == Death::Probation && self.quick_refill(now, index) {
            backoff.initial
        } else {
            backoff.delay(failures)
        };
        self.set_respawn(index, Some(now + delay));
        self.emit(Event::RespawnDelayed {
            slot: Slot(index),
            delay,
            consecutive_failures: failures,
        });
    }

    /// Whether slot `index` may have a quick refill now (a GCRA: one per
    /// `QUICK_REFILL_INTERVAL` on average, `QUICK_REFILL_BURST` in a row), taking it.
    fn quick_refill(&mut self, now: Instant, index: usize) -> bool {
        let tolerance = QUICK_REFILL_INTERVAL * QUICK_REFILL_BURST.saturating_sub(1);
        let slot = &mut self.slots[index];
        let tat = slot.quick_tat.map_or(now, |tat| tat.max(now));
        if tat <= now + tolerance {
            slot.quick_tat = Some(tat + QUICK_REFILL_INTERVAL);
            true
        } else {
            false
        }
    }

    /// A failure of the program's own (a boot failure or a death in probation).
    fn count_failure(&mut self, now: Instant) {
        self.stats.boot_failures += 1;
        self.breaker.count(now, self.proven_count > 0);
        self.check_breaker(now);
    }

    fn breaker_threshold(&self) -> usize {
        (self.config.crash_budget().failures as usize).max(self.slots.len())
    }

    /// When the breaker trips if nothing changes: only while no worker serves and
    /// enough failures were counted.
    fn breaker_at(&self) -> Option<Instant> {
        if self.lifecycle.is_stopping() || self.serving_workers() > 0 {
            return None;
        }
        self.breaker
            .due_at(self.breaker_threshold(), self.config.crash_budget().window)
    }

    /// Trips the breaker when no worker serves, the cluster has been failing for the
    /// window and enough failures were counted. Runs after every input (and when a
    /// failure is counted, before its slot is refilled).
    fn check_breaker(&mut self, now: Instant) {
        let due = matches!(self.breaker_at(), Some(at) if now >= at);
        if self.lifecycle.is_exited() || !due {
            return;
        }
        let failures = self.breaker.trip();
        self.emit(Event::BreakerTripped {
            failures,
            window: self.config.crash_budget().window,
        });
        self.begin_shutdown(now, ShutdownTrigger::Breaker);
    }

    // ----- internals: shutdown ------------------------------------------------------

    fn begin_shutdown(&mut self, now: Instant, trigger: ShutdownTrigger) {
        if self.lifecycle.is_stopping() {
            // Repeated signals are handled by `handle_signal`; failure triggers only
            // fire outside a shutdown.
            if trigger == ShutdownTrigger::Command {
                self.emit(Event::Ignored {
                    reason: IgnoreReason::AlreadyShuttingDown,
                });
            }
            return;
        }
        if self.lifecycle.take_rollout().is_some() {
            self.stats.reloads_failed += 1;
            let generation = self.generation;
            self.emit(Event::ReloadFailed {
                generation,
                reason: ReloadFailure::ShuttingDown,
            });
        }
        self.emit(Event::ShutdownStarted { trigger });
        self.actions.push_back(Action::Notify(Notice::Stopping));
        self.lifecycle = Lifecycle::Stopping(Shutdown::new(
            now,
            trigger,
            self.config.force_exit_timeout(),
        ));
        for index in 0..self.slots.len() {
            self.set_respawn(index, None);
            let slot = &mut self.slots[index];
            slot.current = None;
            slot.successor = None;
        }
        self.ready_count = 0;
        self.proven_count = 0;
        self.breaker.reset();
        let probations: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.probation_at.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in probations {
            self.set_probation(id, None);
        }
        if trigger == ShutdownTrigger::Signal(Signal::Quit) {
            // QUIT means now: no TERM first.
            self.force(now);
            return;
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let w = &self.workers[&id];
            if !w.state().is_leaving() {
                self.stop_worker(now, id, StopReason::Shutdown, Signal::Term);
            }
            // Workers already leaving keep their own (earlier) kill deadline.
        }
    }

    /// SIGKILL every worker not yet killed; the exit will say it was forced.
    fn force(&mut self, now: Instant) {
        if !self.lifecycle.is_stopping() {
            return;
        }
        let ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                !matches!(
                    w.phase,
                    WorkerPhase::Leaving {
                        how: Leaving::Killed,
                        ..
                    } | WorkerPhase::Spawning {
                        stop: Some((_, Signal::Kill))
                    }
                )
            })
            .map(|(&id, _)| id)
            .collect();
        let stopping = self.lifecycle.stopping_mut().expect("stopping");
        stopping.forced(!ids.is_empty());
        if ids.is_empty() {
            return;
        }
        self.emit(Event::ShutdownForced { killed: ids.len() });
        for id in ids {
            self.stop_worker(now, id, StopReason::Shutdown, Signal::Kill);
        }
    }

    // ----- internals: rolling restart -----------------------------------------------

    /// Starts or queues a rollout; answers the generation that will answer it (a queued
    /// rollout gets the next generation number when it starts).
    fn reload_inner(&mut self, now: Instant) -> Result<u64, CommandError> {
        if self.lifecycle.is_stopping() {
            return Err(CommandError::ShuttingDown);
        }
        if self.config.is_in_process() {
            return Err(CommandError::InProcess);
        }
        match self.lifecycle.rollout_mut() {
            Some(rollout) => {
                rollout.queued = true;
                self.emit(Event::ReloadQueued);
                Ok(self.next_generation)
            }
            None => {
                self.start_rollout(now);
                Ok(self.generation)
            }
        }
    }

    fn start_rollout(&mut self, now: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.lifecycle = Lifecycle::Serving(Some(Rollout {
            generation,
            from_generation: self.generation,
            started_at: now,
            cursor: 0,
            in_flight: 0,
            ready: 0,
            ready_successors: 0,
            queued: false,
        }));
        self.generation = generation;
        self.emit(Event::ReloadStarted { generation });
        self.actions.push_back(Action::Notify(Notice::Reloading));
    }

    fn rollout_failed(&mut self, now: Instant, reason: ReloadFailure) {
        let Some(rollout) = self.lifecycle.take_rollout() else {
            return;
        };
        self.stats.reloads_failed += 1;
        // Respawns go back to the generation that worked.
        self.generation = rollout.from_generation;
        self.emit(Event::ReloadFailed {
            generation: rollout.generation,
            reason,
        });
        for index in 0..self.slots.len() {
            if let Some(id) = self.slots[index].successor.take() {
                self.set_probation(id, None);
                self.stop_worker(now, id, StopReason::ReloadAborted, Signal::Term);
            }
        }
        self.actions.push_back(Action::Notify(Notice::Ready));
        if rollout.queued {
            // A reload asked for after this one started may carry the fix: run it.
            self.start_rollout(now);
        }
    }

    /// Moves a rollout forward: start successors up to the batch size, and finish when
    /// every slot runs a ready worker of the new generation. Amortized O(1): the cursor
    /// only moves forward.
    fn advance_rollout(&mut self, now: Instant) {
        let batch = self.config.rollout_batch();
        loop {
            let Some(rollout) = self.lifecycle.rollout_mut() else {
                return;
            };
            if rollout.ready == self.slots.len() {
                let rollout = self.lifecycle.take_rollout().expect("rollout");
                self.stats.reloads_finished += 1;
                let took = now.saturating_duration_since(rollout.started_at);
                self.emit(Event::ReloadFinished {
                    generation: rollout.generation,
                    took,
                });
                self.actions.push_back(Action::Notify(Notice::Ready));
                if rollout.queued {
                    self.start_rollout(now);
                    continue;
                }
                return;
            }
            if rollout.in_flight >= batch || rollout.cursor >= self.slots.len() {
                return;
            }
            let index = rollout.cursor;
            rollout.cursor += 1;
            let generation = rollout.generation;
            let slot = &self.slots[index];
            let needs_successor = slot.successor.is_none()
                && slot
                    .current
                    .is_some_and(|id| self.workers[&id].generation != generation);
            if needs_successor {
                self.spawn(now, index, Role::Successor);
            }
        }
    }

    // ----- internals: scaling -------------------------------------------------------

    fn scale_inner(&mut self, now: Instant, workers: usize) -> Result<(), CommandError> {
        if self.lifecycle.is_stopping() {
            return Err(CommandError::ShuttingDown);
        }
        if self.config.is_in_process() {
            return Err(CommandError::InProcess);
        }
        if workers == 0 || workers > MAX_WORKERS {
            return Err(CommandError::BadWorkerCount(workers));
        }
        let from = self.slots.len();
        if workers == from {
            return Ok(());
        }
        for index in from..workers {
            self.slots.push(SlotState::default());
            self.spawn(now, index, Role::Current);
        }
        for index in (workers..from).rev() {
            self.set_respawn(index, None);
            self.set_failures(index, 0);
            let slot = &self.slots[index];
            let leaving: Vec<WorkerId> = slot.successor.into_iter().chain(slot.current).collect();
            for id in leaving {
                self.detach(id);
                self.stop_worker(now, id, StopReason::ScaleDown, Signal::Term);
            }
            self.slots.pop();
        }
        if let Some(rollout) = self.lifecycle.rollout_mut() {
            rollout.cursor = rollout.cursor.min(workers);
        }
        self.emit(Event::Scaled { from, to: workers });
        // A smaller target lowers the breaker's threshold (`settle` checks it).
        Ok(())
    }

    /// Runs after every input: moves a rollout on and ends a finished shutdown.
    fn settle(&mut self, now: Instant) {
        if self.lifecycle.is_exited() {
            return;
        }
        // The breaker first: a cluster that must stop spawns no rollout's workers.
        self.check_breaker(now);
        self.advance_rollout(now);
        let degraded = !self.lifecycle.is_stopping() && self.failing_slots > 0;
        if degraded != self.degraded {
            self.degraded = degraded;
            if degraded {
                self.emit(Event::Degraded {
                    failing: self.failing_slots,
                    ready: self.ready_count,
                    target: self.slots.len(),
                });
            } else if !self.lifecycle.is_stopping() {
                self.emit(Event::Recovered);
            }
        }
        if let Some(stopping) = self.lifecycle.stopping() {
            if self.workers.is_empty() {
                let reason = stopping.exit_reason();
                self.emit(Event::ShutDown { reason });
                self.actions.push_back(Action::Exit(reason));
                self.lifecycle = Lifecycle::Exited;
                self.timers.clear();
                self.watchdog_at = None;
            }
        }
    }

    // ----- invariants ---------------------------------------------------------------

    /// Checks the state's internal consistency; the simulator, property tests and fuzzers
    /// call it after every step. `Err` names the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        macro_rules! ensure {
            ($cond:expr, $($fmt:tt)+) => {
                if !$cond {
                    return Err(format!($($fmt)+));
                }
            };
        }
        if self.lifecycle.is_exited() {
            ensure!(
                self.workers.is_empty(),
                "exited with {} workers left",
                self.workers.len()
            );
            ensure!(self.timers.is_empty(), "exited with timers armed");
            ensure!(
                matches!(self.actions.back(), None | Some(Action::Exit(_))),
                "an action queued after the exit"
            );
            return Ok(());
        }
        ensure!(
            self.actions.iter().all(|a| !matches!(a, Action::Exit(_))),
            "exit queued while not exited"
        );
        let mut ready = 0;
        let mut proven = 0;
        let mut rollout_ready = 0;
        let mut successors = 0;
        let mut ready_successors = 0;
        let mut failing = 0;
        let mut timers = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            for (id, is_successor) in slot
                .current
                .iter()
                .map(|&id| (id, false))
                .chain(slot.successor.iter().map(|&id| (id, true)))
            {
                let Some(w) = self.workers.get(&id) else {
                    return Err(format!("slot {index} holds unknown worker {id}"));
                };
                ensure!(
                    w.slot.0 == index,
                    "worker {id} in slot {index} thinks it is in {}",
                    w.slot
                );
                ensure!(
                    w.stop_reason().is_none() && !w.state().is_leaving(),
                    "leaving worker {id} still holds slot {index}"
                );
                if is_successor {
                    successors += 1;
                    let Some(r) = self.lifecycle.rollout() else {
                        return Err(format!("successor {id} outside a rollout"));
                    };
                    ensure!(
                        w.generation == r.generation,
                        "successor {id} of an old generation"
                    );
                    ensure!(
                        matches!(
                            w.state(),
                            WorkerState::Spawning | WorkerState::Booting | WorkerState::Ready
                        ) && !w.proven,
                        "successor {id} is {} (proven: {})",
                        w.state(),
                        w.proven
                    );
                    if w.state() == WorkerState::Ready {
                        ready_successors += 1;
                    }
                    ensure!(
                        slot.current.is_some(),
                        "successor {id} in a slot with no current worker"
                    );
                } else if w.state() == WorkerState::Ready {
                    ready += 1;
                    if w.proven {
                        proven += 1;
                        if self
                            .lifecycle
                            .rollout()
                            .is_some_and(|r| r.generation == w.generation)
                        {
                            rollout_ready += 1;
                        }
                    }
                }
                ensure!(
                    w.probation_at.is_some()
                        == (w.state() == WorkerState::Ready
                            && !w.proven
                            && !self.lifecycle.is_stopping()),
                    "worker {id}: probation timer {:?}, {} (proven: {})",
                    w.probation_at,
                    w.state(),
                    w.proven
                );
            }
            if slot.consecutive_failures > 0 {
                failing += 1;
            }
            if let Some(at) = slot.respawn_at {
                timers += 1;
                ensure!(
                    slot.current.is_none() && slot.successor.is_none(),
                    "slot {index} has a worker and a respawn timer"
                );
                ensure!(
                    self.timers.contains(&(at, TimerKey::Respawn(index))),
                    "slot {index}'s respawn timer is missing"
                );
            }
        }
        ensure!(
            ready == self.ready_count,
            "ready count {} but {ready} ready slots",
            self.ready_count
        );
        ensure!(
            proven == self.proven_count,
            "proven count {} but {proven} proven slots",
            self.proven_count
        );
        ensure!(
            failing == self.failing_slots,
            "failing-slot count {} but {failing} failing slots",
            self.failing_slots
        );
        ensure!(
            self.proven_count == 0 || !self.breaker.is_failing(),
            "a failing period while {} workers are proven",
            self.proven_count
        );
        for (&id, w) in &self.workers {
            let role = self.role(id, w);
            if role == Role::Detached {
                ensure!(
                    w.stop_reason().is_some(),
                    "worker {id} has no slot yet was not asked to stop"
                );
            }
            ensure!(
                w.ready_at.is_some() || w.state() != WorkerState::Ready,
                "ready worker {id} without a ready time"
            );
            if let Some((at, timer)) = w.deadline {
                timers += 1;
                ensure!(
                    self.timers.contains(&(at, TimerKey::Worker(id, timer))),
                    "worker {id}'s {timer:?} timer is missing"
                );
            }
            if let Some(at) = w.probation_at {
                timers += 1;
                ensure!(role != Role::Detached, "detached worker {id} in probation");
                ensure!(
                    self.timers.contains(&(at, TimerKey::Probation(id))),
                    "worker {id}'s probation timer is missing"
                );
            }
            ensure!(id.0 < self.next_id, "worker id {id} from the future");
        }
        ensure!(
            timers == self.timers.len(),
            "{} timers armed, {timers} owned",
            self.timers.len()
        );
        match self.lifecycle.rollout() {
            Some(r) => {
                ensure!(
                    r.in_flight == successors,
                    "rollout counts {} in flight, {successors} successors",
                    r.in_flight
                );
                ensure!(
                    r.in_flight <= self.config.rollout_batch(),
                    "rollout surge {} above the batch",
                    r.in_flight
                );
                ensure!(
                    r.ready == rollout_ready,
                    "rollout counts {} ready, {rollout_ready} are",
                    r.ready
                );
                ensure!(
                    r.ready_successors == ready_successors,
                    "rollout counts {} ready successors, {ready_successors} are",
                    r.ready_successors
                );
                ensure!(
                    r.ready < self.slots.len() || self.slots.is_empty(),
                    "finished rollout still open"
                );
                ensure!(
                    self.generation == r.generation,
                    "spawning generation {} during rollout of {}",
                    self.generation,
                    r.generation
                );
            }
            None => ensure!(successors == 0, "{successors} successors outside a rollout"),
        }
        if self.lifecycle.is_stopping() {
            ensure!(
                self.slots.iter().all(|s| s.current.is_none()
                    && s.successor.is_none()
                    && s.respawn_at.is_none()),
                "slots still filled during shutdown"
            );
            ensure!(
                self.workers.values().all(|w| w.stop_reason().is_some()),
                "a worker not asked to stop during shutdown"
            );
        }
        ensure!(self.slots.len() <= MAX_WORKERS, "more slots than allowed");
        Ok(())
    }
}

impl fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterState")
            .field("phase", &self.phase())
            .field("target", &self.slots.len())
            .field("workers", &self.workers.len())
            .field("ready", &self.ready_count)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}
