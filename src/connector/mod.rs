//! The Connector: the one entry point front doors call (library users, the CLI,
//! and later the HTTP service and the Conductor worker). It holds the catalog,
//! its policy and one provider client per integration as one immutable
//! snapshot behind an atomic pointer, and runs tasks along the path:
//! look up → refuse inactive → authorize → check the task against the model
//! and prompt → build the request → call the provider → shape the output →
//! audit.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::access::{Access, Principal, PrincipalError, Subject, Target};
use crate::catalog::{Catalog, Integration, Model};
use crate::config::{diagnostic_suggest, ConfigError, LoadOptions};
use crate::limits::Admission;
use crate::metrics::{Metrics, ModelSeries};
use crate::provider::huggingface::hub::{ManagedEndpoint, WhoAmI};
use crate::provider::huggingface::HuggingFace;
use crate::provider::{
    Api, ChatMessage, ChatRequest, ChatRole, Completion, EndpointInfo, GenerationParams,
    LlmProvider, ModelEndpoint, ProviderError, StreamEvent, SummarizeRequest, TextRequest,
};
use crate::task::{finish_reason_name, Task, TaskError, TaskErrorKind, TaskEvent, TaskOutput};
use crate::untrusted::Untrusted;
use crate::FxHashMap;

mod audit;

pub(crate) use audit::UNKNOWN as UNKNOWN_LABEL;
use audit::{Audit, Decided, DecisionText, Labels, TaskId, UNKNOWN};

/// Why a connector operation (other than a task) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    /// No such integration, model or prompt.
    #[error("{0}")]
    NotFound(String),
    /// The config could not be loaded; the connector keeps the snapshot it had.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Something in hfconnect itself failed (such as building the metrics registry).
    #[error("{0}")]
    Internal(String),
}

/// The success-path series of each catalog model, resolved once per snapshot:
/// looking labels up in the registry on every task costs more than the
/// counting itself.
type Handles = FxHashMap<Arc<str>, FxHashMap<Arc<str>, Arc<ModelSeries>>>;

fn ok_handles(metrics: &Metrics, catalog: &Catalog) -> Handles {
    let mut out: Handles = FxHashMap::default();
    for i in catalog.integrations() {
        let models = out.entry(i.name_arc().clone()).or_default();
        for m in i.models() {
            let series = metrics.series.get(i.name_arc(), m.name_arc());
            models.insert(m.name_arc().clone(), series);
        }
    }
    out
}

/// Everything a task runs against; replaced whole on reload.
#[derive(Debug)]
struct Snapshot {
    catalog: Arc<Catalog>,
    providers: FxHashMap<String, HuggingFace>,
    admission: Admission,
    handles: Handles,
}

impl Snapshot {
    fn handles(&self, integration: &str, model: &str) -> Option<&ModelSeries> {
        self.handles
            .get(integration)
            .and_then(|m| m.get(model))
            .map(|s| &**s)
    }

    fn new(catalog: Catalog, metrics: &Metrics) -> Result<Snapshot, ConnectorError> {
        let mut providers = FxHashMap::default();
        for i in catalog.integrations() {
            let key = i.api_key().secret().cloned().map_err(str::to_string);
            providers.insert(
                i.name().to_string(),
                HuggingFace::new(i.settings().clone(), key)?,
            );
        }
        let admission = Admission::new(&catalog);
        let handles = ok_handles(metrics, &catalog);
        Ok(Snapshot {
            catalog: Arc::new(catalog),
            providers,
            admission,
            handles,
        })
    }

    /// The metric labels of `task`: the catalog's names, or [`UNKNOWN`].
    fn labels(&self, task: &Task) -> Labels<'_> {
        let i = self.catalog.integration(task.integration());
        Labels {
            integration: i.map_or(UNKNOWN, Integration::name),
            model: i
                .and_then(|i| i.model(task.model()))
                .map_or(UNKNOWN, Model::name),
        }
    }

    fn integration(&self, name: &str) -> Result<(&Integration, &HuggingFace), ConnectorError> {
        let found = self
            .catalog
            .integration(name)
            .and_then(|i| self.providers.get(name).map(|p| (i, p)));
        found.ok_or_else(|| ConnectorError::NotFound(unknown_integration(&self.catalog, name)))
    }
}

