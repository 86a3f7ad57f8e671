//! Cluster configuration: built and validated once, before anything runs.
//!
//! A [`Config`] can only be obtained from [`ConfigBuilder::build`], so a running
//! [`ClusterState`](crate::ClusterState) never has to second-guess its settings: every
//! duration is positive and small enough that `now + duration` cannot overflow, every
//! count is in range, and the readiness delay fits inside the boot timeout.

use std::fmt;
use std::time::Duration;

use crate::Signal;

/// The largest worker count a cluster accepts (from the start or by scaling).
pub const MAX_WORKERS: usize = 4096;

/// The longest duration any setting accepts: 30 days. Bounding durations keeps
/// `Instant + Duration` arithmetic in the core free of overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// When a freshly spawned worker counts as ready (able to serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Readiness {
    /// Ready when the worker says so (`READY=1` over sd_notify, or `ready()` in library
    /// mode). The default: only the worker knows when it is really serving.
    Notify,
    /// Ready as soon as the process exists (its `exec` succeeded).
    Spawned,
    /// Ready once the process has stayed alive this long after spawning (Einhorn's timer
    /// ACK). A `READY=1` before the delay makes it ready sooner.
    Delay(Duration),
}

/// Respawn backoff for workers that die young.
///
/// A worker dies *young* when it fails before it is ready (a boot failure) or while it is
/// in probation: ready for less than [`Config::min_uptime`]. A worker that had been ready
/// for at least the minimum uptime is replaced at once and resets its slot's count.
///
/// After a boot failure the slot waits `initial × factor^(n-1)` (capped at `max`) before
/// its refill, `n` counting the slot's young deaths since its last worker passed
/// probation. After a death in probation (the program did become ready) the slot waits
/// only `initial`, as long as its refills come no faster than one per
/// [`QUICK_REFILL_INTERVAL`] on average (bursts of [`QUICK_REFILL_BURST`]); a slot whose
/// workers die faster than that waits the full `initial × factor^(n-1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first refill after a young failure. Default 100 ms.
    pub initial: Duration,
    /// Growth factor per consecutive young failure. Default 1.5.
    pub factor: f64,
    /// Upper bound on the delay. Default 15 s.
    pub max: Duration,
}

/// A slot whose workers die in probation is refilled after [`Backoff::initial`] as long
/// as its refills average no more than one per this interval (2 per second); faster,
/// the full exponential backoff applies. Chosen above the rate a worker can die at when
/// it is killed every 0.5 s in a two-worker cluster (one death per slot per second on
/// average, two at most), so that such a cluster always has a worker ready, and low
/// enough to bound the fork rate of a program that dies right after it is ready.
pub const QUICK_REFILL_INTERVAL: Duration = Duration::from_millis(500);

/// How many quick refills a slot may have in a row before [`QUICK_REFILL_INTERVAL`]
/// applies.
pub const QUICK_REFILL_BURST: u32 = 3;

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 1.5,
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The delay before the refill that follows `consecutive_failures` young failures in a
    /// row (`0` means no delay).
    #[must_use]
    pub fn delay(&self, consecutive_failures: u32) -> Duration {
        if consecutive_failures == 0 {
            return Duration::ZERO;
        }
        let exponent = (consecutive_failures - 1).min(1024) as i32;
        let nanos = self.initial.as_nanos() as f64 * self.factor.powi(exponent);
        if !nanos.is_finite() || nanos >= self.max.as_nanos() as f64 {
            self.max
        } else {
            Duration::from_nanos(nanos.round() as u64)
        }
    }
}

/// The crash breaker: when the cluster cannot serve at all, stop it with exit code 3 so
/// the service manager sees the failure instead of a silent fork loop. It protects, it
/// never attacks: while any worker is ready it never trips, and failing slots only wait
/// in their backoff (the cluster reports itself degraded).
///
/// A *failure* is a boot failure (a spawn failure of the program's making, an exit or
/// announced stop before ready, a boot timeout) or a death in probation (an exit, an
/// announced stop or a hang within [`Config::min_uptime`] of ready). The breaker starts
/// counting at the first failure while no worker has passed probation, and stops
/// counting (resets) when one does. It trips when no worker is ready, at least `window`
/// has passed since that first failure, and at least `max(failures, target worker
/// count)` failures were counted. A spawn the master itself could not carry out
/// ([`SpawnErrorKind::Resource`](crate::SpawnErrorKind::Resource)) never counts, nor do
/// the workers of a rolling restart (their failure fails the rollout instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashBudget {
    /// Failures needed (at least the worker count). Default 5.
    pub failures: u32,
    /// How long the cluster must have been failing, with no worker ready at the end of
    /// it. Default 10 s.
    pub window: Duration,
}

