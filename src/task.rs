//! Tasks as workflow engines send them (Orkes field names, camelCase JSON),
//! their output, and `TaskError`, which engines act on without parsing messages.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provider::{ErrorKind, ProviderError};

pub use crate::catalog::TaskKind;
/// Who said a chat message.
pub use crate::provider::ChatRole;
/// The kind of a Hugging Face failure, as [`TaskErrorKind::Provider`] carries it.
pub use crate::provider::ErrorKind as ProviderErrorKind;
pub use crate::provider::{FinishReason, TruncationDirection, Vectors};

/// `LLM_TEXT_COMPLETE` input.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextCompleteInput {
    /// The integration.
    pub llm_provider: String,
    /// The model under it.
    pub model: String,
    /// A raw prompt (or `promptName`).
    pub prompt: Option<String>,
    /// A saved prompt template.
    pub prompt_name: Option<String>,
    /// Values for `${var}` placeholders.
    #[serde(default)]
    pub prompt_variables: HashMap<String, Value>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Maximum new tokens.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop_words: Vec<String>,
    /// Sampling seed (the model's `defaults.seed` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One message of a chat task (`{role, message}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    /// `user`, `assistant` or `system`.
    pub role: ChatRole,
    /// The text.
    pub message: String,
}

/// `LLM_CHAT_COMPLETE` input.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatCompleteInput {
    /// The integration.
    pub llm_provider: String,
    /// The model under it.
    pub model: String,
    /// A saved prompt used as system text.
    pub instructions: Option<String>,
    /// Values for the instructions' placeholders.
    #[serde(default)]
    pub prompt_variables: HashMap<String, Value>,
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Maximum new tokens.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop_words: Vec<String>,
    /// Parse the answer as JSON; malformed JSON fails the task.
    #[serde(default)]
    pub json_output: bool,
    /// Sampling seed (the model's `defaults.seed` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Summarization input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SummarizeInput {
    /// The integration.
    pub llm_provider: String,
    /// The model under it.
    pub model: String,
    /// The text to summarize.
    pub text: String,
    /// Upper bound on the summary length.
    pub max_length: Option<u32>,
    /// Lower bound on the summary length.
    pub min_length: Option<u32>,
}

/// `LLM_GENERATE_EMBEDDINGS` input: one `text`, or a list `texts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbedInput {
    /// The integration.
    pub llm_provider: String,
    /// The model under it.
    pub model: String,
    /// One text: `result` is its vector.
    pub text: Option<String>,
    /// Several texts: `result` is their vectors, in order.
    pub texts: Option<Vec<String>>,
    /// The size of the vectors wanted (at most the model's).
    pub dimensions: Option<u32>,
    /// Scale vectors to unit length (the model's default, else the server's).
    pub normalize: Option<bool>,
    /// Cut texts longer than the model takes instead of failing.
    pub truncate: Option<bool>,
    /// Which end `truncate` cuts: `right` (keep the start) or `left`.
    pub truncation_direction: Option<TruncationDirection>,
}

impl EmbedInput {
    /// How many texts the task embeds.
    pub(crate) fn count(&self) -> usize {
        usize::from(self.text.is_some()) + self.texts.as_ref().map_or(0, Vec::len)
    }
}

/// The most stop sequences a task may carry (`stopWords`, OpenAI's `stop`).
pub(crate) const MAX_STOP_WORDS: usize = 16;
/// The longest stop sequence, in bytes.
pub(crate) const MAX_STOP_WORD_BYTES: usize = 256;

/// Stop sequences within [`MAX_STOP_WORDS`] and [`MAX_STOP_WORD_BYTES`],
/// none empty; `field` names them in the refusal.
pub(crate) fn check_stop_words(words: &[String], field: &str) -> Result<(), String> {
    if words.len() > MAX_STOP_WORDS {
        return Err(format!(
            "`{field}` has {} entries; at most {MAX_STOP_WORDS} are allowed",
            words.len()
        ));
    }
    for (i, w) in words.iter().enumerate() {
        if w.is_empty() {
            return Err(format!("`{field}[{i}]` is empty"));
        }
        if w.len() > MAX_STOP_WORD_BYTES {
            return Err(format!(
                "`{field}[{i}]` is {} bytes long; at most {MAX_STOP_WORD_BYTES} are allowed",
                w.len()
            ));
        }
    }
    Ok(())
}

