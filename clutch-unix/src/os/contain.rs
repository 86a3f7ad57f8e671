//! Containment: every process a worker starts belongs to the cluster and ends with it.
//!
//! A worker is a process *tree*: a shell wrapper and its server, a server and the
//! helpers it forks, a daemon it double-forks. Three mechanisms hold the tree:
//!
//! - **A cgroup per worker**, where a cgroup v2 hierarchy is writable (as root, in a
//!   container that owns its cgroup, under systemd with `Delegate=yes`):
//!   `<the master's cgroup>/clutch-<pid>/tree-<n>`, in which the child is created
//!   (`clone3(CLONE_INTO_CGROUP)`, or it writes `0` to `cgroup.procs` before `execve`).
//!   No descendant can leave it — not by `setsid`, not by changing its uid — and
//!   `cgroup.kill` ends all of it at once. A cgroup holds one worker's tree at a time;
//!   once that tree is gone (`populated 0`) it is kept for the next worker rather than
//!   removed (see [`Containment::recycle`]), so its name counts cgroups, not workers. The
//!   workers' cgroups are leaves, so the "no internal processes" rule is never in the
//!   way. They enable no controllers, except the memory controller when a memory limit
//!   is set (`--max-worker-memory`) and the master's cgroup hands it down (see
//!   [`Containment::start`]): then a worker's memory is its whole tree's
//!   (`memory.current`).
//! - **A process group per worker** (the fallback, and always alongside): every worker
//!   is the leader of its own group; signals go to the group.
//! - **The master is a child subreaper** (`PR_SET_CHILD_SUBREAPER`): orphans of a worker's
//!   tree are re-parented to it and reaped, so no zombie piles up, and clutch is a
//!   correct PID 1 in a container.
//!
//! And a **keeper** ([`Keeper`]): a tiny process forked before the first worker that
//! outlives the master by design. `PR_SET_PDEATHSIG` ends a worker when the master dies,
//! but not its descendants, and the kernel clears it when a process changes its uid; the
//! keeper learns of the master's death by EOF on a pipe and SIGKILLs every worker's
//! cgroup at once (`cgroup.kill` of `clutch-<pid>`) and the process group of each worker
//! that has no cgroup (the master tells it of those only).
//!
//! `CLUTCH_CONTAINMENT=group` forces the process-group fallback (for tests and for hosts
//! where creating cgroups is not wanted); `cgroup` makes a missing cgroup hierarchy a
//! startup error instead of a fallback.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use clutch_proto::Signal;
use rustix::fs::{Mode, OFlags};
use rustix::process::Pid;

use crate::error::ContainmentError;
use crate::Error;

/// Which processes a graceful stop signals.
///
/// Non-exhaustive: systemd knows more kill modes (`mixed`, `none`) that may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KillMode {
    /// The whole tree (systemd's `KillMode=control-group`): a shell wrapper and its
    /// server both get SIGTERM. The default.
    #[default]
    Tree,
    /// Only the worker's main process, for programs that stop their own children
    /// (systemd's `KillMode=mixed`); the rest of the tree is SIGKILLed when the main
    /// process exits or at the force-exit deadline.
    Main,
}

impl std::str::FromStr for KillMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "tree" => Ok(Self::Tree),
            "main" => Ok(Self::Main),
            other => Err(format!("{other:?} is not a kill mode (tree or main)")),
        }
    }
}

/// The variable that forces a containment mechanism.
pub const CONTAINMENT_ENV: &str = "CLUTCH_CONTAINMENT";

