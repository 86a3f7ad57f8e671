//! The upgrade of the master itself (`cluster/upgrade.rs`): every phase's decision, as
//! the old master takes it, and a successor master's own part.

use super::*;

const SUCCESSOR: Pid = 5000;

fn upgrading(workers: usize) -> Harness {
    let mut h = Harness::new(
        Config::builder()
            .workers(workers)
            .upgrades(true)
            .forward_signals(ForwardSignals::NONE),
    );
    h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.take();
    h
}

impl Harness {
    fn successor(&mut self, fact: SuccessorFact) {
        self.cluster
            .handle(self.now, Input::Successor(fact))
            .unwrap();
        self.drain();
    }

    fn successor_signals(&self) -> Vec<Signal> {
        self.log
            .iter()
            .filter_map(|a| match *a {
                Action::SignalSuccessor { pid, signal } => {
                    assert_eq!(pid, SUCCESSOR);
                    Some(signal)
                }
                _ => None,
            })
            .collect()
    }

    fn notices(&self) -> Vec<Notice> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Notify(Notice::Status(_)) => None,
                Action::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }
}

fn started(workers: usize) -> Harness {
    let mut h = upgrading(workers);
    h.signal(Signal::Usr2);
    assert_eq!(
        h.take(),
        vec![
            Action::Event(Event::UpgradeStarted),
            Action::Notify(Notice::Reloading),
            Action::SpawnSuccessor,
        ]
    );
    h
}

fn booting(workers: usize) -> Harness {
    let mut h = started(workers);
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    assert_eq!(h.events(), vec![Event::UpgradeSpawned { pid: SUCCESSOR }]);
    h
}

#[test]
fn usr2_not_forwarded_starts_an_upgrade_and_a_second_is_refused() {
    let mut h = started(2);
    h.signal(Signal::Usr2);
    assert_eq!(
        h.events(),
        vec![Event::Ignored {
            reason: IgnoreReason::Refused {
                signal: Signal::Usr2,
                error: CommandError::UpgradeUnderWay,
            }
        }]
    );
    assert_eq!(
        h.cluster.handle(h.now, Input::Upgrade),
        Err(CommandError::UpgradeUnderWay)
    );
    h.drain();
    assert!(h.take().is_empty(), "a refused upgrade does nothing");
    assert_eq!(
        h.cluster.stats().upgrades_started,
        1,
        "a refused one is not counted"
    );
}

#[test]
fn usr2_forwarded_still_goes_to_the_workers_and_without_upgrades_is_ignored() {
    let mut h = Harness::new(Config::builder().workers(1).upgrades(true));
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Usr2);
    assert_eq!(h.signals(), vec![(ids[0], Signal::Usr2)]);
    assert!(!h.log.contains(&Action::SpawnSuccessor));

    let mut h = Harness::new(
        Config::builder()
            .workers(1)
            .forward_signals(ForwardSignals::NONE),
    );
    h.boot_all();
    h.take();
    h.signal(Signal::Usr2);
    assert_eq!(
        h.events(),
        vec![Event::SignalIgnored {
            signal: Signal::Usr2,
            why: SignalIgnoreReason::NotForwarded,
        }]
    );
    assert_eq!(
        h.cluster.handle(h.now, Input::Upgrade),
        Err(CommandError::NoUpgrades)
    );
}

#[test]
fn an_in_process_master_has_no_upgrade() {
    let mut h = Harness::new(Config::builder().workers(0).upgrades(true));
    assert_eq!(
        h.cluster.handle(h.now, Input::Upgrade),
        Err(CommandError::InProcess)
    );
    h.drain();
    assert!(!h.take().contains(&Action::SpawnSuccessor));
}

#[test]
fn the_upgrade_command_starts_one_as_usr2_does() {
    let mut h = upgrading(1);
    assert_eq!(h.cluster.handle(h.now, Input::Upgrade), Ok(Reply::Done));
    h.drain();
    assert!(h.take().contains(&Action::SpawnSuccessor));
}

