//! What the OpenAI-compatible door reads: request bodies checked field by
//! field (refusing by name what hfconnect does not do) and turned into tasks.

use crate::task::FailureKind;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::OpenAiError;
use crate::task::{ChatCompleteInput, ChatRole, EmbedInput, InputMessage, Task, TextCompleteInput};
use crate::untrusted::Untrusted;

/// Fields OpenAI defines that hfconnect does not do: refused by name.
const UNSUPPORTED: &[&str] = &[
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "presence_penalty",
    "audio",
    "modalities",
    "prediction",
    "store",
    "metadata",
    "service_tier",
    "reasoning_effort",
    "web_search_options",
    "best_of",
    "echo",
    "suffix",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
];

/// A request body as an object, its keys checked against `known`: null
/// values count as absent; OpenAI fields hfconnect does not do and fields
/// OpenAI does not define are refused by name.
pub(super) fn fields(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, OpenAiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        OpenAiError::new(
            StatusCode::BAD_REQUEST,
            FailureKind::INVALID_INPUT,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut o) = v else {
        return Err(OpenAiError::new(
            StatusCode::BAD_REQUEST,
            FailureKind::INVALID_INPUT,
            "the body is not a JSON object",
        ));
    };
    o.retain(|_, v| !v.is_null());
    // A `Map` iterates in key order: the first refused field is always the same.
    for k in o.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        let shown = Untrusted(k);
        // A caller's key is echoed as `param` only escaped and bounded.
        let k = &crate::untrusted::bounded(k);
        return Err(if UNSUPPORTED.contains(&k.as_str()) {
            OpenAiError::invalid(k, format!("`{shown}` is not supported by hfconnect"))
        } else {
            OpenAiError::invalid(
                k,
                format!("unrecognized request argument supplied: `{shown}`"),
            )
        });
    }
    Ok(o)
}

pub(super) fn string(o: &Map<String, Value>, k: &str) -> Result<Option<String>, OpenAiError> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(OpenAiError::invalid(k, format!("`{k}` must be a string"))),
    }
}

fn number(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, OpenAiError> {
    match o.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| OpenAiError::invalid(k, format!("`{k}` must be a number"))),
    }
}

fn count(o: &Map<String, Value>, k: &str) -> Result<Option<u32>, OpenAiError> {
    match o.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| OpenAiError::invalid(k, format!("`{k}` must be a whole number"))),
    }
}

fn boolean(o: &Map<String, Value>, k: &str) -> Result<bool, OpenAiError> {
    match o.get(k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(OpenAiError::invalid(
            k,
            format!("`{k}` must be true or false"),
        )),
    }
}

/// `INTEGRATION/MODEL` → its two parts.
fn model_id(o: &Map<String, Value>) -> Result<(String, String), OpenAiError> {
    let id =
        string(o, "model")?.ok_or_else(|| OpenAiError::invalid("model", "`model` is required"))?;
    split_id(&id).ok_or_else(|| OpenAiError {
        param: Some("model".into()),
        ..OpenAiError::new(
            StatusCode::NOT_FOUND,
            FailureKind::NOT_FOUND,
            format!(
                "model `{}` is not `INTEGRATION/MODEL`; `GET /v1/models` lists the ids you may use",
                Untrusted(&id)
            ),
        )
    })
}

pub(super) fn split_id(id: &str) -> Option<(String, String)> {
    let (i, m) = id.split_once('/')?;
    (!i.is_empty() && !m.is_empty()).then(|| (i.to_string(), m.to_string()))
}

/// `stop`: a string or a list of strings, within the bounds every task has.
fn stop(o: &Map<String, Value>) -> Result<Vec<String>, OpenAiError> {
    let words = match o.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                OpenAiError::invalid("stop", "`stop` must be a string or a list of strings")
            })?,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "stop",
                "`stop` must be a string or a list of strings",
            ))
        }
    };
    crate::task::check_stop_words(&words, "stop").map_err(|m| OpenAiError::invalid("stop", m))?;
    Ok(words)
}

/// `temperature`, `top_p` and `seed`, as tasks take them.
type Sampling = (Option<f64>, Option<f64>, Option<u64>);

/// Sampling as tasks take it: OpenAI's `temperature: 0` (greedy) is left
/// out, which is greedy on Hugging Face servers (they refuse 0).
fn sampling(o: &Map<String, Value>) -> Result<Sampling, OpenAiError> {
    if let Some(n) = count(o, "n")? {
        if n != 1 {
            return Err(OpenAiError::invalid("n", "only `n = 1` is supported"));
        }
    }
    let temperature = number(o, "temperature")?.filter(|t| *t != 0.0);
    let top_p = number(o, "top_p")?;
    let seed = match o.get("seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| OpenAiError::invalid("seed", "`seed` must be a whole number"))?,
        ),
    };
    Ok((temperature, top_p, seed))
}

