//! The one model every checker reads: the story of the cluster rebuilt from the inputs
//! and the action stream alone — which workers exist and which slot each fills, what the
//! master asked of each and whether it had a reason to, the generation that serves and
//! the rollout under way, when the shutdown began and the exit came — and the record of
//! what the current step did.
//!
//! Only this module writes it: [`Model::begin_step`] with the input,
//! [`Model::apply`] after every action (once every checker has judged the action against
//! the state before it), [`Model::end_step`] when the drain ended. The checkers get a
//! `&Model`. The bookkeeping here never judges; a fact the model cannot place (an event
//! about a worker that is not live, a signal to a reaped one) is left out, and the
//! checker that owns the rule reports it.

use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, Config, Event, Pid, ShutdownTrigger, Signal, SpawnError, SpawnErrorKind,
    SuccessorFact, WorkerId,
};

use super::Input;
use super::{event_worker, Bounds};

/// The model's record of one worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Track {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
    pub(crate) started_at: Option<Duration>,
    pub(crate) pid: Option<Pid>,
    /// WorkerStarted or WorkerSpawnFailed was seen.
    pub(crate) spawn_outcome: bool,
    pub(crate) ready: bool,
    /// When it became ready.
    pub(crate) ready_at: Option<Duration>,
    /// WorkerSpawnFailed, WorkerDied or WorkerExit was seen.
    pub(crate) departed: bool,
    /// The world reported its exit.
    pub(crate) exit_reported: bool,
    /// The master asked it to go: a stop signal, or a hang / boot-timeout /
    /// STOPPING=1 event.
    pub(crate) stop_requested: bool,
    /// Some event made stopping it legitimate.
    pub(crate) justified: bool,
    /// It was sent SIGKILL.
    pub(crate) killed: bool,
    /// Spawned as a rollout's successor (the core says so, checked at the step's end).
    pub(crate) successor: bool,
    /// Spawned as a recycle's successor (a successor spawned outside a rollout).
    pub(crate) recycler: bool,
    /// `WorkerRecycling` was seen for it.
    pub(crate) recycling: bool,
    /// Its first stop signal came while it was being recycled: whether a recycle
    /// successor in its slot had passed probation then and still served.
    pub(crate) recycle_stop: Option<bool>,
    /// Stopped or departed: whether it passed probation is settled.
    retired: bool,
}

/// The model's record of one slot.
#[derive(Debug, Clone, Copy, Default)]
struct SlotTrack {
    /// A rollout's new worker in this slot became ready at this time.
    successor_ready: Option<(WorkerId, Duration)>,
    /// A recycle's successor in this slot became ready at this time.
    recycler_ready: Option<(WorkerId, Duration)>,
}

/// The rollout under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rollout {
    /// The generation it rolls out.
    pub(crate) generation: u64,
    /// The generation it replaces (and falls back to).
    pub(crate) from: u64,
}

/// The model's record of the upgrade of the master: the successor's story.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MasterTrack {
    /// An upgrade began (`UpgradeStarted`) and has neither failed nor handed over.
    pub(crate) under_way: bool,
    /// A `SpawnSuccessor` waits for its report.
    pub(crate) spawn_pending: bool,
    /// The successor's pid while it runs (reported spawned, its exit not yet).
    pub(crate) live: Option<Pid>,
    /// The running successor said `READY=1`.
    pub(crate) ready: bool,
    /// `UpgradeHandedOver` was seen.
    pub(crate) handed_over: bool,
    /// The successor handed over to exited.
    pub(crate) lost: bool,
}

