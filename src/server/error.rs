//! The error answer of every route: the [`Failure`] every door reports
//! (`{error, kind, retryable}`), the status that goes with its kind, and
//! `Retry-After` when a wait is known.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::task::{Failure, ProviderErrorKind, TaskError, TaskErrorKind};

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub failure: Failure,
}

impl ApiError {
    /// An answer retrying cannot mend.
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            failure: Failure::terminal(kind, message),
        }
    }

    /// An answer worth retrying.
    pub(crate) fn retry(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            failure: Failure::retry(kind, message, None),
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
        TaskErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        TaskErrorKind::Provider(k) => match k {
            ProviderErrorKind::RateLimited | ProviderErrorKind::Overloaded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProviderErrorKind::ModelLoading | ProviderErrorKind::EndpointUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProviderErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        },
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        ApiError {
            status: status_of(e.kind()),
            failure: Failure::from(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.failure.body())).into_response();
        let wait = self.failure.retry_after_secs();
        if let Some(v) = wait.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}