impl Default for CrashBudget {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(10),
        }
    }
}

/// What to do with a worker whose heartbeats stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HangPolicy {
    /// A worker that has sent at least one heartbeat (`WATCHDOG=1`) and then stays silent
    /// this long is hung. `None` disables hang detection. Default 30 s.
    pub timeout: Option<Duration>,
    /// Sent to a hung worker first so it can dump its state (a backtrace, say). `None`
    /// kills at once. Default `SIGABRT`, as Gunicorn does.
    pub signal: Option<Signal>,
    /// How long after the diagnostic signal the worker is SIGKILLed. Default 2 s.
    pub grace: Duration,
}

impl Default for HangPolicy {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(30)),
            signal: Some(Signal::Abrt),
            grace: Duration::from_secs(2),
        }
    }
}

/// The set of signals the master forwards to every worker: a subset of {`SIGUSR1`,
/// `SIGUSR2`}. A forwardable signal outside the set is ignored (and reported).
///
/// The default is both, as in library mode (where the application handles them); the
/// `clutch` command forwards none unless asked (`--forward-signals USR1,USR2`), since a
/// program that does not handle them would die of them.
///
/// ```
/// use clutch_proto::{ForwardSignals, Signal};
/// let set: ForwardSignals = "usr1".parse().unwrap();
/// assert!(set.contains(Signal::Usr1) && !set.contains(Signal::Usr2));
/// assert_eq!(ForwardSignals::default(), ForwardSignals::ALL);
/// assert_eq!("SIGUSR2,USR1".parse::<ForwardSignals>().unwrap(), ForwardSignals::ALL);
/// assert!("TERM".parse::<ForwardSignals>().is_err());
/// assert_eq!(ForwardSignals::ALL.to_string(), "USR1,USR2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardSignals {
    usr1: bool,
    usr2: bool,
}

impl ForwardSignals {
    /// Forward nothing.
    pub const NONE: Self = Self {
        usr1: false,
        usr2: false,
    };
    /// Forward `SIGUSR1` and `SIGUSR2` (the default).
    pub const ALL: Self = Self {
        usr1: true,
        usr2: true,
    };

    /// The signals that can be forwarded at all.
    pub const FORWARDABLE: [Signal; 2] = [Signal::Usr1, Signal::Usr2];

    /// True if `signal` is forwarded.
    #[must_use]
    pub fn contains(self, signal: Signal) -> bool {
        match signal {
            Signal::Usr1 => self.usr1,
            Signal::Usr2 => self.usr2,
            _ => false,
        }
    }

    /// This set plus `signal`; `None` if `signal` cannot be forwarded (only `SIGUSR1`
    /// and `SIGUSR2` can).
    #[must_use]
    pub fn with(self, signal: Signal) -> Option<Self> {
        match signal {
            Signal::Usr1 => Some(Self { usr1: true, ..self }),
            Signal::Usr2 => Some(Self { usr2: true, ..self }),
            _ => None,
        }
    }

    /// True when nothing is forwarded.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self == Self::NONE
    }

    /// The forwarded signals, `SIGUSR1` first.
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Self::FORWARDABLE
            .into_iter()
            .filter(move |&signal| self.contains(signal))
    }
}

impl Default for ForwardSignals {
    fn default() -> Self {
        Self::ALL
    }
}

impl std::str::FromStr for ForwardSignals {
    type Err = ConfigError;

