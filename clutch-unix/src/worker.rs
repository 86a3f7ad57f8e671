//! The worker's side of library mode: its listeners, its readiness and heartbeats, and
//! how it learns that shutdown has begun.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use clutch_proto::{Config, ExitReason, Signal};

use crate::engine::service::ServiceNotifier;
use crate::error::EnvironmentError;
use crate::os::listen::{self, Listener, SocketFile, StdListener};
use crate::os::process::{signal_from_number, signal_number};
use crate::user_signals::UserSignals;
use crate::{Error, Shutdown};

/// Set by the master in every worker's environment: the worker's id.
pub(crate) const WORKER_ID_ENV: &str = "CLUTCH_WORKER_ID";
/// Set by the master in every worker's environment: the worker's slot.
pub(crate) const WORKER_SLOT_ENV: &str = "CLUTCH_WORKER_SLOT";

/// One worker of the cluster (or the application itself, when it runs in-process).
///
/// Take the listeners, start serving, call [`ready`](Self::ready); watch
/// [`shutdown`](Self::shutdown) and, once it fires, stop accepting, finish what is in
/// flight, and return from `main`. If that takes longer than the force-exit timeout the
/// process exits on its own (gs-clutch does the same in its workers), and the master
/// SIGKILLs whatever is left at its own deadline.
#[derive(Debug)]
pub struct Worker {
    id: u64,
    slot: usize,
    in_process: bool,
    listeners: Vec<Listener>,
    /// In-process: the socket files of the unix listeners taken as std listeners,
    /// removed when the worker is dropped, as the master's would be.
    socket_files: Vec<SocketFile>,
    notifier: ServiceNotifier,
    shutdown: Shutdown,
    user_signals: UserSignals,
}

impl Worker {
    /// A worker started by a clutch master: everything comes from its environment.
    pub(crate) fn from_env(config: &Config) -> Result<Self, Error> {
        let id = env_number(WORKER_ID_ENV)?;
        let slot = env_number(WORKER_SLOT_ENV)? as usize;
        let listeners = listen::listen_fds_from_env().map_err(Error::ListenFds)?;
        let worker = Self::new(config, id, slot, false, listeners)?;
        if config.title() {
            let _ = crate::os::title::set_title(&format!("{}: worker process", config.name()));
        }
        Ok(worker)
    }

    /// The application running in the master's own process (`workers = 0`).
    pub(crate) fn in_process(config: &Config, listeners: Vec<Listener>) -> Result<Self, Error> {
        if config.title() {
            let _ = crate::os::title::set_title(config.name());
        }
        Self::new(config, 0, 0, true, listeners)
    }

    fn new(
        config: &Config,
        id: u64,
        slot: usize,
        in_process: bool,
        listeners: Vec<Listener>,
    ) -> Result<Self, Error> {
        let shutdown = Shutdown::new().map_err(|e| Error::io("creating the shutdown notice", e))?;
        let user_signals =
            UserSignals::new().map_err(|e| Error::io("creating the user-signal notice", e))?;
        let title = config.title().then(|| {
            if in_process {
                config.name().to_owned()
            } else {
                format!("{}: worker process", config.name())
            }
        });
        watch_signals(
            shutdown.clone(),
            config.force_exit_timeout(),
            title,
            user_signals.clone(),
        )?;
        Ok(Self {
            id,
            slot,
            in_process,
            listeners,
            socket_files: Vec::new(),
            notifier: ServiceNotifier::from_env(),
            shutdown,
            user_signals,
        })
    }

    /// The worker's id (`CLUTCH_WORKER_ID`, like Node's `cluster.worker.id`): unique and
    /// never reused within one master. `0` when running in-process.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The worker's slot, `0..workers` (`CLUTCH_WORKER_SLOT`): a replacement gets the slot
    /// of the worker it replaces.
    #[must_use]
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// True when there is no cluster (`workers = 0`).
    #[must_use]
    pub fn is_in_process(&self) -> bool {
        self.in_process
    }

