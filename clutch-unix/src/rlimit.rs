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

#[cfg(test)]
mod tests {
    use super::*;

    /// Raising changes this process's limit, harmlessly for the other tests (only
    /// upwards), but the check itself runs in a helper to see a limit it lowered first.
    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let child = crate::testutil::helper("rlimit::tests::helper_raise")
            .spawn()
            .unwrap();
        let status = crate::testutil::Reaper::new(child).wait().unwrap();
        assert_eq!(status, clutch_proto::ExitStatus::Code(0));
    }

    #[test]
    fn helper_raise() {
        if !crate::testutil::is_helper("rlimit::tests::helper_raise") {
            return;
        }
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
