//! The Hugging Face implementation of [`LlmProvider`]: Inference Endpoints
//! (TGI, the chat route, pipelines) and the serverless router, with retries,
//! cold-start waits, timeouts and typed errors; plus the Hub (`whoami-v2`) and
//! the endpoint management API.
//!
//! One `HuggingFace` value per integration: it owns the integration's HTTP
//! client (connection pool, keep-alive) and key, and is cheap to clone.
//!
//! By file: one per endpoint flavour (`tgi`, `chat_route`, `pipeline`,
//! `router`, `tei`) behind one private dispatch (`dispatch`); the shared
//! retrying transport (`transport`), streams (`stream`, `sse`), embeddings
//! batching (`embed`), errors (`classify`, `net_error`), answers' headers
//! (`wire`), the Hub and management API (`hub`), the key (`auth`).

mod auth;
mod chat_route;
mod classify;
mod deployment;
mod dispatch;
mod embed;
mod flavour;
mod hub;
mod locate;
mod net_error;
mod pipeline;
mod router;
#[cfg(feature = "test-support")]
pub mod sse;
#[cfg(not(feature = "test-support"))]
mod sse;
mod stream;
mod tei;
mod tgi;
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
pub use self::deployment::{looks_secret, Drift, EndpointImage, EndpointSpec};
use self::dispatch::flavour;
use self::flavour::{Flavour, Probe};
pub use self::hub::{ManagedEndpoint, WhoAmI};
use self::wire::Parsed;
use super::{
    CallSettings, ChatRequest, Completion, CompletionStream, EmbedRequest, Embeddings,
    EndpointInfo, ErrorKind, LlmProvider, ModelEndpoint, ProviderError, StreamEvent,
    SummarizeRequest, TextRequest, Timings,
};
use crate::stripe::STRIPES;
use crate::untrusted::bounded;

/// The Hub base URL when nothing else is configured.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";
/// A change to an Inference Endpoint, as the management API makes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EndpointChange {
    /// `POST …/pause`: not billed; only a resume starts it again.
    Pause,
    /// `POST …/resume` (one already running counts as resumed).
    Resume,
    /// `POST …/scale-to-zero`: not billed; the next request wakes it.
    ScaleToZero,
    /// `PUT …`: a partial update, such as `compute.scaling`.
    Update(serde_json::Value),
    /// `DELETE …`: irreversible.
    Delete,
    /// `POST /endpoint/{namespace}`: a new endpoint from its body.
    Create(serde_json::Value),
}

/// The management API's resource for endpoint `name` of `namespace`: what
/// stands for a model's URL until the provider asks for it.
pub fn management_resource(management_url: &Url, namespace: &str, name: &str) -> Url {
    join(
        management_url,
        &format!("endpoint/{}/{}", encode(namespace), encode(name)),
    )
}

/// An endpoint name as one path segment (names are DNS labels; anything
/// else is escaped rather than trusted).
fn encode(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

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
    /// Each embeddings endpoint's `max_client_batch_size`, by base URL, once read.
    batch_sizes: std::sync::Mutex<rustc_hash::FxHashMap<String, usize>>,
    /// The management API's URL of each model that names its endpoint and
    /// gives none, with when it was read.
    located: std::sync::Mutex<rustc_hash::FxHashMap<String, (Url, Instant)>>,
}

/// Where a call stands in its retries.
pub(super) struct Attempts {
    pub start: Instant,
    pub count: u32,
    retries: u32,
    cold_waits: u32,
    state_checked: bool,
    /// The management API said the endpoint is starting (or was just resumed).
    starting: bool,
}

impl Attempts {
    pub(super) fn new() -> Self {
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
            // A redirect would re-send the prompt to wherever the endpoint
            // points: never followed, a 3xx is an error (`classify`).
            .redirect(reqwest::redirect::Policy::none())
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
                batch_sizes: std::sync::Mutex::default(),
                located: std::sync::Mutex::default(),
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

    /// One Inference Endpoint of the namespace, by name.
    pub async fn endpoint(&self, name: &str) -> Result<ManagedEndpoint, ProviderError> {
        let r = self
            .endpoint_call(reqwest::Method::GET, name, "", None)
            .await;
        self.out(r)
    }

    /// Change an endpoint: pause, resume, scale it to zero, update it
    /// (partially, as `body` says) or delete it; its state after (a delete
    /// answers with what it was).
    pub async fn change_endpoint(
        &self,
        name: &str,
        change: &EndpointChange,
    ) -> Result<Option<ManagedEndpoint>, ProviderError> {
        use reqwest::Method;
        let r = match change {
            EndpointChange::Pause => self
                .endpoint_call(Method::POST, name, "/pause", None)
                .await
                .map(Some),
            EndpointChange::ScaleToZero => self
                .endpoint_call(Method::POST, name, "/scale-to-zero", None)
                .await
                .map(Some),
            EndpointChange::Resume => match self.inner.resume(name).await {
                Ok(()) => self
                    .endpoint_call(Method::GET, name, "", None)
                    .await
                    .map(Some),
                Err(e) => Err(e),
            },
            EndpointChange::Update(body) => self
                .endpoint_call(Method::PUT, name, "", Some(body))
                .await
                .map(Some),
            EndpointChange::Delete => self
                .inner
                .manage(Method::DELETE, &encode(name), None)
                .await
                .map(|_| None),
            EndpointChange::Create(body) => {
                match self.inner.manage(Method::POST, "", Some(body)).await {
                    Ok(v) => ManagedEndpoint::from_json(&v).map(Some).ok_or_else(|| {
                        self.inner.invalid(
                            None,
                            &http::HeaderMap::new(),
                            "the management API answered a create without the endpoint's `name`",
                        )
                    }),
                    Err(e) => Err(e),
                }
            }
        };
        self.out(r)
    }

    /// Whether a running endpoint serves: its URL and health route
    /// (`/health` unless it says otherwise) answer 200, as
    /// `huggingface_hub`'s `wait()` requires before it calls an endpoint ready.
    pub async fn endpoint_serves(&self, endpoint: &ManagedEndpoint) -> bool {
        let Some(url) = endpoint.url.as_deref().and_then(|u| Url::parse(u).ok()) else {
            return false;
        };
        let route = endpoint.health_route.as_deref().unwrap_or("/health");
        let mut health = url.clone();
        let path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            route.trim_start_matches('/')
        );
        health.set_path(&path);
        let Ok(b) = self.inner.builder(reqwest::Method::GET, health) else {
            return false;
        };
        let b = b.timeout(self.inner.settings.calls.request_timeout);
        matches!(b.send().await, Ok(r) if r.status().is_success())
    }

