//! The fake successor master of an upgrade: its fate is drawn when the core asks for it
//! ([`Action::SpawnSuccessor`](clutch_proto::Action::SpawnSuccessor)), and it then
//! behaves as a real one would — its spawn fails, or it starts its workers and says it
//! serves (`READY=1` on its predecessor's channel) after a while, or dies before, or
//! never serves, or dies after it; it honours SIGTERM (or ignores it) and SIGKILL.
//!
//! The upgrade fault is one of those fates: the successor dies at each phase.

use std::time::Duration;

use clutch_proto::{ExitStatus, Pid, Signal, SpawnError, SpawnErrorKind, SuccessorFact};

use super::faults::Happening;
use super::Input;
use super::Sim;
use crate::checker::Violation;
use crate::rng::Entropy;

/// Successor pids: far from the workers' (the core must not care, but traces read
/// better).
const FIRST_SUCCESSOR_PID: Pid = 900_000;

/// How a successor's life goes, drawn at its spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// It serves after this long.
    Serves(Duration),
    /// Its spawn fails.
    SpawnFails,
    /// It dies this long after its start, before serving.
    DiesStarting(Duration),
    /// It never serves.
    NeverServes,
    /// It serves after the first, and dies after the second.
    DiesAfterServing(Duration, Duration),
}

/// The successor master the world runs (one at a time).
#[derive(Debug, Clone)]
pub(super) struct Successor {
    /// Which spawn this is (happenings of earlier ones are stale).
    number: u32,
    pid: Pid,
    fate: Fate,
    running: bool,
    ignores_term: bool,
    exit_at: Option<Duration>,
}

impl<E: Entropy> Sim<'_, E> {
    /// The core asked for a successor: its fate is drawn now, its spawn reported within
    /// the spawn latency.
    pub(super) fn spawn_successor(&mut self) {
        let f = self.world.faults.clone();
        let c = &self.world.config;
        // A healthy one serves well within the timeout: its workers boot and pass
        // probation.
        let serve_max = (c.boot_timeout() / 2).min(Duration::from_secs(5)) + c.min_uptime();
        let number = self.successors + 1;
        self.successors = number;
        let healthy = self.healed();
        let rng = &mut self.rng;
        let serves = rng.duration_upto(serve_max);
        let fate = if !healthy && rng.chance(f.successor_fail) {
            match rng.below(4) {
                0 => Fate::SpawnFails,
                1 => Fate::DiesStarting(rng.duration_upto(serves)),
                2 => Fate::NeverServes,
                _ => Fate::DiesAfterServing(serves, rng.duration_upto(c.force_exit_timeout())),
            }
        } else {
            Fate::Serves(serves)
        };
        let ignores_term = !healthy && rng.chance(f.successor_ignores_term);
        self.successor = Some(Successor {
            number,
            pid: FIRST_SUCCESSOR_PID + number,
            fate,
            running: false,
            ignores_term,
            exit_at: None,
        });
        self.coverage.successors += 1;
        let latency = self.rng.duration_upto(f.spawn_latency);
        self.schedule(self.now + latency, Happening::SuccessorReport(number));
    }

    /// The core signalled the successor (`pid`).
    pub(super) fn signal_successor(&mut self, pid: Pid, signal: Signal) {
        let Some(s) = self
            .successor
            .as_ref()
            .filter(|s| s.running && s.pid == pid)
        else {
            return;
        };
        let (number, ignores_term) = (s.number, s.ignores_term);
        match signal {
            Signal::Kill => {
                let latency = self.rng.duration_upto(self.world.faults.kill_latency);
                self.schedule_successor_exit(number, latency, ExitStatus::Signaled(9));
            }
            Signal::Term if !ignores_term => {
                // It stops its workers first.
                let delay = self.rng.duration_upto(self.world.faults.exit_delay);
                self.schedule_successor_exit(number, delay, ExitStatus::Code(0));
            }
            _ => {}
        }
    }

    fn schedule_successor_exit(&mut self, number: u32, after: Duration, status: ExitStatus) {
        let at = self.now + after;
        let Some(s) = self.successor.as_mut().filter(|s| s.number == number) else {
            return;
        };
        if !s.exit_at.is_some_and(|e| e <= at) {
            s.exit_at = Some(at);
            self.schedule(at, Happening::SuccessorExit(number, status));
        }
    }

    /// One of the successor's happenings.
    pub(super) fn successor_happening(&mut self, what: Happening) -> Result<(), Violation> {
        let current = |sim: &Self, number: u32| {
            sim.successor
                .as_ref()
                .filter(|s| s.number == number)
                .cloned()
        };
        match what {
            Happening::SuccessorReport(number) => {
                let Some(s) = current(self, number) else {
                    return Ok(());
                };
                if s.fate == Fate::SpawnFails {
                    self.successor = None;
                    let error = SpawnError::new(SpawnErrorKind::Exec);
                    return self.step(Input::Successor(SuccessorFact::SpawnFailed(error)));
                }
                if let Some(s) = self.successor.as_mut() {
                    s.running = true;
                }
                match s.fate {
                    Fate::Serves(after) => {
                        self.schedule(self.now + after, Happening::SuccessorReady(number));
                    }
                    Fate::DiesStarting(after) => {
                        self.schedule_successor_exit(number, after, ExitStatus::Code(1));
                    }
                    Fate::DiesAfterServing(serves, dies) => {
                        self.schedule(self.now + serves, Happening::SuccessorReady(number));
                        self.schedule_successor_exit(number, serves + dies, ExitStatus::Code(70));
                    }
                    Fate::NeverServes | Fate::SpawnFails => {}
                }
                self.step(Input::Successor(SuccessorFact::Spawned { pid: s.pid }))
            }
            Happening::SuccessorReady(number) => match current(self, number) {
                Some(s) if s.running => self.step(Input::Successor(SuccessorFact::Ready)),
                _ => Ok(()),
            },
            Happening::SuccessorExit(number, status) => match current(self, number) {
                Some(s) if s.running => {
                    self.successor = None;
                    self.step(Input::Successor(SuccessorFact::Exited(status)))
                }
                _ => Ok(()),
            },
            other => unreachable!("{other:?} is not the successor's happening"),
        }
    }
}
