//! [`Shutdown`]: a shutdown under way — when it began, what began it, and where its
//! force deadline stands. Pure: it decides the exit reason and whether a TERM/INT is a
//! repeat; `ClusterState` stops the workers.

use std::time::{Duration, Instant};

use super::lifecycle::Lifecycle;
use super::recycle::Recycle;
use super::worker::{Leaving, WorkerPhase};
use super::ClusterState;
use crate::{
    Action, Event, IgnoreReason, Notice, ReloadFailure, Signal, StopReason, UpgradeFailure,
    WorkerId,
};
use crate::{ExitReason, ShutdownTrigger, SIGNAL_REPEAT_WINDOW};

/// A shutdown under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shutdown {
    /// When it began (a TERM/INT within the repeat window is a repeat).
    started_at: Instant,
    /// What began it: a failure trigger imposes its exit reason.
    trigger: ShutdownTrigger,
    force: Force,
}

/// Where the force (SIGKILL to every remaining worker) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Force {
    /// Not yet: it comes at this deadline.
    Armed(Instant),
    /// It came (the deadline passed, or an immediate stop was asked) and found nobody
    /// left to kill.
    Fired,
    /// It came and some worker had to be killed: the exit says it was forced.
    Killed,
}

impl Shutdown {
    /// A shutdown beginning at `now` for `trigger`, forced after `force_exit_timeout`.
    pub(super) fn new(
        now: Instant,
        trigger: ShutdownTrigger,
        force_exit_timeout: Duration,
    ) -> Self {
        Self {
            started_at: now,
            trigger,
            force: Force::Armed(now + force_exit_timeout),
        }
    }

    /// Whether a TERM/INT at `now` repeats the request that began the shutdown (within
    /// [`SIGNAL_REPEAT_WINDOW`]) rather than asking to force it.
    pub(super) fn is_repeat(&self, now: Instant) -> bool {
        now < self.started_at + SIGNAL_REPEAT_WINDOW
    }

    /// The force deadline, until the force came.
    pub(super) fn force_at(&self) -> Option<Instant> {
        match self.force {
            Force::Armed(at) => Some(at),
            Force::Fired | Force::Killed => None,
        }
    }

    /// The force came; `killed` says whether it had anyone to kill.
    pub(super) fn forced(&mut self, killed: bool) {
        if killed {
            self.force = Force::Killed;
        } else if let Force::Armed(_) = self.force {
            self.force = Force::Fired;
        }
    }

    /// How the master exits once every worker is gone: a failure trigger's reason over
    /// `Forced` over `Clean`.
    pub(super) fn exit_reason(&self) -> ExitReason {
        match (self.trigger, self.force) {
            (ShutdownTrigger::Breaker, _) => ExitReason::BreakerTripped,
            (ShutdownTrigger::StartupFailed, _) => ExitReason::StartupFailed,
            (ShutdownTrigger::Upgrade, _) => ExitReason::Upgraded,
            (_, Force::Killed) => ExitReason::Forced,
            (_, Force::Armed(_) | Force::Fired) => ExitReason::Clean,
        }
    }
}

