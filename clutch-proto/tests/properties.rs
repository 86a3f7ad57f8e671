//! Properties of the core that hold for every input: `poll_timeout` is a pure query of
//! the state, configuration validation accepts exactly the valid settings, and the
//! backoff delay is monotonic and capped.

use std::time::{Duration, Instant};

use clutch_proto::{
    Backoff, ClusterState, Config, CrashBudget, ExitStatus, HangPolicy, Input, Readiness, Signal,
    SpawnError, SpawnErrorKind, WorkerId, MAX_DURATION, MAX_WORKERS,
};
use proptest::prelude::*;

const SPAWN_ERROR_KINDS: [SpawnErrorKind; 4] = [
    SpawnErrorKind::Resource,
    SpawnErrorKind::Exec,
    SpawnErrorKind::Other,
    SpawnErrorKind::Cancelled,
];

// ----- poll_timeout is a pure query ----------------------------------------------------

fn small_config() -> impl Strategy<Value = Config> {
    (
        0usize..4,
        prop::sample::select(vec![1u64, 10, 100, 1000]),
        prop::sample::select(vec![None, Some(5u64), Some(50)]),
        prop::bool::ANY,
        1usize..3,
    )
        .prop_map(|(workers, boot_ms, hang_ms, watchdog, batch)| {
            let boot = Duration::from_millis(boot_ms);
            Config::builder()
                .workers(workers)
                .boot_timeout(boot)
                .force_exit_timeout(Duration::from_millis(20))
                .hang(HangPolicy {
                    timeout: hang_ms.map(Duration::from_millis),
                    ..HangPolicy::default()
                })
                .backoff(Backoff {
                    initial: Duration::from_millis(3),
                    ..Backoff::default()
                })
                .crash_budget(CrashBudget {
                    failures: 4,
                    window: Duration::from_millis(100),
                })
                .service_watchdog(watchdog.then_some(Duration::from_millis(7)))
                .rollout_batch(batch)
                .build()
                .unwrap()
        })
}

/// Decodes one op into an [`Input`]: `op` picks the kind, `arg` its detail (a pid, a
/// spawn error's kind, a signal, a worker count), `id` the worker it is about.
fn decode(op: u8, arg: u8, id: WorkerId) -> Input {
    match op {
        0 => Input::Spawned {
            id,
            pid: 100 + u32::from(arg),
        },
        1 => Input::SpawnFailed {
            id,
            error: SpawnError::new(SPAWN_ERROR_KINDS[usize::from(arg) % SPAWN_ERROR_KINDS.len()]),
        },
        2 => Input::Ready { id },
        3 => Input::Stopping { id },
        4 => Input::Heartbeat { id },
        5 => Input::Exited {
            id,
            status: ExitStatus::Code(1),
        },
        6 => Input::Signal(Signal::ALL[usize::from(arg) % Signal::ALL.len()]),
        7 => Input::Scale(usize::from(arg % 5)),
        8 => Input::Reload,
        _ => Input::Timeout,
    }
}

/// (what, which worker or signal, how far time moves first in µs), decoded by [`decode`].
fn ops() -> impl Strategy<Value = Vec<(u8, u8, u16)>> {
    prop::collection::vec((0u8..12, any::<u8>(), 0u16..20_000), 0..80)
}

