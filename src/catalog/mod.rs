//! The validated, immutable catalog: integrations and their models, prompts,
//! groups, applications, and the compiled access policy.
//!
//! Built only by [`crate::config`]'s validation, so every value in it has been
//! checked: names are well formed and unique, URLs parse, references resolve.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::access::{Policy, Role, Target};
use crate::chat_template::ChatTemplate;
use crate::provider::huggingface::EndpointSpec;
use crate::provider::{Api, ModelEndpoint};

mod budget;
mod key;
mod kind;

pub use budget::{Budget, Counts, Payer, Span, TokenHeadroom, Window};
pub(crate) use key::{shown_path, shown_var};
pub use key::{ApiKey, KeySource};
pub use kind::TaskKind;

pub use crate::origin::Origin;
pub use crate::prompt::PromptTemplate;

/// The name no integration or model may take: metric labels and audit
/// events use it for names a caller sent that the catalog does not hold.
pub const UNKNOWN_NAME: &str = "_unknown";

/// Generation parameters a model applies when a task leaves them out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelDefaults {
    /// Maximum new tokens.
    pub max_tokens: Option<NonZeroU32>,
    /// Sampling temperature, > 0.
    pub temperature: Option<f64>,
    /// Nucleus sampling, in (0, 1].
    pub top_p: Option<f64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Scale embeddings to unit length.
    pub normalize: Option<bool>,
    /// Cut texts longer than the model takes instead of failing (embeddings).
    pub truncate: Option<bool>,
}

/// What is left of the tightest rate limit or quota that admitted a task:
/// its size, what remains of it, and when it is whole again (OpenAI's
/// `x-ratelimit-*-requests` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// How many tasks the limit admits at once (its burst).
    pub limit: u32,
    /// How many more it admits now.
    pub remaining: u32,
    /// When it has refilled whole.
    pub reset: Duration,
}

/// Admission limits of an integration or model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second and burst.
    pub rate: Option<(NonZeroU32, NonZeroU32)>,
    /// Tasks running at once.
    pub max_concurrency: Option<NonZeroU32>,
}

/// A request quota of a group, application or user on one integration.
#[derive(Debug, Clone)]
pub struct Quota {
    /// Who is charged.
    pub subject: crate::access::Subject,
    /// Where.
    pub integration: Arc<str>,
    /// How many tasks per minute.
    pub per_minute: NonZeroU32,
    /// Where it was written.
    pub origin: Origin,
}

/// A model endpoint registered under an integration.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) endpoint: Url,
    pub(crate) api: Api,
    pub(crate) tasks: Vec<TaskKind>,
    pub(crate) active: bool,
    pub(crate) upstream_model: Option<String>,
    /// The Inference Endpoint serving it, by name (`inference_endpoint`).
    pub(crate) inference_endpoint: Option<Arc<str>>,
    /// What its Inference Endpoint should be (`deployment`).
    pub(crate) deployment: Option<Arc<EndpointSpec>>,
    /// Whether its URL comes from the management API (`inference_endpoint`
    /// without `endpoint`); `endpoint` is then the endpoint's management resource.
    pub(crate) url_from_management: bool,
    pub(crate) defaults: ModelDefaults,
    pub(crate) dimensions: Option<NonZeroU32>,
    pub(crate) chat_template: Option<(PathBuf, Arc<ChatTemplate>)>,
    pub(crate) limits: Limits,
    pub(crate) origin: Origin,
    /// What the provider needs, built once.
    pub(crate) spec: Arc<ModelEndpoint>,
    /// `model:INTEGRATION:NAME`, built once.
    pub(crate) target: Target,
}

