//! A started worker process: waiting for it and signalling it, by pidfd where possible.
//!
//! A pid is only a number, and the kernel reuses numbers: once a process has been reaped,
//! `kill(pid)` may hit a stranger. A **pidfd** refers to one process for as long as it is
//! open, becomes readable when that process exits (so the event loop can wait on it like
//! on a socket), and can be signalled with no reuse race. Where the kernel has no pidfds
//! (before Linux 5.3) [`Process`] falls back to `waitpid(pid)` and `kill(pid)`, and refuses
//! to signal a process it has already reaped; the event loop then learns of exits from
//! `SIGCHLD` and calls [`reap_any_child`] or [`Process::try_wait`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use clutch_proto::{ExitStatus, Signal};
use rustix::io::Errno;
use rustix::process::{self as rp, Pid, WaitId, WaitIdOptions, WaitOptions};

use crate::os::spawn::Child;

/// A child process: its pid, maybe a pidfd, and its exit status once reaped.
///
/// Dropping a `Process` neither kills nor reaps it (a still-running child would become a
/// zombie when it exits, until the master exits): signal it and wait for it first.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl From<Child> for Process {
    fn from(child: Child) -> Self {
        Self::new(child.pid, child.pidfd)
    }
}

impl Process {
    /// Wraps a child of this process. `pidfd`, when given, must refer to the same process.
    #[must_use]
    pub fn new(pid: u32, pidfd: Option<OwnedFd>) -> Self {
        Self {
            pid,
            pidfd,
            status: None,
        }
    }

    /// The process id (for logs and `ps`; do not signal it behind this type's back).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pidfd, to register with mio (`SourceFd(&fd.as_raw_fd())`, `Interest::READABLE`):
    /// it becomes readable when the process exits. `None` without kernel support.
    #[must_use]
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// The exit status, if the process has been reaped (by [`Process::try_wait`],
    /// [`Process::wait`] or [`Process::set_reaped`]).
    #[must_use]
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Reaps the process if it has exited; `Ok(None)` if it is still running. Once reaped,
    /// returns the same status again without a syscall.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_with(true)
    }

    /// Blocks until the process exits, and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            match self.wait_with(false) {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => continue,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Records that the process was reaped elsewhere (by [`reap_any_child`]), so that
    /// [`Process::signal`] will no longer use its pid.
    pub fn set_reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
    }

    fn wait_with(&mut self, nohang: bool) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = if let Some(pidfd) = &self.pidfd {
            let mut options = WaitIdOptions::EXITED;
            if nohang {
                options |= WaitIdOptions::NOHANG;
            }
            rp::waitid(WaitId::PidFd(pidfd.as_fd()), options)?.and_then(|status| {
                match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => Some(ExitStatus::Code(code)),
                    (None, Some(signal)) => Some(ExitStatus::Signaled(signal)),
                    // NOHANG and still running: Linux reports "no child" as a zeroed info.
                    (None, None) => None,
                }
            })
        } else {
            let options = if nohang {
                WaitOptions::NOHANG
            } else {
                WaitOptions::empty()
            };
            rp::waitpid(Some(self.os_pid()?), options)?.and_then(|(_, status)| exit_status(status))
        };
        self.status = status;
        Ok(status)
    }

    /// Sends `signal`. Fails with `ESRCH` (`raw_os_error() == Some(libc::ESRCH)`) once the
    /// process is gone: with a pidfd, the kernel says so; without one, a reaped process is
    /// never signalled, since its pid may already belong to someone else.
    ///
    /// An exited but not yet reaped process (a zombie) accepts signals and ignores them.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let signal = os_signal(signal)?;
        if let Some(pidfd) = &self.pidfd {
            return Ok(rp::pidfd_send_signal(pidfd, signal)?);
        }
        if self.status.is_some() {
            return Err(Errno::SRCH.into());
        }
        Ok(rp::kill_process(self.os_pid()?, signal)?)
    }

    /// SIGKILLs the process and reaps it: for a process that must not be left running
    /// (one the master could not start watching). Returns how it ended.
    pub fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Err(error) = self.signal(Signal::Kill) {
            // Already gone (ESRCH): reaping is all that is left.
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error);
            }
        }
        self.wait()
    }

    fn os_pid(&self) -> io::Result<Pid> {
        os_pid(self.pid)
    }
}

