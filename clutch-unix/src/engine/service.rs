//! The master (or an in-process application, or a library-mode worker) talking to *its*
//! service manager: systemd's `NOTIFY_SOCKET`, or the clutch master's for a worker.

use std::ffi::OsString;
use std::io;
use std::time::Duration;

use clutch_proto::Notice;

/// How long the master waits for room in its service manager's full socket before it
/// gives up on a `READY=1`, `RELOADING=1` or `STOPPING=1` (and logs a warning).
const STATE_CHANGE_WAIT: Duration = Duration::from_millis(250);

/// Where this process's sd_notify messages go, captured once at startup.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceNotifier {
    socket: Option<OsString>,
}

impl ServiceNotifier {
    /// Reads `$NOTIFY_SOCKET`; no socket means every send is a successful no-op.
    pub(crate) fn from_env() -> Self {
        Self {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
        }
    }

    /// Messages to `socket` (an upgrade's old master's channel).
    pub(crate) fn to(socket: OsString) -> Self {
        Self {
            socket: Some(socket),
        }
    }

    /// The socket, if there is one (an upgrade's new master gets the same).
    pub(crate) fn socket(&self) -> Option<&OsString> {
        self.socket.as_ref()
    }

    /// Sends one sd_notify datagram (`KEY=VALUE` lines), never blocking: a manager whose
    /// socket is full is a `WouldBlock` error at once.
    pub(crate) fn send_raw(&self, state: &str) -> io::Result<()> {
        match &self.socket {
            Some(socket) => crate::os::notify::send_to(socket, state),
            None => Ok(()),
        }
    }

    /// Reports a core [`Notice`]; a failure is logged, never fatal (a service manager
    /// that went away must not take the cluster down with it).
    pub(crate) fn send(&self, notice: &Notice) {
        if self.socket.is_none() {
            return;
        }
        let state = match notice {
            Notice::Ready => "READY=1".to_owned(),
            // Type=notify-reload requires MONOTONIC_USEC with RELOADING=1 (systemd ≥ 253).
            Notice::Reloading => format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()),
            Notice::Stopping => "STOPPING=1".to_owned(),
            Notice::Watchdog => "WATCHDOG=1".to_owned(),
            Notice::Status(line) => format!("STATUS={line}"),
            // The upgrade's new master is the main process now, and the reload ends: in
            // one message, which NotifyAccess=main accepts from the old master (the main
            // process until this very message).
            Notice::MainPid(pid) => format!("MAINPID={pid}\nREADY=1"),
            other => {
                tracing::debug!(?other, "no sd_notify form for this notice");
                return;
            }
        };
        // A state change is worth a short wait for a busy manager (systemd waits for the
        // READY=1 that ends a reload); a ping or a status line is not. Either way the
        // master's loop is never held for long.
        let sent = match (&self.socket, notice) {
            (
                Some(socket),
                Notice::Ready | Notice::Reloading | Notice::Stopping | Notice::MainPid(_),
            ) => crate::os::notify::send_to_within(socket, &state, STATE_CHANGE_WAIT),
            _ => self.send_raw(&state),
        };
        match sent {
            Ok(()) => {}
            // A manager that is not reading right now: the next ping will do.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && *notice == Notice::Watchdog => {
                tracing::debug!("telling the service manager {state:?}: {e}");
            }
            Err(e) => tracing::warn!("telling the service manager {state:?}: {e}"),
        }
    }
}

/// How often to ping the service manager's watchdog: half of `WATCHDOG_USEC`, if it is
/// set for this process (`WATCHDOG_PID` unset or ours), as sd_watchdog_enabled(3) says.
pub(crate) fn watchdog_interval_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}
