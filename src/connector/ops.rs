//! What the Connector does besides running tasks: who owns an integration's
//! token (`token check`), the state of its endpoints (`endpoint status`),
//! what a chat template makes of messages (`template render`), what a caller
//! may see (the catalog route), and the policy's answer to a question
//! (`access explain`).

use serde::Serialize;

use super::prepare::{invalid, unknown_integration, unknown_model};
use super::views::{CatalogView, IntegrationView, ModelView, PromptView, RunnableModel};
use super::{ConnectorError, Core};
use crate::access::{Access, Principal, Target};
use crate::catalog::Model;
use crate::provider::huggingface::HuggingFace;
use crate::provider::huggingface::{ManagedEndpoint, WhoAmI};
use crate::provider::{Api, ChatMessage, EndpointInfo, LlmProvider, ProviderError};
use crate::task::{InputMessage, TaskError, TaskErrorKind};

/// What `token check` found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TokenReport {
    /// The integration checked.
    pub integration: String,
    /// Who the token belongs to.
    pub owner: WhoAmI,
    /// The integration's namespace.
    pub namespace: Option<String>,
    /// Whether the namespace is the owner or one of its organizations.
    pub namespace_ok: Option<bool>,
    /// Whether the token may manage the namespace's endpoints (pause,
    /// resume, scale, create, delete): `inference.endpoints.write`.
    pub may_manage: Option<bool>,
    /// Things worth changing.
    pub warnings: Vec<String>,
}

/// The state of one model endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct EndpointStatus {
    /// The integration.
    pub integration: String,
    /// One entry per model asked about.
    pub models: Vec<ModelStatus>,
    /// Why the management API could not be asked, if it could not.
    pub management_unavailable: Option<String>,
}

impl<P: LlmProvider> Core<P> {
    /// The budgets' spend and the tokens by day `principal` may see
    /// (`GET /v1/usage`); on Redis, an `overloaded` error while it is away.
    pub async fn usage(&self, principal: &Principal) -> Result<super::spend::UsageView, TaskError> {
        let snap = self.state.load_full();
        super::spend::usage(&snap.admission, &snap.catalog, principal).await
    }

    /// [`Core::usage`] read without taking the in-process store's lock (a
    /// copy of what the store holds on disk, beside a `serve` that writes
    /// it): what `hfconnect usage` shows. On Redis, the same as `usage`.
    pub async fn usage_read_only(
        &self,
        principal: &Principal,
    ) -> Result<super::spend::UsageView, ConnectorError> {
        let snap = self.state.load_full();
        let on_disk = match snap.runtime.admission() {
            crate::runtime::AdmissionBackend::Local => snap.runtime.usage_store(),
            _ => None,
        };
        let Some(path) = on_disk else {
            return super::spend::usage(&snap.admission, &snap.catalog, principal)
                .await
                .map_err(|e| ConnectorError::Store(e.to_string()));
        };
        let copy = crate::admission::budget::Ledger::read_copy(path, std::time::SystemTime::now())
            .map_err(|e| ConnectorError::Store(e.to_string()))?;
        let admission = crate::admission::Admission::new(
            &snap.catalog,
            snap.runtime.admission(),
            None,
            &self.metrics.admission,
            copy,
        );
        super::spend::usage(&admission, &snap.catalog, principal)
            .await
            .map_err(|e| ConnectorError::Store(e.to_string()))
    }

    /// Open the in-process usage store now (`serve` and `worker` do at
    /// start, so a store that cannot be used stops them at once rather
    /// than refusing every budgeted task).
    pub fn open_usage_store(&self) -> Result<(), ConnectorError> {
        self.state
            .load()
            .admission
            .ledger()
            .ready()
            .map_err(ConnectorError::Store)
    }

    /// Wait until every change to the usage store is on disk.
    pub fn flush_usage(&self) {
        self.state.load().admission.ledger().flush();
    }

    /// The integrations, models and prompts `principal` may READ.
    pub fn visible(&self, principal: &Principal) -> CatalogView {
        let snap = self.state.load();
        let policy = snap.catalog.policy();
        let can = |t: Target| policy.decide(principal, Access::Read, &t).allowed;
        let integrations = snap
            .catalog
            .integrations()
            .iter()
            .filter_map(|i| {
                let models: Vec<ModelView> = i
                    .models()
                    .iter()
                    .filter(|m| can(Target::model(i.name(), m.name())))
                    .map(|m| ModelView {
                        name: m.name().to_string(),
                        description: m.description().map(str::to_string),
                        api: m.api(),
                        tasks: m.tasks().to_vec(),
                    })
                    .collect();
                (can(Target::Integration(i.name().into())) || !models.is_empty()).then(|| {
                    IntegrationView {
                        name: i.name().to_string(),
                        description: i.description().map(str::to_string),
                        namespace: i.namespace().map(str::to_string),
                        models,
                    }
                })
            })
            .collect();
        let prompts = snap
            .catalog
            .prompts()
            .iter()
            .filter(|p| can(Target::Prompt(p.name().into())))
            .map(|p| PromptView {
                name: p.name().to_string(),
                description: p.description().map(str::to_string),
                variables: p
                    .template()
                    .variables()
                    .into_iter()
                    .map(|v| v.to_string())
                    .collect(),
                models: p.models().iter().map(ToString::to_string).collect(),
            })
            .collect();
        CatalogView {
            integrations,
            prompts,
        }
    }

    /// The active models `principal` may `EXECUTE`.
    pub(crate) fn executable_models(&self, principal: &Principal) -> Vec<RunnableModel> {
        let snap = self.state.load();
        let policy = snap.catalog.policy();
        let created = self
            .loaded_at()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        snap.catalog
            .integrations()
            .iter()
            .filter(|i| i.is_active())
            .flat_map(|i| i.models().iter().map(move |m| (i, m)))
            .filter(|(i, m)| {
                m.is_active()
                    && policy
                        .decide(
                            principal,
                            Access::Execute,
                            &Target::model(i.name(), m.name()),
                        )
                        .allowed
            })
            .map(|(i, m)| RunnableModel {
                integration: i.name().to_string(),
                model: m.name().to_string(),
                created,
            })
            .collect()
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

    /// The prompt a `tgi` model's chat template makes of `messages` (what
    /// `/generate` would receive for a chat task).
    pub fn render_chat(
        &self,
        integration: &str,
        model: &str,
        messages: &[InputMessage],
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
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|m| ChatMessage {
                role: m.role,
                content: m.message.clone(),
            })
            .collect();
        template.render(&messages).map_err(invalid)
    }
}

/// What only Hugging Face can answer: the Hub and the management API.
impl Core<HuggingFace> {
    /// Who owns the integration's token, and whether it fits the integration.
    pub async fn token_check(&self, integration: &str) -> Result<TokenReport, ConnectorError> {
        let snap = self.state.load_full();
        let (i, provider) = snap.integration(integration)?;
        let owner = provider
            .whoami()
            .await
            .map_err(ConnectorError::from_provider)?;
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
        let may_manage = i.namespace().map(|ns| owner.may_manage(ns));
        Ok(TokenReport {
            integration: i.name().to_string(),
            owner,
            namespace: i.namespace().map(str::to_string),
            namespace_ok,
            may_manage,
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
