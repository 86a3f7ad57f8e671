//! The one room with `unsafe` in it.
//!
//! Four things here cannot be done with safe wrappers:
//!
//! 1. [`fork_exec`]: creating the child and everything it does before `execve`. The child
//!    may only make async-signal-safe calls: it runs in a copy of (or, see below, in) a
//!    multi-threaded process whose other threads' locks (the allocator's, stdio's) are in
//!    whatever state they were, held by threads the child does not have. So the child makes
//!    raw syscalls through `libc` on memory prepared beforehand — no allocation, no locks, no
//!    Rust std I/O, no panics (no indexing: only iterators) — and reports a failure.
//!    On x86-64 the child is made with `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on a
//!    stack of its own ([`vm`]): it borrows the master's memory instead of copying its page
//!    tables, the master waits until the child has exec'd, the pidfd comes with the pid,
//!    and a failure is written straight into the master's memory. Elsewhere, and wherever
//!    the kernel refuses, `fork`, and the failure comes over a pipe.
//! 2. [`take_listen_fds`]: claiming ownership of the file descriptors a service manager
//!    passed us at 3.. (the `LISTEN_FDS` protocol).
//! 3. [`ArgvArea`]: overwriting the process's original argument strings so that `ps` shows
//!    a process title.
//! 4. [`fork_keeper`]: the keeper, a forked child of the master that outlives it by
//!    design and ends every worker's tree when the master dies (see `contain.rs`).
//!
//! Everything else in the crate is `#![deny(unsafe_code)]`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::os::spawn::SpawnStep;

/// A `NAME=<the child's own pid>` entry of a child's environment (`LISTEN_PID`,
/// `WATCHDOG_PID`): `NAME=` and room for the digits, filled in by the child after `fork`.
#[derive(Debug)]
pub(crate) struct OwnPidEntry {
    /// `NAME=` followed by zeros.
    bytes: Vec<u8>,
    /// Where the child writes its pid in decimal.
    pid_at: usize,
}

/// Room for the digits of any pid (a `pid_t` has at most 10) plus the terminating NUL.
const PID_ROOM: usize = 11;

impl OwnPidEntry {
    /// `name` must not contain `=` or NUL (callers pass constants).
    pub(crate) fn new(name: &str) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + 1 + PID_ROOM);
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(b'=');
        let pid_at = bytes.len();
        bytes.resize(pid_at + PID_ROOM, 0);
        Self { bytes, pid_at }
    }
}

/// The file descriptors the child arranges before `execve`.
pub(crate) struct ChildFds<'a> {
    /// Sources of the listening sockets, in order: they become fds 3, 4, …
    pub(crate) listeners: &'a [BorrowedFd<'a>],
    /// What becomes fd 0, if anything (else fd 0 is inherited as it is).
    pub(crate) stdin: Option<BorrowedFd<'a>>,
    /// What becomes fd 1 and fd 2, if anything (the write ends of the master's pipes for
    /// the worker's output; else they are inherited as they are).
    pub(crate) stdout: Option<BorrowedFd<'a>>,
    pub(crate) stderr: Option<BorrowedFd<'a>>,
    /// A cgroup's `cgroup.procs`, opened for writing: the child writes `0` to it (cgroup
    /// v2: "the writing process") and so enters that cgroup before anything else runs.
    pub(crate) cgroup_procs: Option<BorrowedFd<'a>>,
    /// The same cgroup's directory: the child is then created in it
    /// (`clone3(CLONE_INTO_CGROUP)`, Linux ≥ 5.7), which spares the kernel a migration
    /// (a write lock on every thread group: milliseconds per worker). Where that is
    /// refused, `cgroup_procs` is the way in (opened here from the directory if not
    /// given).
    pub(crate) cgroup_dir: Option<BorrowedFd<'a>>,
    /// Whether the child gets `PR_SET_PDEATHSIG` (every worker does; an upgrade's
    /// successor master, which must outlive the master that starts it, does not).
    pub(crate) parent_death_signal: bool,
    /// The program as an open file, executed with `execveat(fd, "", AT_EMPTY_PATH)`
    /// (the path is the fallback where the kernel lacks `execveat`, before 3.19).
    pub(crate) program_file: Option<BorrowedFd<'a>>,
}

/// Who the child becomes, and where, before `execve`: everything as plain data, resolved
/// by the master before `fork` (see `credentials.rs`).
#[derive(Default)]
pub(crate) struct ChildContext<'a> {
    /// `(uid, gid, supplementary groups)`: set with `setgroups`, `setresgid`,
    /// `setresuid`, in that order.
    pub(crate) credentials: Option<(u32, u32, &'a [u32])>,
    /// The working directory, entered after the credential change (so with the
    /// worker's own permissions).
    pub(crate) chdir: Option<&'a CStr>,
    /// The umask.
    pub(crate) umask: Option<u32>,
}

/// The raw credential syscalls that take 32-bit ids (on 32-bit x86 and ARM the plain
/// numbers are the 16-bit legacy calls).
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid;
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid32;
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid32;

/// `CLONE_INTO_CGROUP` (linux/sched.h), which the libc crate does not name.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks into the cgroup `dir` with `clone3`; `-1` (errno set) where the kernel refuses.
///
/// # Safety
///
/// As `fork`: the child may only make async-signal-safe calls.
unsafe fn fork_into_cgroup(dir: RawFd) -> libc::pid_t {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    libc::syscall(
        libc::SYS_clone3,
        &args as *const CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    ) as libc::pid_t
}