    /// Parses a comma-separated list such as `USR1,USR2` (`SIGUSR1`, `usr1` alike);
    /// an empty list or `none` is the empty set.
    fn from_str(list: &str) -> Result<Self, ConfigError> {
        let list = list.trim();
        if list.is_empty() || list.eq_ignore_ascii_case("none") {
            return Ok(Self::NONE);
        }
        list.split(',').try_fold(Self::NONE, |set, name| {
            let name = name.trim();
            Signal::from_name(name)
                .and_then(|signal| set.with(signal))
                .ok_or_else(|| ConfigError::NotForwardable(name.to_owned()))
        })
    }
}

impl fmt::Display for ForwardSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, signal) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let name = signal.name();
            f.write_str(name.strip_prefix("SIG").unwrap_or(name))?;
        }
        Ok(())
    }
}

/// A validated cluster configuration. Build one with [`Config::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    workers: usize,
    force_exit_timeout: Duration,
    readiness: Readiness,
    boot_timeout: Duration,
    backoff: Backoff,
    crash_budget: CrashBudget,
    hang: HangPolicy,
    rollout_batch: usize,
    min_uptime: Duration,
    name: String,
    title: bool,
    service_watchdog: Option<Duration>,
    forward_signals: ForwardSignals,
    max_worker_age: Option<Duration>,
    max_worker_age_jitter: Duration,
    seed: u64,
    upgrades: bool,
    successor: bool,
}

impl Config {
    /// Starts a builder with every default.
    #[must_use]
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Workers to run. `0` means no cluster: the application runs in the master process.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.workers
    }
    /// True when `workers == 0`: no cluster, the application runs in-process.
    #[must_use]
    pub fn is_in_process(&self) -> bool {
        self.workers == 0
    }
    /// Bound on a graceful stop: the whole shutdown, and each single worker's stop.
    #[must_use]
    pub fn force_exit_timeout(&self) -> Duration {
        self.force_exit_timeout
    }
    /// When a worker counts as ready.
    #[must_use]
    pub fn readiness(&self) -> Readiness {
        self.readiness
    }
    /// How long a worker may take to become ready.
    #[must_use]
    pub fn boot_timeout(&self) -> Duration {
        self.boot_timeout
    }
    /// Respawn backoff.
    #[must_use]
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The crash breaker's budget.
    #[must_use]
    pub fn crash_budget(&self) -> &CrashBudget {
        &self.crash_budget
    }
    /// Hung-worker handling.
    #[must_use]
    pub fn hang(&self) -> &HangPolicy {
        &self.hang
    }
    /// Workers replaced at once during a rolling restart (the surge above the target).
    #[must_use]
    pub fn rollout_batch(&self) -> usize {
        self.rollout_batch
    }
    /// How long a worker must stay up after it is ready (its probation) to count as
    /// proven: a rolling restart moves on only when a new worker has passed it, a death
    /// within it is a young death (backoff, and a failure for the breaker), and a proven
    /// worker that dies is replaced at once.
    #[must_use]
    pub fn min_uptime(&self) -> Duration {
        self.min_uptime
    }
    /// The label in process titles (`<name>: master process`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the driver sets process titles.
    #[must_use]
    pub fn title(&self) -> bool {
        self.title
    }
    /// How often to tell the service manager `WATCHDOG=1` (usually half its
    /// `WATCHDOG_USEC`); `None` when the service manager wants no pings.
    #[must_use]
    pub fn service_watchdog(&self) -> Option<Duration> {
        self.service_watchdog
    }
    /// The signals the master forwards to every worker (the rest of `SIGUSR1`/`SIGUSR2`
    /// is ignored and reported).
    #[must_use]
    pub fn forward_signals(&self) -> ForwardSignals {
        self.forward_signals
    }
    /// How long a worker serves before it is recycled (replaced the way a rolling
    /// restart replaces it: successor first), counted from its start; `None` (the
    /// default): no age limit. Each worker's limit is this plus its own draw from
    /// `0..=`[`max_worker_age_jitter`](Self::max_worker_age_jitter).
    #[must_use]
    pub fn max_worker_age(&self) -> Option<Duration> {
        self.max_worker_age
    }
    /// The most a worker's age limit is lengthened by, drawn uniformly per worker so
    /// that workers started together are not recycled together (Gunicorn's
    /// `max_requests_jitter`). Default: a tenth of [`max_worker_age`](Self::max_worker_age)
    /// (zero without an age limit).
    #[must_use]
    pub fn max_worker_age_jitter(&self) -> Duration {
        self.max_worker_age_jitter
    }
    /// The seed of the core's own pseudo-random numbers (only the age jitter draws
    /// them). The core reads no randomness: the driver fills this from the OS, the
    /// simulator from its seed, so a run is a pure function of its config and inputs.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the driver can start a successor master (the upgrade of the master
    /// itself): then `SIGUSR2`, when it is not forwarded, and [`Input::Upgrade`] start
    /// one. Default false (a driver that cannot fork a successor says nothing).
    ///
    /// [`Input::Upgrade`]: crate::Input::Upgrade
    #[must_use]
    pub fn upgrades(&self) -> bool {
        self.upgrades
    }
    /// Whether this master is a successor started by an upgrade: it then tells the
    /// master that started it [`Notice::Serving`](crate::Notice::Serving) once every
    /// slot's worker is proven, and leaves the first `READY=1` to the service manager to
    /// that master (which sends it with `MAINPID=`). Default false.
    #[must_use]
    pub fn successor(&self) -> bool {
        self.successor
    }
    /// How long a successor master may take to say it serves: its workers' boot
    /// timeout and probation, and [`UPGRADE_ALLOWANCE`] for its own start.
    #[must_use]
    pub fn upgrade_timeout(&self) -> Duration {
        self.boot_timeout + self.min_uptime + UPGRADE_ALLOWANCE
    }
}

