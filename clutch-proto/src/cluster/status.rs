//! What the core reports about itself: its [`Phase`], its lifetime [`Stats`], and a
//! [`WorkerInfo`] snapshot per worker.

use std::fmt;
use std::time::Instant;

use crate::{Pid, RecycleCause, Slot, StopReason, WorkerId, WorkerState};

/// The cluster's phase, derived from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No worker has become ready yet.
    Starting,
    /// Serving.
    Running,
    /// A rolling restart is under way.
    Reloading,
    /// Shutting down.
    Stopping,
    /// The exit action went out.
    Exited,
}

impl Phase {
    /// Lowercase name for status output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Reloading => "reloading",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters over the cluster's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Handler and command calls.
    pub inputs: u64,
    /// Reports about unknown or departed workers, and duplicates, that were ignored.
    pub ignored_inputs: u64,
    /// Spawn actions.
    pub spawns: u64,
    /// Spawns that failed (every kind but [`SpawnErrorKind::Cancelled`](crate::SpawnErrorKind::Cancelled)).
    pub spawn_failures: u64,
    /// Spawns that failed because the master ran out of resources
    /// ([`SpawnErrorKind::Resource`](crate::SpawnErrorKind::Resource); also counted in `spawn_failures`, never in
    /// `boot_failures`).
    pub resource_failures: u64,
    /// Spawns the driver skipped because the worker was already to stop
    /// ([`SpawnErrorKind::Cancelled`](crate::SpawnErrorKind::Cancelled)).
    pub spawns_cancelled: u64,
    /// Exits the master did not ask for.
    pub unexpected_exits: u64,
    /// Those of [`unexpected_exits`](Self::unexpected_exits) that came before the worker
    /// was ready (it died booting); the rest died after it was ready.
    pub boot_deaths: u64,
    /// Workers killed because they did not become ready within the boot timeout.
    pub boot_timeouts: u64,
    /// Boot failures counted by the crash breaker.
    pub boot_failures: u64,
    /// Workers found hung.
    pub hung: u64,
    /// Rolling restarts that started (a queued reload counts when it starts).
    pub reloads_started: u64,
    /// Rolling restarts that finished.
    pub reloads_finished: u64,
    /// Rolling restarts that failed.
    pub reloads_failed: u64,
    /// Recycles begun ([`Event::WorkerRecycling`](crate::Event::WorkerRecycling)).
    pub recycles: u64,
    /// Recycled workers stopped because their successor passed probation.
    pub recycled: u64,
    /// Recycle successors that failed young and were retried after a backoff.
    pub recycle_retries: u64,
    /// Upgrades of the master that started (a new master was asked for).
    pub upgrades_started: u64,
    /// Upgrades of the master that handed over to the successor.
    pub upgrades_handed_over: u64,
    /// Upgrades of the master that failed.
    pub upgrades_failed: u64,
}

/// A snapshot of one worker, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// Its slot.
    pub slot: Slot,
    /// The generation it runs.
    pub generation: u64,
    /// Its pid, once spawned.
    pub pid: Option<Pid>,
    /// Its life stage.
    pub state: WorkerState,
    /// When its spawn was asked for.
    pub spawned_at: Instant,
    /// When it became ready.
    pub ready_at: Option<Instant>,
    /// Its last heartbeat.
    pub last_heartbeat: Option<Instant>,
    /// Why it is leaving, if it is.
    pub stop_reason: Option<StopReason>,
    /// Refills of its slot so far (only for workers attached to a slot).
    pub restarts: u64,
    /// Whether it is the successor of its slot's worker in a rolling restart or a
    /// recycle (booting, or ready and in probation).
    pub successor: bool,
    /// Why it is being recycled, while it is (its successor boots, or waits).
    pub recycling: Option<RecycleCause>,
    /// Whether it has been ready for at least [`Config::min_uptime`](crate::Config::min_uptime) (passed probation).
    pub proven: bool,
}

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn phases_read_as_documented() {
        let table = [
            (Phase::Starting, "starting"),
            (Phase::Running, "running"),
            (Phase::Reloading, "reloading"),
            (Phase::Stopping, "stopping"),
            (Phase::Exited, "exited"),
        ];
        for (phase, name) in table {
            assert_eq!((phase.name(), phase.to_string()), (name, name.to_owned()));
        }
    }
}
