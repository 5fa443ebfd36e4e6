//! The Conductor REST API as a worker uses it: batch long-polls, task
//! results, workflow look-ups, and Orkes application tokens (`POST /token`,
//! sent as `X-Authorization`, refreshed before they expire and once on a 401).

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderValue;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Requests other than polls give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is refreshed this long after it was fetched at the latest.
const TOKEN_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Conductor keeps at most this much of `reasonForIncompletion`.
const REASON_LIMIT: usize = 500;

/// A task as polled (the fields a worker uses; the rest are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolledTask {
    /// The task instance.
    pub task_id: String,
    /// Its workflow.
    pub workflow_instance_id: String,
    /// The task type it was polled as.
    #[serde(default)]
    pub task_type: String,
    /// The task's input.
    #[serde(default)]
    pub input_data: Option<Map<String, Value>>,
}

/// The status a worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportStatus {
    /// Not done; with `callbackAfterSeconds` Conductor hands it out again later.
    InProgress,
    /// Done, with its output.
    Completed,
    /// Failed; Conductor retries it per the task's retry count.
    Failed,
    /// Failed; do not retry.
    FailedWithTerminalError,
}

impl ReportStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::InProgress => "IN_PROGRESS",
            ReportStatus::Completed => "COMPLETED",
            ReportStatus::Failed => "FAILED",
            ReportStatus::FailedWithTerminalError => "FAILED_WITH_TERMINAL_ERROR",
        }
    }
}

/// One line of a task's execution log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLog {
    /// The text.
    pub log: String,
    /// The task it belongs to.
    pub task_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_time: i64,
}

/// A task result (`POST /tasks`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The task's workflow.
    pub workflow_instance_id: String,
    /// The task.
    pub task_id: String,
    /// What happened.
    pub status: ReportStatus,
    /// The task output (or `{error, kind, retryable}`).
    pub output_data: Map<String, Value>,
    /// Why it is not completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_for_incompletion: Option<String>,
    /// With `IN_PROGRESS`: hand the task out again after this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_after_seconds: Option<u64>,
    /// Who ran it.
    pub worker_id: String,
    /// Execution log lines.
    pub logs: Vec<TaskLog>,
}

impl TaskResult {
    /// Set the reason, cut to what Conductor keeps.
    pub fn reason(&mut self, reason: &str) {
        self.reason_for_incompletion = Some(reason.chars().take(REASON_LIMIT).collect());
    }
}

/// Who started a workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowOwner {
    /// The user or application that started it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The application that owns it.
    #[serde(default)]
    pub owner_app: Option<String>,
}

/// What kind of failure a [`ConductorError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConductorErrorKind {
    /// The server could not be reached or the connection broke.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The server answered with an error status.
    Status(u16),
    /// The credentials were refused.
    Unauthorized,
    /// The answer was not what the API describes.
    InvalidResponse,
}

/// Why a Conductor call failed. Never carries a credential.
#[derive(Debug, Clone)]
pub struct ConductorError {
    kind: ConductorErrorKind,
    message: String,
}

impl ConductorError {
    fn new(kind: ConductorErrorKind, message: impl Into<String>) -> ConductorError {
        ConductorError {
            kind,
            message: message.into(),
        }
    }

    fn from_reqwest(what: &str, e: &reqwest::Error) -> ConductorError {
        let kind = if e.is_timeout() {
            ConductorErrorKind::Timeout
        } else if e.is_decode() {
            ConductorErrorKind::InvalidResponse
        } else {
            ConductorErrorKind::Unreachable
        };
        // The error's source chain: the URL holds no secret (Conductor is the
        // operator's own server), but the text is bounded like any remote text.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        ConductorError::new(
            kind,
            format!("{what}: {}", crate::untrusted::Untrusted(&text)),
        )
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ConductorErrorKind {
        self.kind
    }

