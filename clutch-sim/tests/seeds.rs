//! Seeds run clean, exercise every fault and outcome, and replay exactly.

use clutch_sim::{run_bytes, run_seed, Coverage};

/// Seeds per `cargo test`: a few thousand in release, fewer in a debug build (about
/// ten times slower) so the suite stays well under twenty seconds either way.
const SEEDS: u64 = if cfg!(debug_assertions) {
    2_500
} else {
    20_000
};

#[test]
fn thousands_of_seeds_pass_every_check_and_exercise_everything() {
    let mut coverage = Coverage::default();
    let mut events = 0;
    for seed in 0..SEEDS {
        let outcome = run_seed(seed).unwrap_or_else(|failure| panic!("{failure}"));
        coverage.add(&outcome.coverage);
        events += outcome.events;
    }
    // Checks that never had anything to check prove nothing: every fault and every
    // outcome must have come up.
    for (name, count) in coverage.named() {
        assert!(count > 0, "no seed exercised {name}: {coverage}");
    }
    assert!(
        events > SEEDS * 100,
        "suspiciously small worlds: {events} events"
    );
}

#[test]
fn a_seed_is_one_run_event_for_event() {
    for seed in [0, 1, 42, 30, 4_242_424_242, u64::MAX] {
        let first = run_seed(seed).unwrap();
        assert_eq!(first, run_seed(seed).unwrap(), "seed {seed}");
        let mut a = Vec::new();
        let mut b = Vec::new();
        clutch_sim::replay(seed, &mut a).unwrap();
        clutch_sim::replay(seed, &mut b).unwrap();
        assert_eq!(a, b, "seed {seed}: traces differ");
        assert!(a.len() > 100, "seed {seed}: a trace has lines");
    }
    let fingerprints: std::collections::HashSet<u64> = (0..50)
        .map(|seed| run_seed(seed).unwrap().fingerprint)
        .collect();
    assert_eq!(fingerprints.len(), 50, "different seeds, different runs");
}

#[test]
fn a_failure_names_the_seed_and_the_one_replay_command() {
    let failure = clutch_sim::Failure {
        seed: Some(7),
        violation: clutch_sim::Violation {
            check: "surge",
            checker: "slots",
            at: std::time::Duration::from_millis(3),
            message: "too many".to_owned(),
        },
    };
    let text = failure.to_string();
    assert!(text.contains("seed 7"), "{text}");
    assert!(
        text.contains("cargo run -p clutch-sim --release -- --seed 7 --trace"),
        "{text}"
    );
}

#[test]
fn fuzzer_bytes_drive_the_same_simulator_deterministically() {
    for data in [&b""[..], b"\x00", b"clutch", &[0xFF; 64], &[7; 1000]] {
        let first = run_bytes(data).unwrap_or_else(|f| panic!("{data:?}: {f}"));
        assert_eq!(first, run_bytes(data).unwrap());
    }
}
