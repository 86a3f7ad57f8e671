//! The master's event loop: one `mio::Poll` holds every source of facts, and every
//! decision is the core's.
//!
//! ```text
//! loop {
//!     drain every action (spawn, signal, event, notify, exit)   ── carried out in order
//!     poll(timeout = core's deadline)                            ── EINTR retried
//!     signals, pidfds, notify sockets, control ──► handle_*(now, …)
//!     deadline passed ──► handle_timeout(now)
//! }
//! ```
//!
//! An idle master has no deadline, so `poll` sleeps until the next fact: no ticks.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Instant;

use clutch_proto::{
    Action, ClusterState, Config, Event, ExitReason, ExitStatus, Phase, Pid, Signal, WorkerId,
};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::signal as sig;
use signal_hook_mio::v1_0::Signals;

use crate::listen::Listener;
use crate::notify::{NotifyDir, NotifyListener, NotifyMessage};
use crate::process::Process;
use crate::service::ServiceNotifier;
use crate::spawn::SpawnSpec;
use crate::Error;

const SIGNALS: Token = Token(0);
/// Worker tokens start here: `FIRST_WORKER + 2·id` is its pidfd, `+ 1` its notify socket.
const FIRST_WORKER: usize = 2;

/// The signals the master handles; each maps to a core input. (SIGCHLD is added only
/// where pidfds are missing.)
const HANDLED: [(i32, Signal); 9] = [
    (sig::SIGTERM, Signal::Term),
    (sig::SIGINT, Signal::Int),
    (sig::SIGQUIT, Signal::Quit),
    (sig::SIGHUP, Signal::Hup),
    (sig::SIGTTIN, Signal::Ttin),
    (sig::SIGTTOU, Signal::Ttou),
    (sig::SIGUSR1, Signal::Usr1),
    (sig::SIGUSR2, Signal::Usr2),
    (sig::SIGWINCH, Signal::Winch),
];

/// What every worker runs.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) path: PathBuf,
    pub(crate) arg0: Option<OsString>,
    pub(crate) args: Vec<OsString>,
}

/// The application's event callback (gs-clutch's `clutch.on(...)`).
pub(crate) type EventHandler = Box<dyn FnMut(&Event)>;

/// Everything the loop needs, gathered (and validated) before anything is spawned.
pub(crate) struct Setup {
    pub(crate) config: Config,
    pub(crate) program: Program,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) on_event: EventHandler,
    pub(crate) service: ServiceNotifier,
}

/// A worker process the driver watches.
struct Handle {
    process: Process,
    notify: NotifyListener,
}

/// A fact gathered while carrying out actions, fed to the core once the drain is done
/// (the contract: a full drain between two inputs).
enum Input {
    Spawned(WorkerId, Pid),
    SpawnFailed(WorkerId, String),
}

pub(crate) struct Driver {
    poll: Poll,
    signals: Signals,
    cluster: ClusterState,
    setup: Setup,
    notify_dir: NotifyDir,
    workers: HashMap<WorkerId, Handle>,
    inputs: VecDeque<Input>,
    env: Vec<(OsString, OsString)>,
    title: Option<String>,
    pidfds: bool,
    /// Set once the core asked to exit.
    exit: Option<ExitReason>,
}

