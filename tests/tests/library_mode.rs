//! Library mode end to end: a real master, real workers, real signals, loopback sockets.

mod common;

use std::time::Duration;

use common::{get, is_alive, wait_gone, Fixture, Load, PATIENCE};
use nix::sys::signal::Signal;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;

#[test]
fn the_cluster_answers_from_more_than_one_worker() {
    let mut cluster = Fixture::start(&[("WORKERS", "2")]);
    cluster.wait_ready(2);
    let seen = common::distinct_workers(cluster.port, 2);
    assert_eq!(seen.len(), 2, "only {seen:?} answered");
}

#[test]
fn a_killed_worker_is_replaced_with_a_new_id_while_the_others_keep_answering() {
    let mut cluster = Fixture::start(&[("WORKERS", "2")]);
    cluster.wait_ready(2);
    let victim = cluster.live_worker_pids()[0];

    // A steady stream of requests while the worker dies and is replaced.
    let load = Load::start(cluster.port, 1);
    cluster.wait_until("the load is flowing", |_| load.ok() > 0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    cluster.wait_until("the dead worker is replaced and ready", |f| {
        f.count("worker_died") == 1 && f.count("worker_ready") == 3
    });
    let before = load.ok();
    cluster.wait_until("requests are answered after the replacement", |_| {
        load.ok() > before
    });
    let (ok, failed) = load.finish();

    let died = &cluster.named("worker_died")[0];
    assert_eq!(died["pid"], victim, "{died}");
    assert_eq!(died["status"], json!({"signal": 9}), "{died}");
    let started = cluster.named("worker_started");
    assert_eq!(started.len(), 3);
    assert_eq!(started[2]["id"], 3, "a fresh id: {}", started[2]);
    assert!(
        ok > before,
        "requests kept succeeding after the replacement"
    );
    // At most the one request the victim held when it died can fail.
    assert!(failed <= 1, "{failed} requests failed");
}

#[test]
fn sigterm_stops_every_worker_then_the_master_with_code_0_and_events_in_order() {
    let mut cluster = Fixture::start(&[("WORKERS", "2")]);
    cluster.wait_ready(2);
    let workers = cluster.live_worker_pids();
    cluster.signal(Signal::SIGTERM);
    let status = cluster.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", cluster.stderr());
    assert_eq!(wait_gone(&workers, Duration::from_secs(1)), Ok(()));
    let events = cluster.events();
    let tail: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .skip_while(|&name| name != "shutdown_started")
        .collect();
    assert_eq!(
        tail,
        [
            "shutdown_started",
            "worker_exit",
            "worker_exit",
            "no_workers",
            "shutdown"
        ],
        "{}",
        cluster.events_text()
    );
    assert_eq!(events.last().unwrap()["exit_code"], 0, "a clean exit");
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_at_the_force_timeout_and_the_exit_says_so() {
    let mut cluster = Fixture::start(&[
        ("WORKERS", "1"),
        ("FIXTURE_IGNORE_TERM", "1"),
        ("FORCE_EXIT_MS", "300"),
    ]);
    cluster.wait_ready(1);
    let worker = cluster.live_worker_pids()[0];
    cluster.signal(Signal::SIGTERM);
    let status = cluster.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(4),
        "forced exit code; stderr:\n{}",
        cluster.stderr()
    );
    assert!(!is_alive(worker));
    let forced = cluster.named("shutdown_forced");
    assert_eq!(forced.len(), 1, "{}", cluster.events_text());
    assert_eq!(forced[0]["killed"], 1);
    assert!(cluster
        .named("worker_exit")
        .iter()
        .any(|e| e["pid"] == worker && e["status"] == json!({"signal": 9})));
}

#[test]
fn a_second_sigint_stops_at_once() {
    // A force timeout far beyond the test's patience: only a second SIGINT can end it.
    let mut cluster = Fixture::start(&[
        ("WORKERS", "2"),
        ("FIXTURE_IGNORE_TERM", "1"),
        ("FORCE_EXIT_MS", "600000"),
    ]);
    cluster.wait_ready(2);
    cluster.signal(Signal::SIGINT);
    cluster.wait_until("shutdown starts", |f| f.count("shutdown_started") == 1);
    // One right away is a repeat of the same request (`timeout -s INT` sends two);
    // one a second or more after the first means "stop now".
    cluster.signal(Signal::SIGINT);
    cluster.wait_until("the repeat is ignored", |f| f.count("signal_ignored") == 1);
    let deadline = std::time::Instant::now() + PATIENCE;
    while cluster.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "SIGINT never forced");
        cluster.signal(Signal::SIGINT);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(cluster.wait_exit(PATIENCE).code(), Some(4));
}

