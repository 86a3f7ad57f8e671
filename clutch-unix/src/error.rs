//! The driver's error type: every variant says what was being done and with what, and
//! keeps what went wrong underneath as its [`source`](std::error::Error::source).
//!
//! Each error's `Display` says only its own part; the cause is the next link of the
//! chain, never repeated in the text. `{:#}` (the alternate form) prints the whole
//! chain on one line, `what: why: the OS error`, each part once:
//!
//! ```
//! # use clutch_unix::Error;
//! # fn show(error: &Error) {
//! eprintln!("server: {error:#}");
//! # }
//! ```

use std::fmt;
use std::io;
use std::path::PathBuf;

use clutch_proto::ConfigError;

pub use crate::os::credentials::CredentialsError;
use crate::os::listen::{AddrError, BindError};

/// Why clutch could not start or keep running a cluster. Raised before anything is
/// spawned wherever possible (configuration, addresses, binding).
///
/// Print it with `{:#}` to see its whole chain (`Display` alone says only the top).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A listen address does not parse.
    ListenAddr(AddrError),
    /// A listening socket cannot be bound.
    Bind(BindError),
    /// The listening sockets passed in `LISTEN_FDS` (by a service manager to the master,
    /// or by the master to a worker) cannot be taken.
    ListenFds(io::Error),
    /// The control socket cannot be created.
    Control(BindError),
    /// The metrics socket (`--metrics`) cannot be bound.
    Metrics(BindError),
    /// The program to supervise cannot be run.
    Program(ProgramError),
    /// The open-files limit (`RLIMIT_NOFILE`) is too low for the workers asked for.
    FdLimit {
        /// The limit.
        limit: u64,
        /// About how many descriptors the master needs.
        need: u64,
        /// The workers asked for.
        workers: usize,
    },
    /// `CLUTCH_CONTAINMENT` asks for what cannot be had, or is not a known value.
    Containment(ContainmentError),
    /// The environment handed to a worker is not what clutch sets (a worker started by
    /// hand, say).
    Environment(EnvironmentError),
    /// The user or group the workers are to run as cannot be had.
    Credentials(CredentialsError),
    /// A setting of the workers' processes (their directory, umask, environment) cannot
    /// be used.
    WorkerSetting(WorkerSettingError),
    /// A system call failed.
    Io {
        /// What clutch was doing.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// True when the operation could not be done *now* without blocking and may succeed
    /// if tried again (a notification to a master whose socket is full, for one).
    #[must_use]
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock)
    }

    /// True when the error is in what the caller asked for (an invalid configuration or
    /// listen address, an unknown user or group, a bad umask or environment variable),
    /// not in the environment (a missing directory, a master without the privilege to
    /// change users): a command line would report it as a usage error.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Config(_) | Self::ListenAddr(_) => true,
            Self::Credentials(err) => err.is_usage(),
            Self::WorkerSetting(err) => err.is_usage(),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return Chain(self).fmt(f);
        }
        match self {
            Self::Config(_) => f.write_str("invalid configuration"),
            Self::ListenAddr(err) => err.fmt(f),
            Self::Bind(err) => err.fmt(f),
            Self::ListenFds(_) => f.write_str("taking the listening sockets passed in LISTEN_FDS"),
            Self::Control(_) => f.write_str("creating the control socket"),
            Self::Metrics(_) => f.write_str("creating the metrics socket"),
            Self::Program(err) => err.fmt(f),
            Self::FdLimit {
                limit,
                need,
                workers,
            } => write!(
                f,
                "the open-files limit (RLIMIT_NOFILE) is {limit}, too low for {workers} \
                 workers: they need about {need}; raise it (ulimit -n, systemd's \
                 LimitNOFILE=) or run fewer workers"
            ),
            Self::Containment(err) => err.fmt(f),
            Self::Environment(err) => err.fmt(f),
            Self::Credentials(err) => err.fmt(f),
            Self::WorkerSetting(err) => err.fmt(f),
            Self::Io { context, .. } => f.write_str(context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(err) => Some(err),
            Self::ListenAddr(err) => err.source(),
            Self::Bind(err) => err.source(),
            Self::Program(err) => err.source(),
            Self::Control(err) | Self::Metrics(err) => Some(err),
            Self::Credentials(err) => err.source(),
            Self::WorkerSetting(err) => err.source(),
            Self::ListenFds(source) | Self::Io { source, .. } => Some(source),
            Self::FdLimit { .. } | Self::Containment(_) | Self::Environment(_) => None,
        }
    }
}

