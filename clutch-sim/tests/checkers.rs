//! Every checker can fire: each test drives the real core through a legitimate prefix
//! (and asserts the checker is silent), then plays a buggy core — one action changed,
//! added or dropped, a deadline skipped — and asserts the named check reports it.
//!
//! `core-invariants` is the one check not forced here: no public input sequence breaks
//! `ClusterState::check_invariants` any more; it fired for real on clutch-sim seed 30
//! (the breaker that did not re-check on scale-down, fixed in clutch-proto).

use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, Config, ConfigBuilder, CrashBudget, Event, ExitReason, ExitStatus,
    ForwardSignals, HangPolicy, Notice, RecycleCause, ShutdownTrigger, Signal, Slot, SpawnError,
    SpawnErrorKind, SuccessorFact, WorkerId,
};
use clutch_sim::checker::check;
use clutch_sim::{Bounds, Checker, Input};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const BOUNDS: Bounds = Bounds {
    spawn_latency: MS,
    kill_latency: MS,
};

/// A real core, a checker, and a way to tamper with what flows between them.
struct Rig {
    cluster: ClusterState,
    checker: Checker,
    base: Instant,
    now: Duration,
    next_pid: u32,
    /// The actions of the last step, as the checker saw them.
    last: Vec<Action>,
}

impl Rig {
    fn new(builder: &mut ConfigBuilder) -> Self {
        Self::build(builder.build().unwrap(), None, |_| {})
    }

    /// The core runs `core`, the checker believes `believed`.
    fn mismatched(core: &mut ConfigBuilder, believed: &mut ConfigBuilder) -> Self {
        Self::build(
            core.build().unwrap(),
            Some(believed.build().unwrap()),
            |_| {},
        )
    }

    fn build(
        config: Config,
        believed: Option<Config>,
        tamper: impl FnOnce(&mut Vec<Action>),
    ) -> Self {
        let base = Instant::now();
        let checker = Checker::new(believed.as_ref().unwrap_or(&config), BOUNDS, base);
        let cluster = ClusterState::new(config, base);
        let mut rig = Self {
            cluster,
            checker,
            base,
            now: Duration::ZERO,
            next_pid: 100,
            last: Vec::new(),
        };
        rig.checker.begin_step(Duration::ZERO, None, &rig.cluster);
        rig.finish_step(tamper);
        rig
    }

    fn finish_step(&mut self, tamper: impl FnOnce(&mut Vec<Action>)) {
        let mut actions: Vec<Action> = std::iter::from_fn(|| self.cluster.poll_action()).collect();
        tamper(&mut actions);
        for action in &actions {
            self.checker.action(action);
        }
        let _ = self.checker.end_step(&self.cluster);
        self.last = actions;
    }

    /// Delivers `input` at `at`; `apply: false` plays a core that ignores it.
    fn raw(
        &mut self,
        at: Duration,
        input: Input,
        apply: bool,
        tamper: impl FnOnce(&mut Vec<Action>),
    ) {
        self.now = at;
        self.checker.begin_step(at, Some(input), &self.cluster);
        if apply {
            let result = self.cluster.handle(self.base + at, input).map(|_| ());
            self.checker.command_result(result);
        }
        self.finish_step(tamper);
    }

    fn step(&mut self, at: Duration, input: Input) {
        self.raw(at, input, true, |_| {});
        self.assert_clean();
    }

    fn tampered(&mut self, at: Duration, input: Input, tamper: impl FnOnce(&mut Vec<Action>)) {
        self.raw(at, input, true, tamper);
    }

    fn spawned(&mut self, at: Duration, id: WorkerId) -> u32 {
        self.next_pid += 1;
        let pid = self.next_pid;
        self.step(at, Input::Spawned { id, pid });
        pid
    }

