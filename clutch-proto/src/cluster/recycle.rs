//! Recycling: replacing a serving worker by a fresh one in its slot, the way a rolling
//! restart does it — its successor first, the old worker stopped gracefully only once
//! the successor has passed probation — because it is over a memory limit
//! ([`Input::Recycle`](crate::Input::Recycle) from the driver), reached its maximum age
//! (the core's own timer, `TimerKey::Recycle`), or asked.
//!
//! [`Recycle`] is one worker's record of it (pure: which timer it owns, whether a
//! request applies); [`Jitter`] is the core's one source of pseudo-random numbers,
//! seeded from [`Config::seed`](crate::Config::seed) so a run stays a pure function of
//! its config and inputs. The `ClusterState` half below begins, retries, defers and
//! resumes recycles.
//!
//! The interactions, decided here once:
//!
//! * **during a rolling restart** a recycle is decided (the event goes out, the age is
//!   judged on time) but its successor waits for the rollout's end
//!   ([`RecycleStep::AfterRollout`]): the rollout replaces an old-generation worker
//!   anyway (the recycle then ends with it), and one batch of new workers at a time is
//!   all the surge a rollout allows;
//! * **a rollout starting** while a recycle successor boots stops that successor
//!   ([`StopReason::RecycleSuperseded`]) and defers the recycle the same way;
//! * **a successor that fails young** (at boot or in probation) is the current
//!   generation's program failing young: it is counted by the crash breaker like any
//!   young death, while the old worker serves on; the next successor comes after the
//!   backoff for the recycle's own failures so far ([`RecycleStep::RetryAt`]; the slot
//!   is not failing — it serves — so its own backoff count and the cluster's
//!   `Degraded` are untouched). The breaker never trips on it while the old
//!   worker serves. A successor the master could not start
//!   ([`SpawnErrorKind::Resource`](crate::SpawnErrorKind::Resource)) is retried the
//!   same way, uncounted;
//! * **a ready successor serves**: it counts as serving for the breaker and the service
//!   watchdog (`ready_recyclers`), so the old worker dying young beside it trips
//!   nothing (the simulator found this one: seed 195 of the first campaign);
//! * **the old worker dying first** makes its successor the slot's worker at once (as
//!   in a rollout): the recycle is over;
//! * **shutdown** stops both; **scaling down** the slot stops both;
//! * **a repeated request** for a worker already being recycled is refused with
//!   [`RecycleIgnoreReason::AlreadyRecycling`].

use std::time::{Duration, Instant};

use super::slots::Role;
use super::timers::TimerKey;
use super::ClusterState;
use crate::{
    Event, IgnoreReason, RecycleCause, RecycleIgnoreReason, Signal, StopReason, WorkerId,
    WorkerState,
};

/// One worker's recycling record. Only a ready worker serving its slot (a slot's
/// current worker) has anything but `NotDue`: taking a worker out of its slot resets
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Recycle {
    /// Not being recycled, and no age timer (no maximum age, or not serving a slot).
    #[default]
    NotDue,
    /// Not being recycled yet: its age is up at this time (the `TimerKey::Recycle`
    /// timer, armed when it began serving its slot ready).
    AgeAt(Instant),
    /// Being recycled, for `cause`; `step` says where; `failed`: its successors that
    /// failed young so far (the retry's backoff grows with them; the slot's own backoff
    /// count is untouched: the slot keeps serving).
    Due {
        cause: RecycleCause,
        step: RecycleStep,
        failed: u32,
    },
}

/// Where a recycle under way stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecycleStep {
    /// Its successor is booting or in probation in the slot.
    Successor,
    /// Its last successor failed young: the next is spawned at this time (the
    /// `TimerKey::Recycle` timer), after the slot's backoff.
    RetryAt(Instant),
    /// A rolling restart is under way: the successor is spawned when it ends, if the
    /// rollout has not replaced the worker by then.
    AfterRollout,
}

impl Recycle {
    /// The time of the `TimerKey::Recycle` timer this record owns, if any.
    pub(super) fn timer(self) -> Option<Instant> {
        match self {
            Self::AgeAt(at)
            | Self::Due {
                step: RecycleStep::RetryAt(at),
                ..
            } => Some(at),
            Self::NotDue
            | Self::Due {
                step: RecycleStep::Successor | RecycleStep::AfterRollout,
                ..
            } => None,
        }
    }

    /// Why it is being recycled, if it is.
    pub(super) fn cause(self) -> Option<RecycleCause> {
        match self {
            Self::Due { cause, .. } => Some(cause),
            Self::NotDue | Self::AgeAt(_) => None,
        }
    }

    /// Whether a recycle request applies to a worker with this record (`serving`: it is
    /// its slot's ready worker) in a cluster that is `stopping` or not: `Err` says why not.
    pub(super) fn accepts(self, serving: bool, stopping: bool) -> Result<(), RecycleIgnoreReason> {
        if stopping {
            Err(RecycleIgnoreReason::ShuttingDown)
        } else if self.cause().is_some() {
            Err(RecycleIgnoreReason::AlreadyRecycling)
        } else if !serving {
            Err(RecycleIgnoreReason::NotServing)
        } else {
            Ok(())
        }
    }
}

