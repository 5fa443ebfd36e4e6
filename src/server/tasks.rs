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

use super::door::{Caller, Refused, Seen};
use super::error::ApiError;
use super::limits::read_body;
use super::AppState;
use crate::catalog::TaskKind;
use crate::connector::{Reply, TaskRequest};
use crate::task::{Door, Failure, Task, TaskEvent};
use crate::untrusted::Untrusted;

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

/// `POST /v1/tasks/{kind}`: who first (an unknown route is refused to a
/// known caller only), then the body, the task, and the Connector's answer.
pub(crate) async fn run_task(
    State(state): State<AppState>,
    Path(route): Path<String>,
    Caller { principal, .. }: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused<ApiError>> {
    let seen = || Seen::caller(principal.subject());
    let kind = task_kind(&route).map_err(|e| Refused::new(e, seen()))?;
    let body = read_body(&headers, body, state.body_limit, state.body_timeout)
        .await
        .map_err(|e| Refused::new(e, seen()))?;
    let (task, stream) = parse_task(kind, &body).map_err(|e| {
        // The names the body gave, for the count (labels are catalog names).
        let names = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => {
                let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
                (text("llmProvider"), text("model"))
            }
            _ => (None, None),
        };
        Refused::new(e, seen().naming(names))
    })?;
    let mut req = TaskRequest::new(&principal, &task).via(Door::Task);
    if stream {
        req = req.streamed();
    }
    // Refused before anything was sent upstream: the same status and body
    // for a plain and a streamed task. Only what fails after the stream
    // started is an SSE `error`.
    let stream = match state.connector.run(req).await.reply {
        Ok(Reply::Output(out)) => {
            let (headroom, tokens) = (out.headroom, out.token_headroom);
            let mut r = Json(out).into_response();
            super::ratelimit::requests(r.headers_mut(), headroom);
            super::ratelimit::tokens(r.headers_mut(), tokens);
            return Ok(r);
        }
        Ok(Reply::Stream(s)) => s,
        Err(e) => return Ok(ApiError::from(e).into_response()),
    };
    let (headroom, tokens) = (stream.headroom(), stream.token_headroom());
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
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    super::ratelimit::requests(r.headers_mut(), headroom);
    super::ratelimit::tokens(r.headers_mut(), tokens);
    Ok(r)
}

/// The task kind a task route's path names, for its count.
pub(crate) fn kind_of(path: &str) -> Option<TaskKind> {
    path.strip_prefix("/v1/tasks/")
        .and_then(TaskKind::from_route)
}

/// `GET /v1/usage`: the budgets that cover the caller and what is spent.
pub(crate) async fn usage(
    State(state): State<AppState>,
    Caller { principal, .. }: Caller,
) -> Result<Json<crate::connector::UsageView>, super::error::ApiError> {
    Ok(Json(state.connector.core().usage(&principal).await?))
}

/// `GET /v1/catalog`: what the caller may see.
pub(crate) async fn catalog(
    State(state): State<AppState>,
    Caller { principal, .. }: Caller,
) -> Json<crate::connector::CatalogView> {
    Json(state.connector.core().visible(&principal))
}
