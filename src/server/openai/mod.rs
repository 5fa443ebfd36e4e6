//! The OpenAI-compatible door: `POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `GET /v1/models[/{id}]`. Requests in
//! OpenAI's shapes become the same tasks the task routes run — same key,
//! grants, group scope, limits, audit and metrics — and answers, streams and
//! errors go back in OpenAI's shapes, so that any OpenAI client becomes a
//! governed Hugging Face client by changing its base URL and key.
//!
//! Model ids are `INTEGRATION/MODEL`: the first segment is the integration,
//! the rest the model's name (which may hold `/` itself). Saved prompts are
//! not reachable here: OpenAI's requests have no field for one.
//!
//! What OpenAI's API defines and hfconnect does not do (tools, logprobs,
//! `n` > 1, images…) is refused with a 400 naming the field, never dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

mod request;

use request::{chat_task, completion_task, embed_task, fields, split_id, streaming, string};

use super::auth::Claimed;
use super::door::{Caller, Claim, DoorError, Refused, Seen};
use super::error::{status_of, ApiError};
use super::limits::read_body;
use super::AppState;
use crate::catalog::TaskKind;
use crate::connector::{Reply, TaskRequest};
use crate::task::{
    Door, FailureKind, FinishReason, TaskError, TaskErrorKind, TaskEvent, TaskOutput, TaskResult,
};
use crate::untrusted::Untrusted;

/// An error in OpenAI's shape: `{"error": {message, type, param, code}}`.
pub(crate) struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    pub(super) param: Option<String>,
    /// OpenAI's `code` (`null` when it has none for the case).
    code: Option<&'static str>,
    /// hfconnect's kind of the refusal: the `outcome` of its count and audit event.
    outcome: FailureKind,
    /// Whether the same request may succeed later (`x-should-retry`).
    retryable: bool,
    retry_after: Option<u64>,
}

impl OpenAiError {
    pub(super) fn new(
        status: StatusCode,
        outcome: FailureKind,
        message: impl Into<String>,
    ) -> OpenAiError {
        let kind = match status.as_u16() {
            // OpenAI's answer when an account's quota is spent.
            429 if outcome == FailureKind::Task(TaskErrorKind::BudgetExhausted) => {
                "insufficient_quota"
            }
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400 | 413 | 422 => "invalid_request_error",
            _ => "api_error",
        };
        let code = match outcome {
            FailureKind::Unauthorized => Some("invalid_api_key"),
            FailureKind::NOT_FOUND => Some("model_not_found"),
            FailureKind::DENIED => Some("permission_denied"),
            FailureKind::Task(TaskErrorKind::RateLimited) => Some("rate_limit_exceeded"),
            FailureKind::Task(TaskErrorKind::BudgetExhausted) => Some("insufficient_quota"),
            FailureKind::INVALID_INPUT => None,
            other => Some(other.as_str()),
        };
        OpenAiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code,
            outcome,
            retryable: matches!(status.as_u16(), 408 | 429 | 503),
            retry_after: None,
        }
    }

    pub(super) fn invalid(param: &str, message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            param: Some(param.to_string()),
            ..OpenAiError::new(StatusCode::BAD_REQUEST, FailureKind::INVALID_INPUT, message)
        }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> OpenAiError {
        // The task routes answer bad input with 422; OpenAI clients expect 400.
        let status = match e.status {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        OpenAiError {
            retry_after: e.failure.retry_after_secs(),
            retryable: e.failure.retryable,
            ..OpenAiError::new(status, e.failure.kind, e.failure.message)
        }
    }
}

impl From<&TaskError> for OpenAiError {
    fn from(e: &TaskError) -> OpenAiError {
        let status = match (e.kind(), status_of(e)) {
            (TaskErrorKind::InvalidInput, _) => StatusCode::BAD_REQUEST,
            (TaskErrorKind::Inactive, _) => StatusCode::FORBIDDEN,
            // OpenAI's clients read a 400 as "your request is wrong".
            (_, StatusCode::UNPROCESSABLE_ENTITY) => StatusCode::BAD_REQUEST,
            (_, s) => s,
        };
        OpenAiError {
            retry_after: crate::task::Failure::from(e).retry_after_secs(),
            retryable: e.is_retryable(),
            param: matches!(e.kind(), TaskErrorKind::NotFound | TaskErrorKind::Denied)
                .then(|| "model".to_string()),
            ..OpenAiError::new(status, FailureKind::Task(e.kind()), e.to_string())
        }
    }
}