    /// Whether trying again later may work (down, slow, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ConductorErrorKind::Unreachable | ConductorErrorKind::Timeout => true,
            ConductorErrorKind::Status(s) => s >= 500 || s == 429 || s == 408,
            ConductorErrorKind::Unauthorized | ConductorErrorKind::InvalidResponse => false,
        }
    }
}

impl fmt::Display for ConductorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConductorError {}

/// Orkes credentials and the current token.
struct Auth {
    key_id: String,
    key_secret: SecretString,
    token: tokio::sync::Mutex<Option<(HeaderValue, Instant)>>,
}

/// A Conductor API client (one connection pool, shared by all pollers).
pub struct ConductorClient {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
}

impl fmt::Debug for ConductorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConductorClient")
            .field("base", &self.base)
            .field("key_id", &self.auth.as_ref().map(|a| a.key_id.as_str()))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

/// When to refresh a token fetched at `now`: 80 % into its life when it is a
/// JWT with `exp`, and after [`TOKEN_REFRESH`] at the latest.
fn refresh_at(token: &str, now: Instant) -> Instant {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("exp").and_then(Value::as_i64));
    let life = exp.map(|exp| {
        let left = exp - chrono::Utc::now().timestamp();
        Duration::from_secs(u64::try_from(left).unwrap_or(0) * 4 / 5)
    });
    now + life.map_or(TOKEN_REFRESH, |l| l.min(TOKEN_REFRESH))
}