/// Starts a child that sets itself up as [`ChildFds`] and the module docs say, then
/// `execve`s `program` with `argv` and an environment of `env` followed by `own_pid`.
/// Returns the child's pid (and, where the
/// kernel gave one with it, its pidfd) to the parent.
///
/// A failure in the child is the [`SpawnStep`] and the errno, in [`Spawned::failed`]; the
/// child then exits with status 127 (not yet reaped).
pub(crate) fn fork_exec(
    program: &CString,
    argv: &[CString],
    env: &[&CStr],
    own_pid: &mut [OwnPidEntry],
    fds: &ChildFds<'_>,
    context: &ChildContext<'_>,
) -> io::Result<Spawned> {
    // Everything the child touches is prepared here, before fork.
    let argv_ptrs: Vec<*const c_char> = argv
        .iter()
        .map(|arg| arg.as_ptr())
        .chain([ptr::null()])
        .collect();
    let mut envp_ptrs: Vec<*const c_char> = Vec::with_capacity(env.len() + own_pid.len() + 1);
    envp_ptrs.extend(env.iter().map(|entry| entry.as_ptr()));
    let mut pid_slots: Vec<*mut u8> = Vec::with_capacity(own_pid.len());
    for entry in own_pid.iter_mut() {
        let base = entry.bytes.as_mut_ptr();
        envp_ptrs.push(base.cast_const().cast());
        // SAFETY: `pid_at + PID_ROOM == bytes.len()` by construction in `new`, so the
        // pointer and the PID_ROOM bytes after it are inside the buffer.
        pid_slots.push(unsafe { base.add(entry.pid_at) });
    }
    envp_ptrs.push(ptr::null());
    let listeners: Vec<RawFd> = fds.listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let mut scratch: Vec<RawFd> = vec![-1; listeners.len()];
    let mut outcome: [i32; 2] = [0; 2];
    let plan = ChildPlan {
        program: program.as_ptr(),
        program_file: fds.program_file.map(|fd| fd.as_raw_fd()),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        pid_slots: &pid_slots,
        listeners: &listeners,
        scratch: &mut scratch,
        stdin: fds.stdin.map(|fd| fd.as_raw_fd()),
        output: [
            fds.stdout.map(|fd| fd.as_raw_fd()),
            fds.stderr.map(|fd| fd.as_raw_fd()),
        ],
        report: Report {
            pipe: -1,
            outcome: ptr::addr_of_mut!(outcome),
        },
        cgroup_procs: fds.cgroup_procs.map(|fd| fd.as_raw_fd()),
        parent_death_signal: fds.parent_death_signal,
        credentials: context.credentials,
        chdir: context.chdir.map(CStr::as_ptr),
        umask: context.umask.map(|mask| mask as libc::mode_t),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
    };

    // Block every signal across fork, so that none of the master's handlers can run in the
    // child before the child has reset them to their defaults (a signal-hook handler would
    // write into the master's own self-pipe). The parent restores its mask right after.
    // SAFETY: both sigsets are plain data initialised by sigfillset / pthread_sigmask.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to the sigsets above.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
    }

    let mut plan = plan;
    let spawned = create(&mut plan, fds.cgroup_dir.map(|dir| dir.as_raw_fd()));
    // SAFETY: `saved` was filled by pthread_sigmask above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, ptr::null_mut()) };
    spawned
}

/// Creates the child that runs `plan` (every signal blocked, as [`fork_exec`] arranges),
/// the cheapest way the kernel allows, in this order:
///
/// 1. `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD [| CLONE_INTO_CGROUP])` ([`vm`]): no
///    copy of the master's page tables, the pidfd in the same call, and the child born
///    in its cgroup. x86-64 only, Linux ≥ 5.7 with a cgroup, 5.3 without;
/// 2. `clone3(CLONE_INTO_CGROUP)`, a fork straight into the cgroup, when there is one;
/// 3. `fork`, the child then entering its cgroup by writing `cgroup.procs`.
///
/// Whatever refuses (an older kernel, a seccomp filter answering `ENOSYS` for `clone3`,
/// as container runtimes' default profiles do) falls through to the next.
fn create(plan: &mut ChildPlan<'_>, cgroup_dir: Option<RawFd>) -> io::Result<Spawned> {
    #[cfg(target_arch = "x86_64")]
    if fallback() == Fallback::None {
        if let Some(spawned) = vm::spawn(plan, cgroup_dir) {
            return Ok(spawned);
        }
    }
    // A child with memory of its own reports over a pipe, which `execve` closes (the
    // write end is close-on-exec): EOF is success.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    plan.report.pipe = write.as_raw_fd();
    let pid = fork_child(plan, cgroup_dir)?;
    drop(write);
    match read_report(read.as_fd()) {
        Ok(failed) => Ok(Spawned {
            pid,
            pidfd: None,
            failed,
        }),
        Err(e) => {
            // Whether it started cannot be told: make sure it did not.
            // SAFETY: kill and waitpid of our own unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                while libc::waitpid(pid as libc::pid_t, ptr::null_mut(), 0) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
            }
            Err(e)
        }
    }
}

/// Which of [`create`]'s ways are skipped, as if the kernel had refused them: the
/// fallbacks are tested on a machine that has everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // (only tests choose a fallback)
pub(crate) enum Fallback {
    /// Every way is tried.
    None,
    /// Not the `CLONE_VM` child.
    NoVm,
    /// A plain `fork` (a cgroup entered through `cgroup.procs`).
    ForkOnly,
}

