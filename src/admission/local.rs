//! In-process admission (governor and tokio semaphores): the limits of one
//! replica.
//!
//! Limits are the promise, reloads included: a new snapshot's admission is
//! built from the old one, and every limiter whose key and rate did not
//! change (a gate's integration or model, a quota's rate) is the same object,
//! with what it has counted. A changed rate starts afresh.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota as Rate, RateLimiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{AdmissionError, Limited, Permit, TokioClock};
use crate::access::{Principal, Subject};
use crate::catalog::{Catalog, Limits};

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<Duration>>;

/// Admissions between two prunings of the quota limiters' idle keys.
const PRUNE_EVERY: u64 = 1024;

struct Gate {
    rate: Option<(Arc<DirectLimiter>, (NonZeroU32, NonZeroU32))>,
    slots: Option<(Arc<Semaphore>, u32)>,
}

impl Gate {
    /// The gate of `limits`, keeping what `old` (the same integration's or
    /// model's gate before a reload) counted where the limit is unchanged.
    fn new(limits: Limits, old: Option<&Gate>, clock: TokioClock) -> Gate {
        Gate {
            rate: limits.rate.map(|rate| {
                match old
                    .and_then(|g| g.rate.as_ref())
                    .filter(|(_, r)| *r == rate)
                {
                    Some((limiter, _)) => (limiter.clone(), rate),
                    None => (
                        Arc::new(RateLimiter::direct_with_clock(
                            Rate::per_second(rate.0).allow_burst(rate.1),
                            clock,
                        )),
                        rate,
                    ),
                }
            }),
            slots: limits.max_concurrency.map(|n| {
                match old
                    .and_then(|g| g.slots.as_ref())
                    .filter(|(_, m)| *m == n.get())
                {
                    Some((sem, _)) => (sem.clone(), n.get()),
                    None => (Arc::new(Semaphore::new(n.get() as usize)), n.get()),
                }
            }),
        }
    }

    fn limits_anything(&self) -> bool {
        self.rate.is_some() || self.slots.is_some()
    }
}

struct QuotaRule {
    subject: Subject,
    integration: Arc<str>,
    per_minute: NonZeroU32,
    key: String,
}

/// The admission state of one catalog snapshot.
pub(crate) struct Local {
    /// integration -> (its gate, its queue timeout, its models' gates)
    integrations: crate::FxHashMap<String, (Gate, Duration, crate::FxHashMap<String, Gate>)>,
    quotas: Vec<QuotaRule>,
    /// One keyed limiter per distinct quota rate, keyed by `subject@integration`.
    quota_limiters: HashMap<NonZeroU32, Arc<KeyedLimiter>>,
    clock: TokioClock,
    admitted: AtomicU64,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("quotas", &self.quotas.len())
            .finish_non_exhaustive()
    }
}

impl Local {
    /// The admission of `catalog`; with `old`, the admission of the snapshot
    /// it replaces, whose unchanged limiters carry over.
    pub(crate) fn new(catalog: &Catalog, old: Option<&Local>) -> Local {
        // One clock for the lineage: waits are measured against the limiters' own.
        let clock = old.map_or_else(TokioClock::new, |o| o.clock);
        let integrations = catalog
            .integrations()
            .iter()
            .map(|i| {
                let before = old.and_then(|o| o.integrations.get(i.name()));
                let models = i
                    .models()
                    .iter()
                    .map(|m| {
                        let was = before.and_then(|(_, _, ms)| ms.get(m.name()));
                        (m.name().to_string(), Gate::new(m.limits(), was, clock))
                    })
                    .collect();
                (
                    i.name().to_string(),
                    (
                        Gate::new(i.limits(), before.map(|(g, _, _)| g), clock),
                        i.queue_timeout(),
                        models,
                    ),
                )
            })
            .collect();
        let mut quota_limiters = HashMap::new();
        let quotas = catalog
            .quotas()
            .iter()
            .map(|q| {
                quota_limiters.entry(q.per_minute).or_insert_with(|| {
                    match old.and_then(|o| o.quota_limiters.get(&q.per_minute)) {
                        Some(kept) => kept.clone(),
                        None => Arc::new(RateLimiter::new(
                            Rate::per_minute(q.per_minute),
                            DefaultKeyedStateStore::default(),
                            clock,
                        )),
                    }
                });
                QuotaRule {
                    subject: q.subject.clone(),
                    integration: q.integration.clone(),
                    per_minute: q.per_minute,
                    key: format!("{}@{}", q.subject, q.integration),
                }
            })
            .collect();
        Local {
            integrations,
            quotas,
            quota_limiters,
            clock,
            admitted: AtomicU64::new(0),
        }
    }

