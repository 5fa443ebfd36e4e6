//! Token budgets as the catalog holds them: who is charged (a subject, or
//! each member of a group), on what (an integration, a model, or
//! everything), how many tokens per window (a UTC day, a UTC month, or a
//! fixed span), and which tokens count. Which budgets cover a task, and the
//! window a moment falls in, are answered here; what was spent is admission's.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use crate::access::{Principal, Subject, Target};
use crate::origin::Origin;

/// What is left of the tightest budget a task was admitted under, once its
/// worst case was reserved: what `x-ratelimit-remaining-tokens` and
/// `x-ratelimit-reset-tokens` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHeadroom {
    /// The budget's tokens per window.
    pub limit: u64,
    /// Tokens left for other tasks.
    pub remaining: u64,
    /// When the budget's window ends (seconds since the Unix epoch).
    pub reset_at: u64,
}

impl TokenHeadroom {
    /// The tightest of `rows` (fewest tokens left).
    pub(crate) fn tightest(rows: impl IntoIterator<Item = TokenHeadroom>) -> Option<Self> {
        rows.into_iter().min_by_key(|h| (h.remaining, h.reset_at))
    }
}

/// A window of a budget: its spend starts again at each window's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// A calendar day in UTC.
    Day,
    /// A calendar month in UTC.
    Month,
    /// Back-to-back spans of this length since the Unix epoch.
    Every(Duration),
}

/// One window: when it starts and when the next one does (seconds since
/// the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The first second of the window.
    pub start: u64,
    /// The first second of the next window: when the budget resets.
    pub end: u64,
}

impl Window {
    /// The window `now` falls in.
    pub fn span_at(&self, now: SystemTime) -> Span {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self {
            Window::Every(d) => {
                let len = d.as_secs().max(1);
                let start = secs - secs % len;
                Span {
                    start,
                    end: start.saturating_add(len),
                }
            }
            Window::Day => {
                let start = secs - secs % 86_400;
                Span {
                    start,
                    end: start + 86_400,
                }
            }
            Window::Month => {
                let at = DateTime::<Utc>::from_timestamp(secs as i64, 0).unwrap_or_default();
                let first = |y: i32, m: u32| {
                    NaiveDate::from_ymd_opt(y, m, 1)
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|t| Utc.from_utc_datetime(&t).timestamp().max(0) as u64)
                };
                let (y, m) = (at.year(), at.month());
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                match (first(y, m), first(ny, nm)) {
                    (Some(start), Some(end)) => Span { start, end },
                    // Outside chrono's calendar: one day, rather than no window.
                    _ => Window::Day.span_at(now),
                }
            }
        }
    }

    /// The window as written in the config (`day`, `month`, `90s`).
    pub fn describe(&self) -> String {
        match self {
            Window::Day => "day".into(),
            Window::Month => "month".into(),
            Window::Every(d) => format!("{}s", d.as_secs()),
        }
    }
}

/// Which of a task's tokens a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counts {
    /// Prompt and completion (an embeddings task's input tokens are its prompt).
    #[default]
    All,
    /// The prompt (input) tokens only.
    Prompt,
    /// The completion tokens only.
    Completion,
}

impl Counts {
    /// What a task with these tokens is charged.
    pub fn charge(self, prompt: u64, completion: u64) -> u64 {
        match self {
            Counts::All => prompt.saturating_add(completion),
            Counts::Prompt => prompt,
            Counts::Completion => completion,
        }
    }
}

/// A token budget.
#[derive(Debug, Clone)]
pub struct Budget {
    pub(crate) name: Arc<str>,
    pub(crate) subject: Subject,
    pub(crate) each_member: bool,
    pub(crate) target: Option<Target>,
    pub(crate) tokens: NonZeroU64,
    pub(crate) window: Window,
    pub(crate) counts: Counts,
    pub(crate) description: Option<String>,
    pub(crate) origin: Origin,
}

/// Who a budget charges for one task: the budget's subject as a whole, or
/// (for `each_member`) the one member that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payer {
    /// The budget's subject as a whole.
    Whole,
    /// One member of the budget's group.
    Member(Subject),
}

impl Budget {
    /// Its name: what refusals, usage and metrics call it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subject charged (for `each_member`, the group whose members are).
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// Whether each member of the subject's group has a budget of its own.
    pub fn each_member(&self) -> bool {
        self.each_member
    }

    /// What it covers; `None` is everything.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Tokens per window.
    pub fn tokens(&self) -> NonZeroU64 {
        self.tokens
    }

    /// Its window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Which tokens count.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// What it is for.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Where it was written.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether it covers model `model` of integration `integration`.
    pub fn covers_model(&self, integration: &str, model: &str) -> bool {
        match &self.target {
            None => true,
            Some(Target::Integration(i)) => **i == *integration,
            Some(Target::Model(i, m)) => **i == *integration && **m == *model,
            Some(Target::Prompt(_)) => false,
        }
    }

    /// Who pays for a task `principal` runs on that model, if this budget
    /// covers it: the principal itself or one of the groups that count for
    /// it (a principal scoped to a group counts only that group).
    pub fn payer(&self, principal: &Principal, integration: &str, model: &str) -> Option<Payer> {
        if !self.covers_model(integration, model) {
            return None;
        }
        let caller = principal.subject();
        let member = match &self.subject {
            Subject::Group(g) => principal.groups().iter().any(|pg| pg == g),
            s => s == caller,
        };
        if !member {
            return None;
        }
        Some(if self.each_member {
            Payer::Member(caller.clone())
        } else {
            Payer::Whole
        })
    }
}
