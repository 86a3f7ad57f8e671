//! Human durations for the command line: `500ms`, `7.5s`, `2m`, `1h`, `250us`.

use std::fmt;
use std::time::Duration;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: {}", self.text, self.why)
    }
}

impl std::error::Error for DurationError {}

/// Parses a number with a unit (`us`, `ms`, `s`, `m`, `h`); decimals allowed (`7.5s`).
/// A bare number is refused: `--force-exit-timeout 7500` would be ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        text: text.to_owned(),
        why,
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("add a unit: us, ms, s, m or h (for example 500ms or 7.5s)"))?;
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(err("expected a number such as 500 or 7.5 before the unit"));
    }
    let nanos_per_unit: u128 = match unit {
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(err("unknown unit: use us, ms, s, m or h")),
    };
    // Exact decimal arithmetic: "7.5s" is 7 500 000 000 ns, no float rounding.
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() > 12 || fraction.len() > 9 {
        return Err(err("too many digits"));
    }
    let whole: u128 = whole.parse().map_err(|_| err("expected a number"))?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| err("expected a number"))?
    };
    let nanos = whole * nanos_per_unit + fraction * nanos_per_unit / scale;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| err("too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7.5s"), Ok(Duration::from_millis(7500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 0.001s "), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn whole_numbers_scale_exactly_and_fractions_below_a_nanosecond_truncate() {
        for text in [
            "0ms",
            "1ms",
            "7500ms",
            "999999999999ms",
            "1.5ms",
            "0.0001ms",
            " 12ms ",
        ] {
            crate::fuzz::duration(text.as_bytes());
        }
        assert_eq!(parse_duration("0.0001us"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for bad in [
            "",
            "7500",
            "ms",
            "1.s",
            ".5s",
            "1..5s",
            "5 s",
            "5sec",
            "-1s",
            "1e3ms",
            "99999999999999h",
            "1.0000000001s",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid duration"), "{err}");
        }
    }
}
