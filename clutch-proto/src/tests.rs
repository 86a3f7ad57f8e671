//! Behaviour tests: one per line of the design table, driven by hand through a small
//! harness that checks the invariants after every step.

use std::time::{Duration, Instant};

use crate::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// Drives a `ClusterState` the way a driver does, recording every action.
struct Harness {
    cluster: ClusterState,
    start: Instant,
    now: Instant,
    /// Every action since the last `take()`.
    log: Vec<Action>,
    next_pid: Pid,
}

impl Harness {
    fn new(builder: &mut ConfigBuilder) -> Self {
        let start = crate::test_epoch();
        let cluster = ClusterState::new(builder.build().expect("valid config"), start);
        let mut h = Self {
            cluster,
            start,
            now: start,
            log: Vec::new(),
            next_pid: 1000,
        };
        h.drain();
        h
    }

    fn with_workers(n: usize) -> Self {
        Self::new(Config::builder().workers(n))
    }

    fn drain(&mut self) {
        self.cluster.check_invariants().expect("invariants");
        while let Some(action) = self.cluster.poll_action() {
            self.log.push(action);
        }
        self.cluster
            .check_invariants()
            .expect("invariants after drain");
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.log)
    }

    fn events(&mut self) -> Vec<Event> {
        self.take()
            .into_iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Spawn requests in the log (without consuming it).
    fn spawns(&self) -> Vec<(WorkerId, Slot, u64)> {
        self.log
            .iter()
            .filter_map(|a| match *a {
                Action::Spawn {
                    id,
                    slot,
                    generation,
                } => Some((id, slot, generation)),
                _ => None,
            })
            .collect()
    }

    fn signals(&self) -> Vec<(WorkerId, Signal)> {
        self.log
            .iter()
            .filter_map(|a| match *a {
                Action::Signal { id, signal, .. } => Some((id, signal)),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        // Fire every deadline on the way, at its own time, as a driver would.
        while let Some(at) = self.cluster.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.cluster.handle(self.now, Input::Timeout).unwrap();
            self.drain();
        }
        self.now = until;
    }

    fn spawned(&mut self, id: WorkerId) -> Pid {
        self.next_pid += 1;
        let pid = self.next_pid;
        self.cluster
            .handle(self.now, Input::Spawned { id, pid })
            .unwrap();
        self.drain();
        pid
    }

    fn ready(&mut self, id: WorkerId) {
        self.cluster.handle(self.now, Input::Ready { id }).unwrap();
        self.drain();
    }

    fn exited(&mut self, id: WorkerId, status: ExitStatus) {
        self.cluster
            .handle(self.now, Input::Exited { id, status })
            .unwrap();
        self.drain();
    }

    fn signal(&mut self, signal: Signal) {
        self.cluster
            .handle(self.now, Input::Signal(signal))
            .unwrap();
        self.drain();
    }

    fn spawn_failed(&mut self, id: WorkerId, kind: SpawnErrorKind) {
        let error = SpawnError::new(kind);
        self.cluster
            .handle(self.now, Input::SpawnFailed { id, error })
            .unwrap();
        self.drain();
    }

    /// Boots one worker of the first batch, leaving the other spawn requests pending;
    /// returns its id (so the program is known to be executable).
    fn boot_first(&mut self) -> WorkerId {
        let (id, ..) = self.spawns()[0];
        self.spawned(id);
        self.ready(id);
        id
    }

    /// Spawns and readies every pending spawn request; returns the new ids.
    fn boot_all(&mut self) -> Vec<WorkerId> {
        let ids: Vec<WorkerId> = self.spawns().into_iter().map(|(id, ..)| id).collect();
        self.take();
        for &id in &ids {
            self.spawned(id);
            self.ready(id);
        }
        ids
    }

    fn last_exit(&self) -> Option<ExitReason> {
        match self.log.last() {
            Some(Action::Exit(reason)) => Some(*reason),
            _ => None,
        }
    }
}

fn count<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    items.iter().filter(|i| pred(i)).count()
}

// ----- start ---------------------------------------------------------------------------

#[test]
fn start_spawns_every_slot_and_listening_fires_once_on_first_ready() {
    let mut h = Harness::with_workers(3);
    let spawns = h.spawns();
    assert_eq!(
        spawns.iter().map(|s| s.1 .0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(spawns.iter().all(|s| s.2 == 1), "first generation is 1");
    h.take();
    let ids: Vec<WorkerId> = spawns.iter().map(|s| s.0).collect();
    for &id in &ids {
        h.spawned(id);
    }
    let events = h.events();
    assert_eq!(
        count(&events, |e| matches!(e, Event::WorkerStarted { .. })),
        3
    );
    assert_eq!(h.cluster.phase(), Phase::Starting);

    h.ready(ids[1]);
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::Listening { id: ids[1] })));
    assert!(actions.contains(&Action::Notify(Notice::Ready)));
    h.ready(ids[0]);
    h.ready(ids[2]);
    let actions = h.take();
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Event(Event::Listening { .. }))));
    assert!(!actions.contains(&Action::Notify(Notice::Ready)));
    assert_eq!(h.cluster.ready_workers(), 3);
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn an_idle_healthy_cluster_asks_for_no_wakeups() {
    let mut h = Harness::with_workers(4);
    h.boot_all();
    // Only the probations are pending; once they are over, nothing is.
    assert_eq!(h.cluster.poll_timeout(), Some(h.now + DEFAULT_MIN_UPTIME));
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.cluster.poll_timeout(), None);
}

#[test]
fn status_is_reported_once_per_drain_when_counts_change() {
    let mut h = Harness::with_workers(2);
    let statuses = count(&h.log, |a| matches!(a, Action::Notify(Notice::Status(_))));
    assert_eq!(statuses, 1, "one status after the initial spawns");
    h.boot_all();
    let status = h.cluster.status();
    assert_eq!((status.ready, status.target, status.live), (2, 2, 2));
    h.take();
    h.cluster.handle(h.now, Input::Timeout).unwrap();
    h.drain();
    assert!(h.take().is_empty(), "nothing changed, nothing to say");
}

// ----- readiness -----------------------------------------------------------------------

#[test]
fn readiness_spawned_means_ready_at_exec() {
    let mut h = Harness::new(Config::builder().workers(1).readiness(Readiness::Spawned));
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawned(id);
    assert!(h.events().contains(&Event::Listening { id }));
}

#[test]
fn readiness_delay_makes_a_surviving_worker_ready_and_ready_1_is_sooner() {
    let mut h = Harness::new(
        Config::builder()
            .workers(2)
            .readiness(Readiness::Delay(Duration::from_millis(500))),
    );
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    h.spawned(ids[0]);
    h.spawned(ids[1]);
    h.ready(ids[1]); // READY=1 before the delay
    assert_eq!(h.cluster.ready_workers(), 1);
    h.advance(499 * MS);
    assert_eq!(h.cluster.ready_workers(), 1);
    h.advance(MS);
    assert_eq!(h.cluster.ready_workers(), 2);
}

#[test]
fn a_readiness_delay_handled_as_late_as_the_boot_timeout_is_a_boot_timeout() {
    for (late_by, ready) in [(4 * SEC - MS, true), (4 * SEC, false)] {
        let mut h = Harness::new(
            Config::builder()
                .workers(1)
                .readiness(Readiness::Delay(SEC))
                .boot_timeout(5 * SEC),
        );
        let (id, ..) = h.spawns()[0];
        h.spawned(id);
        let started = h.now;
        assert_eq!(h.cluster.poll_timeout(), Some(started + SEC));
        // The driver delivers the delay's timeout late, at or just before the boot timeout.
        h.now = started + SEC + late_by;
        h.cluster.handle(h.now, Input::Timeout).unwrap();
        h.drain();
        assert_eq!(
            h.cluster.ready_workers(),
            usize::from(ready),
            "late by {late_by:?}"
        );
        let timed_out = h
            .events()
            .iter()
            .any(|e| matches!(e, Event::WorkerBootTimedOut { .. }));
        assert_eq!(timed_out, !ready, "late by {late_by:?}");
    }
}

#[test]
fn boot_timeout_kills_and_counts_as_a_boot_failure() {
    let mut h = Harness::new(Config::builder().workers(1).boot_timeout(10 * SEC));
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawned(id);
    h.take();
    h.advance(10 * SEC - MS);
    assert!(h.take().is_empty());
    h.advance(MS);
    let actions = h.take();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(Event::WorkerBootTimedOut { id: i, .. }) if *i == id)));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Signal { id: i, signal: Signal::Kill, .. } if *i == id)));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(Event::RespawnDelayed { .. }))));
    assert_eq!(h.cluster.stats().boot_failures, 1);
    h.exited(id, ExitStatus::Signaled(9));
    let events = h.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::WorkerExit {
            reason: StopReason::BootTimeout,
            ..
        }
    )));
}

// ----- crashes, backoff, breaker ------------------------------------------------------

