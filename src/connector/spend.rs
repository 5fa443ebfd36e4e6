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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::prepare::Call;
use crate::access::Principal;
use crate::admission::budget::Tokens;
use crate::admission::{Admission, DayOf, Hold, TokenRefusal};
use crate::catalog::{Budget, Catalog, Model, Payer, TokenHeadroom};
use crate::metrics::AdmissionMetrics;
use crate::task::{TaskError, TaskErrorKind, TaskOutput};
use crate::untrusted::Untrusted;

/// Tokens a chat template may add around one message (role markers,
/// separators), and around a whole prompt.
pub(super) const MARKERS: u64 = 16;

/// A task's hold on its budgets.
#[derive(Debug)]
pub(super) struct Held {
    hold: Hold,
    /// The budgets reserved against, by name.
    pub(super) budgets: Vec<Arc<str>>,
    /// What is left of the tightest of them.
    pub(super) headroom: Option<TokenHeadroom>,
}

/// How a task ended, as its spend sees it.
pub(super) enum Ending<'r> {
    /// With an output or an error; `delivered` tokens were streamed.
    Done(&'r Result<TaskOutput, TaskError>),
    /// Dropped before it ended (a client that went away).
    Cancelled,
}

/// What a task was charged: the tokens, and the budgets they were charged to.
#[derive(Debug, Default, Clone)]
pub(super) struct Charged {
    pub tokens: Tokens,
    pub budgets: Vec<Arc<str>>,
}

/// Reserve the worst case of `call` against every budget of `catalog`
/// covering `principal` on `model` of `integration`; `None` when none does.
pub(super) async fn reserve(
    admission: &Admission,
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
    match admission.reserve_tokens(&covering, need).await {
        Ok((hold, left)) => {
            let m = admission.metrics();
            for ((b, payer), l) in covering.iter().zip(&left) {
                if *payer == Payer::Whole {
                    m.budget_remaining
                        .with_label_values(&[b.name()])
                        .set(i64::try_from(l.remaining).unwrap_or(i64::MAX));
                }
            }
            Ok(Some(Held {
                hold,
                budgets: covering.iter().map(|(b, _)| Arc::from(b.name())).collect(),
                headroom: TokenHeadroom::tightest(left),
            }))
        }
        Err(TokenRefusal::Unavailable(e)) => Err(TaskError::overloaded(e.message, e.retry_after)),
        Err(TokenRefusal::Exhausted(e)) => {
            let now = SystemTime::now();
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if let Some((b, Payer::Whole)) = covering.iter().find(|(b, _)| *b.name() == *e.budget) {
                admission
                    .metrics()
                    .budget_remaining
                    .with_label_values(&[b.name()])
                    .set(i64::try_from(e.remaining).unwrap_or(i64::MAX));
            }
            Err(TaskError::budget_exhausted(
                format!(
                    "budget `{}` has {} of its {} tokens left and the task may use up to {}; it resets at {}",
                    Untrusted(&e.budget),
                    e.remaining,
                    e.limit,
                    e.needed,
                    rfc3339(e.reset)
                ),
                Duration::from_secs(e.reset.saturating_sub(secs).max(1)),
            ))
        }
    }
}

pub(super) fn rfc3339(secs: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0)
        .map_or_else(|| secs.to_string(), |t| t.to_rfc3339())
}

