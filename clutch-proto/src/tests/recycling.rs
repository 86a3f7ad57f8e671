//! Recycling (memory, age, asked): the successor first, the old worker stopped only once
//! the successor has passed probation, and every interaction (rollouts, failed
//! successors, deaths, shutdown, scaling, repeats) as `cluster/recycle.rs` decides it.

use super::*;

const MEMORY: RecycleCause = RecycleCause::Memory { bytes: 600 << 20 };

impl Harness {
    fn recycle(&mut self, id: WorkerId, cause: RecycleCause) {
        self.cluster
            .handle(self.now, Input::Recycle { id, cause })
            .unwrap();
        self.drain();
    }

    /// The one spawn request in the log.
    fn only_spawn(&self) -> (WorkerId, Slot, u64) {
        let spawns = self.spawns();
        assert_eq!(spawns.len(), 1, "{:?}", self.log);
        spawns[0]
    }

    fn ignored_recycle(&mut self) -> Option<RecycleIgnoreReason> {
        self.events().into_iter().find_map(|e| match e {
            Event::Ignored {
                reason: IgnoreReason::Recycle { why, .. },
            } => Some(why),
            _ => None,
        })
    }
}

fn recycling_event(events: &[Event]) -> Option<(WorkerId, Slot, RecycleCause)> {
    events.iter().find_map(|e| match *e {
        Event::WorkerRecycling {
            id, slot, cause, ..
        } => Some((id, slot, cause)),
        _ => None,
    })
}

#[test]
fn a_recycled_worker_is_stopped_only_once_its_successor_has_passed_probation() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.take();
    h.recycle(old[1], MEMORY);
    let (successor, slot, generation) = h.only_spawn();
    assert_eq!(
        (slot, generation),
        (Slot(1), 1),
        "same slot, same generation"
    );
    assert_eq!(
        recycling_event(&h.events()),
        Some((old[1], Slot(1), MEMORY))
    );
    assert_eq!(h.cluster.stats().recycles, 1);
    let info = h.cluster.worker(old[1]).unwrap();
    assert_eq!(info.recycling, Some(MEMORY));
    assert!(!info.successor);
    let info = h.cluster.worker(successor).unwrap();
    assert!(info.successor && info.recycling.is_none());
    assert_eq!(info.slot, Slot(1));

    h.spawned(successor);
    h.ready(successor);
    assert_eq!(h.cluster.ready_workers(), 2, "the old worker still serves");
    h.advance(DEFAULT_MIN_UPTIME - MS);
    assert!(h.signals().is_empty(), "the successor is in probation");
    h.take();
    h.advance(MS);
    assert_eq!(h.signals(), vec![(old[1], Signal::Term)]);
    assert_eq!(
        h.cluster.ready_workers(),
        2,
        "the successor serves the slot"
    );
    assert_eq!(h.cluster.stats().recycled, 1);
    let info = h.cluster.worker(successor).unwrap();
    assert!(!info.successor && info.proven);
    assert_eq!(
        h.cluster.worker(old[1]).unwrap().stop_reason,
        Some(StopReason::Recycled)
    );
    h.take();
    h.exited(old[1], ExitStatus::Code(0));
    let events = h.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::WorkerExit {
            reason: StopReason::Recycled,
            ..
        }
    )));
    assert!(h.spawns().is_empty(), "an expected exit: no refill");
    assert_eq!(h.cluster.live_workers(), 2);
    assert_eq!(h.cluster.stats().unexpected_exits, 0);
}

