//! See `clutch_unix::fuzz::size`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::size(data));
