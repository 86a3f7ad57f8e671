//! Library mode: one binary is both master and worker. The master re-executes itself
//! for its workers (as Node's cluster does); [`ClusterBuilder::start`] tells each process
//! which role it plays.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clutch_proto::{
    Backoff, Config, ConfigBuilder, CrashBudget, Event, ExitReason, ForwardSignals, HangPolicy,
    Readiness,
};

use crate::engine::control_server::ControlServer;
use crate::engine::driver::upgrade::{own_program, Predecessor, CONTROL_FD_NAME, METRICS_FD_NAME};
use crate::engine::driver::{Driver, EventHandler, Program, Setup, WorkerProcess};
use crate::engine::handle::{HandleServer, MasterHandle};
use crate::engine::metrics_server::MetricsServer;
use crate::engine::output::WorkerOutput;
use crate::engine::service::ServiceNotifier;
use crate::error::{ProgramError, WorkerSettingError};
use crate::os::contain::KillMode;
use crate::os::credentials::Credentials;
use crate::os::listen::{self, AddrError, ListenAddr, ListenOptions, Listener};
use crate::os::memory::MemoryLimit;
use crate::os::notify::NotifySocketKind;
use crate::worker::Worker;
use crate::{Error, Log};

/// The entry point of library mode.
///
/// ```no_run
/// use clutch_unix::{Cluster, Role};
///
/// fn main() -> Result<(), clutch_unix::Error> {
///     match Cluster::builder().listen("127.0.0.1:5000").start()? {
///         Role::Master(master) => master.run_and_exit(),
///         Role::Worker(mut worker) => {
///             let listener = worker.take_tcp_listener().expect("one TCP listener");
///             worker.ready()?;
///             // serve on `listener` until `worker.shutdown()` fires…
///             # drop(listener);
///             Ok(())
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Cluster;

impl Cluster {
    /// A builder with gs-clutch's defaults (one worker per CPU, name `server`, titles on,
    /// logs off, 7500 ms force-exit timeout) and the core's newer ones.
    pub fn builder() -> ClusterBuilder {
        let mut core = Config::builder();
        core.cpus(std::thread::available_parallelism().map_or(1, |n| n.get()));
        ClusterBuilder {
            core,
            listen: Vec::new(),
            listen_error: None,
            listen_options: ListenOptions::default(),
            log: Log::Off,
            on_event: None,
            control: None,
            forward_signals: None,
            kill_mode: KillMode::default(),
            worker_output: WorkerOutput::default(),
            notify_sockets: NotifySocketKind::default(),
            predecessor: None,
            adopted_control: None,
            user: None,
            group: None,
            current_dir: None,
            umask: None,
            env: Vec::new(),
            env_clear: false,
            memory: None,
            memory_check_interval: crate::os::memory::DEFAULT_MEMORY_CHECK_INTERVAL,
            metrics: None,
            adopted_metrics: None,
        }
    }
}

/// The role this process plays, decided by [`ClusterBuilder::start`].
///
/// Exhaustive on purpose: a process is the master or a worker, and `main` matches both;
/// a third role would be a different API, and should break that match.
#[derive(Debug)]
#[must_use = "a Role is the master, which must be run, or a worker, which must serve"]
pub enum Role {
    /// The master: call [`Master::run`] (or [`Master::run_and_exit`]).
    Master(Master),
    /// A worker (or, with `workers(0)`, the application running in-process): serve.
    Worker(Worker),
}

