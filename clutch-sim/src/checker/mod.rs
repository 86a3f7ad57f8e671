//! The checkers: an independent model of what the core's actions must look like, fed
//! every input and every action, and a set of judges, one per concern, asked after every
//! step whether anything broke (TigerBeetle keeps one checker per fault domain, each
//! small enough to read in one sitting; so does this).
//!
//! No checker looks inside the core to decide what is right: the shared `Model`
//! (`model.rs`) rebuilds the story from the action stream (which workers exist, which
//! slot each fills, who was asked to stop and why that was allowed), and each checker
//! judges its own rules against that story, using the core's getters only to cross-check
//! it. Each rule has a name (the constants in [`check`]), each name belongs to exactly
//! one checker, and each can fire: every checker's unit tests feed it a violating trace,
//! and `tests/checkers.rs` plays a deliberately broken core against the whole set.
//!
//! | checker | owns |
//! |---|---|
//! | `shutdown.rs` | no spawn once shutting down; one exit, last, in time, for the right reason; forcing only when allowed |
//! | `contract.rs` | the core's own counts agree with the stream: ignored inputs, departures, live count, `NoWorkers`, time advancing, `check_invariants` |
//! | `story.rs` | every event is driven by the right input and agrees with the worker's story so far |
//! | `commands.rs` | commands and master signals answer and act as documented |
//! | `stops.rs` | signals go to the right process, every stop has a reason, stops end in a kill by their grace |
//! | `readiness.rs` | boots end by their readiness deadline (not before); `Listening` once |
//! | `hang.rs` | a silent ready worker is reported hung at its timeout, with the right silence |
//! | `respawn.rs` | backoff delays, immediate refills only after a proven worker, refill rate |
//! | `rollout.rs` | spawn generations, a finished rollout's result, probation before an old worker stops |
//! | `slots.rs` | serving workers within target plus surge; a healed world reaches its target |
//! | `breaker.rs` | what the crash breaker may count and when it must (and must not) trip; startup failures |
//! | `recycle.rs` | a recycled worker goes only once its successor is proven; age recycles within age + jitter |
//! | `upgrade.rs` | the upgrade of the master: the old generation serves until the successor is ready; one master when it ends; one successor at a time |
//!
//! Driving order, per step: [`begin_step`](Checker::begin_step) with the input,
//! [`command_result`](Checker::command_result) with the core's answer,
//! [`action`](Checker::action) for every drained action, then
//! [`end_step`](Checker::end_step). Between steps, [`run_probes`](Checker::run_probes) at
//! [`next_probe`](Checker::next_probe) checks deadlines the core must have met;
//! [`check_liveness`](Checker::check_liveness) and [`finish`](Checker::finish) judge the end.
//! Each action is judged by every checker against the model as it was before the
//! action, then recorded in the model — also when a checker found it wrong, so that one
//! broken rule is reported once rather than as a cascade of follow-on violations.
//!
//! A new checker is a module with a type implementing `Concern`, a field of
//! `Checkers`, and its name in `on_every_checker!` and `Checkers::all`; its rules go in
//! [`check`] and in its `checks()`. A checker left out of the macro would never run:
//! `tests/checkers.rs`, which makes every rule fire through [`Checker`], catches that.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use clutch_proto::{Action, ClusterState, CommandError, Config, Event, WorkerId};

// The one import of the input vocabulary: the checkers take it from here.
use crate::input::Input;

mod breaker;
mod commands;
mod contract;
mod hang;
mod model;
mod readiness;
mod recycle;
mod respawn;
mod rollout;
mod shutdown;
mod slots;
mod stops;
mod story;
mod upgrade;

use model::Model;

/// The names of the checks, as they appear in a [`Violation`], grouped by the checker
/// that owns them.
pub mod check {
    // shutdown.rs
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

    // contract.rs
    /// `ClusterState::check_invariants` failed.
    pub const CORE_INVARIANTS: &str = "core-invariants";
    /// Stale reports are ignored and counted; an exit of a live worker is reported once.
    pub const INPUT_ACCOUNTING: &str = "input-accounting";
    /// `NoWorkers` fires exactly when the live count reaches zero.
    pub const NO_WORKERS: &str = "no-workers";
    /// The core's live count matches the action stream's.
    pub const LIVE_COUNT: &str = "live-count";
    /// After `handle_timeout(now)`, the next deadline lies in the future.
    pub const TIME_ADVANCES: &str = "time-advances";

    // story.rs
    /// Each worker's events tell one consistent life story.
    pub const STORY: &str = "story";

