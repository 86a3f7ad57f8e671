//! The checkers: an independent model of what the core's actions must look like, fed
//! every input and every action, and asked after every step whether anything broke.
//!
//! The [`Checker`] never looks inside the core to decide what is right: it rebuilds the
//! story from the action stream (which workers exist, which slot each fills, who was
//! asked to stop and why that was allowed, which backoff a slot owes) and only uses the
//! core's getters to cross-check that story. Each check has a name (the constants in
//! [`check`]) so a failure says which rule broke, and each can fire: `tests/checkers.rs`
//! feeds every one a wrong sequence.
//!
//! Driving order, per step: [`begin_step`](Checker::begin_step) with the input,
//! [`command_result`](Checker::command_result) with the core's answer,
//! [`action`](Checker::action) for every drained action, then
//! [`end_step`](Checker::end_step). Between steps, [`run_probes`](Checker::run_probes) at
//! [`next_probe`](Checker::next_probe) checks deadlines the core must have met;
//! [`check_liveness`](Checker::check_liveness) and [`finish`](Checker::finish) judge the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, CommandError, Config, Event, ExitReason, Phase, Pid, Readiness,
    ShutdownTrigger, Signal, SpawnError, SpawnErrorKind, WorkerId, WorkerState, MAX_WORKERS,
    SIGNAL_REPEAT_WINDOW,
};

use crate::input::Input;

/// The names of the checks, as they appear in a [`Violation`].
pub mod check {
    /// `ClusterState::check_invariants` failed.
    pub const CORE_INVARIANTS: &str = "core-invariants";
    /// More workers serving (not leaving) than the target plus the rollout surge.
    pub const SURGE: &str = "surge";
    /// A spawn after shutdown began.
    pub const SPAWN_AFTER_SHUTDOWN: &str = "spawn-after-shutdown";
    /// Exit must come exactly once, last, and leave the state inert.
    pub const EXIT_ONCE_LAST: &str = "exit-once-last";
    /// A shutdown must end in Exit by the force deadline plus spawn and reap latency.
    pub const EXIT_DEADLINE: &str = "exit-deadline";
    /// The exit reason must match what happened (breaker, forced, clean).
    pub const EXIT_REASON: &str = "exit-reason";
    /// A shutdown may only be forced by QUIT, a TERM/INT at least the repeat window
    /// after it began (sooner it is a repeat, ignored and reported), shutdown-now, or
    /// the force deadline.
    pub const FORCE_EARLY: &str = "force-early";
    /// Signals go only to started workers whose exit was not reported, with their pid.
    pub const SIGNAL_TARGET: &str = "signal-target";
    /// A worker is told to stop only for a reason (shutdown, scale-down, hang, boot
    /// timeout, its own STOPPING=1, an aborted rollout, or a ready successor).
    pub const STOP_JUSTIFIED: &str = "stop-justified";
    /// Stale reports are ignored and counted; an exit of a live worker is reported once.
    pub const INPUT_ACCOUNTING: &str = "input-accounting";
    /// Commands and master signals have the documented result and effect.
    pub const COMMAND_RESULT: &str = "command-result";
    /// `Listening` fires once, with the first ready worker.
    pub const LISTENING: &str = "listening";
    /// `NoWorkers` fires exactly when the live count reaches zero.
    pub const NO_WORKERS: &str = "no-workers";
    /// The core's live count matches the action stream's.
    pub const LIVE_COUNT: &str = "live-count";
    /// Backoff delays are the configured ones, respected, and not overdue.
    pub const BACKOFF: &str = "backoff";
    /// A slot is refilled at once only after a proven worker (ready for `min_uptime`)
    /// left it.
    pub const REFILL_CAUSE: &str = "refill-cause";
    /// Refills of one slot are at least `min(backoff.initial, min_uptime)` apart.
    pub const SPAWN_RATE: &str = "spawn-rate";
    /// Spawns run the serving generation; successors the rollout's.
    pub const SPAWN_GENERATION: &str = "spawn-generation";
    /// Each worker's events tell one consistent life story.
    pub const STORY: &str = "story";
    /// A ready worker silent for the hang timeout after a heartbeat is reported hung.
    pub const HANG_DETECTED: &str = "hang-detected";
    /// A booting worker is ready or timed out by its readiness deadline, not before.
    pub const BOOT_DEADLINE: &str = "boot-deadline";
    /// A worker told to stop outside shutdown is SIGKILLed by its grace deadline.
    pub const STOP_DEADLINE: &str = "stop-deadline";
    /// After `handle_timeout(now)`, the next deadline lies in the future.
    pub const TIME_ADVANCES: &str = "time-advances";
    /// A finished rollout leaves every slot with a ready worker of its generation.
    pub const RELOAD_FINISHED: &str = "reload-finished";
    /// Once the world heals, the cluster reaches its target in bounded time.
    pub const LIVENESS: &str = "liveness";
    /// A spawn failure that is the master's (`Resource`, or a `Cancelled` report) never
    /// counts toward the crash breaker: a step driven by one counts no boot failure and
    /// trips nothing, and a trip is backed, within its window, by at least as many
    /// failures of the program's own (exec/other spawn failures, deaths and announced
    /// stops before ready, boot timeouts) as it claims.
    pub const RESOURCE_NOT_COUNTED: &str = "resource-not-counted";
    /// A startup failure (shutdown and exit code 1) comes exactly when a first-generation
    /// worker's program cannot be executed while no worker has ever started.
    pub const STARTUP_FAILED: &str = "startup-failed";
    /// The breaker never stops a serving worker: it trips only while no worker is ready.
    pub const BREAKER_SPARES_SERVING: &str = "breaker-spares-serving";
    /// No rollout stops an old worker while its slot's new worker is in probation (ready
    /// for less than `min_uptime`).
    pub const PROBATION_BEFORE_STOP: &str = "probation-before-stop";
    /// The cluster never sits at zero ready workers, with enough failures of the
    /// program's own counted, past the breaker's window without shutting down.
    pub const ZERO_READY_WINDOW: &str = "zero-ready-window";
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which check (one of the [`check`] names).
    pub check: &'static str,
    /// Simulated time since the start.
    pub at: Duration,
    /// What exactly.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] at {:.3} ms: {}",
            self.check,
            self.at.as_secs_f64() * 1e3,
            self.message
        )
    }
}

impl std::error::Error for Violation {}

/// What the world guarantees, which the deadlines depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The driver reports every spawn (or its failure) within this.
    pub spawn_latency: Duration,
    /// A SIGKILLed worker's exit is reported within this.
    pub kill_latency: Duration,
}

/// The checker's record of one worker, rebuilt from actions and inputs.
#[derive(Debug, Clone, Default)]
struct Track {
    slot: usize,
    generation: u64,
    started_at: Option<Duration>,
    pid: Option<Pid>,
    /// WorkerStarted or WorkerSpawnFailed was seen.
    spawn_outcome: bool,
    ready: bool,
    /// When the core last counted a heartbeat (or readiness after one).
    last_beat: Option<Duration>,
    /// WorkerSpawnFailed, WorkerDied or WorkerExit was seen.
    departed: bool,
    /// The world reported its exit.
    exit_reported: bool,
    /// The master asked it to go: a stop signal, or a hang / boot-timeout /
    /// STOPPING=1 event.
    stop_requested: bool,
    /// Some event made stopping it legitimate.
    justified: bool,
    /// It was sent SIGKILL.
    killed: bool,
    /// When it became ready.
    ready_at: Option<Duration>,
    /// Spawned as a rollout's successor.
    successor: bool,
    /// Stopped or departed: whether it passed probation is settled.
    retired: bool,
}

/// The checker's record of one slot.
#[derive(Debug, Clone, Default)]
struct SlotTrack {
    /// A delayed respawn is owed, not before this.
    not_before: Option<Duration>,
    /// Young failures in a row, as `RespawnDelayed` must count them.
    consecutive: u32,
    /// The last non-successor spawn in this slot (since the slot was created).
    last_refill: Option<Duration>,
    /// A proven worker left this slot in this step.
    healthy_departure: bool,
    /// Some worker left this slot in this step.
    departure: bool,
    /// A worker left this slot in this step while in probation.
    probation_departure: bool,
    /// The quick-refill quota (see `clutch_proto::QUICK_REFILL_INTERVAL`).
    quick_tat: Option<Duration>,
    /// A rollout's new worker in this slot became ready at this time.
    successor_ready: Option<(WorkerId, Duration)>,
}

