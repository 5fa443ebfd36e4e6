//! Admission: rate limits and concurrency per integration and per model, and
//! request quotas per group, application or user. A task waits for its turn
//! up to the integration's `queue_timeout`, then is refused with the time to
//! wait ([`AdmissionError`]); the Connector turns that into a rate-limited
//! task error. Admission knows the catalog and the caller, never tasks or
//! front doors.
//!
//! The backend is in-process ([`local`], governor), whose limits hold for one
//! replica and carry over reloads, or shared on Redis ([`redis`]), whose
//! limits hold across replicas and restarts; while Redis cannot be reached,
//! the shared backend falls back to the in-process one or denies, as
//! `admission.on_unavailable` says.

pub(crate) mod budget;
mod local;
mod redis;
mod shared_budget;
pub(crate) mod store;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use self::budget::{Exhausted, Ledger, Reservation, Standing, Tokens};
use self::local::Local;
use self::redis::{Lease, Shared};
use self::shared_budget::{Scripts, SharedReservation};
use crate::access::{Principal, Subject};
pub(crate) use crate::catalog::Headroom;
use crate::catalog::{Budget, Catalog, Payer, TokenHeadroom};
use crate::metrics::AdmissionMetrics;
use crate::runtime::{AdmissionBackend, OnUnavailable};

/// The admission of one catalog snapshot: in-process, or shared with an
/// in-process fallback.
#[derive(Debug)]
pub(crate) struct Admission {
    local: Local,
    shared: Option<Arc<Shared>>,
    metrics: AdmissionMetrics,
    /// The budgets' spend in process: the backend's, or the fallback's
    /// while Redis is away.
    ledger: Ledger,
    scripts: Scripts,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scripts")
    }
}

/// A task's hold on its budgets: settle it with what the task used; dropped
/// unsettled, it is charged in full.
#[derive(Debug)]
pub(crate) enum Hold {
    Local(Reservation),
    Shared(Box<SharedReservation>),
}

/// Whose tokens a task's end adds to the history: the caller, on a model.
pub(crate) use self::shared_budget::DayOf;

/// Why a task's tokens were not reserved.
#[derive(Debug)]
pub(crate) enum TokenRefusal {
    /// A budget has not got room for it.
    Exhausted(Exhausted),
    /// The shared budgets cannot be checked and `on_unavailable` is `deny`.
    Unavailable(AdmissionError),
}

impl Admission {
    /// The admission of `catalog` on `backend`; with `old`, the admission of the snapshot
    /// it replaces, whose unchanged in-process limiters and Redis health
    /// carry over.
    pub(crate) fn new(
        catalog: &Catalog,
        backend: &AdmissionBackend,
        old: Option<&Admission>,
        metrics: &AdmissionMetrics,
        ledger: Ledger,
    ) -> Admission {
        let shared = match backend {
            AdmissionBackend::Redis(settings) => Some(Arc::new(Shared::new(
                catalog,
                settings,
                old.and_then(|o| o.shared.as_deref()),
                metrics.clone(),
            ))),
            _ => None,
        };
        Admission {
            local: Local::new(catalog, old.map(|o| &o.local)),
            shared,
            metrics: metrics.clone(),
            ledger,
            scripts: Scripts::default(),
        }
    }

    /// The admission metrics (budgets' among them).
    pub(crate) fn metrics(&self) -> &AdmissionMetrics {
        &self.metrics
    }