impl From<CredentialsError> for Error {
    fn from(err: CredentialsError) -> Self {
        Self::Credentials(err)
    }
}

impl From<WorkerSettingError> for Error {
    fn from(err: WorkerSettingError) -> Self {
        Self::WorkerSetting(err)
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}

impl From<AddrError> for Error {
    fn from(err: AddrError) -> Self {
        Self::ListenAddr(err)
    }
}

impl From<BindError> for Error {
    fn from(err: BindError) -> Self {
        Self::Bind(err)
    }
}

/// Why the program to supervise cannot be run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProgramError {
    /// No such file (looked up in `PATH` when the name has no `/`).
    NotFound {
        /// The program as given.
        program: PathBuf,
    },
    /// The file exists but this user cannot execute it.
    NotExecutable {
        /// The file found.
        path: PathBuf,
        /// What `access(X_OK)` said.
        source: io::Error,
    },
    /// Exec mode needs at least one worker.
    NoWorkers,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { program } => write!(f, "{}: program not found", program.display()),
            Self::NotExecutable { path, .. } => write!(f, "{}: not executable", path.display()),
            Self::NoWorkers => f.write_str("workers: at least 1 is needed to supervise a program"),
        }
    }
}

impl std::error::Error for ProgramError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotExecutable { source, .. } => Some(source),
            Self::NotFound { .. } | Self::NoWorkers => None,
        }
    }
}

/// `CLUTCH_CONTAINMENT` (see [`CONTAINMENT_ENV`](crate::CONTAINMENT_ENV)) cannot be
/// honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainmentError {
    /// `=cgroup`, but no worker cgroup can be made here.
    NoCgroup {
        /// What was missing (a diagnostic, not for matching).
        reason: String,
    },
    /// A value other than `auto`, `cgroup` or `group`.
    UnknownSetting {
        /// The value found.
        value: String,
    },
}

impl fmt::Display for ContainmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let var = crate::CONTAINMENT_ENV;
        match self {
            Self::NoCgroup { reason } => {
                write!(
                    f,
                    "{var}=cgroup, but no worker cgroup can be made: {reason}"
                )
            }
            Self::UnknownSetting { value } => {
                write!(f, "{var}={value:?}: use auto, cgroup or group")
            }
        }
    }
}

impl std::error::Error for ContainmentError {}

/// A setting of the workers' processes that cannot be used: found at start, before
/// anything is spawned.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerSettingError {
    /// The working directory cannot be used (it does not exist, or is not a directory).
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The workers' user may not enter the working directory (by the mode bits of it or
    /// of a directory above it).
    DirectoryNotEnterable {
        /// The directory.
        path: PathBuf,
        /// Who may not (`user "nobody" (uid 65534, gid 65534)`).
        who: String,
    },
    /// The workers' user may not execute the program (by the mode bits of it or of a
    /// directory above it).
    ProgramNotExecutable {
        /// The program.
        path: PathBuf,
        /// Who may not.
        who: String,
    },
    /// A umask above `0o777`.
    Umask {
        /// The value given.
        mask: u32,
    },
    /// An environment variable name that is empty or holds `=` or NUL (or a value with a
    /// NUL).
    EnvName {
        /// The name given.
        name: String,
    },
    /// A variable clutch sets itself (`LISTEN_FDS`, `NOTIFY_SOCKET`, …).
    EnvManaged {
        /// The name given.
        name: String,
    },
    /// A user or group for workers that do not exist: with `workers(0)` the application
    /// runs in the master's own process.
    InProcess,
}

impl WorkerSettingError {
    /// True when the mistake is in the setting itself, not in the system.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            Self::Directory { .. }
                | Self::DirectoryNotEnterable { .. }
                | Self::ProgramNotExecutable { .. }
        )
    }
}