fn unknown_integration(catalog: &Catalog, name: &str) -> String {
    let names = catalog.integrations().iter().map(Integration::name);
    format!(
        "unknown integration `{}`{}",
        Untrusted(name),
        diagnostic_suggest(name, names)
    )
}

fn unknown_model(integration: &Integration, model: &str) -> String {
    let names = integration.models().iter().map(Model::name);
    format!(
        "unknown model `{}` of integration `{}`{}",
        Untrusted(model),
        integration.name(),
        diagnostic_suggest(model, names)
    )
}

/// The connector.
#[derive(Debug)]
pub struct Connector {
    state: ArcSwap<Snapshot>,
    metrics: Arc<Metrics>,
}

/// A streamed task: chunks, then the output, or an error.
pub type TaskStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, TaskError>> + Send>>;

/// What `token check` found.
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    /// The integration checked.
    pub integration: String,
    /// Who the token belongs to.
    pub owner: WhoAmI,
    /// The integration's namespace.
    pub namespace: Option<String>,
    /// Whether the namespace is the owner or one of its organizations.
    pub namespace_ok: Option<bool>,
    /// Things worth changing.
    pub warnings: Vec<String>,
}

/// The state of one model endpoint.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// The model.
    pub model: String,
    /// Its api flavour.
    pub api: Api,
    /// Its endpoint URL.
    pub endpoint: String,
    /// What the health/info probe found.
    pub probe: Result<EndpointInfo, ProviderError>,
    /// What the management API says about it, when it can be asked.
    pub managed: Option<ManagedEndpoint>,
}

/// What `endpoint status` found.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// The integration.
    pub integration: String,
    /// One entry per model asked about.
    pub models: Vec<ModelStatus>,
    /// Why the management API could not be asked, if it could not.
    pub management_unavailable: Option<String>,
}

/// A task checked and turned into a provider call. It borrows from the
/// snapshot: taking shares of its `Arc`s made every task contend on their counts.
struct Prepared<'s> {
    integration: &'s str,
    model: &'s str,
    provider: &'s HuggingFace,
    endpoint: &'s ModelEndpoint,
    call: Call,
    json_output: bool,
}

enum Call {
    Generate(TextRequest),
    Chat(ChatRequest),
    Summarize(SummarizeRequest),
}

/// Counts a task in `hfconnect_tasks_in_flight` while it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(m: &Metrics) -> InFlight {
        m.in_flight.inc();
        InFlight(m.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::new(TaskErrorKind::InvalidInput, message)
}

fn vars_as_text(vars: &HashMap<String, Value>) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn params(
    model: &Model,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: &[String],
) -> Result<GenerationParams, TaskError> {
    let d = model.defaults();
    let p = GenerationParams {
        max_tokens: max_tokens.or(d.max_tokens.map(std::num::NonZeroU32::get)),
        temperature: temperature.or(d.temperature),
        top_p: top_p.or(d.top_p),
        stop: if stop.is_empty() {
            d.stop.clone()
        } else {
            stop.to_vec()
        },
        seed: d.seed,
    };
    if p.max_tokens == Some(0) {
        return Err(invalid("`maxTokens` must be at least 1"));
    }
    if p.temperature.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err(invalid("`temperature` must be greater than 0"));
    }
    if p.top_p.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
        return Err(invalid("`topP` must be greater than 0 and at most 1"));
    }
    Ok(p)
}

