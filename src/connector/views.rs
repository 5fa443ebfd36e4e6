//! What the Connector shows of itself and its catalog, typed: the config in
//! force and its reloads, where limits are kept, and what a caller may see
//! or run. Doors serialize them (`/readyz`, `/v1/catalog`, `/v1/models`).

use serde::Serialize;

use crate::catalog::TaskKind;
use crate::provider::Api;

/// The config in force and how reloads went ([`Core::config_status`](super::Core::config_status)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConfigStatus {
    /// Integrations in the catalog.
    pub integrations: usize,
    /// Models over all of them.
    pub models: usize,
    /// The first 16 hex digits of the SHA-256 of the config files.
    pub hash: Option<String>,
    /// When it was loaded (RFC 3339).
    pub loaded_at: Option<String>,
    /// Reloads that took effect.
    pub reloads: u64,
    /// Reloads refused (the config kept serving).
    pub refused_reloads: u64,
    /// The last refused reload.
    pub last_refused: Option<RefusedReload>,
}

/// A reload that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RefusedReload {
    /// When (RFC 3339).
    pub at: String,
    /// How many errors the refused config had.
    pub errors: usize,
}

/// Where limits and quotas are kept ([`Core::admission_status`](super::Core::admission_status)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
#[non_exhaustive]
pub enum AdmissionStatus {
    /// In this process.
    Local,
    /// On Redis, shared by every replica.
    Redis {
        /// Whether Redis answered just now.
        reachable: bool,
        /// What tasks meet while it does not (`local` or `deny`).
        on_unavailable: &'static str,
        /// Whether the server's run id is known (restarts are then noticed).
        run_id_known: bool,
    },
}

/// What a caller may see ([`Core::visible`](super::Core::visible)).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CatalogView {
    /// The integrations it may read, or that have a model it may read.
    pub integrations: Vec<IntegrationView>,
    /// The prompts it may read.
    pub prompts: Vec<PromptView>,
}

/// One integration, as a caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IntegrationView {
    /// Its name.
    pub name: String,
    /// Free text for people.
    pub description: Option<String>,
    /// The Hub namespace owning its endpoints.
    pub namespace: Option<String>,
    /// The models the caller may read.
    pub models: Vec<ModelView>,
}

/// One model, as a caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelView {
    /// Its name.
    pub name: String,
    /// Free text for people.
    pub description: Option<String>,
    /// How its endpoint is spoken to.
    pub api: Api,
    /// The task kinds it serves.
    pub tasks: Vec<TaskKind>,
}

/// One saved prompt, as a caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PromptView {
    /// Its name.
    pub name: String,
    /// Free text for people.
    pub description: Option<String>,
    /// The `${var}`s it needs.
    pub variables: Vec<String>,
    /// The models it may be used with (`integration:model`).
    pub models: Vec<String>,
}

/// A model a caller may run (the OpenAI door's `/v1/models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunnableModel {
    pub integration: String,
    pub model: String,
    /// When the config in force was loaded, in Unix seconds.
    pub created: u64,
}