#[test]
fn recycle_requests_that_cannot_apply_are_refused_with_their_reason() {
    let mut h = Harness::with_workers(2);
    let (first, ..) = h.spawns()[0];
    let (second, ..) = h.spawns()[1];
    h.take();
    h.spawned(first);
    h.ready(first);
    h.spawned(second);
    let ignored = h.cluster.stats().ignored_inputs;
    h.recycle(second, RecycleCause::Requested);
    assert_eq!(
        h.ignored_recycle(),
        Some(RecycleIgnoreReason::NotServing),
        "booting"
    );
    h.ready(second);
    h.recycle(first, RecycleCause::Requested);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.recycle(first, MEMORY);
    assert_eq!(
        h.ignored_recycle(),
        Some(RecycleIgnoreReason::AlreadyRecycling)
    );
    assert!(h.spawns().is_empty(), "no second successor");
    h.spawned(successor);
    h.ready(successor);
    h.recycle(successor, MEMORY);
    assert_eq!(
        h.ignored_recycle(),
        Some(RecycleIgnoreReason::NotServing),
        "a successor"
    );
    h.recycle(WorkerId(99), MEMORY);
    assert!(h.events().is_empty(), "an unknown worker: stale, quiet");
    assert_eq!(h.cluster.stats().ignored_inputs, ignored + 4);
    assert_eq!(h.cluster.stats().recycles, 1);
    h.signal(Signal::Term);
    h.take();
    h.recycle(second, MEMORY);
    assert_eq!(h.ignored_recycle(), Some(RecycleIgnoreReason::ShuttingDown));
}

#[test]
fn a_leaving_worker_is_not_recycled() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.cluster
        .handle(h.now, Input::Stopping { id: old[0] })
        .unwrap();
    h.drain();
    h.take();
    h.recycle(old[0], MEMORY);
    assert_eq!(h.ignored_recycle(), Some(RecycleIgnoreReason::NotServing));
}

fn aged(workers: usize, age: Duration, jitter: Duration, seed: u64) -> Harness {
    Harness::new(
        Config::builder()
            .workers(workers)
            .max_worker_age(Some(age))
            .max_worker_age_jitter(jitter)
            .seed(seed),
    )
}

#[test]
fn without_a_maximum_age_no_timer_is_armed() {
    let mut h = Harness::with_workers(2);
    h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.cluster.poll_timeout(), None, "idle: no wakeups");
}

#[test]
fn each_worker_is_recycled_within_its_age_and_jitter_at_its_own_time() {
    let age = 100 * SEC;
    let jitter = 10 * SEC;
    let mut h = aged(4, age, jitter, 7);
    let started = h.now;
    h.boot_all();
    h.take();
    // Not before the age...
    h.advance(age - MS);
    assert!(h.spawns().is_empty(), "too young");
    let mut at = Vec::new();
    // ...and every one by the age plus the jitter, each at its own time.
    while h.now < started + age + jitter {
        h.advance(10 * MS);
        if let Some((id, ..)) = recycling_event(
            &h.log
                .clone()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Event(e) => Some(e),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ) {
            at.push((id, h.now));
            // Let the successor boot, so the next recycle is seen on its own.
            let (successor, ..) = h.only_spawn();
            h.take();
            h.spawned(successor);
            h.ready(successor);
        }
    }
    assert_eq!(at.len(), 4, "{at:?}");
    for &(id, when) in &at {
        let uptime = when - started;
        assert!(uptime >= age && uptime <= age + jitter, "w{id}: {uptime:?}");
    }
    let mut times: Vec<Instant> = at.iter().map(|&(_, t)| t).collect();
    times.dedup();
    assert_eq!(times.len(), 4, "the jitter spreads them: {at:?}");
    assert_eq!(h.cluster.stats().recycles, 4);
}

#[test]
fn a_successor_that_takes_over_serves_its_own_age() {
    let age = 10 * SEC;
    let mut h = aged(1, age, Duration::ZERO, 1);
    let old = h.boot_all();
    h.take();
    h.advance(age);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.advance(SEC);
    let born = h.now;
    h.spawned(successor);
    h.ready(successor);
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.signals(), vec![(old[0], Signal::Term)]);
    h.exited(old[0], ExitStatus::Code(0));
    h.take();
    // Its own age counts from its own start, with no jitter exactly at it.
    h.advance(born + age - h.now - MS);
    assert!(h.spawns().is_empty());
    h.advance(MS);
    assert_eq!(h.spawns().len(), 1, "recycled at its own age");
    assert_eq!(
        recycling_event(&h.events()),
        Some((successor, Slot(0), RecycleCause::Age))
    );
}