#[test]
fn a_healthy_worker_that_crashes_is_replaced_at_once_in_its_slot() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.exited(ids[1], ExitStatus::Signaled(11));
    let events: Vec<Action> = h.take();
    assert!(events.iter().any(|a| matches!(a, Action::Event(Event::WorkerDied { id, was_ready: true, status: ExitStatus::Signaled(11), .. }) if *id == ids[1])));
    let spawns: Vec<_> = events
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { id, slot, .. } => Some((*id, *slot)),
            _ => None,
        })
        .collect();
    assert_eq!(spawns.len(), 1);
    assert_eq!(spawns[0].1, Slot(1));
    assert!(spawns[0].0 > ids[1], "a new id");
    assert_eq!(h.cluster.worker(spawns[0].0).unwrap().restarts, 1);
}

#[test]
fn a_worker_exiting_zero_on_its_own_is_still_an_unexpected_death() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.exited(ids[0], ExitStatus::Code(0));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::WorkerDied { .. })));
}

#[test]
fn young_deaths_back_off_exponentially_and_a_healthy_run_resets() {
    let mut h = Harness::new(Config::builder().workers(1).crash_budget(CrashBudget {
        failures: 100,
        window: 10 * SEC,
    }));
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (id, ..) = *h.spawns().last().expect("a spawn");
        h.take();
        h.spawned(id);
        h.exited(id, ExitStatus::Code(1)); // dies at boot
        let delay = h
            .events()
            .iter()
            .find_map(|e| match e {
                Event::RespawnDelayed { delay, .. } => Some(*delay),
                _ => None,
            })
            .expect("delayed");
        delays.push(delay);
        // Nothing is spawned before the delay is over...
        h.advance(delay - MS);
        assert!(h.spawns().is_empty(), "respawned before its backoff");
        h.advance(MS);
        assert_eq!(h.spawns().len(), 1);
    }
    assert_eq!(
        delays,
        vec![100 * MS, 150 * MS, 225 * MS, Duration::from_micros(337_500)]
    );
    // A run past the probation (min_uptime): the next crash is replaced at once.
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawned(id);
    h.ready(id);
    h.advance(31 * SEC);
    h.exited(id, ExitStatus::Code(1));
    assert_eq!(h.spawns().len(), 1, "immediate refill after a healthy run");
}

#[test]
fn the_breaker_trips_on_a_boot_loop_and_exits_non_zero_with_bounded_spawns() {
    let mut h = Harness::with_workers(2);
    let start = h.now;
    let mut spawned = 0;
    for _ in 0..100 {
        let pending: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
        h.take();
        for id in pending {
            spawned += 1;
            h.spawned(id);
            h.exited(id, ExitStatus::Code(3));
        }
        if h.cluster.is_exited() {
            break;
        }
        h.advance(SEC);
    }
    assert!(h.cluster.is_exited(), "the breaker must stop the loop");
    // Not before 10 s without a ready worker, and soon after; the backoff (100 ms ×
    // 1.5ⁿ) keeps each slot to about one fork per second here.
    let took = h.now - start;
    assert!(
        took >= 10 * SEC && took <= 11 * SEC,
        "tripped after {took:?}"
    );
    assert!(spawned <= 24, "spawned {spawned} times before giving up");
    assert_eq!(h.last_exit(), Some(ExitReason::BreakerTripped));
    assert_eq!(ExitReason::BreakerTripped.code(), 3);
}

#[test]
fn the_breaker_threshold_is_at_least_the_worker_count() {
    // 8 workers, 6 fail once at boot (more than the budget of 5, fewer than 8): no trip.
    let mut h = Harness::with_workers(8);
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    for (i, &id) in ids.iter().enumerate() {
        h.spawned(id);
        if i < 6 {
            h.exited(id, ExitStatus::Code(1));
        } else {
            h.ready(id);
        }
    }
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, Event::BreakerTripped { .. })));
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn scaling_down_below_the_recent_boot_failures_trips_the_breaker() {
    // Regression (found by clutch-sim, seed 30): the threshold is max(budget, target), so
    // scaling down lowers it and must be re-checked at once.
    let mut h = Harness::new(Config::builder().workers(8).crash_budget(CrashBudget {
        failures: 5,
        window: 10 * SEC,
    }));
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    for (i, &id) in ids.iter().enumerate() {
        h.spawned(id);
        if i < 6 {
            h.exited(id, ExitStatus::Code(1)); // 6 failures: below 8, no trip
        }
    }
    h.advance(11 * SEC); // nothing ready for the window, but 6 < 8 failures
    assert_eq!(h.cluster.phase(), Phase::Starting);
    h.take();
    assert_eq!(h.cluster.handle(h.now, Input::Scale(4)).map(|_| ()), Ok(()));
    h.drain();
    let events = h.events();
    assert!(events.contains(&Event::Scaled { from: 8, to: 4 }));
    assert!(events.contains(&Event::BreakerTripped {
        failures: 6,
        window: 10 * SEC
    }));
    assert_eq!(h.cluster.phase(), Phase::Stopping);
}

#[test]
fn spawn_failures_count_as_boot_failures() {
    let mut h = Harness::with_workers(1);
    for _ in 0..10 {
        let Some(&(id, ..)) = h.spawns().last() else {
            break;
        };
        h.take();
        let error = SpawnError::new(SpawnErrorKind::Other);
        h.cluster
            .handle(h.now, Input::SpawnFailed { id, error })
            .unwrap();
        h.drain();
        h.advance(20 * SEC);
    }
    // No worker ever ready: the fifth failure, well past the window, trips the breaker.
    assert_eq!(h.cluster.stats().spawn_failures, 5);
    assert_eq!(h.last_exit(), Some(ExitReason::BreakerTripped));
}

#[test]
fn the_breaker_never_stops_a_serving_worker() {
    // Case 2 of issue 11: four workers serve, the program on disk is broken, one crashes.
    let mut h = Harness::with_workers(4);
    let ids = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME); // all four proven
    h.take();
    h.exited(ids[0], ExitStatus::Signaled(11));
    // A one-off crash of a proven worker: replaced at once...
    assert_eq!(h.spawns().len(), 1);
    let mut spawns = 0;
    for _ in 0..200 {
        let pending: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
        h.take();
        for id in pending {
            spawns += 1;
            h.spawned(id);
            h.exited(id, ExitStatus::Code(1)); // ...by a program that cannot boot
        }
        h.advance(SEC);
    }
    assert_eq!(
        h.cluster.phase(),
        Phase::Running,
        "three workers keep serving"
    );
    assert_eq!(h.cluster.ready_workers(), 3);
    assert!(h.cluster.is_degraded());
    assert_eq!(h.cluster.status().failing, 1);
    assert!(h
        .cluster
        .status()
        .to_string()
        .contains("degraded: 1 slots failing"));
    // 200 s: the slot's backoff reached its 15 s cap; far fewer than 200 forks.
    assert!(spawns <= 30, "{spawns} forks in 200 s");
    // Once the slot's worker passes probation, the cluster has recovered.
    h.take();
    h.advance(20 * SEC);
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawned(id);
    h.ready(id);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(h.events().contains(&Event::Recovered));
    assert!(!h.cluster.is_degraded());
}

#[test]
fn a_cluster_whose_workers_die_in_probation_exits_3() {
    // Case 1 of issue 11 on a fresh start: ready at 1 s, dead at 1.7 s, every time.
    let mut h = Harness::new(
        Config::builder()
            .workers(2)
            .readiness(Readiness::Delay(SEC)),
    );
    let start = h.now;
    for _ in 0..400 {
        if h.cluster.is_exited() || h.cluster.phase() == Phase::Stopping {
            break;
        }
        let pending: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
        h.take();
        for id in pending {
            h.spawned(id);
        }
        h.advance(1700 * MS);
        let ready: Vec<WorkerId> = h
            .cluster
            .workers()
            .filter(|w| w.state == WorkerState::Ready)
            .map(|w| w.id)
            .collect();
        for id in ready {
            h.exited(id, ExitStatus::Code(1));
        }
        h.advance(100 * MS);
    }
    assert_eq!(h.cluster.phase(), Phase::Stopping);
    let took = h.now - start;
    assert!(took <= 15 * SEC, "tripped after {took:?}");
}

#[test]
fn a_failing_period_begins_again_after_a_worker_passes_probation() {
    let mut h = Harness::with_workers(3);
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    for (i, &id) in ids.iter().enumerate() {
        h.spawned(id);
        if i == 0 {
            h.ready(id);
        } else {
            h.exited(id, ExitStatus::Code(1));
        }
    }
    h.advance(DEFAULT_MIN_UPTIME); // the one worker passes probation: the count resets
    let failing_at = h.now;
    h.take();
    // It dies (a one-off: not a failure); every slot then keeps failing at boot.
    h.exited(ids[0], ExitStatus::Code(1));
    let mut tripped_at = None;
    for _ in 0..40 {
        let pending: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
        h.take();
        for id in pending {
            h.spawned(id);
            h.exited(id, ExitStatus::Code(1));
        }
        if h.cluster.phase() == Phase::Stopping {
            tripped_at = Some(h.now);
            break;
        }
        h.advance(500 * MS);
    }
    // Not counted from the failures before the proof: 10 s from the next one.
    let took = tripped_at.expect("tripped") - failing_at;
    assert!(took >= 10 * SEC && took <= 11 * SEC, "{took:?}");
}