/// A task.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Text completion.
    TextComplete(TextCompleteInput),
    /// Chat completion.
    ChatComplete(ChatCompleteInput),
    /// Summarization.
    Summarize(SummarizeInput),
    /// Embeddings.
    Embed(EmbedInput),
}

impl Task {
    /// The task of `kind` from its input as engines send it (Orkes field names).
    pub fn from_json(kind: TaskKind, input: Value) -> Result<Task, serde_json::Error> {
        Ok(match kind {
            TaskKind::TextGeneration => Task::TextComplete(serde_json::from_value(input)?),
            TaskKind::Chat => Task::ChatComplete(serde_json::from_value(input)?),
            TaskKind::Summarization => Task::Summarize(serde_json::from_value(input)?),
            TaskKind::Embeddings => Task::Embed(serde_json::from_value(input)?),
        })
    }

    /// What kind of task this is.
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::TextComplete(_) => TaskKind::TextGeneration,
            Task::ChatComplete(_) => TaskKind::Chat,
            Task::Summarize(_) => TaskKind::Summarization,
            Task::Embed(_) => TaskKind::Embeddings,
        }
    }

    /// `llmProvider`.
    pub fn integration(&self) -> &str {
        match self {
            Task::TextComplete(t) => &t.llm_provider,
            Task::ChatComplete(t) => &t.llm_provider,
            Task::Summarize(t) => &t.llm_provider,
            Task::Embed(t) => &t.llm_provider,
        }
    }

    /// `model`.
    pub fn model(&self) -> &str {
        match self {
            Task::TextComplete(t) => &t.model,
            Task::ChatComplete(t) => &t.model,
            Task::Summarize(t) => &t.model,
            Task::Embed(t) => &t.model,
        }
    }

    /// The saved prompt the task names (`promptName` or `instructions`).
    pub(crate) fn prompt_name(&self) -> Option<&str> {
        match self {
            Task::TextComplete(t) => t.prompt_name.as_deref(),
            Task::ChatComplete(t) => t.instructions.as_deref(),
            Task::Summarize(_) | Task::Embed(_) => None,
        }
    }

    /// What admission charges the task: the number of texts of an
    /// embeddings task, 1 for every other task.
    pub(crate) fn cost(&self) -> u32 {
        match self {
            Task::Embed(t) => u32::try_from(t.count()).unwrap_or(u32::MAX).max(1),
            _ => 1,
        }
    }
}

/// The door a task came by: the `door` label of `hfconnect_tasks_total`
/// and of `hfconnect_door_requests_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum Door {
    /// `serve`'s task routes (`POST /v1/tasks/…`).
    Task,
    /// `serve`'s OpenAI-compatible routes.
    OpenAi,
    /// The Conductor worker.
    Worker,
    /// `hfconnect run`.
    Cli,
    /// An engine calling the library.
    #[default]
    Library,
}

impl Door {
    /// Every door, in the order of [`Door::index`].
    pub(crate) const ALL: [Door; 5] = [
        Door::Task,
        Door::OpenAi,
        Door::Worker,
        Door::Cli,
        Door::Library,
    ];

    /// `task`, `openai`, `worker`, `cli` or `library`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Door::Task => "task",
            Door::OpenAi => "openai",
            Door::Worker => "worker",
            Door::Cli => "cli",
            Door::Library => "library",
        }
    }

    /// Its place in [`Door::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a task produced (Orkes names).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskOutput {
    /// The answer: text, the parsed JSON value with `jsonOutput`, or vectors.
    pub result: TaskResult,
    /// Why generation stopped (`STOP`, `LENGTH`, `STOP_SEQUENCE`, or the
    /// server's word upper-cased, as JSON).
    #[serde(serialize_with = "orkes_finish_reason")]
    pub finish_reason: Option<FinishReason>,
    /// Prompt plus completion tokens, when both are known.
    pub token_used: Option<u32>,
    /// The size of the vectors (embeddings tasks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Prompt tokens, when known.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens, when known.
    pub completion_tokens: Option<u32>,
    /// What is left of the tightest rate limit or quota that admitted the
    /// task (for a door's rate-limit headers; not part of the output).
    #[serde(skip)]
    pub headroom: Option<crate::catalog::Headroom>,
    /// The tightest token budget that admitted the task, once the task's
    /// worst case was reserved (`x-ratelimit-remaining-tokens`).
    #[serde(skip)]
    pub token_headroom: Option<crate::catalog::TokenHeadroom>,
}

