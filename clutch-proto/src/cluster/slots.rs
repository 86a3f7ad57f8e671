//! Slots: the places `0..target` a worker serves in, and how workers are spawned
//! into them, taken out of them (detached), promoted (a successor taking over) and how
//! an emptied slot is refilled (at once, or after a backoff or a quick refill).

use std::time::Instant;

use super::readiness::Liveness;
use super::recycle::Recycle;
use super::worker::{Death, Worker, WorkerPhase};
use super::ClusterState;
use crate::config::{QUICK_REFILL_BURST, QUICK_REFILL_INTERVAL};
use crate::{Action, Event, Slot, WorkerId, WorkerState};

#[derive(Debug, Default)]
pub(super) struct SlotState {
    /// The worker serving (or booting to serve) this slot.
    pub(super) current: Option<WorkerId>,
    /// The worker booting (or in probation) to replace `current`: in a rolling restart,
    /// or recycling `current`.
    pub(super) successor: Option<Successor>,
    /// Young deaths since the slot's last worker passed probation (drives the backoff).
    pub(super) consecutive_failures: u32,
    /// Quick refills after deaths in probation: the theoretical time at which the slot's
    /// quota is back to empty (a GCRA, one refill per `QUICK_REFILL_INTERVAL`).
    pub(super) quick_tat: Option<Instant>,
    /// When an empty slot will be refilled.
    pub(super) respawn_at: Option<Instant>,
    /// Refills of this slot after a worker left it.
    pub(super) restarts: u64,
}

/// A slot's successor: the worker and what it replaces its slot's worker for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Successor {
    pub(super) id: WorkerId,
    pub(super) purpose: Purpose,
}

/// Why a slot has a successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A rolling restart's new-generation worker (counted by the rollout).
    Rollout,
    /// Recycling the slot's worker (only outside a rollout: one starting stops it).
    Recycle,
}

/// Where a worker stood relative to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Current,
    /// A rolling restart's successor.
    Successor,
    /// A recycle's successor.
    Recycler,
    Detached,
}

impl ClusterState {
    pub(super) fn role(&self, id: WorkerId, w: &Worker) -> Role {
        match self.slots.get(w.slot.0) {
            Some(slot) if slot.current == Some(id) => Role::Current,
            Some(slot) => match slot.successor {
                Some(Successor {
                    id: successor,
                    purpose,
                }) if successor == id => match purpose {
                    Purpose::Rollout => Role::Successor,
                    Purpose::Recycle => Role::Recycler,
                },
                _ => Role::Detached,
            },
            None => Role::Detached,
        }
    }

    pub(super) fn spawn(&mut self, now: Instant, index: usize, role: Role) {
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
                life: Liveness::default(),
                deadline: None,
                recycle: Recycle::NotDue,
            },
        );
        let slot_state = &mut self.slots[index];
        match role {
            Role::Current => slot_state.current = Some(id),
            Role::Recycler => {
                slot_state.successor = Some(Successor {
                    id,
                    purpose: Purpose::Recycle,
                });
            }
            Role::Successor => {
                slot_state.successor = Some(Successor {
                    id,
                    purpose: Purpose::Rollout,
                });
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
    pub(super) fn detach(&mut self, id: WorkerId) -> Role {
        let w = &self.workers[&id];
        let role = self.role(id, w);
        let slot = &mut self.slots.get_mut(w.slot.0);
        match (role, slot) {
            (Role::Current, Some(slot)) => {
                slot.current = None;
                if w.state() == WorkerState::Ready {
                    self.ready_count -= 1;
                    if w.life.is_proven() {
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
            (Role::Recycler, Some(slot)) => {
                slot.successor = None;
                if w.state() == WorkerState::Ready {
                    self.ready_recyclers -= 1;
                }
            }
            _ => {}
        }
        self.set_probation(id, None);
        // Out of its slot, nothing is recycled and no age is watched.
        self.set_recycle(id, Recycle::NotDue);
        role
    }

    /// Makes `index`'s successor its current worker.
    pub(super) fn promote(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Successor { id, purpose } = slot.successor.take().expect("a successor to promote");
        debug_assert!(slot.current.is_none());
        slot.current = Some(id);
        let w = &self.workers[&id];
        let (ready, proven) = (w.state() == WorkerState::Ready, w.life.is_proven());
        if ready {
            self.ready_count += 1;
            if proven {
                self.proven_count += 1;
            }
        }
        if purpose == Purpose::Recycle && ready {
            self.ready_recyclers -= 1;
        }
        if purpose == Purpose::Rollout {
            let rollout = self
                .lifecycle
                .rollout_mut()
                .expect("successor only in a rollout");
            rollout.in_flight -= 1;
            if ready {
                rollout.ready_successors -= 1;
                if proven && rollout.generation == w.generation {
                    rollout.ready += 1;
                }
            }
        }
        if ready {
            // It serves its slot now: its age counts.
            self.arm_age(id);
        }
    }

    /// Sets slot `index`'s young-death count, keeping the failing-slot count true.
    pub(super) fn set_failures(&mut self, index: usize, failures: u32) {
        let slot = &mut self.slots[index];
        let was = slot.consecutive_failures > 0;
        slot.consecutive_failures = failures;
        match (was, failures > 0) {
            (false, true) => self.failing_slots += 1,
            (true, false) => self.failing_slots -= 1,
            _ => {}
        }
    }

    pub(super) fn refill(&mut self, now: Instant, index: usize, death: Death) {
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
        let delay = if death == Death::Probation && self.slots[index].take_quick_refill(now) {
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
}

impl SlotState {
    /// Whether the slot may have a quick refill at `now` (a GCRA: one per
    /// `QUICK_REFILL_INTERVAL` on average, `QUICK_REFILL_BURST` in a row), taking it.
    pub(super) fn take_quick_refill(&mut self, now: Instant) -> bool {
        let tolerance = QUICK_REFILL_INTERVAL * QUICK_REFILL_BURST.saturating_sub(1);
        let tat = self.quick_tat.map_or(now, |tat| tat.max(now));
        if tat <= now + tolerance {
            self.quick_tat = Some(tat + QUICK_REFILL_INTERVAL);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_refills_come_in_a_burst_then_one_per_interval() {
        let t0 = crate::test_epoch();
        let mut slot = SlotState::default();
        for n in 0..QUICK_REFILL_BURST {
            assert!(slot.take_quick_refill(t0), "refill {n} of the burst");
        }
        assert!(!slot.take_quick_refill(t0), "the burst is used up");
        // One interval later, one more.
        let later = t0 + QUICK_REFILL_INTERVAL;
        assert!(slot.take_quick_refill(later));
        assert!(!slot.take_quick_refill(later));
    }

    #[test]
    fn a_quiet_slot_gets_its_whole_burst_back() {
        let t0 = crate::test_epoch();
        let mut slot = SlotState::default();
        while slot.take_quick_refill(t0) {}
        let quiet = t0 + QUICK_REFILL_INTERVAL * QUICK_REFILL_BURST;
        for _ in 0..QUICK_REFILL_BURST {
            assert!(slot.take_quick_refill(quiet));
        }
    }
}
