//! The OpenAI-style chat route (`api = "chat"`: TGI's own
//! `/v1/chat/completions`, the router's, any OpenAI-compatible server):
//! chat, text as a one-message chat, summaries by instruction, streamed
//! deltas, and `/v1/embeddings`. Typed bodies; answers read by shape.

use base64::Engine;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::flavour::{Flavour, Probe};
use super::flavour::{Part, MAX_DIMENSIONS};
use super::stream::{stream, ChatAcc, Step, StreamKind};
use super::wire::{self, header_u32, Parsed};
use super::{completion, join, HuggingFace, Inner};
use crate::provider::{
    ChatMessage, ChatRequest, ChatRole, Completion, CompletionStream, EmbedRequest, FinishReason,
    GenerationParams, ModelEndpoint, ProviderError, SummarizeRequest, TextRequest, Usage, Vectors,
};

pub(super) struct ChatRoute;

/// An OpenAI-style `route` (`chat/completions`, `embeddings`) under `base`,
/// which may or may not end in `/v1` already.
pub(super) fn v1_url(base: &Url, route: &str) -> Url {
    if base.path().trim_end_matches('/').ends_with("/v1") {
        join(base, route)
    } else {
        join(base, &format!("v1/{route}"))
    }
}

pub(super) fn chat_url(base: &Url) -> Url {
    v1_url(base, "chat/completions")
}

pub(super) fn one_user_message(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: ChatRole::User,
        content: text.to_string(),
    }]
}

/// The instruction used to summarize with a general text model.
pub(super) fn summary_instruction(text: &str) -> String {
    format!("Summarize the following text concisely.\n\nText:\n{text}\n\nSummary:")
}

pub(super) fn summary_params(req: &SummarizeRequest) -> GenerationParams {
    GenerationParams {
        max_tokens: req.max_length,
        ..GenerationParams::default()
    }
}

/// `/v1/chat/completions`'s body.
#[derive(Serialize)]
pub(super) struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    stream: bool,
    /// Asked for on streams: the last chunk then carries the token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

pub(super) fn chat_body<'a>(
    model: &'a str,
    messages: &'a [ChatMessage],
    params: &'a GenerationParams,
    stream: bool,
) -> ChatBody<'a> {
    ChatBody {
        model,
        messages,
        max_tokens: params.max_tokens,
        temperature: params.temperature,
        top_p: params.top_p,
        stop: &params.stop,
        seed: params.seed,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    }
}

impl ChatRoute {
    /// A chat on the route at `url`, plain.
    pub(super) async fn chat_at(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        url: Url,
        messages: &[ChatMessage],
        params: &GenerationParams,
    ) -> Result<Completion, ProviderError> {
        let inner = &hf.inner;
        let body = inner.body_of(
            model,
            &chat_body(&model.upstream_model, messages, params, false),
        )?;
        let (headers, raw, attempts, start) = inner.post_json(model, url, body).await?;
        let v = inner.json_of(Some(model), &headers, &raw)?;
        let parsed = parse_chat(&v, &headers).ok_or_else(|| inner.shape_error(model, &headers))?;
        Ok(completion(parsed, &headers, attempts, start))
    }

    /// A chat on the route at `url`, streamed.
    pub(super) fn chat_stream_at(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        url: Url,
        messages: &[ChatMessage],
        params: &GenerationParams,
    ) -> CompletionStream {
        match hf.inner.body_of(
            model,
            &chat_body(&model.upstream_model, messages, params, true),
        ) {
            Ok(body) => stream(
                hf.inner.clone(),
                model.clone(),
                url,
                body,
                StreamKind { event, chat: true },
            ),
            Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })),
        }
    }
}

impl Flavour for ChatRoute {
    async fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        let url = chat_url(&model.base_url);
        self.chat_at(hf, model, url, &one_user_message(&req.prompt), &req.params)
            .await
    }

    fn generate_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: TextRequest,
    ) -> CompletionStream {
        let url = chat_url(&model.base_url);
        self.chat_stream_at(hf, model, url, &one_user_message(&req.prompt), &req.params)
    }

    async fn chat(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let url = chat_url(&model.base_url);
        self.chat_at(hf, model, url, &req.messages, &req.params)
            .await
    }

    fn chat_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: ChatRequest,
    ) -> CompletionStream {
        let url = chat_url(&model.base_url);
        self.chat_stream_at(hf, model, url, &req.messages, &req.params)
    }

    async fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let url = chat_url(&model.base_url);
        let messages = one_user_message(&summary_instruction(&req.text));
        self.chat_at(hf, model, url, &messages, &summary_params(req))
            .await
    }

    async fn embed_part(
        &self,
        inner: &Inner,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        let body = OpenAiBody {
            model: &model.upstream_model,
            input: inputs,
            encoding_format: "base64",
            dimensions: req.dimensions,
        };
        let url = v1_url(&model.base_url, "embeddings");
        let (headers, raw, attempts, start) = inner
            .post_json(model, url, inner.body_of(model, &body)?)
            .await?;
        let bad = |what: String| inner.invalid(Some(model), &headers, &what);
        let (vectors, tokens) = parse_openai(&raw, inputs.len()).map_err(bad)?;
        Ok(Part::new(vectors, tokens, &headers, attempts, start))
    }

    fn has_info(&self) -> bool {
        true
    }

    fn probe(&self) -> Probe {
        Probe::HealthAndInfo
    }
}