    /// The listeners not taken yet, in the order they were configured.
    #[must_use]
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Takes every remaining listener.
    pub fn take_listeners(&mut self) -> Vec<Listener> {
        std::mem::take(&mut self.listeners)
    }

    /// Takes listener `index` as a std listener, keeping its socket file (if it has one)
    /// for removal when the worker is dropped.
    fn take_std(&mut self, index: usize) -> StdListener {
        let (listener, file) = self.listeners.remove(index).into_std_and_file();
        self.socket_files.extend(file);
        listener
    }

    /// Takes the first TCP listener, as a std `TcpListener` (blocking mode).
    pub fn take_tcp_listener(&mut self) -> Option<TcpListener> {
        let index = self.listeners.iter().position(Listener::is_tcp)?;
        match self.take_std(index) {
            StdListener::Tcp(listener) => Some(listener),
            StdListener::Unix(_) => unreachable!("is_tcp said TCP"),
        }
    }

    /// Takes the first Unix-socket listener, as a std `UnixListener` (blocking mode).
    pub fn take_unix_listener(&mut self) -> Option<UnixListener> {
        let index = self.listeners.iter().position(|l| !l.is_tcp())?;
        match self.take_std(index) {
            StdListener::Unix(listener) => Some(listener),
            StdListener::Tcp(_) => unreachable!("is_tcp said unix"),
        }
    }

    /// Tells the master this worker serves (`READY=1`). In-process, tells the service
    /// manager, if any.
    ///
    /// Never blocks. When the master is not reading its notify socket (it is stopped, or
    /// swamped) and the socket's queue is full, nothing is sent and the error says so:
    /// [`Error::is_would_block`] is true, and calling again a little later is the remedy
    /// (the master only counts the worker as ready once a `READY=1` arrives).
    pub fn ready(&self) -> Result<(), Error> {
        self.notifier
            .send_raw("READY=1")
            .map_err(|e| Error::io("reporting READY=1", e))
    }

    /// A heartbeat (`WATCHDOG=1`). After the first, the master treats a silence longer
    /// than the hang timeout (`WATCHDOG_USEC` in the environment) as a hung worker.
    ///
    /// Never blocks: a heartbeat the master's full socket cannot take now is dropped and
    /// this returns `Ok` (the next heartbeat will do).
    pub fn heartbeat(&self) -> Result<(), Error> {
        self.notifier
            .send_raw("WATCHDOG=1")
            .or_else(drop_if_would_block)
            .map_err(|e| Error::io("sending a heartbeat", e))
    }

    /// Tells the master this worker is about to exit on its own (`STOPPING=1`, e.g. after
    /// serving its quota of requests): a replacement starts at once and the exit is not a
    /// crash.
    ///
    /// Never blocks; like [`ready`](Self::ready), a message the master's full socket cannot
    /// take now is an error with [`Error::is_would_block`] true: retry before exiting (an
    /// exit without it counts as a crash).
    pub fn stopping(&self) -> Result<(), Error> {
        self.notifier
            .send_raw("STOPPING=1")
            .map_err(|e| Error::io("reporting STOPPING=1", e))
    }

    /// Asks the master to recycle this worker (`X_CLUTCH_RECYCLE=1`): a fresh worker is
    /// started in its slot and, once that one has been ready for the minimum uptime,
    /// this one gets the graceful stop ([`shutdown`](Self::shutdown) fires) — so no
    /// request is refused meanwhile. For a worker that knows it should be renewed: after
    /// serving N requests (Gunicorn's `max_requests`), or when it finds its own heap
    /// fragmented. Keep serving until the shutdown notice comes.
    ///
    /// Asking again while the recycle is under way changes nothing (the master ignores
    /// the repeat); a request from a worker that is not yet ready, or during a rolling
    /// restart's replacement of it, is ignored or deferred as the master's log says. In
    /// process (`workers = 0`) there is no master to replace the application: this
    /// returns `Ok` and does nothing.
    ///
    /// Never blocks; like [`ready`](Self::ready), a message the master's full socket
    /// cannot take now is an error with [`Error::is_would_block`] true: retry a little
    /// later.
    pub fn request_recycle(&self) -> Result<(), Error> {
        if self.in_process {
            return Ok(());
        }
        self.notifier
            .send_raw("X_CLUTCH_RECYCLE=1")
            .map_err(|e| Error::io("asking to be recycled", e))
    }