/// What a successor master may take to start (exec, adopt the sockets, fork its workers)
/// on top of its workers' boot timeout and probation: see [`Config::upgrade_timeout`].
pub const UPGRADE_ALLOWANCE: Duration = Duration::from_secs(5);

/// Builds a [`Config`]; every setting has a default, [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    workers: Option<usize>,
    cpus: usize,
    force_exit_timeout: Duration,
    readiness: Readiness,
    boot_timeout: Duration,
    backoff: Backoff,
    crash_budget: CrashBudget,
    hang: HangPolicy,
    rollout_batch: usize,
    min_uptime: Duration,
    name: String,
    title: bool,
    service_watchdog: Option<Duration>,
    forward_signals: ForwardSignals,
    max_worker_age: Option<Duration>,
    max_worker_age_jitter: Option<Duration>,
    seed: u64,
    upgrades: bool,
    successor: bool,
}

/// The default [`Config::min_uptime`]: 2 s.
pub const DEFAULT_MIN_UPTIME: Duration = Duration::from_secs(2);

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self {
            workers: None,
            cpus: 1,
            force_exit_timeout: Duration::from_millis(7500),
            readiness: Readiness::Notify,
            boot_timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
            crash_budget: CrashBudget::default(),
            hang: HangPolicy::default(),
            rollout_batch: 1,
            min_uptime: DEFAULT_MIN_UPTIME,
            name: "server".to_owned(),
            title: true,
            service_watchdog: None,
            forward_signals: ForwardSignals::ALL,
            max_worker_age: None,
            max_worker_age_jitter: None,
            seed: 0,
            upgrades: false,
            successor: false,
        }
    }
}