    // commands.rs
    /// Commands and master signals have the documented result and effect.
    pub const COMMAND_RESULT: &str = "command-result";

    // stops.rs
    /// Signals go only to started workers whose exit was not reported, with their pid.
    pub const SIGNAL_TARGET: &str = "signal-target";
    /// A worker is told to stop only for a reason (shutdown, scale-down, hang, boot
    /// timeout, its own STOPPING=1, an aborted rollout, or a ready successor).
    pub const STOP_JUSTIFIED: &str = "stop-justified";
    /// A worker told to stop outside shutdown is SIGKILLed by its grace deadline.
    pub const STOP_DEADLINE: &str = "stop-deadline";

    // readiness.rs
    /// A booting worker is ready or timed out by its readiness deadline, not before.
    pub const BOOT_DEADLINE: &str = "boot-deadline";
    /// `Listening` fires once, with the first ready worker.
    pub const LISTENING: &str = "listening";

    // hang.rs
    /// A ready worker silent for the hang timeout after a heartbeat is reported hung.
    pub const HANG_DETECTED: &str = "hang-detected";

    // respawn.rs
    /// Backoff delays are the configured ones, respected, and not overdue.
    pub const BACKOFF: &str = "backoff";
    /// A slot is refilled at once only after a proven worker (ready for `min_uptime`)
    /// left it.
    pub const REFILL_CAUSE: &str = "refill-cause";
    /// Refills of one slot are at least `min(backoff.initial, min_uptime)` apart.
    pub const SPAWN_RATE: &str = "spawn-rate";

    // rollout.rs
    /// Spawns run the serving generation; successors the rollout's.
    pub const SPAWN_GENERATION: &str = "spawn-generation";
    /// A finished rollout leaves every slot with a ready worker of its generation.
    pub const RELOAD_FINISHED: &str = "reload-finished";
    /// No rollout stops an old worker while its slot's new worker is in probation (ready
    /// for less than `min_uptime`).
    pub const PROBATION_BEFORE_STOP: &str = "probation-before-stop";

    // slots.rs
    /// More workers serving (not leaving) than the target plus the rollout surge.
    pub const SURGE: &str = "surge";
    /// Once the world heals, the cluster reaches its target in bounded time.
    pub const LIVENESS: &str = "liveness";

    // breaker.rs
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
    /// The cluster never sits at zero ready workers, with enough failures of the
    /// program's own counted, past the breaker's window without shutting down.
    pub const ZERO_READY_WINDOW: &str = "zero-ready-window";

    // recycle.rs
    /// A worker stopped for its recycle is stopped only while a successor in its slot
    /// has passed probation and serves: a slot never has fewer ready workers because of
    /// a recycle.
    pub const RECYCLE_BEFORE_STOP: &str = "recycle-before-stop";
    /// An age recycle begins no sooner than `max_worker_age` after the worker started
    /// and, for a worker that served its slot from its readiness, no later than
    /// `max_worker_age + max_worker_age_jitter`.
    pub const RECYCLE_AGE: &str = "recycle-age";
    // upgrade.rs
    /// The old generation serves until the successor's workers are ready: the handover
    /// (and the old workers' stop) comes only with the running successor's `READY=1`,
    /// during an upgrade and outside a shutdown.
    pub const SERVES_UNTIL_SUCCESSOR_READY: &str = "serves-until-successor-ready";
    /// Exactly one master owns the sockets when this one ends: an `Upgraded` exit leaves
    /// the successor running, any other none (not even one being started).
    pub const ONE_MASTER: &str = "one-master";
    /// One successor at a time, none once shutting down, signalled only by its pid and
    /// never after the handover.
    pub const ONE_SUCCESSOR: &str = "one-successor";
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which check (one of the [`check`] names).
    pub check: &'static str,
    /// Which checker found it (the module that owns the check), or the part of the
    /// simulator that did (`loop`, `campaign`).
    pub checker: &'static str,
    /// Simulated time since the start.
    pub at: Duration,
    /// What exactly.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] at {:.3} ms: {} (checker: {})",
            self.check,
            self.at.as_secs_f64() * 1e3,
            self.message,
            self.checker
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

/// Where a checker reports what it found: the violations of the run so far (the first
/// few dozen), each stamped with the checker's name and the model's time.
pub(crate) struct Findings<'a> {
    checker: &'static str,
    owns: &'static [&'static str],
    at: Duration,
    found: &'a mut Vec<Violation>,
}

