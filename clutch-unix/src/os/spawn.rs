//! Starting a worker: our own fork/exec, so that a worker gets what systemd would give it.
//!
//! [`spawn`] runs a program with the master's listening sockets at fds 3.. and the
//! systemd-style environment that describes them, in the way `systemd` itself starts a
//! socket-activated service. We cannot use `std::process::Command` for this: `LISTEN_PID`
//! must hold the *child's* pid, which exists only after `fork`, and filling it in must not
//! allocate (see `sys.rs` for what the child may and may not do).
//!
//! What the worker sees:
//!
//! | what | value |
//! |---|---|
//! | fds 0, 1, 2 | stdin from `/dev/null` (unless [`SpawnSpec::inherit_stdin`]), stdout and stderr inherited (unless [`SpawnSpec::stdout`], [`SpawnSpec::stderr`]) |
//! | fds 3.. | the listeners, in the order given; nothing else is inherited |
//! | `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` | the count, the worker's own pid, the names joined with `:` (only when there are listeners) |
//! | `NOTIFY_SOCKET` | the worker's own notification socket (a path, or `@name` in the abstract namespace), when given |
//! | `WATCHDOG_USEC`, `WATCHDOG_PID` | the heartbeat interval and the worker's own pid, when a watchdog is set |
//! | `CLUTCH_WORKER_ID`, `CLUTCH_WORKER_SLOT` | the core's worker id and slot (like Node's `cluster.worker.id`) |
//! | signals | every disposition at its default, an empty mask (the master's handlers, and Rust's ignored SIGPIPE, do not leak) |
//! | process group | its own, so a terminal's Ctrl-C reaches only the master |
//! | user and groups | the master's, or [`SpawnSpec::credentials`]: set before anything of the program runs |
//! | parent death | `SIGKILL` when the master dies (`PR_SET_PDEATHSIG`, set after the credential change, which clears it) |
//! | working directory, umask | the master's, or [`SpawnSpec::current_dir`] (entered as the worker's user) and [`SpawnSpec::umask`] |
//!
//! Every other variable of the given environment is passed through; the ones above are
//! always removed from it first, so a worker never sees stale values from the master's
//! own service manager.

use std::borrow::Cow;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::process::{pidfd_open, waitpid, Pid, PidfdFlags, WaitOptions};

use crate::os::credentials::Credentials;
use crate::os::sys::{self, ChildContext, ChildFds, OwnPidEntry};

/// The variables [`spawn`] owns: removed from the given environment, then set as needed.
pub const MANAGED_ENV_VARS: [&str; 8] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CLUTCH_WORKER_ID",
    "CLUTCH_WORKER_SLOT",
];

/// The longest listener name systemd accepts in `LISTEN_FDNAMES`.
const MAX_FD_NAME_LEN: usize = 255;

/// What to start, and what to hand it. Built like `std::process::Command`:
///
/// ```no_run
/// # use clutch_unix::spawn::{spawn, SpawnSpec};
/// # fn demo(listener: std::os::fd::BorrowedFd<'_>) -> Result<(), clutch_unix::spawn::SpawnError> {
/// let child = SpawnSpec::new("/usr/local/bin/server")
///     .arg("--port-from-env")
///     .env(std::env::vars_os())
///     .listener("http", listener)
///     .notify_socket("/run/user/1000/clutch-1234/worker-7.sock")
///     .worker(7, 2)
///     .spawn()?;
/// println!("worker 7 is pid {}", child.pid);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a SpawnSpec starts nothing until spawn()"]
pub struct SpawnSpec<'fd> {
    program: PathBuf,
    program_file: Option<BorrowedFd<'fd>>,
    arg0: Option<OsString>,
    args: Vec<OsString>,
    base_env: Option<&'fd Environment>,
    env: Vec<(OsString, OsString)>,
    listeners: Vec<(String, BorrowedFd<'fd>)>,
    notify_socket: Option<PathBuf>,
    worker_id: u64,
    slot: usize,
    watchdog_usec: Option<u64>,
    stdin_null: bool,
    stdout: Option<BorrowedFd<'fd>>,
    stderr: Option<BorrowedFd<'fd>>,
    cgroup_procs: Option<BorrowedFd<'fd>>,
    cgroup_dir: Option<BorrowedFd<'fd>>,
    master: bool,
    credentials: Option<Credentials>,
    current_dir: Option<PathBuf>,
    umask: Option<u32>,
}

