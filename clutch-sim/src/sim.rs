//! The discrete-event loop and the fake processes.
//!
//! Simulated time is an offset from one `Instant` captured when the run starts: the core
//! only compares and adds instants, so everything it says is deterministic in offsets.
//! Time never ticks: it jumps to whichever comes first of the core's
//! [`poll_timeout`](ClusterState::poll_timeout), the checker's next deadline probe, and
//! the next world event (ties: core, then probes, then events in insertion order).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, Event, ExitReason, ExitStatus, Pid, Readiness, Signal, SpawnError,
    SpawnErrorKind, WorkerId, MAX_WORKERS,
};

use crate::checker::{Bounds, Checker, Violation};
use crate::input::Input;
use crate::rng::{Entropy, Rng};
use crate::trace::{millis, Fingerprint};
use crate::world::{World, MAX_SIM_WORKERS};

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

/// Counters of interesting things a run exercised, so a campaign can show that the
/// checks had something to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Coverage {
    pub spawns: u64,
    pub spawn_failures: u64,
    pub deaths: u64,
    pub boot_timeouts: u64,
    pub hangs: u64,
    pub announced: u64,
    pub respawns_delayed: u64,
    pub rollouts_finished: u64,
    pub rollouts_failed: u64,
    pub scaled: u64,
    pub breaker_trips: u64,
    pub breaker_trips_by_scale_down: u64,
    pub forced_exits: u64,
    pub clean_exits: u64,
    pub liveness_checked: u64,
    pub stale_reports: u64,
    pub resource_failures: u64,
    pub startup_failures: u64,
    pub spawns_cancelled: u64,
    pub signals_ignored: u64,
}

impl Coverage {
    /// Adds another run's counters.
    pub fn add(&mut self, other: &Coverage) {
        self.spawns += other.spawns;
        self.spawn_failures += other.spawn_failures;
        self.deaths += other.deaths;
        self.boot_timeouts += other.boot_timeouts;
        self.hangs += other.hangs;
        self.announced += other.announced;
        self.respawns_delayed += other.respawns_delayed;
        self.rollouts_finished += other.rollouts_finished;
        self.rollouts_failed += other.rollouts_failed;
        self.scaled += other.scaled;
        self.breaker_trips += other.breaker_trips;
        self.breaker_trips_by_scale_down += other.breaker_trips_by_scale_down;
        self.forced_exits += other.forced_exits;
        self.clean_exits += other.clean_exits;
        self.liveness_checked += other.liveness_checked;
        self.stale_reports += other.stale_reports;
        self.resource_failures += other.resource_failures;
        self.startup_failures += other.startup_failures;
        self.spawns_cancelled += other.spawns_cancelled;
        self.signals_ignored += other.signals_ignored;
    }

    /// Every counter with its name.
    #[must_use]
    pub fn named(&self) -> [(&'static str, u64); 20] {
        [
            ("spawns", self.spawns),
            ("spawn failures", self.spawn_failures),
            ("deaths", self.deaths),
            ("boot timeouts", self.boot_timeouts),
            ("hangs", self.hangs),
            ("announced stops", self.announced),
            ("delayed respawns", self.respawns_delayed),
            ("rollouts finished", self.rollouts_finished),
            ("rollouts failed", self.rollouts_failed),
            ("scalings", self.scaled),
            ("breaker trips", self.breaker_trips),
            (
                "breaker trips by scale-down",
                self.breaker_trips_by_scale_down,
            ),
            ("forced exits", self.forced_exits),
            ("clean exits", self.clean_exits),
            ("liveness checks", self.liveness_checked),
            ("stale reports", self.stale_reports),
            ("resource spawn failures", self.resource_failures),
            ("startup failures", self.startup_failures),
            ("cancelled spawns", self.spawns_cancelled),
            ("ignored signals", self.signals_ignored),
        ]
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.named().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {value}")?;
        }
        Ok(())
    }
}

