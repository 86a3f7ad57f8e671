//! Properties of the parsers that see outside input, one function each: the cargo-fuzz
//! targets in `fuzz/` are one-line wrappers around these, and `cargo test` replays the
//! checked-in regression inputs through them (so CI needs no libFuzzer to keep old bugs
//! dead). Each panics when its property fails.
//!
//! Not part of the public API: compiled for this crate's tests and with the `fuzzing`
//! feature, which only `fuzz/Cargo.toml` enables.

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

/// Memory sizes (from the command line, `--max-worker-memory`): parsing never panics,
/// never answers zero, and a whole number with a suffix is that many units exactly
/// (`NK` is 1024 times `N` bytes).
pub fn size(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = crate::size::parse_size(text) {
        assert_ne!(bytes, 0, "{text:?}");
        let trimmed = text.trim();
        if let Some(number) = trimmed.strip_suffix('K').filter(|n| !n.contains('.')) {
            if let Ok(plain) = crate::size::parse_size(number) {
                assert_eq!(plain.checked_mul(1024), Some(bytes), "{text:?}");
            }
        }
    }
}

/// The workers' output (any bytes a worker writes), split into lines as the master
/// does (`engine/output.rs`), in chunks and with a line limit the input chooses: the
/// lines are those of a plain model — split at each newline, a line longer than the
/// limit cut to it (and marked), an unterminated last line flushed at the end — however
/// the bytes were chunked, none holds a newline, none is longer than the limit.
pub fn worker_lines(data: &[u8]) {
    use crate::engine::output::Lines;
    let [max, step, rest @ ..] = data else {
        return;
    };
    let max = usize::from(*max % 64) + 1;
    let step = usize::from(*step % 16) + 1;
    let mut lines = Lines::new(max);
    let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut emit = |line: &[u8], cut: bool| got.push((line.to_vec(), cut));
    for chunk in rest.chunks(step) {
        lines.push(chunk, &mut emit);
    }
    lines.finish(&mut emit);

    let mut want: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut pieces: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    // After the last newline: a line only if something is there.
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces.into_iter().chain((!last.is_empty()).then_some(last)) {
        if piece.len() > max {
            want.push((piece[..max].to_vec(), true));
        } else {
            want.push((piece.to_vec(), false));
        }
    }
    assert_eq!(got, want, "max {max}, chunks of {step}");
    for (line, _) in &got {
        assert!(line.len() <= max && !line.contains(&b'\n'), "{line:?}");
    }
}

/// `/metrics` request heads (from anyone who can connect to `--metrics`): parsing never
/// panics, only a `GET` or `HEAD` of `/metrics` is a scrape, and what comes after a
/// complete head changes nothing.
pub fn metrics_request(data: &[u8]) {
    use crate::engine::metrics_server::{parse_request, Parsed};
    let parsed = parse_request(data);
    if let Parsed::Scrape { head, .. } = parsed {
        let start: &[u8] = if head {
            b"HEAD /metrics"
        } else {
            b"GET /metrics"
        };
        assert!(data.starts_with(start), "a scrape: {data:?}");
    }
    if parsed != Parsed::Incomplete {
        let mut more = data.to_vec();
        more.push(b'x');
        assert_eq!(parse_request(&more), parsed, "{data:?} then x");
    }
}

/// Replays the checked-in inputs of the parser fuzz targets (`fuzz/regressions/<target>/`)
/// through the same property functions, so CI keeps old findings dead without libFuzzer.
#[cfg(test)]
mod regressions {
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
        replay("notify_message", super::notify_message);
    }

    #[test]
    fn listen_addr_regressions_pass() {
        replay("listen_addr", super::listen_addr);
    }

    #[test]
    fn control_request_regressions_pass() {
        replay("control_request", super::control_request);
    }

    #[test]
    fn duration_regressions_pass() {
        replay("duration", super::duration);
    }

    #[test]
    fn metrics_request_regressions_pass() {
        replay("metrics_request", super::metrics_request);
    }

    #[test]
    fn size_regressions_pass() {
        replay("size", super::size);
    }

    #[test]
    fn worker_lines_regressions_pass() {
        replay("worker_lines", super::worker_lines);
    }
}