    /// Spawns and readies every worker the last step asked for; returns (id, pid).
    fn boot_all(&mut self) -> Vec<(WorkerId, u32)> {
        let ids: Vec<WorkerId> = spawned_ids(&self.last);
        let now = self.now;
        ids.into_iter()
            .map(|id| {
                let pid = self.spawned(now, id);
                self.step(now, Input::Ready { id });
                (id, pid)
            })
            .collect()
    }

    fn assert_clean(&self) {
        assert!(
            self.checker.violations().is_empty(),
            "a legitimate prefix was flagged: {:?}",
            self.checker.violations()
        );
    }

    #[track_caller]
    fn assert_fired(&self, name: &str) {
        assert!(
            self.checker.violations().iter().any(|v| v.check == name),
            "expected [{name}], got {:?}",
            self.checker.violations()
        );
    }
}

fn spawned_ids(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn remove(actions: &mut Vec<Action>, pred: impl Fn(&Action) -> bool) {
    let before = actions.len();
    actions.retain(|a| !pred(a));
    assert!(actions.len() < before, "nothing to remove in {actions:?}");
}

fn one(n: usize) -> ConfigBuilder {
    let mut b = Config::builder();
    b.workers(n);
    b
}

#[test]
fn surge_fires_when_the_core_runs_more_workers_than_its_target() {
    let rig = Rig::mismatched(&mut one(3), &mut one(1));
    rig.assert_fired(check::SURGE);
}

#[test]
fn spawn_after_shutdown_fires() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Signal(Signal::Term), |a| {
        a.push(Action::Spawn {
            id: WorkerId(2),
            slot: Slot(0),
            generation: 1,
        });
    });
    rig.assert_fired(check::SPAWN_AFTER_SHUTDOWN);
}

#[test]
fn exit_once_last_fires_on_actions_after_the_exit_and_exits_without_shutdown() {
    let mut rig = Rig::new(&mut one(0));
    rig.tampered(MS, Input::Signal(Signal::Term), |a| {
        a.push(Action::Notify(Notice::Stopping));
    });
    rig.assert_fired(check::EXIT_ONCE_LAST);

    let mut rig = Rig::new(&mut one(1));
    rig.tampered(MS, Input::Timeout, |a| {
        a.push(Action::Exit(ExitReason::Clean))
    });
    rig.assert_fired(check::EXIT_ONCE_LAST);
}

#[test]
fn exit_deadline_fires_when_a_shutdown_does_not_end_in_time() {
    let mut rig = Rig::new(one(1).force_exit_timeout(100 * MS));
    rig.boot_all();
    rig.step(Duration::ZERO, Input::Signal(Signal::Term));
    rig.step(100 * MS, Input::Timeout); // SIGKILL goes out; the exit never comes
    rig.raw(103 * MS, Input::Timeout, true, |_| {});
    rig.assert_fired(check::EXIT_DEADLINE);
}

#[test]
fn exit_reason_fires_when_the_exit_misdescribes_the_shutdown() {
    let mut rig = Rig::new(&mut one(0));
    rig.tampered(MS, Input::Signal(Signal::Term), |a| {
        for action in a.iter_mut() {
            if let Action::Exit(reason) = action {
                *reason = ExitReason::Forced;
            }
        }
    });
    rig.assert_fired(check::EXIT_REASON);
}

#[test]
fn force_early_fires_when_workers_are_killed_before_the_deadline() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.step(Duration::ZERO, Input::Signal(Signal::Term));
    rig.tampered(SEC, Input::Timeout, |a| {
        a.push(Action::Event(Event::ShutdownForced { killed: 1 }));
    });
    rig.assert_fired(check::FORCE_EARLY);
}

#[test]
fn force_early_fires_when_a_quick_repeat_of_term_forces() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.step(Duration::ZERO, Input::Signal(Signal::Term));
    // The real core takes a TERM at +0.5 s as a repeat: the checker agrees.
    rig.step(SEC / 2, Input::Signal(Signal::Int));
    // A core that forces on it.
    rig.tampered(SEC / 2, Input::Signal(Signal::Term), |a| {
        a.clear();
        a.push(Action::Event(Event::ShutdownForced { killed: 1 }));
    });
    rig.assert_fired(check::FORCE_EARLY);
    rig.assert_fired(check::COMMAND_RESULT);
}

