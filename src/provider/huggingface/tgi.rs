//! text-generation-inference (`api = "tgi"`): `/generate`,
//! `/generate_stream` (TGI's token events), its OpenAI-style chat route,
//! summaries by instruction, `/health` and `/info`. The body is written and
//! the answer read without JSON trees: this is the hot path.

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::chat_route::{self, ChatRoute};
use super::flavour::{Flavour, Probe};
use super::stream::{stream, ChatAcc, Step, StreamKind};
use super::wire::{self, header_u32, Parsed};
use super::{completion, join, HuggingFace, Inner};
use crate::provider::{
    ChatRequest, Completion, CompletionStream, ErrorKind, FinishReason, GenerationParams,
    ModelEndpoint, ProviderError, SummarizeRequest, TextRequest, Usage,
};

pub(super) struct Tgi;

impl Flavour for Tgi {
    async fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        hf.inner
            .complete_tgi(
                model,
                join(&model.base_url, "generate"),
                &req.prompt,
                &req.params,
            )
            .await
    }

    fn generate_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: TextRequest,
    ) -> CompletionStream {
        match tgi_body(&req.prompt, &req.params) {
            Ok(body) => stream(
                hf.inner.clone(),
                model.clone(),
                join(&model.base_url, "generate_stream"),
                body,
                StreamKind { event, chat: false },
            ),
            Err(e) => {
                let e = hf
                    .inner
                    .ctx(Some(model))
                    .error(ErrorKind::InvalidRequest)
                    .with_detail(e);
                Box::pin(futures_util::stream::once(async move { Err(e) }))
            }
        }
    }

    /// TGI serves the OpenAI-style chat route itself (its chat template).
    async fn chat(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        ChatRoute.chat(hf, model, req).await
    }

    fn chat_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: ChatRequest,
    ) -> CompletionStream {
        ChatRoute.chat_stream(hf, model, req)
    }

    /// A general text model summarizes by instruction.
    async fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let req = TextRequest {
            prompt: chat_route::summary_instruction(&req.text),
            params: chat_route::summary_params(req),
        };
        self.generate(hf, model, &req).await
    }

    fn probe(&self) -> Probe {
        Probe::HealthAndInfo
    }
}

impl Inner {
    /// TGI's `/generate`: the body written and the answer read without
    /// building JSON trees.
    pub(super) async fn complete_tgi(
        &self,
        model: &ModelEndpoint,
        url: url::Url,
        prompt: &str,
        params: &GenerationParams,
    ) -> Result<Completion, ProviderError> {
        let body = tgi_body(prompt, params).map_err(|e| {
            self.ctx(Some(model))
                .error(ErrorKind::InvalidRequest)
                .with_detail(e)
        })?;
        let (headers, raw, attempts, start) = self.post_json(model, url, body).await?;
        let Some(parsed) = parse_tgi(&raw, &headers) else {
            // Not JSON, or JSON of another shape: say which.
            self.json_of(Some(model), &headers, &raw)?;
            return Err(self.shape_error(model, &headers));
        };
        Ok(completion(parsed, &headers, attempts, start))
    }
}

#[derive(serde::Serialize)]
struct TgiBody<'a> {
    inputs: &'a str,
    parameters: TgiParameters<'a>,
}

#[derive(serde::Serialize)]
struct TgiParameters<'a> {
    details: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_new_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

/// `/generate` and `/generate_stream`: `{"inputs", "parameters"}` with the wire
/// name `stop` and `details: true` (finish reason and token counts), written
/// straight to bytes. TGI wants `top_p` strictly below 1, and 1 means "no
/// nucleus sampling": it is left out.
pub(crate) fn tgi_body(prompt: &str, params: &GenerationParams) -> Result<bytes::Bytes, String> {
    let body = TgiBody {
        inputs: prompt,
        parameters: TgiParameters {
            details: true,
            max_new_tokens: params.max_tokens,
            seed: params.seed,
            stop: &params.stop,
            temperature: params.temperature,
            top_p: params.top_p.filter(|t| *t < 1.0),
        },
    };
    serde_json::to_vec(&body)
        .map(bytes::Bytes::from)
        .map_err(|e| format!("the request cannot be written as JSON: {e}"))
}

#[derive(serde::Deserialize)]
struct TgiGenerated<'a> {
    #[serde(borrow)]
    generated_text: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    details: Option<TgiDetails<'a>>,
}

#[derive(serde::Deserialize)]
struct TgiDetails<'a> {
    #[serde(borrow, default)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    generated_tokens: Option<u64>,
}

/// `/generate`: `{"generated_text", "details"}` (`POST /` answers a
/// one-element array), read from the raw answer, skipping what it does not
/// need (prefill, token lists). `None` when the answer is not of that shape.
pub(crate) fn parse_tgi(raw: &[u8], headers: &HeaderMap) -> Option<Parsed> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace())?;
    let g: TgiGenerated<'_> = if *first == b'[' {
        let mut all: Vec<TgiGenerated<'_>> = serde_json::from_slice(raw).ok()?;
        if all.is_empty() {
            return None;
        }
        all.swap_remove(0)
    } else {
        serde_json::from_slice(raw).ok()?
    };
    let finish_reason = g
        .details
        .as_ref()
        .and_then(|d| d.finish_reason.as_deref())
        .map(FinishReason::from_wire);
    let generated = g
        .details
        .as_ref()
        .and_then(|d| d.generated_tokens)
        .and_then(|n| u32::try_from(n).ok());
    Some(Parsed {
        text: g.generated_text.into_owned(),
        finish_reason,
        usage: Usage {
            prompt_tokens: header_u32(headers, &wire::X_PROMPT_TOKENS),
            completion_tokens: generated.or_else(|| header_u32(headers, &wire::X_GENERATED_TOKENS)),
        },
    })
}