impl ConfigBuilder {
    /// The number of CPUs, as the driver sees it: the worker count when
    /// [`workers`](Self::workers) is not set. The core cannot ask the OS itself.
    pub fn cpus(&mut self, cpus: usize) -> &mut Self {
        self.cpus = cpus.max(1);
        self
    }
    /// Workers to run (default: [`cpus`](Self::cpus)); `0` = no cluster.
    pub fn workers(&mut self, workers: usize) -> &mut Self {
        self.workers = Some(workers);
        self
    }
    /// Bound on a graceful stop (default 7500 ms, as gs-clutch).
    pub fn force_exit_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.force_exit_timeout = timeout;
        self
    }
    /// When a worker counts as ready (default [`Readiness::Notify`]).
    pub fn readiness(&mut self, readiness: Readiness) -> &mut Self {
        self.readiness = readiness;
        self
    }
    /// How long a worker may take to become ready (default 60 s).
    pub fn boot_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.boot_timeout = timeout;
        self
    }
    /// Respawn backoff (default 100 ms × 1.5ⁿ, capped at 15 s).
    pub fn backoff(&mut self, backoff: Backoff) -> &mut Self {
        self.backoff = backoff;
        self
    }
    /// The crash breaker (default: 5 failures and 10 s with no worker ready).
    pub fn crash_budget(&mut self, budget: CrashBudget) -> &mut Self {
        self.crash_budget = budget;
        self
    }
    /// Hung-worker handling (default: 30 s silence, SIGABRT, SIGKILL 2 s later).
    pub fn hang(&mut self, hang: HangPolicy) -> &mut Self {
        self.hang = hang;
        self
    }
    /// Workers replaced at once in a rolling restart (default 1).
    pub fn rollout_batch(&mut self, batch: usize) -> &mut Self {
        self.rollout_batch = batch;
        self
    }
    /// The probation after ready (default 2 s): see [`Config::min_uptime`].
    pub fn min_uptime(&mut self, min_uptime: Duration) -> &mut Self {
        self.min_uptime = min_uptime;
        self
    }
    /// The process-title label (default `server`).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }
    /// Whether to set process titles (default true).
    pub fn title(&mut self, title: bool) -> &mut Self {
        self.title = title;
        self
    }
    /// Ping interval for the service manager's watchdog (default none).
    pub fn service_watchdog(&mut self, interval: Option<Duration>) -> &mut Self {
        self.service_watchdog = interval;
        self
    }
    /// The signals forwarded to every worker (default [`ForwardSignals::ALL`]: `SIGUSR1`
    /// and `SIGUSR2`; the `clutch` command's default is [`ForwardSignals::NONE`]).
    pub fn forward_signals(&mut self, signals: ForwardSignals) -> &mut Self {
        self.forward_signals = signals;
        self
    }
    /// Whether the driver can start a successor master ([`Config::upgrades`]; default
    /// false).
    pub fn upgrades(&mut self, upgrades: bool) -> &mut Self {
        self.upgrades = upgrades;
        self
    }
    /// Whether this master is an upgrade's successor ([`Config::successor`]; default
    /// false).
    pub fn successor(&mut self, successor: bool) -> &mut Self {
        self.successor = successor;
        self
    }

    /// Recycle every worker after it has run this long (default: never); see
    /// [`Config::max_worker_age`].
    pub fn max_worker_age(&mut self, age: Option<Duration>) -> &mut Self {
        self.max_worker_age = age;
        self
    }
    /// The most each worker's age limit is lengthened by (default: a tenth of the age);
    /// see [`Config::max_worker_age_jitter`]. Zero turns the jitter off.
    pub fn max_worker_age_jitter(&mut self, jitter: Duration) -> &mut Self {
        self.max_worker_age_jitter = Some(jitter);
        self
    }
    /// The seed of the core's pseudo-random numbers (default 0); see [`Config::seed`].
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Validates every setting and returns the configuration, or the first problem found.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let workers = self.workers.unwrap_or(self.cpus);
        if workers > MAX_WORKERS {
            return Err(ConfigError::TooManyWorkers {
                workers,
                max: MAX_WORKERS,
            });
        }
        check_duration("force_exit_timeout", self.force_exit_timeout)?;
        check_duration("boot_timeout", self.boot_timeout)?;
        if let Readiness::Delay(delay) = self.readiness {
            check_duration("readiness delay", delay)?;
            if delay >= self.boot_timeout {
                return Err(ConfigError::ReadyDelayNotBeforeBootTimeout {
                    delay,
                    boot_timeout: self.boot_timeout,
                });
            }
        }
        let b = &self.backoff;
        check_duration("backoff.initial", b.initial)?;
        check_duration("backoff.max", b.max)?;
        if !(b.factor.is_finite() && (1.0..=100.0).contains(&b.factor)) {
            return Err(ConfigError::BadBackoffFactor(b.factor));
        }
        if b.max < b.initial {
            return Err(ConfigError::BackoffMaxBelowInitial {
                initial: b.initial,
                max: b.max,
            });
        }
        if self.crash_budget.failures == 0 {
            return Err(ConfigError::ZeroCrashBudget);
        }
        check_duration("crash_budget.window", self.crash_budget.window)?;
        if let Some(timeout) = self.hang.timeout {
            check_duration("hang.timeout", timeout)?;
        }
        check_duration("hang.grace", self.hang.grace)?;
        if matches!(self.hang.signal, Some(Signal::Kill)) {
            return Err(ConfigError::HangSignalIsKill);
        }
        check_duration("min_uptime", self.min_uptime)?;
        if self.rollout_batch == 0 || self.rollout_batch > MAX_WORKERS {
            return Err(ConfigError::BadRolloutBatch(self.rollout_batch));
        }
        if self.name.is_empty() || self.name.len() > 64 || self.name.chars().any(char::is_control) {
            return Err(ConfigError::BadName(self.name.clone()));
        }
        if let Some(interval) = self.service_watchdog {
            check_duration("service_watchdog", interval)?;
        }
        if let Some(age) = self.max_worker_age {
            check_duration("max_worker_age", age)?;
        }
        let max_worker_age_jitter = match (self.max_worker_age, self.max_worker_age_jitter) {
            (_, Some(jitter)) if jitter > MAX_DURATION => {
                return Err(ConfigError::DurationTooLong {
                    setting: "max_worker_age_jitter",
                    value: jitter,
                });
            }
            (Some(_), Some(jitter)) => jitter,
            (Some(age), None) => age / 10,
            (None, _) => Duration::ZERO,
        };
        Ok(Config {
            workers,
            force_exit_timeout: self.force_exit_timeout,
            readiness: self.readiness,
            boot_timeout: self.boot_timeout,
            backoff: self.backoff,
            crash_budget: self.crash_budget,
            hang: self.hang,
            rollout_batch: self.rollout_batch,
            min_uptime: self.min_uptime,
            name: self.name.clone(),
            title: self.title,
            service_watchdog: self.service_watchdog,
            forward_signals: self.forward_signals,
            max_worker_age: self.max_worker_age,
            max_worker_age_jitter,
            seed: self.seed,
            upgrades: self.upgrades,
            successor: self.successor,
        })
    }
}