#[test]
fn resource_failures_beyond_the_crash_budget_never_trip_the_breaker() {
    let mut h = Harness::new(Config::builder().workers(1).crash_budget(CrashBudget {
        failures: 2,
        window: 60 * SEC,
    }));
    let mut delays = Vec::new();
    for round in 0..20 {
        let (id, ..) = *h.spawns().last().expect("the slot is retried");
        h.take();
        h.spawn_failed(id, SpawnErrorKind::Resource);
        let events = h.events();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::BreakerTripped { .. })),
            "round {round}: {events:?}"
        );
        let Some(&Event::RespawnDelayed {
            delay,
            consecutive_failures,
            ..
        }) = events
            .iter()
            .find(|e| matches!(e, Event::RespawnDelayed { .. }))
        else {
            panic!("round {round}: no backoff in {events:?}");
        };
        assert_eq!(consecutive_failures, round + 1);
        delays.push(delay);
        h.advance(delay);
    }
    assert!(delays.windows(2).all(|d| d[0] <= d[1]), "{delays:?}");
    assert_eq!(delays[0], 100 * MS);
    assert_eq!(*delays.last().unwrap(), Backoff::default().max);
    assert_eq!(h.cluster.phase(), Phase::Starting);
    let stats = h.cluster.stats();
    assert_eq!(
        (
            stats.boot_failures,
            stats.resource_failures,
            stats.spawn_failures
        ),
        (0, 20, 20)
    );
    // And the slot still comes up once the master has fds again.
    let (id, ..) = h.spawns()[0];
    h.spawned(id);
    h.ready(id);
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn a_first_generation_exec_failure_exits_1_after_the_first_batch_is_reaped() {
    let mut h = Harness::with_workers(3);
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    // The first cannot be executed before any worker started: a startup error.
    h.spawn_failed(ids[0], SpawnErrorKind::Exec);
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::ShutdownStarted {
        trigger: ShutdownTrigger::StartupFailed
    })));
    assert!(!actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    assert!(h.last_exit().is_none(), "two workers are not reaped yet");
    assert_eq!(h.cluster.stats().boot_failures, 0);
    for &id in &ids[1..] {
        assert_eq!(
            h.cluster.worker(id).unwrap().stop_reason,
            Some(StopReason::Shutdown)
        );
    }
    // The second is started after all: it is stopped as soon as its pid is known.
    h.spawned(ids[1]);
    assert_eq!(h.signals(), vec![(ids[1], Signal::Term)]);
    h.take();
    // The third fails too (a stopping worker: nothing more happens).
    h.spawn_failed(ids[2], SpawnErrorKind::Exec);
    assert!(h.last_exit().is_none());
    h.exited(ids[1], ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::StartupFailed));
    assert_eq!(ExitReason::StartupFailed.code(), 1);
    assert!(ExitReason::StartupFailed
        .describe()
        .contains("could not be executed"));
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::ShutDown {
        reason: ExitReason::StartupFailed
    })));
    assert_eq!(count(&actions, |a| matches!(a, Action::Exit(_))), 1);
}

#[test]
fn a_lone_exec_failure_at_startup_exits_1_at_once() {
    let mut h = Harness::with_workers(1);
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawn_failed(id, SpawnErrorKind::Exec);
    assert_eq!(h.last_exit(), Some(ExitReason::StartupFailed));
    assert_eq!(h.cluster.poll_timeout(), None);
}

#[test]
fn an_exec_failure_after_a_worker_once_started_is_a_boot_failure() {
    let mut h = Harness::new(Config::builder().workers(2).crash_budget(CrashBudget {
        failures: 2,
        window: 60 * SEC,
    }));
    h.boot_first();
    let (second, ..) = h.spawns()[1];
    h.take();
    h.spawn_failed(second, SpawnErrorKind::Exec);
    assert_eq!(h.cluster.stats().boot_failures, 1);
    assert_ne!(h.cluster.phase(), Phase::Stopping);
    let events = h.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RespawnDelayed { .. })));
    // Another one: 2 failures, but a worker is ready, so the breaker waits.
    h.advance(SEC);
    let (again, ..) = h.spawns()[0];
    h.take();
    h.spawn_failed(again, SpawnErrorKind::Exec);
    assert_ne!(h.cluster.phase(), Phase::Stopping);
    assert!(h.cluster.is_degraded());
    // The ready one dies in probation: nothing serves; the breaker trips 60 s after the
    // first failure, exit 3, not 1.
    let first = h.cluster.workers().next().map(|w| w.id).unwrap();
    h.exited(first, ExitStatus::Code(1));
    assert_ne!(h.cluster.phase(), Phase::Stopping);
    h.advance(60 * SEC);
    assert!(h
        .log
        .iter()
        .any(|a| matches!(a, Action::Event(Event::BreakerTripped { failures: 3, .. }))));
    assert_eq!(h.cluster.phase(), Phase::Stopping);
}

#[test]
fn other_spawn_failures_count_even_before_any_worker_started() {
    let mut h = Harness::with_workers(2);
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    h.spawn_failed(ids[0], SpawnErrorKind::Other);
    assert_eq!(h.cluster.stats().boot_failures, 1);
    assert_ne!(h.cluster.phase(), Phase::Stopping);
}

#[test]
fn a_rollout_successor_out_of_resources_fails_the_rollout_without_counting() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawn_failed(new, SpawnErrorKind::Resource);
    let events = h.events();
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::ReloadFailed {
                generation: 2,
                reason,
            } => Some(reason.clone()),
            _ => None,
        })
        .expect("the rollout fails");
    assert!(
        reason.to_string().contains("the master could not start"),
        "{reason}"
    );
    assert_eq!(h.cluster.stats().boot_failures, 0);
    assert_eq!(h.cluster.ready_workers(), 2);
    assert!(old
        .iter()
        .all(|&id| h.cluster.worker(id).unwrap().stop_reason.is_none()));
    // A first-generation successor never existed: an Exec failure of a rollout's new
    // worker fails the rollout, it does not end the cluster.
    h.signal(Signal::Hup);
    let (new, _, generation) = h.spawns()[0];
    assert_eq!(generation, 3);
    h.take();
    h.spawn_failed(new, SpawnErrorKind::Exec);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::ReloadFailed { generation: 3, .. })));
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn cancelled_spawns_during_shutdown_are_removed_quietly_and_the_exit_comes_last() {
    let mut h = Harness::with_workers(3);
    let ids: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    h.spawned(ids[0]);
    h.signal(Signal::Term);
    h.take();
    for &id in &ids[1..] {
        assert_eq!(
            h.cluster.worker(id).unwrap().stop_reason,
            Some(StopReason::Shutdown),
            "the driver can see it is not wanted"
        );
    }
    h.spawn_failed(ids[1], SpawnErrorKind::Cancelled);
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::WorkerSpawnCancelled {
            id: ids[1],
            slot: Slot(1),
            reason: StopReason::Shutdown
        }]
    );
    h.exited(ids[0], ExitStatus::Code(0));
    assert!(h.last_exit().is_none());
    h.spawn_failed(ids[2], SpawnErrorKind::Cancelled);
    let actions = h.take();
    assert_eq!(actions.last(), Some(&Action::Exit(ExitReason::Clean)));
    assert_eq!(
        count(&actions, |a| matches!(a, Action::Exit(_))),
        1,
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Event(Event::NoWorkers)));
    let stats = h.cluster.stats();
    assert_eq!((stats.spawns_cancelled, stats.spawn_failures), (2, 0));
}

#[test]
fn a_cancelled_report_for_a_wanted_worker_is_a_resource_failure() {
    let mut h = Harness::with_workers(1);
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawn_failed(id, SpawnErrorKind::Cancelled);
    let events = h.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::WorkerSpawnFailed { error, .. } if error.kind == SpawnErrorKind::Resource
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RespawnDelayed { .. })));
    let stats = h.cluster.stats();
    assert_eq!((stats.resource_failures, stats.boot_failures), (1, 0));
}

#[test]
fn a_cancelled_scale_down_leaves_no_hole() {
    let mut h = Harness::with_workers(1);
    h.boot_all();
    h.cluster
        .handle(h.now, Input::Scale(3))
        .map(|_| ())
        .unwrap();
    h.drain();
    let pending: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    h.take();
    h.cluster
        .handle(h.now, Input::Scale(1))
        .map(|_| ())
        .unwrap();
    h.drain();
    h.take();
    for id in pending {
        h.spawn_failed(id, SpawnErrorKind::Cancelled);
    }
    assert!(h.spawns().is_empty());
    assert_eq!(h.cluster.live_workers(), 1);
    assert_eq!(h.cluster.phase(), Phase::Running);
}

