//! A task's token spend under the budgets that cover it: its worst case,
//! reserved once admission has let it through and before anything is sent
//! upstream, and what it is charged when it ends.
//!
//! The worst case is the prompt at one token per byte of its text (no
//! tokenizer hfconnect meets makes more tokens than bytes: byte-level BPE
//! and SentencePiece with byte fallback spend at least one byte per token),
//! plus [`MARKERS`] per message for the template's role markers, plus the
//! completion cap (the task's `maxTokens`, else the model's
//! `defaults.max_tokens`, which validation requires under a budget).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::prepare::Call;
use crate::access::Principal;
use crate::admission::budget::{Ledger, Reservation, Tokens};
use crate::catalog::{Budget, Catalog, Model, Payer};
use crate::task::{TaskError, TaskErrorKind, TaskOutput};
use crate::untrusted::Untrusted;

/// Tokens a chat template may add around one message (role markers,
/// separators), and around a whole prompt.
pub(super) const MARKERS: u64 = 16;

/// A task's hold on its budgets.
#[derive(Debug)]
pub(super) struct Held {
    reservation: Reservation,
    need: Tokens,
}

/// How a task ended, as its spend sees it.
pub(super) enum Ending<'r> {
    /// With an output or an error; `delivered` tokens were streamed.
    Done(&'r Result<TaskOutput, TaskError>),
    /// Dropped before it ended (a client that went away).
    Cancelled,
}

/// Reserve the worst case of `call` against every budget of `catalog`
/// covering `principal` on `model` of `integration`; `None` when none does.
pub(super) fn reserve(
    ledger: &Ledger,
    catalog: &Catalog,
    principal: &Principal,
    integration: &str,
    model: &Model,
    call: &Call,
) -> Result<Option<Held>, TaskError> {
    let covering: Vec<(&Budget, Payer)> = catalog
        .budgets()
        .iter()
        .filter_map(|b| {
            b.payer(principal, integration, model.name())
                .map(|p| (b, p))
        })
        .collect();
    if covering.is_empty() {
        return Ok(None);
    }
    let need = worst_case(call, model).ok_or_else(|| {
        TaskError::new(
            TaskErrorKind::InvalidInput,
            format!(
                "model `{}` of integration `{integration}` is under budget `{}` and the task names no `maxTokens`",
                model.name(),
                covering[0].0.name()
            ),
        )
    })?;
    let now = SystemTime::now();
    match ledger.reserve(&covering, need, now) {
        Ok(reservation) => Ok(Some(Held { reservation, need })),
        Err(e) => {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let reset = chrono::DateTime::<chrono::Utc>::from_timestamp(e.reset as i64, 0)
                .map_or_else(|| e.reset.to_string(), |t| t.to_rfc3339());
            Err(TaskError::budget_exhausted(
                format!(
                    "budget `{}` has {} of its {} tokens left and the task may use up to {}; it resets at {reset}",
                    Untrusted(&e.budget),
                    e.remaining,
                    e.limit,
                    e.needed
                ),
                Duration::from_secs(e.reset.saturating_sub(secs).max(1)),
            ))
        }
    }
}

/// The most tokens `call` can use: `None` for a generation with no cap.
fn worst_case(call: &Call, model: &Model) -> Option<Tokens> {
    let bytes = |s: &str| s.len() as u64;
    let cap = |task: Option<u32>| {
        task.or(model.defaults().max_tokens.map(std::num::NonZeroU32::get))
            .map(u64::from)
    };
    Some(match call {
        Call::Generate(r) => Tokens {
            prompt: bytes(&r.prompt) + MARKERS,
            completion: cap(r.params.max_tokens)?,
        },
        Call::Chat(r) => Tokens {
            prompt: r
                .messages
                .iter()
                .map(|m| bytes(&m.content) + MARKERS)
                .sum::<u64>()
                + MARKERS,
            completion: cap(r.params.max_tokens)?,
        },
        // The chat route wraps the text in an instruction: a message's worth more.
        Call::Summarize(r) => Tokens {
            prompt: bytes(&r.text) + 4 * MARKERS,
            completion: cap(r.max_length)?,
        },
        Call::Embed(e) => Tokens {
            prompt: e.request.inputs.iter().map(|t| bytes(t) + 2).sum(),
            completion: 0,
        },
    })
}

