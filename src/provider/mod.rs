//! The `LlmProvider` trait and its provider-neutral request, response and error
//! types. A provider turns a typed request into calls to a model server and a
//! typed answer or a typed error; it knows nothing of access control, the
//! catalog or front doors.

mod error;
pub mod huggingface;
#[cfg(any(test, feature = "test-support"))]
pub mod scripted;
pub(crate) mod vectors;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use url::Url;

pub use error::{ErrorKind, ProviderError};
pub use vectors::{Vectors, VectorsError};

pub use crate::retry::{ColdStartPolicy, RetryPolicy};

/// How a model's endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Api {
    /// text-generation-inference: `/generate`, `/generate_stream`, `/info`.
    Tgi,
    /// OpenAI-style `/v1/chat/completions`.
    Chat,
    /// huggingface-inference-toolkit pipelines (`POST /` with `inputs`).
    Pipeline,
    /// The serverless router (`router.huggingface.co/hf-inference/models/{repo}`).
    Router,
    /// text-embeddings-inference: `/embed`, `/info`.
    Tei,
}

impl Api {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Tgi => "tgi",
            Api::Chat => "chat",
            Api::Pipeline => "pipeline",
            Api::Router => "router",
            Api::Tei => "tei",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest answer (a non-streamed body, or a whole stream) read by default.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The longest a stream may run by default (`timeouts.stream`).
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// How an integration's calls behave, whatever the provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CallSettings {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole non-streamed request, and the longest silence inside a stream.
    pub request_timeout: Duration,
    /// Time from sending a streamed request to its first token.
    pub first_token_timeout: Duration,
    /// Time from sending a streamed request to its last event: the longest
    /// a stream may run, however steadily it sends.
    pub stream_timeout: Duration,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// Waiting for scaled-to-zero or loading endpoints.
    pub cold_start: ColdStartPolicy,
    /// The largest answer read: a non-streamed body, or all a stream sends.
    pub max_response_bytes: usize,
}

impl Default for CallSettings {
    /// 10 s to connect, 120 s per request, 60 s to the first token, 600 s
    /// per stream, the default retry and cold-start policies, 16 MiB answers.
    fn default() -> CallSettings {
        CallSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            first_token_timeout: Duration::from_secs(60),
            stream_timeout: DEFAULT_STREAM_TIMEOUT,
            retry: RetryPolicy::default(),
            cold_start: ColdStartPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One model endpoint, as the provider needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEndpoint {
    /// The model's name (for messages).
    pub name: String,
    /// The endpoint's base URL (the router base for `router`).
    pub base_url: Url,
    /// How to speak to it.
    pub api: Api,
    /// The model id sent upstream (`model` of chat requests, repo id for the router).
    pub upstream_model: String,
    /// The Inference Endpoint serving it, by name, when the config names it.
    pub inference_endpoint: Option<String>,
    /// Whether `base_url` stands in for a URL the management API gives
    /// (`inference_endpoint` without `endpoint`): looked up before a call.
    pub url_from_management: bool,
}

/// Generation parameters; `None` leaves the server's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationParams {
    /// Maximum new tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature (> 0).
    pub temperature: Option<f64>,
    /// Nucleus sampling (0 < p ≤ 1).
    pub top_p: Option<f64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<u64>,
}

/// A text-generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRequest {
    /// The prompt.
    pub prompt: String,
    /// Parameters.
    pub params: GenerationParams,
}

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: ChatRole,
    /// What was said.
    pub content: String,
}

/// A chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Parameters.
    pub params: GenerationParams,
}

/// A summarization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummarizeRequest {
    /// The text to summarize.
    pub text: String,
    /// Upper bound on the summary length (tokens), where the server supports it.
    pub max_length: Option<u32>,
    /// Lower bound on the summary length (tokens), where the server supports it.
    pub min_length: Option<u32>,
}

/// Which end of an input longer than the model takes is cut
/// (text-embeddings-inference's `truncation_direction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruncationDirection {
    /// Keep the start of the text.
    #[default]
    Right,
    /// Keep the end of the text.
    Left,
}

/// An embeddings request: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedRequest {
    /// The texts.
    pub inputs: Vec<String>,
    /// Scale each vector to unit length (`None`: the server's default).
    pub normalize: Option<bool>,
    /// Cut inputs longer than the model takes instead of failing.
    pub truncate: Option<bool>,
    /// Which end `truncate` cuts.
    pub truncation_direction: Option<TruncationDirection>,
    /// The size of the vectors wanted (a prefix of the model's, for models
    /// trained for it), where the server takes it; cut here otherwise.
    pub dimensions: Option<u32>,
    /// How many requests of a split batch may be in flight at once (at least 1).
    pub max_parallel: usize,
}