#[test]
fn the_jitter_is_drawn_from_the_seed() {
    let age = 100 * SEC;
    let recycle_times = |seed| {
        let mut h = aged(3, age, 50 * SEC, seed);
        h.boot_all();
        h.take();
        h.advance(200 * SEC);
        h.events()
            .iter()
            .filter(|e| matches!(e, Event::WorkerRecycling { .. }))
            .count()
    };
    assert_eq!(recycle_times(1), 3);
    // Same seed, same ages; another seed, other ages (observed through the timeout).
    let first_deadline = |seed| {
        let mut h = aged(3, age, 50 * SEC, seed);
        h.boot_all();
        h.advance(DEFAULT_MIN_UPTIME);
        h.cluster.poll_timeout().map(|at| at - h.start)
    };
    assert_eq!(first_deadline(5), first_deadline(5));
    assert_ne!(first_deadline(5), first_deadline(6));
}

#[test]
fn a_successor_failing_young_is_counted_and_retried_after_the_backoff_while_the_old_serves() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.take();
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.exited(successor, ExitStatus::Code(1));
    let events = h.events();
    assert!(h.signals().is_empty(), "the old worker serves on");
    assert_eq!(h.cluster.ready_workers(), 2);
    assert_eq!(
        h.cluster.stats().boot_failures,
        1,
        "the program's own failure"
    );
    assert_eq!(h.cluster.stats().recycle_retries, 1);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Degraded { .. })),
        "the slot serves: not degraded {events:?}"
    );
    assert!(!h.cluster.is_degraded());
    assert!(h.spawns().is_empty(), "not at once");
    assert_eq!(
        h.cluster.worker(old[0]).unwrap().recycling,
        Some(MEMORY),
        "still being recycled"
    );
    let delay = Backoff::default().delay(1);
    h.advance(delay - MS);
    assert!(h.spawns().is_empty(), "the backoff");
    h.advance(MS);
    let (retry, slot, _) = h.only_spawn();
    assert_eq!(slot, Slot(0));
    h.take();
    // A repeated report meanwhile is still refused.
    h.recycle(old[0], MEMORY);
    assert_eq!(
        h.ignored_recycle(),
        Some(RecycleIgnoreReason::AlreadyRecycling)
    );
    h.spawned(retry);
    h.ready(retry);
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.signals(), vec![(old[0], Signal::Term)]);
}

#[test]
fn each_failed_successor_lengthens_the_retry_s_backoff() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.recycle(old[0], MEMORY);
    for failed in 1..=3 {
        let (successor, ..) = h.only_spawn();
        h.take();
        h.spawn_failed(successor, SpawnErrorKind::Other);
        let delay = Backoff::default().delay(failed);
        h.advance(delay - MS);
        assert!(
            h.spawns().is_empty(),
            "failure {failed}: not before {delay:?}"
        );
        h.advance(MS);
    }
    assert_eq!(h.cluster.stats().recycle_retries, 3);
    assert_eq!(h.cluster.stats().boot_failures, 3);
}

#[test]
fn a_successor_dying_in_probation_is_retried_too_and_the_breaker_never_stops_the_old() {
    let mut h = Harness::new(Config::builder().workers(1).crash_budget(CrashBudget {
        failures: 1,
        window: SEC,
    }));
    let old = h.boot_all();
    h.take();
    // Recycled in its own probation: no worker is proven, a failing period may begin.
    h.recycle(old[0], RecycleCause::Requested);
    for _ in 0..5 {
        let (successor, ..) = h.only_spawn();
        h.take();
        h.spawned(successor);
        h.ready(successor);
        h.advance(DEFAULT_MIN_UPTIME / 2);
        h.exited(successor, ExitStatus::Signaled(9));
        h.advance(20 * SEC);
    }
    assert!(!h.cluster.is_exited(), "the old worker serves: no trip");
    assert_eq!(h.cluster.ready_workers(), 1);
    assert_eq!(h.cluster.stats().boot_failures, 5);
}

#[test]
fn a_successor_the_master_could_not_start_is_retried_uncounted() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.take();
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawn_failed(successor, SpawnErrorKind::Resource);
    assert_eq!(h.cluster.stats().boot_failures, 0);
    assert_eq!(h.cluster.stats().recycle_retries, 1);
    h.advance(Backoff::default().delay(1));
    assert_eq!(h.spawns().len(), 1, "retried");
}

