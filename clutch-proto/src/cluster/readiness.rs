//! Readiness and hang detection: a worker becomes ready (by `READY=1`, at spawn, or
//! after the readiness delay), serves its probation and is proven; a booting worker
//! times out; a ready one that sent heartbeats and went silent is hung.
//!
//! [`Liveness`] is one worker's record of it, and decides from it alone (what the
//! heartbeat check finds, whether a probation is over, how a departure counts); the
//! `ClusterState` half below turns its answers into timers, events and slot changes.

use std::time::{Duration, Instant};

use super::slots::Role;
use super::timers::WorkerTimer;
use super::worker::{Departure, Leaving, WorkerPhase};
use super::ClusterState;
use crate::{Action, Event, Notice, ProbationLeave, ReloadFailure, Signal, StopReason, WorkerId};

/// One worker's readiness record: when it started, became ready and last sent a
/// heartbeat, and where it stands in its probation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Liveness {
    started_at: Option<Instant>,
    ready_at: Option<Instant>,
    last_heartbeat: Option<Instant>,
    /// When its probation ends (ready workers that have not yet passed it, while the
    /// probation timer is armed).
    probation_at: Option<Instant>,
    /// Ready for at least the minimum uptime.
    proven: bool,
}

/// What the heartbeat check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeartbeatCheck {
    /// No heartbeats, or hang detection is off: nothing to watch.
    Off,
    /// A heartbeat came since the check was armed: check again at this time.
    Again(Instant),
    /// Silent for the hang timeout or longer.
    Hung { silent_for: Duration },
}

impl Liveness {
    pub(super) fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    pub(super) fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    pub(super) fn last_heartbeat(&self) -> Option<Instant> {
        self.last_heartbeat
    }

    pub(super) fn probation_at(&self) -> Option<Instant> {
        self.probation_at
    }

    pub(super) fn is_proven(&self) -> bool {
        self.proven
    }

    /// The driver reported its pid at `now`.
    pub(super) fn started(&mut self, now: Instant) {
        self.started_at = Some(now);
    }

    /// Up since it started (or, never started, since it was asked for at `spawned_at`).
    pub(super) fn uptime(&self, now: Instant, spawned_at: Instant) -> Duration {
        now.saturating_duration_since(self.started_at.unwrap_or(spawned_at))
    }

    /// The readiness delay passed at `now` with the worker alive: it is ready if that
    /// is still within its boot timeout (a late timer means it timed out first).
    pub(super) fn is_ready_after_delay(&self, now: Instant, boot_timeout: Duration) -> bool {
        let started = self.started_at.expect("booting workers have started");
        now < started + boot_timeout
    }

    /// It became ready at `now`. Becoming ready counts as a heartbeat for a worker that
    /// sends them: returns when the first hang check is due, if one is.
    pub(super) fn became_ready(
        &mut self,
        now: Instant,
        hang_timeout: Option<Duration>,
    ) -> Option<Instant> {
        self.ready_at = Some(now);
        match (self.last_heartbeat, hang_timeout) {
            (Some(_), Some(timeout)) => {
                self.last_heartbeat = Some(now);
                Some(now + timeout)
            }
            _ => None,
        }
    }

    /// A heartbeat at `now`. Only a ready worker's first one arms a hang check (the
    /// returned time); later ones only move the last heartbeat, and the pending check
    /// re-arms itself when it fires early, so a heartbeat costs O(1).
    pub(super) fn heartbeat(
        &mut self,
        now: Instant,
        hang_timeout: Option<Duration>,
    ) -> Option<Instant> {
        let first = self.last_heartbeat.is_none();
        self.last_heartbeat = Some(now);
        let ready = self.ready_at.is_some();
        hang_timeout.filter(|_| first && ready).map(|t| now + t)
    }

    /// The hang check came due at `now`.
    pub(super) fn check_heartbeat(
        &self,
        now: Instant,
        hang_timeout: Option<Duration>,
    ) -> HeartbeatCheck {
        let (Some(last), Some(timeout)) = (self.last_heartbeat, hang_timeout) else {
            return HeartbeatCheck::Off;
        };
        if now < last + timeout {
            HeartbeatCheck::Again(last + timeout)
        } else {
            HeartbeatCheck::Hung {
                silent_for: now.saturating_duration_since(last),
            }
        }
    }

    /// Sets (or clears) when its probation ends; returns the old time, for the timer.
    pub(super) fn replace_probation(&mut self, at: Option<Instant>) -> Option<Instant> {
        std::mem::replace(&mut self.probation_at, at)
    }

    /// Whether a report at `now` comes at or after its probation's end, before the
    /// probation timer was handled.
    pub(super) fn probation_over(&self, now: Instant) -> bool {
        !self.proven && self.probation_at.is_some_and(|at| at <= now)
    }

