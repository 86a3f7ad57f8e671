//! The core's deadlines: one ordered set of every per-worker deadline (each named by
//! its [`WorkerTimer`]), probation end and per-slot respawn time, and the methods that
//! keep a worker's or slot's own record of its deadline and the set in step.

use std::collections::BTreeSet;
use std::time::Instant;

use super::ClusterState;
use crate::WorkerId;

/// Every armed deadline, in deadline order (at equal times, in [`TimerKey`] order).
#[derive(Debug, Default)]
pub(super) struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    /// Moves timer `key` from `old` (if it was armed) to `new` (if it is to be).
    pub(super) fn reschedule(&mut self, key: TimerKey, old: Option<Instant>, new: Option<Instant>) {
        if let Some(at) = old {
            self.set.remove(&(at, key));
        }
        if let Some(at) = new {
            self.set.insert((at, key));
        }
    }

    /// The earliest deadline and its timer.
    pub(super) fn next(&self) -> Option<(Instant, TimerKey)> {
        self.set.first().copied()
    }

    /// Disarms the earliest deadline.
    pub(super) fn pop_next(&mut self) -> Option<(Instant, TimerKey)> {
        self.set.pop_first()
    }

    /// Whether timer `key` is armed for `at`.
    pub(super) fn contains(&self, at: Instant, key: TimerKey) -> bool {
        self.set.contains(&(at, key))
    }

    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.set.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// A ready worker's probation ends (ordered first: at equal times a worker passes
    /// probation before its other deadlines are looked at).
    Probation(WorkerId),
    /// A worker's own deadline, and which one it is.
    Worker(WorkerId, WorkerTimer),
    Respawn(usize),
}

/// Which of its deadlines a worker waits for (a worker has at most one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum WorkerTimer {
    /// [`Readiness::Delay`](crate::Readiness::Delay): a booting worker still alive then is ready (unless its boot
    /// timeout has passed by then).
    ReadinessDelay,
    /// A booting worker that has not said `READY=1` by then failed to boot.
    BootTimeout,
    /// A ready worker that sends heartbeats: is it silent for the hang timeout? (Re-armed
    /// from its last heartbeat when not.)
    HeartbeatCheck,
    /// A hung worker got the diagnostic signal: SIGKILL follows.
    HangGrace,
    /// A worker asked to stop (or announcing it stops) outside a shutdown: SIGKILL
    /// follows (during a shutdown the global force deadline bounds every worker).
    StopGrace,
}

impl ClusterState {
    pub(super) fn set_worker_deadline(
        &mut self,
        id: WorkerId,
        deadline: Option<(Instant, WorkerTimer)>,
    ) {
        let w = self.workers.get_mut(&id).expect("worker for deadline");
        if let Some((at, timer)) = std::mem::replace(&mut w.deadline, deadline) {
            self.timers
                .reschedule(TimerKey::Worker(id, timer), Some(at), None);
        }
        if let Some((at, timer)) = deadline {
            self.timers
                .reschedule(TimerKey::Worker(id, timer), None, Some(at));
        }
    }

    pub(super) fn set_respawn(&mut self, index: usize, at: Option<Instant>) {
        let old = std::mem::replace(&mut self.slots[index].respawn_at, at);
        self.timers.reschedule(TimerKey::Respawn(index), old, at);
    }

    pub(super) fn set_probation(&mut self, id: WorkerId, at: Option<Instant>) {
        let w = self.workers.get_mut(&id).expect("worker for probation");
        let old = w.life.replace_probation(at);
        self.timers.reschedule(TimerKey::Probation(id), old, at);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_come_in_time_order_then_key_order() {
        let t0 = crate::test_epoch();
        let later = t0 + Duration::from_millis(5);
        let mut timers = Timers::default();
        let boot = TimerKey::Worker(WorkerId(2), WorkerTimer::BootTimeout);
        timers.reschedule(TimerKey::Respawn(0), None, Some(t0));
        timers.reschedule(boot, None, Some(later));
        timers.reschedule(TimerKey::Probation(WorkerId(7)), None, Some(t0));
        // At equal times a probation ends before anything else is looked at.
        assert_eq!(
            timers.pop_next(),
            Some((t0, TimerKey::Probation(WorkerId(7))))
        );
        assert_eq!(timers.pop_next(), Some((t0, TimerKey::Respawn(0))));
        assert_eq!(timers.next(), Some((later, boot)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn rescheduling_moves_a_timer_and_disarming_removes_it() {
        let t0 = crate::test_epoch();
        let key = TimerKey::Worker(WorkerId(1), WorkerTimer::HeartbeatCheck);
        let mut timers = Timers::default();
        timers.reschedule(key, None, Some(t0));
        let later = t0 + Duration::from_secs(1);
        timers.reschedule(key, Some(t0), Some(later));
        assert!(!timers.contains(t0, key));
        assert!(timers.contains(later, key));
        assert_eq!(timers.len(), 1);
        assert!(!timers.is_empty());
        timers.reschedule(key, Some(later), None);
        assert!(timers.is_empty());
    }
}
