//! The raw schema: what admins write, as serde structs that reject unknown keys.
//! Nothing here is checked beyond shape; [`super::validate`] does the rest.

use serde::Deserialize;

use super::de::{Items, Spanned};
use super::secret::ApiKeyLocation;
use crate::access::{Access, Role};
use crate::catalog::TaskKind;
use crate::provider::Api;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub integrations: Items<RawIntegration>,
    #[serde(default)]
    pub prompts: Items<RawPrompt>,
    #[serde(default)]
    pub groups: Items<RawGroup>,
    #[serde(default)]
    pub applications: Items<RawApplication>,
    #[serde(default)]
    pub grants: Items<RawGrant>,
    #[serde(default)]
    pub quotas: Items<RawQuota>,
    #[serde(default)]
    pub budgets: Items<RawBudget>,
    pub audit: Option<Spanned<RawAudit>>,
    pub admission: Option<Spanned<RawAdmission>>,
    pub worker: Option<Spanned<RawWorker>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorker {
    pub conductor_url: Option<Spanned<String>>,
    pub task_types: Option<Spanned<RawTaskTypes>>,
    pub identity: Option<Spanned<IdentityMode>>,
    pub app: Option<Spanned<String>>,
    pub worker_id: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<u32>>,
    pub batch: Option<Spanned<u32>>,
    pub poll_timeout: Option<Spanned<f64>>,
    pub shutdown_grace: Option<Spanned<f64>>,
    pub key_id: Option<Spanned<String>>,
    pub key_secret: Option<Spanned<ApiKeyLocation>>,
}

/// The Conductor task type polled for each task; kinds left out are not polled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTaskTypes {
    pub text_complete: Option<Spanned<String>>,
    pub chat_complete: Option<Spanned<String>>,
    pub summarize: Option<Spanned<String>>,
    pub generate_embeddings: Option<Spanned<String>>,
    pub endpoint_resume: Option<Spanned<String>>,
    pub endpoint_pause: Option<Spanned<String>>,
    pub endpoint_scale: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmission {
    pub backend: Option<Spanned<BackendName>>,
    pub url: Option<Spanned<ApiKeyLocation>>,
    pub key_prefix: Option<Spanned<String>>,
    pub on_unavailable: Option<Spanned<OnUnavailableName>>,
    pub timeout: Option<Spanned<f64>>,
    pub lease: Option<Spanned<f64>>,
    pub store: Option<Spanned<String>>,
}

/// `admission.backend` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BackendName {
    Local,
    Redis,
}

/// `admission.on_unavailable` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OnUnavailableName {
    Local,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub include_text: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub per_second: Spanned<u32>,
    pub burst: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    pub subject: Spanned<String>,
    pub integration: Spanned<String>,
    pub requests_per_minute: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub name: Spanned<String>,
    pub subject: Spanned<String>,
    pub each_member: Option<Spanned<bool>>,
    pub target: Option<Spanned<String>>,
    pub tokens: Spanned<u64>,
    pub window: Spanned<String>,
    pub counts: Option<Spanned<RawCounts>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawCounts {
    All,
    Prompt,
    Completion,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntegration {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub namespace: Option<Spanned<String>>,
    pub active: Option<bool>,
    pub api_key: Spanned<ApiKeyLocation>,
    pub hub_url: Option<Spanned<String>>,
    pub management_url: Option<Spanned<String>>,
    pub timeouts: Option<RawTimeouts>,
    pub retry: Option<RawRetry>,
    pub cold_start: Option<RawColdStart>,
    pub rate_limit: Option<RawRate>,
    pub max_concurrency: Option<Spanned<u32>>,
    pub queue_timeout: Option<Spanned<f64>>,
    pub max_response_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub models: Items<RawModel>,
}

/// Seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect: Option<Spanned<f64>>,
    pub request: Option<Spanned<f64>>,
    pub first_token: Option<Spanned<f64>>,
    pub stream: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub max_attempts: Option<Spanned<u32>>,
    pub initial_backoff: Option<Spanned<f64>>,
    pub max_backoff: Option<Spanned<f64>>,
    pub budget: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColdStart {
    pub wait: Option<Spanned<f64>>,
    pub resume_paused: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub endpoint: Option<Spanned<String>>,
    pub api: Spanned<Api>,
    pub tasks: Spanned<Vec<Spanned<TaskKind>>>,
    pub active: Option<bool>,
    pub upstream_model: Option<Spanned<String>>,
    pub inference_endpoint: Option<Spanned<String>>,
    pub deployment: Option<Spanned<RawDeployment>>,
    pub defaults: Option<Spanned<RawDefaults>>,
    pub chat_template: Option<Spanned<String>>,
    pub dimensions: Option<Spanned<u32>>,
    pub rate_limit: Option<RawRate>,
    pub max_concurrency: Option<Spanned<u32>>,
}

/// A model's Inference Endpoint as it should be: the management API's
/// create fields in snake_case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeployment {
    pub repository: Spanned<String>,
    pub revision: Option<Spanned<String>>,
    pub task: Option<Spanned<String>>,
    pub framework: Option<Spanned<String>>,
    /// `huggingface` (the default), `tgi`, `tei`, or a custom image URL.
    pub image: Option<Spanned<String>>,
    /// A custom image's port and health route.
    pub port: Option<Spanned<u16>>,
    pub health_route: Option<Spanned<String>>,
    pub accelerator: Spanned<String>,
    pub vendor: Spanned<String>,
    pub region: Spanned<String>,
    pub instance_type: Spanned<String>,
    pub instance_size: Spanned<String>,
    pub min_replica: Option<Spanned<u32>>,
    pub max_replica: Option<Spanned<u32>>,
    /// Minutes.
    pub scale_to_zero_timeout: Option<Spanned<u32>>,
    pub env: Option<Spanned<std::collections::BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub max_tokens: Option<Spanned<u32>>,
    pub temperature: Option<Spanned<f64>>,
    pub top_p: Option<Spanned<f64>>,
    pub stop: Option<Spanned<Vec<Spanned<String>>>>,
    pub seed: Option<u64>,
    pub normalize: Option<bool>,
    pub truncate: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrompt {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub template: Spanned<String>,
    pub models: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub name: Spanned<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    #[serde(default)]
    pub roles: Vec<Spanned<Role>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApplication {
    pub name: Spanned<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    pub act_for_users: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    pub subject: Spanned<String>,
    pub target: Spanned<String>,
    pub access: Spanned<Vec<Spanned<Access>>>,
}

/// `worker.identity` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IdentityMode {
    /// Every task runs as `worker.app`.
    Fixed,
    /// Trust `inputData._createdBy` (only where the engine sets it itself).
    TaskInput,
    /// Read `createdBy` / `ownerApp` of the task's workflow.
    Workflow,
}