/// Configures a cluster; [`start`](Self::start) validates everything before anything runs.
#[must_use = "a builder does nothing until start() or supervise()"]
pub struct ClusterBuilder {
    core: ConfigBuilder,
    listen: Vec<ListenAddr>,
    /// The first address given as text that did not parse: [`ClusterBuilder::start`]
    /// reports it.
    listen_error: Option<AddrError>,
    listen_options: ListenOptions,
    log: Log,
    on_event: Option<EventHandler>,
    control: Option<std::path::PathBuf>,
    /// Set by [`ClusterBuilder::forward_signals`]; else the mode's default.
    forward_signals: Option<ForwardSignals>,
    kill_mode: KillMode,
    worker_output: WorkerOutput,
    notify_sockets: NotifySocketKind,
    /// In a new master an upgrade started: the old master (from the environment).
    predecessor: Option<Predecessor>,
    /// The control socket the old master handed over with the listeners.
    adopted_control: Option<Listener>,
    user: Option<String>,
    group: Option<String>,
    current_dir: Option<PathBuf>,
    umask: Option<u32>,
    env: Vec<(OsString, OsString)>,
    env_clear: bool,
    /// `max_worker_memory`, in bytes.
    memory: Option<u64>,
    memory_check_interval: Duration,
    /// Where `/metrics` is served.
    metrics: Option<ListenAddr>,
    /// The metrics socket the old master handed over with the listeners.
    adopted_metrics: Option<Listener>,
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("core", &self.core)
            .field("listen", &self.listen)
            .field("log", &self.log)
            .field("control", &self.control)
            .field("metrics", &self.metrics)
            .field("user", &self.user)
            .field("group", &self.group)
            .field("current_dir", &self.current_dir)
            .field("umask", &self.umask)
            .field("env_clear", &self.env_clear)
            .finish_non_exhaustive()
    }
}

