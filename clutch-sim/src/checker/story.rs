//! Each worker's events tell one consistent life story, and every event comes in a
//! step driven by an input that can cause it: `WorkerStarted` only after `Spawned`, at
//! most once, with the slot, generation and pid it was spawned with; a worker asked to
//! stop leaves by `WorkerExit`, any other by `WorkerDied`; rollouts, scalings and the
//! breaker's trip agree with what came before; ids are fresh and consecutive; and an
//! exited cluster leaves no story unfinished.
//!
//! Owns no state: the story is the shared model's.

use clutch_proto::{
    Action, ClusterState, Event, Readiness, ShutdownTrigger, Signal, SpawnErrorKind,
};

use super::check::STORY;
use super::model::Model;
use super::{event_worker, Concern, Findings};
use crate::input::Input;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct StoryChecker;

/// Reports `event` unless the step's input can drive it.
fn expect_input(model: &Model, event: &Event, ok: bool, out: &mut Findings<'_>) {
    if !ok {
        let input = model.step.input;
        out.fail(STORY, format!("{event:?} in a step driven by {input:?}"));
    }
}

fn inconsistent(event: &Event, out: &mut Findings<'_>) {
    out.fail(STORY, format!("inconsistent {event:?}"));
}

impl StoryChecker {
    /// The events about one live worker.
    #[allow(clippy::too_many_lines)]
    fn on_worker_event(&self, model: &Model, event: &Event, out: &mut Findings<'_>) {
        let now = model.now();
        let input = model.step.input;
        let Some(t) = event_worker(event).and_then(|id| model.track(id)) else {
            return;
        };
        match *event {
            Event::WorkerStarted {
                id,
                slot,
                pid,
                generation,
            } => {
                expect_input(model, event, input == Some(Input::Spawned { id, pid }), out);
                if t.spawn_outcome || t.slot != slot.0 || t.generation != generation {
                    inconsistent(event, out);
                }
            }
            Event::WorkerSpawnFailed {
                id,
                slot,
                ref error,
            } => {
                let reported = match input {
                    Some(Input::SpawnFailed { id: i, kind }) if i == id => Some(kind),
                    _ => None,
                };
                expect_input(model, event, reported.is_some(), out);
                // A Cancelled report arrives as Resource unless the worker was leaving.
                let kind_ok = match reported {
                    Some(SpawnErrorKind::Cancelled) => {
                        error.kind == SpawnErrorKind::Resource && !model.step.cancel_legit
                    }
                    Some(kind) => error.kind == kind,
                    None => true,
                };
                if t.spawn_outcome || t.slot != slot.0 || !kind_ok {
                    inconsistent(event, out);
                }
            }
            Event::WorkerReady { id, slot, pid } => {
                let readiness = model.config.readiness();
                let ok = match input {
                    Some(Input::Ready { id: i }) => i == id,
                    Some(Input::Spawned { id: i, .. }) => {
                        i == id && readiness == Readiness::Spawned
                    }
                    Some(Input::Timeout) => matches!(readiness, Readiness::Delay(_)),
                    _ => false,
                };
                expect_input(model, event, ok, out);
                let consistent = !t.ready
                    && t.started_at.is_some()
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid);
                if !consistent {
                    inconsistent(event, out);
                }
            }
            Event::WorkerStopping { id, slot, pid } => {
                expect_input(model, event, input == Some(Input::Stopping { id }), out);
                let consistent = t.started_at.is_some()
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid);
                if !consistent {
                    inconsistent(event, out);
                }
            }
            Event::WorkerBootTimedOut { slot, pid, .. } => {
                expect_input(model, event, input == Some(Input::Timeout), out);
                let consistent = !t.ready
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid)
                    && model.config.readiness() == Readiness::Notify;
                if !consistent {
                    inconsistent(event, out);
                }
            }
            Event::WorkerHung { slot, pid, .. } => {
                expect_input(model, event, input == Some(Input::Timeout), out);
                let consistent = t.ready
                    && !t.stop_requested
                    && t.slot == slot.0
                    && t.pid == Some(pid)
                    && model.config.hang().timeout.is_some();
                if !consistent {
                    inconsistent(event, out);
                }
            }
            Event::WorkerDied {
                id,
                slot,
                pid,
                status,
                was_ready,
                uptime,
            } => {
                expect_input(
                    model,
                    event,
                    input == Some(Input::Exited { id, status }),
                    out,
                );
                let consistent = t.started_at.is_some()
                    && t.slot == slot.0
                    && t.pid == pid
                    && t.ready == was_ready
                    && t.started_at.map(|s| now - s) == Some(uptime);
                if !consistent {
                    inconsistent(event, out);
                } else if t.stop_requested {
                    out.fail(
                        STORY,
                        format!("w{id} was asked to stop, yet its exit is WorkerDied"),
                    );
                }
            }
            Event::WorkerExit {
                id,
                slot,
                pid,
                status,
                ..
            } => {
                expect_input(
                    model,
                    event,
                    input == Some(Input::Exited { id, status }),
                    out,
                );
                if !(t.started_at.is_some() && t.slot == slot.0 && t.pid == pid) {
                    inconsistent(event, out);
                } else if !t.stop_requested {
                    out.fail(
                        STORY,
                        format!("WorkerExit for w{id}, which the master never asked to stop"),
                    );
                }
            }
            _ => {}
        }
    }

    /// The events about the cluster as a whole (and a cancelled spawn).
    fn on_cluster_event(&self, model: &Model, event: &Event, out: &mut Findings<'_>) {
        let input = model.step.input;
        match *event {
            Event::WorkerSpawnCancelled { id, slot, .. } => {
                let report = Input::SpawnFailed {
                    id,
                    kind: SpawnErrorKind::Cancelled,
                };
                expect_input(model, event, input == Some(report), out);
                let consistent = model
                    .track(id)
                    .is_some_and(|t| !t.spawn_outcome && t.slot == slot.0);
                if !consistent || !model.step.cancel_legit {
                    inconsistent(event, out);
                }
            }
            Event::ShutdownStarted { trigger } => {
                if model.shutdown_at.is_some() {
                    return out.fail(STORY, "a second ShutdownStarted".to_owned());
                }
                let ok = match (trigger, input) {
                    (ShutdownTrigger::Signal(s), Some(Input::Signal(i))) => s == i,
                    (ShutdownTrigger::Command, Some(Input::Shutdown | Input::ShutdownNow)) => true,
                    (ShutdownTrigger::Breaker, _) => model.step.breaker_tripped,
                    (ShutdownTrigger::StartupFailed, Some(Input::SpawnFailed { .. })) => true,
                    _ => false,
                };
                expect_input(model, event, ok, out);
            }
            Event::BreakerTripped { failures, .. } => {
                let budget = model.config.crash_budget().failures as usize;
                let threshold = budget.max(model.target());
                if model.shutdown_at.is_some() || failures < threshold {
                    out.fail(
                        STORY,
                        format!(
                            "{event:?} (threshold {threshold}, shutting down: {:?})",
                            model.shutdown_at
                        ),
                    );
                }
            }
            Event::ReloadStarted { generation } => {
                // A reload command, or a queued one starting as the previous rollout ends.
                let ok = matches!(input, Some(Input::Reload | Input::Signal(Signal::Hup)))
                    || model.step.reload_ended;
                expect_input(model, event, ok, out);
                if model.rollout.is_some() || generation <= model.max_generation {
                    out.fail(
                        STORY,
                        format!(
                            "{event:?} while {:?} (highest so far {})",
                            model.rollout, model.max_generation
                        ),
                    );
                }
            }
            Event::ReloadQueued if model.rollout.is_none() => {
                out.fail(STORY, "ReloadQueued with no rollout".to_owned());
            }
            Event::ReloadFinished { generation, .. } | Event::ReloadFailed { generation, .. }
                if model.rollout.map(|r| r.generation) != Some(generation) =>
            {
                out.fail(STORY, format!("{event:?} while {:?}", model.rollout));
            }
            Event::Scaled { from, to } => {
                let ok = match input {
                    Some(Input::Scale(n)) => n == to,
                    Some(Input::Signal(Signal::Ttin)) => to == from + 1,
                    Some(Input::Signal(Signal::Ttou)) => to + 1 == from,
                    _ => false,
                };
                expect_input(model, event, ok, out);
                if from != model.target() || from == to {
                    out.fail(STORY, format!("{event:?} with {} slots", model.target()));
                }
            }
            Event::SignalIgnored { signal, .. } => {
                expect_input(model, event, input == Some(Input::Signal(signal)), out);
            }
            _ => {}
        }
    }
}

