//! The one vocabulary of inputs shared by the simulator, the fuzz decoder and the
//! checkers: every way the world can poke a [`ClusterState`].

use std::fmt;
use std::time::Instant;

use clutch_proto::{
    ClusterState, CommandError, ExitStatus, Pid, Signal, SpawnError, SpawnErrorKind, WorkerId,
};

/// The error text a simulated driver reports for a failed spawn.
pub const SPAWN_ERROR: &str = "simulated: fork/exec failed";

/// One fact or command delivered to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// The driver started the worker as process `pid`.
    Spawned {
        /// The worker.
        id: WorkerId,
        /// Its process id.
        pid: Pid,
    },
    /// The driver could not start the worker.
    SpawnFailed {
        /// The worker.
        id: WorkerId,
        /// Why, as the driver classified it.
        kind: SpawnErrorKind,
    },
    /// The worker said `READY=1`.
    Ready {
        /// The worker.
        id: WorkerId,
    },
    /// The worker said `STOPPING=1`.
    Stopping {
        /// The worker.
        id: WorkerId,
    },
    /// The worker said `WATCHDOG=1`.
    Heartbeat {
        /// The worker.
        id: WorkerId,
    },
    /// The worker's process ended.
    Exited {
        /// The worker.
        id: WorkerId,
        /// How.
        status: ExitStatus,
    },
    /// The master received a signal.
    Signal(Signal),
    /// The core's deadline came.
    Timeout,
    /// The application asked for a graceful shutdown.
    Shutdown,
    /// The application asked for an immediate shutdown.
    ShutdownNow,
    /// The application asked for a rolling restart.
    Reload,
    /// The application asked for this many workers.
    Scale(usize),
}

impl Input {
    /// Delivers the input to `cluster` at `now`. Commands return the core's answer; facts
    /// always answer `Ok`.
    pub fn apply(self, cluster: &mut ClusterState, now: Instant) -> Result<(), CommandError> {
        match self {
            Self::Spawned { id, pid } => cluster.handle_spawned(now, id, pid),
            Self::SpawnFailed { id, kind } => {
                cluster.handle_spawn_failed(now, id, SpawnError::new(kind, SPAWN_ERROR));
            }
            Self::Ready { id } => cluster.handle_ready(now, id),
            Self::Stopping { id } => cluster.handle_stopping(now, id),
            Self::Heartbeat { id } => cluster.handle_heartbeat(now, id),
            Self::Exited { id, status } => cluster.handle_exited(now, id, status),
            Self::Signal(signal) => cluster.handle_signal(now, signal),
            Self::Timeout => cluster.handle_timeout(now),
            Self::Shutdown => cluster.shutdown(now),
            Self::ShutdownNow => cluster.shutdown_now(now),
            Self::Reload => return cluster.reload(now),
            Self::Scale(n) => return cluster.scale(now, n),
        }
        Ok(())
    }

    /// The worker a fact is about, if it is about one.
    #[must_use]
    pub fn worker(self) -> Option<WorkerId> {
        match self {
            Self::Spawned { id, .. }
            | Self::SpawnFailed { id, .. }
            | Self::Ready { id }
            | Self::Stopping { id }
            | Self::Heartbeat { id }
            | Self::Exited { id, .. } => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawned { id, pid } => write!(f, "spawned w{id} pid {pid}"),
            Self::SpawnFailed { id, kind } => write!(f, "spawn failed w{id} ({kind})"),
            Self::Ready { id } => write!(f, "READY=1 from w{id}"),
            Self::Stopping { id } => write!(f, "STOPPING=1 from w{id}"),
            Self::Heartbeat { id } => write!(f, "WATCHDOG=1 from w{id}"),
            Self::Exited { id, status } => write!(f, "exited w{id} ({status})"),
            Self::Signal(signal) => write!(f, "master got {signal}"),
            Self::Timeout => write!(f, "timeout"),
            Self::Shutdown => write!(f, "command shutdown"),
            Self::ShutdownNow => write!(f, "command shutdown-now"),
            Self::Reload => write!(f, "command reload"),
            Self::Scale(n) => write!(f, "command scale {n}"),
        }
    }
}