fn check_duration(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::ZeroDuration(setting))
    } else if value > MAX_DURATION {
        Err(ConfigError::DurationTooLong { setting, value })
    } else {
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// More workers than [`MAX_WORKERS`].
    TooManyWorkers {
        /// What was asked for.
        workers: usize,
        /// The limit.
        max: usize,
    },
    /// A duration that must be positive was zero.
    ZeroDuration(&'static str),
    /// A duration above [`MAX_DURATION`].
    DurationTooLong {
        /// The setting's name.
        setting: &'static str,
        /// What was asked for.
        value: Duration,
    },
    /// `Readiness::Delay` must end before the boot timeout, or no worker could ever boot.
    ReadyDelayNotBeforeBootTimeout {
        /// The readiness delay.
        delay: Duration,
        /// The boot timeout.
        boot_timeout: Duration,
    },
    /// The backoff factor must be a number from 1 to 100.
    BadBackoffFactor(f64),
    /// The backoff cap is below its first step.
    BackoffMaxBelowInitial {
        /// First delay.
        initial: Duration,
        /// Cap.
        max: Duration,
    },
    /// A crash budget of zero failures would trip on the first one.
    ZeroCrashBudget,
    /// The diagnostic signal for hung workers may not be SIGKILL (no diagnosis possible);
    /// use `signal: None` to kill at once.
    HangSignalIsKill,
    /// The rolling-restart batch must be from 1 to [`MAX_WORKERS`].
    BadRolloutBatch(usize),
    /// The title name must be 1 to 64 bytes of printable characters (UTF-8).
    BadName(String),
    /// Only `USR1` and `USR2` can be forwarded to workers (from parsing a
    /// [`ForwardSignals`] list).
    NotForwardable(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyWorkers { workers, max } => {
                write!(f, "workers: {workers} is more than the maximum of {max}")
            }
            Self::ZeroDuration(setting) => write!(f, "{setting}: must be greater than zero"),
            Self::DurationTooLong { setting, value } => {
                write!(
                    f,
                    "{setting}: {value:?} is longer than the maximum of 30 days"
                )
            }
            Self::ReadyDelayNotBeforeBootTimeout {
                delay,
                boot_timeout,
            } => write!(
                f,
                "readiness delay {delay:?} must be shorter than the boot timeout {boot_timeout:?}"
            ),
            Self::BadBackoffFactor(factor) => {
                write!(f, "backoff factor: {factor} is not a number from 1 to 100")
            }
            Self::BackoffMaxBelowInitial { initial, max } => {
                write!(
                    f,
                    "backoff: the cap {max:?} is below the initial delay {initial:?}"
                )
            }
            Self::ZeroCrashBudget => write!(f, "crash budget: must allow at least one failure"),
            Self::HangSignalIsKill => write!(
                f,
                "hang signal: SIGKILL leaves nothing to diagnose; use no signal to kill at once"
            ),
            Self::BadRolloutBatch(batch) => {
                write!(f, "rollout batch: {batch} is not from 1 to {MAX_WORKERS}")
            }
            Self::BadName(name) => {
                write!(
                    f,
                    "name: {name:?} must be 1 to 64 bytes of printable characters"
                )
            }
            Self::NotForwardable(name) => {
                write!(
                    f,
                    "forward signals: {name:?} cannot be forwarded (only USR1 and USR2)"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_gs_clutch_and_peers() {
        let config = Config::builder().cpus(8).build().unwrap();
        assert_eq!(config.workers(), 8);
        assert_eq!(config.force_exit_timeout(), Duration::from_millis(7500));
        assert_eq!(config.name(), "server");
        assert!(config.title());
        assert_eq!(config.readiness(), Readiness::Notify);
        assert_eq!(config.rollout_batch(), 1);
        assert_eq!(config.min_uptime(), Duration::from_secs(2));
        assert_eq!(config.forward_signals(), ForwardSignals::ALL);
        assert!(!config.is_in_process());
    }

    #[test]
    fn forward_signals_parse_display_and_refuse_the_rest() {
        let none: ForwardSignals = "".parse().unwrap();
        assert!(none.is_empty());
        assert_eq!(
            "none".parse::<ForwardSignals>().unwrap(),
            ForwardSignals::NONE
        );
        let usr2: ForwardSignals = " sigusr2 ".parse().unwrap();
        assert_eq!(usr2.iter().collect::<Vec<_>>(), vec![Signal::Usr2]);
        assert_eq!(usr2.to_string(), "USR2");
        assert_eq!(ForwardSignals::NONE.to_string(), "none");
        assert_eq!(
            "USR1,USR2".parse::<ForwardSignals>().unwrap(),
            ForwardSignals::ALL
        );
        for bad in ["TERM", "USR1,HUP", "USR1,", "usr3"] {
            let err = bad.parse::<ForwardSignals>().expect_err(bad);
            assert!(err.to_string().contains("only USR1 and USR2"), "{err}");
        }
        assert_eq!(ForwardSignals::NONE.with(Signal::Term), None);
        let config = Config::builder()
            .forward_signals(ForwardSignals::NONE)
            .build()
            .unwrap();
        assert!(config.forward_signals().is_empty());
    }

    #[test]
    fn the_age_jitter_defaults_to_a_tenth_of_the_age_and_is_bounded() {
        let config = Config::builder().build().unwrap();
        assert_eq!(config.max_worker_age(), None, "no age limit by default");
        assert_eq!(config.max_worker_age_jitter(), Duration::ZERO);
        assert_eq!(config.seed(), 0);
        let age = Some(Duration::from_secs(100));
        let config = Config::builder()
            .max_worker_age(age)
            .seed(7)
            .build()
            .unwrap();
        assert_eq!(config.max_worker_age(), age);
        assert_eq!(config.max_worker_age_jitter(), Duration::from_secs(10));
        assert_eq!(config.seed(), 7);
        let config = Config::builder()
            .max_worker_age(age)
            .max_worker_age_jitter(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(config.max_worker_age_jitter(), Duration::ZERO, "off");
        let config = Config::builder()
            .max_worker_age_jitter(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(
            config.max_worker_age_jitter(),
            Duration::ZERO,
            "no jitter without an age"
        );
        let config = Config::builder()
            .max_worker_age(age)
            .max_worker_age_jitter(MAX_DURATION)
            .build()
            .unwrap();
        assert_eq!(config.max_worker_age_jitter(), MAX_DURATION, "the edge");
        for bad in [
            Config::builder()
                .max_worker_age(Some(Duration::ZERO))
                .clone(),
            Config::builder()
                .max_worker_age(Some(MAX_DURATION * 2))
                .clone(),
            Config::builder()
                .max_worker_age(age)
                .max_worker_age_jitter(MAX_DURATION + Duration::from_nanos(1))
                .clone(),
            Config::builder()
                .max_worker_age_jitter(MAX_DURATION * 2)
                .clone(),
        ] {
            let err = bad.build().expect_err("refused");
            assert!(err.to_string().contains("max_worker_age"), "{err}");
        }
    }

    #[test]
    fn zero_workers_means_in_process() {
        let config = Config::builder().cpus(8).workers(0).build().unwrap();
        assert!(config.is_in_process());
    }

    #[test]
    fn rejects_invalid_values_with_clear_messages() {
        let cases: Vec<(ConfigBuilder, &str)> = vec![
            (
                Config::builder().workers(MAX_WORKERS + 1).clone(),
                "more than the maximum",
            ),
            (
                Config::builder().force_exit_timeout(Duration::ZERO).clone(),
                "force_exit_timeout",
            ),
            (
                Config::builder().boot_timeout(MAX_DURATION * 2).clone(),
                "boot_timeout",
            ),
            (
                Config::builder()
                    .readiness(Readiness::Delay(Duration::from_secs(90)))
                    .clone(),
                "shorter than the boot timeout",
            ),
            (
                Config::builder()
                    .backoff(Backoff {
                        factor: 0.5,
                        ..Backoff::default()
                    })
                    .clone(),
                "backoff factor",
            ),
            (
                Config::builder()
                    .backoff(Backoff {
                        factor: f64::NAN,
                        ..Backoff::default()
                    })
                    .clone(),
                "backoff factor",
            ),
            (
                Config::builder()
                    .backoff(Backoff {
                        max: Duration::from_millis(1),
                        ..Backoff::default()
                    })
                    .clone(),
                "cap",
            ),
            (
                Config::builder()
                    .crash_budget(CrashBudget {
                        failures: 0,
                        ..CrashBudget::default()
                    })
                    .clone(),
                "crash budget",
            ),
            (
                Config::builder()
                    .hang(HangPolicy {
                        signal: Some(Signal::Kill),
                        ..HangPolicy::default()
                    })
                    .clone(),
                "SIGKILL",
            ),
            (Config::builder().rollout_batch(0).clone(), "rollout batch"),
            (
                Config::builder().min_uptime(Duration::ZERO).clone(),
                "min_uptime",
            ),
            (Config::builder().name("").clone(), "name"),
            (Config::builder().name("a\nb").clone(), "name"),
        ];
        for (builder, needle) in cases {
            let err = builder.build().expect_err(needle);
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn every_limit_is_inclusive() {
        let valid = |builder: &mut ConfigBuilder| builder.build().is_ok();
        assert!(
            Config::builder().build().unwrap().title(),
            "titles by default"
        );
        assert!(!Config::builder().title(false).build().unwrap().title());
        assert!(valid(Config::builder().workers(MAX_WORKERS)));
        assert!(!valid(Config::builder().workers(MAX_WORKERS + 1)));
        assert!(valid(Config::builder().rollout_batch(1)));
        assert!(valid(Config::builder().rollout_batch(MAX_WORKERS)));
        assert!(!valid(Config::builder().rollout_batch(MAX_WORKERS + 1)));
        assert!(valid(Config::builder().name("n".repeat(64))));
        assert!(!valid(Config::builder().name("n".repeat(65))));
        assert!(valid(Config::builder().boot_timeout(MAX_DURATION)));
        let thirty_days = Duration::from_secs(30 * 86_400);
        // Thirty days, as the error message says.
        assert!(valid(Config::builder().boot_timeout(thirty_days)));
        assert!(!valid(
            Config::builder().boot_timeout(thirty_days + Duration::from_secs(1))
        ));
        assert!(!valid(
            Config::builder().boot_timeout(MAX_DURATION + Duration::from_nanos(1))
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::ZERO);
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(150));
        assert_eq!(b.delay(3), Duration::from_millis(225));
        assert_eq!(b.delay(40), Duration::from_secs(15));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(15));
    }
}
