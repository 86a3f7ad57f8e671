//! The loop: the driver of the core. It delivers one input at a time to the real
//! [`ClusterState`], drains every action (the driving contract), hands each to the
//! checkers, the fingerprint, the trace and the world, and decides what comes next.
//!
//! Simulated time is an offset from one `Instant` captured when the run starts: the core
//! only compares and adds instants, so everything it says is deterministic in offsets.
//! Time never ticks: it jumps to whichever comes first of the core's
//! [`poll_timeout`](ClusterState::poll_timeout), the checker's next deadline probe, and
//! the next world event (ties: core, then probes, then events in insertion order).
//!
//! The rooms around it: `process.rs`, the fake worker processes; `faults.rs`, the fault
//! scheduler and the world's agenda; `coverage.rs`, what a run exercised.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use clutch_proto::{Action, ClusterState, ExitReason};

use crate::checker::{Bounds, Checker, Violation};
// The one import of the input vocabulary: the loop's rooms take it from here.
use crate::input::Input;
use crate::rng::{Entropy, Rng};
use crate::trace::{millis, Fingerprint};
use crate::world::World;

mod coverage;
mod faults;
mod process;
mod successor;

pub use coverage::Coverage;
use faults::{Agenda, Happening};
use process::Processes;
use successor::Successor;

/// Hard bound on inputs per run: a run that needs more is itself a failure.
pub const MAX_STEPS: u64 = 20_000_000;
/// Hard bound on the actions one input may cause.
pub const MAX_ACTIONS_PER_STEP: u64 = 1_000_000;

/// Name of the check that fails a run exceeding [`MAX_STEPS`] or
/// [`MAX_ACTIONS_PER_STEP`].
pub const BOUNDED_RUN: &str = "bounded-run";

/// What happened in a run that passed every check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Inputs delivered to the core plus actions drained from it.
    pub events: u64,
    /// Inputs delivered.
    pub steps: u64,
    /// Simulated time at the end.
    pub simulated: Duration,
    /// How the master exited, if it did.
    pub exit: Option<ExitReason>,
    /// The run's fingerprint: equal runs have equal fingerprints.
    pub fingerprint: u64,
    /// What the run exercised.
    pub coverage: Coverage,
}

/// One simulated world around one `ClusterState`.
pub struct Sim<'t, E: Entropy> {
    rng: Rng<E>,
    world: World,
    base: Instant,
    now: Duration,
    cluster: ClusterState,
    checker: Checker,
    agenda: Agenda,
    procs: Processes,
    /// The successor master of the upgrade under way, if one runs or is being started.
    successor: Option<Successor>,
    /// Successors spawned so far.
    successors: u32,
    fingerprint: Fingerprint,
    coverage: Coverage,
    events: u64,
    steps: u64,
    end_extended: bool,
    /// The input of the step under way.
    input: Option<Input>,
    exit: Option<ExitReason>,
    trace: Option<&'t mut dyn Write>,
}

impl<E: Entropy> fmt::Debug for Sim<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl<'t, E: Entropy> Sim<'t, E> {
    /// A world drawn from `rng`; `trace` gets one line per input and action.
    pub fn new(mut rng: Rng<E>, trace: Option<&'t mut dyn Write>) -> Self {
        let world = World::generate(&mut rng);
        // The one clock read of the simulator: a base for synthetic time.
        let base = Instant::now();
        let bounds = Bounds {
            spawn_latency: world.faults.spawn_latency,
            kill_latency: world.faults.kill_latency,
        };
        let checker = Checker::new(&world.config, bounds, base);
        let cluster = ClusterState::new(world.config.clone(), base);
        Self {
            rng,
            base,
            now: Duration::ZERO,
            cluster,
            checker,
            agenda: Agenda::default(),
            procs: Processes::new(world.faults.pid_reuse),
            successor: None,
            successors: 0,
            fingerprint: Fingerprint::default(),
            coverage: Coverage::default(),
            events: 0,
            steps: 0,
            end_extended: false,
            input: None,
            exit: None,
            trace,
            world,
        }
    }

