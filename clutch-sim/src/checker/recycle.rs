//! Recycling: a recycled worker is stopped only once a successor in its slot has
//! passed probation and still serves (so a slot never has fewer ready workers because
//! of a recycle); and an age recycle comes within `[max_age, max_age + jitter]` of the
//! worker's start — not before, and (for a worker that served its slot from its own
//! readiness on) not after: a probe holds the core to the upper bound.
//!
//! Owns, per worker that served its slot from its readiness, when its age recycle is
//! due at the latest.

use std::time::Duration;

use clutch_proto::{Action, ClusterState, Event, RecycleCause, StopReason, WorkerId};

use super::check::{RECYCLE_AGE, RECYCLE_BEFORE_STOP};
use super::model::Model;
use super::{Concern, Findings, Probes};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RecycleChecker {
    /// Workers whose age recycle must have begun by then.
    probes: Probes<WorkerId>,
    /// The latest time each of them may begin its age recycle, by worker id.
    due: Vec<Option<Duration>>,
}

impl RecycleChecker {
    fn due(&self, id: WorkerId) -> Option<Duration> {
        self.due.get(id.0 as usize).copied().flatten()
    }

    fn set_due(&mut self, id: WorkerId, at: Duration) {
        let index = id.0 as usize;
        if self.due.len() <= index {
            self.due.resize(index + 1, None);
        }
        self.due[index] = Some(at);
        self.probes.push(at, id);
    }

    fn on_age_recycle(&self, model: &Model, id: WorkerId, out: &mut Findings<'_>) {
        let now = model.now();
        let Some(age) = model.config.max_worker_age() else {
            return out.fail(
                RECYCLE_AGE,
                format!("w{id} recycled for its age, but no maximum age is set"),
            );
        };
        let Some(started) = model.track(id).and_then(|t| t.started_at) else {
            return;
        };
        let uptime = now.saturating_sub(started);
        if uptime < age {
            return out.fail(
                RECYCLE_AGE,
                format!("w{id} recycled for its age after {uptime:?}, below {age:?}"),
            );
        }
        if let Some(due) = self.due(id).filter(|&due| now > due) {
            out.fail(
                RECYCLE_AGE,
                format!(
                    "w{id} recycled for its age at {now:?}, after {due:?} (age {age:?} + \
                     jitter {:?})",
                    model.config.max_worker_age_jitter()
                ),
            );
        }
    }
}

impl Concern for RecycleChecker {
    fn name(&self) -> &'static str {
        "recycle"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[RECYCLE_BEFORE_STOP, RECYCLE_AGE]
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        let Some(event) = super::event_of(action).filter(|_| model.exited_at.is_none()) else {
            return;
        };
        match *event {
            Event::WorkerRecycling {
                id,
                cause: RecycleCause::Age,
                ..
            } if model.is_live(id) => self.on_age_recycle(model, id, out),
            Event::WorkerReady { id, .. } if model.is_live(id) => {
                // A worker that serves its slot as soon as it is ready (no successor of
                // a rollout or a recycle, which take over later) is watched from its
                // start: its recycle is due by age + jitter at the latest.
                let Some(age) = model.config.max_worker_age() else {
                    return;
                };
                let Some(t) = model.track(id) else { return };
                let Some(started) = t.started_at.filter(|_| !t.successor && !t.recycler) else {
                    return;
                };
                let due = started + age + model.config.max_worker_age_jitter();
                self.set_due(id, due.max(model.now()));
            }
            Event::WorkerExit {
                id,
                reason: StopReason::Recycled,
                ..
            } if model.is_live(id) => {
                let t = model.track(id).expect("live workers are tracked");
                match t.recycle_stop {
                    Some(true) => {}
                    Some(false) => out.fail(
                        RECYCLE_BEFORE_STOP,
                        format!(
                            "w{id} (slot {}) was stopped for its recycle before a successor \
                             in its slot had passed probation",
                            t.slot
                        ),
                    ),
                    None => out.fail(
                        RECYCLE_BEFORE_STOP,
                        format!("w{id} exited as recycled, but no recycle was stopping it"),
                    ),
                }
            }
            _ => {}
        }
    }

    fn next_probe(&self) -> Option<Duration> {
        self.probes.next_at()
    }

    fn on_probes(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        while let Some(id) = self.probes.pop_due(model.now()) {
            if model.shutdown_at.is_some() || model.exited_at.is_some() {
                continue;
            }
            let Some(t) = model.track(id).filter(|t| !t.departed) else {
                continue;
            };
            if !t.stop_requested && !t.recycling {
                out.fail(
                    RECYCLE_AGE,
                    format!(
                        "w{id} serves past its maximum age plus jitter ({:?}), not recycled",
                        self.due(id)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Event, ExitStatus, RecycleCause, Signal, Slot, StopReason, WorkerId};

    use super::super::check::{RECYCLE_AGE, RECYCLE_BEFORE_STOP};
    use super::super::harness::{config, event, pid, signal, Bench, MS};
    use super::RecycleChecker;
    use crate::checker::Input;

    fn recycling(id: u64, cause: RecycleCause) -> clutch_proto::Action {
        event(Event::WorkerRecycling {
            id: WorkerId(id),
            slot: Slot(id as usize - 1),
            pid: pid(id),
            cause,
        })
    }

    #[test]
    fn fires_when_a_recycled_worker_goes_with_no_proven_successor() {
        let mut bench = Bench::new(&mut config(1), RecycleChecker::default());
        bench.boot(1);
        let cause = RecycleCause::Requested;
        let ask = Input::Recycle {
            id: WorkerId(1),
            cause,
        };
        bench.step(MS, Some(ask), &[recycling(1, cause)]);
        bench.assert_clean();
        // Stopped at once, no successor ready.
        bench.step(2 * MS, Some(Input::Timeout), &[signal(1, Signal::Term)]);
        let exit = event(Event::WorkerExit {
            id: WorkerId(1),
            slot: Slot(0),
            pid: Some(pid(1)),
            status: ExitStatus::Code(0),
            reason: StopReason::Recycled,
        });
        let exited = Input::Exited {
            id: WorkerId(1),
            status: ExitStatus::Code(0),
        };
        bench.step(3 * MS, Some(exited), &[exit]);
        bench.assert_fired(RECYCLE_BEFORE_STOP);
    }

    #[test]
    fn fires_on_an_age_recycle_too_early_or_one_never_made() {
        let mut b = config(1);
        b.max_worker_age(Some(Duration::from_secs(10)))
            .max_worker_age_jitter(Duration::from_secs(1));
        let mut bench = Bench::new(&mut b, RecycleChecker::default());
        bench.boot(1);
        bench.step(
            Duration::from_secs(9),
            Some(Input::Timeout),
            &[recycling(1, RecycleCause::Age)],
        );
        bench.assert_fired(RECYCLE_AGE);

        let mut bench = Bench::new(&mut b, RecycleChecker::default());
        bench.boot(1);
        bench.probes(Duration::from_secs(11) - MS).assert_clean();
        bench.probes(Duration::from_secs(11));
        bench.assert_fired(RECYCLE_AGE);
    }
}