impl ClusterBuilder {
    /// Workers to run (gs-clutch `numWorkers`; default: the number of CPUs). `0` runs the
    /// application in this process, with the same shutdown handling.
    pub fn workers(&mut self, workers: usize) -> &mut Self {
        self.core.workers(workers);
        self
    }
    /// The process-title label (gs-clutch `name`; default `server`).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.core.name(name);
        self
    }
    /// Whether to set process titles (gs-clutch `nameProcess`; default true).
    pub fn title(&mut self, title: bool) -> &mut Self {
        self.core.title(title);
        self
    }
    /// Where log lines go (gs-clutch `log`; default off).
    pub fn log(&mut self, log: Log) -> &mut Self {
        self.log = log;
        self
    }
    /// Bound on a graceful stop (gs-clutch `forceExitTimeout`; default 7500 ms).
    pub fn force_exit_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.core.force_exit_timeout(timeout);
        self
    }
    /// When a worker counts as ready (default: when it calls [`Worker::ready`]).
    pub fn readiness(&mut self, readiness: Readiness) -> &mut Self {
        self.core.readiness(readiness);
        self
    }
    /// How long a worker may take to become ready (default 60 s).
    pub fn boot_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.core.boot_timeout(timeout);
        self
    }
    /// Respawn backoff for workers that die young.
    pub fn backoff(&mut self, backoff: Backoff) -> &mut Self {
        self.core.backoff(backoff);
        self
    }
    /// The probation after ready (default 2 s): a rolling restart stops an old worker
    /// only once its successor has stayed up this long, a death within it is a young
    /// death, and a worker past it is replaced at once when it dies.
    pub fn min_uptime(&mut self, min_uptime: Duration) -> &mut Self {
        self.core.min_uptime(min_uptime);
        self
    }
    /// The crash breaker (default: 5 failures and 10 s with no worker ready; it never
    /// stops a serving worker).
    pub fn crash_budget(&mut self, budget: CrashBudget) -> &mut Self {
        self.core.crash_budget(budget);
        self
    }
    /// Hung-worker handling (workers opt in by calling [`Worker::heartbeat`]).
    pub fn hang(&mut self, hang: HangPolicy) -> &mut Self {
        self.core.hang(hang);
        self
    }
    /// The signals (of USR1 and USR2) the master forwards to every worker. Default: both
    /// in library mode (the worker receives them, see [`Worker::user_signals`]); none
    /// in exec mode ([`supervise`](Self::supervise)), since clutch cannot know that the
    /// program handles them, and their default action kills it. Those not forwarded are
    /// logged and ignored.
    pub fn forward_signals(&mut self, signals: ForwardSignals) -> &mut Self {
        self.forward_signals = Some(signals);
        self
    }
    /// Which processes of a worker's tree a graceful stop signals: all of them (the
    /// default) or only the main process; see [`KillMode`]. Either way, what is left of
    /// a worker's tree when its main process exits is SIGKILLed.
    pub fn kill_mode(&mut self, mode: KillMode) -> &mut Self {
        self.kill_mode = mode;
        self
    }
    /// What becomes of the workers' stdout and stderr (default
    /// [`Inherit`](WorkerOutput::Inherit): they write to the master's own). With
    /// [`Prefix`](WorkerOutput::Prefix) or [`Json`](WorkerOutput::Json) the master reads
    /// them through a pipe per stream and writes each line, attributed to its worker, to
    /// its own stdout or stderr, never blocking (lines it cannot write are dropped and
    /// counted); see [`WorkerOutput`].
    pub fn worker_output(&mut self, mode: WorkerOutput) -> &mut Self {
        self.worker_output = mode;
        self
    }
    /// Where the workers' `NOTIFY_SOCKET`s are (default
    /// [`Abstract`](NotifySocketKind::Abstract): `@clutch/…` names in the abstract
    /// namespace, no files, falling back to a directory where those would not be
    /// private). [`Directory`](NotifySocketKind::Directory) for workers that enter a
    /// network namespace of their own, sd_notify clients that know only paths, or a host
    /// whose other users must not reach the sockets at all; see [`crate::notify`].
    pub fn notify_sockets(&mut self, kind: NotifySocketKind) -> &mut Self {
        self.notify_sockets = kind;
        self
    }
    /// Recycle a worker whose memory goes over `bytes` (default: no limit): it is
    /// replaced the way a rolling restart replaces it — a fresh worker in its slot
    /// first, then, once that one has passed probation, a graceful stop of the old one.
    /// Measured every [`memory_check_interval`](Self::memory_check_interval): the
    /// worker's cgroup's `memory.current` (its whole tree) where the workers' cgroups
    /// have the memory controller, else its main process's resident set
    /// (`/proc/<pid>/statm`). Without a limit nothing is measured and the master makes
    /// no wakeups for it.
    pub fn max_worker_memory(&mut self, bytes: Option<u64>) -> &mut Self {
        self.memory = bytes;
        self
    }
    /// How often the workers' memory is measured when
    /// [`max_worker_memory`](Self::max_worker_memory) is set (default 5 s): one wakeup
    /// of the master per interval, and one small file read per ready worker.
    pub fn memory_check_interval(&mut self, interval: Duration) -> &mut Self {
        self.memory_check_interval = interval;
        self
    }
    /// Recycle every worker after it has run this long (default: never), plus a jitter
    /// drawn per worker from `0..=`[`max_worker_age_jitter`](Self::max_worker_age_jitter)
    /// so workers started together are not recycled together. Replaced as for
    /// [`max_worker_memory`](Self::max_worker_memory): successor first.
    pub fn max_worker_age(&mut self, age: Option<Duration>) -> &mut Self {
        self.core.max_worker_age(age);
        self
    }
    /// The most a worker's age limit is lengthened by (default: a tenth of the age; zero
    /// turns the jitter off).
    pub fn max_worker_age_jitter(&mut self, jitter: Duration) -> &mut Self {
        self.core.max_worker_age_jitter(jitter);
        self
    }
    /// Workers replaced at once in a rolling restart (default 1).
    pub fn rollout_batch(&mut self, batch: usize) -> &mut Self {
        self.core.rollout_batch(batch);
        self
    }
    /// A listening socket for the workers (repeatable): a [`ListenAddr`], a
    /// [`SocketAddr`](std::net::SocketAddr), or text that [`ListenAddr::parse`] reads
    /// (`127.0.0.1:5000`, `[::1]:0`, `0.0.0.0:80`, `unix:/run/app.sock`), parsed here,
    /// once: text that does not parse makes [`start`](Self::start) (or
    /// [`supervise`](Self::supervise)) fail with [`Error::ListenAddr`] before anything
    /// runs. Ignored when the master was itself started with sockets by systemd
    /// (`LISTEN_FDS`): those are used instead.
    pub fn listen(&mut self, addr: impl IntoListenAddr) -> &mut Self {
        match addr.into_listen_addr() {
            Ok(addr) => self.listen.push(addr),
            Err(error) => {
                self.listen_error.get_or_insert(error);
            }
        }
        self
    }
    /// Backlog and Unix-socket permissions for the listeners.
    pub fn listen_options(&mut self, options: ListenOptions) -> &mut Self {
        self.listen_options = options;
        self
    }
    /// Serve the master's metrics at `GET /metrics` on `addr` (`127.0.0.1:9100`,
    /// `unix:/run/app-metrics.sock`; port 0: the OS picks one, which `status` and the
    /// log name): Prometheus text, or OpenMetrics when the scraper asks for it. Served
    /// by the master's own event loop, never by the workers; every figure is read when
    /// it is scraped (nobody scraping: no wakeups). Bound by
    /// [`start`](Self::start) before anything is spawned: a bad address or a port in
    /// use is an error there. In-process, [`MasterHandle::metrics`] gives the same text.
    ///
    /// The metrics are listed in the README ("Metrics").
    pub fn metrics(&mut self, addr: impl IntoListenAddr) -> &mut Self {
        match addr.into_listen_addr() {
            Ok(addr) => self.metrics = Some(addr),
            Err(error) => {
                self.listen_error.get_or_insert(error);
            }
        }
        self
    }

    /// A control socket at `path` (mode 0600) answering `status`, `reload`, `scale` and
    /// `stop`; see [`crate::control`] for the protocol and `clutch status` for a client.
    pub fn control(&mut self, path: impl Into<std::path::PathBuf>) -> &mut Self {
        self.control = Some(path.into());
        self
    }

    /// Runs every worker as `user`, a name or a numeric uid (`clutch run --user`), with
    /// that user's groups from the user database (`initgroups`), and its primary group
    /// unless [`group`](Self::group) says otherwise. The master keeps its own
    /// credentials, to bind and to supervise; changing them needs a master running as
    /// root. The names are resolved at [`start`](Self::start) (or
    /// [`supervise`](Self::supervise)): an unknown one fails it, before anything runs.
    pub fn user(&mut self, user: impl Into<String>) -> &mut Self {
        self.user = Some(user.into());
        self
    }
    /// The workers' group, a name or a numeric gid (`clutch run --group`; default: the
    /// [`user`](Self::user)'s primary group). Without a user, the workers keep the
    /// master's uid and have this one group.
    pub fn group(&mut self, group: impl Into<String>) -> &mut Self {
        self.group = Some(group.into());
        self
    }
    /// The workers' working directory (`clutch run --chdir`; default: the master's),
    /// entered as the workers' user. It must exist when the cluster starts.
    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.current_dir = Some(dir.into());
        self
    }
    /// The workers' umask (`clutch run --umask`; default: the master's), at most `0o777`.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask);
        self
    }
    /// Sets a variable in every worker's environment (`clutch run --env`; repeatable, a
    /// later value wins). The variables clutch sets itself (`LISTEN_FDS`,
    /// `NOTIFY_SOCKET`, `CLUTCH_WORKER_ID`, … see [`crate::spawn::MANAGED_ENV_VARS`])
    /// are refused at start.
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Starts every worker from an empty environment (`clutch run --env-clear`): only
    /// what [`env`](Self::env) sets, `USER`/`LOGNAME`/`HOME` with a [`user`](Self::user),
    /// and what clutch sets for each worker (`LISTEN_FDS`, `NOTIFY_SOCKET`, …). By
    /// default workers inherit the master's environment.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self
    }

    /// Called in the master for every event (gs-clutch's `clutch.on(...)`).
    pub fn on_event(&mut self, handler: impl FnMut(&Event) + 'static) -> &mut Self {
        self.on_event = Some(Box::new(handler));
        self
    }

    /// Decides this process's role and prepares it. In the master: validates the
    /// configuration and binds every listener (or adopts systemd's), so every mistake is
    /// reported before any worker exists. In a worker: takes its listeners and notify
    /// socket from the environment the master gave it.
    ///
    /// Call it first thing in `main`, before the application starts threads: adopting
    /// sockets (`LISTEN_FDS`) removes those variables from the environment, which is only
    /// sound while the process is single-threaded.
    pub fn start(&mut self) -> Result<Role, Error> {
        self.core
            .forward_signals(self.forward_signals.unwrap_or(ForwardSignals::ALL));
        let config = self.config()?;
        self.log.install();
        if std::env::var_os(crate::worker::WORKER_ID_ENV).is_some() {
            return Ok(Role::Worker(Worker::from_env(&config)?));
        }
        if config.is_in_process() && (self.user.is_some() || self.group.is_some()) {
            return Err(WorkerSettingError::InProcess.into());
        }
        let workers = self.worker_process()?;
        if !config.is_in_process() {
            self.check_fd_limit(&config)?;
        }
        let listeners = self.bind_all()?;
        if config.is_in_process() {
            return Ok(Role::Worker(Worker::in_process(&config, listeners)?));
        }
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("finding this program to re-execute it for workers", e))?;
        workers.check_program(&exe)?;
        let mut args = std::env::args_os();
        let program = Program {
            path: exe,
            arg0: args.next(),
            args: args.collect(),
        };
        Ok(Role::Master(
            self.master(config, program, listeners, workers)?,
        ))
    }

    /// The validated configuration, with what the service manager says in the environment
    /// (`WATCHDOG_USEC`) folded in.
    fn config(&mut self) -> Result<Config, Error> {
        if self.predecessor.is_none() {
            self.predecessor = Predecessor::from_env();
        }
        self.core
            .service_watchdog(crate::engine::service::watchdog_interval_from_env())
            // The core draws its age jitter from this seed: the driver's randomness.
            .seed(os_random_seed())
            // As PID 1 (a container), this master's exit would end every process of its
            // pid namespace, the new master too: no upgrade in place there.
            .upgrades(std::process::id() != 1)
            .successor(self.predecessor.is_some());
        let config = self.core.build()?;
        if self.memory_check_interval.is_zero() {
            return Err(clutch_proto::ConfigError::ZeroDuration("memory_check_interval").into());
        }
        if let Some(error) = self.listen_error.clone() {
            return Err(error.into());
        }
        Ok(config)
    }

    /// A master holds descriptors for every worker: an open-files limit too low for the
    /// workers asked for is a startup error (one line), not a crash loop of EMFILE.
    fn check_fd_limit(&self, config: &Config) -> Result<(), Error> {
        let need = crate::os::rlimit::fds_needed(
            config.workers(),
            self.listen.len(),
            self.control.is_some(),
        ) + crate::engine::output::fds_per_worker(self.worker_output)
            * config.workers() as u64
            + u64::from(self.metrics.is_some()) * crate::engine::metrics_server::FDS;
        crate::os::rlimit::ensure_fd_limit(need, config.workers())
    }

    /// Everything a master needs besides its program: the control socket (checked here,
    /// before anything is spawned), the service manager's socket, the event handler.
    fn master(
        &mut self,
        config: Config,
        program: Program,
        listeners: Vec<Listener>,
        workers: WorkerProcess,
    ) -> Result<Master, Error> {
        let adopted = self.adopted_control.take();
        let control = match (self.control.as_deref(), adopted) {
            (Some(path), Some(adopted)) => {
                tracing::info!(
                    path = %path.display(),
                    "using the control socket the old master handed over"
                );
                let from = self.predecessor.as_ref().and_then(Predecessor::pid);
                Some(ControlServer::adopt(adopted, path, from)?)
            }
            (Some(path), None) => Some(ControlServer::bind(path)?),
            (None, adopted) => {
                if adopted.is_some() {
                    tracing::warn!("a control socket was passed, but no --control path is set");
                }
                None
            }
        };
        let adopted = self.adopted_metrics.take();
        let metrics = match (&self.metrics, adopted) {
            (Some(addr), Some(adopted)) => {
                tracing::info!(%addr, "using the metrics socket the old master handed over");
                Some(MetricsServer::adopt(adopted)?)
            }
            (Some(addr), None) => Some(MetricsServer::bind(addr)?),
            (None, _) => None,
        };
        let on_event = self
            .on_event
            .take()
            .unwrap_or_else(|| Box::new(|_: &Event| {}));
        let service = ServiceNotifier::from_env();
        let poll = mio::Poll::new().map_err(|e| Error::io("creating the event loop", e))?;
        let handles = HandleServer::new(poll.registry(), crate::engine::driver::HANDLES)
            .map_err(|e| Error::io("creating the event loop's waker", e))?;
        Ok(Master {
            poll,
            handles,
            setup: Box::new(Setup {
                config,
                program,
                listeners,
                on_event,
                service,
                control,
                kill_mode: self.kill_mode,
                worker_output: self.worker_output,
                notify_sockets: self.notify_sockets,
                own_program: own_program(),
                predecessor: self.predecessor.take(),
                workers,
                memory: self.memory.map(|bytes| MemoryLimit {
                    bytes,
                    interval: self.memory_check_interval,
                }),
                metrics,
            }),
        })
    }
}