    /// The in-process ledger (the backend's, or the fallback's on Redis).
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Reserve `need` against every budget of `covering`, all or none, on
    /// the backend; while Redis is away, as `on_unavailable` says.
    pub(crate) async fn reserve_tokens(
        &self,
        covering: &[(&Budget, Payer)],
        need: Tokens,
    ) -> Result<(Hold, Vec<TokenHeadroom>), TokenRefusal> {
        let now = std::time::SystemTime::now();
        let local = || {
            self.ledger
                .reserve(covering, need, now)
                .map(|(r, h)| (Hold::Local(r), h))
                .map_err(|e| match e {
                    budget::LocalRefusal::Exhausted(e) => TokenRefusal::Exhausted(e),
                    budget::LocalRefusal::Store(why) => TokenRefusal::Unavailable(AdmissionError {
                        limited: Limited::Unavailable,
                        message: format!("budgets cannot be kept: {why}"),
                        retry_after: Duration::from_secs(30),
                    }),
                })
        };
        let Some(shared) = &self.shared else {
            return local();
        };
        match shared
            .reserve_tokens(&self.scripts, covering, need, now)
            .await
        {
            Ok(Ok((r, h))) => Ok((Hold::Shared(Box::new(r)), h)),
            Ok(Err(e)) => Err(TokenRefusal::Exhausted(e)),
            Err(redis::Unavailable) => match shared.on_unavailable {
                OnUnavailable::Deny => {
                    self.metrics.fallbacks.with_label_values(&["deny"]).inc();
                    Err(TokenRefusal::Unavailable(AdmissionError {
                        limited: Limited::Unavailable,
                        message: "the shared budgets cannot be checked (Redis is unreachable) and `admission.on_unavailable` is `deny`; retry shortly".into(),
                        retry_after: Duration::from_secs(1),
                    }))
                }
                _ => {
                    self.metrics.fallbacks.with_label_values(&["local"]).inc();
                    local()
                }
            },
        }
    }

    /// Settle `hold` to what the task used, and add that to `day`'s history
    /// (on Redis, in the same script).
    pub(crate) fn settle(&self, hold: Hold, used: Tokens, day: DayOf<'_>) {
        match hold {
            Hold::Local(r) => {
                r.settle(used);
                self.ledger.record_day(
                    day.subject,
                    day.integration,
                    day.model,
                    used,
                    std::time::SystemTime::now(),
                );
            }
            Hold::Shared(r) => r.settle(used, day),
        }
    }

    /// Count what `subject` used on a model today, for the usage history.
    pub(crate) fn record_day(
        &self,
        subject: &Subject,
        integration: &str,
        model: &str,
        used: Tokens,
    ) {
        let now = std::time::SystemTime::now();
        match &self.shared {
            Some(shared) => shared.record_day_shared(subject, integration, model, used, now),
            None => self
                .ledger
                .record_day(subject, integration, model, used, now),
        }
    }

    /// Each budget's spend on the backend, for every payer seen (`None`) or
    /// one: on Redis, what Redis holds (an error while it is away).
    pub(crate) async fn standing(
        &self,
        rows: &[(&Budget, Option<Payer>)],
    ) -> Result<Vec<Standing>, AdmissionError> {
        let now = std::time::SystemTime::now();
        if let Some(shared) = &self.shared {
            return shared
                .standing_tokens(rows, now)
                .await
                .map_err(|_| unavailable("usage"));
        }
        let mut out = Vec::new();
        for (b, only) in rows {
            match only {
                Some(p) => out.push(self.ledger.standing_of(b, p, now)),
                None => out.extend(self.ledger.standing(std::slice::from_ref(*b), now)),
            }
        }
        Ok(out)
    }

    /// The tokens by day from `since` (days since the epoch) through today,
    /// as (day, subject, integration, model) and tokens.
    pub(crate) async fn days(
        &self,
        since: u64,
    ) -> Result<Vec<((u64, String, String, String), Tokens)>, AdmissionError> {
        let now = std::time::SystemTime::now();
        let today = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / 86_400;
        if let Some(shared) = &self.shared {
            return shared
                .days_shared(since, today)
                .await
                .map_err(|_| unavailable("usage history"));
        }
        Ok(self
            .ledger
            .days(since, |_| true)
            .into_iter()
            .map(|((d, s, i, m), t)| ((d, s.to_string(), i.to_string(), m.to_string()), t))
            .collect())
    }