// ----- shutdown ------------------------------------------------------------------------

#[test]
fn term_stops_every_worker_and_exits_clean_with_events_in_order() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Term);
    let actions = h.take();
    assert!(matches!(
        actions[0],
        Action::Event(Event::ShutdownStarted {
            trigger: ShutdownTrigger::Signal(Signal::Term)
        })
    ));
    assert!(actions.contains(&Action::Notify(Notice::Stopping)));
    assert_eq!(
        count(&actions, |a| matches!(
            a,
            Action::Signal {
                signal: Signal::Term,
                ..
            }
        )),
        2
    );
    h.exited(ids[0], ExitStatus::Code(0));
    assert!(h.last_exit().is_none(), "one worker still running");
    h.exited(ids[1], ExitStatus::Code(0));
    let events: Vec<Event> = h
        .log
        .iter()
        .filter_map(|a| {
            if let Action::Event(e) = a {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    assert!(matches!(
        events[0],
        Event::WorkerExit {
            reason: StopReason::Shutdown,
            ..
        }
    ));
    assert!(matches!(events[1], Event::WorkerExit { .. }));
    assert_eq!(events[2], Event::NoWorkers);
    assert_eq!(
        events[3],
        Event::ShutDown {
            reason: ExitReason::Clean
        }
    );
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
    assert_eq!(ExitReason::Clean.code(), 0);
    // Inert afterwards.
    h.signal(Signal::Hup);
    assert!(h.cluster.poll_action().is_none());
    assert_eq!(h.cluster.poll_timeout(), None);
}

#[test]
fn a_worker_ignoring_term_is_killed_at_the_force_timeout_and_the_exit_says_forced() {
    let mut h = Harness::new(Config::builder().workers(2).force_exit_timeout(7500 * MS));
    let ids = h.boot_all();
    h.signal(Signal::Int);
    h.exited(ids[0], ExitStatus::Code(0));
    h.take();
    h.advance(7499 * MS);
    assert!(h.signals().is_empty());
    h.advance(MS);
    assert_eq!(h.signals(), vec![(ids[1], Signal::Kill)]);
    assert!(h
        .take()
        .iter()
        .any(|a| matches!(a, Action::Event(Event::ShutdownForced { killed: 1 }))));
    assert!(
        h.last_exit().is_none(),
        "exit only after the killed worker is reaped"
    );
    h.advance(SEC);
    assert!(h.last_exit().is_none());
    h.exited(ids[1], ExitStatus::Signaled(9));
    assert_eq!(h.last_exit(), Some(ExitReason::Forced));
    assert_eq!(ExitReason::Forced.code(), 4);
}

#[test]
fn a_second_term_or_int_a_second_later_means_now() {
    for second in [Signal::Term, Signal::Int] {
        let mut h = Harness::with_workers(2);
        let ids = h.boot_all();
        h.signal(Signal::Int);
        h.take();
        h.advance(1500 * MS);
        h.signal(second);
        assert_eq!(count(&h.signals(), |s| s.1 == Signal::Kill), 2);
        for id in ids {
            h.exited(id, ExitStatus::Signaled(9));
        }
        assert_eq!(h.last_exit(), Some(ExitReason::Forced));
        assert_eq!(h.last_exit().map(ExitReason::code), Some(4));
    }
}

#[test]
fn a_term_or_int_repeated_within_a_second_is_the_same_request() {
    for (first, second) in [
        (Signal::Term, Signal::Term),
        (Signal::Int, Signal::Int),
        (Signal::Term, Signal::Int),
    ] {
        let mut h = Harness::with_workers(2);
        let ids = h.boot_all();
        h.signal(first);
        h.take();
        h.advance(500 * MS);
        h.signal(second);
        let actions = h.take();
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                Action::Signal { .. } | Action::Event(Event::ShutdownForced { .. })
            )),
            "a repeat forces nothing: {actions:?}"
        );
        assert!(actions.contains(&Action::Event(Event::SignalIgnored {
            signal: second,
            why: SignalIgnoreReason::Repeat,
        })));
        // Just inside the window is still a repeat.
        h.advance(SIGNAL_REPEAT_WINDOW - 500 * MS - Duration::from_nanos(1));
        h.signal(second);
        assert!(h.signals().is_empty());
        for id in ids {
            h.exited(id, ExitStatus::Code(0));
        }
        assert_eq!(h.last_exit(), Some(ExitReason::Clean));
        assert_eq!(h.last_exit().map(ExitReason::code), Some(0));
    }
}

#[test]
fn a_stop_command_then_a_quick_term_stays_graceful_and_quit_still_forces() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    h.cluster.handle(h.now, Input::Shutdown).unwrap();
    h.drain();
    h.take();
    h.advance(10 * MS);
    h.signal(Signal::Term);
    assert!(
        h.signals().is_empty(),
        "systemd's TERM after `stop` is a repeat"
    );
    h.advance(10 * MS);
    h.signal(Signal::Quit);
    assert_eq!(
        h.signals(),
        vec![(ids[0], Signal::Kill)],
        "QUIT keeps its meaning"
    );
}

#[test]
fn quit_kills_at_once() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Quit);
    assert_eq!(
        h.signals(),
        vec![(ids[0], Signal::Kill), (ids[1], Signal::Kill)]
    );
}

#[test]
fn nothing_is_spawned_once_shutdown_begins() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.exited(ids[0], ExitStatus::Code(1)); // crash: slot 0 is being refilled
    let (refill, ..) = h.spawns()[0];
    h.take();
    h.signal(Signal::Term);
    // The refill was asked for before the TERM: it is stopped as soon as it exists.
    h.take();
    h.spawned(refill);
    assert_eq!(h.signals(), vec![(refill, Signal::Term)]);
    h.exited(ids[1], ExitStatus::Signaled(11)); // dies unexpectedly during shutdown
    assert!(h.spawns().is_empty());
    h.exited(refill, ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
}

#[test]
fn shutdown_during_backoff_cancels_the_respawn() {
    let mut h = Harness::with_workers(1);
    let (id, ..) = h.spawns()[0];
    h.take();
    h.spawned(id);
    h.exited(id, ExitStatus::Code(1));
    h.cluster.handle(h.now, Input::Shutdown).unwrap();
    h.drain();
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
    h.advance(SEC);
    assert!(h.spawns().is_empty());
}

#[test]
fn shutdown_now_and_repeated_commands() {
    let mut h = Harness::with_workers(1);
    h.boot_all();
    h.cluster.handle(h.now, Input::Shutdown).unwrap();
    h.cluster.handle(h.now, Input::Shutdown).unwrap();
    h.drain();
    assert!(h.events().contains(&Event::Ignored {
        reason: IgnoreReason::AlreadyShuttingDown
    }));
    h.cluster.handle(h.now, Input::ShutdownNow).unwrap();
    h.drain();
    assert_eq!(count(&h.signals(), |s| s.1 == Signal::Kill), 1);
}

// ----- rolling restart ----------------------------------------------------------------

#[test]
fn hup_rolls_one_at_a_time_new_first_old_after_ready() {
    let mut h = Harness::with_workers(3);
    let old = h.boot_all();
    h.take();
    h.signal(Signal::Hup);
    let actions = h.take();
    assert!(actions.contains(&Action::Event(Event::ReloadStarted { generation: 2 })));
    assert!(actions.contains(&Action::Notify(Notice::Reloading)));
    let spawns: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn {
                id,
                slot,
                generation,
            } => Some((*id, *slot, *generation)),
            _ => None,
        })
        .collect();
    assert_eq!(spawns.len(), 1, "batch of one");
    assert_eq!((spawns[0].1, spawns[0].2), (Slot(0), 2));
    let mut new = spawns[0].0;
    for (i, &old_id) in old.iter().enumerate() {
        h.spawned(new);
        assert!(
            h.signals().is_empty(),
            "no old worker stopped before its successor is ready"
        );
        assert_eq!(h.cluster.ready_workers(), 3);
        h.take();
        h.ready(new);
        assert!(
            h.signals().is_empty(),
            "the old worker waits out the probation"
        );
        assert_eq!(h.cluster.serving_workers(), 4);
        h.advance(DEFAULT_MIN_UPTIME - MS);
        assert!(
            h.signals().is_empty(),
            "the old worker waits out the probation"
        );
        h.advance(MS);
        assert_eq!(h.signals(), vec![(old_id, Signal::Term)]);
        let next: Vec<_> = h.spawns();
        h.take();
        h.exited(old_id, ExitStatus::Code(0));
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerExit {
                reason: StopReason::Reload,
                ..
            }
        )));
        if i + 1 < old.len() {
            assert_eq!(next.len(), 1);
            assert_eq!(next[0].1, Slot(i + 1));
            new = next[0].0;
        } else {
            assert!(next.is_empty());
        }
    }
    let finished = h.cluster.stats().reloads_finished;
    assert_eq!(finished, 1);
    assert_eq!(h.cluster.phase(), Phase::Running);
}

