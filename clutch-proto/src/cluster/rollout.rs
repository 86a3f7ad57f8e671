//! Rolling restarts: a rollout replaces workers a batch at a time, starting each new
//! worker (a slot's successor) first and stopping the old one only once the new one has
//! passed probation; a young death of a new worker aborts it.

use std::time::{Duration, Instant};

use super::lifecycle::Lifecycle;
use super::slots::{Role, Successor};
use super::ClusterState;
use crate::{Action, CommandError, Event, Notice, ReloadFailure, Signal, StopReason};

#[derive(Debug)]
pub(super) struct Rollout {
    pub(super) generation: u64,
    pub(super) from_generation: u64,
    pub(super) started_at: Instant,
    /// Next slot to consider for replacement.
    pub(super) cursor: usize,
    /// Slots with a successor booting or in probation.
    pub(super) in_flight: usize,
    /// Slots whose current worker is of `generation`, ready and proven.
    pub(super) ready: usize,
    /// Successors that are ready (in probation).
    pub(super) ready_successors: usize,
    /// Another reload was asked for meanwhile.
    pub(super) queued: bool,
}

impl Rollout {
    /// A rollout of `generation` replacing `from_generation`, starting at `now`.
    pub(super) fn new(generation: u64, from_generation: u64, now: Instant) -> Self {
        Self {
            generation,
            from_generation,
            started_at: now,
            cursor: 0,
            in_flight: 0,
            ready: 0,
            ready_successors: 0,
            queued: false,
        }
    }

    /// Whether every one of `slots` slots runs a ready, proven worker of the new
    /// generation.
    pub(super) fn is_finished(&self, slots: usize) -> bool {
        self.ready == slots
    }

    /// The next slot to consider for a successor, if the batch has room (`batch`
    /// successors at most in flight) and slots are left to walk. The cursor only moves
    /// forward, so a whole rollout walks the slots once.
    pub(super) fn next_slot(&mut self, batch: usize, slots: usize) -> Option<usize> {
        if self.in_flight >= batch || self.cursor >= slots {
            return None;
        }
        self.cursor += 1;
        Some(self.cursor - 1)
    }

    /// How long it has run at `now`.
    pub(super) fn took(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started_at)
    }
}

impl ClusterState {
    /// Starts or queues a rollout; answers the generation that will answer it (a queued
    /// rollout gets the next generation number when it starts).
    pub(super) fn reload_inner(&mut self, now: Instant) -> Result<u64, CommandError> {
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

    pub(super) fn start_rollout(&mut self, now: Instant) {
        // Before the rollout is under way: a recycle's successor is no rollout's.
        self.defer_recycles(now);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.lifecycle = Lifecycle::Serving(Some(Rollout::new(generation, self.generation, now)));
        self.generation = generation;
        self.stats.reloads_started += 1;
        self.emit(Event::ReloadStarted { generation });
        self.actions.push_back(Action::Notify(Notice::Reloading));
    }

    pub(super) fn rollout_failed(&mut self, now: Instant, reason: ReloadFailure) {
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
            // (During a rollout every successor is the rollout's: see `defer_recycles`.)
            if let Some(Successor { id, .. }) = self.slots[index].successor.take() {
                self.set_probation(id, None);
                self.stop_worker(now, id, StopReason::ReloadAborted, Signal::Term);
            }
        }
        self.actions.push_back(Action::Notify(Notice::Ready));
        if rollout.queued {
            // A reload asked for after this one started may carry the fix: run it.
            self.start_rollout(now);
        } else {
            self.resume_recycles(now);
        }
    }

    /// Moves a rollout forward: start successors up to the batch size, and finish when
    /// every slot runs a ready worker of the new generation. Amortized O(1): the cursor
    /// only moves forward.
    pub(super) fn advance_rollout(&mut self, now: Instant) {
        let batch = self.config.rollout_batch();
        loop {
            let Some(rollout) = self.lifecycle.rollout_mut() else {
                return;
            };
            if rollout.is_finished(self.slots.len()) {
                let rollout = self.lifecycle.take_rollout().expect("rollout");
                self.stats.reloads_finished += 1;
                let took = rollout.took(now);
                self.emit(Event::ReloadFinished {
                    generation: rollout.generation,
                    took,
                });
                self.actions.push_back(Action::Notify(Notice::Ready));
                if rollout.queued {
                    self.start_rollout(now);
                    continue;
                }
                self.resume_recycles(now);
                return;
            }
            let Some(index) = rollout.next_slot(batch, self.slots.len()) else {
                return;
            };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_stops_when_the_batch_is_full_and_resumes_where_it_was() {
        let mut r = Rollout::new(2, 1, crate::test_epoch());
        assert_eq!(r.next_slot(2, 5), Some(0));
        r.in_flight += 1;
        assert_eq!(r.next_slot(2, 5), Some(1));
        r.in_flight += 1;
        assert_eq!(r.next_slot(2, 5), None, "two in flight, a batch of two");
        r.in_flight -= 1;
        assert_eq!(r.next_slot(2, 5), Some(2), "on from where it was");
    }

    #[test]
    fn the_walk_ends_at_the_last_slot() {
        let mut r = Rollout::new(2, 1, crate::test_epoch());
        let walked: Vec<usize> = std::iter::from_fn(|| r.next_slot(usize::MAX, 3)).collect();
        assert_eq!(walked, [0, 1, 2]);
        assert_eq!(r.next_slot(usize::MAX, 3), None);
    }

    #[test]
    fn it_is_finished_when_every_slot_runs_the_new_generation_proven() {
        let t0 = crate::test_epoch();
        let mut r = Rollout::new(3, 2, t0);
        assert!(!r.is_finished(2));
        r.ready = 2;
        assert!(r.is_finished(2));
        assert_eq!(r.took(t0 + Duration::from_secs(4)), Duration::from_secs(4));
    }
}