#[cfg(test)]
thread_local! {
    /// The fallback spawns on this thread take (tests only).
    pub(crate) static FALLBACK: std::cell::Cell<Fallback> =
        const { std::cell::Cell::new(Fallback::None) };
}

fn fallback() -> Fallback {
    #[cfg(test)]
    return FALLBACK.with(std::cell::Cell::get);
    #[cfg(not(test))]
    Fallback::None
}

/// Forks the child of [`create`]'s steps 2 and 3; returns its pid.
fn fork_child(plan: &mut ChildPlan<'_>, cgroup_dir: Option<RawFd>) -> io::Result<u32> {
    if let Some(dir) = cgroup_dir.filter(|_| fallback() != Fallback::ForkOnly) {
        // SAFETY: as for fork below: the child branch only runs `child`.
        let pid = unsafe { fork_into_cgroup(dir) };
        if pid == 0 {
            // SAFETY: we are the freshly cloned child, as `child` requires; created in
            // its cgroup already, it has no migration to do.
            unsafe { child(plan, None, None) }
        }
        if pid > 0 {
            return Ok(pid.unsigned_abs());
        }
        // Refused: fork and migrate instead.
    }
    let opened;
    let procs = match (plan.cgroup_procs, cgroup_dir) {
        (Some(procs), _) => Some(procs),
        (None, Some(dir)) => {
            // SAFETY: `dir` is a directory fd the caller holds open for this call.
            let dir = unsafe { BorrowedFd::borrow_raw(dir) };
            opened = rustix::fs::openat(
                dir,
                "cgroup.procs",
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            Some(opened.as_raw_fd())
        }
        (None, None) => None,
    };
    // SAFETY: the child branch only runs `child`, which makes async-signal-safe raw
    // syscalls on memory prepared above and never returns (it execs or `_exit`s).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child, as `child` requires.
        unsafe { child(plan, procs, None) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid.unsigned_abs())
}

/// Reads a forked child's failure report: `None` on EOF (the exec succeeded).
fn read_report(pipe: BorrowedFd<'_>) -> io::Result<Option<(SpawnStep, i32)>> {
    let mut message = [0u8; 8];
    let mut filled = 0;
    while filled < message.len() {
        match rustix::io::read(pipe, &mut message[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    match filled {
        0 => Ok(None),
        8 => {
            let step = i32::from_ne_bytes([message[0], message[1], message[2], message[3]]);
            let errno = i32::from_ne_bytes([message[4], message[5], message[6], message[7]]);
            Ok(Some((SpawnStep::from_code(step), errno)))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short report from the child",
        )),
    }
}

/// The child made with `CLONE_VM | CLONE_VFORK`: it runs in the master's own memory, on a
/// stack of its own, while the thread that made it waits in the kernel until the child has
/// exec'd or exited. What that asks, and why it holds here:
///
/// - **Nothing the child writes may matter to the master.** It writes the `scratch` fds
///   and the pid slots of the environment (both buffers of this one spawn, dropped after),
///   and `errno`, which is the waiting thread's (the child has its thread pointer): the
///   master reads no `errno` after the clone (the raw syscall returns the error). Signal
///   handlers, the working directory, the umask and credentials are the child's own
///   copies (no `CLONE_SIGHAND`, `CLONE_FS`, `CLONE_THREAD`), so resetting or changing
///   them changes nothing of the master's.
/// - **The fd table is shared (`CLONE_FILES`) only until the child's first syscall**,
///   which makes it a private copy of just the fds below the highest one it needs (step
///   0 of [`child`]): the master's table — four fds per worker — is not copied in the
///   master's time, nor at all above the listeners and pipes. Nothing before that
///   touches an fd, and a child that fails there exits without closing any (its exit
///   only drops its reference to the shared table).
/// - **No master code may run in the child.** Every signal is blocked across the clone
///   (see [`fork_exec`]) and the child resets every handler before it unblocks any, as
///   after `fork`.
/// - **The master's other threads go on**, in the same memory as the child: they never
///   see this spawn's buffers, and the child takes no lock, so neither can get in the
///   other's way.
/// - **A credential change is made on the shared memory's behalf too.** Dropping root
///   marks the memory not dumpable (`commit_creds` → `set_dumpable`), which keeps any
///   process of the workers' user from tracing the child while it still runs in the
///   master's memory — and would leave the master not dumpable after the child has
///   gone. So the master puts back what it had once the child has exec'd.
/// - **The stack** is this thread's, mapped once (64 KiB and a guard page below it) and
///   kept: the thread is suspended for as long as the child uses it.
#[cfg(target_arch = "x86_64")]
mod vm {
    use super::{child, ChildPlan, CloneArgs, SpawnStep, Spawned, CLONE_INTO_CGROUP};
    use std::cell::RefCell;
    use std::ffi::c_void;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::ptr;

    /// The child's stack, above one guard page.
    const STACK_BYTES: usize = 64 * 1024;

    struct Stack {
        /// The mapping: the guard page, then `STACK_BYTES`.
        base: *mut c_void,
        len: usize,
    }

    impl Stack {
        fn map() -> Option<Self> {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
            let len = STACK_BYTES + page;
            // SAFETY: a fresh anonymous mapping; nothing else refers to it.
            let base = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return None;
            }
            let stack = Self { base, len };
            // SAFETY: the first page of the mapping made above.
            if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } < 0 {
                return None; // (dropping `stack` unmaps it)
            }
            Some(stack)
        }
    }

    impl Drop for Stack {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `map`, used by no child any more (a child only
            // uses it while the thread that owns it is suspended in `spawn`).
            unsafe { libc::munmap(self.base, self.len) };
        }
    }

    thread_local! {
        static STACK: RefCell<Option<Stack>> = const { RefCell::new(None) };
    }

    /// What the child's entry point is handed.
    struct Start<'p, 'a> {
        plan: &'p mut ChildPlan<'a>,
        cgroup_procs: Option<RawFd>,
        /// The child shares the master's fd table, and keeps the fds below this.
        shared_fds_below: libc::c_uint,
    }

    /// The child's first Rust frame, at the top of its own stack.
    extern "C" fn entry(start: *mut c_void) -> ! {
        // SAFETY: `start` is the `Start` that `spawn` passed to `clone3_vm`, alive in the
        // suspended parent's frame for as long as this child runs, and this is the child.
        unsafe {
            let start = &mut *start.cast::<Start<'_, '_>>();
            child(start.plan, start.cgroup_procs, Some(start.shared_fds_below))
        }
    }

    /// `clone3(args)`; the child, on the stack `args` names, calls `entry(arg)`. Returns
    /// the child's pid to the parent, or `-errno`.
    ///
    /// # Safety
    ///
    /// `args` is valid, names a stack that nothing else uses, and has `CLONE_VM |
    /// CLONE_VFORK` (so that the parent's frame outlives the child's use of `arg`).
    unsafe fn clone3_vm(
        args: *mut CloneArgs,
        entry: extern "C" fn(*mut c_void) -> !,
        arg: *mut c_void,
    ) -> isize {
        let ret: isize;
        // The kernel keeps every register but rax, rcx and r11 in both processes, so the
        // child finds `entry` and `arg` where they were; its stack pointer is the top of
        // the new stack (16-byte aligned: a page boundary), where `call` pushes the
        // return address as the ABI wants for the callee.
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, {arg}",
            "call {entry}",
            "ud2",
            "2:",
            entry = in(reg) entry,
            arg = in(reg) arg,
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
        ret
    }

    /// Spawns as the module says; `None` where the kernel refuses (the caller falls back).
    pub(super) fn spawn(plan: &mut ChildPlan<'_>, cgroup_dir: Option<RawFd>) -> Option<Spawned> {
        STACK.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.is_none() {
                *slot = Stack::map();
            }
            let stack = slot.as_ref()?;
            let page = stack.len - STACK_BYTES;
            // SAFETY: prctl(PR_GET_DUMPABLE) only reads a flag.
            let dumpable = plan
                .credentials
                .map(|_| unsafe { libc::prctl(libc::PR_GET_DUMPABLE) });
            let mut pidfd: libc::c_int = -1;
            let mut args = CloneArgs {
                flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::CLONE_FILES)
                    as u64
                    | cgroup_dir.map_or(0, |_| CLONE_INTO_CGROUP),
                pidfd: ptr::addr_of_mut!(pidfd) as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.base as u64 + page as u64,
                stack_size: STACK_BYTES as u64,
                cgroup: cgroup_dir.map_or(0, |dir| dir as u64),
                ..CloneArgs::default()
            };
            let cgroup_procs = if cgroup_dir.is_some() {
                None
            } else {
                plan.cgroup_procs
            };
            let shared_fds_below = plan.highest_fd(cgroup_procs).saturating_add(1);
            let mut start = Start {
                plan,
                cgroup_procs,
                shared_fds_below: libc::c_uint::try_from(shared_fds_below).ok()?,
            };
            // SAFETY: `args` names the stack above, which only this thread's children use
            // and this thread is suspended while one does; the flags hold CLONE_VM |
            // CLONE_VFORK; `start` lives in this frame until after the child is gone.
            let pid =
                unsafe { clone3_vm(&mut args, entry, ptr::addr_of_mut!(start).cast::<c_void>()) };
            if dumpable == Some(1) {
                // SAFETY: prctl(PR_SET_DUMPABLE) only sets a flag, back to what it was.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong) };
            }
            if pid <= 0 {
                return None;
            }
            // The child has exec'd or exited: what it wrote into our memory is there.
            // SAFETY: `outcome` is fork_exec's, alive for this call.
            let [step, errno] = unsafe { ptr::read_volatile(start.plan.report.outcome) };
            Some(Spawned {
                pid: u32::try_from(pid).ok()?,
                // SAFETY: CLONE_PIDFD wrote a fresh pidfd (close-on-exec) that nothing owns.
                pidfd: (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
                failed: (step != 0).then(|| (SpawnStep::from_code(step), errno)),
            })
        })
    }
}

