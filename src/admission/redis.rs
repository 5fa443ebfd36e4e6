//! Shared admission on Redis: every replica admits against one set of rate
//! limits, quotas and concurrency slots.
//!
//! One admission attempt is one round trip: a Lua script (EVALSHA, EVAL when
//! the server has not seen it) checks every limit that applies on the
//! server's clock and, only when all admit, charges them all. Rates and
//! quotas are GCRA (the algorithm governor runs in-process; the same rate
//! and burst mean the same here); a concurrency slot is a member of a sorted
//! set scored by its lease's expiry, renewed while the task runs and removed
//! when it ends, so a replica that dies gives its slots back when the lease
//! runs out. Every call is bounded by `admission.timeout`; a failure makes
//! the caller fall back (or deny) and the next tries wait a second, so a
//! task never hangs on Redis.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::time::Instant;

use super::{charged, AdmissionError, Headroom, Limited, Place};
use crate::access::{Principal, Subject};
use crate::catalog::{Catalog, Limits};
use crate::metrics::AdmissionMetrics;
use crate::runtime::{OnUnavailable, RedisSettings};
use crate::untrusted::Field;

/// Checks every limit, then charges them all or none. Times are in
/// microseconds of the server's clock (`TIME`), exact in a Lua number.
///
/// KEYS: the rate keys, then the slot keys. ARGV: the number of rate keys,
/// of slot keys, the lease in microseconds, the lease's member; then the
/// emission interval and tolerance of each rate key; then the size of each
/// slot set. Answers `{0, d1, …}` (admitted; `di`: µs until rate key `i`
/// is whole again), `{1, i, wait}` (rate key `i` admits in `wait` µs) or
/// `{2, i, 0}` (slot set `i` is full).
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nr = tonumber(ARGV[1])
local ns = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local member = ARGV[4]
local tats = {}
local wait, which = 0, 0
for i = 1, nr do
  local interval = tonumber(ARGV[3 + 2 * i])
  local tolerance = tonumber(ARGV[4 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  local at = tat - tolerance
  if at > now and at - now > wait then
    wait, which = at - now, i
  end
  tats[i] = tat + interval
end
if wait > 0 then return {1, which, math.ceil(wait)} end
local base = 4 + 2 * nr
for j = 1, ns do
  local key = KEYS[nr + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', key) >= tonumber(ARGV[base + j]) then
    return {2, nr + j, 0}
  end
end
local out = {0}
for i = 1, nr do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  out[i + 1] = tats[i] - now
end
local expiry = string.format('%.0f', now + lease)
for j = 1, ns do
  redis.call('ZADD', KEYS[nr + j], expiry, member)
  redis.call('PEXPIRE', KEYS[nr + j], math.ceil(lease / 1000) + 1000)
end
return out
";

/// Pushes a lease's expiry forward on every slot set it holds (KEYS); ARGV:
/// the lease in microseconds, the member.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', string.format('%.0f', now + lease), ARGV[2])
  redis.call('PEXPIRE', KEYS[i], math.ceil(lease / 1000) + 1000)
end
return 0
";

/// How long after a failed call the next one is tried (calls in between
/// are unavailable at once).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Waits between two tries for a slot.
const SLOT_POLL_MIN: Duration = Duration::from_millis(10);
const SLOT_POLL_MAX: Duration = Duration::from_millis(200);

/// Redis could not be asked (down, slow, refused the script, URL unreadable).
#[derive(Debug)]
pub(crate) struct Unavailable;

/// Whether Redis answers, carried over reloads so an outage is logged once.
#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    /// While down: no call before this instant.
    quiet_until: Mutex<Option<Instant>>,
    /// The server's `run_id` when last asked: a new one is a restart.
    run_id: Mutex<Option<String>>,
}

/// How often the server's `run_id` is read (`INFO server`) to notice a restart.
const RUN_ID_EVERY: Duration = Duration::from_secs(2);

/// The `run_id` of an `INFO server` answer.
fn run_id_of(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

/// Read the server's `run_id` every [`RUN_ID_EVERY`] while `alive` lives:
/// a Redis that restarted (empty, without persistence) has forgotten every
/// count, so for the rest of each window the limits admit afresh. That is
/// counted (`hfconnect_admission_redis_restarts_total`) and logged.
fn watch_run_id(
    conn: ConnectionManager,
    health: Arc<Health>,
    metrics: AdmissionMetrics,
    timeout: Duration,
    alive: std::sync::Weak<()>,
) {
    tokio::spawn(async move {
        loop {
            if alive.upgrade().is_none() {
                return;
            }
            let mut c = conn.clone();
            let info = tokio::time::timeout(
                timeout,
                redis::cmd("INFO")
                    .arg("server")
                    .query_async::<String>(&mut c),
            )
            .await;
            if let Ok(Ok(info)) = info {
                if let Some(id) = run_id_of(&info) {
                    let mut seen = health.run_id.lock().unwrap_or_else(PoisonError::into_inner);
                    if seen.as_deref().is_some_and(|old| old != id) {
                        metrics.redis_restarts.inc();
                        tracing::warn!(
                            run_id = %Field::new(id),
                            "the Redis server restarted (its run id changed): unless it kept its data (append-only file or snapshot), the shared limits' counts started afresh"
                        );
                    }
                    *seen = Some(id.to_string());
                }
            }
            tokio::time::sleep(RUN_ID_EVERY).await;
        }
    });
}

/// Usage history not written to Redis yet (`shared_budget` writes it),
/// shared by the snapshots a reload replaces and the task that writes it.
#[derive(Debug, Default)]
pub(crate) struct PendingDays {
    pub(super) rows: Mutex<rustc_hash::FxHashMap<(String, String), super::budget::Tokens>>,
    pub(super) flushing: AtomicBool,
}

/// A rate to check: its key, and GCRA's emission interval and tolerance (µs).
struct RateSpec {
    key: String,
    interval: u64,
    tolerance: u64,
    /// The interval of one cell (µs) and the burst, for the headroom.
    unit: u64,
    burst: u32,
    what: String,
    limited: Limited,
}

impl RateSpec {
    /// What is left of this rate once a task was charged, given the µs
    /// until its theoretical arrival time (when it is whole again).
    fn headroom(&self, whole_in: u64) -> Headroom {
        let capacity = self.unit.saturating_mul(u64::from(self.burst));
        let remaining = capacity.saturating_sub(whole_in) / self.unit.max(1);
        Headroom {
            limit: self.burst,
            remaining: u32::try_from(remaining)
                .unwrap_or(self.burst)
                .min(self.burst),
            reset: Duration::from_micros(whole_in),
        }
    }
}

/// A slot set to take a member of.
struct SlotSpec {
    key: String,
    max: u32,
    what: String,
}

struct QuotaRule {
    subject: Subject,
    integration: Arc<str>,
    per_minute: NonZeroU32,
}

/// The shared admission of one catalog snapshot.
pub(crate) struct Shared {
    client: Option<redis::Client>,
    /// Made on first use: its driver task needs the runtime, which a
    /// connector built before one starts does not have yet.
    conn: tokio::sync::OnceCell<ConnectionManager>,
    pub(super) prefix: String,
    pub(crate) on_unavailable: OnUnavailable,
    pub(super) timeout: Duration,
    pub(super) lease: Duration,
    /// By the catalog's integration position: its limits, queue timeout, and
    /// its models' limits by their positions.
    integrations: Vec<(Limits, Duration, Vec<Limits>)>,
    quotas: Vec<QuotaRule>,
    health: Arc<Health>,
    pub(super) metrics: AdmissionMetrics,
    /// This process's part of every lease member.
    pub(super) replica: u64,
    pub(super) leases: Arc<AtomicU64>,
    admit: Script,
    renew: Script,
    /// Held while this snapshot's admission lives: its run-id watcher stops after.
    alive: Arc<()>,
    /// Usage history waiting to be written, carried over reloads.
    pub(super) days_pending: Arc<PendingDays>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("on_unavailable", &self.on_unavailable)
            .finish_non_exhaustive()
    }
}

/// A rate in GCRA's terms — `n` per `period` with `burst` — for a task
/// costing `cost` cells: the script charges `interval` and admits while the
/// theoretical arrival time is within `tolerance`, so a cost of `c` is an
/// interval `c` times as long and a tolerance `c - 1` intervals shorter.
/// `None` when the cost is above the burst (no wait admits it).
fn gcra(
    period: Duration,
    n: NonZeroU32,
    burst: NonZeroU32,
    cost: NonZeroU32,
) -> Option<(u64, u64)> {
    if cost > burst {
        return None;
    }
    let interval = (period.as_micros() as u64 / u64::from(n.get())).max(1);
    let c = u64::from(cost.get());
    Some((interval * c, interval * u64::from(burst.get() - cost.get())))
}

impl Shared {
    /// The shared admission of `catalog` with `settings`; `old` is the one it
    /// replaces (its health carries over).
    pub(crate) fn new(
        catalog: &Catalog,
        settings: &RedisSettings,
        old: Option<&Shared>,
        metrics: AdmissionMetrics,
    ) -> Shared {
        let client = match settings.url.secret() {
            Ok(url) => match crate::exposure::redis_client(url) {
                Ok(c) => Some(c),
                Err(why) => {
                    tracing::error!(error = %why, "the Redis URL of `[admission]` cannot be used");
                    None
                }
            },
            Err(why) => {
                tracing::warn!(reason = %Field::new(why), "the Redis URL of `[admission]` is not available");
                None
            }
        };
        let integrations = catalog
            .integrations()
            .iter()
            .map(|i| {
                let models = i.models().iter().map(|m| m.limits()).collect();
                (i.limits(), i.queue_timeout(), models)
            })
            .collect();
        let quotas = catalog
            .quotas()
            .iter()
            .map(|q| QuotaRule {
                subject: q.subject.clone(),
                integration: q.integration.clone(),
                per_minute: q.per_minute,
            })
            .collect();
        Shared {
            client,
            conn: tokio::sync::OnceCell::new(),
            prefix: format!("{{{}}}", settings.key_prefix),
            on_unavailable: settings.on_unavailable,
            timeout: settings.timeout,
            lease: settings.lease,
            integrations,
            quotas,
            health: old.map_or_else(Arc::default, |o| o.health.clone()),
            metrics,
            replica: old.map_or_else(replica_id, |o| o.replica),
            leases: old.map_or_else(Arc::default, |o| o.leases.clone()),
            admit: Script::new(ADMIT),
            renew: Script::new(RENEW),
            alive: Arc::new(()),
            days_pending: old.map_or_else(Arc::default, |o| o.days_pending.clone()),
        }
    }

    /// The connection (made on first use), or `None` without a usable URL.
    pub(super) async fn conn(&self) -> Option<&ConnectionManager> {
        let client = self.client.as_ref()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        self.conn
            .get_or_try_init(|| async {
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                watch_run_id(
                    conn.clone(),
                    self.health.clone(),
                    self.metrics.clone(),
                    self.timeout,
                    Arc::downgrade(&self.alive),
                );
                Ok::<_, redis::RedisError>(conn)
            })
            .await
            .ok()
    }

    /// Whether Redis answered the last call (or a `PING` now, when it was
    /// down or not asked yet), for `/readyz`.
    pub(crate) async fn reachable(&self) -> bool {
        if !self.health.down.load(Ordering::Relaxed) && self.conn.initialized() {
            return true;
        }
        let Some(conn) = self.conn().await else {
            return false;
        };
        let mut c = conn.clone();
        let ping = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await;
        let up = matches!(ping, Ok(Ok(_)));
        if up {
            self.up();
        }
        up
    }

    /// Whether the server's `run_id` has been read (a restart after that is noticed).
    pub(crate) fn run_id_known(&self) -> bool {
        self.health
            .run_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    pub(super) fn up(&self) {
        if self.health.down.swap(false, Ordering::Relaxed) {
            tracing::warn!("Redis is reachable again; shared limits apply");
            self.metrics.redis_up.set(1);
        }
    }

    pub(super) fn failed(&self, why: &str) {
        self.metrics.redis_errors.inc();
        *self
            .health
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + RETRY_AFTER_FAILURE);
        if !self.health.down.swap(true, Ordering::Relaxed) {
            self.metrics.redis_outages.inc();
            self.metrics.redis_up.set(0);
            tracing::error!(
                error = %Field::new(why),
                on_unavailable = self.on_unavailable.as_str(),
                "Redis cannot be reached; admission follows `on_unavailable` until it can"
            );
        }
    }

    /// Whether a call may be tried now (not within a second of a failure).
    pub(super) fn may_try(&self) -> bool {
        if !self.health.down.load(Ordering::Relaxed) {
            return true;
        }
        let mut quiet = self
            .health
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *quiet {
            Some(t) if Instant::now() < t => false,
            _ => {
                // One caller probes; the others stay quiet for another second.
                *quiet = Some(Instant::now() + RETRY_AFTER_FAILURE);
                true
            }
        }
    }

    /// The limits that apply to a task, as keys and figures.
    #[allow(clippy::type_complexity)]
    fn specs(
        &self,
        principal: &Principal,
        place: Place<'_>,
        cost: NonZeroU32,
    ) -> Result<Option<(Vec<RateSpec>, Vec<SlotSpec>, Duration)>, AdmissionError> {
        let Some((ilimits, queue_timeout, models)) = self.integrations.get(place.integration)
        else {
            return Ok(None);
        };
        let mlimits = models.get(place.model);
        let (integration, model) = (place.integration_name, place.model_name);
        let mut rates = Vec::new();
        for q in self
            .quotas
            .iter()
            .filter(|q| charged(&q.subject, &q.integration, principal, integration))
        {
            let what = format!(
                "the quota of `{}` on integration `{integration}` ({} tasks per minute)",
                q.subject, q.per_minute
            );
            let Some((interval, tolerance)) =
                gcra(Duration::from_secs(60), q.per_minute, q.per_minute, cost)
            else {
                return Err(super::too_large(&what, cost, q.per_minute.get()));
            };
            rates.push(RateSpec {
                key: format!("{}:quota:{}@{}", self.prefix, q.subject, q.integration),
                interval,
                tolerance,
                unit: interval / u64::from(cost.get()),
                burst: q.per_minute.get(),
                what,
                limited: Limited::Quota,
            });
        }
        let gates = [
            (
                Some(ilimits),
                integration.to_string(),
                format!("integration `{integration}`"),
            ),
            (
                mlimits,
                format!("{integration}/{model}"),
                format!("model `{model}` of integration `{integration}`"),
            ),
        ];
        let mut slots = Vec::new();
        for (limits, name, what) in gates {
            let Some(limits) = limits else { continue };
            if let Some((per_second, burst)) = limits.rate {
                let Some((interval, tolerance)) =
                    gcra(Duration::from_secs(1), per_second, burst, cost)
                else {
                    return Err(super::too_large(
                        &format!("the rate limit of {what}"),
                        cost,
                        burst.get(),
                    ));
                };
                rates.push(RateSpec {
                    key: format!("{}:rate:{name}", self.prefix),
                    interval,
                    tolerance,
                    unit: interval / u64::from(cost.get()),
                    burst: burst.get(),
                    what: what.clone(),
                    limited: Limited::Rate,
                });
            }
            if let Some(n) = limits.max_concurrency {
                slots.push(SlotSpec {
                    key: format!("{}:slots:{name}", self.prefix),
                    max: n.get(),
                    what,
                });
            }
        }
        Ok((!rates.is_empty() || !slots.is_empty()).then_some((rates, slots, *queue_timeout)))
    }

    /// Wait for a turn on every limit that applies, or fail as rate limited;
    /// `Err(Unavailable)` when Redis cannot be asked. Admitted: the lease
    /// on its slots, the tightest limit's headroom, and the time waited.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn admit(
        &self,
        principal: &Principal,
        place: Place<'_>,
        cost: NonZeroU32,
    ) -> Result<Result<(Option<Lease>, Option<Headroom>, Duration), AdmissionError>, Unavailable>
    {
        let (rates, slots, queue_timeout) = match self.specs(principal, place, cost) {
            Ok(Some(specs)) => specs,
            // Nothing limits this task: no round trip.
            Ok(None) => return Ok(Ok((None, None, Duration::ZERO))),
            Err(e) => return Ok(Err(e)),
        };
        let began = Instant::now();
        let Some(conn) = self.conn().await else {
            return Err(Unavailable);
        };
        let deadline = Instant::now() + queue_timeout;
        let member = format!(
            "{:016x}:{}",
            self.replica,
            self.leases.fetch_add(1, Ordering::Relaxed)
        );
        let lease_us = self.lease.as_micros() as u64;
        let mut poll = SLOT_POLL_MIN;
        loop {
            if !self.may_try() {
                return Err(Unavailable);
            }
            let mut call = self.admit.prepare_invoke();
            for r in &rates {
                call.key(&r.key);
            }
            for s in &slots {
                call.key(&s.key);
            }
            call.arg(rates.len())
                .arg(slots.len())
                .arg(lease_us)
                .arg(&member);
            for r in &rates {
                call.arg(r.interval).arg(r.tolerance);
            }
            for s in &slots {
                call.arg(s.max);
            }
            let answer = self.invoke(conn, &call).await?;
            let index = |i: i64| usize::try_from(i).ok().and_then(|i| i.checked_sub(1));
            match answer.as_slice() {
                [0, whole_in @ ..] => {
                    let headroom = rates
                        .iter()
                        .zip(whole_in)
                        .map(|(r, d)| r.headroom(u64::try_from(*d).unwrap_or(0)))
                        .min_by_key(|h| h.remaining);
                    let lease = (!slots.is_empty()).then(|| {
                        self.lease(
                            conn.clone(),
                            slots.into_iter().map(|s| s.key).collect(),
                            member,
                        )
                    });
                    return Ok(Ok((lease, headroom, began.elapsed())));
                }
                [1, i, wait] => {
                    let Some(r) = index(*i).and_then(|i| rates.get(i)) else {
                        self.failed("an answer the script cannot give");
                        return Err(Unavailable);
                    };
                    let wait = Duration::from_micros(u64::try_from(*wait).unwrap_or(0));
                    if Instant::now() + wait > deadline {
                        return Ok(Err(AdmissionError {
                            limited: r.limited,
                            message: format!(
                                "{} is over its rate limit; retry in {:.2}s",
                                r.what,
                                wait.as_secs_f64()
                            ),
                            retry_after: wait,
                        }));
                    }
                    tokio::time::sleep(wait).await;
                }
                [2, i, _] => {
                    let Some(s) = index(*i)
                        .and_then(|i| i.checked_sub(rates.len()))
                        .and_then(|i| slots.get(i))
                    else {
                        self.failed("an answer the script cannot give");
                        return Err(Unavailable);
                    };
                    if Instant::now() + poll > deadline {
                        return Ok(Err(AdmissionError {
                            limited: Limited::Concurrency,
                            message: format!("{} is running its `max_concurrency` of {} tasks; none finished within the queue timeout of {:.1}s", s.what, s.max, queue_timeout.as_secs_f64()),
                            retry_after: Duration::from_secs(1),
                        }));
                    }
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(SLOT_POLL_MAX);
                }
                _ => {
                    self.failed("an answer the script cannot give");
                    return Err(Unavailable);
                }
            }
        }
    }

    /// Run a script that answers numbers, within `admission.timeout`,
    /// timed; a failure marks Redis down.
    pub(super) async fn invoke(
        &self,
        conn: &ConnectionManager,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<i64>, Unavailable> {
        let mut c = conn.clone();
        let started = std::time::Instant::now();
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut c)).await;
        self.metrics
            .redis_seconds
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(a)) => {
                self.up();
                Ok(a)
            }
            Ok(Err(e)) => {
                self.failed(&format!("{:?}", e.kind()));
                Err(Unavailable)
            }
            Err(_) => {
                self.failed(&format!(
                    "no answer within {:.3}s",
                    self.timeout.as_secs_f64()
                ));
                Err(Unavailable)
            }
        }
    }

    /// The lease on `keys`, renewed every third of its length until dropped.
    fn lease(&self, conn: ConnectionManager, keys: Vec<String>, member: String) -> Lease {
        let keys = Arc::new(keys);
        let member = Arc::new(member);
        let (lease, timeout) = (self.lease, self.timeout);
        let renew = self.renew.clone();
        let renewal = {
            let (conn, keys, member) = (conn.clone(), keys.clone(), member.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let mut c = conn.clone();
                    let mut call = renew.prepare_invoke();
                    for k in keys.iter() {
                        call.key(k);
                    }
                    call.arg(lease.as_micros() as u64).arg(member.as_str());
                    if !matches!(
                        tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut c)).await,
                        Ok(Ok(_))
                    ) {
                        tracing::debug!("a concurrency lease could not be renewed; it runs out unless a later renewal lands");
                    }
                }
            })
        };
        Lease {
            conn,
            keys,
            member,
            timeout,
            renewal,
        }
    }
}

/// Concurrency slots held on Redis; dropping it stops the renewal and gives
/// them back (or, if Redis cannot be reached, lets the lease run out).
#[derive(Debug)]
pub(crate) struct Lease {
    conn: ConnectionManager,
    keys: Arc<Vec<String>>,
    member: Arc<String>,
    timeout: Duration,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (mut conn, keys, member, timeout) = (
            self.conn.clone(),
            self.keys.clone(),
            self.member.clone(),
            self.timeout,
        );
        runtime.spawn(async move {
            let mut pipe = redis::pipe();
            for k in keys.iter() {
                pipe.zrem(k, member.as_str()).ignore();
            }
            let _ = tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await;
        });
    }
}

/// A number unlikely to be another replica's: time, process and address.
fn replica_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