/// The fallback for kernels without pidfds: reaps one exited child of this process, any
/// of them. Call it in a loop after `SIGCHLD` until it returns `Ok(None)` (signals
/// coalesce: one `SIGCHLD` may stand for several exits), and pass each status to the
/// worker's [`Process::set_reaped`].
///
/// Do not use it while children are watched through pidfds: it would reap them under
/// their [`Process::try_wait`]'s feet (which would then fail with `ECHILD`).
pub fn reap_any_child() -> io::Result<Option<(u32, ExitStatus)>> {
    loop {
        // `wait` is `waitpid(-1)`, any child. (Not rustix's `waitpid(None)`, which is
        // `waitpid(0)`: any child *in our process group*, and workers have their own.)
        return match rp::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => match exit_status(status) {
                Some(status) => Ok(Some((pid.as_raw_nonzero().get().unsigned_abs(), status))),
                // Stopped or continued: not an exit (we did not ask for these, but be safe).
                None => continue,
            },
            Ok(None) | Err(Errno::CHILD) => Ok(None),
            Err(Errno::INTR) => continue,
            Err(error) => Err(error.into()),
        };
    }
}

fn exit_status(status: rp::WaitStatus) -> Option<ExitStatus> {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Some(ExitStatus::Code(code)),
        (None, Some(signal)) => Some(ExitStatus::Signaled(signal)),
        (None, None) => None,
    }
}

fn os_pid(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid pid {pid}")))
}

/// The OS signal number of a [`Signal`].
#[must_use]
pub fn signal_number(signal: Signal) -> Option<i32> {
    os_signal(signal).ok().map(rp::Signal::as_raw)
}

/// The [`Signal`] with OS number `number`, if the core knows it (for the driver, which
/// receives raw numbers from its signal handler).
#[must_use]
pub fn signal_from_number(number: i32) -> Option<Signal> {
    Signal::ALL
        .into_iter()
        .find(|signal| signal_number(*signal) == Some(number))
}

