//! The task routes (`POST /v1/tasks/{kind}`) and the catalog route: who is
//! calling, the body read within its limits, the task handed to the
//! Connector, its output or error in JSON or as server-sent events.

use crate::task::FailureKind;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::auth::caller;
use super::error::ApiError;
use super::limits::read_body;
use super::AppState;
use crate::catalog::TaskKind;
use crate::connector::{Refusal, Reply, TaskRequest};
use crate::task::{Door, Failure, Task, TaskEvent};
use crate::untrusted::Untrusted;
use std::time::Instant;

/// The task kind a route names.
fn task_kind(route: &str) -> Result<TaskKind, ApiError> {
    TaskKind::from_route(route).ok_or_else(|| {
        let known: Vec<String> = TaskKind::ALL
            .iter()
            .map(|k| format!("`{}`", k.route()))
            .collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            FailureKind::NOT_FOUND,
            format!(
                "unknown task kind `{}`; use {}",
                Untrusted(route),
                known.join(", ")
            ),
        )
    })
}

/// The task in `body`, and whether it is to be streamed.
fn parse_task(kind: TaskKind, body: &[u8]) -> Result<(Task, bool), ApiError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            FailureKind::INVALID_INPUT,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let stream = match v.as_object_mut().and_then(|o| o.remove("stream")) {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                FailureKind::INVALID_INPUT,
                "`stream` must be true or false",
            ))
        }
    };
    if stream && kind == TaskKind::Embeddings {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            FailureKind::INVALID_INPUT,
            "embeddings do not stream; leave `stream` out",
        ));
    }
    let task = Task::from_json(kind, v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            FailureKind::INVALID_INPUT,
            format!("invalid task input: {}", Untrusted(&e.to_string())),
        )
    })?;
    Ok((task, stream))
}

/// What the route learned about a request before it was refused: for its
/// audit event and its count.
#[derive(Default)]
struct Seen {
    caller: String,
    kind: Option<TaskKind>,
    integration: Option<String>,
    model: Option<String>,
}

/// Why a task route did not answer with a task's output.
enum NotAnswered {
    /// Refused here, before the Connector: recorded by the route.
    Refused(ApiError),
    /// Refused or failed in the Connector, which recorded it.
    Recorded(ApiError),
}

pub(crate) async fn run_task(
    State(state): State<AppState>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut seen = Seen {
        caller: "no key".into(),
        ..Seen::default()
    };
    let r = match task_route(&state, &route, &headers, body, &mut seen).await {
        Ok(r) => r,
        Err(NotAnswered::Recorded(e)) => e.into_response(),
        Err(NotAnswered::Refused(e)) => {
            state.connector.record_refusal(&Refusal {
                caller: &seen.caller,
                kind: seen.kind,
                integration: seen.integration.as_deref(),
                model: seen.model.as_deref(),
                outcome: e.failure.kind,
                denied: matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                message: &e.failure.message,
                started,
                door: crate::task::Door::Task,
            });
            e.into_response()
        }
    };
    state
        .connector
        .metrics()
        .doors
        .count(crate::task::Door::Task, r.status().as_u16());
    r
}

async fn task_route(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    body: Body,
    seen: &mut Seen,
) -> Result<Response, NotAnswered> {
    // Who first: an unknown route is refused to a known caller only.
    let kind = task_kind(route);
    seen.kind = kind.as_ref().ok().copied();
    let principal = match caller(&state.connector, headers) {
        Ok(p) => p,
        Err((e, presented)) => {
            seen.caller = presented.to_string();
            return Err(NotAnswered::Refused(e));
        }
    };
    seen.caller = principal.subject().to_string();
    let kind = kind.map_err(NotAnswered::Refused)?;
    let body = read_body(headers, body, state.body_limit, state.body_timeout)
        .await
        .map_err(NotAnswered::Refused)?;
    let (task, stream) = match parse_task(kind, &body) {
        Ok(t) => t,
        Err(e) => {
            // The names the body gave, for the count (labels are catalog names).
            if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&body) {
                let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
                seen.integration = text("llmProvider");
                seen.model = text("model");
            }
            return Err(NotAnswered::Refused(e));
        }
    };
    let mut req = TaskRequest::new(&principal, &task).via(Door::Task);
    if stream {
        req = req.streamed();
    }
    // Refused before anything was sent upstream: the same status and body
    // for a plain and a streamed task. Only what fails after the stream
    // started is an SSE `error`.
    let stream = match state.connector.run(req).await.reply {
        Ok(Reply::Output(out)) => return Ok(Json(out).into_response()),
        Ok(Reply::Stream(s)) => s,
        Err(e) => return Err(NotAnswered::Recorded(e.into())),
    };
    let events = stream.map(|ev| {
        let event = match ev {
            Ok(TaskEvent::Chunk(t)) => Event::default()
                .event("chunk")
                .json_data(json!({"text": t})),
            Ok(TaskEvent::Done(o)) => Event::default().event("output").json_data(o),
            Err(e) => Event::default()
                .event("error")
                .json_data(Failure::from(&e).body()),
        };
        Ok::<Event, std::convert::Infallible>(
            event.unwrap_or_else(|_| Event::default().event("error").data("{}")),
        )
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub(crate) async fn catalog(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = caller(&state.connector, &headers).map_err(|(e, _)| e)?;
    Ok(Json(state.connector.visible(&principal)))
}
