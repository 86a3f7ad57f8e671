//! What one seed chooses: the cluster's [`Config`] and the world's fault knobs.
//!
//! Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): rather than every fault at
//! a middling rate in every run, each knob is switched on or off per seed and, when on,
//! gets its own rate. Some worlds are quiet except for one kind of trouble, others are a
//! storm of everything; both find bugs the average world hides.

use std::fmt;
use std::time::Duration;

use clutch_proto::{
    Backoff, Config, ConfigBuilder, CrashBudget, ForwardSignals, HangPolicy, Readiness, Signal,
};

use crate::rng::{Entropy, Rng};

/// The most workers a simulated world scales to (TTIN stops there): keeps seeds fast.
pub const MAX_SIM_WORKERS: usize = 64;

/// How a fault-free world behaves, and which faults this world injects.
///
/// Rates are per mille (`0` = the knob is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Longest time the driver takes to report a spawn (success or failure).
    pub spawn_latency: Duration,
    /// Longest time a SIGKILLed process takes to be reaped. Bounds the forced exit.
    pub kill_latency: Duration,
    /// Longest boot (time to `READY=1`) before calm; may exceed the boot timeout.
    pub boot_time: Duration,
    /// Longest boot after calm: always well inside the boot timeout.
    pub healthy_boot_time: Duration,
    /// Spawns that fail for the program's fault ([`SpawnErrorKind::Other`]).
    ///
    /// [`SpawnErrorKind::Other`]: clutch_proto::SpawnErrorKind::Other
    pub spawn_fail: u32,
    /// Spawns that fail because the master is out of fds or memory
    /// ([`SpawnErrorKind::Resource`]: never a boot failure).
    ///
    /// [`SpawnErrorKind::Resource`]: clutch_proto::SpawnErrorKind::Resource
    pub resource_fail: u32,
    /// Spawns whose `execve` fails ([`SpawnErrorKind::Exec`]: a startup error while no
    /// worker ever started, a boot failure after).
    ///
    /// [`SpawnErrorKind::Exec`]: clutch_proto::SpawnErrorKind::Exec
    pub exec_fail: u32,
    /// The driver checks, before it forks, whether the core still wants the worker, and
    /// reports [`SpawnErrorKind::Cancelled`] for one it already decided to stop.
    ///
    /// [`SpawnErrorKind::Cancelled`]: clutch_proto::SpawnErrorKind::Cancelled
    pub cancel_stopped: bool,
    /// Workers that crash while booting.
    pub boot_crash: u32,
    /// Workers that crash some time after booting.
    pub run_crash: u32,
    /// How long after boot a runtime crash may come.
    pub run_crash_window: Duration,
    /// Workers that never say `READY=1`.
    pub never_ready: u32,
    /// Workers that heartbeat (`WATCHDOG=1`)...
    pub heartbeat: u32,
    /// ...how often (below the hang timeout, so healthy ones are never hung)...
    pub heartbeat_interval: Duration,
    /// ...and of those, the ones that hang at some point (go silent, ignore TERM).
    pub hang: u32,
    /// Workers that ignore SIGTERM.
    pub ignore_term: u32,
    /// Longest time a worker takes to exit after SIGTERM.
    pub exit_delay: Duration,
    /// Workers that die of SIGABRT / SIGQUIT (the others survive it).
    pub abrt_kills: u32,
    /// Workers that announce `STOPPING=1` on their own at some point, then exit.
    pub announce: u32,
    /// Pids come from a tiny pool and are reused at once (the core must not care).
    pub pid_reuse: bool,
    /// Mean gap between signal storms to the master (`None`: no storms).
    pub storms: Option<Duration>,
    /// Mean gap between application commands (`None`: no commands).
    pub commands: Option<Duration>,
    /// Mean gap between late, duplicate or stale reports (`None`: none).
    pub stale_reports: Option<Duration>,
    /// Workers that ask to be recycled at some point after boot (over the memory limit,
    /// or asking themselves), some of them repeatedly.
    pub recycle: u32,
    /// Successor masters of an upgrade that fail at one of its phases: their spawn
    /// fails, they die before serving, they never serve, or they die after it.
    pub successor_fail: u32,
    /// Successor masters that ignore SIGTERM (a failed upgrade must kill them).
    pub successor_ignores_term: u32,
}

/// How the run unfolds in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How long the faults (and storms and commands) last.
    pub chaos: Duration,
    /// After the chaos the world heals and the cluster must reach its target
    /// (checked at a deadline derived from the config). Otherwise the run ends there.
    pub calm: bool,
    /// At the end the master gets a SIGTERM and must exit in time.
    pub final_term: bool,
}