#[test]
fn reload_finish_reports_ready_to_the_service_manager() {
    let mut h = Harness::new(Config::builder().workers(2).rollout_batch(2));
    h.boot_all();
    h.cluster.handle(h.now, Input::Reload).map(|_| ()).unwrap();
    h.drain();
    let new: Vec<WorkerId> = h.spawns().iter().map(|s| s.0).collect();
    assert_eq!(new.len(), 2, "batch of two");
    h.take();
    for id in new {
        h.spawned(id);
        h.ready(id);
    }
    h.advance(DEFAULT_MIN_UPTIME);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFinished { generation: 2, .. })
    )));
    assert!(actions.contains(&Action::Notify(Notice::Ready)));
}

#[test]
fn a_new_worker_failing_to_boot_aborts_the_rollout_and_keeps_the_old_ones() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawned(new);
    h.exited(new, ExitStatus::Code(1));
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFailed {
            generation: 2,
            reason: ReloadFailure::WorkerDied { .. }
        })
    )));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })),
        "old workers untouched: {actions:?}"
    );
    assert_eq!(h.cluster.ready_workers(), 2);
    assert_eq!(
        h.cluster.generation(),
        1,
        "respawns go back to the old generation"
    );
    assert_eq!(
        h.cluster.stats().boot_failures,
        0,
        "rollout failures do not feed the breaker"
    );
    assert_eq!(h.cluster.stats().reloads_failed, 1);
    // A later crash is refilled with the old generation.
    h.advance(60 * SEC);
    h.exited(old[1], ExitStatus::Signaled(9));
    assert_eq!(h.spawns()[0].2, 1);
}

#[test]
fn a_new_worker_dying_in_probation_fails_the_rollout_at_once() {
    // Case 1 of issue 11: the new release is ready at 1 s and dies at 1.7 s.
    let mut h = Harness::new(
        Config::builder()
            .workers(3)
            .readiness(Readiness::Delay(SEC)),
    );
    let old = h.boot_all();
    h.advance(10 * SEC);
    h.take();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawned(new);
    h.advance(SEC);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::WorkerReady { id, .. } if *id == new)));
    h.advance(700 * MS);
    h.exited(new, ExitStatus::Code(1));
    let actions = h.take();
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Event(Event::ReloadFailed {
                generation: 2,
                reason: ReloadFailure::DiedInProbation { ready_for, .. }
            }) if *ready_for == 700 * MS
        )),
        "{actions:?}"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })),
        "no old worker stopped, nothing respawned: {actions:?}"
    );
    assert_eq!(h.cluster.ready_workers(), 3);
    let events = h.events();
    eprintln!("{events:#?}");
    assert_eq!(h.cluster.generation(), 1);
    assert_eq!(
        h.cluster.stats().boot_failures,
        0,
        "a rollout's failure, not the breaker's"
    );
    // A later crash of an old worker is refilled from the generation that worked.
    h.exited(old[2], ExitStatus::Signaled(9));
    assert_eq!(h.spawns()[0].2, 1);
}

#[test]
fn a_proven_new_worker_lets_the_rollout_move_on_and_a_later_probation_death_stops_it() {
    let mut h = Harness::with_workers(3);
    let old = h.boot_all();
    h.signal(Signal::Hup);
    let (first, ..) = h.spawns()[0];
    h.take();
    h.spawned(first);
    h.ready(first);
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.signals(), vec![(old[0], Signal::Term)]);
    let (second, ..) = h.spawns()[0];
    h.take();
    h.spawned(second);
    h.ready(second);
    h.advance(SEC);
    h.cluster
        .handle(h.now, Input::Stopping { id: second })
        .unwrap();
    h.drain();
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFailed {
            reason: ReloadFailure::LeftInProbation { .. },
            ..
        })
    )));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Signal { id, .. } if old.contains(id))));
    // Slot 0 keeps its proven new worker; slots 1 and 2 their old ones.
    let generations: Vec<u64> = h
        .cluster
        .workers()
        .filter(|w| w.stop_reason.is_none())
        .map(|w| w.generation)
        .collect();
    assert_eq!(generations, vec![1, 1, 2]);
}

#[test]
fn a_probation_death_is_refilled_quickly_until_deaths_come_too_fast() {
    let mut h = Harness::with_workers(1);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let (id, ..) = *h.spawns().last().expect("a spawn");
        h.take();
        h.spawned(id);
        h.ready(id);
        h.advance(10 * MS);
        h.exited(id, ExitStatus::Code(1)); // dies right after ready
        let delay = h
            .events()
            .iter()
            .find_map(|e| match e {
                Event::RespawnDelayed { delay, .. } => Some(*delay),
                _ => None,
            })
            .expect("delayed");
        delays.push(delay);
        h.advance(delay);
    }
    // Three quick refills (the burst), then 110 ms apart is faster than one per 500 ms:
    // the full backoff for the 4th, 5th and 6th young death in a row.
    assert_eq!(
        delays,
        vec![
            100 * MS,
            100 * MS,
            100 * MS,
            Duration::from_micros(337_500),
            100 * MS,
            Duration::from_micros(759_375)
        ]
    );
    // A death every 0.5 s or slower never waits more than 100 ms.
    let mut h = Harness::with_workers(1);
    for _ in 0..20 {
        let (id, ..) = *h.spawns().last().expect("a spawn");
        h.take();
        h.spawned(id);
        h.ready(id);
        h.advance(400 * MS);
        h.exited(id, ExitStatus::Signaled(9));
        let delayed = h
            .events()
            .iter()
            .any(|e| matches!(e, Event::RespawnDelayed { delay, .. } if *delay == 100 * MS));
        assert!(delayed);
        h.advance(100 * MS);
    }
}

#[test]
fn a_new_worker_timing_out_at_boot_aborts_the_rollout() {
    let mut h = Harness::new(Config::builder().workers(1).boot_timeout(5 * SEC));
    h.boot_all();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawned(new);
    h.advance(5 * SEC);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFailed {
            reason: ReloadFailure::BootTimeout { .. },
            ..
        })
    )));
    assert!(actions.contains(&Action::Signal {
        id: new,
        pid: h.next_pid,
        signal: Signal::Kill
    }));
}

#[test]
fn term_mid_rollout_shuts_everything_down() {
    let mut h = Harness::with_workers(2);
    h.boot_all();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.spawned(new);
    h.take();
    h.signal(Signal::Term);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFailed {
            reason: ReloadFailure::ShuttingDown,
            ..
        })
    )));
    assert_eq!(
        count(&actions, |a| matches!(
            a,
            Action::Signal {
                signal: Signal::Term,
                ..
            }
        )),
        3
    );
    assert_eq!(h.cluster.phase(), Phase::Stopping);
    assert_eq!(
        h.cluster.stats().reloads_failed,
        1,
        "the shutdown failed it"
    );
}

#[test]
fn hup_during_a_rollout_is_queued_and_runs_after_it() {
    let mut h = Harness::with_workers(1);
    h.boot_all();
    h.signal(Signal::Hup);
    h.signal(Signal::Hup);
    assert!(h.log.contains(&Action::Event(Event::ReloadQueued)));
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawned(new);
    h.ready(new);
    h.advance(DEFAULT_MIN_UPTIME);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(Event::ReloadFinished { generation: 2, .. })
    )));
    assert!(actions.contains(&Action::Event(Event::ReloadStarted { generation: 3 })));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Spawn { generation: 3, .. })));
}

#[test]
fn old_worker_dying_mid_rollout_hands_its_slot_to_the_successor() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.signal(Signal::Hup);
    let (new, ..) = h.spawns()[0];
    h.take();
    h.spawned(new);
    h.advance(40 * SEC); // within the successor's boot timeout, past the old one's reset
    h.exited(old[0], ExitStatus::Signaled(9));
    assert!(h.spawns().is_empty(), "the successor takes over the slot");
    h.ready(new);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(h
        .take()
        .iter()
        .any(|a| matches!(a, Action::Event(Event::ReloadFinished { .. }))));
}

// ----- scaling -------------------------------------------------------------------------

#[test]
fn ttin_and_ttou_scale_by_one_but_never_below_one() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Ttin);
    assert_eq!(h.cluster.target(), 2);
    assert!(h
        .log
        .contains(&Action::Event(Event::Scaled { from: 1, to: 2 })));
    let added = h.boot_all();
    h.take();
    h.signal(Signal::Ttou);
    assert_eq!(h.cluster.target(), 1);
    assert_eq!(
        h.signals(),
        vec![(added[0], Signal::Term)],
        "the highest slot goes"
    );
    h.take();
    h.signal(Signal::Ttou);
    assert_eq!(h.cluster.target(), 1);
    assert!(h.events().contains(&Event::Ignored {
        reason: IgnoreReason::Refused {
            signal: Signal::Ttou,
            error: CommandError::BadWorkerCount(0),
        }
    }));
    assert_eq!(h.cluster.worker(ids[0]).unwrap().state, WorkerState::Ready);
}