#[derive(Debug, Clone, Copy)]
struct RolloutTrack {
    generation: u64,
    from: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProbeKind {
    /// Worker silent since `since` (the core's last heartbeat time) must be hung now.
    Hang { since: Duration },
    /// The worker must no longer be booting.
    Boot,
    /// The worker must be killed by now.
    Stop,
    /// The zero-ready period `period` must have ended in a shutdown by now (if its
    /// failures reached the threshold).
    ZeroWindow { period: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Probe {
    at: Duration,
    seq: u64,
    id: WorkerId,
    kind: ProbeKind,
}

/// Per-step scratch, reset by `begin_step`.
#[derive(Debug, Default)]
struct Step {
    now: Duration,
    input: Option<Input>,
    ignored_before: u64,
    stale: bool,
    exit_of: Option<WorkerId>,
    departures_of_exit: u32,
    actions: u32,
    expected_result: Option<Result<(), CommandError>>,
    shutdown_before: bool,
    target_before: usize,
    expected_forward: usize,
    spawns: Vec<(WorkerId, usize)>,
    stop_signals: Vec<(WorkerId, Signal)>,
    usr_signals: Vec<(WorkerId, Signal)>,
    forwarded: Option<(Signal, usize)>,
    ready_seen: bool,
    scaled: Option<(usize, usize)>,
    reload_started: bool,
    reload_queued: bool,
    reload_finished: Option<u64>,
    reload_ended: bool,
    ignored_event: bool,
    signal_ignored: Option<Signal>,
    forced: bool,
    shutdown_started: bool,
    startup_failed: bool,
    breaker_tripped: bool,
    hung: Vec<WorkerId>,
    /// The core's boot-failure count before the step.
    boot_failures_before: u64,
    /// The input is a `Cancelled` report for a worker the core had decided to stop.
    cancel_legit: bool,
    /// The input is an exec failure that must end the cluster (a first-generation
    /// worker, no worker ever started, no shutdown yet).
    startup_failure_due: bool,
    /// Failures of this step that the breaker must count.
    must_count: u32,
}

/// The simulator's judge. See the module documentation for the driving order.
#[derive(Debug)]
pub struct Checker {
    config: Config,
    bounds: Bounds,
    base: Instant,
    workers: Vec<Track>,
    live: Vec<WorkerId>,
    slots: Vec<SlotTrack>,
    generation: u64,
    rollout: Option<RolloutTrack>,
    max_generation: u64,
    listening: Option<WorkerId>,
    shutdown_at: Option<Duration>,
    breaker: bool,
    startup_failed: bool,
    forced: bool,
    /// Some worker started (WorkerStarted was seen).
    ever_started: bool,
    /// When each failure of the program's own happened (what the breaker may count).
    program_failures: Vec<Duration>,
    /// The latest time a worker passed probation (the breaker counts only after it).
    last_proof: Option<Duration>,
    /// Since when no worker serves (not shutting down), the failures the breaker must
    /// have counted since, the first of them, and a number for the period.
    zero_since: Option<Duration>,
    zero_failures: u32,
    zero_first_failure: Option<Duration>,
    zero_period: u64,
    shut_down: Option<ExitReason>,
    exited_at: Option<Duration>,
    expect_no_workers: bool,
    step: Step,
    probes: BinaryHeap<Reverse<Probe>>,
    probe_seq: u64,
    /// Every violation seen (the first few), in order; a run reports the first.
    found: Vec<Violation>,
}

impl Checker {
    /// A checker for a cluster built from `config` at `base` (simulated time zero).
    #[must_use]
    pub fn new(config: &Config, bounds: Bounds, base: Instant) -> Self {
        Self {
            slots: vec![SlotTrack::default(); config.workers()],
            config: config.clone(),
            bounds,
            base,
            // Worker ids start at 1: index 0 is a placeholder that never exists.
            workers: vec![Track {
                departed: true,
                spawn_outcome: true,
                ..Track::default()
            }],
            live: Vec::new(),
            generation: 1,
            rollout: None,
            max_generation: 1,
            listening: None,
            shutdown_at: None,
            breaker: false,
            startup_failed: false,
            forced: false,
            ever_started: false,
            program_failures: Vec::new(),
            last_proof: None,
            zero_since: None,
            zero_failures: 0,
            zero_first_failure: None,
            zero_period: 0,
            shut_down: None,
            exited_at: None,
            expect_no_workers: false,
            step: Step::default(),
            probes: BinaryHeap::new(),
            probe_seq: 0,
            found: Vec::new(),
        }
    }

    /// The first violation seen, if any.
    #[must_use]
    pub fn violation(&self) -> Option<&Violation> {
        self.found.first()
    }

    /// Every violation seen so far (up to a few dozen), first first. A broken core
    /// usually breaks several rules in one step; tests use this to ask for one.
    #[must_use]
    pub fn violations(&self) -> &[Violation] {
        &self.found
    }

    /// When the exit is due at the latest, once a shutdown began.
    #[must_use]
    pub fn exit_deadline(&self) -> Option<Duration> {
        self.shutdown_at.map(|at| {
            at + self.config.force_exit_timeout()
                + self.bounds.spawn_latency
                + self.bounds.kill_latency
        })
    }

    /// True once a shutdown began.
    #[must_use]
    pub fn shutting_down(&self) -> bool {
        self.shutdown_at.is_some()
    }

    /// True once the Exit action was seen.
    #[must_use]
    pub fn exited(&self) -> bool {
        self.exited_at.is_some()
    }

    fn fail(&mut self, check: &'static str, message: String) {
        if self.found.len() < 32 {
            self.found.push(Violation {
                check,
                at: self.step.now,
                message,
            });
        }
    }

    fn result(&self) -> Result<(), Violation> {
        match self.found.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    fn track(&self, id: WorkerId) -> Option<&Track> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.workers.get(i))
            .filter(|_| id.0 != 0)
    }

    fn track_mut(&mut self, id: WorkerId) -> Option<&mut Track> {
        if id.0 == 0 {
            return None;
        }
        usize::try_from(id.0)
            .ok()
            .and_then(move |i| self.workers.get_mut(i))
    }

    fn is_live(&self, id: WorkerId) -> bool {
        self.track(id).is_some_and(|t| !t.departed)
    }

    fn push_probe(&mut self, at: Duration, id: WorkerId, kind: ProbeKind) {
        self.probe_seq += 1;
        self.probes.push(Reverse(Probe {
            at,
            seq: self.probe_seq,
            id,
            kind,
        }));
    }

    /// Whether the worker has been ready for `min_uptime` by now.
    fn proven(&self, t: &Track) -> bool {
        t.ready_at
            .is_some_and(|at| at + self.config.min_uptime() <= self.step.now)
    }

    /// The worker stops serving (asked to stop, or gone): if it had passed probation by
    /// now, the breaker's count restarted then.
    fn retire(&mut self, id: WorkerId) {
        let min_uptime = self.config.min_uptime();
        let now = self.step.now;
        let Some(t) = self.track_mut(id) else { return };
        if t.retired {
            return;
        }
        t.retired = true;
        let (slot, generation) = (t.slot, t.generation);
        if let Some(proof) = t.ready_at.map(|at| at + min_uptime).filter(|&p| p <= now) {
            self.last_proof = Some(self.last_proof.map_or(proof, |last| last.max(proof)));
            // A rollout's new worker that passed probation replaced its slot's old worker
            // for good, even if it goes itself now.
            let marked = self
                .slots
                .get(slot)
                .is_some_and(|s| s.successor_ready.is_some_and(|(new, _)| new == id));
            if marked {
                self.justify(|other, t| other != id && t.slot == slot && t.generation < generation);
            }
        }
    }

    /// A failure of the program's own by worker `id`: recorded as one the breaker may
    /// count, and as one it must count unless a rollout's (those fail the rollout) or,
    /// with `check_stop`, a worker already to stop (the events driven by a deadline
    /// mark their worker as stopping before they count it).
    fn program_failure(&mut self, id: WorkerId, check_stop: bool) {
        let now = self.step.now;
        self.program_failures.push(now);
        let rollout = self.rollout.map(|r| r.generation);
        if let Some(t) = self.track(id) {
            let to_stop = check_stop && (t.justified || t.stop_requested);
            if Some(t.generation) != rollout && !to_stop {
                self.step.must_count += 1;
            }
        }
    }

    fn depart(&mut self, id: WorkerId) {
        self.retire(id);
        if let Some(t) = self.track_mut(id) {
            t.departed = true;
        }
        if let Some(pos) = self.live.iter().position(|&w| w == id) {
            self.live.swap_remove(pos);
        }
        if self.live.is_empty() {
            self.expect_no_workers = true;
        }
    }

    /// Marks every live worker matching `pred` as legitimately stoppable.
    fn justify(&mut self, mut pred: impl FnMut(WorkerId, &Track) -> bool) {
        for i in 0..self.live.len() {
            let id = self.live[i];
            let index = id.0 as usize;
            if pred(id, &self.workers[index]) {
                self.workers[index].justified = true;
            }
        }
    }

    fn slot_mut(&mut self, slot: usize) -> Option<&mut SlotTrack> {
        self.slots.get_mut(slot)
    }

    // ----- steps ---------------------------------------------------------------------

    /// A step begins: `input` is about to be delivered at `now` (`None`: the cluster is
    /// being created). `cluster` is the state before the input.
    pub fn begin_step(&mut self, now: Duration, input: Option<Input>, cluster: &ClusterState) {
        let mut step = std::mem::take(&mut self.step);
        step.now = now;
        step.input = input;
        step.ignored_before = cluster.stats().ignored_inputs;
        step.stale = false;
        step.exit_of = None;
        step.departures_of_exit = 0;
        step.actions = 0;
        step.expected_result = None;
        step.shutdown_before = self.shutdown_at.is_some();
        step.target_before = self.slots.len();
        step.expected_forward = 0;
        step.spawns.clear();
        step.stop_signals.clear();
        step.usr_signals.clear();
        step.forwarded = None;
        step.ready_seen = false;
        step.scaled = None;
        step.reload_started = false;
        step.reload_queued = false;
        step.reload_finished = None;
        step.reload_ended = false;
        step.ignored_event = false;
        step.signal_ignored = None;
        step.forced = false;
        step.shutdown_started = false;
        step.startup_failed = false;
        step.breaker_tripped = false;
        step.hung.clear();
        step.boot_failures_before = cluster.stats().boot_failures;
        step.cancel_legit = false;
        step.startup_failure_due = false;
        step.must_count = 0;
        self.step = step;
        for slot in &mut self.slots {
            slot.healthy_departure = false;
            slot.departure = false;
            slot.probation_departure = false;
        }
        let Some(input) = input else { return };
        if self.exited_at.is_some() {
            // After the exit every input is ignored.
            self.step.stale = true;
            return;
        }
        if let Some(id) = input.worker() {
            if !self.is_live(id) {
                self.step.stale = true;
            } else if let Input::Exited { .. } = input {
                self.step.exit_of = Some(id);
                if let Some(t) = self.track_mut(id) {
                    t.exit_reported = true;
                }
            } else if let Input::SpawnFailed {
                error: SpawnError { kind, .. },
                ..
            } = input
            {
                let t = self.track(id).expect("live worker");
                let pending = !t.spawn_outcome;
                let first_generation = t.generation == 1;
                // Cross-checked against the core: was it already to stop?
                let leaving = cluster.worker(id).is_some_and(|w| w.stop_reason.is_some());
                self.step.cancel_legit = kind == SpawnErrorKind::Cancelled && pending && leaving;
                self.step.startup_failure_due = kind == SpawnErrorKind::Exec
                    && pending
                    && first_generation
                    && !self.ever_started
                    && self.shutdown_at.is_none();
            } else if let Input::Heartbeat { .. } = input {
                let timeout = self.config.hang().timeout;
                let t = self.track_mut(id).expect("live worker");
                if t.started_at.is_some() && !t.stop_requested {
                    t.last_beat = Some(now);
                    if let (Some(timeout), true) = (timeout, t.ready) {
                        self.push_probe(now + timeout, id, ProbeKind::Hang { since: now });
                    }
                }
            }
        }
        let in_process = self.config.is_in_process();
        let shutting_down = self.shutdown_at.is_some();
        self.step.expected_result = match input {
            Input::Reload => Some(if shutting_down {
                Err(CommandError::ShuttingDown)
            } else if in_process {
                Err(CommandError::InProcess)
            } else {
                Ok(())
            }),
            Input::Scale(n) => Some(if shutting_down {
                Err(CommandError::ShuttingDown)
            } else if in_process {
                Err(CommandError::InProcess)
            } else if n == 0 || n > MAX_WORKERS {
                Err(CommandError::BadWorkerCount(n))
            } else {
                Ok(())
            }),
            _ => None,
        };
        if let Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2)) = input {
            if !self.config.forward_signals().contains(signal) {
                return;
            }
            self.step.expected_forward = self
                .live
                .iter()
                .filter(|id| {
                    let t = &self.workers[id.0 as usize];
                    t.started_at.is_some() && !t.killed
                })
                .count();
        }
    }