/// The master's means of containing its workers.
pub(crate) struct Containment {
    /// `<master's cgroup>/clutch-<pid>`, when cgroups are usable.
    base: Option<PathBuf>,
    /// The workers' cgroups have the memory controller (`memory.current`).
    memory: bool,
    keeper: Option<Keeper>,
    /// A child that is not a worker's and outlives the master: an upgrade's new master.
    spared: Option<u32>,
    /// Ended workers whose orphans were killed, and whose orphans' children may yet be
    /// re-parented to the master (see [`Self::kill_orphans_of`]). Sorted, no duplicates.
    hunted: Vec<u64>,
    /// Emptied workers' cgroups, kept for the next workers ([`Self::recycle`]).
    pool: Vec<WorkerCgroup>,
    /// How many cgroups were made: the next is `tree-<made + 1>`.
    made: u64,
    /// The master's own cgroup's `cgroup.procs`, held open only to keep its inode (see
    /// [`Self::start`]).
    _procs: Option<OwnedFd>,
    /// `clutch-<pid>/cpu.stat`: read to flush every worker cgroup's CPU counters at once
    /// (see [`Self::recycle`]).
    base_cpu_stat: Option<OwnedFd>,
    /// Cgroups recycled since the driver's turn began ([`Self::new_turn`]).
    recycled_this_turn: u32,
}