impl Held {
    /// Charge what the task used: the usage the provider reported; for what
    /// it did not report, the tokens a stream delivered, else the worst
    /// case. A call that failed before streaming anything is refunded; a
    /// cancelled stream is charged its prompt and what it delivered, a
    /// cancelled plain call its worst case (its answer may have been made).
    pub(super) fn settle(self, ending: Ending<'_>, streamed: bool, delivered: u64) {
        let need = self.need;
        let used = match ending {
            Ending::Done(Ok(o)) => Tokens {
                prompt: o.prompt_tokens.map_or(need.prompt, u64::from),
                completion: o.completion_tokens.map_or(
                    if streamed { delivered } else { need.completion },
                    u64::from,
                ),
            },
            Ending::Done(Err(_)) if delivered == 0 => Tokens::default(),
            Ending::Done(Err(_)) => Tokens {
                prompt: need.prompt,
                completion: delivered,
            },
            Ending::Cancelled if streamed => Tokens {
                prompt: need.prompt,
                completion: delivered,
            },
            Ending::Cancelled => need,
        };
        self.reservation.settle(used);
    }
}

/// What a caller may see of the budgets (`GET /v1/usage`): the budgets that
/// cover it, as it stands under each; `ADMIN` sees every payer's spend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageView {
    /// One row per budget and payer, by budget name.
    pub budgets: Vec<BudgetUsage>,
}

/// One budget's spend for one payer, in the window in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetUsage {
    /// The budget.
    pub name: String,
    /// Who it charges (`group:…`, `app:…`, `user:…`).
    pub subject: String,
    /// With `each_member`: the member this row is for.
    pub member: Option<String>,
    /// `day`, `month` or a span in seconds (`3600s`).
    pub window: String,
    /// Tokens per window.
    pub limit: u64,
    /// Charged in this window.
    pub used: u64,
    /// Held by tasks running now.
    pub reserved: u64,
    /// What a task may still reserve.
    pub remaining: u64,
    /// When the window ends and the budget is whole again (RFC 3339, UTC).
    pub resets_at: String,
}

/// The usage `principal` may see.
pub(super) fn usage(ledger: &Ledger, catalog: &Catalog, principal: &Principal) -> UsageView {
    use crate::access::Subject;
    let now = SystemTime::now();
    let applies = |b: &Budget| match b.subject() {
        Subject::Group(g) => principal.groups().iter().any(|pg| pg == g),
        s => s == principal.subject(),
    };
    let mut rows: Vec<(&Budget, crate::admission::budget::Standing)> = Vec::new();
    for b in catalog.budgets() {
        if principal.admin_via().is_some() {
            rows.extend(
                ledger
                    .standing(std::slice::from_ref(b), now)
                    .into_iter()
                    .map(|s| (b, s)),
            );
        }
        if applies(b) {
            let payer = if b.each_member() {
                Payer::Member(principal.subject().clone())
            } else {
                Payer::Whole
            };
            if !rows
                .iter()
                .any(|(r, s)| r.name() == b.name() && s.payer == payer)
            {
                rows.push((b, ledger.standing_of(b, &payer, now)));
            }
        }
    }
    let at = |secs: u64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0)
            .map_or_else(|| secs.to_string(), |t| t.to_rfc3339())
    };
    UsageView {
        budgets: rows
            .into_iter()
            .map(|(b, s)| BudgetUsage {
                name: b.name().to_string(),
                subject: b.subject().to_string(),
                member: match &s.payer {
                    Payer::Member(m) => Some(m.to_string()),
                    Payer::Whole => None,
                },
                window: b.window().describe(),
                limit: s.limit,
                used: s.used,
                reserved: s.reserved,
                remaining: s.remaining(),
                resets_at: at(s.span.end),
            })
            .collect(),
    }
}
