//! [`Input`]: the one vocabulary of facts and commands a [`ClusterState`] understands,
//! and [`Reply`], its answer.
//!
//! The driver, the simulator, the fuzz decoders, the model test, the property tests and
//! the bench all speak it: a new kind of input is one new variant here, and the compiler
//! points at every place that must learn it.
//!
//! [`ClusterState`]: crate::ClusterState

use std::fmt;

use crate::{ExitStatus, Pid, RecycleCause, Signal, SpawnError, WorkerId};

/// One fact from the world or command from the application, delivered with
/// [`ClusterState::handle`](crate::ClusterState::handle).
///
/// Deliberately exhaustive (not `#[non_exhaustive]`): every caller that builds or
/// decodes inputs should hear from the compiler when the vocabulary grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// The driver started the worker as process `pid` (after an [`Action::Spawn`]).
    ///
    /// [`Action::Spawn`]: crate::Action::Spawn
    Spawned {
        /// The worker.
        id: WorkerId,
        /// Its process id.
        pid: Pid,
    },
    /// The driver could not start the worker. The error's
    /// [`kind`](SpawnError::kind) decides what follows:
    ///
    /// * [`Resource`](crate::SpawnErrorKind::Resource): the master's fault, never a boot
    ///   failure and never counted by the crash breaker. The slot is refilled after the
    ///   same backoff as a young death (so a master out of fds does not fork-loop); a
    ///   rolling restart whose new worker it was fails, the old workers keep serving.
    /// * [`Exec`](crate::SpawnErrorKind::Exec) for a first-generation worker before any
    ///   worker ever started (no `Spawned` accepted): the program cannot run at all. The
    ///   shutdown begins ([`ShutdownTrigger::StartupFailed`]), stopping the rest of the
    ///   first batch, and the exit is [`ExitReason::StartupFailed`] (code 1). Otherwise
    ///   a boot failure, as `Other`.
    /// * [`Other`](crate::SpawnErrorKind::Other): a boot failure (counted by the
    ///   breaker, or failing the rollout the worker belongs to).
    /// * [`Cancelled`](crate::SpawnErrorKind::Cancelled): the driver skipped a worker the
    ///   core had already decided to stop; it is removed
    ///   ([`Event::WorkerSpawnCancelled`]), no failure counted. For a worker with no
    ///   stop reason it is taken as `Resource`.
    ///
    /// [`ShutdownTrigger::StartupFailed`]: crate::ShutdownTrigger::StartupFailed
    /// [`ExitReason::StartupFailed`]: crate::ExitReason::StartupFailed
    /// [`Event::WorkerSpawnCancelled`]: crate::Event::WorkerSpawnCancelled
    SpawnFailed {
        /// The worker.
        id: WorkerId,
        /// Why, as the driver classified it.
        error: SpawnError,
    },
    /// The worker said `READY=1`.
    Ready {
        /// The worker.
        id: WorkerId,
    },
    /// The worker said `STOPPING=1`: it is replaced at once and its exit is expected.
    Stopping {
        /// The worker.
        id: WorkerId,
    },
    /// The worker said `WATCHDOG=1`. From its first heartbeat on, a ready worker that
    /// stays silent for the hang timeout is hung.
    Heartbeat {
        /// The worker.
        id: WorkerId,
    },
    /// The worker should be recycled: the driver found it over the memory limit
    /// ([`RecycleCause::Memory`]), or it asked itself (`X_CLUTCH_RECYCLE=1`,
    /// [`RecycleCause::Requested`]). Age recycles come from the core's own timer.
    ///
    /// A successor is spawned in its slot and the worker is stopped gracefully once the
    /// successor has passed probation ([`Event::WorkerRecycling`]); during a rolling
    /// restart the recycle waits for the rollout's end (which may replace the worker
    /// anyway). Refused ([`IgnoreReason::Recycle`]) for a worker already being
    /// recycled, one that does not serve a slot (booting, a successor, leaving), and
    /// during a shutdown.
    ///
    /// [`Event::WorkerRecycling`]: crate::Event::WorkerRecycling
    /// [`IgnoreReason::Recycle`]: crate::IgnoreReason::Recycle
    Recycle {
        /// The worker.
        id: WorkerId,
        /// Why.
        cause: RecycleCause,
    },
    /// The worker's process (its whole tree) ended.
    Exited {
        /// The worker.
        id: WorkerId,
        /// How.
        status: ExitStatus,
    },
    /// The master received a signal. See the README's signal table; in short:
    ///
    /// * TERM/INT shut down gracefully. During a shutdown, one that arrives less than
    ///   [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) (1 s) after the shutdown
    ///   began is taken as a repeat of the same request and ignored
    ///   ([`Event::SignalIgnored`](crate::Event::SignalIgnored)); a later one means
    ///   "now" (SIGKILL every remaining worker, exit code 4).
    /// * QUIT stops immediately (during a shutdown too).
    /// * HUP rolls, TTIN/TTOU scale by one.
    /// * USR1/USR2 are forwarded to every worker if they are in
    ///   [`Config::forward_signals`](crate::Config::forward_signals), and otherwise
    ///   ignored.
    Signal(Signal),
    /// Time passed. Deliver at (or after) [`ClusterState::poll_timeout`]; early and
    /// spurious timeouts are harmless.
    ///
    /// [`ClusterState::poll_timeout`]: crate::ClusterState::poll_timeout
    Timeout,
    /// The application asked for a graceful shutdown (as SIGTERM, but a second one does
    /// not force).
    Shutdown,
    /// The application asked to stop now: shutdown if not begun, then SIGKILL every
    /// worker.
    ShutdownNow,
    /// The application asked for a rolling restart (queued if one is under way). The
    /// reply is [`Reply::Reload`] with the generation whose end answers it.
    Reload,
    /// The application asked for this many workers (1 to
    /// [`MAX_WORKERS`](crate::MAX_WORKERS)).
    Scale(usize),
    /// The application asked to upgrade the master itself (as `SIGUSR2` when it is not
    /// forwarded): start a successor master, hand over once it serves. Refused when
    /// the driver cannot ([`Config::upgrades`](crate::Config::upgrades)), while one is
    /// under way and during a shutdown. Its end is [`Event::UpgradeHandedOver`] or
    /// [`Event::UpgradeFailed`].
    ///
    /// [`Event::UpgradeHandedOver`]: crate::Event::UpgradeHandedOver
    /// [`Event::UpgradeFailed`]: crate::Event::UpgradeFailed
    Upgrade,
    /// A fact about the successor master of an upgrade (after an
    /// [`Action::SpawnSuccessor`](crate::Action::SpawnSuccessor)).
    Successor(SuccessorFact),
}

