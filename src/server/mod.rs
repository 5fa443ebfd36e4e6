//! `hfconnect serve`: the HTTP front door. It authenticates callers by
//! application key, turns requests into tasks and hands them to the
//! Connector; it never calls a provider or the policy itself.
//!
//! - `auth`: the bearer key and the identity headers;
//! - `door`: what every door does around its handlers (counts, refusals'
//!   audit events) as a layer, and the caller extractors;
//! - `tasks`: the task and catalog routes;
//! - `limits`: connections, idle time, request bodies;
//! - `error`: the `{error, kind, retryable}` answer;
//! - `openai`: the OpenAI-compatible door (`/v1/chat/completions`, …);
//! - `openapi`: the description of the routes.

mod auth;
mod door;
mod endpoints;
mod error;
mod limits;
mod openai;
mod openapi;
mod ratelimit;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::connector::Connector;
pub use crate::keys::{key_hash, new_key};
pub use crate::reload::shutdown_signal;
use crate::task::Door;
use openapi::openapi;

/// What the server needs besides the Connector.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The config path (for reloads).
    pub config: PathBuf,
    /// How long in-flight requests may run after a shutdown signal.
    pub grace: Duration,
    /// How long a connection may go without a request in flight (the time to
    /// send a request's head, and idle keep-alive) before it is closed.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive whole.
    pub body_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request body read; larger ones are answered 413.
    pub body_limit: usize,
    /// How often the config and key files are checked for changes.
    pub watch_interval: Duration,
    /// Whether `/readyz` requires every active integration to have a
    /// usable key (the default: Kubernetes holds traffic until the Secret
    /// is mounted); `false` reports missing keys but stays ready.
    pub require_keys: bool,
}