/// A child that has exec'd its program, or failed to and is exiting.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    /// Its pidfd, where it came with the child (`CLONE_PIDFD`); else the caller opens one.
    pub(crate) pidfd: Option<OwnedFd>,
    /// The step that failed and its errno; the child exited with 127 and awaits reaping.
    pub(crate) failed: Option<(SpawnStep, i32)>,
}

/// Where the child tells of a failure: always into `outcome`, which a `CLONE_VM` child
/// shares with the master (a forked child writes into its own copy, harmlessly), and to
/// `pipe` where there is one (a forked child's way).
#[derive(Clone, Copy)]
struct Report {
    /// The write end of a close-on-exec pipe, or -1.
    pipe: RawFd,
    /// `[step, errno]`, all zero until a step fails (steps count from 1).
    outcome: *mut [i32; 2],
}

/// The size of the kernel's `sigset_t`, which `rt_sigaction` insists on (not glibc's,
/// which is 128 bytes).
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_BYTES: usize = 8;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_BYTES: usize = 16;

/// What the child needs, as raw values prepared before `fork`.
struct ChildPlan<'a> {
    program: *const c_char,
    program_file: Option<RawFd>,
    argv: *const *const c_char,
    envp: *const *const c_char,
    pid_slots: &'a [*mut u8],
    listeners: &'a [RawFd],
    scratch: &'a mut [RawFd],
    stdin: Option<RawFd>,
    /// What becomes fd 1 and fd 2.
    output: [Option<RawFd>; 2],
    report: Report,
    cgroup_procs: Option<RawFd>,
    parent_death_signal: bool,
    credentials: Option<(u32, u32, &'a [u32])>,
    chdir: Option<*const c_char>,
    umask: Option<libc::mode_t>,
    parent: libc::pid_t,
}