impl Driver {
    pub(crate) fn new(setup: Setup) -> Result<Self, Error> {
        let poll = Poll::new().map_err(|e| Error::io("creating the event loop", e))?;
        let numbers: Vec<i32> = HANDLED.iter().map(|&(n, _)| n).collect();
        let mut signals =
            Signals::new(numbers).map_err(|e| Error::io("installing signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| Error::io("watching signals", e))?;
        let notify_dir = NotifyDir::create()
            .map_err(|e| Error::io("creating the notify socket directory", e))?;
        // Two descriptors per worker (pidfd, notify socket): 1024 workers need more than
        // the usual soft limit.
        if let Err(e) = crate::rlimit::raise_fd_limit() {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let cluster = ClusterState::new(setup.config.clone(), Instant::now());
        Ok(Self {
            poll,
            signals,
            cluster,
            setup,
            notify_dir,
            workers: HashMap::new(),
            inputs: VecDeque::new(),
            env,
            title: None,
            pidfds: true,
            exit: None,
        })
    }

    /// Runs the cluster to its end; returns why it ended.
    pub(crate) fn run(mut self) -> Result<ExitReason, Error> {
        let mut events = Events::with_capacity(256);
        self.drain()?;
        loop {
            if let Some(reason) = self.exit {
                return Ok(reason);
            }
            self.update_title();
            let timeout = self
                .cluster
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("waiting for events", e)),
            }
            for event in events.iter() {
                self.dispatch(event.token())?;
            }
            let now = Instant::now();
            if self.cluster.poll_timeout().is_some_and(|at| at <= now) {
                self.feed(|cluster| cluster.handle_timeout(now))?;
            }
        }
    }

    /// One input to the core, then a full drain (the driving contract).
    fn feed(&mut self, input: impl FnOnce(&mut ClusterState)) -> Result<(), Error> {
        input(&mut self.cluster);
        self.drain()
    }

    fn dispatch(&mut self, token: Token) -> Result<(), Error> {
        if token == SIGNALS {
            let received: Vec<i32> = self.signals.pending().collect();
            for number in received {
                if number == sig::SIGCHLD {
                    self.reap_without_pidfds()?;
                } else if let Some(&(_, signal)) = HANDLED.iter().find(|&&(n, _)| n == number) {
                    tracing::info!("caught signal {signal}");
                    self.feed(|cluster| cluster.handle_signal(Instant::now(), signal))?;
                }
            }
            return Ok(());
        }
        let index = token.0 - FIRST_WORKER;
        let id = WorkerId((index / 2) as u64);
        if index % 2 == 1 {
            self.read_notify(id)
        } else {
            self.check_exit(id)
        }
    }

    /// Feeds every message waiting on `id`'s notify socket to the core.
    fn read_notify(&mut self, id: WorkerId) -> Result<(), Error> {
        loop {
            let Some(handle) = self.workers.get(&id) else {
                return Ok(());
            };
            match handle.notify.recv() {
                Ok(Some(message)) => self.deliver(id, &message)?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(worker = id.0, "reading the worker's notify socket: {e}");
                    return Ok(());
                }
            }
        }
    }

    fn deliver(&mut self, id: WorkerId, message: &NotifyMessage) -> Result<(), Error> {
        if message.ready {
            self.feed(|cluster| cluster.handle_ready(Instant::now(), id))?;
        }
        if message.watchdog {
            self.feed(|cluster| cluster.handle_heartbeat(Instant::now(), id))?;
        }
        if message.stopping {
            self.feed(|cluster| cluster.handle_stopping(Instant::now(), id))?;
        }
        if let Some(status) = &message.status {
            tracing::debug!(worker = id.0, "worker status: {status}");
        }
        Ok(())
    }

