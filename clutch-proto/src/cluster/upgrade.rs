//! The upgrade of the master itself, as the old master decides it: a successor master
//! is started ([`Action::SpawnSuccessor`]), starts its own workers, and says it serves
//! ([`SuccessorFact::Ready`]) once they are ready and past their probation; only then
//! does this master hand over — it stops its workers gracefully and exits
//! ([`ExitReason::Upgraded`](crate::ExitReason::Upgraded)). Until then nothing of this
//! master changes, so a failure at any phase (the successor cannot start, exits, or does
//! not serve in time) changes nothing: the successor is stopped and this master serves
//! on.
//!
//! [`Upgrade`] is pure: the phases and their deadlines. `ClusterState` carries out what
//! each fact leads to.

use std::time::Instant;

use super::ClusterState;
use crate::{
    Action, CommandError, Event, Notice, Pid, ShutdownTrigger, Signal, SuccessorFact,
    UpgradeFailure,
};

/// An upgrade under way (or handed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    /// The driver is starting the successor; it must serve by `deadline`.
    Starting {
        /// When it must have said it serves.
        deadline: Instant,
    },
    /// The successor runs as `pid` and starts its workers.
    Booting {
        /// Its pid.
        pid: Pid,
        /// When it must have said it serves.
        deadline: Instant,
    },
    /// The upgrade failed for `cause`: the successor is being stopped, and its exit (or
    /// its failure to start at all) ends the upgrade.
    Abandoning {
        /// Its pid, once known (`None`: its spawn is still to be reported).
        pid: Option<Pid>,
        /// Why the upgrade failed.
        cause: UpgradeFailure,
        /// When it is SIGKILLed, until it was (`None`: it was, or is to be at once).
        kill_at: Option<Instant>,
    },
    /// The successor serves: this master stops its workers and exits.
    HandedOver {
        /// The new master.
        pid: Pid,
        /// It exited since.
        lost: bool,
    },
}

impl Upgrade {
    /// When the core must hear of it again, at the latest.
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            Self::Starting { deadline } | Self::Booting { deadline, .. } => Some(deadline),
            Self::Abandoning { kill_at, .. } => kill_at,
            Self::HandedOver { .. } => None,
        }
    }

    /// Whether this master must wait for the successor's exit before its own: until
    /// the handover (after it, the successor is the master and outlives this one).
    pub(super) fn holds_exit(self) -> bool {
        !matches!(self, Self::HandedOver { .. })
    }

    /// The same upgrade, failed for `cause`: the successor is to be stopped, SIGKILLed
    /// at `kill_at`. An upgrade already failed keeps its first cause; one handed over
    /// cannot fail.
    pub(super) fn abandoned(self, cause: UpgradeFailure, kill_at: Instant) -> Self {
        match self {
            Self::Starting { .. } => Self::Abandoning {
                pid: None,
                cause,
                kill_at: Some(kill_at),
            },
            Self::Booting { pid, .. } => Self::Abandoning {
                pid: Some(pid),
                cause,
                kill_at: Some(kill_at),
            },
            Self::Abandoning { .. } | Self::HandedOver { .. } => self,
        }
    }
}

impl ClusterState {
    /// [`Input::Upgrade`](crate::Input::Upgrade), and `SIGUSR2` when it is not
    /// forwarded.
    pub(super) fn upgrade_inner(&mut self, now: Instant) -> Result<(), CommandError> {
        if self.lifecycle.is_stopping() {
            return Err(CommandError::ShuttingDown);
        }
        if !self.config.upgrades() {
            return Err(CommandError::NoUpgrades);
        }
        if self.config.is_in_process() {
            return Err(CommandError::InProcess);
        }
        if self.upgrade.is_some() {
            return Err(CommandError::UpgradeUnderWay);
        }
        self.upgrade = Some(Upgrade::Starting {
            deadline: now + self.config.upgrade_timeout(),
        });
        self.stats.upgrades_started += 1;
        self.emit(Event::UpgradeStarted);
        // The service manager sees a reload until the new master is its main process
        // (or the upgrade failed).
        self.actions.push_back(Action::Notify(Notice::Reloading));
        self.actions.push_back(Action::SpawnSuccessor);
        Ok(())
    }

