//! Backoff, the one implementation: doubling caps up to a bound, each wait
//! jittered. [`RetryPolicy`] retries provider calls (bounded attempts, full
//! jitter, a total time budget per call, server hints such as `Retry-After`
//! and `estimated_time` honoured when they fit in what is left of it);
//! [`Backoff`] paces a loop that must go on (the worker's polls and reports
//! while Conductor is down), never waiting less than half its cap.

use std::time::Duration;

/// How a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff cap of the first retry.
    pub initial_backoff: Duration,
    /// The largest backoff cap.
    pub max_backoff: Duration,
    /// Time allowed for one call, retries and waits included.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(60),
        }
    }
}

/// Waiting out cold starts (scaled-to-zero endpoints, loading models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStartPolicy {
    /// How long a call may wait for an endpoint to come up; zero fails at once.
    pub wait: Duration,
    /// Resume a paused endpoint through the management API instead of failing.
    pub resume_paused: bool,
}

impl Default for ColdStartPolicy {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(300),
            resume_paused: false,
        }
    }
}

/// `initial * 2^retry`, at most `max`.
fn cap(initial: Duration, max: Duration, retry: u32) -> Duration {
    initial
        .saturating_mul(2u32.saturating_pow(retry.min(20)))
        .min(max)
}

/// Uniform in `[low, high]`.
fn uniform(low: Duration, high: Duration) -> Duration {
    let span = u64::try_from(high.saturating_sub(low).as_nanos()).unwrap_or(u64::MAX);
    low + Duration::from_nanos(fastrand::u64(0..=span))
}

impl RetryPolicy {
    /// The cap of the `retry`-th backoff (0-based): `initial * 2^retry`, at most `max_backoff`.
    pub(crate) fn cap(&self, retry: u32) -> Duration {
        cap(self.initial_backoff, self.max_backoff, retry)
    }

    /// A full-jitter backoff: uniform in `[0, cap(retry)]`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        uniform(Duration::ZERO, self.cap(retry))
    }

    /// How long to wait before retry number `retry`, given the server's hint and
    /// the time left; `None` when the wait does not fit in the budget.
    pub(crate) fn delay(
        &self,
        retry: u32,
        hint: Option<Duration>,
        left: Duration,
    ) -> Option<Duration> {
        let wait = hint.unwrap_or_else(|| self.backoff(retry));
        (wait <= left).then_some(wait)
    }
}

/// The waits of a loop that goes on until it succeeds: the same doubling
/// caps, each wait uniform in `[cap / 2, cap]` so that a failing peer is
/// never polled in a busy loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    retry: u32,
}

impl Backoff {
    /// Waits from about `initial` up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            retry: 0,
        }
    }

    /// Start again from the shortest wait (after a success).
    pub(crate) fn reset(&mut self) {
        self.retry = 0;
    }

    /// The next wait.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let cap = cap(self.initial, self.max, self.retry);
        self.retry = self.retry.saturating_add(1);
        uniform(cap / 2, cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_up_to_the_maximum() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            budget: Duration::from_secs(5),
        };
        let caps: Vec<u128> = (0..6).map(|r| p.cap(r).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        for r in 0..6 {
            for _ in 0..50 {
                assert!(p.backoff(r) <= p.cap(r));
            }
        }
        assert_eq!(p.cap(1000), Duration::from_millis(1000), "no overflow");
    }

    #[test]
    fn hints_are_honoured_only_within_the_budget() {
        let p = RetryPolicy::default();
        let left = Duration::from_secs(3);
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2)), left),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(4)), left), None);
        assert!(p.delay(0, None, left).unwrap() <= p.cap(0));
    }

    #[test]
    fn a_loop_backoff_grows_to_its_bound_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(min, max);
        let waits: Vec<Duration> = (0..12).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= min / 2 && waits[0] <= min);
        assert!(waits.iter().all(|w| *w <= max));
        assert!(waits[11] >= max / 2);
        b.reset();
        assert!(b.next_wait() <= min);
    }
}
