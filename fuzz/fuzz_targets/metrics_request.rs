//! See `clutch_unix::fuzz::metrics_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::metrics_request(data));