impl fmt::Display for WorkerSettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory { path, .. } => {
                write!(f, "cannot use {} as the workers' directory", path.display())
            }
            Self::DirectoryNotEnterable { path, who } => write!(
                f,
                "cannot use {} as the workers' directory: {who} may not enter it",
                path.display()
            ),
            Self::ProgramNotExecutable { path, who } => write!(
                f,
                "{}: not executable by the workers' user, {who}",
                path.display()
            ),
            Self::Umask { mask } => write!(f, "umask: {mask:o} is not a mode (at most 777)"),
            Self::EnvName { name } => write!(f, "env: {name:?} is not a variable name"),
            Self::EnvManaged { name } => {
                write!(f, "env: {name} is set by clutch itself, for each worker")
            }
            Self::InProcess => f.write_str(
                "user: with no workers the application runs in the master's own process, \
                 whose user does not change",
            ),
        }
    }
}

impl std::error::Error for WorkerSettingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Directory { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A worker's environment lacks what its master sets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// The variable is not set.
    Missing {
        /// Its name.
        name: &'static str,
    },
    /// The variable is not a whole number.
    NotANumber {
        /// Its name.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for EnvironmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { name } => write!(f, "{name} is not set"),
            Self::NotANumber { name, value } => write!(f, "{name}={value:?} is not a number"),
        }
    }
}

impl std::error::Error for EnvironmentError {}

/// An error and its sources on one line, `top: cause: root`, each said once.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The top without the alternate flag (which would recurse here).
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(error) = next {
            write!(f, ": {error}")?;
            next = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_the_os_error_once() {
        let bind = crate::os::listen::bind(
            &"unix:/no/such/dir/s.sock".parse().unwrap(),
            &crate::os::listen::ListenOptions::default(),
        )
        .unwrap_err();
        let error = Error::Control(bind);
        let chain = format!("{error:#}");
        assert_eq!(
            chain,
            "creating the control socket: cannot listen on unix:/no/such/dir/s.sock: No such \
             file or directory (os error 2)"
        );
        assert_eq!(chain.matches("No such file").count(), 1);
        assert_eq!(error.to_string(), "creating the control socket");
        let cause = std::error::Error::source(&error).unwrap();
        assert!(cause.downcast_ref::<BindError>().is_some());
        let root = cause.source().unwrap();
        assert_eq!(
            root.downcast_ref::<io::Error>().unwrap().kind(),
            io::ErrorKind::NotFound
        );
    }

    /// The workers' settings: the setting's own mistakes are usage errors, what the
    /// system says of them is not; a directory's OS error is its cause, said once.
    #[test]
    fn worker_settings_say_whose_fault() {
        let usage = [
            Error::from(WorkerSettingError::Umask { mask: 0o1000 }),
            Error::from(WorkerSettingError::EnvName { name: "A=B".into() }),
            Error::from(WorkerSettingError::EnvManaged {
                name: "LISTEN_FDS".into(),
            }),
            Error::from(WorkerSettingError::InProcess),
            Error::from(CredentialsError::UnknownUser { user: "x".into() }),
            Error::from(CredentialsError::UnknownGroup { group: "x".into() }),
        ];
        for error in &usage {
            assert!(error.is_usage(), "{error:#}");
        }
        let system = [
            Error::from(WorkerSettingError::Directory {
                path: "/no/such".into(),
                source: io::ErrorKind::NotFound.into(),
            }),
            Error::from(WorkerSettingError::DirectoryNotEnterable {
                path: "/root".into(),
                who: "uid 1".into(),
            }),
            Error::from(CredentialsError::NotRoot {
                target: "uid 1, gid 1".into(),
                euid: 1000,
            }),
        ];
        for error in &system {
            assert!(!error.is_usage(), "{error:#}");
        }
        assert_eq!(
            format!("{:#}", system[0]),
            "cannot use /no/such as the workers' directory: entity not found"
        );
        assert_eq!(
            format!("{:#}", usage[0]),
            "umask: 1000 is not a mode (at most 777)"
        );
    }

    #[test]
    fn queries_still_answer() {
        let would_block = Error::io("reporting READY=1", io::ErrorKind::WouldBlock.into());
        assert!(would_block.is_would_block());
        assert!(!would_block.is_usage());
        let addr = Error::from(
            "localhost"
                .parse::<crate::os::listen::ListenAddr>()
                .unwrap_err(),
        );
        assert!(addr.is_usage());
        assert_eq!(
            format!("{addr:#}"),
            addr.to_string(),
            "a parse error has no cause below it"
        );
    }
}