impl ChildPlan<'_> {
    /// The highest fd the child needs (with `cgroup_procs`, and at least stderr).
    fn highest_fd(&self, cgroup_procs: Option<RawFd>) -> RawFd {
        let output = self.output.iter().flatten();
        self.listeners
            .iter()
            .chain(output)
            .chain(self.stdin.iter())
            .chain(self.program_file.iter())
            .chain(cgroup_procs.iter())
            .copied()
            .chain([self.report.pipe, 2])
            .max()
            .unwrap_or(2)
    }
}

/// The child between its creation and `execve`. `cgroup_procs` is the cgroup to enter by
/// writing `cgroup.procs`, for a child not created in it; `shared_fds_below`, for a child
/// that shares the master's fd table (`CLONE_FILES`), bounds the fds it needs.
///
/// # Safety
///
/// Must only be called in the child right after `fork` or `clone`, with every pointer in
/// `plan` valid (they point into the parent's buffers, which the child has a copy of, or
/// shares with a parent suspended until the child execs or exits), and with
/// `shared_fds_below` set if and only if the fd table is shared.
unsafe fn child(
    plan: &mut ChildPlan<'_>,
    cgroup_procs: Option<RawFd>,
    shared_fds_below: Option<libc::c_uint>,
) -> ! {
    // 0. A file descriptor table of its own, before any fd is touched: a `CLONE_FILES`
    //    child shares the master's until here. Only the fds below `shared_fds_below` are
    //    copied (`close_range(n, ~0, CLOSE_RANGE_UNSHARE)`, Linux ≥ 5.9): everything the
    //    child needs is below n, and what is above would be close-on-exec (step 5). Where
    //    the kernel cannot, `unshare(CLONE_FILES)` copies all of them.
    if let Some(below) = shared_fds_below {
        if libc::syscall(
            libc::SYS_close_range,
            below,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        ) < 0
            && libc::unshare(libc::CLONE_FILES) < 0
        {
            fail(plan.report, SpawnStep::Fork);
        }
    }

    // 1. Signal dispositions back to the defaults: handlers installed by the master must
    //    not leak, and neither must ignored signals (Rust's runtime ignores SIGPIPE, and
    //    `execve` keeps ignored signals ignored). The raw syscall, not glibc's wrapper,
    //    which refuses the two real-time signals glibc reserves for itself (32 and 33)
    //    — and those can arrive ignored from whoever started the master. An all-zero
    //    kernel `struct sigaction` is SIG_DFL with no flags and an empty mask on every
    //    architecture's layout. SIGKILL and SIGSTOP fail with EINVAL, as expected.
    //    The mask stays full until just before exec.
    let default = [0u64; 8];
    for signal in 1..=64 {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            default.as_ptr(),
            ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        );
    }

    // 1b. Into the worker's cgroup, while every fd is still where the parent left it:
    //    from here on, whatever this process starts belongs to that cgroup.
    if let Some(procs) = cgroup_procs {
        if libc::write(procs, b"0".as_ptr().cast(), 1) < 0 {
            fail(plan.report, SpawnStep::Cgroup);
        }
    }

    // 2. Get the report pipe and every listener out of the way of fds 3..3+n first, so
    //    that placing listener i can never clobber another source (overlapping numbers).
    let n = plan.listeners.len() as c_int;
    let floor = 3 + n;
    let mut report = plan.report;
    if report.pipe >= 0 {
        report.pipe = libc::fcntl(plan.report.pipe, libc::F_DUPFD_CLOEXEC, floor);
        if report.pipe < 0 {
            fail(plan.report, SpawnStep::ReportPipe);
        }
    }
    for (source, high) in plan.listeners.iter().zip(plan.scratch.iter_mut()) {
        *high = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, floor);
        if *high < 0 {
            fail(report, SpawnStep::Listeners);
        }
    }
    // The output pipes too (their numbers may be 1, 2 or a listener's slot).
    let mut output: [c_int; 2] = [-1; 2];
    for (source, high) in plan.output.iter().zip(output.iter_mut()) {
        if let Some(source) = source {
            *high = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, floor);
            if *high < 0 {
                fail(report, SpawnStep::Output);
            }
        }
    }

    // 3. stdin. (If the master had fd 0 closed, /dev/null may already *be* fd 0, with
    //    close-on-exec set: then clear the flag instead of dup2-ing onto itself.)
    if let Some(stdin) = plan.stdin {
        let done = if stdin == 0 {
            libc::fcntl(0, libc::F_SETFD, 0)
        } else {
            libc::dup2(stdin, 0)
        };
        if done < 0 {
            fail(report, SpawnStep::Stdin);
        }
    }

    // 3b. stdout and stderr, from their high copies (dup2 clears close-on-exec on the
    //    target; the high copies vanish at exec).
    for (target, high) in (1..).zip(output.iter()) {
        if *high >= 0 && libc::dup2(*high, target) < 0 {
            fail(report, SpawnStep::Output);
        }
    }

    // 4. The listeners into place. dup2 clears close-on-exec on the new fd; the high
    //    copies keep theirs and vanish at exec.
    for (target, high) in (3..).zip(plan.scratch.iter()) {
        if libc::dup2(*high, target) < 0 {
            fail(report, SpawnStep::Listeners);
        }
    }

    // 5. Belt and braces: mark every fd above the listeners close-on-exec, in case some
    //    library in the master opened one without O_CLOEXEC. Needs Linux 5.11; on older
    //    kernels this fails and we rely on everything being opened close-on-exec.
    libc::syscall(
        libc::SYS_close_range,
        floor as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    );

    // 6. A process group of our own: a terminal's Ctrl-C goes to the foreground group,
    //    which is then only the master, and the master coordinates the shutdown.
    if libc::setpgid(0, 0) < 0 {
        fail(report, SpawnStep::ProcessGroup);
    }

    // 7. The worker's credentials, in the only order that works: the supplementary
    //    groups and the group while we still have the privilege to set them, the user
    //    last (after it, none is left: a uid change from root clears every capability).
    //    Raw syscalls, not glibc's wrappers: those apply the change to every thread of
    //    the process through a signal broadcast, under a lock that another thread of the
    //    master may have held at `fork` (and after `clone3` glibc does not even know it
    //    forked). A raw syscall changes this thread, which is the whole child.
    //    (Each id is widened to a whole register, as the kernel reads it.)
    if let Some((uid, gid, groups)) = plan.credentials {
        let (uid, gid) = (uid as libc::c_long, gid as libc::c_long);
        if libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) < 0
            || libc::syscall(SYS_SETRESGID, gid, gid, gid) < 0
            || libc::syscall(SYS_SETRESUID, uid, uid, uid) < 0
        {
            fail(report, SpawnStep::Credentials);
        }
    }

    // 8. Never outlive the master. After the credential change, which clears the
    //    parent-death signal (the kernel does so on any change of uid or gid). If the
    //    master died before the prctl, no signal will come, so check the parent
    //    afterwards (we were then re-parented).
    //    (Not for an upgrade's new master, which must outlive the master that starts it.)
    if plan.parent_death_signal {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            fail(report, SpawnStep::ParentDeathSignal);
        }
        if libc::getppid() != plan.parent {
            libc::_exit(127);
        }
    }

    // 9. The working directory, as the worker (its permissions, not the master's), and
    //    the umask.
    if let Some(dir) = plan.chdir {
        if libc::chdir(dir) < 0 {
            fail(report, SpawnStep::WorkingDirectory);
        }
    }
    if let Some(mask) = plan.umask {
        libc::umask(mask);
    }

    // 10. Our own pid into LISTEN_PID= / WATCHDOG_PID=.
    let pid = libc::getpid();
    for slot in plan.pid_slots {
        write_decimal(*slot, pid.unsigned_abs());
    }

    // 11. An empty signal mask, then exec: the pinned file itself where there is one
    //     (`pin.rs`), else the path.
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
    if let Some(file) = plan.program_file {
        libc::syscall(
            libc::SYS_execveat,
            file,
            c"".as_ptr(),
            plan.argv,
            plan.envp,
            libc::AT_EMPTY_PATH,
        );
        if *libc::__errno_location() != libc::ENOSYS {
            fail(report, SpawnStep::Exec);
        }
    }
    libc::execve(plan.program, plan.argv, plan.envp);
    fail(report, SpawnStep::Exec)
}

