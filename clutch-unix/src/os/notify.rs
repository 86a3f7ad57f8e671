//! The sd_notify protocol, from both ends.
//!
//! A service tells its manager how it is doing by sending datagrams of newline-separated
//! `KEY=VALUE` lines (`READY=1`, `STATUS=…`, `WATCHDOG=1`) to the unix socket named by
//! `$NOTIFY_SOCKET`. clutch speaks it in both roles:
//!
//! - **as the manager of its workers**: [`NotifySockets`] gives each worker a datagram
//!   socket of its own ([`NotifyListener`]). A message is attributed by the socket it
//!   arrives on, not by the sender's pid, so it counts for the right worker even when a
//!   helper process of that worker (`systemd-notify` run from a shell script) sends it.
//! - **as a service itself**: [`notify`] and [`notify_barrier`] are the client side, for a
//!   worker, or for a master reporting to its own service manager. `$NOTIFY_SOCKET` may
//!   be a path or an `@name` in the abstract namespace, as sd_notify(3) says.
//!
//! ## Where the workers' sockets are
//!
//! By default ([`NotifySocketKind::Abstract`]) in Linux's **abstract namespace**:
//! `NOTIFY_SOCKET=@clutch/<master pid>/<random>/worker`. The name says whose it is
//! (`ss -xl | grep @clutch/`); the 64 random bits, drawn for each socket, make it unique
//! among masters (of other pid namespaces too) and impossible to bind before the master
//! does (which would make the worker's spawn fail). Such a socket has no inode: binding
//! it creates no file and closing it is all the cleaning there is — the name vanishes
//! with the master's descriptor, so even a SIGKILLed master leaves nothing behind. On a
//! mass respawn that is a `bind(2)` without `mknod` and no `unlink(2)` per worker; and
//! where the workers have cgroups, not even that: the socket of a worker whose whole
//! tree is gone (`populated 0`) is emptied and handed to the next worker
//! ([`NotifySockets::recycle`]), so a name is no worker's for good — the worker's own
//! `NOTIFY_SOCKET` (in `/proc/<pid>/environ`) says which socket is whose.
//!
//! Else ([`NotifySocketKind::Directory`], or as a fallback, see
//! [`NotifySockets::create_for`]) in a **private directory** ([`NotifyDir`]):
//! `NOTIFY_SOCKET=<dir>/worker-<id>.sock`, on a tmpfs where there is one, mode 0700. When
//! the workers run as another user, the directory is 0710 with the workers' group, so
//! that only they (and we) can pass through it, and each socket is the workers' user's,
//! mode 0600. A SIGKILLed master leaves its directory, which the next master removes
//! ([`remove_stale_dirs`]; it does so in abstract mode too, for older versions' and
//! directory mode's leftovers).
//!
//! ## Who can speak for a worker
//!
//! Either way a datagram counts only when its `SCM_CREDENTIALS` (filled in by the kernel,
//! not the sender) say our user, root, or, for a socket of workers of another user, that
//! user; and a process of the master's pid namespace, or one below it (a sender outside
//! has pid 0: no process of a worker's tree is there). Anything else is dropped, and the
//! driver logs it ([`Rejection`], rate-limited per worker). So nobody but the workers'
//! own user and root can speak for a worker, in both modes. What the directory adds is
//! that the kernel stops other users before delivery:
//!
//! | | abstract namespace | directory |
//! |---|---|---|
//! | who can *send* to a worker's socket | any process in the master's network namespace | those that can pass the directory (our user; for workers of another user their group, and the socket's mode lets only their user write), and root |
//! | whose datagrams *count* | the workers' user and root, in our pid namespace | the same |
//! | another user's datagram | delivered, read, dropped and logged | refused by `sendto` (`EACCES`) |
//! | another user flooding a worker's socket | possible: it competes with the worker's own messages for the socket's queue (`net.unix.max_dgram_qlen`) and costs the master a bounded read per turn (64 datagrams per worker) | impossible |
//! | the name | listed in `/proc/net/unix` to everyone in the network namespace: no secret | the path is listed there too, but only those allowed in can use it |
//! | a worker in another network namespace (`ip netns exec`, `unshare --net`, a container runtime) | cannot reach it: abstract names belong to a network namespace | reaches it if the path is visible in its mount namespace |
//! | a worker in another mount namespace or a chroot | reaches it | only if the directory is visible there |
//! | a master in a container with a network namespace of its own | only that namespace's processes can send | a `/dev/shm` or `$TMPDIR` shared with the host is shared |
//! | what a SIGKILLed master leaves | nothing | the directory and its socket files, until the next master's start |
//!
//! Processes of the workers' own user can reach every worker's socket in both modes (the
//! 0700 directory lets our user in, and all workers of a cluster share a uid): the
//! workers of one user are one trust domain. clutch never puts a worker in another
//! network namespace itself; a worker that enters one needs
//! [`NotifySocketKind::Directory`].
//!
//! [`parse_notify`] is pure and total (any bytes in, a [`NotifyMessage`] out), and is
//! fuzzed.

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::net::{
    self as rn, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};

use crate::os::credentials::Credentials;

/// What one notification datagram said. Every field is the protocol's key of the same
/// name; keys absent from the datagram are `false` / `None`. When a key repeats, the last
/// value wins. Unknown keys are ignored (the protocol has more, such as `FDSTORE=1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyMessage {
    /// `READY=1`: startup is complete.
    pub ready: bool,
    /// `STOPPING=1`: shutting down.
    pub stopping: bool,
    /// `RELOADING=1`: reloading its configuration (`READY=1` follows when done).
    pub reloading: bool,
    /// `WATCHDOG=1`: a heartbeat.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the service asks to be treated as hung.
    pub watchdog_trigger: bool,
    /// `BARRIER=1`: a synchronisation point; the fd that comes with it is closed by the
    /// receiver, which tells the sender that everything before it was processed.
    pub barrier: bool,
    /// `STATUS=…`: a free-form status line (invalid UTF-8 replaced by U+FFFD).
    pub status: Option<String>,
    /// `MAINPID=…`: the service's main pid, if it is not the process that was started.
    pub main_pid: Option<u32>,
    /// `ERRNO=…`: the errno the service failed with.
    pub errno: Option<i32>,
    /// `EXTEND_TIMEOUT_USEC=…`: asks for more time for the current start/stop.
    pub extend_timeout_usec: Option<u64>,
    /// `MONOTONIC_USEC=…`: `CLOCK_MONOTONIC` when a reload started (with `RELOADING=1`).
    pub monotonic_usec: Option<u64>,
    /// `WATCHDOG_USEC=…`: the service changes its own watchdog interval.
    pub watchdog_usec: Option<u64>,
    /// `X_CLUTCH_RECYCLE=1` (clutch's own, in the `X_` space sd_notify leaves to
    /// applications): the worker asks to be recycled — replaced by a fresh worker in its
    /// slot, successor first, then stopped gracefully.
    pub recycle: bool,
}

impl NotifyMessage {
    /// True when the datagram held no key we know.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses one datagram. Total and linear: any bytes give a message, lines that are not a
/// known `KEY=VALUE` (or have a malformed value) are skipped.
#[must_use]
pub fn parse_notify(datagram: &[u8]) -> NotifyMessage {
    let mut message = NotifyMessage::default();
    for line in datagram.split(|byte| *byte == b'\n') {
        let Some(eq) = line.iter().position(|byte| *byte == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => message.ready |= value == b"1",
            b"STOPPING" => message.stopping |= value == b"1",
            b"RELOADING" => message.reloading |= value == b"1",
            b"BARRIER" => message.barrier |= value == b"1",
            b"WATCHDOG" => match value {
                b"1" => message.watchdog = true,
                b"trigger" => message.watchdog_trigger = true,
                _ => {}
            },
            b"STATUS" => message.status = Some(String::from_utf8_lossy(value).into_owned()),
            b"MAINPID" => set(&mut message.main_pid, number(value).filter(|pid| *pid > 0)),
            b"ERRNO" => set(&mut message.errno, number(value)),
            b"EXTEND_TIMEOUT_USEC" => set(&mut message.extend_timeout_usec, number(value)),
            b"MONOTONIC_USEC" => set(&mut message.monotonic_usec, number(value)),
            b"WATCHDOG_USEC" => set(&mut message.watchdog_usec, number(value)),
            b"X_CLUTCH_RECYCLE" => message.recycle |= value == b"1",
            _ => {}
        }
    }
    message
}

fn set<T>(field: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *field = value;
    }
}

/// A decimal number: ASCII digits only (no sign, no spaces), and it must fit.
fn number<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The largest datagram we read, as systemd (`NOTIFY_BUFFER_MAX`); longer ones are dropped.
const DATAGRAM_MAX: usize = 4096;

/// The most fds one datagram can carry (the kernel's `SCM_MAX_FD`).
const FDS_MAX: usize = 253;

