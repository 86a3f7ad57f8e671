//! # clutch-sim
//!
//! A deterministic simulator for clutch's core, in the style of TigerBeetle's VOPR: one
//! `u64` seed draws a cluster configuration and a world of fake worker processes with
//! injected faults (slow or failing boots, crashes, hangs, workers that ignore SIGTERM,
//! spawn failures, pid reuse, signal storms, commands mid-rollout, stale and duplicate
//! reports), a discrete-event loop jumps simulated time from one event to the next, the
//! real [`ClusterState`](clutch_proto::ClusterState) decides, and the [`Checker`] (one
//! checker per concern over one shared model, see [`checker`]) verifies safety after
//! every step and liveness at the end.
//!
//! ```
//! let outcome = clutch_sim::run_seed(42).expect("seed 42 passes every check");
//! // The same seed is the same run, event for event.
//! assert_eq!(outcome, clutch_sim::run_seed(42).unwrap());
//! ```
//!
//! - [`run_seed`] runs one seed; [`replay`] runs it again with a readable trace.
//! - [`run_bytes`] runs a world drawn from a fuzzer's bytes instead of a seed.
//! - [`fuzz::cluster_inputs`] feeds the core arbitrary input sequences.
//! - The `clutch-sim` binary runs campaigns: `cargo run -p clutch-sim --release --
//!   --seeds 100000`, and replays one: `-- --seed 7 --trace`.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;

pub mod checker;
pub mod fuzz;
mod input;
pub mod rng;
mod sim;
mod trace;
pub mod world;

pub use checker::{Bounds, Checker, Violation};
pub use input::{Input, SPAWN_ERROR};
pub use sim::{Coverage, Outcome, Sim, BOUNDED_RUN, MAX_ACTIONS_PER_STEP, MAX_STEPS};
pub use trace::Fingerprint;
pub use world::World;

use rng::{ByteEntropy, Rng, SplitMix64};

/// A run that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The seed, when the world came from one (not from fuzzer bytes).
    pub seed: Option<u64>,
    /// The first broken rule.
    pub violation: Violation,
}

impl Failure {
    /// The one command that replays this failure.
    #[must_use]
    pub fn replay_command(&self) -> Option<String> {
        self.seed
            .map(|seed| format!("cargo run -p clutch-sim --release -- --seed {seed} --trace"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.seed, self.replay_command()) {
            (Some(seed), Some(replay)) => {
                write!(
                    f,
                    "seed {seed} failed: {}\n  replay: {replay}",
                    self.violation
                )
            }
            _ => write!(f, "fuzz input failed: {}", self.violation),
        }
    }
}

impl std::error::Error for Failure {}

/// Runs the world drawn from `seed`.
///
/// # Errors
///
/// The first broken rule, with the seed for replaying it.
pub fn run_seed(seed: u64) -> Result<Outcome, Failure> {
    Sim::new(Rng::new(SplitMix64::new(seed)), None)
        .run()
        .map_err(|violation| Failure {
            seed: Some(seed),
            violation,
        })
}

/// Runs the world drawn from `seed`, writing the world's description and one line per
/// input (`>`) and action (`<`) to `out`.
///
/// # Errors
///
/// The first broken rule, with the seed for replaying it.
pub fn replay(seed: u64, out: &mut dyn Write) -> Result<Outcome, Failure> {
    Sim::new(Rng::new(SplitMix64::new(seed)), Some(out))
        .run()
        .map_err(|violation| Failure {
            seed: Some(seed),
            violation,
        })
}

/// Runs the world drawn from a fuzzer's bytes: they choose the configuration and every
/// event of the world (see [`rng::ByteEntropy`]).
///
/// # Errors
///
/// The first broken rule.
pub fn run_bytes(data: &[u8]) -> Result<Outcome, Failure> {
    Sim::new(Rng::new(ByteEntropy::new(data)), None)
        .run()
        .map_err(|violation| Failure {
            seed: None,
            violation,
        })
}