/// Something the world does at a point in time.
#[derive(Debug, Clone, Copy)]
enum Happening {
    SpawnReport(WorkerId),
    Ready(WorkerId),
    Heartbeat(WorkerId),
    Crash(WorkerId, ExitStatus),
    Hang(WorkerId),
    Announce(WorkerId),
    Exit(WorkerId, ExitStatus),
    Storm(u8),
    Command,
    Stale,
    Calm,
    Liveness,
    FinalTerm,
    End,
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    /// Spawn asked for, not reported yet.
    Pending,
    /// The process exists.
    Running,
    /// Its end (or spawn failure) was reported.
    Gone,
}

/// A fake worker process: its fate is drawn when it is spawned.
#[derive(Debug, Clone)]
struct Proc {
    state: ProcState,
    pid: Pid,
    /// How its spawn fails, if it does.
    spawn_fails: Option<SpawnErrorKind>,
    /// Time from start to READY=1 (`None`: never).
    boot: Option<Duration>,
    boot_crash: Option<Duration>,
    run_crash: Option<Duration>,
    hang_at: Option<Duration>,
    announce_at: Option<Duration>,
    heartbeat: Option<Duration>,
    ignores_term: bool,
    exit_delay: Duration,
    abrt_kills: bool,
    hung: bool,
    exit_at: Option<Duration>,
}