/// A task's answer, typed until a door writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum TaskResult {
    /// Generated text.
    Text(String),
    /// The answer parsed as JSON (`jsonOutput`).
    Json(Value),
    /// The vector of one `text`.
    Vector(Vec<f32>),
    /// The vectors of `texts`, in order.
    Vectors(Vectors),
}

impl TaskResult {
    /// The text, when the answer is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            TaskResult::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The answer as text: the text, or JSON written back (for a log, a
    /// chat message, an audit line).
    pub(crate) fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            TaskResult::Text(t) => std::borrow::Cow::Borrowed(t),
            TaskResult::Json(v) => std::borrow::Cow::Owned(v.to_string()),
            TaskResult::Vector(v) => {
                std::borrow::Cow::Owned(serde_json::to_string(v).unwrap_or_default())
            }
            TaskResult::Vectors(v) => {
                std::borrow::Cow::Owned(serde_json::to_string(v).unwrap_or_default())
            }
        }
    }

    /// The vectors of an embeddings answer, one row for one `text`.
    pub fn vectors(&self) -> Option<std::borrow::Cow<'_, Vectors>> {
        match self {
            TaskResult::Vectors(v) => Some(std::borrow::Cow::Borrowed(v)),
            TaskResult::Vector(v) => Vectors::from_rows([v]).ok().map(std::borrow::Cow::Owned),
            _ => None,
        }
    }
}

/// `STOP`, `LENGTH`, `STOP_SEQUENCE` (the open-source server's spelling).
pub(crate) fn orkes_finish_reason_name(r: &FinishReason) -> std::borrow::Cow<'static, str> {
    match r {
        FinishReason::Stop => "STOP".into(),
        FinishReason::Length => "LENGTH".into(),
        FinishReason::StopSequence => "STOP_SEQUENCE".into(),
        FinishReason::Other(o) => o.to_ascii_uppercase().into(),
    }
}

fn orkes_finish_reason<S: serde::Serializer>(
    r: &Option<FinishReason>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(&orkes_finish_reason_name(r)),
        None => s.serialize_none(),
    }
}

/// A piece of a streamed task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskEvent {
    /// Generated text.
    Chunk(String),
    /// The final output.
    Done(TaskOutput),
}

/// What kind of failure a [`TaskError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// Unknown integration, model or prompt.
    NotFound,
    /// The integration or model is switched off.
    Inactive,
    /// No grant allows it.
    Denied,
    /// The task's input is wrong (missing variables, unsupported task kind…).
    InvalidInput,
    /// The model's answer is not what the task asked for (malformed JSON with `jsonOutput`).
    InvalidOutput,
    /// The caller or the endpoint is over its rate or concurrency limit.
    RateLimited,
    /// A token budget that covers the task has too little left for its worst
    /// case; the message names the budget and `retry_after` says when it
    /// resets. Not retryable: the reset may be hours or weeks away.
    BudgetExhausted,
    /// hfconnect cannot admit tasks now: its shared limits cannot be checked
    /// (Redis unreachable with `admission.on_unavailable = "deny"`). Retryable.
    Overloaded,
    /// The provider failed.
    Provider(ErrorKind),
}

impl TaskErrorKind {
    /// A short snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskErrorKind::NotFound => "not_found",
            TaskErrorKind::Inactive => "inactive",
            TaskErrorKind::Denied => "denied",
            TaskErrorKind::InvalidInput => "invalid_input",
            TaskErrorKind::InvalidOutput => "invalid_output",
            TaskErrorKind::RateLimited => "rate_limited",
            TaskErrorKind::BudgetExhausted => "budget_exhausted",
            TaskErrorKind::Overloaded => "overloaded",
            TaskErrorKind::Provider(k) => k.as_str(),
        }
    }
}

/// Why a task failed.
#[derive(Debug, Clone)]
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
    retry_after: Option<Duration>,
    provider: Option<ProviderError>,
}

impl TaskError {
    pub(crate) fn new(kind: TaskErrorKind, message: impl Into<String>) -> TaskError {
        TaskError {
            kind,
            message: message.into(),
            retry_after: None,
            provider: None,
        }
    }

    pub(crate) fn rate_limited(message: impl Into<String>, retry_after: Duration) -> TaskError {
        TaskError {
            retry_after: Some(retry_after),
            ..TaskError::new(TaskErrorKind::RateLimited, message)
        }
    }

    pub(crate) fn budget_exhausted(message: impl Into<String>, retry_after: Duration) -> TaskError {
        TaskError {
            retry_after: Some(retry_after),
            ..TaskError::new(TaskErrorKind::BudgetExhausted, message)
        }
    }