#[test]
fn a_successor_that_serves_takes_over_and_the_old_workers_stop() {
    let mut h = booting(2);
    let ids: Vec<WorkerId> = h.cluster.workers().map(|w| w.id).collect();
    h.successor(SuccessorFact::Ready);
    let actions = h.take();
    let handed = actions
        .iter()
        .position(|a| *a == Action::Event(Event::UpgradeHandedOver { pid: SUCCESSOR }))
        .expect("handed over");
    let first_stop = actions
        .iter()
        .position(|a| matches!(a, Action::Signal { .. }))
        .expect("the old workers are stopped");
    assert!(
        handed < first_stop,
        "the old workers stop only after the handover"
    );
    h.log = actions;
    assert_eq!(
        h.notices(),
        vec![Notice::MainPid(SUCCESSOR)],
        "no STOPPING=1: the service is not stopping"
    );
    assert_eq!(
        h.signals(),
        ids.iter().map(|&id| (id, Signal::Term)).collect::<Vec<_>>()
    );
    assert!(h.log.contains(&Action::Event(Event::ShutdownStarted {
        trigger: ShutdownTrigger::Upgrade
    })));
    assert_eq!(h.cluster.stats().upgrades_handed_over, 1);
    h.take();
    for id in ids {
        h.exited(id, ExitStatus::Code(0));
    }
    assert_eq!(h.last_exit(), Some(ExitReason::Upgraded));
    assert_eq!(h.notices(), vec![], "nothing more for the service manager");
    assert!(
        !h.log
            .iter()
            .any(|a| matches!(a, Action::Notify(Notice::Status(_)))),
        "the successor speaks for the service now"
    );
}

#[test]
fn a_successor_lost_after_the_handover_makes_the_exit_say_so() {
    let mut h = booting(1);
    let id = h.cluster.workers().next().unwrap().id;
    h.successor(SuccessorFact::Ready);
    h.take();
    let status = ExitStatus::Signaled(9);
    h.successor(SuccessorFact::Exited(status));
    assert_eq!(
        h.events(),
        vec![Event::SuccessorLost {
            pid: SUCCESSOR,
            status
        }]
    );
    // A second report is stale.
    let ignored = h.cluster.stats().ignored_inputs;
    h.successor(SuccessorFact::Exited(status));
    assert_eq!(h.cluster.stats().ignored_inputs, ignored + 1);
    h.exited(id, ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::SuccessorLost));
}

#[test]
fn the_old_master_does_not_wait_for_the_successor_it_handed_over_to() {
    let mut h = booting(1);
    let id = h.cluster.workers().next().unwrap().id;
    h.successor(SuccessorFact::Ready);
    h.exited(id, ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::Upgraded));
    assert!(
        h.successor_signals().is_empty(),
        "the new master is left alone"
    );
}

#[test]
fn a_successor_that_exits_before_serving_changes_nothing() {
    let mut h = booting(2);
    let status = ExitStatus::Code(1);
    h.successor(SuccessorFact::Exited(status));
    assert_eq!(
        h.events_and_notices(),
        (
            vec![Event::UpgradeFailed {
                cause: UpgradeFailure::Exited(status)
            }],
            vec![Notice::Ready]
        )
    );
    assert!(
        h.signals().is_empty(),
        "no worker of this master was touched"
    );
    assert_eq!(h.cluster.phase(), Phase::Running);
    assert_eq!(h.cluster.stats().upgrades_failed, 1);
    assert_eq!(h.cluster.stats().upgrades_started, 1);
    // Another try is welcome, and counted.
    h.signal(Signal::Usr2);
    assert!(h.take().contains(&Action::SpawnSuccessor));
    assert_eq!(h.cluster.stats().upgrades_started, 2);
}

