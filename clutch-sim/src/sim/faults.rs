//! The fault scheduler: the world's agenda of future happenings and the faults that are
//! not a process's own — signal storms to the master, application commands, late,
//! duplicate and stale reports — and the run's shape in time (the chaos, the calm, the
//! liveness check, the final SIGTERM, the end).
//!
//! Owns [`Happening`], the [`Agenda`] (a time-ordered queue, ties in insertion order)
//! and the drawing of each injected fault from the run's entropy.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use clutch_proto::{
    ExitStatus, Pid, Readiness, RecycleCause, Signal, SpawnError, SpawnErrorKind, WorkerId,
    MAX_WORKERS,
};

use super::Input;
use super::Sim;
use crate::checker::Violation;
use crate::rng::Entropy;
use crate::world::MAX_SIM_WORKERS;

/// Something the world does at a point in time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Happening {
    // A process's own (see `process.rs`).
    SpawnReport(WorkerId),
    Ready(WorkerId),
    Heartbeat(WorkerId),
    Crash(WorkerId, ExitStatus),
    Hang(WorkerId),
    Announce(WorkerId),
    /// It asks to be recycled (over the memory limit, or by itself); this many more
    /// reports follow, as a driver sampling memory would repeat them.
    Recycle(WorkerId, RecycleCause, u8),
    Exit(WorkerId, ExitStatus),
    // The successor master's (see `successor.rs`), by its spawn number.
    SuccessorReport(u32),
    SuccessorReady(u32),
    SuccessorExit(u32, ExitStatus),
    // The scheduler's.
    Storm(u8),
    Command,
    Stale,
    Calm,
    Liveness,
    FinalTerm,
    End,
}

impl Happening {
    /// True for the successor master's happenings (handled in `successor.rs`).
    pub(super) fn is_successor(self) -> bool {
        matches!(
            self,
            Self::SuccessorReport(_) | Self::SuccessorReady(_) | Self::SuccessorExit(..)
        )
    }

    /// True for the happenings of one process (handled in `process.rs`).
    pub(super) fn is_process(self) -> bool {
        matches!(
            self,
            Self::SpawnReport(_)
                | Self::Ready(_)
                | Self::Heartbeat(_)
                | Self::Crash(..)
                | Self::Hang(_)
                | Self::Announce(_)
                | Self::Recycle(..)
                | Self::Exit(..)
        )
    }
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The world's future: happenings in time order, ties in the order they were scheduled.
#[derive(Debug, Default)]
pub(super) struct Agenda {
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl Agenda {
    fn push(&mut self, at: Duration, what: Happening) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            what,
        }));
    }

    /// When the next happening is due.
    pub(super) fn next_at(&self) -> Option<Duration> {
        self.queue.peek().map(|e| e.0.at)
    }

    /// The next happening and when it is due.
    pub(super) fn pop(&mut self) -> Option<(Duration, Happening)> {
        self.queue.pop().map(|Reverse(next)| (next.at, next.what))
    }
}

/// Every kind of spawn failure, for stale reports.
const SPAWN_ERROR_KINDS: [SpawnErrorKind; 4] = [
    SpawnErrorKind::Resource,
    SpawnErrorKind::Exec,
    SpawnErrorKind::Other,
    SpawnErrorKind::Cancelled,
];