/// One event of `/generate_stream`: a token (special tokens skipped), or the
/// last one with the whole text, its finish reason and token counts.
pub(super) fn event(v: &Value, _acc: &mut ChatAcc) -> Step {
    let token = v
        .get("token")
        .filter(|t| !t.get("special").and_then(Value::as_bool).unwrap_or(false));
    let text = token
        .and_then(|t| t.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(full) = v.get("generated_text").and_then(Value::as_str) {
        let details = v.get("details");
        let n = |k: &str| {
            details
                .and_then(|d| d.get(k))
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        return Step::Last(
            text,
            Parsed {
                text: full.to_string(),
                finish_reason: details
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .map(FinishReason::from_wire),
                usage: Usage {
                    prompt_tokens: n("input_length"),
                    completion_tokens: n("generated_tokens"),
                },
            },
        );
    }
    if text.is_empty() {
        Step::Nothing
    } else {
        Step::Token(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_tgi_body_and_answer_match_the_json_tree_versions() {
        let cases = [
            GenerationParams::default(),
            GenerationParams {
                max_tokens: Some(20),
                temperature: Some(0.5),
                top_p: Some(1.0),
                stop: vec!["\n".into(), "</s>".into()],
                seed: Some(7),
            },
            GenerationParams {
                top_p: Some(0.9),
                ..GenerationParams::default()
            },
        ];
        let expected = [
            json!({"inputs": "say \"hi\"", "parameters": {"details": true}}),
            json!({"inputs": "say \"hi\"", "parameters": {"max_new_tokens": 20, "temperature": 0.5, "stop": ["\n", "</s>"], "seed": 7, "details": true}}),
            json!({"inputs": "say \"hi\"", "parameters": {"top_p": 0.9, "details": true}}),
        ];
        for (p, want) in cases.iter().zip(expected) {
            let body: Value = serde_json::from_slice(&tgi_body("say \"hi\"", p).unwrap()).unwrap();
            assert_eq!(body, want, "{p:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-prompt-tokens", "5".parse().unwrap());
        let a = parse_tgi(br#"{"generated_text": "a\"b", "details": {"finish_reason": "length", "generated_tokens": 3, "seed": null, "prefill": [], "tokens": [{"id": 1}]}}"#, &headers).unwrap();
        assert_eq!(
            (
                a.text.as_str(),
                a.finish_reason,
                a.usage.prompt_tokens,
                a.usage.completion_tokens
            ),
            ("a\"b", Some(FinishReason::Length), Some(5), Some(3))
        );
        let b = parse_tgi(br#"{"generated_text": "y", "details": null}"#, &headers).unwrap();
        assert_eq!((b.text.as_str(), b.finish_reason), ("y", None));
        assert!(parse_tgi(b"[]", &headers).is_none());
        assert!(parse_tgi(br#"{"error": "x"}"#, &headers).is_none());
    }

    #[test]
    fn tgi_body_uses_wire_names() {
        let p = GenerationParams {
            max_tokens: Some(20),
            temperature: Some(0.5),
            top_p: Some(1.0),
            stop: vec!["\n".into()],
            seed: Some(7),
        };
        let body = |p: &GenerationParams| -> Value {
            serde_json::from_slice(&tgi_body("hi", p).unwrap()).unwrap()
        };
        assert_eq!(
            body(&p),
            json!({"inputs": "hi", "parameters": {"max_new_tokens": 20, "temperature": 0.5, "stop": ["\n"], "seed": 7, "details": true}})
        );
        assert_eq!(
            body(&GenerationParams::default()),
            json!({"inputs": "hi", "parameters": {"details": true}})
        );
    }

    #[test]
    fn an_unknown_finish_reason_is_kept_escaped_and_bounded() {
        let word = format!("odd\u{1b}[31m{}", "x".repeat(100_000));
        let raw = json!({"generated_text": "t", "details": {"finish_reason": word}}).to_string();
        let a = parse_tgi(raw.as_bytes(), &HeaderMap::new()).unwrap();
        let Some(FinishReason::Other(o)) = a.finish_reason else {
            panic!("{:?}", a.finish_reason)
        };
        assert!(o.len() < 1_000 && !o.contains('\u{1b}'), "{}", o.len());
    }

    #[test]
    fn parses_each_answer_shape() {
        let h = HeaderMap::new();
        let a = parse_tgi(br#"[{"generated_text": "x"}]"#, &h).unwrap();
        assert_eq!(a.text, "x");
        let a = parse_tgi(br#"{"generated_text": "x", "details": {"finish_reason": "eos_token", "generated_tokens": 3}}"#, &h).unwrap();
        assert_eq!(
            (a.finish_reason, a.usage.completion_tokens),
            (Some(FinishReason::Stop), Some(3))
        );
    }
}
