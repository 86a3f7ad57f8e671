//! Commands and master signals: each has the documented answer (`reload` and `scale`
//! refused while shutting down or in-process, bad worker counts refused) and the
//! documented effect (HUP reloads, TTIN/TTOU scale by one, TERM/INT/QUIT begin or force
//! the shutdown, USR1/USR2 are forwarded to every started worker not killed — or
//! ignored and reported when not in the forwarding set — and the rest are ignored).
//!
//! Owns the answer and the forward count the step's input must get.

use clutch_proto::{ClusterState, CommandError, Signal, MAX_WORKERS, SIGNAL_REPEAT_WINDOW};

use super::check::COMMAND_RESULT;
use super::model::Model;
use super::Input;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct CommandChecker {
    expected_result: Option<Result<(), CommandError>>,
    expected_forward: usize,
    /// An upgrade could start now (none under way, not shutting down).
    upgrade_possible: bool,
}

impl CommandChecker {
    /// What an upgrade asked for now must answer.
    fn upgrade_answer(&self, model: &Model) -> Result<(), CommandError> {
        if model.shutdown_at.is_some() {
            Err(CommandError::ShuttingDown)
        } else if !model.config.upgrades() {
            Err(CommandError::NoUpgrades)
        } else if model.config.is_in_process() {
            Err(CommandError::InProcess)
        } else if model.upgrade.under_way {
            Err(CommandError::UpgradeUnderWay)
        } else {
            Ok(())
        }
    }

    /// Whether the step's input had its documented effect.
    fn effect_ok(&self, model: &Model, input: Input) -> bool {
        let step = &model.step;
        let cluster_ok = !step.shutdown_before && !model.config.is_in_process();
        let before = step.target_before;
        match input {
            Input::Signal(Signal::Hup) if cluster_ok => step.reload_started || step.reload_queued,
            Input::Signal(Signal::Ttin) if cluster_ok && before < MAX_WORKERS => {
                step.scaled == Some((before, before + 1))
            }
            Input::Signal(Signal::Ttou) if cluster_ok && before >= 2 => {
                step.scaled == Some((before, before - 1))
            }
            Input::Signal(Signal::Hup | Signal::Ttin | Signal::Ttou) => {
                step.ignored_event && step.scaled.is_none()
            }
            Input::Signal(Signal::Winch | Signal::Abrt | Signal::Kill) => step.ignored_event,
            Input::Signal(signal @ (Signal::Term | Signal::Int)) if step.shutdown_before => {
                let repeat = model
                    .shutdown_at
                    .is_some_and(|at| step.now < at + SIGNAL_REPEAT_WINDOW);
                // Within the window: a repeat, reported, forcing nothing.
                !repeat || (step.signal_ignored == Some(signal) && !step.forced)
            }
            Input::Signal(Signal::Term | Signal::Int | Signal::Quit) | Input::ShutdownNow => {
                step.shutdown_before || step.shutdown_started
            }
            // USR2 not forwarded upgrades the master where it can: started, or refused.
            Input::Signal(signal @ Signal::Usr2)
                if model.config.upgrades() && !model.config.forward_signals().contains(signal) =>
            {
                step.forwarded.is_none()
                    && step.usr_signals.is_empty()
                    && (step.upgrade_started != step.ignored_event)
                    && step.upgrade_started == self.upgrade_possible
            }
            Input::Upgrade => (self.expected_result == Some(Ok(()))) == step.upgrade_started,
            Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2))
                if !model.config.forward_signals().contains(signal) =>
            {
                step.forwarded.is_none()
                    && step.usr_signals.is_empty()
                    && step.signal_ignored == Some(signal)
            }
            Input::Shutdown => {
                if step.shutdown_before {
                    step.ignored_event
                } else {
                    step.shutdown_started
                }
            }
            Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2)) => {
                let sent = step.usr_signals.iter().filter(|s| s.1 == signal).count();
                step.forwarded == Some((signal, self.expected_forward))
                    && sent == self.expected_forward
            }
            Input::Scale(n) => match self.expected_result {
                Some(Ok(())) if n != before => step.scaled == Some((before, n)),
                _ => step.scaled.is_none(),
            },
            Input::Reload => {
                self.expected_result != Some(Ok(())) || step.reload_started || step.reload_queued
            }
            _ => true,
        }
    }
}