#[test]
fn the_old_worker_dying_first_hands_its_slot_to_the_successor() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.exited(old[0], ExitStatus::Signaled(9));
    assert!(h.spawns().is_empty(), "the successor takes the slot");
    let info = h.cluster.worker(successor).unwrap();
    assert!(!info.successor && info.recycling.is_none());
    h.ready(successor);
    assert_eq!(h.cluster.ready_workers(), 1);
    h.advance(DEFAULT_MIN_UPTIME);
    assert!(h.signals().is_empty(), "nobody left to stop");
    assert_eq!(h.cluster.stats().recycled, 0);
    // It serves as any worker; a new request for it applies.
    h.take();
    h.recycle(successor, MEMORY);
    assert_eq!(h.spawns().len(), 1);
}

#[test]
fn a_rollout_starting_stops_the_recycle_successor_and_takes_the_worker_itself() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.signal(Signal::Hup);
    assert!(h.signals().contains(&(successor, Signal::Term)));
    assert_eq!(
        h.cluster.worker(successor).unwrap().stop_reason,
        Some(StopReason::RecycleSuperseded)
    );
    let (new, _, generation) = h.only_spawn();
    assert_eq!(generation, 2, "the rollout's own successor");
    h.take();
    h.exited(successor, ExitStatus::Code(0));
    h.spawned(new);
    h.ready(new);
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.signals(), vec![(old[0], Signal::Term)]);
    assert_eq!(
        h.cluster.worker(old[0]).unwrap().stop_reason,
        Some(StopReason::Reload),
        "the rollout took it"
    );
    assert!(h.spawns().is_empty(), "nothing to resume: the worker went");
    assert_eq!(h.cluster.stats().reloads_finished, 1);
}

#[test]
fn a_recycle_during_a_rollout_waits_for_its_end_and_resumes_if_the_worker_remains() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.signal(Signal::Hup);
    let (new0, ..) = h.only_spawn();
    h.take();
    h.spawned(new0);
    h.ready(new0);
    h.advance(DEFAULT_MIN_UPTIME);
    // Slot 0 runs generation 2 now; the rollout moves to slot 1.
    let (new1, ..) = h.only_spawn();
    h.exited(old[0], ExitStatus::Code(0));
    h.take();
    h.recycle(new0, MEMORY);
    assert!(h.spawns().is_empty(), "deferred: one batch at a time");
    assert_eq!(
        recycling_event(&h.events()),
        Some((new0, Slot(0), MEMORY)),
        "decided now"
    );
    // The old worker of slot 1, reported too, is the rollout's to replace.
    h.recycle(old[1], MEMORY);
    h.take();
    h.spawned(new1);
    h.ready(new1);
    h.advance(DEFAULT_MIN_UPTIME);
    let actions = h.take();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(Event::ReloadFinished { .. }))));
    let spawns: Vec<Slot> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(spawns, vec![Slot(0)], "only the remaining worker resumes");
    assert_eq!(
        h.cluster.worker(old[1]).unwrap().stop_reason,
        Some(StopReason::Reload)
    );
}

#[test]
fn a_failed_rollout_resumes_the_recycles_it_deferred() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.recycle(old[1], RecycleCause::Requested);
    let (recycler, ..) = h.only_spawn();
    h.take();
    h.signal(Signal::Hup);
    let (new, ..) = h.only_spawn();
    h.take();
    h.exited(recycler, ExitStatus::Code(0));
    h.spawned(new);
    h.exited(new, ExitStatus::Code(1));
    let actions = h.take();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(Event::ReloadFailed { .. }))));
    let spawns: Vec<(Slot, u64)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn {
                slot, generation, ..
            } => Some((*slot, *generation)),
            _ => None,
        })
        .collect();
    assert_eq!(
        spawns,
        vec![(Slot(1), 1)],
        "the recycle resumes, old generation"
    );
    assert_eq!(
        h.cluster.worker(old[1]).unwrap().recycling,
        Some(RecycleCause::Requested)
    );
}

