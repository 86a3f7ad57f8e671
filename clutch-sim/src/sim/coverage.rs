//! Coverage accounting: counters of the interesting things a run exercised, so a
//! campaign can show that the checks had something to check.
//!
//! Owns [`Coverage`] and the one place that classifies a drained event into a counter
//! ([`Coverage::count`]). The loop calls it for every event; the fault scheduler bumps
//! the counters it alone knows about (stale reports, liveness checks).

use std::fmt;

use clutch_proto::{
    Event, ExitReason, IgnoreReason, RecycleCause, Signal, SpawnErrorKind, StopReason,
};

use super::Input;

/// Counters of interesting things a run exercised, so a campaign can show that the
/// checks had something to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Coverage {
    pub spawns: u64,
    pub spawn_failures: u64,
    pub deaths: u64,
    pub boot_timeouts: u64,
    pub hangs: u64,
    pub announced: u64,
    pub respawns_delayed: u64,
    pub rollouts_finished: u64,
    pub rollouts_failed: u64,
    pub scaled: u64,
    pub breaker_trips: u64,
    pub breaker_trips_by_scale_down: u64,
    pub forced_exits: u64,
    pub clean_exits: u64,
    pub liveness_checked: u64,
    pub stale_reports: u64,
    pub resource_failures: u64,
    pub startup_failures: u64,
    pub spawns_cancelled: u64,
    pub signals_ignored: u64,
    pub recycle_reports: u64,
    pub recycles: u64,
    pub age_recycles: u64,
    pub recycled: u64,
    pub recycles_refused: u64,
    pub successors: u64,
    pub upgrades_handed_over: u64,
    pub upgrades_failed: u64,
    pub successors_lost: u64,
}

impl Coverage {
    /// Adds another run's counters.
    pub fn add(&mut self, other: &Coverage) {
        self.spawns += other.spawns;
        self.spawn_failures += other.spawn_failures;
        self.deaths += other.deaths;
        self.boot_timeouts += other.boot_timeouts;
        self.hangs += other.hangs;
        self.announced += other.announced;
        self.respawns_delayed += other.respawns_delayed;
        self.rollouts_finished += other.rollouts_finished;
        self.rollouts_failed += other.rollouts_failed;
        self.scaled += other.scaled;
        self.breaker_trips += other.breaker_trips;
        self.breaker_trips_by_scale_down += other.breaker_trips_by_scale_down;
        self.forced_exits += other.forced_exits;
        self.clean_exits += other.clean_exits;
        self.liveness_checked += other.liveness_checked;
        self.stale_reports += other.stale_reports;
        self.resource_failures += other.resource_failures;
        self.startup_failures += other.startup_failures;
        self.spawns_cancelled += other.spawns_cancelled;
        self.signals_ignored += other.signals_ignored;
        self.recycle_reports += other.recycle_reports;
        self.recycles += other.recycles;
        self.age_recycles += other.age_recycles;
        self.recycled += other.recycled;
        self.recycles_refused += other.recycles_refused;
        self.successors += other.successors;
        self.upgrades_handed_over += other.upgrades_handed_over;
        self.upgrades_failed += other.upgrades_failed;
        self.successors_lost += other.successors_lost;
    }

    /// Every counter with its name.
    #[must_use]
    pub fn named(&self) -> [(&'static str, u64); 29] {
        [
            ("spawns", self.spawns),
            ("spawn failures", self.spawn_failures),
            ("deaths", self.deaths),
            ("boot timeouts", self.boot_timeouts),
            ("hangs", self.hangs),
            ("announced stops", self.announced),
            ("delayed respawns", self.respawns_delayed),
            ("rollouts finished", self.rollouts_finished),
            ("rollouts failed", self.rollouts_failed),
            ("scalings", self.scaled),
            ("breaker trips", self.breaker_trips),
            (
                "breaker trips by scale-down",
                self.breaker_trips_by_scale_down,
            ),
            ("forced exits", self.forced_exits),
            ("clean exits", self.clean_exits),
            ("liveness checks", self.liveness_checked),
            ("stale reports", self.stale_reports),
            ("resource spawn failures", self.resource_failures),
            ("startup failures", self.startup_failures),
            ("cancelled spawns", self.spawns_cancelled),
            ("ignored signals", self.signals_ignored),
            ("recycle reports", self.recycle_reports),
            ("recycles", self.recycles),
            ("age recycles", self.age_recycles),
            ("workers recycled", self.recycled),
            ("refused recycles", self.recycles_refused),
            ("successor masters", self.successors),
            ("upgrades handed over", self.upgrades_handed_over),
            ("upgrades failed", self.upgrades_failed),
            ("successors lost after the handover", self.successors_lost),
        ]
    }

    /// Counts one event the core emitted in a step driven by `input`.
    pub(crate) fn count(&mut self, event: &Event, input: Option<Input>) {
        match event {
            Event::WorkerSpawnFailed { error, .. } => {
                self.spawn_failures += 1;
                if error.kind == SpawnErrorKind::Resource {
                    self.resource_failures += 1;
                }
            }
            Event::WorkerSpawnCancelled { .. } => self.spawns_cancelled += 1,
            Event::SignalIgnored { .. } => self.signals_ignored += 1,
            Event::UpgradeHandedOver { .. } => self.upgrades_handed_over += 1,
            Event::UpgradeFailed { .. } => self.upgrades_failed += 1,
            Event::SuccessorLost { .. } => self.successors_lost += 1,
            Event::WorkerDied { .. } => self.deaths += 1,
            Event::WorkerRecycling { cause, .. } => {
                self.recycles += 1;
                if *cause == RecycleCause::Age {
                    self.age_recycles += 1;
                }
            }
            Event::WorkerExit {
                reason: StopReason::Recycled,
                ..
            } => self.recycled += 1,
            Event::Ignored {
                reason: IgnoreReason::Recycle { .. },
            } => self.recycles_refused += 1,
            Event::WorkerBootTimedOut { .. } => self.boot_timeouts += 1,
            Event::WorkerHung { .. } => self.hangs += 1,
            Event::WorkerStopping { .. } => self.announced += 1,
            Event::RespawnDelayed { .. } => self.respawns_delayed += 1,
            Event::ReloadFinished { .. } => self.rollouts_finished += 1,
            Event::ReloadFailed { .. } => self.rollouts_failed += 1,
            Event::Scaled { .. } => self.scaled += 1,
            Event::BreakerTripped { .. } => {
                self.breaker_trips += 1;
                if let Some(Input::Scale(_) | Input::Signal(Signal::Ttou)) = input {
                    self.breaker_trips_by_scale_down += 1;
                }
            }
            Event::ShutDown { reason } => match reason {
                ExitReason::Forced => self.forced_exits += 1,
                ExitReason::Clean => self.clean_exits += 1,
                ExitReason::StartupFailed => self.startup_failures += 1,
                _ => {}
            },
            _ => {}
        }
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.named().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {value}")?;
        }
        Ok(())
    }
}
