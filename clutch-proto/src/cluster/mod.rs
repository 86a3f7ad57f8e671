//! [`ClusterState`]: the whole supervision logic as a pure state machine, composed of
//! one small module per concern (quinn-proto's `connection/` is the model):
//!
//! | module | concern |
//! |---|---|
//! | `slots` | the places workers serve in: spawning into them, detaching, promoting a successor, refilling (backoff, quick refills) |
//! | `worker` | a worker's `WorkerPhase` and how it departs; asking it to go |
//! | `readiness` | readiness, probation, boot timeouts, hang detection |
//! | `recycle` | recycling a serving worker (memory, age, asked): successor first; the age jitter's seeded numbers |
//! | `failures` | what a departure leads to: a failed rollout or a breaker count, then a refill |
//! | `breaker` | the crash breaker's count, pure |
//! | `rollout` | rolling restarts |
//! | `shutdown` | the shutdown under way (pure) and stopping the workers |
//! | `signals` | what each master signal means; scaling |
//! | `status` | [`Phase`], [`Stats`], [`WorkerInfo`] |
//! | `lifecycle` | serving (with a rollout, perhaps) / stopping / exited |
//! | `timers` | the one ordered set of deadlines, each named |
//! | `upgrade` | the upgrade of the master itself: a successor master's phases |
//! | `invariants` | [`ClusterState::check_invariants`] |
//!
//! This file holds the composition: the state, the getters, the one entry point that
//! routes each [`Input`] to its concern, and the `poll_*` queries.

mod breaker;
mod failures;
mod invariants;
mod lifecycle;
mod readiness;
mod recycle;
mod rollout;
mod shutdown;
mod signals;
mod slots;
mod status;
mod timers;
mod upgrade;
mod worker;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::action::{
    Action, CommandError, Event, ExitReason, Notice, ProbationLeave, ReloadFailure,
    ShutdownTrigger, StatusLine, StopReason,
};
use crate::config::{Config, Readiness};
use crate::input::{Input, Reply};
use crate::types::{ExitStatus, Pid, SpawnError, SpawnErrorKind, WorkerId, WorkerState};
use breaker::Breaker;
use lifecycle::Lifecycle;
use recycle::Jitter;
use shutdown::Shutdown;
use slots::{Role, SlotState};
pub use status::{Phase, Stats, WorkerInfo};
use timers::{TimerKey, Timers, WorkerTimer};
use upgrade::Upgrade;
use worker::{Departure, Leaving, Worker, WorkerPhase};

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
    /// Recycle successors that are ready (in probation): they serve beside the worker
    /// they replace, and alone if it dies.
    ready_recyclers: usize,
    /// Slots with young deaths since their last worker passed probation.
    failing_slots: usize,
    /// Whether `Degraded` (rather than `Recovered`, or nothing yet) was the last said.
    degraded: bool,
    /// The crash breaker's count.
    breaker: Breaker,
    /// Every per-worker deadline and per-slot respawn time, in deadline order.
    timers: Timers,
    watchdog_at: Option<Instant>,
    actions: VecDeque<Action>,
    last_status: Option<StatusLine>,
    stats: Stats,
    /// The age jitter's pseudo-random numbers, seeded from the config.
    jitter: Jitter,
    /// The upgrade of the master itself under way (or handed over), if any.
    upgrade: Option<Upgrade>,
    /// In a successor master: `Notice::Serving` went out.
    told_serving: bool,
}

