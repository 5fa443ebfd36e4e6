//! Token budgets on Redis: every replica reserves against one count.
//!
//! One script reserves a task's worst case against all of its budgets (all
//! or none) and one settles it, so two replicas can never both spend the
//! last tokens. A budget's slot for one payer and window is a hash (`used`,
//! `reserved`, and `r:<id>` per reservation) beside a sorted set of the
//! reservations scored by their lease's expiry: a reservation is renewed
//! while its task runs, and one whose replica died runs out and is released
//! by the next script that looks at the slot. A settle is applied once
//! (a marker key per reservation), retried while Redis is away, and charges
//! even a reservation that has run out: nothing is charged twice or lost.
//! Tokens by day are hashes per UTC day.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::Script;
use sha2::{Digest, Sha256};

use super::budget::{payer_key, subject_key, Exhausted, Identity, Standing, Tokens};
use super::redis::{Shared, Unavailable};
use crate::access::Subject;
use crate::catalog::{Budget, Counts, Payer, Span, TokenHeadroom};

/// Reserves against every budget or none, on the server's clock (µs).
///
/// KEYS: per budget its slot hash, its lease set and its payers' index.
/// ARGV: the reservation id, the lease (µs); then per budget its limit,
/// what the task needs of it, the keys' lifetime (ms), the payer and the
/// window's start. Answers `{0, left1, …}` (reserved; what each budget has
/// left) or `{1, i, left}` (budget `i` has only `left`).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id = ARGV[1]
local lease = tonumber(ARGV[2])
local n = #KEYS / 3
local left = {}
for i = 1, n do
  local h, z = KEYS[3 * i - 2], KEYS[3 * i - 1]
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', string.format('%.0f', now))
  for _, m in ipairs(dead) do
    local amt = tonumber(redis.call('HGET', h, 'r:' .. m) or '0') or 0
    redis.call('HINCRBY', h, 'reserved', -amt)
    redis.call('HDEL', h, 'r:' .. m)
    redis.call('ZREM', z, m)
  end
  local used = tonumber(redis.call('HGET', h, 'used') or '0') or 0
  local held = tonumber(redis.call('HGET', h, 'reserved') or '0') or 0
  local base = 2 + 5 * (i - 1)
  local limit = tonumber(ARGV[base + 1])
  local need = tonumber(ARGV[base + 2])
  local room = limit - used - held
  if room < 0 then room = 0 end
  if need > room then return {1, i, room} end
  left[i] = room - need
end
local out = {0}
for i = 1, n do
  local h, z, p = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local base = 2 + 5 * (i - 1)
  local need = tonumber(ARGV[base + 2])
  local ttl = tonumber(ARGV[base + 3])
  redis.call('HINCRBY', h, 'reserved', need)
  redis.call('HSET', h, 'r:' .. id, need)
  redis.call('ZADD', z, string.format('%.0f', now + lease), id)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', z, ttl)
  redis.call('HSET', p, ARGV[base + 4], ARGV[base + 5])
  if redis.call('PTTL', p) < ttl then redis.call('PEXPIRE', p, ttl) end
  out[i + 1] = left[i]
end
return out
";

/// Settles a reservation once: releases it where it still holds, charges
/// each budget its part of what was used, and adds the task's tokens to its
/// day's history.
///
/// KEYS: per budget its slot hash and lease set, then the marker, then the
/// day's history hash. ARGV: the reservation id, the number of budgets, per
/// budget the charge and the keys' lifetime (ms); then the history's two
/// fields, the prompt and completion tokens and the day's lifetime (s).
/// Answers 0 (settled now) or 1 (settled before).
const SETTLE: &str = r"
local id = ARGV[1]
local n = tonumber(ARGV[2])
if not redis.call('SET', KEYS[2 * n + 1], '1', 'NX', 'PX', 86400000) then return 1 end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local amt = redis.call('HGET', h, 'r:' .. id)
  if amt then
    redis.call('HINCRBY', h, 'reserved', -tonumber(amt))
    redis.call('HDEL', h, 'r:' .. id)
    redis.call('ZREM', z, id)
  end
  local charge = tonumber(ARGV[1 + 2 * i])
  if charge > 0 then redis.call('HINCRBY', h, 'used', charge) end
  if redis.call('PTTL', h) < 0 then redis.call('PEXPIRE', h, tonumber(ARGV[2 + 2 * i])) end
