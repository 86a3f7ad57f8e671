//! The core's vocabulary: identities, signals, exit statuses.

use std::fmt;

/// A worker's identity, owned by the core: monotonic from 1, never reused (like Node's
/// `cluster.worker.id`). Pids are only payload, so pid reuse cannot confuse the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in the cluster, `0..target`. A slot holds one serving worker; during a
/// rolling restart it may also hold that worker's successor while it boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub usize);

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A process id, as reported by the driver. Payload only: the core never looks workers
/// up by pid.
pub type Pid = u32;

/// The signals the core understands, as inputs (received by the master) and as outputs
/// (sent to a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP: rolling restart (gs-clutch: shutdown; see the README's signal table).
    Hup,
    /// SIGINT: graceful shutdown; another one at least
    /// [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) after the shutdown began
    /// means "now" (sooner, it is taken as a repeat of the same request).
    Int,
    /// SIGQUIT: immediate shutdown (SIGKILL every worker).
    Quit,
    /// SIGTERM: graceful shutdown; another one at least
    /// [`SIGNAL_REPEAT_WINDOW`](crate::SIGNAL_REPEAT_WINDOW) after the shutdown began
    /// means "now" (sooner, it is taken as a repeat of the same request).
    Term,
    /// SIGKILL (only ever sent, never received).
    Kill,
    /// SIGABRT: the default diagnostic signal for hung workers.
    Abrt,
    /// SIGUSR1: forwarded to every worker (reopen logs, by convention) when it is in
    /// [`Config::forward_signals`](crate::Config::forward_signals); ignored otherwise.
    Usr1,
    /// SIGUSR2: forwarded to every worker when it is in
    /// [`Config::forward_signals`](crate::Config::forward_signals); ignored otherwise.
    Usr2,
    /// SIGTTIN: one more worker.
    Ttin,
    /// SIGTTOU: one fewer worker (never below one).
    Ttou,
    /// SIGWINCH: ignored (and reported), as outside a daemonized nginx/Unicorn.
    Winch,
}

impl Signal {
    /// The conventional name, `SIGTERM` style.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hup => "SIGHUP",
            Self::Int => "SIGINT",
            Self::Quit => "SIGQUIT",
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
            Self::Abrt => "SIGABRT",
            Self::Usr1 => "SIGUSR1",
            Self::Usr2 => "SIGUSR2",
            Self::Ttin => "SIGTTIN",
            Self::Ttou => "SIGTTOU",
            Self::Winch => "SIGWINCH",
        }
    }

    /// Parses `TERM`, `SIGTERM` or `sigterm`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Some(match bare {
            "HUP" => Self::Hup,
            "INT" => Self::Int,
            "QUIT" => Self::Quit,
            "TERM" => Self::Term,
            "KILL" => Self::Kill,
            "ABRT" => Self::Abrt,
            "USR1" => Self::Usr1,
            "USR2" => Self::Usr2,
            "TTIN" => Self::Ttin,
            "TTOU" => Self::Ttou,
            "WINCH" => Self::Winch,
            _ => return None,
        })
    }

    /// Every variant, for drivers that register handlers and for tests.
    pub const ALL: [Signal; 11] = [
        Self::Hup,
        Self::Int,
        Self::Quit,
        Self::Term,
        Self::Kill,
        Self::Abrt,
        Self::Usr1,
        Self::Usr2,
        Self::Ttin,
        Self::Ttou,
        Self::Winch,
    ];
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal ended it (the raw signal number: SIGSEGV is not a [`Signal`]).
    Signaled(i32),
}

impl ExitStatus {
    /// True for `exit(0)`.
    #[must_use]
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signaled(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// A worker's life stage, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// A spawn was asked for; the driver has not reported the pid yet.
    Spawning,
    /// Running, not ready yet.
    Booting,
    /// Ready: serving.
    Ready,
    /// Hung: the diagnostic signal went out; SIGKILL follows after the grace.
    Hung,
    /// Asked to stop (SIGTERM sent), or said it is stopping (`STOPPING=1`).
    Stopping,
    /// SIGKILL sent; waiting for the exit.
    Killed,
}

impl WorkerState {
    /// Lowercase name for status output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Spawning => "spawning",
            Self::Booting => "booting",
            Self::Ready => "ready",
            Self::Hung => "hung",
            Self::Stopping => "stopping",
            Self::Killed => "killed",
        }
    }

    /// True once the master has decided this worker goes away.
    #[must_use]
    pub fn is_leaving(self) -> bool {
        matches!(self, Self::Hung | Self::Stopping | Self::Killed)
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a worker is recycled: replaced by a fresh worker in its slot the way a rolling
/// restart replaces it (the successor first; the old worker is stopped gracefully only
/// once the successor has passed probation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecycleCause {
    /// Its memory use went over the driver's limit (`--max-worker-memory`).
    Memory {
        /// What the driver measured, in bytes.
        bytes: u64,
    },
    /// It reached its maximum age ([`Config::max_worker_age`](crate::Config::max_worker_age)
    /// plus its jitter).
    Age,
    /// It asked to be recycled itself (`X_CLUTCH_RECYCLE=1` over sd_notify).
    Requested,
}

impl RecycleCause {
    /// Lowercase name for logs and status output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::Age => "age",
            Self::Requested => "requested",
        }
    }
}

impl fmt::Display for RecycleCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory { bytes } => write!(
                f,
                "memory over the limit ({:.1} MiB)",
                *bytes as f64 / (1024.0 * 1024.0)
            ),
            Self::Age => f.write_str("maximum age reached"),
            Self::Requested => f.write_str("the worker asked to be recycled"),
        }
    }
}

