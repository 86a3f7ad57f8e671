//! Replays the checked-in inputs of the parser fuzz targets (`fuzz/regressions/<target>/`)
//! through the same property functions, so CI keeps old findings dead without libFuzzer.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    inputs
}

fn replay(target: &str, property: fn(&[u8])) {
    for (name, data) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| property(&data));
        assert!(
            outcome.is_ok(),
            "fuzz/regressions/{target}/{name} fails again"
        );
    }
}

#[test]
fn notify_message_regressions_pass() {
    replay("notify_message", clutch_unix::fuzz::notify_message);
}

#[test]
fn listen_addr_regressions_pass() {
    replay("listen_addr", clutch_unix::fuzz::listen_addr);
}

#[test]
fn control_request_regressions_pass() {
    replay("control_request", clutch_unix::fuzz::control_request);
}

#[test]
fn duration_regressions_pass() {
    replay("duration", clutch_unix::fuzz::duration);
}