/// What the driver learned about an upgrade's successor master ([`Input::Successor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuccessorFact {
    /// It was started as process `pid`.
    Spawned {
        /// Its process id.
        pid: Pid,
    },
    /// It could not be started (fork or exec failed).
    SpawnFailed(SpawnError),
    /// It said `READY=1` on the channel the driver gave it: its workers are ready and
    /// past their probation.
    Ready,
    /// It exited.
    Exited(ExitStatus),
}

impl Input {
    /// The worker a fact is about, if it is about one.
    #[must_use]
    pub fn worker(self) -> Option<WorkerId> {
        match self {
            Self::Spawned { id, .. }
            | Self::SpawnFailed { id, .. }
            | Self::Ready { id }
            | Self::Stopping { id }
            | Self::Heartbeat { id }
            | Self::Recycle { id, .. }
            | Self::Exited { id, .. } => Some(id),
            Self::Signal(_)
            | Self::Timeout
            | Self::Shutdown
            | Self::ShutdownNow
            | Self::Reload
            | Self::Scale(_)
            | Self::Upgrade
            | Self::Successor(_) => None,
        }
    }

    /// True for the application's commands (which may answer a [`CommandError`]).
    ///
    /// [`CommandError`]: crate::CommandError
    #[must_use]
    pub fn is_command(self) -> bool {
        matches!(
            self,
            Self::Shutdown | Self::ShutdownNow | Self::Reload | Self::Scale(_) | Self::Upgrade
        )
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawned { id, pid } => write!(f, "spawned w{id} pid {pid}"),
            Self::SpawnFailed { id, error } => write!(f, "spawn failed w{id} ({})", error.kind),
            Self::Ready { id } => write!(f, "READY=1 from w{id}"),
            Self::Stopping { id } => write!(f, "STOPPING=1 from w{id}"),
            Self::Heartbeat { id } => write!(f, "WATCHDOG=1 from w{id}"),
            Self::Recycle { id, cause } => write!(f, "recycle w{id} ({})", cause.name()),
            Self::Exited { id, status } => write!(f, "exited w{id} ({status})"),
            Self::Signal(signal) => write!(f, "master got {signal}"),
            Self::Timeout => write!(f, "timeout"),
            Self::Shutdown => write!(f, "command shutdown"),
            Self::ShutdownNow => write!(f, "command shutdown-now"),
            Self::Reload => write!(f, "command reload"),
            Self::Scale(n) => write!(f, "command scale {n}"),
            Self::Upgrade => write!(f, "command upgrade"),
            Self::Successor(SuccessorFact::Spawned { pid }) => {
                write!(f, "successor spawned pid {pid}")
            }
            Self::Successor(SuccessorFact::SpawnFailed(error)) => {
                write!(f, "successor spawn failed ({})", error.kind)
            }
            Self::Successor(SuccessorFact::Ready) => write!(f, "READY=1 from the successor"),
            Self::Successor(SuccessorFact::Exited(status)) => {
                write!(f, "successor exited ({status})")
            }
        }
    }
}

