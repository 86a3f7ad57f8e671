//! # clutch-proto
//!
//! The sans-IO core of clutch: a cluster master's whole decision logic — spawning,
//! readiness, crash backoff and the crash breaker, hung-worker detection, graceful and
//! forced shutdown, rolling restarts, scaling — as one pure state machine,
//! [`ClusterState`].
//!
//! It performs no I/O, reads no clock and makes no syscalls: facts and commands go in as
//! [`Input`]s through the one entry point [`ClusterState::handle`] (with the current time
//! as an argument), decisions come out of [`ClusterState::poll_action`] as [`Action`]s.
//! The production driver (`clutch-unix`), the deterministic simulator (`clutch-sim`),
//! the fuzzers, the model and property tests and the bench all drive the very same
//! machine with the same [`Input`] vocabulary. See [`ClusterState`] for the driving
//! contract and an example.
//!
//! ## Inside
//!
//! [`ClusterState`] composes one small module per concern (`cluster/`: slots, worker
//! phases and departures, readiness and hang detection, the crash breaker, rollouts,
//! shutdown, signals, timers, invariants); the vocabulary around it is [`Input`] and
//! [`Reply`] in, [`Action`] (with [`Event`] and [`Notice`]) out, and [`Config`].
//!
//! ## Speed
//!
//! Every input costs O(log n) in the number of workers or better: workers live in a
//! `BTreeMap` keyed by id, deadlines in one ordered set, and a heartbeat only moves a
//! timestamp (the pending hang check re-arms itself lazily). A rolling restart walks the
//! slots with a cursor, so it is amortized O(1) per step.
//!
//! `cargo bench -p clutch-proto` pushes two input mixes through a 1024-worker cluster,
//! draining every action after every input as the contract requires (median of 5 runs
//! of 4 M inputs, on the project's 2-core machine with nothing else running, 2026-11-21):
//!
//! | mix | inputs/s |
//! |---|---|
//! | realistic: heartbeats, 0.5% crashes with their respawn reports, timer wakeups, USR1, a full rolling restart every 500k inputs | 14.2 M |
//! | churn: 20% crashes, each refilled at once (≈575k spawn/exit/ready cycles per run) | 6.5 M |
//!
//! Target: at least 5 M inputs/s on one core, so the core is never what limits a cluster.
#![forbid(unsafe_code)]

mod action;
mod cluster;
mod config;
mod input;
mod types;

pub use action::{
    Action, CommandError, Event, ExitReason, IgnoreReason, Notice, ProbationLeave,
    RecycleIgnoreReason, ReloadFailure, ShutdownTrigger, SignalIgnoreReason, StatusLine,
    StopReason, UpgradeFailure,
};
pub use cluster::{ClusterState, Phase, Stats, WorkerInfo, SIGNAL_REPEAT_WINDOW};
pub use config::{
    Backoff, Config, ConfigBuilder, ConfigError, CrashBudget, ForwardSignals, HangPolicy,
    Readiness, DEFAULT_MIN_UPTIME, MAX_DURATION, MAX_WORKERS, QUICK_REFILL_BURST,
    QUICK_REFILL_INTERVAL, UPGRADE_ALLOWANCE,
};
pub use input::{Input, Reply, SuccessorFact};
pub use types::{
    ExitStatus, Pid, RecycleCause, Signal, Slot, SpawnError, SpawnErrorKind, WorkerId, WorkerState,
};

#[cfg(test)]
mod tests;

/// The unit tests' one clock read: a base for synthetic time (the core itself never reads
/// a clock; `clippy.toml` forbids `Instant::now`).
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)]
    std::time::Instant::now()
}