impl Model {
    /// Rate and concurrency limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// The model's name (may be a Hub repo id such as `org/name`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free text for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The base URL of the endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }
    /// How the endpoint is spoken to.
    pub fn api(&self) -> Api {
        self.api
    }
    /// The task kinds the model serves.
    pub fn tasks(&self) -> &[TaskKind] {
        &self.tasks
    }
    /// Whether the model serves `kind`.
    pub fn supports(&self, kind: TaskKind) -> bool {
        self.tasks.contains(&kind)
    }
    /// Whether tasks may run on it.
    pub fn is_active(&self) -> bool {
        self.active
    }
    /// The Inference Endpoint that serves it, when the config names it.
    pub fn inference_endpoint(&self) -> Option<&str> {
        self.inference_endpoint.as_deref()
    }
    /// What its Inference Endpoint should be, from its `deployment` block.
    pub fn deployment(&self) -> Option<&EndpointSpec> {
        self.deployment.as_deref()
    }
    /// Whether its URL is the management API's (it names an Inference
    /// Endpoint and gives no `endpoint`).
    pub fn url_from_management(&self) -> bool {
        self.url_from_management
    }

    /// The model id sent upstream (`upstream_model`, else the name).
    pub fn upstream_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.name)
    }
    /// Parameter defaults.
    pub fn defaults(&self) -> &ModelDefaults {
        &self.defaults
    }
    /// The size of the embeddings the model returns, when declared.
    pub fn dimensions(&self) -> Option<NonZeroU32> {
        self.dimensions
    }
    /// The chat template file, if one is configured.
    pub fn chat_template_path(&self) -> Option<&std::path::Path> {
        self.chat_template.as_ref().map(|(p, _)| p.as_path())
    }
    /// The loaded chat template, if one is configured.
    pub(crate) fn chat_template(&self) -> Option<&Arc<ChatTemplate>> {
        self.chat_template.as_ref().map(|(_, t)| t)
    }
    /// Where the model was declared.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
    /// What the provider needs to call it.
    pub fn endpoint_spec(&self) -> ModelEndpoint {
        (*self.spec).clone()
    }

    /// The provider's view of the model, shared.
    pub(crate) fn spec(&self) -> &Arc<ModelEndpoint> {
        &self.spec
    }

    /// The model as an access target (`model:INTEGRATION:NAME`).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The model's name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
}

/// An integration: one Hugging Face account or organization and its models.
#[derive(Debug, Clone)]
pub struct Integration {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) active: bool,
    pub(crate) api_key: ApiKey,
    pub(crate) hub_url: Url,
    pub(crate) management_url: Url,
    pub(crate) limits: Limits,
    pub(crate) queue_timeout: std::time::Duration,
    pub(crate) models: Vec<Model>,
    pub(crate) model_index: rustc_hash::FxHashMap<Arc<str>, usize>,
    pub(crate) origin: Origin,
}

impl Integration {
    /// The name tasks use as `llmProvider`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The integration's name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
    /// Free text for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The Hub user or organization owning the endpoints.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// Whether tasks may run on it.
    pub fn is_active(&self) -> bool {
        self.active
    }
    /// The API key (location and value, redacted in Debug).
    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }
    /// The Hub base URL (whoami, gated-model pages).
    pub fn hub_url(&self) -> &Url {
        &self.hub_url
    }
    /// The Inference Endpoints management API base.
    pub fn management_url(&self) -> &Url {
        &self.management_url
    }
    /// Rate and concurrency limits over all its models.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// How long a task waits for its turn before failing as rate limited.
    pub fn queue_timeout(&self) -> std::time::Duration {
        self.queue_timeout
    }
    /// Its models, in declaration order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }
    /// A model by name.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.model_index.get(name).and_then(|&i| self.models.get(i))
    }
    /// Where a model is in [`Integration::models`].
    pub(crate) fn model_position(&self, name: &str) -> Option<usize> {
        self.model_index.get(name).copied()
    }
    /// Where it was declared.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// `integration:model`, as prompts name the models they may be used with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The integration.
    pub integration: Arc<str>,
    /// The model.
    pub model: Arc<str>,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.integration, self.model)
    }
}