impl Findings<'_> {
    /// Reports that rule `check` (one the checker owns) broke.
    pub(crate) fn fail(&mut self, check: &'static str, message: String) {
        debug_assert!(
            self.owns.contains(&check),
            "{} reported [{check}], which it does not own",
            self.checker
        );
        if self.found.len() < 32 {
            self.found.push(Violation {
                check,
                checker: self.checker,
                at: self.at,
                message,
            });
        }
    }
}

/// One concern's judge. Every hook sees the shared model; the ones about an action see
/// it as it was before the action. A checker keeps only the state its own rules need.
pub(crate) trait Concern: fmt::Debug {
    /// The checker's name, as failure messages show it.
    fn name(&self) -> &'static str;

    /// The checks it owns (names from [`check`]).
    fn checks(&self) -> &'static [&'static str];

    /// A step began: the model has recorded its input (`model.step.input`).
    fn on_input(&mut self, _model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {}

    /// The core answered the step's input (facts always answer `Ok`).
    fn on_result(
        &mut self,
        _model: &Model,
        _result: Result<(), CommandError>,
        _out: &mut Findings<'_>,
    ) {
    }

    /// One drained action, against the model before it.
    fn on_action(&mut self, _model: &Model, _action: &Action, _out: &mut Findings<'_>) {}

    /// Every action of the step was drained (and recorded in the model).
    fn on_step_end(&mut self, _model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {}

    /// When this checker's next deadline probe is due.
    fn next_probe(&self) -> Option<Duration> {
        None
    }

    /// Runs the probes due by the model's time against the core's state.
    fn on_probes(&mut self, _model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {}

    /// The world has been healthy long enough for the cluster to reach its target.
    fn on_liveness(&mut self, _model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {}

    /// The run is over.
    fn on_end(&mut self, _model: &Model, _out: &mut Findings<'_>) {}
}

/// Calls `$method` on every checker of `$checkers` (a [`Checkers`]), in the order of
/// [`Checkers::all`], each with the model, `$args` and its own findings sink. A macro,
/// so that every call is a direct one on a concrete type: the checkers see every
/// action of every seed, and the simulator's speed is the size of its campaigns.
macro_rules! on_every_checker {
    ($checkers:expr, $method:ident $args:tt) => {{
        let checkers = $checkers;
        on_every_checker!(
            @each checkers, $method $args;
            shutdown contract story commands stops readiness hang respawn rollout slots breaker
            recycle
            upgrade
        )
    }};
    (@each $checkers:ident, $method:ident $args:tt; $($field:ident)*) => {{
        let at = $checkers.model.now();
        $(on_every_checker!(@one $checkers, at, $field, $method $args);)*
    }};
    (@one $checkers:ident, $at:ident, $field:ident, $method:ident ($($arg:expr),*)) => {{
        let concern = &mut $checkers.$field;
        let mut out = Findings {
            checker: concern.name(),
            owns: concern.checks(),
            at: $at,
            found: &mut $checkers.found,
        };
        concern.$method(&$checkers.model, $($arg,)* &mut out);
    }};
}

/// Every checker, and the model they share.
#[derive(Debug)]
struct Checkers {
    model: Model,
    shutdown: shutdown::ShutdownChecker,
    contract: contract::ContractChecker,
    story: story::StoryChecker,
    commands: commands::CommandChecker,
    stops: stops::StopChecker,
    readiness: readiness::ReadinessChecker,
    hang: hang::HangChecker,
    respawn: respawn::RespawnChecker,
    rollout: rollout::RolloutChecker,
    slots: slots::SlotsChecker,
    breaker: breaker::BreakerChecker,
    recycle: recycle::RecycleChecker,
    upgrade: upgrade::UpgradeChecker,
    /// Every violation seen (the first few dozen), in order; a run reports the first.
    found: Vec<Violation>,
}

impl Checkers {
    fn new(config: &Config, bounds: Bounds, base: Instant) -> Self {
        Self {
            model: Model::new(config, bounds, base),
            shutdown: shutdown::ShutdownChecker::default(),
            contract: contract::ContractChecker::default(),
            story: story::StoryChecker,
            commands: commands::CommandChecker::default(),
            stops: stops::StopChecker::default(),
            readiness: readiness::ReadinessChecker::default(),
            hang: hang::HangChecker::default(),
            respawn: respawn::RespawnChecker::new(config),
            rollout: rollout::RolloutChecker,
            slots: slots::SlotsChecker,
            breaker: breaker::BreakerChecker::default(),
            recycle: recycle::RecycleChecker::default(),
            upgrade: upgrade::UpgradeChecker,
            found: Vec::new(),
        }
    }

    /// Every checker, in the order they judge.
    #[cfg(test)]
    fn all(&self) -> [&dyn Concern; 13] {
        [
            &self.shutdown,
            &self.contract,
            &self.story,
            &self.commands,
            &self.stops,
            &self.readiness,
            &self.hang,
            &self.respawn,
            &self.rollout,
            &self.slots,
            &self.breaker,
            &self.recycle,
            &self.upgrade,
        ]
    }

    /// The earliest probe any checker has set (every checker is asked: the ones without
    /// probes answer `None` at no cost).
    fn next_probe(&self) -> Option<Duration> {
        [
            self.shutdown.next_probe(),
            self.contract.next_probe(),
            self.story.next_probe(),
            self.commands.next_probe(),
            self.stops.next_probe(),
            self.readiness.next_probe(),
            self.hang.next_probe(),
            self.respawn.next_probe(),
            self.rollout.next_probe(),
            self.slots.next_probe(),
            self.breaker.next_probe(),
            self.recycle.next_probe(),
            self.upgrade.next_probe(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn result(&self) -> Result<(), Violation> {
        match self.found.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }
}

/// The simulator's judge: the shared model and every checker. See the module
/// documentation for the driving order.
#[derive(Debug)]
pub struct Checker {
    inner: Checkers,
}

impl Checker {
    /// A checker for a cluster built from `config` at `base` (simulated time zero).
    #[must_use]
    pub fn new(config: &Config, bounds: Bounds, base: Instant) -> Self {
        Self {
            inner: Checkers::new(config, bounds, base),
        }
    }

    /// The first violation seen, if any.
    #[must_use]
    pub fn violation(&self) -> Option<&Violation> {
        self.inner.found.first()
    }

    /// Every violation seen so far (up to a few dozen), first first. A broken core
    /// usually breaks several rules in one step; tests use this to ask for one.
    #[must_use]
    pub fn violations(&self) -> &[Violation] {
        &self.inner.found
    }

    /// When the exit is due at the latest, once a shutdown began.
    #[must_use]
    pub fn exit_deadline(&self) -> Option<Duration> {
        self.inner.model.exit_deadline()
    }

    /// True once a shutdown began.
    #[must_use]
    pub fn shutting_down(&self) -> bool {
        self.inner.model.shutdown_at.is_some()
    }

    /// True once the Exit action was seen.
    #[must_use]
    pub fn exited(&self) -> bool {
        self.inner.model.exited_at.is_some()
    }

    /// A step begins: `input` is about to be delivered at `now` (`None`: the cluster is
    /// being created). `cluster` is the state before the input.
    pub fn begin_step(&mut self, now: Duration, input: Option<Input>, cluster: &ClusterState) {
        self.inner.model.begin_step(now, input, cluster);
        on_every_checker!(&mut self.inner, on_input(cluster));
    }

    /// The core answered a command (facts always answer `Ok`).
    pub fn command_result(&mut self, result: Result<(), CommandError>) {
        on_every_checker!(&mut self.inner, on_result(result));
    }

    /// One action drained from the core.
    pub fn action(&mut self, action: &Action) {
        on_every_checker!(&mut self.inner, on_action(action));
        self.inner.model.apply(action);
    }

    /// The step ended: every action was drained. Runs the step-level checks, the
    /// cross-checks against the core, and the core's own invariants.
    ///
    /// # Errors
    ///
    /// The run's first violation, if there is one by now.
    pub fn end_step(&mut self, cluster: &ClusterState) -> Result<(), Violation> {
        self.inner.model.end_step(cluster);
        on_every_checker!(&mut self.inner, on_step_end(cluster));
        self.inner.result()
    }

    /// When the next deadline probe is due.
    #[must_use]
    pub fn next_probe(&self) -> Option<Duration> {
        self.inner.next_probe()
    }

    /// Runs every probe due at `now` against the core's state (call after the core's
    /// own timeout at `now` was handled).
    ///
    /// # Errors
    ///
    /// The run's first violation, if there is one by now.
    pub fn run_probes(&mut self, now: Duration, cluster: &ClusterState) -> Result<(), Violation> {
        self.inner.model.set_now(now);
        on_every_checker!(&mut self.inner, on_probes(cluster));
        self.inner.result()
    }

    /// The world has been healthy long enough: a cluster that is not shutting down must
    /// serve its target with ready workers, and no rollout may be stuck.
    ///
    /// # Errors
    ///
    /// The run's first violation, if there is one by now.
    pub fn check_liveness(
        &mut self,
        now: Duration,
        cluster: &ClusterState,
    ) -> Result<(), Violation> {
        self.inner.model.set_now(now);
        on_every_checker!(&mut self.inner, on_liveness(cluster));
        self.inner.result()
    }

    /// The run is over at `now`: a begun shutdown must have exited, and an exited
    /// cluster's workers must all have complete stories.
    ///
    /// # Errors
    ///
    /// The run's first violation, if there is one by now.
    pub fn finish(&mut self, now: Duration) -> Result<(), Violation> {
        self.inner.model.set_now(now);
        on_every_checker!(&mut self.inner, on_end());
        self.inner.result()
    }
}

/// The event an action carries, if it carries one.
pub(crate) fn event_of(action: &Action) -> Option<&Event> {
    match action {
        Action::Event(event) => Some(event),
        _ => None,
    }
}

/// The worker a per-worker event is about.
pub(crate) fn event_worker(event: &Event) -> Option<WorkerId> {
    match *event {
        Event::WorkerStarted { id, .. }
        | Event::WorkerSpawnFailed { id, .. }
        | Event::WorkerReady { id, .. }
        | Event::WorkerStopping { id, .. }
        | Event::WorkerBootTimedOut { id, .. }
        | Event::WorkerHung { id, .. }
        | Event::WorkerDied { id, .. }
        | Event::WorkerRecycling { id, .. }
        | Event::WorkerExit { id, .. } => Some(id),
        _ => None,
    }
}

/// A checker's deadline probes: what must hold at a point in time, in time order (ties
/// in the order they were set).
#[derive(Debug)]
pub(crate) struct Probes<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Duration, u64, K)>>,
    seq: u64,
}

impl<K: Ord + Copy> Default for Probes<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Copy> Probes<K> {
    /// `what` must hold at `at`.
    pub(crate) fn push(&mut self, at: Duration, what: K) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, what)));
    }

    /// When the next probe is due.
    pub(crate) fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|p| p.0 .0)
    }

    /// The next probe due by `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<K> {
        if self.next_at()? > now {
            return None;
        }
        self.heap.pop().map(|p| p.0 .2)
    }
}

