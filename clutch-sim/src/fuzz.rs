//! Fuzzing the core directly: arbitrary input sequences, no world model.
//!
//! Where the simulator feeds the core only what a real world could say, this decoder
//! feeds it anything the [`Input`] vocabulary can express — exits of workers still being
//! spawned, READY from workers that never started, scale to zero, time standing still —
//! and holds it to what must be true whatever the inputs: no panic, the invariants after
//! every step, and the driving contract (one Exit, last, then inert; no spawn once
//! shutting down; deadlines in the future after a timeout; `poll_timeout` a pure query).

use std::time::{Duration, Instant};

use clutch_proto::{
    Action, Backoff, ClusterState, Config, CrashBudget, Event, ExitReason, ExitStatus,
    ForwardSignals, HangPolicy, Readiness, RecycleCause, Signal, SpawnError, SpawnErrorKind,
    SuccessorFact, WorkerId, MAX_WORKERS,
};

use crate::input::Input;

/// Most inputs decoded from one fuzz input.
pub const MAX_INPUTS: usize = 4096;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// The next byte, or zero once the input is used up.
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()]
    }
}

const MS: u64 = 1;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Decodes a valid configuration from the first bytes (small values, so deadlines
/// matter within a few inputs).
fn decode_config(bytes: &mut Bytes<'_>) -> Config {
    let boot_timeout = millis(bytes.pick(&[MS, 10, 100, 1000, 60_000]));
    let initial = millis(bytes.pick(&[1, 10, 100]));
    let mut b = Config::builder();
    // One byte for the worker count and the forwarded signals (its high part), so that
    // the checked-in corpus decodes as it did before the setting existed.
    let workers = bytes.byte();
    b.workers(usize::from(workers % 6))
        .force_exit_timeout(millis(bytes.pick(&[1, 5, 50, 500, 7500])))
        .boot_timeout(boot_timeout)
        .readiness(match bytes.byte() % 3 {
            0 => Readiness::Notify,
            1 => Readiness::Spawned,
            _ => Readiness::Delay(boot_timeout / 2),
        })
        .backoff(Backoff {
            initial,
            factor: bytes.pick(&[1.0, 1.5, 2.0, 100.0]),
            max: initial * bytes.pick(&[1, 10, 100]),
        })
        .min_uptime(millis(bytes.pick(&[1, 100, 1000, 30_000])))
        .crash_budget(CrashBudget {
            failures: u32::from(bytes.byte() % 6) + 1,
            window: millis(bytes.pick(&[1, 100, 10_000])),
        })
        .hang(HangPolicy {
            timeout: bytes.pick(&[None, Some(millis(5)), Some(millis(50)), Some(millis(500))]),
            signal: bytes.pick(&[
                None,
                Some(Signal::Abrt),
                Some(Signal::Term),
                Some(Signal::Usr1),
            ]),
            grace: millis(bytes.pick(&[1, 10, 1000])),
        });
    let batch = bytes.byte();
    b.rollout_batch(usize::from(batch % 4) + 1)
        // A maximum age from the batch byte's high part (no extra byte, so the corpus
        // decodes as before): none, or a few probations' worth, with its jitter.
        .max_worker_age(match batch / 4 % 3 {
            0 => None,
            1 => Some(millis(5)),
            _ => Some(millis(300)),
        })
        .seed(u64::from(batch))
        .service_watchdog(bytes.pick(&[None, Some(millis(3)), Some(millis(1000))]))
        // Upgrades of the master from the worker byte's top part (no extra byte: a
        // corpus input whose byte is under 18 decodes as before).
        .upgrades(workers / 18 % 2 == 1)
        .forward_signals(match workers / 6 % 3 {
            0 => ForwardSignals::ALL,
            1 => ForwardSignals::NONE,
            _ => ForwardSignals::NONE
                .with(Signal::Usr1)
                .expect("forwardable"),
        });
    b.build().expect("the decoder only builds valid configs")
}

/// The driving contract, checked over the action stream.
#[derive(Default)]
struct Contract {
    exited: bool,
    shutting_down: bool,
    listening: bool,
    /// Some worker started before any shutdown began (the program can be executed).
    started: bool,
}

impl Contract {
    fn drain(
        &mut self,
        cluster: &mut ClusterState,
        known: &mut Vec<WorkerId>,
    ) -> Result<(), String> {
        let mut drained = 0usize;
        while let Some(action) = cluster.poll_action() {
            drained += 1;
            if drained > 1_000_000 {
                return Err("an endless action queue".to_owned());
            }
            if self.exited {
                return Err(format!("{action:?} after the exit"));
            }
            match action {
                Action::Spawn { id, .. } => {
                    if self.shutting_down {
                        return Err(format!("spawn of w{id} after shutdown began"));
                    }
                    known.push(id);
                }
                Action::Event(Event::ShutdownStarted { .. }) => self.shutting_down = true,
                Action::Event(Event::Listening { .. })
                    if std::mem::replace(&mut self.listening, true) =>
                {
                    return Err("Listening fired twice".to_owned());
                }
                // (A worker of the first batch may still be reported started after the
                // startup failure began the shutdown: it is then stopped at once.)
                Action::Event(Event::WorkerStarted { .. }) if !self.shutting_down => {
                    self.started = true;
                }
                Action::Exit(ExitReason::StartupFailed) if self.started => {
                    return Err("a startup failure after a worker had started".to_owned());
                }
                Action::Exit(_) => self.exited = true,
                _ => {}
            }
        }
        if self.exited && cluster.poll_timeout().is_some() {
            return Err("a deadline after the exit".to_owned());
        }
        cluster.check_invariants()
    }
}

/// Decodes `data` into a configuration and a sequence of inputs, drives a
/// [`ClusterState`] with them, and checks the invariants and the driving contract after
/// every input. Returns how many inputs were delivered.
///
/// # Errors
///
/// A description of the first broken invariant or contract rule.
pub fn cluster_inputs(data: &[u8]) -> Result<usize, String> {
    let mut bytes = Bytes(data);
    let config = decode_config(&mut bytes);
    // The one clock read: a base for synthetic time.
    let base = Instant::now();
    let mut now = Duration::ZERO;
    let mut cluster = ClusterState::new(config, base);
    let mut known = Vec::new();
    let mut contract = Contract::default();
    contract.drain(&mut cluster, &mut known)?;
    let mut delivered = 0;
    while let Some(op) = bytes.next() {
        if delivered == MAX_INPUTS {
            break;
        }
        let arg = bytes.byte();
        let id = match known.len() {
            n if n > 0 && arg < 240 => known[usize::from(arg) % n],
            n => WorkerId(n as u64 + u64::from(arg % 4)),
        };
        let input = match op % 16 {
            0 => {
                // Jump to the core's deadline, as a driver does.
                if let Some(at) = cluster.poll_timeout() {
                    now = now.max(at.saturating_duration_since(base));
                }
                Input::Timeout
            }
            1 => {
                now += Duration::from_micros(u64::from(arg) * 97);
                Input::Timeout
            }
            2 => {
                now += millis(u64::from(arg));
                continue;
            }
            3 => Input::Spawned {
                id,
                pid: u32::from(bytes.byte()) + 1,
            },
            // The kind from the id byte's top bits (no extra byte, so the corpus decodes
            // as before; `Other`, the old behaviour, for the smallest).
            4 => Input::SpawnFailed {
                id,
                error: SpawnError::new(
                    [
                        SpawnErrorKind::Other,
                        SpawnErrorKind::Resource,
                        SpawnErrorKind::Exec,
                        SpawnErrorKind::Cancelled,
                    ][usize::from(arg >> 6)],
                ),
            },
            5 => Input::Ready { id },
            6 => Input::Stopping { id },
            7 => Input::Heartbeat { id },
            8 => Input::Exited {
                id,
                status: match bytes.byte() % 3 {
                    0 => ExitStatus::Code(0),
                    1 => ExitStatus::Code(1),
                    _ => ExitStatus::Signaled(9),
                },
            },
            9 => Input::Signal(Signal::ALL[usize::from(arg) % Signal::ALL.len()]),
            10 => Input::Shutdown,
            11 => Input::ShutdownNow,
            12 => Input::Reload,
            13 => Input::Scale(match arg {
                0..=200 => usize::from(arg % 9),
                201..=250 => MAX_WORKERS + 1,
                _ => usize::MAX,
            }),
            // The cause from the id byte's top bits, as for spawn failures (no extra
            // byte); an age recycle is the core's own, but any input is legal.
            14 => Input::Recycle {
                id,
                cause: match arg >> 6 {
                    0 => RecycleCause::Memory {
                        bytes: u64::from(arg) << 20,
                    },
                    1 => RecycleCause::Requested,
                    _ => RecycleCause::Age,
                },
            },
            // The upgrade of the master, and facts about its successor, in any order:
            // a driver's stale or repeated report must be as harmless as a worker's.
            15 => match arg % 6 {
                0 => Input::Upgrade,
                1 => Input::Successor(SuccessorFact::Spawned {
                    pid: 9000 + u32::from(arg),
                }),
                2 => Input::Successor(SuccessorFact::SpawnFailed(SpawnError::new(
                    SpawnErrorKind::Exec,
                ))),
                3 => Input::Successor(SuccessorFact::Ready),
                4 => Input::Successor(SuccessorFact::Exited(ExitStatus::Code(i32::from(arg >> 7)))),
                _ => Input::Timeout,
            },
            _ => unreachable!("op % 16"),
        };
        let deadline = cluster.poll_timeout();
        if deadline != cluster.poll_timeout() {
            return Err("poll_timeout changed between two calls".to_owned());
        }
        let _ = cluster.handle(base + now, input);
        delivered += 1;
        contract.drain(&mut cluster, &mut known)?;
        if let Input::Timeout = input {
            if let Some(at) = cluster.poll_timeout().filter(|&at| at <= base + now) {
                return Err(format!(
                    "after handle_timeout at {now:?} the next deadline is {:?}",
                    at - base
                ));
            }
            // A second, spurious timeout at the same instant changes nothing.
            let before = cluster.poll_timeout();
            let _ = cluster.handle(base + now, Input::Timeout);
            if let Some(action) = cluster.poll_action() {
                return Err(format!("a repeated timeout at {now:?} produced {action:?}"));
            }
            if cluster.poll_timeout() != before {
                return Err("a repeated timeout moved the deadline".to_owned());
            }
        }
    }
    Ok(delivered)
}