impl Concern for CommandChecker {
    fn name(&self) -> &'static str {
        "commands"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[COMMAND_RESULT]
    }

    fn on_input(&mut self, model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {
        self.expected_result = None;
        self.expected_forward = 0;
        let Some(input) = model.step.input.filter(|_| !model.step.stale) else {
            return;
        };
        let in_process = model.config.is_in_process();
        let shutting_down = model.shutdown_at.is_some();
        self.expected_result = match input {
            Input::Reload => Some(if shutting_down {
                Err(CommandError::ShuttingDown)
            } else if in_process {
                Err(CommandError::InProcess)
            } else {
                Ok(())
            }),
            Input::Scale(n) => Some(if shutting_down {
                Err(CommandError::ShuttingDown)
            } else if in_process {
                Err(CommandError::InProcess)
            } else if n == 0 || n > MAX_WORKERS {
                Err(CommandError::BadWorkerCount(n))
            } else {
                Ok(())
            }),
            Input::Upgrade => Some(self.upgrade_answer(model)),
            _ => None,
        };
        self.upgrade_possible = self.upgrade_answer(model).is_ok();
        if let Input::Signal(signal @ (Signal::Usr1 | Signal::Usr2)) = input {
            if model.config.forward_signals().contains(signal) {
                self.expected_forward = model
                    .live()
                    .iter()
                    .filter_map(|&id| model.track(id))
                    .filter(|t| t.started_at.is_some() && !t.killed)
                    .count();
            }
        }
    }

    fn on_result(
        &mut self,
        model: &Model,
        result: Result<(), CommandError>,
        out: &mut Findings<'_>,
    ) {
        if model.step.stale {
            return;
        }
        let expected = self.expected_result.unwrap_or(Ok(()));
        if result != expected {
            let input = model.step.input;
            out.fail(
                COMMAND_RESULT,
                format!("{input:?} answered {result:?}, expected {expected:?}"),
            );
        }
    }

    fn on_step_end(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        let step = &model.step;
        let Some(input) = step.input.filter(|_| !step.stale) else {
            return;
        };
        if !self.effect_ok(model, input) {
            let message = format!(
                "{input} had the wrong effect: scaled {:?}, reload started {} queued {}, \
                 forwarded {:?} (expected {}), ignored {} (signal {:?}), forced {}, \
                 shutdown started {}",
                step.scaled,
                step.reload_started,
                step.reload_queued,
                step.forwarded,
                self.expected_forward,
                step.ignored_event,
                step.signal_ignored,
                step.forced,
                step.shutdown_started
            );
            out.fail(COMMAND_RESULT, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use clutch_proto::{CommandError, Event, Signal};

    use super::super::check::COMMAND_RESULT;
    use super::super::harness::{config, event, Bench, MS};
    use super::CommandChecker;
    use crate::checker::Input;

    #[test]
    fn fires_when_a_command_gets_the_wrong_answer() {
        let mut bench = Bench::new(&mut config(1), CommandChecker::default());
        bench.boot(1).assert_clean();
        let started = event(Event::ReloadStarted { generation: 2 });
        bench.step_with(
            MS,
            Some(Input::Reload),
            Err(CommandError::InProcess),
            &[started],
        );
        bench.assert_fired(COMMAND_RESULT);
    }

    #[test]
    fn fires_when_a_signal_has_no_effect() {
        let mut bench = Bench::new(&mut config(1), CommandChecker::default());
        bench.boot(1);
        // TTIN must scale up by one.
        bench.step(MS, Some(Input::Signal(Signal::Ttin)), &[]);
        bench.assert_fired(COMMAND_RESULT);
    }
}
