//! The shutdown and the exit: nothing is spawned once a shutdown began, it is forced
//! only when that is allowed, and it ends in one `Exit`, last, by its deadline, for the
//! reason the events gave.
//!
//! Owns what the exit reason must be (was the breaker tripped, a startup failure, the
//! shutdown forced; what `ShutDown` said).

use clutch_proto::{
    Action, ClusterState, Event, ExitReason, ShutdownTrigger, Signal, SIGNAL_REPEAT_WINDOW,
};

use super::check::{EXIT_DEADLINE, EXIT_ONCE_LAST, EXIT_REASON, FORCE_EARLY, SPAWN_AFTER_SHUTDOWN};
use super::model::Model;
use super::Input;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ShutdownChecker {
    breaker: bool,
    startup_failed: bool,
    forced: bool,
    shut_down: Option<ExitReason>,
}

impl ShutdownChecker {
    fn on_exit(&self, model: &Model, reason: ExitReason, out: &mut Findings<'_>) {
        let now = model.now();
        let Some(deadline) = model.exit_deadline() else {
            return out.fail(
                EXIT_ONCE_LAST,
                format!("exit ({reason:?}) without a shutdown"),
            );
        };
        if now > deadline {
            return out.fail(
                EXIT_DEADLINE,
                format!("exit at {now:?}, the deadline was {deadline:?}"),
            );
        }
        if !model.live().is_empty() {
            return out.fail(
                EXIT_ONCE_LAST,
                format!("exit with {} workers still live", model.live().len()),
            );
        }
        let expected = if model.upgrade.lost {
            ExitReason::SuccessorLost
        } else if model.upgrade.handed_over {
            ExitReason::Upgraded
        } else if self.breaker {
            ExitReason::BreakerTripped
        } else if self.startup_failed {
            ExitReason::StartupFailed
        } else if self.forced {
            ExitReason::Forced
        } else {
            ExitReason::Clean
        };
        if reason != expected || self.shut_down != Some(reason) {
            out.fail(
                EXIT_REASON,
                format!(
                    "exit {reason:?} (ShutDown said {:?}), expected {expected:?}",
                    self.shut_down
                ),
            );
        }
    }

    fn on_forced(&mut self, model: &Model, out: &mut Findings<'_>) {
        let now = model.now();
        let input = model.step.input;
        let force_at = model
            .shutdown_at
            .map(|at| at + model.config.force_exit_timeout());
        let repeat_over = model
            .shutdown_at
            .is_some_and(|at| now >= at + SIGNAL_REPEAT_WINDOW);
        let ok = match input {
            Some(Input::Signal(Signal::Term | Signal::Int)) => {
                model.step.shutdown_before && repeat_over
            }
            Some(Input::Signal(Signal::Quit) | Input::ShutdownNow) => true,
            Some(Input::Timeout) => force_at.is_some_and(|at| now >= at),
            _ => false,
        };
        self.forced = true;
        if !ok || force_at.is_none() {
            out.fail(
                FORCE_EARLY,
                format!("shutdown forced at {now:?} by {input:?} (deadline {force_at:?})"),
            );
        }
    }
}

