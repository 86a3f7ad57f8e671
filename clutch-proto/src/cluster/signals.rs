//! What each master signal means (the README's signal table), and scaling, which
//! TTIN/TTOU and the `scale` command share.

use std::time::Instant;

use super::slots::{Role, SlotState};
use super::ClusterState;
use crate::config::MAX_WORKERS;
use crate::{
    Action, CommandError, Event, IgnoreReason, Pid, ShutdownTrigger, Signal, SignalIgnoreReason,
    StopReason, WorkerId, WorkerState,
};

impl ClusterState {
    /// [`Input::Signal`](crate::Input::Signal): see there (and the README's signal table).
    pub(super) fn handle_signal(&mut self, now: Instant, signal: Signal) {
        if !self.accept_input() {
            return;
        }
        match signal {
            Signal::Term | Signal::Int => match self.lifecycle.stopping() {
                None => self.begin_shutdown(now, ShutdownTrigger::Signal(signal)),
                Some(stopping) if stopping.is_repeat(now) => {
                    self.emit(Event::SignalIgnored {
                        signal,
                        why: SignalIgnoreReason::Repeat,
                    });
                }
                Some(_) => self.force(now),
            },
            Signal::Quit => {
                if self.lifecycle.is_stopping() {
                    self.force(now);
                } else {
                    self.begin_shutdown(now, ShutdownTrigger::Signal(signal));
                }
            }
            Signal::Hup | Signal::Ttin | Signal::Ttou => {
                let result = match signal {
                    Signal::Hup => self.reload_inner(now).map(|_| ()),
                    Signal::Ttin => self.scale_inner(now, self.slots.len() + 1),
                    // Never below one worker.
                    _ => match self.slots.len().saturating_sub(1) {
                        0 => Err(CommandError::BadWorkerCount(0)),
                        to => self.scale_inner(now, to),
                    },
                };
                if let Err(error) = result {
                    self.emit(Event::Ignored {
                        reason: IgnoreReason::Refused { signal, error },
                    });
                }
            }
            // USR2 not forwarded means "upgrade the master", as in nginx and Unicorn.
            Signal::Usr2
                if self.config.upgrades() && !self.config.forward_signals().contains(signal) =>
            {
                if let Err(error) = self.upgrade_inner(now) {
                    self.emit(Event::Ignored {
                        reason: IgnoreReason::Refused { signal, error },
                    });
                }
            }
            Signal::Usr1 | Signal::Usr2 if !self.config.forward_signals().contains(signal) => {
                self.emit(Event::SignalIgnored {
                    signal,
                    why: SignalIgnoreReason::NotForwarded,
                });
            }
            Signal::Usr1 | Signal::Usr2 => {
                let targets: Vec<(WorkerId, Pid)> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.state() != WorkerState::Killed)
                    .filter_map(|(&id, w)| w.pid().map(|pid| (id, pid)))
                    .collect();
                for &(id, pid) in &targets {
                    self.actions.push_back(Action::Signal { id, pid, signal });
                }
                self.emit(Event::SignalForwarded {
                    signal,
                    workers: targets.len(),
                });
            }
            Signal::Winch | Signal::Abrt | Signal::Kill => {
                self.emit(Event::Ignored {
                    reason: IgnoreReason::Meaningless(signal),
                });
            }
        }
        self.settle(now);
    }

    pub(super) fn scale_inner(&mut self, now: Instant, workers: usize) -> Result<(), CommandError> {
        if self.lifecycle.is_stopping() {
            return Err(CommandError::ShuttingDown);
        }
        if self.config.is_in_process() {
            return Err(CommandError::InProcess);
        }
        if workers == 0 || workers > MAX_WORKERS {
            return Err(CommandError::BadWorkerCount(workers));
        }
        let from = self.slots.len();
        if workers == from {
            return Ok(());
        }
        for index in from..workers {
            self.slots.push(SlotState::default());
            self.spawn(now, index, Role::Current);
        }
        for index in (workers..from).rev() {
            self.set_respawn(index, None);
            self.set_failures(index, 0);
            let slot = &self.slots[index];
            let leaving: Vec<WorkerId> = slot
                .successor
                .map(|s| s.id)
                .into_iter()
                .chain(slot.current)
                .collect();
            for id in leaving {
                self.detach(id);
                self.stop_worker(now, id, StopReason::ScaleDown, Signal::Term);
            }
            self.slots.pop();
        }
        if let Some(rollout) = self.lifecycle.rollout_mut() {
            rollout.cursor = rollout.cursor.min(workers);
        }
        self.emit(Event::Scaled { from, to: workers });
        // A smaller target lowers the breaker's threshold (`settle` checks it).
        Ok(())
    }
}