#[test]
fn scale_command_validates_its_target() {
    let mut h = Harness::with_workers(2);
    h.boot_all();
    assert_eq!(
        h.cluster.handle(h.now, Input::Scale(0)).map(|_| ()),
        Err(CommandError::BadWorkerCount(0))
    );
    assert_eq!(
        h.cluster
            .handle(h.now, Input::Scale(MAX_WORKERS + 1))
            .map(|_| ()),
        Err(CommandError::BadWorkerCount(MAX_WORKERS + 1))
    );
    assert_eq!(h.cluster.handle(h.now, Input::Scale(5)).map(|_| ()), Ok(()));
    h.drain();
    assert_eq!(h.spawns().len(), 3);
    assert_eq!(h.cluster.stats().spawns, 5, "two at start, three now");
    h.cluster.handle(h.now, Input::Shutdown).unwrap();
    assert_eq!(
        h.cluster.handle(h.now, Input::Scale(3)).map(|_| ()),
        Err(CommandError::ShuttingDown)
    );
}

#[test]
fn scaling_down_a_slot_in_backoff_cancels_its_respawn() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.exited(ids[1], ExitStatus::Code(1)); // young: backoff
    h.take();
    h.cluster
        .handle(h.now, Input::Scale(1))
        .map(|_| ())
        .unwrap();
    h.drain();
    h.advance(60 * SEC);
    assert!(h.spawns().is_empty());
}

// ----- hung workers --------------------------------------------------------------------

fn hang_harness() -> Harness {
    Harness::new(Config::builder().workers(1).hang(HangPolicy {
        timeout: Some(10 * SEC),
        signal: Some(Signal::Abrt),
        grace: 2 * SEC,
    }))
}

#[test]
fn a_silent_worker_is_reported_hung_signalled_killed_and_replaced() {
    let mut h = hang_harness();
    let ids = h.boot_all();
    h.cluster
        .handle(h.now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    h.take();
    h.advance(10 * SEC);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(a, Action::Event(Event::WorkerHung { silent_for, .. }) if *silent_for == 10 * SEC)));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Signal {
            signal: Signal::Abrt,
            ..
        }
    )));
    assert_eq!(
        count(&actions, |a| matches!(a, Action::Spawn { .. })),
        1,
        "ready for 10 s, past its probation: replaced at once"
    );
    h.advance(2 * SEC);
    let actions = h.take();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Signal {
            signal: Signal::Kill,
            ..
        }
    )));
    h.exited(ids[0], ExitStatus::Signaled(9));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerExit {
            reason: StopReason::Hung,
            ..
        }
    )));
}

#[test]
fn heartbeats_keep_a_worker_alive_and_silence_without_heartbeats_is_fine() {
    let mut h = hang_harness();
    let ids = h.boot_all();
    h.cluster
        .handle(h.now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    for _ in 0..20 {
        h.advance(5 * SEC);
        h.cluster
            .handle(h.now, Input::Heartbeat { id: ids[0] })
            .unwrap();
    }
    assert_eq!(h.cluster.stats().hung, 0);

    let mut quiet = hang_harness();
    quiet.boot_all();
    quiet.advance(3600 * SEC);
    assert_eq!(
        quiet.cluster.stats().hung,
        0,
        "no heartbeat ever: not monitored"
    );
}

#[test]
fn a_hung_worker_with_no_diagnostic_signal_is_killed_at_once() {
    let mut h = Harness::new(Config::builder().workers(1).hang(HangPolicy {
        timeout: Some(SEC),
        signal: None,
        grace: SEC,
    }));
    let ids = h.boot_all();
    h.cluster
        .handle(h.now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    h.take();
    h.advance(SEC);
    assert_eq!(h.signals(), vec![(ids[0], Signal::Kill)]);
}

// ----- worker reports ------------------------------------------------------------------

#[test]
fn stopping_1_replaces_the_worker_and_its_exit_is_expected() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.take();
    h.cluster
        .handle(h.now, Input::Stopping { id: ids[0] })
        .unwrap();
    h.drain();
    assert_eq!(h.spawns().len(), 1, "replaced at once after a healthy run");
    h.take();
    h.exited(ids[0], ExitStatus::Code(0));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerExit {
            reason: StopReason::Announced,
            ..
        }
    )));
}

#[test]
fn a_worker_that_said_stopping_1_is_killed_at_the_force_timeout() {
    let mut h = Harness::new(Config::builder().workers(1).force_exit_timeout(5 * SEC));
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.take();
    h.cluster
        .handle(h.now, Input::Stopping { id: ids[0] })
        .unwrap();
    h.drain();
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(h.now + 5 * SEC),
        "its stop grace is the force-exit timeout"
    );
    h.take();
    h.advance(5 * SEC - MS);
    assert!(h.signals().is_empty(), "not before the grace ends");
    h.advance(MS);
    assert_eq!(h.signals(), vec![(ids[0], Signal::Kill)]);
}

#[test]
fn a_worker_already_stopping_gets_no_second_term_and_keeps_its_grace() {
    let mut h = Harness::new(Config::builder().workers(1).force_exit_timeout(5 * SEC));
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.cluster
        .handle(h.now, Input::Stopping { id: ids[0] })
        .unwrap();
    h.drain();
    let kill_at = h.now + 5 * SEC;
    h.advance(2 * SEC);
    h.take();
    h.signal(Signal::Term); // the shutdown asks every worker to go
    assert!(
        !h.signals().contains(&(ids[0], Signal::Term)),
        "it is stopping already"
    );
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(kill_at),
        "its grace, unchanged"
    );
}

#[test]
fn stopping_1_during_a_shutdown_waits_for_the_shutdown_s_own_force_deadline() {
    let mut h = Harness::new(Config::builder().workers(2).force_exit_timeout(5 * SEC));
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.signal(Signal::Term);
    let force_at = h.now + 5 * SEC;
    h.advance(2 * SEC);
    h.cluster
        .handle(h.now, Input::Stopping { id: ids[0] })
        .unwrap();
    h.drain();
    assert_eq!(h.cluster.poll_timeout(), Some(force_at));
    assert!(
        h.spawns().is_empty(),
        "nothing replaces it during a shutdown"
    );
}

#[test]
fn only_a_ready_worker_s_first_heartbeat_arms_the_hang_check() {
    let mut h = hang_harness();
    let ids = h.boot_all();
    h.advance(3 * SEC); // past its probation: no timer left
    assert_eq!(
        h.cluster.poll_timeout(),
        None,
        "no heartbeat yet: not monitored"
    );
    let first = h.now;
    h.cluster
        .handle(h.now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    assert_eq!(h.cluster.poll_timeout(), Some(first + 10 * SEC));
    assert_eq!(
        h.cluster.worker(ids[0]).unwrap().last_heartbeat,
        Some(first)
    );
    h.now += 4 * SEC;
    h.cluster
        .handle(h.now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(first + 10 * SEC),
        "a later heartbeat moves only last_heartbeat"
    );
    // The check fires early for the latest heartbeat and re-arms itself from it.
    h.advance(6 * SEC);
    assert_eq!(h.cluster.poll_timeout(), Some(first + 14 * SEC));
    assert_eq!(h.cluster.stats().hung, 0);
    h.advance(4 * SEC);
    assert_eq!(h.cluster.stats().hung, 1);
}

#[test]
fn a_booting_worker_s_heartbeats_keep_its_boot_timeout_and_arm_the_check_at_ready() {
    let mut h = Harness::new(Config::builder().workers(1).boot_timeout(60 * SEC).hang(
        HangPolicy {
            timeout: Some(10 * SEC),
            signal: None,
            grace: SEC,
        },
    ));
    let (id, ..) = h.spawns()[0];
    h.spawned(id);
    h.cluster.handle(h.now, Input::Heartbeat { id }).unwrap();
    h.drain();
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(h.now + 60 * SEC),
        "still the boot timeout"
    );
    h.advance(59 * SEC);
    assert_eq!(h.cluster.stats().hung, 0);
    h.ready(id);
    assert_eq!(h.cluster.worker(id).unwrap().last_heartbeat, Some(h.now));
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(h.now + 2 * SEC),
        "next, its probation's end; the hang check is due later"
    );
    h.advance(3 * SEC); // probation over
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(h.now + 7 * SEC),
        "becoming ready counts as a heartbeat"
    );

    let mut late = Harness::new(Config::builder().workers(1).boot_timeout(60 * SEC).hang(
        HangPolicy {
            timeout: Some(10 * SEC),
            signal: None,
            grace: SEC,
        },
    ));
    let (id, ..) = late.spawns()[0];
    late.spawned(id);
    late.cluster
        .handle(late.now, Input::Heartbeat { id })
        .unwrap();
    late.take();
    late.advance(60 * SEC);
    assert!(late
        .events()
        .iter()
        .any(|e| matches!(e, Event::WorkerBootTimedOut { id: timed_out, .. } if *timed_out == id)));
    assert_eq!(late.cluster.stats().hung, 0);
}