impl ClusterBuilder {
    /// Exec mode: supervise any program (Einhorn's idea, with systemd's conventions). Each
    /// worker runs `program args…` with the listeners at fd 3.. (`LISTEN_FDS`,
    /// `LISTEN_PID`, `LISTEN_FDNAMES`) and a `NOTIFY_SOCKET`, so programs that support
    /// socket activation and sd_notify need nothing from clutch.
    ///
    /// `program` without a `/` is looked up in `PATH`. Everything is checked before
    /// anything runs: the configuration, the program (exists, is executable) and the
    /// listeners.
    pub fn supervise(
        &mut self,
        program: impl AsRef<std::ffi::OsStr>,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
    ) -> Result<Master, Error> {
        let config = self.exec_config()?;
        let workers = self.worker_process()?;
        let path = resolve_program(program.as_ref())?;
        workers.check_program(&path)?;
        self.log.install();
        self.check_fd_limit(&config)?;
        let listeners = self.bind_all()?;
        let name = path.file_name().map(|n| n.to_os_string());
        let program = Program {
            path,
            arg0: name,
            args: args.into_iter().map(Into::into).collect(),
        };
        self.master(config, program, listeners, workers)
    }

    /// The workers' user, directory, umask and environment settings, checked: the
    /// settings' own mistakes first (usage errors), then what the system says of them
    /// (the user database, the master's privilege, the directory).
    fn worker_process(&self) -> Result<WorkerProcess, Error> {
        let credentials = self.worker_settings()?;
        if let Some(credentials) = &credentials {
            credentials.check_privilege()?;
        }
        let current_dir = match &self.current_dir {
            None => None,
            Some(dir) => {
                let unusable = |source| WorkerSettingError::Directory {
                    path: dir.clone(),
                    source,
                };
                let absolute = std::path::absolute(dir).map_err(unusable)?;
                let meta = std::fs::metadata(&absolute).map_err(unusable)?;
                if !meta.is_dir() {
                    return Err(unusable(io::Error::from_raw_os_error(libc::ENOTDIR)).into());
                }
                if let Some(credentials) = &credentials {
                    if !credentials.can_enter(&absolute) {
                        return Err(WorkerSettingError::DirectoryNotEnterable {
                            path: dir.clone(),
                            who: credentials.describe(),
                        }
                        .into());
                    }
                }
                Some(absolute)
            }
        };
        Ok(WorkerProcess {
            credentials,
            current_dir,
            umask: self.umask,
            env_clear: self.env_clear,
            env: self.env.clone(),
        })
    }