#[test]
fn command_result_fires_when_a_signal_outside_the_forwarding_set_is_forwarded() {
    let mut rig = Rig::new(one(1).forward_signals(ForwardSignals::NONE));
    let (id, pid) = rig.boot_all()[0];
    rig.step(MS, Input::Signal(Signal::Usr2));
    rig.tampered(MS, Input::Signal(Signal::Usr1), |a| {
        a.clear();
        a.push(Action::Signal {
            id,
            pid,
            signal: Signal::Usr1,
        });
        a.push(Action::Event(Event::SignalForwarded {
            signal: Signal::Usr1,
            workers: 1,
        }));
    });
    rig.assert_fired(check::COMMAND_RESULT);
}

fn failed(id: WorkerId, kind: SpawnErrorKind) -> Input {
    Input::SpawnFailed {
        id,
        error: SpawnError::new(kind),
    }
}

#[test]
fn resource_not_counted_fires_when_a_resource_failure_trips_the_breaker() {
    let budget = CrashBudget {
        failures: 1,
        window: 10 * SEC,
    };
    let mut rig = Rig::new(one(1).crash_budget(budget));
    let id = spawned_ids(&rig.last)[0];
    // A core that counts the master's failure: the breaker trips on it.
    rig.tampered(MS, failed(id, SpawnErrorKind::Resource), |a| {
        a.push(Action::Event(Event::BreakerTripped {
            failures: 1,
            window: 10 * SEC,
        }));
    });
    rig.assert_fired(check::RESOURCE_NOT_COUNTED);

    // A core that counted an earlier resource failure trips on a later program failure:
    // the trip claims more failures than the program had.
    let budget = CrashBudget {
        failures: 2,
        window: 10 * SEC,
    };
    let mut rig = Rig::new(one(1).crash_budget(budget));
    let id = spawned_ids(&rig.last)[0];
    rig.step(MS, failed(id, SpawnErrorKind::Resource));
    rig.step(101 * MS, Input::Timeout);
    let id = spawned_ids(&rig.last)[0];
    rig.tampered(102 * MS, failed(id, SpawnErrorKind::Other), |a| {
        a.push(Action::Event(Event::BreakerTripped {
            failures: 2,
            window: 10 * SEC,
        }));
    });
    rig.assert_fired(check::RESOURCE_NOT_COUNTED);
}

#[test]
fn startup_failed_fires_after_a_worker_started_or_when_missing() {
    // A worker started: an exec failure is a boot failure, not a startup failure.
    let mut rig = Rig::new(&mut one(2));
    let ids = spawned_ids(&rig.last);
    rig.spawned(Duration::ZERO, ids[0]);
    rig.step(MS, failed(ids[1], SpawnErrorKind::Exec));
    rig.step(101 * MS, Input::Timeout);
    let again = spawned_ids(&rig.last)[0];
    rig.tampered(102 * MS, failed(again, SpawnErrorKind::Exec), |a| {
        a.push(Action::Event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::StartupFailed,
        }));
    });
    rig.assert_fired(check::STARTUP_FAILED);

    // No worker ever started: an exec failure must end the cluster.
    let mut rig = Rig::new(&mut one(2));
    let ids = spawned_ids(&rig.last);
    rig.tampered(MS, failed(ids[0], SpawnErrorKind::Exec), |a| {
        a.retain(|a| {
            matches!(
                a,
                Action::Event(Event::WorkerSpawnFailed { .. }) | Action::Notify(_)
            )
        });
    });
    rig.assert_fired(check::STARTUP_FAILED);
}