#[test]
fn sigkill_of_the_master_leaves_no_worker_behind() {
    let mut cluster = Fixture::start(&[("WORKERS", "3")]);
    cluster.wait_ready(3);
    let workers = cluster.live_worker_pids();
    assert_eq!(workers.len(), 3);
    cluster.signal(Signal::SIGKILL);
    let status = cluster.wait_exit(PATIENCE);
    assert_eq!(status.signal(), Some(9));
    assert_eq!(
        wait_gone(&workers, Duration::from_secs(5)),
        Ok(()),
        "orphaned workers"
    );
    assert!(
        get(cluster.port).is_err(),
        "the port must close with the last worker"
    );
}

#[test]
fn a_worker_crashing_at_boot_is_respawned_with_backoff_until_the_breaker_trips() {
    let mut cluster = Fixture::start(&[("WORKERS", "2"), ("FIXTURE_CRASH_AT_BOOT", "1")]);
    let status = cluster.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(3),
        "breaker exit code; stderr:\n{}",
        cluster.stderr()
    );
    let events = cluster.events_text();
    // The breaker waits for 10 s without a ready worker (issue 11): meanwhile each slot's
    // backoff (100 ms × 1.5ⁿ) allows about ten spawns, not a fork loop.
    let spawned = cluster.count("worker_started");
    assert!((10..=24).contains(&spawned), "{spawned} spawns: {events}");
    assert!(
        cluster.count("respawn_delayed") > 0,
        "backoff between spawns"
    );
    assert_eq!(cluster.count("breaker_tripped"), 1, "{events}");
    assert!(
        cluster.stderr().contains("crash breaker"),
        "says why on stderr"
    );
}

#[test]
fn a_worker_inherits_only_stdio_and_its_listeners() {
    let mut cluster = Fixture::start(&[("WORKERS", "1"), ("FIXTURE_FDS", "1")]);
    cluster.wait_ready(1);
    let pid = cluster.live_worker_pids()[0];
    let listing = std::fs::read_to_string(cluster.path(&format!("fds-{pid}"))).unwrap();
    let mut fds: Vec<(u32, String)> = listing
        .lines()
        .map(|l| {
            let (fd, target) = l.split_once(' ').unwrap();
            (fd.parse().unwrap(), target.to_owned())
        })
        .collect();
    fds.sort();
    // fd 4 is the directory the listing itself was read through.
    let numbers: Vec<u32> = fds.iter().map(|f| f.0).filter(|&fd| fd != 4).collect();
    assert_eq!(numbers, [0, 1, 2, 3], "{fds:?}");
    assert!(
        fds[3].1.starts_with("socket:"),
        "fd 3 is the listener: {fds:?}"
    );
    assert_eq!(fds[0].1, "/dev/null", "stdin is /dev/null");
}

/// `worker_output(Prefix)` in the builder: the worker's stderr line reaches the master's
/// stderr as `[slot id pid] line`.
#[test]
fn the_builder_prefixes_the_workers_lines() {
    let mut cluster = Fixture::start(&[("WORKERS", "1"), ("FIXTURE_WORKER_OUTPUT", "prefix")]);
    cluster.wait_ready(1);
    let pid = cluster.live_worker_pids()[0];
    cluster.wait_until("the worker's line is in the master's stderr", |c| {
        c.stderr()
            .lines()
            .any(|l| l.starts_with("[0 ") && l.contains(&format!(" {pid}] hello from worker ")))
    });
}

