//! Token budgets' spend, in process: a task's worst case is reserved against
//! every budget that covers it, all or none, before any upstream call; when
//! the call ends the reservation is settled to what the task used (a failed
//! call settles to nothing). A reservation dropped without being settled is
//! charged in full: an outcome nobody reported never under-counts.
//!
//! Spend is kept per budget and payer (the budget's subject, or one member
//! for `each_member`) for the window in force. A budget keeps its spend
//! across reloads while its name, subject, target and window are unchanged
//! (its identity); a changed limit applies to the next task.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::catalog::{Budget, Counts, Payer, Span};

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

/// What identifies a budget's spend across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity(Arc<str>);

impl Identity {
    fn of(b: &Budget) -> Identity {
        let target = b
            .target()
            .map_or_else(|| "*".to_string(), ToString::to_string);
        Identity(
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                b.name(),
                b.subject(),
                b.each_member(),
                target,
                b.window().describe()
            )
            .into(),
        )
    }
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

type Slots = Mutex<FxHashMap<Key, Slot>>;

/// The spend of every budget, shared by the snapshots a reload replaces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    slots: Arc<Slots>,
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
    slots: Arc<Slots>,
    lines: Vec<Line>,
    settled: bool,
}

impl Ledger {
    /// Reserve `need` against each of `covering` (a budget and who pays),
    /// all or none: the first budget it does not fit refuses it.
    pub(crate) fn reserve(
        &self,
        covering: &[(&Budget, Payer)],
        need: Tokens,
        now: SystemTime,
    ) -> Result<Reservation, Exhausted> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines = Vec::with_capacity(covering.len());
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
                return Err(Exhausted {
                    budget: b.name().into(),
                    limit,
                    remaining,
                    needed,
                    reset: span.end,
                });
            }
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
        }
        drop(slots);
        Ok(Reservation {
            slots: self.slots.clone(),
            lines,
            settled: false,
        })
    }

    /// Each of `budgets`' spend for `payer`s seen so far, in the window in
    /// force at `now`.
    pub(crate) fn standing(&self, budgets: &[Budget], now: SystemTime) -> Vec<Standing> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
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
}

impl Ledger {
    /// One budget's spend for one payer at `now` (nothing spent when unseen).
    pub(crate) fn standing_of(&self, b: &Budget, payer: &Payer, now: SystemTime) -> Standing {
        let span = b.window().span_at(now);
        let key = Key {
            budget: Identity::of(b),
            payer: payer.clone(),
        };
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for l in &self.lines {
            let Some(slot) = slots.get_mut(&l.key) else {
                continue;
            };
            slot.reserved = slot.reserved.saturating_sub(l.reserved);
            let charge = used.map_or(l.reserved, |u| l.counts.charge(u.prompt, u.completion));
            if slot.span == l.span {
                slot.used = slot.used.saturating_add(charge);
            }
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
        let r = l
            .reserve(&[(&b, Payer::Whole)], t(10, 50), at(DAY))
            .unwrap();
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
        let held = l
            .reserve(&[(&b, Payer::Whole)], t(20, 60), at(DAY + 5))
            .unwrap();
        let e = l
            .reserve(&[(&b, Payer::Whole)], t(10, 20), at(DAY + 6))
            .unwrap_err();
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
        l.reserve(&[(&b, Payer::Whole)], t(10, 20), at(DAY + 7))
            .unwrap()
            .settle(t(1, 1));
    }

    #[test]
    fn all_or_none_across_budgets() {
        let l = Ledger::default();
        let roomy = budget("roomy", 1_000, Window::Day, Counts::All);
        let tight = budget("tight", 10, Window::Day, Counts::Completion);
        let e = l
            .reserve(
                &[(&roomy, Payer::Whole), (&tight, Payer::Whole)],
                t(5, 20),
                at(DAY),
            )
            .unwrap_err();
        assert_eq!(e.budget.as_ref(), "tight");
        // Nothing was held against the budget that had room.
        assert!(l.standing(std::slice::from_ref(&roomy), at(DAY)).is_empty());
        let r = l
            .reserve(
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
        l.reserve(&[(&b, Payer::Whole)], t(10, 30), at(DAY))
            .unwrap()
            .settle(Tokens::default());
        assert_eq!(l.standing(std::slice::from_ref(&b), at(DAY))[0].used, 0);
        drop(
            l.reserve(&[(&b, Payer::Whole)], t(10, 30), at(DAY))
                .unwrap(),
        );
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
        l.reserve(&[(&b, Payer::Whole)], t(0, 90), at(10))
            .unwrap()
            .settle(t(0, 90));
        assert!(l.reserve(&[(&b, Payer::Whole)], t(0, 20), at(20)).is_err());
        // In flight across the hour: it still holds room in the next one.
        let late = l
            .reserve(&[(&b, Payer::Whole)], t(0, 10), at(3_599))
            .unwrap();
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
        l.reserve(&[(&b, alice.clone())], t(0, 50), at(DAY))
            .unwrap()
            .settle(t(0, 50));
        assert!(l.reserve(&[(&b, alice.clone())], t(0, 1), at(DAY)).is_err());
        l.reserve(&[(&b, bob)], t(0, 50), at(DAY))
            .unwrap()
            .settle(t(0, 1));
        // A raised limit keeps the spend; a changed window starts afresh.
        b.tokens = NonZeroU64::new(60).unwrap();
        l.reserve(&[(&b, alice.clone())], t(0, 10), at(DAY))
            .unwrap()
            .settle(t(0, 10));
        assert!(l.reserve(&[(&b, alice.clone())], t(0, 1), at(DAY)).is_err());
        b.window = Window::Day;
        l.reserve(&[(&b, alice)], t(0, 60), at(DAY))
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
