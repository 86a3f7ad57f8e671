//! Each worker's events tell one consistent life story, and every event comes in a
//! step driven by an input that can cause it: `WorkerStarted` only after `Spawned`, at
//! most once, with the slot, generation and pid it was spawned with; a worker asked to
//! stop leaves by `WorkerExit`, any other by `WorkerDied`; rollouts, scalings and the
//! breaker's trip agree with what came before; ids are fresh and consecutive; and an
//! exited cluster leaves no story unfinished.
//!
//! Owns no state: the story is the shared model's.

use clutch_proto::{
    Action, ClusterState, Event, Readiness, RecycleCause, ShutdownTrigger, Signal, SpawnError,
    SpawnErrorKind, WorkerId,
};

use super::check::STORY;
use super::model::{Model, Track};
use super::Input;
use super::{event_worker, Concern, Findings};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct StoryChecker;

/// Whether the step's input can drive `event` (events it does not constrain: true).
fn driven_by_input(model: &Model, event: &Event) -> bool {
    let input = model.step.input;
    let readiness = model.config.readiness();
    match *event {
        Event::WorkerStarted { id, pid, .. } => input == Some(Input::Spawned { id, pid }),
        Event::WorkerSpawnFailed { id, .. } => {
            matches!(input, Some(Input::SpawnFailed { id: i, .. }) if i == id)
        }
        Event::WorkerSpawnCancelled { id, .. } => {
            input
                == Some(Input::SpawnFailed {
                    id,
                    error: SpawnError::new(SpawnErrorKind::Cancelled),
                })
        }
        Event::WorkerReady { id, .. } => match input {
            Some(Input::Ready { id: i }) => i == id,
            Some(Input::Spawned { id: i, .. }) => i == id && readiness == Readiness::Spawned,
            Some(Input::Timeout) => matches!(readiness, Readiness::Delay(_)),
            _ => false,
        },
        Event::WorkerStopping { id, .. } => input == Some(Input::Stopping { id }),
        Event::WorkerBootTimedOut { .. } | Event::WorkerHung { .. } => {
            input == Some(Input::Timeout)
        }
        Event::WorkerDied { id, status, .. } | Event::WorkerExit { id, status, .. } => {
            input == Some(Input::Exited { id, status })
        }
        Event::ShutdownStarted { trigger } => match (trigger, input) {
            (ShutdownTrigger::Signal(s), Some(Input::Signal(i))) => s == i,
            (ShutdownTrigger::Command, Some(Input::Shutdown | Input::ShutdownNow)) => true,
            (ShutdownTrigger::Breaker, _) => model.step.breaker_tripped,
            (ShutdownTrigger::StartupFailed, Some(Input::SpawnFailed { .. })) => true,
            (
                ShutdownTrigger::Upgrade,
                Some(Input::Successor(clutch_proto::SuccessorFact::Ready)),
            ) => true,
            _ => false,
        },
        // A reload command, or a queued one starting as the previous rollout ends.
        Event::ReloadStarted { .. } => {
            matches!(input, Some(Input::Reload | Input::Signal(Signal::Hup)))
                || model.step.reload_ended
        }
        Event::Scaled { from, to } => match input {
            Some(Input::Scale(n)) => n == to,
            Some(Input::Signal(Signal::Ttin)) => to == from + 1,
            Some(Input::Signal(Signal::Ttou)) => to + 1 == from,
            _ => false,
        },
        Event::SignalIgnored { signal, .. } => input == Some(Input::Signal(signal)),
        // Asked for (by its report), or the age timer.
        Event::WorkerRecycling { id, cause, .. } => match (cause, input) {
            (RecycleCause::Age, i) => i == Some(Input::Timeout),
            (_, Some(Input::Recycle { id: i, cause: c })) => i == id && c == cause,
            _ => false,
        },
        _ => true,
    }
}

