//! See `clutch_unix::fuzz::duration`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::duration(data));
