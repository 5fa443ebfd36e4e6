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
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota as Rate, RateLimiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{AdmissionError, Headroom, Limited, Permit, Place, TokioClock};
use crate::access::{Principal, Subject};
use crate::catalog::{Catalog, Limits};

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, StateInformationMiddleware>;
type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, StateInformationMiddleware>;

/// The tasks waiting on one limiter, served in arrival order: only the
/// first waits on the limiter itself, the others on `turn` (tokio's mutex
/// is fair). So the wait of a task arriving now is known before it waits —
/// the limiter's own wait plus one interval per task ahead — and a task
/// whose wait is past the queue timeout is refused at once, never held to
/// find out.
#[derive(Default)]
struct Queue {
    waiting: std::sync::atomic::AtomicU32,
    turn: tokio::sync::Mutex<()>,
}

/// One task counted in a queue's `waiting` until dropped.
struct InQueue<'q>(&'q Queue);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What is left of a limit after a task was admitted under it.
fn headroom(s: &StateSnapshot) -> Headroom {
    let quota = s.quota();
    let remaining = s.remaining_burst_capacity();
    let burst = quota.burst_size().get();
    Headroom {
        limit: burst,
        remaining,
        reset: quota.replenish_interval() * burst.saturating_sub(remaining),
    }
}

/// Admissions between two prunings of the quota limiters' idle keys.
const PRUNE_EVERY: u64 = 1024;

/// A rate limiter and the tasks waiting on it, shared across reloads.
type QueuedLimiter = Arc<(DirectLimiter, Queue)>;