#[test]
fn a_startup_failure_and_cancelled_spawns_are_not_flagged() {
    let mut rig = Rig::new(&mut one(3));
    let ids = spawned_ids(&rig.last);
    rig.step(MS, failed(ids[0], SpawnErrorKind::Exec));
    rig.spawned(2 * MS, ids[1]);
    rig.step(3 * MS, failed(ids[2], SpawnErrorKind::Cancelled));
    rig.step(
        4 * MS,
        Input::Exited {
            id: ids[1],
            status: ExitStatus::Code(0),
        },
    );
    assert_eq!(
        rig.last.last(),
        Some(&Action::Exit(ExitReason::StartupFailed))
    );
    let finish = rig.checker.finish(5 * MS);
    assert!(finish.is_ok(), "{finish:?}");
    rig.assert_clean();
}

#[test]
fn signal_target_fires_on_a_wrong_pid_or_a_reaped_worker() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Signal(Signal::Usr1), |a| {
        for action in a.iter_mut() {
            if let Action::Signal { pid, .. } = action {
                *pid += 1;
            }
        }
    });
    rig.assert_fired(check::SIGNAL_TARGET);

    let mut rig = Rig::new(&mut one(2));
    let (id, pid) = rig.boot_all()[0];
    rig.step(
        40 * SEC,
        Input::Exited {
            id,
            status: ExitStatus::Code(1),
        },
    );
    rig.tampered(40 * SEC, Input::Timeout, |a| {
        a.push(Action::Signal {
            id,
            pid,
            signal: Signal::Term,
        });
    });
    rig.assert_fired(check::SIGNAL_TARGET);
}

#[test]
fn stop_justified_fires_when_an_old_worker_goes_before_its_successor_is_ready() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.step(MS, Input::Reload);
    let successor = spawned_ids(&rig.last)[0];
    let (old, old_pid) = booted[0];
    rig.tampered(
        2 * MS,
        Input::Spawned {
            id: successor,
            pid: 900,
        },
        |a| {
            a.push(Action::Signal {
                id: old,
                pid: old_pid,
                signal: Signal::Term,
            });
        },
    );
    rig.assert_fired(check::STOP_JUSTIFIED);
}

#[test]
fn input_accounting_fires_on_a_stale_report_with_effects_or_an_unreported_exit() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Heartbeat { id: WorkerId(99) }, |a| {
        a.push(Action::Notify(Notice::Watchdog));
    });
    rig.assert_fired(check::INPUT_ACCOUNTING);

    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.tampered(
        MS,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
        |a| remove(a, |a| matches!(a, Action::Event(Event::WorkerDied { .. }))),
    );
    rig.assert_fired(check::INPUT_ACCOUNTING);
}

#[test]
fn command_result_fires_when_a_signal_or_command_has_the_wrong_effect() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Signal(Signal::Ttin), |a| {
        remove(a, |a| matches!(a, Action::Event(Event::Scaled { .. })));
    });
    rig.assert_fired(check::COMMAND_RESULT);

    // A core accepting an invalid scale target.
    let mut rig = Rig::new(&mut one(1));
    rig.checker
        .begin_step(MS, Some(Input::Scale(0)), &rig.cluster);
    rig.checker.command_result(Ok(()));
    rig.assert_fired(check::COMMAND_RESULT);
}

#[test]
fn listening_fires_when_missing_or_repeated() {
    let mut rig = Rig::new(&mut one(2));
    let ids = spawned_ids(&rig.last);
    rig.spawned(Duration::ZERO, ids[0]);
    rig.tampered(MS, Input::Ready { id: ids[0] }, |a| {
        remove(a, |a| matches!(a, Action::Event(Event::Listening { .. })));
    });
    rig.assert_fired(check::LISTENING);

    let mut rig = Rig::new(&mut one(2));
    let ids = spawned_ids(&rig.last);
    rig.spawned(Duration::ZERO, ids[0]);
    rig.spawned(Duration::ZERO, ids[1]);
    rig.step(MS, Input::Ready { id: ids[0] });
    rig.tampered(MS, Input::Ready { id: ids[1] }, |a| {
        a.push(Action::Event(Event::Listening { id: ids[1] }));
    });
    rig.assert_fired(check::LISTENING);
}