/// Where the workers' notification sockets are (see the module docs for what each
/// keeps private).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotifySocketKind {
    /// In the abstract namespace, `NOTIFY_SOCKET=@clutch/<master pid>/<random>/worker`:
    /// no file to create or remove, nothing left behind by a master that is killed. Where
    /// such a socket cannot be bound, or its senders' uids cannot be trusted (see
    /// [`NotifySockets::create_for`]), the directory is used instead.
    #[default]
    Abstract,
    /// In a private directory ([`NotifyDir`]), `NOTIFY_SOCKET=<dir>/worker-<id>.sock`: for
    /// workers that enter a network namespace of their own (an abstract name does not
    /// reach out of one), sd_notify clients that know only paths, and hosts whose other
    /// users must not even be able to send to a worker's socket.
    Directory,
}

/// The workers' notification sockets, one per worker ([`bind_worker`](Self::bind_worker)),
/// in the abstract namespace or in a [`NotifyDir`] ([`NotifySocketKind`]).
#[derive(Debug)]
pub struct NotifySockets {
    place: Place,
    /// Sockets of workers whose trees are gone, for the next workers
    /// ([`recycle`](Self::recycle)).
    spare: Vec<NotifyListener>,
}

#[derive(Debug)]
enum Place {
    Abstract {
        /// Whose datagrams count on a worker's socket (besides root's).
        workers_uid: rustix::process::Uid,
    },
    Directory(NotifyDir),
}

impl NotifySockets {
    /// Sockets for workers of our own user, in the abstract namespace where it is private
    /// enough (see [`create_for`](Self::create_for)).
    pub fn create() -> io::Result<Self> {
        Self::create_for(NotifySocketKind::Abstract, None)
    }

    /// Sockets of `kind` for workers that run with `workers`' credentials (`None`: ours).
    ///
    /// [`NotifySocketKind::Abstract`] falls back to the directory, with a line in the log
    /// that says why, when
    ///
    /// - no socket can be bound in the abstract namespace (a sandbox or a security
    ///   module's policy may forbid it), or
    /// - the master runs in a user namespace that does not map every uid, and a uid whose
    ///   datagrams count (the workers', or root) is the kernel's overflow uid
    ///   (`/proc/sys/kernel/overflowuid`, 65534 by default, `nobody`): the kernel reports
    ///   the senders it cannot map as that uid, so nobody's workers could not be told
    ///   apart from any unmapped process of the network namespace. (A directory stops
    ///   those at its permissions.)
    ///
    /// Directories that dead masters left (this version's in directory mode, older
    /// versions' always) are removed from `$XDG_RUNTIME_DIR`, `/dev/shm` and the temporary
    /// directory either way: see [`remove_stale_dirs`].
    pub fn create_for(kind: NotifySocketKind, workers: Option<&Credentials>) -> io::Result<Self> {
        let own_uid = rustix::process::geteuid().as_raw();
        let workers = workers.filter(|c| c.uid() != own_uid);
        if kind == NotifySocketKind::Abstract {
            let workers_uid = workers.map_or_else(rustix::process::getuid, |c| {
                rustix::process::Uid::from_raw(c.uid())
            });
            match abstract_refused(workers_uid.as_raw()) {
                None => {
                    for parent in dir_parents() {
                        remove_stale_dirs(&parent);
                    }
                    return Ok(Self {
                        place: Place::Abstract { workers_uid },
                        spare: Vec::new(),
                    });
                }
                Some(why) => {
                    tracing::info!("the workers' notify sockets are in a directory: {why}");
                }
            }
        }
        NotifyDir::create_for(workers).map(Self::in_dir)
    }

    /// Sockets in `dir`.
    #[must_use]
    pub fn in_dir(dir: NotifyDir) -> Self {
        Self {
            place: Place::Directory(dir),
            spare: Vec::new(),
        }
    }

    /// Where the sockets are: after a fallback, [`NotifySocketKind::Directory`].
    #[must_use]
    pub fn kind(&self) -> NotifySocketKind {
        match self.place {
            Place::Abstract { .. } => NotifySocketKind::Abstract,
            Place::Directory(_) => NotifySocketKind::Directory,
        }
    }

    /// The directory, for sockets in one.
    #[must_use]
    pub fn dir(&self) -> Option<&NotifyDir> {
        match &self.place {
            Place::Abstract { .. } => None,
            Place::Directory(dir) => Some(dir),
        }
    }

    /// The notification socket of worker `worker_id` (ids are never reused): in the
    /// abstract namespace, a [recycled](Self::recycle) one, emptied of what was queued in
    /// it, or a new one, `@clutch/<master pid>/<random>/worker`; else as
    /// [`NotifyDir::bind_worker`]. Only the workers' user's datagrams (and root's) count
    /// on it.
    pub fn bind_worker(&mut self, worker_id: u64) -> io::Result<NotifyListener> {
        while let Some(listener) = self.spare.pop() {
            if listener.discard_queued() {
                return Ok(listener);
            }
            // Something keeps sending to it: closed, and its name with it.
        }
        match &self.place {
            Place::Abstract { workers_uid } => {
                let mut listener = NotifyListener::bind_abstract_unique("worker")?;
                listener.uid = *workers_uid;
                Ok(listener)
            }
            Place::Directory(dir) => dir.bind_worker(worker_id),
        }
    }

    /// Takes back the socket of a worker whose whole tree is known to be gone (its
    /// cgroup read `populated 0`), to give it to a later worker instead of creating a
    /// socket, binding it and closing this one: three syscalls and a name fewer per
    /// respawn. The caller's word that the tree is gone is what keeps a socket private to
    /// its worker: no process of an earlier worker is left to send to it, and what they
    /// sent before they ended is discarded when it is handed out again. Only sockets in
    /// the abstract namespace are kept (a directory's are named after their worker), and
    /// at most `keep` (the cluster's target); the others are closed.
    pub fn recycle(&mut self, mut listener: NotifyListener, keep: usize) {
        if listener.is_abstract() && self.spare.len() < keep {
            listener.recycled = true;
            self.spare.push(listener);
        }
    }

    /// A socket named after `what` for a process of our own user (an upgrade's new
    /// master): `@clutch/<master pid>/<random>/<what>`, or `<dir>/<what>.sock`.
    pub(crate) fn bind_own(&self, what: &str) -> io::Result<NotifyListener> {
        match &self.place {
            Place::Abstract { .. } => NotifyListener::bind_abstract_unique(what),
            Place::Directory(dir) => NotifyListener::bind(dir.path().join(format!("{what}.sock"))),
        }
    }
}

/// Why the abstract namespace will not do for sockets whose datagrams count from
/// `workers_uid` and root, or `None` when it will.
fn abstract_refused(workers_uid: u32) -> Option<String> {
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(65534);
    if senders_may_pass_as(&uid_map, overflow, &[workers_uid, 0]) {
        return Some(format!(
            "this user namespace does not map every uid, and the kernel reports the senders \
             it cannot map as uid {overflow}, whose datagrams would count"
        ));
    }
    // A probe: what the first worker's socket would meet.
    match NotifyListener::bind_abstract_unique("probe") {
        Ok(probe) => {
            drop(probe);
            None
        }
        Err(error) => Some(error.to_string()),
    }
}

/// Whether a sender that the user namespace of `uid_map` (`/proc/self/uid_map`'s text)
/// does not map, and which its credentials therefore show as `overflow`, would pass as
/// one of `accepted`. Not when the namespace maps every uid (the initial one does:
/// `0 0 4294967295`).
fn senders_may_pass_as(uid_map: &str, overflow: u32, accepted: &[u32]) -> bool {
    let mapped: u64 = uid_map
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    mapped < u64::from(u32::MAX) && accepted.contains(&overflow)
}

/// Where notify directories are made: `$XDG_RUNTIME_DIR` (if absolute), `/dev/shm`, the
/// temporary directory; each once, those that exist.
fn dir_parents() -> Vec<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let mut parents: Vec<PathBuf> = Vec::new();
    for parent in [runtime, Some("/dev/shm".into()), Some(std::env::temp_dir())]
        .into_iter()
        .flatten()
    {
        if parent.is_dir() && !parents.contains(&parent) {
            parents.push(parent);
        }
    }
    parents
}

/// Eight bytes of the kernel's randomness.
fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => {
                return Err(io::Error::new(
                    io::Error::from(error).kind(),
                    format!("cannot draw a random socket name: {error}"),
                ))
            }
        }
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// A private directory for the workers' notification sockets, removed (with everything
/// in it) when dropped.
#[derive(Debug)]
pub struct NotifyDir {
    path: PathBuf,
    /// The workers' uid and gid, when they run as another user than ours.
    workers: Option<(u32, u32)>,
}

