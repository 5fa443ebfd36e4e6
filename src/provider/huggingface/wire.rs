//! Request bodies and answer parsing for each flavour: TGI (`/generate`,
//! `/generate_stream`), the OpenAI-style chat route, and inference-toolkit
//! pipelines. Nothing here does I/O.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{json, Map, Value};

use crate::provider::{
    ChatMessage, FinishReason, GenerationParams, SummarizeRequest, Timings, Usage,
};

// Header names as constants: a lookup by `&str` parses the name first, and
// these run on every answer.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_PROMPT_TOKENS: HeaderName = HeaderName::from_static("x-prompt-tokens");
const X_GENERATED_TOKENS: HeaderName = HeaderName::from_static("x-generated-tokens");
const X_QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time");
const X_INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time");

fn insert_params(p: &mut Map<String, Value>, params: &GenerationParams, max_key: &str) {
    if let Some(m) = params.max_tokens {
        p.insert(max_key.into(), json!(m));
    }
    if let Some(t) = params.temperature {
        p.insert("temperature".into(), json!(t));
    }
    if let Some(tp) = params.top_p {
        p.insert("top_p".into(), json!(tp));
    }
    if !params.stop.is_empty() {
        p.insert("stop".into(), json!(params.stop));
    }
    if let Some(s) = params.seed {
        p.insert("seed".into(), json!(s));
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

/// A JSON tree as a request body.
pub(crate) fn json_bytes(v: &Value) -> bytes::Bytes {
    // Writing a `Value` to memory cannot fail: its keys are strings.
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
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
            prompt_tokens: header_u32(headers, &X_PROMPT_TOKENS),
            completion_tokens: generated.or_else(|| header_u32(headers, &X_GENERATED_TOKENS)),
        },
    })
}

/// `/v1/chat/completions`.
pub(crate) fn chat_body(
    model: &str,
    messages: &[ChatMessage],
    params: &GenerationParams,
    stream: bool,
) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert("messages".into(), json!(messages));
    insert_params(&mut b, params, "max_tokens");
    b.insert("stream".into(), json!(stream));
    if stream {
        b.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Value::Object(b)
}

/// A text-generation pipeline: `{"inputs", "parameters"}`; the prompt is not
/// echoed back (`return_full_text: false`). Stop sequences are not a pipeline
/// parameter and are not sent.
pub(crate) fn pipeline_text_body(prompt: &str, params: &GenerationParams) -> Value {
    let mut p = Map::new();
    let mut params = params.clone();
    params.stop.clear();
    params.seed = None;
    insert_params(&mut p, &params, "max_new_tokens");
    p.insert("return_full_text".into(), json!(false));
    json!({ "inputs": prompt, "parameters": Value::Object(p) })
}

/// A summarization pipeline: `{"inputs", "parameters": {max_length, min_length}}`,
/// `parameters` left out when there are none.
pub(crate) fn summarize_body(req: &SummarizeRequest) -> Value {
    let mut p = Map::new();
    if let Some(m) = req.max_length {
        p.insert("max_length".into(), json!(m));
    }
    if let Some(m) = req.min_length {
        p.insert("min_length".into(), json!(m));
    }
    if p.is_empty() {
        json!({ "inputs": req.text })
    } else {
        json!({ "inputs": req.text, "parameters": Value::Object(p) })
    }
}

/// The same body without its optional `parameters` (the pipeline retry).
pub(crate) fn without_parameters(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("parameters");
    }
    b
}

/// The upstream request id (`x-request-id`), escaped and bounded.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&X_REQUEST_ID)?;
    let text = String::from_utf8_lossy(v.as_bytes());
    Some(crate::untrusted::bounded(text.trim()))
}

pub(crate) fn header_u32(headers: &HeaderMap, name: &HeaderName) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_ms(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    let ms: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// Server-reported timings (`x-queue-time`, `x-inference-time`, milliseconds).
pub(crate) fn server_timings(headers: &HeaderMap) -> Timings {
    Timings {
        queue: header_ms(headers, &X_QUEUE_TIME),
        inference: header_ms(headers, &X_INFERENCE_TIME),
        ..Timings::default()
    }
}

/// What an answer carried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub text: String,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
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
        prompt_tokens: header_u32(headers, &X_PROMPT_TOKENS),
        completion_tokens: header_u32(headers, &X_GENERATED_TOKENS),
    });
    Some(Parsed {
        text,
        finish_reason,
        usage,
    })
}

/// Pipelines answer `[{"summary_text"}]`, `[{"generated_text"}]`, or the object alone.
pub(crate) fn parse_pipeline(v: &Value) -> Option<Parsed> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let text = v
        .get("summary_text")
        .or_else(|| v.get("generated_text"))?
        .as_str()?
        .to_string();
    Some(Parsed {
        text,
        finish_reason: None,
        usage: Usage::default(),
    })
}

/// Whether a pipeline's 400 says it did not understand some parameters.
pub(crate) fn is_unused_kwargs(message: &str) -> bool {
    message.contains("model_kwargs")
        || message.contains("are not used by the model")
        || message.contains("unexpected keyword argument")
}

#[cfg(test)]
mod tests {

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

    use super::*;
    use crate::provider::ChatRole;

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
            chat_body("org/m", &m, &p, true),
            json!({"model": "org/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}})
        );
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
        assert_eq!(
            parse_pipeline(&json!([{"summary_text": "s"}]))
                .unwrap()
                .text,
            "s"
        );
        assert_eq!(
            parse_pipeline(&json!({"generated_text": "g"}))
                .unwrap()
                .text,
            "g"
        );
        assert!(parse_pipeline(&json!({"label": "x"})).is_none());
        let c = parse_chat(&json!({"choices": [{"message": {"content": "c"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 2, "completion_tokens": 4}}), &h).unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish_reason, c.usage.total()),
            ("c", Some(FinishReason::Length), Some(6))
        );
    }
}