#[test]
fn no_workers_fires_when_missing_or_false() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.tampered(
        40 * SEC,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
        |a| remove(a, |a| matches!(a, Action::Event(Event::NoWorkers))),
    );
    rig.assert_fired(check::NO_WORKERS);

    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Timeout, |a| {
        a.push(Action::Event(Event::NoWorkers))
    });
    rig.assert_fired(check::NO_WORKERS);
}

#[test]
fn live_count_fires_when_the_stream_and_the_core_disagree() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.tampered(
        MS,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
        |a| {
            remove(a, |a| {
                matches!(
                    a,
                    Action::Event(Event::WorkerDied { .. } | Event::NoWorkers)
                )
            })
        },
    );
    rig.assert_fired(check::LIVE_COUNT);
}

/// One worker that dies young at 1 ms: slot 0 owes a 100 ms backoff.
fn young_death(tamper: impl FnOnce(&mut Vec<Action>)) -> Rig {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.tampered(
        MS,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
        tamper,
    );
    rig
}

#[test]
fn backoff_fires_on_a_wrong_delay_an_early_refill_or_an_overdue_one() {
    let rig = young_death(|a| {
        for action in a.iter_mut() {
            if let Action::Event(Event::RespawnDelayed { delay, .. }) = action {
                *delay = 10 * MS;
            }
        }
    });
    rig.assert_fired(check::BACKOFF);

    let mut rig = young_death(|_| {});
    rig.assert_clean();
    rig.tampered(50 * MS, Input::Timeout, |a| {
        a.push(Action::Spawn {
            id: WorkerId(2),
            slot: Slot(0),
            generation: 1,
        });
    });
    rig.assert_fired(check::BACKOFF);

    let mut rig = young_death(|_| {});
    rig.tampered(101 * MS, Input::Timeout, |a| {
        remove(a, |a| matches!(a, Action::Spawn { .. }));
    });
    rig.assert_fired(check::BACKOFF);
}

#[test]
fn refill_cause_fires_on_an_immediate_refill_after_a_young_death() {
    let rig = young_death(|a| {
        a.retain(|a| !matches!(a, Action::Event(Event::RespawnDelayed { .. })));
        a.push(Action::Spawn {
            id: WorkerId(2),
            slot: Slot(0),
            generation: 1,
        });
    });
    rig.assert_fired(check::REFILL_CAUSE);
}

#[test]
fn spawn_rate_fires_on_two_refills_of_a_slot_at_once() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.tampered(
        40 * SEC,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
        |a| {
            a.push(Action::Spawn {
                id: WorkerId(3),
                slot: Slot(0),
                generation: 1,
            });
        },
    );
    rig.assert_fired(check::SPAWN_RATE);
}

#[test]
fn spawn_generation_fires_on_a_spawn_of_the_wrong_generation() {
    let config = one(1).build().unwrap();
    let rig = Rig::build(config, None, |a| {
        for action in a.iter_mut() {
            if let Action::Spawn { generation, .. } = action {
                *generation = 2;
            }
        }
    });
    rig.assert_fired(check::SPAWN_GENERATION);
}

#[test]
fn story_fires_when_a_requested_stop_is_reported_as_a_death() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    rig.step(MS, Input::Signal(Signal::Term));
    rig.tampered(
        2 * MS,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(0),
        },
        |a| {
            for action in a.iter_mut() {
                if let Action::Event(Event::WorkerExit {
                    id,
                    slot,
                    pid,
                    status,
                    ..
                }) = *action
                {
                    *action = Action::Event(Event::WorkerDied {
                        id,
                        slot,
                        pid,
                        status,
                        was_ready: true,
                        uptime: 2 * MS,
                    });
                }
            }
        },
    );
    rig.assert_fired(check::STORY);
}