    /// The core answered a command (facts always answer `Ok`).
    pub fn command_result(&mut self, result: Result<(), CommandError>) {
        if self.step.stale {
            return;
        }
        let expected = self.step.expected_result.unwrap_or(Ok(()));
        if result != expected {
            let input = self.step.input;
            self.fail(
                check::COMMAND_RESULT,
                format!("{input:?} answered {result:?}, expected {expected:?}"),
            );
        }
    }

    /// One action drained from the core.
    pub fn action(&mut self, action: &Action) {
        self.step.actions += 1;
        if self.exited_at.is_some() {
            return self.fail(
                check::EXIT_ONCE_LAST,
                format!("action after the exit: {action:?}"),
            );
        }
        if self.expect_no_workers && !matches!(action, Action::Event(Event::NoWorkers)) {
            if let Action::Spawn { .. } | Action::Exit(_) = action {
                return self.fail(
                    check::NO_WORKERS,
                    format!("the live count reached zero but {action:?} came before NoWorkers"),
                );
            }
        }
        match *action {
            Action::Spawn {
                id,
                slot,
                generation,
            } => self.on_spawn(id, slot.0, generation),
            Action::Signal { id, pid, signal } => self.on_signal(id, pid, signal),
            Action::Event(ref event) => self.on_event(event),
            Action::Notify(_) => {}
            Action::Exit(reason) => self.on_exit(reason),
        }
    }

    fn on_spawn(&mut self, id: WorkerId, slot: usize, generation: u64) {
        if self.shutdown_at.is_some() {
            return self.fail(
                check::SPAWN_AFTER_SHUTDOWN,
                format!("spawn of w{id} in slot {slot} after shutdown began"),
            );
        }
        if id.0 != self.workers.len() as u64 {
            return self.fail(
                check::STORY,
                format!(
                    "spawn of w{id}: ids must be fresh and consecutive (next is {})",
                    self.workers.len()
                ),
            );
        }
        self.workers.push(Track {
            slot,
            generation,
            ..Track::default()
        });
        self.live.push(id);
        self.expect_no_workers = false;
        self.step.spawns.push((id, slot));
    }

    fn on_signal(&mut self, id: WorkerId, pid: Pid, signal: Signal) {
        let Some(t) = self.track(id).cloned() else {
            return self.fail(
                check::SIGNAL_TARGET,
                format!("{signal} to w{id}, which was never spawned"),
            );
        };
        if t.departed || t.exit_reported {
            return self.fail(
                check::SIGNAL_TARGET,
                format!("{signal} to w{id}, whose exit was already reported"),
            );
        }
        if t.pid != Some(pid) {
            return self.fail(
                check::SIGNAL_TARGET,
                format!("{signal} to w{id} as pid {pid}, but its pid is {:?}", t.pid),
            );
        }
        match signal {
            Signal::Usr1 | Signal::Usr2 => self.step.usr_signals.push((id, signal)),
            _ => {
                if !t.stop_requested {
                    self.step.stop_signals.push((id, signal));
                }
                let t = self.track_mut(id).expect("tracked");
                t.stop_requested = true;
                t.killed |= signal == Signal::Kill;
                self.retire(id);
            }
        }
    }