end
local b = 2 + 2 * n
local day = KEYS[2 * n + 2]
local p, c = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
if p + c > 0 then
  redis.call('HINCRBY', day, ARGV[b + 1], p)
  redis.call('HINCRBY', day, ARGV[b + 2], c)
  redis.call('EXPIRE', day, tonumber(ARGV[b + 5]))
end
return 0
";

/// Pushes a reservation's lease forward (KEYS: its lease sets; ARGV: the
/// lease in µs, the id); the sets' lifetimes are the window's, untouched.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', string.format('%.0f', now + tonumber(ARGV[1])), ARGV[2])
end
return 0
";

/// How long a settle that Redis did not take is tried again.
const SETTLE_TRIES_FOR: Duration = Duration::from_secs(600);

/// A day's history hash lives this long (the history shows 31 days).
const DAY_TTL: Duration = Duration::from_secs(94 * 86_400);

/// How often a replica writes the history of tasks no budget covered.
const DAY_FLUSH: Duration = Duration::from_secs(1);

/// The most history rows a replica holds before writing them (callers'
/// ids are theirs to choose).
const MAX_PENDING_DAYS: usize = 50_000;

/// The scripts, made once per snapshot.
pub(crate) struct Scripts {
    reserve: Script,
    settle: Script,
    renew: Script,
}