impl ClusterState {
    /// A cluster with `config`, starting at `now`: the first actions spawn every slot.
    #[must_use]
    pub fn new(config: Config, now: Instant) -> Self {
        let target = config.workers();
        let watchdog_at = config.service_watchdog().map(|interval| now + interval);
        let jitter = Jitter::new(config.seed());
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
            ready_recyclers: 0,
            failing_slots: 0,
            degraded: false,
            breaker: Breaker::default(),
            timers: Timers::default(),
            watchdog_at,
            actions: VecDeque::new(),
            last_status: None,
            stats: Stats::default(),
            jitter,
            upgrade: None,
            told_serving: false,
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

    /// Workers that are ready, successors (a rollout's or a recycle's) in probation
    /// included: what serves.
    #[must_use]
    pub fn serving_workers(&self) -> usize {
        self.ready_count
            + self.ready_recyclers
            + self.lifecycle.rollout().map_or(0, |r| r.ready_successors)
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
            ready_at: w.life.ready_at(),
            last_heartbeat: w.life.last_heartbeat(),
            stop_reason: w.stop_reason(),
            restarts: if role == Role::Detached {
                0
            } else {
                self.slots[w.slot.0].restarts
            },
            successor: matches!(role, Role::Successor | Role::Recycler),
            proven: w.life.is_proven(),
            recycling: w.recycle.cause(),
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
            Input::Recycle { id, cause } => self.handle_recycle(now, id, cause),
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
            Input::Upgrade => return self.upgrade(now).map(|()| Reply::Done),
            Input::Successor(fact) => self.handle_successor(now, fact),
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
        w.life.started(now);
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
        let departure = w.life.departure(
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
        if let Some(at) = w.life.heartbeat(now, self.config.hang().timeout) {
            self.set_worker_deadline(id, Some((at, WorkerTimer::HeartbeatCheck)));
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
        let was_ready = w.life.ready_at().is_some();
        let departure = w.life.departure(
            now,
            || ReloadFailure::WorkerDied { id, status },
            |ready_for| ReloadFailure::DiedInProbation {
                id,
                status,
                ready_for,
            },
        );
        let uptime = w.life.uptime(now, w.spawned_at);
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
                if !was_ready {
                    self.stats.boot_deaths += 1;
                }
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

    /// Time passed. Call at (or after) [`poll_timeout`](Self::poll_timeout); early and
    /// spurious calls are harmless.
    fn handle_timeout(&mut self, now: Instant) {
        if !self.accept_input() {
            return;
        }
        while let Some((at, key)) = self.timers.next() {
            if at > now {
                break;
            }
            if matches!(self.breaker_at(), Some(due) if due <= at) {
                // The breaker's window ended first: it trips before, say, a refill due
                // at the same time is spawned for nothing.
                self.check_breaker(now);
                continue;
            }
            self.timers.pop_next();
            match key {
                TimerKey::Probation(id) => {
                    self.workers
                        .get_mut(&id)
                        .expect("probation of a live worker")
                        .life
                        .replace_probation(None);
                    self.prove(now, id);
                }
                TimerKey::Recycle(id) => self.recycle_timer(now, id),
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
        self.upgrade_timeout(now);
        if let Some(stopping) = self.lifecycle.stopping() {
            if stopping.force_at().is_some_and(|at| now >= at) {
                self.force(now);
            }
        }
        if let Some(at) = self.watchdog_at {
            if now >= at && !self.lifecycle.is_exited() {
                if self.is_service_healthy() && !self.is_handed_over() {
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

    /// Starts an upgrade of the master itself (see `upgrade.rs`).
    fn upgrade(&mut self, now: Instant) -> Result<(), CommandError> {
        if !self.accept_input() {
            return Err(CommandError::ShuttingDown);
        }
        let result = self.upgrade_inner(now);
        self.settle(now);
        result
    }

    /// Sets the target worker count to `workers` (1 to [`MAX_WORKERS`](crate::MAX_WORKERS)).
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
        // Coalesced: one STATUS per drain, only when the counts changed. (None once
        // handed over: the successor is the service's main process and speaks for it.)
        let status = self.status();
        if self.last_status != Some(status) && !self.is_handed_over() {
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
        let timer = self.timers.next().map(|(at, _)| at);
        let force = self.lifecycle.stopping().and_then(Shutdown::force_at);
        let upgrade = self.upgrade.and_then(Upgrade::deadline);
        [timer, force, self.watchdog_at, self.breaker_at(), upgrade]
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

    fn is_service_healthy(&self) -> bool {
        self.lifecycle.is_stopping() || !self.listening || self.serving_workers() > 0
    }

    // ----- internals: slots and workers ---------------------------------------------

    // ----- internals: shutdown ------------------------------------------------------

    // ----- internals: rolling restart -----------------------------------------------

    // ----- internals: scaling -------------------------------------------------------

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
        self.tell_serving();
        if let Some(stopping) = self.lifecycle.stopping() {
            // A successor not handed over to is waited for too: no master leaves one
            // behind.
            if self.workers.is_empty() && !self.upgrade.is_some_and(Upgrade::holds_exit) {
                let reason = match self.upgrade {
                    Some(Upgrade::HandedOver { lost: true, .. }) => ExitReason::SuccessorLost,
                    _ => stopping.exit_reason(),
                };
                self.emit(Event::ShutDown { reason });
                self.actions.push_back(Action::Exit(reason));
                self.lifecycle = Lifecycle::Exited;
                self.timers.clear();
                self.watchdog_at = None;
            }
        }
    }

    // ----- invariants ---------------------------------------------------------------
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