    /// The world this run simulates.
    #[must_use]
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Runs the world to its end, checking after every step.
    pub fn run(mut self) -> Result<Outcome, Violation> {
        if let Some(out) = self.trace.as_mut() {
            let _ = writeln!(out, "{}", self.world);
        }
        self.checker.begin_step(Duration::ZERO, None, &self.cluster);
        self.drain()?;
        self.checker.end_step(&self.cluster)?;
        self.schedule_plan();
        loop {
            if self.steps > MAX_STEPS {
                return Err(self.bounded_run(format!("more than {MAX_STEPS} inputs")));
            }
            let core = self
                .cluster
                .poll_timeout()
                .map(|at| at.saturating_duration_since(self.base));
            let probe = self.checker.next_probe();
            let event = self.agenda.next_at();
            let first = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
                (Some(a), Some(b)) => a <= b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if first(core, probe) && first(core, event) {
                self.now = self.now.max(core.expect("chosen"));
                self.step(Input::Timeout)?;
            } else if first(probe, event) {
                self.now = self.now.max(probe.expect("chosen"));
                self.checker.run_probes(self.now, &self.cluster)?;
            } else if let Some((at, what)) = self.agenda.pop() {
                self.now = self.now.max(at);
                if !self.happen(what)? {
                    break;
                }
            } else {
                break;
            }
        }
        self.checker.finish(self.now)?;
        Ok(Outcome {
            events: self.events,
            steps: self.steps,
            simulated: self.now,
            exit: self.exit,
            fingerprint: self.fingerprint.value(),
            coverage: self.coverage,
        })
    }

    fn bounded_run(&self, message: String) -> Violation {
        Violation {
            check: BOUNDED_RUN,
            checker: "loop",
            at: self.now,
            message,
        }
    }

    /// Delivers one input and checks the step.
    fn step(&mut self, input: Input) -> Result<(), Violation> {
        self.steps += 1;
        self.events += 1;
        self.input = Some(input);
        self.fingerprint.input(self.now, &input);
        if let Some(out) = self.trace.as_mut() {
            let _ = writeln!(out, "{} > {input}", millis(self.now));
        }
        self.checker
            .begin_step(self.now, Some(input), &self.cluster);
        let result = self.cluster.handle(self.base + self.now, input).map(|_| ());
        self.checker.command_result(result);
        self.drain()?;
        self.checker.end_step(&self.cluster)
    }

    /// Drains every action (the driving contract), carrying each out.
    fn drain(&mut self) -> Result<(), Violation> {
        let mut drained = 0;
        while let Some(action) = self.cluster.poll_action() {
            drained += 1;
            if drained > MAX_ACTIONS_PER_STEP {
                return Err(self.bounded_run(format!(
                    "more than {MAX_ACTIONS_PER_STEP} actions from one input"
                )));
            }
            self.events += 1;
            self.fingerprint.action(self.now, &action);
            if let Some(out) = self.trace.as_mut() {
                let _ = writeln!(out, "{}   < {action:?}", millis(self.now));
            }
            self.checker.action(&action);
            self.carry_out(action);
        }
        Ok(())
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Spawn { id, .. } => self.spawn_process(id),
            Action::Signal { id, signal, .. } => self.deliver_signal(id, signal),
            Action::Event(event) => self.coverage.count(&event, self.input),
            Action::Notify(_) => {}
            Action::SpawnSuccessor => self.spawn_successor(),
            Action::SignalSuccessor { pid, signal } => self.signal_successor(pid, signal),
            Action::Exit(reason) => {
                self.exit = Some(reason);
                // Let a few late reports arrive at the inert state, then stop.
                self.schedule(self.now + Duration::from_millis(100), Happening::End);
            }
        }
    }

    /// One world event. Returns false when the run is over.
    fn happen(&mut self, what: Happening) -> Result<bool, Violation> {
        if what.is_process() {
            self.process_happening(what)?;
            return Ok(true);
        }
        if what.is_successor() {
            self.successor_happening(what)?;
            return Ok(true);
        }
        self.scheduler_happening(what)
    }
}