fn drain(cluster: &mut ClusterState, spawned: &mut Vec<WorkerId>) {
    while let Some(action) = cluster.poll_action() {
        if let clutch_proto::Action::Spawn { id, .. } = action {
            spawned.push(id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn poll_timeout_is_a_pure_function_of_the_state(config in small_config(), ops in ops()) {
        // The one clock read: a base for synthetic time.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        let mut now = base;
        let mut cluster = ClusterState::new(config, base);
        let mut spawned = Vec::new();
        drain(&mut cluster, &mut spawned);
        for (op, arg, advance_us) in ops {
            now += Duration::from_micros(u64::from(advance_us));
            let id = if spawned.is_empty() {
                WorkerId(1)
            } else {
                spawned[usize::from(arg) % spawned.len()]
            };
            let input = decode(op, arg, id);
            if input == Input::Timeout {
                // Jump to the core's deadline, as a driver does.
                if let Some(at) = cluster.poll_timeout() {
                    now = now.max(at);
                }
            }
            let _ = cluster.handle(now, input);
            // Draining actions does not move the deadline; asking twice gives one answer.
            let before_drain = cluster.poll_timeout();
            drain(&mut cluster, &mut spawned);
            let deadline = cluster.poll_timeout();
            prop_assert_eq!(before_drain, deadline);
            prop_assert_eq!(deadline, cluster.poll_timeout());
            cluster.check_invariants().map_err(TestCaseError::fail)?;
            // A timeout before the deadline changes nothing at all.
            if let Some(at) = deadline.filter(|&at| at > now) {
                let early = now + (at - now) / 2;
                let status = cluster.status();
                let stats = *cluster.stats();
                let _ = cluster.handle(early, Input::Timeout);
                prop_assert_eq!(cluster.poll_action(), None);
                prop_assert_eq!(cluster.poll_timeout(), deadline);
                prop_assert_eq!(cluster.status(), status);
                prop_assert_eq!(cluster.stats().spawns, stats.spawns);
                now = early;
            }
        }
    }
}

// ----- configuration validation -----------------------------------------------------

/// Raw builder settings, valid or not.
#[derive(Debug, Clone)]
struct Settings {
    workers: Option<usize>,
    cpus: usize,
    force_exit: Duration,
    boot_timeout: Duration,
    readiness: Readiness,
    backoff: Backoff,
    budget: CrashBudget,
    hang: HangPolicy,
    batch: usize,
    min_uptime: Duration,
    name: String,
    watchdog: Option<Duration>,
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (1u64..100_000).prop_map(Duration::from_millis),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::MAX),
    ]
}

fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.999),
        Just(1.0),
        1.0f64..100.0,
        Just(100.0),
        Just(100.000_001),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    let counts = (
        prop_oneof![
            Just(None),
            (0usize..8).prop_map(Some),
            Just(Some(MAX_WORKERS)),
            Just(Some(MAX_WORKERS + 1))
        ],
        0usize..4,
        prop_oneof![
            Just(0usize),
            1usize..4,
            Just(MAX_WORKERS),
            Just(MAX_WORKERS + 1)
        ],
        prop_oneof![Just(0u32), 1u32..10],
    );
    let times = (
        duration(),
        duration(),
        duration(),
        duration(),
        duration(),
        duration(),
    );
    let policy = (
        prop::option::of(duration()),
        prop::sample::select(vec![
            None,
            Some(Signal::Abrt),
            Some(Signal::Kill),
            Some(Signal::Usr1),
        ]),
        duration(),
        factor(),
        prop_oneof![Just(0u8), Just(1), Just(2)],
        prop::option::of(duration()),
        prop_oneof![
            Just(String::new()),
            "[a-z]{1,10}",
            Just("x".repeat(64)),
            Just("x".repeat(65)),
            Just("é".repeat(32)),
            Just("é".repeat(33)),
            Just("a\nb".to_owned()),
            Just("tab\there".to_owned()),
        ],
    );
    (counts, times, policy).prop_map(
        |(
            (workers, cpus, batch, failures),
            (force_exit, boot_timeout, initial, max, min_uptime, window),
            (hang_timeout, hang_signal, grace, factor, readiness, watchdog, name),
        )| Settings {
            workers,
            cpus,
            force_exit,
            boot_timeout,
            readiness: match readiness {
                0 => Readiness::Notify,
                1 => Readiness::Spawned,
                // A delay around the boot timeout: below, equal or above.
                _ => Readiness::Delay(boot_timeout.checked_sub(initial).unwrap_or(initial)),
            },
            backoff: Backoff {
                initial,
                factor,
                max,
            },
            budget: CrashBudget { failures, window },
            hang: HangPolicy {
                timeout: hang_timeout,
                signal: hang_signal,
                grace,
            },
            batch,
            min_uptime,
            name,
            watchdog,
        },
    )
}