impl Harness {
    fn events_and_notices(&mut self) -> (Vec<Event>, Vec<Notice>) {
        let notices = self.notices();
        (self.events(), notices)
    }
}

#[test]
fn a_successor_that_cannot_start_changes_nothing() {
    let mut h = started(1);
    let error = SpawnError::with_errno(SpawnErrorKind::Exec, 2);
    h.successor(SuccessorFact::SpawnFailed(error));
    assert_eq!(
        h.events_and_notices(),
        (
            vec![Event::UpgradeFailed {
                cause: UpgradeFailure::SpawnFailed(error)
            }],
            vec![Notice::Ready]
        )
    );
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn a_successor_that_never_serves_is_stopped_at_the_timeout_then_killed() {
    let mut h = booting(1);
    let timeout = h.cluster.config().upgrade_timeout();
    let force = h.cluster.config().force_exit_timeout();
    // (The upgrade began one drain before `booting` returned, at the same instant.)
    assert_eq!(h.cluster.poll_timeout(), Some(h.now + timeout));
    h.advance(timeout - MS);
    assert!(h.successor_signals().is_empty(), "not before the timeout");
    h.advance(MS);
    assert_eq!(h.successor_signals(), vec![Signal::Term]);
    h.take();
    // Still under way until it is gone: a second upgrade waits.
    assert_eq!(
        h.cluster.handle(h.now, Input::Upgrade),
        Err(CommandError::UpgradeUnderWay)
    );
    assert_eq!(h.cluster.poll_timeout(), Some(h.now + force));
    h.advance(force - MS);
    assert!(h.successor_signals().is_empty());
    h.advance(MS);
    assert_eq!(h.successor_signals(), vec![Signal::Kill]);
    assert_eq!(
        h.cluster.poll_timeout(),
        None,
        "killed: nothing more to time"
    );
    h.take();
    h.successor(SuccessorFact::Exited(ExitStatus::Signaled(9)));
    assert_eq!(
        h.events(),
        vec![Event::UpgradeFailed {
            cause: UpgradeFailure::TimedOut { after: timeout }
        }]
    );
    assert!(h.signals().is_empty());
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn a_successor_ready_after_its_timeout_is_not_handed_over_to() {
    let mut h = booting(1);
    h.advance(h.cluster.config().upgrade_timeout());
    h.take();
    let ignored = h.cluster.stats().ignored_inputs;
    h.successor(SuccessorFact::Ready);
    assert_eq!(h.cluster.stats().ignored_inputs, ignored + 1);
    assert!(h.events().is_empty());
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn a_shutdown_during_an_upgrade_stops_the_successor_and_waits_for_it() {
    let mut h = booting(1);
    let id = h.cluster.workers().next().unwrap().id;
    h.signal(Signal::Term);
    assert_eq!(h.successor_signals(), vec![Signal::Term]);
    assert!(h.notices().contains(&Notice::Stopping));
    h.take();
    h.exited(id, ExitStatus::Code(0));
    assert_eq!(h.last_exit(), None, "the successor is still there");
    h.successor(SuccessorFact::Exited(ExitStatus::Code(0)));
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::UpgradeFailed {
        cause: UpgradeFailure::ShuttingDown
    })));
    assert!(
        !actions.contains(&Action::Notify(Notice::Ready)),
        "stopping: no READY=1"
    );
    assert_eq!(actions.last(), Some(&Action::Exit(ExitReason::Clean)));
}

#[test]
fn a_forced_shutdown_kills_the_successor_too() {
    let mut h = booting(1);
    h.signal(Signal::Term);
    h.take();
    h.advance(h.cluster.config().force_exit_timeout());
    assert_eq!(h.successor_signals(), vec![Signal::Kill]);
    let mut h = booting(1);
    h.signal(Signal::Quit);
    assert_eq!(h.successor_signals(), vec![Signal::Term, Signal::Kill]);
}