    pub(super) fn prove(&mut self) {
        self.proven = true;
    }

    /// How it departs at `now`: `at_boot` and `in_probation` (given how long it had
    /// been ready) say how, for a rollout.
    pub(super) fn departure(
        &self,
        now: Instant,
        at_boot: impl FnOnce() -> ReloadFailure,
        in_probation: impl FnOnce(Duration) -> ReloadFailure,
    ) -> Departure {
        match (self.ready_at, self.proven) {
            (None, _) => Departure::Boot(at_boot()),
            (Some(at), false) => {
                Departure::Probation(in_probation(now.saturating_duration_since(at)))
            }
            (Some(_), true) => Departure::Proven,
        }
    }
}

impl ClusterState {
    pub(super) fn mark_ready(&mut self, now: Instant, id: WorkerId) {
        let hang_timeout = self.config.hang().timeout;
        let w = self.workers.get_mut(&id).expect("worker to mark ready");
        let WorkerPhase::Booting { pid } = w.phase else {
            unreachable!("only booting workers become ready")
        };
        w.phase = WorkerPhase::Ready { pid };
        let hang_check = w.life.became_ready(now, hang_timeout);
        let slot = w.slot;
        self.set_worker_deadline(id, hang_check.map(|at| (at, WorkerTimer::HeartbeatCheck)));
        self.set_probation(id, Some(now + self.config.min_uptime()));
        self.emit(Event::WorkerReady { id, slot, pid });
        match self.role(id, &self.workers[&id]) {
            Role::Current => {
                self.ready_count += 1;
                self.arm_age(id);
            }
            // A recycle's successor serves beside the worker it replaces (and alone if
            // that one dies first: the breaker must see it).
            Role::Recycler => self.ready_recyclers += 1,
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
            // A successor's first READY=1 is its predecessor's to send, with MAINPID=.
            if !self.config.successor() {
                self.actions.push_back(Action::Notify(Notice::Ready));
            }
        }
    }