/// The core's pseudo-random numbers: SplitMix64 (Steele, Lea and Flood), seeded from
/// [`Config::seed`](crate::Config::seed). Small, fast, and good enough to spread ages.
#[derive(Debug, Clone)]
pub(super) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn from `0..=max` (to the nanosecond; the modulo's bias is below
    /// one in 7 000 for the 30-day maximum).
    pub(super) fn draw(&mut self, max: Duration) -> Duration {
        // MAX_DURATION (30 days) fits a u64 of nanoseconds many times over.
        let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let nanos = match max.checked_add(1) {
            Some(span) => self.next_u64() % span,
            None => self.next_u64(),
        };
        Duration::from_nanos(nanos)
    }
}

impl ClusterState {
    /// Replaces worker `id`'s recycling record, keeping its timer in step.
    pub(super) fn set_recycle(&mut self, id: WorkerId, recycle: Recycle) {
        let w = self.workers.get_mut(&id).expect("worker for recycle");
        let old = std::mem::replace(&mut w.recycle, recycle);
        self.timers
            .reschedule(TimerKey::Recycle(id), old.timer(), recycle.timer());
    }

    /// Worker `id` now serves its slot and is ready: with a maximum age configured, its
    /// age timer is armed (from its start, plus its own jitter).
    pub(super) fn arm_age(&mut self, id: WorkerId) {
        let Some(age) = self.config.max_worker_age() else {
            return;
        };
        let jitter = self.jitter.draw(self.config.max_worker_age_jitter());
        let w = &self.workers[&id];
        debug_assert_eq!(w.recycle, Recycle::NotDue);
        let started = w.life.started_at().unwrap_or(w.spawned_at);
        self.set_recycle(id, Recycle::AgeAt(started + age + jitter));
    }

    /// [`Input::Recycle`](crate::Input::Recycle).
    pub(super) fn handle_recycle(&mut self, now: Instant, id: WorkerId, cause: RecycleCause) {
        if !self.accept_input() {
            return;
        }
        let Some(w) = self.workers.get(&id) else {
            return self.ignore("recycle: unknown worker", id);
        };
        let serving = self.role(id, w) == Role::Current && w.state() == WorkerState::Ready;
        if let Err(why) = w.recycle.accepts(serving, self.lifecycle.is_stopping()) {
            self.stats.ignored_inputs += 1;
            self.emit(Event::Ignored {
                reason: IgnoreReason::Recycle { id, why },
            });
            return;
        }
        self.begin_recycle(now, id, cause);
        self.settle(now);
    }

    /// Worker `id`, its slot's ready worker and not being recycled, is to be recycled.
    pub(super) fn begin_recycle(&mut self, now: Instant, id: WorkerId, cause: RecycleCause) {
        let w = &self.workers[&id];
        let (slot, pid) = (w.slot, w.pid().expect("a ready worker has a pid"));
        self.stats.recycles += 1;
        self.emit(Event::WorkerRecycling {
            id,
            slot,
            pid,
            cause,
        });
        let step = if self.lifecycle.rollout().is_some() {
            RecycleStep::AfterRollout
        } else {
            self.spawn(now, slot.0, Role::Recycler);
            RecycleStep::Successor
        };
        self.set_recycle(
            id,
            Recycle::Due {
                cause,
                step,
                failed: 0,
            },
        );
    }

    /// Worker `id`'s recycle timer came due (and was taken off the set).
    pub(super) fn recycle_timer(&mut self, now: Instant, id: WorkerId) {
        let w = self
            .workers
            .get_mut(&id)
            .expect("recycle timer of a live worker");
        // The timer is already off the set: forget it without touching the set.
        let fired = std::mem::take(&mut w.recycle);
        match fired {
            Recycle::AgeAt(_) => self.begin_recycle(now, id, RecycleCause::Age),
            Recycle::Due {
                cause,
                step: RecycleStep::RetryAt(_),
                failed,
            } => self.spawn_recycle_successor(now, id, cause, failed),
            Recycle::NotDue
            | Recycle::Due {
                step: RecycleStep::Successor | RecycleStep::AfterRollout,
                ..
            } => unreachable!("a recycle timer belongs to an age or a retry"),
        }
    }

    fn spawn_recycle_successor(
        &mut self,
        now: Instant,
        id: WorkerId,
        cause: RecycleCause,
        failed: u32,
    ) {
        let index = self.workers[&id].slot.0;
        self.spawn(now, index, Role::Recycler);
        self.set_recycle(
            id,
            Recycle::Due {
                cause,
                step: RecycleStep::Successor,
                failed,
            },
        );
    }

