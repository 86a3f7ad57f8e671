//! The master's metrics as Prometheus reads them: the text exposition format 0.0.4, or
//! OpenMetrics 1.0 for a scraper that asks for it (`Accept`). Pure: a [`Snapshot`] of
//! values read at scrape time in, text out (the HTTP side is
//! `engine/metrics_server.rs`).
//!
//! Hand-written rather than with a client library: every value already lives in the
//! core's [`Stats`] or is read from `/proc` when asked for, so a registry of live
//! metric objects would only be a second copy to keep in step. The tests check the
//! output with the reference parsers (Python's `prometheus_client`).
//!
//! Every metric is named `clutch_…`, but the master's own CPU and memory, which follow
//! the Prometheus conventions for a process (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`). The list, with what each means, is in the README
//! ("Metrics").

use std::fmt::Write as _;
use std::time::Duration;

use clutch_proto::{Phase, Stats, WorkerState};

use crate::control::Status;

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MetricsFormat {
    /// Prometheus text format 0.0.4 (what every scraper reads).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0 text (counter families named without `_total`, a final `# EOF`).
    OpenMetrics,
}

impl MetricsFormat {
    /// The `Content-Type` of an answer in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an HTTP `Accept` header asks for: OpenMetrics when it lists
    /// `application/openmetrics-text` with a quality above 0 (as Prometheus does, ahead
    /// of `text/plain`), else the text format.
    #[must_use]
    pub fn from_accept(accept: &str) -> Self {
        let wants = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let quality = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && quality > 0.0
        });
        if wants {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The name in the control protocol (`"format"` of a `metrics` request).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Prometheus => "prometheus",
            Self::OpenMetrics => "openmetrics",
        }
    }
}

/// The buckets of the boot-to-ready histogram, in seconds.
pub(crate) const BOOT_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram with fixed bounds: counts per bucket (not cumulative), their sum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One per bound, and the last for what is above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|b| b[0] < b[1]));
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub(crate) fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What a scrape reports, read when it is asked for.
#[derive(Debug)]
pub(crate) struct Snapshot<'a> {
    /// The `status` answer: the cluster's counts and every worker with its usage.
    pub(crate) status: &'a Status,
    /// The core's counters.
    pub(crate) stats: &'a Stats,
    /// Boot-to-ready times of the workers that became ready.
    pub(crate) boot: &'a Histogram,
    /// The master's own CPU time and resident set.
    pub(crate) master: crate::os::usage::Usage,
}

const WORKER_STATES: [WorkerState; 6] = [
    WorkerState::Spawning,
    WorkerState::Booting,
    WorkerState::Ready,
    WorkerState::Hung,
    WorkerState::Stopping,
    WorkerState::Killed,
];

const PHASES: [Phase; 5] = [
    Phase::Starting,
    Phase::Running,
    Phase::Reloading,
    Phase::Stopping,
    Phase::Exited,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A value as the formats write it: integers as integers, the rest as decimals.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) if x.is_nan() => f.write_str("NaN"),
            Self::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "+Inf" } else { "-Inf" })
            }
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

struct Writer {
    out: String,
    format: MetricsFormat,
}

impl Writer {
    /// `# HELP` and `# TYPE` of family `name` (a counter's with its `_total`: the
    /// OpenMetrics family drops it).
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let family = match (self.format, kind) {
            (MetricsFormat::OpenMetrics, Kind::Counter) => {
                name.strip_suffix("_total").unwrap_or(name)
            }
            _ => name,
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let text = text
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{label}=\"{text}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            let le = Value::Float(*bound).to_string();
            self.sample(&bucket, &[("le", &le)], Value::Int(cumulative));
        }
        self.sample(&bucket, &[("le", "+Inf")], Value::Int(histogram.count()));
        self.sample(&format!("{name}_sum"), &[], Value::Float(histogram.sum));
        self.sample(&format!("{name}_count"), &[], Value::Int(histogram.count()));
    }
}

