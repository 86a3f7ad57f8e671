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
//! All `unsafe` code lives in one private module, `sys.rs`: the forked child before
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

mod cluster;
mod contain;
pub mod control;
mod control_server;
mod driver;
pub mod duration;
mod error;
pub mod fuzz;
mod log;
mod pin;
mod service;
mod shutdown;
mod worker;

pub mod listen;
pub mod notify;
pub mod process;
pub mod rlimit;
pub mod spawn;
mod sys;
pub mod title;

#[cfg(test)]
mod testutil;

pub use cluster::{Cluster, ClusterBuilder, Master, Role};
pub use clutch_proto::{
    Backoff, CrashBudget, Event, ExitReason, ExitStatus, ForwardSignals, HangPolicy, Readiness,
    Signal, StopReason,
};
pub use contain::{KillMode, CONTAINMENT_ENV};
pub use error::Error;
pub use log::{stderr_line, Log};
pub use shutdown::{Requested, Shutdown};
pub use worker::Worker;