impl Containment {
    /// Becomes a subreaper, finds a usable cgroup hierarchy (or falls back to process
    /// groups, as `CLUTCH_CONTAINMENT` allows) and starts the keeper.
    ///
    /// With `memory` (a memory limit is set), the workers' cgroups get the memory
    /// controller where that is possible: when the master's own cgroup lists `memory`
    /// in its `cgroup.subtree_control` (systemd with `Delegate=yes` and
    /// `MemoryAccounting=yes` on a parent, a container runtime that enabled it, or a
    /// master in the root cgroup, where it is switched on here: the root cgroup is
    /// exempt from the "no internal processes" rule). Then `clutch-<pid>`, which holds no
    /// process, enables it for the workers' cgroups. Anywhere else (the master shares a
    /// non-root cgroup with its own process, cgroup v1, no cgroups) it cannot be, and a
    /// worker's memory is its main process's resident set.
    ///
    /// The master's own cgroup's `cgroup.procs` and each worker cgroup's are held open,
    /// though never read or written: `clone3(CLONE_INTO_CGROUP)` checks that we may
    /// write both (the destination's, and the common ancestor's, as a migration would),
    /// and kernfs drops an inode that nothing holds, so without an open file every spawn
    /// allocated and freed the two inodes again (a tenth of the master's CPU on a mass
    /// respawn, by `perf`; half of that now).
    pub(crate) fn start(workers: usize, memory: bool) -> Result<Self, Error> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| Error::io("becoming a child subreaper", e.into()))?;
        let wanted = std::env::var(CONTAINMENT_ENV).unwrap_or_default();
        let base = match wanted.as_str() {
            "group" => None,
            "" | "auto" => match make_base() {
                Ok(base) => Some(base),
                Err(reason) => {
                    tracing::debug!("worker cgroups unavailable ({reason}): process groups only");
                    None
                }
            },
            "cgroup" => Some(
                make_base()
                    .map_err(|reason| Error::Containment(ContainmentError::NoCgroup { reason }))?,
            ),
            other => {
                return Err(Error::Containment(ContainmentError::UnknownSetting {
                    value: other.to_owned(),
                }))
            }
        };
        if let Some(base) = &base {
            tracing::debug!(cgroup = %base.display(), "workers run in cgroups of their own");
        }
        let memory = memory && base.as_deref().is_some_and(enable_memory_controller);
        let keeper = match Keeper::start(base.as_deref(), workers) {
            Ok(keeper) => Some(keeper),
            Err(e) => {
                tracing::warn!(
                    "starting the keeper: {e}; workers' descendants may outlive a killed master"
                );
                None
            }
        };
        let open = |path: PathBuf| {
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()
        };
        let procs = base
            .as_deref()
            .and_then(Path::parent)
            .and_then(|own| open(own.join("cgroup.procs")));
        let base_cpu_stat = base.as_deref().and_then(|base| open(base.join("cpu.stat")));
        Ok(Self {
            _procs: procs,
            base_cpu_stat,
            recycled_this_turn: 0,
            base,
            memory,
            keeper,
            spared: None,
            hunted: Vec::new(),
            pool: Vec::new(),
            made: 0,
        })
    }

    /// The driver's loop woke for a new turn (see [`Self::recycle`]).
    pub(crate) fn new_turn(&mut self) {
        self.recycled_this_turn = 0;
    }

    /// Whether a worker's memory is measured in its cgroup (`memory.current`, its whole
    /// tree) rather than as its main process's resident set.
    pub(crate) fn measures_cgroup_memory(&self) -> bool {
        self.memory
    }

    /// Leaves child `pid` alone at the end: the new master an upgrade handed over to is
    /// a child of this one, not an orphan of a worker's tree.
    pub(crate) fn spare(&mut self, pid: Option<u32>) {
        self.spared = pid;
    }

    /// How workers are contained: `"cgroup"` or `"group"` (for `status`).
    pub(crate) fn mechanism(&self) -> &'static str {
        if self.base.is_some() {
            "cgroup"
        } else {
            "group"
        }
    }

    /// A cgroup for worker `id`: an emptied one from the pool, or a new one; `None`
    /// without cgroups (then its process group is all there is).
    pub(crate) fn worker_cgroup(&mut self, id: u64) -> Option<WorkerCgroup> {
        let base = self.base.as_ref()?;
        if let Some(cgroup) = self.pool.pop() {
            cgroup.emptied.set(false);
            return Some(cgroup);
        }
        let name = format!("tree-{}", self.made + 1);
        match WorkerCgroup::create(&base.join(name)) {
            Ok(cgroup) => {
                self.made += 1;
                Some(cgroup)
            }
            Err(e) => {
                tracing::warn!(
                    worker = id,
                    "creating the worker's cgroup: {e}; using its process group only"
                );
                None
            }
        }
    }

    /// The tree in `cgroup` is gone: keep the cgroup for a next worker, as long as the
    /// pool holds fewer than `keep` (the cluster's target), or remove it.
    ///
    /// A `mkdir` and an `rmdir` of a cgroup cost the master more than all the rest of a
    /// respawn's cgroup work (the kernel creates and tears down a dozen interface files
    /// and the controllers' state each time), and cgroup v2 refuses `rename(2)`, so the
    /// cgroup is reused under its name as it is. What a reused cgroup must not carry
    /// over, it does not:
    ///
    /// - processes: it is only kept when `populated 0` says none is left (an exited
    ///   process that is a zombie is no longer a member);
    /// - a kill: a cgroup that `cgroup.kill` was ever written to is not reused. On this
    ///   project's test kernel (6.18) every child later created in such a cgroup with
    ///   `clone3(CLONE_INTO_CGROUP)` is SIGKILLed at birth, as if the kill were still
    ///   going on (found by `a_killed_worker_takes_its_descendants_with_it`, whose
    ///   replacements died at once in a loop). Only a tree that left
    ///   processes behind its main process is killed ([`Tree::end`]), so the usual
    ///   respawn still reuses its cgroup;
    /// - CPU time: `cpu.stat` counts on, so the figure at the hand-over is kept and
    ///   subtracted ([`WorkerCgroup::cpu_usage`]);
    /// - memory: an emptied cgroup is still charged for the page cache its tree read,
    ///   which the next worker's `memory.current` (and its memory limit) would count,
    ///   so with the memory controller on a cgroup is never reused: removing it hands
    ///   the charge to the parent, as before.
    ///
    /// Answers whether the tree is known to be gone: `populated 0` was read (a cgroup
    /// whose interface files cannot be read is not kept, and its tree is not known gone).
    ///
    /// The `cpu.stat` read flushes the kernel's per-CPU counters of the cgroup. When
    /// several trees end in one turn (a mass respawn), one read of `clutch-<pid>`'s
    /// `cpu.stat` first flushes them all, and each cgroup's read then finds nothing to
    /// flush: by `perf`, the reads went from 9.4 % of the master's samples to 2.6 % on a
    /// respawn of 1024. (A single end reads its own cgroup only.)
    pub(crate) fn recycle(&mut self, mut cgroup: WorkerCgroup, keep: usize) -> bool {
        let empty = cgroup.empty();
        if empty && !self.memory && self.pool.len() < keep && !cgroup.killed.get() {
            self.recycled_this_turn += 1;
            if self.recycled_this_turn == 2 {
                if let Some(base) = &self.base_cpu_stat {
                    let mut buffer = [0u8; 1024];
                    let _ = rustix::io::pread(base, &mut buffer, 0);
                }
            }
            // Without a CPU figure to start from, the next worker's would be wrong: then
            // the cgroup is dropped (removed).
            if let Some(used) = cgroup.read_cpu_usage() {
                cgroup.cpu_before = used;
                self.pool.push(cgroup);
            }
        }
        empty
    }

    /// Without cgroups: SIGKILLs the orphans that the `ended` workers left — descendants
    /// that left their process group (`setsid`) and were re-parented to the master when
    /// their parent died — recognised by the `CLUTCH_WORKER_ID` they inherited.
    /// `is_worker` tells the master's live workers apart (they are its children too).
    /// One look at the master's children serves every worker that ended in a turn.
    ///
    /// An orphan killed here may have children of its own: they are re-parented to the
    /// master when it dies, after this look. So a worker whose orphans were killed stays
    /// *hunted*, and `orphan_reaped` (the master reaped a child that was no worker's since
    /// the last call) makes the next call look again for the hunted workers' orphans, until
    /// a look finds none of them.
    pub(crate) fn kill_orphans_of(
        &mut self,
        ended: &[u64],
        orphan_reaped: bool,
        is_worker: impl Fn(u32) -> bool,
    ) {
        if self.base.is_some() {
            return; // The cgroups held them all.
        }
        let mut ids: Vec<u64> = ended.to_vec();
        if orphan_reaped {
            ids.extend(self.hunted.iter().copied());
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        let keeper = self.keeper.as_ref().map(|k| k.pid);
        let marks: Vec<(u64, String)> = ids
            .iter()
            .map(|&id| (id, format!("CLUTCH_WORKER_ID={id}")))
            .collect();
        let mut found = Vec::new();
        for pid in children() {
            if Some(pid) == keeper || is_worker(pid) {
                continue;
            }
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let of = environ.split(|&b| b == 0).find_map(|var| {
                marks
                    .iter()
                    .find(|(_, mark)| var == mark.as_bytes())
                    .map(|&(id, _)| id)
            });
            if let Some(id) = of {
                if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                found.push(id);
            }
        }
        // Hunted: exactly the workers some of whose orphans were just killed.
        self.hunted.retain(|id| !ids.contains(id));
        self.hunted.extend(found);
        self.hunted.sort_unstable();
        self.hunted.dedup();
    }

    /// A worker's tree exists: the keeper is to kill its group should the master die.
    /// Not for a tree in a cgroup: the keeper's `cgroup.kill` of the base ends those
    /// (and a record would wake the keeper twice per respawn for nothing).
    pub(crate) fn track(&mut self, tree: &Tree) {
        if let (Some(keeper), None) = (&mut self.keeper, &tree.cgroup) {
            keeper.send(crate::os::sys::KEEPER_ADD, tree.pgid);
        }
    }

    /// A worker's tree is gone.
    pub(crate) fn untrack(&mut self, tree: &Tree) {
        if let (Some(keeper), None) = (&mut self.keeper, &tree.cgroup) {
            keeper.send(crate::os::sys::KEEPER_REMOVE, tree.pgid);
        }
    }

    /// Kills whatever is left under the base cgroup and of the orphans re-parented to
    /// the master; tells the keeper the master ends cleanly. Called once, at the end.
    pub(crate) fn finish(&mut self) {
        if let Some(base) = &self.base {
            let _ = std::fs::write(base.join("cgroup.kill"), "1");
        }
        // Without cgroups, a descendant that left its worker's process group (`setsid`,
        // a daemon's double fork) was re-parented to the master when its parent died:
        // every child still here now is such an orphan (or the keeper, or an upgrade's
        // new master). Killing one re-parents *its* children to the master, so kill,
        // reap, and look again, until none is left (boundedly: a process in
        // uninterruptible sleep may take its time to die, and the master must end).
        let keeper = self.keeper.as_ref().map(|k| k.pid);
        let spared = self.spared;
        let left = end_orphans(
            |pid| Some(pid) != keeper && Some(pid) != spared,
            std::time::Duration::from_secs(2),
        );
        if !left.is_empty() {
            tracing::warn!(?left, "orphans still alive 2 s after SIGKILL; leaving them");
        }
        if let Some(keeper) = self.keeper.take() {
            keeper.done();
        }
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        self.finish();
        self.pool.clear(); // (each removed as it drops)
        if let Some(base) = &self.base {
            // The workers' cgroups were removed as each tree ended; an empty base goes too.
            if let Err(e) = std::fs::remove_dir(base) {
                tracing::debug!(cgroup = %base.display(), "removing the cgroup: {e}");
            }
        }
    }
}