    /// Worker `id`'s deadline `timer` passed.
    pub(super) fn worker_deadline(&mut self, now: Instant, id: WorkerId, timer: WorkerTimer) {
        let w = &self.workers[&id];
        match timer {
            WorkerTimer::ReadinessDelay => {
                if w.life.is_ready_after_delay(now, self.config.boot_timeout()) {
                    self.mark_ready(now, id);
                } else {
                    self.boot_timed_out(now, id);
                }
            }
            WorkerTimer::BootTimeout => self.boot_timed_out(now, id),
            WorkerTimer::HeartbeatCheck => {
                match w.life.check_heartbeat(now, self.config.hang().timeout) {
                    HeartbeatCheck::Off => {}
                    HeartbeatCheck::Again(at) => {
                        self.set_worker_deadline(id, Some((at, WorkerTimer::HeartbeatCheck)));
                    }
                    HeartbeatCheck::Hung { silent_for } => self.hung(now, id, silent_for),
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
        self.stats.boot_timeouts += 1;
        self.emit(Event::WorkerBootTimedOut { id, slot, pid });
        self.stop_worker(now, id, StopReason::BootTimeout, Signal::Kill);
        let departure = Departure::Boot(ReloadFailure::BootTimeout { id });
        self.after_departure(now, role, slot.0, generation, departure);
    }

    pub(super) fn hung(&mut self, now: Instant, id: WorkerId, silent_for: Duration) {
        self.catch_up_probation(now, id);
        let w = &self.workers[&id];
        let (slot, generation, pid) = (w.slot, w.generation, w.pid().expect("ready has a pid"));
        let departure = w.life.departure(
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
        if self.workers[&id].life.probation_over(now) {
            self.set_probation(id, None);
            self.prove(now, id);
        }
    }

    /// Worker `id` has been ready for the minimum uptime. A current worker makes its
    /// slot healthy again (and the breaker stops counting); a successor replaces its
    /// slot's old worker for good, which is stopped only now.
    pub(super) fn prove(&mut self, now: Instant, id: WorkerId) {
        let w = self.workers.get_mut(&id).expect("worker to prove");
        w.life.prove();
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
            Role::Recycler => {
                // The recycle's point: the old worker goes only now, its successor
                // proven, so the slot never serves with fewer workers because of it.
                let old = self.slots[slot.0]
                    .current
                    .expect("a recycle successor's slot has its old worker");
                self.detach(old);
                self.stop_worker(now, old, StopReason::Recycled, Signal::Term);
                self.stats.recycled += 1;
                self.promote(slot.0);
            }
        }
        self.set_failures(slot.0, 0);
        self.slots[slot.0].quick_tat = None;
        self.breaker.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const HANG: Option<Duration> = Some(Duration::from_secs(10));

    fn boot() -> ReloadFailure {
        ReloadFailure::WorkerStopped { id: WorkerId(1) }
    }

    fn probation(ready_for: Duration) -> ReloadFailure {
        ReloadFailure::LeftInProbation {
            id: WorkerId(1),
            ready_for,
            how: ProbationLeave::Hung,
        }
    }

    #[test]
    fn uptime_counts_from_the_start_or_else_from_the_spawn() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        assert_eq!(life.uptime(t0 + 5 * S, t0), 5 * S, "never started");
        life.started(t0 + 2 * S);
        assert_eq!(life.uptime(t0 + 5 * S, t0), 3 * S);
        assert_eq!(life.uptime(t0, t0), Duration::ZERO, "never negative");
    }

    #[test]
    fn a_readiness_delay_counts_only_within_the_boot_timeout() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        life.started(t0);
        assert!(life.is_ready_after_delay(t0 + 59 * S, 60 * S));
        assert!(
            !life.is_ready_after_delay(t0 + 60 * S, 60 * S),
            "timed out first"
        );
    }

    #[test]
    fn ready_arms_a_hang_check_only_for_a_worker_that_sent_heartbeats() {
        let t0 = crate::test_epoch();
        let mut quiet = Liveness::default();
        assert_eq!(quiet.became_ready(t0, HANG), None, "no heartbeat yet");
        assert_eq!(quiet.ready_at(), Some(t0));
        assert_eq!(quiet.last_heartbeat(), None);

        let mut beating = Liveness::default();
        assert_eq!(beating.heartbeat(t0, HANG), None, "booting: no check yet");
        assert_eq!(beating.became_ready(t0 + S, HANG), Some(t0 + 11 * S));
        assert_eq!(
            beating.last_heartbeat(),
            Some(t0 + S),
            "ready counts as one"
        );

        let mut off = Liveness::default();
        off.heartbeat(t0, None);
        assert_eq!(off.became_ready(t0 + S, None), None, "hang detection off");
        assert_eq!(off.last_heartbeat(), Some(t0), "left as it was");
    }

    #[test]
    fn only_a_ready_workers_first_heartbeat_arms_the_check() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        life.became_ready(t0, HANG);
        assert_eq!(life.heartbeat(t0 + S, HANG), Some(t0 + 11 * S), "the first");
        assert_eq!(
            life.heartbeat(t0 + 2 * S, HANG),
            None,
            "later ones only move it"
        );
        assert_eq!(life.last_heartbeat(), Some(t0 + 2 * S));
        assert_eq!(
            Liveness::default().heartbeat(t0, None),
            None,
            "detection off"
        );
    }

    #[test]
    fn the_heartbeat_check_re_arms_while_heartbeats_come_and_finds_a_silent_worker() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        assert_eq!(
            life.check_heartbeat(t0, HANG),
            HeartbeatCheck::Off,
            "none sent"
        );
        life.became_ready(t0, HANG);
        life.heartbeat(t0 + 4 * S, HANG);
        assert_eq!(life.check_heartbeat(t0 + 4 * S, None), HeartbeatCheck::Off);
        assert_eq!(
            life.check_heartbeat(t0 + 10 * S, HANG),
            HeartbeatCheck::Again(t0 + 14 * S)
        );
        assert_eq!(
            life.check_heartbeat(t0 + 14 * S, HANG),
            HeartbeatCheck::Hung { silent_for: 10 * S },
            "exactly the timeout is a hang"
        );
        assert_eq!(
            life.check_heartbeat(t0 + 20 * S, HANG),
            HeartbeatCheck::Hung { silent_for: 16 * S }
        );
    }

    #[test]
    fn a_probation_is_over_at_its_end_until_proven() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        assert!(!life.probation_over(t0), "not in probation");
        assert_eq!(life.replace_probation(Some(t0 + 2 * S)), None);
        assert!(!life.probation_over(t0 + S));
        assert!(life.probation_over(t0 + 2 * S));
        life.prove();
        assert!(life.is_proven());
        assert!(!life.probation_over(t0 + 3 * S), "proven already");
        assert_eq!(life.replace_probation(None), Some(t0 + 2 * S));
    }

    #[test]
    fn a_departure_is_at_boot_in_probation_or_after_it() {
        let t0 = crate::test_epoch();
        let mut life = Liveness::default();
        life.started(t0);
        assert_eq!(life.departure(t0, boot, probation), Departure::Boot(boot()));
        life.became_ready(t0 + S, HANG);
        assert_eq!(
            life.departure(t0 + 3 * S, boot, probation),
            Departure::Probation(probation(2 * S)),
            "ready for two seconds"
        );
        life.prove();
        assert_eq!(
            life.departure(t0 + 9 * S, boot, probation),
            Departure::Proven
        );
    }
}
