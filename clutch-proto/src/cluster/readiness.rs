//! Readiness and hang detection: a worker becomes ready (by `READY=1`, at spawn, or
//! after the readiness delay), serves its probation and is proven; a booting worker
//! times out; a ready one that sent heartbeats and went silent is hung.

use std::time::{Duration, Instant};

use super::slots::Role;
use super::timers::WorkerTimer;
use super::worker::{Departure, Leaving, WorkerPhase};
use super::ClusterState;
use crate::{Action, Event, Notice, ProbationLeave, ReloadFailure, Signal, StopReason, WorkerId};

impl ClusterState {
    pub(super) fn mark_ready(&mut self, now: Instant, id: WorkerId) {
        let hang_timeout = self.config.hang().timeout;
        let w = self.workers.get_mut(&id).expect("worker to mark ready");
        let WorkerPhase::Booting { pid } = w.phase else {
            unreachable!("only booting workers become ready")
        };
        w.phase = WorkerPhase::Ready { pid };
        w.ready_at = Some(now);
        let (slot, generation) = (w.slot, w.generation);
        // Becoming ready counts as a heartbeat for a worker that sends them.
        let hang_check = match (w.last_heartbeat.is_some(), hang_timeout) {
            (true, Some(timeout)) => {
                w.last_heartbeat = Some(now);
                Some((now + timeout, WorkerTimer::HeartbeatCheck))
            }
            _ => None,
        };
        self.set_worker_deadline(id, hang_check);
        self.set_probation(id, Some(now + self.config.min_uptime()));
        self.emit(Event::WorkerReady { id, slot, pid });
        let _ = generation;
        match self.role(id, &self.workers[&id]) {
            Role::Current => self.ready_count += 1,
            Role::Successor => {
                // The new worker serves, but its old counterpart goes only once it has
                // passed probation (`prove`).
                self.lifecycle
                    .rollout_mut()
                    .expect("successor only in a rollout")
                    .ready_successors += 1;
            }
            Role::Detached => unreachable!("booting workers are attached"),
        }
        if !self.listening {
            self.listening = true;
            self.emit(Event::Listening { id });
            self.actions.push_back(Action::Notify(Notice::Ready));
        }
    }

    /// Worker `id`'s deadline `timer` passed.
    pub(super) fn worker_deadline(&mut self, now: Instant, id: WorkerId, timer: WorkerTimer) {
        let w = &self.workers[&id];
        match timer {
            WorkerTimer::ReadinessDelay => {
                let started = w.started_at.expect("booting workers have started");
                if now < started + self.config.boot_timeout() {
                    // The readiness delay ran out with the worker alive: it is ready.
                    self.mark_ready(now, id);
                } else {
                    self.boot_timed_out(now, id);
                }
            }
            WorkerTimer::BootTimeout => self.boot_timed_out(now, id),
            WorkerTimer::HeartbeatCheck => {
                let (Some(last), Some(timeout)) = (w.last_heartbeat, self.config.hang().timeout)
                else {
                    return;
                };
                if now < last + timeout {
                    let at = last + timeout;
                    self.set_worker_deadline(id, Some((at, WorkerTimer::HeartbeatCheck)));
                } else {
                    self.hung(now, id, now.saturating_duration_since(last));
                }
            }
            WorkerTimer::HangGrace | WorkerTimer::StopGrace => {
                // Only leaving workers wait out a grace; they keep their reason.
                if let WorkerPhase::Leaving { reason, .. } = w.phase {
                    self.stop_worker(now, id, reason, Signal::Kill);
                }
            }
        }
    }

    pub(super) fn boot_timed_out(&mut self, now: Instant, id: WorkerId) {
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid().expect("booting has a pid"));
        let role = self.detach(id);
        self.emit(Event::WorkerBootTimedOut { id, slot, pid });
        self.stop_worker(now, id, StopReason::BootTimeout, Signal::Kill);
        let departure = Departure::Boot(ReloadFailure::BootTimeout { id });
        self.after_departure(now, role, slot.0, generation, departure);
    }

    pub(super) fn hung(&mut self, now: Instant, id: WorkerId, silent_for: Duration) {
        self.catch_up_probation(now, id);
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid().expect("ready has a pid"));
        let departure = Departure::of(
            w,
            now,
            || unreachable!("only ready workers hang"),
            |ready_for| ReloadFailure::LeftInProbation {
                id,
                ready_for,
                how: ProbationLeave::Hung,
            },
        );
        self.stats.hung += 1;
        let role = self.detach(id);
        self.emit(Event::WorkerHung {
            id,
            slot,
            pid,
            silent_for,
        });
        match self.config.hang().signal {
            Some(signal) => {
                let w = self.workers.get_mut(&id).expect("hung worker");
                w.phase = WorkerPhase::Leaving {
                    pid,
                    reason: StopReason::Hung,
                    how: Leaving::Hung,
                };
                self.actions.push_back(Action::Signal { id, pid, signal });
                let at = now + self.config.hang().grace;
                self.set_worker_deadline(id, Some((at, WorkerTimer::HangGrace)));
            }
            None => self.stop_worker(now, id, StopReason::Hung, Signal::Kill),
        }
        self.after_departure(now, role, slot.0, generation, departure);
    }

    /// A report about a ready worker at or after its probation's end, before the
    /// probation timer was handled: it passed probation first.
    pub(super) fn catch_up_probation(&mut self, now: Instant, id: WorkerId) {
        let w = &self.workers[&id];
        if !w.proven && w.probation_at.is_some_and(|at| at <= now) {
            self.set_probation(id, None);
            self.prove(now, id);
        }
    }

    /// Worker `id` has been ready for the minimum uptime. A current worker makes its
    /// slot healthy again (and the breaker stops counting); a successor replaces its
    /// slot's old worker for good, which is stopped only now.
    pub(super) fn prove(&mut self, now: Instant, id: WorkerId) {
        let w = self.workers.get_mut(&id).expect("worker to prove");
        w.proven = true;
        let (slot, generation) = (w.slot, w.generation);
        match self.role(id, &self.workers[&id]) {
            Role::Detached => return,
            Role::Current => {
                self.proven_count += 1;
                if let Some(r) = self
                    .lifecycle
                    .rollout_mut()
                    .filter(|r| r.generation == generation)
                {
                    r.ready += 1;
                }
            }
            Role::Successor => {
                if let Some(old) = self.slots[slot.0].current {
                    self.detach(old);
                    self.stop_worker(now, old, StopReason::Reload, Signal::Term);
                }
                self.promote(slot.0);
            }
        }
        self.set_failures(slot.0, 0);
        self.slots[slot.0].quick_tat = None;
        self.breaker.reset();
    }
}