    /// The workers' settings that are the caller's to get right: the umask, the
    /// variables' names, the user and group (looked up, not yet checked against the
    /// master's privilege).
    fn worker_settings(&self) -> Result<Option<Credentials>, Error> {
        if let Some(mask) = self.umask.filter(|mask| *mask > 0o777) {
            return Err(WorkerSettingError::Umask { mask }.into());
        }
        for (name, value) in &self.env {
            let name_text = name.to_string_lossy().into_owned();
            let bytes = name.as_bytes();
            if bytes.is_empty()
                || bytes.contains(&b'=')
                || bytes.contains(&0)
                || value.as_bytes().contains(&0)
            {
                return Err(WorkerSettingError::EnvName { name: name_text }.into());
            }
            if crate::spawn::MANAGED_ENV_VARS
                .iter()
                .any(|managed| name.as_os_str() == std::ffi::OsStr::new(managed))
            {
                return Err(WorkerSettingError::EnvManaged { name: name_text }.into());
            }
        }
        if self.user.is_none() && self.group.is_none() {
            return Ok(None);
        }
        Ok(Some(Credentials::lookup(
            self.user.as_deref(),
            self.group.as_deref(),
        )?))
    }
}

impl ClusterBuilder {
    /// The configuration [`supervise`](Self::supervise) would run, validated, without
    /// looking for the program, binding a socket or starting anything: what the
    /// `clutch` command's `--print-config` checks.
    ///
    /// The workers' settings are checked as far as they are the caller's to get right
    /// (an unknown user or group, a bad umask or variable); what the system says of them
    /// (the master's privilege to change users, the directory) is for the start to find.
    pub fn check_exec(&mut self) -> Result<Config, Error> {
        let config = self.exec_config()?;
        match self.worker_settings() {
            Err(error) if error.is_usage() => Err(error),
            _ => Ok(config),
        }
    }

