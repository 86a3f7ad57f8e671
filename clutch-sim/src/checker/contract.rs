//! The driving contract and the core's own counts: a stale report is ignored, counted
//! and has no effect; a live worker's reported exit gives exactly one departure; the
//! core's live count is the stream's; `NoWorkers` comes exactly when it reaches zero;
//! after `handle_timeout(now)` the next deadline lies in the future; and
//! `ClusterState::check_invariants` holds after every step.
//!
//! Owns the core's ignored-input count before the step.

use clutch_proto::{Action, ClusterState, Event};

use super::check::{CORE_INVARIANTS, INPUT_ACCOUNTING, LIVE_COUNT, NO_WORKERS, TIME_ADVANCES};
use super::model::Model;
use super::Input;
use super::{Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ContractChecker {
    ignored_before: u64,
}

impl ContractChecker {
    fn check_accounting(&self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        let step = &model.step;
        let ignored = cluster.stats().ignored_inputs - self.ignored_before;
        if step.stale && (ignored != 1 || step.actions != 0) {
            let message = format!(
                "{:?} about a departed, unknown or post-exit worker: {ignored} ignored, {} \
                 actions (expected 1 and 0)",
                step.input, step.actions
            );
            return out.fail(INPUT_ACCOUNTING, message);
        }
        if let Some(id) = step.exit_of {
            if step.departures_of_exit != 1 {
                let message = format!(
                    "the exit of live w{id} gave {} departure events",
                    step.departures_of_exit
                );
                out.fail(INPUT_ACCOUNTING, message);
            }
        }
    }
}

impl Concern for ContractChecker {
    fn name(&self) -> &'static str {
        "contract"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            CORE_INVARIANTS,
            INPUT_ACCOUNTING,
            NO_WORKERS,
            LIVE_COUNT,
            TIME_ADVANCES,
        ]
    }

    fn on_input(&mut self, _model: &Model, cluster: &ClusterState, _out: &mut Findings<'_>) {
        self.ignored_before = cluster.stats().ignored_inputs;
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            return;
        }
        match action {
            Action::Spawn { .. } | Action::Exit(_) if model.expect_no_workers => out.fail(
                NO_WORKERS,
                format!("the live count reached zero but {action:?} came before NoWorkers"),
            ),
            Action::Event(Event::NoWorkers) if !model.expect_no_workers => out.fail(
                NO_WORKERS,
                format!("NoWorkers with {} workers live", model.live().len()),
            ),
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        if model.expect_no_workers {
            out.fail(
                NO_WORKERS,
                "the live count reached zero without NoWorkers".to_owned(),
            );
        }
        self.check_accounting(model, cluster, out);
        if model.live().len() != cluster.live_workers() {
            out.fail(
                LIVE_COUNT,
                format!(
                    "{} workers live by the action stream, {} by the core",
                    model.live().len(),
                    cluster.live_workers()
                ),
            );
        }
        if model.step.input == Some(Input::Timeout) && !model.step.stale {
            if let Some(at) = cluster.poll_timeout() {
                if at <= model.base + model.now() {
                    out.fail(
                        TIME_ADVANCES,
                        format!(
                            "after handle_timeout the next deadline is {:?}",
                            at - model.base
                        ),
                    );
                }
            }
        }
        if let Err(message) = cluster.check_invariants() {
            out.fail(CORE_INVARIANTS, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Event, WorkerId};

    use super::super::check::{INPUT_ACCOUNTING, LIVE_COUNT, NO_WORKERS};
    use super::super::harness::{config, died, event, exited, ready, spawn, Bench, MS};
    use super::ContractChecker;
    use crate::checker::Input;

    #[test]
    fn fires_when_a_stale_report_has_an_effect() {
        let mut bench = Bench::new(&mut config(1), ContractChecker::default());
        bench
            .step(Duration::ZERO, None, &[spawn(1, 0, 1)])
            .assert_clean();
        // w9 was never spawned: the core must ignore (and count) the report.
        bench.step(MS, Some(Input::Ready { id: WorkerId(9) }), &[ready(9, 0)]);
        bench.assert_fired(INPUT_ACCOUNTING);
    }

    #[test]
    fn fires_when_the_stream_and_the_core_disagree_on_the_live_count() {
        // The core spawned two; the stream says one.
        let mut bench = Bench::new(&mut config(2), ContractChecker::default());
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        bench.assert_fired(LIVE_COUNT);
    }

    #[test]
    fn fires_when_no_workers_is_missing_or_false() {
        let mut bench = Bench::new(&mut config(1), ContractChecker::default());
        bench.step(MS, Some(Input::Timeout), &[event(Event::NoWorkers)]);
        bench.assert_fired(NO_WORKERS);

        let mut bench = Bench::new(&mut config(1), ContractChecker::default());
        bench.boot(1);
        bench.step(MS, Some(exited(1)), &[died(1, 0, true, MS)]);
        bench.assert_fired(NO_WORKERS);
    }
}
