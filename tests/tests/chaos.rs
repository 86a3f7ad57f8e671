//! Chaos in small, bounded form (the full runs are in `bench/`): workers die under load,
//! and nothing the supervisor owns may be lost.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Load, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Ten ready workers SIGKILLed, at least 100 ms apart, while two clients send
/// close-per-request traffic. The listening socket belongs to the master, so connections waiting in its
/// queue survive any worker's death: the only requests that may fail are those a victim
/// had already accepted — at most one per client per kill.
#[test]
fn killing_workers_under_load_loses_no_queued_connection() {
    // Workers count as healthy after 1 ms: each victim is replaced at once.
    let mut cluster = Fixture::start(&[("WORKERS", "2"), ("MIN_UPTIME_MS", "1")]);
    cluster.wait_ready(2);
    let clients = 2;
    let load = Load::start(cluster.port, clients);
    // Counted, not timed: on a loaded machine a replacement may take longer than 100 ms to
    // be ready, and a kill then waits for it rather than being skipped.
    let kills_wanted = 10;
    let mut kills = 0;
    let deadline = Instant::now() + PATIENCE;
    while kills < kills_wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(&victim) = cluster.ready_worker_pids().first() {
            if kill(Pid::from_raw(victim as i32), Signal::SIGKILL).is_ok() {
                kills += 1;
            }
        }
    }
    cluster.wait_until("every slot is ready again", |f| {
        f.ready_worker_pids().len() == 2
    });
    // Enough answers to mean something, however slow the machine is.
    cluster.wait_until("the clients have 50 answers", |_| load.ok() > 50);
    let (ok, failed) = load.finish();
    eprintln!("{kills} kills, {ok} answered, {failed} failed");
    assert!(kills >= kills_wanted, "only {kills} kills");
    assert!(ok > 50, "only {ok} requests answered");
    assert!(
        failed <= clients * kills,
        "{failed} failures for {kills} kills: queued connections were lost"
    );
    assert_eq!(
        cluster.count("breaker_tripped"),
        0,
        "{}",
        cluster.events_text()
    );
}
