//! Hang detection: a ready worker that went silent for the hang timeout after its last
//! counted heartbeat is reported hung (not left alone, not reported early), and the
//! reported silence is the one the heartbeats give.
//!
//! Owns each worker's last counted heartbeat (the core counts one from a started
//! worker not asked to stop, and restarts the clock when a beating worker becomes
//! ready) and the hang probes.

use std::time::Duration;

use clutch_proto::{Action, ClusterState, Event, WorkerId, WorkerState};

use super::check::HANG_DETECTED;
use super::model::Model;
use super::Input;
use super::{Concern, Findings, Probes};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct HangChecker {
    /// By worker id: when the core last counted a heartbeat (or readiness after one).
    last_beat: Vec<Option<Duration>>,
    /// A worker silent since `.1` (its last counted beat) must be hung by then.
    probes: Probes<(WorkerId, Duration)>,
}

impl HangChecker {
    fn last_beat(&self, id: WorkerId) -> Option<Duration> {
        self.last_beat.get(id.0 as usize).copied().flatten()
    }

    /// The core counted a beat of `id` at `now`: a ready worker must now beat again
    /// within the timeout.
    fn beat(&mut self, model: &Model, id: WorkerId, ready: bool) {
        let now = model.now();
        let index = id.0 as usize;
        if self.last_beat.len() <= index {
            self.last_beat.resize(index + 1, None);
        }
        self.last_beat[index] = Some(now);
        if let (Some(timeout), true) = (model.config.hang().timeout, ready) {
            self.probes.push(now + timeout, (id, now));
        }
    }
}

impl Concern for HangChecker {
    fn name(&self) -> &'static str {
        "hang"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[HANG_DETECTED]
    }

    fn on_input(&mut self, model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {
        let Some(Input::Heartbeat { id }) = model.step.input.filter(|_| !model.step.stale) else {
            return;
        };
        let Some(t) = model.track(id) else { return };
        if t.started_at.is_some() && !t.stop_requested {
            let ready = t.ready;
            self.beat(model, id, ready);
        }
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        let Some(event) = super::event_of(action).filter(|_| model.exited_at.is_none()) else {
            return;
        };
        match *event {
            // Readiness restarts the silence of a worker that beats.
            Event::WorkerReady { id, .. } if model.is_live(id) && self.last_beat(id).is_some() => {
                self.beat(model, id, true);
            }
            Event::WorkerHung { id, silent_for, .. } if model.is_live(id) => {
                let Some(timeout) = model.config.hang().timeout else {
                    // A hang with no hang timeout: the story checker reports it.
                    return;
                };
                let silence = self.last_beat(id).map(|beat| model.now() - beat);
                if silence != Some(silent_for) || silent_for < timeout {
                    out.fail(
                        HANG_DETECTED,
                        format!(
                            "w{id} reported hung after {silent_for:?} of silence; the model \
                             says {silence:?}, the timeout is {timeout:?}"
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn next_probe(&self) -> Option<Duration> {
        self.probes.next_at()
    }

    fn on_probes(&mut self, model: &Model, cluster: &ClusterState, out: &mut Findings<'_>) {
        while let Some((id, since)) = self.probes.pop_due(model.now()) {
            let still = cluster.worker(id).is_some_and(|w| {
                w.state == WorkerState::Ready
                    && w.stop_reason.is_none()
                    && w.last_heartbeat == Some(model.base + since)
            });
            if still {
                out.fail(
                    HANG_DETECTED,
                    format!("w{id} silent since {since:?}, past the hang timeout, not hung"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clutch_proto::{Event, HangPolicy, Slot, WorkerId};

    use super::super::check::HANG_DETECTED;
    use super::super::harness::{config, event, pid, Bench, MS};
    use super::HangChecker;
    use crate::checker::Input;

    #[test]
    fn fires_on_a_hang_reported_with_the_wrong_silence() {
        let mut b = config(1);
        b.hang(HangPolicy {
            timeout: Some(100 * MS),
            signal: None,
            grace: MS,
        });
        let mut bench = Bench::new(&mut b, HangChecker::default());
        bench.boot(1);
        let id = WorkerId(1);
        bench.step(10 * MS, Some(Input::Heartbeat { id }), &[]);
        bench.assert_clean();
        // Silent since 10 ms: at 110 ms that is 100 ms, not 50.
        let hung = event(Event::WorkerHung {
            id,
            slot: Slot(0),
            pid: pid(1),
            silent_for: 50 * MS,
        });
        bench.step(110 * MS, Some(Input::Timeout), &[hung]);
        bench.assert_fired(HANG_DETECTED);
    }
}