    /// [`Input::Successor`](crate::Input::Successor).
    pub(super) fn handle_successor(&mut self, now: Instant, fact: SuccessorFact) {
        if !self.accept_input() {
            return;
        }
        let Some(upgrade) = self.upgrade else {
            self.stats.ignored_inputs += 1;
            return;
        };
        match (upgrade, fact) {
            (Upgrade::Starting { deadline }, SuccessorFact::Spawned { pid }) => {
                self.upgrade = Some(Upgrade::Booting { pid, deadline });
                self.emit(Event::UpgradeSpawned { pid });
            }
            (
                Upgrade::Abandoning {
                    pid: None,
                    cause,
                    kill_at,
                },
                SuccessorFact::Spawned { pid },
            ) => {
                // Failed while it was being started: stop it now it has a pid.
                let signal = if kill_at.is_some() {
                    Signal::Term
                } else {
                    Signal::Kill
                };
                self.actions
                    .push_back(Action::SignalSuccessor { pid, signal });
                self.upgrade = Some(Upgrade::Abandoning {
                    pid: Some(pid),
                    cause,
                    kill_at,
                });
            }
            (Upgrade::Starting { .. }, SuccessorFact::SpawnFailed(error)) => {
                self.upgrade_failed(UpgradeFailure::SpawnFailed(error));
            }
            (
                Upgrade::Abandoning {
                    pid: None, cause, ..
                },
                SuccessorFact::SpawnFailed(_),
            )
            | (
                Upgrade::Abandoning {
                    pid: Some(_),
                    cause,
                    ..
                },
                SuccessorFact::Exited(_),
            ) => {
                self.upgrade_failed(cause);
            }
            (Upgrade::Booting { pid, .. }, SuccessorFact::Ready) => self.hand_over(now, pid),
            (Upgrade::Booting { .. }, SuccessorFact::Exited(status)) => {
                self.upgrade_failed(UpgradeFailure::Exited(status));
            }
            (Upgrade::HandedOver { pid, lost: false }, SuccessorFact::Exited(status)) => {
                self.upgrade = Some(Upgrade::HandedOver { pid, lost: true });
                self.emit(Event::SuccessorLost { pid, status });
            }
            _ => self.stats.ignored_inputs += 1,
        }
        self.settle(now);
    }

    /// The successor serves: tell the service manager it is the main process now, and
    /// stop this master's workers.
    fn hand_over(&mut self, now: Instant, pid: Pid) {
        self.upgrade = Some(Upgrade::HandedOver { pid, lost: false });
        self.stats.upgrades_handed_over += 1;
        self.emit(Event::UpgradeHandedOver { pid });
        // MAINPID= with READY=1: the service manager follows the new master now.
        self.actions.push_back(Action::Notify(Notice::MainPid(pid)));
        self.begin_shutdown(now, ShutdownTrigger::Upgrade);
    }

    /// The upgrade is over and changed nothing.
    fn upgrade_failed(&mut self, cause: UpgradeFailure) {
        self.upgrade = None;
        self.stats.upgrades_failed += 1;
        self.emit(Event::UpgradeFailed { cause });
        if !self.lifecycle.is_stopping() {
            // The `RELOADING=1` the upgrade began with ends: this master serves on.
            self.actions.push_back(Action::Notify(Notice::Ready));
        }
    }

    /// The upgrade fails for `cause` (a timeout, this master's shutdown): the successor
    /// gets SIGTERM, and SIGKILL after the force-exit timeout.
    pub(super) fn abandon_upgrade(&mut self, now: Instant, cause: UpgradeFailure) {
        let Some(upgrade) = self.upgrade else {
            return;
        };
        let kill_at = now + self.config.force_exit_timeout();
        let abandoned = upgrade.abandoned(cause, kill_at);
        if abandoned == upgrade {
            return;
        }
        if let Upgrade::Abandoning { pid: Some(pid), .. } = abandoned {
            self.actions.push_back(Action::SignalSuccessor {
                pid,
                signal: Signal::Term,
            });
        }
        self.upgrade = Some(abandoned);
    }