    /// Slot `index`'s recycle successor failed young: the old worker serves on, and
    /// the next successor comes after the backoff for the recycle's failures so far.
    pub(super) fn retry_recycle(&mut self, now: Instant, index: usize) {
        let id = self.slots[index]
            .current
            .expect("a recycle successor's slot has its old worker");
        let Recycle::Due { cause, failed, .. } = self.workers[&id].recycle else {
            unreachable!("the old worker is being recycled")
        };
        let failed = failed.saturating_add(1);
        let at = now + self.config.backoff().delay(failed);
        self.stats.recycle_retries += 1;
        self.set_recycle(
            id,
            Recycle::Due {
                cause,
                step: RecycleStep::RetryAt(at),
                failed,
            },
        );
    }

    /// A rolling restart begins (called before it is under way): every recycle's
    /// successor is stopped and every recycle waits for the rollout's end.
    pub(super) fn defer_recycles(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            let Some(id) = self.slots[index].current else {
                continue;
            };
            let Recycle::Due { cause, failed, .. } = self.workers[&id].recycle else {
                continue;
            };
            if let Some(successor) = self.slots[index].successor {
                self.detach(successor.id);
                self.stop_worker(
                    now,
                    successor.id,
                    StopReason::RecycleSuperseded,
                    Signal::Term,
                );
            }
            self.set_recycle(
                id,
                Recycle::Due {
                    cause,
                    step: RecycleStep::AfterRollout,
                    failed,
                },
            );
        }
    }

    /// The rolling restart ended (finished or failed, none queued): the recycles it
    /// deferred that it did not carry out itself resume.
    pub(super) fn resume_recycles(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            let Some(id) = self.slots[index].current else {
                continue;
            };
            if let Recycle::Due {
                cause,
                step: RecycleStep::AfterRollout,
                failed,
            } = self.workers[&id].recycle
            {
                self.spawn_recycle_successor(now, id, cause, failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_owns_a_timer_for_its_age_or_its_retry_only() {
        let t0 = crate::test_epoch();
        let cause = RecycleCause::Age;
        let table = [
            (Recycle::NotDue, None, None),
            (Recycle::AgeAt(t0), Some(t0), None),
            (
                Recycle::Due {
                    cause,
                    step: RecycleStep::Successor,
                    failed: 0,
                },
                None,
                Some(cause),
            ),
            (
                Recycle::Due {
                    cause,
                    step: RecycleStep::RetryAt(t0),
                    failed: 1,
                },
                Some(t0),
                Some(cause),
            ),
            (
                Recycle::Due {
                    cause,
                    step: RecycleStep::AfterRollout,
                    failed: 0,
                },
                None,
                Some(cause),
            ),
        ];
        for (recycle, timer, due) in table {
            assert_eq!(
                (recycle.timer(), recycle.cause()),
                (timer, due),
                "{recycle:?}"
            );
        }
    }

    #[test]
    fn a_request_applies_only_to_a_serving_worker_not_yet_recycled_outside_a_shutdown() {
        use RecycleIgnoreReason as R;
        let due = Recycle::Due {
            cause: RecycleCause::Requested,
            step: RecycleStep::Successor,
            failed: 0,
        };
        let t0 = crate::test_epoch();
        let table = [
            // (record, serving, stopping) → answer
            (Recycle::NotDue, true, false, Ok(())),
            (Recycle::AgeAt(t0), true, false, Ok(())),
            (Recycle::NotDue, false, false, Err(R::NotServing)),
            (due, true, false, Err(R::AlreadyRecycling)),
            (due, false, false, Err(R::AlreadyRecycling)),
            (Recycle::NotDue, true, true, Err(R::ShuttingDown)),
            (due, true, true, Err(R::ShuttingDown)),
        ];
        for (recycle, serving, stopping, answer) in table {
            assert_eq!(
                recycle.accepts(serving, stopping),
                answer,
                "{recycle:?} serving={serving} stopping={stopping}"
            );
        }
    }

    #[test]
    fn jitter_is_within_its_bound_deterministic_and_spread() {
        let max = Duration::from_secs(10);
        let mut a = Jitter::new(42);
        let mut b = Jitter::new(42);
        let draws: Vec<Duration> = (0..1000).map(|_| a.draw(max)).collect();
        assert!(draws.iter().all(|&d| d <= max));
        assert_eq!(
            draws,
            (0..1000).map(|_| b.draw(max)).collect::<Vec<_>>(),
            "same seed, same draws"
        );
        // Spread: both halves of the range are hit, and the draws differ.
        assert!(draws.iter().any(|&d| d < max / 4));
        assert!(draws.iter().any(|&d| d > max * 3 / 4));
        let mut c = Jitter::new(43);
        assert_ne!(c.draw(max), draws[0], "another seed, another draw");
        assert_eq!(Jitter::new(1).draw(Duration::ZERO), Duration::ZERO);
        // The first SplitMix64 output for seed 0 (the published reference value).
        assert_eq!(Jitter::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        assert!(
            Jitter::new(5).draw(Duration::from_nanos(u64::MAX)) <= Duration::from_nanos(u64::MAX)
        );
    }
}