impl<'fd> SpawnSpec<'fd> {
    /// Runs the program with these credentials (user, group, supplementary groups),
    /// changed in the child before `execve`; the spawning process needs the privilege to
    /// make the change (see [`Credentials::resolve`]). Credentials that are this
    /// process's own already change nothing.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = (!credentials.is_current()).then_some(credentials);
        self
    }

    /// Runs the program in `dir`, entered after the credential change (so `dir` must be
    /// one the new user may enter).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Executes this open file (`execveat` with `AT_EMPTY_PATH`) instead of looking the
    /// program's path up again: the file the descriptor was opened on, even if the path
    /// names another one by now. The path is still `argv[0]` and names the program in
    /// errors; the process is named after the file. For ELF programs only (a `#!` script
    /// run this way gets a `/dev/fd/N` path its interpreter cannot open once the
    /// close-on-exec descriptor is gone). It must not be one of the listener slots,
    /// fds 3 to 3 + the number of listeners.
    pub fn program_file(mut self, file: BorrowedFd<'fd>) -> Self {
        self.program_file = Some(file);
        self
    }

    /// Runs the program with this umask (at most `0o777`).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Puts the worker into the cgroup whose `cgroup.procs` this is (open for writing),
    /// before it runs anything: all it starts then belongs to that cgroup.
    pub fn cgroup_procs(mut self, procs: BorrowedFd<'fd>) -> Self {
        self.cgroup_procs = Some(procs);
        self
    }

    /// The same cgroup's directory (`O_DIRECTORY`): the worker is then created in it
    /// directly, where the kernel allows (`clone3`), and `cgroup_procs` is the fallback
    /// (opened from this directory when not given).
    pub fn cgroup_dir(mut self, dir: BorrowedFd<'fd>) -> Self {
        self.cgroup_dir = Some(dir);
        self
    }

    /// Runs `program`, which is executed as given: a path, not searched for in `PATH`.
    /// By default: no arguments, an empty environment, no listeners, worker id 0 in slot 0,
    /// stdin from `/dev/null`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            program_file: None,
            arg0: None,
            args: Vec::new(),
            base_env: None,
            env: Vec::new(),
            listeners: Vec::new(),
            notify_socket: None,
            worker_id: 0,
            slot: 0,
            watchdog_usec: None,
            stdin_null: true,
            stdout: None,
            stderr: None,
            cgroup_procs: None,
            cgroup_dir: None,
            master: false,
            credentials: None,
            current_dir: None,
            umask: None,
        }
    }

    /// Starts a master, not a worker: an upgrade's successor. It gets no
    /// `CLUTCH_WORKER_ID`/`CLUTCH_WORKER_SLOT` and no `PR_SET_PDEATHSIG` (it must outlive
    /// the master that starts it).
    pub fn master(mut self) -> Self {
        self.master = true;
        self
    }

    /// Sets `argv[0]` (default: the program path).
    pub fn arg0(mut self, arg0: impl Into<OsString>) -> Self {
        self.arg0 = Some(arg0.into());
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds variables to the base environment (the caller decides what the worker gets:
    /// pass `std::env::vars_os()` to pass everything through). A later value for the same
    /// name wins. The [`MANAGED_ENV_VARS`] are removed from it and set by `spawn`.
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Starts the base environment from `env`, prepared once for many spawns; variables
    /// added with [`SpawnSpec::env`] come on top of it. A master spawning many workers
    /// with the same environment prepares it once instead of copying, checking and
    /// sorting it on every spawn.
    pub fn base_env(mut self, env: &'fd Environment) -> Self {
        self.base_env = Some(env);
        self
    }

    /// Adds a listening socket: it becomes fd `3 + i` for the `i`-th listener added, named
    /// `name` in `LISTEN_FDNAMES`. A name is 1 to 255 printable ASCII characters other than
    /// `:` (systemd's rule).
    pub fn listener(mut self, name: impl Into<String>, fd: BorrowedFd<'fd>) -> Self {
        self.listeners.push((name.into(), fd));
        self
    }

    /// Sets `NOTIFY_SOCKET` (see [`crate::os::notify::NotifyListener`]).
    pub fn notify_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.notify_socket = Some(path.into());
        self
    }

    /// Sets `CLUTCH_WORKER_ID` and `CLUTCH_WORKER_SLOT`.
    pub fn worker(mut self, id: u64, slot: usize) -> Self {
        self.worker_id = id;
        self.slot = slot;
        self
    }

    /// Sets `WATCHDOG_USEC` (and `WATCHDOG_PID` to the worker's pid), asking the worker for
    /// a `WATCHDOG=1` heartbeat at about half that interval.
    pub fn watchdog_usec(mut self, usec: u64) -> Self {
        self.watchdog_usec = Some(usec);
        self
    }

    /// Lets the worker inherit the master's stdin instead of reading `/dev/null`. Note that
    /// the worker is in a background process group: if stdin is a terminal, reading it stops
    /// the worker with `SIGTTIN`.
    pub fn inherit_stdin(mut self) -> Self {
        self.stdin_null = false;
        self
    }

    /// Makes the worker's stdout (fd 1) a duplicate of `fd`, the write end of a pipe the
    /// master reads, say (default: the master's own stdout, inherited).
    pub fn stdout(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.stdout = Some(fd);
        self
    }

    /// Makes the worker's stderr (fd 2) a duplicate of `fd` (default: inherited).
    pub fn stderr(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.stderr = Some(fd);
        self
    }

    /// Starts the process: see [`spawn`].
    pub fn spawn(&self) -> Result<Child, SpawnError> {
        spawn(self)
    }

    /// The base environment: the prepared one as it is (the common case, and no copy),
    /// or a new one with this spec's variables on top.
    fn base_environment(&self) -> io::Result<Cow<'_, Environment>> {
        match self.base_env {
            Some(base) if self.env.is_empty() => Ok(Cow::Borrowed(base)),
            base => Environment::new(
                base.into_iter()
                    .flat_map(Environment::vars)
                    .chain(self.env.iter().cloned()),
            )
            .map(Cow::Owned),
        }
    }

    /// The variables `spawn` sets for this worker (every one of [`MANAGED_ENV_VARS`] that
    /// applies): those with a value known now, and those the child fills in with its pid.
    fn managed_environment(&self) -> io::Result<(Vec<CString>, Vec<OwnPidEntry>)> {
        let mut fixed = Vec::with_capacity(6);
        let mut own_pid = Vec::new();
        let mut set = |name: &str, value: &OsStr| {
            fixed.push(env_entry(name.as_bytes(), value, name)?);
            io::Result::Ok(())
        };
        if !self.listeners.is_empty() {
            let names: Vec<&str> = self
                .listeners
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            set("LISTEN_FDS", self.listeners.len().to_string().as_ref())?;
            set("LISTEN_FDNAMES", names.join(":").as_ref())?;
            own_pid.push(OwnPidEntry::new("LISTEN_PID"));
        }
        if let Some(path) = &self.notify_socket {
            set("NOTIFY_SOCKET", path.as_os_str())?;
        }
        if let Some(usec) = self.watchdog_usec {
            set("WATCHDOG_USEC", usec.to_string().as_ref())?;
            own_pid.push(OwnPidEntry::new("WATCHDOG_PID"));
        }
        if !self.master {
            set("CLUTCH_WORKER_ID", self.worker_id.to_string().as_ref())?;
            set("CLUTCH_WORKER_SLOT", self.slot.to_string().as_ref())?;
        }
        Ok((fixed, own_pid))
    }
}

