//! Token budgets' spend, in process: a task's worst case is reserved against
//! every budget that covers it, all or none, before any upstream call; when
//! the call ends the reservation is settled to what the task used (a failed
//! call settles to nothing). A reservation dropped without being settled is
//! charged in full: an outcome nobody reported never under-counts.
//!
//! Spend is kept per budget and payer (the budget's subject, or one member
//! for `each_member`) for the window in force. A budget keeps its spend
//! across reloads while its name, subject, target and window are unchanged
//! (its identity); a changed limit applies to the next task. With a
//! [`Store`], every change is also written to disk, and what the store held
//! is where a new process starts. The tokens each subject used on each model
//! by UTC day are kept beside the budgets (`GET /v1/usage`'s history).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::store::{DayRow, Loaded, SlotRow, Store, StoreError, KEEP_DAYS};
use crate::access::Subject;
use crate::catalog::{Budget, Counts, Payer, Span, TokenHeadroom};

/// Tokens a task may use, or used: its prompt (input) and its completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

/// Why a task does not fit: the budget, what is left of it, what the task
/// needed, and when it resets (seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub budget: Arc<str>,
    pub limit: u64,
    pub remaining: u64,
    pub needed: u64,
    pub reset: u64,
}

/// A budget's spend as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Standing {
    pub budget: Arc<str>,
    pub payer: Payer,
    pub limit: u64,
    pub used: u64,
    pub reserved: u64,
    pub span: Span,
}

impl Standing {
    pub(crate) fn remaining(&self) -> u64 {
        self.limit
            .saturating_sub(self.used.saturating_add(self.reserved))
    }
}

/// Why the in-process ledger did not reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalRefusal {
    /// A budget has not got room.
    Exhausted(Exhausted),
    /// The usage store cannot be used (in words).
    Store(String),
}

/// What identifies a budget's spend across reloads and restarts: its name,
/// subject, members, target and window, as one JSON array (what the store
/// and the Redis keys are named by).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity(pub(crate) Arc<str>);

impl Identity {
    pub(crate) fn of(b: &Budget) -> Identity {
        let target = b
            .target()
            .map_or_else(|| "*".to_string(), ToString::to_string);
        let parts = [
            b.name().to_string(),
            subject_key(b.subject()),
            b.each_member().to_string(),
            target,
            b.window().describe(),
        ];
        Identity(serde_json::to_string(&parts).unwrap_or_default().into())
    }
}

/// A subject as the store and Redis name it: its kind and raw id.
pub(crate) fn subject_key(s: &Subject) -> String {
    match s {
        Subject::User(id) => format!("user:{id}"),
        Subject::Group(id) => format!("group:{id}"),
        Subject::App(id) => format!("app:{id}"),
    }
}

/// A payer as the store and Redis name it: `""` for the whole subject.
pub(crate) fn payer_key(p: &Payer) -> String {
    match p {
        Payer::Whole => String::new(),
        Payer::Member(s) => subject_key(s),
    }
}

/// The payer a store or Redis names (`None`: not one this version reads).
pub(crate) fn payer_of(key: &str) -> Option<Payer> {
    if key.is_empty() {
        return Some(Payer::Whole);
    }
    key.parse::<Subject>().ok().map(Payer::Member)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    budget: Identity,
    payer: Payer,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    span: Span,
    used: u64,
    reserved: u64,
}

/// Tokens by UTC day, subject, integration and model.
pub(crate) type DayKey = (u64, Arc<str>, Arc<str>, Arc<str>);

/// The most (day, subject, model) rows kept in memory: a caller id is the
/// caller's to choose, and each new one adds rows. Past it, new rows are
/// counted in the store only (and a warning says so, once).
const MAX_DAY_ROWS: usize = 200_000;

#[derive(Debug, Default)]
struct Days {
    rows: FxHashMap<DayKey, Tokens>,
    full_warned: bool,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Mutex<FxHashMap<Key, Slot>>,
    days: Mutex<Days>,
    /// Where the store is, for a ledger kept on disk.
    path: Option<PathBuf>,
    /// Opened on first use (a command that charges nothing never takes
    /// the store's lock): the store, or why it cannot be used.
    store: OnceLock<Result<Store, String>>,
}

impl Inner {
    /// The store, when it is open and usable.
    fn store(&self) -> Option<&Store> {
        self.store.get().and_then(|s| s.as_ref().ok())
    }
}

