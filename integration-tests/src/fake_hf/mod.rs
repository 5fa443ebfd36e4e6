//! A fake Hugging Face server for tests and benchmarks: TGI (`/generate`,
//! `/generate_stream`, `/info`, `/health`), the OpenAI-style chat route, an
//! inference-toolkit pipeline (`POST /`), the router
//! (`/hf-inference/models/{repo}`), text-embeddings-inference and the
//! `feature-extraction` pipeline ([`tei`]), `whoami-v2` and the endpoint management API
//! (`/v2/endpoint/...`). It speaks the protocols as the reference describes them,
//! awkward parts included (`data:` without a space, errors inside a 200 stream,
//! plain-text and empty error bodies), records every request, and takes scripted
//! faults per route.

pub mod admin;
mod management;
pub mod tei;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

/// The routes faults can be scripted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /generate`
    Generate,
    /// `POST /generate_stream`
    GenerateStream,
    /// `POST …/v1/chat/completions` (also on the router)
    Chat,
    /// `POST /` or `/predict` (also the router's model route)
    Pipeline,
    /// `GET /info`
    Info,
    /// `GET /health`
    Health,
    /// `GET /api/whoami-v2`
    #[serde(rename = "whoami")]
    WhoAmI,
    /// `POST /tei/embed` (text-embeddings-inference)
    Embed,
    /// `POST …/v1/embeddings` (TEI's OpenAI-style route, also on the router)
    Embeddings,
    /// `GET /tei/info`
    TeiInfo,
    /// `POST /fe` or the router's `…/pipeline/feature-extraction`
    FeatureExtraction,
    /// `GET /v2/endpoint/{namespace}[/{name}]`
    Endpoints,
    /// `POST /v2/endpoint/{namespace}/{name}/resume`
    Resume,
}

/// An error body.
#[derive(Debug, Clone)]
pub enum Body {
    /// `application/json`
    Json(Value),
    /// `text/plain`
    Text(String),
    /// Nothing.
    Empty,
}

/// What the next request of a route gets instead of (or before) the normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, body and headers.
    Status {
        status: u16,
        body: Body,
        headers: Vec<(String, String)>,
    },
    /// Wait before answering normally (delay before headers).
    Delay(Duration),
    /// Send the headers, then break the connection before the body.
    Reset,
    /// Send half of the normal JSON answer.
    Truncated,
    /// Send the headers and half of the body, wait this long, then the rest.
    SlowBody(Duration),
    /// Stream: wait this long before each event.
    SlowEvents(Duration),
    /// Stream: stop after this many events, without the final one.
    StreamCut(usize),
    /// Stream: after this many events, send this error event (HTTP 200).
    StreamError { after: usize, event: Value },
    /// A 200 answer of this many bytes (a huge `generated_text`, or token
    /// events adding up to it on a stream route), sent without being built whole.
    Oversized(usize),
    /// A hostile stream (TGI's or the chat route's events): token events of
    /// `token_bytes` characters, one every `every`, for ever — until the
    /// client hangs up. With a large token it is an endless flood; with a
    /// small one and a pause, a slow drip under any byte cap.
    Endless { token_bytes: usize, every: Duration },
}

