//! What a task leaves behind: one audit event (tracing target
//! `hfconnect::audit`) and its metrics. The event never holds the key, and
//! holds the prompt and the output only with `[audit] include_text = true`.
//!
//! Every value a caller sent (its id, the integration and model it named) is
//! escaped and bounded ([`crate::untrusted`]) on its way into the event;
//! metric labels are catalog names, and names the catalog does not know are
//! counted under [`UNKNOWN`], so a caller cannot grow the series without end.

use std::time::Instant;

use crate::access::{Decision, Principal, Subject};
use crate::catalog::TaskKind;
use crate::metrics::{Metrics, ModelSeries};
use crate::task::{Door, Task, TaskError, TaskErrorKind, TaskOutput};
use crate::untrusted::{Field, Quoted};

/// The label value of integrations and models the catalog does not know.
pub(crate) use crate::catalog::UNKNOWN_NAME as UNKNOWN;

/// A decision's reason, formatted only when an audit event is actually
/// written (formatting a grant's origin on every task costs more than
/// deciding); nothing when no decision was taken.
struct ReasonText<'a>(Option<&'a crate::access::Reason>);

impl std::fmt::Display for ReasonText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(r) => write!(f, "{r}"),
            None => Ok(()),
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

/// How a task ended.
#[derive(Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// With its output or its error.
    Done(&'a Result<TaskOutput, TaskError>),
    /// Dropped before it ended (the caller went away).
    Cancelled,
}

/// The outcome label of a task that was dropped before it ended.
pub(crate) const CANCELLED: &str = "cancelled";

/// What the audit event says about a task.
pub(crate) struct Audit<'a> {
    pub metrics: &'a Metrics,
    pub include_text: bool,
    pub task_id: TaskId,
    pub principal: &'a Principal,
    pub task: &'a Task,
    pub labels: Labels<'a>,
    pub started: Instant,
    pub door: Door,
    /// Time spent waiting for admission.
    pub queued: std::time::Duration,
    /// The tokens the task was charged (what its budgets and the usage
    /// history count), and the budgets charged.
    pub charged: (u64, &'a [std::sync::Arc<str>]),
}