impl ClusterState {
    pub(super) fn begin_shutdown(&mut self, now: Instant, trigger: ShutdownTrigger) {
        if self.lifecycle.is_stopping() {
            // Repeated signals are handled by `handle_signal`; failure triggers only
            // fire outside a shutdown.
            if trigger == ShutdownTrigger::Command {
                self.emit(Event::Ignored {
                    reason: IgnoreReason::AlreadyShuttingDown,
                });
            }
            return;
        }
        if self.lifecycle.take_rollout().is_some() {
            self.stats.reloads_failed += 1;
            let generation = self.generation;
            self.emit(Event::ReloadFailed {
                generation,
                reason: ReloadFailure::ShuttingDown,
            });
        }
        self.emit(Event::ShutdownStarted { trigger });
        if trigger == ShutdownTrigger::Upgrade {
            // The service manager follows the successor now: this master's stop is
            // not the service's.
        } else {
            self.actions.push_back(Action::Notify(Notice::Stopping));
            self.abandon_upgrade(now, UpgradeFailure::ShuttingDown);
        }
        self.lifecycle = Lifecycle::Stopping(Shutdown::new(
            now,
            trigger,
            self.config.force_exit_timeout(),
        ));
        for index in 0..self.slots.len() {
            self.set_respawn(index, None);
            let slot = &mut self.slots[index];
            slot.current = None;
            slot.successor = None;
        }
        self.ready_count = 0;
        self.proven_count = 0;
        self.ready_recyclers = 0;
        self.breaker.reset();
        let probations: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.life.probation_at().is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in probations {
            self.set_probation(id, None);
        }
        // No slot is served any more: no age is watched, no recycle goes on.
        let recycling: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.recycle != Recycle::NotDue)
            .map(|(&id, _)| id)
            .collect();
        for id in recycling {
            self.set_recycle(id, Recycle::NotDue);
        }
        if trigger == ShutdownTrigger::Signal(Signal::Quit) {
            // QUIT means now: no TERM first.
            self.force(now);
            return;
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let w = &self.workers[&id];
            if !w.state().is_leaving() {
                self.stop_worker(now, id, StopReason::Shutdown, Signal::Term);
            }
            // Workers already leaving keep their own (earlier) kill deadline.
        }
    }

    /// SIGKILL every worker not yet killed; the exit will say it was forced.
    pub(super) fn force(&mut self, now: Instant) {
        if !self.lifecycle.is_stopping() {
            return;
        }
        let ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                !matches!(
                    w.phase,
                    WorkerPhase::Leaving {
                        how: Leaving::Killed,
                        ..
                    } | WorkerPhase::Spawning {
                        stop: Some((_, Signal::Kill))
                    }
                )
            })
            .map(|(&id, _)| id)
            .collect();
        self.kill_successor();
        let stopping = self.lifecycle.stopping_mut().expect("stopping");
        stopping.forced(!ids.is_empty());
        if ids.is_empty() {
            return;
        }
        self.emit(Event::ShutdownForced { killed: ids.len() });
        for id in ids {
            self.stop_worker(now, id, StopReason::Shutdown, Signal::Kill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;

    const TIMEOUT: Duration = Duration::from_millis(7500);

    #[test]
    fn the_force_deadline_is_armed_until_the_force_comes() {
        let now = crate::test_epoch();
        let mut s = Shutdown::new(now, ShutdownTrigger::Command, TIMEOUT);
        assert_eq!(s.force_at(), Some(now + TIMEOUT));
        s.forced(false);
        assert_eq!(s.force_at(), None);
        assert_eq!(
            s.exit_reason(),
            ExitReason::Clean,
            "nobody had to be killed"
        );
    }

    #[test]
    fn a_force_that_killed_is_remembered() {
        let now = crate::test_epoch();
        let mut s = Shutdown::new(now, ShutdownTrigger::Signal(Signal::Term), TIMEOUT);
        s.forced(true);
        assert_eq!(s.exit_reason(), ExitReason::Forced);
        // A later force with nobody left does not make it clean again.
        s.forced(false);
        assert_eq!(s.exit_reason(), ExitReason::Forced);
    }

    #[test]
    fn failure_triggers_impose_their_exit_reason() {
        let now = crate::test_epoch();
        for (trigger, reason) in [
            (ShutdownTrigger::Breaker, ExitReason::BreakerTripped),
            (ShutdownTrigger::StartupFailed, ExitReason::StartupFailed),
            (ShutdownTrigger::Upgrade, ExitReason::Upgraded),
        ] {
            let mut s = Shutdown::new(now, trigger, TIMEOUT);
            assert_eq!(s.exit_reason(), reason);
            s.forced(true);
            assert_eq!(s.exit_reason(), reason, "over Forced");
        }
    }

    #[test]
    fn a_signal_within_the_window_is_a_repeat() {
        let now = crate::test_epoch();
        let s = Shutdown::new(now, ShutdownTrigger::Signal(Signal::Int), TIMEOUT);
        assert!(s.is_repeat(now));
        assert!(s.is_repeat(now + SIGNAL_REPEAT_WINDOW - Duration::from_nanos(1)));
        assert!(!s.is_repeat(now + SIGNAL_REPEAT_WINDOW));
    }
}