/// What the current step did, as the action stream told it. Reset by `begin_step`.
#[derive(Debug, Default)]
pub(crate) struct Step {
    pub(crate) now: Duration,
    pub(crate) input: Option<Input>,
    /// The input is about a departed, unknown or post-exit worker, or comes after the
    /// exit: the core must ignore it.
    pub(crate) stale: bool,
    /// The input is the reported exit of this live worker.
    pub(crate) exit_of: Option<WorkerId>,
    /// Departure events about the worker whose exit or spawn failure the input reports.
    pub(crate) departures_of_exit: u32,
    pub(crate) actions: u32,
    pub(crate) shutdown_before: bool,
    pub(crate) target_before: usize,
    /// The input is a `Cancelled` report for a worker the core had decided to stop.
    pub(crate) cancel_legit: bool,
    /// The input is an exec failure that must end the cluster (a first-generation
    /// worker, no worker ever started, no shutdown yet).
    pub(crate) startup_failure_due: bool,
    pub(crate) spawns: Vec<(WorkerId, usize)>,
    /// First stop signals (a worker's first signal other than USR1/USR2).
    pub(crate) stop_signals: Vec<(WorkerId, Signal)>,
    pub(crate) usr_signals: Vec<(WorkerId, Signal)>,
    pub(crate) forwarded: Option<(Signal, usize)>,
    pub(crate) ready_seen: bool,
    pub(crate) scaled: Option<(usize, usize)>,
    pub(crate) reload_started: bool,
    pub(crate) reload_queued: bool,
    pub(crate) reload_finished: Option<u64>,
    pub(crate) reload_ended: bool,
    /// The core reported the input as ignored.
    pub(crate) ignored_event: bool,
    pub(crate) signal_ignored: Option<Signal>,
    pub(crate) forced: bool,
    pub(crate) shutdown_started: bool,
    pub(crate) startup_failed: bool,
    pub(crate) breaker_tripped: bool,
    pub(crate) hung: Vec<WorkerId>,
    pub(crate) upgrade_started: bool,
}

/// The shared model. See the module documentation.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) config: Config,
    pub(crate) bounds: Bounds,
    /// Simulated time zero.
    pub(crate) base: Instant,
    /// Indexed by worker id; index 0 is a placeholder that never exists.
    workers: Vec<Track>,
    live: Vec<WorkerId>,
    slots: Vec<SlotTrack>,
    /// The generation spawns must run (outside a rollout's successors).
    pub(crate) generation: u64,
    pub(crate) rollout: Option<Rollout>,
    pub(crate) max_generation: u64,
    pub(crate) shutdown_at: Option<Duration>,
    pub(crate) exited_at: Option<Duration>,
    /// Some worker started (WorkerStarted was seen).
    pub(crate) ever_started: bool,
    /// The latest time a worker passed probation (the breaker counts only after it).
    pub(crate) last_proof: Option<Duration>,
    /// The live count reached zero and `NoWorkers` has not come yet.
    pub(crate) expect_no_workers: bool,
    /// The upgrade of the master, if one ever began.
    pub(crate) upgrade: MasterTrack,
    pub(crate) step: Step,
}

impl Model {
    pub(crate) fn new(config: &Config, bounds: Bounds, base: Instant) -> Self {
        Self {
            config: config.clone(),
            bounds,
            base,
            workers: vec![Track {
                departed: true,
                spawn_outcome: true,
                ..Track::default()
            }],
            live: Vec::new(),
            slots: vec![SlotTrack::default(); config.workers()],
            generation: 1,
            rollout: None,
            max_generation: 1,
            shutdown_at: None,
            exited_at: None,
            ever_started: false,
            last_proof: None,
            expect_no_workers: false,
            upgrade: MasterTrack::default(),
            step: Step::default(),
        }
    }

    // ----- queries -------------------------------------------------------------------

    pub(crate) fn now(&self) -> Duration {
        self.step.now
    }

    /// The number of slots (the target), by the action stream.
    pub(crate) fn target(&self) -> usize {
        self.slots.len()
    }

