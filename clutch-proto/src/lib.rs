//! # clutch-proto
//!
//! The sans-IO core of clutch: a cluster master's whole decision logic — spawning,
//! readiness, crash backoff and the crash breaker, hung-worker detection, graceful and
//! forced shutdown, rolling restarts, scaling — as one pure state machine,
//! [`ClusterState`].
//!
//! It performs no I/O, reads no clock and makes no syscalls: facts go in through
//! `handle_*` methods (with the current time as an argument), decisions come out of
//! [`ClusterState::poll_action`] as [`Action`]s. The production driver (`clutch-unix`)
//! and the deterministic simulator (`clutch-sim`) drive the very same machine. See
//! [`ClusterState`] for the driving contract and an example.
//!
//! ## Speed
//!
//! Every input costs O(log n) in the number of workers or better (heartbeats are O(log n)
//! lookups with no timer update). `cargo bench -p clutch-proto` pushes a realistic mix of
//! inputs through a 1024-worker cluster; see `BENCHMARKS` in the crate README section of
//! the repository's `docs/BENCHMARKS.md` for the recorded figure.
#![forbid(unsafe_code)]

mod action;
mod cluster;
mod config;
mod types;

pub use action::{
    Action, CommandError, Event, ExitReason, Notice, ReloadFailure, ShutdownTrigger, StatusLine,
    StopReason,
};
pub use cluster::{ClusterState, Phase, Stats, WorkerInfo};
pub use config::{
    Backoff, Config, ConfigBuilder, ConfigError, CrashBudget, HangPolicy, Readiness, MAX_DURATION,
    MAX_WORKERS,
};
pub use types::{ExitStatus, Pid, Signal, Slot, WorkerId, WorkerState};

#[cfg(test)]
mod tests;