fn to_output(c: Completion, json_output: bool) -> Result<TaskOutput, TaskError> {
    let result = if json_output {
        let text = c.text.trim();
        let body = text
            .strip_prefix("```json")
            .or_else(|| text.strip_prefix("```"))
            .and_then(|t| t.trim_end().strip_suffix("```"))
            .unwrap_or(text);
        serde_json::from_str(body.trim()).map_err(|e| {
            TaskError::new(
                TaskErrorKind::InvalidOutput,
                format!("`jsonOutput` is set but the model's answer is not valid JSON ({e})"),
            )
        })?
    } else {
        Value::String(c.text)
    };
    Ok(TaskOutput {
        result,
        finish_reason: c.finish_reason.as_ref().map(finish_reason_name),
        token_used: c.usage.total(),
        prompt_tokens: c.usage.prompt_tokens,
        completion_tokens: c.usage.completion_tokens,
    })
}

impl Connector {
    /// A connector over `catalog`, with one HTTP client per integration.
    pub fn new(catalog: Catalog) -> Result<Connector, ConnectorError> {
        let metrics = Metrics::new().map_err(|e| {
            ConnectorError::Internal(format!("the metrics registry could not be built: {e}"))
        })?;
        Ok(Connector {
            state: ArcSwap::from_pointee(Snapshot::new(catalog, &metrics)?),
            metrics: Arc::new(metrics),
        })
    }

    /// Load the config at `path` and build a connector over it.
    pub fn from_path(path: &Path, options: &LoadOptions) -> Result<Connector, ConnectorError> {
        Connector::new(crate::config::load(path, options)?.catalog)
    }

    /// Replace the catalog. Tasks in flight finish on the snapshot they started
    /// with; the next task sees the new one. On error nothing changes.
    pub fn reload(&self, catalog: Catalog) -> Result<(), ConnectorError> {
        let snapshot = Snapshot::new(catalog, &self.metrics)?;
        self.state.store(Arc::new(snapshot));
        Ok(())
    }

    /// Load `path` and swap it in; a config that fails validation is refused
    /// and the old one stays.
    pub fn reload_from(&self, path: &Path, options: &LoadOptions) -> Result<(), ConnectorError> {
        self.reload(crate::config::load(path, options)?.catalog)
    }