    async fn endpoint_call(
        &self,
        method: reqwest::Method,
        name: &str,
        suffix: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ManagedEndpoint, ProviderError> {
        let v = self
            .inner
            .manage(method, &format!("{}{suffix}", encode(name)), body)
            .await?;
        ManagedEndpoint::from_json(&v).ok_or_else(|| {
            self.inner.invalid(
                None,
                &http::HeaderMap::new(),
                "the management API answered without the endpoint's `name`",
            )
        })
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

/// TEI's `model_type` (`{"embedding": {"pooling": "mean"}}`, `{"reranker":
/// {…}}`, …) in words, bounded.
fn model_type(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .next()
            .map(
                |(k, inner)| match inner.get("pooling").and_then(Value::as_str) {
                    Some(p) => bounded(&format!("{k} ({p} pooling)")),
                    None => bounded(k),
                },
            )
            .unwrap_or_default(),
        Value::String(s) => bounded(s),
        _ => String::new(),
    }
}

impl LlmProvider for HuggingFace {
    async fn generate(
        &self,
        model: &ModelEndpoint,
        request: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        let r = match self.inner.locate(model).await {
            Ok(model) => flavour!(model.api, f => f.generate(self, &model, request).await),
            Err(e) => Err(e),
        };
        self.done(r)
    }

    async fn chat(
        &self,
        model: &ModelEndpoint,
        request: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let r = match self.inner.locate(model).await {
            Ok(model) => flavour!(model.api, f => f.chat(self, &model, request).await),
            Err(e) => Err(e),
        };
        self.done(r)
    }

    async fn summarize(
        &self,
        model: &ModelEndpoint,
        request: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let r = match self.inner.locate(model).await {
            Ok(model) => flavour!(model.api, f => f.summarize(self, &model, request).await),
            Err(e) => Err(e),
        };
        self.done(r)
    }

    fn generate_stream(&self, model: &ModelEndpoint, request: TextRequest) -> CompletionStream {
        let s = if model.url_from_management {
            let (this, model) = (self.clone(), model.clone());
            located_stream(async move {
                let m = this.inner.locate(&model).await?.into_owned();
                Ok(flavour!(m.api, f => f.generate_stream(&this, &m, request)))
            })
        } else {
            flavour!(model.api, f => f.generate_stream(self, model, request))
        };
        self.scrubbed(s)
    }

    fn chat_stream(&self, model: &ModelEndpoint, request: ChatRequest) -> CompletionStream {
        let s = if model.url_from_management {
            let (this, model) = (self.clone(), model.clone());
            located_stream(async move {
                let m = this.inner.locate(&model).await?.into_owned();
                Ok(flavour!(m.api, f => f.chat_stream(&this, &m, request)))
            })
        } else {
            flavour!(model.api, f => f.chat_stream(self, model, request))
        };
        self.scrubbed(s)
    }

    async fn embed(
        &self,
        model: &ModelEndpoint,
        request: &EmbedRequest,
    ) -> Result<Embeddings, ProviderError> {
        let r = match self.inner.locate(model).await {
            Ok(model) => self.embed_unscrubbed(&model, request).await,
            Err(e) => Err(e),
        };
        self.out(r)
    }

    async fn probe(&self, model: &ModelEndpoint) -> Result<EndpointInfo, ProviderError> {
        let r = match self.inner.locate(model).await {
            Ok(model) => self.probe_unscrubbed(&model).await,
            Err(e) => Err(e),
        };
        self.out(r)
    }
}

/// A stream that starts once `start` has found where to call.
fn located_stream(
    start: impl std::future::Future<Output = Result<CompletionStream, ProviderError>> + Send + 'static,
) -> CompletionStream {
    Box::pin(
        futures_util::stream::once(async move {
            match start.await {
                Ok(s) => s,
                Err(e) => Box::pin(futures_util::stream::iter([Err(e)])) as CompletionStream,
            }
        })
        .flatten(),
    )
}

impl HuggingFace {
    async fn probe_unscrubbed(&self, model: &ModelEndpoint) -> Result<EndpointInfo, ProviderError> {
        let inner = &self.inner;
        let probe = flavour!(model.api, f => f.probe());
        if probe == Probe::Nothing {
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
        if probe == Probe::HealthAndInfo {
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
                    info.max_batch_size = n("max_client_batch_size");
                    info.max_batch_tokens = n("max_batch_tokens");
                    info.model_type = v.get("model_type").map(model_type);
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

#[cfg(test)]
mod tests {
    use super::chat_route::chat_url;
    use super::router::model_url as router_model_url;
    use super::*;
    use crate::provider::Api;

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
            inference_endpoint: None,
            url_from_management: false,
        };
        assert_eq!(
            router_model_url(&m).as_str(),
            "https://router.huggingface.co/hf-inference/models/facebook/bart-large-cnn"
        );
    }
}