/// The most tokens `call` can use: `None` for a generation with no cap.
pub(super) fn worst_case(call: &Call, model: &Model) -> Option<Tokens> {
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

/// What a task used, as it is charged: the usage the provider reported;
/// for what it did not report, the tokens a stream delivered, else the
/// worst case (`need`; without one, nothing more). A call that failed
/// before streaming anything used nothing; a cancelled stream used its
/// prompt and what it delivered, a cancelled plain call its worst case (its
/// answer may have been made).
pub(super) fn used(
    ending: Ending<'_>,
    streamed: bool,
    delivered: u64,
    need: Option<Tokens>,
) -> Tokens {
    let need = need.unwrap_or_default();
    match ending {
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
    }
}

impl Held {
    /// Charge what the task used to every budget it reserved against, and
    /// to `day`'s history.
    pub(super) fn settle(
        self,
        admission: &Admission,
        used: Tokens,
        day: DayOf<'_>,
    ) -> Vec<Arc<str>> {
        admission.settle(self.hold, used, day);
        self.budgets
    }
}

/// Count a task's tokens by the caller's groups (catalog names only).
pub(super) fn count_by_group(
    metrics: &AdmissionMetrics,
    catalog: &Catalog,
    principal: &Principal,
    labels: (&str, &str),
    used: Tokens,
) {
    if used == Tokens::default() {
        return;
    }
    for g in principal.groups() {
        if catalog.policy().has_group(g) {
            for (kind, n) in [("prompt", used.prompt), ("completion", used.completion)] {
                metrics
                    .group_tokens
                    .with_label_values(&[g, labels.0, labels.1, kind])
                    .inc_by(n);
            }
        }
    }
}

/// What a caller may see of the budgets and the tokens used
/// (`GET /v1/usage`, `hfconnect usage`): the budgets that cover it, as it
/// stands under each, and its tokens by day; `ADMIN` sees every payer's
/// spend and everyone's tokens.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageView {
    /// One row per budget and payer, by budget name.
    pub budgets: Vec<BudgetUsage>,
    /// Tokens by UTC day, subject and model, for the last 31
    /// days (today included), oldest first; days without tokens are left out.
    pub history: Vec<DayUsage>,
}

/// How many days of history a usage view shows.
pub const HISTORY_DAYS: u64 = 31;

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

/// The tokens one subject used on one model in one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayUsage {
    /// The day (`YYYY-MM-DD`, UTC).
    pub day: String,
    /// Who ran the tasks (`user:…`, `app:…`).
    pub subject: String,
    /// The integration and model.
    pub integration: String,
    pub model: String,
    /// Prompt (input) and completion tokens charged.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The usage `principal` may see on `admission`'s backend.
pub(super) async fn usage(
    admission: &Admission,
    catalog: &Catalog,
    principal: &Principal,
) -> Result<UsageView, TaskError> {
    use crate::access::Subject;
    let admin = principal.admin_via().is_some();
    let applies = |b: &Budget| match b.subject() {
        Subject::Group(g) => principal.groups().iter().any(|pg| pg == g),
        s => s == principal.subject(),
    };
    let mut asked: Vec<(&Budget, Option<Payer>)> = Vec::new();
    for b in catalog.budgets() {
        if admin {
            asked.push((b, None));
        }
        if applies(b) {
            let payer = if b.each_member() {
                Payer::Member(principal.subject().clone())
            } else {
                Payer::Whole
            };
            asked.push((b, Some(payer)));
        }
    }
    let unavailable =
        |e: crate::admission::AdmissionError| TaskError::overloaded(e.message, e.retry_after);
    let standing = admission.standing(&asked).await.map_err(unavailable)?;
    let mut rows: Vec<BudgetUsage> = Vec::new();
    for s in standing {
        let Some(b) = catalog.budgets().iter().find(|b| *b.name() == *s.budget) else {
            continue;
        };
        let member = match &s.payer {
            Payer::Member(m) => Some(m.to_string()),
            Payer::Whole => None,
        };
        if rows
            .iter()
            .any(|r| r.name == b.name() && r.member == member)
        {
            continue;
        }
        rows.push(BudgetUsage {
            name: b.name().to_string(),
            subject: b.subject().to_string(),
            member,
            window: b.window().describe(),
            limit: s.limit,
            used: s.used,
            reserved: s.reserved,
            remaining: s.remaining(),
            resets_at: rfc3339(s.span.end),
        });
    }
    rows.sort_by(|a, b| (&a.name, &a.member).cmp(&(&b.name, &b.member)));
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        / 86_400;
    let mine = crate::admission::budget::subject_key(principal.subject());
    let history = admission
        .days(today.saturating_sub(HISTORY_DAYS - 1))
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|((_, s, _, _), _)| admin || *s == mine)
        .map(|((day, subject, integration, model), t)| DayUsage {
            day: chrono::DateTime::<chrono::Utc>::from_timestamp((day * 86_400) as i64, 0)
                .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string()),
            subject: subject
                .parse::<Subject>()
                .map_or_else(|_| Untrusted(&subject).to_string(), |s| s.to_string()),
            integration: Untrusted(&integration).to_string(),
            model: Untrusted(&model).to_string(),
            prompt_tokens: t.prompt,
            completion_tokens: t.completion,
        })
        .collect();
    Ok(UsageView {
        budgets: rows,
        history,
    })
}