/// Whether to stream, and whether the stream ends with a usage chunk.
pub(super) fn streaming(o: &Map<String, Value>) -> Result<(bool, bool), OpenAiError> {
    let stream = boolean(o, "stream")?;
    let usage = match o.get("stream_options") {
        None => false,
        Some(Value::Object(so)) => {
            if let Some(k) = so.keys().find(|k| k.as_str() != "include_usage") {
                return Err(OpenAiError::invalid(
                    "stream_options",
                    format!(
                        "`stream_options.{}` is not supported by hfconnect",
                        Untrusted(k)
                    ),
                ));
            }
            boolean(so, "include_usage")?
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "stream_options",
                "`stream_options` must be an object",
            ))
        }
    };
    Ok((stream, usage))
}

/// A message's text: a string, or a list of `{"type": "text", "text"}` parts.
fn content(v: Option<&Value>, i: usize) -> Result<String, OpenAiError> {
    // Named only when refused: a message that is fine costs no formatting.
    let param = || format!("messages[{i}].content");
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => {
                        // Every key OpenAI does not define for a text part is refused
                        // by name, as on a message (`cache_control` and the like).
                        if let Some(k) = p
                            .as_object()
                            .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "type" | "text")))
                        {
                            let k = Untrusted(k);
                            return Err(OpenAiError::invalid(
                                &format!("messages[{i}].content[{j}].{k}"),
                                format!("`messages[{i}].content[{j}].{k}` is not supported by hfconnect"),
                            ));
                        }
                        text.push_str(t)
                    }
                    (Some(other), _) => {
                        return Err(OpenAiError::invalid(
                            &param(),
                            format!(
                                "content parts of type `{}` are not supported by hfconnect; only `text`",
                                Untrusted(other)
                            ),
                        ))
                    }
                    _ => {
                        return Err(OpenAiError::invalid(
                            &param(),
                            "a content part needs `type` and `text`",
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(OpenAiError::invalid(
            &param(),
            "`content` must be a string or a list of text parts",
        )),
    }
}

pub(super) fn chat_task(o: &Map<String, Value>) -> Result<Task, OpenAiError> {
    let (integration, model) = model_id(o)?;
    let Some(Value::Array(items)) = o.get("messages") else {
        return Err(OpenAiError::invalid(
            "messages",
            "`messages` must be a list",
        ));
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(OpenAiError::invalid(
                &format!("messages[{i}]"),
                "a message must be an object",
            ));
        };
        if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(OpenAiError::invalid(
                &format!("messages[{i}].{}", Untrusted(k)),
                format!(
                    "`messages[{i}].{}` is not supported by hfconnect",
                    Untrusted(k)
                ),
            ));
        }
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => ChatRole::System,
            Some("user") => ChatRole::User,
            Some("assistant") => ChatRole::Assistant,
            other => {
                return Err(OpenAiError::invalid(
                    &format!("messages[{i}].role"),
                    format!(
                        "role `{}` is not supported by hfconnect; use `system`, `developer`, `user` or `assistant`",
                        Untrusted(other.unwrap_or("")),
                    ),
                ))
            }
        };
        messages.push(InputMessage {
            role,
            message: content(m.get("content"), i)?,
        });
    }
    let json_output = match o.get("response_format") {
        None => false,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => false,
            Some("json_object") => true,
            _ => {
                return Err(OpenAiError::invalid(
                    "response_format",
                    "`response_format` may be `text` or `json_object`; `json_schema` is not supported by hfconnect",
                ))
            }
        },
    };
    let (temperature, top_p, seed) = sampling(o)?;
    let max_tokens = match count(o, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => count(o, "max_tokens")?,
    };
    Ok(Task::ChatComplete(ChatCompleteInput {
        llm_provider: integration,
        model,
        messages,
        temperature,
        top_p,
        max_tokens,
        stop_words: stop(o)?,
        json_output,
        seed,
        ..ChatCompleteInput::default()
    }))
}

pub(super) fn completion_task(o: &Map<String, Value>) -> Result<Task, OpenAiError> {
    let (integration, model) = model_id(o)?;
    let prompt = match o.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return Err(OpenAiError::invalid(
                "prompt",
                "`prompt` must be a string (one prompt per request)",
            ))
        }
    };
    let (temperature, top_p, seed) = sampling(o)?;
    Ok(Task::TextComplete(TextCompleteInput {
        llm_provider: integration,
        model,
        prompt: Some(prompt),
        temperature,
        top_p,
        max_tokens: count(o, "max_tokens")?,
        stop_words: stop(o)?,
        seed,
        ..TextCompleteInput::default()
    }))
}

/// The embeddings task, and whether to answer in base64.
pub(super) fn embed_task(o: &Map<String, Value>) -> Result<(Task, bool), OpenAiError> {
    let (integration, model) = model_id(o)?;
    let bad = || {
        OpenAiError::invalid("input", "`input` must be a string or a list of strings (token arrays are not supported by hfconnect)")
    };
    let (text, texts) = match o.get("input") {
        Some(Value::String(s)) => (Some(s.clone()), None),
        Some(Value::Array(a)) => (
            None,
            Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?,
            ),
        ),
        _ => return Err(bad()),
    };
    let base64 = match string(o, "encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                "`encoding_format` is `float` or `base64`",
            ))
        }
    };
    Ok((
        Task::Embed(EmbedInput {
            llm_provider: integration,
            model,
            text,
            texts,
            dimensions: count(o, "dimensions")?,
            ..EmbedInput::default()
        }),
        base64,
    ))
}
