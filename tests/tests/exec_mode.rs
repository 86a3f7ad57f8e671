//! Exec mode end to end: clutch supervising programs that know nothing of it.

mod common;

use common::{Fixture, PATIENCE};
use nix::sys::signal::Signal;

/// A shell worker made ready by systemd's own `systemd-notify --ready`: a helper process
/// of the worker speaks for it, and the message is attributed to the right worker.
#[test]
fn systemd_notify_from_a_shell_worker_makes_it_ready() {
    if !std::path::Path::new("/usr/bin/systemd-notify").exists()
        && !std::path::Path::new("/bin/systemd-notify").exists()
    {
        panic!("systemd-notify is missing: .ci/run installs the systemd package");
    }
    let mut cluster = Fixture::start_program(
        env!("CARGO_BIN_EXE_fixture"),
        &[
            "--",
            "/bin/sh",
            "-c",
            "sleep 0.2; systemd-notify --ready; exec sleep 600",
        ],
        &[("WORKERS", "2")],
    );
    cluster.wait_ready(2);
    assert_eq!(cluster.count("listening"), 1, "{}", cluster.events_text());
    cluster.signal(Signal::SIGTERM);
    assert_eq!(
        cluster.wait_exit(PATIENCE).code(),
        Some(0),
        "{}",
        cluster.stderr()
    );
}

/// A Python worker serving on the inherited socket (fd 3), from several pids.
#[test]
fn a_python_cluster_serves_on_the_shared_socket_from_several_pids() {
    let mut cluster = Fixture::start_program(
        env!("CARGO_BIN_EXE_fixture"),
        &["--", "python3", "-c", common::PYTHON_WORKER],
        &[("WORKERS", "2"), ("READINESS", "exec")],
    );
    cluster.wait_ready(2);
    let seen = common::distinct_workers(cluster.port, 2);
    assert_eq!(seen.len(), 2, "only {seen:?} answered");
    cluster.signal(Signal::SIGTERM);
    // Python dies of SIGTERM's default action: still a requested, clean stop.
    assert_eq!(
        cluster.wait_exit(PATIENCE).code(),
        Some(0),
        "{}",
        cluster.stderr()
    );
}
