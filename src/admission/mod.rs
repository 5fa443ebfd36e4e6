//! Admission: rate limits and concurrency per integration and per model, and
//! request quotas per group, application or user. A task waits for its turn
//! up to the integration's `queue_timeout`, then is refused with the time to
//! wait ([`AdmissionError`]); the Connector turns that into a rate-limited
//! task error. Admission knows the catalog and the caller, never tasks or
//! front doors.
//!
//! The backend is in-process ([`local`], governor); its limits hold for one
//! replica and carry over reloads.

mod local;

use std::fmt;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

pub(crate) use local::Local as Admission;

/// Which limit refused a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// A rate limit of the integration or the model.
    Rate,
    /// `max_concurrency` of the integration or the model.
    Concurrency,
    /// The request quota of a group, application or user.
    Quota,
}

/// A task refused by a limit: which, in words, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdmissionError {
    pub limited: Limited,
    pub message: String,
    pub retry_after: Duration,
}

impl fmt::Display for AdmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdmissionError {}

/// The slots a task holds while it runs; dropping it frees them.
#[derive(Debug)]
pub(crate) struct Permit {
    _slots: Vec<OwnedSemaphorePermit>,
}

impl Permit {
    fn new(slots: Vec<OwnedSemaphorePermit>) -> Permit {
        Permit { _slots: slots }
    }
}

/// governor's clock on tokio's time: the time since an origin that a
/// lineage of admissions (one per connector, across reloads) shares. Under
/// `tokio::time::pause` rate limits refill as virtual time advances, so
/// tests of waits and refills take no real time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}
