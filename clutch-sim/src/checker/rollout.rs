//! Rolling restarts: spawns run the serving generation and a rollout's successors the
//! rollout's; no old worker is stopped while its slot's new worker is in probation; and
//! a finished rollout leaves every slot with a proven, ready worker of its generation.
//!
//! Owns no state: the rollout under way, the serving generation and each slot's ready
//! successor are the shared model's (stopping justifications depend on them).

use clutch_proto::{ClusterState, WorkerState};

use super::check::{PROBATION_BEFORE_STOP, RELOAD_FINISHED, SPAWN_GENERATION};
use super::model::Model;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RolloutChecker;

impl RolloutChecker {
    fn check_generations(model: &Model, out: &mut Findings<'_>) {
        for &(id, slot) in &model.step.spawns {
            let t = model.track(id).expect("spawned workers are tracked");
            if slot >= model.target() {
                continue;
            }
            let generation = t.generation;
            if t.successor {
                let expected = model.rollout.map(|r| r.generation);
                if expected != Some(generation) {
                    return out.fail(
                        SPAWN_GENERATION,
                        format!(
                            "successor w{id} runs generation {generation}, rollout is {expected:?}"
                        ),
                    );
                }
            } else if generation != model.generation {
                return out.fail(
                    SPAWN_GENERATION,
                    format!(
                        "w{id} runs generation {generation}, the serving one is {}",
                        model.generation
                    ),
                );
            }
        }
    }

    fn check_finished(generation: u64, cluster: &ClusterState, out: &mut Findings<'_>) {
        let mut serving = 0;
        // A recycle deferred by the rollout resumes as it ends: its successor (the only
        // kind of successor once the rollout is over) is no slot's worker yet.
        for w in cluster
            .workers()
            .filter(|w| w.stop_reason.is_none() && !w.successor)
        {
            serving += 1;
            if w.state != WorkerState::Ready || w.generation != generation || !w.proven {
                out.fail(
                    RELOAD_FINISHED,
                    format!(
                        "rollout of generation {generation} finished but w{} is {} of \
                         generation {} (proven: {})",
                        w.id, w.state, w.generation, w.proven
                    ),
                );
            }
        }
        if serving != cluster.target() {
            out.fail(
                RELOAD_FINISHED,
                format!(
                    "rollout finished with {serving} of {} slots serving",
                    cluster.target()
                ),
            );
        }
    }

    /// A stop with no reason of its own but a ready successor in its slot: only once
    /// that successor passed probation.
    fn check_probation(model: &Model, out: &mut Findings<'_>) {
        let now = model.now();
        let min_uptime = model.config.min_uptime();
        for &(id, signal) in &model.step.stop_signals {
            let t = model.track(id).expect("signalled workers are tracked");
            if t.justified {
                continue;
            }
            if let Some((new, ready_at)) = model.replaced_by(id) {
                if now < ready_at + min_uptime {
                    let message = format!(
                        "{signal} to old w{id} (slot {}) while its new worker w{new} is in \
                         probation (ready at {ready_at:?}, for {:?} of {min_uptime:?})",
                        t.slot,
                        now - ready_at
                    );
                    return out.fail(PROBATION_BEFORE_STOP, message);
                }
            }
        }
    }
}

impl Concern for RolloutChecker {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[SPAWN_GENERATION, RELOAD_FINISHED, PROBATION_BEFORE_STOP]
    }

    fn on_step_end(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        Self::check_generations(model, out);
        if let Some(generation) = model.step.reload_finished {
            Self::check_finished(generation, cluster, out);
        }
        Self::check_probation(model, out);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Event, Signal, WorkerId};

    use super::super::check::{PROBATION_BEFORE_STOP, SPAWN_GENERATION};
    use super::super::harness::{config, event, pid, ready, signal, spawn, started, Bench, MS};
    use super::RolloutChecker;
    use crate::checker::Input;

    #[test]
    fn fires_on_a_spawn_of_a_generation_that_does_not_serve() {
        let mut bench = Bench::new(&mut config(1), RolloutChecker);
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 2)]);
        bench.assert_fired(SPAWN_GENERATION);
    }

    #[test]
    fn fires_when_an_old_worker_is_stopped_during_its_successors_probation() {
        let mut b = config(1);
        b.min_uptime(100 * MS);
        let mut bench = Bench::new(&mut b, RolloutChecker);
        bench.boot(1);
        let reload = event(Event::ReloadStarted { generation: 2 });
        bench.step(MS, Some(Input::Reload), &[reload, spawn(2, 0, 2)]);
        let spawned = Input::Spawned {
            id: WorkerId(2),
            pid: pid(2),
        };
        bench.step(MS, Some(spawned), &[started(2, 0, 2)]);
        let ready_input = Input::Ready { id: WorkerId(2) };
        bench.step(2 * MS, Some(ready_input), &[ready(2, 0)]);
        bench.assert_clean();
        // w2 has been ready for 1 ms of its 100 ms probation.
        bench.step(3 * MS, Some(Input::Timeout), &[signal(1, Signal::Term)]);
        bench.assert_fired(PROBATION_BEFORE_STOP);
    }
}