/// One record of the master → keeper pipe: `[op, pgid]`, two native-endian `i32`s
/// (8 bytes: below `PIPE_BUF`, so written and read whole).
pub(crate) const KEEPER_ADD: i32 = 1;
/// The process group `pgid` is gone: forget it.
pub(crate) const KEEPER_REMOVE: i32 = 2;
/// The master ends cleanly: every worker's tree is gone; exit without killing.
pub(crate) const KEEPER_DONE: i32 = 3;

/// Forks the keeper: a process that blocks reading `records` (the read end of a pipe
/// whose write end only the master holds) and, when it reads EOF without a
/// [`KEEPER_DONE`] first — the master died, however — SIGKILLs every process group it
/// was told of and writes `1` to `cgroup_kill` (a `cgroup.kill` above every worker's
/// cgroup), then exits. `groups` is its memory for the process groups (allocated here,
/// before `fork`: the keeper never allocates); its capacity bounds how many it can
/// track at once.
///
/// The keeper ignores the signals a terminal or an operator would send the master's
/// group, sits in a process group of its own, holds no descriptor but these two, and
/// keeps the master's credentials (so it can kill workers that changed theirs).
pub(crate) fn fork_keeper(
    records: BorrowedFd<'_>,
    cgroup_kill: Option<BorrowedFd<'_>>,
    capacity: usize,
) -> io::Result<u32> {
    let mut groups: Vec<libc::pid_t> = vec![0; capacity];
    let records = records.as_raw_fd();
    let cgroup_kill = cgroup_kill.map(|fd| fd.as_raw_fd());
    // SAFETY: the child branch only runs `keeper`, which makes async-signal-safe raw
    // syscalls on `groups` (allocated above) and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child, as `keeper` requires.
        unsafe { keeper(records, cgroup_kill, &mut groups) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid.unsigned_abs())
}