/// The spend of every budget, shared by the snapshots a reload replaces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    inner: Arc<Inner>,
}

/// One budget's part of a reservation.
#[derive(Debug)]
struct Line {
    key: Key,
    span: Span,
    counts: Counts,
    reserved: u64,
}

/// A task's reservation: settle it with what the task used.
#[derive(Debug)]
pub(crate) struct Reservation {
    inner: Arc<Inner>,
    lines: Vec<Line>,
    settled: bool,
}

fn secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Ledger {
    /// A ledger kept on disk at `path`: the store is opened, and what it
    /// holds loaded, when the ledger is first used ([`Ledger::ready`]).
    pub(crate) fn on_disk(path: &Path) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                path: Some(path.to_path_buf()),
                ..Inner::default()
            }),
        }
    }

    /// A ledger in memory holding what the store at `path` holds now, read
    /// without writing or locking it (`hfconnect usage` beside `serve`).
    pub(crate) fn read_copy(path: &Path, now: SystemTime) -> Result<Ledger, StoreError> {
        let loaded = super::store::read_only(path, secs(now))?;
        let ledger = Ledger::default();
        ledger.load_rows(loaded, true);
        Ok(ledger)
    }

    /// Open the store, once, loading what it holds: `Err` (now and for
    /// good) when it cannot be used — every budgeted task is then refused.
    pub(crate) fn ready(&self) -> Result<(), String> {
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        let opened = self.inner.store.get_or_init(|| {
            match Store::open(path, secs(SystemTime::now())) {
                Ok((store, loaded)) => {
                    self.load_rows(loaded, false);
                    Ok(store)
                }
                Err(e) => {
                    tracing::error!(error = %e, "the usage store cannot be used: tasks under a budget are refused");
                    Err(e.to_string())
                }
            }
        });
        opened.as_ref().map(drop).map_err(Clone::clone)
    }

    fn load_rows(&self, loaded: Loaded, with_reserved: bool) {
        let mut slots = self.lock_slots();
        let mut unread = 0usize;
        for row in loaded.slots {
            let Some(payer) = payer_of(&row.payer) else {
                unread += 1;
                continue;
            };
            let key = Key {
                budget: Identity(row.budget.into()),
                payer,
            };
            slots.insert(
                key,
                Slot {
                    span: row.span,
                    used: row.used,
                    reserved: if with_reserved { row.reserved } else { 0 },
                },
            );
        }
        drop(slots);
        if unread > 0 {
            tracing::warn!(
                rows = unread,
                "rows of the usage store name payers this version cannot read; they are left alone"
            );
        }
        let mut days = self.lock_days();
        for r in loaded.days {
            if days.rows.len() >= MAX_DAY_ROWS {
                break;
            }
            days.rows.insert(
                (
                    r.day,
                    r.subject.into(),
                    r.integration.into(),
                    r.model.into(),
                ),
                Tokens {
                    prompt: r.prompt,
                    completion: r.completion,
                },
            );
        }
    }

    /// Where it is kept on disk, if it is.
    pub(crate) fn store_path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Wait until every change so far is on disk (a no-op in memory).
    pub(crate) fn flush(&self) {
        if let Some(s) = self.inner.store() {
            s.flush();
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, FxHashMap<Key, Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_days(&self) -> std::sync::MutexGuard<'_, Days> {
        self.inner
            .days
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserve `need` against each of `covering` (a budget and who pays),
    /// all or none: the first budget it does not fit refuses it. Admitted,
    /// the reservation and what each budget has left.
    pub(crate) fn reserve(
        &self,
        covering: &[(&Budget, Payer)],
        need: Tokens,
        now: SystemTime,
    ) -> Result<(Reservation, Vec<TokenHeadroom>), LocalRefusal> {
        self.ready().map_err(LocalRefusal::Store)?;
        let mut slots = self.lock_slots();
        let mut lines = Vec::with_capacity(covering.len());
        let mut left = Vec::with_capacity(covering.len());
        for (b, payer) in covering {
            let span = b.window().span_at(now);
            let key = Key {
                budget: Identity::of(b),
                payer: payer.clone(),
            };
            let slot = slots.get(&key).copied().map_or(
                Slot {
                    span,
                    used: 0,
                    reserved: 0,
                },
                |s| roll(s, span),
            );
            let needed = b.counts().charge(need.prompt, need.completion);
            let limit = b.tokens().get();
            let remaining = limit.saturating_sub(slot.used.saturating_add(slot.reserved));
            if needed > remaining {
                return Err(LocalRefusal::Exhausted(Exhausted {
                    budget: b.name().into(),
                    limit,
                    remaining,
                    needed,
                    reset: span.end,
                }));
            }
            left.push(TokenHeadroom {
                limit,
                remaining: remaining - needed,
                reset_at: span.end,
            });
            lines.push(Line {
                key,
                span,
                counts: b.counts(),
                reserved: needed,
            });
        }
        for l in &lines {
            let slot = slots.entry(l.key.clone()).or_insert(Slot {
                span: l.span,
                used: 0,
                reserved: 0,
            });
            *slot = roll(*slot, l.span);
            slot.reserved = slot.reserved.saturating_add(l.reserved);
            self.write(&l.key, slot);
        }
        drop(slots);
        Ok((
            Reservation {
                inner: self.inner.clone(),
                lines,
                settled: false,
            },
            left,
        ))
    }

    fn write(&self, key: &Key, slot: &Slot) {
        write_slot(&self.inner, key, slot);
    }

    /// Each of `budgets`' spend for `payer`s seen so far, in the window in
    /// force at `now`.
    pub(crate) fn standing(&self, budgets: &[Budget], now: SystemTime) -> Vec<Standing> {
        let slots = self.lock_slots();
        let mut out = Vec::new();
        for b in budgets {
            let id = Identity::of(b);
            let span = b.window().span_at(now);
            for (k, s) in slots.iter().filter(|(k, _)| k.budget == id) {
                let s = roll(*s, span);
                out.push(Standing {
                    budget: b.name().into(),
                    payer: k.payer.clone(),
                    limit: b.tokens().get(),
                    used: s.used,
                    reserved: s.reserved,
                    span,
                });
            }
        }
        out.sort_by(|a, b| (&a.budget, &a.payer).cmp(&(&b.budget, &b.payer)));
        out
    }

    /// One budget's spend for one payer at `now` (nothing spent when unseen).
    pub(crate) fn standing_of(&self, b: &Budget, payer: &Payer, now: SystemTime) -> Standing {
        let span = b.window().span_at(now);
        let key = Key {
            budget: Identity::of(b),
            payer: payer.clone(),
        };
        let slots = self.lock_slots();
        let s = slots.get(&key).map_or(
            Slot {
                span,
                used: 0,
                reserved: 0,
            },
            |s| roll(*s, span),
        );
        Standing {
            budget: b.name().into(),
            payer: payer.clone(),
            limit: b.tokens().get(),
            used: s.used,
            reserved: s.reserved,
            span,
        }
    }

    /// Count `used` for `subject` on a model, in the UTC day of `now`.
    pub(crate) fn record_day(
        &self,
        subject: &Subject,
        integration: &str,
        model: &str,
        used: Tokens,
        now: SystemTime,
    ) {
        if used == Tokens::default() || self.ready().is_err() {
            return;
        }
        let day = secs(now) / 86_400;
        let subject: Arc<str> = subject_key(subject).into();
        if let Some(store) = self.inner.store() {
            store.day(DayRow {
                day,
                subject: subject.to_string(),
                integration: integration.to_string(),
                model: model.to_string(),
                prompt: used.prompt,
                completion: used.completion,
            });
        }
        let mut days = self.lock_days();
        let key: DayKey = (day, subject, integration.into(), model.into());
        if let Some(t) = days.rows.get_mut(&key) {
            t.prompt = t.prompt.saturating_add(used.prompt);
            t.completion = t.completion.saturating_add(used.completion);
            return;
        }
        if days.rows.len() >= MAX_DAY_ROWS {
            let oldest = day.saturating_sub(KEEP_DAYS);
            days.rows.retain(|k, _| k.0 >= oldest);
        }
        if days.rows.len() >= MAX_DAY_ROWS {
            if !days.full_warned {
                days.full_warned = true;
                tracing::warn!(rows = MAX_DAY_ROWS, "the usage history in memory is full; new subjects' tokens by day are kept in the store only");
            }
            return;
        }
        days.rows.insert(key, used);
    }

    /// The tokens by day since `since` (days since the epoch), of the
    /// subjects `shown` lets through.
    pub(crate) fn days(&self, since: u64, shown: impl Fn(&str) -> bool) -> Vec<(DayKey, Tokens)> {
        let days = self.lock_days();
        let mut out: Vec<(DayKey, Tokens)> = days
            .rows
            .iter()
            .filter(|(k, _)| k.0 >= since && shown(&k.1))
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn write_slot(inner: &Inner, key: &Key, slot: &Slot) {
    if let Some(store) = inner.store() {
        store.slot(SlotRow {
            budget: key.budget.0.to_string(),
            payer: payer_key(&key.payer),
            span: slot.span,
            used: slot.used,
            reserved: slot.reserved,
        });
    }
}

/// A slot as of window `span`: a later window starts with nothing used, and
/// with the reservations still in flight (they hold room until they settle).
fn roll(s: Slot, span: Span) -> Slot {
    if s.span.start < span.start {
        Slot {
            span,
            used: 0,
            reserved: s.reserved,
        }
    } else {
        s
    }
}

impl Reservation {
    /// Settle to what the task used: the reservation is released, and what
    /// each budget counts of `used` is charged to the window the task was
    /// admitted in (nothing once that window is over).
    pub(crate) fn settle(mut self, used: Tokens) {
        self.finish(Some(used));
    }

    /// Charge what the task used so far, or in full when nobody said.
    fn finish(&mut self, used: Option<Tokens>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for l in &self.lines {
            let Some(slot) = slots.get_mut(&l.key) else {
                continue;
            };
            slot.reserved = slot.reserved.saturating_sub(l.reserved);
            let charge = used.map_or(l.reserved, |u| l.counts.charge(u.prompt, u.completion));
            if slot.span == l.span {
                slot.used = slot.used.saturating_add(charge);
            }
            write_slot(&self.inner, &l.key, slot);
        }
    }

    /// What the task reserved against each budget.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reserved(&self) -> impl Iterator<Item = u64> + '_ {
        self.lines.iter().map(|l| l.reserved)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::access::{Subject, Target};
    use crate::catalog::Window;
    use crate::origin::Origin;

    fn budget(name: &str, tokens: u64, window: Window, counts: Counts) -> Budget {
        Budget {
            name: name.into(),
            subject: Subject::Group("support".into()),
            each_member: false,
            target: Some(Target::Integration("hf".into())),
            tokens: NonZeroU64::new(tokens).unwrap(),
            window,
            counts,
            description: None,
            origin: Origin::builtin("budgets"),
        }
    }

    fn reserve(
        l: &Ledger,
        covering: &[(&Budget, Payer)],
        need: Tokens,
        now: SystemTime,
    ) -> Result<Reservation, Exhausted> {
        match l.reserve(covering, need, now) {
            Ok((r, _)) => Ok(r),
            Err(LocalRefusal::Exhausted(e)) => Err(e),
            Err(LocalRefusal::Store(why)) => panic!("{why}"),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const DAY: u64 = 86_400;

    fn t(prompt: u64, completion: u64) -> Tokens {
        Tokens { prompt, completion }
    }

    #[test]
    fn reserve_then_settle_charges_what_was_used() {
        let l = Ledger::default();
        let b = budget("b", 100, Window::Day, Counts::All);
        let r = reserve(&l, &[(&b, Payer::Whole)], t(10, 50), at(DAY)).unwrap();
        assert_eq!(
            l.standing(std::slice::from_ref(&b), at(DAY))[0].reserved,
            60
        );
        r.settle(t(10, 5));
        let s = &l.standing(std::slice::from_ref(&b), at(DAY))[0];
        assert_eq!((s.used, s.reserved, s.remaining()), (15, 0, 85));
    }

    #[test]
    fn a_task_that_does_not_fit_is_refused_with_the_reset() {
        let l = Ledger::default();
        let b = budget("daily", 100, Window::Day, Counts::All);
        let held = reserve(&l, &[(&b, Payer::Whole)], t(20, 60), at(DAY + 5)).unwrap();
        let e = reserve(&l, &[(&b, Payer::Whole)], t(10, 20), at(DAY + 6)).unwrap_err();
        assert_eq!(
            e,
            Exhausted {
                budget: "daily".into(),
                limit: 100,
                remaining: 20,
                needed: 30,
                reset: 2 * DAY,
            }
        );
        held.settle(t(20, 0));
        // Settled to 20 used: 80 left, and the same task fits now.
        reserve(&l, &[(&b, Payer::Whole)], t(10, 20), at(DAY + 7))
            .unwrap()
            .settle(t(1, 1));
    }

    #[test]
    fn all_or_none_across_budgets() {
        let l = Ledger::default();
        let roomy = budget("roomy", 1_000, Window::Day, Counts::All);
        let tight = budget("tight", 10, Window::Day, Counts::Completion);
        let e = reserve(
            &l,
            &[(&roomy, Payer::Whole), (&tight, Payer::Whole)],
            t(5, 20),
            at(DAY),
        )
        .unwrap_err();
        assert_eq!(e.budget.as_ref(), "tight");
        // Nothing was held against the budget that had room.
        assert!(l.standing(std::slice::from_ref(&roomy), at(DAY)).is_empty());
        let r = reserve(
            &l,
            &[(&roomy, Payer::Whole), (&tight, Payer::Whole)],
            t(5, 10),
            at(DAY),
        )
        .unwrap();
        assert_eq!(r.reserved().collect::<Vec<_>>(), vec![15, 10]);
        r.settle(t(5, 3));
        let s = l.standing(&[roomy, tight], at(DAY));
        assert_eq!((s[0].used, s[1].used), (8, 3), "each counts its own tokens");
    }

    #[test]
    fn failed_calls_are_refunded_and_unreported_ones_charged_in_full() {
        let l = Ledger::default();
        let b = budget("b", 100, Window::Day, Counts::All);
        reserve(&l, &[(&b, Payer::Whole)], t(10, 30), at(DAY))
            .unwrap()
            .settle(Tokens::default());
        assert_eq!(l.standing(std::slice::from_ref(&b), at(DAY))[0].used, 0);
        drop(reserve(&l, &[(&b, Payer::Whole)], t(10, 30), at(DAY)).unwrap());
        let s = &l.standing(&[b], at(DAY))[0];
        assert_eq!((s.used, s.reserved), (40, 0));
    }

    #[test]
    fn windows_reset_and_in_flight_reservations_carry_over() {
        let l = Ledger::default();
        let b = budget(
            "hourly",
            100,
            Window::Every(Duration::from_secs(3_600)),
            Counts::All,
        );
        reserve(&l, &[(&b, Payer::Whole)], t(0, 90), at(10))
            .unwrap()
            .settle(t(0, 90));
        assert!(reserve(&l, &[(&b, Payer::Whole)], t(0, 20), at(20)).is_err());
        // In flight across the hour: it still holds room in the next one.
        let late = reserve(&l, &[(&b, Payer::Whole)], t(0, 10), at(3_599)).unwrap();
        let s = &l.standing(std::slice::from_ref(&b), at(3_600))[0];
        assert_eq!((s.used, s.reserved, s.span.start), (0, 10, 3_600));
        late.settle(t(0, 10));
        // Charged to the hour it was admitted in, which is over.
        let s = &l.standing(&[b], at(3_601))[0];
        assert_eq!((s.used, s.reserved), (0, 0));
    }

    #[test]
    fn members_pay_apart_and_identity_survives_a_changed_limit() {
        let l = Ledger::default();
        let mut b = budget("each", 50, Window::Month, Counts::All);
        b.each_member = true;
        let alice = Payer::Member(Subject::User("alice".into()));
        let bob = Payer::Member(Subject::User("bob".into()));
        reserve(&l, &[(&b, alice.clone())], t(0, 50), at(DAY))
            .unwrap()
            .settle(t(0, 50));
        assert!(reserve(&l, &[(&b, alice.clone())], t(0, 1), at(DAY)).is_err());
        reserve(&l, &[(&b, bob)], t(0, 50), at(DAY))
            .unwrap()
            .settle(t(0, 1));
        // A raised limit keeps the spend; a changed window starts afresh.
        b.tokens = NonZeroU64::new(60).unwrap();
        reserve(&l, &[(&b, alice.clone())], t(0, 10), at(DAY))
            .unwrap()
            .settle(t(0, 10));
        assert!(reserve(&l, &[(&b, alice.clone())], t(0, 1), at(DAY)).is_err());
        b.window = Window::Day;
        reserve(&l, &[(&b, alice)], t(0, 60), at(DAY))
            .unwrap()
            .settle(t(0, 0));
    }

    #[test]
    fn months_are_calendar_months_in_utc() {
        // 2026-02-10T12:00:00Z
        let s = Window::Month.span_at(at(1_770_724_800));
        assert_eq!((s.start, s.end), (1_769_904_000, 1_772_323_200));
        let s = Window::Day.span_at(at(1_770_724_800));
        assert_eq!((s.start, s.end), (1_770_681_600, 1_770_768_000));
    }
}