    /// The pidfd of `id` became readable: reap it and tell the core.
    fn check_exit(&mut self, id: WorkerId) -> Result<(), Error> {
        let Some(handle) = self.workers.get_mut(&id) else {
            return Ok(());
        };
        match handle.process.try_wait() {
            Ok(Some(status)) => self.reaped(id, status),
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(worker = id.0, "checking worker exit: {e}");
                Ok(())
            }
        }
    }

    fn reap_without_pidfds(&mut self) -> Result<(), Error> {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.check_exit(id)?;
        }
        Ok(())
    }

    fn reaped(&mut self, id: WorkerId, status: ExitStatus) -> Result<(), Error> {
        // Messages sent just before the exit (READY=1, then a crash) come first.
        self.read_notify(id)?;
        if let Some(handle) = self.workers.remove(&id) {
            let registry = self.poll.registry();
            if let Some(fd) = handle.process.pidfd() {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            let _ = registry.deregister(&mut SourceFd(&handle.notify.as_fd().as_raw_fd()));
        }
        self.feed(|cluster| cluster.handle_exited(Instant::now(), id, status))
    }

    /// Carries out every action, feeding the facts it learns back in, until the core has
    /// nothing more to say.
    fn drain(&mut self) -> Result<(), Error> {
        loop {
            while let Some(action) = self.cluster.poll_action() {
                self.execute(action)?;
            }
            let Some(input) = self.inputs.pop_front() else {
                return Ok(());
            };
            let now = Instant::now();
            match input {
                Input::Spawned(id, pid) => self.cluster.handle_spawned(now, id, pid),
                Input::SpawnFailed(id, error) => self.cluster.handle_spawn_failed(now, id, error),
            }
        }
    }

    fn execute(&mut self, action: Action) -> Result<(), Error> {
        match action {
            Action::Spawn {
                id,
                slot,
                generation,
            } => {
                tracing::debug!(worker = id.0, slot = slot.0, generation, "spawning worker");
                match self.spawn(id, slot.0) {
                    Ok(pid) => self.inputs.push_back(Input::Spawned(id, pid)),
                    Err(error) => {
                        tracing::error!(worker = id.0, "{error}");
                        self.inputs.push_back(Input::SpawnFailed(id, error));
                    }
                }
            }
            Action::Signal { id, signal, .. } => {
                if let Some(handle) = self.workers.get(&id) {
                    if let Err(e) = handle.process.signal(signal) {
                        tracing::warn!(worker = id.0, "sending {signal}: {e}");
                    }
                }
            }
            Action::Event(event) => {
                log_event(&event);
                (self.setup.on_event)(&event);
            }
            Action::Notify(notice) => self.setup.service.send(&notice),
            Action::Exit(reason) => self.exit = Some(reason),
        }
        Ok(())
    }

    fn spawn(&mut self, id: WorkerId, slot: usize) -> Result<Pid, String> {
        let notify = self
            .notify_dir
            .bind_worker(id.0)
            .map_err(|e| format!("creating the notify socket of worker {id}: {e}"))?;
        let program = &self.setup.program;
        let mut spec = SpawnSpec::new(program.path.clone())
            .args(program.args.iter().cloned())
            .env(self.env.iter().cloned())
            .notify_socket(notify.path())
            .worker(id.0, slot);
        if let Some(arg0) = &program.arg0 {
            spec = spec.arg0(arg0.clone());
        }
        if let Some(timeout) = self.setup.config.hang().timeout {
            spec = spec.watchdog_usec(timeout.as_micros() as u64);
        }
        for listener in &self.setup.listeners {
            spec = spec.listener(listener.name(), listener.as_fd());
        }
        let child = spec.spawn().map_err(|e| e.to_string())?;
        let pid = child.pid;
        let process = Process::from(child);
        let registry = self.poll.registry();
        let base = FIRST_WORKER + 2 * id.0 as usize;
        match process.pidfd() {
            Some(fd) => {
                registry
                    .register(
                        &mut SourceFd(&fd.as_raw_fd()),
                        Token(base),
                        Interest::READABLE,
                    )
                    .map_err(|e| format!("watching worker {id}: {e}"))?;
            }
            None if self.pidfds => {
                // No pidfds on this kernel: fall back to SIGCHLD + waitpid for good.
                tracing::info!("pidfd_open unavailable; watching exits through SIGCHLD");
                self.pidfds = false;
                self.signals
                    .add_signal(sig::SIGCHLD)
                    .map_err(|e| format!("watching SIGCHLD: {e}"))?;
            }
            None => {}
        }
        registry
            .register(
                &mut SourceFd(&notify.as_fd().as_raw_fd()),
                Token(base + 1),
                Interest::READABLE,
            )
            .map_err(|e| format!("watching worker {id}'s notify socket: {e}"))?;
        tracing::info!(worker = id.0, slot, pid, "Worker started");
        self.workers.insert(id, Handle { process, notify });
        Ok(pid)
    }

    fn update_title(&mut self) {
        if !self.setup.config.title() {
            return;
        }
        let name = self.setup.config.name();
        let title = match self.cluster.phase() {
            Phase::Stopping | Phase::Exited => format!("{name}: master process <shutting down>"),
            _ => format!(
                "{name}: master process [numworkers: {}]",
                self.cluster.live_workers()
            ),
        };
        if self.title.as_deref() != Some(title.as_str()) {
            if let Err(e) = crate::title::set_title(&title) {
                tracing::debug!("setting the process title: {e}");
            }
            self.title = Some(title);
        }
    }
}

/// The driver's log line for each event (gs-clutch's wording where it had one).
fn log_event(event: &Event) {
    match event {
        Event::WorkerDied {
            id,
            slot,
            pid,
            status,
            was_ready,
            uptime,
        } => tracing::warn!(
            worker = id.0, slot = slot.0, pid = ?pid, %status, was_ready, uptime_ms = uptime.as_millis() as u64,
            "worker died unexpectedly"
        ),
        Event::WorkerExit {
            id, status, reason, ..
        } => {
            tracing::info!(worker = id.0, %status, reason = reason.name(), "worker exited")
        }
        Event::ShutdownStarted { trigger } => {
            tracing::info!(?trigger, "shutting down workers")
        }
        Event::ShutdownForced { killed } => tracing::warn!(killed, "forcing shutdown"),
        Event::BreakerTripped { failures, window } => tracing::error!(
            failures,
            window_ms = window.as_millis() as u64,
            "workers keep failing to boot: crash breaker tripped, shutting down"
        ),
        Event::ReloadFailed { generation, reason } => {
            tracing::error!(generation, "rolling restart failed: {reason}")
        }
        Event::WorkerHung { id, silent_for, .. } => tracing::warn!(
            worker = id.0,
            silent_ms = silent_for.as_millis() as u64,
            "worker hung"
        ),
        Event::WorkerBootTimedOut { id, .. } => {
            tracing::warn!(worker = id.0, "worker did not become ready in time")
        }
        Event::WorkerSpawnFailed { id, error, .. } => {
            tracing::error!(worker = id.0, "worker failed to start: {error}")
        }
        Event::Ignored { what } => tracing::info!("ignored: {what}"),
        other => tracing::debug!(event = ?other),
    }
}
