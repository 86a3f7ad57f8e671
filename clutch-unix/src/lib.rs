//! # clutch-unix
//!
//! Turn a single-process Unix server into a supervised cluster of worker processes: the
//! Linux driver of clutch. A **master** binds the listening sockets once and runs N
//! **workers** that inherit them; it replaces crashed workers, restarts them in rolling
//! batches, scales, and shuts them all down gracefully. Every decision is made by the
//! sans-IO core, [`clutch_proto`] (re-exported here, with the types a user names:
//! [`Config`], [`Event`], [`WorkerId`], [`Slot`], [`Phase`], …); this crate carries them
//! out with real processes, signals and sockets.
//!
//! There are two front doors over one engine, and the OS toolkit beneath them.
//!
//! ## Library mode: a Rust server embeds clutch
//!
//! One binary is both master and worker: the master re-executes itself for its workers,
//! as Node's cluster does, and [`ClusterBuilder::start`] tells each process its
//! [`Role`].
//!
//! ```no_run
//! use std::io::Write;
//! use std::time::Duration;
//!
//! use clutch_unix::{Cluster, Event, Role};
//!
//! fn main() -> Result<(), clutch_unix::Error> {
//!     let mut cluster = Cluster::builder();
//!     cluster
//!         .workers(4)
//!         .listen("127.0.0.1:5000")
//!         .force_exit_timeout(Duration::from_secs(5))
//!         .on_event(|event| {
//!             if let Event::WorkerDied { id, status, .. } = event {
//!                 eprintln!("worker {id} died: {status}");
//!             }
//!         });
//!     match cluster.start()? {
//!         // The master: supervises until SIGTERM/SIGINT (or a `stop`), then exits.
//!         Role::Master(master) => master.run_and_exit(),
//!         Role::Worker(mut worker) => {
//!             let listener = worker.take_tcp_listener().expect("a TCP listener");
//!             listener.set_nonblocking(true).expect("non-blocking");
//!             worker.ready()?; // READY=1: this worker serves
//!             while !worker.shutdown().is_requested() {
//!                 match listener.accept() {
//!                     Ok((mut stream, _)) => {
//!                         let _ = write!(stream, "HTTP/1.0 200 OK\r\n\r\nWorker: {}", worker.id());
//!                     }
//!                     // Nothing to accept: wait for a connection or the shutdown.
//!                     Err(_) => {
//!                         let _ = worker.shutdown().wait_timeout(Duration::from_millis(10));
//!                     }
//!                 }
//!             }
//!             Ok(())
//!         }
//!     }
//! }
//! ```
//!
//! A worker learns of its graceful stop through [`Shutdown`] (blocking, a pollable fd,
//! or a future), and of the SIGUSR1/SIGUSR2 the master forwards through
//! [`UserSignals`]. Code in the master process steers it with a [`MasterHandle`]
//! ([`Master::handle`]): status, reload, scale and stop, with the answers the control
//! socket gives ([`control::Response`]). Errors keep their causes: print them with `{:#}`
//! to see the whole chain ([`Error`]).
//!
//! ## Exec mode: supervise any program
//!
//! [`ClusterBuilder::supervise`] runs any program as the workers, the way the `clutch`
//! command does (`clutch run --workers 4 --listen 127.0.0.1:5000 -- ./server`): each
//! worker gets what systemd would give it (listeners at fd 3.. with `LISTEN_FDS`, a
//! private `NOTIFY_SOCKET`), so programs that support socket activation and sd_notify
//! need nothing from clutch.
//!
//! ```no_run
//! use clutch_unix::Cluster;
//!
//! # fn main() -> Result<(), clutch_unix::Error> {
//! let master = Cluster::builder()
//!     .workers(2)
//!     .listen("127.0.0.1:5000")
//!     .control("/run/app/clutch.sock") // for `clutch status|reload|scale|stop`
//!     .supervise("./server", ["--flag"])?;
//! master.run_and_exit()
//! # }
//! ```
//!
//! ## The OS toolkit
//!
//! The pieces the engine is built from, usable on their own. Each does one thing with
//! real processes and sockets, and knows nothing of the others' policy.
//!
//! | module | what it does |
//! |---|---|
//! | [`spawn`] | starts a worker with our own fork/exec: listeners at fds 3.., `LISTEN_*`, `NOTIFY_SOCKET`, `CLUTCH_WORKER_*`, clean signals, its own process group, death with the master |
//! | [`process`] | waits for and signals a worker by pidfd (no pid-reuse race), with a `waitpid`/`kill` fallback |
//! | [`notify`] | the sd_notify protocol: one socket per worker that only its user (and root) can speak on, in the abstract namespace or a private directory (the master's side), and the client side |
//! | [`listen`] | listen addresses, binding, and adopting sockets from a service manager (`LISTEN_FDS`) |
//! | [`title`] | process titles for `ps` and `top` (the `title` feature, on by default) |
//! | [`rlimit`] | raising the open-files limit |
//! | [`control`] | the control socket's protocol: [`control::Request`], [`control::Response`] and a client |
//!
//! All `unsafe` code lives in one private module, `os/sys.rs`: the forked child before
//! `execve`, claiming the `LISTEN_FDS` descriptors, and the process title's memory.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use clutch_unix::listen::{bind, ListenAddr, ListenOptions};
//! use clutch_unix::notify::NotifySockets;
//! use clutch_unix::process::Process;
//! use clutch_unix::spawn::SpawnSpec;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr: ListenAddr = "127.0.0.1:5000".parse()?;
//! let listener = bind(&addr, &ListenOptions::default())?.with_name("http");
//! let mut sockets = NotifySockets::create()?; // @clutch/… names: no directory, no files
//! let notify = sockets.bind_worker(1)?;
//!
//! let child = SpawnSpec::new("/usr/local/bin/server")
//!     .env(std::env::vars_os())
//!     .listener(listener.name(), listener.as_fd())
//!     .notify_socket(notify.address())
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
//!
//! ## Cargo features
//!
//! - `title` (default): process titles. It links a hook that runs before `main` (in
//!   `.init_array`) and moves the argument and environment strings so the title can
//!   use their memory; without it, setting a title does nothing.
//! - `fuzzing`: the hidden property functions the `fuzz/` targets wrap. Not for users.
#![deny(unsafe_code)]

