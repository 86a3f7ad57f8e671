//! The trace: a readable line per input and action (on request), and always a
//! fingerprint of the whole run, so "same seed, same run" is one `u64` comparison.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use clutch_proto::{Action, Event, Notice};

use crate::input::Input;

/// A 64-bit running hash of every input and action with its time (FNV-1a's constants,
/// one multiply per word). Not cryptographic: it only has to tell two runs apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(0xCBF2_9CE4_8422_2325)
    }
}

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0000_0100_0000_01B3);
        self.0 ^= self.0 >> 29;
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_i32(&mut self, word: i32) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

impl Fingerprint {
    /// The hash so far.
    #[must_use]
    pub fn value(&self) -> u64 {
        self.0
    }

    fn time(&mut self, at: Duration) {
        self.write_u64(at.as_nanos() as u64);
    }

    /// Adds an input delivered at `at`.
    pub fn input(&mut self, at: Duration, input: &Input) {
        self.time(at);
        input.hash(self);
    }

    /// Adds an action drained at `at`.
    pub fn action(&mut self, at: Duration, action: &Action) {
        self.time(at);
        match action {
            Action::Spawn {
                id,
                slot,
                generation,
            } => (1u8, id, slot, generation).hash(self),
            Action::Signal { id, pid, signal } => (2u8, id, pid, signal).hash(self),
            Action::Event(event) => {
                3u8.hash(self);
                self.event(event);
            }
            Action::Notify(notice) => {
                4u8.hash(self);
                match notice {
                    Notice::Status(status) => status.hash(self),
                    other => std::mem::discriminant(other).hash(self),
                }
            }
            Action::Exit(reason) => (5u8, reason).hash(self),
            Action::SpawnSuccessor => 6u8.hash(self),
            Action::SignalSuccessor { pid, signal } => (7u8, pid, signal).hash(self),
        }
    }

    fn event(&mut self, event: &Event) {
        std::mem::discriminant(event).hash(self);
        match event {
            Event::WorkerStarted { id, pid, .. }
            | Event::WorkerReady { id, pid, .. }
            | Event::WorkerStopping { id, pid, .. }
            | Event::WorkerBootTimedOut { id, pid, .. } => (id, pid).hash(self),
            Event::WorkerSpawnFailed { id, error, .. } => (id, error.kind).hash(self),
            Event::WorkerSpawnCancelled { id, reason, .. } => (id, reason).hash(self),
            Event::Listening { id } => id.hash(self),
            Event::WorkerHung { id, silent_for, .. } => (id, silent_for).hash(self),
            Event::WorkerDied {
                id, status, uptime, ..
            } => (id, status, uptime).hash(self),
            Event::WorkerExit {
                id, status, reason, ..
            } => (id, status, reason).hash(self),
            Event::RespawnDelayed { slot, delay, .. } => (slot, delay).hash(self),
            Event::WorkerRecycling { id, cause, .. } => (id, cause).hash(self),
            Event::ShutdownStarted { trigger } => trigger.hash(self),
            Event::ShutdownForced { killed } => killed.hash(self),
            Event::ShutDown { reason } => reason.hash(self),
            Event::ReloadStarted { generation } => generation.hash(self),
            Event::ReloadFinished { generation, took } => (generation, took).hash(self),
            Event::ReloadFailed { generation, .. } => generation.hash(self),
            Event::Scaled { from, to } => (from, to).hash(self),
            Event::SignalForwarded { signal, workers } => (signal, workers).hash(self),
            Event::SignalIgnored { signal, .. } => signal.hash(self),
            Event::UpgradeSpawned { pid } | Event::UpgradeHandedOver { pid } => pid.hash(self),
            Event::UpgradeFailed { cause } => cause.hash(self),
            Event::SuccessorLost { pid, status } => (pid, status).hash(self),
            _ => {}
        }
    }
}

/// Formats a time offset the way trace lines show it: milliseconds, microsecond
/// precision, right-aligned.
#[must_use]
pub(crate) fn millis(at: Duration) -> String {
    format!("{:>12.3}", at.as_secs_f64() * 1e3)
}