#[test]
fn a_successor_still_being_started_at_a_shutdown_is_stopped_once_it_has_a_pid() {
    let mut h = started(1);
    h.signal(Signal::Term);
    assert!(h.successor_signals().is_empty(), "no pid yet");
    h.take();
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    assert_eq!(h.successor_signals(), vec![Signal::Term]);
    assert!(h.events().is_empty());

    let mut h = started(1);
    h.signal(Signal::Quit);
    h.take();
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    assert_eq!(h.successor_signals(), vec![Signal::Kill], "forced: at once");

    let mut h = started(1);
    let id = h.cluster.workers().next().unwrap().id;
    h.signal(Signal::Term);
    h.exited(id, ExitStatus::Code(0));
    h.take();
    let error = SpawnError::new(SpawnErrorKind::Other);
    h.successor(SuccessorFact::SpawnFailed(error));
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::UpgradeFailed {
        cause: UpgradeFailure::ShuttingDown
    })));
    assert_eq!(actions.last(), Some(&Action::Exit(ExitReason::Clean)));
}

#[test]
fn an_upgrade_during_a_shutdown_is_refused() {
    let mut h = upgrading(1);
    h.signal(Signal::Term);
    h.take();
    h.signal(Signal::Usr2);
    assert_eq!(
        h.events(),
        vec![Event::Ignored {
            reason: IgnoreReason::Refused {
                signal: Signal::Usr2,
                error: CommandError::ShuttingDown,
            }
        }]
    );
    assert_eq!(
        h.cluster.handle(h.now, Input::Upgrade),
        Err(CommandError::ShuttingDown)
    );
}

#[test]
fn successor_facts_out_of_turn_are_ignored_and_counted() {
    let mut h = upgrading(1);
    let facts = [
        SuccessorFact::Ready,
        SuccessorFact::Exited(ExitStatus::Code(0)),
        SuccessorFact::Spawned { pid: SUCCESSOR },
    ];
    let before = h.cluster.stats().ignored_inputs;
    for fact in facts {
        h.successor(fact);
    }
    assert_eq!(h.cluster.stats().ignored_inputs, before + 3, "no upgrade");
    let mut h = booting(1);
    let before = h.cluster.stats().ignored_inputs;
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    h.successor(SuccessorFact::SpawnFailed(SpawnError::new(
        SpawnErrorKind::Other,
    )));
    assert_eq!(h.cluster.stats().ignored_inputs, before + 2);
    assert!(h.take().is_empty());
    let mut h = started(1);
    let before = h.cluster.stats().ignored_inputs;
    h.successor(SuccessorFact::Ready);
    assert_eq!(h.cluster.stats().ignored_inputs, before + 1, "no pid yet");
    assert!(!h.cluster.is_exited());
}

#[test]
fn after_the_handover_the_old_master_pings_no_watchdog() {
    let mut h = Harness::new(
        Config::builder()
            .workers(1)
            .upgrades(true)
            .forward_signals(ForwardSignals::NONE)
            .force_exit_timeout(60 * SEC)
            .service_watchdog(Some(SEC)),
    );
    h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.take();
    h.signal(Signal::Usr2);
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    h.advance(SEC);
    assert!(
        h.notices().contains(&Notice::Watchdog),
        "pinged while upgrading"
    );
    h.successor(SuccessorFact::Ready);
    h.take();
    h.advance(3 * SEC);
    assert!(!h.notices().contains(&Notice::Watchdog));
}

#[test]
fn a_successor_tells_its_predecessor_once_every_slot_is_proven() {
    let mut h = Harness::new(Config::builder().workers(2).successor(true));
    let ids = h.boot_all();
    let notices = h.notices();
    assert!(
        !notices.contains(&Notice::Ready),
        "the first READY=1 is the predecessor's"
    );
    assert!(!notices.contains(&Notice::Serving), "not proven yet");
    h.take();
    h.advance(DEFAULT_MIN_UPTIME - MS);
    assert!(h.notices().is_empty());
    h.advance(MS);
    assert_eq!(h.notices(), vec![Notice::Serving]);
    h.take();
    // Once: a worker's death and its proven replacement say nothing more.
    h.exited(ids[0], ExitStatus::Code(1));
    let (id, ..) = h.spawns()[0];
    h.spawned(id);
    h.ready(id);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(!h.notices().contains(&Notice::Serving));
}

