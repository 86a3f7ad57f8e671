//! The fake worker processes: each one's fate is drawn when the core asks for its spawn,
//! and it then reacts to the core's actions as a real process would (it boots, says
//! READY=1, beats, crashes, hangs, announces STOPPING=1, honours or ignores signals,
//! exits after a delay).
//!
//! Owns [`Processes`] (the process table, the pid pool, the recently departed for stale
//! reports) and the part of the loop that turns a process's scheduled happenings and the
//! core's signals into inputs.

use std::time::Duration;

use clutch_proto::{ExitStatus, Pid, RecycleCause, Signal, SpawnError, SpawnErrorKind, WorkerId};

use super::faults::Happening;
use super::Input;
use super::Sim;
use crate::checker::Violation;
use crate::rng::Entropy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    /// Spawn asked for, not reported yet.
    Pending,
    /// The process exists.
    Running,
    /// Its end (or spawn failure) was reported.
    Gone,
}

/// A fake worker process: its fate is drawn when it is spawned.
#[derive(Debug, Clone)]
pub(super) struct Proc {
    state: ProcState,
    pid: Pid,
    /// How its spawn fails, if it does.
    spawn_fails: Option<SpawnErrorKind>,
    /// Time from start to READY=1 (`None`: never).
    boot: Option<Duration>,
    boot_crash: Option<Duration>,
    run_crash: Option<Duration>,
    hang_at: Option<Duration>,
    announce_at: Option<Duration>,
    /// When it asks to be recycled, why, and how many repeats follow.
    recycle_at: Option<(Duration, RecycleCause, u8)>,
    heartbeat: Option<Duration>,
    ignores_term: bool,
    exit_delay: Duration,
    abrt_kills: bool,
    hung: bool,
    exit_at: Option<Duration>,
}

impl Proc {
    fn placeholder() -> Self {
        Self {
            state: ProcState::Gone,
            pid: 0,
            spawn_fails: None,
            boot: None,
            boot_crash: None,
            run_crash: None,
            hang_at: None,
            announce_at: None,
            recycle_at: None,
            heartbeat: None,
            ignores_term: false,
            exit_delay: Duration::ZERO,
            abrt_kills: false,
            hung: false,
            exit_at: None,
        }
    }
}

/// The process table, indexed by worker id (index 0 unused), and the pid pool.
#[derive(Debug)]
pub(super) struct Processes {
    procs: Vec<Proc>,
    free_pids: Vec<Pid>,
    next_pid: Pid,
    /// Recently departed workers, for stale reports.
    departed: Vec<WorkerId>,
    /// Pids come from a tiny pool and are reused at once.
    pid_reuse: bool,
}

impl Processes {
    pub(super) fn new(pid_reuse: bool) -> Self {
        Self {
            procs: vec![Proc::placeholder()],
            free_pids: if pid_reuse {
                (100..104).rev().collect()
            } else {
                Vec::new()
            },
            next_pid: 1000,
            departed: Vec::new(),
            pid_reuse,
        }
    }

    /// The id the next spawned worker gets (the core's ids are consecutive).
    pub(super) fn next_id(&self) -> u64 {
        self.procs.len() as u64
    }

    /// The recently departed workers.
    pub(super) fn departed(&self) -> &[WorkerId] {
        &self.departed
    }

    /// The worker's process, if it is running.
    pub(super) fn running(&self, id: WorkerId) -> Option<&Proc> {
        self.procs
            .get(id.0 as usize)
            .filter(|p| p.state == ProcState::Running)
    }

    /// The pid of the worker's process, if it is running.
    pub(super) fn running_pid(&self, id: WorkerId) -> Option<Pid> {
        self.running(id).map(|p| p.pid)
    }

    fn alloc_pid(&mut self) -> Pid {
        self.free_pids.pop().unwrap_or_else(|| {
            self.next_pid += 1;
            self.next_pid
        })
    }

    fn remember_departed(&mut self, id: WorkerId) {
        if self.departed.len() >= 16 {
            self.departed.remove(0);
        }
        self.departed.push(id);
    }
}

