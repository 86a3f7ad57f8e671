//! The upgrade of the master: the old generation serves until the successor's workers
//! are ready (the handover comes only with the successor's own `READY=1`, while it
//! runs, during an upgrade, outside a shutdown; the old workers' stop only after it),
//! exactly one master owns the sockets when this one ends (an exit as `Upgraded` leaves
//! the successor running; any other exit leaves none behind, not even one being
//! started), and there is one successor at a time, signalled only by its pid and never
//! once it is the master.
//!
//! Owns no state: the successor's story is the model's.

use clutch_proto::{Action, Event, ExitReason, ShutdownTrigger, SuccessorFact};

use super::check::{ONE_MASTER, ONE_SUCCESSOR, SERVES_UNTIL_SUCCESSOR_READY};
use super::model::Model;
use super::Input;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct UpgradeChecker;

impl Concern for UpgradeChecker {
    fn name(&self) -> &'static str {
        "upgrade"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[SERVES_UNTIL_SUCCESSOR_READY, ONE_MASTER, ONE_SUCCESSOR]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            return;
        }
        let u = model.upgrade;
        match *action {
            Action::Event(Event::UpgradeHandedOver { pid }) => {
                let by_ready = model.step.input == Some(Input::Successor(SuccessorFact::Ready));
                if !by_ready
                    || !u.ready
                    || u.live != Some(pid)
                    || !u.under_way
                    || model.shutdown_at.is_some()
                {
                    out.fail(
                        SERVES_UNTIL_SUCCESSOR_READY,
                        format!(
                            "handed over to pid {pid} after {:?} (successor {:?})",
                            model.step.input, u
                        ),
                    );
                }
            }
            Action::Event(Event::ShutdownStarted {
                trigger: ShutdownTrigger::Upgrade,
            }) if !u.handed_over => out.fail(
                SERVES_UNTIL_SUCCESSOR_READY,
                format!("the old workers stop for an upgrade that did not hand over ({u:?})"),
            ),
            Action::Exit(reason) => {
                let ok = match reason {
                    ExitReason::Upgraded => u.handed_over && u.live.is_some(),
                    ExitReason::SuccessorLost => u.handed_over && u.lost && u.live.is_none(),
                    _ => !u.handed_over && u.live.is_none() && !u.spawn_pending,
                };
                if !ok {
                    out.fail(
                        ONE_MASTER,
                        format!("exit {reason:?} with the successor {u:?}"),
                    );
                }
            }
            Action::SpawnSuccessor
                if u.spawn_pending || u.live.is_some() || model.shutdown_at.is_some() =>
            {
                out.fail(
                    ONE_SUCCESSOR,
                    format!(
                        "a successor asked for with {u:?} (shutdown at {:?})",
                        model.shutdown_at
                    ),
                );
            }
            Action::SignalSuccessor { pid, signal } if u.live != Some(pid) || u.handed_over => {
                out.fail(
                    ONE_SUCCESSOR,
                    format!("{signal} to successor pid {pid}, the successor is {u:?}"),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Action, Event, ExitReason, ShutdownTrigger, Signal, SuccessorFact};

    use super::super::check::{ONE_MASTER, ONE_SUCCESSOR, SERVES_UNTIL_SUCCESSOR_READY};
    use super::super::harness::{config, Bench, MS};
    use super::super::Input;
    use super::UpgradeChecker;

    fn bench() -> Bench<UpgradeChecker> {
        let mut c = config(1);
        c.upgrades(true);
        Bench::new(&mut c, UpgradeChecker)
    }

    /// An upgrade asked for and its successor running as pid 77.
    fn running() -> Bench<UpgradeChecker> {
        let mut bench = bench();
        bench.step(
            Duration::ZERO,
            Some(Input::Upgrade),
            &[Action::Event(Event::UpgradeStarted), Action::SpawnSuccessor],
        );
        bench.step(
            MS,
            Some(Input::Successor(SuccessorFact::Spawned { pid: 77 })),
            &[Action::Event(Event::UpgradeSpawned { pid: 77 })],
        );
        bench.assert_clean();
        bench
    }

    #[test]
    fn fires_on_a_handover_before_the_successor_is_ready() {
        let mut bench = running();
        bench.step(
            2 * MS,
            Some(Input::Timeout),
            &[Action::Event(Event::UpgradeHandedOver { pid: 77 })],
        );
        bench.assert_fired(SERVES_UNTIL_SUCCESSOR_READY);
    }

    #[test]
    fn fires_when_the_old_workers_stop_for_an_upgrade_not_handed_over() {
        let mut bench = running();
        bench.step(
            2 * MS,
            Some(Input::Successor(SuccessorFact::Ready)),
            &[Action::Event(Event::ShutdownStarted {
                trigger: ShutdownTrigger::Upgrade,
            })],
        );
        bench.assert_fired(SERVES_UNTIL_SUCCESSOR_READY);
    }

    #[test]
    fn a_handover_on_ready_is_clean_and_an_exit_leaving_the_successor_is_fine() {
        let mut bench = running();
        bench.step(
            2 * MS,
            Some(Input::Successor(SuccessorFact::Ready)),
            &[
                Action::Event(Event::UpgradeHandedOver { pid: 77 }),
                Action::Event(Event::ShutdownStarted {
                    trigger: ShutdownTrigger::Upgrade,
                }),
            ],
        );
        bench.step(3 * MS, None, &[Action::Exit(ExitReason::Upgraded)]);
        bench.assert_clean();
    }

    #[test]
    fn fires_on_an_exit_that_leaves_a_successor_not_handed_over_to() {
        let mut bench = running();
        bench.step(2 * MS, None, &[Action::Exit(ExitReason::Clean)]);
        bench.assert_fired(ONE_MASTER);
    }

    #[test]
    fn fires_on_an_exit_as_upgraded_with_no_successor() {
        let mut bench = running();
        bench.step(
            2 * MS,
            Some(Input::Successor(SuccessorFact::Exited(
                clutch_proto::ExitStatus::Code(1),
            ))),
            &[],
        );
        bench.step(3 * MS, None, &[Action::Exit(ExitReason::Upgraded)]);
        bench.assert_fired(ONE_MASTER);
    }

    #[test]
    fn fires_on_a_second_successor_and_on_a_signal_to_the_wrong_pid() {
        let mut bench = running();
        bench.step(2 * MS, Some(Input::Upgrade), &[Action::SpawnSuccessor]);
        bench.assert_fired(ONE_SUCCESSOR);
        let mut bench = running();
        bench.step(
            2 * MS,
            Some(Input::Timeout),
            &[Action::SignalSuccessor {
                pid: 78,
                signal: Signal::Term,
            }],
        );
        bench.assert_fired(ONE_SUCCESSOR);
    }
}