impl DoorError for OpenAiError {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn outcome(&self) -> FailureKind {
        self.outcome
    }
    fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        super::error::retry_headers(r.headers_mut(), self.retryable, self.retry_after);
        if self.outcome == FailureKind::Task(TaskErrorKind::BudgetExhausted) {
            super::ratelimit::exhausted(r.headers_mut(), self.retry_after);
        }
        if self.outcome == FailureKind::Task(TaskErrorKind::RateLimited) {
            let h = r.headers_mut();
            h.insert(
                "x-ratelimit-remaining-requests",
                axum::http::HeaderValue::from_static("0"),
            );
            if let Some(v) = self.retry_after.and_then(|s| {
                axum::http::HeaderValue::from_str(&super::ratelimit::duration(
                    std::time::Duration::from_secs(s),
                ))
                .ok()
            }) {
                h.insert("x-ratelimit-reset-requests", v);
            }
        }
        r
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `prefix-` and 24 random hex digits (ids name answers; they guard nothing).
fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// OpenAI's `finish_reason`: `stop` or `length`.
fn finish(o: &TaskOutput) -> Value {
    match o.finish_reason {
        Some(FinishReason::Length) => json!("length"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

fn usage(o: &TaskOutput) -> Value {
    match (o.prompt_tokens, o.completion_tokens) {
        (Some(p), Some(c)) => {
            json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
        }
        _ => Value::Null,
    }
}

/// The answer's text (a `jsonOutput` value written back as JSON).
fn text_of(o: &TaskOutput) -> std::borrow::Cow<'_, str> {
    o.result.to_text()
}

/// Which OpenAI route a request came by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
}

impl Route {
    fn known(self) -> &'static [&'static str] {
        match self {
            Route::Chat => &[
                "model",
                "messages",
                "max_tokens",
                "max_completion_tokens",
                "temperature",
                "top_p",
                "stop",
                "seed",
                "n",
                "response_format",
                "stream",
                "stream_options",
                "user",
            ],
            Route::Completions => &[
                "model",
                "prompt",
                "max_tokens",
                "temperature",
                "top_p",
                "stop",
                "seed",
                "n",
                "stream",
                "stream_options",
                "user",
            ],
            Route::Embeddings => &["model", "input", "encoding_format", "dimensions", "user"],
        }
    }
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    claim: Claim<OpenAiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused<OpenAiError>> {
    serve(&state, Route::Chat, claim.claimed, &headers, body).await
}

pub(crate) async fn completions(
    State(state): State<AppState>,
    claim: Claim<OpenAiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused<OpenAiError>> {
    serve(&state, Route::Completions, claim.claimed, &headers, body).await
}

pub(crate) async fn embeddings(
    State(state): State<AppState>,
    claim: Claim<OpenAiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused<OpenAiError>> {
    serve(&state, Route::Embeddings, claim.claimed, &headers, body).await
}

/// The task kind an OpenAI route's path names, for its count.
pub(crate) fn kind_of(path: &str) -> Option<TaskKind> {
    match path {
        "/v1/chat/completions" => Some(TaskKind::Chat),
        "/v1/completions" => Some(TaskKind::TextGeneration),
        "/v1/embeddings" => Some(TaskKind::Embeddings),
        _ => None,
    }
}

/// The integration and model a body's `model` names, if it names them so.
fn names_of(o: &Map<String, Value>) -> (Option<String>, Option<String>) {
    match o.get("model").and_then(Value::as_str).and_then(split_id) {
        Some((i, m)) => (Some(i), Some(m)),
        None => (None, None),
    }
}

/// One request on the door: refused before it is a task (recorded by the
/// door's layer), or a task run by the Connector (which recorded it).
async fn serve(
    state: &AppState,
    route: Route,
    mut claimed: Claimed,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refused<OpenAiError>> {
    let here = |e: OpenAiError, who: &Claimed, names| -> Refused<OpenAiError> {
        Refused::new(e, Seen::caller(who.presented()).naming(names))
    };
    let body = read_body(headers, body, state.body_limit, state.body_timeout)
        .await
        .map_err(|e| here(e.into(), &claimed, (None, None)))?;
    let o = fields(&body, route.known()).map_err(|e| {
        // The names the body gave, for the count, as the task routes do.
        let names = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => names_of(&o),
            _ => (None, None),
        };
        here(e, &claimed, names)
    })?;
    // The body's `user` is `X-Hfconnect-User`'s twin: the acting user is
    // settled first, then the group scope is checked against that user.
    if let Some(user) = string(&o, "user").map_err(|e| here(e, &claimed, names_of(&o)))? {
        if let Err(e) = claimed.act_for(&state.connector, &user) {
            let mut e = OpenAiError::from(e);
            e.param = Some("user".into());
            return Err(here(e, &claimed, names_of(&o)));
        }
    }
    let principal = claimed
        .resolve(&state.connector)
        .map_err(|(e, presented)| {
            Refused::new(
                OpenAiError::from(e),
                Seen::caller(presented).naming(names_of(&o)),
            )
        })?;
    let refused = |e: OpenAiError| -> Refused<OpenAiError> {
        Refused::new(e, Seen::caller(principal.subject()).naming(names_of(&o)))
    };
    let id = o.get("model").and_then(Value::as_str).unwrap_or_default();
    match route {
        Route::Embeddings => {
            let (task, base64) = embed_task(&o).map_err(refused)?;
            let out = state
                .connector
                .run(TaskRequest::new(&principal, &task).via(Door::OpenAi))
                .await
                .output();
            let out = match out {
                Ok(out) => out,
                Err(e) => return Ok(OpenAiError::from(&e).into_response()),
            };
            let mut r = Json(embeddings_answer(&out, id, base64)).into_response();
            super::ratelimit::requests(r.headers_mut(), out.headroom);
            super::ratelimit::tokens(r.headers_mut(), out.token_headroom);
            Ok(r)
        }
        Route::Chat | Route::Completions => {
            let task = if route == Route::Chat {
                chat_task(&o)
            } else {
                completion_task(&o)
            }
            .map_err(refused)?;
            let (stream, include_usage) = streaming(&o).map_err(refused)?;
            let mut req = TaskRequest::new(&principal, &task).via(Door::OpenAi);
            if stream {
                req = req.streamed();
            }
            let events = match state.connector.run(req).await.reply {
                Ok(Reply::Output(out)) => {
                    let mut r = answer(route, &out, id);
                    super::ratelimit::requests(r.headers_mut(), out.headroom);
                    super::ratelimit::tokens(r.headers_mut(), out.token_headroom);
                    return Ok(r);
                }
                Ok(Reply::Stream(s)) => s,
                Err(e) => return Ok(OpenAiError::from(&e).into_response()),
            };
            let (headroom, tokens) = (events.headroom(), events.token_headroom());
            let mut r = stream_answer(route, events, id.to_string(), include_usage);
            super::ratelimit::requests(r.headers_mut(), headroom);
            super::ratelimit::tokens(r.headers_mut(), tokens);
            Ok(r)
        }
    }
}

/// A plain answer, written without building a JSON tree.
#[derive(serde::Serialize)]
struct Answer<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Value,
}

#[derive(serde::Serialize)]
struct Choice<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    logprobs: Option<()>,
    finish_reason: Value,
}

#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

fn answer(route: Route, out: &TaskOutput, model: &str) -> Response {
    let text = text_of(out);
    let chat = route == Route::Chat;
    let a = Answer {
        id: new_id(if chat { "chatcmpl" } else { "cmpl" }),
        object: if chat {
            "chat.completion"
        } else {
            "text_completion"
        },
        created: now(),
        model,
        choices: [Choice {
            index: 0,
            message: chat.then_some(Message {
                role: "assistant",
                content: &text,
            }),
            text: (!chat).then_some(&text),
            logprobs: None,
            finish_reason: finish(out),
        }],
        usage: usage(out),
    };
    Json(a).into_response()
}

/// One vector of an embeddings answer: its numbers, or their base64.
enum Embedding<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

impl serde::Serialize for Embedding<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Embedding::Floats(v) => v.serialize(s),
            Embedding::Base64(b) => s.serialize_str(b),
        }
    }
}

