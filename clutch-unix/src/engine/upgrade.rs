//! The driver's part of the upgrade of the master itself. The core decides the phases
//! (`clutch-proto/src/cluster/upgrade.rs`); this only forks and execs, passes the fds,
//! and turns what it sees into [`SuccessorFact`]s.
//!
//! The old master starts its own program again, by the path it was started with (so a
//! freshly deployed file is what runs, not the old inode `/proc/self/exe` holds), with
//! the same arguments, and hands it over what a service manager would:
//!
//! | what | how |
//! |---|---|
//! | the listening sockets | fds 3.., `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` with their names: the new master adopts them exactly as it would from systemd |
//! | the control socket | one more fd, named [`CONTROL_FD_NAME`]: both masters accept on it until the handover, then only the new one (the path never stops answering) |
//! | the metrics socket (`--metrics`) | one more fd, named [`METRICS_FD_NAME`], handed over as the control socket is |
//! | the channel to say it serves | [`UPGRADE_NOTIFY_ENV`], a datagram socket of the old master's speaking sd_notify: `READY=1` once every slot of the new master has a worker past probation |
//! | the service manager's `NOTIFY_SOCKET`, `WATCHDOG_USEC` | as the old master got them, for after the handover |
//!
//! The new master is a child of the old one but no worker: no `PR_SET_PDEATHSIG`, no
//! worker cgroup, not tracked by the keeper, spared by the containment's final sweep
//! (`Containment::spare`). When the old master exits it is re-parented (to the service
//! manager, or init); it is a subreaper for its own workers and makes its own
//! `clutch-<pid>` cgroup.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};

use clutch_proto::{Event, Input, Signal, SpawnError, SpawnErrorKind, SuccessorFact};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Driver, FIRST_CLIENT};
use crate::control::Response;
use crate::engine::service::ServiceNotifier;
use crate::os::notify::{NotifyListener, Received};
use crate::os::process::Process;
use crate::os::spawn::{master_error, SpawnSpec};

/// The channel a new master says `READY=1` on (a path or `@name`, as `NOTIFY_SOCKET`).
pub(crate) const UPGRADE_NOTIFY_ENV: &str = "CLUTCH_UPGRADE_NOTIFY";
/// The old master's pid, for the new master.
pub(crate) const UPGRADE_FROM_ENV: &str = "CLUTCH_UPGRADE_FROM";
/// The control socket's name among the fds passed to a new master.
pub(crate) const CONTROL_FD_NAME: &str = "clutch-control";
/// The name of the metrics socket (`--metrics`) among the fds handed over: both masters
/// accept on it until the handover, as on the control socket.
pub(crate) const METRICS_FD_NAME: &str = "clutch-metrics";

/// The successor's pidfd.
const SUCCESSOR_EXIT: Token = Token(FIRST_CLIENT - 2);
/// The successor's channel.
pub(super) const SUCCESSOR_NOTIFY: Token = Token(FIRST_CLIENT - 3);

/// The new master an upgrade started, as the old master watches it.
pub(super) struct Successor {
    process: Process,
    notify: NotifyListener,
    /// Its exit was reported to the core.
    gone: bool,
}

/// In a new master: the old master that started it, and the channel to it.
#[derive(Debug, Clone)]
pub(crate) struct Predecessor {
    channel: ServiceNotifier,
    pid: Option<u32>,
}

impl Predecessor {
    /// Reads and removes the variables an upgrade's old master set. Call at start, while
    /// the process is single-threaded (it changes the environment).
    pub(crate) fn from_env() -> Option<Self> {
        let channel = std::env::var_os(UPGRADE_NOTIFY_ENV).filter(|s| !s.is_empty());
        let pid = std::env::var(UPGRADE_FROM_ENV)
            .ok()
            .and_then(|p| p.parse().ok());
        std::env::remove_var(UPGRADE_NOTIFY_ENV);
        std::env::remove_var(UPGRADE_FROM_ENV);
        Some(Self {
            channel: ServiceNotifier::to(channel?),
            pid,
        })
    }

    /// The old master's pid.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Every slot has a worker past probation: the old master may hand over.
    pub(super) fn serving(&self) {
        let line = format!("READY=1\nMAINPID={}", std::process::id());
        if let Err(e) = self.channel.send_raw(&line) {
            tracing::error!("telling the old master this one serves: {e}");
        } else {
            tracing::info!("told the old master this one serves");
        }
    }
}