/// Whether an event about live worker `t` agrees with its story so far.
fn agrees(model: &Model, t: &Track, event: &Event) -> bool {
    let now = model.now();
    match *event {
        Event::WorkerStarted {
            slot, generation, ..
        } => !t.spawn_outcome && t.slot == slot.0 && t.generation == generation,
        Event::WorkerSpawnFailed {
            slot, ref error, ..
        } => {
            // A Cancelled report arrives as Resource unless the worker was leaving.
            let kind_ok = match model.step.input {
                Some(Input::SpawnFailed {
                    error:
                        SpawnError {
                            kind: SpawnErrorKind::Cancelled,
                            ..
                        },
                    ..
                }) => error.kind == SpawnErrorKind::Resource && !model.step.cancel_legit,
                Some(Input::SpawnFailed { error: input, .. }) => error.kind == input.kind,
                _ => true,
            };
            !t.spawn_outcome && t.slot == slot.0 && kind_ok
        }
        Event::WorkerReady { slot, pid, .. } => {
            !t.ready
                && t.started_at.is_some()
                && !t.stop_requested
                && t.slot == slot.0
                && t.pid == Some(pid)
        }
        Event::WorkerStopping { slot, pid, .. } => {
            t.started_at.is_some() && !t.stop_requested && t.slot == slot.0 && t.pid == Some(pid)
        }
        Event::WorkerBootTimedOut { slot, pid, .. } => {
            !t.ready
                && !t.stop_requested
                && t.slot == slot.0
                && t.pid == Some(pid)
                && model.config.readiness() == Readiness::Notify
        }
        Event::WorkerHung { slot, pid, .. } => {
            t.ready
                && !t.stop_requested
                && t.slot == slot.0
                && t.pid == Some(pid)
                && model.config.hang().timeout.is_some()
        }
        Event::WorkerDied {
            slot,
            pid,
            was_ready,
            uptime,
            ..
        } => {
            t.started_at.is_some()
                && t.slot == slot.0
                && t.pid == pid
                && t.ready == was_ready
                && t.started_at.map(|s| now - s) == Some(uptime)
        }
        Event::WorkerExit { slot, pid, .. } => {
            t.started_at.is_some() && t.slot == slot.0 && t.pid == pid
        }
        Event::WorkerRecycling { slot, pid, .. } => {
            t.ready && !t.stop_requested && !t.recycling && t.slot == slot.0 && t.pid == Some(pid)
        }
        _ => true,
    }
}

impl StoryChecker {
    /// An event about live worker `id`.
    fn on_worker_event(model: &Model, id: WorkerId, event: &Event, out: &mut Findings<'_>) {
        let t = model.track(id).expect("live workers are tracked");
        if !agrees(model, t, event) {
            return out.fail(STORY, format!("inconsistent {event:?}"));
        }
        match *event {
            Event::WorkerDied { .. } if t.stop_requested => out.fail(
                STORY,
                format!("w{id} was asked to stop, yet its exit is WorkerDied"),
            ),
            Event::WorkerExit { .. } if !t.stop_requested => out.fail(
                STORY,
                format!("WorkerExit for w{id}, which the master never asked to stop"),
            ),
            _ => {}
        }
    }

    /// An event about the cluster as a whole (or a cancelled spawn, whose worker may be
    /// unknown).
    fn on_cluster_event(model: &Model, event: &Event, out: &mut Findings<'_>) {
        match *event {
            Event::WorkerSpawnCancelled { id, slot, .. } => {
                let consistent = model
                    .track(id)
                    .is_some_and(|t| !t.spawn_outcome && t.slot == slot.0);
                if !consistent || !model.step.cancel_legit {
                    out.fail(STORY, format!("inconsistent {event:?}"));
                }
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
            Event::ReloadStarted { generation }
                if model.rollout.is_some() || generation <= model.max_generation =>
            {
                out.fail(
                    STORY,
                    format!(
                        "{event:?} while {:?} (highest so far {})",
                        model.rollout, model.max_generation
                    ),
                );
            }
            Event::ReloadQueued if model.rollout.is_none() => {
                out.fail(STORY, "ReloadQueued with no rollout".to_owned());
            }
            Event::ReloadFinished { generation, .. } | Event::ReloadFailed { generation, .. }
                if model.rollout.map(|r| r.generation) != Some(generation) =>
            {
                out.fail(STORY, format!("{event:?} while {:?}", model.rollout));
            }
            Event::Scaled { from, to } if from != model.target() || from == to => {
                out.fail(STORY, format!("{event:?} with {} slots", model.target()));
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
            Action::Event(event) => {
                let worker = event_worker(event);
                if let Some(id) = worker.filter(|&id| !model.is_live(id)) {
                    return out.fail(STORY, format!("{event:?} about w{id}, which is not live"));
                }
                if let Event::ShutdownStarted { .. } = event {
                    if model.shutdown_at.is_some() {
                        return out.fail(STORY, "a second ShutdownStarted".to_owned());
                    }
                }
                if !driven_by_input(model, event) {
                    let input = model.step.input;
                    out.fail(STORY, format!("{event:?} in a step driven by {input:?}"));
                }
                match worker {
                    Some(id) => Self::on_worker_event(model, id, event, out),
                    None => Self::on_cluster_event(model, event, out),
                }
            }
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
    use crate::checker::Input;

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