/// One simulated world around one `ClusterState`.
pub struct Sim<'t, E: Entropy> {
    rng: Rng<E>,
    world: World,
    base: Instant,
    now: Duration,
    cluster: ClusterState,
    checker: Checker,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Indexed by worker id (index 0 unused).
    procs: Vec<Proc>,
    free_pids: Vec<Pid>,
    next_pid: Pid,
    /// Recently departed workers, for stale reports.
    departed: Vec<WorkerId>,
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
            queue: BinaryHeap::new(),
            seq: 0,
            procs: vec![placeholder_proc()],
            free_pids: if world.faults.pid_reuse {
                (100..104).rev().collect()
            } else {
                Vec::new()
            },
            next_pid: 1000,
            departed: Vec::new(),
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
            let event = self.queue.peek().map(|e| e.0.at);
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
            } else if let Some(Reverse(next)) = self.queue.pop() {
                self.now = self.now.max(next.at);
                if !self.happen(next.what)? {
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
            at: self.now,
            message,
        }
    }

    fn schedule(&mut self, at: Duration, what: Happening) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn after_gap(&mut self, mean: Duration, what: Happening) {
        let gap = self.rng.duration_upto(mean * 2);
        self.schedule(self.now + gap, what);
    }

    fn schedule_plan(&mut self) {
        let plan = self.world.plan.clone();
        let faults = self.world.faults.clone();
        if let Some(mean) = faults.storms {
            self.after_gap(mean, Happening::Storm(0));
        }
        if let Some(mean) = faults.commands {
            self.after_gap(mean, Happening::Command);
        }
        if let Some(mean) = faults.stale_reports {
            self.after_gap(mean, Happening::Stale);
        }
        if plan.calm {
            self.schedule(plan.chaos, Happening::Calm);
        } else if plan.final_term {
            self.schedule(plan.chaos, Happening::FinalTerm);
        } else {
            self.schedule(plan.chaos, Happening::End);
        }
    }

    /// True while the world still misbehaves.
    fn chaotic(&self) -> bool {
        self.now < self.world.plan.chaos
    }

    /// True once the world has healed for good.
    fn healed(&self) -> bool {
        self.world.plan.calm && !self.chaotic()
    }

    /// How long a healed world may take to bring the cluster to its target: every slot
    /// may first have to shed a bad worker (one whose boot or hang was decided before the
    /// calm), twice (a current and its successor), each time waiting out the longest
    /// detection, the longest backoff and a healthy boot; and a pending rollout needs
    /// a healthy boot per batch, twice (a queued one).
    fn liveness_bound(&self) -> Duration {
        let c = &self.world.config;
        let f = &self.world.faults;
        let ready = match c.readiness() {
            Readiness::Spawned => Duration::ZERO,
            Readiness::Delay(delay) => delay,
            Readiness::Notify => f.healthy_boot_time,
        };
        let boot = f.spawn_latency + ready;
        let detect = f.spawn_latency + c.boot_timeout() + c.hang().timeout.unwrap_or_default();
        // A rollout's batch moves on only after its new workers' probation.
        let proven = boot + c.min_uptime();
        let cycle = detect + c.backoff().max + proven;
        let rounds = self.cluster.target().div_ceil(c.rollout_batch()) as u32;
        cycle * 2 + proven * (2 * rounds + 1) + Duration::from_millis(1)
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
            Action::Spawn { id, .. } => {
                debug_assert_eq!(id.0 as usize, self.procs.len());
                let proc = self.new_proc();
                self.procs.push(proc);
                self.coverage.spawns += 1;
                let latency = self.rng.duration_upto(self.world.faults.spawn_latency);
                self.schedule(self.now + latency, Happening::SpawnReport(id));
            }
            Action::Signal { id, signal, .. } => self.deliver_signal(id, signal),
            Action::Event(event) => self.count(&event),
            Action::Notify(_) => {}
            Action::Exit(reason) => {
                self.exit = Some(reason);
                // Let a few late reports arrive at the inert state, then stop.
                self.schedule(self.now + Duration::from_millis(100), Happening::End);
            }
        }
    }

    fn count(&mut self, event: &Event) {
        let c = &mut self.coverage;
        match event {
            Event::WorkerSpawnFailed { error, .. } => {
                c.spawn_failures += 1;
                if error.kind == SpawnErrorKind::Resource {
                    c.resource_failures += 1;
                }
            }
            Event::WorkerSpawnCancelled { .. } => c.spawns_cancelled += 1,
            Event::SignalIgnored { .. } => c.signals_ignored += 1,
            Event::WorkerDied { .. } => c.deaths += 1,
            Event::WorkerBootTimedOut { .. } => c.boot_timeouts += 1,
            Event::WorkerHung { .. } => c.hangs += 1,
            Event::WorkerStopping { .. } => c.announced += 1,
            Event::RespawnDelayed { .. } => c.respawns_delayed += 1,
            Event::ReloadFinished { .. } => c.rollouts_finished += 1,
            Event::ReloadFailed { .. } => c.rollouts_failed += 1,
            Event::Scaled { .. } => c.scaled += 1,
            Event::BreakerTripped { .. } => {
                c.breaker_trips += 1;
                if let Some(Input::Scale(_) | Input::Signal(Signal::Ttou)) = self.input {
                    c.breaker_trips_by_scale_down += 1;
                }
            }
            Event::ShutDown { reason } => match reason {
                ExitReason::Forced => c.forced_exits += 1,
                ExitReason::Clean => c.clean_exits += 1,
                ExitReason::StartupFailed => c.startup_failures += 1,
                _ => {}
            },
            _ => {}
        }
    }

    /// Draws a new process's fate. After the calm every process is healthy.
    fn new_proc(&mut self) -> Proc {
        let f = self.world.faults.clone();
        let healthy = self.healed();
        let rng = &mut self.rng;
        let mut chance = |per_mille: u32| !healthy && rng.chance(per_mille);
        let fails_other = chance(f.spawn_fail);
        let never_ready = chance(f.never_ready);
        let boot_crash = chance(f.boot_crash);
        let run_crash = chance(f.run_crash);
        let heartbeat = rng.chance(f.heartbeat);
        let hang = heartbeat && !healthy && rng.chance(f.hang);
        let announce = !healthy && rng.chance(f.announce);
        let ignores_term = !healthy && rng.chance(f.ignore_term);
        // Drawn after the older knobs (a rate of zero draws nothing).
        let fails_resource = !healthy && rng.chance(f.resource_fail);
        let fails_exec = !healthy && rng.chance(f.exec_fail);
        let spawn_fails = if fails_exec {
            Some(SpawnErrorKind::Exec)
        } else if fails_resource {
            Some(SpawnErrorKind::Resource)
        } else {
            fails_other.then_some(SpawnErrorKind::Other)
        };
        let boot_max = if healthy {
            f.healthy_boot_time
        } else {
            f.boot_time
        };
        let boot = rng.duration_upto(boot_max);
        let exit_delay = if healthy {
            rng.duration_upto(Duration::from_millis(5))
        } else {
            rng.duration_upto(f.exit_delay)
        };
        Proc {
            state: ProcState::Pending,
            pid: 0,
            spawn_fails,
            boot: (!never_ready).then_some(boot),
            boot_crash: boot_crash.then(|| rng.duration_upto(boot)),
            run_crash: run_crash.then(|| boot + rng.duration_upto(f.run_crash_window)),
            hang_at: hang.then(|| rng.duration_upto(boot + f.run_crash_window)),
            announce_at: announce.then(|| rng.duration_upto(boot + f.run_crash_window)),
            heartbeat: heartbeat.then_some(f.heartbeat_interval),
            ignores_term,
            exit_delay,
            abrt_kills: rng.chance(f.abrt_kills),
            hung: false,
            exit_at: None,
        }
    }

    fn alloc_pid(&mut self) -> Pid {
        self.free_pids.pop().unwrap_or_else(|| {
            self.next_pid += 1;
            self.next_pid
        })
    }

    fn running(&self, id: WorkerId) -> Option<&Proc> {
        self.procs
            .get(id.0 as usize)
            .filter(|p| p.state == ProcState::Running)
    }

    fn schedule_exit(&mut self, id: WorkerId, after: Duration, status: ExitStatus) {
        let at = self.now + after;
        let proc = &mut self.procs[id.0 as usize];
        if !proc.exit_at.is_some_and(|e| e <= at) {
            proc.exit_at = Some(at);
            self.schedule(at, Happening::Exit(id, status));
        }
    }

    fn deliver_signal(&mut self, id: WorkerId, signal: Signal) {
        let Some(proc) = self.running(id) else {
            // A zombie: the exit is already on its way.
            return;
        };
        let (ignores_term, hung, exit_delay, abrt_kills) = (
            proc.ignores_term,
            proc.hung,
            proc.exit_delay,
            proc.abrt_kills,
        );
        match signal {
            Signal::Kill => {
                let latency = self.rng.duration_upto(self.world.faults.kill_latency);
                self.schedule_exit(id, latency, ExitStatus::Signaled(9));
            }
            Signal::Term | Signal::Int if !ignores_term && !hung => {
                self.schedule_exit(id, exit_delay, ExitStatus::Code(0));
            }
            Signal::Abrt | Signal::Quit if abrt_kills => {
                let latency = self.rng.duration_upto(Duration::from_millis(2));
                let number = if signal == Signal::Abrt { 6 } else { 3 };
                self.schedule_exit(id, latency, ExitStatus::Signaled(number));
            }
            _ => {}
        }
    }

    fn process_exited(&mut self, id: WorkerId, status: ExitStatus) -> Result<(), Violation> {
        let proc = &mut self.procs[id.0 as usize];
        proc.state = ProcState::Gone;
        let pid = proc.pid;
        if self.world.faults.pid_reuse {
            self.free_pids.push(pid);
        }
        self.remember_departed(id);
        self.step(Input::Exited { id, status })
    }

    fn remember_departed(&mut self, id: WorkerId) {
        if self.departed.len() >= 16 {
            self.departed.remove(0);
        }
        self.departed.push(id);
    }

    /// One world event. Returns false when the run is over.
    fn happen(&mut self, what: Happening) -> Result<bool, Violation> {
        match what {
            Happening::SpawnReport(id) => self.spawn_report(id)?,
            Happening::Ready(id) => {
                if self.running(id).is_some_and(|p| !p.hung) {
                    self.step(Input::Ready { id })?;
                }
            }
            Happening::Heartbeat(id) => {
                if let Some(interval) = self
                    .running(id)
                    .filter(|p| !p.hung)
                    .and_then(|p| p.heartbeat)
                {
                    self.step(Input::Heartbeat { id })?;
                    let jitter = self.rng.duration_upto(interval / 4);
                    self.schedule(self.now + interval - jitter, Happening::Heartbeat(id));
                }
            }
            Happening::Crash(id, status) => {
                if self.running(id).is_some() && !self.healed() {
                    self.process_exited(id, status)?;
                }
            }
            Happening::Hang(id) => {
                if self.running(id).is_some() && !self.healed() {
                    self.procs[id.0 as usize].hung = true;
                }
            }
            Happening::Announce(id) => {
                if let Some(p) = self.running(id).filter(|p| !p.hung && !self.healed()) {
                    let delay = p.exit_delay;
                    self.step(Input::Stopping { id })?;
                    self.schedule_exit(id, delay, ExitStatus::Code(0));
                }
            }
            Happening::Exit(id, status) => {
                if self.running(id).is_some() {
                    self.process_exited(id, status)?;
                }
            }
            Happening::Storm(remaining) => self.storm(remaining)?,
            Happening::Command => self.command()?,
            Happening::Stale => self.stale()?,
            Happening::Calm => {
                let bound = self.liveness_bound();
                self.schedule(self.now + bound, Happening::Liveness);
                if self.world.plan.final_term {
                    self.schedule(self.now + bound, Happening::FinalTerm);
                } else {
                    self.schedule(self.now + bound, Happening::End);
                }
            }
            Happening::Liveness => {
                self.coverage.liveness_checked += 1;
                self.checker.check_liveness(self.now, &self.cluster)?;
            }
            Happening::FinalTerm => {
                self.step(Input::Signal(Signal::Term))?;
                let end = self
                    .checker
                    .exit_deadline()
                    .unwrap_or(self.now)
                    .max(self.now);
                self.schedule(end + Duration::from_millis(1), Happening::End);
            }
            Happening::End => {
                if let Some(deadline) = self.checker.exit_deadline() {
                    if !self.checker.exited() && !self.end_extended {
                        // A shutdown is under way: give it until its deadline.
                        self.end_extended = true;
                        let end = deadline.max(self.now) + Duration::from_millis(1);
                        self.schedule(end, Happening::End);
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn spawn_report(&mut self, id: WorkerId) -> Result<(), Violation> {
        let proc = &self.procs[id.0 as usize];
        if proc.state != ProcState::Pending {
            return Ok(());
        }
        // A driver that batches spawns asks the core, just before it forks, whether the
        // worker is still wanted.
        let unwanted = self.world.faults.cancel_stopped
            && self
                .cluster
                .worker(id)
                .is_some_and(|w| w.stop_reason.is_some());
        let failure = if unwanted {
            Some(SpawnErrorKind::Cancelled)
        } else {
            proc.spawn_fails
        };
        if let Some(kind) = failure {
            self.procs[id.0 as usize].state = ProcState::Gone;
            self.remember_departed(id);
            let error = SpawnError::new(kind);
            return self.step(Input::SpawnFailed { id, error });
        }
        let pid = self.alloc_pid();
        let now = self.now;
        let proc = &mut self.procs[id.0 as usize];
        proc.state = ProcState::Running;
        proc.pid = pid;
        let proc = proc.clone();
        if let Some(after) = proc.boot_crash {
            let status = if self.rng.one_in(2) {
                ExitStatus::Code(1)
            } else {
                ExitStatus::Signaled(11)
            };
            self.schedule(now + after, Happening::Crash(id, status));
        }
        if let Some(boot) = proc.boot {
            self.schedule(now + boot, Happening::Ready(id));
        }
        if let Some(after) = proc.run_crash {
            self.schedule(now + after, Happening::Crash(id, ExitStatus::Code(70)));
        }
        if let Some(after) = proc.hang_at {
            self.schedule(now + after, Happening::Hang(id));
        }
        if let Some(after) = proc.announce_at {
            self.schedule(now + after, Happening::Announce(id));
        }
        if let Some(interval) = proc.heartbeat {
            let first = self.rng.duration_upto(interval);
            self.schedule(now + first, Happening::Heartbeat(id));
        }
        self.step(Input::Spawned { id, pid })
    }

    fn storm(&mut self, remaining: u8) -> Result<(), Violation> {
        if !self.chaotic() || self.checker.exited() {
            return Ok(());
        }
        let mut signal = self.rng.weighted(&[
            (20, Signal::Hup),
            (12, Signal::Ttin),
            (12, Signal::Ttou),
            (10, Signal::Usr1),
            (5, Signal::Usr2),
            (8, Signal::Winch),
            (2, Signal::Abrt),
            (1, Signal::Kill),
            (2, Signal::Term),
            (1, Signal::Int),
            (1, Signal::Quit),
        ]);
        if signal == Signal::Ttin && self.cluster.target() >= MAX_SIM_WORKERS {
            signal = Signal::Winch;
        }
        self.step(Input::Signal(signal))?;
        if remaining > 0 {
            let gap = self.rng.duration_upto(Duration::from_millis(50));
            self.schedule(self.now + gap, Happening::Storm(remaining - 1));
        } else if let Some(mean) = self.world.faults.storms {
            let burst = self.rng.range(0, 8) as u8;
            self.after_gap(mean, Happening::Storm(burst));
        }
        Ok(())
    }

    fn command(&mut self) -> Result<(), Violation> {
        if !self.chaotic() || self.checker.exited() {
            return Ok(());
        }
        let target = self.cluster.target();
        let input = match self.rng.below(100) {
            0..=39 => Input::Reload,
            40..=49 => Input::Scale(target),
            50..=54 => Input::Scale(0),
            55..=58 => Input::Scale(MAX_WORKERS + 1),
            59 => Input::Scale(usize::MAX),
            60..=93 => Input::Scale(self.rng.range_usize(1, (target + 3).min(MAX_SIM_WORKERS))),
            94..=97 => Input::Shutdown,
            _ => Input::ShutdownNow,
        };
        self.step(input)?;
        if let Some(mean) = self.world.faults.commands {
            self.after_gap(mean, Happening::Command);
        }
        Ok(())
    }

    /// A late, duplicate or stale report: about a departed worker, an id never issued,
    /// id 0, or a duplicate spawn report about a running one.
    fn stale(&mut self) -> Result<(), Violation> {
        if !self.chaotic() {
            return Ok(());
        }
        let next_id = self.procs.len() as u64;
        let id = match self.rng.below(10) {
            0..=6 if !self.departed.is_empty() => self.rng.pick(&self.departed),
            7 => WorkerId(0),
            8 => {
                let id = WorkerId(self.rng.range(1, next_id.max(1)));
                if let Some(pid) = self.running(id).map(|p| p.pid) {
                    self.coverage.stale_reports += 1;
                    self.step(Input::Spawned { id, pid: pid + 1 })?;
                }
                return self.reschedule_stale();
            }
            _ => WorkerId(next_id + self.rng.below(3)),
        };
        let input = match self.rng.below(6) {
            0 => Input::Exited {
                id,
                status: ExitStatus::Code(self.rng.range(0, 2) as i32),
            },
            1 => Input::Ready { id },
            2 => Input::Heartbeat { id },
            3 => Input::Stopping { id },
            4 => Input::Spawned {
                id,
                pid: self.rng.range(1, 200) as Pid,
            },
            _ => Input::SpawnFailed {
                id,
                error: SpawnError::new(self.rng.pick(&SPAWN_ERROR_KINDS)),
            },
        };
        self.coverage.stale_reports += 1;
        self.step(input)?;
        self.reschedule_stale()
    }

    fn reschedule_stale(&mut self) -> Result<(), Violation> {
        if let Some(mean) = self.world.faults.stale_reports {
            self.after_gap(mean, Happening::Stale);
        }
        Ok(())
    }
}

/// Every kind of spawn failure, for stale reports and the fuzz decoder.
pub(crate) const SPAWN_ERROR_KINDS: [SpawnErrorKind; 4] = [
    SpawnErrorKind::Resource,
    SpawnErrorKind::Exec,
    SpawnErrorKind::Other,
    SpawnErrorKind::Cancelled,
];

fn placeholder_proc() -> Proc {
    Proc {
        state: ProcState::Gone,
        pid: 0,
        spawn_fails: None,
        boot: None,
        boot_crash: None,
        run_crash: None,
        hang_at: None,
        announce_at: None,
        heartbeat: None,
        ignores_term: false,
        exit_delay: Duration::ZERO,
        abrt_kills: false,
        hung: false,
        exit_at: None,
    }
}
