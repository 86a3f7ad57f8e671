//! Properties of the parsers that see outside input, one function each: the cargo-fuzz
//! targets in `fuzz/` are one-line wrappers around these, and `cargo test` replays the
//! checked-in regression inputs through them (so CI needs no libFuzzer to keep old bugs
//! dead). Each panics when its property fails.

use crate::{control, duration, listen, notify};

/// sd_notify datagrams (from any local process): parsing never panics, and a
/// `STATUS=` line never comes back with a newline in it.
pub fn notify_message(data: &[u8]) {
    let message = notify::parse_notify(data);
    if let Some(status) = &message.status {
        assert!(
            !status.contains('\n'),
            "a STATUS value spans lines: {status:?}"
        );
    }
}

/// Listen addresses (from the command line): parsing never panics, and whatever parses
/// prints back to an address that parses to the same thing.
pub fn listen_addr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(addr) = listen::ListenAddr::parse(text) {
        let printed = addr.to_string();
        assert_eq!(
            listen::ListenAddr::parse(&printed),
            Ok(addr),
            "{text:?} printed as {printed:?}"
        );
    }
}

/// Control requests (from any client of the control socket): parsing never panics, and
/// every accepted request survives its own round trip.
pub fn control_request(data: &[u8]) {
    if let Ok(request) = control::parse_request(data) {
        assert_eq!(
            control::parse_request(request.to_line().as_bytes()),
            Ok(request)
        );
    }
}

/// Durations (from the command line): parsing never panics, and whole numbers scale
/// exactly across units (`Nms` is a thousand times `Nus`).
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = duration::parse_duration(text) {
        let trimmed = text.trim();
        if let Some(number) = trimmed.strip_suffix("ms").filter(|n| !n.contains('.')) {
            if let Ok(micros) = duration::parse_duration(&format!("{number}us")) {
                assert_eq!(micros.checked_mul(1000), Some(parsed), "{text:?}");
            }
        }
    }
}