impl NotifyDir {
    /// Creates the directory on a tmpfs when one is usable: `$XDG_RUNTIME_DIR` (the
    /// per-user runtime directory, the systemd convention), else `/dev/shm`; else under
    /// [`std::env::temp_dir`]. A tmpfs matters when workers come and go by the hundred:
    /// on ext4, creating a socket file allocates an inode, and the allocator's search past
    /// recently freed ones cost a 1024-worker mass respawn 39% of the master's time.
    pub fn create() -> io::Result<Self> {
        Self::create_for(None)
    }

    /// [`create`](Self::create), for workers that run with `workers`' credentials: the
    /// parent must then be one their user can pass through (by its mode bits, and every
    /// ancestor's), which root's `$XDG_RUNTIME_DIR` (`/run/user/0`, 0700) is not; the
    /// directory is made theirs to enter and each socket theirs to write to (see the
    /// module docs). `None`, or the credentials of our own user: as [`create`](Self::create).
    pub fn create_for(workers: Option<&Credentials>) -> io::Result<Self> {
        let own_uid = rustix::process::geteuid().as_raw();
        let workers = workers.filter(|c| c.uid() != own_uid);
        let reachable = |parent: &Path| workers.map_or(true, |c| c.can_enter(parent));
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let tmpfs = [runtime, Some(PathBuf::from("/dev/shm"))];
        for parent in tmpfs
            .into_iter()
            .flatten()
            .filter(|p| p.is_absolute() && p.is_dir())
        {
            if !reachable(&parent) {
                tracing::debug!(
                    "{} not usable: the workers cannot enter it",
                    parent.display()
                );
                continue;
            }
            match Self::create_in_for(&parent, workers) {
                Ok(dir) => return Ok(dir),
                Err(error) => tracing::debug!(%error, "{} not usable", parent.display()),
            }
        }
        let temp = std::env::temp_dir();
        if !reachable(&temp) {
            let who = workers.map(Credentials::describe).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "no directory for the workers' notify sockets that {who} can enter: not \
                     $XDG_RUNTIME_DIR, /dev/shm nor {}",
                    temp.display()
                ),
            ));
        }
        Self::create_in_for(&temp, workers)
    }

    /// Creates the directory, `clutch-<pid>-<n>` with mode 0700, inside `parent`.
    ///
    /// First removes from `parent` the directories that dead masters left there (a
    /// master that was SIGKILLed cannot remove its own): see [`remove_stale_dirs`].
    pub fn create_in(parent: &Path) -> io::Result<Self> {
        Self::create_in_for(parent, None)
    }

    /// [`create_in`](Self::create_in); with `workers`, the directory is 0710 and its group
    /// theirs, and [`bind_worker`](Self::bind_worker) gives each socket to their user.
    pub fn create_in_for(parent: &Path, workers: Option<&Credentials>) -> io::Result<Self> {
        remove_stale_dirs(parent);
        let workers = workers.map(|c| (c.uid(), c.gid()));
        let mode = if workers.is_some() { 0o710 } else { 0o700 };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        // mkdir is atomic and fails if the name exists, so we only ever use a directory we
        // created; the retries step over names someone else took (in a shared /tmp).
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("clutch-{}-{salt:x}{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = Self { path, workers };
                    if let Some((_, gid)) = workers {
                        // Still 0700 while it changes hands: nobody else is in it yet.
                        std::os::unix::fs::lchown(&dir.path, None, Some(gid))
                            .map_err(|e| context(e, "cannot give the workers' group", &dir.path))?;
                    }
                    // mkdir's mode is filtered by the umask: say exactly what we mean.
                    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| context(e, "cannot set the mode of", &dir.path))?;
                    return Ok(dir);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(context(error, "cannot create a directory in", parent)),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cannot create a directory in {}: every name tried exists",
                parent.display()
            ),
        ))
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Binds the notification socket of worker `worker_id` (ids are never reused), at
    /// `<dir>/worker-<id>.sock`. For workers of another user, the socket is theirs, mode
    /// 0600, and only their datagrams (and root's) count.
    pub fn bind_worker(&self, worker_id: u64) -> io::Result<NotifyListener> {
        let mut listener =
            NotifyListener::bind(self.path.join(format!("worker-{worker_id}.sock")))?;
        if let Some((uid, gid)) = self.workers {
            std::os::unix::fs::lchown(&listener.path, Some(uid), Some(gid))
                .map_err(|e| context(e, "cannot give the workers' user", &listener.path))?;
            std::fs::set_permissions(&listener.path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| context(e, "cannot set the mode of", &listener.path))?;
            listener.uid = rustix::process::Uid::from_raw(uid);
        }
        Ok(listener)
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the notify directory");
        }
    }
}

/// How far after a notify directory's last change a process must have started for its
/// pid to count as reused: it covers the clock-tick granularity of `/proc/<pid>/stat`
/// and clock adjustments between the two clocks it is compared on.
const PID_REUSE_SLACK: Duration = Duration::from_secs(2);

/// Removes the notify directories of dead masters from `parent`, and returns how many.
///
/// A directory is removed only when all of these hold:
///
/// - its name is clutch's, `clutch-<pid>-<hex digits>`, and `<pid>` is not ours;
/// - `symlink_metadata` says it is a directory (not a symlink), owned by our effective
///   uid, with mode exactly 0700 or 0710 (as [`NotifyDir::create_in_for`] makes them);
/// - its master is gone: no process has that pid, or the process is a zombie, or it
///   started (`/proc/<pid>/stat`'s start time) more than `PID_REUSE_SLACK` after the
///   directory last changed (its ctime: set when the master made it and each time it
///   bound or removed a worker's socket in it) — a process that started after that
///   cannot be the master that made it, so the pid was reused. When the start time
///   cannot be read, the process counts as the owner;
/// - no socket in it is live (a connect is refused): a master in another pid namespace
///   that shares `parent` looks dead from here, but its workers' sockets answer.
///
/// In a pid namespace of its own (a container, `unshare --pid`), whose pids say nothing
/// of the masters outside that share `parent` (a `/dev/shm` not made private), a
/// directory must also hold at least one socket, all of them refusing: a live master
/// outside has an empty directory for a moment (before its first worker, or while it
/// replaces the only one), and must not lose it then. A master that was killed leaves
/// its sockets behind, so its directory still goes.
///
/// `remove_dir_all` does not follow symlinks (not at the top, nor inside), so a swapped
/// entry cannot make it remove anything outside. Errors are logged and skipped: cleaning
/// up never stops a master from starting.
pub fn remove_stale_dirs(parent: &Path) -> usize {
    remove_stale_dirs_from(parent, crate::os::contain::in_nested_pid_namespace())
}

fn remove_stale_dirs_from(parent: &Path, nested: bool) -> usize {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(%error, "cannot look for stale notify directories in {}", parent.display());
            return 0;
        }
    };
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = dir_owner_pid(&entry.file_name()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let path = entry.path();
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !metadata.file_type().is_dir()
            || metadata.uid() != uid
            || !matches!(metadata.mode() & 0o7777, 0o700 | 0o710)
        {
            continue;
        }
        let changed = Duration::new(
            u64::try_from(metadata.ctime()).unwrap_or(0),
            u32::try_from(metadata.ctime_nsec()).unwrap_or(0),
        );
        if owner_may_live(pid, changed) || has_live_socket(&path) {
            continue;
        }
        if nested && !has_socket(&path) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                tracing::info!(
                    path = %path.display(),
                    pid,
                    "removed the notify directory a dead master left"
                );
            }
            // Another master starting at the same time may have removed it first.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "cannot remove the notify directory a dead master left"
            ),
        }
    }
    removed
}

/// The pid in a notify directory's name (`clutch-<pid>-<salt><n>`, the salt in hex, the
/// counter in decimal: hex digits after the dash), or `None` for any other name.
fn dir_owner_pid(name: &OsStr) -> Option<u32> {
    let rest = name.to_str()?.strip_prefix("clutch-")?;
    let (pid, tail) = rest.split_once('-')?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if pid.is_empty()
        || pid.len() > 10
        || !pid.bytes().all(|b| b.is_ascii_digit())
        || tail.is_empty()
        || !tail.bytes().all(hex)
    {
        return None;
    }
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Whether process `pid` may be the master that made a directory last changed at
/// `changed` (wall-clock time since the epoch). False only when we know it is not: no
/// such process, a zombie, or one that started after the directory's last change.
fn owner_may_live(pid: u32, changed: Duration) -> bool {
    // (A pid beyond i32 names no process; and a negative one would name a group.)
    let Some(raw) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .filter(|raw| raw.as_raw_nonzero().get() > 0)
    else {
        return false;
    };
    // Otherwise alive (EPERM: alive, and another user's): look closer.
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(raw) {
        return false;
    }
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return false,
        Err(_) => return true,
    };
    let Some((state, start_ticks)) = parse_stat(&stat) else {
        return true;
    };
    if matches!(state, 'Z' | 'X') {
        return false;
    }
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let started_since_boot = Duration::from_secs(start_ticks / hz)
        + Duration::from_nanos(start_ticks % hz * 1_000_000_000 / hz);
    // The wall-clock time of boot: now on the wall clock less now on the boot clock
    // (which `/proc/<pid>/stat`'s start time counts from).
    let since = |ts: rustix::time::Timespec| {
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    };
    let now = since(rustix::time::clock_gettime(rustix::time::ClockId::Realtime));
    let up = since(rustix::time::clock_gettime(rustix::time::ClockId::Boottime));
    let started = now.saturating_sub(up) + started_since_boot;
    started <= changed + PID_REUSE_SLACK
}