#[test]
fn heartbeats_of_spawning_and_leaving_workers_are_ignored_and_counted() {
    let mut h = hang_harness();
    let (id, ..) = h.spawns()[0];
    h.cluster.handle(h.now, Input::Heartbeat { id }).unwrap();
    assert_eq!(h.cluster.stats().ignored_inputs, 1, "spawning");
    assert_eq!(h.cluster.worker(id).unwrap().last_heartbeat, None);
    h.spawned(id);
    h.ready(id);
    h.advance(60 * SEC);
    h.signal(Signal::Term);
    h.cluster.handle(h.now, Input::Heartbeat { id }).unwrap();
    assert_eq!(h.cluster.stats().ignored_inputs, 2, "leaving");
    assert_eq!(h.cluster.worker(id).unwrap().last_heartbeat, None);
}

#[test]
fn unexpected_exits_are_counted_and_expected_ones_are_not() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.advance(60 * SEC);
    h.exited(ids[0], ExitStatus::Code(1));
    assert_eq!(h.cluster.stats().unexpected_exits, 1);
    h.exited(ids[1], ExitStatus::Signaled(9));
    assert_eq!(h.cluster.stats().unexpected_exits, 2);
    let ids = h.boot_all();
    h.signal(Signal::Term);
    for id in ids {
        h.exited(id, ExitStatus::Code(0));
    }
    assert_eq!(h.cluster.stats().unexpected_exits, 2, "asked to go");
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
}

#[test]
fn workers_lists_every_worker_in_id_order_and_generation_follows_reloads() {
    let mut h = Harness::with_workers(2);
    assert_eq!(h.cluster.generation(), 1);
    let ids = h.boot_all();
    let listed: Vec<(WorkerId, Slot, u64, WorkerState)> = h
        .cluster
        .workers()
        .map(|w| (w.id, w.slot, w.generation, w.state))
        .collect();
    assert_eq!(
        listed,
        vec![
            (ids[0], Slot(0), 1, WorkerState::Ready),
            (ids[1], Slot(1), 1, WorkerState::Ready),
        ]
    );
    assert_eq!(
        h.cluster.workers().map(|w| w.pid).collect::<Vec<_>>(),
        vec![Some(1001), Some(1002)]
    );
    h.cluster.handle(h.now, Input::Reload).unwrap();
    h.drain();
    assert_eq!(h.cluster.generation(), 2);
    assert_eq!(h.cluster.workers().count(), 3, "two old, one successor");
    let successor = h.cluster.workers().last().unwrap();
    assert_eq!((successor.generation, successor.successor), (2, true));
}

#[test]
fn stale_and_duplicate_reports_are_ignored_and_counted() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    let ghost = WorkerId(999);
    let now = h.now;
    h.cluster
        .handle(now, Input::Spawned { id: ghost, pid: 1 })
        .unwrap();
    h.cluster
        .handle(
            now,
            Input::SpawnFailed {
                id: ghost,
                error: SpawnError::new(SpawnErrorKind::Other),
            },
        )
        .unwrap();
    h.cluster.handle(now, Input::Ready { id: ghost }).unwrap();
    h.cluster
        .handle(now, Input::Heartbeat { id: ghost })
        .unwrap();
    h.cluster
        .handle(now, Input::Stopping { id: ghost })
        .unwrap();
    h.cluster
        .handle(
            now,
            Input::Exited {
                id: ghost,
                status: ExitStatus::Code(0),
            },
        )
        .unwrap();
    h.cluster
        .handle(
            now,
            Input::Spawned {
                id: ids[0],
                pid: 77,
            },
        )
        .unwrap(); // duplicate
    h.cluster.handle(now, Input::Ready { id: ids[0] }).unwrap(); // duplicate
    h.drain();
    assert_eq!(h.cluster.stats().ignored_inputs, 8);
    assert_eq!(
        h.cluster.worker(ids[0]).unwrap().pid,
        Some(1001),
        "pid unchanged"
    );
    // A report about a worker that is gone.
    h.advance(60 * SEC);
    h.exited(ids[0], ExitStatus::Code(1));
    h.exited(ids[0], ExitStatus::Code(1));
    assert_eq!(h.cluster.stats().ignored_inputs, 9);
}

#[test]
fn signals_outside_the_forwarding_set_reach_no_worker_and_are_reported() {
    let mut h = Harness::new(
        Config::builder()
            .workers(2)
            .forward_signals(ForwardSignals::NONE),
    );
    h.boot_all();
    h.take();
    for signal in [Signal::Usr1, Signal::Usr2] {
        h.signal(signal);
        assert!(h.signals().is_empty(), "{signal} sent to a worker");
        let events = h.events();
        assert!(events.contains(&Event::SignalIgnored {
            signal,
            why: SignalIgnoreReason::NotForwarded,
        }));
        assert!(!events
            .iter()
            .any(|e| matches!(e, Event::SignalForwarded { .. })));
    }
    // Only USR2: USR1 is ignored, USR2 forwarded.
    let only_usr2 = ForwardSignals::NONE.with(Signal::Usr2).unwrap();
    let mut h = Harness::new(Config::builder().workers(1).forward_signals(only_usr2));
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Usr1);
    assert!(h.signals().is_empty());
    h.signal(Signal::Usr2);
    assert_eq!(h.signals(), vec![(ids[0], Signal::Usr2)]);
}

#[test]
fn usr1_and_usr2_are_forwarded_and_winch_is_reported() {
    let mut h = Harness::with_workers(2);
    let ids = h.boot_all();
    h.take();
    h.signal(Signal::Usr1);
    assert_eq!(
        h.signals(),
        vec![(ids[0], Signal::Usr1), (ids[1], Signal::Usr1)]
    );
    h.take();
    h.signal(Signal::Winch);
    assert!(h.events().contains(&Event::Ignored {
        reason: IgnoreReason::Meaningless(Signal::Winch)
    }));
}

#[test]
fn a_hup_during_shutdown_is_ignored_with_the_refusal() {
    let mut h = Harness::with_workers(1);
    h.boot_all();
    h.signal(Signal::Term);
    h.take();
    h.signal(Signal::Hup);
    let ignored = Event::Ignored {
        reason: IgnoreReason::Refused {
            signal: Signal::Hup,
            error: CommandError::ShuttingDown,
        },
    };
    assert!(h.events().contains(&ignored));
    let Event::Ignored { reason } = ignored else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "SIGHUP: no reload: the cluster is shutting down"
    );
}

#[test]
fn event_names_are_distinct_snake_case() {
    let id = WorkerId(1);
    let slot = Slot(0);
    let d = Duration::ZERO;
    let status = ExitStatus::Code(0);
    let events = [
        Event::WorkerStarted {
            id,
            slot,
            pid: 1,
            generation: 1,
        },
        Event::WorkerSpawnFailed {
            id,
            slot,
            error: SpawnError::new(SpawnErrorKind::Other),
        },
        Event::WorkerSpawnCancelled {
            id,
            slot,
            reason: StopReason::Shutdown,
        },
        Event::WorkerReady { id, slot, pid: 1 },
        Event::Listening { id },
        Event::WorkerStopping { id, slot, pid: 1 },
        Event::WorkerBootTimedOut { id, slot, pid: 1 },
        Event::WorkerHung {
            id,
            slot,
            pid: 1,
            silent_for: d,
        },
        Event::WorkerDied {
            id,
            slot,
            pid: None,
            status,
            was_ready: false,
            uptime: d,
        },
        Event::WorkerExit {
            id,
            slot,
            pid: None,
            status,
            reason: StopReason::Shutdown,
        },
        Event::WorkerRecycling {
            id,
            slot,
            pid: 1,
            cause: RecycleCause::Age,
        },
        Event::RespawnDelayed {
            slot,
            delay: d,
            consecutive_failures: 1,
        },
        Event::NoWorkers,
        Event::ShutdownStarted {
            trigger: ShutdownTrigger::Command,
        },
        Event::ShutdownForced { killed: 1 },
        Event::ShutDown {
            reason: ExitReason::Clean,
        },
        Event::BreakerTripped {
            failures: 1,
            window: d,
        },
        Event::Degraded {
            failing: 1,
            ready: 0,
            target: 1,
        },
        Event::Recovered,
        Event::ReloadStarted { generation: 2 },
        Event::ReloadQueued,
        Event::ReloadFinished {
            generation: 2,
            took: d,
        },
        Event::ReloadFailed {
            generation: 2,
            reason: ReloadFailure::ShuttingDown,
        },
        Event::Scaled { from: 1, to: 2 },
        Event::SignalForwarded {
            signal: Signal::Usr1,
            workers: 1,
        },
        Event::Ignored {
            reason: IgnoreReason::AlreadyShuttingDown,
        },
        Event::SignalIgnored {
            signal: Signal::Usr2,
            why: SignalIgnoreReason::NotForwarded,
        },
    ];
    let names: std::collections::BTreeSet<&str> = events.iter().map(Event::name).collect();
    assert_eq!(names.len(), events.len(), "one name per event: {names:?}");
    for name in names {
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name} is not snake_case"
        );
    }
}