    fn on_exit(&mut self, reason: ExitReason) {
        let now = self.step.now;
        self.exited_at = Some(now);
        let Some(deadline) = self.exit_deadline() else {
            return self.fail(
                check::EXIT_ONCE_LAST,
                format!("exit ({reason:?}) without a shutdown"),
            );
        };
        if now > deadline {
            return self.fail(
                check::EXIT_DEADLINE,
                format!("exit at {now:?}, the deadline was {deadline:?}"),
            );
        }
        if !self.live.is_empty() {
            return self.fail(
                check::EXIT_ONCE_LAST,
                format!("exit with {} workers still live", self.live.len()),
            );
        }
        let expected = if self.breaker {
            ExitReason::BreakerTripped
        } else if self.startup_failed {
            ExitReason::StartupFailed
        } else if self.forced {
            ExitReason::Forced
        } else {
            ExitReason::Clean
        };
        if reason != expected || self.shut_down != Some(reason) {
            self.fail(
                check::EXIT_REASON,
                format!(
                    "exit {reason:?} (ShutDown said {:?}), expected {expected:?}",
                    self.shut_down
                ),
            );
        }
    }

    fn expect_input(&mut self, event: &Event, ok: bool) {
        if !ok {
            let input = self.step.input;
            self.fail(
                check::STORY,
                format!("{event:?} in a step driven by {input:?}"),
            );
        }
    }

