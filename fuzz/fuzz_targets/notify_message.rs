//! See `clutch_unix::fuzz::notify_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clutch_unix::fuzz::notify_message(data));