#[test]
fn a_rolling_restart_under_steady_requests_fails_none_of_them() {
    let mut cluster = Fixture::start(&[("WORKERS", "2")]);
    cluster.wait_ready(2);
    let load = Load::start(cluster.port, 2);
    cluster.wait_until("the load is flowing", |_| load.ok() > 0);
    let old = cluster.live_worker_pids();
    cluster.signal(Signal::SIGHUP);
    cluster.wait_until("the rolling restart finishes", |f| {
        f.count("reload_finished") == 1
    });
    // Answers from the new generation too, however slow the machine is.
    let at_finish = load.ok();
    cluster.wait_until("requests are answered after the restart", |_| {
        load.ok() > at_finish.max(10)
    });
    let (ok, failed) = load.finish();
    assert_eq!(
        wait_gone(&old, Duration::from_secs(10)),
        Ok(()),
        "old workers gone"
    );
    assert_eq!(failed, 0, "{ok} ok");
    assert!(ok > 10);
    // (The master reports an exit once the worker's whole tree is gone: a moment after
    // the process itself.)
    cluster.wait_until("both old workers' exits are reported", |f| {
        f.count("worker_exit") >= 2
    });
    let exits = cluster.named("worker_exit");
    assert_eq!(exits.len(), 2, "{}", cluster.events_text());
    assert!(
        exits.iter().all(|e| e["reason"] == "reload"),
        "{}",
        cluster.events_text()
    );
}

/// A worker's `heartbeat()`, `status()`, `ready()` and `stopping()` never block, even
/// when the master is stopped and its notify socket's queue is full: a heartbeat or a
/// status line is dropped (`Ok`), a `ready()` says "would block" so the caller can retry.
#[test]
fn worker_notifications_never_block_while_the_master_is_stopped() {
    let mut cluster = Fixture::start(&[("WORKERS", "1"), ("FIXTURE_FLOOD", "1")]);
    cluster.wait_ready(1);
    let worker = cluster.live_worker_pids()[0];
    let report = cluster.path(&format!("flood-{worker}"));
    cluster.signal(Signal::SIGSTOP);
    // From here on the master must be continued whatever happens, or the fixture's drop
    // (SIGKILL) is the only thing that ends it: SIGKILL works on a stopped process too.
    std::fs::write(cluster.path("flood"), "").unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !report.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let flooded = std::fs::read_to_string(&report);
    cluster.signal(Signal::SIGCONT);
    let flooded = flooded.unwrap_or_else(|_| {
        panic!(
            "the worker never finished its notifications while the master was stopped \
             (a blocked send?); stderr:\n{}",
            cluster.stderr()
        )
    });
    let field = |name: &str| -> &str {
        flooded
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {flooded}"))
    };
    // Generous (blocking would be "until the master runs again"), not a timing claim.
    let slowest_us: u64 = field("slowest_us").parse().unwrap();
    assert!(
        slowest_us < 500_000,
        "a call took {slowest_us} µs:\n{flooded}"
    );
    assert!(!flooded.contains("error"), "{flooded}");
    assert_eq!(
        field("status"),
        "ok",
        "a status line is dropped, not an error"
    );
    // The queue is full (thousands of datagrams, a queue of at most a few hundred): the
    // second READY=1 could not be sent, and says so.
    assert_eq!(field("ready"), "would_block", "{flooded}");
    // The master, continued, is alive and its worker still serves.
    cluster.wait_until("the master answers again", |f| {
        f.child.try_wait().unwrap().is_none() && get(f.port).is_ok()
    });
    assert!(is_alive(worker));
}

/// Code in the master process steers it through a `MasterHandle`, with the control
/// socket's answers: status, scale, a reload answered once the rollout has finished,
/// stop answered with the exit code; the event stream refused (on_event is the way);
/// the metrics (which count the reload); refused on the loop's own thread, and "gone"
/// once the master has exited.
#[test]
fn the_master_steers_itself_through_its_handle() {
    let mut cluster = Fixture::start(&[
        ("WORKERS", "2"),
        ("FIXTURE_HANDLE", "1"),
        ("MIN_UPTIME_MS", "100"),
    ]);
    let status = cluster.wait_exit(PATIENCE * 2);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", cluster.stderr());
    let report = std::fs::read_to_string(cluster.path("handle")).unwrap();
    let answers: Vec<(&str, &str)> = report
        .lines()
        .map(|line| line.split_once(' ').unwrap())
        .collect();
    let steps: Vec<&str> = answers.iter().map(|(step, _)| *step).collect();
    assert_eq!(
        steps,
        ["on_event", "status", "scale", "status", "events", "reload", "metrics", "stop", "after"],
        "{report}"
    );
    assert_eq!(answers[0].1, "OnEventLoop", "refused on the loop");
    assert_eq!(answers[8].1, "MasterGone", "gone after the exit");
    let json = |i: usize| -> serde_json::Value { serde_json::from_str(answers[i].1).unwrap() };
    assert_eq!(json(1)["ready"], 2);
    assert_eq!(json(2), json!({"ok": true, "workers": 3}));
    assert_eq!(json(3)["ready"], 3);
    assert_eq!(json(4)["ok"], false, "{}", answers[4].1);
    assert!(
        json(4)["error"].as_str().unwrap().contains("on_event"),
        "{}",
        answers[4].1
    );
    let reload = json(5);
    assert_eq!(reload["ok"], true, "{reload}");
    assert_eq!(reload["generation"], 2, "{reload}");
    // The reload was answered once it had finished: its event came first.
    assert_eq!(
        cluster.count("reload_finished"),
        1,
        "{}",
        cluster.events_text()
    );
    assert_eq!(answers[6].1, "clutch_rollouts_finished_total 1");
    assert_eq!(json(7)["exit_code"], 0, "{}", answers[7].1);
    // 2, one more by scale, 3 new ones by the reload.
    assert_eq!(
        cluster.count("worker_started"),
        6,
        "{}",
        cluster.events_text()
    );
}