#[cfg(test)]
pub(crate) mod harness;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::check::*;
    use super::harness::config;

    const ALL: [&str; 35] = [
        SPAWN_AFTER_SHUTDOWN,
        EXIT_ONCE_LAST,
        EXIT_DEADLINE,
        EXIT_REASON,
        FORCE_EARLY,
        CORE_INVARIANTS,
        INPUT_ACCOUNTING,
        NO_WORKERS,
        LIVE_COUNT,
        TIME_ADVANCES,
        STORY,
        COMMAND_RESULT,
        SIGNAL_TARGET,
        STOP_JUSTIFIED,
        STOP_DEADLINE,
        BOOT_DEADLINE,
        LISTENING,
        HANG_DETECTED,
        BACKOFF,
        REFILL_CAUSE,
        SPAWN_RATE,
        SPAWN_GENERATION,
        RELOAD_FINISHED,
        PROBATION_BEFORE_STOP,
        SURGE,
        LIVENESS,
        RESOURCE_NOT_COUNTED,
        STARTUP_FAILED,
        BREAKER_SPARES_SERVING,
        ZERO_READY_WINDOW,
        RECYCLE_BEFORE_STOP,
        RECYCLE_AGE,
        SERVES_UNTIL_SUCCESSOR_READY,
        ONE_MASTER,
        ONE_SUCCESSOR,
    ];

    #[test]
    fn every_check_belongs_to_exactly_one_checker() {
        let bounds = super::Bounds {
            spawn_latency: super::harness::MS,
            kill_latency: super::harness::MS,
        };
        let config = config(1).build().unwrap();
        let checkers = super::Checkers::new(&config, bounds, std::time::Instant::now());
        let mut owned = Vec::new();
        let mut names = HashSet::new();
        for checker in checkers.all() {
            assert!(
                names.insert(checker.name()),
                "two checkers named {}",
                checker.name()
            );
            owned.extend_from_slice(checker.checks());
        }
        let unique: HashSet<&str> = owned.iter().copied().collect();
        assert_eq!(unique.len(), owned.len(), "a check owned twice: {owned:?}");
        assert_eq!(unique, ALL.into_iter().collect(), "every check, no other");
    }
}