/// The state (field 3) and start time in clock ticks (field 22) of a `/proc/<pid>/stat`
/// line. The command name (field 2) is in parentheses and may hold anything, spaces and
/// parentheses included: the fields after it are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 lie between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether some socket file lies directly in `dir` (or it cannot be read).
fn has_socket(dir: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries
        .into_iter()
        .any(|entry| entry.map_or(true, |e| e.file_type().is_ok_and(|t| t.is_socket())))
}

/// Whether some socket file directly in `dir` has a live socket behind it (or cannot be
/// checked). A dead master's sockets refuse connections.
fn has_live_socket(dir: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return true;
        };
        if !entry.file_type().is_ok_and(|t| t.is_socket()) {
            continue;
        }
        let Ok(probe) = std::os::unix::net::UnixDatagram::unbound() else {
            return true;
        };
        match probe.connect(entry.path()) {
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            _ => return true,
        }
    }
    false
}

/// One worker's notification socket: a non-blocking datagram socket, in the abstract
/// namespace or at a path (removed when dropped). Register [`AsFd::as_fd`] with mio for
/// `READABLE`, and on readiness call [`NotifyListener::recv`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct NotifyListener {
    socket: OwnedFd,
    /// What `NOTIFY_SOCKET` says: the path, or `@name`.
    path: PathBuf,
    /// A file of ours is at `path`.
    file: bool,
    uid: rustix::process::Uid,
    /// It went through [`NotifySockets::recycle`]: it served an earlier worker.
    recycled: bool,
}

impl NotifyListener {
    /// Binds a socket at `path` (replacing whatever file is there: the path should be in
    /// a directory of our own, see [`NotifyDir`]), with `SO_PASSCRED` on, so that every
    /// datagram arrives with its sender's credentials.
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let bind = || -> io::Result<OwnedFd> {
            let address = SocketAddrUnix::new(path.as_path())?;
            let socket = Self::socket()?;
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
            rn::bind(&socket, &address)?;
            Ok(socket)
        };
        Self::bound(bind(), path, true)
    }

    /// Binds a socket in the abstract namespace, at `name` (`NOTIFY_SOCKET=@<name>`),
    /// with `SO_PASSCRED` on. The name is free again once the socket is closed: there is
    /// nothing to remove. A name someone else holds is an error of kind
    /// [`io::ErrorKind::AddrInUse`].
    ///
    /// Anyone in the network namespace can send to it (see the module docs): only our
    /// user's datagrams and root's count.
    pub fn bind_abstract(name: impl AsRef<[u8]>) -> io::Result<Self> {
        let name = name.as_ref();
        let mut spelled = OsString::from("@");
        spelled.push(OsStr::from_bytes(name));
        let path = PathBuf::from(spelled);
        let bind = || -> io::Result<OwnedFd> {
            let address = SocketAddrUnix::new_abstract_name(name)?;
            let socket = Self::socket()?;
            rn::bind(&socket, &address)?;
            Ok(socket)
        };
        Self::bound(bind(), path, false)
    }

    /// The listener on a socket just bound at `path` (a `file` of its own, or an
    /// abstract name), or the binding's error with its context.
    fn bound(socket: io::Result<OwnedFd>, path: PathBuf, file: bool) -> io::Result<Self> {
        let socket = socket.map_err(|e| context(e, "cannot bind the notify socket", &path))?;
        Ok(Self {
            socket,
            path,
            file,
            uid: rustix::process::getuid(),
            recycled: false,
        })
    }

    /// [`bind_abstract`](Self::bind_abstract) at `clutch/<our pid>/<random>/<what>`: the
    /// 64 random bits, drawn for each socket, make the name unique (other masters, in
    /// other pid namespaces, may have our pid) and impossible to take before us, which
    /// would make the spawn fail. They are no secret: the names are listed in
    /// `/proc/net/unix`.
    pub(crate) fn bind_abstract_unique(what: &str) -> io::Result<Self> {
        let mut taken = None;
        for _ in 0..8 {
            let name = format!(
                "clutch/{}/{:016x}/{what}",
                std::process::id(),
                random_u64()?
            );
            match Self::bind_abstract(name) {
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => taken = Some(error),
                bound => return bound,
            }
        }
        Err(taken.expect("eight names were tried"))
    }

    /// A datagram socket that every sender's credentials come with.
    fn socket() -> io::Result<OwnedFd> {
        let socket = rn::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rn::sockopt::set_socket_passcred(&socket, true)?;
        Ok(socket)
    }

    /// The worker's `NOTIFY_SOCKET`: the socket's path, or `@name` for one in the abstract
    /// namespace.
    #[must_use]
    pub fn address(&self) -> &OsStr {
        self.path.as_os_str()
    }

    /// [`address`](Self::address) as a path: for a socket in the abstract namespace,
    /// `@name`, which names no file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the socket is in the abstract namespace.
    #[must_use]
    pub fn is_abstract(&self) -> bool {
        !self.file
    }

    /// Whether it served an earlier worker ([`NotifySockets::recycle`]): an event loop
    /// that left it registered then changes the registration rather than adding one.
    #[must_use]
    pub fn is_recycled(&self) -> bool {
        self.recycled
    }

    /// The next message, or `Ok(None)` when there is nothing left to read. Datagrams that
    /// are truncated, that come from another user (other than root), or that hold no known
    /// key are skipped (logged at debug level); fds that come with a datagram are closed
    /// (which is how a `BARRIER=1` is answered). Errors are the socket's own, not the
    /// sender's.
    ///
    /// A sender that floods the socket with garbage keeps this looping for as long as the
    /// flood lasts: an event loop should call [`recv_one`](Self::recv_one) a bounded
    /// number of times instead.
    pub fn recv(&self) -> io::Result<Option<NotifyMessage>> {
        loop {
            match self.recv_one()? {
                None => return Ok(None),
                Some(Received::Message(message)) => return Ok(Some(message)),
                Some(Received::Rejected(why)) => {
                    tracing::debug!(path = %self.path.display(), "notification dropped: {why}");
                }
            }
        }
    }

    /// Reads and drops what is queued: answers whether the queue is empty now (it held
    /// at most a few datagrams, and reading it worked).
    fn discard_queued(&self) -> bool {
        for _ in 0..8 {
            match self.recv_one() {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Reads one datagram: `Ok(None)` when there is nothing left to read, else the message
    /// or why it was rejected.
    ///
    /// A datagram counts only when its `SCM_CREDENTIALS` (filled in by the kernel) say
    /// our user, root, or the workers' user for a socket of theirs, and a process of our
    /// pid namespace (or of one below it, as a worker's own container would be): a sender
    /// outside it has pid 0 here, and cannot be a process of any worker's tree.
    pub fn recv_one(&self) -> io::Result<Option<Received>> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut buffer = [0u8; DATAGRAM_MAX];
        let mut space = ControlSpace([0; CONTROL_MAX]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
        let received = loop {
            match recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut space.0), flags) {
                Ok(received) => break received,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    return Err(context(
                        error.into(),
                        "cannot read the notify socket",
                        &self.path,
                    ))
                }
            }
        };
        let (bytes, truncated) = (received.bytes, received.flags.contains(MsgFlags::MSG_TRUNC));
        let mut sender = None;
        let mut fds = 0;
        // `Err` only with MSG_CTRUNC, which the space rules out but for a master out of
        // descriptors (the kernel then stops installing fds; any it installed before
        // cannot be found to be closed). Either way: no credentials.
        if let Ok(messages) = received.cmsgs() {
            for message in messages {
                match message {
                    ControlMessageOwned::ScmRights(received) => {
                        fds += received.len();
                        for fd in received {
                            // Ours: the kernel installed it in this recvmsg.
                            let _ = nix::unistd::close(fd);
                        }
                    }
                    ControlMessageOwned::ScmCredentials(credentials) => {
                        sender = Some((credentials.pid(), credentials.uid()));
                    }
                    _ => {}
                }
            }
        }
        let Some((pid, uid)) = sender else {
            return Ok(Some(Received::Rejected(Rejection::NoCredentials)));
        };
        if uid != self.uid.as_raw() && uid != 0 {
            let pid = u32::try_from(pid).unwrap_or(0);
            return Ok(Some(Received::Rejected(Rejection::OtherUser { pid, uid })));
        }
        let Some(pid) = u32::try_from(pid).ok().filter(|pid| *pid > 0) else {
            return Ok(Some(Received::Rejected(Rejection::OutsidePidNamespace {
                uid,
            })));
        };
        if truncated {
            return Ok(Some(Received::Rejected(Rejection::TooLong { pid })));
        }
        let message = parse_notify(&buffer[..bytes.min(DATAGRAM_MAX)]);
        if message.is_empty() {
            return Ok(Some(Received::Rejected(Rejection::NoKnownKey { pid, fds })));
        }
        Ok(Some(Received::Message(message)))
    }
}