    /// SIGKILL the successor of a failed upgrade now (its kill deadline passed, or this
    /// master's shutdown is forced).
    pub(super) fn kill_successor(&mut self) {
        if let Some(Upgrade::Abandoning {
            pid,
            cause,
            kill_at: Some(_),
        }) = self.upgrade
        {
            if let Some(pid) = pid {
                self.actions.push_back(Action::SignalSuccessor {
                    pid,
                    signal: Signal::Kill,
                });
            }
            self.upgrade = Some(Upgrade::Abandoning {
                pid,
                cause,
                kill_at: None,
            });
        }
    }

    /// Time passed: a successor that did not serve in time is stopped, one that did not
    /// stop in time is killed.
    pub(super) fn upgrade_timeout(&mut self, now: Instant) {
        let Some(upgrade) = self.upgrade else {
            return;
        };
        if upgrade.deadline().map_or(true, |at| now < at) {
            return;
        }
        match upgrade {
            Upgrade::Starting { .. } | Upgrade::Booting { .. } => {
                let after = self.config.upgrade_timeout();
                self.abandon_upgrade(now, UpgradeFailure::TimedOut { after });
            }
            Upgrade::Abandoning { .. } => self.kill_successor(),
            Upgrade::HandedOver { .. } => {}
        }
    }

    /// Whether this master handed over to a successor (it then tells the service
    /// manager nothing more: the successor is the main process).
    pub(super) fn is_handed_over(&self) -> bool {
        matches!(self.upgrade, Some(Upgrade::HandedOver { .. }))
    }

    /// In a successor master: once every slot's worker is proven (and no rollout runs),
    /// tell the master that started this one, once.
    pub(super) fn tell_serving(&mut self) {
        if self.config.successor()
            && !self.told_serving
            && !self.slots.is_empty()
            && self.proven_count == self.slots.len()
            && matches!(self.lifecycle, super::lifecycle::Lifecycle::Serving(None))
        {
            self.told_serving = true;
            self.actions.push_back(Action::Notify(Notice::Serving));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ExitStatus, SpawnError, SpawnErrorKind};

    #[test]
    fn each_phase_has_its_deadline_and_holds_the_exit_until_handed_over() {
        let now = crate::test_epoch();
        let later = now + Duration::from_secs(3);
        let starting = Upgrade::Starting { deadline: later };
        let booting = Upgrade::Booting {
            pid: 7,
            deadline: later,
        };
        let abandoning = Upgrade::Abandoning {
            pid: Some(7),
            cause: UpgradeFailure::ShuttingDown,
            kill_at: Some(now),
        };
        let killed = Upgrade::Abandoning {
            pid: Some(7),
            cause: UpgradeFailure::ShuttingDown,
            kill_at: None,
        };
        let handed = Upgrade::HandedOver {
            pid: 7,
            lost: false,
        };
        assert_eq!(starting.deadline(), Some(later));
        assert_eq!(booting.deadline(), Some(later));
        assert_eq!(abandoning.deadline(), Some(now));
        assert_eq!(killed.deadline(), None);
        assert_eq!(handed.deadline(), None);
        for held in [starting, booting, abandoning, killed] {
            assert!(held.holds_exit(), "{held:?}");
        }
        assert!(!handed.holds_exit());
    }

    #[test]
    fn abandoning_keeps_the_pid_and_the_first_cause() {
        let now = crate::test_epoch();
        let at = now + Duration::from_secs(1);
        let cause = UpgradeFailure::Exited(ExitStatus::Code(1));
        assert_eq!(
            Upgrade::Starting { deadline: now }.abandoned(cause, at),
            Upgrade::Abandoning {
                pid: None,
                cause,
                kill_at: Some(at)
            }
        );
        let failed = Upgrade::Booting {
            pid: 9,
            deadline: now,
        }
        .abandoned(cause, at);
        assert_eq!(
            failed,
            Upgrade::Abandoning {
                pid: Some(9),
                cause,
                kill_at: Some(at)
            }
        );
        let other = UpgradeFailure::SpawnFailed(SpawnError::new(SpawnErrorKind::Other));
        assert_eq!(
            failed.abandoned(other, now),
            failed,
            "the first cause stays"
        );
        let handed = Upgrade::HandedOver {
            pid: 9,
            lost: false,
        };
        assert_eq!(
            handed.abandoned(cause, at),
            handed,
            "a handover cannot fail"
        );
    }
}