impl Fault {
    /// A status with a JSON body.
    pub fn json(status: u16, body: Value) -> Fault {
        Fault::Status {
            status,
            body: Body::Json(body),
            headers: Vec::new(),
        }
    }
    /// A status with a plain-text body.
    pub fn text(status: u16, body: &str) -> Fault {
        Fault::Status {
            status,
            body: Body::Text(body.to_string()),
            headers: Vec::new(),
        }
    }
    /// A status with no body.
    pub fn empty(status: u16) -> Fault {
        Fault::Status {
            status,
            body: Body::Empty,
            headers: Vec::new(),
        }
    }
    /// Add a header to a status fault.
    #[must_use]
    pub fn header(self, name: &str, value: &str) -> Fault {
        match self {
            Fault::Status {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.to_string(), value.to_string()));
                Fault::Status {
                    status,
                    body,
                    headers,
                }
            }
            other => other,
        }
    }
    /// 503 while the model loads.
    pub fn loading(estimated_time: f64) -> Fault {
        Fault::json(
            503,
            json!({"error": "Model fake/model is currently loading", "estimated_time": estimated_time}),
        )
    }
    /// 429 from a rate limiter, with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Fault {
        Fault::json(429, json!({"error": "Rate limit reached"}))
            .header("retry-after", &retry_after_secs.to_string())
    }
    /// 429 from TGI's concurrency limit.
    pub fn overloaded() -> Fault {
        Fault::json(
            429,
            json!({"error": "Model is overloaded", "error_type": "overloaded"}),
        )
    }
    /// 503 with an empty body: the endpoint is scaled to zero and a replica is starting.
    pub fn scaled_to_zero() -> Fault {
        Fault::empty(503)
    }
    /// 401 as the Hub answers it.
    pub fn unauthorized() -> Fault {
        Fault::json(
            401,
            json!({"error": "Invalid credentials in Authorization header"}),
        )
        .header(
            "x-error-message",
            "Invalid credentials in Authorization header",
        )
    }
    /// A redirect (`301`, `302`, `307`, `308`) to `location`.
    pub fn redirect(status: u16, location: &str) -> Fault {
        Fault::empty(status).header("location", location)
    }
    /// 403 for a gated model.
    pub fn gated(repo: &str) -> Fault {
        let msg = format!("Access to model {repo} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo} to ask for access.");
        Fault::json(403, json!({"error": msg}))
            .header("x-error-code", "GatedRepo")
            .header("x-error-message", &msg)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path (with query).
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A managed endpoint, as the management API lists it.
#[derive(Debug, Clone)]
pub struct FakeEndpoint {
    /// Its name.
    pub name: String,
    /// Its state (`running`, `paused`, `scaledToZero`, …).
    pub state: String,
    /// Its URL.
    pub url: String,
    /// `compute.scaling`: replicas and the scale-to-zero timeout (minutes).
    pub min_replica: u32,
    pub max_replica: u32,
    pub scale_to_zero_timeout: Option<u32>,
    /// `model.repository` and `model.task`.
    pub repository: String,
    pub task: String,
    /// When it entered its state (the state machine's clock).
    pub since: std::time::Instant,
    /// The rest of its description as created and updated (`provider`,
    /// `compute`, `model`, `type`), merged over the fake's defaults.
    pub spec: Value,
}

impl FakeEndpoint {
    /// An endpoint of one replica serving `fake/model`, in `state` since now.
    pub fn new(name: &str, state: &str, url: &str) -> FakeEndpoint {
        FakeEndpoint {
            name: name.into(),
            state: state.into(),
            url: url.into(),
            min_replica: 1,
            max_replica: 1,
            scale_to_zero_timeout: None,
            repository: "fake/model".into(),
            task: "text-generation".into(),
            since: std::time::Instant::now(),
            spec: Value::Null,
        }
    }
}

/// How streams and answers look; tests flip these.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The text every generation produces (split into tokens at spaces).
    pub reply: String,
    /// Write `data: ` (with a space) instead of TGI's `data:`.
    pub sse_space: bool,
    /// End chat streams with `data:[DONE]`.
    pub chat_done: bool,
    /// Send a usage chunk at the end of chat streams (when the client asks).
    pub chat_usage: bool,
    /// Send `x-prompt-tokens` / `x-generated-tokens` headers on `/generate`.
    pub token_headers: bool,
    /// Send a `:` keep-alive comment between stream events.
    pub keepalive: bool,
    /// The pipeline's task: `summarization` or `text-generation`.
    pub pipeline_task: String,
    /// `/info` uses the pre-2.1 name `max_input_length`.
    pub legacy_info: bool,
    /// The token role `whoami-v2` reports.
    pub token_role: String,
    /// A fine-grained token's permissions on namespace `acme`.
    pub token_permissions: Vec<String>,
    /// Answer with the input itself (the prompt, the last chat message, the
    /// text to summarize) instead of `reply`, so that tests can tell answers apart.
    pub echo: bool,
    /// Wait this long before answering every request (a model's latency).
    pub delay: Duration,
    /// The size of the fake embedding model's vectors.
    pub embed_dim: usize,
    /// TEI's `max_client_batch_size`.
    pub tei_max_batch: usize,
    /// TEI's `max_input_length` (in words, the fake's tokens).
    pub tei_max_input: usize,
    /// The feature-extraction pipeline answers one vector per token
    /// (a plain transformers model) instead of a pooled one.
    pub fe_per_token: bool,
    /// `/generate` answers with the `stop` list it was sent (a hostile
    /// server echoing what it received), whatever the prompt.
    pub echo_stop: bool,
    /// How long a managed endpoint that is starting (pending, initializing,
    /// updating) takes to run; `None`: it stays until a test moves it.
    pub endpoint_start: Option<Duration>,
    /// Managed endpoints that never finish starting.
    pub stuck_endpoints: Vec<String>,
    /// Managed endpoints that end their start `failed` (`updateFailed`
    /// after an update) instead of running.
    pub failing_endpoints: Vec<String>,
    /// The token lacks `inference.endpoints.write`: every management call
    /// that changes an endpoint is refused with 403.
    pub manage_forbidden: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            reply: "Hello from the fake endpoint".into(),
            sse_space: false,
            chat_done: true,
            chat_usage: true,
            token_headers: true,
            keepalive: false,
            pipeline_task: "summarization".into(),
            legacy_info: false,
            token_role: "read".into(),
            token_permissions: vec!["inference.endpoints.infer.write".into()],
            echo: false,
            delay: Duration::ZERO,
            embed_dim: 8,
            tei_max_batch: 4,
            tei_max_input: 512,
            fe_per_token: false,
            echo_stop: false,
            endpoint_start: None,
            stuck_endpoints: Vec::new(),
            failing_endpoints: Vec::new(),
            manage_forbidden: false,
        }
    }
}