/// The keeper's whole life (see [`fork_keeper`]).
///
/// # Safety
///
/// Only for the child right after `fork`.
unsafe fn keeper(records: RawFd, cgroup_kill: Option<RawFd>, groups: &mut [libc::pid_t]) -> ! {
    // Handlers of the master's are reset; the signals meant for the master are ignored.
    let ignore = [1u64, 0, 0, 0, 0, 0, 0, 0]; // sa_handler = SIG_IGN (1), no flags
    let default = [0u64; 8];
    for signal in 1..=64 {
        let keep_away = matches!(
            signal,
            libc::SIGHUP
                | libc::SIGINT
                | libc::SIGQUIT
                | libc::SIGTERM
                | libc::SIGUSR1
                | libc::SIGUSR2
                | libc::SIGTTIN
                | libc::SIGTTOU
                | libc::SIGWINCH
                | libc::SIGPIPE
        );
        let action = if keep_away { &ignore } else { &default };
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            action.as_ptr(),
            ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        );
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
    libc::setpgid(0, 0);
    // `ps -e` shows what it is.
    libc::prctl(libc::PR_SET_NAME, c"clutch-keeper".as_ptr(), 0, 0, 0);
    // Only the two descriptors stay: at 3 and 4, everything else closed (the listening
    // sockets above all: a keeper must not hold the port).
    let floor = 5;
    let records_high = libc::fcntl(records, libc::F_DUPFD, floor);
    let kill_high = cgroup_kill.map_or(-1, |fd| libc::fcntl(fd, libc::F_DUPFD, floor));
    if records_high < 0 {
        libc::_exit(1);
    }
    libc::dup2(records_high, 3);
    let kill_fd = if kill_high >= 0 && libc::dup2(kill_high, 4) >= 0 {
        4
    } else {
        -1
    };
    libc::syscall(
        libc::SYS_close_range,
        floor as libc::c_uint,
        libc::c_uint::MAX,
        0,
    );
    for fd in 0..3 {
        libc::close(fd);
    }
    loop {
        let mut record = [0u8; 8];
        let n = libc::read(3, record.as_mut_ptr().cast(), record.len());
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n != 8 {
            break; // EOF (or a broken pipe): the master is gone.
        }
        let (op, pgid) = record.split_at(4);
        let op = i32::from_ne_bytes([op[0], op[1], op[2], op[3]]);
        let pgid = i32::from_ne_bytes([pgid[0], pgid[1], pgid[2], pgid[3]]);
        match op {
            KEEPER_ADD => {
                if let Some(slot) = groups.iter_mut().find(|g| **g == 0) {
                    *slot = pgid;
                }
            }
            KEEPER_REMOVE => {
                if let Some(slot) = groups.iter_mut().find(|g| **g == pgid) {
                    *slot = 0;
                }
            }
            KEEPER_DONE => libc::_exit(0),
            _ => {}
        }
    }
    for pgid in groups.iter().filter(|g| **g > 1) {
        libc::kill(-*pgid, libc::SIGKILL);
    }
    if kill_fd >= 0 {
        libc::write(kill_fd, b"1".as_ptr().cast(), 1);
    }
    libc::_exit(0)
}

/// Reports `[step, errno]` (see [`Report`]) and exits with 127. Async-signal-safe.
///
/// # Safety
///
/// Only for the child, with `report.outcome` valid for a write.
unsafe fn fail(report: Report, step: SpawnStep) -> ! {
    let errno = *libc::__errno_location();
    ptr::write_volatile(report.outcome, [step as i32, errno]);
    if report.pipe >= 0 {
        let mut message = [0u8; 8];
        let (step_bytes, errno_bytes) = message.split_at_mut(4);
        step_bytes.copy_from_slice(&(step as i32).to_ne_bytes());
        errno_bytes.copy_from_slice(&errno.to_ne_bytes());
        // A pipe write of 8 bytes is atomic; if it fails there is nobody to tell.
        libc::write(report.pipe, message.as_ptr().cast(), message.len());
    }
    libc::_exit(127)
}

/// Writes `value` in decimal followed by NUL at `slot`, which has room for [`PID_ROOM`]
/// bytes. No allocation, no formatting machinery: async-signal-safe.
///
/// # Safety
///
/// `slot` must be valid for writes of `PID_ROOM` bytes.
unsafe fn write_decimal(slot: *mut u8, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    for digit in digits.iter_mut() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
        len += 1;
        if value == 0 {
            break;
        }
    }
    let mut out = slot;
    for digit in digits.iter().take(len).rev() {
        *out = *digit;
        out = out.add(1);
    }
    *out = 0;
}

/// Set once the `LISTEN_FDS` descriptors have been claimed, so that they can never be
/// owned twice (which would close them twice).
static LISTEN_FDS_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of fds `3..3 + count`, the descriptors a service manager passed with
/// `LISTEN_FDS=count`, and sets close-on-exec on each. Succeeds at most once per process;
/// later calls fail with `AlreadyExists`, since the fds may already have been closed and
/// their numbers reused.
pub(crate) fn take_listen_fds(count: usize) -> io::Result<Vec<OwnedFd>> {
    let count = RawFd::try_from(count)
        .ok()
        .filter(|count| *count <= RawFd::MAX - 3)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "LISTEN_FDS is too large"))?;
    // Check before claiming, so that a bad LISTEN_FDS does not leave half-owned fds.
    for fd in 3..3 + count {
        // SAFETY: F_GETFD only reads the flags of an fd number; no ownership is taken.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let error = io::Error::last_os_error();
            return Err(io::Error::new(error.kind(), format!("fd {fd}: {error}")));
        }
    }
    if LISTEN_FDS_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the LISTEN_FDS descriptors were already taken by this process",
        ));
    }
    let mut owned = Vec::with_capacity(count.unsigned_abs() as usize);
    for fd in 3..3 + count {
        // SAFETY: the fd is open (checked above) and, by the LISTEN_FDS protocol, was
        // handed to this process for it to own; the flag above guarantees we claim it
        // only once, and nothing else in this crate owns fds it did not open.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        owned.push(fd);
    }
    Ok(owned)
}