impl Concern for StoryChecker {
    fn name(&self) -> &'static str {
        "story"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[STORY]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            return;
        }
        match action {
            Action::Spawn { id, .. } if model.shutdown_at.is_none() && id.0 != model.next_id() => {
                out.fail(
                    STORY,
                    format!(
                        "spawn of w{id}: ids must be fresh and consecutive (next is {})",
                        model.next_id()
                    ),
                );
            }
            Action::Event(event) => match event_worker(event) {
                Some(id) if !model.is_live(id) => {
                    out.fail(STORY, format!("{event:?} about w{id}, which is not live"))
                }
                Some(_) => self.on_worker_event(model, event, out),
                None => self.on_cluster_event(model, event, out),
            },
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        let target = model.target();
        if let Some(&(id, slot)) = model.step.spawns.iter().find(|&&(_, slot)| slot >= target) {
            out.fail(STORY, format!("w{id} spawned in slot {slot} of {target}"));
        }
    }

    fn on_end(&mut self, model: &Model, out: &mut Findings<'_>) {
        if model.exited_at.is_some() {
            if let Some(index) = model
                .tracks()
                .iter()
                .position(|t| !t.departed || !t.spawn_outcome)
            {
                out.fail(STORY, format!("exited, yet w{index}'s story is incomplete"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::Signal;

    use super::super::check::STORY;
    use super::super::harness::{config, died, exited, signal, spawn, started, Bench, MS};
    use super::StoryChecker;
    use crate::input::Input;

    #[test]
    fn fires_on_a_start_no_spawn_report_drove() {
        let mut bench = Bench::new(&mut config(1), StoryChecker);
        bench
            .step(Duration::ZERO, None, &[spawn(1, 0, 1)])
            .assert_clean();
        bench.step(MS, Some(Input::Timeout), &[started(1, 0, 1)]);
        bench.assert_fired(STORY);
    }

    #[test]
    fn fires_when_a_requested_stop_is_reported_as_a_death() {
        let mut bench = Bench::new(&mut config(1), StoryChecker);
        bench.boot(1);
        bench.step(MS, Some(Input::Timeout), &[signal(1, Signal::Term)]);
        bench.assert_clean();
        bench.step(2 * MS, Some(exited(1)), &[died(1, 0, true, 2 * MS)]);
        bench.assert_fired(STORY);
    }

    #[test]
    fn fires_on_ids_that_are_not_consecutive() {
        let mut bench = Bench::new(&mut config(1), StoryChecker);
        bench.step(Duration::ZERO, None, &[spawn(2, 0, 1)]);
        bench.assert_fired(STORY);
    }
}
