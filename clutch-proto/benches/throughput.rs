//! Inputs per second through a 1024-worker `ClusterState`.
//!
//! `cargo bench -p clutch-proto` — a self-contained harness (no criterion: it would
//! double the build time of CI for one number). The mix is what a busy master sees:
//! mostly heartbeats, plus crashes and their respawn/boot/ready reports, timer wakeups,
//! USR1 forwarding, and a rolling restart of the whole cluster every so often. Every
//! input is followed by a full drain of actions, as the driving contract requires, and a
//! tiny in-bench "world" answers each action the way real processes would.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use clutch_proto::{Action, ClusterState, Config, ExitStatus, HangPolicy, Input, Signal, WorkerId};

const WORKERS: usize = 1024;
const INPUTS: u64 = 4_000_000;
const RUNS: usize = 5;

/// xorshift64*: deterministic, good enough to pick inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct World {
    cluster: ClusterState,
    now: Instant,
    /// What the world will tell the core next (spawn reports, READY, exits).
    pending: VecDeque<Input>,
    ready: Vec<WorkerId>,
    next_pid: u32,
    inputs: u64,
}

impl World {
    fn drain(&mut self) {
        while let Some(action) = self.cluster.poll_action() {
            match action {
                Action::Spawn { id, .. } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.pending.push_back(Input::Spawned { id, pid });
                }
                Action::Signal {
                    id,
                    signal: Signal::Term | Signal::Kill,
                    ..
                } => {
                    self.pending.push_back(Input::Exited {
                        id,
                        status: ExitStatus::Code(0),
                    });
                }
                other => {
                    black_box(other);
                }
            }
        }
    }

    /// Delivers what the world says, and queues what follows from it.
    fn reply(&mut self, input: Input) {
        self.inputs += 1;
        let _ = self.cluster.handle(self.now, input);
        match input {
            Input::Spawned { id, .. } => self.pending.push_back(Input::Ready { id }),
            Input::Ready { id } => self.ready.push(id),
            _ => {}
        }
        self.drain();
    }

    /// Delivers one input of the mix.
    fn input(&mut self, input: Input) {
        let _ = self.cluster.handle(self.now, input);
        self.drain();
    }
}

/// `crash_per_10k`: unexpected exits per 10,000 inputs (each brings ~3 more inputs: the
/// respawn's spawned and ready reports, and the slot's refill).
fn run(seed: u64, crash_per_10k: u64) -> (u64, Duration) {
    // Under churn, workers pass probation after 1 ms so every crash is refilled at once:
    // the spawn/exit/ready path is measured rather than slots idling in backoff.
    let min_uptime = if crash_per_10k > 100 {
        Duration::from_millis(1)
    } else {
        Duration::from_secs(30)
    };
    let config = Config::builder()
        .workers(WORKERS)
        .min_uptime(min_uptime)
        .rollout_batch(16)
        .hang(HangPolicy {
            timeout: Some(Duration::from_secs(30)),
            ..HangPolicy::default()
        })
        .build()
        .expect("valid config");
    #[allow(clippy::disallowed_methods)] // a benchmark's base time, not the core's clock
    let start = Instant::now();
    let mut world = World {
        cluster: ClusterState::new(config, start),
        now: start,
        pending: VecDeque::new(),
        ready: Vec::with_capacity(WORKERS * 3),
        next_pid: 1,
        inputs: 0,
    };
    world.drain();
    while let Some(reply) = world.pending.pop_front() {
        world.reply(reply);
    }
    let mut rng = Rng(seed | 1);
    world.inputs = 0;
    #[allow(clippy::disallowed_methods)]
    let clock = Instant::now();
    // Start with a healthy cluster: past the probation.
    world.now += Duration::from_secs(60);
    while world.inputs < INPUTS {
        world.now += Duration::from_millis(1);
        // Answer whatever the cluster asked for first (spawns, stops).
        if let Some(reply) = world.pending.pop_front() {
            world.reply(reply);
            continue;
        }
        if world.ready.is_empty() {
            world.inputs += 1;
            world.input(Input::Timeout);
            continue;
        }
        let roll = rng.next() % 10_000;
        let index = (rng.next() as usize) % world.ready.len();
        let pick = world.ready[index];
        world.inputs += 1;
        if world.inputs % 500_000 == 0 {
            // A rolling restart of the whole cluster now and then.
            world.input(Input::Reload);
            continue;
        }
        let input = match roll {
            // A crash: the slot is refilled, which brings spawn/ready replies.
            r if r < crash_per_10k => {
                world.ready.swap_remove(index);
                Input::Exited {
                    id: pick,
                    status: ExitStatus::Signaled(11),
                }
            }
            r if r < crash_per_10k + 100 => Input::Timeout,
            r if r == crash_per_10k + 100 => Input::Signal(Signal::Usr1),
            // Everything else: heartbeats, the bulk of a busy master's traffic.
            _ => Input::Heartbeat { id: pick },
        };
        world.input(input);
        if world.ready.len() > WORKERS + WORKERS / 8 {
            // Forget departed ids now and then (stale ones are legal inputs anyway).
            let cluster = &world.cluster;
            world.ready.retain(|&id| cluster.worker(id).is_some());
        }
    }
    #[allow(clippy::disallowed_methods)]
    let took = clock.elapsed();
    world
        .cluster
        .check_invariants()
        .expect("invariants hold after the run");
    let stats = world.cluster.stats();
    // Ignored (stale) inputs are cheap: keep them rare so they cannot flatter the figure.
    assert!(
        stats.ignored_inputs * 100 < world.inputs,
        "too many stale inputs: {stats:?}"
    );
    assert!(
        world.cluster.ready_workers() > WORKERS * 9 / 10,
        "the cluster must stay up"
    );
    if std::env::var_os("CLUTCH_BENCH_VERBOSE").is_some() {
        eprintln!("{stats:?} ready at end: {}", world.cluster.ready_workers());
    }
    (world.inputs, took)
}

fn main() {
    // `cargo test --benches` runs this once with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { RUNS };
    for (mix, crash_per_10k) in [
        ("realistic (0.5% crashes)", 50),
        ("churn (20% crashes)", 2000),
    ] {
        let mut rates: Vec<f64> = Vec::new();
        for run_index in 0..runs {
            let (inputs, took) = run(0x9E37_79B9_7F4A_7C15 ^ run_index as u64, crash_per_10k);
            rates.push(inputs as f64 / took.as_secs_f64());
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        let median = rates[rates.len() / 2];
        println!(
            "clutch-proto {mix}: {WORKERS} workers, {INPUTS} inputs/run, {runs} runs: median {:.2} M inputs/s (min {:.2}, max {:.2})",
            median / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6
        );
    }
}
