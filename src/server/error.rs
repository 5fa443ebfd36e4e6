//! The error answer of every route: `{error, kind, retryable}` with the
//! status that goes with the kind, and `Retry-After` when a wait is known.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::provider::ErrorKind;
use crate::task::{TaskError, TaskErrorKind};

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// The status of a task error.
pub(crate) fn status_of(kind: TaskErrorKind) -> StatusCode {
    match kind {
        TaskErrorKind::NotFound => StatusCode::NOT_FOUND,
        TaskErrorKind::Inactive => StatusCode::CONFLICT,
        TaskErrorKind::Denied => StatusCode::FORBIDDEN,
        TaskErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        TaskErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        TaskErrorKind::InvalidOutput => StatusCode::BAD_GATEWAY,
        TaskErrorKind::Provider(k) => match k {
            ErrorKind::RateLimited | ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::ModelLoading | ErrorKind::EndpointUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        },
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        ApiError {
            status: status_of(e.kind()),
            kind: e.kind().as_str(),
            message: e.to_string(),
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
        }
    }
}

/// `{error, kind, retryable}`.
pub(crate) fn error_body(kind: &str, message: &str, retryable: bool) -> Value {
    json!({"error": message, "kind": kind, "retryable": retryable})
}

/// Whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_value(wait: Duration) -> Option<HeaderValue> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from_str(&secs.max(1).to_string()).ok()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(error_body(self.kind, &self.message, self.retryable)),
        )
            .into_response();
        if let Some(v) = self.retry_after.and_then(retry_after_value) {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}
