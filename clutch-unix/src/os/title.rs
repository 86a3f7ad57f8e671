//! Process titles, so that `ps` and `htop` show who is who:
//! `server: master process [numworkers: 4]`, `server: worker process` (gs-clutch's titles).
//!
//! Linux has two names for a process, and [`set_title`] sets both:
//!
//! - `comm` (`/proc/PID/comm`, what `top` and `ps -o comm` show): at most 15 bytes, so the
//!   title is cut at a word boundary (`server: master`);
//! - the command line (`/proc/PID/cmdline`, what `ps aux` shows): read by the kernel from
//!   the memory where it originally put the arguments, which we overwrite. The title may
//!   use the space of the original arguments *and* environment strings (those are moved
//!   to the heap before `main`; see `sys.rs`), and is cut to fit. This needs glibc: with
//!   other C libraries only `comm` is set ([`title_capacity`] is then 0).
//!
//! After a title is set, `/proc/PID/cmdline` no longer shows the original arguments (and
//! `/proc/PID/environ` no longer the environment) — which is the point; `std::env::args()`
//! and `std::env::vars()` are unaffected.
//!
//! All this needs the `title` cargo feature (on by default), which links the hook that
//! claims the argument area at program start. Without it, [`set_title`] does nothing (and
//! says so once, in a debug log line) and [`title_capacity`] is 0.

use std::io;
use std::sync::Mutex;

use crate::os::sys::ArgvArea;

/// The longest `comm`, excluding the terminating NUL (`TASK_COMM_LEN - 1`).
pub const COMM_MAX: usize = 15;

/// The argument area, claimed on first use; `None` inside when it is unknown.
static AREA: Mutex<Option<Option<ArgvArea>>> = Mutex::new(None);

/// Sets the process title: `comm` (cut to [`COMM_MAX`] bytes at a word boundary) and, where
/// possible, the command line (cut to [`title_capacity`] bytes). A title stops at its first
/// NUL byte, if it has one. Fails only if `comm` cannot be set.
pub fn set_title(title: &str) -> io::Result<()> {
    if !cfg!(feature = "title") {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::debug!(
                "process titles are off: clutch-unix was built without its `title` feature"
            );
        });
        return Ok(());
    }
    let title = title.split('\0').next().unwrap_or_default();
    with_area(|area| {
        if let Some(area) = area {
            area.write(title.as_bytes());
        }
    });
    set_comm(comm_for(title))
}

/// How many bytes of title the command line can show: the length of the original
/// arguments and environment strings, less one; 0 where it cannot be set.
#[must_use]
pub fn title_capacity() -> usize {
    with_area(|area| area.as_ref().map_or(0, ArgvArea::capacity))
}

fn with_area<T>(f: impl FnOnce(&mut Option<ArgvArea>) -> T) -> T {
    // A poisoned lock only means a panic while writing bytes: the area is still usable.
    let mut area = AREA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(area.get_or_insert_with(ArgvArea::get))
}

/// The title cut for `comm`: at most [`COMM_MAX`] bytes, on a character boundary, without
/// a trailing separator (`server: master process` gives `server: master`).
#[must_use]
pub fn comm_for(title: &str) -> &str {
    if title.len() <= COMM_MAX {
        return title;
    }
    let mut end = COMM_MAX;
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &title[..end];
    // Cut at the last word boundary if the cut fell inside a word.
    let cut = if title[end..].starts_with([' ', ':', '[']) {
        cut
    } else {
        cut.rfind([' ', ':']).map_or(cut, |space| &cut[..space])
    };
    let cut = cut.trim_end_matches([' ', ':', '[']);
    if cut.is_empty() {
        &title[..end]
    } else {
        cut
    }
}

/// `/proc/self/comm` names the whole process (its main thread) from any thread; `prctl`
/// (the fallback) names only the calling thread.
fn set_comm(comm: &str) -> io::Result<()> {
    match std::fs::write("/proc/self/comm", comm) {
        Ok(()) => Ok(()),
        Err(_) => {
            let comm = std::ffi::CString::new(comm).unwrap_or_default();
            rustix::thread::set_name(&comm).map_err(|error| {
                io::Error::new(
                    io::Error::from(error).kind(),
                    format!("cannot set the process name to {comm:?}: {error}"),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "title")]
    use clutch_proto::ExitStatus;

    use super::*;
    #[cfg(feature = "title")]
    use crate::testutil::{expect_helper, helper, Reaper};

    #[test]
    fn comm_is_cut_at_a_word_boundary() {
        assert_eq!(
            comm_for("server: master process [numworkers: 4]"),
            "server: master"
        );
        assert_eq!(comm_for("server: worker process"), "server: worker");
        assert_eq!(comm_for("short"), "short");
        assert_eq!(comm_for("exactly15bytes!"), "exactly15bytes!");
        assert_eq!(comm_for("averyveryverylongname"), "averyveryverylo");
        assert_eq!(comm_for("ééééééééé"), "ééééééé"); // 14 bytes: no split character
        assert_eq!(comm_for(""), "");
    }

    #[cfg(feature = "title")]
    const HELPER: &str = concat!(module_path!(), "::helper_set_title");

    /// Without the feature nothing is linked before `main` and a title changes nothing.
    #[test]
    #[cfg(not(feature = "title"))]
    fn without_the_title_feature_titles_do_nothing() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        set_title("server: master process [numworkers: 4]").unwrap();
        assert_eq!(std::fs::read_to_string("/proc/self/comm").unwrap(), comm);
        assert_eq!(title_capacity(), 0);
    }

    /// The title is set in a helper process, since it changes the whole process's name;
    /// the test reads it from the outside, as `ps` would. The helper is given a long
    /// environment so there is room for the title.
    #[test]
    #[cfg(feature = "title")]
    fn ps_shows_the_title() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let child = helper(HELPER)
            .env([("CLUTCH_TEST_DONE", &done)])
            .spawn()
            .unwrap();
        let mut process = Reaper::new(child);
        let pid = process.pid();
        // The helper signals that the title is set by creating a file; bounded wait.
        for _ in 0..6000 {
            if done.exists() || process.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(done.exists(), "the helper did not set its title");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let capacity: usize = std::fs::read_to_string(&done).unwrap().parse().unwrap();
        process.signal(clutch_proto::Signal::Term).unwrap();
        assert_eq!(process.wait().unwrap(), ExitStatus::Signaled(15));

        assert_eq!(comm.trim_end(), "server: master");
        if capacity == 0 {
            return; // no argv area here (not glibc): comm only, as documented
        }
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert_eq!(
            cmdline.trim_end_matches('\0'),
            "server: master process [numworkers: 4]"
        );
    }

    #[cfg(feature = "title")]
    #[test]
    #[ignore = "helper process, run by ps_shows_the_title"]
    fn helper_set_title() {
        expect_helper(HELPER);
        let args_before: Vec<String> = std::env::args().collect();
        set_title("server: master process [numworkers: 4]").unwrap();
        // std still sees the real arguments and environment.
        assert_eq!(std::env::args().collect::<Vec<_>>(), args_before);
        // Written under another name and renamed, so the test never reads it half-written.
        let done = std::path::PathBuf::from(std::env::var_os("CLUTCH_TEST_DONE").unwrap());
        let partial = done.with_extension("partial");
        std::fs::write(&partial, title_capacity().to_string()).unwrap();
        std::fs::rename(partial, done).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}