impl<E: Entropy> Sim<'_, E> {
    pub(super) fn schedule(&mut self, at: Duration, what: Happening) {
        self.agenda.push(at, what);
    }

    fn after_gap(&mut self, mean: Duration, what: Happening) {
        let gap = self.rng.duration_upto(mean * 2);
        self.schedule(self.now + gap, what);
    }

    /// Schedules the first of each injected fault and the end of the chaos.
    pub(super) fn schedule_plan(&mut self) {
        let plan = self.world.plan.clone();
        let faults = self.world.faults.clone();
        if let Some(mean) = faults.storms {
            self.after_gap(mean, Happening::Storm(0));
        }
        if let Some(mean) = faults.commands {
            self.after_gap(mean, Happening::Command);
        }
        if let Some(mean) = faults.stale_reports {
            self.after_gap(mean, Happening::Stale);
        }
        if plan.calm {
            self.schedule(plan.chaos, Happening::Calm);
        } else if plan.final_term {
            self.schedule(plan.chaos, Happening::FinalTerm);
        } else {
            self.schedule(plan.chaos, Happening::End);
        }
    }

    /// True while the world still misbehaves.
    fn chaotic(&self) -> bool {
        self.now < self.world.plan.chaos
    }

    /// True once the world has healed for good.
    pub(super) fn healed(&self) -> bool {
        self.world.plan.calm && !self.chaotic()
    }

    /// How long a healed world may take to bring the cluster to its target: every slot
    /// may first have to shed a bad worker (one whose boot or hang was decided before the
    /// calm), twice (a current and its successor), each time waiting out the longest
    /// detection, the longest backoff and a healthy boot; and a pending rollout needs
    /// a healthy boot per batch, twice (a queued one).
    fn liveness_bound(&self) -> Duration {
        let c = &self.world.config;
        let f = &self.world.faults;
        let ready = match c.readiness() {
            Readiness::Spawned => Duration::ZERO,
            Readiness::Delay(delay) => delay,
            Readiness::Notify => f.healthy_boot_time,
        };
        let boot = f.spawn_latency + ready;
        let detect = f.spawn_latency + c.boot_timeout() + c.hang().timeout.unwrap_or_default();
        // A rollout's batch moves on only after its new workers' probation.
        let proven = boot + c.min_uptime();
        let cycle = detect + c.backoff().max + proven;
        let rounds = self.cluster.target().div_ceil(c.rollout_batch()) as u32;
        cycle * 2 + proven * (2 * rounds + 1) + Duration::from_millis(1)
    }

    /// One of the scheduler's happenings. Returns false when the run is over.
    pub(super) fn scheduler_happening(&mut self, what: Happening) -> Result<bool, Violation> {
        match what {
            Happening::Storm(remaining) => self.storm(remaining)?,
            Happening::Command => self.command()?,
            Happening::Stale => self.stale()?,
            Happening::Calm => {
                let bound = self.liveness_bound();
                self.schedule(self.now + bound, Happening::Liveness);
                if self.world.plan.final_term {
                    self.schedule(self.now + bound, Happening::FinalTerm);
                } else {
                    self.schedule(self.now + bound, Happening::End);
                }
            }
            Happening::Liveness => {
                self.coverage.liveness_checked += 1;
                self.checker.check_liveness(self.now, &self.cluster)?;
            }
            Happening::FinalTerm => {
                self.step(Input::Signal(Signal::Term))?;
                let end = self
                    .checker
                    .exit_deadline()
                    .unwrap_or(self.now)
                    .max(self.now);
                self.schedule(end + Duration::from_millis(1), Happening::End);
            }
            Happening::End => {
                if let Some(deadline) = self.checker.exit_deadline() {
                    if !self.checker.exited() && !self.end_extended {
                        // A shutdown is under way: give it until its deadline.
                        self.end_extended = true;
                        let end = deadline.max(self.now) + Duration::from_millis(1);
                        self.schedule(end, Happening::End);
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
            other => unreachable!("{other:?} is a process's happening"),
        }
        Ok(true)
    }

    fn storm(&mut self, remaining: u8) -> Result<(), Violation> {
        if !self.chaotic() || self.checker.exited() {
            return Ok(());
        }
        let mut signal = self.rng.weighted(&[
            (20, Signal::Hup),
            (12, Signal::Ttin),
            (12, Signal::Ttou),
            (10, Signal::Usr1),
            (5, Signal::Usr2),
            (8, Signal::Winch),
            (2, Signal::Abrt),
            (1, Signal::Kill),
            (2, Signal::Term),
            (1, Signal::Int),
            (1, Signal::Quit),
        ]);
        if signal == Signal::Ttin && self.cluster.target() >= MAX_SIM_WORKERS {
            signal = Signal::Winch;
        }
        self.step(Input::Signal(signal))?;
        if remaining > 0 {
            let gap = self.rng.duration_upto(Duration::from_millis(50));
            self.schedule(self.now + gap, Happening::Storm(remaining - 1));
        } else if let Some(mean) = self.world.faults.storms {
            let burst = self.rng.range(0, 8) as u8;
            self.after_gap(mean, Happening::Storm(burst));
        }
        Ok(())
    }

    fn command(&mut self) -> Result<(), Violation> {
        if !self.chaotic() || self.checker.exited() {
            return Ok(());
        }
        let target = self.cluster.target();
        let input = match self.rng.below(100) {
            0..=39 => Input::Reload,
            40..=49 => Input::Scale(target),
            50..=54 => Input::Scale(0),
            55..=58 => Input::Scale(MAX_WORKERS + 1),
            59 => Input::Scale(usize::MAX),
            60..=93 => Input::Scale(self.rng.range_usize(1, (target + 3).min(MAX_SIM_WORKERS))),
            94..=97 => Input::Shutdown,
            _ => Input::ShutdownNow,
        };
        // Where upgrades are possible, some commands ask for one (drawn only there).
        let input = if self.world.config.upgrades() && self.rng.one_in(6) {
            Input::Upgrade
        } else {
            input
        };
        self.step(input)?;
        if let Some(mean) = self.world.faults.commands {
            self.after_gap(mean, Happening::Command);
        }
        Ok(())
    }

    /// A late, duplicate or stale report: about a departed worker, an id never issued,
    /// id 0, or a duplicate spawn report about a running one.
    fn stale(&mut self) -> Result<(), Violation> {
        if !self.chaotic() {
            return Ok(());
        }
        let next_id = self.procs.next_id();
        let id = match self.rng.below(10) {
            0..=6 if !self.procs.departed().is_empty() => self.rng.pick(self.procs.departed()),
            7 => WorkerId(0),
            8 => {
                let id = WorkerId(self.rng.range(1, next_id.max(1)));
                if let Some(pid) = self.procs.running_pid(id) {
                    self.coverage.stale_reports += 1;
                    self.step(Input::Spawned { id, pid: pid + 1 })?;
                }
                return self.reschedule_stale();
            }
            _ => WorkerId(next_id + self.rng.below(3)),
        };
        let input = match self.rng.below(6) {
            0 => Input::Exited {
                id,
                status: ExitStatus::Code(self.rng.range(0, 2) as i32),
            },
            1 => Input::Ready { id },
            2 => Input::Heartbeat { id },
            3 => Input::Stopping { id },
            4 => Input::Spawned {
                id,
                pid: self.rng.range(1, 200) as Pid,
            },
            _ => Input::SpawnFailed {
                id,
                error: SpawnError::new(self.rng.pick(&SPAWN_ERROR_KINDS)),
            },
        };
        self.coverage.stale_reports += 1;
        self.step(input)?;
        self.reschedule_stale()
    }

    fn reschedule_stale(&mut self) -> Result<(), Violation> {
        if let Some(mean) = self.world.faults.stale_reports {
            self.after_gap(mean, Happening::Stale);
        }
        Ok(())
    }
}
