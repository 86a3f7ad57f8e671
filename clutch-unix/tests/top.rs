//! `clutch top` end to end, in a real terminal: tmux, on a server of the test's own
//! (`tmux -S <a socket in a temporary directory>`: unique, and no file left behind),
//! killed through that socket when the test ends, whatever happens. `top` runs under `sh`, which after it says how it exited and how the
//! terminal was left (`stty`), then waits on the terminal (`read`, no process of its
//! own).
//!
//! Without tmux these tests say so and pass, except under CI (`CI=true`), where they
//! fail: CI installs it (`.ci/run`).

#![cfg(feature = "tui")]

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use common::{is_alive, kill_if_ours, skipped, PATIENCE};
use support::{Master, CLUTCH};

const SLEEPERS: [&str; 7] = ["-w", "2", "--ready", "exec", "--", "/bin/sleep", "1000"];

/// A tmux server of this test's own, running `clutch top` in a 120×40 window.
struct Tmux {
    /// Holds the server's socket.
    dir: tempfile::TempDir,
}

impl Tmux {
    /// The server, or `None` (said, and only outside CI) when there is no tmux.
    fn start(master: &Master) -> Option<Self> {
        let found = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tmux is missing: CI installs it (.ci/run)"
            );
            skipped("skipped: clutch top's terminal tests need tmux");
            return None;
        }
        let tmux = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let script = format!(
            "{CLUTCH} top --control {}; echo \"top exited: $?\"; \
             stty -a | tr ' ;' '\\n\\n' | grep -E -x -- '-?(icanon|echo)'; read line",
            master.path("ctl.sock").display()
        );
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            "top",
            "sh",
            "-c",
            &script,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("tmux.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// What the window shows.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits until the window shows what `wanted` wants; returns it.
    fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the window never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "top", "-l", keys]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A pane variable (`#{alternate_on}`…).
    fn variable(&self, name: &str) -> String {
        let format = format!("#{{{name}}}");
        let out = self.run(&["display-message", "-p", "-t", "top", &format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// After `top` ended with `code`: the shell says so, and the terminal is as it was
    /// (main screen, cursor shown, canonical mode with echo).
    fn check_restored(&self, code: i32) -> String {
        let screen = self.wait_for("top's end", |s| s.contains("top exited:"));
        assert!(screen.contains(&format!("top exited: {code}")), "{screen}");
        let settled = self.wait_for("stty's report", |s| {
            s.lines().any(|l| l.trim() == "echo" || l.trim() == "-echo")
        });
        let lines: Vec<&str> = settled.lines().map(str::trim).collect();
        assert!(
            lines.contains(&"icanon") && lines.contains(&"echo"),
            "raw mode left on:\n{settled}"
        );
        assert_eq!(self.variable("alternate_on"), "0", "{settled}");
        assert_eq!(self.variable("cursor_flag"), "1", "the cursor is hidden");
        assert!(!settled.contains("clutch top —"), "{settled}");
        settled
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// When process `pid` started (in clock ticks since boot), while it exists: with the
/// pid, its identity.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's `)`: state is field 3, the start time field 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether `screen` has a worker row for each of `pids`.
fn shows_rows(screen: &str, pids: &[u32]) -> bool {
    pids.iter().all(|pid| {
        screen
            .lines()
            .any(|l| l.contains(&format!(" {pid} ")) && l.contains("ready"))
    })
}

/// The rows, `+` then `y`: the master's target is one more and its row shows; `q`:
/// `top` exits 0 and the terminal is restored.
#[test]
fn top_shows_every_worker_scales_up_and_quits_cleanly() {
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let Some(tmux) = Tmux::start(&master) else {
        return;
    };
    let pids = master.worker_pids();
    let screen = tmux.wait_for("a row per worker", |s| shows_rows(s, &pids));
    assert!(screen.contains("workers: target 2 · ready 2"), "{screen}");

    tmux.keys("+");
    tmux.wait_for("the confirmation", |s| {
        s.contains("scale to 3 workers? (y/n)")
    });
    assert_eq!(master.status()["target"], 2, "nothing before the yes");
    tmux.keys("y");
    master.wait_until("the target is 3 and 3 are ready", |m| {
        let status = m.status();
        status["target"] == 3 && status["ready"] == 3
    });
    let pids = master.worker_pids();
    assert_eq!(pids.len(), 3);
    let screen = tmux.wait_for("the new worker's row", |s| shows_rows(s, &pids));
    assert!(screen.contains("workers (3)"), "{screen}");
    assert!(
        screen.contains("worker ready  worker=3 slot=2"),
        "the event: {screen}"
    );

    tmux.keys("q");
    tmux.check_restored(0);
    assert_eq!(master.stop(), 0);
}

/// `s` then `y` stops the master; `top` sees its shutdown, exits 0, and the terminal
/// is restored.
#[test]
fn top_stops_the_master_and_leaves_with_it() {
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let Some(tmux) = Tmux::start(&master) else {
        return;
    };
    let pids = master.worker_pids();
    tmux.wait_for("a row per worker", |s| shows_rows(s, &pids));
    tmux.keys("s");
    tmux.wait_for("the confirmation", |s| {
        s.contains("stop the master and every worker? (y/n)")
    });
    tmux.keys("y");
    let status = master.wait_exit();
    assert_eq!(status.code(), Some(0));
    let screen = tmux.check_restored(0);
    assert!(screen.contains("clutch: the master stopped"), "{screen}");
}

/// A master that dies (SIGKILL: no shutdown event) ends `top` with exit 1, saying the
/// master is gone, the terminal restored.
#[test]
fn top_says_when_the_master_is_gone() {
    let marker = format!("CLUTCH_TOP_TEST=gone-{}", std::process::id());
    let (name, value) = marker.split_once('=').unwrap();
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[(name, value)]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let Some(tmux) = Tmux::start(&master) else {
        return;
    };
    let pids = master.worker_pids();
    tmux.wait_for("a row per worker", |s| shows_rows(s, &pids));
    master.signal(nix::sys::signal::Signal::SIGKILL);
    master.wait_exit();
    let screen = tmux.check_restored(1);
    assert!(screen.contains("clutch: the master is gone"), "{screen}");
    // (Its keeper ends the workers; in case it did not, they are ended here.)
    for pid in pids {
        kill_if_ours(pid, &marker);
    }
}

/// Through an upgrade of the master, `top` carries on with the new one (the old
/// one's stream ends with its shutdown, another master answers on the socket).
#[test]
fn top_follows_an_upgrade_of_the_master() {
    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let Some(tmux) = Tmux::start(&master) else {
        return;
    };
    let pids = master.worker_pids();
    tmux.wait_for("a row per worker", |s| shows_rows(s, &pids));

    let answer = master.ask(Request::Upgrade).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let new = answer["pid"].as_u64().unwrap() as u32;
    // The new master is no child of the test: it is killed by pid if the test fails,
    // if that pid is still the same process (its start time: a master's environment
    // cannot tell, its process title overwrites it).
    struct KillIfSame(u32, Option<u64>);
    impl Drop for KillIfSame {
        fn drop(&mut self) {
            if self.1.is_some() && start_time(self.0) == self.1 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.0 as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _new_master = KillIfSame(new, start_time(new));
    assert_eq!(
        master.wait_exit().code(),
        Some(0),
        "the old master hands over"
    );

    let ctl = master.path("ctl.sock");
    let status = control::send(&ctl, Request::Status, Some(PATIENCE)).unwrap();
    assert_eq!(status["pid"], new);
    let pids: Vec<u32> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    // (Until the handover both masters answer on the socket: the new one's status may
    // show before the old one's stream ends. The note says the stream followed.)
    let handed_over = format!("handed over to a new one (pid {new})");
    tmux.wait_for("the new master, its workers, and the note", |s| {
        s.contains(&format!("master {new} ·")) && shows_rows(s, &pids) && s.contains(&handed_over)
    });

    tmux.keys("q");
    tmux.check_restored(0);
    let answer = control::send(&ctl, Request::Stop, Some(PATIENCE)).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let deadline = std::time::Instant::now() + PATIENCE;
    while is_alive(new) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new master did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// No master: a clear error before the terminal is touched; no terminal: refused.
#[test]
fn top_needs_a_master_and_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(CLUTCH)
        .args(["top", "--control"])
        .arg(dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("clutch: connecting to the control socket")
            && stderr.contains("nobody.sock"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "the terminal untouched");

    let mut master = Master::start(&SLEEPERS, Stdio::null(), &[]);
    master.wait_until("two workers are ready", |m| m.ready() == 2);
    let output = Command::new(CLUTCH)
        .args(["top", "--control"])
        .arg(master.path("ctl.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("top needs a terminal"), "{stderr}");
}
