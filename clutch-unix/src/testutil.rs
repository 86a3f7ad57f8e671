//! Helpers for the tests: cleaning up children, reading /proc.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use clutch_proto::Signal;

use crate::os::process::Process;
use crate::os::spawn::Child;

/// A process that is killed and reaped when the test ends, however it ends.
pub(crate) struct Reaper(pub(crate) Process);

impl Reaper {
    pub(crate) fn new(child: Child) -> Self {
        Self(Process::from(child))
    }
}

impl Deref for Reaper {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl DerefMut for Reaper {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.exit_status().is_none() {
            let _ = self.0.signal(Signal::Kill);
            let _ = self.0.wait();
        }
    }
}

/// `/proc/PID/fd`: fd number → link target, once the program has finished starting.
///
/// `spawn` returns after `execve`, but the new program's dynamic loader and libc then open
/// (and close) files of their own — `ld.so.cache`, shared libraries, locale data — so a
/// look right after the spawn can see an extra fd, or one that vanishes while it is read
/// (seen under load). Every caller runs `/bin/sleep`: its start-up is over once it sleeps.
pub(crate) fn fds_of(pid: u32) -> BTreeMap<i32, String> {
    wait_asleep(pid);
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let fd = entry.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(entry.path()).unwrap();
            (fd, target.to_string_lossy().into_owned())
        })
        .collect()
}

/// Waits (up to 30 s) until `pid` is asleep in `nanosleep` (`/proc/PID/wchan`).
///
/// A running task's wchan reads `0` too (and a kernel that hides wchan says `0` always),
/// so `0` counts only while `/proc/PID/stat` says the task sleeps (`S`): taking every `0`
/// for "asleep" let the look happen while the loader still had a file open (seen under
/// load: one fd too many).
fn wait_asleep(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let sleeping = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, after_name) = stat.rsplit_once(')')?;
                after_name
                    .split_whitespace()
                    .next()
                    .map(|state| state == "S")
            })
            .unwrap_or(false);
        if wchan.contains("nanosleep") || (wchan.trim() == "0" && sleeping) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never went to sleep (wchan {wchan:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `/proc/PID/environ` as a map, once the program has finished starting.
///
/// `spawn` returns once the child is in `execve` past the point of no return (the
/// kernel closed the report pipe, or released the parent of a `CLONE_VFORK` child), but
/// the kernel lays out the new program's arguments and environment after that: a look
/// right away can read an empty environment. Every caller runs `/bin/sleep`, as for
/// [`fds_of`].
pub(crate) fn environ_of(pid: u32) -> BTreeMap<String, String> {
    wait_asleep(pid);
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The variable that turns a run of the test binary into one helper process.
const HELPER_VAR: &str = "CLUTCH_TEST_HELPER";

/// Called first by every helper test (see [`helper`]): returns when this process is the
/// test binary re-run as helper `test`, and panics otherwise. Helper tests are
/// `#[ignore]`d, so a normal run lists them as ignored; one run by hand (`--ignored`)
/// outside its parent fails loudly instead of passing without having checked anything.
pub(crate) fn expect_helper(test: &str) {
    let name = test_name(test);
    assert!(
        std::env::var_os(HELPER_VAR).is_some_and(|value| value == name),
        "{name} is a helper process: it runs only when its parent test starts it (testutil::helper)"
    );
}

/// A test's name as the test harness knows it: its `module_path!()` path without the
/// crate's name, so call sites can write `concat!(module_path!(), "::helper_x")` and
/// survive a module move.
fn test_name(path: &str) -> &str {
    path.strip_prefix(concat!(env!("CARGO_CRATE_NAME"), "::"))
        .unwrap_or(path)
}

/// Runs the test binary itself as a helper process that runs only the test `test` (its
/// `concat!(module_path!(), "::name")`, marked `#[ignore = "helper process, run by …"]`),
/// which calls [`expect_helper`] first. The helper's exit code is 0 when that test passed:
/// a separate process for what must not run among parallel tests (reaping any child,
/// adopting fds 3.., rewriting argv).
pub(crate) fn helper(test: &str) -> crate::os::spawn::SpawnSpec<'static> {
    helper_under(&[], test)
}

/// [`helper`], started by `wrapper` (a program and its arguments, such as `unshare`,
/// which runs the command line that follows them).
pub(crate) fn helper_under(wrapper: &[&str], test: &str) -> crate::os::spawn::SpawnSpec<'static> {
    let test = test_name(test);
    let exe = std::env::current_exe().unwrap();
    let spec = match wrapper {
        [] => crate::os::spawn::SpawnSpec::new(exe),
        [program, args @ ..] => crate::os::spawn::SpawnSpec::new(program)
            .args(args.iter().copied())
            .arg(exe),
    };
    spec.args(["--ignored", "--exact", test, "--test-threads=1", "--quiet"])
        .env(std::env::vars_os())
        .env([(HELPER_VAR, test)])
}