/// The exposition of `snapshot` in `format`.
pub(crate) fn render(snapshot: &Snapshot<'_>, format: MetricsFormat) -> String {
    use Kind::{Counter, Gauge};
    let Snapshot {
        status,
        stats,
        boot,
        master,
    } = snapshot;
    let mut w = Writer {
        out: String::with_capacity(4096 + 400 * status.workers.len()),
        format,
    };
    let int = |n: usize| Value::Int(n as u64);

    w.family(
        "clutch_workers",
        Gauge,
        "Worker processes by state (leaving ones included).",
    );
    for state in WORKER_STATES {
        let count = status.workers.iter().filter(|w| w.state == state).count();
        w.sample("clutch_workers", &[("state", state.name())], int(count));
    }
    w.single(
        "clutch_workers_target",
        Gauge,
        "Workers wanted.",
        int(status.target),
    );
    w.single(
        "clutch_workers_ready",
        Gauge,
        "Workers ready.",
        int(status.ready),
    );
    w.family(
        "clutch_phase",
        Gauge,
        "The cluster's phase: 1 for the current one.",
    );
    for phase in PHASES {
        let on = u64::from(phase == status.phase);
        w.sample("clutch_phase", &[("phase", phase.name())], Value::Int(on));
    }
    w.single(
        "clutch_generation",
        Gauge,
        "The newest generation (1 until the first rolling restart).",
        Value::Int(status.generation),
    );
    w.single(
        "clutch_degraded",
        Gauge,
        "1 while some slots keep failing (their workers wait in backoff) and others serve: \
         the crash breaker counts.",
        Value::Int(u64::from(status.degraded)),
    );
    w.single(
        "clutch_failing_slots",
        Gauge,
        "Slots whose workers keep failing.",
        int(status.failing_slots),
    );

    w.single(
        "clutch_worker_spawns_total",
        Counter,
        "Workers the master asked to start.",
        Value::Int(stats.spawns),
    );
    w.single(
        "clutch_worker_spawn_failures_total",
        Counter,
        "Workers that could not be started (fork or exec failed).",
        Value::Int(stats.spawn_failures),
    );
    w.family(
        "clutch_worker_restarts_total",
        Counter,
        "Workers replaced, by cause: crash (died after it was ready), boot_failure (died \
         before), boot_timeout (not ready in time, killed), hang (heartbeats stopped, \
         killed), recycle (replaced for its memory, age or at its request).",
    );
    let crashes = stats.unexpected_exits.saturating_sub(stats.boot_deaths);
    for (cause, count) in [
        ("crash", crashes),
        ("boot_failure", stats.boot_deaths),
        ("boot_timeout", stats.boot_timeouts),
        ("hang", stats.hung),
        ("recycle", stats.recycled),
    ] {
        w.sample(
            "clutch_worker_restarts_total",
            &[("cause", cause)],
            Value::Int(count),
        );
    }
    w.single(
        "clutch_breaker_failures_total",
        Counter,
        "Failures the crash breaker counted (deaths at boot or in probation).",
        Value::Int(stats.boot_failures),
    );
    w.single(
        "clutch_recycles_total",
        Counter,
        "Recycles begun (a successor started for a worker's memory, age or request).",
        Value::Int(stats.recycles),
    );
    for (name, help, count) in [
        (
            "clutch_rollouts_started_total",
            "Rolling restarts started.",
            stats.reloads_started,
        ),
        (
            "clutch_rollouts_finished_total",
            "Rolling restarts finished: every slot runs the new generation.",
            stats.reloads_finished,
        ),
        (
            "clutch_rollouts_failed_total",
            "Rolling restarts failed: the old workers keep serving.",
            stats.reloads_failed,
        ),
        (
            "clutch_upgrades_started_total",
            "Upgrades of the master started.",
            stats.upgrades_started,
        ),
        (
            "clutch_upgrades_handed_over_total",
            "Upgrades of the master that handed over to the new master.",
            stats.upgrades_handed_over,
        ),
        (
            "clutch_upgrades_failed_total",
            "Upgrades of the master that failed: this master keeps serving.",
            stats.upgrades_failed,
        ),
        (
            "clutch_log_lines_dropped_total",
            "Log lines the master dropped rather than block on its stderr.",
            status.log_lines_dropped,
        ),
        (
            "clutch_worker_lines_dropped_total",
            "Lines of the workers' output dropped rather than block (--worker-output prefix|json).",
            status.worker_lines_dropped,
        ),
    ] {
        w.single(name, Counter, help, Value::Int(count));
    }
    w.histogram(
        "clutch_worker_boot_seconds",
        "Time from a worker's spawn to its readiness.",
        boot,
    );

    let workers: Vec<_> = status.workers.iter().filter(|w| w.pid.is_some()).collect();
    let labelled = |w: &crate::control::WorkerStatus| {
        [
            w.slot.0.to_string(),
            w.id.0.to_string(),
            w.generation.to_string(),
        ]
    };
    let per_worker = |w: &mut Writer, name: &str, rows: &[([String; 3], Value)]| {
        for (labels, value) in rows {
            let [slot, id, generation] = labels;
            let labels = [
                ("slot", &**slot),
                ("id", &**id),
                ("generation", &**generation),
            ];
            w.sample(name, &labels, *value);
        }
    };
    w.family(
        "clutch_worker_uptime_seconds",
        Gauge,
        "Time since each worker was spawned.",
    );
    let rows: Vec<_> = workers
        .iter()
        .map(|w| (labelled(w), Value::Float(w.uptime.as_secs_f64())))
        .collect();
    per_worker(&mut w, "clutch_worker_uptime_seconds", &rows);
    w.family(
        "clutch_worker_cpu_seconds_total",
        Counter,
        "CPU time (user and system) each worker used: its cgroup's (its whole tree) where \
         it has one, else its main process's.",
    );
    let rows: Vec<_> = workers
        .iter()
        .filter_map(|w| Some((labelled(w), Value::Float(w.cpu?.as_secs_f64()))))
        .collect();
    per_worker(&mut w, "clutch_worker_cpu_seconds_total", &rows);
    w.family(
        "clutch_worker_memory_bytes",
        Gauge,
        "Memory each worker holds: its cgroup's memory.current where the memory \
         controller reaches it, else its main process's resident set.",
    );
    let rows: Vec<_> = workers
        .iter()
        .filter_map(|w| Some((labelled(w), Value::Int(w.memory_bytes?))))
        .collect();
    per_worker(&mut w, "clutch_worker_memory_bytes", &rows);

    if let Some(cpu) = master.cpu {
        w.single(
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time of the master process, in seconds.",
            Value::Float(cpu.as_secs_f64()),
        );
    }
    if let Some(bytes) = master.memory_bytes {
        w.single(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size of the master process, in bytes.",
            Value::Int(bytes),
        );
    }
    if format == MetricsFormat::OpenMetrics {
        w.out.push_str("# EOF\n");
    }
    w.out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::WorkerStatus;
    use clutch_proto::{Pid, Slot, WorkerId};

    /// A snapshot with two workers (one with its usage unknown), some of every counter.
    pub(crate) fn sample_text(format: MetricsFormat) -> String {
        let start = std::time::Instant::now();
        let worker = |id: u64, slot: usize, pid: Option<Pid>, state, cpu, memory| {
            let mut w = WorkerStatus::new(
                &clutch_proto::WorkerInfo {
                    id: WorkerId(id),
                    slot: Slot(slot),
                    generation: 2,
                    pid,
                    state,
                    spawned_at: start,
                    ready_at: None,
                    last_heartbeat: None,
                    stop_reason: None,
                    restarts: 0,
                    successor: false,
                    recycling: None,
                    proven: true,
                },
                start + Duration::from_millis(2500),
                crate::os::usage::Usage {
                    cpu,
                    memory_bytes: memory,
                },
            );
            w.generation = 2;
            w
        };
        let status = Status {
            pid: 1,
            phase: Phase::Running,
            target: 2,
            ready: 1,
            live: 2,
            degraded: false,
            failing_slots: 0,
            generation: 2,
            log_lines_dropped: 3,
            worker_lines_dropped: 4,
            containment: "group",
            recycles: 1,
            metrics: None,
            workers: vec![
                worker(
                    4,
                    0,
                    Some(100),
                    WorkerState::Ready,
                    Some(Duration::from_millis(1250)),
                    Some(5 << 20),
                ),
                worker(5, 1, Some(101), WorkerState::Booting, None, None),
                worker(6, 1, None, WorkerState::Spawning, None, None),
            ],
        };
        let stats = Stats {
            spawns: 6,
            unexpected_exits: 3,
            boot_deaths: 1,
            hung: 1,
            reloads_started: 1,
            reloads_finished: 1,
            ..Stats::default()
        };
        let mut boot = Histogram::new(&BOOT_BUCKETS);
        boot.observe(Duration::from_millis(30));
        boot.observe(Duration::from_millis(700));
        boot.observe(Duration::from_secs(500));
        render(
            &Snapshot {
                status: &status,
                stats: &stats,
                boot: &boot,
                master: crate::os::usage::Usage {
                    cpu: Some(Duration::from_millis(20)),
                    memory_bytes: Some(8 << 20),
                },
            },
            format,
        )
    }

    #[test]
    fn the_text_format_names_counters_with_their_total() {
        let text = sample_text(MetricsFormat::Prometheus);
        for line in [
            "# TYPE clutch_worker_restarts_total counter",
            "clutch_worker_restarts_total{cause=\"crash\"} 2",
            "clutch_worker_restarts_total{cause=\"boot_failure\"} 1",
            "clutch_workers{state=\"ready\"} 1",
            "clutch_workers{state=\"spawning\"} 1",
            "clutch_phase{phase=\"running\"} 1",
            "clutch_phase{phase=\"starting\"} 0",
            "clutch_worker_boot_seconds_bucket{le=\"0.05\"} 1",
            "clutch_worker_boot_seconds_bucket{le=\"1\"} 2",
            "clutch_worker_boot_seconds_bucket{le=\"120\"} 2",
            "clutch_worker_boot_seconds_bucket{le=\"+Inf\"} 3",
            "clutch_worker_boot_seconds_count 3",
            "clutch_worker_cpu_seconds_total{slot=\"0\",id=\"4\",generation=\"2\"} 1.25",
            "clutch_worker_memory_bytes{slot=\"0\",id=\"4\",generation=\"2\"} 5242880",
            "clutch_worker_uptime_seconds{slot=\"1\",id=\"5\",generation=\"2\"} 2.5",
            "clutch_log_lines_dropped_total 3",
            "clutch_worker_lines_dropped_total 4",
            "process_resident_memory_bytes 8388608",
            "process_cpu_seconds_total 0.02",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        // Unknown figures are left out, not written as zeros; a worker not yet spawned
        // has no series of its own.
        assert!(!text.contains("memory_bytes{slot=\"1\""), "{text}");
        assert!(!text.contains("id=\"6\""), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = sample_text(MetricsFormat::OpenMetrics);
        assert!(
            text.contains("# TYPE clutch_worker_restarts counter\n"),
            "{text}"
        );
        assert!(text.contains("\nclutch_worker_restarts_total{cause=\"hang\"} 1\n"));
        assert!(text.contains("# TYPE process_cpu_seconds counter\n"));
        assert!(text.contains("# TYPE clutch_workers gauge\n"));
        assert!(text.ends_with("\n# EOF\n"), "{text}");
    }

    #[test]
    fn accept_headers_choose_the_format() {
        for (accept, format) in [
            // What Prometheus 2.x sends.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                MetricsFormat::OpenMetrics,
            ),
            ("text/plain;version=0.0.4", MetricsFormat::Prometheus),
            ("*/*", MetricsFormat::Prometheus),
            ("", MetricsFormat::Prometheus),
            (
                "application/openmetrics-text; q=0",
                MetricsFormat::Prometheus,
            ),
            ("Application/OpenMetrics-Text", MetricsFormat::OpenMetrics),
        ] {
            assert_eq!(MetricsFormat::from_accept(accept), format, "{accept}");
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = Writer {
            out: String::new(),
            format: MetricsFormat::Prometheus,
        };
        w.family("x", Kind::Gauge, "a \\ b\nc");
        w.sample("x", &[("l", "q\"\\\n")], Value::Float(f64::INFINITY));
        assert_eq!(
            w.out,
            "# HELP x a \\\\ b\\nc\n# TYPE x gauge\nx{l=\"q\\\"\\\\\\n\"} +Inf\n"
        );
    }

    #[test]
    fn histogram_buckets_take_values_at_their_bound() {
        let mut h = Histogram::new(&BOOT_BUCKETS);
        h.observe(Duration::from_millis(100));
        assert_eq!(h.counts[3], 1, "0.1 s is in the le=0.1 bucket");
        h.observe(Duration::from_secs(121));
        assert_eq!(h.counts[BOOT_BUCKETS.len()], 1, "above every bound");
        assert_eq!(h.count(), 2);
    }
}