    /// The configuration of exec mode, validated.
    fn exec_config(&mut self) -> Result<Config, Error> {
        self.core
            .forward_signals(self.forward_signals.unwrap_or(ForwardSignals::NONE));
        let config = self.config()?;
        if config.is_in_process() {
            return Err(Error::Program(ProgramError::NoWorkers));
        }
        Ok(config)
    }
}

/// `program` (a bare name) found in `PATH`, if it is there and executable.
pub(crate) fn find_in_path(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    resolve_program(program).ok()
}

/// Finds `program` as `execvp` would, and checks it can be executed.
fn resolve_program(program: &std::ffi::OsStr) -> Result<std::path::PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    let candidates: Vec<std::path::PathBuf> = if program.as_bytes().contains(&b'/') {
        vec![program.into()]
    } else {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .collect()
    };
    for candidate in &candidates {
        let Ok(meta) = std::fs::metadata(candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        return match rustix::fs::access(candidate, rustix::fs::Access::EXEC_OK) {
            Ok(()) => Ok(candidate.clone()),
            Err(e) => Err(Error::Program(ProgramError::NotExecutable {
                path: candidate.clone(),
                source: e.into(),
            })),
        };
    }
    Err(Error::Program(ProgramError::NotFound {
        program: program.into(),
    }))
}