/// The documented rules, written independently of `ConfigBuilder::build`.
fn is_valid(s: &Settings) -> bool {
    let duration_ok = |d: Duration| d > Duration::ZERO && d <= MAX_DURATION;
    let workers = s.workers.unwrap_or(s.cpus.max(1));
    let readiness_ok = match s.readiness {
        Readiness::Delay(delay) => duration_ok(delay) && delay < s.boot_timeout,
        _ => true,
    };
    workers <= MAX_WORKERS
        && duration_ok(s.force_exit)
        && duration_ok(s.boot_timeout)
        && readiness_ok
        && duration_ok(s.backoff.initial)
        && duration_ok(s.backoff.max)
        && duration_ok(s.min_uptime)
        && (1.0..=100.0).contains(&s.backoff.factor)
        && s.backoff.max >= s.backoff.initial
        && s.budget.failures >= 1
        && duration_ok(s.budget.window)
        && s.hang.timeout.map_or(true, duration_ok)
        && duration_ok(s.hang.grace)
        && s.hang.signal != Some(Signal::Kill)
        && (1..=MAX_WORKERS).contains(&s.batch)
        // The name goes into process titles, which are measured in bytes.
        && (1..=64).contains(&s.name.len())
        && !s.name.chars().any(char::is_control)
        && s.watchdog.map_or(true, duration_ok)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn validation_accepts_exactly_the_valid_configs(s in settings()) {
        let mut b = Config::builder();
        b.cpus(s.cpus)
            .force_exit_timeout(s.force_exit)
            .boot_timeout(s.boot_timeout)
            .readiness(s.readiness)
            .backoff(s.backoff)
            .crash_budget(s.budget)
            .hang(s.hang)
            .rollout_batch(s.batch)
            .min_uptime(s.min_uptime)
            .name(s.name.clone())
            .service_watchdog(s.watchdog);
        if let Some(workers) = s.workers {
            b.workers(workers);
        }
        let built = b.build();
        prop_assert_eq!(built.is_ok(), is_valid(&s), "{:?} for {:?}", built, s);
        if let Ok(config) = built {
            prop_assert_eq!(config.workers(), s.workers.unwrap_or(s.cpus.max(1)));
            prop_assert_eq!(config.boot_timeout(), s.boot_timeout);
            prop_assert_eq!(config.readiness(), s.readiness);
            prop_assert_eq!(config.rollout_batch(), s.batch);
            prop_assert_eq!(config.min_uptime(), s.min_uptime);
            prop_assert_eq!(config.name(), s.name.as_str());
        } else {
            prop_assert!(!built.unwrap_err().to_string().is_empty());
        }
    }
}

// ----- backoff ----------------------------------------------------------------------

fn valid_backoff() -> impl Strategy<Value = Backoff> {
    let nanos = 1u64..=MAX_DURATION.as_nanos() as u64;
    (
        nanos.clone(),
        nanos,
        prop_oneof![Just(1.0), 1.0f64..=100.0, Just(100.0)],
    )
        .prop_map(|(a, b, factor)| Backoff {
            initial: Duration::from_nanos(a.min(b)),
            max: Duration::from_nanos(a.max(b)),
            factor,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn backoff_starts_at_initial_never_shrinks_and_is_capped(b in valid_backoff()) {
        prop_assert_eq!(b.delay(0), Duration::ZERO);
        prop_assert_eq!(b.delay(1), b.initial);
        let mut previous = b.delay(1);
        for n in (2..=64).chain([100, 1000, 1024, 1025, 5000, u32::MAX - 1, u32::MAX]) {
            let delay = b.delay(n);
            prop_assert!(delay >= previous, "delay({}) = {:?} < {:?}", n, delay, previous);
            prop_assert!(delay <= b.max, "delay({}) = {:?} above the cap {:?}", n, delay, b.max);
            previous = delay;
        }
        if b.factor >= 2.0 {
            prop_assert_eq!(b.delay(u32::MAX), b.max, "a growing backoff reaches its cap");
        }
    }
}