/// SIGKILLs every child of the master that `doomed` picks, reaps it, and does the same
/// with the children re-parented to the master meanwhile, until no child `doomed` picks
/// is left or `patience` has passed. Returns those left.
fn end_orphans(doomed: impl Fn(u32) -> bool, patience: std::time::Duration) -> Vec<u32> {
    use rustix::process::{kill_process, waitpid, Signal, WaitOptions};
    let deadline = std::time::Instant::now() + patience;
    let mut killed = std::collections::BTreeSet::new();
    loop {
        let left: Vec<u32> = children().into_iter().filter(|&pid| doomed(pid)).collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        let mut reaped = false;
        for &raw in &left {
            let Some(pid) = i32::try_from(raw).ok().and_then(Pid::from_raw) else {
                continue;
            };
            if killed.insert(raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
            // A zombie is still listed among the children until it is reaped.
            if let Ok(Some(_)) = waitpid(Some(pid), WaitOptions::NOHANG) {
                reaped = true;
            }
        }
        if !reaped {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// The master's live children, from `/proc/self/task/*/children`.
fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The directory of this process's own cgroup in a cgroup v2 hierarchy.
pub(crate) fn own_cgroup_dir() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 membership in /proc/self/cgroup")?
        .to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    cgroup2_dir(&mounts, &path).ok_or_else(|| "no cgroup2 mount holds the master's cgroup".into())
}

/// Finds the master's own cgroup in a cgroup v2 hierarchy and makes `clutch-<pid>` in it.
fn make_base() -> Result<PathBuf, String> {
    let dir = own_cgroup_dir()?;
    let nested = in_nested_pid_namespace();
    if !nested {
        remove_stale(&dir);
    }
    // A fresh directory of our own: never one another master uses (two masters in pid
    // namespaces of their own, both pid 1, may share a parent cgroup).
    let pid = std::process::id();
    let mut base = None;
    for n in 0..100 {
        let name = if n == 0 {
            format!("clutch-{pid}")
        } else {
            format!("clutch-{pid}-{n}")
        };
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                base = Some(dir.join(name));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("creating {}: {e}", dir.join(name).display())),
        }
    }
    let base = base.ok_or("every clutch-<pid> name is taken")?;
    if !base.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&base);
        return Err("no cgroup.kill (Linux < 5.14)".into());
    }
    Ok(base)
}

