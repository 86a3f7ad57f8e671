//! Respawn pacing: a slot whose worker left young waits out the configured backoff
//! (`RespawnDelayed` says the right failure count and delay, nothing comes before it
//! ends, and something comes when it does); a slot is refilled at once only after a
//! proven worker left it; and refills of one slot are at least
//! `min(backoff.initial, min_uptime)` apart.
//!
//! Owns, per slot: the owed backoff, the young failures in a row, the last refill, the
//! quick-refill quota, and which kinds of departure this step saw.

use std::time::Duration;

use clutch_proto::{Action, ClusterState, Config, Event};

use super::check::{BACKOFF, REFILL_CAUSE, SPAWN_RATE};
use super::model::Model;
use super::{Concern, Findings};

/// The checker's record of one slot.
#[derive(Debug, Clone, Default)]
struct SlotPacing {
    /// A delayed respawn is owed, not before this.
    not_before: Option<Duration>,
    /// Young failures in a row, as `RespawnDelayed` must count them.
    consecutive: u32,
    /// The last non-successor spawn in this slot (since the slot was created).
    last_refill: Option<Duration>,
    /// A proven worker left this slot in this step.
    healthy_departure: bool,
    /// Some worker left this slot in this step.
    departure: bool,
    /// A worker left this slot in this step while in probation.
    probation_departure: bool,
    /// The quick-refill quota (see `clutch_proto::QUICK_REFILL_INTERVAL`).
    quick_tat: Option<Duration>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct RespawnChecker {
    slots: Vec<SlotPacing>,
}

impl RespawnChecker {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            slots: vec![SlotPacing::default(); config.workers()],
        }
    }

    /// A worker left `slot`: proven (`healthy`), or young, after ready (`was_ready`:
    /// in probation) or before.
    fn departure(&mut self, slot: usize, healthy: bool, was_ready: bool) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.departure = true;
            s.healthy_departure |= healthy;
            s.probation_departure |= was_ready && !healthy;
            if healthy {
                // The core restarted the slot's count when this worker passed probation
                // (nothing in the slot can fail while its current worker is proven).
                s.consecutive = 0;
                s.quick_tat = None;
            }
        }
    }

    fn respawn_delayed(
        &mut self,
        model: &Model,
        event: &Event,
        slot: usize,
        delay: Duration,
        consecutive_failures: u32,
        out: &mut Findings<'_>,
    ) {
        let now = model.now();
        let backoff = *model.config.backoff();
        let Some(s) = self.slots.get_mut(slot) else {
            return out.fail(BACKOFF, format!("{event:?} for a missing slot"));
        };
        let expected_n = s.consecutive.saturating_add(1);
        let departure = s.departure;
        // After a death in probation, a quick refill (backoff.initial) while
        // the slot's quick refills average at most one per interval.
        let quick = s.probation_departure && {
            let interval = clutch_proto::QUICK_REFILL_INTERVAL;
            let tolerance = interval * (clutch_proto::QUICK_REFILL_BURST - 1);
            let tat = s.quick_tat.map_or(now, |tat| tat.max(now));
            let quick = tat <= now + tolerance;
            if quick {
                s.quick_tat = Some(tat + interval);
            }
            quick
        };
        let expected_delay = if quick {
            backoff.initial
        } else {
            backoff.delay(expected_n)
        };
        s.consecutive = consecutive_failures;
        s.not_before = Some(now + delay);
        if !departure {
            return out.fail(
                BACKOFF,
                format!("{event:?} though no worker left slot {slot} in this step"),
            );
        }
        if consecutive_failures != expected_n || delay != expected_delay {
            out.fail(
                BACKOFF,
                format!(
                    "{event:?}: expected failure #{expected_n} and a delay of \
                     {expected_delay:?}"
                ),
            );
        }
    }

    /// Every refill of the step (a spawn that is not a rollout's successor): when it
    /// was allowed.
    fn check_refills(&mut self, model: &Model, out: &mut Findings<'_>) {
        let now = model.now();
        let min_gap = model
            .config
            .backoff()
            .initial
            .min(model.config.min_uptime());
        for &(id, slot) in &model.step.spawns {
            let t = model.track(id).expect("spawned workers are tracked");
            if slot >= self.slots.len() || t.successor || t.recycler {
                // A spawn outside the slots is the story checker's; a successor (a
                // rollout's or a recycle's) is no refill.
                continue;
            }
            if t.generation != model.generation {
                // The rollout checker reports it; its slot's pacing is moot.
                return;
            }
            let s = &mut self.slots[slot];
            let last = s.last_refill.replace(now);
            if let Some(at) = s.not_before.take() {
                if now < at {
                    let message =
                        format!("slot {slot} refilled at {now:?}, its backoff ends at {at:?}");
                    return out.fail(BACKOFF, message);
                }
            } else if last.is_none() {
                // The first worker of a new slot.
            } else if s.healthy_departure {
                s.consecutive = 0;
                s.quick_tat = None;
            } else {
                let message = format!(
                    "slot {slot} refilled at once (w{id}) though no healthy worker left it"
                );
                return out.fail(REFILL_CAUSE, message);
            }
            if let Some(last) = last.filter(|&last| now - last < min_gap) {
                let message = format!(
                    "slot {slot} refilled at {now:?}, only {:?} after {last:?}",
                    now - last
                );
                return out.fail(SPAWN_RATE, message);
            }
        }
    }
}

