//! See `clutch_unix::fuzz::worker_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::worker_lines(data));