impl Audit<'_> {
    pub(crate) fn record(
        &self,
        decision: Option<&Decision>,
        outcome: Outcome<'_>,
        handles: Option<&ModelSeries>,
    ) {
        let cancelled = Err(TaskError::new(TaskErrorKind::InvalidInput, String::new()));
        let (outcome, outcome_kind) = match outcome {
            Outcome::Done(r) => (r, r.as_ref().map_or_else(|e| e.kind().as_str(), |_| "ok")),
            Outcome::Cancelled => (&cancelled, CANCELLED),
        };
        let (prompt_tokens, completion_tokens) = match outcome {
            Ok(o) => (o.prompt_tokens, o.completion_tokens),
            Err(_) => (None, None),
        };
        let kind = self.task.kind();
        let Labels { integration, model } = self.labels;
        let m = self.metrics;
        let seconds = self.started.elapsed().as_secs_f64();
        // A catalog model's latency is in its striped series whatever the
        // outcome (the family has no outcome label); failures are counted in
        // the vector, whose `outcome` label keeps them apart from successes.
        let count = || {
            m.tasks
                .with_label_values(&[
                    kind.as_str(),
                    outcome_kind,
                    integration,
                    model,
                    self.door.as_str(),
                ])
                .inc();
        };
        match (outcome, handles) {
            (Ok(o), Some(h)) => {
                h.task_ok(
                    kind,
                    self.door,
                    seconds,
                    o.prompt_tokens,
                    o.completion_tokens,
                );
            }
            (Err(_), Some(h)) => {
                h.task_failed(kind, seconds);
                count();
            }
            (_, None) => {
                count();
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
        if decision.is_some_and(|d| !d.allowed) {
            m.denials.with_label_values(&[integration]).inc();
        }
        if outcome_kind == TaskErrorKind::RateLimited.as_str() {
            m.rate_limited.with_label_values(&[integration]).inc();
        }
        let (decision, reason) = match decision {
            Some(d) if d.allowed => ("allowed", ReasonText(Some(&d.reason))),
            Some(d) => ("denied", ReasonText(Some(&d.reason))),
            None => ("not_reached", ReasonText(None)),
        };
        // Never the key; the input and output only when `[audit] include_text = true`,
        // and never an embeddings task's texts or vectors (what a retrieval
        // workflow embeds is its documents, and vectors can be inverted to them).
        let (input, output) = if self.include_text && !matches!(self.task, Task::Embed(_)) {
            let input = match self.task {
                Task::TextComplete(t) => t.prompt.clone().unwrap_or_default(),
                Task::ChatComplete(t) => t
                    .messages
                    .iter()
                    .map(|m| m.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                Task::Summarize(t) => t.text.clone(),
                Task::Embed(_) => String::new(),
            };
            let output = match outcome {
                Ok(o) => o.result.to_text().into_owned(),
                Err(_) => String::new(),
            };
            (Some(input), Some(output))
        } else {
            (None, None)
        };
        let budgets = self.charged.1.join(",");
        Event {
            task_id: self.task_id,
            caller: caller_field(self.principal.subject()),
            group: Field::new(self.principal.scope().unwrap_or("")),
            integration: Field::new(self.task.integration()),
            model: Field::new(self.task.model()),
            task_kind: kind.as_str(),
            decision,
            reason: Quoted(reason),
            outcome: outcome_kind,
            latency_ms: (seconds * 1000.0) as u64,
            queued_ms: u64::try_from(self.queued.as_millis()).unwrap_or(u64::MAX),
            prompt_tokens,
            completion_tokens,
            tokens_charged: self.charged.0,
            budgets: Field::new(&budgets),
            input: input.as_deref().map(Field::text),
            output: output.as_deref().map(Field::text),
        }
        .emit();
    }
}

/// A request refused before it became a task (by the HTTP service: no or a
/// bad key, delegation refused, an unreadable identity header, a body too
/// large or too slow, input that is not a task). It gets one audit event and
/// one count, like any task.
#[derive(Debug)]
pub(crate) struct Refusal<'a> {
    /// Who the caller was, as far as it could be told (`app:NAME`,
    /// `key:sha256:…`, `no key`, or the user acted for).
    pub caller: &'a str,
    /// The task kind the route named, if it named one.
    pub kind: Option<TaskKind>,
    /// The integration and model the body named, if it was read that far.
    pub integration: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The error kind answered (`unauthorized`, `denied`, `invalid_input`, …).
    pub outcome: crate::task::FailureKind,
    /// Refused by access control (401, 403): also a denial.
    pub denied: bool,
    /// The message answered.
    pub message: &'a str,
    pub started: Instant,
    /// The door it came by.
    pub door: Door,
}

pub(crate) fn record_refusal(metrics: &Metrics, r: &Refusal<'_>, labels: Labels<'_>) {
    let kind = r.kind.map_or(UNKNOWN, TaskKind::as_str);
    metrics
        .tasks
        .with_label_values(&[
            kind,
            r.outcome.as_str(),
            labels.integration,
            labels.model,
            r.door.as_str(),
        ])
        .inc();
    if r.denied {
        metrics
            .denials
            .with_label_values(&[labels.integration])
            .inc();
    }
    let seconds = r.started.elapsed().as_secs_f64();
    Event {
        task_id: TaskId::new(),
        caller: Field::new(r.caller),
        group: Field::new(""),
        integration: Field::new(r.integration.unwrap_or("")),
        model: Field::new(r.model.unwrap_or("")),
        task_kind: kind,
        decision: if r.denied { "denied" } else { "not_reached" },
        reason: Quoted(r.message),
        outcome: r.outcome.as_str(),
        latency_ms: (seconds * 1000.0) as u64,
        queued_ms: 0,
        prompt_tokens: None,
        completion_tokens: None,
        tokens_charged: 0,
        budgets: Field::new(""),
        input: None,
        output: None,
    }
    .emit();
}

/// One audit event's fields, written as tracing fields or, with hfconnect's
/// own human-readable logs, as one line built by hand (the same text: a test
/// holds the two together).
pub(crate) struct Event<'a, R: std::fmt::Display> {
    pub task_id: TaskId,
    pub caller: Field<'a>,
    pub group: Field<'a>,
    pub integration: Field<'a>,
    pub model: Field<'a>,
    pub task_kind: &'static str,
    pub decision: &'static str,
    pub reason: Quoted<R>,
    pub outcome: &'static str,
    pub latency_ms: u64,
    /// Of `latency_ms`, the time waiting for admission.
    pub queued_ms: u64,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// Tokens charged to the budgets and the usage history.
    pub tokens_charged: u64,
    /// The budgets charged, by name, comma-separated.
    pub budgets: Field<'a>,
    pub input: Option<Field<'a>>,
    pub output: Option<Field<'a>>,
}

