//! The cluster's life as one value: serving (perhaps with a rollout), stopping, exited.

use super::rollout::Rollout;
use super::shutdown::Shutdown;

/// The cluster's life: serving (perhaps with a rolling restart under way), shutting
/// down, or exited. A rollout cannot outlive the shutdown's start.
#[derive(Debug)]
pub(super) enum Lifecycle {
    /// Serving, with the rolling restart under way if there is one.
    Serving(Option<Rollout>),
    /// Shutting down.
    Stopping(Shutdown),
    /// The exit action went out: inert.
    Exited,
}

impl Lifecycle {
    pub(super) fn rollout(&self) -> Option<&Rollout> {
        match self {
            Self::Serving(rollout) => rollout.as_ref(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    pub(super) fn rollout_mut(&mut self) -> Option<&mut Rollout> {
        match self {
            Self::Serving(rollout) => rollout.as_mut(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    /// Ends the rollout under way, if any, handing it over.
    pub(super) fn take_rollout(&mut self) -> Option<Rollout> {
        match self {
            Self::Serving(rollout) => rollout.take(),
            Self::Stopping(_) | Self::Exited => None,
        }
    }

    pub(super) fn stopping(&self) -> Option<&Shutdown> {
        match self {
            Self::Stopping(shutdown) => Some(shutdown),
            Self::Serving(_) | Self::Exited => None,
        }
    }

    pub(super) fn stopping_mut(&mut self) -> Option<&mut Shutdown> {
        match self {
            Self::Stopping(shutdown) => Some(shutdown),
            Self::Serving(_) | Self::Exited => None,
        }
    }

    pub(super) fn is_stopping(&self) -> bool {
        matches!(self, Self::Stopping(_))
    }

    pub(super) fn is_exited(&self) -> bool {
        matches!(self, Self::Exited)
    }
}