    /// The worker's record, if it was ever spawned.
    pub(crate) fn track(&self, id: WorkerId) -> Option<&Track> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.workers.get(i))
            .filter(|_| id.0 != 0)
    }

    /// Every worker ever spawned, by id (index 0 a placeholder, always complete).
    pub(crate) fn tracks(&self) -> &[Track] {
        &self.workers
    }

    /// The id the next spawn must have.
    pub(crate) fn next_id(&self) -> u64 {
        self.workers.len() as u64
    }

    pub(crate) fn is_live(&self, id: WorkerId) -> bool {
        self.track(id).is_some_and(|t| !t.departed)
    }

    /// The live workers (spawned, not departed), in no particular order.
    pub(crate) fn live(&self) -> &[WorkerId] {
        &self.live
    }

    /// The live workers that serve: ready and not asked to stop.
    pub(crate) fn serving(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.live.iter().copied().filter(|&w| {
            let t = &self.workers[w.0 as usize];
            t.ready && !t.stop_requested
        })
    }

    /// Whether the worker has been ready for `min_uptime` by now.
    pub(crate) fn proven(&self, t: &Track) -> bool {
        t.ready_at
            .is_some_and(|at| at + self.config.min_uptime() <= self.step.now)
    }

    /// Passed probation (a proven worker's death is a one-off).
    pub(crate) fn is_healthy(&self, id: WorkerId) -> bool {
        self.track(id).is_some_and(|t| self.proven(t))
    }

    /// The rollout's ready new worker in `id`'s slot (of another generation, still
    /// serving) and when it became ready: stopping `id` is legitimate once that one has
    /// passed probation.
    pub(crate) fn replaced_by(&self, id: WorkerId) -> Option<(WorkerId, Duration)> {
        let t = self.track(id)?;
        self.slots
            .get(t.slot)
            .and_then(|s| s.successor_ready)
            .filter(|&(new, _)| {
                let n = &self.workers[new.0 as usize];
                new != id && !n.departed && !n.stop_requested && n.generation != t.generation
            })
    }

    /// The ready recycle successor in recycling worker `id`'s slot (still serving) and
    /// when it became ready: stopping `id` is legitimate once that one has passed
    /// probation (the recycle checker judges when).
    pub(crate) fn recycled_by(&self, id: WorkerId) -> Option<(WorkerId, Duration)> {
        let t = self.track(id).filter(|t| t.recycling)?;
        self.slots
            .get(t.slot)
            .and_then(|s| s.recycler_ready)
            .filter(|&(new, _)| {
                let n = &self.workers[new.0 as usize];
                new != id && !n.departed && !n.stop_requested
            })
    }

    /// When the exit is due at the latest, once a shutdown began.
    pub(crate) fn exit_deadline(&self) -> Option<Duration> {
        self.shutdown_at.map(|at| {
            at + self.config.force_exit_timeout()
                + self.bounds.spawn_latency
                + self.bounds.kill_latency
        })
    }

    // ----- updates -------------------------------------------------------------------

    /// Time moved to `now` between steps (a probe, the liveness check, the end).
    pub(crate) fn set_now(&mut self, now: Duration) {
        self.step.now = now;
    }

    /// A step begins: `input` is about to be delivered at `now` (`None`: the cluster is
    /// being created). `cluster` is the state before the input.
    pub(crate) fn begin_step(
        &mut self,
        now: Duration,
        input: Option<Input>,
        cluster: &ClusterState,
    ) {
        let mut step = std::mem::take(&mut self.step);
        step.now = now;
        step.input = input;
        step.stale = false;
        step.exit_of = None;
        step.departures_of_exit = 0;
        step.actions = 0;
        step.shutdown_before = self.shutdown_at.is_some();
        step.target_before = self.slots.len();
        step.cancel_legit = false;
        step.startup_failure_due = false;
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
        step.upgrade_started = false;
        self.step = step;
        let Some(input) = input else { return };
        if self.exited_at.is_some() {
            // After the exit every input is ignored.
            self.step.stale = true;
            return;
        }
        if let Input::Successor(fact) = input {
            self.successor_fact(fact);
        }
        let Some(id) = input.worker() else { return };
        if !self.is_live(id) {
            self.step.stale = true;
        } else if let Input::Exited { .. } = input {
            self.step.exit_of = Some(id);
            self.workers[id.0 as usize].exit_reported = true;
        } else if let Input::SpawnFailed {
            error: SpawnError { kind, .. },
            ..
        } = input
        {
            let t = &self.workers[id.0 as usize];
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
        }
    }

    /// A fact about the successor, from the world.
    fn successor_fact(&mut self, fact: SuccessorFact) {
        let u = &mut self.upgrade;
        match fact {
            SuccessorFact::Spawned { pid } if u.spawn_pending => {
                u.spawn_pending = false;
                u.live = Some(pid);
                u.ready = false;
            }
            SuccessorFact::SpawnFailed(_) => u.spawn_pending = false,
            SuccessorFact::Ready if u.live.is_some() => u.ready = true,
            SuccessorFact::Exited(_) if u.live.is_some() => {
                u.live = None;
                u.lost |= u.handed_over;
            }
            _ => {}
        }
    }

    /// Records one drained action, after every checker judged it.
    pub(crate) fn apply(&mut self, action: &Action) {
        self.step.actions += 1;
        if self.exited_at.is_some() {
            // The story ended with the exit; what comes after is only reported.
            return;
        }
        match *action {
            Action::Spawn {
                id,
                slot,
                generation,
            } => {
                if self.shutdown_at.is_some() || id.0 != self.next_id() {
                    return;
                }
                self.workers.push(Track {
                    slot: slot.0,
                    generation,
                    ..Track::default()
                });
                self.live.push(id);
                self.expect_no_workers = false;
                self.step.spawns.push((id, slot.0));
            }
            Action::Signal { id, pid, signal } => {
                let Some(t) = self.track(id) else { return };
                if t.departed || t.exit_reported || t.pid != Some(pid) {
                    return;
                }
                let first_stop = !t.stop_requested;
                let recycling = t.recycling;
                match signal {
                    Signal::Usr1 | Signal::Usr2 => self.step.usr_signals.push((id, signal)),
                    _ => {
                        if first_stop {
                            self.step.stop_signals.push((id, signal));
                            if recycling {
                                let min_uptime = self.config.min_uptime();
                                let now = self.step.now;
                                let proven = self
                                    .recycled_by(id)
                                    .is_some_and(|(_, ready_at)| ready_at + min_uptime <= now);
                                self.workers[id.0 as usize].recycle_stop = Some(proven);
                            }
                        }
                        let t = &mut self.workers[id.0 as usize];
                        t.stop_requested = true;
                        t.killed |= signal == Signal::Kill;
                        self.retire(id);
                    }
                }
            }
            Action::Event(ref event) => self.apply_event(event),
            Action::SpawnSuccessor => self.upgrade.spawn_pending = true,
            Action::SignalSuccessor { .. } | Action::Notify(_) => {}
            Action::Exit(_) => self.exited_at = Some(self.step.now),
        }
    }

    fn apply_event(&mut self, event: &Event) {
        let now = self.step.now;
        if let Some(id) = event_worker(event) {
            if !self.is_live(id) {
                return;
            }
        }
        match *event {
            Event::WorkerStarted { id, pid, .. } => {
                self.ever_started = true;
                let t = &mut self.workers[id.0 as usize];
                t.spawn_outcome = true;
                t.started_at = Some(now);
                t.pid = Some(pid);
            }
            Event::WorkerSpawnFailed { id, .. } | Event::WorkerSpawnCancelled { id, .. } => {
                // (`WorkerSpawnCancelled` is not a per-worker event above: its worker
                // may be unknown.)
                if self.track(id).is_none() {
                    return;
                }
                self.workers[id.0 as usize].spawn_outcome = true;
                self.count_exit_departure(id);
                self.depart(id);
            }
            Event::WorkerReady { id, slot, .. } => self.ready(id, slot.0),
            Event::WorkerRecycling { id, .. } => self.workers[id.0 as usize].recycling = true,
            Event::WorkerStopping { id, .. } | Event::WorkerBootTimedOut { id, .. } => {
                self.asked_to_go(id);
            }
            Event::WorkerHung { id, .. } => {
                self.asked_to_go(id);
                self.step.hung.push(id);
            }
            Event::WorkerDied { id, .. } | Event::WorkerExit { id, .. } => {
                self.count_exit_departure(id);
                self.depart(id);
            }
            Event::NoWorkers => self.expect_no_workers = false,
            Event::ShutdownStarted { trigger } => {
                if self.shutdown_at.is_some() {
                    return;
                }
                self.step.startup_failed |= trigger == ShutdownTrigger::StartupFailed;
                self.shutdown_at = Some(now);
                self.step.shutdown_started = true;
                self.rollout = None;
                self.justify(|_, _| true);
            }
            Event::ShutdownForced { .. } => self.step.forced = true,
            Event::BreakerTripped { .. } => self.step.breaker_tripped = true,
            Event::ReloadStarted { generation } => {
                if self.rollout.is_some() || generation <= self.max_generation {
                    return;
                }
                self.rollout = Some(Rollout {
                    generation,
                    from: self.generation,
                });
                self.generation = generation;
                self.max_generation = generation;
                self.step.reload_started = true;
                // A rollout supersedes the recycles under way: their successors go.
                self.justify(|_, t| t.recycler);
                self.step.reload_finished = None;
            }
            Event::ReloadQueued => self.step.reload_queued = true,
            Event::ReloadFinished { generation, .. }
                if self.rollout.map(|r| r.generation) == Some(generation) =>
            {
                self.rollout = None;
                self.step.reload_finished = Some(generation);
                self.step.reload_ended = true;
            }
            Event::ReloadFailed { generation, .. } => self.reload_failed(generation),
            Event::Scaled { from, to } => {
                if from != self.slots.len() || from == to {
                    return;
                }
                self.step.scaled = Some((from, to));
                self.slots.resize(to, SlotTrack::default());
                self.justify(|_, t| t.slot >= to);
            }
            Event::SignalForwarded { signal, workers } => {
                self.step.forwarded = Some((signal, workers));
            }
            // The one place the checkers read `Ignored`: its detail is the core's.
            Event::Ignored { .. } => self.step.ignored_event = true,
            Event::SignalIgnored { signal, .. } => self.step.signal_ignored = Some(signal),
            Event::UpgradeStarted => {
                self.upgrade.under_way = true;
                self.step.upgrade_started = true;
            }
            Event::UpgradeFailed { .. } => self.upgrade.under_way = false,
            Event::UpgradeHandedOver { .. } => {
                self.upgrade.under_way = false;
                self.upgrade.handed_over = true;
            }
            _ => {}
        }
    }

    /// The step ended: every action was drained. Learns from the core which of the
    /// step's spawns are a rollout's successors.
    pub(crate) fn end_step(&mut self, cluster: &ClusterState) {
        for &(id, _) in &self.step.spawns {
            if cluster.worker(id).is_some_and(|w| w.successor) {
                // Outside a rollout, a successor is a recycle's.
                let t = &mut self.workers[id.0 as usize];
                if self.rollout.is_some() {
                    t.successor = true;
                } else {
                    t.recycler = true;
                }
            }
        }
    }

    /// Worker `id` in `slot` became ready.
    fn ready(&mut self, id: WorkerId, slot: usize) {
        let now = self.step.now;
        let t = &mut self.workers[id.0 as usize];
        t.ready = true;
        t.ready_at = Some(now);
        let generation = t.generation;
        self.step.ready_seen = true;
        if t.recycler {
            if let Some(s) = self.slots.get_mut(slot) {
                s.recycler_ready = Some((id, now));
            }
        }
        // A ready new worker of a rollout makes stopping the worker it replaces
        // legitimate once it has passed probation (see the rollout checker).
        if self.rollout.is_some_and(|r| r.generation == generation) {
            // The slot's previous new worker, if it passed probation, replaced the older
            // ones for good: latch that before the mark moves on.
            let min_uptime = self.config.min_uptime();
            let previous = self.slots.get(slot).and_then(|s| s.successor_ready);
            if let Some((old, ready_at)) = previous {
                let o = &self.workers[old.0 as usize];
                if ready_at + min_uptime <= now && !o.retired {
                    let old_generation = o.generation;
                    self.justify(|other, t| {
                        other != old && t.slot == slot && t.generation < old_generation
                    });
                }
            }
            if let Some(s) = self.slots.get_mut(slot) {
                s.successor_ready = Some((id, now));
            }
        }
    }

    /// The rollout of `generation` failed: spawns fall back to the generation it
    /// replaced.
    fn reload_failed(&mut self, generation: u64) {
        let Some(rollout) = self.rollout.filter(|r| r.generation == generation) else {
            return;
        };
        let now = self.step.now;
        self.rollout = None;
        self.step.reload_ended = true;
        self.generation = rollout.from;
        // Its not-yet-ready workers, and its successors still in probation, may be
        // stopped (the aborted successors).
        let min_uptime = self.config.min_uptime();
        self.justify(|_, t| {
            let in_probation = t.ready_at.is_some_and(|at| now < at + min_uptime);
            t.generation == generation && (!t.ready || (t.successor && in_probation))
        });
    }

    /// The master told the worker to go (STOPPING=1 acknowledged, boot timeout, hang).
    fn asked_to_go(&mut self, id: WorkerId) {
        let t = &mut self.workers[id.0 as usize];
        t.stop_requested = true;
        t.justified = true;
        self.retire(id);
    }

    /// The worker stops serving (asked to stop, or gone): if it had passed probation by
    /// now, the breaker's count restarted then.
    fn retire(&mut self, id: WorkerId) {
        let min_uptime = self.config.min_uptime();
        let now = self.step.now;
        let t = &mut self.workers[id.0 as usize];
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

    fn depart(&mut self, id: WorkerId) {
        self.retire(id);
        self.workers[id.0 as usize].departed = true;
        if let Some(pos) = self.live.iter().position(|&w| w == id) {
            self.live.swap_remove(pos);
        }
        if self.live.is_empty() {
            self.expect_no_workers = true;
        }
    }

    /// Marks every live worker matching `pred` as legitimately stoppable.
    fn justify(&mut self, mut pred: impl FnMut(WorkerId, &Track) -> bool) {
        for &id in &self.live {
            let index = id.0 as usize;
            if pred(id, &self.workers[index]) {
                self.workers[index].justified = true;
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
}
