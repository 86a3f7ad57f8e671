//! What a departure leads to: a young death fails the rollout it belonged to or is
//! counted by the crash [`Breaker`](super::breaker::Breaker); then its slot is refilled.
//! The breaker trips (and the cluster shuts down) only while nothing serves.

use std::time::Instant;

use super::slots::Role;
use super::worker::Departure;
use super::ClusterState;
use crate::{Event, ShutdownTrigger};

impl ClusterState {
    /// A worker left slot `index` without being asked (or was removed for cause). A
    /// young death (at boot or in probation) fails a rollout it belonged to, or counts
    /// toward the crash breaker; then the slot is refilled (after a backoff if the
    /// worker died young). A [`Departure::Resource`] is not the program's: it still
    /// fails a rollout whose successor it hit, but a current worker's slot is only
    /// refilled.
    pub(super) fn after_departure(
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

    /// A failure of the program's own (a boot failure or a death in probation).
    pub(super) fn count_failure(&mut self, now: Instant) {
        self.stats.boot_failures += 1;
        self.breaker.count(now, self.proven_count > 0);
        self.check_breaker(now);
    }

    pub(super) fn breaker_threshold(&self) -> usize {
        (self.config.crash_budget().failures as usize).max(self.slots.len())
    }

    /// When the breaker trips if nothing changes: only while no worker serves and
    /// enough failures were counted.
    pub(super) fn breaker_at(&self) -> Option<Instant> {
        if self.lifecycle.is_stopping() || self.serving_workers() > 0 {
            return None;
        }
        self.breaker
            .due_at(self.breaker_threshold(), self.config.crash_budget().window)
    }

    /// Trips the breaker when no worker serves, the cluster has been failing for the
    /// window and enough failures were counted. Runs after every input (and when a
    /// failure is counted, before its slot is refilled).
    pub(super) fn check_breaker(&mut self, now: Instant) {
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
}
