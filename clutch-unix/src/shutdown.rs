//! [`Shutdown`]: how a worker learns that its graceful stop has begun, in a form that
//! fits blocking code, a mio loop and any async runtime alike.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::doorbell::{Bell, Doorbell};

/// A one-shot "shutdown has begun" notice, cheap to clone and share between threads.
///
/// Pick the form that fits the code:
///
/// * blocking: [`is_requested`](Self::is_requested), [`wait`](Self::wait),
///   [`wait_timeout`](Self::wait_timeout);
/// * an event loop (mio, epoll, `poll(2)`): [`as_fd`](AsFd::as_fd) becomes readable once
///   shutdown begins and stays readable;
/// * async (tokio, async-std, smol — no runtime dependency): `shutdown.requested().await`.
#[derive(Clone)]
pub struct Shutdown {
    bell: Arc<Doorbell<Begun>>,
}

/// Whether shutdown has begun: it rings from then on, for good.
struct Begun(bool);

impl Bell for Begun {
    fn rings(&self) -> bool {
        self.0
    }
}

fn begun(requested: &mut Begun) -> Option<()> {
    requested.0.then_some(())
}

impl Shutdown {
    /// A notice that has not fired.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            bell: Arc::new(Doorbell::new(Begun(false))?),
        })
    }

    /// Fires the notice (idempotent). Returns true the first time.
    pub fn trigger(&self) -> bool {
        self.bell
            .with(|requested| !std::mem::replace(&mut requested.0, true))
    }

    /// True once shutdown has begun.
    #[must_use]
    pub fn is_requested(&self) -> bool {
        self.bell.with(|requested| requested.0)
    }

    /// Blocks until shutdown begins.
    pub fn wait(&self) {
        let _ = self.bell.wait(None, begun);
    }

    /// Blocks until shutdown begins or `timeout` passes; true if it began.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.bell.wait(Some(timeout), begun).is_some()
    }

    /// A future that completes once shutdown begins. Runtime-agnostic.
    #[must_use]
    pub fn requested(&self) -> Requested {
        Requested {
            shutdown: self.clone(),
        }
    }
}

impl AsFd for Shutdown {
    /// A file descriptor that becomes readable once shutdown begins (and stays so).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish()
    }
}

/// The future returned by [`Shutdown::requested`].
#[derive(Debug)]
pub struct Requested {
    shutdown: Shutdown,
}

impl Future for Requested {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.shutdown.bell.poll(cx, begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    #[test]
    fn blocking_waiters_wake_on_trigger() {
        let shutdown = Shutdown::new().unwrap();
        assert!(!shutdown.is_requested());
        assert!(!shutdown.wait_timeout(Duration::from_millis(10)));
        let waiter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.wait())
        };
        assert!(shutdown.trigger());
        assert!(!shutdown.trigger(), "idempotent");
        waiter.join().unwrap();
        assert!(shutdown.wait_timeout(Duration::from_secs(60)));
    }

    #[test]
    fn the_fd_becomes_readable() {
        let shutdown = Shutdown::new().unwrap();
        let readable = |s: &Shutdown| {
            let mut fds = [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)];
            rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap() == 1
        };
        assert!(!readable(&shutdown));
        shutdown.trigger();
        assert!(readable(&shutdown));
        assert!(readable(&shutdown), "stays readable");
    }

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_completes_and_wakes_its_task() {
        let shutdown = Shutdown::new().unwrap();
        let counter = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = Box::pin(shutdown.requested());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert!(
            future.as_mut().poll(&mut cx).is_pending(),
            "re-polling keeps one waker"
        );
        shutdown.trigger();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(future.as_mut().poll(&mut cx).is_ready());
    }
}