/// Why the driver could not start a worker: decides whether the failure is the
/// program's fault (a boot failure), the master's (retried, never counted), fatal at
/// startup, or no failure at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpawnErrorKind {
    /// The master ran out of something while preparing or forking the worker (`EMFILE`,
    /// `ENFILE`, `EAGAIN`, `ENOMEM`). Never the program's fault: never a boot failure,
    /// never counted by the crash breaker. The slot is retried after a backoff; a
    /// rolling restart whose new worker could not be started this way fails.
    Resource,
    /// The program could not be executed (`ENOEXEC`, `ENOENT`, `EACCES`, a missing
    /// interpreter). Before any worker of the cluster ever started, this ends the
    /// cluster with [`ExitReason::StartupFailed`](crate::ExitReason::StartupFailed);
    /// afterwards it is a boot failure.
    Exec,
    /// Anything else: a boot failure.
    Other,
    /// The driver did not start the worker because the core had already decided it goes
    /// (its [`stop_reason`](crate::WorkerInfo::stop_reason) was set while it was still
    /// spawning). Not a failure: the worker is removed. Reported for a worker with no
    /// stop reason, it is taken as [`Resource`](Self::Resource).
    Cancelled,
}

impl SpawnErrorKind {
    /// Lowercase name for logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::Exec => "exec",
            Self::Other => "other",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for SpawnErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A driver's report that a worker could not be started: what kind of failure (which
/// the core acts on) and, where the operating system said, its error number. `Copy` and
/// free of text on purpose: the driver logs its detailed account where the failure
/// happens; the core only needs to know what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpawnError {
    /// What kind of failure: decides what the core does.
    pub kind: SpawnErrorKind,
    /// The `errno` behind it, if there was one (for people: the core never looks).
    pub errno: Option<i32>,
}

impl SpawnError {
    /// A spawn error of `kind` with no error number.
    #[must_use]
    pub fn new(kind: SpawnErrorKind) -> Self {
        Self { kind, errno: None }
    }

    /// A spawn error of `kind` caused by the operating system's error `errno`.
    #[must_use]
    pub fn with_errno(kind: SpawnErrorKind, errno: i32) -> Self {
        Self {
            kind,
            errno: Some(errno),
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SpawnErrorKind::Resource => "the master ran out of resources",
            SpawnErrorKind::Exec => "the program could not be executed",
            SpawnErrorKind::Other => "the worker could not be started",
            SpawnErrorKind::Cancelled => "the spawn was cancelled",
        })?;
        if let Some(errno) = self.errno {
            write!(f, " (errno {errno})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpawnError {}

#[cfg(test)]
mod tests {
    //! The texts users read and the names the command line parses, each variant's once.

    use super::*;

    #[test]
    fn recycle_causes_read_as_documented() {
        let table = [
            (
                RecycleCause::Memory { bytes: 3 << 19 },
                "memory",
                "memory over the limit (1.5 MiB)",
            ),
            (RecycleCause::Age, "age", "maximum age reached"),
            (
                RecycleCause::Requested,
                "requested",
                "the worker asked to be recycled",
            ),
        ];
        for (cause, name, text) in table {
            assert_eq!((cause.name(), cause.to_string()), (name, text.to_owned()));
        }
    }

    #[test]
    fn signals_are_named_and_parsed_back_with_or_without_sig_in_any_case() {
        let names = [
            "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGKILL", "SIGABRT", "SIGUSR1", "SIGUSR2",
            "SIGTTIN", "SIGTTOU", "SIGWINCH",
        ];
        for (signal, name) in Signal::ALL.into_iter().zip(names) {
            assert_eq!(signal.name(), name);
            assert_eq!(signal.to_string(), name);
            let bare = &name[3..];
            for text in [name.to_owned(), bare.to_owned(), bare.to_ascii_lowercase()] {
                assert_eq!(Signal::from_name(&text), Some(signal), "{text}");
            }
        }
        for text in ["", "SIG", "TERMINATE", "SIGSEGV", "9"] {
            assert_eq!(Signal::from_name(text), None, "{text}");
        }
    }

    #[test]
    fn ids_statuses_states_and_spawn_errors_read_as_documented() {
        assert_eq!(WorkerId(42).to_string(), "42");
        assert_eq!(Slot(3).to_string(), "3");
        assert_eq!(ExitStatus::Code(2).to_string(), "exit code 2");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9");
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Code(1).success());
        assert!(!ExitStatus::Signaled(0).success());
        let states = [
            (WorkerState::Spawning, "spawning", false),
            (WorkerState::Booting, "booting", false),
            (WorkerState::Ready, "ready", false),
            (WorkerState::Hung, "hung", true),
            (WorkerState::Stopping, "stopping", true),
            (WorkerState::Killed, "killed", true),
        ];
        for (state, name, leaving) in states {
            assert_eq!(state.name(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(state.is_leaving(), leaving, "{name}");
        }
        let kinds = [
            (
                SpawnErrorKind::Resource,
                "resource",
                "the master ran out of resources",
            ),
            (
                SpawnErrorKind::Exec,
                "exec",
                "the program could not be executed",
            ),
            (
                SpawnErrorKind::Other,
                "other",
                "the worker could not be started",
            ),
            (
                SpawnErrorKind::Cancelled,
                "cancelled",
                "the spawn was cancelled",
            ),
        ];
        for (kind, name, text) in kinds {
            assert_eq!(kind.name(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(SpawnError::new(kind).to_string(), text);
            assert_eq!(
                SpawnError::with_errno(kind, 11).to_string(),
                format!("{text} (errno 11)")
            );
        }
    }
}