// The public API: what a server embeds (library mode) and what the `clutch` command is
// built from.
mod cluster;
pub mod control;
mod doorbell;
pub mod duration;
mod error;
// The fuzz targets' properties: for `fuzz/` (the `fuzzing` feature) and this crate's
// tests, not for users.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod log;
mod metrics;
mod shutdown;
pub mod size;
mod user_signals;
mod worker;

// The master engine: the event loop that drives the core with the OS toolkit.
mod engine;

// The OS toolkit: each module does one thing with real processes and sockets.
mod os;
pub use os::{credentials, listen, notify, process, rlimit, spawn, title};

#[cfg(test)]
mod testutil;

pub use cluster::{Cluster, ClusterBuilder, IntoListenAddr, Master, Role};
/// The core, for what is not re-exported below.
pub use clutch_proto;
pub use clutch_proto::{
    Backoff, CommandError, Config, ConfigError, CrashBudget, Event, ExitReason, ExitStatus,
    ForwardSignals, HangPolicy, Phase, Pid, Readiness, ReloadFailure, ShutdownTrigger, Signal,
    Slot, SpawnError, SpawnErrorKind, StopReason, WorkerId, WorkerState,
};
pub use engine::handle::{HandleError, MasterHandle};
pub use engine::output::WorkerOutput;
pub use error::{
    ContainmentError, CredentialsError, EnvironmentError, Error, ProgramError, WorkerSettingError,
};
pub use log::{stderr_line, Log};
pub use metrics::MetricsFormat;
pub use os::contain::{KillMode, CONTAINMENT_ENV};
pub use os::notify::NotifySocketKind;
pub use shutdown::{Requested, Shutdown};
pub use user_signals::{NextUserSignal, UserSignals, MAX_PENDING_USER_SIGNALS};
pub use worker::Worker;