/// The process's original argument area: the memory the kernel filled with the argv
/// strings (and, right after them, the environment strings), which `/proc/PID/cmdline`
/// and so `ps` read. Overwriting it is the classic way to set a process title on Linux
/// (nginx, PostgreSQL, Chromium do it).
///
/// To get the area we need `argv`, which glibc passes (with `argc` and `envp`) to every
/// function in `.init_array`, as std itself relies on. That function runs before `main`,
/// while the process is single-threaded, which makes it the one sound moment to move what
/// lives in the area out of the way: every argv and environ string in it is copied to the
/// heap and the `argv[i]` / `environ[i]` pointers are redirected to the copies, so that
/// `std::env::args()`, `getenv` and friends keep working after the title overwrites the
/// originals. (This costs a copy of the arguments and environment, once, in every process
/// that links this crate.) Other C libraries (musl) do not pass those arguments, so there
/// the area is unknown and titles fall back to `comm` only.
///
/// Only with the `title` cargo feature (on by default): without it no hook is linked, and
/// nothing runs before `main` on clutch-unix's behalf.
#[cfg(all(target_os = "linux", target_env = "gnu", feature = "title"))]
mod argv_area {
    use std::ffi::{c_char, c_int, CStr};
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    pub(super) static START: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
    pub(super) static LEN: AtomicUsize = AtomicUsize::new(0);

    extern "C" {
        static mut environ: *mut *mut c_char;
    }

    // Where std puts its own argv capture: glibc calls these with (argc, argv, envp).
    #[used]
    #[link_section = ".init_array.00099"]
    static CAPTURE: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = capture;

    extern "C" fn capture(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
        // SAFETY: glibc passes the real argc/argv (and we only run on glibc); environ is
        // glibc's, and before main no other thread exists that could read or write it.
        // Every pointer we follow is an argv/environ entry the kernel or glibc set up,
        // each to a NUL-terminated string; we stop at the first null entry.
        unsafe {
            let argc = usize::try_from(argc).unwrap_or(0);
            if argc == 0 || argv.is_null() || (*argv).is_null() {
                return;
            }
            // The area: argv[0] onwards, as long as the strings are contiguous, first the
            // arguments, then the environment.
            let start = (*argv).cast::<u8>();
            let mut end = start;
            let mut extend = |string: *mut c_char| -> bool {
                if string.cast::<u8>() != end {
                    return false;
                }
                end = end.add(CStr::from_ptr(string).to_bytes_with_nul().len());
                true
            };
            let mut args = 0;
            while args < argc && extend(*argv.add(args)) {
                args += 1;
            }
            let mut envs = 0;
            let env = environ;
            if args == argc && !env.is_null() {
                while !(*env.add(envs)).is_null() && extend(*env.add(envs)) {
                    envs += 1;
                }
            }
            // Move those strings out of the area (leaked: they live as long as the
            // process), then publish the area.
            for i in 0..args {
                *argv.add(i) = copy(*argv.add(i));
            }
            for i in 0..envs {
                *env.add(i) = copy(*env.add(i));
            }
            LEN.store(end.offset_from(start).unsigned_abs(), Ordering::SeqCst);
            START.store(start, Ordering::SeqCst);
        }
    }

    /// A heap copy of a C string, never freed.
    ///
    /// # Safety
    ///
    /// `string` must point to a NUL-terminated string.
    unsafe fn copy(string: *mut c_char) -> *mut c_char {
        CStr::from_ptr(string).to_owned().into_raw()
    }
}

/// The original argument area, if it could be claimed (see `argv_area`).
pub(crate) struct ArgvArea {
    start: *mut u8,
    len: usize,
}

// SAFETY: the area is process-global memory that nothing else references any more (see
// `argv_area`); `title.rs` serialises writes through a Mutex.
unsafe impl Send for ArgvArea {}

impl ArgvArea {
    /// The area, or `None` where it is unknown (not glibc, or no argv).
    pub(crate) fn get() -> Option<Self> {
        #[cfg(all(target_os = "linux", target_env = "gnu", feature = "title"))]
        {
            let start = argv_area::START.load(Ordering::SeqCst);
            let len = argv_area::LEN.load(Ordering::SeqCst);
            if !start.is_null() && len > 1 {
                return Some(Self { start, len });
            }
        }
        None
    }

    /// How many bytes of title fit (one is kept for the terminating NUL).
    pub(crate) fn capacity(&self) -> usize {
        self.len - 1
    }

    /// Writes `title` (cut to the capacity) and fills the rest of the area with NULs.
    pub(crate) fn write(&mut self, title: &[u8]) {
        let n = title.len().min(self.capacity());
        // SAFETY: `start..start + len` is the argument area, valid and writable for the
        // life of the process; since `capture` moved every string out of it, no Rust or C
        // code reads it, and callers hold `&mut self`, serialised by title.rs's Mutex.
        unsafe {
            ptr::copy_nonoverlapping(title.as_ptr(), self.start, n);
            ptr::write_bytes(self.start.add(n), 0, self.len - n);
        }
    }
}