    #[allow(clippy::too_many_lines)]
    fn on_event(&mut self, event: &Event) {
        let now = self.step.now;
        let input = self.step.input;
        if let Some(id) = event_worker(event) {
            if !self.is_live(id) {
                return self.fail(
                    check::STORY,
                    format!("{event:?} about w{id}, which is not live"),
                );
            }
        }
        match *event {
            Event::WorkerStarted {
                id,
                slot,
                pid,
                generation,
            } => {
                self.expect_input(
                    event,
                    input == Some(Input::Spawned { id, pid }) && self.is_live(id),
                );
                self.ever_started = true;
                let t = self.track_mut(id).expect("checked live");
                let consistent = !t.spawn_outcome && t.slot == slot.0 && t.generation == generation;
                t.spawn_outcome = true;
                t.started_at = Some(now);
                t.pid = Some(pid);
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                let deadline = match self.config.readiness() {
                    Readiness::Notify => self.config.boot_timeout(),
                    Readiness::Delay(delay) => delay,
                    Readiness::Spawned => Duration::ZERO,
                };
                self.push_probe(now + deadline, id, ProbeKind::Boot);
            }
            Event::WorkerSpawnFailed {
                id,
                slot,
                ref error,
            } => {
                let reported = match input {
                    Some(Input::SpawnFailed { id: i, error }) if i == id => Some(error.kind),
                    _ => None,
                };
                self.expect_input(event, reported.is_some() && self.is_live(id));
                // A Cancelled report arrives as Resource unless the worker was leaving.
                let kind_ok = match reported {
                    Some(SpawnErrorKind::Cancelled) => {
                        error.kind == SpawnErrorKind::Resource && !self.step.cancel_legit
                    }
                    Some(kind) => error.kind == kind,
                    None => true,
                };
                let t = self.track_mut(id).expect("checked live");
                let consistent = !t.spawn_outcome && t.slot == slot.0 && kind_ok;
                t.spawn_outcome = true;
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                // An upper bound on what the breaker may count: the core skips some
                // (leaving workers, a rollout's), never adds any.
                if matches!(error.kind, SpawnErrorKind::Exec | SpawnErrorKind::Other) {
                    self.program_failure(id, true);
                }
                self.count_exit_departure(id);
                self.depart(id);
                if let Some(s) = self.slot_mut(slot.0) {
                    s.departure = true;
                }
            }
            Event::WorkerSpawnCancelled { id, slot, .. } => {
                self.expect_input(
                    event,
                    input
                        == Some(Input::SpawnFailed {
                            id,
                            error: SpawnError::new(SpawnErrorKind::Cancelled),
                        }),
                );
                let cancel_legit = self.step.cancel_legit;
                let min_uptime = self.config.min_uptime();
                let replaced = self
                    .replaced_by(id)
                    .is_some_and(|(_, ready_at)| ready_at + min_uptime <= now);
                let t = self.track_mut(id).expect("checked live");
                let consistent = !t.spawn_outcome && t.slot == slot.0;
                let justified = t.justified || replaced;
                t.spawn_outcome = true;
                if !consistent || !cancel_legit {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if !justified {
                    return self.fail(
                        check::STOP_JUSTIFIED,
                        format!("w{id}'s spawn cancelled with no reason to stop it"),
                    );
                }
                self.count_exit_departure(id);
                self.depart(id);
            }
            Event::WorkerReady { id, slot, pid } => {
                let by_delay = matches!(self.config.readiness(), Readiness::Delay(_));
                let by_spawn = self.config.readiness() == Readiness::Spawned;
                let ok = match input {
                    Some(Input::Ready { id: i }) => i == id,
                    Some(Input::Spawned { id: i, .. }) => i == id && by_spawn,
                    Some(Input::Timeout) => by_delay,
                    _ => false,
                };
                self.expect_input(event, ok && self.is_live(id));
                let beat_timeout = self.config.hang().timeout;
                let readiness = self.config.readiness();
                let t = self.track_mut(id).expect("checked live");
                let early = match (readiness, input, t.started_at) {
                    (Readiness::Delay(d), Some(Input::Timeout), Some(started)) => now < started + d,
                    _ => false,
                };
                let consistent = !t.ready
                    && t.started_at.is_some()
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid);
                t.ready = true;
                t.ready_at = Some(now);
                let generation = t.generation;
                if t.last_beat.is_some() {
                    t.last_beat = Some(now);
                    if let Some(timeout) = beat_timeout {
                        self.push_probe(now + timeout, id, ProbeKind::Hang { since: now });
                    }
                }
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if early {
                    return self.fail(
                        check::BOOT_DEADLINE,
                        format!("w{id} made ready before its readiness delay"),
                    );
                }
                self.step.ready_seen = true;
                // A ready new worker of a rollout makes stopping the worker it replaces
                // legitimate once it has passed probation (see `check_stops`).
                if self.rollout.is_some_and(|r| r.generation == generation) {
                    // The slot's previous new worker, if it passed probation, replaced
                    // the older ones for good: latch that before the mark moves on.
                    let min_uptime = self.config.min_uptime();
                    let previous = self.slots.get(slot.0).and_then(|s| s.successor_ready);
                    if let Some((old, ready_at)) = previous {
                        let o = &self.workers[old.0 as usize];
                        if ready_at + min_uptime <= now && !o.retired {
                            let old_generation = o.generation;
                            self.justify(|other, t| {
                                other != old && t.slot == slot.0 && t.generation < old_generation
                            });
                        }
                    }
                    if let Some(s) = self.slot_mut(slot.0) {
                        s.successor_ready = Some((id, now));
                    }
                }
            }
            Event::Listening { id } => {
                if self.listening.is_some() {
                    return self.fail(check::LISTENING, "Listening fired twice".to_owned());
                }
                self.listening = Some(id);
                if !self.track(id).is_some_and(|t| t.ready) {
                    self.fail(
                        check::LISTENING,
                        format!("Listening for w{id}, which is not ready"),
                    );
                }
            }
            Event::WorkerStopping { id, slot, pid } => {
                self.expect_input(event, input == Some(Input::Stopping { id }));
                let healthy = self.is_healthy(id);
                let young = !healthy;
                let t = self.track(id).expect("checked live");
                let consistent = t.started_at.is_some()
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid);
                let was_ready = t.ready;
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if young {
                    self.program_failure(id, true);
                }
                let t = self.track_mut(id).expect("checked live");
                t.stop_requested = true;
                t.justified = true;
                self.retire(id);
                self.slot_departure_of(slot.0, healthy, was_ready);
                if self.shutdown_at.is_none() {
                    let grace = self.config.force_exit_timeout();
                    self.push_probe(now + grace, id, ProbeKind::Stop);
                }
            }
            Event::WorkerBootTimedOut { id, slot, pid } => {
                self.expect_input(event, input == Some(Input::Timeout));
                let boot_timeout = self.config.boot_timeout();
                let notify = self.config.readiness() == Readiness::Notify;
                let t = self.track_mut(id).expect("checked live");
                let consistent = !t.ready
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid)
                    && notify;
                let early = !t.started_at.is_some_and(|s| now >= s + boot_timeout);
                t.stop_requested = true;
                t.justified = true;
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if early {
                    return self.fail(
                        check::BOOT_DEADLINE,
                        format!("w{id} timed out at boot before its boot timeout"),
                    );
                }
                self.program_failure(id, false);
                self.retire(id);
                self.slot_departure(slot.0, false);
            }
            Event::WorkerHung {
                id,
                slot,
                pid,
                silent_for,
            } => {
                self.expect_input(event, input == Some(Input::Timeout));
                let healthy = self.is_healthy(id);
                let hang = *self.config.hang();
                let t = self.track_mut(id).expect("checked live");
                let consistent = t.ready
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid)
                    && hang.timeout.is_some();
                let silence = t.last_beat.map(|beat| now - beat);
                t.stop_requested = true;
                t.justified = true;
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                let timeout = hang.timeout.expect("checked");
                if !healthy {
                    // Hung in probation: a failure of the program's own.
                    self.program_failure(id, false);
                }
                self.retire(id);
                if silence != Some(silent_for) || silent_for < timeout {
                    return self.fail(
                        check::HANG_DETECTED,
                        format!(
                            "w{id} reported hung after {silent_for:?} of silence; the model \
                             says {silence:?}, the timeout is {timeout:?}"
                        ),
                    );
                }
                self.step.hung.push(id);
                self.slot_departure_of(slot.0, healthy, true);
                if hang.signal.is_some() && self.shutdown_at.is_none() {
                    self.push_probe(now + hang.grace, id, ProbeKind::Stop);
                }
            }
            Event::WorkerDied {
                id,
                slot,
                pid,
                status,
                was_ready,
                uptime,
            } => {
                self.expect_input(event, input == Some(Input::Exited { id, status }));
                let healthy = self.is_healthy(id);
                let t = self.track(id).expect("checked live").clone();
                let consistent = t.started_at.is_some()
                    && t.slot == slot.0
                    && t.pid == pid
                    && t.ready == was_ready
                    && t.started_at.map(|s| now - s) == Some(uptime);
                if !consistent {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if t.stop_requested {
                    return self.fail(
                        check::STORY,
                        format!("w{id} was asked to stop, yet its exit is WorkerDied"),
                    );
                }
                if !healthy {
                    self.program_failure(id, true);
                }
                self.count_exit_departure(id);
                self.depart(id);
                self.slot_departure_of(slot.0, healthy, was_ready);
            }
            Event::WorkerExit {
                id,
                slot,
                pid,
                status,
                ..
            } => {
                self.expect_input(event, input == Some(Input::Exited { id, status }));
                let t = self.track(id).expect("checked live").clone();
                if !(t.started_at.is_some() && t.slot == slot.0 && t.pid == pid) {
                    return self.fail(check::STORY, format!("inconsistent {event:?}"));
                }
                if !t.stop_requested {
                    return self.fail(
                        check::STORY,
                        format!("WorkerExit for w{id}, which the master never asked to stop"),
                    );
                }
                self.count_exit_departure(id);
                self.depart(id);
            }
            Event::RespawnDelayed {
                slot,
                delay,
                consecutive_failures,
            } => {
                let backoff = *self.config.backoff();
                let Some(s) = self.slot_mut(slot.0) else {
                    return self.fail(check::BACKOFF, format!("{event:?} for a missing slot"));
                };
                let expected_n = s.consecutive.saturating_add(1);
                let departure = s.departure;
                // After a death in probation, a quick refill (backoff.initial) while
                // the slot's quick refills average at most one per interval.
                let quick = s.probation_departure && {
                    let interval = clutch_proto::QUICK_REFILL_INTERVAL;
                    let tolerance = interval * (clutch_proto::QUICK_REFILL_BURST - 1);
                    let tat = s.quick_tat.map_or(now, |tat| tat.max(now));
                    let quick = tat <= now + tolerance;
                    if quick {
                        s.quick_tat = Some(tat + interval);
                    }
                    quick
                };
                let expected_delay = if quick {
                    backoff.initial
                } else {
                    backoff.delay(expected_n)
                };
                s.consecutive = consecutive_failures;
                s.not_before = Some(now + delay);
                if !departure {
                    return self.fail(
                        check::BACKOFF,
                        format!("{event:?} though no worker left slot {slot} in this step"),
                    );
                }
                if consecutive_failures != expected_n || delay != expected_delay {
                    self.fail(
                        check::BACKOFF,
                        format!(
                            "{event:?}: expected failure #{expected_n} and a delay of \
                             {expected_delay:?}"
                        ),
                    );
                }
            }
            Event::NoWorkers => {
                if !self.expect_no_workers {
                    return self.fail(
                        check::NO_WORKERS,
                        format!("NoWorkers with {} workers live", self.live.len()),
                    );
                }
                self.expect_no_workers = false;
            }
            Event::ShutdownStarted { trigger } => {
                if self.shutdown_at.is_some() {
                    return self.fail(check::STORY, "a second ShutdownStarted".to_owned());
                }
                let ok = match (trigger, input) {
                    (ShutdownTrigger::Signal(s), Some(Input::Signal(i))) => s == i,
                    (ShutdownTrigger::Command, Some(Input::Shutdown | Input::ShutdownNow)) => true,
                    (ShutdownTrigger::Breaker, _) => self.step.breaker_tripped,
                    (ShutdownTrigger::StartupFailed, Some(Input::SpawnFailed { .. })) => true,
                    _ => false,
                };
                self.expect_input(event, ok);
                if trigger == ShutdownTrigger::StartupFailed {
                    self.startup_failed = true;
                    self.step.startup_failed = true;
                    if !self.step.startup_failure_due {
                        self.fail(
                            check::STARTUP_FAILED,
                            format!(
                                "a startup failure driven by {input:?} (a worker started \
                                 before: {})",
                                self.ever_started
                            ),
                        );
                    }
                }
                self.shutdown_at = Some(now);
                self.step.shutdown_started = true;
                self.rollout = None;
                for s in &mut self.slots {
                    s.not_before = None;
                }
                self.justify(|_, _| true);
            }
            Event::ShutdownForced { .. } => {
                let force_at = self
                    .shutdown_at
                    .map(|at| at + self.config.force_exit_timeout());
                let repeat_over = self
                    .shutdown_at
                    .is_some_and(|at| now >= at + SIGNAL_REPEAT_WINDOW);
                let ok = match input {
                    Some(Input::Signal(Signal::Term | Signal::Int)) => {
                        self.step.shutdown_before && repeat_over
                    }
                    Some(Input::Signal(Signal::Quit) | Input::ShutdownNow) => true,
                    Some(Input::Timeout) => force_at.is_some_and(|at| now >= at),
                    _ => false,
                };
                self.forced = true;
                self.step.forced = true;
                if !ok || force_at.is_none() {
                    self.fail(
                        check::FORCE_EARLY,
                        format!("shutdown forced at {now:?} by {input:?} (deadline {force_at:?})"),
                    );
                }
            }
            Event::ShutDown { reason } => self.shut_down = Some(reason),
            Event::BreakerTripped { failures, window } => {
                let budget = self.config.crash_budget().failures as usize;
                let threshold = budget.max(self.slots.len());
                self.breaker = true;
                self.step.breaker_tripped = true;
                let since = self.last_proof.unwrap_or_default();
                let backed = self
                    .program_failures
                    .iter()
                    .filter(|&&at| at >= since)
                    .count();
                let serving: Vec<WorkerId> = self
                    .live
                    .iter()
                    .copied()
                    .filter(|&w| {
                        let t = &self.workers[w.0 as usize];
                        t.ready && !t.stop_requested
                    })
                    .collect();
                if !serving.is_empty() {
                    self.fail(
                        check::BREAKER_SPARES_SERVING,
                        format!("the breaker tripped while {serving:?} served"),
                    );
                }
                let _ = window;
                if backed < failures {
                    self.fail(
                        check::RESOURCE_NOT_COUNTED,
                        format!(
                            "the breaker counted {failures} failures since {since:?}, only \
                             {backed} were the program's"
                        ),
                    );
                }
                if self.shutdown_at.is_some() || failures < threshold {
                    self.fail(
                        check::STORY,
                        format!(
                            "{event:?} (threshold {threshold}, shutting down: {:?})",
                            self.shutdown_at
                        ),
                    );
                }
            }
            Event::ReloadStarted { generation } => {
                // A reload command, or a queued one starting as the previous rollout ends.
                let ok = matches!(input, Some(Input::Reload | Input::Signal(Signal::Hup)))
                    || self.step.reload_ended;
                self.expect_input(event, ok);
                if self.rollout.is_some() || generation <= self.max_generation {
                    return self.fail(
                        check::STORY,
                        format!(
                            "{event:?} while {:?} (highest so far {})",
                            self.rollout, self.max_generation
                        ),
                    );
                }
                self.rollout = Some(RolloutTrack {
                    generation,
                    from: self.generation,
                });
                self.generation = generation;
                self.max_generation = generation;
                self.step.reload_started = true;
                self.step.reload_finished = None;
            }
            Event::ReloadQueued => {
                self.step.reload_queued = true;
                if self.rollout.is_none() {
                    self.fail(check::STORY, "ReloadQueued with no rollout".to_owned());
                }
            }
            Event::ReloadFinished { generation, .. } => {
                if self.rollout.map(|r| r.generation) != Some(generation) {
                    return self.fail(check::STORY, format!("{event:?} while {:?}", self.rollout));
                }
                self.rollout = None;
                self.step.reload_finished = Some(generation);
                self.step.reload_ended = true;
            }
            Event::ReloadFailed { generation, .. } => {
                let Some(rollout) = self.rollout.filter(|r| r.generation == generation) else {
                    return self.fail(check::STORY, format!("{event:?} while {:?}", self.rollout));
                };
                self.rollout = None;
                self.step.reload_ended = true;
                self.generation = rollout.from;
                // Its not-yet-ready workers, and its successors still in probation, may
                // be stopped (the aborted successors).
                let min_uptime = self.config.min_uptime();
                self.justify(|_, t| {
                    let in_probation = t.ready_at.is_some_and(|at| now < at + min_uptime);
                    t.generation == generation && (!t.ready || (t.successor && in_probation))
                });
            }
            Event::Scaled { from, to } => {
                let ok = match input {
                    Some(Input::Scale(n)) => n == to,
                    Some(Input::Signal(Signal::Ttin)) => to == from + 1,
                    Some(Input::Signal(Signal::Ttou)) => to + 1 == from,
                    _ => false,
                };
                self.expect_input(event, ok);
                if from != self.slots.len() || from == to {
                    return self.fail(
                        check::STORY,
                        format!("{event:?} with {} slots", self.slots.len()),
                    );
                }
                self.step.scaled = Some((from, to));
                self.slots.resize(to, SlotTrack::default());
                self.justify(|_, t| t.slot >= to);
            }
            Event::SignalForwarded { signal, workers } => {
                self.step.forwarded = Some((signal, workers));
            }
            Event::Ignored { .. } => self.step.ignored_event = true,
            Event::SignalIgnored { signal, .. } => {
                self.expect_input(event, input == Some(Input::Signal(signal)));
                self.step.signal_ignored = Some(signal);
            }
            _ => {}
        }
    }

    /// Passed probation (a proven worker's death is a one-off).
    fn is_healthy(&self, id: WorkerId) -> bool {
        self.track(id).is_some_and(|t| self.proven(t))
    }

    fn slot_departure(&mut self, slot: usize, healthy: bool) {
        self.slot_departure_of(slot, healthy, false);
    }

    /// A worker left `slot`: proven (`healthy`), or young, after ready (`was_ready`:
    /// in probation) or before.
    fn slot_departure_of(&mut self, slot: usize, healthy: bool, was_ready: bool) {
        if let Some(s) = self.slot_mut(slot) {
            s.departure = true;
            s.healthy_departure |= healthy;
            s.probation_departure |= was_ready && !healthy;
            if healthy {
                // The core restarted the slot's count when this worker passed probation
                // (nothing in the slot can fail while its current worker is proven).
                s.consecutive = 0;
                s.quick_tat = None;
            }
        }
    }

    fn count_exit_departure(&mut self, id: WorkerId) {
        let spawn_failed =
            matches!(self.step.input, Some(Input::SpawnFailed { id: i, .. }) if i == id);
        if self.step.exit_of == Some(id) || spawn_failed {
            self.step.departures_of_exit += 1;
        }
    }

    /// The step ended: every action was drained. Runs the step-level checks, the
    /// cross-checks against the core, and the core's own invariants.
    #[allow(clippy::too_many_lines)]
    pub fn end_step(&mut self, cluster: &ClusterState) -> Result<(), Violation> {
        let now = self.step.now;
        if self.expect_no_workers {
            self.fail(
                check::NO_WORKERS,
                "the live count reached zero without NoWorkers".to_owned(),
            );
        }
        self.check_accounting(cluster);
        self.check_effects();
        self.check_spawn_failure_kinds(cluster);
        self.check_spawns(cluster);
        self.check_stops();
        if self.step.ready_seen && self.listening.is_none() {
            self.fail(
                check::LISTENING,
                "a worker became ready but Listening did not fire".to_owned(),
            );
        }
        if let Some(generation) = self.step.reload_finished {
            let mut serving = 0;
            for w in cluster.workers().filter(|w| w.stop_reason.is_none()) {
                serving += 1;
                if w.state != WorkerState::Ready || w.generation != generation || !w.proven {
                    self.fail(
                        check::RELOAD_FINISHED,
                        format!(
                            "rollout of generation {generation} finished but w{} is {} of \
                             generation {} (proven: {})",
                            w.id, w.state, w.generation, w.proven
                        ),
                    );
                }
            }
            if serving != cluster.target() {
                self.fail(
                    check::RELOAD_FINISHED,
                    format!(
                        "rollout finished with {serving} of {} slots serving",
                        cluster.target()
                    ),
                );
            }
        }
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(at) = slot.not_before.filter(|&at| at <= now) {
                let message = format!("slot {index}'s respawn was due at {at:?}, nothing came");
                self.fail(check::BACKOFF, message);
                break;
            }
        }
        if self.live.len() != cluster.live_workers() {
            self.fail(
                check::LIVE_COUNT,
                format!(
                    "{} workers live by the action stream, {} by the core",
                    self.live.len(),
                    cluster.live_workers()
                ),
            );
        }
        // The serving count can only outgrow its bound in a step that spawned, lowered the
        // target or ended a rollout (the surge allowance): count only then.
        let step = &self.step;
        if !step.spawns.is_empty() || step.scaled.is_some() || step.reload_ended {
            self.check_surge(cluster);
        }
        if self.step.input == Some(Input::Timeout) && !self.step.stale {
            if let Some(at) = cluster.poll_timeout() {
                if at <= self.base + now {
                    self.fail(
                        check::TIME_ADVANCES,
                        format!(
                            "after handle_timeout the next deadline is {:?}",
                            at - self.base
                        ),
                    );
                }
            }
        }
        if let Some(deadline) = self.exit_deadline().filter(|&d| now > d) {
            if self.exited_at.is_none() {
                self.fail(
                    check::EXIT_DEADLINE,
                    format!(
                        "no exit by {deadline:?} (shutdown began at {:?})",
                        self.shutdown_at
                    ),
                );
            }
        }
        if cluster.is_exited() != self.exited_at.is_some() {
            self.fail(
                check::EXIT_ONCE_LAST,
                format!(
                    "the core says exited={}, the actions disagree",
                    cluster.is_exited()
                ),
            );
        } else if cluster.is_exited() && cluster.poll_timeout().is_some() {
            self.fail(
                check::EXIT_ONCE_LAST,
                "a deadline after the exit".to_owned(),
            );
        }
        self.check_zero_ready(now);
        if let Err(message) = cluster.check_invariants() {
            self.fail(check::CORE_INVARIANTS, message);
        }
        self.result()
    }

    /// Follows the periods with no worker serving and, once such a period has seen the
    /// breaker's threshold of failures it must count, and lasted its window since the
    /// first of them, requires a shutdown.
    fn check_zero_ready(&mut self, now: Duration) {
        if self.shutdown_at.is_some() || self.config.is_in_process() {
            self.zero_since = None;
            return;
        }
        let serving = self.live.iter().any(|&w| {
            let t = &self.workers[w.0 as usize];
            t.ready && !t.stop_requested
        });
        if serving {
            self.zero_since = None;
            return;
        }
        if self.zero_since.is_none() {
            self.zero_since = Some(now);
            self.zero_failures = 0;
            self.zero_first_failure = None;
            self.zero_period += 1;
        }
        if self.step.must_count > 0 {
            self.zero_failures += self.step.must_count;
            if self.zero_first_failure.is_none() {
                self.zero_first_failure = Some(now);
                let at = now + self.config.crash_budget().window;
                let period = self.zero_period;
                self.push_probe(at, WorkerId(0), ProbeKind::ZeroWindow { period });
            }
        }
        self.judge_zero_ready(now);
    }

    fn judge_zero_ready(&mut self, now: Duration) {
        let threshold = (self.config.crash_budget().failures as usize).max(self.slots.len());
        let (Some(since), Some(first)) = (self.zero_since, self.zero_first_failure) else {
            return;
        };
        let window = self.config.crash_budget().window;
        if self.shutdown_at.is_none()
            && self.zero_failures as usize >= threshold
            && now >= first + window
        {
            let message = format!(
                "no worker served since {since:?}; {} failures since {first:?} (threshold \
                 {threshold}), past the {window:?} window, and no shutdown",
                self.zero_failures
            );
            self.fail(check::ZERO_READY_WINDOW, message);
            // Once is enough for this period.
            self.zero_first_failure = None;
        }
    }

    /// At most target + the rollout batch workers serve (are not leaving).
    fn check_surge(&mut self, cluster: &ClusterState) {
        let surge = if self.rollout.is_some() {
            self.config.rollout_batch().min(self.slots.len())
        } else {
            0
        };
        let serving = cluster
            .workers()
            .filter(|w| w.stop_reason.is_none())
            .count();
        if serving > self.slots.len() + surge {
            self.fail(
                check::SURGE,
                format!(
                    "{serving} workers serving, target {} + surge {surge}",
                    self.slots.len()
                ),
            );
        }
    }

    fn check_accounting(&mut self, cluster: &ClusterState) {
        let step = &self.step;
        let ignored = cluster.stats().ignored_inputs - step.ignored_before;
        if step.stale && (ignored != 1 || step.actions != 0) {
            let message = format!(
                "{:?} about a departed, unknown or post-exit worker: {ignored} ignored, {} \
                 actions (expected 1 and 0)",
                step.input, step.actions
            );
            return self.fail(check::INPUT_ACCOUNTING, message);
        }
        if let Some(id) = step.exit_of {
            if step.departures_of_exit != 1 {
                let message = format!(
                    "the exit of live w{id} gave {} departure events",
                    step.departures_of_exit
                );
                self.fail(check::INPUT_ACCOUNTING, message);
            }
        }
    }

    /// Master signals and commands have their documented effect.
    fn check_effects(&mut self) {
        let step = &self.step;
        let Some(input) = step.input.filter(|_| !step.stale) else {
            return;
        };
        let cluster_ok = !step.shutdown_before && !self.config.is_in_process();
        let before = step.target_before;
        let ok = match input {
            Input::Signal(Signal::Hup) if cluster_ok => step.reload_started || step.reload_queued,
            Input::Signal(Signal::Ttin) if cluster_ok && before < MAX_WORKERS => {
                step.scaled == Some((before, before + 1))
            }
            Input::Signal(Signal::Ttou) if cluster_ok && before >= 2 => {
                step.scaled == Some((before, before - 1))
            }
            Input::Signal(Signal::Hup | Signal::Ttin | Signal::Ttou) => {
                step.ignored_event && step.scaled.is_none()
            }
            Input::Signal(Signal::Winch | Signal::Abrt | Signal::Kill) => step.ignored_event,
            Input::Signal(signal @ (Signal::Term | Signal::Int)) if step.shutdown_before => {
                let repeat = self
                    .shutdown_at
                    .is_some_and(|at| step.now < at + SIGNAL_REPEAT_WINDOW);
                // Within the window: a repeat, reported, forcing nothing.
                !repeat || (step.signal_ignored == Some(signal) && !step.forced)
            }
            Input::Signal(Signal::Term | Signal::Int | Signal::Quit) | Input::ShutdownNow => {
                step.shutdown_before || step.shutdown_started
            }
            Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2))
                if !self.config.forward_signals().contains(signal) =>
            {
                step.forwarded.is_none()
                    && step.usr_signals.is_empty()
                    && step.signal_ignored == Some(signal)
            }
            Input::Shutdown => {
                if step.shutdown_before {
                    step.ignored_event
                } else {
                    step.shutdown_started
                }
            }
            Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2)) => {
                let sent = step.usr_signals.iter().filter(|s| s.1 == signal).count();
                step.forwarded == Some((signal, step.expected_forward))
                    && sent == step.expected_forward
            }
            Input::Scale(n) => match step.expected_result {
                Some(Ok(())) if n != before => step.scaled == Some((before, n)),
                _ => step.scaled.is_none(),
            },
            Input::Reload => {
                step.expected_result != Some(Ok(())) || step.reload_started || step.reload_queued
            }
            _ => true,
        };
        if !ok {
            let message = format!(
                "{input} had the wrong effect: scaled {:?}, reload started {} queued {}, \
                 forwarded {:?} (expected {}), ignored {} (signal {:?}), forced {}, \
                 shutdown started {}",
                step.scaled,
                step.reload_started,
                step.reload_queued,
                step.forwarded,
                step.expected_forward,
                step.ignored_event,
                step.signal_ignored,
                step.forced,
                step.shutdown_started
            );
            self.fail(check::COMMAND_RESULT, message);
        }
    }

    /// What a spawn failure's kind allows: the master's failures count toward nothing; an
    /// exec failure before any worker started ends the cluster.
    fn check_spawn_failure_kinds(&mut self, cluster: &ClusterState) {
        let step = &self.step;
        let Some(Input::SpawnFailed {
            error: SpawnError { kind, .. },
            ..
        }) = step.input.filter(|_| !step.stale)
        else {
            return;
        };
        let counted = cluster.stats().boot_failures - step.boot_failures_before;
        let masters = matches!(kind, SpawnErrorKind::Resource | SpawnErrorKind::Cancelled);
        if masters && (counted > 0 || step.breaker_tripped) {
            let message = format!(
                "a {kind} spawn failure counted {counted} boot failures (breaker tripped: {})",
                step.breaker_tripped
            );
            return self.fail(check::RESOURCE_NOT_COUNTED, message);
        }
        if step.startup_failure_due && !step.startup_failed {
            let message = format!(
                "{:?} while no worker ever started did not end the cluster",
                step.input
            );
            self.fail(check::STARTUP_FAILED, message);
        }
    }

    /// Every spawn of the step: the right generation, and refills only when allowed.
    fn check_spawns(&mut self, cluster: &ClusterState) {
        let now = self.step.now;
        let backoff = *self.config.backoff();
        let min_gap = backoff.initial.min(self.config.min_uptime());
        for i in 0..self.step.spawns.len() {
            let (id, slot) = self.step.spawns[i];
            let generation = self.workers[id.0 as usize].generation;
            let successor = cluster.worker(id).is_some_and(|w| w.successor);
            if slot >= self.slots.len() {
                return self.fail(
                    check::STORY,
                    format!("w{id} spawned in slot {slot} of {}", self.slots.len()),
                );
            }
            if successor {
                self.workers[id.0 as usize].successor = true;
                let expected = self.rollout.map(|r| r.generation);
                if expected != Some(generation) {
                    return self.fail(
                        check::SPAWN_GENERATION,
                        format!(
                            "successor w{id} runs generation {generation}, rollout is {expected:?}"
                        ),
                    );
                }
                continue;
            }
            if generation != self.generation {
                return self.fail(
                    check::SPAWN_GENERATION,
                    format!(
                        "w{id} runs generation {generation}, the serving one is {}",
                        self.generation
                    ),
                );
            }
            let s = &mut self.slots[slot];
            let last = s.last_refill.replace(now);
            if let Some(at) = s.not_before.take() {
                if now < at {
                    let message =
                        format!("slot {slot} refilled at {now:?}, its backoff ends at {at:?}");
                    return self.fail(check::BACKOFF, message);
                }
            } else if last.is_none() {
                // The first worker of a new slot.
            } else if s.healthy_departure {
                s.consecutive = 0;
                s.quick_tat = None;
            } else {
                let message = format!(
                    "slot {slot} refilled at once (w{id}) though no healthy worker left it"
                );
                return self.fail(check::REFILL_CAUSE, message);
            }
            if let Some(last) = last.filter(|&last| now - last < min_gap) {
                let message = format!(
                    "slot {slot} refilled at {now:?}, only {:?} after {last:?}",
                    now - last
                );
                return self.fail(check::SPAWN_RATE, message);
            }
        }
    }

    /// The rollout's ready new worker in `id`'s slot (of another generation, still
    /// serving) and when it became ready: stopping `id` is legitimate once that one has
    /// passed probation.
    fn replaced_by(&self, id: WorkerId) -> Option<(WorkerId, Duration)> {
        let t = self.track(id)?;
        self.slots
            .get(t.slot)
            .and_then(|s| s.successor_ready)
            .filter(|&(new, _)| {
                let n = &self.workers[new.0 as usize];
                new != id && !n.departed && !n.stop_requested && n.generation != t.generation
            })
    }

    /// Every first stop signal of the step had a reason; stop deadlines are probed.
    fn check_stops(&mut self) {
        let now = self.step.now;
        let grace = self.config.force_exit_timeout();
        let min_uptime = self.config.min_uptime();
        for i in 0..self.step.stop_signals.len() {
            let (id, signal) = self.step.stop_signals[i];
            let replaced_by = self.replaced_by(id);
            let t = &self.workers[id.0 as usize];
            if !t.justified {
                if let Some((new, ready_at)) = replaced_by {
                    if now < ready_at + min_uptime {
                        let message = format!(
                            "{signal} to old w{id} (slot {}) while its new worker w{new} is in \
                             probation (ready at {ready_at:?}, for {:?} of {min_uptime:?})",
                            t.slot,
                            now - ready_at
                        );
                        return self.fail(check::PROBATION_BEFORE_STOP, message);
                    }
                    continue;
                }
                let message = format!(
                    "{signal} to w{id} (slot {}, generation {}) with no reason to stop it",
                    t.slot, t.generation
                );
                return self.fail(check::STOP_JUSTIFIED, message);
            }
            let hung = self.step.hung.contains(&id);
            if self.shutdown_at.is_none() && signal == Signal::Term && !hung {
                self.push_probe(now + grace, id, ProbeKind::Stop);
            }
        }
        for i in 0..self.step.usr_signals.len() {
            let (id, signal) = self.step.usr_signals[i];
            let forwarded = self.step.forwarded.is_some_and(|f| f.0 == signal);
            if !forwarded && !self.step.hung.contains(&id) {
                return self.fail(
                    check::STOP_JUSTIFIED,
                    format!("{signal} to w{id}, neither forwarded nor a hang diagnosis"),
                );
            }
        }
    }

    // ----- probes and the end --------------------------------------------------------

    /// When the next deadline probe is due.
    #[must_use]
    pub fn next_probe(&self) -> Option<Duration> {
        self.probes.peek().map(|p| p.0.at)
    }

    /// Runs every probe due at `now` against the core's state (call after the core's
    /// own timeout at `now` was handled).
    pub fn run_probes(&mut self, now: Duration, cluster: &ClusterState) -> Result<(), Violation> {
        self.step.now = now;
        while let Some(&Reverse(probe)) = self.probes.peek() {
            if probe.at > now {
                break;
            }
            self.probes.pop();
            if let ProbeKind::ZeroWindow { period } = probe.kind {
                if period == self.zero_period && self.zero_since.is_some() {
                    self.judge_zero_ready(now);
                }
                continue;
            }
            let Some(w) = cluster.worker(probe.id) else {
                continue;
            };
            let id = probe.id;
            match probe.kind {
                ProbeKind::Hang { since } => {
                    let still = w.state == WorkerState::Ready
                        && w.stop_reason.is_none()
                        && w.last_heartbeat == Some(self.base + since);
                    if still {
                        self.fail(
                            check::HANG_DETECTED,
                            format!(
                                "w{id} silent since {since:?}, past the hang timeout, not hung"
                            ),
                        );
                    }
                }
                ProbeKind::Boot => {
                    if w.state == WorkerState::Booting && w.stop_reason.is_none() {
                        self.fail(
                            check::BOOT_DEADLINE,
                            format!("w{id} still booting past its readiness deadline"),
                        );
                    }
                }
                ProbeKind::ZeroWindow { .. } => {}
                ProbeKind::Stop => {
                    if w.state != WorkerState::Killed {
                        self.fail(
                            check::STOP_DEADLINE,
                            format!("w{id} asked to stop is {} past its grace", w.state),
                        );
                    }
                }
            }
        }
        self.result()
    }

    /// The world has been healthy long enough: a cluster that is not shutting down must
    /// serve its target with ready workers, and no rollout may be stuck.
    pub fn check_liveness(
        &mut self,
        now: Duration,
        cluster: &ClusterState,
    ) -> Result<(), Violation> {
        self.step.now = now;
        if self.shutdown_at.is_some() || self.config.is_in_process() {
            return self.result();
        }
        if cluster.ready_workers() != cluster.target() || cluster.phase() != Phase::Running {
            self.fail(
                check::LIVENESS,
                format!(
                    "healthy world, yet {} of {} ready in phase {}",
                    cluster.ready_workers(),
                    cluster.target(),
                    cluster.phase()
                ),
            );
        }
        self.result()
    }

    /// The run is over at `now`: a begun shutdown must have exited, and an exited
    /// cluster's workers must all have complete stories.
    pub fn finish(&mut self, now: Duration) -> Result<(), Violation> {
        self.step.now = now;
        if self.shutdown_at.is_some() && self.exited_at.is_none() {
            let message = format!(
                "shutdown began at {:?} and never exited (deadline {:?})",
                self.shutdown_at,
                self.exit_deadline()
            );
            self.fail(check::EXIT_DEADLINE, message);
        }
        if self.exited_at.is_some() {
            if let Some(index) = self
                .workers
                .iter()
                .position(|t| !t.departed || !t.spawn_outcome)
            {
                self.fail(
                    check::STORY,
                    format!("exited, yet w{index}'s story is incomplete"),
                );
            }
        }
        self.result()
    }
}

/// The worker a per-worker event is about.
fn event_worker(event: &Event) -> Option<WorkerId> {
    match *event {
        Event::WorkerStarted { id, .. }
        | Event::WorkerSpawnFailed { id, .. }
        | Event::WorkerReady { id, .. }
        | Event::WorkerStopping { id, .. }
        | Event::WorkerBootTimedOut { id, .. }
        | Event::WorkerHung { id, .. }
        | Event::WorkerDied { id, .. }
        | Event::WorkerExit { id, .. } => Some(id),
        _ => None,
    }
}
