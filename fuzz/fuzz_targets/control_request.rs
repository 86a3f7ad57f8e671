//! See `clutch_unix::fuzz::control_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::control_request(data));