/// Room for the most ancillary data one datagram can bring: its sender's credentials and
/// [`FDS_MAX`] descriptors, so that the kernel never truncates it (MSG_CTRUNC) and every
/// descriptor that came is found, and closed.
const CONTROL_MAX: usize = rustix::cmsg_space!(ScmRights(FDS_MAX), ScmCredentials(1));

/// [`CONTROL_MAX`] bytes aligned as a `cmsghdr`, which the parser reads in place.
#[repr(C, align(8))]
struct ControlSpace([u8; CONTROL_MAX]);

/// One datagram read by [`NotifyListener::recv_one`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message with at least one known key.
    Message(NotifyMessage),
    /// A datagram that was dropped, and why.
    Rejected(Rejection),
}

/// Why a notification datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// It came without the sender's credentials.
    NoCredentials,
    /// It came from another user than ours (and not root).
    OtherUser {
        /// The sender (0 when it is outside our pid namespace).
        pid: u32,
        /// The sender's uid.
        uid: u32,
    },
    /// It came from a process outside our pid namespace (its pid is 0 here), which no
    /// worker's process can be: a sender sharing our network namespace from another
    /// container, say.
    OutsidePidNamespace {
        /// The sender's uid.
        uid: u32,
    },
    /// It was longer than the protocol allows.
    TooLong {
        /// The sender.
        pid: u32,
    },
    /// It held no key clutch knows.
    NoKnownKey {
        /// The sender.
        pid: u32,
        /// How many fds came with it (closed).
        fds: usize,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCredentials => f.write_str("a notification without credentials"),
            Self::OtherUser { pid, uid } => {
                write!(f, "a notification from another user (pid {pid}, uid {uid})")
            }
            Self::OutsidePidNamespace { uid } => write!(
                f,
                "a notification from outside the master's pid namespace (uid {uid})"
            ),
            Self::TooLong { pid } => write!(
                f,
                "a notification longer than {DATAGRAM_MAX} bytes (pid {pid})"
            ),
            Self::NoKnownKey { pid, fds } => {
                write!(f, "a notification with no known key (pid {pid}, {fds} fds)")
            }
        }
    }
}

impl AsFd for NotifyListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        if self.file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Sends `state` (such as `"READY=1\nSTATUS=serving"`) to the service manager named by
/// `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket. Does nothing and succeeds
/// when the variable is unset or empty (not running under a manager).
///
/// Never blocks: when the manager is not reading (stopped, or busy) and its socket's queue
/// is full, the datagram is not sent and the error's kind is
/// [`io::ErrorKind::WouldBlock`]; try again later if the message matters (`READY=1`), or
/// let the next one do (`WATCHDOG=1`).
pub fn notify(state: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) if !socket.is_empty() => send(&socket, state, &[]),
        _ => Ok(()),
    }
}

/// Sends `state` to the service manager socket `socket` (a path, or `@name`): for a
/// process that captured its `$NOTIFY_SOCKET` at startup. Never blocks (see [`notify`]).
pub(crate) fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    send(socket, state, &[])
}

/// Like [`send_to`], but waits up to `bound` for room in a full receiver before giving up
/// with `WouldBlock`: for a message that should not be lost to a momentarily busy
/// manager (`READY=1` ending a reload) from a process that must not hang on it.
pub(crate) fn send_to_within(socket: &OsStr, state: &str, bound: Duration) -> io::Result<()> {
    send_waiting(socket, state, &[], Some(bound))
}

/// Sends `BARRIER=1` and waits up to `timeout` until the manager has processed every
/// earlier message (it closes the fd that the barrier carries). Succeeds at once when
/// `$NOTIFY_SOCKET` is unset; fails with `TimedOut`.
pub fn notify_barrier(timeout: Duration) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) if !socket.is_empty() => barrier(&socket, timeout),
        _ => Ok(()),
    }
}

fn barrier(socket: &OsStr, timeout: Duration) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    send(socket, "BARRIER=1", &[write.as_fd()])?;
    drop(write);
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    let mut fds = [PollFd::new(&read, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "barrier timed out")),
            Ok(_) => return Ok(()),
            // A poll cut short restarts with the whole timeout: good enough for a barrier.
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Sends one datagram with `fds` to the socket named like `$NOTIFY_SOCKET`, without
/// blocking: a receiver whose queue is full (a stopped master, say) is `WouldBlock` at
/// once, not a sender stuck until the receiver reads again.
fn send(socket: &OsStr, state: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    send_waiting(socket, state, fds, None)
}

/// [`send`], or with `wait`, a send that waits at most that long for room (`SO_SNDTIMEO`;
/// the kernel reports the expiry as `EAGAIN`).
fn send_waiting(
    socket: &OsStr,
    state: &str,
    fds: &[BorrowedFd<'_>],
    wait: Option<Duration>,
) -> io::Result<()> {
    let address = match socket.as_bytes() {
        [b'@', name @ ..] => SocketAddrUnix::new_abstract_name(name),
        [b'/', ..] => SocketAddrUnix::new(Path::new(socket)),
        _ => Err(rustix::io::Errno::AFNOSUPPORT),
    }
    .map_err(|error| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("NOTIFY_SOCKET={socket:?} is not a path or an @abstract name: {error}"),
        )
    })?;
    let sock = rn::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let flags = match wait {
        None => SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        Some(bound) => {
            // A zero timeout would mean "forever".
            let bound = bound.max(Duration::from_millis(1));
            rn::sockopt::set_socket_timeout(&sock, rn::sockopt::Timeout::Send, Some(bound))?;
            SendFlags::NOSIGNAL
        }
    };
    let mut space = vec![MaybeUninit::uninit(); SendAncillaryMessage::ScmRights(fds).size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    let sent = rn::sendmsg_addr(
        &sock,
        &address,
        &[IoSlice::new(state.as_bytes())],
        &mut control,
        flags,
    );
    sent.map(drop)
        .map_err(|error| context(error.into(), "cannot notify", Path::new(socket)))
}

