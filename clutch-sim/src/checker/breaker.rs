//! The crash breaker and the startup failure. The breaker counts only failures of the
//! program's own (exec and other spawn failures, deaths, announced stops and hangs in
//! probation, boot timeouts) — never the master's (`Resource`, a `Cancelled` report) —
//! and only since the last worker proved itself; it never stops a serving worker (it
//! trips only while none is ready); and a cluster that has served nobody while enough
//! such failures were counted for the budget's window must have shut down. A startup
//! failure comes exactly when a first-generation worker cannot be executed before any
//! worker ever started.
//!
//! Owns the failures of the program's own (when each came, how many the breaker must
//! count this step), the core's boot-failure count before the step, and the current
//! period with no worker serving, with its window probe.

use std::time::Duration;

use clutch_proto::{Action, ClusterState, Event, ShutdownTrigger, SpawnErrorKind, WorkerId};

use super::check::{
    BREAKER_SPARES_SERVING, RESOURCE_NOT_COUNTED, STARTUP_FAILED, ZERO_READY_WINDOW,
};
use super::model::Model;
use super::Input;
use super::{Concern, Findings, Probes};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct BreakerChecker {
    /// When each failure of the program's own happened (what the breaker may count).
    program_failures: Vec<Duration>,
    /// Failures of this step that the breaker must count.
    must_count: u32,
    /// The core's boot-failure count before the step.
    boot_failures_before: u64,
    /// Since when no worker serves (not shutting down), the failures the breaker must
    /// have counted since, the first of them, and a number for the period.
    zero_since: Option<Duration>,
    zero_failures: u32,
    zero_first_failure: Option<Duration>,
    zero_period: u64,
    /// The zero-ready period that must have ended in a shutdown by then (if its
    /// failures reached the threshold).
    probes: Probes<u64>,
}

impl BreakerChecker {
    /// A failure of the program's own by worker `id`: recorded as one the breaker may
    /// count, and as one it must count unless a rollout's (those fail the rollout) or,
    /// with `check_stop`, a worker already to stop (the events driven by a deadline
    /// mark their worker as stopping before they count it).
    fn program_failure(&mut self, model: &Model, id: WorkerId, check_stop: bool) {
        self.program_failures.push(model.now());
        let rollout = model.rollout.map(|r| r.generation);
        if let Some(t) = model.track(id) {
            let to_stop = check_stop && (t.justified || t.stop_requested);
            if Some(t.generation) != rollout && !to_stop {
                self.must_count += 1;
            }
        }
    }

    fn on_trip(&self, model: &Model, failures: usize, out: &mut Findings<'_>) {
        let since = model.last_proof.unwrap_or_default();
        let backed = self
            .program_failures
            .iter()
            .filter(|&&at| at >= since)
            .count();
        let serving: Vec<WorkerId> = model.serving().collect();
        if !serving.is_empty() {
            out.fail(
                BREAKER_SPARES_SERVING,
                format!("the breaker tripped while {serving:?} served"),
            );
        }
        if backed < failures {
            out.fail(
                RESOURCE_NOT_COUNTED,
                format!(
                    "the breaker counted {failures} failures since {since:?}, only \
                     {backed} were the program's"
                ),
            );
        }
    }

    /// What a spawn failure's kind allows: the master's failures count toward nothing; an
    /// exec failure before any worker started ends the cluster.
    fn check_spawn_failure_kinds(
        &self,
        model: &Model,
        cluster: &ClusterState,
        out: &mut Findings<'_>,
    ) {
        let step = &model.step;
        let Some(Input::SpawnFailed { kind, .. }) = step.input.filter(|_| !step.stale) else {
            return;
        };
        let counted = cluster.stats().boot_failures - self.boot_failures_before;
        let masters = matches!(kind, SpawnErrorKind::Resource | SpawnErrorKind::Cancelled);
        if masters && (counted > 0 || step.breaker_tripped) {
            let message = format!(
                "a {kind} spawn failure counted {counted} boot failures (breaker tripped: {})",
                step.breaker_tripped
            );
            return out.fail(RESOURCE_NOT_COUNTED, message);
        }
        if step.startup_failure_due && !step.startup_failed {
            let message = format!(
                "{:?} while no worker ever started did not end the cluster",
                step.input
            );
            out.fail(STARTUP_FAILED, message);
        }
    }

    /// Follows the periods with no worker serving and, once such a period has seen the
    /// breaker's threshold of failures it must count, and lasted its window since the
    /// first of them, requires a shutdown.
    fn check_zero_ready(&mut self, model: &Model, out: &mut Findings<'_>) {
        let now = model.now();
        if model.shutdown_at.is_some() || model.config.is_in_process() {
            self.zero_since = None;
            return;
        }
        if model.serving().next().is_some() {
            self.zero_since = None;
            return;
        }
        if self.zero_since.is_none() {
            self.zero_since = Some(now);
            self.zero_failures = 0;
            self.zero_first_failure = None;
            self.zero_period += 1;
        }
        if self.must_count > 0 {
            self.zero_failures += self.must_count;
            if self.zero_first_failure.is_none() {
                self.zero_first_failure = Some(now);
                let at = now + model.config.crash_budget().window;
                self.probes.push(at, self.zero_period);
            }
        }
        self.judge_zero_ready(model, out);
    }

