//! A worker's resource figures for `status` and `/metrics`: the CPU time it has used and
//! the memory it holds, read when they are asked for (no sampling thread, no timer: an
//! idle master stays asleep).
//!
//! | figure | in a cgroup of its own | otherwise |
//! |---|---|---|
//! | CPU time | `cpu.stat`'s `usage_usec`: the whole tree, its children that ended included (cgroup v2 keeps it in every cgroup, with or without the cpu controller) | `/proc/<pid>/stat`'s `utime + stime`, in clock ticks: the main process only |
//! | memory | `memory.current` when the memory controller reaches the workers' cgroups (see [`crate::os::contain`]) | `/proc/<pid>/statm`'s resident set ([`crate::os::memory::resident_bytes`]) |
//!
//! A figure that cannot be read (the process just ended, `/proc` not mounted) is `None`
//! and shows as `null`: never a guess.

use std::time::Duration;

use crate::os::contain::WorkerCgroup;

/// What a worker (or the master) has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// CPU time, user and system.
    pub(crate) cpu: Option<Duration>,
    /// Memory in bytes: the cgroup's charge, or the main process's resident set.
    pub(crate) memory_bytes: Option<u64>,
}

/// The usage of a worker whose main process is `pid`, in `cgroup` if it has one;
/// `cgroup_memory`: the memory controller reaches that cgroup (`memory.current` is
/// there to read).
pub(crate) fn of_worker(pid: u32, cgroup: Option<&WorkerCgroup>, cgroup_memory: bool) -> Usage {
    let cpu = cgroup
        .and_then(WorkerCgroup::cpu_usage)
        .or_else(|| process_cpu(pid));
    let memory_bytes = match cgroup.filter(|_| cgroup_memory) {
        Some(cgroup) => cgroup.memory_current(),
        None => crate::os::memory::resident_bytes(pid).ok(),
    };
    Usage { cpu, memory_bytes }
}

/// This process's own usage (the master's `process_*` metrics).
pub(crate) fn of_this_process() -> Usage {
    let pid = std::process::id();
    Usage {
        cpu: process_cpu(pid),
        memory_bytes: crate::os::memory::resident_bytes(pid).ok(),
    }
}

/// `utime + stime` of process `pid` (`/proc/<pid>/stat`).
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    Some(ticks_to_duration(
        ticks,
        rustix::param::clock_ticks_per_second(),
    ))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses: the fields
/// are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    let micros = u128::from(ticks) * 1_000_000 / u128::from(per_second);
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// `usage_usec` of a cgroup's `cpu.stat`.
pub(crate) fn parse_cpu_stat(text: &str) -> Option<Duration> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("usage_usec ")?;
        value.trim().parse().ok().map(Duration::from_micros)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_s_cpu_fields_are_counted_after_the_name() {
        // A name with spaces and a parenthesis, as a process may call itself.
        let stat = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 1 0 12345 1000000 250 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no name at all"), None);
        assert_eq!(
            ticks_to_duration(300, 100),
            Duration::from_secs(3),
            "100 ticks a second"
        );
        assert_eq!(ticks_to_duration(1, 0), Duration::from_secs(1), "never / 0");
    }

    #[test]
    fn cpu_stat_s_usage_is_in_microseconds() {
        let text = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n";
        assert_eq!(parse_cpu_stat(text), Some(Duration::from_millis(1500)));
        assert_eq!(parse_cpu_stat("user_usec 5\n"), None);
    }

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        // Burn a little CPU so that at least a tick is counted.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let usage = of_this_process();
        assert!(
            usage.cpu.is_some_and(|cpu| cpu > Duration::ZERO),
            "{usage:?}"
        );
        assert!(usage.memory_bytes.is_some_and(|b| b > 1 << 20), "{usage:?}");
        assert_eq!(process_cpu(u32::MAX), None);
    }
}
