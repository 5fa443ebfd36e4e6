//! What each kind of Hugging Face endpoint does: [`Flavour`], implemented
//! once per file (`tgi`, `chat_route`, `pipeline`, `router`, `tei`) and
//! picked by `dispatch`. What a flavour cannot do is refused by the trait's
//! defaults, in words that name the flavour that can. Also what every
//! flavour's embeddings request returns ([`Part`]).

use std::future::Future;

use reqwest::header::HeaderMap;

use super::{wire, HuggingFace, Inner};
use crate::provider::{
    ChatRequest, Completion, CompletionStream, EmbedRequest, ErrorKind, LlmProvider, ModelEndpoint,
    ProviderError, StreamEvent, SummarizeRequest, TextRequest, Timings, Vectors,
};

/// The largest vector believed (the widest embedding models are 4096 wide).
pub(super) const MAX_DIMENSIONS: usize = 65_536;

pub(super) const X_COMPUTE_TOKENS: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("x-compute-tokens");

/// What one request of a batch brought back.
pub(super) struct Part {
    pub vectors: Vectors,
    pub prompt_tokens: Option<u32>,
    pub request_id: Option<String>,
    pub timings: Timings,
    pub attempts: u32,
}

impl Part {
    pub(super) fn new(
        vectors: Vectors,
        prompt_tokens: Option<u32>,
        headers: &HeaderMap,
        attempts: u32,
        start: std::time::Instant,
    ) -> Part {
        Part {
            vectors,
            prompt_tokens,
            request_id: wire::request_id(headers),
            timings: Timings {
                total: start.elapsed(),
                ..wire::server_timings(headers)
            },
            attempts,
        }
    }
}

/// What `probe` asks an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// Nothing: the endpoint has no health route (the serverless router).
    Nothing,
    /// `GET /health`.
    Health,
    /// `GET /health`, then `GET /info`.
    HealthAndInfo,
}

/// One kind of Hugging Face endpoint.
pub(super) trait Flavour: Sync {
    /// Text from a prompt.
    fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &TextRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// Text from a prompt, streamed; by default the whole answer as one
    /// chunk (pipelines do not stream).
    fn generate_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: TextRequest,
    ) -> CompletionStream {
        let (hf, model) = (hf.clone(), model.clone());
        Box::pin(async_stream::stream! {
            match LlmProvider::generate(&hf, &model, &req).await {
                Ok(c) => {
                    yield Ok(StreamEvent::Token(c.text.clone()));
                    yield Ok(StreamEvent::Done(c));
                }
                Err(e) => yield Err(e),
            }
        })
    }

    /// An answer to a conversation.
    fn chat(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &ChatRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send {
        let _ = req;
        let e = self.cannot(&hf.inner, model, "chat");
        async move { Err(e) }
    }

    /// An answer to a conversation, streamed.
    fn chat_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: ChatRequest,
    ) -> CompletionStream {
        let _ = req;
        let e = self.cannot(&hf.inner, model, "chat");
        Box::pin(futures_util::stream::once(async move { Err(e) }))
    }

    /// A summary.
    fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &SummarizeRequest,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// One request of an embeddings batch.
    fn embed_part(
        &self,
        inner: &Inner,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> impl Future<Output = Result<Part, ProviderError>> + Send {
        let _ = (inputs, req);
        let e = self.cannot(inner, model, "embed");
        async move { Err(e) }
    }

    /// Whether `/info` says how many inputs one embeddings request may carry.
    fn has_info(&self) -> bool {
        false
    }

    /// Whether the server normalizes vectors itself when asked (else
    /// hfconnect does).
    fn normalizes(&self) -> bool {
        false
    }

    /// What `probe` asks.
    fn probe(&self) -> Probe;

    /// Whether the management API knows the endpoint (its state is checked
    /// when it does not answer; the serverless router is not an endpoint).
    fn managed(&self) -> bool {
        true
    }

    /// Which flavours can do `what` instead, for the refusal.
    fn instead(&self, what: &str) -> &'static str {
        match what {
            "embed" => "use a `tei` model",
            "chat" => "use a `chat` or `tgi` model",
            _ => "use a `tgi`, `chat` or `pipeline` model",
        }
    }

    /// The refusal of `what`, which this flavour cannot do.
    fn cannot(&self, inner: &Inner, model: &ModelEndpoint, what: &str) -> ProviderError {
        inner
            .ctx(Some(model))
            .error(ErrorKind::InvalidRequest)
            .with_detail(format!(
                "a `{}` endpoint cannot {what}: {}",
                model.api,
                self.instead(what)
            ))
    }
}
