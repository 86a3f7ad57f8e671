//! Readiness: a booting worker is ready or timed out by its readiness deadline (the
//! boot timeout, the readiness delay, or at once), and neither comes early; `Listening`
//! fires once, with the first ready worker.
//!
//! Owns the boot-deadline probes and which worker `Listening` named.

use std::time::Duration;

use clutch_proto::{Action, ClusterState, Event, Readiness, WorkerId, WorkerState};

use super::check::{BOOT_DEADLINE, LISTENING};
use super::model::Model;
use super::Input;
use super::{Concern, Findings, Probes};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ReadinessChecker {
    listening: Option<WorkerId>,
    /// Workers that must no longer be booting by then.
    probes: Probes<WorkerId>,
}

impl Concern for ReadinessChecker {
    fn name(&self) -> &'static str {
        "readiness"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[BOOT_DEADLINE, LISTENING]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        let Some(event) = super::event_of(action).filter(|_| model.exited_at.is_none()) else {
            return;
        };
        let now = model.now();
        match *event {
            Event::WorkerStarted { id, .. } if model.is_live(id) => {
                let deadline = match model.config.readiness() {
                    Readiness::Notify => model.config.boot_timeout(),
                    Readiness::Delay(delay) => delay,
                    Readiness::Spawned => Duration::ZERO,
                };
                self.probes.push(now + deadline, id);
            }
            Event::WorkerReady { id, .. } => {
                let Some(t) = model.track(id).filter(|t| !t.departed) else {
                    return;
                };
                let early = match (model.config.readiness(), model.step.input, t.started_at) {
                    (Readiness::Delay(d), Some(Input::Timeout), Some(started)) => now < started + d,
                    _ => false,
                };
                if early {
                    out.fail(
                        BOOT_DEADLINE,
                        format!("w{id} made ready before its readiness delay"),
                    );
                }
            }
            Event::WorkerBootTimedOut { id, .. } => {
                let Some(t) = model.track(id).filter(|t| !t.departed) else {
                    return;
                };
                let boot_timeout = model.config.boot_timeout();
                if !t.started_at.is_some_and(|s| now >= s + boot_timeout) {
                    out.fail(
                        BOOT_DEADLINE,
                        format!("w{id} timed out at boot before its boot timeout"),
                    );
                }
            }
            Event::Listening { id } => {
                if self.listening.is_some() {
                    return out.fail(LISTENING, "Listening fired twice".to_owned());
                }
                self.listening = Some(id);
                if !model.track(id).is_some_and(|t| t.ready) {
                    out.fail(
                        LISTENING,
                        format!("Listening for w{id}, which is not ready"),
                    );
                }
            }
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        if model.step.ready_seen && self.listening.is_none() {
            out.fail(
                LISTENING,
                "a worker became ready but Listening did not fire".to_owned(),
            );
        }
    }

    fn next_probe(&self) -> Option<Duration> {
        self.probes.next_at()
    }

    fn on_probes(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        while let Some(id) = self.probes.pop_due(model.now()) {
            let booting = cluster
                .worker(id)
                .is_some_and(|w| w.state == WorkerState::Booting && w.stop_reason.is_none());
            if booting {
                out.fail(
                    BOOT_DEADLINE,
                    format!("w{id} still booting past its readiness deadline"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Event, Readiness, Slot, WorkerId};

    use super::super::check::{BOOT_DEADLINE, LISTENING};
    use super::super::harness::{config, event, pid, spawn, started, Bench, MS};
    use super::ReadinessChecker;
    use crate::checker::Input;

    #[test]
    fn fires_when_listening_repeats() {
        let mut bench = Bench::new(&mut config(2), ReadinessChecker::default());
        bench.boot(2).assert_clean();
        let again = event(Event::Listening { id: WorkerId(2) });
        bench.step(MS, Some(Input::Timeout), &[again]);
        bench.assert_fired(LISTENING);
    }

    #[test]
    fn fires_on_a_boot_timed_out_early() {
        let mut b = config(1);
        b.readiness(Readiness::Notify).boot_timeout(100 * MS);
        let mut bench = Bench::new(&mut b, ReadinessChecker::default());
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        let id = WorkerId(1);
        let spawned = Input::Spawned { id, pid: pid(1) };
        bench.step(Duration::ZERO, Some(spawned), &[started(1, 0, 1)]);
        bench.assert_clean();
        let timed_out = event(Event::WorkerBootTimedOut {
            id,
            slot: Slot(0),
            pid: pid(1),
        });
        bench.step(50 * MS, Some(Input::Timeout), &[timed_out]);
        bench.assert_fired(BOOT_DEADLINE);
    }

    #[test]
    fn fires_when_a_boot_outlives_its_deadline() {
        let mut b = config(1);
        b.readiness(Readiness::Notify).boot_timeout(100 * MS);
        let mut bench = Bench::new(&mut b, ReadinessChecker::default());
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        // The bystander core hears of its w1's start, and then nothing: it never times
        // the boot out.
        let (id, base) = (WorkerId(1), bench.model.base);
        bench.cluster.handle_spawned(base, id, pid(1));
        while bench.cluster.poll_action().is_some() {}
        let spawned = Input::Spawned { id, pid: pid(1) };
        bench.step(Duration::ZERO, Some(spawned), &[started(1, 0, 1)]);
        bench.probes(99 * MS).assert_clean();
        bench.probes(100 * MS);
        bench.assert_fired(BOOT_DEADLINE);
    }
}
