//! `hfconnect serve`: the HTTP front door. It authenticates callers by
//! application key, turns requests into tasks and hands them to the
//! Connector; it never calls a provider or the policy itself.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};

use crate::access::{Principal, Subject};
use crate::catalog::TaskKind;
use crate::connector::Connector;
use crate::provider::ErrorKind;
pub use crate::reload::{shutdown_signal, WATCH_INTERVAL};
use crate::task::{Task, TaskError, TaskErrorKind, TaskEvent};

/// Request bodies larger than this are refused (413).
pub const BODY_LIMIT: usize = 1 << 20;

/// What the server needs besides the Connector.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The config path (for reloads).
    pub config: PathBuf,
    /// How long in-flight requests may run after a shutdown signal.
    pub grace: Duration,
    /// How long a client may take to send a request's headers before the
    /// connection is closed (slow-loris guard; also bounds idle keep-alive).
    pub header_timeout: Duration,
}

#[derive(Clone)]
struct AppState {
    connector: Arc<Connector>,
}

/// An error answer: `{error, kind, retryable}` with the right status.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        let status = match e.kind() {
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
        };
        ApiError {
            status,
            kind: e.kind().as_str(),
            message: e.to_string(),
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
        }
    }
}

fn error_body(kind: &str, message: &str, retryable: bool) -> Value {
    json!({"error": message, "kind": kind, "retryable": retryable})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(error_body(self.kind, &self.message, self.retryable)),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
        }
        r
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Who is calling: the application owning the bearer key, or the user it
/// acts for; optionally scoped to one group.
fn caller(connector: &Connector, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let auth = header(headers, "authorization")
        .ok_or_else(|| unauthorized("no `Authorization: Bearer <key>` header"))?;
    let key = auth
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the `Authorization` header must be `Bearer <key>`"))?;
    let app = connector
        .authenticate(key.trim())
        .ok_or_else(|| unauthorized("the application key is not valid"))?;
    let subject = match header(headers, "x-hfconnect-user") {
        None => Subject::App(app.as_str().into()),
        Some(user) if connector.may_act_for_users(&app) => Subject::User(user.into()),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "denied",
                format!("application `{app}` may not act for users (`act_for_users` is not set), so `X-Hfconnect-User` is refused"),
            ))
        }
    };
    connector
        .principal(&subject, header(headers, "x-hfconnect-group"))
        .map_err(ApiError::from)
}

fn parse_task(kind: &str, body: &[u8]) -> Result<(Task, bool), ApiError> {
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
    let invalid = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("invalid task input: {e}"),
        )
    };
    let kind = match kind {
        "text-complete" => TaskKind::TextGeneration,
        "chat-complete" => TaskKind::Chat,
        "summarize" => TaskKind::Summarization,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                "unknown task kind `{other}`; use `text-complete`, `chat-complete` or `summarize`"
            ),
            ))
        }
    };
    let task = Task::from_json(kind, v).map_err(invalid)?;
    Ok((task, stream))
}