/// SIGUSR1/SIGUSR2 sent to the master reach every worker, which receives each one, in
/// order, through `Worker::user_signals()` (not a counter it has to poll).
#[test]
fn a_worker_receives_each_forwarded_user_signal() {
    let mut cluster = Fixture::start(&[("WORKERS", "2"), ("FIXTURE_USR", "1")]);
    cluster.wait_ready(2);
    let workers = cluster.live_worker_pids();
    let dir = cluster.dir.path().to_owned();
    let received = |pid: u32| -> Vec<String> {
        std::fs::read_to_string(dir.join(format!("usr-{pid}")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    cluster.signal(Signal::SIGUSR1);
    cluster.wait_until("both workers received USR1", |_| {
        workers.iter().all(|&pid| received(pid).len() == 1)
    });
    cluster.signal(Signal::SIGUSR2);
    cluster.wait_until("both workers received USR2", |_| {
        workers.iter().all(|&pid| received(pid).len() == 2)
    });
    for &pid in &workers {
        assert_eq!(received(pid), ["usr1 1", "usr2 2"], "worker {pid}");
    }
    assert_eq!(
        cluster.count("signal_forwarded"),
        2,
        "{}",
        cluster.events_text()
    );
    let forwarded = cluster.named("signal_forwarded");
    assert_eq!(forwarded[0]["signal"], "SIGUSR1");
    assert_eq!(forwarded[1]["workers"], 2);
}

/// A library-mode worker that asks to be recycled (`Worker::request_recycle`, after five
/// answers) is replaced successor first: a fresh worker in its slot, then the graceful
/// stop, while steady requests all succeed.
#[test]
fn a_worker_asking_to_be_recycled_is_replaced_under_steady_requests_failing_none() {
    let mut cluster = Fixture::start(&[
        ("WORKERS", "2"),
        ("FIXTURE_RECYCLE_AFTER", "5"),
        ("MIN_UPTIME_MS", "500"),
    ]);
    cluster.wait_ready(2);
    let first = cluster.live_worker_pids();
    let load = Load::start(cluster.port, 2);
    cluster.wait_until("a worker asked and was recycled", |f| {
        f.named("worker_exit")
            .iter()
            .any(|e| e["reason"] == "recycled")
    });
    let at_recycle = load.ok();
    cluster.wait_until("requests are answered after the recycle", |_| {
        load.ok() > at_recycle + 10
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{ok} ok");
    let recycling = cluster.named("worker_recycling");
    assert!(
        recycling.iter().all(|e| e["cause"] == "requested"),
        "{recycling:?}"
    );
    let recycled = cluster
        .named("worker_exit")
        .into_iter()
        .find(|e| e["reason"] == "recycled")
        .unwrap();
    assert!(first.contains(&(recycled["pid"].as_u64().unwrap() as u32)));
    // Its slot was served by its successor before it went: the successor's ready event
    // came first.
    let events = cluster.events();
    let slot = &recycled["slot"];
    let successor_ready = events.iter().position(|e| {
        e["event"] == "worker_ready" && e["slot"] == *slot && e["pid"] != recycled["pid"]
    });
    let exit = events
        .iter()
        .position(|e| e["event"] == "worker_exit" && e["pid"] == recycled["pid"]);
    assert!(
        successor_ready.is_some() && successor_ready < exit,
        "{}",
        cluster.events_text()
    );
    assert_eq!(cluster.count("worker_died"), 0, "{}", cluster.events_text());
}
