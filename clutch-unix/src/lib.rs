//! # clutch-unix
//!
//! The Linux side of clutch: the operating-system pieces a cluster master is built from.
//! Each module does one thing with real processes and sockets, and knows nothing of the
//! others' policy; the event loop that drives the `clutch_proto::ClusterState` core with
//! them lives on top.
//!
//! | module | what it does |
//! |---|---|
//! | [`spawn`] | starts a worker with our own fork/exec: listeners at fds 3.., `LISTEN_*`, `NOTIFY_SOCKET`, `CLUTCH_WORKER_*`, clean signals, its own process group, death with the master |
//! | [`process`] | waits for and signals a worker by pidfd (no pid-reuse race), with a `waitpid`/`kill` fallback |
//! | [`notify`] | the sd_notify protocol: one private socket per worker (the master's side), and the client side |
//! | [`listen`] | listen addresses, binding, and adopting sockets from a service manager (`LISTEN_FDS`) |
//! | [`title`] | process titles for `ps` and `top` |
//! | [`rlimit`] | raising the open-files limit |
//!
//! All `unsafe` code lives in one private module, `os/sys.rs`: the forked child before
//! `execve`, claiming the `LISTEN_FDS` descriptors, and the process title's memory.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use clutch_unix::listen::{bind, ListenAddr, ListenOptions};
//! use clutch_unix::notify::NotifyDir;
//! use clutch_unix::process::Process;
//! use clutch_unix::spawn::SpawnSpec;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr: ListenAddr = "127.0.0.1:5000".parse()?;
//! let listener = bind(&addr, &ListenOptions::default())?.with_name("http");
//! let notify_dir = NotifyDir::create()?;
//! let notify = notify_dir.bind_worker(1)?;
//!
//! let child = SpawnSpec::new("/usr/local/bin/server")
//!     .env(std::env::vars_os())
//!     .listener(listener.name(), listener.as_fd())
//!     .notify_socket(notify.path())
//!     .worker(1, 0)
//!     .spawn()?;
//! let mut worker = Process::from(child);
//! // ... register worker.pidfd() and notify.as_fd() with mio, and on readiness:
//! while let Some(message) = notify.recv()? {
//!     if message.ready {
//!         println!("worker {} is ready", worker.pid());
//!     }
//! }
//! if let Some(status) = worker.try_wait()? {
//!     println!("worker exited: {status}");
//! }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

// The public API: what a server embeds (library mode) and what the `clutch` command is
// built from.
mod cluster;
pub mod control;
pub mod duration;
mod error;
// The fuzz targets' properties: for `fuzz/` (the `fuzzing` feature) and this crate's
// tests, not for users.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod log;
mod shutdown;
mod user_signals;
mod worker;

// The master engine: the event loop that drives the core with the OS toolkit.
mod engine;

// The OS toolkit: each module does one thing with real processes and sockets.
mod os;
pub use os::{listen, notify, process, rlimit, spawn, title};

#[cfg(test)]
mod testutil;

pub use cluster::{Cluster, ClusterBuilder, IntoListenAddr, Master, Role};
pub use clutch_proto::{
    Backoff, CrashBudget, Event, ExitReason, ExitStatus, ForwardSignals, HangPolicy, Readiness,
    Signal, StopReason,
};
pub use engine::handle::{HandleError, MasterHandle};
pub use error::{ContainmentError, EnvironmentError, Error, ProgramError};
pub use log::{stderr_line, Log};
pub use os::contain::{KillMode, CONTAINMENT_ENV};
pub use shutdown::{Requested, Shutdown};
pub use user_signals::{UserSignals, MAX_PENDING_USER_SIGNALS};
pub use worker::Worker;