/// `"{what} {path}: {error}"`, keeping the error's kind.
fn context(error: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{what} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    use super::*;
    use crate::os::spawn::SpawnSpec;
    use crate::testutil::Reaper;

    #[test]
    fn parses_every_known_key() {
        let message = parse_notify(
            b"READY=1\nSTOPPING=1\nRELOADING=1\nWATCHDOG=1\nBARRIER=1\nSTATUS=serving 3 clients\n\
              MAINPID=42\nERRNO=2\nEXTEND_TIMEOUT_USEC=5000000\nMONOTONIC_USEC=123\n\
              WATCHDOG_USEC=9\nX_CLUTCH_RECYCLE=1\n",
        );
        assert_eq!(
            message,
            NotifyMessage {
                ready: true,
                stopping: true,
                reloading: true,
                watchdog: true,
                watchdog_trigger: false,
                barrier: true,
                status: Some("serving 3 clients".into()),
                main_pid: Some(42),
                errno: Some(2),
                extend_timeout_usec: Some(5_000_000),
                monotonic_usec: Some(123),
                watchdog_usec: Some(9),
                recycle: true,
            }
        );
        assert!(parse_notify(b"WATCHDOG=trigger").watchdog_trigger);
        assert!(!parse_notify(b"WATCHDOG=trigger").watchdog);
    }

    #[test]
    fn skips_what_it_does_not_understand() {
        for garbage in [
            &b""[..],
            b"\n\n",
            b"READY",
            b"READY=0",
            b"X_CLUTCH_RECYCLE=0",
            b"X_CLUTCH_RECYCLE=yes",
            b"READY=1 ",
            b"ready=1",
            b" READY=1",
            b"FDSTORE=1",
            b"MAINPID=0",
            b"MAINPID=-1",
            b"MAINPID=+5",
            b"MAINPID=99999999999",
            b"ERRNO=2x",
            b"EXTEND_TIMEOUT_USEC=",
            b"EXTEND_TIMEOUT_USEC=99999999999999999999999",
            b"\xff\xfe=\x00",
        ] {
            assert!(parse_notify(garbage).is_empty(), "{garbage:?}");
        }
        // Good lines survive among bad ones; the last valid value wins.
        let message = parse_notify(b"junk\nREADY=1\n\xff\nMAINPID=7\nMAINPID=x\nMAINPID=8");
        assert!(message.ready);
        assert_eq!(message.main_pid, Some(8));
        // Invalid UTF-8 in a status is replaced, not fatal; empty is a (cleared) status.
        assert_eq!(
            parse_notify(b"STATUS=a\xffb").status.as_deref(),
            Some("a\u{fffd}b")
        );
        assert_eq!(parse_notify(b"STATUS=").status.as_deref(), Some(""));
        assert_eq!(parse_notify(b"STATUS=a=b").status.as_deref(), Some("a=b"));
    }

    #[test]
    fn the_directory_is_private_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let dir = NotifyDir::create_in(parent.path()).unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(path.parent(), Some(parent.path()));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o700);
        let listener = dir.bind_worker(7).unwrap();
        assert_eq!(listener.path(), path.join("worker-7.sock"));
        let other = NotifyDir::create_in(parent.path()).unwrap();
        assert_ne!(other.path(), path);
        drop(dir);
        assert!(!path.exists());
        drop(listener); // its file is gone already: no panic, no error
                        // And the default location works.
        let default = NotifyDir::create().unwrap();
        assert!(default.path().is_dir());
    }

    #[test]
    fn notify_directory_names_are_recognised_exactly() {
        let pid = |name: &str| dir_owner_pid(OsStr::new(name));
        assert_eq!(pid("clutch-123-1a2b3c0"), Some(123));
        assert_eq!(pid("clutch-4194304-0"), Some(4_194_304));
        for other in [
            "clutch-",
            "clutch-123",
            "clutch-123-",
            "clutch-0-abc",
            "clutch--abc",
            "clutch-12a-abc",
            "clutch-123-ABC",
            "clutch-123-abc.sock",
            "clutch-123-abc-1",
            "clutch-99999999999-abc",
            "clutch-+12-abc",
            "xclutch-123-abc",
            "app.sock",
        ] {
            assert_eq!(pid(other), None, "{other}");
        }
    }

    #[test]
    fn the_stat_line_is_read_past_any_command_name() {
        let line = "42 (a) b) (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        assert_eq!(parse_stat(line), Some(('S', 98765)));
        assert_eq!(parse_stat("42 (short) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let (state, start) = parse_stat(&own).unwrap();
        assert_eq!(state, 'R', "the thread reading its own stat runs");
        assert!(start > 0);
    }

    /// A pid that no process has any more: a child of ours, reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// A directory as [`NotifyDir::create_in`] makes them, for master `pid`.
    fn fake_dir(parent: &Path, pid: u32, salt: &str) -> PathBuf {
        let path = parent.join(format!("clutch-{pid}-{salt}"));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    #[test]
    fn a_live_process_owns_its_directory_unless_it_started_after_the_last_change() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert!(
            owner_may_live(pid, now),
            "a live process lost its directory"
        );
        assert!(
            !owner_may_live(pid, now - Duration::from_secs(3600)),
            "a process that started an hour after the directory's last change owns it"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!owner_may_live(pid, now), "a dead pid owns a directory");
        assert!(!owner_may_live(0, now));
        assert!(!owner_may_live(u32::MAX, now), "a negative pid is a group");
    }

    #[test]
    fn stale_directories_of_dead_masters_are_removed_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();

        // A dead master's directory, with its dead worker socket and a file.
        let stale = fake_dir(parent.path(), dead, "abc0");
        drop(std::os::unix::net::UnixDatagram::bind(stale.join("worker-1.sock")).unwrap());
        std::fs::write(stale.join("other"), "x").unwrap();
        // One made for workers of another user (0710).
        let stale_shared = fake_dir(parent.path(), dead, "abc6");
        std::fs::set_permissions(&stale_shared, std::fs::Permissions::from_mode(0o710)).unwrap();
        drop(std::os::unix::net::UnixDatagram::bind(stale_shared.join("worker-2.sock")).unwrap());
        // Zombie-free live "master" that made its directory after it started.
        let owned = fake_dir(parent.path(), live.id(), "abc1");
        // A dead pid, but a socket in it answers (a master in another pid namespace).
        let answering = fake_dir(parent.path(), dead, "abc2");
        let _socket =
            std::os::unix::net::UnixDatagram::bind(answering.join("worker-1.sock")).unwrap();
        // A dead pid, but not a directory clutch makes: wrong mode, a file, a symlink.
        let open_mode = fake_dir(parent.path(), dead, "abc3");
        std::fs::set_permissions(&open_mode, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = parent.path().join(format!("clutch-{dead}-abc4"));
        std::fs::write(&file, "x").unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::set_permissions(target.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(target.path().join("precious"), "x").unwrap();
        let link = parent.path().join(format!("clutch-{dead}-abc5"));
        std::os::unix::fs::symlink(target.path(), &link).unwrap();
        // Names that are not clutch's.
        let foreign = parent.path().join(format!("clutch-{dead}"));
        std::fs::create_dir(&foreign).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();

        let dir = NotifyDir::create_in(parent.path()).unwrap();

        assert!(
            !stale.exists() && !stale_shared.exists(),
            "the dead master's directory is still there"
        );
        for kept in [&owned, &answering, &open_mode, &file, &link, &foreign] {
            assert!(
                std::fs::symlink_metadata(kept).is_ok(),
                "{} was removed",
                kept.display()
            );
        }
        assert!(target.path().join("precious").exists());
        assert!(dir.path().is_dir(), "our own directory");
        // Our own directories are never stale to us.
        assert_eq!(remove_stale_dirs(parent.path()), 0);
        assert!(dir.path().is_dir());

        live.kill().unwrap();
        live.wait().unwrap();
        drop(_socket);
        // Now the live one's master is gone, and nobody answers in the other.
        assert_eq!(remove_stale_dirs(parent.path()), 2);
        assert!(!owned.exists() && !answering.exists());
        assert!(open_mode.exists() && foreign.exists() && link.exists());
    }

    /// Seen from a pid namespace of its own, every outside master looks dead: an empty
    /// directory (a live master before its first worker) is kept, one whose sockets all
    /// refuse (a killed master's) is removed.
    #[test]
    fn in_a_nested_pid_namespace_only_directories_with_dead_sockets_go() {
        let parent = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let empty = fake_dir(parent.path(), dead, "abc0");
        let killed = fake_dir(parent.path(), dead, "abc1");
        drop(std::os::unix::net::UnixDatagram::bind(killed.join("worker-1.sock")).unwrap());
        assert_eq!(remove_stale_dirs_from(parent.path(), true), 1);
        assert!(
            empty.exists(),
            "a live master's empty directory was removed"
        );
        assert!(!killed.exists());
        // In the initial namespace the pid says it: the empty one goes too.
        assert_eq!(remove_stale_dirs_from(parent.path(), false), 1);
        assert!(!empty.exists());
    }

    #[test]
    fn a_bad_location_is_an_error_that_names_it() {
        let error = NotifyDir::create_in(Path::new("/no/such/dir")).unwrap_err();
        assert!(error.to_string().contains("/no/such/dir"), "{error}");
        let long = format!("/tmp/{}", "x".repeat(200));
        let error = NotifyListener::bind(&long).unwrap_err();
        assert!(error.to_string().contains(&long), "{error}");
    }

    fn wait_readable(listener: &NotifyListener) {
        let minute = Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        assert_eq!(
            poll(&mut fds, Some(&minute)).unwrap(),
            1,
            "no notification within a minute"
        );
    }

    #[test]
    fn messages_arrive_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let listener = NotifyListener::bind(dir.path().join("n.sock")).unwrap();
        let socket = listener.path().as_os_str();
        assert_eq!(listener.recv().unwrap(), None);

        send(socket, "no keys here", &[]).unwrap();
        send(
            socket,
            &format!("READY=1\nSTATUS={}", "x".repeat(DATAGRAM_MAX)),
            &[],
        )
        .unwrap();
        send(socket, "READY=1\nSTATUS=up", &[]).unwrap();
        send(socket, "WATCHDOG=1", &[]).unwrap();
        wait_readable(&listener);
        let first = listener.recv().unwrap().unwrap();
        assert!(first.ready);
        assert_eq!(first.status.as_deref(), Some("up"));
        assert!(listener.recv().unwrap().unwrap().watchdog);
        assert_eq!(listener.recv().unwrap(), None);
    }

    #[test]
    fn a_helper_process_of_the_worker_speaks_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let at_path = NotifyListener::bind(dir.path().join("w.sock")).unwrap();
        let in_abstract = NotifyListener::bind_abstract_unique("worker-1").unwrap();
        for listener in [at_path, in_abstract] {
            // The sender is python, a child of the worker's shell, as `systemd-notify`
            // would be; it reads `@` as sd_notify says.
            let script = "python3 -c 'import os, socket; \
                n = os.environ[\"NOTIFY_SOCKET\"]; \
                n = \"\\0\" + n[1:] if n[0] == \"@\" else n; \
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
                s.sendto(b\"READY=1\\nSTATUS=from python\", n)'; \
                exit $?";
            let child = SpawnSpec::new("/bin/sh")
                .args(["-c", script])
                .env(std::env::vars_os())
                .notify_socket(listener.address())
                .spawn()
                .unwrap();
            let mut worker = Reaper::new(child);
            wait_readable(&listener);
            let message = listener.recv().unwrap().unwrap();
            assert!(message.ready, "{}", listener.path().display());
            assert_eq!(message.status.as_deref(), Some("from python"));
            assert_eq!(worker.wait().unwrap(), clutch_proto::ExitStatus::Code(0));
        }
    }

    /// The abstract names of `/proc/net/unix` (`@` for the leading NUL), as ss shows them.
    fn abstract_names() -> Vec<String> {
        std::fs::read_to_string("/proc/net/unix")
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(7))
            .filter(|name| name.starts_with('@'))
            .map(str::to_owned)
            .collect()
    }

    /// A recycled socket is handed out again with its name, and with nothing of its
    /// earlier worker's left in its queue; one that is still being flooded is not; at
    /// most `keep` are kept, and only in the abstract namespace.
    #[test]
    fn a_recycled_socket_comes_back_empty() {
        let mut sockets = NotifySockets::create().unwrap();
        let first = sockets.bind_worker(1).unwrap();
        let name = first.address().to_owned();
        send(&name, "READY=1", &[]).unwrap();
        send(&name, "STATUS=stale", &[]).unwrap();
        sockets.recycle(first, 1);
        let reused = sockets.bind_worker(2).unwrap();
        assert_eq!(reused.address(), name);
        assert_eq!(
            reused.recv_one().unwrap(),
            None,
            "the old worker's datagrams are gone"
        );
        send(&name, "READY=1", &[]).unwrap();
        wait_readable(&reused);
        assert!(
            reused.recv().unwrap().unwrap().ready,
            "and the new worker's count"
        );

        // More queued than a hand-over reads (up to the queue's limit,
        // net.unix.max_dgram_qlen): closed, and a fresh socket given instead.
        let queued = (0..64)
            .take_while(|_| send(&name, "READY=1", &[]).is_ok())
            .count();
        assert!(queued > 8, "only {queued} datagrams could be queued");
        sockets.recycle(reused, 1);
        let fresh = sockets.bind_worker(3).unwrap();
        assert_ne!(fresh.address(), name);
        assert!(!abstract_names().contains(&name.to_str().unwrap().to_owned()));

        // The pool holds at most `keep`.
        let (a, b) = (
            sockets.bind_worker(4).unwrap(),
            sockets.bind_worker(5).unwrap(),
        );
        let kept = a.address().to_owned();
        sockets.recycle(a, 1);
        sockets.recycle(b, 1);
        assert_eq!(sockets.bind_worker(6).unwrap().address(), kept);
        assert_ne!(sockets.bind_worker(7).unwrap().address(), kept);

        // A directory's sockets are named after their worker: never kept.
        let parent = tempfile::tempdir().unwrap();
        let mut dir = NotifySockets::in_dir(NotifyDir::create_in(parent.path()).unwrap());
        let one = dir.bind_worker(1).unwrap();
        let path = one.path().to_owned();
        dir.recycle(one, 8);
        assert!(!path.exists(), "closed and removed");
        assert_eq!(
            dir.bind_worker(2).unwrap().path(),
            dir.dir().unwrap().path().join("worker-2.sock")
        );
        drop(fresh);
    }

    #[test]
    fn abstract_sockets_are_clutchs_unique_and_leave_nothing() {
        let mut sockets = NotifySockets::create().unwrap();
        assert_eq!(sockets.kind(), NotifySocketKind::Abstract);
        assert!(sockets.dir().is_none());
        let first = sockets.bind_worker(7).unwrap();
        let again = sockets.bind_worker(7).unwrap();
        assert!(first.is_abstract());
        let name = first.address().to_str().unwrap().to_owned();
        let prefix = format!("@clutch/{}/", std::process::id());
        let random = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("/worker"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert_ne!(first.address(), again.address(), "a random part per socket");
        assert!(!first.path().exists(), "no file");
        assert!(abstract_names().contains(&name));
        send(first.address(), "READY=1", &[]).unwrap();
        wait_readable(&first);
        assert!(first.recv().unwrap().unwrap().ready);
        // Closing the socket is all it takes: the name is gone, and free again.
        drop(first);
        assert!(!abstract_names().contains(&name));
        let error = send(OsStr::new(&name), "READY=1", &[]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
        let name = name.strip_prefix('@').unwrap();
        drop(NotifyListener::bind_abstract(name).unwrap());
        // The upgrade's channel is named apart from the workers'.
        let own = sockets.bind_own("successor-1").unwrap();
        assert!(own.address().to_str().unwrap().ends_with("/successor-1"));
        // In directory mode, the same calls give files in the directory.
        let parent = tempfile::tempdir().unwrap();
        let mut dir = NotifySockets::in_dir(NotifyDir::create_in(parent.path()).unwrap());
        assert_eq!(dir.kind(), NotifySocketKind::Directory);
        let path = dir.dir().unwrap().path().to_owned();
        assert_eq!(
            dir.bind_worker(7).unwrap().path(),
            path.join("worker-7.sock")
        );
        assert_eq!(
            dir.bind_own("successor-1").unwrap().path(),
            path.join("successor-1.sock")
        );
    }

    #[test]
    fn a_taken_abstract_name_is_addr_in_use_and_named() {
        let name = format!("clutch-test/{}/taken", std::process::id());
        let _held = NotifyListener::bind_abstract(&name).unwrap();
        let error = NotifyListener::bind_abstract(&name).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        assert!(error.to_string().contains(&format!("@{name}")), "{error}");
    }

    #[test]
    fn senders_the_user_namespace_cannot_map_pass_as_the_overflow_uid() {
        let initial = "         0          0 4294967295\n";
        assert!(!senders_may_pass_as(initial, 65534, &[65534, 0]));
        // A rootless container: root and 65536 uids of the user's, not the rest.
        let container = "0 1000 1\n1 100000 65536\n";
        assert!(senders_may_pass_as(container, 65534, &[65534, 0]));
        assert!(!senders_may_pass_as(container, 65534, &[1000, 0]));
        assert!(senders_may_pass_as(container, 1000, &[1000, 0]));
        // Unreadable: nothing is known to be mapped.
        assert!(senders_may_pass_as("", 65534, &[65534]));
        assert!(!senders_may_pass_as("", 65534, &[1000, 0]));
    }

    #[test]
    fn a_barrier_returns_once_the_listener_has_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let listener = NotifyListener::bind(dir.path().join("b.sock")).unwrap();
        let socket = listener.path().as_os_str().to_owned();
        send(&socket, "STATUS=before", &[]).unwrap();
        let client = std::thread::spawn(move || barrier(&socket, Duration::from_secs(60)));
        wait_readable(&listener);
        assert_eq!(
            listener.recv().unwrap().unwrap().status.as_deref(),
            Some("before")
        );
        // The barrier's datagram may not be there yet: wait for it, bounded.
        let mut barrier_seen = false;
        for _ in 0..6000 {
            match listener.recv().unwrap() {
                Some(message) => {
                    barrier_seen = message.barrier;
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        assert!(barrier_seen);
        // recv closed the fd, so the client's poll saw POLLHUP and returned.
        client.join().unwrap().unwrap();
    }

    /// As many descriptors as one datagram can carry all come (none is left in flight by
    /// a truncated control buffer) and are all closed: the pipe they write to ends.
    #[test]
    fn every_descriptor_a_datagram_brings_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let listener = NotifyListener::bind(dir.path().join("fds.sock")).unwrap();
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let fds = vec![write.as_fd(); FDS_MAX];
        send(listener.path().as_os_str(), "no keys", &fds).unwrap();
        drop(fds);
        drop(write);
        wait_readable(&listener);
        assert_eq!(
            listener.recv_one().unwrap(),
            Some(Received::Rejected(Rejection::NoKnownKey {
                pid: std::process::id(),
                fds: FDS_MAX
            }))
        );
        let mut pipe = [PollFd::new(&read, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert_eq!(
            poll(&mut pipe, Some(&now)).unwrap(),
            1,
            "a write end is open"
        );
        assert!(pipe[0].revents().contains(PollFlags::HUP));
    }

    #[test]
    fn a_barrier_nobody_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let listener = NotifyListener::bind(dir.path().join("t.sock")).unwrap();
        let error = barrier(listener.path().as_os_str(), Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn the_client_speaks_to_abstract_sockets_and_refuses_other_addresses() {
        let name = format!(
            "clutch-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let receiver = rn::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rn::bind(
            &receiver,
            &SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap(),
        )
        .unwrap();
        send(OsStr::new(&format!("@{name}")), "READY=1", &[]).unwrap();
        let mut buffer = [0u8; 64];
        let n = rustix::io::read(&receiver, &mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");

        let error = send(OsStr::new("vsock:2:1234"), "READY=1", &[]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        assert!(error.to_string().contains("vsock:2:1234"), "{error}");
        let error = send(OsStr::new("/no/such/socket"), "READY=1", &[]).unwrap_err();
        assert!(error.to_string().contains("/no/such/socket"), "{error}");
    }

    #[test]
    fn a_full_receiver_is_would_block_at_once_not_a_blocked_sender() {
        let dir = tempfile::tempdir().unwrap();
        // Never read: its queue fills (net.unix.max_dgram_qlen is at most a few hundred).
        let listener = NotifyListener::bind(dir.path().join("full.sock")).unwrap();
        let socket = listener.path().as_os_str();
        let full = (0..100_000)
            .map(|_| send_to(socket, "WATCHDOG=1"))
            .find_map(Result::err)
            .expect("the queue fills");
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock, "{full}");
        assert!(full.to_string().contains("full.sock"), "{full}");
        // The bounded variant waits for room, then gives up the same way.
        let start = std::time::Instant::now();
        let error = send_to_within(socket, "READY=1", Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
        assert!(start.elapsed() >= Duration::from_millis(40), "it waited");
        // …and sends at once when there is room.
        while listener.recv().unwrap().is_some() {}
        send_to_within(socket, "READY=1", Duration::from_millis(50)).unwrap();
        drop(listener);
    }

    /// Only root can send as another user, so only root can check that such messages are
    /// dropped. (The 0700 directory stops them anyway; here the socket is reachable.)
    #[test]
    fn messages_from_another_user_are_dropped() {
        if !rustix::process::getuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let listener = NotifyListener::bind(dir.path().join("u.sock")).unwrap();
        std::fs::set_permissions(listener.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let script = "import os, socket, sys; os.setgid(65534); os.setuid(65534); \
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
            s.sendto(b'READY=1', sys.argv[1])";
        let child = SpawnSpec::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(listener.path())
            .spawn()
            .unwrap();
        assert_eq!(
            Reaper::new(child).wait().unwrap(),
            clutch_proto::ExitStatus::Code(0)
        );
        // The datagram is queued (the sender has exited): recv drops it.
        assert_eq!(listener.recv().unwrap(), None);
    }

    /// Runs python as `uid` (group 65534, no other groups), sending `READY=1` to the
    /// socket `address` (a path, or `@name`); its exit status.
    /// A datagram sent as `uid` is delivered (the sender succeeds), and the listener
    /// drops it as another user's.
    fn assert_delivered_and_dropped(uid: u32, listener: &NotifyListener) {
        assert_eq!(
            send_as(uid, listener.address()),
            clutch_proto::ExitStatus::Code(0),
            "delivered"
        );
        wait_readable(listener);
        match listener.recv_one().unwrap() {
            Some(Received::Rejected(Rejection::OtherUser { uid: from, .. })) => {
                assert_eq!(from, uid)
            }
            other => panic!("expected a datagram of uid {uid} dropped, got {other:?}"),
        }
    }

    fn send_as(uid: u32, address: &OsStr) -> clutch_proto::ExitStatus {
        let script = format!(
            "import os, socket, sys; os.setgroups([]); os.setgid(65534); os.setuid({uid}); \
             n = sys.argv[1]; n = '\\0' + n[1:] if n[0] == '@' else n; \
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
             s.sendto(b'READY=1', n)"
        );
        let child = SpawnSpec::new("/usr/bin/python3")
            .args(["-c", &script])
            .arg(address)
            .spawn()
            .unwrap();
        Reaper::new(child).wait().unwrap()
    }

    /// In the abstract namespace anyone can send: another user's datagram arrives, and
    /// is dropped for its credentials. Root only (to send as another user).
    #[test]
    fn in_the_abstract_namespace_another_users_messages_arrive_and_are_dropped() {
        if !rustix::process::getuid().is_root() {
            return;
        }
        let mut sockets = NotifySockets::create().unwrap();
        let listener = sockets.bind_worker(1).unwrap();
        assert_delivered_and_dropped(65534, &listener);
        assert_eq!(listener.recv_one().unwrap(), None);
    }

    /// Workers of another user in the abstract namespace: theirs and root's datagrams
    /// count on their sockets, nobody else's (not even their group's). Root only.
    #[test]
    fn workers_of_another_user_reach_their_abstract_socket_and_nobody_else_counts() {
        if !rustix::process::getuid().is_root() {
            return;
        }
        let nobody = Credentials::resolve(Some("65534"), Some("65534")).unwrap();
        let mut sockets =
            NotifySockets::create_for(NotifySocketKind::Abstract, Some(&nobody)).unwrap();
        assert_eq!(sockets.kind(), NotifySocketKind::Abstract);
        let listener = sockets.bind_worker(1).unwrap();
        assert_eq!(
            send_as(65534, listener.address()),
            clutch_proto::ExitStatus::Code(0)
        );
        wait_readable(&listener);
        assert!(listener.recv().unwrap().unwrap().ready, "the workers' user");
        assert_delivered_and_dropped(65533, &listener);
        send(listener.address(), "READY=1", &[]).unwrap();
        wait_readable(&listener);
        assert!(listener.recv().unwrap().unwrap().ready, "root");
        // The upgrade's channel is ours alone: the workers' user does not count there.
        let own = sockets.bind_own("successor-1").unwrap();
        assert_delivered_and_dropped(65534, &own);
    }

    /// Where [`a_sender_outside_the_pid_namespace_is_dropped`]'s helper binds its socket.
    const PID_NS_DIR: &str = "CLUTCH_TEST_NOTIFY_PID_NS_DIR";

    /// A sender whose process the master cannot see (another container sharing its
    /// network namespace) has pid 0 in its credentials: dropped, whoever it is (root
    /// here), and read without undefined behaviour. Root only (`unshare --pid`): the
    /// receiver runs in a pid namespace of its own, the sender (this test) outside it.
    #[test]
    fn a_sender_outside_the_pid_namespace_is_dropped() {
        if !rustix::process::getuid().is_root() || !Path::new("/usr/bin/unshare").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let child = crate::testutil::helper_under(
            &["/usr/bin/unshare", "--pid", "--fork"],
            concat!(module_path!(), "::helper_receive_in_a_pid_namespace"),
        )
        .env([(PID_NS_DIR, dir.path())])
        .spawn()
        .unwrap();
        let mut helper = Reaper::new(child);
        let socket = dir.path().join("n.sock");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !dir.path().join("bound").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper never bound"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        send(socket.as_os_str(), "READY=1", &[]).unwrap();
        assert_eq!(helper.wait().unwrap(), clutch_proto::ExitStatus::Code(0));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("received")).unwrap(),
            format!(
                "{:?}",
                Some(Received::Rejected(Rejection::OutsidePidNamespace {
                    uid: 0
                }))
            )
        );
    }

    #[test]
    #[ignore = "helper process, run by a_sender_outside_the_pid_namespace_is_dropped"]
    fn helper_receive_in_a_pid_namespace() {
        crate::testutil::expect_helper(concat!(
            module_path!(),
            "::helper_receive_in_a_pid_namespace"
        ));
        let dir = PathBuf::from(std::env::var_os(PID_NS_DIR).unwrap());
        let listener = NotifyListener::bind(dir.join("n.sock")).unwrap();
        std::fs::write(dir.join("bound"), "").unwrap();
        wait_readable(&listener);
        let received = listener.recv_one().unwrap();
        std::fs::write(dir.join("received"), format!("{received:?}")).unwrap();
    }

    /// Workers of another user: the directory lets only their group (and us) through, the
    /// socket is theirs alone, and their messages count. Root only, as above.
    #[test]
    fn workers_of_another_user_reach_their_socket_and_nobody_else_does() {
        if !rustix::process::getuid().is_root() {
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = Credentials::resolve(Some("65534"), Some("65534")).unwrap();
        let dir = NotifyDir::create_in_for(parent.path(), Some(&nobody)).unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o710, 0, 65534)
        );
        let listener = dir.bind_worker(1).unwrap();
        let meta = std::fs::symlink_metadata(listener.path()).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o600, 65534, 65534)
        );
        // As the worker's user: it gets through, and counts. As another user (in the
        // workers' group even): refused by the socket's mode.
        let send_as = |uid: u32| {
            let script = format!(
                "import os, socket, sys; os.setgroups([]); os.setgid(65534); os.setuid({uid}); \
                 s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
                 s.sendto(b'READY=1', sys.argv[1])"
            );
            let child = SpawnSpec::new("/usr/bin/python3")
                .args(["-c", &script])
                .arg(listener.path())
                .spawn()
                .unwrap();
            Reaper::new(child).wait().unwrap()
        };
        assert_eq!(send_as(65534), clutch_proto::ExitStatus::Code(0));
        wait_readable(&listener);
        assert!(listener.recv().unwrap().unwrap().ready);
        assert_eq!(
            send_as(65533),
            clutch_proto::ExitStatus::Code(1),
            "another user"
        );
        assert_eq!(listener.recv().unwrap(), None);
    }
}