impl ServeOptions {
    /// The defaults of `hfconnect serve` for the config at `config`: 30 s
    /// grace, 10 s header timeout, 30 s body timeout, 1024 connections,
    /// 1 MiB bodies, files checked every 2 s.
    pub fn new(config: PathBuf) -> ServeOptions {
        ServeOptions {
            config,
            grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            body_limit: limits::BODY_LIMIT,
            watch_interval: crate::reload::WATCH_INTERVAL,
            require_keys: true,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    connector: Arc<Connector>,
    body_timeout: Duration,
    body_limit: usize,
    require_keys: bool,
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let mut r = state.connector.metrics_text().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Ready once a config is loaded and every active integration has a usable
/// key (unless `require_keys` is off: then missing keys show but do not
/// hold traffic); a refused reload keeps it ready (the previous config
/// serves) and shows here. Not ready is a 503 with the reasons.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let config = state.connector.core().config_status();
    let keys = state.connector.core().key_status();
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| k.active)
        .filter_map(|k| {
            k.error.as_ref().map(|why| {
                format!(
                    "integration `{}` has no usable API key ({}): {}",
                    k.integration,
                    k.source,
                    crate::untrusted::bounded(why)
                )
            })
        })
        .collect();
    let ready = missing.is_empty() || !state.require_keys;
    let keys: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                k.integration.clone(),
                json!({
                    "active": k.active,
                    "available": k.error.is_none(),
                    "source": k.source,
                    "error": k.error.as_deref().map(crate::untrusted::bounded),
                }),
            )
        })
        .collect();
    let body = Json(json!({
        "ready": ready,
        "reasons": missing,
        "require_keys": state.require_keys,
        "integrations": config.integrations,
        "models": config.models,
        "keys": keys,
        "config": config,
        "admission": state.connector.core().admission_status().await,
    }));
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Every route the service answers, as `(method, path)`; `/openapi.json`
/// describes exactly these (a test holds the two together).
fn app(
    connector: Arc<Connector>,
    body_timeout: Duration,
    body_limit: usize,
    require_keys: bool,
) -> Router {
    let state = AppState {
        connector,
        body_timeout,
        body_limit,
        require_keys,
    };
    let door = |door: Door, kind_of: fn(&str) -> Option<crate::catalog::TaskKind>| {
        axum::middleware::from_fn_with_state(
            door::DoorLayer {
                state: state.clone(),
                door,
                kind_of,
            },
            door::layer,
        )
    };
    let tasks = Router::new()
        .route("/v1/tasks/{kind}", post(tasks::run_task))
        .route("/v1/catalog", get(tasks::catalog))
        .route("/v1/usage", get(tasks::usage))
        .route(
            "/v1/endpoints/{integration}/{*model}",
            get(endpoints::status).post(endpoints::change),
        )
        .layer(door(Door::Task, tasks::kind_of));
    let openai = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*id}", get(openai::get_model))
        .layer(door(Door::OpenAi, openai::kind_of));
    Router::new()
        .merge(tasks)
        .merge(openai)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub(crate) async fn serve_metrics(
    connector: Arc<Connector>,
    require_keys: bool,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            connector,
            body_timeout: Duration::from_secs(30),
            body_limit: limits::BODY_LIMIT,
            require_keys,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
    tracing::info!(%addr, config = %options.config.display(), max_connections = options.max_connections, "hfconnect serving");
    crate::reload::spawn_reloader(
        connector.clone(),
        options.config.clone(),
        options.watch_interval,
    );
    let connections = connector.core().connection_metrics();
    let app = app(
        connector,
        options.body_timeout,
        options.body_limit,
        options.require_keys,
    );
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(64 * 1024);
    // HTTP/2 abuse: at most 256 streams at once per connection, heads of at
    // most 64 KiB, and a client that resets streams faster than they are
    // served (the "rapid reset" flood) or keeps making its own streams fail
    // is sent GOAWAY and dropped.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: a short answer if the socket takes it now, then closed.
            connections.refused.inc();
            let _ = stream.try_write(limits::TOO_MANY_CONNECTIONS);
            drop(stream);
            continue;
        };
        // Answers are written whole; do not hold them back waiting for ACKs.
        let _ = stream.set_nodelay(true);
        let activity = limits::Activity::new();
        let service = limits::ConnService {
            app: app.clone(),
            activity: activity.clone(),
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let idle = options.header_timeout;
        let open = connections.open.clone();
        open.inc();
        tokio::spawn(async move {
            let conn = async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
            };
            if !limits::watch_idle(conn, activity, idle).await {
                tracing::debug!(%peer, "closing a connection with no request in flight");
            }
            open.dec();
            drop(slot);
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
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// Every path the OpenAPI document describes, with each method, is
    /// routed by the real router (not its fallback, not a wrong method), and
    /// a method or path it does not describe is not.
    #[tokio::test]
    async fn openapi_describes_the_routes_the_router_serves() {
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/local.toml");
        let options = crate::config::LoadOptions::new().env(std::sync::Arc::new(|_| None));
        let connector = crate::connector::Connector::from_path(&example, &options).unwrap();
        let connector = std::sync::Arc::new(connector);
        let router = super::app(connector, std::time::Duration::from_secs(1), 1024, false)
            .fallback(|| async { (StatusCode::IM_A_TEAPOT, "unrouted") })
            .method_not_allowed_fallback(|| async { (StatusCode::IM_A_TEAPOT, "wrong method") });
        let status = |method: &str, path: &str| {
            let router = router.clone();
            let req = Request::builder()
                .method(method)
                .uri(path.replace("{id}", "hf/m"))
                .body(Body::empty())
                .unwrap();
            async move { router.oneshot(req).await.unwrap().status() }
        };
        let doc = super::openapi();
        let mut described = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let got = status(&method.to_uppercase(), path).await;
                assert_ne!(
                    got,
                    StatusCode::IM_A_TEAPOT,
                    "{method} {path} is described but not served"
                );
                described += 1;
            }
            for other in ["PUT", "DELETE"] {
                assert_eq!(
                    status(other, path).await,
                    StatusCode::IM_A_TEAPOT,
                    "{other} {path}"
                );
            }
        }
        assert!(described >= 14, "{described} operations described");
        for undescribed in ["/v1/tasks", "/v1/responses", "/v2/chat/completions", "/"] {
            assert_eq!(
                status("POST", undescribed).await,
                StatusCode::IM_A_TEAPOT,
                "{undescribed}"
            );
        }
    }
}
