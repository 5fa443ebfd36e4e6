//! What bounds a caller's hold on the service: open connections
//! (`--max-connections`), time without a request in flight on a connection
//! (`--header-timeout`: the first byte, an unfinished request head, HTTP/2
//! prefaces and HEADERS frames, idle keep-alive), and request bodies (size,
//! and `--body-timeout` to arrive whole).
//!
//! The idle watchdog works the same for HTTP/1 and HTTP/2 because it watches
//! requests, not bytes: a connection with no request in flight for longer
//! than the header timeout is closed, whatever the protocol is waiting for.
//! A request counts as in flight from its head until its response body has
//! been sent (so a long stream is never cut).

use crate::task::FailureKind;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::error::ApiError;

/// Request bodies larger than this are refused (413).
pub(crate) const BODY_LIMIT: usize = 1 << 20;

/// What one connection is doing, for the idle watchdog.
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the last request ended (or the connection opened).
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// How long the connection has had no request in flight; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now_ms().saturating_sub(last)))
    }
}

/// A request in flight; ends when its response body is done or dropped.
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished.
pub(crate) struct TrackedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The router, as one connection's hyper service that counts its requests.
#[derive(Clone)]
pub(crate) struct ConnService {
    pub app: axum::Router,
    pub activity: Arc<Activity>,
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let resp = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(resp.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// Serve `conn` until it ends, or until it has had no request in flight for
/// `idle`: then it is dropped (closed).
pub(crate) async fn watch_idle<F>(conn: F, activity: Arc<Activity>, idle: Duration) -> bool
where
    F: Future,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        let wait = match activity.idle_for() {
            Some(quiet) if quiet >= idle => return false,
            Some(quiet) => idle - quiet,
            None => idle,
        };
        tokio::select! {
            _ = conn.as_mut() => return true,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What a client over `--max-connections` gets before the connection closes.
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nx-should-retry: true\r\nconnection: close\r\ncontent-length: 97\r\n\r\n\
{\"error\":\"the service has its maximum of open connections\",\"kind\":\"overloaded\",\"retryable\":true}\n";

/// The request body, whole: at most `limit` bytes (413), arrived within
/// `timeout` (408).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            FailureKind::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            FailureKind::INVALID_INPUT,
            "the request body could not be read (the connection broke)",
        )),
        Err(_) => Err(ApiError::retry(
            StatusCode::REQUEST_TIMEOUT,
            FailureKind::RequestTimeout,
            format!(
                "the request body did not arrive whole within {:.0} s",
                timeout.as_secs_f64()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_answer() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["kind"], "overloaded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_in_flight_is_closed_after_the_idle_time() {
        let activity = Activity::new();
        let forever = std::future::pending::<()>();
        let started = tokio::time::Instant::now();
        let finished = watch_idle(forever, activity.clone(), Duration::from_secs(5)).await;
        assert!(!finished);
        assert!(started.elapsed() >= Duration::from_secs(5));
        // A request in flight keeps it open, whatever its length.
        let guard = activity.begin();
        let slow = tokio::time::sleep(Duration::from_secs(60));
        assert!(watch_idle(slow, activity.clone(), Duration::from_secs(5)).await);
        drop(guard);
    }
}