/// A base environment, prepared for any number of spawns: the variables checked, the
/// [`MANAGED_ENV_VARS`] removed, sorted by name, each a ready `NAME=value` C string.
///
/// ```
/// # use clutch_unix::spawn::Environment;
/// let env = Environment::new([("LANG", "C.UTF-8"), ("LISTEN_FDS", "9")])?;
/// assert_eq!(env.len(), 1); // LISTEN_FDS is spawn's to set
/// assert!(Environment::new([("A=B", "c")]).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `NAME=value`, sorted by name.
    entries: Vec<CString>,
}

impl Environment {
    /// The variables, a later value for the same name winning; an error names the first
    /// one that cannot be passed (an empty name, `=` in a name, a NUL byte anywhere).
    pub fn new<I, K, V>(vars: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let vars: std::collections::BTreeMap<OsString, OsString> = vars
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .filter(|(name, _)| {
                !MANAGED_ENV_VARS
                    .iter()
                    .any(|managed| name.as_os_str() == OsStr::new(managed))
            })
            .collect();
        let mut entries = Vec::with_capacity(vars.len());
        for (name, value) in vars {
            if name.is_empty() || name.as_bytes().contains(&b'=') {
                return Err(invalid_input(format!(
                    "invalid environment variable name {name:?}"
                )));
            }
            entries.push(env_entry(
                name.as_bytes(),
                &value,
                "an environment variable",
            )?);
        }
        Ok(Self { entries })
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The variables as `(name, value)`, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (OsString, OsString)> + '_ {
        self.entries.iter().map(|entry| {
            let bytes = entry.as_bytes();
            // Every entry was built as `NAME=value` with a non-empty name free of `=`.
            let at = bytes.iter().position(|b| *b == b'=').unwrap_or(bytes.len());
            let value = bytes.get(at + 1..).unwrap_or_default();
            (
                OsStr::from_bytes(&bytes[..at]).to_owned(),
                OsStr::from_bytes(value).to_owned(),
            )
        })
    }
}

/// A started process: its pid, and a pidfd for it where the kernel has them (Linux ≥ 5.3).
///
/// Plain data: dropping it neither kills nor reaps the process. Turn it into a
/// [`crate::os::process::Process`] to wait for it and signal it.
#[derive(Debug)]
pub struct Child {
    /// The process id.
    pub pid: u32,
    /// A pidfd, made with the child (`CLONE_PIDFD`) or opened right after it, so it
    /// refers to this very process whatever happens to the pid later; `None` when the
    /// kernel has no pidfds (before 5.3), in which case exits must be noticed with
    /// `SIGCHLD` and `waitpid`.
    pub pidfd: Option<OwnedFd>,
}

/// Starts `spec`'s program; returns once it has been executed (or has failed to be).
///
/// Blocks only until the child calls `execve`, which is quick: the child does nothing
/// that can wait on anything but the kernel. Call it from a long-lived thread (the
/// master's event loop): `PR_SET_PDEATHSIG` fires when the *thread* that forked exits.
pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Child, SpawnError> {
    let prepare = |source| SpawnError::new(&spec.program, SpawnStep::Prepare, source);
    for (name, _) in &spec.listeners {
        check_fd_name(name).map_err(prepare)?;
    }
    let program = c_string(
        spec.program.as_os_str().as_bytes().to_vec(),
        "the program path",
    )
    .map_err(prepare)?;
    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    let arg0 = spec.arg0.as_deref().unwrap_or(spec.program.as_os_str());
    for arg in std::iter::once(arg0).chain(spec.args.iter().map(OsString::as_os_str)) {
        argv.push(c_string(arg.as_bytes().to_vec(), "an argument").map_err(prepare)?);
    }
    let base_env = spec.base_environment().map_err(prepare)?;
    let (managed, mut own_pid) = spec.managed_environment().map_err(prepare)?;
    let env: Vec<&CStr> = base_env
        .entries
        .iter()
        .chain(&managed)
        .map(CString::as_c_str)
        .collect();
    let chdir = spec
        .current_dir
        .as_ref()
        .map(|dir| c_string(dir.as_os_str().as_bytes().to_vec(), "the working directory"))
        .transpose()
        .map_err(prepare)?;
    if let Some(mask) = spec.umask.filter(|mask| *mask > 0o777) {
        return Err(prepare(invalid_input(format!(
            "umask {mask:#o} is not a mode (at most 0o777)"
        ))));
    }
    let context = ChildContext {
        credentials: spec
            .credentials
            .as_ref()
            .map(|c| (c.uid(), c.gid(), c.groups())),
        chdir: chdir.as_deref(),
        umask: spec.umask,
    };
    let dev_null = if spec.stdin_null {
        Some(dev_null().map_err(prepare)?)
    } else {
        None
    };
    let listeners: Vec<BorrowedFd<'_>> = spec.listeners.iter().map(|(_, fd)| *fd).collect();

    let fds = ChildFds {
        listeners: &listeners,
        stdin: dev_null,
        stdout: spec.stdout,
        stderr: spec.stderr,
        cgroup_procs: spec.cgroup_procs,
        cgroup_dir: spec.cgroup_dir,
        parent_death_signal: !spec.master,
        program_file: spec.program_file,
    };
    let sys::Spawned { pid, pidfd, failed } =
        sys::fork_exec(&program, &argv, &env, &mut own_pid, &fds, &context)
            .map_err(|source| SpawnError::new(&spec.program, SpawnStep::Fork, source))?;
    if let Some((step, errno)) = failed {
        reap(pid);
        return Err(SpawnError::new(
            &spec.program,
            step,
            io::Error::from_raw_os_error(errno),
        ));
    }
    // Where the pidfd did not come with the child: before anything else, so that it
    // refers to our child (which cannot have been reaped, and its pid reused, yet: only
    // we reap it).
    let pidfd = pidfd.or_else(|| open_pidfd(pid));
    Ok(Child { pid, pidfd })
}