struct Gate {
    rate: Option<(QueuedLimiter, (NonZeroU32, NonZeroU32))>,
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
                        Arc::new((
                            RateLimiter::direct_with_clock(
                                Rate::per_second(rate.0).allow_burst(rate.1),
                                clock,
                            )
                            .with_middleware::<StateInformationMiddleware>(),
                            Queue::default(),
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
    queue: Queue,
}

/// An integration's name, gate and queue timeout, and its models' names and
/// gates by their positions.
type IntegrationGates = (Arc<str>, Gate, Duration, Vec<(Arc<str>, Gate)>);

/// The admission state of one catalog snapshot.
pub(crate) struct Local {
    /// By the catalog's integration position: its name, gate, queue timeout,
    /// and its models' names and gates by their positions.
    integrations: Vec<IntegrationGates>,
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
        // The gates of the snapshot replaced, by name (positions may have moved).
        let before: rustc_hash::FxHashMap<&str, (&Gate, rustc_hash::FxHashMap<&str, &Gate>)> = old
            .map(|o| {
                o.integrations
                    .iter()
                    .map(|(name, g, _, ms)| {
                        let ms = ms.iter().map(|(n, g)| (&**n, g)).collect();
                        (&**name, (g, ms))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let integrations = catalog
            .integrations()
            .iter()
            .map(|i| {
                let was = before.get(i.name());
                let models = i
                    .models()
                    .iter()
                    .map(|m| {
                        let g = was.and_then(|(_, ms)| ms.get(m.name()).copied());
                        (m.name_arc().clone(), Gate::new(m.limits(), g, clock))
                    })
                    .collect();
                (
                    i.name_arc().clone(),
                    Gate::new(i.limits(), was.map(|(g, _)| *g), clock),
                    i.queue_timeout(),
                    models,
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
                        None => Arc::new(KeyedLimiter::new(
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
                    queue: Queue::default(),
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
        place: Place<'_>,
        cost: NonZeroU32,
    ) -> Result<Permit, AdmissionError> {
        let Some((_, igate, queue_timeout, models)) = self.integrations.get(place.integration)
        else {
            return Ok(Permit::new(Vec::new()));
        };
        let mgate = models.get(place.model).map(|(_, g)| g);
        let (integration, model) = (place.integration_name, place.model_name);
        if self.quotas.is_empty()
            && !igate.limits_anything()
            && !mgate.is_some_and(Gate::limits_anything)
        {
            // Nothing to wait for: no clock read, no shared counter, no messages.
            return Ok(Permit::new(Vec::new()));
        }
        let started = Instant::now();
        let deadline = started + *queue_timeout;
        if self.admitted.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            for l in self.quota_limiters.values() {
                l.retain_recent();
            }
        }
        let mut tightest: Option<Headroom> = None;
        let mut keep = |h: Headroom| {
            if tightest.is_none_or(|t| h.remaining < t.remaining) {
                tightest = Some(h);
            }
        };
        for q in self.quotas_for(principal, integration) {
            if let Some(l) = self.quota_limiters.get(&q.per_minute) {
                let what = format!(
                    "the quota of `{}` on integration `{integration}` ({} tasks per minute)",
                    q.subject, q.per_minute
                );
                if cost > q.per_minute {
                    return Err(super::too_large(&what, cost, q.per_minute.get()));
                }
                let step = Duration::from_secs(60) / q.per_minute.get() * cost.get();
                let h = self
                    .turn(
                        || match l.check_key_n(&q.key, cost) {
                            Ok(Ok(s)) => Ok(headroom(&s)),
                            Ok(Err(nu)) => Err(nu.wait_time_from(self.clock.now())),
                            // Checked above: the quota's burst is its rate.
                            Err(_) => Err(Duration::MAX),
                        },
                        &q.queue,
                        step,
                        deadline,
                        &what,
                        Limited::Quota,
                    )
                    .await?;
                keep(h);
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
            if let Some((r, (per_second, burst))) = gate.and_then(|g| g.rate.as_ref()) {
                if cost > *burst {
                    return Err(super::too_large(
                        &format!("the rate limit of {what}"),
                        cost,
                        burst.get(),
                    ));
                }
                let (limiter, queue) = &**r;
                let step = Duration::from_secs(1) / per_second.get() * cost.get();
                let h = self
                    .turn(
                        || match limiter.check_n(cost) {
                            Ok(Ok(s)) => Ok(headroom(&s)),
                            Ok(Err(nu)) => Err(nu.wait_time_from(self.clock.now())),
                            Err(_) => Err(Duration::MAX),
                        },
                        queue,
                        step,
                        deadline,
                        what,
                        Limited::Rate,
                    )
                    .await?;
                keep(h);
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
        let mut permit = Permit::new(slots);
        permit.headroom = tightest;
        permit.waited = started.elapsed();
        Ok(permit)
    }

    /// A turn under one limiter: at once when nobody waits and it admits;
    /// else in line behind the tasks already waiting, each `step` apart.
    #[allow(clippy::too_many_arguments)]
    async fn turn(
        &self,
        check: impl Fn() -> Result<Headroom, Duration>,
        queue: &Queue,
        step: Duration,
        deadline: Instant,
        what: &str,
        limited: Limited,
    ) -> Result<Headroom, AdmissionError> {
        let over = |wait: Duration| AdmissionError {
            limited,
            message: format!(
                "{what} is over its rate limit; retry in {:.2}s",
                wait.as_secs_f64()
            ),
            retry_after: wait,
        };
        let ahead = queue.waiting.load(Ordering::Acquire);
        let known = if ahead == 0 {
            match check() {
                Ok(h) => return Ok(h),
                Err(wait) => wait,
            }
        } else {
            // Not asking the limiter (that would take a turn from those
            // ahead): the first of them is at most a step from its turn,
            // and each after it a step more. Conservative by under a step.
            step.saturating_mul(ahead.saturating_add(1))
        };
        if Instant::now() + known > deadline {
            return Err(over(known));
        }
        queue.waiting.fetch_add(1, Ordering::AcqRel);
        let _counted = InQueue(queue);
        let Ok(_turn) = tokio::time::timeout_at(deadline, queue.turn.lock()).await else {
            return Err(over(step));
        };
        loop {
            match check() {
                Ok(h) => return Ok(h),
                Err(wait) => {
                    if Instant::now() + wait > deadline {
                        return Err(over(wait));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