/// A saved prompt template.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) template: PromptTemplate,
    pub(crate) models: Vec<ModelRef>,
    pub(crate) origin: Origin,
}

impl Prompt {
    /// Its name (`promptName`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free text for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The parsed template.
    pub fn template(&self) -> &PromptTemplate {
        &self.template
    }
    /// The only models it may be used with.
    pub fn models(&self) -> &[ModelRef] {
        &self.models
    }
    /// Whether it may be used with `integration:model`.
    pub fn allows(&self, integration: &str, model: &str) -> bool {
        self.models
            .iter()
            .any(|m| &*m.integration == integration && &*m.model == model)
    }
    /// Where it was declared.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// A group of users.
#[derive(Debug, Clone)]
pub struct Group {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) members: Vec<Arc<str>>,
    pub(crate) roles: Vec<Role>,
    pub(crate) origin: Origin,
}

impl Group {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free text for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// User ids.
    pub fn members(&self) -> &[Arc<str>] {
        &self.members
    }
    /// Roles.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }
    /// Where it was declared.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// An application (service account).
#[derive(Debug, Clone)]
pub struct Application {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) groups: Vec<Arc<str>>,
    pub(crate) key_hashes: Vec<[u8; 32]>,
    pub(crate) act_for_users: bool,
    pub(crate) origin: Origin,
}

impl Application {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free text for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Groups it belongs to.
    pub fn groups(&self) -> &[Arc<str>] {
        &self.groups
    }
    /// SHA-256 hashes of its API keys.
    pub(crate) fn key_hashes(&self) -> &[[u8; 32]] {
        &self.key_hashes
    }
    /// Whether it may name a user to act for (`X-Hfconnect-User`).
    pub fn act_for_users(&self) -> bool {
        self.act_for_users
    }
    /// Where it was declared.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// The whole validated catalog and its access policy: what hfconnect
/// governs (how it runs is [`crate::runtime::Runtime`]). Its indexes are
/// `FxHashMap`s: they are looked up on every task, FxHash is several times
/// cheaper than SipHash there, and their keys are the admin's names, which
/// callers cannot choose to collide.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) integrations: Vec<Integration>,
    pub(crate) integration_index: rustc_hash::FxHashMap<Arc<str>, usize>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) prompt_index: rustc_hash::FxHashMap<Arc<str>, usize>,
    pub(crate) groups: Vec<Group>,
    pub(crate) applications: Vec<Application>,
    pub(crate) quotas: Vec<Quota>,
    pub(crate) budgets: Vec<Budget>,
    pub(crate) policy: Policy,
}

impl Catalog {
    /// All integrations, in declaration order.
    pub fn integrations(&self) -> &[Integration] {
        &self.integrations
    }
    /// An integration by name.
    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integration_index
            .get(name)
            .and_then(|&i| self.integrations.get(i))
    }
    /// Where an integration is in [`Catalog::integrations`].
    pub(crate) fn integration_position(&self, name: &str) -> Option<usize> {
        self.integration_index.get(name).copied()
    }
    /// A model by integration and model name.
    pub fn model(&self, integration: &str, model: &str) -> Option<&Model> {
        self.integration(integration).and_then(|i| i.model(model))
    }
    /// All prompts.
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }
    /// A prompt by name.
    pub fn prompt(&self, name: &str) -> Option<&Prompt> {
        self.prompt_index
            .get(name)
            .and_then(|&i| self.prompts.get(i))
    }
    /// All groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    /// All applications.
    pub fn applications(&self) -> &[Application] {
        &self.applications
    }
    /// An application by name.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| &*a.name == name)
    }
    /// Request quotas.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Token budgets.
    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }
    /// The compiled access policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Number of models over all integrations.
    pub fn model_count(&self) -> usize {
        self.integrations.iter().map(|i| i.models.len()).sum()
    }
}
