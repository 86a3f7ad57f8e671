//! The simulator with its world drawn from the fuzzer's bytes: no check may fail. See
//! `clutch_sim::run_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clutch_sim::run_bytes(data).unwrap_or_else(|f| panic!("{f}"));
});