    /// The quotas a task is charged to.
    fn quotas_for<'a>(
        &'a self,
        principal: &'a Principal,
        integration: &'a str,
    ) -> impl Iterator<Item = &'a QuotaRule> + 'a {
        self.quotas
            .iter()
            .filter(move |q| super::charged(&q.subject, &q.integration, principal, integration))
    }

    /// Wait for a turn on every limit that applies, or fail as rate limited.
    pub(crate) async fn admit(
        &self,
        principal: &Principal,
        integration: &str,
        model: &str,
        cost: NonZeroU32,
    ) -> Result<Permit, AdmissionError> {
        let Some((igate, queue_timeout, models)) = self.integrations.get(integration) else {
            return Ok(Permit::new(Vec::new()));
        };
        let mgate = models.get(model);
        if self.quotas.is_empty()
            && !igate.limits_anything()
            && !mgate.is_some_and(Gate::limits_anything)
        {
            // Nothing to wait for: no clock read, no shared counter, no messages.
            return Ok(Permit::new(Vec::new()));
        }
        let deadline = Instant::now() + *queue_timeout;
        if self.admitted.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            for l in self.quota_limiters.values() {
                l.retain_recent();
            }
        }
        for q in self.quotas_for(principal, integration) {
            if let Some(l) = self.quota_limiters.get(&q.per_minute) {
                let what = format!(
                    "the quota of `{}` on integration `{integration}` ({} tasks per minute)",
                    q.subject, q.per_minute
                );
                if cost > q.per_minute {
                    return Err(super::too_large(&what, cost, q.per_minute.get()));
                }
                self.turn(
                    || match l.check_key_n(&q.key, cost) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(nu)) => Err(nu.wait_time_from(self.clock.now())),
                        // Checked above: the quota's burst is its rate.
                        Err(_) => Err(Duration::MAX),
                    },
                    deadline,
                    &what,
                    Limited::Quota,
                )
                .await?;
            }
        }
        // Past the early return something limits this task: naming the gates up front is cheap.
        let gates = [
            (Some(igate), format!("integration `{integration}`")),
            (
                mgate,
                format!("model `{model}` of integration `{integration}`"),
            ),
        ];
        for (gate, what) in &gates {
            if let Some((r, (_, burst))) = gate.and_then(|g| g.rate.as_ref()) {
                if cost > *burst {
                    return Err(super::too_large(
                        &format!("the rate limit of {what}"),
                        cost,
                        burst.get(),
                    ));
                }
                self.turn(
                    || match r.check_n(cost) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(nu)) => Err(nu.wait_time_from(self.clock.now())),
                        Err(_) => Err(Duration::MAX),
                    },
                    deadline,
                    what,
                    Limited::Rate,
                )
                .await?;
            }
        }
        let mut slots = Vec::new();
        for (gate, what) in &gates {
            if let Some((sem, n)) = gate.and_then(|g| g.slots.as_ref()) {
                match tokio::time::timeout_at(deadline, sem.clone().acquire_owned()).await {
                    Ok(Ok(p)) => slots.push(p),
                    _ => {
                        return Err(AdmissionError {
                            limited: Limited::Concurrency,
                            message: format!("{what} is running its `max_concurrency` of {n} tasks; none finished within the queue timeout of {:.1}s", queue_timeout.as_secs_f64()),
                            retry_after: Duration::from_secs(1),
                        });
                    }
                }
            }
        }
        Ok(Permit::new(slots))
    }

    async fn turn(
        &self,
        check: impl Fn() -> Result<(), Duration>,
        deadline: Instant,
        what: &str,
        limited: Limited,
    ) -> Result<(), AdmissionError> {
        loop {
            match check() {
                Ok(()) => return Ok(()),
                Err(wait) => {
                    if Instant::now() + wait > deadline {
                        return Err(AdmissionError {
                            limited,
                            message: format!(
                                "{what} is over its rate limit; retry in {:.2}s",
                                wait.as_secs_f64()
                            ),
                            retry_after: wait,
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