// ----- in-process mode, service manager ------------------------------------------------

#[test]
fn zero_workers_is_in_process_and_refuses_cluster_commands() {
    let mut h = Harness::with_workers(0);
    assert!(h.spawns().is_empty());
    assert_eq!(
        h.cluster.handle(h.now, Input::Reload).map(|_| ()),
        Err(CommandError::InProcess)
    );
    assert_eq!(
        h.cluster.handle(h.now, Input::Scale(2)).map(|_| ()),
        Err(CommandError::InProcess)
    );
    h.signal(Signal::Term);
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
}

#[test]
fn service_watchdog_pings_while_healthy_and_stops_when_no_worker_serves() {
    let mut h = Harness::new(
        Config::builder()
            .workers(1)
            .service_watchdog(Some(5 * SEC))
            .crash_budget(CrashBudget {
                failures: 1000,
                window: SEC,
            }),
    );
    let ids = h.boot_all();
    h.take();
    h.advance(10 * SEC);
    assert_eq!(
        count(&h.take(), |a| *a == Action::Notify(Notice::Watchdog)),
        2
    );
    h.exited(ids[0], ExitStatus::Code(1)); // young death: backoff, nothing ready
    for _ in 0..3 {
        if let Some(&(id, ..)) = h.spawns().last() {
            h.take();
            h.spawned(id);
            h.exited(id, ExitStatus::Code(1));
        }
        h.advance(5 * SEC);
    }
    assert_eq!(
        count(&h.take(), |a| *a == Action::Notify(Notice::Watchdog)),
        0
    );
}

#[test]
fn service_watchdog_pings_while_starting_and_while_stopping() {
    let watchdog = |h: &mut Harness| count(&h.take(), |a| *a == Action::Notify(Notice::Watchdog));
    let mut h = Harness::new(
        Config::builder()
            .workers(1)
            .boot_timeout(60 * SEC)
            .service_watchdog(Some(5 * SEC)),
    );
    let (id, ..) = h.spawns()[0];
    h.spawned(id);
    h.take();
    h.advance(10 * SEC);
    assert_eq!(watchdog(&mut h), 2, "a slow boot is not a stuck master");
    h.ready(id);
    h.advance(60 * SEC);
    h.signal(Signal::Term); // the worker ignores it: nothing serves while it stops
    h.take();
    h.advance(5 * SEC);
    assert_eq!(
        watchdog(&mut h),
        1,
        "a shutdown under way is not a stuck master"
    );
}

#[test]
fn time_going_nowhere_and_spurious_timeouts_are_harmless() {
    let mut h = Harness::with_workers(2);
    h.boot_all();
    h.take();
    for _ in 0..10 {
        h.cluster.handle(h.now, Input::Timeout).unwrap();
        h.drain();
    }
    assert!(h.take().is_empty());
    assert_eq!(h.start, h.now);
}

#[test]
fn a_reload_answers_the_generation_whose_rollout_answers_it() {
    let mut h = Harness::new(Config::builder().workers(1));
    h.boot_all();
    h.take();
    let ticket = h.cluster.handle(h.now, Input::Reload);
    assert_eq!(ticket, Ok(Reply::Reload { generation: 2 }));
    h.drain();
    // Queued behind the rollout under way: the next rollout answers it.
    let queued = h.cluster.handle(h.now, Input::Reload);
    assert_eq!(queued, Ok(Reply::Reload { generation: 3 }));
    h.drain();
    // The rollout of 2 fails (its new worker dies at boot); the queued one starts as 3.
    let new = h.spawns().last().expect("a successor").0;
    h.spawned(new);
    h.exited(new, ExitStatus::Code(1));
    let new = h.spawns().last().expect("a successor").0;
    let events = h.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ReloadFailed { generation: 2, .. })));
    assert!(events.contains(&Event::ReloadStarted { generation: 3 }));
    // That one fails too: spawns fall back to generation 1, yet the next reload is 4,
    // not `generation() + 1`.
    h.spawned(new);
    h.exited(new, ExitStatus::Code(1));
    assert_eq!(h.cluster.generation(), 1);
    let next = h.cluster.handle(h.now, Input::Reload);
    assert_eq!(next, Ok(Reply::Reload { generation: 4 }));
    h.drain();
    assert!(h.events().contains(&Event::ReloadStarted { generation: 4 }));
}

#[test]
fn every_report_is_counted_and_those_after_the_exit_are_ignored() {
    let mut h = Harness::with_workers(1);
    let ids = h.boot_all();
    let before = *h.cluster.stats();
    let now = h.now;
    for input in [Input::Heartbeat { id: ids[0] }, Input::Timeout] {
        h.cluster.handle(now, input).unwrap();
    }
    h.drain();
    assert_eq!(h.cluster.stats().inputs, before.inputs + 2);
    assert_eq!(h.cluster.stats().ignored_inputs, before.ignored_inputs);
    h.signal(Signal::Term);
    h.exited(ids[0], ExitStatus::Code(0));
    assert!(h.cluster.is_exited());
    let at_exit = *h.cluster.stats();
    h.cluster
        .handle(now, Input::Heartbeat { id: ids[0] })
        .unwrap();
    h.cluster.handle(now, Input::Timeout).unwrap();
    assert_eq!(
        h.cluster.stats().inputs,
        at_exit.inputs + 2,
        "still counted"
    );
    assert_eq!(
        h.cluster.stats().ignored_inputs,
        at_exit.ignored_inputs + 2,
        "and ignored"
    );
}

#[test]
fn scaling_to_the_maximum_is_allowed() {
    let mut h = Harness::with_workers(1);
    h.boot_all();
    assert_eq!(
        h.cluster
            .handle(h.now, Input::Scale(MAX_WORKERS))
            .map(|_| ()),
        Ok(())
    );
    h.drain();
    assert_eq!(h.cluster.target(), MAX_WORKERS);
}

#[test]
fn a_kill_decided_while_spawning_is_not_softened_into_the_earlier_term() {
    let mut h = Harness::new(Config::builder().workers(1).force_exit_timeout(5 * SEC));
    let (id, ..) = h.spawns()[0];
    h.take();
    // The shutdown begins while the pid is not known yet (TERM pending), and its force
    // comes before it is (KILL pending).
    h.signal(Signal::Term);
    h.advance(6 * SEC);
    assert!(h.signals().is_empty(), "nothing to signal without a pid");
    h.spawned(id);
    assert_eq!(h.signals(), vec![(id, Signal::Kill)]);
}

// Per feature: recycling (issue 13) and the upgrade of the master itself (issue 14).
mod recycling;
mod upgrade;

/// The counters a metrics exporter reads: a reload counts when it starts, a death
/// before ready is a boot death (and still an unexpected exit), a death after ready is
/// not, a boot timeout is counted once, an upgrade when it starts.
#[test]
fn stats_count_starts_boot_deaths_and_boot_timeouts() {
    let mut h = Harness::new(Config::builder().workers(2).boot_timeout(10 * SEC));
    let ids = h.boot_all();
    h.advance(5 * SEC);
    // A proven worker dies: unexpected, not at boot.
    h.exited(ids[0], ExitStatus::Code(1));
    let stats = *h.cluster.stats();
    assert_eq!((stats.unexpected_exits, stats.boot_deaths), (1, 0));
    // Its replacement dies before it is ready: a boot death too.
    let (booting, ..) = h.spawns()[0];
    h.take();
    h.spawned(booting);
    h.exited(booting, ExitStatus::Code(1));
    let stats = *h.cluster.stats();
    assert_eq!((stats.unexpected_exits, stats.boot_deaths), (2, 1));
    // The next one never becomes ready: killed at the boot timeout, counted once.
    h.advance(SEC);
    let (slow, ..) = h.spawns()[0];
    h.take();
    h.spawned(slow);
    h.advance(11 * SEC);
    assert_eq!(h.cluster.stats().boot_timeouts, 1);
    assert_eq!(
        h.cluster.worker(slow).unwrap().stop_reason,
        Some(StopReason::BootTimeout)
    );
    h.exited(slow, ExitStatus::Signaled(9));
    assert_eq!(
        h.cluster.stats().unexpected_exits,
        2,
        "the master asked it to go"
    );
    assert_eq!(h.cluster.stats().reloads_started, 0);
    h.cluster.handle(h.now, Input::Reload).map(|_| ()).unwrap();
    h.drain();
    assert_eq!(h.cluster.stats().reloads_started, 1);
}
