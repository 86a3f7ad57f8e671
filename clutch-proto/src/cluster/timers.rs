//! The core's deadlines: one ordered set of every per-worker deadline (each named by
//! its [`WorkerTimer`]), probation end and per-slot respawn time, and the methods that
//! keep a worker's or slot's own record of its deadline and the set in step.

use std::time::Instant;

use super::ClusterState;
use crate::WorkerId;

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
    /// [`Readiness::Delay`]: a booting worker still alive then is ready (unless its boot
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
            self.timers.remove(&(at, TimerKey::Worker(id, timer)));
        }
        if let Some((at, timer)) = deadline {
            self.timers.insert((at, TimerKey::Worker(id, timer)));
        }
    }

    pub(super) fn set_respawn(&mut self, index: usize, at: Option<Instant>) {
        let slot = &mut self.slots[index];
        if let Some(old) = std::mem::replace(&mut slot.respawn_at, at) {
            self.timers.remove(&(old, TimerKey::Respawn(index)));
        }
        if let Some(at) = at {
            self.timers.insert((at, TimerKey::Respawn(index)));
        }
    }

    pub(super) fn set_probation(&mut self, id: WorkerId, at: Option<Instant>) {
        let w = self.workers.get_mut(&id).expect("worker for probation");
        if let Some(old) = std::mem::replace(&mut w.probation_at, at) {
            self.timers.remove(&(old, TimerKey::Probation(id)));
        }
        if let Some(at) = at {
            self.timers.insert((at, TimerKey::Probation(id)));
        }
    }
}