#[test]
fn hang_detected_fires_when_a_silent_worker_is_left_alone() {
    let mut rig = Rig::new(one(1).hang(HangPolicy {
        timeout: Some(SEC),
        ..HangPolicy::default()
    }));
    let booted = rig.boot_all();
    rig.step(MS, Input::Heartbeat { id: booted[0].0 });
    // The core's deadline at 1.001 s is never honoured.
    let _ = rig.checker.run_probes(SEC + MS, &rig.cluster);
    rig.assert_fired(check::HANG_DETECTED);
}

#[test]
fn boot_deadline_fires_on_a_boot_never_timed_out_or_timed_out_early() {
    let mut rig = Rig::new(one(1).boot_timeout(SEC));
    let id = spawned_ids(&rig.last)[0];
    rig.spawned(Duration::ZERO, id);
    let _ = rig.checker.run_probes(SEC, &rig.cluster);
    rig.assert_fired(check::BOOT_DEADLINE);

    let mut rig = Rig::new(one(1).boot_timeout(SEC));
    let id = spawned_ids(&rig.last)[0];
    let pid = rig.spawned(Duration::ZERO, id);
    rig.tampered(SEC / 2, Input::Timeout, |a| {
        a.push(Action::Event(Event::WorkerBootTimedOut {
            id,
            slot: Slot(0),
            pid,
        }));
    });
    rig.assert_fired(check::BOOT_DEADLINE);
}

#[test]
fn stop_deadline_fires_when_a_stopped_worker_is_never_killed() {
    let mut rig = Rig::new(one(2).force_exit_timeout(SEC));
    rig.boot_all();
    rig.step(MS, Input::Scale(1));
    let _ = rig.checker.run_probes(SEC + MS, &rig.cluster);
    rig.assert_fired(check::STOP_DEADLINE);
}

#[test]
fn time_advances_fires_when_a_timeout_leaves_the_deadline_in_the_past() {
    let mut rig = Rig::new(one(1).boot_timeout(SEC));
    let id = spawned_ids(&rig.last)[0];
    rig.spawned(Duration::ZERO, id);
    // A core that ignores handle_timeout: its deadline stays behind.
    rig.raw(2 * SEC, Input::Timeout, false, |_| {});
    rig.assert_fired(check::TIME_ADVANCES);
}

#[test]
fn reload_finished_fires_when_a_rollout_finishes_with_old_workers_serving() {
    let mut rig = Rig::new(&mut one(1));
    rig.boot_all();
    rig.tampered(MS, Input::Reload, |a| {
        a.push(Action::Event(Event::ReloadFinished {
            generation: 2,
            took: Duration::ZERO,
        }));
    });
    rig.assert_fired(check::RELOAD_FINISHED);
}

#[test]
fn liveness_fires_when_a_healthy_world_is_not_at_its_target() {
    let mut rig = Rig::new(&mut one(1));
    let _ = rig.checker.check_liveness(60 * SEC, &rig.cluster);
    rig.assert_fired(check::LIVENESS);
}

#[test]
fn a_legitimate_life_is_not_flagged() {
    // The positive space of the rig itself: boot, crash, backoff, refill, reload, stop.
    let mut rig = Rig::new(&mut one(2));
    let booted = rig.boot_all();
    rig.step(
        MS,
        Input::Exited {
            id: booted[0].0,
            status: ExitStatus::Code(1),
        },
    );
    rig.step(101 * MS, Input::Timeout);
    rig.boot_all();
    rig.step(200 * MS, Input::Reload);
    let finish = rig.checker.finish(300 * MS);
    assert!(finish.is_ok(), "{finish:?}");
    rig.assert_clean();
}