pub(crate) fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let n = |k: &str| {
        u.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    })
}

/// `/v1/chat/completions`: `choices[0].message.content`, `finish_reason`, `usage`.
pub(crate) fn parse_chat(v: &Value, headers: &HeaderMap) -> Option<Parsed> {
    let choice = v.get("choices")?.as_array()?.first()?;
    let content = choice.get("message")?.get("content");
    let text = match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return None,
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(FinishReason::from_wire);
    let usage = usage_of(v).unwrap_or(Usage {
        prompt_tokens: header_u32(headers, &wire::X_PROMPT_TOKENS),
        completion_tokens: header_u32(headers, &wire::X_GENERATED_TOKENS),
    });
    Some(Parsed {
        text,
        finish_reason,
        usage,
    })
}

/// One event of a chat stream: a delta's text; the finish reason and usage
/// kept for the end (they come in pieces, usage last with `include_usage`).
pub(super) fn event(v: &Value, acc: &mut ChatAcc) -> Step {
    if let Some(u) = usage_of(v) {
        acc.usage = Some(u);
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    if let Some(f) = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
    {
        acc.finish = Some(FinishReason::from_wire(f));
    }
    match choice
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
    {
        Some(t) if !t.is_empty() => {
            acc.text.push_str(t);
            Step::Token(t.to_string())
        }
        _ => Step::Nothing,
    }
}

/// The OpenAI-style body. Vectors are asked for in base64: a quarter of the
/// bytes of decimal text, and the exact `f32`s the server computed.
#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// One OpenAI-style embedding: a list of numbers, or base64 of `f32`s.
struct OpenAiEmbedding(Vec<f32>);

impl<'de> Deserialize<'de> for OpenAiEmbedding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OpenAiEmbedding;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of numbers or base64 of 32-bit floats")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OpenAiEmbedding, E> {
                decode_base64(s)
                    .map(OpenAiEmbedding)
                    .ok_or_else(|| E::custom("an embedding is not valid base64 of 32-bit floats"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<OpenAiEmbedding, A::Error> {
                let mut out = Vec::new();
                serde::de::DeserializeSeed::deserialize(
                    crate::provider::vectors::RowSeed {
                        out: &mut out,
                        max_dim: MAX_DIMENSIONS,
                    },
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(OpenAiEmbedding(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: OpenAiEmbedding,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
    usage: Option<OpenAiUsage>,
}

/// Little-endian `f32`s, base64-encoded (OpenAI's `encoding_format: base64`).
pub(crate) fn decode_base64(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 || bytes.len() / 4 > MAX_DIMENSIONS {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The OpenAI-style answer: `data[]` in any order, each placed by its
/// `index`, every index once; base64 embeddings decoded.
pub(crate) fn parse_openai(raw: &[u8], n: usize) -> Result<(Vectors, Option<u32>), String> {
    let a: OpenAiAnswer = serde_json::from_slice(raw)
        .map_err(|_| "the answer has no `data` list of embeddings".to_string())?;
    if a.data.len() != n {
        return Err(format!(
            "the answer has {} embeddings for {n} inputs",
            a.data.len()
        ));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in a.data {
        match out.get_mut(item.index) {
            Some(slot @ None) => *slot = Some(item.embedding.0),
            _ => return Err(format!("embedding index {} is out of place", item.index)),
        }
    }
    let vectors = Vectors::from_rows(out.into_iter().flatten()).map_err(|e| e.to_string())?;
    Ok((vectors, a.usage.and_then(|u| u.prompt_tokens)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_body_shape() {
        let m = vec![ChatMessage {
            role: ChatRole::User,
            content: "hi".into(),
        }];
        let p = GenerationParams {
            max_tokens: Some(5),
            ..GenerationParams::default()
        };
        assert_eq!(
            serde_json::to_value(chat_body("org/m", &m, &p, true)).unwrap(),
            json!({"model": "org/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn parses_a_chat_answer() {
        let h = HeaderMap::new();
        let c = parse_chat(&json!({"choices": [{"message": {"content": "c"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 2, "completion_tokens": 4}}), &h).unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish_reason, c.usage.total()),
            ("c", Some(FinishReason::Length), Some(6))
        );
    }
}
