//! Signals to workers and the stops they carry out: a signal goes only to a started
//! worker whose exit was not reported, with its pid; a worker is told to stop only for
//! a reason the stream gave (shutdown, scale-down, hang, boot timeout, its own
//! STOPPING=1, an aborted rollout — a ready successor's reason is the rollout checker's),
//! USR1/USR2 only when forwarded or as a hang diagnosis; and a worker told to stop
//! outside a shutdown is SIGKILLed by its grace deadline.
//!
//! Owns the stop-deadline probes.

use clutch_proto::{Action, ClusterState, Event, Signal, WorkerId, WorkerState};

use super::check::{SIGNAL_TARGET, STOP_DEADLINE, STOP_JUSTIFIED};
use super::model::Model;
use super::{Concern, Findings, Probes};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct StopChecker {
    /// Workers that must be killed by then.
    probes: Probes<WorkerId>,
}

impl StopChecker {
    fn on_signal(model: &Model, id: WorkerId, pid: u32, signal: Signal, out: &mut Findings<'_>) {
        let Some(t) = model.track(id) else {
            return out.fail(
                SIGNAL_TARGET,
                format!("{signal} to w{id}, which was never spawned"),
            );
        };
        if t.departed || t.exit_reported {
            return out.fail(
                SIGNAL_TARGET,
                format!("{signal} to w{id}, whose exit was already reported"),
            );
        }
        if t.pid != Some(pid) {
            out.fail(
                SIGNAL_TARGET,
                format!("{signal} to w{id} as pid {pid}, but its pid is {:?}", t.pid),
            );
        }
    }
}

impl Concern for StopChecker {
    fn name(&self) -> &'static str {
        "stops"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[SIGNAL_TARGET, STOP_JUSTIFIED, STOP_DEADLINE]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            return;
        }
        let now = model.now();
        let outside_shutdown = model.shutdown_at.is_none();
        match *action {
            Action::Signal { id, pid, signal } => Self::on_signal(model, id, pid, signal, out),
            Action::Event(Event::WorkerSpawnCancelled { id, .. }) if model.step.cancel_legit => {
                let Some(t) = model.track(id).filter(|t| !t.spawn_outcome) else {
                    return;
                };
                let min_uptime = model.config.min_uptime();
                let replaced = model
                    .replaced_by(id)
                    .is_some_and(|(_, ready_at)| ready_at + min_uptime <= now);
                if !t.justified && !replaced {
                    out.fail(
                        STOP_JUSTIFIED,
                        format!("w{id}'s spawn cancelled with no reason to stop it"),
                    );
                }
            }
            Action::Event(Event::WorkerStopping { id, .. })
                if outside_shutdown && model.is_live(id) =>
            {
                let grace = model.config.force_exit_timeout();
                self.probes.push(now + grace, id);
            }
            Action::Event(Event::WorkerHung { id, .. })
                if outside_shutdown && model.is_live(id) =>
            {
                let hang = model.config.hang();
                if hang.signal.is_some() {
                    self.probes.push(now + hang.grace, id);
                }
            }
            _ => {}
        }
    }

    /// Every first stop signal of the step had a reason; stop deadlines are probed.
    fn on_step_end(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        let now = model.now();
        let step = &model.step;
        let grace = model.config.force_exit_timeout();
        for &(id, signal) in &step.stop_signals {
            let t = model.track(id).expect("signalled workers are tracked");
            if !t.justified {
                // Replaced by a rollout's ready successor: the rollout checker's to judge;
                // by a recycle's, the recycle checker's.
                if model.replaced_by(id).is_some() || model.recycled_by(id).is_some() {
                    continue;
                }
                let message = format!(
                    "{signal} to w{id} (slot {}, generation {}) with no reason to stop it",
                    t.slot, t.generation
                );
                return out.fail(STOP_JUSTIFIED, message);
            }
            let hung = step.hung.contains(&id);
            if model.shutdown_at.is_none() && signal == Signal::Term && !hung {
                self.probes.push(now + grace, id);
            }
        }
        for &(id, signal) in &step.usr_signals {
            let forwarded = step.forwarded.is_some_and(|f| f.0 == signal);
            if !forwarded && !step.hung.contains(&id) {
                return out.fail(
                    STOP_JUSTIFIED,
                    format!("{signal} to w{id}, neither forwarded nor a hang diagnosis"),
                );
            }
        }
    }

    fn next_probe(&self) -> Option<std::time::Duration> {
        self.probes.next_at()
    }

    fn on_probes(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        while let Some(id) = self.probes.pop_due(model.now()) {
            if let Some(w) = cluster
                .worker(id)
                .filter(|w| w.state != WorkerState::Killed)
            {
                out.fail(
                    STOP_DEADLINE,
                    format!("w{id} asked to stop is {} past its grace", w.state),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clutch_proto::{Event, Signal, Slot, WorkerId};

    use super::super::check::{SIGNAL_TARGET, STOP_DEADLINE, STOP_JUSTIFIED};
    use super::super::harness::{config, event, pid, signal, Bench, MS};
    use super::StopChecker;
    use crate::checker::Input;

    #[test]
    fn fires_on_a_signal_to_a_worker_never_spawned() {
        let mut bench = Bench::new(&mut config(1), StopChecker::default());
        bench.boot(1).assert_clean();
        bench.step(MS, Some(Input::Timeout), &[signal(7, Signal::Term)]);
        bench.assert_fired(SIGNAL_TARGET);
    }

    #[test]
    fn fires_on_a_stop_with_no_reason() {
        let mut bench = Bench::new(&mut config(1), StopChecker::default());
        bench.boot(1);
        bench.step(MS, Some(Input::Timeout), &[signal(1, Signal::Term)]);
        bench.assert_fired(STOP_JUSTIFIED);
    }

    #[test]
    fn fires_when_a_stopping_worker_is_not_killed_by_its_grace() {
        let mut b = config(1);
        b.force_exit_timeout(100 * MS);
        let mut bench = Bench::new(&mut b, StopChecker::default());
        bench.boot(1);
        let id = WorkerId(1);
        let stopping = event(Event::WorkerStopping {
            id,
            slot: Slot(0),
            pid: pid(1),
        });
        bench.step(MS, Some(Input::Stopping { id }), &[stopping]);
        bench.probes(50 * MS).assert_clean();
        // The bystander core never killed its w1.
        bench.probes(101 * MS);
        bench.assert_fired(STOP_DEADLINE);
    }
}
