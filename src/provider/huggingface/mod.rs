//! The Hugging Face implementation of [`LlmProvider`]: Inference Endpoints
//! (TGI, the chat route, pipelines) and the serverless router, with retries,
//! cold-start waits, timeouts and typed errors; plus the Hub (`whoami-v2`) and
//! the endpoint management API.
//!
//! One `HuggingFace` value per integration: it owns the integration's HTTP
//! client (connection pool, keep-alive) and key, and is cheap to clone.

mod auth;
mod classify;
mod hub;
#[cfg(feature = "test-support")]
pub mod sse;
#[cfg(not(feature = "test-support"))]
mod sse;
mod transport;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use self::auth::Credential;
use self::classify::{classify, classify_event, CallContext};
pub use self::hub::{ManagedEndpoint, WhoAmI};
use self::sse::SseParser;
use self::wire::Parsed;
use super::{
    Api, CallSettings, ChatMessage, ChatRequest, ChatRole, Completion, CompletionStream,
    EndpointInfo, ErrorKind, GenerationParams, LlmProvider, ModelEndpoint, ProviderError,
    StreamEvent, SummarizeRequest, TextRequest, Timings, Usage,
};
use crate::stripe::{stripe, STRIPES};
use crate::untrusted::bounded;

/// The Hub base URL when nothing else is configured.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";
/// The Inference Endpoints management API.
pub const DEFAULT_MANAGEMENT_URL: &str = "https://api.endpoints.huggingface.cloud/v2";
/// The serverless router.
pub const DEFAULT_ROUTER_URL: &str = "https://router.huggingface.co";

const USER_AGENT: &str = concat!("hfconnect/", env!("CARGO_PKG_VERSION"));
/// Error bodies are read up to this size.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A Hugging Face integration: who it is, its services, and how its calls behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The integration's name (for messages).
    pub integration: String,
    /// The Hub user or organization owning the endpoints (for the management API).
    pub namespace: Option<String>,
    /// Hub base URL (`whoami-v2`, gated-model pages).
    pub hub_url: Url,
    /// Inference Endpoints management API base.
    pub management_url: Url,
    /// Timeouts, retries, cold-start waits and the largest answer read.
    pub calls: CallSettings,
}

impl Settings {
    /// Defaults for an integration: the public Hub and [`CallSettings::default`].
    pub fn new(integration: impl Into<String>) -> Settings {
        Settings {
            integration: integration.into(),
            namespace: None,
            hub_url: parse_const(DEFAULT_HUB_URL),
            management_url: parse_const(DEFAULT_MANAGEMENT_URL),
            calls: CallSettings::default(),
        }
    }
}

#[allow(clippy::expect_used)] // only called with the constants above, which `tests::constants_parse` checks
fn parse_const(s: &str) -> Url {
    Url::parse(s).expect("built-in URL constants are valid")
}

/// A Hugging Face client for one integration.
#[derive(Clone, Debug)]
pub struct HuggingFace {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    client: reqwest::Client,
    credential: Credential,
    /// The headers of a JSON call to a model, built once (cloning a map is
    /// cheaper than hashing each name into a new one), one copy per thread
    /// stripe (the key's value is reference-counted, and one shared count cost
    /// every call a contended update); why not, without a key.
    model_headers: Result<Box<[HeaderMap; STRIPES]>, String>,
}

/// Where a call stands in its retries.
struct Attempts {
    start: Instant,
    count: u32,
    retries: u32,
    cold_waits: u32,
    state_checked: bool,
    /// The management API said the endpoint is starting (or was just resumed).
    starting: bool,
}

impl Attempts {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            count: 0,
            retries: 0,
            cold_waits: 0,
            state_checked: false,
            starting: false,
        }
    }
}

/// `path` under `base`. Built from the parsed base rather than re-parsed from
/// text: parsing the host again (IDNA included) showed in the profile of every call.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

fn chat_url(base: &Url) -> Url {
    if base.path().trim_end_matches('/').ends_with("/v1") {
        join(base, "chat/completions")
    } else {
        join(base, "v1/chat/completions")
    }
}

fn router_model_url(model: &ModelEndpoint) -> Url {
    join(
        &model.base_url,
        &format!("hf-inference/models/{}", model.upstream_model),
    )
}

const X_SCALE_UP_TIMEOUT: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("x-scale-up-timeout");

/// A number of seconds as a `'static` string, each distinct value leaked once
/// (configs hold a handful), so that its header value needs no reference count.
fn interned_seconds(n: u64) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<(u64, &'static str)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, s)) = seen.iter().find(|(k, _)| *k == n) {
        return s;
    }
    let s: &'static str = Box::leak(n.to_string().into_boxed_str());
    seen.push((n, s));
    s
}