#[derive(Default)]
struct State {
    token: String,
    /// Tokens accepted besides `token` (a rotation: old and new both valid).
    more_tokens: Mutex<Vec<String>>,
    /// Hostile streams whose body is still being sent, and their bytes.
    open_streams: std::sync::atomic::AtomicUsize,
    streamed_bytes: std::sync::atomic::AtomicU64,
    faults: Mutex<HashMap<Route, VecDeque<Fault>>>,
    requests: Mutex<Vec<Recorded>>,
    endpoints: Mutex<Vec<FakeEndpoint>>,
    behaviour: Mutex<Behaviour>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    /// Requests are recorded unless this is set (benchmarks).
    no_recording: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fake server; stops when dropped.
pub struct FakeHf {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHf {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHf {
    /// Start on an ephemeral port of 127.0.0.1, accepting `token`.
    pub async fn start(token: &str) -> std::io::Result<FakeHf> {
        Self::start_on(token, 0).await
    }

    /// Start on `port` of 127.0.0.1 (0 for any).
    pub async fn start_on(token: &str, port: u16) -> std::io::Result<FakeHf> {
        let state = Arc::new(State {
            token: token.to_string(),
            ..State::default()
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    if uri.path().starts_with(admin::PREFIX) {
                        return admin::handle(&s, &method, uri.path(), &body);
                    }
                    let now = s.in_flight.fetch_add(1, SeqCst) + 1;
                    s.max_in_flight.fetch_max(now, SeqCst);
                    // Counted down when the request ends or its client goes
                    // away (the handler is dropped then).
                    struct Leaving(Arc<State>);
                    impl Drop for Leaving {
                        fn drop(&mut self) {
                            self.0.in_flight.fetch_sub(1, SeqCst);
                        }
                    }
                    let _leaving = Leaving(s.clone());
                    handle(s.clone(), method, uri, headers, body).await
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeHf { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The management API base (`{url}/v2`).
    pub fn management_url(&self) -> String {
        format!("{}/v2", self.url())
    }

    /// Queue a fault for the next request of `route`.
    pub fn push(&self, route: Route, fault: Fault) {
        lock(&self.state.faults)
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// Queue the same fault `n` times.
    pub fn push_n(&self, route: Route, fault: Fault, n: usize) {
        for _ in 0..n {
            self.push(route, fault.clone());
        }
    }

    /// Change how answers look.
    pub fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state.behaviour));
    }

    /// Register a managed endpoint.
    pub fn add_endpoint(&self, name: &str, state: &str, url: &str) {
        lock(&self.state.endpoints).push(FakeEndpoint::new(name, state, url));
    }

    /// What `fake-hf` starts with for `config-examples/local.toml`: the
    /// Inference Endpoint `local-tgi` of namespace `demo`, running at the
    /// fake's own URL, which takes `start` to come up after a resume.
    pub fn with_demo_endpoint(&self, start: std::time::Duration) {
        self.add_endpoint("local-tgi", "running", &format!("{}/", self.url()));
        self.behave(|b| b.endpoint_start = Some(start));
    }

    /// Change a managed endpoint behind the management API's back (as a
    /// change in the Inference Endpoints UI would).
    pub fn change_endpoint(&self, name: &str, f: impl FnOnce(&mut FakeEndpoint)) {
        if let Some(e) = lock(&self.state.endpoints)
            .iter_mut()
            .find(|e| e.name == name)
        {
            f(e);
        }
    }

    /// The state of a managed endpoint.
    pub fn endpoint_state(&self, name: &str) -> Option<String> {
        lock(&self.state.endpoints)
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.state.clone())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// Requests to paths ending with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }

    /// The most requests answered at once so far (until their headers were sent).
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.state
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Start counting [`FakeHf::max_in_flight`] afresh.
    pub fn reset_max_in_flight(&self) {
        self.state
            .max_in_flight
            .store(self.in_flight(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Stop (or resume) recording requests: benchmarks send millions.
    pub fn set_recording(&self, on: bool) {
        self.state
            .no_recording
            .store(!on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Accept `token` too (both the old and the new key of a rotation).
    pub fn accept_token(&self, token: &str) {
        lock(&self.state.more_tokens).push(token.to_string());
    }

    /// Hostile streams ([`Fault::Endless`]) whose client is still reading.
    pub fn open_streams(&self) -> usize {
        self.state
            .open_streams
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Bytes the hostile streams sent.
    pub fn streamed_bytes(&self) -> u64 {
        self.state
            .streamed_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drop every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Forget recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }
}

fn respond(status: u16, body: Body, headers: &[(String, String)]) -> Response {
    let (content_type, bytes) = match body {
        Body::Json(v) => (
            Some("application/json"),
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        Body::Text(t) => (Some("text/plain; charset=utf-8"), t.into_bytes()),
        Body::Empty => (None, Vec::new()),
    };
    let mut r = Response::new(AxumBody::from(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(ct));
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

fn json_response(v: &Value, extra: &[(String, String)]) -> Response {
    let mut headers = vec![("x-request-id".to_string(), "fake-req-1".to_string())];
    headers.extend_from_slice(extra);
    respond(200, Body::Json(v.clone()), &headers)
}

fn route_of(method: &Method, path: &str) -> Option<Route> {
    let p = path.trim_end_matches('/');
    if method == Method::GET {
        return match p {
            "/info" => Some(Route::Info),
            "/tei/info" => Some(Route::TeiInfo),
            "/health" | "" | "/tei/health" | "/fe" => Some(Route::Health),
            "/api/whoami-v2" => Some(Route::WhoAmI),
            _ if p.starts_with("/v2/endpoint/") => Some(Route::Endpoints),
            _ => None,
        };
    }
    if (method == Method::PUT || method == Method::DELETE) && p.starts_with("/v2/endpoint/") {
        return Some(Route::Endpoints);
    }
    if method != Method::POST {
        return None;
    }
    match p {
        "/generate" => Some(Route::Generate),
        "/generate_stream" => Some(Route::GenerateStream),
        "" | "/predict" => Some(Route::Pipeline),
        "/tei/embed" => Some(Route::Embed),
        "/fe" => Some(Route::FeatureExtraction),
        _ if p.ends_with("/v1/embeddings") => Some(Route::Embeddings),
        _ if p.ends_with("/pipeline/feature-extraction") => Some(Route::FeatureExtraction),
        _ if p.ends_with("/chat/completions") => Some(Route::Chat),
        _ if p.starts_with("/v2/endpoint/") && p.ends_with("/resume") => Some(Route::Resume),
        _ if p.starts_with("/v2/endpoint/") => Some(Route::Endpoints),
        _ if p.starts_with("/hf-inference/models/") => Some(Route::Pipeline),
        _ => None,
    }
}

async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = lock(&state.behaviour).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut path = uri.path().to_string();
    if !state
        .no_recording
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        lock(&state.requests).push(Recorded {
            method: method.to_string(),
            path: uri.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }
    // An endpoint the management API created is served under `/ep/{name}`:
    // only while it runs; a request wakes one scaled to zero.
    if let Some(rest) = path.strip_prefix("/ep/") {
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let behaviour = lock(&state.behaviour).clone();
        let mut eps = lock(&state.endpoints);
        management::advance(&mut eps, &behaviour);
        let Some(e) = eps.iter_mut().find(|e| e.name == name) else {
            return respond(404, Body::Text("Not Found".into()), &[]);
        };
        if e.state != "running" {
            if e.state == "scaledToZero" {
                e.state = "initializing".into();
                e.since = std::time::Instant::now();
            }
            return respond(503, Body::Text("Service Unavailable".into()), &[]);
        }
        path = format!("/{tail}");
    }
    let Some(route) = route_of(&method, &path) else {
        return respond(404, Body::Text("Not Found".into()), &[]);
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let auth_ok = presented
        .is_some_and(|t| t == state.token || lock(&state.more_tokens).iter().any(|m| m == t));
    if !auth_ok {
        // TGI with an API key answers 401 with an empty body; the Hub says why.
        return match route {
            Route::WhoAmI | Route::Endpoints | Route::Resume => {
                let f = Fault::unauthorized();
                if let Fault::Status {
                    status,
                    body,
                    headers,
                } = f
                {
                    respond(status, body, &headers)
                } else {
                    respond(401, Body::Empty, &[])
                }
            }
            _ => respond(401, Body::Empty, &[]),
        };
    }
    let mut stream_faults = Vec::new();
    let mut truncated = false;
    let mut slow_body = None;
    let fault = lock(&state.faults)
        .get_mut(&route)
        .and_then(VecDeque::pop_front);
    match fault {
        None => {}
        Some(Fault::Status {
            status,
            body,
            headers,
        }) => return respond(status, body, &headers),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Reset) => {
            let s = async_stream::stream! {
                yield Err::<Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by fake"));
            };
            let mut r = Response::new(AxumBody::from_stream(s));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return r;
        }
        Some(Fault::Truncated) => truncated = true,
        Some(Fault::Oversized(n)) => {
            let streaming = route == Route::GenerateStream
                || serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("stream").and_then(Value::as_bool))
                    == Some(true);
            return oversized(route, n, streaming);
        }
        Some(Fault::SlowBody(d)) => slow_body = Some(d),
        Some(Fault::Endless { token_bytes, every }) => {
            return endless(&state, route == Route::Chat, token_bytes, every);
        }
        Some(f) => stream_faults.push(f),
    }
    let behaviour = lock(&state.behaviour).clone();
    let response = match route {
        Route::Health => respond(200, Body::Empty, &[]),
        Route::Info => info(&behaviour),
        Route::WhoAmI => whoami(&behaviour),
        Route::Endpoints | Route::Resume => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            management::handle(&state.endpoints, &method, &path, &body, &behaviour, host)
        }
        Route::Generate => generate(&headers, &body, &behaviour),
        Route::GenerateStream => generate_stream(&headers, &body, &behaviour, stream_faults),
        Route::Chat => chat(&headers, &body, &behaviour, stream_faults),
        Route::Pipeline => pipeline(&headers, &body, &behaviour),
        Route::Embed => tei::embed(&headers, &body, &behaviour),
        Route::Embeddings => tei::openai_embeddings(&headers, &body, &behaviour),
        Route::TeiInfo => tei::info(&behaviour),
        Route::FeatureExtraction => tei::feature_extraction(&headers, &body, &behaviour),
    };
    if truncated {
        return truncate(response).await;
    }
    if let Some(d) = slow_body {
        return slow(response, d).await;
    }
    response
}

/// A 200 answer of `n` bytes of text, streamed in 64 KiB pieces.
fn oversized(route: Route, n: usize, streaming: bool) -> Response {
    const PIECE: usize = 64 * 1024;
    let (head, tail, content_type): (String, String, &'static str) = if streaming {
        (String::new(), String::new(), "text/event-stream")
    } else {
        match route {
            Route::Chat => (
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":""#.into(),
                r#""},"finish_reason":"stop"}]}"#.into(),
                "application/json",
            ),
            Route::Pipeline => (
                r#"[{"summary_text":""#.into(),
                r#""}]"#.into(),
                "application/json",
            ),
            _ => (
                r#"{"generated_text":""#.into(),
                r#""}"#.into(),
                "application/json",
            ),
        }
    };
    let chat = route == Route::Chat;
    let s = async_stream::stream! {
        if !head.is_empty() {
            yield Ok::<Bytes, std::io::Error>(Bytes::from(head));
        }
        let mut sent = 0;
        let x = "x".repeat(PIECE);
        while sent < n {
            let k = PIECE.min(n - sent);
            sent += k;
            let piece = &x[..k];
            if streaming {
                let ev = if chat {
                    json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
                } else {
                    json!({"index": sent, "token": {"id": 1, "text": piece, "logprob": 0.0, "special": false}, "generated_text": null, "details": null})
                };
                yield Ok(Bytes::from(format!("data:{ev}\n\n")));
            } else {
                yield Ok(Bytes::from(piece.to_string()));
            }
        }
        if !tail.is_empty() {
            yield Ok(Bytes::from(tail));
        }
    };
    let mut r = Response::new(AxumBody::from_stream(s));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    r
}

/// A stream that never ends: token events of `token_bytes` characters every
/// `every`, counted in the server's stats while the client reads them.
fn endless(state: &Arc<State>, chat: bool, token_bytes: usize, every: Duration) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    struct Open(Arc<State>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open_streams.fetch_sub(1, SeqCst);
        }
    }
    state.open_streams.fetch_add(1, SeqCst);
    let open = Open(state.clone());
    let piece = "x".repeat(token_bytes);
    let s = async_stream::stream! {
        let _open = open;
        let mut i: u64 = 0;
        loop {
            i += 1;
            let ev = if chat {
                json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
            } else {
                json!({"index": i, "token": {"id": 1, "text": piece, "logprob": 0.0, "special": false}, "generated_text": null, "details": null})
            };
            let line = format!("data:{ev}\n\n");
            _open.0.streamed_bytes.fetch_add(line.len() as u64, SeqCst);
            yield Ok::<Bytes, std::io::Error>(Bytes::from(line));
            if every.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(every).await;
            }
        }
    };
    let mut r = Response::new(AxumBody::from_stream(s));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

async fn slow(r: Response, d: Duration) -> Response {
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let (first, rest) = (
        bytes.slice(..bytes.len() / 2),
        bytes.slice(bytes.len() / 2..),
    );
    parts.headers.remove("content-length");
    let s = async_stream::stream! {
        yield Ok::<Bytes, std::io::Error>(first);
        tokio::time::sleep(d).await;
        yield Ok(rest);
    };
    Response::from_parts(parts, AxumBody::from_stream(s))
}

async fn truncate(r: Response) -> Response {
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    let mut parts = parts;
    parts.headers.remove("content-length");
    Response::from_parts(parts, AxumBody::from(half))
}

fn info(b: &Behaviour) -> Response {
    let mut v = json!({
        "model_id": "fake/model",
        "model_sha": "0000",
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": 128,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_total_tokens": 8192,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": "fake-2.4.0",
    });
    let key = if b.legacy_info {
        "max_input_length"
    } else {
        "max_input_tokens"
    };
    v[key] = json!(4096);
    json_response(&v, &[])
}

fn whoami(b: &Behaviour) -> Response {
    json_response(
        &json!({
            "type": "user",
            "name": "alice",
            "orgs": [{"name": "acme"}],
            "auth": {"type": "access_token", "accessToken": {
                "displayName": "ci-token", "role": b.token_role,
                "fineGrained": {"global": [], "scoped": [{"entity": {"_id": "0", "type": "org", "name": "acme"}, "permissions": b.token_permissions}]},
            }},
        }),
        &[],
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// What a model answers to `input`.
fn reply_of<'a>(b: &'a Behaviour, input: &'a str) -> &'a str {
    if b.echo {
        input
    } else {
        &b.reply
    }
}

/// The generated tokens: the reply split at spaces, cut by `max_new_tokens` and stop sequences.
fn tokens(reply: &str, max: Option<u64>, stop: &[String]) -> (Vec<String>, &'static str) {
    let mut out = Vec::new();
    for t in reply.split_inclusive(' ') {
        if max.is_some_and(|m| out.len() as u64 >= m) {
            return (out, "length");
        }
        out.push(t.to_string());
        let text: String = out.concat();
        if stop
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
        {
            return (out, "stop_sequence");
        }
    }
    (out, "eos_token")
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// TGI's checks before generating: JSON body, non-empty `inputs`, sane parameters.
#[allow(clippy::result_large_err)] // the error is the response to send
fn tgi_input(headers: &HeaderMap, body: &[u8]) -> Result<(String, Value), Response> {
    if !is_json(headers) {
        return Err(respond(
            415,
            Body::Text("Expected request with `Content-Type: application/json`".into()),
            &[],
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        respond(
            400,
            Body::Text(format!("Failed to parse the request body as JSON: {e}")),
            &[],
        )
    })?;
    let Some(inputs) = v.get("inputs").and_then(Value::as_str) else {
        return Err(respond(
            422,
            Body::Text(
                "Failed to deserialize the JSON body into the target type: missing field `inputs`"
                    .into(),
            ),
            &[],
        ));
    };
    if inputs.is_empty() {
        return Err(respond(
            422,
            Body::Json(
                json!({"error": "Input validation error: `inputs` cannot be empty", "error_type": "validation"}),
            ),
            &[],
        ));
    }
    let params = v.get("parameters").cloned().unwrap_or(Value::Null);
    if let Some(t) = params.get("temperature").and_then(Value::as_f64) {
        if t <= 0.0 {
            return Err(respond(
                422,
                Body::Json(
                    json!({"error": "Input validation error: `temperature` must be strictly positive", "error_type": "validation"}),
                ),
                &[],
            ));
        }
    }
    if let Some(p) = params.get("top_p").and_then(Value::as_f64) {
        if p <= 0.0 || p >= 1.0 {
            return Err(respond(
                422,
                Body::Json(
                    json!({"error": "Input validation error: `top_p` must be > 0.0 and < 1.0", "error_type": "validation"}),
                ),
                &[],
            ));
        }
    }
    if params
        .get("stop")
        .and_then(Value::as_array)
        .is_some_and(|s| s.len() > 4)
    {
        return Err(respond(
            422,
            Body::Json(
                json!({"error": "Input validation error: `stop` supports up to 4 stop sequences", "error_type": "validation"}),
            ),
            &[],
        ));
    }
    Ok((inputs.to_string(), params))
}

fn stop_of(params: &Value) -> Vec<String> {
    params
        .get("stop")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn generate(headers: &HeaderMap, body: &[u8], b: &Behaviour) -> Response {
    let (inputs, params) = match tgi_input(headers, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let stops = stop_of(&params);
    // A hostile server repeats the stop list it was sent in its answer.
    let echoed = b.echo_stop.then(|| stops.join(" "));
    let (toks, finish) = match &echoed {
        Some(text) => tokens(text, None, &[]),
        None => tokens(
            reply_of(b, &inputs),
            params.get("max_new_tokens").and_then(Value::as_u64),
            &stops,
        ),
    };
    let mut v = json!({"generated_text": toks.concat()});
    if params.get("details").and_then(Value::as_bool) == Some(true) {
        v["details"] = json!({"finish_reason": finish, "generated_tokens": toks.len(), "seed": null, "prefill": [], "tokens": []});
    }
    let extra = if b.token_headers {
        vec![
            ("x-prompt-tokens".to_string(), words(&inputs).to_string()),
            ("x-generated-tokens".to_string(), toks.len().to_string()),
        ]
    } else {
        Vec::new()
    };
    let mut extra = extra;
    extra.push(("x-queue-time".into(), "1".into()));
    extra.push(("x-inference-time".into(), "12".into()));
    json_response(&v, &extra)
}

fn sse(events: Vec<String>, b: &Behaviour, faults: Vec<Fault>) -> Response {
    let prefix = if b.sse_space { "data: " } else { "data:" };
    let keepalive = b.keepalive;
    let mut delay = None;
    let mut cut = None;
    let mut error = None;
    for f in faults {
        match f {
            Fault::SlowEvents(d) => delay = Some(d),
            Fault::StreamCut(n) => cut = Some(n),
            Fault::StreamError { after, event } => error = Some((after, event)),
            _ => {}
        }
    }
    let mut lines: Vec<String> = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        if cut == Some(i) {
            break;
        }
        if let Some((after, ev)) = &error {
            if *after == i {
                lines.push(format!("{prefix}{ev}\n\n"));
                if ev.get("error").is_some_and(Value::is_object) {
                    lines.push(format!("{prefix}[DONE]\n\n"));
                }
                break;
            }
        }
        if keepalive {
            lines.push(":\n\n".into());
        }
        lines.push(format!("{prefix}{e}\n\n"));
    }
    let s = async_stream::stream! {
        for l in lines {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            yield Ok::<Bytes, std::io::Error>(Bytes::from(l));
        }
    };
    let mut r = Response::new(AxumBody::from_stream(s));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("fake-stream-1"));
    r
}

fn generate_stream(
    headers: &HeaderMap,
    body: &[u8],
    b: &Behaviour,
    faults: Vec<Fault>,
) -> Response {
    let (inputs, params) = match tgi_input(headers, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (toks, finish) = tokens(
        reply_of(b, &inputs),
        params.get("max_new_tokens").and_then(Value::as_u64),
        &stop_of(&params),
    );
    let n = toks.len();
    let full = toks.concat();
    let events: Vec<String> = toks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let last = i + 1 == n;
            json!({
                "index": i + 1,
                "token": {"id": i + 100, "text": t, "logprob": -0.25, "special": false},
                "top_tokens": null,
                "generated_text": if last { json!(full) } else { Value::Null },
                "details": if last { json!({"finish_reason": finish, "generated_tokens": n, "seed": null, "input_length": words(&inputs)}) } else { Value::Null },
            })
            .to_string()
        })
        .collect();
    sse(events, b, faults)
}

fn chat(headers: &HeaderMap, body: &[u8], b: &Behaviour, faults: Vec<Fault>) -> Response {
    if !is_json(headers) {
        return respond(
            415,
            Body::Text("Expected request with `Content-Type: application/json`".into()),
            &[],
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return respond(
            400,
            Body::Text("Failed to parse the request body as JSON".into()),
            &[],
        );
    };
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return respond(422, Body::Text("Failed to deserialize the JSON body into the target type: missing field `messages`".into()), &[]);
    };
    let prompt_tokens: usize = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(words)
        .sum();
    let last = messages
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (toks, finish) = tokens(
        reply_of(b, last),
        v.get("max_tokens").and_then(Value::as_u64),
        &stop_of(&v),
    );
    let finish = if finish == "eos_token" {
        "stop"
    } else {
        finish
    };
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("tgi")
        .to_string();
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": toks.len(), "total_tokens": prompt_tokens + toks.len()});
    if v.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(
            &json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": toks.concat()}, "finish_reason": finish}],
                "usage": usage,
            }),
            &[],
        );
    }
    let n = toks.len();
    let mut events: Vec<String> = toks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": t}, "finish_reason": if i + 1 == n { json!(finish) } else { Value::Null }}],
            })
            .to_string()
        })
        .collect();
    let wants_usage = v
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    if b.chat_usage && wants_usage {
        events.push(json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage}).to_string());
    }
    if b.chat_done {
        events.push("[DONE]".into());
    }
    sse(events, b, faults)
}

fn pipeline(headers: &HeaderMap, body: &[u8], b: &Behaviour) -> Response {
    if !is_json(headers) {
        return respond(
            400,
            Body::Json(
                json!({"error": "Content type \"None\" not supported. Supported content types are: application/json"}),
            ),
            &[],
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return respond(
            400,
            Body::Json(json!({"error": "Expecting value: line 1 column 1 (char 0)"})),
            &[],
        );
    };
    let Some(inputs) = v.get("inputs").and_then(Value::as_str) else {
        return respond(
            400,
            Body::Json(json!({"error": "Body needs to provide a inputs key"})),
            &[],
        );
    };
    let known: &[&str] = if b.pipeline_task == "summarization" {
        &["max_length", "min_length"]
    } else {
        &["max_new_tokens", "temperature", "top_p", "return_full_text"]
    };
    if let Some(params) = v.get("parameters").and_then(Value::as_object) {
        let unknown: Vec<String> = params
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("'{k}'"))
            .collect();
        if !unknown.is_empty() {
            return respond(
                400,
                Body::Json(
                    json!({"error": format!("The following `model_kwargs` are not used by the model: [{}] (note: typos in the generate arguments will also show up in this list)", unknown.join(", "))}),
                ),
                &[],
            );
        }
    }
    let key = if b.pipeline_task == "summarization" {
        "summary_text"
    } else {
        "generated_text"
    };
    json_response(&json!([{ key: reply_of(b, inputs) }]), &[])
}
