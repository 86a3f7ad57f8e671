//! [`Doorbell`]: a piece of state shared between threads that a waiter can wait on in
//! each of the three ways a server's code waits — blocking, an event loop's file
//! descriptor, a future — with one lock and one rule for all three.
//!
//! The state says whether it *rings* ([`Bell::rings`]: a shutdown was requested, a signal
//! waits to be received). Every change goes through [`Doorbell::with`], which keeps the
//! rest true: while it rings a pipe holds one byte (its read end is readable), and when
//! it starts to ring the blocked threads and the waiting tasks are woken. A waiter takes
//! what it waits for with a closure that returns `Some` once there is something.
//!
//! [`Shutdown`](crate::Shutdown) and [`UserSignals`](crate::UserSignals) are its two
//! uses.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::pipe::{pipe_with, PipeFlags};

/// State a [`Doorbell`] guards.
pub(crate) trait Bell {
    /// Whether a waiter has something to take now.
    fn rings(&self) -> bool;
}

pub(crate) struct Doorbell<S> {
    locked: Mutex<Locked<S>>,
    rang: Condvar,
    /// Readable while the state rings: one byte is in the pipe then.
    read_end: OwnedFd,
    write_end: OwnedFd,
}

struct Locked<S> {
    state: S,
    /// What `state.rings()` was after the last change (whether the byte is in the pipe).
    ringing: bool,
    /// Tasks waiting in [`Doorbell::poll`].
    wakers: Vec<Waker>,
}

impl<S: Bell> Doorbell<S> {
    pub(crate) fn new(state: S) -> io::Result<Self> {
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let ringing = state.rings();
        let bell = Self {
            locked: Mutex::new(Locked {
                state,
                ringing: false,
                wakers: Vec::new(),
            }),
            rang: Condvar::new(),
            read_end,
            write_end,
        };
        if ringing {
            bell.with(|_| ());
        }
        Ok(bell)
    }

    fn lock(&self) -> MutexGuard<'_, Locked<S>> {
        // A panic elsewhere while holding the lock leaves the state as consistent as
        // the closure it ran left it: keep going rather than poisoning every waiter.
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads or changes the state; the pipe and the waiters follow the change.
    pub(crate) fn with<R>(&self, change: impl FnOnce(&mut S) -> R) -> R {
        let mut locked = self.lock();
        let result = change(&mut locked.state);
        self.follow(locked);
        result
    }

    /// After a change under the lock: the byte in the pipe while it rings, and a wake-up
    /// for every waiter when it starts to ring (each takes what it can, and the others
    /// wait again).
    fn follow(&self, mut locked: MutexGuard<'_, Locked<S>>) {
        let rings = locked.state.rings();
        if rings == locked.ringing {
            return;
        }
        locked.ringing = rings;
        if !rings {
            let mut byte = [0u8; 1];
            // The byte written when it started ringing: the pipe is non-blocking and
            // held it, so this never blocks.
            let _ = rustix::io::read(&self.read_end, &mut byte);
            return;
        }
        // The pipe is empty (it did not ring): this byte fits.
        let _ = rustix::io::write(&self.write_end, b"!");
        let wakers = std::mem::take(&mut locked.wakers);
        drop(locked);
        self.rang.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Blocks until `take` returns `Some`, or `timeout` (if any) passes.
    pub(crate) fn wait<R>(
        &self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&mut S) -> Option<R>,
    ) -> Option<R> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut locked = self.lock();
        loop {
            if let Some(taken) = take(&mut locked.state) {
                self.follow(locked);
                return Some(taken);
            }
            locked = match (timeout, deadline) {
                (None, _) | (Some(_), None) => self
                    .rang
                    .wait(locked)
                    .unwrap_or_else(PoisonError::into_inner),
                (Some(_), Some(deadline)) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.rang
                        .wait_timeout(locked, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// A future's poll: `take`'s value, or the task is woken when the state next starts
    /// to ring.
    pub(crate) fn poll<R>(
        &self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut S) -> Option<R>,
    ) -> Poll<R> {
        let mut locked = self.lock();
        if let Some(taken) = take(&mut locked.state) {
            self.follow(locked);
            return Poll::Ready(taken);
        }
        if !locked.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            locked.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<S> AsFd for Doorbell<S> {
    /// Readable while the state rings.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read_end.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A counter that rings while it is above zero; waiters take one each.
    struct Tokens(u32);

    impl Bell for Tokens {
        fn rings(&self) -> bool {
            self.0 > 0
        }
    }

    fn take(t: &mut Tokens) -> Option<()> {
        t.0 = t.0.checked_sub(1)?;
        Some(())
    }

    fn readable(fd: &impl AsFd) -> bool {
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap() == 1
    }

    #[test]
    fn the_fd_is_readable_exactly_while_it_rings() {
        let bell = Doorbell::new(Tokens(0)).unwrap();
        assert!(!readable(&bell));
        bell.with(|t| t.0 = 2);
        assert!(readable(&bell));
        bell.with(|t| t.0 = 3);
        assert!(readable(&bell), "still ringing");
        assert_eq!(bell.wait(Some(Duration::ZERO), take), Some(()));
        assert!(readable(&bell), "two left");
        bell.with(|t| t.0 = 0);
        assert!(!readable(&bell));
        bell.with(|t| t.0 = 1);
        assert!(readable(&bell), "and again");
        assert!(
            readable(&Doorbell::new(Tokens(1)).unwrap()),
            "rings from the start"
        );
    }

    #[test]
    fn blocked_waiters_each_take_one() {
        let bell = Arc::new(Doorbell::new(Tokens(0)).unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let bell = bell.clone();
                std::thread::spawn(move || bell.wait(Some(Duration::from_secs(60)), take))
            })
            .collect();
        bell.with(|t| t.0 = 3);
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Some(()));
        }
        assert!(!readable(&*bell), "all three taken");
        assert_eq!(
            bell.wait(Some(Duration::from_millis(5)), take),
            None,
            "timed out"
        );
    }

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_task_is_woken_once_when_it_starts_to_ring() {
        let bell = Doorbell::new(Tokens(0)).unwrap();
        let counter = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(bell.poll(&mut cx, take).is_pending());
        assert!(bell.poll(&mut cx, take).is_pending(), "one waker kept");
        bell.with(|t| t.0 = 2);
        bell.with(|t| t.0 = 3);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "woken at the start only"
        );
        assert_eq!(bell.poll(&mut cx, take), Poll::Ready(()));
    }
}
