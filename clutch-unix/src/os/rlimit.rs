//! Resource limits.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, and returns the
/// new soft limit (`None`: unlimited).
///
/// A master holds two fds per worker (its pidfd and its notification socket) besides the
/// listeners, so the common soft limit of 1024 runs out near 500 workers; the hard limit
/// is usually far higher. Workers do not inherit the raised limit's need, but they do
/// inherit the limit: a server that wants the old soft limit back must lower it itself.
pub fn raise_fd_limit() -> io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current);
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).map_err(|error| {
        io::Error::new(
            io::Error::from(error).kind(),
            format!(
                "cannot raise the open files limit to {:?}: {error}",
                limit.maximum
            ),
        )
    })?;
    Ok(raised.current)
}

/// About how many descriptors a master with `workers` workers holds at most: two per
/// worker (pidfd, notify socket), the listeners, the control socket and its clients,
/// and a fixed part (stdio, epoll, the signal pipe, the log, a spawn's report pipe).
#[must_use]
pub fn fds_needed(workers: usize, listeners: usize, control: bool) -> u64 {
    const FIXED: usize = 32;
    let control = if control {
        1 + crate::control::MAX_CLIENTS
    } else {
        0
    };
    (FIXED + listeners + control + 2 * workers) as u64
}

/// Raises the open-files limit (see [`raise_fd_limit`]) and checks that it leaves room
/// for `need` descriptors; if not, the error names the limit and how to raise it.
pub fn ensure_fd_limit(need: u64, workers: usize) -> Result<(), crate::Error> {
    let limit = match raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("{e}");
            getrlimit(Resource::Nofile).current
        }
    };
    match limit {
        Some(limit) if limit < need => Err(crate::Error::FdLimit {
            limit,
            need,
            workers,
        }),
        _ => Ok(()),
    }
}

/// The open-files limit, for refusing a `scale` that could not be carried out.
#[must_use]
pub fn fd_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raising changes this process's limit, harmlessly for the other tests (only
    /// upwards), but the check itself runs in a helper to see a limit it lowered first.
    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let child = crate::testutil::helper(concat!(module_path!(), "::helper_raise"))
            .spawn()
            .unwrap();
        let status = crate::testutil::Reaper::new(child).wait().unwrap();
        assert_eq!(status, clutch_proto::ExitStatus::Code(0));
    }

    #[test]
    #[ignore = "helper process, run by raises_the_soft_limit_to_the_hard_one"]
    fn helper_raise() {
        crate::testutil::expect_helper(concat!(module_path!(), "::helper_raise"));
        let hard = getrlimit(Resource::Nofile).maximum;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(64),
                maximum: hard,
            },
        )
        .unwrap();
        assert_eq!(raise_fd_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::Nofile).current, hard);
        // Already raised: nothing to do.
        assert_eq!(raise_fd_limit().unwrap(), hard);
    }
}