/// Everything one seed decides before the first event.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// The cluster's configuration.
    pub config: Config,
    /// The fault knobs.
    pub faults: Faults,
    /// The run's shape.
    pub plan: Plan,
}

impl World {
    /// Draws a world.
    pub fn generate<E: Entropy>(rng: &mut Rng<E>) -> Self {
        let mut builder = generate_config(rng);
        let config = builder
            .build()
            .expect("the generator only builds valid configs");
        let mut faults = generate_faults(rng, &config);
        let plan = Plan {
            chaos: rng.log_millis(50, 60_000),
            calm: rng.one_in(2),
            final_term: !rng.one_in(3),
        };
        // Drawn last, so every earlier setting of a seed's world stays what it was.
        builder.forward_signals(
            rng.weighted(&[
                (6, ForwardSignals::ALL),
                (2, ForwardSignals::NONE),
                (
                    1,
                    ForwardSignals::NONE
                        .with(Signal::Usr1)
                        .expect("forwardable"),
                ),
                (
                    1,
                    ForwardSignals::NONE
                        .with(Signal::Usr2)
                        .expect("forwardable"),
                ),
            ]),
        );
        faults.resource_fail = if rng.one_in(2) {
            0
        } else {
            rng.range(5, 800) as u32
        };
        // An exec failure before any worker started ends the run: rarer, and rare per
        // spawn, so that most such worlds also get past their first round.
        faults.exec_fail = if rng.one_in(4) {
            rng.range(5, 300) as u32
        } else {
            0
        };
        faults.cancel_stopped = rng.one_in(2);
        // Recycling, drawn after everything older. A maximum age in a third of the
        // worlds: mostly seconds to minutes; one in eight far below any probation, so
        // that workers are recycled as soon as they serve, without pause (a stress, and
        // a costly one: such worlds simulate many times the events). Its jitter the
        // default tenth, none, or anything up to twice the age.
        if rng.one_in(3) {
            let age = if rng.one_in(8) {
                rng.log_millis(5, 500)
            } else {
                rng.log_millis(1_000, 120_000)
            };
            builder.max_worker_age(Some(age));
            match rng.below(3) {
                0 => {}
                1 => {
                    builder.max_worker_age_jitter(Duration::ZERO);
                }
                _ => {
                    builder.max_worker_age_jitter(rng.duration_upto(age * 2));
                }
            }
        }
        builder.seed(rng.u64());
        // The upgrade of the master: drawn after recycling.
        let upgrades = rng.one_in(2);
        builder.upgrades(upgrades);
        let config = builder
            .build()
            .expect("the generator only builds valid configs");
        faults.recycle = if rng.one_in(2) {
            0
        } else {
            rng.range(5, 600) as u32
        };
        if upgrades {
            faults.successor_fail = if rng.one_in(4) {
                0
            } else {
                rng.range(100, 1000) as u32
            };
            faults.successor_ignores_term = if rng.one_in(2) {
                0
            } else {
                rng.range(100, 1000) as u32
            };
        }
        Self {
            config,
            faults,
            plan,
        }
    }
}

fn generate_config<E: Entropy>(rng: &mut Rng<E>) -> ConfigBuilder {
    let mut b = Config::builder();
    let workers = match rng.below(40) {
        0 => 0,
        1 => rng.range_usize(17, MAX_SIM_WORKERS),
        2..=7 => rng.range_usize(5, 16),
        _ => rng.range_usize(1, 4),
    };
    b.workers(workers).name("sim");
    b.force_exit_timeout(rng.log_millis(10, 10_000));
    let boot_timeout = rng.log_millis(20, 60_000);
    b.boot_timeout(boot_timeout);
    b.readiness(match rng.below(10) {
        0..=5 => Readiness::Notify,
        6 | 7 => Readiness::Spawned,
        _ => Readiness::Delay(rng.log_millis(1, boot_timeout.as_millis() as u64 - 1)),
    });
    let initial = rng.log_millis(1, 500);
    let factor = match rng.below(6) {
        0 => 1.0,
        1 => 1.5,
        2 => 2.0,
        3 => 100.0,
        _ => 1.0 + rng.range(1, 40) as f64 / 10.0,
    };
    b.backoff(Backoff {
        initial,
        factor,
        max: initial + rng.log_millis(0, 20_000),
    });
    b.min_uptime(rng.log_millis(1, 10_000));
    b.crash_budget(CrashBudget {
        failures: rng.range(1, 12) as u32,
        window: rng.log_millis(10, 30_000),
    });
    b.hang(HangPolicy {
        // Not far below the boot timeout: a 100 ms hang check in a world whose boot
        // takes a minute means a heartbeat storm, not an interesting fault.
        timeout: (!rng.one_in(3)).then(|| {
            let floor = (boot_timeout.as_millis() as u64 / 64).max(40);
            rng.log_millis(floor, floor.max(30_000))
        }),
        signal: rng.pick(&[
            None,
            Some(Signal::Abrt),
            Some(Signal::Abrt),
            Some(Signal::Quit),
            Some(Signal::Usr1),
            Some(Signal::Term),
        ]),
        grace: rng.log_millis(1, 5_000),
    });
    b.rollout_batch(if rng.one_in(8) {
        rng.range_usize(4, 80)
    } else {
        rng.range_usize(1, 3)
    });
    b.service_watchdog(rng.one_in(4).then(|| rng.log_millis(5, 10_000)));
    b
}