/// Enables the memory controller for the workers' cgroups under `base`, if the master's
/// cgroup hands it down (or can: the root cgroup). Answers whether it is on.
fn enable_memory_controller(base: &Path) -> bool {
    let has_memory = |file: &Path| {
        std::fs::read_to_string(file)
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "memory"))
    };
    let Some(parent) = base.parent() else {
        return false;
    };
    if !has_memory(&base.join("cgroup.controllers")) {
        // Only the root cgroup may enable it with processes of its own in it (the
        // master's); elsewhere this write fails with EBUSY, and that is the answer.
        let root = parent.join("cgroup.subtree_control");
        if !has_memory(&parent.join("cgroup.controllers"))
            || std::fs::write(&root, "+memory").is_err()
            || !has_memory(&base.join("cgroup.controllers"))
        {
            tracing::debug!(
                "the memory controller is not handed down to the workers' cgroups: \
                 measuring each worker's resident set instead"
            );
            return false;
        }
    }
    match std::fs::write(base.join("cgroup.subtree_control"), "+memory") {
        Ok(()) => {
            tracing::debug!("workers' cgroups have the memory controller");
            true
        }
        Err(e) => {
            tracing::debug!("enabling the memory controller for the workers' cgroups: {e}");
            false
        }
    }
}

/// Whether this process is outside the initial pid namespace (a container, `unshare
/// --pid`): then the pids in other masters' cgroup names are not ours to check. The
/// initial namespace's inode is a kernel constant (`PROC_PID_INIT_INO`); `NSpid:` is no
/// guide, since a namespace with its own `/proc` shows only its own pids.
pub(crate) fn in_nested_pid_namespace() -> bool {
    const INITIAL: &str = "pid:[4026531836]";
    std::fs::read_link("/proc/self/ns/pid").map_or(true, |ns| ns.as_os_str() != INITIAL)
}