/// Vectors, one per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The vectors, one per input, in input order.
    pub vectors: Vectors,
    /// Token counts (prompt tokens only), when the server reported them.
    pub usage: Usage,
    /// The upstream request id (`x-request-id`) of the last request.
    pub request_id: Option<String>,
    /// Timings.
    pub timings: Timings,
    /// How many HTTP attempts it took, all requests of a split batch together.
    pub attempts: u32,
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// The model ended its answer (end-of-sequence token).
    Stop,
    /// The token limit was reached.
    Length,
    /// A stop sequence was produced.
    StopSequence,
    /// Anything else the server said.
    Other(String),
}

impl FinishReason {
    /// Map the servers' words (`eos_token`, `stop`, `length`, `stop_sequence`);
    /// any other word is kept escaped and bounded (it reaches outputs and
    /// task logs).
    pub(crate) fn from_wire(s: &str) -> FinishReason {
        match s {
            "eos_token" | "stop" | "end_turn" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "stop_sequence" => FinishReason::StopSequence,
            other => FinishReason::Other(crate::untrusted::bounded(other)),
        }
    }
}

/// Token counts, when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated.
    pub completion_tokens: Option<u32>,
}

impl Usage {
    /// Prompt plus completion, when both are known.
    pub fn total(&self) -> Option<u32> {
        Some(self.prompt_tokens? + self.completion_tokens?)
    }
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// From the first attempt to the answer.
    pub total: Duration,
    /// To the first streamed token.
    pub first_token: Option<Duration>,
    /// Queue time reported by the server (`x-queue-time`).
    pub queue: Option<Duration>,
    /// Inference time reported by the server (`x-inference-time`).
    pub inference: Option<Duration>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Why it stopped, when the server said.
    pub finish_reason: Option<FinishReason>,
    /// Token counts.
    pub usage: Usage,
    /// The upstream request id (`x-request-id`).
    pub request_id: Option<String>,
    /// Timings.
    pub timings: Timings,
    /// How many HTTP attempts it took.
    pub attempts: u32,
}

/// One item of a streamed generation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A piece of text.
    Token(String),
    /// The end: the whole text, finish reason and counts.
    Done(Completion),
}

/// A streamed generation: tokens, then one `Done`, or an error.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// What a health/info probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    /// Whether the endpoint answered its health check.
    pub healthy: bool,
    /// The served model id (TGI `/info`).
    pub model_id: Option<String>,
    /// Maximum input tokens (`max_input_tokens`, formerly `max_input_length`).
    pub max_input_tokens: Option<u32>,
    /// Maximum input plus output tokens.
    pub max_total_tokens: Option<u32>,
    /// Server version.
    pub version: Option<String>,
    /// The most inputs one request may carry (`max_client_batch_size`).
    pub max_batch_size: Option<u32>,
    /// The most tokens the server batches at once (TEI's `max_batch_tokens`).
    pub max_batch_tokens: Option<u32>,
    /// What the model is (TEI's `model_type`: `embedding (mean pooling)`,
    /// `reranker`, `classifier`).
    pub model_type: Option<String>,
    /// What the probe could not learn, in words.
    pub note: Option<String>,
}

/// A model server client: what the Connector calls, whatever the server.
///
/// The calls are `async` (futures that are `Send`, so that tasks can move
/// between threads); nothing is boxed on the way, the benchmark's hot path
/// included. Streams are boxed: one allocation per streamed task.
pub trait LlmProvider: Send + Sync + 'static {
    /// Generate text from a prompt.
    fn generate(
        &self,
        model: &ModelEndpoint,
        request: &TextRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// Generate text, streaming tokens.
    fn generate_stream(&self, model: &ModelEndpoint, request: TextRequest) -> CompletionStream;

    /// Answer a conversation.
    fn chat(
        &self,
        model: &ModelEndpoint,
        request: &ChatRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// Answer a conversation, streaming tokens.
    fn chat_stream(&self, model: &ModelEndpoint, request: ChatRequest) -> CompletionStream;

    /// Summarize a text.
    fn summarize(
        &self,
        model: &ModelEndpoint,
        request: &SummarizeRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// Embed texts: one vector per input, in input order.
    fn embed(
        &self,
        model: &ModelEndpoint,
        request: &EmbedRequest,
    ) -> impl Future<Output = Result<Embeddings, ProviderError>> + Send;

    /// Check health and read what the server says about itself.
    fn probe(
        &self,
        model: &ModelEndpoint,
    ) -> impl Future<Output = Result<EndpointInfo, ProviderError>> + Send;
}
