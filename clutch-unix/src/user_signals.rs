//! [`UserSignals`]: how a worker learns that the master forwarded it a SIGUSR1 or
//! SIGUSR2 (by convention: reopen the log files), in a form that fits blocking code and
//! an event loop alike.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clutch_proto::Signal;

use crate::doorbell::{Bell, Doorbell};

/// Signals kept until they are received; more are dropped (and counted, see
/// [`UserSignals::dropped`]), as the kernel coalesces a signal that is already pending.
pub const MAX_PENDING_USER_SIGNALS: usize = 64;

/// The SIGUSR1/SIGUSR2 the master forwarded to this worker, in the order they came,
/// each received once. Cheap to clone; the clones share one queue, so with several
/// receivers each signal goes to one of them.
///
/// Pick the form that fits the code:
///
/// * blocking: [`recv`](Self::recv), [`recv_timeout`](Self::recv_timeout),
///   [`try_recv`](Self::try_recv);
/// * an event loop (mio, epoll, `poll(2)`): [`as_fd`](AsFd::as_fd) is readable while a
///   signal waits to be received; call [`try_recv`](Self::try_recv) until it says `None`;
/// * async (any runtime, no dependency): `signals.next().await`.
///
/// ```no_run
/// # fn reopen_logs() {}
/// # fn serve(worker: clutch_unix::Worker) {
/// let signals = worker.user_signals().clone();
/// std::thread::spawn(move || loop {
///     if signals.recv() == clutch_unix::Signal::Usr1 {
///         reopen_logs();
///     }
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct UserSignals {
    bell: Arc<Doorbell<Queue>>,
}

/// The signals not received yet; it rings while one waits.
#[derive(Default)]
struct Queue {
    pending: VecDeque<Signal>,
    total: u64,
    dropped: u64,
}

impl Bell for Queue {
    fn rings(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn oldest(queue: &mut Queue) -> Option<Signal> {
    queue.pending.pop_front()
}

impl UserSignals {
    /// An empty queue.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            bell: Arc::new(Doorbell::new(Queue::default())?),
        })
    }

    /// A signal came (the worker's signal thread calls this).
    pub(crate) fn push(&self, signal: Signal) {
        self.bell.with(|queue| {
            queue.total += 1;
            if queue.pending.len() >= MAX_PENDING_USER_SIGNALS {
                queue.dropped += 1;
            } else {
                queue.pending.push_back(signal);
            }
        });
    }

    /// A future that completes with the next signal. Runtime-agnostic.
    #[must_use]
    pub fn next(&self) -> NextUserSignal {
        NextUserSignal {
            signals: self.clone(),
        }
    }

    /// The oldest signal not received yet, without waiting.
    #[must_use]
    pub fn try_recv(&self) -> Option<Signal> {
        self.bell.with(oldest)
    }

    /// Waits for the next signal.
    #[must_use]
    pub fn recv(&self) -> Signal {
        self.bell
            .wait(None, oldest)
            .expect("a wait without a timeout ends with a signal")
    }

    /// Waits up to `timeout` for the next signal.
    #[must_use]
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Signal> {
        self.bell.wait(Some(timeout), oldest)
    }

    /// How many SIGUSR1/SIGUSR2 came so far (received or not, dropped included).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.bell.with(|queue| queue.total)
    }

    /// How many were dropped because [`MAX_PENDING_USER_SIGNALS`] were waiting.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.bell.with(|queue| queue.dropped)
    }
}

/// The future returned by [`UserSignals::next`].
#[derive(Debug)]
pub struct NextUserSignal {
    signals: UserSignals,
}

impl Future for NextUserSignal {
    type Output = Signal;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Signal> {
        self.signals.bell.poll(cx, oldest)
    }
}

impl AsFd for UserSignals {
    /// Readable while a signal waits to be received.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

impl std::fmt::Debug for UserSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pending, count) = self.bell.with(|q| (q.pending.clone(), q.total));
        f.debug_struct("UserSignals")
            .field("pending", &pending)
            .field("count", &count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn readable(signals: &UserSignals) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            signals,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap() == 1
    }

    #[test]
    fn signals_are_received_once_in_order_and_the_fd_follows_the_queue() {
        let signals = UserSignals::new().unwrap();
        assert_eq!(signals.try_recv(), None);
        assert!(!readable(&signals));
        assert_eq!(signals.recv_timeout(Duration::from_millis(5)), None);
        signals.push(Signal::Usr1);
        signals.push(Signal::Usr2);
        assert!(readable(&signals));
        assert_eq!(signals.count(), 2);
        assert_eq!(signals.try_recv(), Some(Signal::Usr1));
        assert!(readable(&signals), "one still waits");
        assert_eq!(signals.recv(), Signal::Usr2);
        assert!(!readable(&signals));
        assert_eq!(signals.try_recv(), None);
        assert_eq!(signals.count(), 2, "the count keeps what was received");
    }

    #[test]
    fn a_blocked_receiver_wakes_when_a_signal_comes() {
        let signals = UserSignals::new().unwrap();
        let receiver = {
            let signals = signals.clone();
            std::thread::spawn(move || signals.recv_timeout(Duration::from_secs(60)))
        };
        signals.push(Signal::Usr2);
        assert_eq!(receiver.join().unwrap(), Some(Signal::Usr2));
    }

    struct CountWakes(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_completes_with_the_next_signal_and_wakes_its_task() {
        let signals = UserSignals::new().unwrap();
        let counter = Arc::new(CountWakes(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut next = Box::pin(signals.next());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(next.as_mut().poll(&mut cx).is_pending(), "one waker kept");
        signals.push(Signal::Usr2);
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Signal::Usr2));
        assert_eq!(signals.try_recv(), None, "received once");
    }

    #[test]
    fn the_queue_is_bounded() {
        let signals = UserSignals::new().unwrap();
        for _ in 0..MAX_PENDING_USER_SIGNALS + 3 {
            signals.push(Signal::Usr1);
        }
        assert_eq!(signals.dropped(), 3);
        assert_eq!(signals.count(), MAX_PENDING_USER_SIGNALS as u64 + 3);
        let received = std::iter::from_fn(|| signals.try_recv()).count();
        assert_eq!(received, MAX_PENDING_USER_SIGNALS);
        assert!(!readable(&signals));
    }
}