/// Ends the worker cgroups of masters that died without their keeper's help (both
/// SIGKILLed): `clutch-<pid>[-n]` beside ours whose pid is gone. Their processes are
/// killed and the directories removed. Only called in the initial pid namespace, where
/// the pids in those names mean what they say.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("clutch-"))
            .and_then(|p| p.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let stale = entry.path();
        tracing::info!(cgroup = %stale.display(), "ending the worker cgroups of a dead master");
        let _ = std::fs::write(stale.join("cgroup.kill"), "1");
        let workers = std::fs::read_dir(&stale).into_iter().flatten().flatten();
        for worker in workers.filter(|w| w.path().is_dir()) {
            // cgroup.kill is asynchronous: wait (briefly, bounded) for each to empty.
            for _ in 0..100 {
                if std::fs::remove_dir(worker.path()).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_dir(&stale);
    }
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` names it) under a cgroup2
/// mount listed in `mountinfo`.
fn cgroup2_dir(mountinfo: &str, path: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if !rest.starts_with("cgroup2 ") {
            return None;
        }
        let mut fields = fields.split(' ');
        let root = fields.nth(3)?;
        let mount = fields.next()?;
        let relative = if root == "/" {
            path
        } else {
            path.strip_prefix(root)?
        };
        let dir = Path::new(mount).join(relative.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    })
}

/// Opens interface file `name` of the cgroup whose directory is `dir`, close-on-exec: a
/// lookup of one name, not of the whole path.
fn open_in(dir: &OwnedFd, name: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())
}

/// One worker's cgroup.
pub(crate) struct WorkerCgroup {
    dir: PathBuf,
    dir_fd: OwnedFd,
    events: OwnedFd,
    /// `cpu.stat`, kept open: read at every hand-over (below), with `pread`.
    cpu_stat: OwnedFd,
    /// `cgroup.procs`, open only to keep its inode: see [`Containment::start`].
    _procs: OwnedFd,
    /// `cgroup.kill` was written to it: it is never reused (see [`Containment::recycle`]).
    killed: std::cell::Cell<bool>,
    /// `populated 0` was read since its current tree began: no process of that tree is
    /// left, and none comes back (only the master puts processes in a worker's cgroup),
    /// so `cgroup.events` need not be read again.
    emptied: std::cell::Cell<bool>,
    /// `cpu.stat`'s `usage_usec` when this cgroup's current tree got it: what the trees
    /// before it used (see [`Containment::recycle`]).
    cpu_before: std::time::Duration,
}

impl WorkerCgroup {
    fn create(dir: &Path) -> io::Result<Self> {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let dir_fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let events = open_in(&dir_fd, "cgroup.events", OFlags::RDONLY)?;
        let cpu_stat = open_in(&dir_fd, "cpu.stat", OFlags::RDONLY)?;
        let procs = open_in(&dir_fd, "cgroup.procs", OFlags::RDONLY)?;
        Ok(Self {
            _procs: procs,
            dir: dir.to_owned(),
            dir_fd,
            events,
            cpu_stat,
            killed: std::cell::Cell::new(false),
            emptied: std::cell::Cell::new(false),
            cpu_before: std::time::Duration::ZERO,
        })
    }

    /// The directory, for the child to be created in.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir_fd.as_fd()
    }

    /// `cgroup.events`: pollable for `PRIORITY`, which fires when `populated` changes.
    pub(crate) fn events(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// `memory.current`: the memory charged to the whole tree, in bytes, when the
    /// memory controller is on for the workers' cgroups.
    pub(crate) fn memory_current(&self) -> Option<u64> {
        let text = self.read("memory.current")?;
        text.trim().parse().ok()
    }

    /// The CPU time of the tree in it, its ended processes included (`cpu.stat`'s
    /// `usage_usec`, less what the trees before it in this cgroup used). Every cgroup v2
    /// cgroup has it, with or without the cpu controller.
    pub(crate) fn cpu_usage(&self) -> Option<std::time::Duration> {
        Some(self.read_cpu_usage()?.saturating_sub(self.cpu_before))
    }

    /// `cpu.stat`'s `usage_usec`: every tree's since the cgroup was made.
    fn read_cpu_usage(&self) -> Option<std::time::Duration> {
        let mut buffer = [0u8; 1024];
        let n = rustix::io::pread(&self.cpu_stat, &mut buffer, 0).ok()?;
        let text = std::str::from_utf8(buffer.get(..n)?).ok()?;
        crate::os::usage::parse_cpu_stat(text)
    }

    /// Whether any process is left in it. When that cannot be read, "no", so that the
    /// worker's end is not held up forever (but [`empty`](Self::empty) says "not known").
    pub(crate) fn populated(&self) -> bool {
        if self.emptied.get() {
            return false;
        }
        let mut buffer = [0u8; 256];
        let Ok(n) = rustix::io::pread(&self.events, &mut buffer, 0) else {
            return false;
        };
        let text = buffer.get(..n).unwrap_or_default();
        for line in text.split(|&b| b == b'\n') {
            match line {
                b"populated 1" => return true,
                b"populated 0" => self.emptied.set(true),
                _ => {}
            }
        }
        false
    }

    /// Whether its tree is known to be gone: `populated 0` was read.
    fn empty(&self) -> bool {
        !self.populated() && self.emptied.get()
    }

    fn pids(&self) -> Vec<Pid> {
        self.read("cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter_map(Pid::from_raw)
            .collect()
    }

    /// One of its interface files, read whole.
    fn read(&self, name: &str) -> Option<String> {
        let file = open_in(&self.dir_fd, name, OFlags::RDONLY).ok()?;
        let mut text = String::new();
        io::Read::read_to_string(&mut std::fs::File::from(file), &mut text).ok()?;
        Some(text)
    }

    /// Writes `cgroup.kill`; answers whether that worked.
    fn kill(&self) -> bool {
        self.killed.set(true);
        let written = open_in(&self.dir_fd, "cgroup.kill", OFlags::WRONLY)
            .and_then(|kill| rustix::io::write(&kill, b"1"));
        if let Err(e) = written {
            tracing::warn!(cgroup = %self.dir.display(), "cgroup.kill: {e}");
        }
        written.is_ok()
    }
}

impl Drop for WorkerCgroup {
    fn drop(&mut self) {
        // Empty by now (its end was `populated 0`), or being emptied by cgroup.kill.
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(cgroup = %self.dir.display(), "removing the cgroup: {e}");
        }
    }
}

/// A worker's process tree: its process group (led by the worker) and, where there is
/// one, its cgroup.
pub(crate) struct Tree {
    pgid: u32,
    cgroup: Option<WorkerCgroup>,
}

impl Tree {
    pub(crate) fn new(pgid: u32, cgroup: Option<WorkerCgroup>) -> Self {
        Self { pgid, cgroup }
    }

    pub(crate) fn cgroup(&self) -> Option<&WorkerCgroup> {
        self.cgroup.as_ref()
    }

    /// The tree is gone: its cgroup, for [`Containment::recycle`].
    pub(crate) fn into_cgroup(self) -> Option<WorkerCgroup> {
        self.cgroup
    }

    /// Sends `signal` to every process of the tree: the group, and in a cgroup every
    /// process listed there (those that left the group with `setsid`).
    pub(crate) fn signal(&self, signal: Signal) {
        let Some(os) = crate::os::process::signal_number(signal)
            .and_then(rustix::process::Signal::from_named_raw)
        else {
            return;
        };
        let group = || {
            if let Some(pgid) = i32::try_from(self.pgid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process_group(pgid, os);
            }
        };
        match &self.cgroup {
            // The group too in case the cgroup could not be written.
            Some(cgroup) if signal == Signal::Kill => {
                if !cgroup.kill() {
                    group();
                }
            }
            // Any other signal exactly once per process: a second SIGTERM means "stop
            // now" to many servers (clutch's own worker side among them). The cgroup
            // lists every process, its group's members included.
            Some(cgroup) => {
                for pid in cgroup.pids() {
                    let _ = rustix::process::kill_process(pid, os);
                }
            }
            None => group(),
        }
    }

    /// The main process is gone: SIGKILL what is left of the tree, so that a
    /// replacement never shares the listening sockets with a ghost. Returns whether
    /// the end must be awaited (a cgroup still populated).
    pub(crate) fn end(&self) -> bool {
        match &self.cgroup {
            // The usual end of a worker that started nothing: its cgroup is empty
            // already, and so is its group (every member is in the cgroup).
            Some(cgroup) if !cgroup.populated() => false,
            _ => {
                self.signal(Signal::Kill);
                self.cgroup.as_ref().is_some_and(WorkerCgroup::populated)
            }
        }
    }
}

/// The keeper's handle in the master: the write end of its pipe.
struct Keeper {
    records: OwnedFd,
    pid: u32,
}

impl Keeper {
    fn start(base: Option<&Path>, workers: usize) -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let kill = base
            .map(|base| {
                rustix::fs::open(
                    base.join("cgroup.kill"),
                    OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            })
            .transpose()?;
        // Room for every worker's group, with headroom for scaling up (4096 is the most
        // `clutch scale` takes).
        let capacity = (workers * 2).max(4096);
        let pid =
            crate::os::sys::fork_keeper(read.as_fd(), kill.as_ref().map(AsFd::as_fd), capacity)?;
        // Writes never block the master: a keeper that cannot take a record (stopped by
        // someone) misses it, and says nothing — containment then rests on the cgroup.
        rustix::io::ioctl_fionbio(&write, true)?;
        Ok(Self {
            records: write,
            pid,
        })
    }

    fn send(&mut self, op: i32, pgid: u32) {
        let mut record = [0u8; 8];
        record[..4].copy_from_slice(&op.to_ne_bytes());
        record[4..].copy_from_slice(&(pgid as i32).to_ne_bytes());
        if let Err(e) = rustix::io::write(&self.records, &record) {
            tracing::warn!(keeper = self.pid, "telling the keeper: {e}");
        }
    }

    /// The clean end: the keeper exits without killing anything.
    fn done(mut self) {
        self.send(crate::os::sys::KEEPER_DONE, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_for_a_path() {
        let mountinfo = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
41 31 0:38 / /tmp rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        // /tmp stands for the mount point: it exists on every test machine.
        assert_eq!(cgroup2_dir(mountinfo, "/"), Some(PathBuf::from("/tmp")));
        assert_eq!(cgroup2_dir(mountinfo, "/no/such/dir"), None);
        let nested = "41 31 0:38 /outer /tmp rw - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_dir(nested, "/outer"), Some(PathBuf::from("/tmp")));
        assert_eq!(cgroup2_dir(nested, "/elsewhere"), None);
    }

    #[test]
    fn kill_modes_parse() {
        assert_eq!("tree".parse(), Ok(KillMode::Tree));
        assert_eq!("main".parse(), Ok(KillMode::Main));
        assert!("all"
            .parse::<KillMode>()
            .unwrap_err()
            .contains("tree or main"));
    }
}