impl<R: std::fmt::Display> Event<'_, R> {
    pub(crate) fn emit(&self) {
        if !tracing::enabled!(target: "hfconnect::audit", tracing::Level::INFO) {
            return;
        }
        let written = crate::logging::write_info("hfconnect::audit", |line| {
            let _ = self.render(line);
        });
        if !written {
            self.emit_fields();
        }
    }

    /// The event as structured fields.
    fn emit_fields(&self) {
        tracing::info!(
            target: "hfconnect::audit",
            task_id = %self.task_id,
            caller = %self.caller,
            group = %self.group,
            integration = %self.integration,
            model = %self.model,
            task_kind = %self.task_kind,
            decision = self.decision,
            reason = %self.reason,
            outcome = self.outcome,
            latency_ms = self.latency_ms,
            queued_ms = self.queued_ms,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            tokens_charged = self.tokens_charged,
            budgets = %self.budgets,
            input = self.input.map(tracing::field::display),
            output = self.output.map(tracing::field::display),
            "task"
        );
    }

    /// The line the structured event makes in the human-readable format,
    /// without the formatting machinery per field.
    fn render(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("task task_id=task-");
        push_hex16(out, self.task_id.0);
        out.push_str(" caller=");
        self.caller.write_to(out)?;
        out.push_str(" group=");
        self.group.write_to(out)?;
        out.push_str(" integration=");
        self.integration.write_to(out)?;
        out.push_str(" model=");
        self.model.write_to(out)?;
        out.push_str(" task_kind=");
        out.push_str(self.task_kind);
        out.push_str(" decision=\"");
        out.push_str(self.decision);
        out.push_str("\" reason=");
        self.reason.write_to(out)?;
        out.push_str(" outcome=\"");
        out.push_str(self.outcome);
        out.push_str("\" latency_ms=");
        push_u64(out, self.latency_ms);
        out.push_str(" queued_ms=");
        push_u64(out, self.queued_ms);
        for (name, n) in [
            (" prompt_tokens=", self.prompt_tokens),
            (" completion_tokens=", self.completion_tokens),
        ] {
            if let Some(n) = n {
                out.push_str(name);
                push_u64(out, u64::from(n));
            }
        }
        out.push_str(" tokens_charged=");
        push_u64(out, self.tokens_charged);
        out.push_str(" budgets=");
        self.budgets.write_to(out)?;
        for (name, f) in [(" input=", &self.input), (" output=", &self.output)] {
            if let Some(f) = f {
                out.push_str(name);
                f.write_to(out)?;
            }
        }
        Ok(())
    }
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

fn push_hex16(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (k, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> (60 - 4 * k)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("0000000000000000"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(emit: impl FnOnce()) -> String {
        let sink = Sink::default();
        let s = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(crate::logging::HumanFields)
            .without_time()
            .with_ansi(false)
            .with_writer(move || s.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn the_line_built_by_hand_reads_like_the_structured_event() {
        let who = "ann \"the\" = admin\n\u{1b}[31m";
        let long = "m".repeat(300);
        for (tokens, text) in [(None, None), (Some(7), Some("said \"hi\"\nbye"))] {
            let e = Event {
                task_id: TaskId(0x0123_4567_89ab_cdef),
                caller: Field::with_prefix("user:", who),
                group: Field::new(""),
                integration: Field::new("hf"),
                model: Field::new(&long),
                task_kind: "chat",
                decision: "denied",
                reason: Quoted("no grant gives `EXECUTE` on `model:hf:m`"),
                outcome: "denied",
                latency_ms: 12_345,
                queued_ms: 345,
                prompt_tokens: tokens,
                completion_tokens: tokens.map(|t| t + 1),
                tokens_charged: tokens.map_or(0, |t| u64::from(t) * 2 + 1),
                budgets: Field::new(if tokens.is_some() {
                    "team,each \"x\""
                } else {
                    ""
                }),
                input: text.map(Field::text),
                output: text.map(Field::text),
            };
            let fields = logged(|| e.emit_fields());
            // What `write_info` writes after the time: the level, the target, the fields.
            let mut line = String::from(" INFO hfconnect::audit: ");
            e.render(&mut line).unwrap();
            line.push('\n');
            assert_eq!(line, fields);
            assert!(line.contains("task task_id=task-0123456789abcdef caller=\"user:ann \\\"the\\\" = admin\\n\\u{1b}[31m\""), "{line}");
            assert!(line.contains("more bytes]"), "{line}");
            assert!(
                !line.trim_end().contains('\n') && !line.contains('\u{1b}'),
                "{line:?}"
            );
        }
    }
}