/// `/dev/null` for every child's stdin, opened once (close-on-exec, so it only survives
/// as a child's fd 0) and kept: two syscalls fewer per spawn.
fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static DEV_NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if let Some(file) = DEV_NULL.get() {
        return Ok(file.as_fd());
    }
    let file = std::fs::File::open("/dev/null")?;
    // Another thread may have won the race: then ours is closed here.
    Ok(DEV_NULL.get_or_init(|| file).as_fd())
}

/// `pidfd_open`, or `None` where the kernel lacks it.
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid.try_into().ok()?)?;
    match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(error) => {
            if error != rustix::io::Errno::NOSYS {
                tracing::warn!(pid = pid.as_raw_nonzero().get(), %error, "pidfd_open failed");
            }
            None
        }
    }
}

/// Waits for a child that is known to be exiting.
fn reap(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid.try_into().unwrap_or(0)) {
        while let Err(rustix::io::Errno::INTR) = waitpid(Some(pid), WaitOptions::empty()) {}
    }
}

fn check_fd_name(name: &str) -> io::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_FD_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !name.contains(':');
    if valid {
        Ok(())
    } else {
        Err(invalid_input(format!(
            "invalid listener name {name:?}: it must be 1 to {MAX_FD_NAME_LEN} printable ASCII \
             characters other than ':'"
        )))
    }
}

/// `NAME=value` as a C string (`what` names it in the error of a NUL byte).
fn env_entry(name: &[u8], value: &OsStr, what: &str) -> io::Result<CString> {
    let mut entry = Vec::with_capacity(name.len() + 1 + value.len());
    entry.extend_from_slice(name);
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    c_string(entry, what)
}

fn c_string(bytes: Vec<u8>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid_input(format!("{what} contains a NUL byte")))
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Where in starting a process something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(i32)]
pub enum SpawnStep {
    /// Preparing in the parent: an argument or variable with a NUL byte, a bad listener
    /// name, opening `/dev/null`.
    Prepare = 1,
    /// `fork` itself (or creating or reading a forked child's report pipe, or opening a
    /// cgroup's `cgroup.procs` for it).
    Fork = 2,
    /// In the child: duplicating the report pipe.
    ReportPipe = 3,
    /// In the child: moving the listeners to fds 3...
    Listeners = 4,
    /// In the child: redirecting stdin.
    Stdin = 5,
    /// In the child: `setpgid`.
    ProcessGroup = 6,
    /// In the child: `prctl(PR_SET_PDEATHSIG)`.
    ParentDeathSignal = 7,
    /// In the child: `execve` (no such file, permission denied, not an executable...).
    Exec = 8,
    /// In the child: entering the worker's cgroup.
    Cgroup = 9,
    /// In the child: `setgroups`, `setresgid`, `setresuid`.
    Credentials = 10,
    /// In the child: `chdir`.
    WorkingDirectory = 11,
    /// In the child: redirecting stdout and stderr.
    Output = 12,
}

impl SpawnStep {
    pub(crate) fn from_code(code: i32) -> Self {
        [
            Self::Prepare,
            Self::Fork,
            Self::ReportPipe,
            Self::Listeners,
            Self::Stdin,
            Self::ProcessGroup,
            Self::ParentDeathSignal,
            Self::Exec,
            Self::Cgroup,
            Self::Credentials,
            Self::WorkingDirectory,
            Self::Output,
        ]
        .into_iter()
        .find(|step| *step as i32 == code)
        .unwrap_or(Self::Exec)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Prepare => "preparing",
            Self::Fork => "fork",
            Self::ReportPipe => "setting up the report pipe",
            Self::Listeners => "passing the listening sockets",
            Self::Stdin => "redirecting stdin",
            Self::ProcessGroup => "setpgid",
            Self::ParentDeathSignal => "prctl(PR_SET_PDEATHSIG)",
            Self::Exec => "execve",
            Self::Cgroup => "entering the worker's cgroup",
            Self::Credentials => "changing the user and groups",
            Self::WorkingDirectory => "entering the working directory",
            Self::Output => "redirecting stdout and stderr",
        }
    }
}