    /// A free-form status line (`STATUS=…`), shown in the master's debug log.
    ///
    /// Never blocks: a status line the master's full socket cannot take now is dropped
    /// and this returns `Ok` (it is informational; the next one replaces it).
    pub fn status(&self, text: &str) -> Result<(), Error> {
        let line = format!("STATUS={}", text.replace('\n', " "));
        self.notifier
            .send_raw(&line)
            .or_else(drop_if_would_block)
            .map_err(|e| Error::io("reporting a status", e))
    }

    /// Fires when the graceful stop begins (the master's SIGTERM, or SIGTERM/SIGINT
    /// in-process).
    #[must_use]
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The SIGUSR1/SIGUSR2 the master forwards (by convention: reopen the log files),
    /// to be received one by one: blocking ([`UserSignals::recv`],
    /// [`UserSignals::recv_timeout`]) or through a pollable fd. They are caught, so that
    /// a forwarded signal never kills a worker that does not handle it.
    #[must_use]
    pub fn user_signals(&self) -> &UserSignals {
        &self.user_signals
    }

    /// How many SIGUSR1/SIGUSR2 the master forwarded so far (received or not).
    #[must_use]
    pub fn user_signal_count(&self) -> u64 {
        self.user_signals.count()
    }
}

/// For messages that may be lost (heartbeats, status lines): a datagram the receiver's
/// full queue could not take is dropped, not an error.
fn drop_if_would_block(error: std::io::Error) -> std::io::Result<()> {
    if error.kind() == std::io::ErrorKind::WouldBlock {
        Ok(())
    } else {
        Err(error)
    }
}

fn env_number(name: &'static str) -> Result<u64, Error> {
    let value =
        std::env::var(name).map_err(|_| Error::Environment(EnvironmentError::Missing { name }))?;
    value
        .parse()
        .map_err(|_| Error::Environment(EnvironmentError::NotANumber { name, value }))
}

/// A thread that turns SIGTERM/SIGINT into the shutdown notice: the first starts the
/// graceful stop and arms the forced exit; a second means "now".
fn watch_signals(
    shutdown: Shutdown,
    force_exit_timeout: Duration,
    title: Option<String>,
    user_signals: UserSignals,
) -> Result<(), Error> {
    let watched = [Signal::Term, Signal::Int, Signal::Usr1, Signal::Usr2];
    let mut signals =
        signal_hook::iterator::Signals::new(watched.into_iter().filter_map(signal_number))
            .map_err(|e| Error::io("installing the worker's signal handlers", e))?;
    std::thread::Builder::new()
        .name("clutch-signals".into())
        .spawn(move || {
            for number in signals.forever() {
                let signal = signal_from_number(number);
                if let Some(user @ (Signal::Usr1 | Signal::Usr2)) = signal {
                    user_signals.push(user);
                    continue;
                }
                if !shutdown.trigger() {
                    tracing::warn!("second stop signal: exiting now");
                    std::process::exit(i32::from(ExitReason::Forced.code()));
                }
                tracing::info!("shutting down");
                if let Some(title) = &title {
                    let _ = crate::os::title::set_title(&format!("{title} <shutting down>"));
                }
                let timer = std::thread::Builder::new()
                    .name("clutch-force-exit".into())
                    .spawn(move || {
                        std::thread::sleep(force_exit_timeout);
                        tracing::warn!("forcing shutdown");
                        std::process::exit(i32::from(ExitReason::Forced.code()));
                    });
                if let Err(e) = timer {
                    // The master's own deadline still bounds this worker's life.
                    tracing::error!("cannot arm the worker's forced exit: {e}");
                }
            }
        })
        .map_err(|e| Error::io("starting the worker's signal thread", e))?;
    Ok(())
}