#[test]
fn breaker_spares_serving_fires_when_the_breaker_trips_with_a_worker_ready() {
    let budget = CrashBudget {
        failures: 1,
        window: 10 * SEC,
    };
    let mut rig = Rig::new(one(2).crash_budget(budget));
    let ids = spawned_ids(&rig.last);
    rig.spawned(Duration::ZERO, ids[0]);
    rig.step(MS, Input::Ready { id: ids[0] });
    // The other slot fails to boot: the old breaker (5 failures in 10 s, counting only
    // boot failures) would stop the serving worker. The core waits; a broken one trips.
    rig.tampered(20 * SEC, failed(ids[1], SpawnErrorKind::Other), |a| {
        a.push(Action::Event(Event::BreakerTripped {
            failures: 1,
            window: 10 * SEC,
        }));
    });
    rig.assert_fired(check::BREAKER_SPARES_SERVING);
}

#[test]
fn probation_before_stop_fires_when_a_rollout_stops_an_old_worker_too_soon() {
    // The real core waits out the new worker's probation: clean.
    let min_uptime = 2 * SEC;
    let mut rig = Rig::new(one(1).min_uptime(min_uptime));
    let booted = rig.boot_all();
    rig.step(MS, Input::Reload);
    let successor = spawned_ids(&rig.last)[0];
    rig.spawned(2 * MS, successor);
    rig.step(3 * MS, Input::Ready { id: successor });
    rig.step(3 * MS + min_uptime, Input::Timeout);
    assert!(rig.last.contains(&Action::Signal {
        id: booted[0].0,
        pid: booted[0].1,
        signal: Signal::Term
    }));
    rig.assert_clean();

    // A core that stops the old worker as soon as the new one is ready (what main did
    // before issue 11): fired.
    let mut rig = Rig::new(one(1).min_uptime(min_uptime));
    let booted = rig.boot_all();
    rig.step(MS, Input::Reload);
    let successor = spawned_ids(&rig.last)[0];
    rig.spawned(2 * MS, successor);
    let (old, old_pid) = booted[0];
    rig.tampered(3 * MS, Input::Ready { id: successor }, |a| {
        a.push(Action::Signal {
            id: old,
            pid: old_pid,
            signal: Signal::Term,
        });
    });
    rig.assert_fired(check::PROBATION_BEFORE_STOP);
}

/// One worker that never boots: spawn failures at 1 ms and 102 ms, then a spawn at
/// 253 ms left booting.
fn failing_twice(rig: &mut Rig) {
    let id = spawned_ids(&rig.last)[0];
    rig.step(MS, failed(id, SpawnErrorKind::Other));
    rig.step(101 * MS, Input::Timeout);
    let id = spawned_ids(&rig.last)[0];
    rig.step(102 * MS, failed(id, SpawnErrorKind::Other));
    rig.step(252 * MS, Input::Timeout);
    let id = spawned_ids(&rig.last)[0];
    rig.spawned(253 * MS, id);
}

#[test]
fn zero_ready_window_fires_when_a_cluster_that_cannot_serve_does_not_exit() {
    let budget = CrashBudget {
        failures: 2,
        window: SEC,
    };
    // The real core trips when the window since the first failure is over: clean.
    let mut rig = Rig::new(one(1).crash_budget(budget));
    failing_twice(&mut rig);
    rig.step(SEC + MS, Input::Timeout);
    assert!(rig
        .last
        .iter()
        .any(|a| matches!(a, Action::Event(Event::BreakerTripped { failures: 2, .. }))));
    rig.assert_clean();

    // A core whose breaker never trips (its window is 1000 s, the checker believes 1 s):
    // zero ready workers, two failures, past the window, no shutdown.
    let lax = CrashBudget {
        failures: 2,
        window: 1000 * SEC,
    };
    let mut rig = Rig::mismatched(one(1).crash_budget(lax), one(1).crash_budget(budget));
    failing_twice(&mut rig);
    rig.raw(SEC + MS, Input::Timeout, true, |_| {});
    rig.assert_fired(check::ZERO_READY_WINDOW);
}