impl Driver {
    /// [`Action::SpawnSuccessor`](clutch_proto::Action::SpawnSuccessor): fork and exec
    /// the new master; its spawn's outcome is the core's next input.
    pub(super) fn spawn_successor(&mut self) {
        let fact = match self.start_successor() {
            Ok(pid) => SuccessorFact::Spawned { pid },
            Err((error, detail)) => {
                tracing::error!(%detail, "upgrade: the new master could not be started");
                self.upgrade_detail = Some(detail);
                SuccessorFact::SpawnFailed(error)
            }
        };
        self.inputs.push_back(Input::Successor(fact));
    }

    fn start_successor(&mut self) -> Result<u32, (SpawnError, String)> {
        let Some(program) = self.setup.own_program.clone() else {
            let detail = "this master does not know the path it was started by".to_owned();
            return Err((SpawnError::new(SpawnErrorKind::Exec), detail));
        };
        self.successors += 1;
        let notify = self
            .notify_sockets
            .bind_own(&format!("successor-{}", self.successors))
            .map_err(|e| master_error(&e, "creating the new master's notify socket"))?;
        // The master's own environment (the workers' may be cleared or changed: --env).
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.push((UPGRADE_NOTIFY_ENV.into(), notify.address().into()));
        env.push((
            UPGRADE_FROM_ENV.into(),
            std::process::id().to_string().into(),
        ));
        // Its stdout and stderr are this master's own (no `stdout`/`stderr` here): the
        // workers' output pipes are close-on-exec and stay this master's, which reads its
        // old workers' last lines; the new master makes pipes for its own workers.
        let mut spec = SpawnSpec::new(&program.path)
            .args(program.args.iter().cloned())
            .env(env)
            .master();
        if let Some(arg0) = &program.arg0 {
            spec = spec.arg0(arg0.clone());
        }
        if let Some(socket) = self.setup.service.socket() {
            spec = spec.notify_socket(socket);
        }
        if let Some(usec) = self.service_watchdog_usec() {
            spec = spec.watchdog_usec(usec);
        }
        for listener in &self.setup.listeners {
            spec = spec.listener(listener.name(), listener.as_fd());
        }
        if let Some(control) = &self.setup.control {
            spec = spec.listener(CONTROL_FD_NAME, control.listener_fd());
        }
        if let Some(metrics) = &self.setup.metrics {
            spec = spec.listener(METRICS_FD_NAME, metrics.listener_fd());
        }
        let child = spec
            .spawn()
            .map_err(|e| (e.to_core(), crate::error::Chain(&e).to_string()))?;
        drop(spec);
        let pid = child.pid;
        let mut process = Process::from(child);
        let registry = self.poll.registry();
        let watched = process
            .pidfd()
            .map_or(Ok(()), |fd| {
                registry.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    SUCCESSOR_EXIT,
                    Interest::READABLE,
                )
            })
            .and_then(|()| {
                registry.register(
                    &mut SourceFd(&notify.as_fd().as_raw_fd()),
                    SUCCESSOR_NOTIFY,
                    Interest::READABLE,
                )
            });
        if let Err(e) = watched {
            let _ = process.kill_and_reap();
            return Err(master_error(&e, "watching the new master"));
        }
        tracing::info!(pid, path = %program.path.display(), "upgrade: new master started");
        self.successor = Some(Successor {
            process,
            notify,
            gone: false,
        });
        Ok(pid)
    }

    /// The service manager's watchdog interval as it gave it to this master, if it is
    /// this master's.
    fn service_watchdog_usec(&self) -> Option<u64> {
        self.setup.config.service_watchdog()?;
        std::env::var("WATCHDOG_USEC").ok()?.parse().ok()
    }

    /// [`Action::SignalSuccessor`](clutch_proto::Action::SignalSuccessor).
    pub(super) fn signal_successor(&mut self, signal: Signal) {
        if let Some(successor) = self.successor.as_ref().filter(|s| !s.gone) {
            if let Err(e) = successor.process.signal(signal) {
                tracing::warn!("sending {signal} to the new master: {e}");
            }
        }
    }

    /// A token of the successor's, if `token` is one: handled.
    pub(super) fn successor_event(&mut self, token: Token) -> bool {
        if token == SUCCESSOR_EXIT {
            self.check_successor_exit();
        } else if token == SUCCESSOR_NOTIFY {
            self.read_successor_notify();
        } else {
            return false;
        }
        true
    }

    fn check_successor_exit(&mut self) {
        let Some(successor) = self.successor.as_mut().filter(|s| !s.gone) else {
            return;
        };
        match successor.process.try_wait() {
            Ok(Some(status)) => self.successor_gone(status),
            Ok(None) => {}
            Err(e) => tracing::warn!("checking the new master's exit: {e}"),
        }
    }

    /// The SIGCHLD sweep reaped `pid`: true if it was the successor.
    pub(super) fn successor_reaped(&mut self, pid: u32, status: clutch_proto::ExitStatus) -> bool {
        let Some(successor) = self.successor.as_mut() else {
            return false;
        };
        if successor.process.pid() != pid {
            return false;
        }
        successor.process.set_reaped(status);
        if !successor.gone {
            self.successor_gone(status);
        }
        true
    }

    fn successor_gone(&mut self, status: clutch_proto::ExitStatus) {
        // A READY=1 sent just before the exit comes first.
        self.read_successor_notify();
        let Some(successor) = self.successor.as_mut() else {
            return;
        };
        successor.gone = true;
        let registry = self.poll.registry();
        if let Some(fd) = successor.process.pidfd() {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        let _ = registry.deregister(&mut SourceFd(&successor.notify.as_fd().as_raw_fd()));
        tracing::info!(pid = successor.process.pid(), %status, "the new master exited");
        self.feed(Input::Successor(SuccessorFact::Exited(status)));
    }

    fn read_successor_notify(&mut self) {
        // A bounded turn, as for a worker.
        for _ in 0..super::NOTIFY_PER_TURN {
            let Some(successor) = self.successor.as_ref().filter(|s| !s.gone) else {
                return;
            };
            match successor.notify.recv_one() {
                Ok(Some(Received::Message(message))) => {
                    if let Some(status) = &message.status {
                        tracing::debug!("new master status: {status}");
                    }
                    if message.ready {
                        self.feed(Input::Successor(SuccessorFact::Ready));
                    }
                }
                Ok(Some(Received::Rejected(why))) => {
                    tracing::warn!("dropped a notification on the new master's channel: {why}");
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("reading the new master's channel: {e}");
                    return;
                }
            }
        }
        self.unread_successor = true;
    }

    /// The driver's part of an upgrade's events: hand the sockets over, answer the
    /// `upgrade` requests waiting.
    pub(super) fn upgrade_event(&mut self, event: &Event) {
        let answer = match event {
            Event::UpgradeHandedOver { pid } => {
                // The new master accepts on the control socket from now on; the socket
                // files are its own now.
                if let Some(control) = self.setup.control.as_mut() {
                    control.stop_accepting(self.poll.registry());
                }
                if let Some(metrics) = self.setup.metrics.as_mut() {
                    metrics.stop_accepting(self.poll.registry());
                }
                for listener in &mut self.setup.listeners {
                    listener.keep_file();
                }
                self.containment.spare(Some(*pid));
                self.handed_over = true;
                Response::Upgraded { pid: *pid }
            }
            Event::UpgradeFailed { cause } => {
                self.successor = None;
                let detail = self.upgrade_detail.take();
                let cause = match detail {
                    Some(detail) => format!("{cause}: {detail}"),
                    None => cause.to_string(),
                };
                Response::failed(format!(
                    "upgrade failed: {cause}; the old master keeps serving"
                ))
            }
            _ => return,
        };
        if let Some(control) = self.setup.control.as_mut() {
            control.upgrade_ended(self.poll.registry(), &answer);
        }
        self.handles.upgrade_ended(&answer);
    }

    /// In a new master: the core says every slot serves.
    pub(super) fn tell_predecessor(&mut self) {
        if let Some(predecessor) = &self.setup.predecessor {
            predecessor.serving();
        }
    }
}

/// The program this process runs, as it was started: its `argv[0]`, made absolute
/// against the directory it was started in (or looked up in `PATH`), so that an upgrade
/// executes the file now at that path; and its arguments. `None` when it cannot be told.
pub(crate) fn own_program() -> Option<super::Program> {
    let mut args = std::env::args_os();
    let arg0: OsString = args.next()?;
    let path = std::path::PathBuf::from(&arg0);
    let path = if path.is_absolute() {
        path
    } else if path.components().count() > 1 {
        std::env::current_dir().ok()?.join(path)
    } else {
        crate::cluster::find_in_path(&arg0).or_else(|| std::env::current_exe().ok())?
    };
    Some(super::Program {
        path,
        arg0: Some(arg0),
        args: args.collect(),
    })
}
