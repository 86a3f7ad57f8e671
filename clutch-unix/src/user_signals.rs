//! [`UserSignals`]: how a worker learns that the master forwarded it a SIGUSR1 or
//! SIGUSR2 (by convention: reopen the log files), in a form that fits blocking code and
//! an event loop alike.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clutch_proto::Signal;
use rustix::pipe::{pipe_with, PipeFlags};

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
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    arrived: Condvar,
    /// Readable while `State::pending` is not empty: one byte is in the pipe then.
    read_end: OwnedFd,
    write_end: OwnedFd,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Signal>,
    total: u64,
    dropped: u64,
    /// Tasks awaiting [`UserSignals::next`].
    wakers: Vec<Waker>,
}

impl UserSignals {
    /// An empty queue.
    pub(crate) fn new() -> io::Result<Self> {
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                arrived: Condvar::new(),
                read_end,
                write_end,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent queue: keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A signal came (the worker's signal thread calls this).
    pub(crate) fn push(&self, signal: Signal) {
        let mut state = self.lock();
        state.total += 1;
        if state.pending.len() >= MAX_PENDING_USER_SIGNALS {
            state.dropped += 1;
            return;
        }
        if state.pending.is_empty() {
            // The pipe is empty now: this byte makes the fd readable, and fits.
            let _ = rustix::io::write(&self.inner.write_end, b"s");
        }
        state.pending.push_back(signal);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        self.inner.arrived.notify_one();
        for waker in wakers {
            waker.wake();
        }
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
        let mut state = self.lock();
        self.pop(&mut state)
    }

    /// Waits for the next signal.
    #[must_use]
    pub fn recv(&self) -> Signal {
        let mut state = self.lock();
        loop {
            if let Some(signal) = self.pop(&mut state) {
                return signal;
            }
            state = self
                .inner
                .arrived
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Waits up to `timeout` for the next signal.
    #[must_use]
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Signal> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        loop {
            if let Some(signal) = self.pop(&mut state) {
                return Some(signal);
            }
            let left = match deadline {
                Some(deadline) => deadline.checked_duration_since(Instant::now())?,
                None => Duration::MAX,
            };
            state = self
                .inner
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// How many SIGUSR1/SIGUSR2 came so far (received or not, dropped included).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.lock().total
    }

    /// How many were dropped because [`MAX_PENDING_USER_SIGNALS`] were waiting.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn pop(&self, state: &mut State) -> Option<Signal> {
        let signal = state.pending.pop_front()?;
        if state.pending.is_empty() {
            let mut byte = [0u8; 1];
            let _ = rustix::io::read(&self.inner.read_end, &mut byte);
        }
        Some(signal)
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
        let mut state = self.signals.lock();
        if let Some(signal) = self.signals.pop(&mut state) {
            return Poll::Ready(signal);
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl AsFd for UserSignals {
    /// Readable while a signal waits to be received.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.read_end.as_fd()
    }
}

impl std::fmt::Debug for UserSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("UserSignals")
            .field("pending", &state.pending)
            .field("count", &state.total)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