impl Default for Scripts {
    fn default() -> Scripts {
        Scripts {
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            renew: Script::new(RENEW),
        }
    }
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys of a budget's slot for `payer` in window `span`: its hash and
/// lease set; and the budget's payers' index.
fn slot_keys(prefix: &str, id: &Identity, payer: &str, span: Span) -> (String, String) {
    let d = digest(&[&id.0, payer]);
    (
        format!("{prefix}:budget:{d}:{}", span.start),
        format!("{prefix}:budget:{d}:{}:leases", span.start),
    )
}

fn payers_key(prefix: &str, id: &Identity) -> String {
    format!("{prefix}:budget-payers:{}", digest(&[&id.0]))
}

fn day_key(prefix: &str, day: u64) -> String {
    format!("{prefix}:usage-day:{day}")
}

/// How long a slot's keys live: until its window is over, and a day more
/// (a task admitted at the end settles into it).
fn ttl_ms(span: Span, now: u64) -> u64 {
    span.end.saturating_sub(now).saturating_add(86_400) * 1_000
}

fn secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One budget's part of a shared reservation.
#[derive(Debug)]
struct Part {
    slot: String,
    leases: String,
    counts: Counts,
    reserved: u64,
    ttl: u64,
}

/// A reservation held on Redis; settle it with what the task used (dropped
/// unsettled, it is charged in full).
pub(crate) struct SharedReservation {
    conn: ConnectionManager,
    prefix: String,
    settle: Script,
    marker: String,
    id: String,
    parts: Vec<Part>,
    timeout: Duration,
    renewal: tokio::task::JoinHandle<()>,
    settled: bool,
    metrics: crate::metrics::AdmissionMetrics,
}

impl std::fmt::Debug for SharedReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReservation")
            .field("id", &self.id)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Reserve `need` against each of `covering`, all or none, on Redis.
    /// `Err(Unavailable)` when Redis cannot be asked.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn reserve_tokens(
        &self,
        scripts: &Scripts,
        covering: &[(&Budget, Payer)],
        need: Tokens,
        now: SystemTime,
    ) -> Result<Result<(SharedReservation, Vec<TokenHeadroom>), Exhausted>, Unavailable> {
        let Some(conn) = self.conn().await else {
            return Err(Unavailable);
        };
        if !self.may_try() {
            return Err(Unavailable);
        }
        let at = secs(now);
        let id = format!(
            "{:016x}:t{}",
            self.replica,
            self.leases.fetch_add(1, Ordering::Relaxed)
        );
        let mut call = scripts.reserve.prepare_invoke();
        call.arg(&id).arg(self.lease.as_micros() as u64);
        let mut parts = Vec::with_capacity(covering.len());
        let mut spans = Vec::with_capacity(covering.len());
        for (b, payer) in covering {
            let ident = Identity::of(b);
            let span = b.window().span_at(now);
            let pk = payer_key(payer);
            let (slot, leases) = slot_keys(&self.prefix, &ident, &pk, span);
            let needed = b.counts().charge(need.prompt, need.completion);
            let ttl = ttl_ms(span, at);
            call.key(&slot)
                .key(&leases)
                .key(payers_key(&self.prefix, &ident));
            call.arg(b.tokens().get())
                .arg(needed)
                .arg(ttl)
                .arg(&pk)
                .arg(span.start);
            parts.push(Part {
                slot,
                leases,
                counts: b.counts(),
                reserved: needed,
                ttl,
            });
            spans.push(span);
        }
        let answer = self.invoke(conn, &call).await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        match answer.as_slice() {
            [0, left @ ..] if left.len() == covering.len() => {
                let headroom = covering
                    .iter()
                    .zip(left)
                    .zip(&spans)
                    .map(|(((b, _), l), s)| TokenHeadroom {
                        limit: b.tokens().get(),
                        remaining: n(*l),
                        reset_at: s.end,
                    })
                    .collect();
                let renewal = self.renew_tokens(
                    conn.clone(),
                    scripts.renew.clone(),
                    parts.iter().map(|p| p.leases.clone()).collect(),
                    id.clone(),
                );
                Ok(Ok((
                    SharedReservation {
                        conn: conn.clone(),
                        prefix: self.prefix.clone(),
                        settle: scripts.settle.clone(),
                        marker: format!("{}:budget-settled:{id}", self.prefix),
                        id,
                        parts,
                        timeout: self.timeout,
                        renewal,
                        settled: false,
                        metrics: self.metrics.clone(),
                    },
                    headroom,
                )))
            }
            [1, i, left] => {
                let Some(((b, _), span)) = usize::try_from(*i)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| covering.get(i).zip(spans.get(i)))
                else {
                    self.failed("an answer the script cannot give");
                    return Err(Unavailable);
                };
                Ok(Err(Exhausted {
                    budget: b.name().into(),
                    limit: b.tokens().get(),
                    remaining: n(*left),
                    needed: b.counts().charge(need.prompt, need.completion),
                    reset: span.end,
                }))
            }
            _ => {
                self.failed("an answer the script cannot give");
                Err(Unavailable)
            }
        }
    }

    fn renew_tokens(
        &self,
        conn: ConnectionManager,
        renew: Script,
        keys: Vec<String>,
        id: String,
    ) -> tokio::task::JoinHandle<()> {
        let (lease, timeout) = (self.lease, self.timeout);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let mut c = conn.clone();
                let mut call = renew.prepare_invoke();
                for k in &keys {
                    call.key(k);
                }
                call.arg(lease.as_micros() as u64).arg(&id);
                if !matches!(
                    tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut c)).await,
                    Ok(Ok(_))
                ) {
                    tracing::debug!("a budget reservation's lease could not be renewed; it runs out unless a later renewal lands");
                }
            }
        })
    }

    /// Each budget's spend on Redis for every payer it has in the window in
    /// force at `now` (`payer`: only that one).
    pub(crate) async fn standing_tokens(
        &self,
        budgets: &[(&Budget, Option<Payer>)],
        now: SystemTime,
    ) -> Result<Vec<Standing>, Unavailable> {
        let Some(conn) = self.conn().await else {
            return Err(Unavailable);
        };
        let mut c = conn.clone();
        let mut out = Vec::new();
        for (b, only) in budgets {
            let ident = Identity::of(b);
            let span = b.window().span_at(now);
            let payers: Vec<String> = match only {
                Some(p) => vec![payer_key(p)],
                None => {
                    let all: Vec<(String, u64)> = self
                        .bounded(
                            redis::cmd("HGETALL")
                                .arg(payers_key(&self.prefix, &ident))
                                .query_async(&mut c),
                        )
                        .await?;
                    all.into_iter()
                        .filter(|(_, start)| *start == span.start)
                        .map(|(p, _)| p)
                        .collect()
                }
            };
            for pk in payers {
                let Some(payer) = super::budget::payer_of(&pk) else {
                    continue;
                };
                let (slot, _) = slot_keys(&self.prefix, &ident, &pk, span);
                let (used, reserved): (Option<u64>, Option<i64>) = self
                    .bounded(
                        redis::cmd("HMGET")
                            .arg(&slot)
                            .arg("used")
                            .arg("reserved")
                            .query_async(&mut c),
                    )
                    .await?;
                out.push(Standing {
                    budget: b.name().into(),
                    payer,
                    limit: b.tokens().get(),
                    used: used.unwrap_or(0),
                    reserved: reserved.and_then(|r| u64::try_from(r).ok()).unwrap_or(0),
                    span,
                });
            }
        }
        out.sort_by(|a, b| (&a.budget, &a.payer).cmp(&(&b.budget, &b.payer)));
        Ok(out)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.failed(&format!("{:?}", e.kind()));
                Err(Unavailable)
            }
            Err(_) => {
                self.failed("no answer in time");
                Err(Unavailable)
            }
        }
    }

    /// Count `used` for `subject` on a model in the UTC day of `now`: added
    /// to this replica's pending history, which one task writes to Redis
    /// every [`DAY_FLUSH`] in one pipeline (history never holds a task up,
    /// and costs Redis one call a second, not one a task).
    pub(crate) fn record_day_shared(
        self: &Arc<Self>,
        subject: &Subject,
        integration: &str,
        model: &str,
        used: Tokens,
        now: SystemTime,
    ) {
        if used == Tokens::default() {
            return;
        }
        let (key, field) = self.day_field(subject, integration, model, now);
        let mut pending = self
            .days_pending
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.len() >= MAX_PENDING_DAYS && !pending.contains_key(&(key.clone(), field.clone()))
        {
            return;
        }
        let t = pending.entry((key, field)).or_default();
        t.prompt = t.prompt.saturating_add(used.prompt);
        t.completion = t.completion.saturating_add(used.completion);
        drop(pending);
        if !self.days_pending.flushing.swap(true, Ordering::AcqRel) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                self.spawn_day_flusher(&runtime);
            } else {
                self.days_pending.flushing.store(false, Ordering::Release);
            }
        }
    }

    /// The task that writes the pending history, every [`DAY_FLUSH`], for
    /// as long as a snapshot's admission holds the pending rows.
    fn spawn_day_flusher(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let (pending, timeout) = (self.days_pending.clone(), self.timeout);
        let this = self.clone();
        runtime.spawn(async move {
            // The connection, then not the snapshot: it may be replaced.
            let conn = this.conn().await.cloned();
            drop(this);
            let Some(conn) = conn else {
                pending.flushing.store(false, Ordering::Release);
                return;
            };
            loop {
                tokio::time::sleep(DAY_FLUSH).await;
                let rows: Vec<((String, String), Tokens)> = pending
                    .rows
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drain()
                    .collect();
                if !rows.is_empty() {
                    let mut pipe = redis::pipe();
                    for ((key, field), t) in &rows {
                        pipe.hincr(key, format!("p{field}"), t.prompt)
                            .ignore()
                            .hincr(key, format!("c{field}"), t.completion)
                            .ignore()
                            .expire(key, DAY_TTL.as_secs() as i64)
                            .ignore();
                    }
                    let mut c = conn.clone();
                    let ok = matches!(
                        tokio::time::timeout(timeout * 5, pipe.query_async::<()>(&mut c)).await,
                        Ok(Ok(()))
                    );
                    if !ok {
                        // Back in, for the next try (bounded as new rows are).
                        let mut back = pending
                            .rows
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for (k, t) in rows {
                            if back.len() >= MAX_PENDING_DAYS && !back.contains_key(&k) {
                                continue;
                            }
                            let e = back.entry(k).or_default();
                            e.prompt = e.prompt.saturating_add(t.prompt);
                            e.completion = e.completion.saturating_add(t.completion);
                        }
                        tracing::debug!(
                            "the usage history could not be written to Redis; it is tried again"
                        );
                    }
                }
                // No snapshot holds the rows any more: the last were written.
                if Arc::strong_count(&pending) == 1 {
                    pending.flushing.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// The history hash of `now`'s day, and the field (less its `p` or
    /// `c`) of `subject` on a model.
    fn day_field(
        &self,
        subject: &Subject,
        integration: &str,
        model: &str,
        now: SystemTime,
    ) -> (String, String) {
        (
            day_key(&self.prefix, secs(now) / 86_400),
            serde_json::to_string(&[subject_key(subject).as_str(), integration, model])
                .unwrap_or_default(),
        )
    }

    /// The tokens by day on Redis since `since` (days since the epoch),
    /// through `today`.
    pub(crate) async fn days_shared(
        &self,
        since: u64,
        today: u64,
    ) -> Result<Vec<((u64, String, String, String), Tokens)>, Unavailable> {
        let Some(conn) = self.conn().await else {
            return Err(Unavailable);
        };
        let mut c = conn.clone();
        let mut out = Vec::new();
        for day in since..=today {
            let all: Vec<(String, u64)> = self
                .bounded(
                    redis::cmd("HGETALL")
                        .arg(day_key(&self.prefix, day))
                        .query_async(&mut c),
                )
                .await?;
            let mut rows: rustc_hash::FxHashMap<(String, String, String), Tokens> =
                rustc_hash::FxHashMap::default();
            for (field, n) in all {
                let (kind, rest) = field.split_at(field.len().min(1));
                let Ok([s, i, m]) = serde_json::from_str::<[String; 3]>(rest) else {
                    continue;
                };
                let t = rows.entry((s, i, m)).or_default();
                match kind {
                    "p" => t.prompt = n,
                    "c" => t.completion = n,
                    _ => {}
                }
            }
            let mut rows: Vec<_> = rows.into_iter().collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(rows.into_iter().map(|((s, i, m), t)| ((day, s, i, m), t)));
        }
        Ok(out)
    }
}

/// Whose tokens a settle adds to the history.
pub(crate) struct DayOf<'a> {
    pub subject: &'a Subject,
    pub integration: &'a str,
    pub model: &'a str,
}

impl SharedReservation {
    /// Settle to what the task used (see [`super::budget::Reservation::settle`]),
    /// adding it to `day`'s history in the same script.
    pub(crate) fn settle(mut self, used: Tokens, day: DayOf<'_>) {
        self.finish(Some(used), Some(day));
    }

    fn finish(&mut self, used: Option<Tokens>, day: Option<DayOf<'_>>) {
        if self.settled {
            return;
        }
        self.settled = true;
        self.renewal.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("a budget reservation was dropped outside the runtime; its lease runs out and what it used is not charged");
            return;
        };
        let charges: Vec<(String, String, u64, u64)> = self
            .parts
            .iter()
            .map(|p| {
                let charge = used.map_or(p.reserved, |u| p.counts.charge(u.prompt, u.completion));
                (p.slot.clone(), p.leases.clone(), charge, p.ttl)
            })
            .collect();
        let (script, id, marker) = (self.settle.clone(), self.id.clone(), self.marker.clone());
        let now = SystemTime::now();
        let (day_key, field) = match &day {
            Some(d) => (
                day_key(&self.prefix, secs(now) / 86_400),
                serde_json::to_string(&[subject_key(d.subject).as_str(), d.integration, d.model])
                    .unwrap_or_default(),
            ),
            None => (day_key(&self.prefix, secs(now) / 86_400), String::new()),
        };
        let counted = match (&day, used) {
            (Some(_), Some(u)) => u,
            _ => Tokens::default(),
        };
        let (conn, timeout, metrics) = (self.conn.clone(), self.timeout, self.metrics.clone());
        runtime.spawn(async move {
            let began = tokio::time::Instant::now();
            let mut wait = Duration::from_millis(100);
            let mut call = script.prepare_invoke();
            call.arg(&id).arg(charges.len());
            for (slot, leases, charge, ttl) in &charges {
                call.key(slot).key(leases);
                call.arg(charge).arg(ttl);
            }
            call.key(&marker).key(&day_key);
            call.arg(format!("p{field}"))
                .arg(format!("c{field}"))
                .arg(counted.prompt)
                .arg(counted.completion)
                .arg(DAY_TTL.as_secs());
            loop {
                let mut c = conn.clone();
                match tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut c)).await {
                    Ok(Ok(_)) => return,
                    _ if began.elapsed() > SETTLE_TRIES_FOR => {
                        metrics.budget_settle_failures.inc();
                        tracing::error!("a task's tokens could not be charged on Redis within ten minutes; they are not counted");
                        return;
                    }
                    _ => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

impl Drop for SharedReservation {
    fn drop(&mut self) {
        self.finish(None, None);
    }
}