fn os_signal(signal: Signal) -> io::Result<rp::Signal> {
    Ok(match signal {
        Signal::Hup => rp::Signal::HUP,
        Signal::Int => rp::Signal::INT,
        Signal::Quit => rp::Signal::QUIT,
        Signal::Term => rp::Signal::TERM,
        Signal::Kill => rp::Signal::KILL,
        Signal::Abrt => rp::Signal::ABORT,
        Signal::Usr1 => rp::Signal::USR1,
        Signal::Usr2 => rp::Signal::USR2,
        Signal::Ttin => rp::Signal::TTIN,
        Signal::Ttou => rp::Signal::TTOU,
        Signal::Winch => rp::Signal::WINCH,
        // `Signal` is non-exhaustive: a signal added to the core must be added here too.
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other} has no OS mapping in clutch-unix"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::spawn::SpawnSpec;
    use crate::testutil::{expect_helper, helper, Reaper};

    fn sleeper() -> Child {
        SpawnSpec::new("/bin/sleep").arg("600").spawn().unwrap()
    }

    #[test]
    fn a_pidfd_process_is_waited_for_and_signalled() {
        let mut process = Reaper::new(sleeper());
        assert!(process.pidfd().is_some(), "this kernel has pidfds");
        assert_eq!(process.try_wait().unwrap(), None);
        process.signal(Signal::Term).unwrap();
        assert_eq!(process.wait().unwrap(), ExitStatus::Signaled(15));
        // Reaped: the same answer again, and signals are refused by the kernel.
        assert_eq!(process.try_wait().unwrap(), Some(ExitStatus::Signaled(15)));
        let error = process.signal(Signal::Term).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn kill_and_reap_leaves_nothing_running() {
        let mut process = Process::from(sleeper());
        let pid = process.pid();
        assert_eq!(process.kill_and_reap().unwrap(), ExitStatus::Signaled(9));
        // Reaped, not a zombie: the pid is gone from /proc.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // A second call finds it gone and says how it ended.
        assert_eq!(process.kill_and_reap().unwrap(), ExitStatus::Signaled(9));
    }

    #[test]
    fn the_pidfd_becomes_readable_when_the_process_exits() {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut process = Reaper::new(sleeper());
        let pidfd = process.pidfd().unwrap();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(&zero)).unwrap(), 0);
        process.signal(Signal::Kill).unwrap();
        let minute = Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        let pidfd = process.pidfd().unwrap();
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(&minute)).unwrap(), 1);
        assert_eq!(process.try_wait().unwrap(), Some(ExitStatus::Signaled(9)));
    }

    #[test]
    fn without_a_pidfd_waitpid_and_kill_are_used() {
        let child = sleeper();
        let mut process = Reaper(Process::new(child.pid, None));
        assert_eq!(process.try_wait().unwrap(), None);
        process.signal(Signal::Usr1).unwrap();
        assert_eq!(process.wait().unwrap(), ExitStatus::Signaled(libc::SIGUSR1));
        // A reaped pid is never signalled: it may be someone else's by now.
        let error = process.signal(Signal::Kill).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn exit_codes_are_reported_both_ways() {
        for with_pidfd in [true, false] {
            let child = SpawnSpec::new("/bin/sh")
                .args(["-c", "exit 42"])
                .spawn()
                .unwrap();
            let pidfd = if with_pidfd { child.pidfd } else { None };
            let mut process = Reaper(Process::new(child.pid, pidfd));
            assert_eq!(process.wait().unwrap(), ExitStatus::Code(42));
        }
    }

    #[test]
    fn every_core_signal_maps_both_ways() {
        for signal in Signal::ALL {
            let number = signal_number(signal).unwrap();
            assert_eq!(signal_from_number(number), Some(signal));
        }
        assert_eq!(signal_number(Signal::Term), Some(libc::SIGTERM));
        assert_eq!(signal_from_number(libc::SIGSEGV), None);
        assert_eq!(signal_from_number(0), None);
    }

    /// `reap_any_child` reaps *any* child, so it runs in a helper process of its own,
    /// away from the other tests' children.
    #[test]
    fn reap_any_child_collects_every_exit() {
        let child = helper(concat!(module_path!(), "::helper_reap_any_child"))
            .spawn()
            .unwrap();
        assert_eq!(Reaper::new(child).wait().unwrap(), ExitStatus::Code(0));
    }

    #[test]
    #[ignore = "helper process, run by reap_any_child_collects_every_exit"]
    fn helper_reap_any_child() {
        expect_helper(concat!(module_path!(), "::helper_reap_any_child"));
        let spawn_exit = |code: &str| {
            let child = SpawnSpec::new("/bin/sh").args(["-c", &format!("exit {code}")]);
            child.spawn().unwrap().pid
        };
        let mut expected = std::collections::BTreeMap::from([
            (spawn_exit("4"), ExitStatus::Code(4)),
            (spawn_exit("5"), ExitStatus::Code(5)),
        ]);
        // Bounded: each child exits at once; allow a minute on a loaded machine.
        for _ in 0..6000 {
            if expected.is_empty() {
                break;
            }
            match reap_any_child().unwrap() {
                Some((pid, status)) => assert_eq!(expected.remove(&pid), Some(status)),
                None => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        assert!(expected.is_empty(), "not reaped: {expected:?}");
        assert_eq!(reap_any_child().unwrap(), None);
    }
}