impl Concern for RespawnChecker {
    fn name(&self) -> &'static str {
        "respawn"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[BACKOFF, REFILL_CAUSE, SPAWN_RATE]
    }

    fn on_input(&mut self, _model: &Model, _cluster: &ClusterState, _out: &mut Findings<'_>) {
        for slot in &mut self.slots {
            slot.healthy_departure = false;
            slot.departure = false;
            slot.probation_departure = false;
        }
    }

    fn on_action(&mut self, model: &Model, action: &Action, out: &mut Findings<'_>) {
        let Some(event) = super::event_of(action).filter(|_| model.exited_at.is_none()) else {
            return;
        };
        let live = |id| model.is_live(id);
        match *event {
            Event::WorkerSpawnFailed { id, slot, .. } if live(id) => {
                if let Some(s) = self.slots.get_mut(slot.0) {
                    s.departure = true;
                }
            }
            Event::WorkerStopping { id, slot, .. } if live(id) => {
                let was_ready = model.track(id).is_some_and(|t| t.ready);
                self.departure(slot.0, model.is_healthy(id), was_ready);
            }
            Event::WorkerBootTimedOut { id, slot, .. } if live(id) => {
                self.departure(slot.0, false, false);
            }
            Event::WorkerHung { id, slot, .. } if live(id) => {
                self.departure(slot.0, model.is_healthy(id), true);
            }
            Event::WorkerDied {
                id,
                slot,
                was_ready,
                ..
            } if live(id) => self.departure(slot.0, model.is_healthy(id), was_ready),
            Event::RespawnDelayed {
                slot,
                delay,
                consecutive_failures,
            } => self.respawn_delayed(model, event, slot.0, delay, consecutive_failures, out),
            Event::ShutdownStarted { .. } if model.shutdown_at.is_none() => {
                for s in &mut self.slots {
                    s.not_before = None;
                }
            }
            Event::Scaled { from, to } if from == model.target() && from != to => {
                self.slots.resize(to, SlotPacing::default());
            }
            _ => {}
        }
    }

    fn on_step_end(&mut self, model: &Model, _cluster: &ClusterState, out: &mut Findings<'_>) {
        self.check_refills(model, out);
        let now = model.now();
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(at) = slot.not_before.filter(|&at| at <= now) {
                let message = format!("slot {index}'s respawn was due at {at:?}, nothing came");
                out.fail(BACKOFF, message);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clutch_proto::{Event, Slot, WorkerId};

    use super::super::check::{BACKOFF, REFILL_CAUSE};
    use super::super::harness::{config, died, event, exited, pid, spawn, started, Bench, MS};
    use super::RespawnChecker;
    use crate::checker::Input;

    fn one_started(bench: &mut Bench<RespawnChecker>) {
        bench.step(Duration::ZERO, None, &[spawn(1, 0, 1)]);
        let spawned = Input::Spawned {
            id: WorkerId(1),
            pid: pid(1),
        };
        bench.step(Duration::ZERO, Some(spawned), &[started(1, 0, 1)]);
        bench.assert_clean();
    }

    #[test]
    fn fires_on_an_immediate_refill_after_a_young_death() {
        let b = &mut config(1);
        let mut bench = Bench::new(b, RespawnChecker::new(&b.build().unwrap()));
        one_started(&mut bench);
        let death = died(1, 0, false, 10 * MS);
        bench.step(10 * MS, Some(exited(1)), &[death, spawn(2, 0, 1)]);
        bench.assert_fired(REFILL_CAUSE);
    }

    #[test]
    fn fires_on_a_delay_with_no_departure() {
        let b = &mut config(1);
        let mut bench = Bench::new(b, RespawnChecker::new(&b.build().unwrap()));
        one_started(&mut bench);
        let delayed = event(Event::RespawnDelayed {
            slot: Slot(0),
            delay: 100 * MS,
            consecutive_failures: 1,
        });
        bench.step(10 * MS, Some(Input::Timeout), &[delayed]);
        bench.assert_fired(BACKOFF);
    }
}