impl ClusterBuilder {
    /// [`bind_all`], keeping apart the control socket an upgrade's old master passed.
    fn bind_all(&mut self) -> Result<Vec<Listener>, Error> {
        let mut listeners = bind_all(&self.listen, &self.listen_options)?;
        if let Some(at) = listeners.iter().position(|l| l.name() == CONTROL_FD_NAME) {
            self.adopted_control = Some(listeners.remove(at));
        }
        if let Some(at) = listeners.iter().position(|l| l.name() == METRICS_FD_NAME) {
            self.adopted_metrics = Some(listeners.remove(at));
        }
        Ok(listeners)
    }
}

/// Binds every address, or adopts the sockets systemd passed (`LISTEN_FDS`).
pub(crate) fn bind_all(
    addrs: &[ListenAddr],
    options: &ListenOptions,
) -> Result<Vec<Listener>, Error> {
    let adopted = listen::listen_fds_from_env().map_err(Error::ListenFds)?;
    if !adopted.is_empty() {
        tracing::info!(
            count = adopted.len(),
            "using the listening sockets passed by the service manager"
        );
        return Ok(adopted);
    }
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = listen::bind(addr, options)?;
        tracing::info!("listening on {}", listener.local_addr());
        listeners.push(listener);
    }
    Ok(listeners)
}