    /// The catalog in force (a snapshot: later reloads do not change it).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state.load().catalog.clone()
    }

    /// The integrations, models and prompts `principal` may READ.
    pub fn visible(&self, principal: &Principal) -> Value {
        let snap = self.state.load();
        let policy = snap.catalog.policy();
        let can = |t: Target| policy.decide(principal, Access::Read, &t).allowed;
        let integrations: Vec<Value> = snap
            .catalog
            .integrations()
            .iter()
            .filter_map(|i| {
                let models: Vec<Value> = i
                    .models()
                    .iter()
                    .filter(|m| can(Target::model(i.name(), m.name())))
                    .map(|m| serde_json::json!({"name": m.name(), "description": m.description(), "api": m.api(), "tasks": m.tasks()}))
                    .collect();
                (can(Target::Integration(i.name().into())) || !models.is_empty()).then(|| {
                    serde_json::json!({"name": i.name(), "description": i.description(), "namespace": i.namespace(), "models": models})
                })
            })
            .collect();
        let prompts: Vec<Value> = snap
            .catalog
            .prompts()
            .iter()
            .filter(|p| can(Target::Prompt(p.name().into())))
            .map(|p| {
                let models: Vec<String> = p.models().iter().map(ToString::to_string).collect();
                serde_json::json!({"name": p.name(), "description": p.description(), "variables": p.template().variables(), "models": models})
            })
            .collect();
        serde_json::json!({"integrations": integrations, "prompts": prompts})
    }

    /// Ask the policy in force: may `principal` do `access` on `target`?
    pub fn decide(
        &self,
        principal: &Principal,
        access: Access,
        target: &Target,
    ) -> crate::access::Decision {
        self.state
            .load()
            .catalog
            .policy()
            .decide(principal, access, target)
    }

    /// Resolve a caller as the policy sees it, keeping the policy's own error
    /// (for tools that explain access rather than run tasks).
    pub fn resolve(
        &self,
        subject: &Subject,
        group: Option<&str>,
    ) -> Result<Principal, PrincipalError> {
        self.state.load().catalog.policy().principal(subject, group)
    }

    /// The metrics in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// The HTTP service's connection gauges, in this connector's registry.
    pub(crate) fn connection_metrics(&self) -> crate::metrics::ConnectionMetrics {
        self.metrics.connections.clone()
    }

    /// The application an API key belongs to. Every configured hash is
    /// compared, in constant time, whatever matches.
    pub fn authenticate(&self, key: &str) -> Option<String> {
        let snap = self.state.load();
        let mut found = None;
        for app in snap.catalog.applications() {
            if crate::keys::matches(key, app.key_hashes()) && found.is_none() {
                found = Some(app.name().to_string());
            }
        }
        found
    }

    /// Whether application `app` may name a user to act for.
    pub fn may_act_for_users(&self, app: &str) -> bool {
        self.state
            .load()
            .catalog
            .application(app)
            .is_some_and(|a| a.act_for_users())
    }

    /// Resolve a caller: its groups and roles, optionally narrowed to one group.
    pub fn principal(
        &self,
        subject: &Subject,
        group: Option<&str>,
    ) -> Result<Principal, TaskError> {
        self.state
            .load()
            .catalog
            .policy()
            .principal(subject, group)
            .map_err(|e| {
                let kind = match e {
                    PrincipalError::UnknownGroup(_) => TaskErrorKind::NotFound,
                    PrincipalError::NotACaller(_) => TaskErrorKind::InvalidInput,
                    PrincipalError::UnknownApplication(_) | PrincipalError::NotAMember { .. } => {
                        TaskErrorKind::Denied
                    }
                };
                TaskError::new(kind, e.to_string())
            })
    }

    /// Run a task on behalf of `principal`.
    pub async fn execute(
        &self,
        principal: &Principal,
        task: &Task,
    ) -> Result<TaskOutput, TaskError> {
        let snap = self.state.load_full();
        let audit = Audit {
            metrics: &self.metrics,
            include_text: snap.catalog.audit_include_text(),
            task_id: TaskId::new(),
            principal,
            task,
            labels: snap.labels(task),
            started: Instant::now(),
        };
        let mut decided: Decided = None;
        let handles = snap.handles(task.integration(), task.model());
        let prepared = prepare(&snap, principal, task, &mut decided);
        let result = match prepared {
            Ok(p) => {
                let json_output = p.json_output;
                let _permit = match snap
                    .admission
                    .admit(principal, p.integration, p.model)
                    .await
                {
                    Ok(permit) => permit,
                    Err(e) => {
                        let result = Err(e);
                        audit.record(&decided, &result, handles);
                        return result;
                    }
                };
                let upstream = Instant::now();
                let done = match &p.call {
                    Call::Generate(r) => p.provider.generate(p.endpoint, r).await,
                    Call::Chat(r) => p.provider.chat(p.endpoint, r).await,
                    Call::Summarize(r) => p.provider.summarize(p.endpoint, r).await,
                };
                // The provider timed a success already: one clock read fewer.
                let took = match &done {
                    Ok(c) => c.timings.total,
                    Err(_) => upstream.elapsed(),
                }
                .as_secs_f64();
                match handles {
                    Some(h) => h.upstream(took),
                    None => self
                        .metrics
                        .upstream_latency
                        .with_label_values(&[audit.labels.integration, audit.labels.model])
                        .observe(took),
                }
                done.map_err(TaskError::from)
                    .and_then(|c| to_output(c, json_output))
            }
            Err(e) => Err(e),
        };
        audit.record(&decided, &result, handles);
        result
    }

    /// Run a task, streaming its text: chunks, then the output.
    pub fn execute_stream(&self, principal: &Principal, task: &Task) -> TaskStream {
        let snap = self.state.load_full();
        let principal = principal.clone();
        let task = task.clone();
        let metrics = self.metrics.clone();
        Box::pin(async_stream::stream! {
            let _in_flight = InFlight::new(&metrics);
            let audit = Audit {
                metrics: &metrics,
                include_text: snap.catalog.audit_include_text(),
                task_id: TaskId::new(),
                principal: &principal,
                task: &task,
                labels: snap.labels(&task),
                started: Instant::now(),
            };
            let mut decided: Decided = None;
            let p = match prepare(&snap, &principal, &task, &mut decided) {
                Ok(p) => p,
                Err(e) => {
                    let result = Err(e.clone());
                    audit.record(&decided, &result, snap.handles(task.integration(), task.model()));
                    yield Err(e);
                    return;
                }
            };
            let _permit = match snap.admission.admit(&principal, p.integration, p.model).await {
                Ok(permit) => permit,
                Err(e) => {
                    audit.record(&decided, &Err(e.clone()), snap.handles(task.integration(), task.model()));
                    yield Err(e);
                    return;
                }
            };
            let mut inner = match p.call {
                Call::Generate(r) => p.provider.generate_stream(p.endpoint, r),
                Call::Chat(r) => p.provider.chat_stream(p.endpoint, r),
                Call::Summarize(r) => {
                    let provider = p.provider.clone();
                    let endpoint = p.endpoint.clone();
                    Box::pin(async_stream::stream! {
                        match provider.summarize(&endpoint, &r).await {
                            Ok(c) => {
                                yield Ok(StreamEvent::Token(c.text.clone()));
                                yield Ok(StreamEvent::Done(c));
                            }
                            Err(e) => yield Err(e),
                        }
                    })
                }
            };
            while let Some(item) = inner.next().await {
                match item {
                    Ok(StreamEvent::Token(t)) => yield Ok(TaskEvent::Chunk(t)),
                    Ok(StreamEvent::Done(c)) => {
                        let result = to_output(c, p.json_output);
                        audit.record(&decided, &result, snap.handles(task.integration(), task.model()));
                        yield result.map(TaskEvent::Done);
                        return;
                    }
                    Err(e) => {
                        let result = Err(TaskError::from(e));
                        audit.record(&decided, &result, snap.handles(task.integration(), task.model()));
                        if let Err(e) = result {
                            yield Err(e);
                        }
                        return;
                    }
                }
            }
        })
    }

    /// The prompt a `tgi` model's chat template makes of `messages` (what
    /// `/generate` would receive for a chat task).
    pub fn render_chat(
        &self,
        integration: &str,
        model: &str,
        messages: &[ChatMessage],
    ) -> Result<String, TaskError> {
        let snap = self.state.load_full();
        let not_found = |m: String| TaskError::new(TaskErrorKind::NotFound, m);
        let i = snap
            .catalog
            .integration(integration)
            .ok_or_else(|| not_found(unknown_integration(&snap.catalog, integration)))?;
        let m = i
            .model(model)
            .ok_or_else(|| not_found(unknown_model(i, model)))?;
        let template = m.chat_template().ok_or_else(|| {
            invalid(format!("model `{model}` of integration `{integration}` has no `chat_template` (api `{}` renders chats on the server)", m.api()))
        })?;
        template.render(messages).map_err(invalid)
    }

    /// Who owns the integration's token, and whether it fits the integration.
    pub async fn token_check(&self, integration: &str) -> Result<TokenReport, ConnectorError> {
        let snap = self.state.load_full();
        let (i, provider) = snap.integration(integration)?;
        let owner = provider.whoami().await?;
        let mut warnings = Vec::new();
        let namespace_ok = i.namespace().map(|ns| owner.covers(ns));
        if namespace_ok == Some(false) {
            warnings.push(format!(
                "the token belongs to `{}`, which is neither namespace `{}` nor one of its organizations: endpoint management calls will be refused",
                owner.name,
                i.namespace().unwrap_or_default()
            ));
        }
        if owner.role.as_deref() == Some("write") {
            warnings.push(
                "the token has the `write` role; running tasks needs only `read` (or a fine-grained token with inference permissions): use a narrower token".into(),
            );
        }
        Ok(TokenReport {
            integration: i.name().to_string(),
            owner,
            namespace: i.namespace().map(str::to_string),
            namespace_ok,
            warnings,
        })
    }

    /// Health and info of each model endpoint (or one), plus the management API's view.
    pub async fn endpoint_status(
        &self,
        integration: &str,
        model: Option<&str>,
    ) -> Result<EndpointStatus, ConnectorError> {
        let snap = self.state.load_full();
        let (i, provider) = snap.integration(integration)?;
        let models: Vec<&Model> = match model {
            Some(m) => vec![i
                .model(m)
                .ok_or_else(|| ConnectorError::NotFound(unknown_model(i, m)))?],
            None => i.models().iter().collect(),
        };
        let (managed, management_unavailable) = if i.namespace().is_some() {
            match provider.endpoints().await {
                Ok(list) => (list, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        } else {
            (
                Vec::new(),
                Some("the integration has no `namespace`".to_string()),
            )
        };
        let mut out = Vec::new();
        for m in models {
            let probe = provider.probe(&m.endpoint_spec()).await;
            out.push(ModelStatus {
                model: m.name().to_string(),
                api: m.api(),
                endpoint: m.endpoint().to_string(),
                probe,
                managed: managed
                    .iter()
                    .find(|e| e.serves(m.endpoint().as_str()))
                    .cloned(),
            });
        }
        Ok(EndpointStatus {
            integration: i.name().to_string(),
            models: out,
            management_unavailable,
        })
    }
}

/// The rules, in order: unknown names, inactive, grants, the model's task kinds,
/// prompt variables, the prompt's model list; then the request.
fn prepare<'s>(
    snap: &'s Snapshot,
    principal: &Principal,
    task: &Task,
    decided: &mut Decided,
) -> Result<Prepared<'s>, TaskError> {
    let catalog = &snap.catalog;
    let not_found = |m: String| TaskError::new(TaskErrorKind::NotFound, m);
    let integration = catalog
        .integration(task.integration())
        .ok_or_else(|| not_found(unknown_integration(catalog, task.integration())))?;
    let model = integration
        .model(task.model())
        .ok_or_else(|| not_found(unknown_model(integration, task.model())))?;
    let prompt = match task.prompt_name() {
        Some(name) => Some(catalog.prompt(name).ok_or_else(|| {
            let names = catalog.prompts().iter().map(|p| p.name());
            not_found(format!(
                "unknown prompt `{}`{}",
                Untrusted(name),
                diagnostic_suggest(name, names)
            ))
        })?),
        None => None,
    };
    if !integration.is_active() {
        let m = format!("integration `{}` is inactive", integration.name());
        *decided = Some((false, DecisionText::Text(m.clone())));
        return Err(TaskError::new(TaskErrorKind::Inactive, m));
    }
    if !model.is_active() {
        let m = format!(
            "model `{}` of integration `{}` is inactive",
            model.name(),
            integration.name()
        );
        *decided = Some((false, DecisionText::Text(m.clone())));
        return Err(TaskError::new(TaskErrorKind::Inactive, m));
    }
    let policy = catalog.policy();
    let decision = policy.decide(principal, Access::Execute, model.target());
    if !decision.allowed {
        let message = format!("denied: {}", decision.reason);
        *decided = Some((false, DecisionText::Reason(decision.reason)));
        return Err(TaskError::new(TaskErrorKind::Denied, message));
    }
    let mut reason = DecisionText::Reason(decision.reason);
    if let Some(p) = prompt {
        let d = policy.decide(principal, Access::Read, &Target::Prompt(p.name().into()));
        if !d.allowed {
            let message = format!("denied: {}", d.reason);
            *decided = Some((false, DecisionText::Reason(d.reason)));
            return Err(TaskError::new(TaskErrorKind::Denied, message));
        }
        if let DecisionText::Reason(first) = reason {
            reason = DecisionText::Both(first, d.reason);
        }
    }
    *decided = Some((true, reason));
    let kind = task.kind();
    if !model.supports(kind) {
        let serves: Vec<&str> = model.tasks().iter().map(|t| t.as_str()).collect();
        return Err(invalid(format!(
            "model `{}` of integration `{}` does not serve `{kind}`; it serves {}",
            model.name(),
            integration.name(),
            serves.join(", ")
        )));
    }
    let rendered = match (prompt, task) {
        (Some(p), Task::TextComplete(t)) => {
            Some(p.template().render(&vars_as_text(&t.prompt_variables)))
        }
        (Some(p), Task::ChatComplete(t)) => {
            Some(p.template().render(&vars_as_text(&t.prompt_variables)))
        }
        _ => None,
    };
    let rendered = match rendered {
        Some(Ok(text)) => Some(text),
        Some(Err(missing)) => {
            let name = task.prompt_name().unwrap_or_default();
            return Err(invalid(format!(
                "prompt `{name}`: {missing}; give them in `promptVariables`"
            )));
        }
        None => None,
    };
    if let Some(p) = prompt {
        if !p.allows(integration.name(), model.name()) {
            let listed: Vec<String> = p.models().iter().map(|m| format!("`{m}`")).collect();
            return Err(invalid(format!(
                "prompt `{}` may not be used with `{}:{}`; it lists {}",
                p.name(),
                integration.name(),
                model.name(),
                listed.join(", ")
            )));
        }
    }
    let (call, json_output) = match task {
        Task::TextComplete(t) => {
            let text = match (&t.prompt, rendered) {
                (Some(_), Some(_)) => {
                    return Err(invalid("give `prompt` or `promptName`, not both"))
                }
                (Some(raw), None) => raw.clone(),
                (None, Some(r)) => r,
                (None, None) => return Err(invalid("give `prompt` or `promptName`")),
            };
            if text.trim().is_empty() {
                return Err(invalid("the prompt is empty"));
            }
            let params = params(model, t.temperature, t.top_p, t.max_tokens, &t.stop_words)?;
            (
                Call::Generate(TextRequest {
                    prompt: text,
                    params,
                }),
                false,
            )
        }
        Task::ChatComplete(t) => {
            if t.messages.is_empty() {
                return Err(invalid("`messages` is empty"));
            }
            let mut messages = Vec::with_capacity(t.messages.len() + 1);
            if let Some(system) = rendered {
                messages.push(ChatMessage {
                    role: ChatRole::System,
                    content: system,
                });
            }
            messages.extend(t.messages.iter().map(|m| ChatMessage {
                role: m.role,
                content: m.message.clone(),
            }));
            let params = params(model, t.temperature, t.top_p, t.max_tokens, &t.stop_words)?;
            match (model.api(), model.chat_template()) {
                // A raw TGI endpoint with a configured template: render here, call `/generate`.
                (Api::Tgi, Some(template)) => {
                    let prompt = template
                        .render(&messages)
                        .map_err(|e| invalid(format!("model `{}`: {e}", model.name())))?;
                    (
                        Call::Generate(TextRequest { prompt, params }),
                        t.json_output,
                    )
                }
                _ => (Call::Chat(ChatRequest { messages, params }), t.json_output),
            }
        }
        Task::Summarize(t) => {
            if t.text.trim().is_empty() {
                return Err(invalid("`text` is empty"));
            }
            if let (Some(min), Some(max)) = (t.min_length, t.max_length) {
                if min > max {
                    return Err(invalid(format!(
                        "`minLength` ({min}) is above `maxLength` ({max})"
                    )));
                }
            }
            (
                Call::Summarize(SummarizeRequest {
                    text: t.text.clone(),
                    max_length: t.max_length,
                    min_length: t.min_length,
                }),
                false,
            )
        }
    };
    let provider = snap
        .providers
        .get(integration.name())
        .ok_or_else(|| not_found(unknown_integration(catalog, integration.name())))?;
    Ok(Prepared {
        integration: integration.name(),
        model: model.name(),
        provider,
        endpoint: model.spec(),
        call,
        json_output,
    })
}
