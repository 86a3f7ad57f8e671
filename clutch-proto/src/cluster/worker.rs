//! A worker as the core sees it: its [`WorkerPhase`] (what belongs to one stage lives
//! in its variant), how it departs ([`Departure`]), and how it is asked to go.

use std::time::Instant;

use super::readiness::Liveness;
use super::recycle::Recycle;
use super::timers::{TimerKey, WorkerTimer};
use super::ClusterState;
use crate::{Action, Event, Pid, ReloadFailure, Signal, Slot, StopReason, WorkerId, WorkerState};

#[derive(Debug)]
pub(super) struct Worker {
    pub(super) slot: Slot,
    pub(super) generation: u64,
    /// Where it is in its life, with what belongs to that stage only.
    pub(super) phase: WorkerPhase,
    pub(super) spawned_at: Instant,
    /// Started, ready, heartbeats, probation.
    pub(super) life: Liveness,
    /// This worker's entry in `timers`, if any, and which deadline it is.
    pub(super) deadline: Option<(Instant, WorkerTimer)>,
    /// Its age timer, or the recycle under way (only while it serves its slot ready).
    pub(super) recycle: Recycle,
}

/// Where a worker is in its life. What belongs to one stage only lives in its variant:
/// a pid once spawned, a pending stop only while spawning, a stop reason once leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkerPhase {
    /// A spawn was asked for; the driver has not reported the pid yet. `stop`: the
    /// master decided meanwhile that it goes — why, and the signal to send as soon as
    /// its pid is known.
    Spawning { stop: Option<(StopReason, Signal)> },
    /// Running, not ready yet.
    Booting { pid: Pid },
    /// Ready: serving.
    Ready { pid: Pid },
    /// The master decided it goes (or it announced it does): its exit is expected.
    Leaving {
        pid: Pid,
        reason: StopReason,
        how: Leaving,
    },
}

/// How a leaving worker is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaving {
    /// The diagnostic signal went out; SIGKILL follows after the grace.
    Hung,
    /// Asked to stop (SIGTERM sent), or said it is stopping (`STOPPING=1`).
    Stopping,
    /// SIGKILL sent; waiting for the exit.
    Killed,
}

impl Worker {
    pub(super) fn pid(&self) -> Option<Pid> {
        match self.phase {
            WorkerPhase::Spawning { .. } => None,
            WorkerPhase::Booting { pid }
            | WorkerPhase::Ready { pid }
            | WorkerPhase::Leaving { pid, .. } => Some(pid),
        }
    }

    pub(super) fn state(&self) -> WorkerState {
        match self.phase {
            WorkerPhase::Spawning { .. } => WorkerState::Spawning,
            WorkerPhase::Booting { .. } => WorkerState::Booting,
            WorkerPhase::Ready { .. } => WorkerState::Ready,
            WorkerPhase::Leaving { how, .. } => match how {
                Leaving::Hung => WorkerState::Hung,
                Leaving::Stopping => WorkerState::Stopping,
                Leaving::Killed => WorkerState::Killed,
            },
        }
    }

    /// Why the master decided it goes, once it did (while spawning, too).
    pub(super) fn stop_reason(&self) -> Option<StopReason> {
        match self.phase {
            WorkerPhase::Spawning { stop } => stop.map(|(reason, _)| reason),
            WorkerPhase::Booting { .. } | WorkerPhase::Ready { .. } => None,
            WorkerPhase::Leaving { reason, .. } => Some(reason),
        }
    }
}

/// How a worker left its slot without being asked (or was removed for cause): decides
/// whether a rollout fails or the breaker counts, and how soon the slot is refilled.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Departure {
    /// Before it was ready: a boot failure (the failure says how, for a rollout).
    Boot(ReloadFailure),
    /// Ready, but for less than the minimum uptime.
    Probation(ReloadFailure),
    /// After its probation: a one-off, replaced at once.
    Proven,
    /// The master could not start it (out of resources): not the program's fault. It
    /// fails a rollout whose successor it was; a current slot is only refilled.
    Resource(ReloadFailure),
}

impl Departure {
    /// How the life ended, for the backoff.
    pub(super) fn death(&self) -> Death {
        match self {
            Self::Boot(_) | Self::Resource(_) => Death::Boot,
            Self::Probation(_) => Death::Probation,
            Self::Proven => Death::Proven,
        }
    }
}

/// How a departing worker's life ended, for the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Death {
    /// Before it was ready.
    Boot,
    /// Ready, but for less than the minimum uptime.
    Probation,
    /// After its probation: a one-off, replaced at once.
    Proven,
}

impl ClusterState {
    /// Asks worker `id` to go with `signal` (TERM or KILL), remembering why. A worker still
    /// being spawned gets the signal as soon as its pid is known.
    pub(super) fn stop_worker(
        &mut self,
        now: Instant,
        id: WorkerId,
        reason: StopReason,
        signal: Signal,
    ) {
        let shutting_down = self.lifecycle.is_stopping();
        let grace = self.config.force_exit_timeout();
        let w = self.workers.get_mut(&id).expect("worker to stop");
        // The first reason given is the one that counts.
        let (pid, reason) = match w.phase {
            WorkerPhase::Spawning { stop } => {
                let (reason, pending) = stop.unwrap_or((reason, signal));
                // A KILL decided earlier is not softened into a TERM.
                let pending = if pending == Signal::Kill {
                    pending
                } else {
                    signal
                };
                w.phase = WorkerPhase::Spawning {
                    stop: Some((reason, pending)),
                };
                return;
            }
            WorkerPhase::Booting { pid } | WorkerPhase::Ready { pid } => (pid, reason),
            WorkerPhase::Leaving {
                how: Leaving::Killed,
                ..
            } => return,
            WorkerPhase::Leaving {
                how: Leaving::Stopping,
                ..
            } if signal == Signal::Term => return,
            WorkerPhase::Leaving { pid, reason, .. } => (pid, reason),
        };
        let deadline = if signal == Signal::Kill {
            w.phase = WorkerPhase::Leaving {
                pid,
                reason,
                how: Leaving::Killed,
            };
            None
        } else {
            w.phase = WorkerPhase::Leaving {
                pid,
                reason,
                how: Leaving::Stopping,
            };
            // During shutdown the global force deadline bounds every worker.
            (!shutting_down).then(|| (now + grace, WorkerTimer::StopGrace))
        };
        self.actions.push_back(Action::Signal { id, pid, signal });
        self.set_worker_deadline(id, deadline);
    }

    pub(super) fn remove_worker(&mut self, id: WorkerId) {
        let w = self.workers.remove(&id).expect("worker to remove");
        if let Some((at, timer)) = w.deadline {
            self.timers
                .reschedule(TimerKey::Worker(id, timer), Some(at), None);
        }
        if let Some(at) = w.life.probation_at() {
            self.timers
                .reschedule(TimerKey::Probation(id), Some(at), None);
        }
        self.timers
            .reschedule(TimerKey::Recycle(id), w.recycle.timer(), None);
        if self.workers.is_empty() {
            self.emit(Event::NoWorkers);
        }
    }
}
