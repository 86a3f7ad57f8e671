//! Memory sizes for the command line: `512M`, `1G`, `1.5G`, `800K`, `1073741824`.

use std::fmt;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    text: String,
    why: &'static str,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid size {:?}: {}", self.text, self.why)
    }
}

impl std::error::Error for SizeError {}

/// Parses a size in bytes: a number with an optional binary suffix — `K`, `M`, `G`, `T`
/// (powers of 1024, as `ulimit`, systemd's `MemoryMax=` and the kernel's cgroup files
/// count), optionally followed by `B` or `iB`, any case: `512M`, `512MiB` and `512mb`
/// are all 536 870 912 bytes. Decimals are allowed with a suffix (`1.5G`); a bare
/// number is bytes. Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        text: text.to_owned(),
        why,
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(err("expected a number such as 512 or 1.5 before the unit"));
    }
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let multiplier: u128 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(err("unknown unit: use K, M, G or T (powers of 1024)")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 || whole.len() > 20 {
        return Err(err("too many digits"));
    }
    if !fraction.is_empty() && multiplier == 1 {
        return Err(err("a number of bytes is whole"));
    }
    let whole: u128 = whole.parse().map_err(|_| err("expected a number"))?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| err("expected a number"))?
    };
    let bytes = whole * multiplier + fraction * multiplier / scale;
    match u64::try_from(bytes) {
        Ok(0) => Err(err("must be greater than zero")),
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(err("too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        for (text, bytes) in [
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("512mb", 512 << 20),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("800k", 800 << 10),
            ("2T", 2 << 40),
            ("4096", 4096),
            ("10b", 10),
            (" 64M ", 64 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        for (text, why) in [
            ("", "expected a number"),
            ("M", "expected a number"),
            ("1.G", "expected a number"),
            (".5G", "expected a number"),
            ("1.2.3G", "expected a number"),
            ("12X", "unknown unit"),
            ("1.5", "whole"),
            ("0", "greater than zero"),
            ("0M", "greater than zero"),
            ("99999999999T", "too large"),
            ("1.1234567891G", "too many digits"),
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(error.to_string().contains(why), "{text}: {error}");
        }
    }
}