/// Starting a process failed: which program, at which step, and why.
#[derive(Debug)]
pub struct SpawnError {
    program: PathBuf,
    step: SpawnStep,
    source: io::Error,
}

impl SpawnError {
    fn new(program: &Path, step: SpawnStep, source: io::Error) -> Self {
        Self {
            program: program.to_path_buf(),
            step,
            source,
        }
    }

    /// The program that was to be started.
    #[must_use]
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The step that failed.
    #[must_use]
    pub fn step(&self) -> SpawnStep {
        self.step
    }

    /// The underlying error (for `ErrorKind::NotFound` and such).
    #[must_use]
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl SpawnError {
    /// This failure as the core must hear it ([`clutch_proto::Input::SpawnFailed`]):
    /// the master running out of something is [`Resource`](clutch_proto::SpawnErrorKind::Resource),
    /// an `execve` the program cannot survive is [`Exec`](clutch_proto::SpawnErrorKind::Exec),
    /// anything else [`Other`](clutch_proto::SpawnErrorKind::Other).
    #[must_use]
    pub fn to_core(&self) -> clutch_proto::SpawnError {
        // A user, group or directory that cannot be had is as permanent as a program
        // that cannot be executed: the program cannot start as it is configured.
        let permanent = matches!(
            self.step,
            SpawnStep::Exec | SpawnStep::Credentials | SpawnStep::WorkingDirectory
        );
        let kind = error_kind(&self.source, permanent);
        clutch_proto::SpawnError {
            kind,
            errno: self.source.raw_os_error(),
        }
    }
}

/// A failure of the master itself while preparing worker (never `execve`'s): as the core
/// must hear it, and the text for the log, `"{what}: {error}"`.
pub(crate) fn master_error(
    error: &io::Error,
    what: impl fmt::Display,
) -> (clutch_proto::SpawnError, String) {
    let core = clutch_proto::SpawnError {
        kind: error_kind(error, false),
        errno: error.raw_os_error(),
    };
    (core, format!("{what}: {error}"))
}

/// The core's kind for an I/O failure while starting a worker: exhausted fds, processes
/// or memory are the master's ([`Resource`](clutch_proto::SpawnErrorKind::Resource));
/// what `execve` (or the credential change, or `chdir`, before it) says of a program that
/// cannot run as configured is [`Exec`](clutch_proto::SpawnErrorKind::Exec); the rest is
/// [`Other`](clutch_proto::SpawnErrorKind::Other).
fn error_kind(error: &io::Error, exec: bool) -> clutch_proto::SpawnErrorKind {
    use clutch_proto::SpawnErrorKind as Kind;
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM) => Kind::Resource,
        Some(
            libc::ENOEXEC
            | libc::ENOENT
            | libc::EACCES
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::ENAMETOOLONG
            | libc::ELIBBAD
            | libc::EPERM
            | libc::EINVAL,
        ) if exec => Kind::Exec,
        _ => Kind::Other,
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.program.display();
        // The OS error is the source, the next link of the chain: not repeated here.
        match self.step {
            SpawnStep::Exec => write!(f, "cannot execute \"{program}\""),
            step => write!(f, "cannot start \"{program}\": {}", step.describe()),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::net::UnixListener;

    use clutch_proto::{ExitStatus, Signal};
    use rustix::pipe::{pipe_with, PipeFlags};

    use super::*;
    use crate::testutil::{environ_of, fds_of, Reaper};

    #[test]
    fn exit_code_is_reported() {
        let child = SpawnSpec::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let mut process = Reaper::new(child);
        assert_eq!(process.wait().unwrap(), ExitStatus::Code(3));
    }

    #[test]
    fn a_missing_program_is_a_clear_error_and_leaves_no_zombie() {
        let error = SpawnSpec::new("/no/such").spawn().unwrap_err();
        assert_eq!(error.step(), SpawnStep::Exec);
        assert_eq!(error.io_error().kind(), io::ErrorKind::NotFound);
        assert_eq!(error.to_string(), "cannot execute \"/no/such\"");
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "cannot execute \"/no/such\": No such file or directory (os error 2)"
        );
        // The core hears only what it decides on: the kind, and the errno.
        let core = error.to_core();
        assert_eq!(core.kind, clutch_proto::SpawnErrorKind::Exec);
        assert_eq!(core.errno, Some(2));
    }

