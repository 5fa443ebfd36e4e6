//! What a task leaves behind: one audit event (tracing target
//! `hfconnect::audit`) and its metrics. The event never holds the key, and
//! holds the prompt and the output only with `[audit] include_text = true`.
//!
//! Every value a caller sent (its id, the integration and model it named) is
//! escaped and bounded ([`crate::untrusted`]) on its way into the event;
//! metric labels are catalog names, and names the catalog does not know are
//! counted under [`UNKNOWN`], so a caller cannot grow the series without end.

use std::time::Instant;

use serde_json::Value;

use crate::access::{Principal, Reason, Subject};
use crate::metrics::{Metrics, ModelSeries};
use crate::task::{Task, TaskError, TaskErrorKind, TaskOutput};
use crate::untrusted::{Field, Quoted};

/// The label value of integrations and models the catalog does not know.
pub const UNKNOWN: &str = "_unknown";

/// The access decision of a task, once taken: allowed or not, and why.
pub(crate) type Decided = Option<(bool, DecisionText)>;

/// Why a task was allowed or refused, formatted only when an audit event is
/// actually written (formatting a grant's origin on every task costs more
/// than deciding).
#[derive(Debug)]
pub(crate) enum DecisionText {
    Text(String),
    Reason(Reason),
    Both(Reason, Reason),
}

impl std::fmt::Display for DecisionText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecisionText::Text(t) => f.write_str(t),
            DecisionText::Reason(r) => write!(f, "{r}"),
            DecisionText::Both(a, b) => write!(f, "{a}; {b}"),
        }
    }
}

/// `task-` and 16 hex digits, formatted when shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskId(pub u64);

impl TaskId {
    pub(crate) fn new() -> TaskId {
        TaskId(fastrand::u64(..))
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task-{:016x}", self.0)
    }
}

/// The metric labels of a task: catalog names, or [`UNKNOWN`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Labels<'s> {
    pub integration: &'s str,
    pub model: &'s str,
}

/// The caller as a log field: `user:ID` or `app:NAME`, escaped.
pub(crate) fn caller_field(subject: &Subject) -> Field<'_> {
    match subject {
        Subject::User(id) => Field::with_prefix("user:", id),
        Subject::App(a) => Field::with_prefix("app:", a),
        Subject::Group(g) => Field::with_prefix("group:", g),
    }
}

/// What the audit event says about a task.
pub(crate) struct Audit<'a> {
    pub metrics: &'a Metrics,
    pub include_text: bool,
    pub task_id: TaskId,
    pub principal: &'a Principal,
    pub task: &'a Task,
    pub labels: Labels<'a>,
    pub started: Instant,
}

impl Audit<'_> {
    pub(crate) fn record(
        &self,
        decision: &Decided,
        outcome: &Result<TaskOutput, TaskError>,
        handles: Option<&ModelSeries>,
    ) {
        let (outcome_kind, prompt_tokens, completion_tokens) = match outcome {
            Ok(o) => ("ok", o.prompt_tokens, o.completion_tokens),
            Err(e) => (e.kind().as_str(), None, None),
        };
        let kind = self.task.kind();
        let Labels { integration, model } = self.labels;
        let m = self.metrics;
        let seconds = self.started.elapsed().as_secs_f64();
        // A catalog model's latency is in its striped series whatever the
        // outcome (the family has no outcome label); failures are counted in
        // the vector, whose `outcome` label keeps them apart from successes.
        match (outcome, handles) {
            (Ok(o), Some(h)) => {
                h.task_ok(kind, seconds, o.prompt_tokens, o.completion_tokens);
            }
            (Err(_), Some(h)) => {
                h.task_failed(kind, seconds);
                m.tasks
                    .with_label_values(&[kind.as_str(), outcome_kind, integration, model])
                    .inc();
            }
            (_, None) => {
                m.tasks
                    .with_label_values(&[kind.as_str(), outcome_kind, integration, model])
                    .inc();
                m.latency
                    .with_label_values(&[kind.as_str(), integration, model])
                    .observe(seconds);
                if let Ok(o) = outcome {
                    for (t, n) in [
                        ("prompt", o.prompt_tokens),
                        ("completion", o.completion_tokens),
                    ] {
                        if let Some(n) = n {
                            m.tokens
                                .with_label_values(&[integration, model, t])
                                .inc_by(u64::from(n));
                        }
                    }
                }
            }
        }
        if matches!(decision, Some((false, _))) {
            m.denials.with_label_values(&[integration]).inc();
        }
        if matches!(outcome, Err(e) if e.kind() == TaskErrorKind::RateLimited) {
            m.rate_limited.with_label_values(&[integration]).inc();
        }
        let none = DecisionText::Text(String::new());
        let (decision, reason) = match decision {
            Some((true, r)) => ("allowed", r),
            Some((false, r)) => ("denied", r),
            None => ("not_reached", &none),
        };
        // Never the key; the input and output only when `[audit] include_text = true`.
        let (input, output) = if self.include_text {
            let input = match self.task {
                Task::TextComplete(t) => t.prompt.clone().unwrap_or_default(),
                Task::ChatComplete(t) => t
                    .messages
                    .iter()
                    .map(|m| m.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                Task::Summarize(t) => t.text.clone(),
            };
            let output = match outcome {
                Ok(o) => match &o.result {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                Err(_) => String::new(),
            };
            (Some(input), Some(output))
        } else {
            (None, None)
        };
        tracing::info!(
            target: "hfconnect::audit",
            task_id = %self.task_id,
            caller = %caller_field(self.principal.subject()),
            group = %Field::new(self.principal.scope().unwrap_or("")),
            integration = %Field::new(self.task.integration()),
            model = %Field::new(self.task.model()),
            task_kind = %self.task.kind(),
            decision,
            // Display, not a string: formatted only when the event is written.
            reason = %Quoted(reason),
            outcome = outcome_kind,
            latency_ms = (seconds * 1000.0) as u64,
            prompt_tokens,
            completion_tokens,
            input = input.as_deref().map(Field::text).map(tracing::field::display),
            output = output.as_deref().map(Field::text).map(tracing::field::display),
            "task"
        );
    }
}