#[test]
fn a_successor_with_a_slot_unproven_does_not_serve() {
    let mut h = Harness::new(Config::builder().workers(2).successor(true));
    let (first, ..) = h.spawns()[0];
    h.take();
    h.spawned(first);
    h.ready(first);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(!h.notices().contains(&Notice::Serving), "one slot of two");
    // A first master never says it.
    let mut h = Harness::with_workers(1);
    h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(!h.notices().contains(&Notice::Serving));
    assert!(h.notices().contains(&Notice::Ready));
}

#[test]
fn the_upgrade_timeout_covers_boot_probation_and_the_start() {
    let config = Config::builder()
        .boot_timeout(3 * SEC)
        .min_uptime(SEC)
        .build()
        .unwrap();
    assert_eq!(config.upgrade_timeout(), 4 * SEC + UPGRADE_ALLOWANCE);
    assert!(!config.upgrades() && !config.successor(), "off by default");
}

#[test]
fn a_spurious_timeout_before_the_deadline_stops_nothing() {
    let mut h = booting(1);
    let timeout = h.cluster.config().upgrade_timeout();
    let early = h.now + timeout - MS;
    h.cluster.handle(early, Input::Timeout).unwrap();
    h.drain();
    assert!(h.successor_signals().is_empty());
    h.cluster.handle(h.now + timeout, Input::Timeout).unwrap();
    h.drain();
    assert_eq!(h.successor_signals(), vec![Signal::Term]);
}

#[test]
fn a_successor_never_reported_spawned_by_the_deadline_is_stopped_once_it_is() {
    let mut h = started(1);
    let force = h.cluster.config().force_exit_timeout();
    h.advance(h.cluster.config().upgrade_timeout());
    assert!(h.successor_signals().is_empty(), "no pid to signal yet");
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    assert_eq!(
        h.successor_signals(),
        vec![Signal::Term],
        "late, so stopped"
    );
    assert!(
        h.events().is_empty(),
        "not UpgradeSpawned: it failed already"
    );
    h.advance(force);
    assert_eq!(h.successor_signals(), vec![Signal::Kill]);
    h.take();
    h.successor(SuccessorFact::Exited(ExitStatus::Signaled(9)));
    assert!(matches!(
        h.events()[..],
        [Event::UpgradeFailed {
            cause: UpgradeFailure::TimedOut { .. }
        }]
    ));
}

#[test]
fn a_successor_out_of_time_to_stop_before_its_spawn_report_is_killed_at_once() {
    let mut h = started(1);
    let timeout = h.cluster.config().upgrade_timeout();
    let force = h.cluster.config().force_exit_timeout();
    h.advance(timeout + force);
    h.take();
    h.successor(SuccessorFact::Spawned { pid: SUCCESSOR });
    assert_eq!(h.successor_signals(), vec![Signal::Kill]);
}

#[test]
fn an_in_process_or_rolling_successor_does_not_say_it_serves() {
    let mut h = Harness::new(Config::builder().workers(0).successor(true));
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(
        !h.notices().contains(&Notice::Serving),
        "no slot, no cluster"
    );

    let mut h = Harness::new(Config::builder().workers(1).successor(true));
    h.boot_all();
    h.signal(Signal::Hup);
    let (id, ..) = h.spawns()[0];
    h.take();
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(
        !h.notices().contains(&Notice::Serving),
        "every slot proven, but a rollout runs"
    );
    h.take();
    h.spawned(id);
    h.ready(id);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(
        h.notices().contains(&Notice::Serving),
        "the rollout is over"
    );
}