#[derive(serde::Serialize)]
struct EmbeddingItem<'a> {
    object: &'static str,
    index: usize,
    embedding: Embedding<'a>,
}

#[derive(serde::Serialize)]
struct EmbeddingsAnswer<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem<'a>>,
    model: &'a str,
    usage: EmbeddingsUsage,
}

#[derive(serde::Serialize)]
struct EmbeddingsUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

/// The vectors of an embeddings task, formatted once, straight from `f32`s.
fn embeddings_answer<'a>(
    out: &'a TaskOutput,
    model: &'a str,
    base64: bool,
) -> EmbeddingsAnswer<'a> {
    let tokens = out.prompt_tokens.unwrap_or(0);
    let rows: Vec<&[f32]> = match &out.result {
        TaskResult::Vectors(v) => v.iter().collect(),
        TaskResult::Vector(v) => vec![v.as_slice()],
        _ => Vec::new(),
    };
    let data = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                Embedding::Base64(crate::task::Vectors::row_base64(row))
            } else {
                Embedding::Floats(row)
            },
        })
        .collect();
    EmbeddingsAnswer {
        object: "list",
        data,
        model,
        usage: EmbeddingsUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }
}

/// A streamed chat or completion as OpenAI's chunks, ending with `[DONE]`;
/// a failure after the start is an `{"error"}` chunk and no `[DONE]`.
fn stream_answer(
    route: Route,
    events: crate::connector::TaskStream,
    model: String,
    include_usage: bool,
) -> Response {
    let id = new_id(if route == Route::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    });
    let created = now();
    let object = if route == Route::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let chunk = move |text: Option<&str>, finish_reason: Value, first: bool| {
        let choice = if route == Route::Chat {
            let delta = match (text, first) {
                (Some(t), true) => json!({"role": "assistant", "content": t}),
                (Some(t), false) => json!({"content": t}),
                (None, _) => json!({}),
            };
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
        } else {
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish_reason})
        };
        let mut c = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let s = async_stream::stream! {
        let mut events = events;
        let mut first = true;
        while let Some(ev) = events.next().await {
            match ev {
                Ok(TaskEvent::Chunk(t)) => {
                    yield Event::default().json_data(chunk(Some(&t), Value::Null, first));
                    first = false;
                }
                Ok(TaskEvent::Done(o)) => {
                    if first {
                        yield Event::default().json_data(chunk(Some(""), Value::Null, true));
                    }
                    yield Event::default().json_data(chunk(None, finish(&o), false));
                    if include_usage {
                        let mut last = chunk(None, Value::Null, false);
                        last["choices"] = json!([]);
                        last["usage"] = usage(&o);
                        yield Event::default().json_data(last);
                    }
                    yield Ok(Event::default().data("[DONE]"));
                    return;
                }
                Err(e) => {
                    yield Event::default().json_data(OpenAiError::from(&e).body());
                    return;
                }
            }
        }
    };
    let s = s.map(|e| {
        Ok::<Event, std::convert::Infallible>(e.unwrap_or_else(|_| {
            Event::default().data("{\"error\":{\"message\":\"unserializable chunk\"}}")
        }))
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /v1/models`: the models the caller may `EXECUTE`.
pub(crate) async fn list_models(
    State(state): State<AppState>,
    caller: Caller<OpenAiError>,
) -> Json<Value> {
    let data: Vec<Value> = state
        .connector
        .core()
        .executable_models(&caller.principal)
        .into_iter()
        .map(|m| model_json(&m))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`: one of them; an unknown model and one the caller
/// may not use are the same 404.
pub(crate) async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller<OpenAiError>,
) -> Response {
    let found = split_id(&id).and_then(|(i, m)| {
        state
            .connector
            .core()
            .executable_models(&caller.principal)
            .into_iter()
            .find(|r| r.integration == i && r.model == m)
    });
    match found {
        Some(m) => Json(model_json(&m)).into_response(),
        None => OpenAiError {
            param: Some("model".into()),
            ..OpenAiError::new(
                StatusCode::NOT_FOUND,
                FailureKind::NOT_FOUND,
                format!(
                    "the model `{}` does not exist or you do not have access to it",
                    Untrusted(&id)
                ),
            )
        }
        .into_response(),
    }
}

fn model_json(m: &crate::connector::RunnableModel) -> Value {
    json!({"id": format!("{}/{}", m.integration, m.model), "object": "model", "created": m.created, "owned_by": m.integration})
}