#[test]
fn an_age_due_during_a_rollout_is_decided_on_time_and_carried_out_after() {
    let age = 10 * SEC;
    let mut h = aged(2, age, Duration::ZERO, 3);
    let old = h.boot_all();
    h.advance(age - SEC);
    h.signal(Signal::Hup);
    let (new0, ..) = h.only_spawn();
    h.take();
    h.advance(SEC);
    let events = h.events();
    let recycled: Vec<WorkerId> = events
        .iter()
        .filter_map(|e| match e {
            Event::WorkerRecycling { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(recycled, old, "both due on time");
    assert!(h.spawns().is_empty());
    // The rollout fails: both resume.
    h.spawned(new0);
    h.exited(new0, ExitStatus::Code(1));
    assert_eq!(h.spawns().len(), 2);
}

#[test]
fn shutdown_stops_a_recycle_and_its_successor() {
    let mut h = aged(1, 10 * SEC, SEC, 1);
    let old = h.boot_all();
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.ready(successor);
    assert_eq!(h.cluster.serving_workers(), 2);
    h.signal(Signal::Term);
    assert_eq!(
        h.cluster.serving_workers(),
        0,
        "nothing serves a slot any more"
    );
    let signals = h.signals();
    assert!(signals.contains(&(old[0], Signal::Term)));
    assert!(signals.contains(&(successor, Signal::Term)));
    assert_eq!(h.cluster.worker(old[0]).unwrap().recycling, None);
    h.exited(old[0], ExitStatus::Code(0));
    h.exited(successor, ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
}

#[test]
fn shutdown_disarms_the_age_timers() {
    let mut h = aged(1, 10 * SEC, SEC, 1);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.signal(Signal::Term);
    h.take();
    assert_eq!(
        h.cluster.poll_timeout(),
        Some(h.now + Duration::from_millis(7500)),
        "only the force deadline"
    );
    h.advance(5 * SEC);
    h.exited(old[0], ExitStatus::Code(0));
    assert_eq!(h.last_exit(), Some(ExitReason::Clean));
}

#[test]
fn scaling_the_slot_away_stops_the_recycle_and_its_successor() {
    let mut h = Harness::with_workers(2);
    let old = h.boot_all();
    h.recycle(old[1], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.cluster.handle(h.now, Input::Scale(1)).unwrap();
    h.drain();
    let signals = h.signals();
    assert!(signals.contains(&(old[1], Signal::Term)));
    assert!(signals.contains(&(successor, Signal::Term)));
    assert_eq!(
        h.cluster.worker(successor).unwrap().stop_reason,
        Some(StopReason::ScaleDown)
    );
}

#[test]
fn a_retry_pending_when_a_rollout_starts_waits_for_its_end() {
    let mut h = Harness::with_workers(1);
    let old = h.boot_all();
    h.advance(DEFAULT_MIN_UPTIME);
    h.recycle(old[0], MEMORY);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawn_failed(successor, SpawnErrorKind::Other);
    h.signal(Signal::Hup);
    let (new, _, generation) = h.only_spawn();
    assert_eq!(generation, 2);
    h.take();
    h.advance(60 * SEC);
    assert!(h.spawns().is_empty(), "no retry during the rollout");
    h.spawned(new);
    h.ready(new);
    h.advance(DEFAULT_MIN_UPTIME);
    assert_eq!(h.signals(), vec![(old[0], Signal::Term)]);
    assert!(h.spawns().is_empty(), "the rollout replaced it");
}

#[test]
fn a_ready_successor_serves_for_the_breaker_when_the_old_worker_dies_young() {
    let mut h = Harness::new(Config::builder().workers(1).crash_budget(CrashBudget {
        failures: 1,
        window: MS,
    }));
    let old = h.boot_all();
    // Recycled in its probation; its successor is ready when it dies, still young.
    h.recycle(old[0], RecycleCause::Requested);
    let (successor, ..) = h.only_spawn();
    h.take();
    h.spawned(successor);
    h.ready(successor);
    assert_eq!(h.cluster.serving_workers(), 2);
    h.advance(10 * MS);
    h.exited(old[0], ExitStatus::Code(70));
    assert!(!h.cluster.is_exited(), "the successor serves: no trip");
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, Event::BreakerTripped { .. })),);
    assert_eq!(h.cluster.ready_workers(), 1, "the successor took the slot");
    assert_eq!(h.cluster.serving_workers(), 1);
}
