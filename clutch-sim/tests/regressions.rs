//! Old bugs stay dead: seeds that once failed, and the checked-in fuzz inputs, replayed
//! by plain `cargo test` (no libFuzzer needed).
//!
//! A seed names a world only under the world generator it was found with: after a change
//! to `world.rs` or to the simulator's draws, re-find seeds for each bug (for example
//! with a coverage counter for the fixed path, as `breaker_trips_by_scale_down`) and
//! check that they fail on the unfixed core before listing them here.

use std::path::Path;

/// Seeds where scaling down trips the crash breaker: before clutch-proto re-checked the
/// breaker on scale-down, every one failed `core-invariants` ("breaker should have
/// tripped"). Re-found after the breaker became "no worker ready for the window" (issue
/// 11), and checked to fail (`zero-ready-window`, or `time-advances`) with the breaker's
/// check after every input removed. Re-found again when the world generator learned
/// recycling (issue 13) and the upgrade of the master (issue 14), and checked the same
/// way.
const BREAKER_ON_SCALE_DOWN: &[u64] = &[521, 1625, 3196, 3267, 4493, 10168];

#[test]
fn seeds_that_found_bugs_pass_and_still_exercise_the_fixed_path() {
    for &seed in BREAKER_ON_SCALE_DOWN {
        let outcome = clutch_sim::run_seed(seed).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(
            outcome.coverage.breaker_trips_by_scale_down > 0,
            "seed {seed} no longer reaches the scale-down breaker: the world generator \
             changed, find new seeds"
        );
    }
}

/// Every file in `fuzz/regressions/<target>/`.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable input"))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

#[test]
fn fuzz_regressions_for_cluster_inputs_pass() {
    for (name, data) in corpus("cluster_inputs") {
        if let Err(e) = clutch_sim::fuzz::cluster_inputs(&data) {
            panic!("fuzz/regressions/cluster_inputs/{name}: {e}");
        }
    }
}

#[test]
fn fuzz_regressions_for_the_simulator_pass() {
    for (name, data) in corpus("simulator") {
        if let Err(failure) = clutch_sim::run_bytes(&data) {
            panic!("fuzz/regressions/simulator/{name}: {failure}");
        }
    }
}