    pub(crate) fn overloaded(message: impl Into<String>, retry_after: Duration) -> TaskError {
        TaskError {
            retry_after: Some(retry_after),
            ..TaskError::new(TaskErrorKind::Overloaded, message)
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TaskErrorKind {
        self.kind
    }

    /// The provider's error, when the provider failed.
    pub(crate) fn provider_error(&self) -> Option<&ProviderError> {
        self.provider.as_ref()
    }

    /// Whether the same task may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            TaskErrorKind::RateLimited | TaskErrorKind::Overloaded => true,
            TaskErrorKind::Provider(_) => self
                .provider
                .as_ref()
                .is_some_and(ProviderError::is_retryable),
            _ => false,
        }
    }

    /// Whether retrying cannot help without a change (grant, input, key, config).
    pub fn is_terminal(&self) -> bool {
        !self.is_retryable()
    }

    /// How long to wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
            .or_else(|| self.provider.as_ref().and_then(ProviderError::retry_after))
    }
}

impl TaskError {
    /// A provider's failure as a task error (kind `provider`, keeping it).
    pub(crate) fn from_provider(e: ProviderError) -> TaskError {
        TaskError {
            kind: TaskErrorKind::Provider(e.kind()),
            message: e.to_string(),
            retry_after: None,
            provider: Some(e),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.provider
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The kind of a failure as every door names it (`kind` in task-route
/// errors, the `outcome` of counts and audit events, the prefix of a
/// Conductor task's reason): a task error's kind, or a refusal a door makes
/// before there is a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum FailureKind {
    /// A task error of this kind.
    Task(TaskErrorKind),
    /// No key, or a key no application holds.
    Unauthorized,
    /// A body over the size limit.
    PayloadTooLarge,
    /// A body that came too slowly.
    RequestTimeout,
    /// Conductor could not be reached.
    ConductorUnavailable,
    /// Conductor answered with an error.
    ConductorError,
    /// hfconnect itself failed.
    Internal,
}

impl FailureKind {
    /// Input that is not a valid task.
    pub(crate) const INVALID_INPUT: FailureKind = FailureKind::Task(TaskErrorKind::InvalidInput);
    /// Unknown names.
    pub(crate) const NOT_FOUND: FailureKind = FailureKind::Task(TaskErrorKind::NotFound);
    /// Refused by access control.
    pub(crate) const DENIED: FailureKind = FailureKind::Task(TaskErrorKind::Denied);

    /// The snake_case name engines match on.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureKind::Task(k) => k.as_str(),
            FailureKind::Unauthorized => "unauthorized",
            FailureKind::PayloadTooLarge => "payload_too_large",
            FailureKind::RequestTimeout => "request_timeout",
            FailureKind::ConductorUnavailable => "conductor_unavailable",
            FailureKind::ConductorError => "conductor_error",
            FailureKind::Internal => "internal",
        }
    }
}

impl From<TaskErrorKind> for FailureKind {
    fn from(k: TaskErrorKind) -> FailureKind {
        FailureKind::Task(k)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as every front door reports it: `{error, kind, retryable}` and,
/// when known, how long to wait. The one mapping from [`TaskError`]; doors
/// add failures of their own (an unreadable header, Conductor unreachable)
/// with [`Failure::terminal`] and [`Failure::retry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What went wrong, in words.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// How long to wait first, when known.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that retrying cannot mend.
    pub(crate) fn terminal(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure worth retrying, after `after` when known.
    pub(crate) fn retry(
        kind: FailureKind,
        message: impl Into<String>,
        after: Option<Duration>,
    ) -> Failure {
        Failure {
            retryable: true,
            retry_after: after,
            ..Failure::terminal(kind, message)
        }
    }

    /// `{error, kind, retryable}`.
    pub(crate) fn body(&self) -> Value {
        serde_json::json!({"error": self.message, "kind": self.kind.as_str(), "retryable": self.retryable})
    }

    /// The wait in whole seconds, rounded up, at least 1 (`Retry-After`,
    /// Conductor's `callbackAfterSeconds`).
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|w| (w.as_secs() + u64::from(w.subsec_nanos() > 0)).max(1))
    }
}

impl From<&TaskError> for Failure {
    fn from(e: &TaskError) -> Failure {
        Failure {
            kind: FailureKind::Task(e.kind()),
            message: e.to_string(),
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
        }
    }
}

impl From<TaskError> for Failure {
    fn from(e: TaskError) -> Failure {
        Failure::from(&e)
    }
}
