//! Measuring a worker's memory for `--max-worker-memory`: its cgroup's `memory.current`
//! (the whole tree, page cache charged to it included) when the workers' cgroups have
//! the memory controller (`contain.rs`), else its main process's resident set.
//!
//! The resident set comes from `/proc/<pid>/statm` (its second field, in pages), not
//! `smaps_rollup`: `statm` is read from counters the kernel keeps (O(1) whatever the
//! process's size), where `smaps_rollup` walks every mapping and page table, which for a
//! worker of many gigabytes costs milliseconds of the master's loop per sample.
//! `smaps_rollup`'s Pss would share the pages a worker shares with its siblings more
//! fairly, but an exec-mode worker shares little more than its libraries, and RSS is
//! what peers limit on (uWSGI's `reload-on-rss`, Passenger's memory limit), so the
//! numbers mean what operators expect.

use std::io;

/// A memory limit and how often it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryLimit {
    /// A ready worker using more than this is recycled.
    pub(crate) bytes: u64,
    /// How often every worker is measured.
    pub(crate) interval: std::time::Duration,
}

/// The default [`MemoryLimit::interval`]: 5 s, a wakeup the master can afford that still
/// catches a leak long before it matters (a worker leaking 10 MB/s is seen at most 50 MB
/// past its limit).
pub(crate) const DEFAULT_MEMORY_CHECK_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(5);

/// The resident set of process `pid`, in bytes (`/proc/<pid>/statm`).
pub(crate) fn resident_bytes(pid: u32) -> io::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages = parse_statm_resident(&statm)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed statm"))?;
    Ok(pages.saturating_mul(rustix::param::page_size() as u64))
}

/// The resident pages in a `statm` line (`size resident shared text lib data dt`).
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_s_second_field_is_the_resident_set() {
        assert_eq!(parse_statm_resident("1000 250 30 5 0 400 0\n"), Some(250));
        assert_eq!(parse_statm_resident("1000"), None);
        assert_eq!(parse_statm_resident("1000 x"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let bytes = resident_bytes(std::process::id()).unwrap();
        assert!(bytes > 1 << 20, "{bytes}");
        assert!(resident_bytes(u32::MAX).is_err());
    }
}