async fn run_task(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = caller(&state.connector, &headers)?;
    let (task, stream) = parse_task(&kind, &body)?;
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

async fn catalog(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = caller(&state.connector, &headers)?;
    Ok(Json(state.connector.visible(&principal)))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = state.connector.metrics_text().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn readyz(State(state): State<AppState>) -> Json<Value> {
    let c = state.connector.catalog();
    Json(json!({"ready": true, "integrations": c.integrations().len(), "models": c.model_count()}))
}

/// Every route the service answers, as `(method, path)`; `/openapi.json`
/// describes exactly these (a test holds the two together).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/tasks/text-complete"),
    ("post", "/v1/tasks/chat-complete"),
    ("post", "/v1/tasks/summarize"),
    ("get", "/v1/catalog"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
];

/// The OpenAPI 3.1 description of the service.
pub fn openapi() -> Value {
    let error = json!({"type": "object", "required": ["error", "kind", "retryable"], "properties": {
        "error": {"type": "string"}, "kind": {"type": "string"}, "retryable": {"type": "boolean"}}});
    let output = json!({"type": "object", "properties": {
        "result": {"description": "text, or the parsed JSON value with jsonOutput"},
        "finishReason": {"type": ["string", "null"], "examples": ["STOP", "LENGTH", "STOP_SEQUENCE"]},
        "tokenUsed": {"type": ["integer", "null"]}, "promptTokens": {"type": ["integer", "null"]},
        "completionTokens": {"type": ["integer", "null"]}}});
    let common = json!({
        "llmProvider": {"type": "string"}, "model": {"type": "string"}, "stream": {"type": "boolean"},
        "temperature": {"type": "number"}, "topP": {"type": "number"}, "maxTokens": {"type": "integer"},
        "stopWords": {"type": "array", "items": {"type": "string"}},
        "promptVariables": {"type": "object"}});
    let with = |extra: Value| {
        let mut props = common.clone();
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        props
    };
    let text = json!({"type": "object", "required": ["llmProvider", "model"], "properties": with(json!({
        "prompt": {"type": "string"}, "promptName": {"type": "string"}}))});
    let chat = json!({"type": "object", "required": ["llmProvider", "model", "messages"], "properties": with(json!({
        "instructions": {"type": "string"}, "jsonOutput": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "object", "required": ["role", "message"], "properties": {
            "role": {"enum": ["user", "assistant", "system"]}, "message": {"type": "string"}}}}}))});
    let summarize = json!({"type": "object", "required": ["llmProvider", "model", "text"], "properties": {
        "llmProvider": {"type": "string"}, "model": {"type": "string"}, "text": {"type": "string"},
        "maxLength": {"type": "integer"}, "minLength": {"type": "integer"}, "stream": {"type": "boolean"}}});
    let task = |summary: &str, schema: Value| {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), json!({"description": "the task output, or server-sent events (chunk, output, error) with \"stream\": true",
            "content": {"application/json": {"schema": output}, "text/event-stream": {}}}));
        for (code, what) in [
            ("400", "malformed JSON"),
            ("401", "no or bad application key"),
            ("403", "denied"),
            ("404", "unknown integration, model or prompt"),
            ("409", "inactive"),
            ("413", "body too large"),
            ("422", "invalid input"),
            ("429", "rate limited (Retry-After)"),
            ("502", "upstream error"),
            ("503", "upstream loading or unavailable (Retry-After)"),
            ("504", "upstream timeout"),
        ] {
            responses.insert(
                code.into(),
                json!({"description": what, "content": {"application/json": {"schema": error}}}),
            );
        }
        json!({"post": {"summary": summary, "security": [{"applicationKey": []}],
            "parameters": [{"name": "X-Hfconnect-User", "in": "header", "schema": {"type": "string"}},
                           {"name": "X-Hfconnect-Group", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
            "responses": responses}})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "hfconnect", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"applicationKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/tasks/text-complete": task("LLM_TEXT_COMPLETE", text),
            "/v1/tasks/chat-complete": task("LLM_CHAT_COMPLETE", chat),
            "/v1/tasks/summarize": task("Summarize a text", summarize),
            "/v1/catalog": {"get": {"summary": "integrations, models and prompts the caller can READ", "security": [{"applicationKey": []}],
                "responses": {"200": {"description": "the catalog"}, "401": {"description": "no or bad application key"}}}},
            "/healthz": {"get": {"summary": "alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "config loaded", "responses": {"200": {"description": "ready, with counts"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
        }
    })
}

/// The routes.
pub fn router(connector: Arc<Connector>) -> Router {
    Router::new()
        .route("/v1/tasks/{kind}", post(run_task))
        .route("/v1/catalog", get(catalog))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(AppState { connector })
}

/// Serve on `listener` until `shutdown` resolves, then let in-flight requests
/// finish for up to `options.grace`. SIGHUP reloads the config (a bad one is
/// logged and refused; the old one keeps serving).
pub async fn serve(
    connector: Arc<Connector>,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, config = %options.config.display(), "hfconnect serving");
    crate::reload::spawn_reload_on_sighup(connector.clone(), options.config.clone());
    crate::reload::spawn_reload_on_change(connector.clone(), options.config.clone());
    let app = router(connector);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are written whole; do not hold them back waiting for ACKs.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_s = options.grace.as_secs_f64(),
        "shutting down: no new connections, finishing in-flight requests"
    );
    if tokio::time::timeout(options.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping the requests still running");
    }
    Ok(())
}
