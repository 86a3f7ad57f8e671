//! [`Breaker`]: the crash breaker's count, pure. It counts the program's own failures
//! (boot failures, deaths in probation) from the first one while no worker is proven,
//! and says when it would trip; `ClusterState` decides whether
//! anything serves and shuts the cluster down when it trips.

use std::time::{Duration, Instant};

/// The crash breaker: failing since when, and how many failures since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Breaker {
    failing: Option<Failing>,
}

/// A failing period: it began at the first failure while no worker was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failing {
    since: Instant,
    failures: usize,
}

impl Breaker {
    /// A failure of the program's own at `now`. With a proven worker (`any_proven`) no
    /// failing period begins, and one that began earlier goes on counting.
    pub(super) fn count(&mut self, now: Instant, any_proven: bool) {
        if self.failing.is_none() && !any_proven {
            self.failing = Some(Failing {
                since: now,
                failures: 0,
            });
        }
        if let Some(failing) = &mut self.failing {
            failing.failures += 1;
        }
    }

    /// A worker passed probation (or the shutdown began): the failing period ends.
    pub(super) fn reset(&mut self) {
        self.failing = None;
    }

    /// Whether a failing period is under way.
    pub(super) fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// When the breaker trips if nothing changes: `window` after the failing period
    /// began, once `threshold` failures were counted. (Whether anything serves is the
    /// caller's to weigh: a serving cluster never trips.)
    pub(super) fn due_at(&self, threshold: usize, window: Duration) -> Option<Instant> {
        let failing = self.failing?;
        (failing.failures >= threshold).then(|| failing.since + window)
    }

    /// Trips: ends the failing period, answering how many failures it counted.
    pub(super) fn trip(&mut self) -> usize {
        self.failing.take().map_or(0, |failing| failing.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn it_is_due_a_window_after_the_first_failure_once_the_threshold_is_reached() {
        let t0 = crate::test_epoch();
        let mut b = Breaker::default();
        assert_eq!(b.due_at(1, WINDOW), None, "nothing counted");
        b.count(t0, false);
        assert!(b.is_failing(), "the first failure begins the period");
        b.count(t0 + Duration::from_secs(3), false);
        assert_eq!(b.due_at(3, WINDOW), None, "two of three");
        b.count(t0 + Duration::from_secs(4), false);
        assert_eq!(
            b.due_at(3, WINDOW),
            Some(t0 + WINDOW),
            "from the first failure"
        );
        assert_eq!(b.trip(), 3);
        assert!(!b.is_failing());
        assert_eq!(b.due_at(1, WINDOW), None);
    }

    #[test]
    fn no_failing_period_begins_while_a_worker_is_proven() {
        let t0 = crate::test_epoch();
        let mut b = Breaker::default();
        b.count(t0, true);
        assert!(!b.is_failing());
        assert_eq!(b.due_at(1, WINDOW), None);
        // One begun before a worker was proven goes on counting.
        b.count(t0, false);
        b.count(t0, true);
        assert_eq!(b.due_at(2, WINDOW), Some(t0 + WINDOW));
    }

    #[test]
    fn a_proven_worker_resets_the_count() {
        let t0 = crate::test_epoch();
        let mut b = Breaker::default();
        b.count(t0, false);
        b.count(t0, false);
        b.reset();
        assert!(!b.is_failing(), "the period ended");
        b.count(t0 + WINDOW, false);
        assert_eq!(b.due_at(2, WINDOW), None, "counting starts over");
        assert_eq!(b.due_at(1, WINDOW), Some(t0 + WINDOW + WINDOW));
    }
}