/// What [`ClusterState::handle`](crate::ClusterState::handle) answers when an input was
/// taken. Facts never fail; a command that cannot apply answers a
/// [`CommandError`](crate::CommandError) instead.
///
/// Exhaustive on purpose: a new kind of answer is something a driver must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// The input was taken (every fact; shutdown, shutdown-now and scale).
    Done,
    /// The reload was accepted (started, or queued behind the rollout under way). The
    /// rollout of `generation` answers it: its
    /// [`ReloadFinished`](crate::Event::ReloadFinished) or
    /// [`ReloadFailed`](crate::Event::ReloadFailed) carries this generation. (A queued
    /// request whose turn never comes, because the shutdown began first, is answered
    /// by no rollout: the cluster is stopping.)
    Reload {
        /// The generation whose rollout answers the request.
        generation: u64,
    },
}

#[cfg(test)]
mod tests {
    //! The trace's words for each input, and which inputs are about a worker.

    use super::*;
    use crate::{ExitStatus, RecycleCause, Signal, SpawnError, SpawnErrorKind, WorkerId};

    #[test]
    fn inputs_read_as_the_trace_writes_them_and_name_their_worker() {
        let id = WorkerId(3);
        let error = SpawnError::new(SpawnErrorKind::Exec);
        let status = ExitStatus::Code(1);
        let table = [
            (
                Input::Spawned { id, pid: 77 },
                "spawned w3 pid 77",
                Some(id),
            ),
            (
                Input::SpawnFailed { id, error },
                "spawn failed w3 (exec)",
                Some(id),
            ),
            (Input::Ready { id }, "READY=1 from w3", Some(id)),
            (Input::Stopping { id }, "STOPPING=1 from w3", Some(id)),
            (Input::Heartbeat { id }, "WATCHDOG=1 from w3", Some(id)),
            (
                Input::Recycle {
                    id,
                    cause: RecycleCause::Memory { bytes: 1 },
                },
                "recycle w3 (memory)",
                Some(id),
            ),
            (
                Input::Exited { id, status },
                "exited w3 (exit code 1)",
                Some(id),
            ),
            (Input::Signal(Signal::Hup), "master got SIGHUP", None),
            (Input::Timeout, "timeout", None),
            (Input::Shutdown, "command shutdown", None),
            (Input::ShutdownNow, "command shutdown-now", None),
            (Input::Reload, "command reload", None),
            (Input::Scale(4), "command scale 4", None),
            (Input::Upgrade, "command upgrade", None),
            (
                Input::Successor(SuccessorFact::Spawned { pid: 9 }),
                "successor spawned pid 9",
                None,
            ),
            (
                Input::Successor(SuccessorFact::SpawnFailed(error)),
                "successor spawn failed (exec)",
                None,
            ),
            (
                Input::Successor(SuccessorFact::Ready),
                "READY=1 from the successor",
                None,
            ),
            (
                Input::Successor(SuccessorFact::Exited(status)),
                "successor exited (exit code 1)",
                None,
            ),
        ];
        for (input, text, worker) in table {
            assert_eq!(input.to_string(), text);
            assert_eq!(input.worker(), worker, "{text}");
            assert_eq!(input.is_command(), text.starts_with("command"), "{text}");
        }
    }
}
