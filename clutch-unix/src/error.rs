//! The driver's error type: every variant says what was being done and with what.

use std::fmt;
use std::io;

use clutch_proto::ConfigError;

/// Why clutch could not start or keep running a cluster. Raised before anything is
/// spawned wherever possible (configuration, addresses, binding).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A listen address could not be used.
    Listen(String),
    /// The control socket cannot be created.
    Control(String),
    /// The program to supervise cannot be run.
    Program(String),
    /// A resource limit of the master is too low for the cluster asked for.
    Limit(String),
    /// The environment handed to a worker is not what clutch sets (a worker started by
    /// hand, say).
    Environment(String),
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

    /// True when the error is in what the caller asked for (an invalid configuration),
    /// not in the environment: a command line would report it as a usage error.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Config(_))
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
        match self {
            Self::Config(err) => write!(f, "invalid configuration: {err}"),
            Self::Listen(msg)
            | Self::Environment(msg)
            | Self::Program(msg)
            | Self::Limit(msg)
            | Self::Control(msg) => f.write_str(msg),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(err) => Some(err),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}
