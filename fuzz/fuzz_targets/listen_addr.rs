//! See `clutch_unix::fuzz::listen_addr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::listen_addr(data));
