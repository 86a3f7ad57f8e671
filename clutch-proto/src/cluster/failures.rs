//! What a departure leads to: a young death fails the rollout it belonged to or is
//! counted by the crash [`Breaker`](super::breaker::Breaker); then its slot is refilled.
//! The breaker trips (and the cluster shuts down) only while nothing serves.

use std::time::Instant;

use super::slots::Role;
use super::worker::{Death, Departure};
use super::ClusterState;
use crate::{Event, ReloadFailure, ShutdownTrigger};

/// What a departure leads to, decided from where the worker stood ([`Role`]), how it
/// departed, and whether it belonged to the rollout under way.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Consequence {
    /// Nothing: it no longer had a slot, or (a successor) it was proven, hence promoted.
    None,
    /// The rollout fails; `refill`: the slot's own worker went too and is replaced
    /// (a successor's slot keeps its old worker).
    FailRollout {
        failure: ReloadFailure,
        refill: Option<Death>,
    },
    /// A failure of the program's own: the breaker counts it, then the slot is refilled
    /// (unless the breaker shut the cluster down).
    CountThenRefill(Death),
    /// Only a refill: a proven worker's one-off death, or one the master could not start.
    Refill(Death),
    /// A recycle's successor failed young: the old worker serves on and the next
    /// successor comes after the slot's backoff. `counted`: the program's own failure
    /// (at boot or in probation), counted by the breaker first; not a spawn the master
    /// could not carry out.
    RetryRecycle { counted: bool },
}

impl Consequence {
    /// `of_rollout`: the worker is of the generation a rollout under way is bringing in.
    pub(super) fn of(role: Role, departure: Departure, of_rollout: bool) -> Self {
        let death = departure.death();
        match (role, departure) {
            (Role::Detached, _) => Self::None,
            // A successor is promoted the moment it is proven (`prove`): it never
            // departs as a successor once proven.
            (Role::Successor, Departure::Proven) => Self::None,
            (
                Role::Successor,
                Departure::Boot(failure)
                | Departure::Probation(failure)
                | Departure::Resource(failure),
            ) => Self::FailRollout {
                failure,
                refill: None,
            },
            (Role::Current, Departure::Boot(failure) | Departure::Probation(failure)) => {
                if of_rollout {
                    Self::FailRollout {
                        failure,
                        refill: Some(death),
                    }
                } else {
                    Self::CountThenRefill(death)
                }
            }
            (Role::Current, Departure::Proven | Departure::Resource(_)) => Self::Refill(death),
            // Like a rollout's successor, a recycle's is promoted the moment it is proven.
            (Role::Recycler, Departure::Proven) => Self::None,
            (Role::Recycler, Departure::Boot(_) | Departure::Probation(_)) => {
                Self::RetryRecycle { counted: true }
            }
            (Role::Recycler, Departure::Resource(_)) => Self::RetryRecycle { counted: false },
        }
    }
}

impl ClusterState {
    /// A worker left slot `index` without being asked (or was removed for cause): see
    /// [`Consequence`]. A [`Departure::Resource`] is not the program's: it still fails a
    /// rollout whose successor it hit, but a current worker's slot is only refilled.
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
        let of_rollout = self.lifecycle.rollout().map(|r| r.generation) == Some(generation);
        match Consequence::of(role, departure, of_rollout) {
            Consequence::None => {}
            Consequence::FailRollout { failure, refill } => {
                self.rollout_failed(now, failure);
                if let Some(death) = refill {
                    self.refill(now, index, death);
                }
            }
            Consequence::CountThenRefill(death) => {
                self.count_failure(now);
                if !self.lifecycle.is_stopping() {
                    self.refill(now, index, death);
                }
            }
            Consequence::Refill(death) => self.refill(now, index, death),
            Consequence::RetryRecycle { counted } => {
                if counted {
                    self.count_failure(now);
                }
                if !self.lifecycle.is_stopping() {
                    self.retry_recycle(now, index);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkerId;

    fn failure() -> ReloadFailure {
        ReloadFailure::WorkerStopped { id: WorkerId(7) }
    }

    #[test]
    fn every_role_and_departure_has_its_consequence() {
        use Consequence as C;
        use Departure as D;
        let (f, fail) = (failure, |refill| C::FailRollout {
            failure: failure(),
            refill,
        });
        // (role, departure, of the rollout under way) → consequence
        let table = [
            (Role::Detached, D::Boot(f()), true, C::None),
            (Role::Detached, D::Probation(f()), false, C::None),
            (Role::Detached, D::Proven, false, C::None),
            (Role::Detached, D::Resource(f()), true, C::None),
            (Role::Successor, D::Boot(f()), true, fail(None)),
            (Role::Successor, D::Probation(f()), true, fail(None)),
            (Role::Successor, D::Resource(f()), true, fail(None)),
            (Role::Successor, D::Proven, true, C::None),
            (Role::Current, D::Boot(f()), true, fail(Some(Death::Boot))),
            (
                Role::Current,
                D::Probation(f()),
                true,
                fail(Some(Death::Probation)),
            ),
            (
                Role::Current,
                D::Boot(f()),
                false,
                C::CountThenRefill(Death::Boot),
            ),
            (
                Role::Current,
                D::Probation(f()),
                false,
                C::CountThenRefill(Death::Probation),
            ),
            (Role::Recycler, D::Proven, false, C::None),
            (
                Role::Recycler,
                D::Boot(f()),
                false,
                C::RetryRecycle { counted: true },
            ),
            (
                Role::Recycler,
                D::Probation(f()),
                false,
                C::RetryRecycle { counted: true },
            ),
            (
                Role::Recycler,
                D::Resource(f()),
                false,
                C::RetryRecycle { counted: false },
            ),
            (Role::Current, D::Proven, true, C::Refill(Death::Proven)),
            (Role::Current, D::Proven, false, C::Refill(Death::Proven)),
            (
                Role::Current,
                D::Resource(f()),
                true,
                C::Refill(Death::Boot),
            ),
            (
                Role::Current,
                D::Resource(f()),
                false,
                C::Refill(Death::Boot),
            ),
        ];
        for (role, departure, of_rollout, expected) in table {
            let what = format!("{role:?} {departure:?} of_rollout={of_rollout}");
            assert_eq!(
                Consequence::of(role, departure, of_rollout),
                expected,
                "{what}"
            );
        }
    }
}
