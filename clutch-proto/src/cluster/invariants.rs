//! [`ClusterState::check_invariants`]: the state's own consistency, checked by the
//! unit tests, the simulator, the property tests and the fuzzers after every step.
//! What the types make unrepresentable (a rollout during shutdown, a pid while
//! spawning, a pending signal with a pid, failures counted outside a failing period)
//! is not checked here: it cannot happen.

use super::lifecycle::Lifecycle;
use super::recycle::{Recycle, RecycleStep};
use super::slots::{Purpose, Role};
use super::timers::TimerKey;
use super::upgrade::Upgrade;
use super::ClusterState;
use crate::config::MAX_WORKERS;
use crate::{Action, WorkerState};

impl ClusterState {
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
        match self.upgrade {
            Some(Upgrade::Starting { .. } | Upgrade::Booting { .. }) => ensure!(
                matches!(self.lifecycle, Lifecycle::Serving(_)),
                "an upgrade starting while not serving"
            ),
            Some(Upgrade::HandedOver { .. }) => ensure!(
                !matches!(self.lifecycle, Lifecycle::Serving(_)),
                "handed over to a successor and still serving"
            ),
            Some(Upgrade::Abandoning { .. }) => ensure!(
                !self.lifecycle.is_exited(),
                "exited before the failed upgrade's successor did"
            ),
            None => {}
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
        let mut ready_recyclers = 0;
        let mut failing = 0;
        let mut timers = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            for (id, successor) in slot
                .current
                .iter()
                .map(|&id| (id, None))
                .chain(slot.successor.iter().map(|s| (s.id, Some(s.purpose))))
            {
                let Some(w) = self.workers.get(&id) else {
                    return Err(format!("slot {index} holds unknown worker {id}"));
                };
                ensure!(
                    w.slot.0 == index,
                    "worker {id} in slot {index} thinks it is in {}",
                    w.slot
                );
                // (A worker without a stop reason is spawning, booting or ready.)
                ensure!(
                    w.stop_reason().is_none(),
                    "leaving worker {id} still holds slot {index}"
                );
                if successor == Some(Purpose::Recycle) {
                    ensure!(
                        self.lifecycle.rollout().is_none(),
                        "recycle successor {id} during a rollout"
                    );
                    ensure!(
                        !w.life.is_proven(),
                        "recycle successor {id} is proven but not promoted"
                    );
                    if w.state() == WorkerState::Ready {
                        ready_recyclers += 1;
                    }
                    let old = slot.current.map(|old| self.workers[&old].recycle);
                    ensure!(
                        matches!(
                            old,
                            Some(Recycle::Due {
                                step: RecycleStep::Successor,
                                ..
                            })
                        ),
                        "recycle successor {id} in slot {index}, whose worker is {old:?}"
                    );
                } else if successor == Some(Purpose::Rollout) {
                    successors += 1;
                    let Some(r) = self.lifecycle.rollout() else {
                        return Err(format!("successor {id} outside a rollout"));
                    };
                    ensure!(
                        w.generation == r.generation,
                        "successor {id} of an old generation"
                    );
                    ensure!(
                        !w.life.is_proven(),
                        "successor {id} is proven but not promoted"
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
                    if w.life.is_proven() {
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
                    w.life.probation_at().is_some()
                        == (w.state() == WorkerState::Ready
                            && !w.life.is_proven()
                            && !self.lifecycle.is_stopping()),
                    "worker {id}: probation timer {:?}, {} (proven: {})",
                    w.life.probation_at(),
                    w.state(),
                    w.life.is_proven()
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
                    self.timers.contains(at, TimerKey::Respawn(index)),
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
            ready_recyclers == self.ready_recyclers,
            "ready recycler count {} but {ready_recyclers} ready recycle successors",
            self.ready_recyclers
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
                w.life.ready_at().is_some() || w.state() != WorkerState::Ready,
                "ready worker {id} without a ready time"
            );
            if let Some((at, timer)) = w.deadline {
                timers += 1;
                ensure!(
                    self.timers.contains(at, TimerKey::Worker(id, timer)),
                    "worker {id}'s {timer:?} timer is missing"
                );
            }
            if w.recycle != Recycle::NotDue {
                ensure!(
                    role == Role::Current && w.state() == WorkerState::Ready,
                    "worker {id} ({}, {role:?}) has recycle record {:?}",
                    w.state(),
                    w.recycle
                );
            }
            match w.recycle {
                Recycle::AgeAt(at) => {
                    let age = self.config.max_worker_age();
                    let started = w.life.started_at();
                    ensure!(
                        age.zip(started).is_some_and(|(age, started)| {
                            let from = started + age;
                            (from..=from + self.config.max_worker_age_jitter()).contains(&at)
                        }),
                        "worker {id}'s age timer {at:?} out of its bounds (age {age:?}, started {started:?})"
                    );
                }
                Recycle::Due { step, .. } => {
                    let slot = &self.slots[w.slot.0];
                    let has_successor = slot.successor.map(|s| s.purpose) == Some(Purpose::Recycle);
                    ensure!(
                        has_successor == (step == RecycleStep::Successor),
                        "worker {id} recycling ({step:?}) with successor {:?}",
                        slot.successor
                    );
                    ensure!(
                        (step == RecycleStep::AfterRollout) == self.lifecycle.rollout().is_some(),
                        "worker {id} recycling ({step:?}) and a rollout: {}",
                        self.lifecycle.rollout().is_some()
                    );
                }
                Recycle::NotDue => {}
            }
            if let Some(at) = w.recycle.timer() {
                timers += 1;
                ensure!(
                    self.timers.contains(at, TimerKey::Recycle(id)),
                    "worker {id}'s recycle timer is missing"
                );
            }
            if let Some(at) = w.life.probation_at() {
                timers += 1;
                ensure!(role != Role::Detached, "detached worker {id} in probation");
                ensure!(
                    self.timers.contains(at, TimerKey::Probation(id)),
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
        // (A successor outside a rollout was caught in the slots' walk.)
        if let Some(r) = self.lifecycle.rollout() {
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
        if self.lifecycle.is_stopping() {
            ensure!(
                self.slots.iter().all(|s| s.current.is_none()
                    && s.successor.is_none()
                    && s.respawn_at.is_none()),
                "slots still filled during shutdown"
            );
            // Every worker is detached then: each was asked to stop (checked above).
        }
        ensure!(self.slots.len() <= MAX_WORKERS, "more slots than allowed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::ClusterState;
    use crate::Config;

    #[test]
    fn a_count_out_of_step_with_the_workers_is_reported() {
        let now = crate::test_epoch();
        let mut cluster = ClusterState::new(Config::builder().workers(2).build().unwrap(), now);
        assert_eq!(cluster.check_invariants(), Ok(()));
        cluster.ready_count = 1; // nothing is ready yet
        assert!(cluster.check_invariants().is_err());
    }
}
