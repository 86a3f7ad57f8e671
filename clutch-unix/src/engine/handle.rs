//! The master's in-process handle: code running in the master process (library mode)
//! asks for status, reload, scale and stop without a control socket.
//!
//! A [`MasterHandle`] puts its request in a queue and wakes the event loop through a
//! `mio::Waker`; the loop carries it out as it would a control client's request and
//! answers with the same [`Response`] (a reload once the rollout has finished or failed, a
//! stop once the master is about to exit). The loop serves at most
//! [`REQUESTS_PER_TURN`] of them per turn, as it does control clients.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use mio::{Registry, Token, Waker};

use crate::control::{Request, Response};
use crate::engine::control_server::Waiting;

/// Handle requests carried out in one turn of the event loop; more wait for the next.
pub(crate) const REQUESTS_PER_TURN: usize = 16;

/// A cloneable, `Send` handle to the master of this process, from
/// [`Master::handle`](crate::Master::handle): ask it for what the control socket offers,
/// from any thread of the master process.
///
/// Each call blocks until the master answers, with the answer the control socket would
/// give ([`Response`]): `status` and `scale` at once, `reload` when the rolling restart
/// has finished ([`Response::Reloaded`]) or failed ([`Response::Failed`]: the old workers
/// keep serving), `stop` when the master is about to exit ([`Response::Stopping`]).
///
/// Never call it from the master's event loop itself (an
/// [`on_event`](crate::ClusterBuilder::on_event) callback): the loop cannot answer while
/// it waits for itself, so that is refused with [`HandleError::OnEventLoop`].
///
/// ```no_run
/// use clutch_unix::control::Response;
/// use clutch_unix::{Cluster, Role};
///
/// # fn main() -> Result<(), clutch_unix::Error> {
/// match Cluster::builder().listen("127.0.0.1:5000").start()? {
///     Role::Master(master) => {
///         let handle = master.handle();
///         std::thread::spawn(move || {
///             // say, when an admin endpoint or a file watcher asks for it:
///             match handle.reload() {
///                 Ok(Response::Reloaded { generation, .. }) => {
///                     eprintln!("generation {generation} serves")
///                 }
///                 Ok(other) => eprintln!("reload: {other}"),
///                 Err(gone) => eprintln!("reload: {gone}"),
///             }
///         });
///         master.run_and_exit()
///     }
///     Role::Worker(worker) => {
///         worker.ready()?;
///         worker.shutdown().wait();
///         Ok(())
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct MasterHandle {
    shared: Arc<Shared>,
}

/// Why a [`MasterHandle`] got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The master has exited (or is exiting) without answering: a reload or a request
    /// sent after it stopped serving requests.
    MasterGone,
    /// No answer within the timeout given to
    /// [`request_timeout`](MasterHandle::request_timeout). The request may still be
    /// carried out.
    TimedOut,
    /// Called on the master's event loop (from an `on_event` callback), which cannot
    /// answer while it waits.
    OnEventLoop,
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MasterGone => "the master is gone",
            Self::TimedOut => "the master did not answer in time",
            Self::OnEventLoop => {
                "a MasterHandle cannot be used on the master's own event loop (in on_event)"
            }
        })
    }
}

impl std::error::Error for HandleError {}

struct Shared {
    queue: Mutex<Queue>,
    waker: Waker,
    /// The thread that runs the event loop, once it runs.
    event_loop: OnceLock<ThreadId>,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<(Request, SyncSender<Response>)>,
    /// The loop has ended: nothing more is answered.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent even if a holder panicked (a push or a pop).
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MasterHandle {
    /// Sends `request` and waits (as long as it takes) for the master's answer.
    pub fn request(&self, request: Request) -> Result<Response, HandleError> {
        let answer = self.send(request)?;
        answer.recv().map_err(|_| HandleError::MasterGone)
    }

    /// Sends `request` and waits up to `timeout` for the master's answer.
    pub fn request_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, HandleError> {
        let answer = self.send(request)?;
        answer.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => HandleError::TimedOut,
            RecvTimeoutError::Disconnected => HandleError::MasterGone,
        })
    }

    /// The cluster's status ([`Response::Status`]).
    pub fn status(&self) -> Result<Response, HandleError> {
        self.request(Request::Status)
    }

    /// A rolling restart; answers once it has finished ([`Response::Reloaded`]) or failed
    /// ([`Response::Failed`]).
    pub fn reload(&self) -> Result<Response, HandleError> {
        self.request(Request::Reload)
    }

    /// Sets the worker count ([`Response::Scaled`], or [`Response::Failed`] with why not).
    pub fn scale(&self, workers: usize) -> Result<Response, HandleError> {
        self.request(Request::Scale { workers })
    }

    /// A graceful shutdown; answers once the master is about to exit
    /// ([`Response::Stopping`], with its exit code).
    pub fn stop(&self) -> Result<Response, HandleError> {
        self.request(Request::Stop)
    }

    /// An upgrade of the master itself (as `SIGUSR2`); answers once the new master
    /// serves and this one hands over ([`Response::Upgraded`], with its pid) or the
    /// upgrade failed ([`Response::Failed`], with the cause).
    pub fn upgrade(&self) -> Result<Response, HandleError> {
        self.request(Request::Upgrade)
    }

    /// The metrics `/metrics` would serve now, in the Prometheus text format (see
    /// [`metrics_in`](Self::metrics_in) for OpenMetrics), whether or not
    /// [`ClusterBuilder::metrics`](crate::ClusterBuilder::metrics) serves them over HTTP:
    /// for an application that exposes them on an endpoint of its own.
    pub fn metrics(&self) -> Result<String, HandleError> {
        self.metrics_in(crate::MetricsFormat::Prometheus)
    }

    /// [`metrics`](Self::metrics) in `format`.
    pub fn metrics_in(&self, format: crate::MetricsFormat) -> Result<String, HandleError> {
        match self.request(Request::Metrics { format })? {
            Response::Metrics { text } => Ok(text),
            // Every answer to a metrics request is its text; the one other answer the
            // loop gives any request is that it is exiting.
            _ => Err(HandleError::MasterGone),
        }
    }

    fn send(&self, request: Request) -> Result<Receiver<Response>, HandleError> {
        let (answer, answered) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(HandleError::MasterGone);
            }
            if self.shared.event_loop.get() == Some(&std::thread::current().id()) {
                return Err(HandleError::OnEventLoop);
            }
            queue.requests.push_back((request, answer));
        }
        // A failed wake (the loop's epoll is gone) means the loop has ended; the queue
        // is then closed, or about to be, and the sender dropped with it.
        let _ = self.shared.waker.wake();
        Ok(answered)
    }
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle").finish_non_exhaustive()
    }
}

