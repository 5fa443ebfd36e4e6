//! Backoff policy: bounded attempts, exponential backoff with full jitter, a
//! total time budget per call, and server hints (`Retry-After`,
//! `estimated_time`) honoured when they fit in what is left of the budget.

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

impl RetryPolicy {
    /// The cap of the `retry`-th backoff (0-based): `initial * 2^retry`, at most `max_backoff`.
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// A full-jitter backoff: uniform in `[0, cap(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// How long to wait before retry number `retry`, given the server's hint and
    /// the time left; `None` when the wait does not fit in the budget.
    pub fn delay(&self, retry: u32, hint: Option<Duration>, left: Duration) -> Option<Duration> {
        let wait = hint.unwrap_or_else(|| self.backoff(retry));
        (wait <= left).then_some(wait)
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
}