#[test]
fn recycle_before_stop_fires_when_the_old_worker_goes_at_its_successor_s_readiness() {
    let mut rig = Rig::new(&mut one(1));
    let booted = rig.boot_all();
    let (old, old_pid) = booted[0];
    let cause = RecycleCause::Memory { bytes: 1 << 30 };
    rig.step(MS, Input::Recycle { id: old, cause });
    let successor = spawned_ids(&rig.last)[0];
    rig.spawned(2 * MS, successor);
    // A core that stops the old worker as soon as its successor is ready.
    rig.tampered(3 * MS, Input::Ready { id: successor }, |a| {
        a.push(Action::Signal {
            id: old,
            pid: old_pid,
            signal: Signal::Term,
        });
    });
    // The real core stops it after the probation; its exit says recycled.
    rig.raw(3 * MS + 2 * SEC, Input::Timeout, true, |_| {});
    rig.raw(
        3 * MS + 3 * SEC,
        Input::Exited {
            id: old,
            status: ExitStatus::Code(0),
        },
        true,
        |_| {},
    );
    rig.assert_fired(check::RECYCLE_BEFORE_STOP);
}

#[test]
fn recycle_age_fires_when_a_worker_outlives_its_age_and_jitter() {
    let mut rig = Rig::new(
        one(1)
            .max_worker_age(Some(SEC))
            .max_worker_age_jitter(Duration::ZERO),
    );
    rig.boot_all();
    // The core's age deadline at 1 s is never honoured.
    let _ = rig.checker.run_probes(SEC, &rig.cluster);
    rig.assert_fired(check::RECYCLE_AGE);
}

/// One worker serving, an upgrade asked for, its successor running as pid 9000.
fn upgrading() -> (Rig, WorkerId) {
    let mut rig = Rig::new(one(1).upgrades(true).forward_signals(ForwardSignals::NONE));
    let (worker, _) = rig.boot_all()[0];
    rig.step(MS, Input::Signal(Signal::Usr2));
    assert!(rig.last.contains(&Action::SpawnSuccessor));
    rig.step(
        2 * MS,
        Input::Successor(SuccessorFact::Spawned { pid: 9000 }),
    );
    (rig, worker)
}

#[test]
fn a_real_upgrade_is_clean_from_start_to_the_old_masters_exit() {
    let (mut rig, worker) = upgrading();
    rig.step(3 * MS, Input::Successor(SuccessorFact::Ready));
    assert!(rig.last.contains(&Action::Notify(Notice::MainPid(9000))));
    rig.step(
        4 * MS,
        Input::Exited {
            id: worker,
            status: ExitStatus::Code(0),
        },
    );
    assert_eq!(rig.last.last(), Some(&Action::Exit(ExitReason::Upgraded)));
}

#[test]
fn serves_until_successor_ready_fires_on_a_handover_before_ready() {
    let (mut rig, _) = upgrading();
    rig.tampered(3 * MS, Input::Timeout, |a| {
        a.push(Action::Event(Event::UpgradeHandedOver { pid: 9000 }));
        a.push(Action::Event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::Upgrade,
        }));
    });
    rig.assert_fired(check::SERVES_UNTIL_SUCCESSOR_READY);
}

#[test]
fn one_master_fires_when_the_old_master_leaves_its_successor_behind() {
    let (mut rig, worker) = upgrading();
    rig.step(3 * MS, Input::Signal(Signal::Term));
    // A core that exits with its workers gone, forgetting the successor it stopped.
    rig.tampered(
        4 * MS,
        Input::Exited {
            id: worker,
            status: ExitStatus::Code(0),
        },
        |a| {
            a.push(Action::Event(Event::ShutDown {
                reason: ExitReason::Clean,
            }));
            a.push(Action::Exit(ExitReason::Clean));
        },
    );
    rig.assert_fired(check::ONE_MASTER);
}

#[test]
fn one_successor_fires_on_a_second_successor_while_one_runs() {
    let (mut rig, _) = upgrading();
    rig.tampered(3 * MS, Input::Upgrade, |a| a.push(Action::SpawnSuccessor));
    rig.assert_fired(check::ONE_SUCCESSOR);
}
