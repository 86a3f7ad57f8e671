//! Pinning the program each generation runs, so that "the generation that last worked"
//! means that program's file, not whatever the path holds now.
//!
//! The master opens the program at start (generation 1) and again when a rolling restart
//! begins (the new generation: what the path holds then), and keeps the descriptor while
//! a live generation may still spawn: a failed rollout drops its pin, a finished one drops
//! the older pins. Workers of a pinned generation execute the descriptor itself
//! (`execveat(fd, "", AT_EMPTY_PATH)` in the forked child): the very file the master
//! opened, even if the path was since replaced by a new file (a deploy that writes a new
//! file and renames it over the old one, as package managers, `install` and most deploy
//! tools do). `argv[0]` stays the program's path, and the process name (`comm`, what
//! `ps`, `top` and `pgrep` show) is the file's name — executing `/proc/self/fd/N` by
//! path would name every worker `N`. (Kernels before `execveat` learnt to name the
//! process after the file — 6.18 here does — name it after the number either way.)
//!
//! Only ELF executables are pinned. A `#!` script cannot be: the kernel hands the
//! interpreter a path for the descriptor, `/dev/fd/N`, which names nothing once the
//! close-on-exec descriptor is gone; and what a script runs (its modules, its
//! interpreter) is not pinned by pinning the script anyway. Scripts (and anything not
//! ELF, or not readable, or a system without `/proc`) run by path: their "last working
//! generation" is whatever is on disk. A file overwritten in place (same inode) is not
//! protected either: the pin keeps the inode, not its old contents.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use clutch_proto::Event;

/// The pinned program file of each generation that may still spawn.
#[derive(Debug)]
pub(crate) struct Pins {
    path: PathBuf,
    /// Descriptors below this are the child's listener slots (3..3+n): a pin must not
    /// be one of them.
    floor: i32,
    pins: BTreeMap<u64, File>,
}

impl Pins {
    /// Pins `path` for generation 1; the child will have `listeners` sockets at 3..
    pub(crate) fn new(path: &Path, listeners: usize) -> Self {
        let mut pins = Self {
            path: path.to_path_buf(),
            floor: 3 + i32::try_from(listeners).unwrap_or(i32::MAX - 3),
            pins: BTreeMap::new(),
        };
        pins.pin(1);
        pins
    }

    /// Follows the rollouts: a new generation pins what the path holds now; a failed
    /// one is forgotten; a finished one makes the older ones unneeded.
    pub(crate) fn on_event(&mut self, event: &Event) {
        match *event {
            Event::ReloadStarted { generation } => self.pin(generation),
            Event::ReloadFailed { generation, .. } => {
                self.pins.remove(&generation);
            }
            Event::ReloadFinished { generation, .. } => {
                self.pins.retain(|&g, _| g >= generation);
            }
            _ => {}
        }
    }

    /// The file to execute for `generation`, if it is pinned (else the path is run).
    pub(crate) fn file(&self, generation: u64) -> Option<BorrowedFd<'_>> {
        self.pins.get(&generation).map(AsFd::as_fd)
    }

    /// Whether `generation` runs a pinned file.
    #[cfg(test)]
    fn is_pinned(&self, generation: u64) -> bool {
        self.pins.contains_key(&generation)
    }

    fn pin(&mut self, generation: u64) {
        match self.open() {
            Some(file) => {
                self.pins.insert(generation, file);
            }
            None => {
                self.pins.remove(&generation);
            }
        }
    }

    /// Opens the program if it is an ELF file and `/proc/self/fd` exists, on a
    /// descriptor at or above the floor (close-on-exec, as every std `File`).
    fn open(&self) -> Option<File> {
        if !Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        let mut file = File::open(&self.path).ok()?;
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic).ok()?;
        if magic != *b"\x7fELF" {
            return None;
        }
        // `try_clone` takes the lowest free descriptor from 3 up: climb past the floor,
        // holding the low ones until then.
        let mut low = Vec::new();
        while file.as_raw_fd() < self.floor {
            let higher = file.try_clone().ok()?;
            low.push(std::mem::replace(&mut file, higher));
        }
        Some(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn elf_programs_are_pinned_above_the_listener_slots_and_scripts_are_not() {
        let elf = std::env::current_exe().unwrap();
        let pins = Pins::new(&elf, 40);
        assert!(pins.is_pinned(1));
        let file = pins.file(1).unwrap();
        let fd = file.as_raw_fd();
        assert!(fd >= 43, "fd {fd} is among the listener slots");
        // The pinned descriptor is the same file.
        let a = rustix::fs::fstat(file).unwrap();
        let b = std::fs::metadata(&elf).unwrap();
        assert_eq!(a.st_ino, std::os::unix::fs::MetadataExt::ino(&b));

        let dir = std::env::temp_dir().join(format!("clutch-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("server.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pins = Pins::new(&script, 1);
        assert!(!pins.is_pinned(1));
        assert!(pins.file(1).is_none(), "run by path");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rollouts_pin_the_new_file_and_drop_what_no_generation_needs() {
        let elf = std::env::current_exe().unwrap();
        let mut pins = Pins::new(&elf, 0);
        pins.on_event(&Event::ReloadStarted { generation: 2 });
        assert!(pins.is_pinned(1) && pins.is_pinned(2));
        pins.on_event(&Event::ReloadFailed {
            generation: 2,
            reason: clutch_proto::ReloadFailure::ShuttingDown,
        });
        assert!(pins.is_pinned(1) && !pins.is_pinned(2));
        assert!(
            pins.file(2).is_none(),
            "an unpinned generation runs the path"
        );
        pins.on_event(&Event::ReloadStarted { generation: 3 });
        pins.on_event(&Event::ReloadFinished {
            generation: 3,
            took: std::time::Duration::from_secs(1),
        });
        assert!(!pins.is_pinned(1) && pins.is_pinned(3));
    }
}
