//! `clutch events`: the master's events as they happen, as JSON lines (the schema of
//! `clutch run --log-format json`) or as text.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clutch_unix::control;
use serde_json::Value;

use crate::{complain, Output, STARTUP};

/// The fields every event line has, which the text form shows in its own places.
const FRAME: [&str; 5] = ["timestamp", "level", "message", "event", "target"];
/// The fields the text form shows first, when an event has them.
const LEADING: [&str; 3] = ["worker", "slot", "pid"];

/// Subscribes and prints every event until the stream ends: exit 0 when it ended after
/// the master's `shutdown` event, 1 otherwise (no master, dropped as too slow, the
/// stream cut short).
pub(crate) fn events(path: &Path, output: Output) -> ExitCode {
    let mut subscription = match control::subscribe(path) {
        Ok(subscription) => subscription,
        Err(error) => {
            complain(error);
            return ExitCode::from(STARTUP);
        }
    };
    let mut shut_down = false;
    while let Some(item) = subscription.next_line() {
        let (raw, event) = match item {
            Ok(line) => line,
            Err(error) => {
                complain(format_args!("the event stream ended: {error}"));
                return ExitCode::from(STARTUP);
            }
        };
        shut_down |= event["event"] == "shutdown";
        let line = match output {
            // The master's own line: byte for byte what its JSON log says.
            Output::Json => format!("{raw}\n"),
            Output::Text => format!("{}\n", text(&event)),
        };
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => {}
            // The reader went away (`clutch events | head`): nothing more to do.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(error) => {
                complain(format_args!("writing the output: {error}"));
                return ExitCode::from(STARTUP);
            }
        }
    }
    if shut_down {
        ExitCode::SUCCESS
    } else {
        complain("the master closed the event stream before its shutdown");
        ExitCode::from(STARTUP)
    }
}

/// One event as a line for people:
/// `2026-12-02T10:03:11.123456Z  INFO worker ready  worker=1 slot=0 pid=4242`.
pub(crate) fn text(event: &Value) -> String {
    let field = |name: &str| event[name].as_str().unwrap_or("").to_owned();
    let mut line = format!(
        "{} {:>5} {}",
        field("timestamp"),
        field("level"),
        field("message")
    );
    let mut first = true;
    let Some(object) = event.as_object() else {
        return line;
    };
    // Who first (worker, slot, pid), then the rest by name.
    let fields = LEADING
        .iter()
        .filter_map(|&key| object.get_key_value(key))
        .chain(
            object
                .iter()
                .filter(|(key, _)| !LEADING.contains(&key.as_str())),
        );
    for (key, value) in fields {
        if FRAME.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        line.push_str(if first { "  " } else { " " });
        first = false;
        // Strings bare unless they hold spaces (then quoted, as JSON).
        let shown = match value.as_str() {
            Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.to_owned(),
            _ => value.to_string(),
        };
        let _ = write!(line, "{key}={shown}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_put_the_fields_after_the_message() {
        let event: Value = serde_json::from_str(
            r#"{"timestamp":"2026-12-02T10:03:11.123456Z","level":"INFO","message":"worker exited","event":"worker_exit","worker":1,"slot":0,"pid":42,"status":"killed by SIGTERM","reason":"shutdown","memory_bytes":null,"target":"clutch_unix::engine::driver"}"#,
        )
        .unwrap();
        assert_eq!(
            text(&event),
            "2026-12-02T10:03:11.123456Z  INFO worker exited  worker=1 slot=0 pid=42 \
             reason=shutdown status=\"killed by SIGTERM\""
        );
    }
}