    fn judge_zero_ready(&mut self, model: &Model, out: &mut Findings<'_>) {
        let now = model.now();
        let budget = model.config.crash_budget();
        let threshold = (budget.failures as usize).max(model.target());
        let (Some(since), Some(first)) = (self.zero_since, self.zero_first_failure) else {
            return;
        };
        let window = budget.window;
        if model.shutdown_at.is_none()
            && self.zero_failures as usize >= threshold
            && now >= first + window
        {
            let message = format!(
                "no worker served since {since:?}; {} failures since {first:?} (threshold \
                 {threshold}), past the {window:?} window, and no shutdown",
                self.zero_failures
            );
            out.fail(ZERO_READY_WINDOW, message);
            // Once is enough for this period.
            self.zero_first_failure = None;
        }
    }
}

impl Concern for BreakerChecker {
    fn name(&self) -> &'static str {
        "breaker"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            RESOURCE_NOT_COUNTED,
            STARTUP_FAILED,
            BREAKER_SPARES_SERVING,
            ZERO_READY_WINDOW,
        ]
    }

    fn on_input(&mut self, _model: &Model, cluster: &ClusterState, _out: &mut Findings<'_>) {
        self.must_count = 0;
        self.boot_failures_before = cluster.stats().boot_failures;
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        let Some(event) = super::event_of(action).filter(|_| model.exited_at.is_none()) else {
            return;
        };
        let live = |id| model.is_live(id);
        let young = |id| !model.is_healthy(id);
        match *event {
            // An upper bound on what the breaker may count: the core skips some
            // (leaving workers, a rollout's), never adds any.
            Event::WorkerSpawnFailed { id, ref error, .. }
                if live(id)
                    && matches!(error.kind, SpawnErrorKind::Exec | SpawnErrorKind::Other) =>
            {
                self.program_failure(model, id, true);
            }
            Event::WorkerStopping { id, .. } if live(id) && young(id) => {
                self.program_failure(model, id, true);
            }
            Event::WorkerBootTimedOut { id, .. } if live(id) => {
                self.program_failure(model, id, false);
            }
            // Hung in probation: a failure of the program's own.
            Event::WorkerHung { id, .. } if live(id) && young(id) => {
                self.program_failure(model, id, false);
            }
            Event::WorkerDied { id, .. } if live(id) && young(id) => {
                self.program_failure(model, id, true);
            }
            Event::ShutdownStarted {
                trigger: ShutdownTrigger::StartupFailed,
            } if model.shutdown_at.is_none() && !model.step.startup_failure_due => {
                out.fail(
                    STARTUP_FAILED,
                    format!(
                        "a startup failure driven by {:?} (a worker started before: {})",
                        model.step.input, model.ever_started
                    ),
                );
            }
            Event::BreakerTripped { failures, .. } => self.on_trip(model, failures, out),
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        self.check_spawn_failure_kinds(model, cluster, out);
        self.check_zero_ready(model, out);
    }

    fn next_probe(&self) -> Option<Duration> {
        self.probes.next_at()
    }

    fn on_probes(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        while let Some(period) = self.probes.pop_due(model.now()) {
            if period == self.zero_period && self.zero_since.is_some() {
                self.judge_zero_ready(model, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{CrashBudget, Event, ShutdownTrigger, SpawnErrorKind, WorkerId};

    use super::super::check::{BREAKER_SPARES_SERVING, STARTUP_FAILED, ZERO_READY_WINDOW};
    use super::super::harness::{config, event, spawn, spawn_failed, Bench, MS};
    use super::BreakerChecker;
    use crate::checker::Input;

    #[test]
    fn fires_when_the_breaker_trips_with_a_worker_serving() {
        let mut bench = Bench::new(&mut config(1), BreakerChecker::default());
        bench.boot(1).assert_clean();
        let trip = event(Event::BreakerTripped {
            failures: 5,
            window: Duration::from_secs(1),
        });
        bench.step(MS, Some(Input::Timeout), &[trip]);
        bench.assert_fired(BREAKER_SPARES_SERVING);
    }

    #[test]
    fn fires_on_a_startup_failure_no_exec_failure_drove() {
        let mut bench = Bench::new(&mut config(1), BreakerChecker::default());
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        let startup = event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::StartupFailed,
        });
        bench.step(MS, Some(Input::Timeout), &[startup]);
        bench.assert_fired(STARTUP_FAILED);
    }

    #[test]
    fn fires_when_a_cluster_that_cannot_serve_outlives_the_window() {
        let mut b = config(1);
        b.crash_budget(CrashBudget {
            failures: 1,
            window: 100 * MS,
        });
        let mut bench = Bench::new(&mut b, BreakerChecker::default());
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        let report = Input::SpawnFailed {
            id: WorkerId(1),
            kind: SpawnErrorKind::Other,
        };
        let failed = spawn_failed(1, 0, SpawnErrorKind::Other);
        bench.step(MS, Some(report), &[failed, event(Event::NoWorkers)]);
        bench.probes(50 * MS).assert_clean();
        // No shutdown by the end of the window since that one failure.
        bench.probes(101 * MS);
        bench.assert_fired(ZERO_READY_WINDOW);
    }
}
