//! The error answer of every route: the [`Failure`] every door reports
//! (`{error, kind, retryable}`), the status that goes with its kind, and
//! `Retry-After` when a wait is known.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::task::{Failure, FailureKind, ProviderErrorKind, TaskError, TaskErrorKind};

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
        kind: FailureKind,
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
        kind: FailureKind,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            failure: Failure::retry(kind, message, None),
        }
    }
}

/// The status of a task error. An upstream's refusal of the caller's own
/// input is the caller's 4xx (413 for a body over the server's limit, 422
/// otherwise), so that engines neither page anyone nor retry; a 5xx is an
/// upstream fault.
pub(crate) fn status_of(e: &TaskError) -> StatusCode {
    if e.kind() == TaskErrorKind::Provider(ProviderErrorKind::InvalidRequest) {
        return match e.provider_error().and_then(|p| p.status()) {
            Some(413) => StatusCode::PAYLOAD_TOO_LARGE,
            // A content type the server refused is hfconnect's own fault.
            Some(415) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
    }
    match e.kind() {
        TaskErrorKind::NotFound => StatusCode::NOT_FOUND,
        TaskErrorKind::Inactive => StatusCode::CONFLICT,
        TaskErrorKind::Denied => StatusCode::FORBIDDEN,
        TaskErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        TaskErrorKind::RateLimited | TaskErrorKind::BudgetExhausted => {
            StatusCode::TOO_MANY_REQUESTS
        }
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
            status: status_of(&e),
            failure: Failure::from(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.failure.body())).into_response();
        retry_headers(
            r.headers_mut(),
            self.failure.retryable,
            self.failure.retry_after_secs(),
        );
        if self.failure.kind == FailureKind::Task(TaskErrorKind::BudgetExhausted) {
            super::ratelimit::exhausted(r.headers_mut(), self.failure.retry_after_secs());
        }
        r
    }
}

/// `x-should-retry` (read by OpenAI's SDKs, which otherwise retry every
/// 5xx: three billed generations for one failure that cannot succeed) and
/// `Retry-After` when the wait is known. An answer that tells the client to
/// come back later also closes an HTTP/1 connection: the client reconnects
/// rather than reuse a connection the idle timeout may be closing just then.
pub(crate) fn retry_headers(headers: &mut HeaderMap, retryable: bool, wait: Option<u64>) {
    headers.insert(
        "x-should-retry",
        HeaderValue::from_static(if retryable { "true" } else { "false" }),
    );
    if let Some(v) = wait.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        headers.insert("retry-after", v);
        headers.insert("connection", HeaderValue::from_static("close"));
    }
}
