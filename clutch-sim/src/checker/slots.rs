//! The target: at most target plus the rollout's surge (or the recycles' successors)
//! workers serve (are not leaving),
//! and once the world has healed, a cluster that is not shutting down serves its target
//! with ready workers and no rollout is stuck.
//!
//! Owns no state.

use clutch_proto::{ClusterState, Phase};

use super::check::{LIVENESS, SURGE};
use super::model::Model;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct SlotsChecker;

impl Concern for SlotsChecker {
    fn name(&self) -> &'static str {
        "slots"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[SURGE, LIVENESS]
    }

    fn on_step_end(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        // The serving count can only outgrow its bound in a step that spawned, lowered the
        // target or ended a rollout (the surge allowance): count only then.
        let step = &model.step;
        if step.spawns.is_empty() && step.scaled.is_none() && !step.reload_ended {
            return;
        }
        let target = model.target();
        let surge = if model.rollout.is_some() {
            model.config.rollout_batch().min(target)
        } else {
            // Outside a rollout, a recycle's successor serves beside the worker it
            // replaces (one per slot at most).
            model
                .live()
                .iter()
                .filter_map(|&id| model.track(id))
                .filter(|t| t.recycler && !t.stop_requested && t.slot < target)
                .count()
                .min(target)
        };
        let serving = cluster
            .workers()
            .filter(|w| w.stop_reason.is_none())
            .count();
        if serving > target + surge {
            out.fail(
                SURGE,
                format!("{serving} workers serving, target {target} + surge {surge}"),
            );
        }
    }

    fn on_liveness(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        if model.shutdown_at.is_some() || model.config.is_in_process() {
            return;
        }
        if cluster.ready_workers() != cluster.target() || cluster.phase() != Phase::Running {
            out.fail(
                LIVENESS,
                format!(
                    "healthy world, yet {} of {} ready in phase {}",
                    cluster.ready_workers(),
                    cluster.target(),
                    cluster.phase()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::check::{LIVENESS, SURGE};
    use super::super::harness::{config, spawn, Bench};
    use super::SlotsChecker;

    #[test]
    fn fires_when_the_core_serves_more_than_its_target() {
        // The model believes one slot; the core runs three workers.
        let believed = config(1).build().unwrap();
        let core = config(3).build().unwrap();
        let mut bench = Bench::mismatched(&believed, core, SlotsChecker);
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        bench.assert_fired(SURGE);
    }

    #[test]
    fn fires_when_a_healed_world_is_not_at_its_target() {
        let mut bench = Bench::new(&mut config(1), SlotsChecker);
        bench.boot(1).assert_clean();
        // The bystander core never got its worker ready.
        bench.liveness(Duration::from_secs(1));
        bench.assert_fired(LIVENESS);
    }
}