/// The loop's side: takes queued requests, and holds the answers that wait for a
/// rollout's end or the exit.
pub(crate) struct HandleServer {
    shared: Arc<Shared>,
    /// Requests being carried out or waiting, by number.
    waiting: HashMap<u64, (Waiting, SyncSender<Response>)>,
    next: u64,
}

impl HandleServer {
    /// A server whose handles wake `registry`'s poll with `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        let waker = Waker::new(registry, token)?;
        Ok(Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                waker,
                event_loop: OnceLock::new(),
            }),
            waiting: HashMap::new(),
            next: 0,
        })
    }

    pub(crate) fn handle(&self) -> MasterHandle {
        MasterHandle {
            shared: self.shared.clone(),
        }
    }

    /// This thread runs the loop from now on.
    pub(crate) fn running_on_this_thread(&self) {
        let _ = self.shared.event_loop.set(std::thread::current().id());
    }

    /// The next queued request, and the number to answer it by; at most
    /// [`REQUESTS_PER_TURN`] per turn (the caller counts).
    pub(crate) fn next_request(&mut self) -> Option<(u64, Request)> {
        let (request, answer) = self.shared.lock().requests.pop_front()?;
        let number = self.next;
        self.next += 1;
        self.waiting.insert(number, (Waiting::Handling, answer));
        Some((number, request))
    }

    /// Whether requests are queued.
    pub(crate) fn has_requests(&self) -> bool {
        !self.shared.lock().requests.is_empty()
    }

    /// Answers request `number`.
    pub(crate) fn answer(&mut self, number: u64, answer: &Response) {
        if let Some((_, sender)) = self.waiting.remove(&number) {
            // The caller may have given up (a timeout): nobody to tell, nothing to do.
            let _ = sender.try_send(answer.clone());
        }
    }

    /// Keeps request `number` unanswered until `waiting` resolves.
    pub(crate) fn wait(&mut self, number: u64, waiting: Waiting) {
        if let Some(entry) = self.waiting.get_mut(&number) {
            entry.0 = waiting;
        }
    }

    /// Answers every request waiting for a rollout that `generation` ends.
    pub(crate) fn reload_ended(&mut self, generation: u64, answer: &Response) {
        let numbers: Vec<u64> = self
            .waiting
            .iter()
            .filter(
                |(_, (w, _))| matches!(w, Waiting::Reload { generation: g } if *g <= generation),
            )
            .map(|(&n, _)| n)
            .collect();
        for number in numbers {
            self.answer(number, answer);
        }
    }

    /// Answers every request waiting for the upgrade's end.
    pub(crate) fn upgrade_ended(&mut self, answer: &Response) {
        let numbers: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (w, _))| *w == Waiting::Upgrade)
            .map(|(&n, _)| n)
            .collect();
        for number in numbers {
            self.answer(number, answer);
        }
    }

    /// The master is exiting with `code`: answer every request still waiting, and refuse
    /// what comes later.
    pub(crate) fn exiting(&mut self, code: u8, reason: &str) {
        let numbers: Vec<u64> = self.waiting.keys().copied().collect();
        for number in numbers {
            let answer = match self.waiting[&number].0 {
                Waiting::Stop => Response::Stopping {
                    exit_code: code,
                    reason: reason.to_owned(),
                },
                _ => Response::failed("the master is exiting"),
            };
            self.answer(number, &answer);
        }
        self.close();
    }

    fn close(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        // Dropping the senders tells each waiting caller: the master is gone.
        queue.requests.clear();
    }
}

impl Drop for HandleServer {
    fn drop(&mut self) {
        self.close();
    }
}