fn generate_faults<E: Entropy>(rng: &mut Rng<E>, config: &Config) -> Faults {
    // Each knob: off half the time; when on, its own rate.
    fn knob<E: Entropy>(rng: &mut Rng<E>, lo: u32, hi: u32) -> u32 {
        if rng.one_in(2) {
            0
        } else {
            rng.range(u64::from(lo), u64::from(hi)) as u32
        }
    }
    fn gap<E: Entropy>(rng: &mut Rng<E>, lo: u64, hi: u64) -> Option<Duration> {
        (!rng.one_in(2)).then(|| rng.log_millis(lo, hi))
    }
    let boot_timeout = config.boot_timeout();
    let fast_boot = Duration::from_millis(50).min(boot_timeout / 2);
    let boot_time = if rng.one_in(2) {
        fast_boot
    } else {
        // Boot time spread: up to one and a half boot timeouts (slow boots time out).
        rng.duration_upto(boot_timeout + boot_timeout / 2)
    };
    let heartbeat_interval = match config.hang().timeout {
        // Healthy workers beat at least three times per timeout.
        Some(timeout) => timeout / 4,
        None => {
            let floor = (boot_timeout.as_millis() as u64 / 256).max(5);
            rng.log_millis(floor, floor.max(5_000))
        }
    };
    Faults {
        spawn_latency: Duration::from_millis(rng.range(0, 20)),
        kill_latency: Duration::from_millis(rng.range(1, 50)),
        boot_time,
        healthy_boot_time: boot_time.min(boot_timeout / 2),
        spawn_fail: knob(rng, 5, 600),
        // Drawn at the end of `World::generate`.
        resource_fail: 0,
        exec_fail: 0,
        cancel_stopped: false,
        boot_crash: knob(rng, 5, 600),
        run_crash: knob(rng, 5, 800),
        run_crash_window: rng.log_millis(1, 60_000),
        never_ready: knob(rng, 5, 300),
        heartbeat: knob(rng, 200, 1000),
        heartbeat_interval,
        hang: knob(rng, 5, 400),
        ignore_term: knob(rng, 5, 500),
        exit_delay: if rng.one_in(2) {
            Duration::from_millis(rng.range(0, 5))
        } else {
            rng.log_millis(1, 2 * config.force_exit_timeout().as_millis() as u64)
        },
        abrt_kills: rng.range(0, 1000) as u32,
        announce: knob(rng, 5, 300),
        pid_reuse: rng.one_in(2),
        storms: gap(rng, 5, 20_000),
        commands: gap(rng, 5, 20_000),
        stale_reports: gap(rng, 5, 5_000),
        // Drawn at the end of `World::generate`.
        recycle: 0,
        successor_fail: 0,
        successor_ignores_term: 0,
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let b = c.backoff();
        writeln!(
            f,
            "config: workers={} readiness={:?} boot_timeout={:?} force_exit={:?} batch={} \
             forward={} upgrades={}",
            c.workers(),
            c.readiness(),
            c.boot_timeout(),
            c.force_exit_timeout(),
            c.rollout_batch(),
            c.forward_signals(),
            c.upgrades()
        )?;
        writeln!(
            f,
            "        backoff={:?}×{}≤{:?} min_uptime={:?} budget={}/{:?} hang={:?} watchdog={:?} \
             max_age={:?}+{:?}",
            b.initial,
            b.factor,
            b.max,
            c.min_uptime(),
            c.crash_budget().failures,
            c.crash_budget().window,
            c.hang(),
            c.service_watchdog(),
            c.max_worker_age(),
            c.max_worker_age_jitter()
        )?;
        writeln!(f, "faults: {:?}", self.faults)?;
        write!(f, "plan:   {:?}", self.plan)
    }
}