impl ConductorClient {
    /// A client for the API at `base` (`http://host:8080/api`), with Orkes
    /// credentials when given.
    pub fn new(
        base: &Url,
        auth: Option<(String, SecretString)>,
    ) -> Result<ConductorClient, ConductorError> {
        let http = reqwest::Client::builder()
            // Redirects are not followed (they would carry task output and
            // the Orkes token elsewhere): a 3xx is an unexpected status.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConductorError::from_reqwest("cannot build the HTTP client", &e))?;
        Ok(ConductorClient {
            http,
            base: base.as_str().trim_end_matches('/').to_string(),
            auth: auth.map(|(key_id, key_secret)| Auth {
                key_id,
                key_secret,
                token: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The API base.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn token(&self, auth: &Auth, fresh: bool) -> Result<HeaderValue, ConductorError> {
        let mut slot = auth.token.lock().await;
        if !fresh {
            if let Some((value, at)) = &*slot {
                if Instant::now() < *at {
                    return Ok(value.clone());
                }
            }
        }
        let resp = self
            .http
            .post(format!("{}/token", self.base))
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .body(crate::exposure::orkes_token_body(
                &auth.key_id,
                &auth.key_secret,
            ))
            .send()
            .await
            .map_err(|e| ConductorError::from_reqwest("cannot get a token from Conductor", &e))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                ConductorErrorKind::Unauthorized
            } else {
                ConductorErrorKind::Status(status.as_u16())
            };
            return Err(ConductorError::new(
                kind,
                format!(
                    "conductor refused the credentials of key `{}` (HTTP {status})",
                    auth.key_id
                ),
            ));
        }
        let token: TokenResponse = resp.json().await.map_err(|e| {
            ConductorError::from_reqwest("conductor's token answer is not `{\"token\": ...}`", &e)
        })?;
        let mut value = HeaderValue::from_str(&token.token).map_err(|_| {
            ConductorError::new(
                ConductorErrorKind::InvalidResponse,
                "conductor's token holds characters that cannot go in a header",
            )
        })?;
        value.set_sensitive(true);
        let now = Instant::now();
        *slot = Some((value.clone(), refresh_at(&token.token, now)));
        Ok(value)
    }

    /// Send a request (with the token); on a 401, fetch a new token and send once more.
    async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Response, ConductorError> {
        let mut fresh = false;
        loop {
            let mut req = build(&self.http);
            if let Some(auth) = &self.auth {
                req = req.header("X-Authorization", self.token(auth, fresh).await?);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ConductorError::from_reqwest(what, &e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && self.auth.is_some() && !fresh {
                fresh = true;
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            let body = resp.text().await.unwrap_or_default();
            let body = crate::untrusted::Untrusted(&body).to_string();
            let kind = if status == StatusCode::UNAUTHORIZED {
                ConductorErrorKind::Unauthorized
            } else {
                ConductorErrorKind::Status(status.as_u16())
            };
            let detail = if body.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", body.trim())
            };
            return Err(ConductorError::new(
                kind,
                format!("{what}: conductor answered HTTP {status}{detail}"),
            ));
        }
    }

    /// `GET /tasks/poll/batch/{type}`: up to `count` tasks, waiting up to `wait` for them.
    pub async fn poll_batch(
        &self,
        task_type: &str,
        worker_id: &str,
        count: u32,
        wait: Duration,
        domain: Option<&str>,
    ) -> Result<Vec<PolledTask>, ConductorError> {
        let url = format!("{}/tasks/poll/batch/{task_type}", self.base);
        let timeout_ms = wait.as_millis().to_string();
        let count = count.to_string();
        let what = format!("cannot poll task type `{task_type}`");
        let resp = self
            .send(&what, |c| {
                let mut q = vec![
                    ("workerid", worker_id),
                    ("count", count.as_str()),
                    ("timeout", timeout_ms.as_str()),
                ];
                if let Some(d) = domain {
                    q.push(("domain", d));
                }
                c.get(&url).query(&q).timeout(wait + REQUEST_TIMEOUT)
            })
            .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ConductorError::from_reqwest(&what, &e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ConductorError::new(
                ConductorErrorKind::InvalidResponse,
                format!("{what}: the answer is not a list of tasks ({e})"),
            )
        })
    }

    /// `POST /tasks`: report a task's result.
    pub async fn update(&self, result: &TaskResult) -> Result<(), ConductorError> {
        let url = format!("{}/tasks", self.base);
        let what = format!(
            "cannot report task `{}`",
            crate::untrusted::Untrusted(&result.task_id)
        );
        self.send(&what, |c| {
            c.post(&url).json(result).timeout(REQUEST_TIMEOUT)
        })
        .await
        .map(|_| ())
    }

    /// `GET /workflow/{id}`: who started the workflow.
    pub async fn workflow_owner(&self, workflow_id: &str) -> Result<WorkflowOwner, ConductorError> {
        let what = format!(
            "cannot look up workflow `{}`",
            crate::untrusted::Untrusted(workflow_id)
        );
        // The id is the server's, but it goes into a path: one segment, encoded.
        let mut url = Url::parse(&format!("{}/workflow", self.base)).map_err(|e| {
            ConductorError::new(ConductorErrorKind::InvalidResponse, format!("{what}: {e}"))
        })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(workflow_id);
        }
        let resp = self
            .send(&what, |c| {
                c.get(url.clone())
                    .query(&[("includeTasks", "false")])
                    .timeout(REQUEST_TIMEOUT)
            })
            .await?;
        resp.json()
            .await
            .map_err(|e| ConductorError::from_reqwest(&what, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_tokens_refresh_before_they_expire() {
        let exp = chrono::Utc::now().timestamp() + 100;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"sub\":\"app\",\"exp\":{exp}}}"));
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        let now = Instant::now();
        let at = refresh_at(&token, now) - now;
        assert!(
            at >= Duration::from_secs(70) && at <= Duration::from_secs(80),
            "{at:?}"
        );
        // Not a JWT: the fixed interval.
        assert_eq!(refresh_at("opaque", now) - now, TOKEN_REFRESH);
    }

    #[test]
    fn status_errors_say_whether_to_retry() {
        let e = |s| ConductorError::new(ConductorErrorKind::Status(s), "x");
        assert!(e(503).is_retryable());
        assert!(e(429).is_retryable());
        assert!(!e(404).is_retryable());
        assert_eq!(e(404).kind(), ConductorErrorKind::Status(404));
        assert!(ConductorError::new(ConductorErrorKind::Unreachable, "x").is_retryable());
    }
}