    /// The child shares the master's fd table (`CLONE_FILES`) until it makes its own:
    /// whatever it moves, marks or closes, the master's fds stay as they were — a high
    /// one, one opened without close-on-exec, the listener itself.
    #[test]
    fn the_masters_fds_are_untouched_by_a_spawn() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let careless = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&careless, rustix::io::FdFlags::empty()).unwrap();
        let high = rustix::io::fcntl_dupfd_cloexec(&tcp, 1000).unwrap();
        let (out_read, out_write) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let identity = |fd: BorrowedFd<'_>| {
            let stat = rustix::fs::fstat(fd).unwrap();
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            (stat.st_dev, stat.st_ino, flags)
        };
        let ours = [
            tcp.as_fd(),
            careless.as_fd(),
            high.as_fd(),
            out_write.as_fd(),
        ];
        let before: Vec<_> = ours.iter().map(|fd| identity(*fd)).collect();
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .listener("http", tcp.as_fd())
            .stdout(out_write.as_fd())
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let after: Vec<_> = ours.iter().map(|fd| identity(*fd)).collect();
        assert_eq!(before, after, "the master's fds changed");
        let fds = fds_of(process.pid());
        assert_eq!(
            fds.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([0, 1, 2, 3]),
            "{fds:?}"
        );
        drop(out_read);
    }

    /// The fallbacks where the kernel refuses `clone3` (seccomp's `ENOSYS`, old kernels)
    /// or off x86-64: a forked child reports over a pipe what a `CLONE_VM` child writes
    /// into the master's memory — success, or the step that failed and its errno.
    #[test]
    fn a_forked_child_reports_as_a_cloned_one_does() {
        for fallback in [sys::Fallback::NoVm, sys::Fallback::ForkOnly] {
            sys::FALLBACK.with(|f| f.set(fallback));
            let child = SpawnSpec::new("/bin/sh")
                .args(["-c", "exit 3"])
                .spawn()
                .unwrap();
            assert!(
                child.pidfd.is_some(),
                "{fallback:?}: pidfd_open after the fork"
            );
            assert_eq!(Reaper::new(child).wait().unwrap(), ExitStatus::Code(3));
            let error = SpawnSpec::new("/no/such").spawn().unwrap_err();
            assert_eq!(error.step(), SpawnStep::Exec, "{fallback:?}");
            assert_eq!(error.io_error().kind(), io::ErrorKind::NotFound);
            let error = SpawnSpec::new("/bin/true")
                .current_dir("/no/such/dir")
                .spawn()
                .unwrap_err();
            assert_eq!(error.step(), SpawnStep::WorkingDirectory, "{fallback:?}");
            assert_eq!(error.io_error().raw_os_error(), Some(libc::ENOENT));
        }
        sys::FALLBACK.with(|f| f.set(sys::Fallback::None));
    }

    /// Root only: a child is created in the cgroup whose directory it is given, by every
    /// way there is — `CLONE_VM` into it, a fork into it, or a fork that enters it by
    /// writing `cgroup.procs` (opened from the directory, as nobody passed it).
    #[test]
    fn a_child_is_created_in_its_cgroup_whichever_way() {
        if !rustix::process::getuid().is_root() {
            eprintln!("skipped: creating a cgroup needs root");
            return;
        }
        let Ok(own) = crate::os::contain::own_cgroup_dir() else {
            eprintln!("skipped: no cgroup v2 hierarchy");
            return;
        };
        for fallback in [
            sys::Fallback::None,
            sys::Fallback::NoVm,
            sys::Fallback::ForkOnly,
        ] {
            let name = format!("clutch-spawn-test-{}-{fallback:?}", std::process::id());
            let dir = own.join(&name);
            std::fs::create_dir(&dir).unwrap();
            let dir_fd = std::fs::File::open(&dir).unwrap();
            sys::FALLBACK.with(|f| f.set(fallback));
            let child = SpawnSpec::new("/bin/sleep")
                .arg("600")
                .cgroup_dir(dir_fd.as_fd())
                .spawn();
            sys::FALLBACK.with(|f| f.set(sys::Fallback::None));
            let process = Reaper::new(child.unwrap());
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", process.pid()));
            drop(process); // (kills and reaps it)
            let _ = std::fs::remove_dir(&dir);
            let cgroup = cgroup.unwrap();
            assert!(
                cgroup.trim_end().ends_with(&format!("/{name}")),
                "{fallback:?}: the child is in {cgroup}"
            );
        }
    }

    #[test]
    fn a_non_executable_file_is_a_clear_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = SpawnSpec::new(file.path()).spawn().unwrap_err();
        assert_eq!(error.step(), SpawnStep::Exec);
        assert_eq!(error.io_error().kind(), io::ErrorKind::PermissionDenied);
        assert!(
            error.to_string().starts_with("cannot execute \""),
            "{error}"
        );
    }

    #[test]
    fn bad_input_is_refused_before_fork() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for spec in [
            SpawnSpec::new("/bin/true").listener("a:b", listener.as_fd()),
            SpawnSpec::new("/bin/true").listener("", listener.as_fd()),
            SpawnSpec::new("/bin/true").arg("nul\0byte"),
            SpawnSpec::new("/bin/true").env([("A=B", "c")]),
            SpawnSpec::new("/bin/tr\0ue"),
        ] {
            let error = spec.spawn().unwrap_err();
            assert_eq!(error.step(), SpawnStep::Prepare, "{error}");
            assert_eq!(
                error.io_error().kind(),
                io::ErrorKind::InvalidInput,
                "{error}"
            );
        }
    }

    /// The whole contract at once, read from the outside through /proc: spawn returns only
    /// after `execve`, so what /proc shows is what the program got.
    #[test]
    fn the_worker_gets_exactly_its_listeners_and_environment() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let unix = UnixListener::bind(dir.path().join("s")).unwrap();
        // An fd that someone forgot to open close-on-exec: it must not leak either.
        let careless = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&careless, rustix::io::FdFlags::empty()).unwrap();

        let base = [
            ("KEEP", "kept"),
            ("LISTEN_FDS", "99"),
            ("LISTEN_PID", "1"),
            ("NOTIFY_SOCKET", "/stale"),
            ("WATCHDOG_USEC", "5"),
            ("WATCHDOG_PID", "1"),
        ];
        // Listed in the opposite order of their fd numbers, to see the order kept.
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .env(base)
            .listener("unix", unix.as_fd())
            .listener("http", tcp.as_fd())
            .notify_socket("/run/x/worker-7.sock")
            .worker(7, 2)
            .watchdog_usec(3_000_000)
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let pid = process.pid();

        let fds = fds_of(pid);
        assert_eq!(
            fds.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([0, 1, 2, 3, 4]),
            "{fds:?}"
        );
        let socket = |fd: &dyn AsFd| {
            let ino = rustix::fs::fstat(fd).unwrap().st_ino;
            format!("socket:[{ino}]")
        };
        assert_eq!(fds[&3], socket(&unix));
        assert_eq!(fds[&4], socket(&tcp));
        assert_eq!(fds[&0], "/dev/null");

        let env = environ_of(pid);
        let expected: BTreeMap<String, String> = [
            ("KEEP", "kept".to_string()),
            ("LISTEN_FDS", "2".to_string()),
            ("LISTEN_PID", pid.to_string()),
            ("LISTEN_FDNAMES", "unix:http".to_string()),
            ("NOTIFY_SOCKET", "/run/x/worker-7.sock".to_string()),
            ("WATCHDOG_USEC", "3000000".to_string()),
            ("WATCHDOG_PID", pid.to_string()),
            ("CLUTCH_WORKER_ID", "7".to_string()),
            ("CLUTCH_WORKER_SLOT", "2".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(env, expected);

        // Signals: nothing ignored (the test harness ignores SIGPIPE), nothing blocked.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        for field in ["SigIgn", "SigBlk"] {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
        // Its own process group.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let pgrp: u32 = after_name.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid);
        // The socket dir must outlive the child's check.
        assert!(dir.path().join("s").metadata().unwrap().mode() != 0);
    }

    /// A prepared environment is what the worker gets, with the spec's own variables on
    /// top of it and the managed ones set by spawn, as with `env` alone.
    #[test]
    fn a_prepared_environment_is_passed_with_the_specs_variables_on_top() {
        let base = Environment::new([
            ("A", "base"),
            ("B", "base"),
            ("CLUTCH_WORKER_ID", "99"),
            ("A", "later wins"),
        ])
        .unwrap();
        assert_eq!(
            base.vars().collect::<Vec<_>>(),
            [
                ("A".into(), "later wins".into()),
                ("B".into(), "base".into())
            ]
        );
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .base_env(&base)
            .env([("B", "spec")])
            .worker(3, 1)
            .inherit_stdin()
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let env = environ_of(process.pid());
        let expected: BTreeMap<String, String> = [
            ("A", "later wins"),
            ("B", "spec"),
            ("CLUTCH_WORKER_ID", "3"),
            ("CLUTCH_WORKER_SLOT", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
        for bad in ["", "A=B"] {
            let error = Environment::new([(bad, "x")]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        }
        assert!(Environment::new([("A", "x\0y")]).is_err());
    }

    #[test]
    fn without_listeners_notify_or_watchdog_the_inherited_variables_are_removed() {
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .env([
                ("LISTEN_FDS", "1"),
                ("NOTIFY_SOCKET", "@x"),
                ("WATCHDOG_USEC", "1"),
            ])
            .inherit_stdin()
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let env = environ_of(process.pid());
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            ["CLUTCH_WORKER_ID", "CLUTCH_WORKER_SLOT"]
        );
        let fds = fds_of(process.pid());
        assert_eq!(fds.len(), 3, "{fds:?}");
    }

    fn status_line(pid: u32, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line[field.len() + 1..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The directory and umask are the child's own, and stay so: the child may run in
    /// the master's memory (`CLONE_VM`), but never with its working directory or umask.
    #[test]
    fn the_directory_and_umask_are_the_childs() {
        let dir = tempfile::tempdir().unwrap();
        let own_dir = std::env::current_dir().unwrap();
        let own_umask = status_line(std::process::id(), "Umask:");
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .current_dir(dir.path())
            .umask(0o027)
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let pid = process.pid();
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(status_line(pid, "Umask:"), "0027");
        assert_eq!(std::env::current_dir().unwrap(), own_dir);
        assert_eq!(status_line(std::process::id(), "Umask:"), own_umask);
        let error = SpawnSpec::new("/bin/true")
            .umask(0o1000)
            .spawn()
            .unwrap_err();
        assert_eq!(error.step(), SpawnStep::Prepare, "{error}");
        let error = SpawnSpec::new("/bin/true")
            .current_dir("/no/such/dir")
            .spawn()
            .unwrap_err();
        assert_eq!(error.step(), SpawnStep::WorkingDirectory, "{error}");
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "cannot start \"/bin/true\": entering the working directory: No such file or \
             directory (os error 2)"
        );
        // As permanent as a program that cannot be executed.
        assert_eq!(error.to_core().kind, clutch_proto::SpawnErrorKind::Exec);
    }

    /// Root only: the user, group and groups change, and the directory is entered as the
    /// new user (a 0700 directory of root's is refused to it).
    #[test]
    fn the_credentials_are_the_childs_and_the_directory_is_entered_as_them() {
        if !rustix::process::getuid().is_root() {
            eprintln!("skipped: changing a child's credentials needs root");
            return;
        }
        let dumpable = rustix::process::dumpable_behavior().unwrap();
        let nobody = Credentials::resolve(Some("65534"), Some("65534")).unwrap();
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .credentials(nobody.clone())
            .current_dir(open.path())
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let pid = process.pid();
        assert_eq!(status_line(pid, "Uid:"), "65534 65534 65534 65534");
        assert_eq!(status_line(pid, "Gid:"), "65534 65534 65534 65534");
        assert_eq!(status_line(pid, "Groups:"), "65534");
        // Dropping root marks the memory the child ran in not dumpable; when that was
        // the master's own memory (`CLONE_VM`), the master has put its flag back.
        assert_eq!(rustix::process::dumpable_behavior().unwrap(), dumpable);
        assert_eq!(status_line(std::process::id(), "Uid:"), "0 0 0 0");

        let private = tempfile::tempdir().unwrap();
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = SpawnSpec::new("/bin/true")
            .credentials(nobody)
            .current_dir(private.path())
            .spawn()
            .unwrap_err();
        assert_eq!(error.step(), SpawnStep::WorkingDirectory, "{error}");
        assert_eq!(error.io_error().kind(), io::ErrorKind::PermissionDenied);
        // Root's own credentials: no change at all.
        let root = Credentials::resolve(Some("0"), None).unwrap();
        let spec = SpawnSpec::new("/bin/true").credentials(root.clone());
        assert_eq!(spec.credentials.is_none(), root.is_current());
    }

    /// The pidfd is made with the child or right after it, and refers to that child.
    #[test]
    fn the_pidfd_is_the_childs() {
        let child = SpawnSpec::new("/bin/sleep").arg("600").spawn().unwrap();
        let pid = child.pid;
        let pidfd = child.pidfd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let process = Reaper::new(child);
        let pidfd = pidfd.expect("this kernel has pidfds");
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{pidfd}")).unwrap();
        assert!(
            info.lines().any(|line| line == format!("Pid:\t{pid}")),
            "{info}"
        );
        // Close-on-exec, as every fd of the master's.
        assert!(info
            .lines()
            .any(|line| line.starts_with("flags:") && line.ends_with("2000002")));
        drop(process);
    }

    /// Not root: asking for another user fails in the child, at its step, permanently.
    #[test]
    fn a_credential_change_without_privilege_is_a_permanent_failure() {
        if rustix::process::getuid().is_root() {
            return;
        }
        let Ok(root) = Credentials::lookup_for_tests(Some("0"), Some("0")) else {
            return;
        };
        let error = SpawnSpec::new("/bin/true")
            .credentials(root)
            .spawn()
            .unwrap_err();
        assert_eq!(error.step(), SpawnStep::Credentials, "{error}");
        assert_eq!(error.to_core().kind, clutch_proto::SpawnErrorKind::Exec);
    }

    /// stdout and stderr onto pipes, whatever numbers the pipes have (the listener's slot
    /// among them); the master's copies of the write ends are the caller's to close.
    #[test]
    fn stdout_and_stderr_go_to_the_given_pipes() {
        use std::io::Read;
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let (out_read, out_write) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let (err_read, err_write) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let child = SpawnSpec::new("/bin/sh")
            .args([
                "-c",
                "echo out; echo err >&2; [ -S /proc/self/fd/3 ] || echo no3",
            ])
            .listener("http", tcp.as_fd())
            .stdout(out_write.as_fd())
            .stderr(err_write.as_fd())
            .spawn()
            .unwrap();
        drop((out_write, err_write));
        let mut process = Reaper::new(child);
        let read_all = |fd: OwnedFd| {
            let mut text = String::new();
            std::fs::File::from(fd).read_to_string(&mut text).unwrap();
            text
        };
        assert_eq!(read_all(out_read), "out\n");
        assert_eq!(read_all(err_read), "err\n");
        assert_eq!(process.wait().unwrap(), ExitStatus::Code(0));
    }

    #[test]
    fn the_same_socket_can_be_passed_twice() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let child = SpawnSpec::new("/bin/sleep")
            .arg("600")
            .listener("a", tcp.as_fd())
            .listener("b", tcp.as_fd())
            .spawn()
            .unwrap();
        let process = Reaper::new(child);
        let fds = fds_of(process.pid());
        assert_eq!(fds.len(), 5, "{fds:?}");
        assert_eq!(fds[&3], fds[&4]);
        process.signal(Signal::Term).unwrap();
    }
}

#[cfg(test)]
mod parent_death_tests {
    use std::time::Duration;

    use clutch_proto::ExitStatus;
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};

    use super::*;
    use crate::testutil::{expect_helper, helper, Reaper};

    const HELPER: &str = concat!(module_path!(), "::helper_spawn_and_exit");

    /// A helper process starts a worker and exits: the worker must die with it.
    #[test]
    fn a_worker_does_not_outlive_its_master() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let child = helper(HELPER)
            .env([("CLUTCH_TEST_PID_FILE", &pid_file)])
            .spawn()
            .unwrap();
        assert_eq!(Reaper::new(child).wait().unwrap(), ExitStatus::Code(0));

        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
        // Not our child, but a pidfd works for any process, and becomes readable once it
        // has exited. ESRCH: it is already gone (and reaped by its new parent).
        let Ok(pidfd) = pidfd_open(Pid::from_raw(pid).unwrap(), PidfdFlags::empty()) else {
            return;
        };
        let minute = Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let ready = poll(&mut fds, Some(&minute)).unwrap();
        if ready == 0 {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            panic!("the worker {pid} outlived its master");
        }
    }

    #[test]
    #[ignore = "helper process, run by a_worker_does_not_outlive_its_master"]
    fn helper_spawn_and_exit() {
        expect_helper(HELPER);
        let child = SpawnSpec::new("/bin/sleep").arg("600").spawn().unwrap();
        let path = std::env::var_os("CLUTCH_TEST_PID_FILE").unwrap();
        std::fs::write(path, child.pid.to_string()).unwrap();
        // Returning ends this thread (PR_SET_PDEATHSIG follows the forking *thread*), then
        // the process.
        std::thread::sleep(Duration::from_millis(1));
    }
}