    /// Wait for a turn on every limit that applies, or fail as rate limited
    /// (or, with Redis unreachable and `on_unavailable = "deny"`, as
    /// unavailable). Rates and quotas are charged `cost` (an embeddings
    /// batch's number of texts); a task holds one concurrency slot whatever
    /// its cost.
    pub(crate) async fn admit(
        &self,
        principal: &Principal,
        place: Place<'_>,
        cost: NonZeroU32,
    ) -> Result<Permit, AdmissionError> {
        let Some(shared) = &self.shared else {
            return self.local.admit(principal, place, cost).await;
        };
        match shared.admit(principal, place, cost).await {
            Ok(Ok((lease, headroom, waited))) => Ok(Permit {
                _slots: Vec::new(),
                _lease: lease,
                headroom,
                waited,
            }),
            Ok(Err(e)) => Err(e),
            Err(redis::Unavailable) => match shared.on_unavailable {
                OnUnavailable::Deny => {
                    self.metrics.fallbacks.with_label_values(&["deny"]).inc();
                    Err(AdmissionError {
                        limited: Limited::Unavailable,
                        message: "the shared limits cannot be checked (Redis is unreachable) and `admission.on_unavailable` is `deny`; retry shortly".into(),
                        retry_after: Duration::from_secs(1),
                    })
                }
                _ => {
                    self.metrics.fallbacks.with_label_values(&["local"]).inc();
                    self.local.admit(principal, place, cost).await
                }
            },
        }
    }

    /// The backend, and whether Redis answers (for `/readyz`).
    /// `None` for in-process limits; for Redis, whether it answers, what
    /// tasks meet while it does not, and whether its run id is known.
    pub(crate) async fn status(&self) -> Option<(bool, OnUnavailable, bool)> {
        let s = self.shared.as_ref()?;
        Some((s.reachable().await, s.on_unavailable, s.run_id_known()))
    }
}

fn unavailable(what: &str) -> AdmissionError {
    AdmissionError {
        limited: Limited::Unavailable,
        message: format!("the shared {what} cannot be read (Redis is unreachable); retry shortly"),
        retry_after: Duration::from_secs(1),
    }
}

/// Whether a quota of `subject` on `quota_integration` charges a task of
/// `principal` on `integration`: the scoped group's quota, or every quota
/// naming the caller or one of its groups.
fn charged(
    subject: &Subject,
    quota_integration: &str,
    principal: &Principal,
    integration: &str,
) -> bool {
    quota_integration == integration
        && match (subject, principal.scope()) {
            (Subject::Group(g), Some(scope)) => &**g == scope,
            (_, Some(_)) => false,
            (Subject::Group(g), None) => principal.groups().contains(g),
            (s, None) => s == principal.subject(),
        }
}

/// Which limit refused a task.
/// Which integration and model a task runs on: their positions in the
/// catalog (what admission's tables are indexed by) and their names (what
/// its messages and shared keys say).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub integration: usize,
    pub model: usize,
    pub integration_name: &'a str,
    pub model_name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// A rate limit of the integration or the model.
    Rate,
    /// `max_concurrency` of the integration or the model.
    Concurrency,
    /// The request quota of a group, application or user.
    Quota,
    /// The shared backend cannot be reached and is set to deny.
    Unavailable,
    /// The task costs more than a limit's whole burst: no wait admits it.
    TooLarge,
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

/// The slots a task holds while it runs; dropping it frees them. It says
/// how long the task waited for them and what is left of its limits.
#[derive(Debug)]
pub(crate) struct Permit {
    _slots: Vec<OwnedSemaphorePermit>,
    _lease: Option<Lease>,
    /// The tightest limit that admitted the task, when one did.
    pub headroom: Option<Headroom>,
    /// Time spent waiting for a turn.
    pub waited: Duration,
}

impl Permit {
    fn new(slots: Vec<OwnedSemaphorePermit>) -> Permit {
        Permit {
            _slots: slots,
            _lease: None,
            headroom: None,
            waited: Duration::ZERO,
        }
    }
}

/// The refusal of a task costing more than a limit ever admits at once.
fn too_large(what: &str, cost: NonZeroU32, capacity: u32) -> AdmissionError {
    AdmissionError {
        limited: Limited::TooLarge,
        message: format!(
            "a task of {cost} texts is more than {what} admits at once ({capacity}); split it into smaller tasks or raise the limit"
        ),
        retry_after: Duration::ZERO,
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
