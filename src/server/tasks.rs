//! The task routes (`POST /v1/tasks/{kind}`) and the catalog route: who is
//! calling, the body read within its limits, the task handed to the
//! Connector, its output or error in JSON or as server-sent events.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::auth::caller;
use super::error::{error_body, ApiError};
use super::limits::{read_body, BODY_LIMIT};
use super::AppState;
use crate::catalog::TaskKind;
use crate::task::{Task, TaskEvent};
use crate::untrusted::Untrusted;

/// The task kind a route names.
fn task_kind(route: &str) -> Result<TaskKind, ApiError> {
    match route {
        "text-complete" => Ok(TaskKind::TextGeneration),
        "chat-complete" => Ok(TaskKind::Chat),
        "summarize" => Ok(TaskKind::Summarization),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "unknown task kind `{}`; use `text-complete`, `chat-complete` or `summarize`",
                Untrusted(other)
            ),
        )),
    }
}

/// The task in `body`, and whether it is to be streamed.
fn parse_task(kind: TaskKind, body: &[u8]) -> Result<(Task, bool), ApiError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let stream = match v.as_object_mut().and_then(|o| o.remove("stream")) {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "`stream` must be true or false",
            ))
        }
    };
    let task = Task::from_json(kind, v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("invalid task input: {}", Untrusted(&e.to_string())),
        )
    })?;
    Ok((task, stream))
}

pub(crate) async fn run_task(
    State(state): State<AppState>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = task_kind(&route)?;
    let principal = caller(&state.connector, &headers).map_err(|(e, _)| e)?;
    let body = read_body(&headers, body, BODY_LIMIT, state.body_timeout).await?;
    let (task, stream) = parse_task(kind, &body)?;
    if !stream {
        let out = state.connector.execute(&principal, &task).await?;
        return Ok(Json(out).into_response());
    }
    let events = state.connector.execute_stream(&principal, &task).map(|ev| {
        let event = match ev {
            Ok(TaskEvent::Chunk(t)) => Event::default()
                .event("chunk")
                .json_data(json!({"text": t})),
            Ok(TaskEvent::Done(o)) => Event::default().event("output").json_data(o),
            Err(e) => Event::default().event("error").json_data(error_body(
                e.kind().as_str(),
                &e.to_string(),
                e.is_retryable(),
            )),
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