impl<E: Entropy> Sim<'_, E> {
    /// The core asked for worker `id`: its process's fate is drawn now, its spawn is
    /// reported within the spawn latency.
    pub(super) fn spawn_process(&mut self, id: WorkerId) {
        debug_assert_eq!(id.0, self.procs.next_id());
        let proc = self.new_proc();
        self.procs.procs.push(proc);
        self.coverage.spawns += 1;
        let latency = self.rng.duration_upto(self.world.faults.spawn_latency);
        self.schedule(self.now + latency, Happening::SpawnReport(id));
    }

    /// Draws a new process's fate. After the calm every process is healthy.
    fn new_proc(&mut self) -> Proc {
        let f = self.world.faults.clone();
        let healthy = self.healed();
        let rng = &mut self.rng;
        let mut chance = |per_mille: u32| !healthy && rng.chance(per_mille);
        let fails_other = chance(f.spawn_fail);
        let never_ready = chance(f.never_ready);
        let boot_crash = chance(f.boot_crash);
        let run_crash = chance(f.run_crash);
        let heartbeat = rng.chance(f.heartbeat);
        let hang = heartbeat && !healthy && rng.chance(f.hang);
        let announce = !healthy && rng.chance(f.announce);
        let ignores_term = !healthy && rng.chance(f.ignore_term);
        // Drawn after the older knobs (a rate of zero draws nothing).
        let fails_resource = !healthy && rng.chance(f.resource_fail);
        let fails_exec = !healthy && rng.chance(f.exec_fail);
        let recycle = !healthy && rng.chance(f.recycle);
        let spawn_fails = if fails_exec {
            Some(SpawnErrorKind::Exec)
        } else if fails_resource {
            Some(SpawnErrorKind::Resource)
        } else {
            fails_other.then_some(SpawnErrorKind::Other)
        };
        let boot_max = if healthy {
            f.healthy_boot_time
        } else {
            f.boot_time
        };
        let boot = rng.duration_upto(boot_max);
        let recycle_at = recycle.then(|| {
            let at = boot + rng.duration_upto(f.run_crash_window);
            let cause = if rng.one_in(2) {
                RecycleCause::Memory {
                    bytes: rng.range(1 << 20, 1 << 34),
                }
            } else {
                RecycleCause::Requested
            };
            (at, cause, rng.range(0, 3) as u8)
        });
        let exit_delay = if healthy {
            rng.duration_upto(Duration::from_millis(5))
        } else {
            rng.duration_upto(f.exit_delay)
        };
        Proc {
            state: ProcState::Pending,
            pid: 0,
            spawn_fails,
            boot: (!never_ready).then_some(boot),
            boot_crash: boot_crash.then(|| rng.duration_upto(boot)),
            run_crash: run_crash.then(|| boot + rng.duration_upto(f.run_crash_window)),
            hang_at: hang.then(|| rng.duration_upto(boot + f.run_crash_window)),
            announce_at: announce.then(|| rng.duration_upto(boot + f.run_crash_window)),
            recycle_at,
            heartbeat: heartbeat.then_some(f.heartbeat_interval),
            ignores_term,
            exit_delay,
            abrt_kills: rng.chance(f.abrt_kills),
            hung: false,
            exit_at: None,
        }
    }

    fn schedule_exit(&mut self, id: WorkerId, after: Duration, status: ExitStatus) {
        let at = self.now + after;
        let proc = &mut self.procs.procs[id.0 as usize];
        if !proc.exit_at.is_some_and(|e| e <= at) {
            proc.exit_at = Some(at);
            self.schedule(at, Happening::Exit(id, status));
        }
    }

    /// The core signalled worker `id`: its process reacts as its fate says.
    pub(super) fn deliver_signal(&mut self, id: WorkerId, signal: Signal) {
        let Some(proc) = self.procs.running(id) else {
            // A zombie: the exit is already on its way.
            return;
        };
        let (ignores_term, hung, exit_delay, abrt_kills) = (
            proc.ignores_term,
            proc.hung,
            proc.exit_delay,
            proc.abrt_kills,
        );
        match signal {
            Signal::Kill => {
                let latency = self.rng.duration_upto(self.world.faults.kill_latency);
                self.schedule_exit(id, latency, ExitStatus::Signaled(9));
            }
            Signal::Term | Signal::Int if !ignores_term && !hung => {
                self.schedule_exit(id, exit_delay, ExitStatus::Code(0));
            }
            Signal::Abrt | Signal::Quit if abrt_kills => {
                let latency = self.rng.duration_upto(Duration::from_millis(2));
                let number = if signal == Signal::Abrt { 6 } else { 3 };
                self.schedule_exit(id, latency, ExitStatus::Signaled(number));
            }
            _ => {}
        }
    }

    fn process_exited(&mut self, id: WorkerId, status: ExitStatus) -> Result<(), Violation> {
        let procs = &mut self.procs;
        let proc = &mut procs.procs[id.0 as usize];
        proc.state = ProcState::Gone;
        let pid = proc.pid;
        if procs.pid_reuse {
            procs.free_pids.push(pid);
        }
        procs.remember_departed(id);
        self.step(Input::Exited { id, status })
    }

    /// One of a process's own happenings (any other is not this module's).
    pub(super) fn process_happening(&mut self, what: Happening) -> Result<(), Violation> {
        match what {
            Happening::SpawnReport(id) => self.spawn_report(id)?,
            Happening::Ready(id) => {
                if self.procs.running(id).is_some_and(|p| !p.hung) {
                    self.step(Input::Ready { id })?;
                }
            }
            Happening::Heartbeat(id) => {
                if let Some(interval) = self
                    .procs
                    .running(id)
                    .filter(|p| !p.hung)
                    .and_then(|p| p.heartbeat)
                {
                    self.step(Input::Heartbeat { id })?;
                    let jitter = self.rng.duration_upto(interval / 4);
                    self.schedule(self.now + interval - jitter, Happening::Heartbeat(id));
                }
            }
            Happening::Crash(id, status) => {
                if self.procs.running(id).is_some() && !self.healed() {
                    self.process_exited(id, status)?;
                }
            }
            Happening::Hang(id) => {
                if self.procs.running(id).is_some() && !self.healed() {
                    self.procs.procs[id.0 as usize].hung = true;
                }
            }
            Happening::Announce(id) => {
                let healed = self.healed();
                if let Some(p) = self.procs.running(id).filter(|p| !p.hung && !healed) {
                    let delay = p.exit_delay;
                    self.step(Input::Stopping { id })?;
                    self.schedule_exit(id, delay, ExitStatus::Code(0));
                }
            }
            Happening::Recycle(id, cause, repeats) => {
                if self.procs.running(id).is_some_and(|p| !p.hung) && !self.healed() {
                    self.coverage.recycle_reports += 1;
                    self.step(Input::Recycle { id, cause })?;
                    if repeats > 0 {
                        let gap = self.rng.duration_upto(Duration::from_millis(500));
                        self.schedule(self.now + gap, Happening::Recycle(id, cause, repeats - 1));
                    }
                }
            }
            Happening::Exit(id, status) => {
                if self.procs.running(id).is_some() {
                    self.process_exited(id, status)?;
                }
            }
            other => unreachable!("{other:?} is not a process's happening"),
        }
        Ok(())
    }

    fn spawn_report(&mut self, id: WorkerId) -> Result<(), Violation> {
        let proc = &self.procs.procs[id.0 as usize];
        if proc.state != ProcState::Pending {
            return Ok(());
        }
        // A driver that batches spawns asks the core, just before it forks, whether the
        // worker is still wanted.
        let unwanted = self.world.faults.cancel_stopped
            && self
                .cluster
                .worker(id)
                .is_some_and(|w| w.stop_reason.is_some());
        let failure = if unwanted {
            Some(SpawnErrorKind::Cancelled)
        } else {
            proc.spawn_fails
        };
        if let Some(kind) = failure {
            self.procs.procs[id.0 as usize].state = ProcState::Gone;
            self.procs.remember_departed(id);
            let error = SpawnError::new(kind);
            return self.step(Input::SpawnFailed { id, error });
        }
        let pid = self.procs.alloc_pid();
        let now = self.now;
        let proc = &mut self.procs.procs[id.0 as usize];
        proc.state = ProcState::Running;
        proc.pid = pid;
        let proc = proc.clone();
        if let Some(after) = proc.boot_crash {
            let status = if self.rng.one_in(2) {
                ExitStatus::Code(1)
            } else {
                ExitStatus::Signaled(11)
            };
            self.schedule(now + after, Happening::Crash(id, status));
        }
        if let Some(boot) = proc.boot {
            self.schedule(now + boot, Happening::Ready(id));
        }
        if let Some(after) = proc.run_crash {
            self.schedule(now + after, Happening::Crash(id, ExitStatus::Code(70)));
        }
        if let Some(after) = proc.hang_at {
            self.schedule(now + after, Happening::Hang(id));
        }
        if let Some(after) = proc.announce_at {
            self.schedule(now + after, Happening::Announce(id));
        }
        if let Some((after, cause, repeats)) = proc.recycle_at {
            self.schedule(now + after, Happening::Recycle(id, cause, repeats));
        }
        if let Some(interval) = proc.heartbeat {
            let first = self.rng.duration_upto(interval);
            self.schedule(now + first, Happening::Heartbeat(id));
        }
        self.step(Input::Spawned { id, pid })
    }
}