/// The headers of a JSON call to a model, with a value of the key of its own.
fn model_header_map(
    bearer: &HeaderValue,
    settings: &Settings,
    scale_up_timeout: &'static str,
) -> HeaderMap {
    let mut own = HeaderValue::from_bytes(bearer.as_bytes()).unwrap_or_else(|_| bearer.clone());
    own.set_sensitive(true);
    let mut h = HeaderMap::with_capacity(4);
    h.insert(AUTHORIZATION, own);
    h.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !settings.calls.cold_start.wait.is_zero() {
        // Asks the Inference Endpoints proxy to hold the request while a replica starts.
        h.insert(
            X_SCALE_UP_TIMEOUT,
            HeaderValue::from_static(scale_up_timeout),
        );
    }
    h
}

impl HuggingFace {
    /// A client for one integration. `key` is the API key, or why there is none
    /// (calls then fail with [`ErrorKind::KeyUnavailable`]).
    pub fn new(
        settings: Settings,
        key: Result<SecretString, String>,
    ) -> Result<HuggingFace, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.calls.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                ProviderError::new(ErrorKind::Connection, &settings.integration, None)
                    .with_detail(format!("the HTTP client could not be built: {e}"))
            })?;
        let credential = Credential::new(key);
        let scale_up_timeout = interned_seconds(settings.calls.cold_start.wait.as_secs());
        let model_headers = credential
            .bearer()
            .map(|bearer| {
                Box::new(std::array::from_fn(|_| {
                    model_header_map(&bearer, &settings, scale_up_timeout)
                }))
            })
            .map_err(str::to_string);
        Ok(HuggingFace {
            inner: Arc::new(Inner {
                settings,
                client,
                credential,
                model_headers,
            }),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Who the token belongs to (`GET {hub}/api/whoami-v2`).
    pub async fn whoami(&self) -> Result<WhoAmI, ProviderError> {
        let inner = &self.inner;
        let url = join(&inner.settings.hub_url, "api/whoami-v2");
        let r = match inner.get_json(None, url).await {
            Ok((headers, v)) => WhoAmI::from_json(&v).ok_or_else(|| {
                inner.invalid(None, &headers, "`whoami-v2` answered without a `name`")
            }),
            Err(e) => Err(e),
        };
        self.out(r)
    }

    /// The Inference Endpoints of the integration's namespace.
    pub async fn endpoints(&self) -> Result<Vec<ManagedEndpoint>, ProviderError> {
        let inner = &self.inner;
        let r = async {
            let ns = inner.namespace()?;
            let url = join(&inner.settings.management_url, &format!("endpoint/{ns}"));
            let (_, v) = inner.get_json(None, url).await?;
            Ok(ManagedEndpoint::list_from_json(&v))
        }
        .await;
        self.out(r)
    }

    /// Resume a paused endpoint; one already running counts as resumed.
    pub async fn resume(&self, name: &str) -> Result<(), ProviderError> {
        let r = self.inner.resume(name).await;
        self.out(r)
    }

    /// What leaves the provider: the key scrubbed from every upstream text.
    fn out<T>(&self, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        r.map_err(|e| self.inner.credential.scrub(e))
    }

    /// A completion leaving the provider.
    fn done(&self, r: Result<Completion, ProviderError>) -> Result<Completion, ProviderError> {
        match r {
            Ok(c) => Ok(self.inner.credential.scrub_completion(c)),
            Err(e) => Err(self.inner.credential.scrub(e)),
        }
    }

    /// A stream leaving the provider: every item scrubbed.
    fn scrubbed(&self, s: CompletionStream) -> CompletionStream {
        let inner = self.inner.clone();
        Box::pin(s.map(move |item| match item {
            Ok(StreamEvent::Done(c)) => Ok(StreamEvent::Done(inner.credential.scrub_completion(c))),
            Ok(other) => Ok(other),
            Err(e) => Err(inner.credential.scrub(e)),
        }))
    }
}

impl Inner {
    fn ctx<'a>(&'a self, model: Option<&'a ModelEndpoint>) -> CallContext<'a> {
        CallContext {
            integration: &self.settings.integration,
            model: model.map(|m| m.name.as_str()),
            upstream_model: model.map(|m| m.upstream_model.as_str()),
            hub_url: self.settings.hub_url.as_str(),
        }
    }

    fn invalid(
        &self,
        model: Option<&ModelEndpoint>,
        headers: &HeaderMap,
        what: &str,
    ) -> ProviderError {
        let mut e = self
            .ctx(model)
            .error(ErrorKind::InvalidResponse)
            .with_detail(what.to_string());
        e.text.request_id = wire::request_id(headers);
        e
    }

    fn namespace(&self) -> Result<&str, ProviderError> {
        self.settings.namespace.as_deref().ok_or_else(|| {
            self.ctx(None).error(ErrorKind::InvalidRequest).with_detail(format!(
                "integration `{}` has no `namespace`: the endpoint management API needs the Hub user or organization owning the endpoints",
                self.settings.integration
            ))
        })
    }

    fn transport(&self, model: Option<&ModelEndpoint>, e: &reqwest::Error) -> ProviderError {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Connection
        };
        // The URL and the whole chain go to the log; the caller gets the cause.
        transport::log(
            &self.settings.integration,
            model.map(|m| m.name.as_str()),
            e,
            &self.credential.redact(&transport::chain_text(e)),
        );
        self.ctx(model).error(kind).with_detail(transport::cause(e))
    }

    /// A call to the Hub, the management API or a health route (not a model call).
    fn builder(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let bearer = self.credential.bearer().map_err(|why| {
            self.ctx(None)
                .error(ErrorKind::KeyUnavailable)
                .with_detail(why.to_string())
        })?;
        Ok(self
            .client
            .request(method, url)
            .header(AUTHORIZATION, bearer)
            .header(
                reqwest::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            ))
    }

    /// The headers of a call to `model`, this thread stripe's copy.
    fn model_headers(&self, model: &ModelEndpoint) -> Result<&HeaderMap, ProviderError> {
        match &self.model_headers {
            Ok(maps) => Ok(&maps[stripe()]),
            Err(why) => Err(self
                .ctx(Some(model))
                .error(ErrorKind::KeyUnavailable)
                .with_detail(why.clone())),
        }
    }

    /// Read an error answer and classify it, with the key scrubbed from what the server said.
    async fn error_from(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> ProviderError {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
        let mut e = classify(&self.ctx(model), status, &headers, &body);
        e.text.upstream_message = e.text.upstream_message.map(|m| self.credential.redact(&m));
        e
    }

    /// One attempt: send, and return the answer if it is a success.
    async fn send(
        &self,
        b: reqwest::RequestBuilder,
        model: Option<&ModelEndpoint>,
    ) -> Result<reqwest::Response, ProviderError> {
        let req = b.build().map_err(|e| self.transport(model, &e))?;
        self.execute(req, model).await
    }

    /// One attempt of a built request.
    async fn execute(
        &self,
        req: reqwest::Request,
        model: Option<&ModelEndpoint>,
    ) -> Result<reqwest::Response, ProviderError> {
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| self.transport(model, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_from(model, resp).await)
        }
    }

    /// The answer's headers and whole body, at most `max_response_bytes`.
    async fn read_body(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> Result<(HeaderMap, bytes::Bytes), ProviderError> {
        let limit = self.settings.calls.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(self.too_large(model, resp.headers()));
        }
        // Take the headers out rather than cloning them: this runs on every task.
        let (parts, body) = http::Response::from(resp).into_parts();
        let limited = http_body_util::Limited::new(body, limit);
        match http_body_util::BodyExt::collect(limited).await {
            Ok(c) => Ok((parts.headers, c.to_bytes())),
            Err(e) => match e.downcast::<reqwest::Error>() {
                Ok(e) => Err(self.transport(model, &e)),
                Err(_) => Err(self.too_large(model, &parts.headers)),
            },
        }
    }

    fn too_large(&self, model: Option<&ModelEndpoint>, headers: &HeaderMap) -> ProviderError {
        self.invalid(
            model,
            headers,
            &format!(
                "the answer is larger than {} bytes, the `max_response_bytes` of integration `{}`",
                self.settings.calls.max_response_bytes, self.settings.integration
            ),
        )
    }

    fn json_of(
        &self,
        model: Option<&ModelEndpoint>,
        headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Value, ProviderError> {
        serde_json::from_slice(bytes)
            .map_err(|_| self.invalid(model, headers, "the answer is not JSON"))
    }

    async fn read_json(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> Result<(HeaderMap, Value), ProviderError> {
        let (headers, bytes) = self.read_body(model, resp).await?;
        let v = self.json_of(model, &headers, &bytes)?;
        Ok((headers, v))
    }

    async fn get_json(
        &self,
        model: Option<&ModelEndpoint>,
        url: Url,
    ) -> Result<(HeaderMap, Value), ProviderError> {
        let b = self
            .builder(reqwest::Method::GET, url)?
            .timeout(self.settings.calls.request_timeout);
        let resp = self.send(b, model).await?;
        self.read_json(model, resp).await
    }

    async fn resume(&self, name: &str) -> Result<(), ProviderError> {
        let ns = self.namespace()?;
        let url = join(
            &self.settings.management_url,
            &format!("endpoint/{ns}/{name}/resume"),
        );
        let b = self
            .builder(reqwest::Method::POST, url)?
            .timeout(self.settings.calls.request_timeout);
        match self.send(b, None).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.status == Some(400)
                    && e.upstream_message()
                        .is_some_and(|m| m.contains("already running")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// After a 502/503, ask the management API what the endpoint is doing:
    /// whether it is starting (evidence of a cold start, worth the cold-start
    /// wait), or paused or failed (it will not come up by waiting).
    async fn check_state(
        &self,
        model: &ModelEndpoint,
        e: &ProviderError,
    ) -> Result<bool, ProviderError> {
        if self.settings.namespace.is_none() || model.api == Api::Router {
            return Ok(false);
        }
        let ns = self.namespace()?;
        let url = join(&self.settings.management_url, &format!("endpoint/{ns}"));
        let Ok((_, v)) = self.get_json(None, url).await else {
            // The token may not see the management API: no evidence either way.
            return Ok(false);
        };
        let Some(ep) = ManagedEndpoint::list_from_json(&v)
            .into_iter()
            .find(|ep| ep.serves(model.base_url.as_str()))
        else {
            return Ok(false);
        };
        tracing::info!(integration = %self.settings.integration, model = %model.name, endpoint = %ep.name, state = %ep.state, "endpoint state (management API)");
        let fail = |detail: String| {
            let mut err = e.clone();
            err.text.detail = Some(detail);
            err
        };
        match ep.state.as_str() {
            "paused" if self.settings.calls.cold_start.resume_paused => {
                tracing::info!(integration = %self.settings.integration, endpoint = %ep.name, "resuming paused endpoint");
                self.resume(&ep.name).await.map(|()| true)
            }
            "paused" => Err(fail(format!(
                "endpoint `{}` is paused and will not start by itself: resume it in the Inference Endpoints UI or with `POST {}/endpoint/{ns}/{}/resume`, or set `cold_start = {{ resume_paused = true }}` on integration `{}`",
                ep.name,
                self.settings.management_url.as_str().trim_end_matches('/'),
                ep.name,
                self.settings.integration
            ))),
            "failed" | "updateFailed" => Err(fail(format!(
                "endpoint `{}` is in state `{}`{}",
                ep.name,
                ep.state,
                ep.message.as_deref().map(|m| format!(": {}", classify::cut(m))).unwrap_or_default()
            ))),
            "initializing" | "scaledToZero" | "pending" | "updating" => Ok(true),
            _ => Ok(false),
        }
    }

    /// Decide whether to retry after `e`: the wait, or the error to give up with.
    ///
    /// Only evidence of a cold start may use the cold-start wait: a loading
    /// answer (`estimated_time`, a loading or scaling message) or the
    /// management API saying the endpoint is starting. Any other failure —
    /// a gateway's 502, a bare 503 nobody explains — counts against
    /// `max_attempts` and `budget`.
    async fn next_wait(
        &self,
        st: &mut Attempts,
        model: &ModelEndpoint,
        mut e: ProviderError,
    ) -> Result<Duration, ProviderError> {
        e.attempts = st.count;
        if !e.is_retryable() {
            return Err(e);
        }
        if !st.state_checked && matches!(e.status, Some(502 | 503)) && !e.cold {
            st.state_checked = true;
            st.starting = self.check_state(model, &e).await?;
        }
        let cold = e.cold || (st.starting && matches!(e.status, Some(502 | 503)));
        let elapsed = st.start.elapsed();
        let policy = &self.settings.calls.retry;
        let (wait, step) = if cold {
            let left = self.settings.calls.cold_start.wait.saturating_sub(elapsed);
            // Without a hint, poll with backoff capped at the retry cap.
            (
                policy.delay(st.cold_waits, e.retry_after, left),
                st.cold_waits,
            )
        } else {
            if st.count >= policy.max_attempts {
                return Err(with_estimate(e, policy.cap(st.retries)));
            }
            let left = policy.budget.saturating_sub(elapsed);
            (policy.delay(st.retries, e.retry_after, left), st.retries)
        };
        let Some(wait) = wait else {
            return Err(with_estimate(e, policy.cap(step)));
        };
        if cold {
            st.cold_waits += 1;
        } else {
            st.retries += 1;
        }
        tracing::warn!(
            integration = %self.settings.integration,
            model = %model.name,
            kind = %e.kind,
            status = e.status,
            attempt = st.count,
            cold_start = cold,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "retrying"
        );
        Ok(wait)
    }

    /// POST a JSON body (serialized once, reused by retries), retrying what is
    /// retryable; returns headers, the answer's body and attempts.
    async fn post_json(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: bytes::Bytes,
    ) -> Result<(HeaderMap, bytes::Bytes, u32, Instant), ProviderError> {
        let headers = self.model_headers(model)?;
        let mut st = Attempts::new();
        loop {
            st.count += 1;
            // Built in place rather than through `RequestBuilder`, whose every
            // call moves the whole builder.
            let mut req = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *req.headers_mut() = headers.clone();
            *req.body_mut() = Some(body.clone().into());
            // The request timeout covers the answer's body too. tokio's own
            // `timeout` rather than reqwest's, which boxes its timer.
            let attempt = async {
                let resp = self.execute(req, Some(model)).await?;
                self.read_body(Some(model), resp).await
            };
            let result = tokio::time::timeout(self.settings.calls.request_timeout, attempt)
                .await
                .unwrap_or_else(|_| Err(self.timed_out(model)));
            match result {
                Ok((h, v)) => return Ok((h, v, st.count, st.start)),
                Err(e) => {
                    let wait = self.next_wait(&mut st, model, e).await?;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn timed_out(&self, model: &ModelEndpoint) -> ProviderError {
        self.ctx(Some(model))
            .error(ErrorKind::Timeout)
            .with_detail(format!(
                "no whole answer within the request timeout of {:.1}s",
                self.settings.calls.request_timeout.as_secs_f64()
            ))
    }

    fn body_of(&self, model: &ModelEndpoint, body: &Value) -> Result<bytes::Bytes, ProviderError> {
        serde_json::to_vec(body)
            .map(bytes::Bytes::from)
            .map_err(|e| {
                self.ctx(Some(model))
                    .error(ErrorKind::InvalidRequest)
                    .with_detail(format!("the request cannot be written as JSON: {e}"))
            })
    }

    async fn complete(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: &Value,
        parse: fn(&Value, &HeaderMap) -> Option<Parsed>,
    ) -> Result<Completion, ProviderError> {
        let body = self.body_of(model, body)?;
        let (headers, raw, attempts, start) = self.post_json(model, url, body).await?;
        let v = self.json_of(Some(model), &headers, &raw)?;
        let parsed = parse(&v, &headers).ok_or_else(|| self.shape_error(model, &headers))?;
        Ok(completion(parsed, &headers, attempts, start))
    }

    /// TGI's `/generate`, the hot path: the body is written and the answer read
    /// without building JSON trees.
    async fn complete_tgi(
        &self,
        model: &ModelEndpoint,
        url: Url,
        prompt: &str,
        params: &GenerationParams,
    ) -> Result<Completion, ProviderError> {
        let body = wire::tgi_body(prompt, params).map_err(|e| {
            self.ctx(Some(model))
                .error(ErrorKind::InvalidRequest)
                .with_detail(e)
        })?;
        let (headers, raw, attempts, start) = self.post_json(model, url, body).await?;
        let Some(parsed) = wire::parse_tgi(&raw, &headers) else {
            // Not JSON, or JSON of another shape: say which.
            self.json_of(Some(model), &headers, &raw)?;
            return Err(self.shape_error(model, &headers));
        };
        Ok(completion(parsed, &headers, attempts, start))
    }

    fn shape_error(&self, model: &ModelEndpoint, headers: &HeaderMap) -> ProviderError {
        self.invalid(
            Some(model),
            headers,
            &format!(
                "the answer does not have the shape of the `{}` api",
                model.api
            ),
        )
    }

    /// Pipelines refuse parameters they do not know with a 400; like the
    /// official client, try once more without them.
    async fn pipeline(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: &Value,
    ) -> Result<Completion, ProviderError> {
        let parse: fn(&Value, &HeaderMap) -> Option<Parsed> = |v, _| wire::parse_pipeline(v);
        match self.complete(model, url.clone(), body, parse).await {
            Err(e)
                if e.status == Some(400)
                    && body.get("parameters").is_some()
                    && e.upstream_message().is_some_and(wire::is_unused_kwargs) =>
            {
                tracing::info!(integration = %self.settings.integration, model = %model.name, "pipeline refused parameters; retrying without them");
                self.complete(model, url, &wire::without_parameters(body), parse)
                    .await
            }
            other => other,
        }
    }

    fn chat_target(&self, model: &ModelEndpoint) -> Result<Url, ProviderError> {
        match model.api {
            Api::Tgi | Api::Chat => Ok(chat_url(&model.base_url)),
            Api::Router => Ok(join(
                &model.base_url,
                &format!(
                    "hf-inference/models/{}/v1/chat/completions",
                    model.upstream_model
                ),
            )),
            Api::Pipeline => Err(self
                .ctx(Some(model))
                .error(ErrorKind::InvalidRequest)
                .with_detail("a `pipeline` endpoint cannot chat: use a `chat` or `tgi` model")),
        }
    }
}

/// A failure given up on, for a caller deciding when to come back: a rate
/// limit, an overload or an endpoint still unavailable without a server hint
/// gets the wait the provider would have used next (`Retry-After` at the HTTP
/// service, `callbackAfterSeconds` at the worker).
fn with_estimate(mut e: ProviderError, next: Duration) -> ProviderError {
    let waitable = matches!(
        e.kind,
        ErrorKind::RateLimited
            | ErrorKind::Overloaded
            | ErrorKind::ModelLoading
            | ErrorKind::EndpointUnavailable
    );
    if waitable && e.retry_after.is_none() {
        e.retry_after = Some(next.max(Duration::from_secs(1)));
    }
    e
}

fn completion(p: Parsed, headers: &HeaderMap, attempts: u32, start: Instant) -> Completion {
    Completion {
        text: p.text,
        finish_reason: p.finish_reason,
        usage: p.usage,
        request_id: wire::request_id(headers),
        timings: Timings {
            total: start.elapsed(),
            ..wire::server_timings(headers)
        },
        attempts,
    }
}

fn one_user_message(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: ChatRole::User,
        content: text.to_string(),
    }]
}

/// The instruction used to summarize with a general text model.
fn summary_instruction(text: &str) -> String {
    format!("Summarize the following text concisely.\n\nText:\n{text}\n\nSummary:")
}

fn summary_params(req: &SummarizeRequest) -> GenerationParams {
    GenerationParams {
        max_tokens: req.max_length,
        ..GenerationParams::default()
    }
}

impl LlmProvider for HuggingFace {
    async fn generate(
        &self,
        model: &ModelEndpoint,
        request: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        let r = self.generate_unscrubbed(model, request).await;
        self.done(r)
    }

    async fn chat(
        &self,
        model: &ModelEndpoint,
        request: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let inner = &self.inner;
        let r = match inner.chat_target(model) {
            Ok(url) => {
                let body = wire::chat_body(
                    &model.upstream_model,
                    &request.messages,
                    &request.params,
                    false,
                );
                inner.complete(model, url, &body, wire::parse_chat).await
            }
            Err(e) => Err(e),
        };
        self.done(r)
    }

    async fn summarize(
        &self,
        model: &ModelEndpoint,
        request: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let r = self.summarize_unscrubbed(model, request).await;
        self.done(r)
    }

    fn generate_stream(&self, model: &ModelEndpoint, request: TextRequest) -> CompletionStream {
        let s = match model.api {
            Api::Tgi => match wire::tgi_body(&request.prompt, &request.params) {
                Ok(body) => stream(
                    self.inner.clone(),
                    model.clone(),
                    join(&model.base_url, "generate_stream"),
                    body,
                    StreamKind::Tgi,
                ),
                Err(e) => {
                    let e = self
                        .inner
                        .ctx(Some(model))
                        .error(ErrorKind::InvalidRequest)
                        .with_detail(e);
                    Box::pin(futures_util::stream::once(async move { Err(e) }))
                }
            },
            Api::Chat => {
                let body = wire::chat_body(
                    &model.upstream_model,
                    &one_user_message(&request.prompt),
                    &request.params,
                    true,
                );
                stream(
                    self.inner.clone(),
                    model.clone(),
                    chat_url(&model.base_url),
                    wire::json_bytes(&body),
                    StreamKind::Chat,
                )
            }
            // Pipelines do not stream: the whole answer arrives as one chunk.
            Api::Pipeline | Api::Router => {
                let this = self.clone();
                let model = model.clone();
                Box::pin(async_stream::stream! {
                    match LlmProvider::generate(&this, &model, &request).await {
                        Ok(c) => {
                            yield Ok(StreamEvent::Token(c.text.clone()));
                            yield Ok(StreamEvent::Done(c));
                        }
                        Err(e) => yield Err(e),
                    }
                })
            }
        };
        self.scrubbed(s)
    }

    fn chat_stream(&self, model: &ModelEndpoint, request: ChatRequest) -> CompletionStream {
        let s = match self.inner.chat_target(model) {
            Ok(url) => {
                let body = wire::chat_body(
                    &model.upstream_model,
                    &request.messages,
                    &request.params,
                    true,
                );
                stream(
                    self.inner.clone(),
                    model.clone(),
                    url,
                    wire::json_bytes(&body),
                    StreamKind::Chat,
                )
            }
            Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })),
        };
        self.scrubbed(s)
    }

    async fn probe(&self, model: &ModelEndpoint) -> Result<EndpointInfo, ProviderError> {
        let r = self.probe_unscrubbed(model).await;
        self.out(r)
    }
}

impl HuggingFace {
    async fn generate_unscrubbed(
        &self,
        model: &ModelEndpoint,
        request: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        let inner = &self.inner;
        match model.api {
            Api::Tgi => {
                inner
                    .complete_tgi(
                        model,
                        join(&model.base_url, "generate"),
                        &request.prompt,
                        &request.params,
                    )
                    .await
            }
            Api::Chat => {
                let body = wire::chat_body(
                    &model.upstream_model,
                    &one_user_message(&request.prompt),
                    &request.params,
                    false,
                );
                inner
                    .complete(model, chat_url(&model.base_url), &body, wire::parse_chat)
                    .await
            }
            Api::Pipeline => {
                inner
                    .pipeline(
                        model,
                        join(&model.base_url, ""),
                        &wire::pipeline_text_body(&request.prompt, &request.params),
                    )
                    .await
            }
            Api::Router => {
                inner
                    .pipeline(
                        model,
                        router_model_url(model),
                        &wire::pipeline_text_body(&request.prompt, &request.params),
                    )
                    .await
            }
        }
    }

    async fn summarize_unscrubbed(
        &self,
        model: &ModelEndpoint,
        request: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let inner = &self.inner;
        match model.api {
            Api::Pipeline => {
                inner
                    .pipeline(
                        model,
                        join(&model.base_url, ""),
                        &wire::summarize_body(request),
                    )
                    .await
            }
            Api::Router => {
                inner
                    .pipeline(
                        model,
                        router_model_url(model),
                        &wire::summarize_body(request),
                    )
                    .await
            }
            Api::Tgi => {
                let req = TextRequest {
                    prompt: summary_instruction(&request.text),
                    params: summary_params(request),
                };
                LlmProvider::generate(self, model, &req).await
            }
            Api::Chat => {
                let req = ChatRequest {
                    messages: one_user_message(&summary_instruction(&request.text)),
                    params: summary_params(request),
                };
                LlmProvider::chat(self, model, &req).await
            }
        }
    }

    async fn probe_unscrubbed(&self, model: &ModelEndpoint) -> Result<EndpointInfo, ProviderError> {
        let inner = &self.inner;
        if model.api == Api::Router {
            return Ok(EndpointInfo {
                note: Some("the serverless router has no health route".into()),
                ..EndpointInfo::default()
            });
        }
        let health = inner
            .builder(reqwest::Method::GET, join(&model.base_url, "health"))?
            .timeout(inner.settings.calls.request_timeout);
        inner.send(health, Some(model)).await?;
        let mut info = EndpointInfo {
            healthy: true,
            ..EndpointInfo::default()
        };
        if matches!(model.api, Api::Tgi | Api::Chat) {
            match inner
                .get_json(Some(model), join(&model.base_url, "info"))
                .await
            {
                Ok((_, v)) => {
                    let n = |k: &str| {
                        v.get(k)
                            .and_then(Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok())
                    };
                    info.model_id = v.get("model_id").and_then(Value::as_str).map(bounded);
                    info.max_input_tokens = n("max_input_tokens").or_else(|| n("max_input_length"));
                    info.max_total_tokens = n("max_total_tokens");
                    info.version = v.get("version").and_then(Value::as_str).map(bounded);
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    info.note = Some("the server has no `/info` route".into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(info)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Tgi,
    Chat,
}

/// What one server-sent event meant.
enum Step {
    Token(String),
    Done(Parsed),
    Error(ProviderError),
    Nothing,
}

/// Accumulated state of a chat stream (finish reason and usage come in pieces).
struct ChatAcc {
    text: String,
    finish: Option<super::FinishReason>,
    usage: Option<Usage>,
    done: bool,
    /// The longest text kept (`max_response_bytes`).
    limit: usize,
}

impl ChatAcc {
    fn new(limit: usize) -> ChatAcc {
        ChatAcc {
            text: String::new(),
            finish: None,
            usage: None,
            done: false,
            limit,
        }
    }
}

fn interpret(
    kind: StreamKind,
    data: &str,
    acc: &mut ChatAcc,
    ctx: &CallContext<'_>,
    req_id: Option<&str>,
) -> Step {
    if kind == StreamKind::Chat && data.trim() == "[DONE]" {
        acc.done = true;
        return Step::Nothing;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        let mut e = ctx
            .error(ErrorKind::InvalidResponse)
            .with_detail("a stream event is not JSON");
        e.text.request_id = req_id.map(str::to_string);
        return Step::Error(e);
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Step::Error(classify_event(ctx, &v, req_id));
    }
    match kind {
        StreamKind::Tgi => {
            let token = v
                .get("token")
                .filter(|t| !t.get("special").and_then(Value::as_bool).unwrap_or(false));
            let text = token
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(full) = v.get("generated_text").and_then(Value::as_str) {
                let details = v.get("details");
                let n = |k: &str| {
                    details
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                };
                acc.text = text;
                return Step::Done(Parsed {
                    text: full.to_string(),
                    finish_reason: details
                        .and_then(|d| d.get("finish_reason"))
                        .and_then(Value::as_str)
                        .map(super::FinishReason::from_wire),
                    usage: Usage {
                        prompt_tokens: n("input_length"),
                        completion_tokens: n("generated_tokens"),
                    },
                });
            }
            if text.is_empty() {
                Step::Nothing
            } else {
                Step::Token(text)
            }
        }
        StreamKind::Chat => {
            if let Some(u) = wire::usage_of(&v) {
                acc.usage = Some(u);
            }
            let choice = v
                .get("choices")
                .and_then(Value::as_array)
                .and_then(|c| c.first());
            if let Some(f) = choice
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str)
            {
                acc.finish = Some(super::FinishReason::from_wire(f));
            }
            match choice
                .and_then(|c| c.get("delta"))
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                Some(t) if !t.is_empty() => {
                    if acc.text.len() + t.len() > acc.limit {
                        let mut e = ctx.error(ErrorKind::InvalidResponse).with_detail(format!(
                            "the streamed text is longer than {} bytes, the `max_response_bytes` of integration `{}`",
                            acc.limit, ctx.integration
                        ));
                        e.text.request_id = req_id.map(str::to_string);
                        return Step::Error(e);
                    }
                    acc.text.push_str(t);
                    Step::Token(t.to_string())
                }
                _ => Step::Nothing,
            }
        }
    }
}

/// A streamed call: retried like any call until the first token is delivered,
/// never after.
fn stream(
    inner: Arc<Inner>,
    model: ModelEndpoint,
    url: Url,
    body: bytes::Bytes,
    kind: StreamKind,
) -> CompletionStream {
    Box::pin(async_stream::stream! {
        let mut st = Attempts::new();
        loop {
            st.count += 1;
            // Every failure before the first token leaves this block; what follows decides whether to retry.
            let failure: ProviderError = 'attempt: {
            let b = match inner.model_headers(&model) {
                Ok(h) => inner.client.post(url.clone()).headers(h.clone()).body(body.clone()),
                Err(e) => { yield Err(e); return; }
            };
            let sent = Instant::now();
            let first_token_deadline = tokio::time::Instant::now() + inner.settings.calls.first_token_timeout;
            let opened = match tokio::time::timeout_at(first_token_deadline, inner.send(b, Some(&model))).await {
                Ok(r) => r,
                Err(_) => Err(inner.ctx(Some(&model)).error(ErrorKind::Timeout).with_detail("no answer before the first-token timeout")),
            };
            let resp = match opened {
                Ok(r) => r,
                Err(e) => break 'attempt e,
            };
            let headers = resp.headers().clone();
            let req_id = wire::request_id(&headers);
            let ctx = inner.ctx(Some(&model));
            let mut body_stream = resp.bytes_stream();
            let mut parser = SseParser::default();
            let mut acc = ChatAcc::new(inner.settings.calls.max_response_bytes);
            let mut delivered = false;
            let mut first_token: Option<Duration> = None;
            let mut ended = false;
            loop {
                let next = if delivered {
                    tokio::time::timeout(inner.settings.calls.request_timeout, body_stream.next()).await
                } else {
                    tokio::time::timeout_at(first_token_deadline, body_stream.next()).await
                };
                let events: Vec<String> = match next {
                    Err(_) => {
                        let what = if delivered { "the stream went silent for longer than the request timeout" } else { "no token before the first-token timeout" };
                        let e = ctx.error(ErrorKind::Timeout).with_detail(what);
                        if delivered { yield Err(e); return; }
                        break 'attempt e;
                    }
                    Ok(Some(Ok(bytes))) => match parser.push(&bytes) {
                        Ok(ev) => ev,
                        Err(err) => { yield Err(ctx.error(ErrorKind::InvalidResponse).with_detail(err.to_string())); return; }
                    },
                    Ok(Some(Err(err))) => {
                        let e = inner.transport(Some(&model), &err).with_detail("the stream broke");
                        if delivered { yield Err(e); return; }
                        break 'attempt e;
                    }
                    Ok(None) => {
                        ended = true;
                        match parser.finish() {
                            Ok(last) => last.into_iter().collect(),
                            Err(err) => { yield Err(ctx.error(ErrorKind::InvalidResponse).with_detail(err.to_string())); return; }
                        }
                    }
                };
                for data in events {
                    match interpret(kind, &data, &mut acc, &ctx, req_id.as_deref()) {
                        Step::Nothing => {}
                        Step::Token(t) => {
                            if !delivered {
                                delivered = true;
                                first_token = Some(sent.elapsed());
                            }
                            yield Ok(StreamEvent::Token(t));
                        }
                        Step::Done(parsed) => {
                            if !acc.text.is_empty() {
                                yield Ok(StreamEvent::Token(std::mem::take(&mut acc.text)));
                            }
                            let mut c = completion(parsed, &headers, st.count, st.start);
                            c.timings.first_token = first_token.or_else(|| Some(sent.elapsed()));
                            yield Ok(StreamEvent::Done(c));
                            return;
                        }
                        Step::Error(mut e) => {
                            e.attempts = st.count;
                            if delivered { yield Err(e); return; }
                            break 'attempt e;
                        }
                    }
                    if acc.done {
                        break;
                    }
                }
                if acc.done || ended {
                    if kind == StreamKind::Chat && acc.finish.is_some() {
                        let usage = acc.usage.unwrap_or_default();
                        let parsed = Parsed { text: std::mem::take(&mut acc.text), finish_reason: acc.finish.take(), usage };
                        let mut c = completion(parsed, &headers, st.count, st.start);
                        c.timings.first_token = first_token;
                        yield Ok(StreamEvent::Done(c));
                        return;
                    }
                    let mut e = ctx.error(ErrorKind::Upstream).with_detail("the stream ended before its final event: the generation is incomplete");
                    e.text.request_id = req_id.clone();
                    e.attempts = st.count;
                    if delivered { yield Err(e); return; }
                    break 'attempt e;
                }
            }
            };
            match inner.next_wait(&mut st, &model, failure).await {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(e) => { yield Err(e); return; }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_parse() {
        for c in [DEFAULT_HUB_URL, DEFAULT_MANAGEMENT_URL, DEFAULT_ROUTER_URL] {
            assert_eq!(parse_const(c).as_str().trim_end_matches('/'), c);
        }
    }

    #[test]
    fn urls() {
        let base = Url::parse("https://e.example/").unwrap();
        assert_eq!(
            join(&base, "generate").as_str(),
            "https://e.example/generate"
        );
        assert_eq!(
            chat_url(&base).as_str(),
            "https://e.example/v1/chat/completions"
        );
        assert_eq!(
            chat_url(&Url::parse("https://e.example/v1").unwrap()).as_str(),
            "https://e.example/v1/chat/completions"
        );
        assert_eq!(
            chat_url(&Url::parse("https://e.example/openai/v1/").unwrap()).as_str(),
            "https://e.example/openai/v1/chat/completions"
        );
        let m = ModelEndpoint {
            name: "m".into(),
            base_url: Url::parse(DEFAULT_ROUTER_URL).unwrap(),
            api: Api::Router,
            upstream_model: "facebook/bart-large-cnn".into(),
        };
        assert_eq!(
            router_model_url(&m).as_str(),
            "https://router.huggingface.co/hf-inference/models/facebook/bart-large-cnn"
        );
    }
}