impl Concern for ShutdownChecker {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            SPAWN_AFTER_SHUTDOWN,
            EXIT_ONCE_LAST,
            EXIT_DEADLINE,
            EXIT_REASON,
            FORCE_EARLY,
        ]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            return out.fail(EXIT_ONCE_LAST, format!("action after the exit: {action:?}"));
        }
        match *action {
            Action::Spawn { id, slot, .. } if model.shutdown_at.is_some() => out.fail(
                SPAWN_AFTER_SHUTDOWN,
                format!("spawn of w{id} in slot {slot} after shutdown began"),
            ),
            Action::Exit(reason) => self.on_exit(model, reason, out),
            Action::Event(Event::ShutdownStarted {
                trigger: ShutdownTrigger::StartupFailed,
            }) if model.shutdown_at.is_none() => self.startup_failed = true,
            Action::Event(Event::ShutdownForced { .. }) => self.on_forced(model, out),
            Action::Event(Event::ShutDown { reason }) => self.shut_down = Some(reason),
            Action::Event(Event::BreakerTripped { .. }) => self.breaker = true,
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        let now = model.now();
        if let Some(deadline) = model.exit_deadline().filter(|&d| now > d) {
            if model.exited_at.is_none() {
                out.fail(
                    EXIT_DEADLINE,
                    format!(
                        "no exit by {deadline:?} (shutdown began at {:?})",
                        model.shutdown_at
                    ),
                );
            }
        }
        if cluster.is_exited() != model.exited_at.is_some() {
            out.fail(
                EXIT_ONCE_LAST,
                format!(
                    "the core says exited={}, the actions disagree",
                    cluster.is_exited()
                ),
            );
        } else if cluster.is_exited() && cluster.poll_timeout().is_some() {
            out.fail(EXIT_ONCE_LAST, "a deadline after the exit".to_owned());
        }
    }

    fn on_end(&mut self, model: &Model, out: &mut Findings<'_>) {
        if model.shutdown_at.is_some() && model.exited_at.is_none() {
            let message = format!(
                "shutdown began at {:?} and never exited (deadline {:?})",
                model.shutdown_at,
                model.exit_deadline()
            );
            out.fail(EXIT_DEADLINE, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use clutch_proto::{Action, Event, ExitReason, ShutdownTrigger, Signal};

    use super::super::check::{
        EXIT_DEADLINE, EXIT_ONCE_LAST, EXIT_REASON, FORCE_EARLY, SPAWN_AFTER_SHUTDOWN,
    };
    use super::super::harness::{config, event, spawn, Bench, MS};
    use super::ShutdownChecker;
    use crate::checker::Input;

    fn started_by_command() -> Action {
        event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::Command,
        })
    }

    #[test]
    fn fires_on_a_spawn_after_the_shutdown_began() {
        let mut bench = Bench::new(&mut config(1), ShutdownChecker::default());
        bench.boot(1).assert_clean();
        let term = event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::Signal(Signal::Term),
        });
        bench.step(
            MS,
            Some(Input::Signal(Signal::Term)),
            &[term, spawn(2, 0, 1)],
        );
        bench.assert_fired(SPAWN_AFTER_SHUTDOWN);
    }

    #[test]
    fn fires_on_an_exit_without_a_shutdown() {
        let mut bench = Bench::new(&mut config(1), ShutdownChecker::default());
        bench.step(MS, Some(Input::Timeout), &[Action::Exit(ExitReason::Clean)]);
        bench.assert_fired(EXIT_ONCE_LAST);
    }

    #[test]
    fn fires_on_a_forced_shutdown_before_its_deadline() {
        let mut bench = Bench::new(&mut config(1), ShutdownChecker::default());
        bench.boot(1);
        bench.step(MS, Some(Input::Shutdown), &[started_by_command()]);
        bench.assert_clean();
        let forced = event(Event::ShutdownForced { killed: 1 });
        bench.step(2 * MS, Some(Input::Timeout), &[forced]);
        bench.assert_fired(FORCE_EARLY);
    }

    #[test]
    fn fires_on_an_exit_that_misdescribes_the_shutdown() {
        let mut bench = Bench::new(&mut config(1), ShutdownChecker::default());
        bench.step(std::time::Duration::ZERO, None, &[]);
        let clean = event(Event::ShutDown {
            reason: ExitReason::Clean,
        });
        let exit = Action::Exit(ExitReason::Forced);
        bench.step(
            MS,
            Some(Input::Shutdown),
            &[started_by_command(), clean, exit],
        );
        bench.assert_fired(EXIT_REASON);
    }

    #[test]
    fn fires_when_a_shutdown_never_exits() {
        let mut bench = Bench::new(&mut config(1), ShutdownChecker::default());
        bench.boot(1);
        bench.step(MS, Some(Input::Shutdown), &[started_by_command()]);
        bench.assert_clean();
        // The run ends with the shutdown begun and no exit.
        bench.end(std::time::Duration::from_secs(60));
        bench.assert_fired(EXIT_DEADLINE);
    }
}