/// What [`ClusterBuilder::listen`] takes: an address already parsed, or text to parse
/// (once, with [`ListenAddr::parse`]). Sealed: implemented for [`ListenAddr`],
/// [`SocketAddr`](std::net::SocketAddr), `&str` and `String`.
pub trait IntoListenAddr: sealed::Sealed {
    /// The parsed address, or why the text is not one.
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ListenAddr {}
    impl Sealed for std::net::SocketAddr {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
}

impl IntoListenAddr for ListenAddr {
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError> {
        Ok(self)
    }
}

impl IntoListenAddr for std::net::SocketAddr {
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError> {
        Ok(ListenAddr::Tcp(self))
    }
}

impl IntoListenAddr for &str {
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError> {
        ListenAddr::parse(self)
    }
}

impl IntoListenAddr for String {
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError> {
        ListenAddr::parse(&self)
    }
}

impl IntoListenAddr for &String {
    fn into_listen_addr(self) -> Result<ListenAddr, AddrError> {
        ListenAddr::parse(self)
    }
}

/// The master's side: run the cluster to its end.
#[must_use = "a Master does nothing until run() or run_and_exit()"]
pub struct Master {
    // Boxed: a `Role` is moved around by value and a worker is small.
    setup: Box<Setup>,
    poll: mio::Poll,
    handles: HandleServer,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("config", &self.setup.config)
            .finish_non_exhaustive()
    }
}

impl Master {
    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.setup.config
    }

    /// The listening sockets (e.g. to learn the port the OS chose for `:0`).
    #[must_use]
    pub fn listeners(&self) -> &[Listener] {
        &self.setup.listeners
    }

    /// Where [`ClusterBuilder::metrics`] serves (`127.0.0.1:9100`, `unix:/path`; the
    /// real port when port 0 was asked for), if it does.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<&str> {
        self.setup.metrics.as_ref().map(|m| m.addr())
    }

    /// Runs the cluster until it shuts down; returns why (its
    /// [`code`](ExitReason::code) is the exit status to use).
    pub fn run(self) -> Result<ExitReason, Error> {
        Driver::new(*self.setup, self.poll, self.handles)?.run()
    }

    /// A handle for code in this process to ask the master for status, reload, scale
    /// and stop while it runs, with the control socket's answers; see [`MasterHandle`].
    /// Take it before [`run`](Self::run) (which keeps the thread), and hand clones to
    /// other threads.
    #[must_use]
    pub fn handle(&self) -> MasterHandle {
        self.handles.handle()
    }

    /// Runs the cluster and exits the process with its exit code; on an error, says why
    /// on stderr and exits with 1.
    pub fn run_and_exit(self) -> ! {
        match self.run() {
            Ok(reason) => {
                if reason != ExitReason::Clean {
                    eprintln!("clutch: {}", reason.describe());
                }
                std::process::exit(i32::from(reason.code()))
            }
            Err(error) => {
                eprintln!("clutch: {error:#}");
                std::process::exit(1)
            }
        }
    }
}

/// Eight bytes of the operating system's randomness (`/dev/urandom`), for the core's
/// seed; should it be unreadable, the time and pid (the jitter only spreads recycles).
fn os_random_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text is parsed once, in `listen`; a bad address fails before anything runs, as a
    /// usage error that names the input.
    #[test]
    fn a_bad_listen_address_fails_the_start_as_a_usage_error() {
        let mut builder = Cluster::builder();
        builder
            .workers(1)
            .listen("127.0.0.1:0")
            .listen("localhost")
            .listen("also bad");
        assert_eq!(
            builder.listen,
            [ListenAddr::Tcp(([127, 0, 0, 1], 0).into())]
        );
        let error = builder.supervise("/bin/true", ["x"; 0]).unwrap_err();
        assert!(error.is_usage(), "{error:#}");
        let Error::ListenAddr(addr) = &error else {
            panic!("not a listen address error: {error:#}")
        };
        assert!(
            addr.to_string().contains("\"localhost\""),
            "the first bad one: {addr}"
        );
    }

    #[test]
    fn parsed_addresses_are_taken_as_they_are() {
        let mut builder = Cluster::builder();
        let unix = ListenAddr::Unix("/run/app.sock".into());
        builder
            .listen(unix.clone())
            .listen(std::net::SocketAddr::from(([0, 0, 0, 0], 80)))
            .listen(String::from("[::1]:5000"));
        assert_eq!(builder.listen.len(), 3);
        assert_eq!(builder.listen[0], unix);
        assert!(builder.listen_error.is_none());
    }
}
