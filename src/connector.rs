//! The Connector: what front doors (CLI, and later the HTTP service and the
//! Conductor worker) call. It holds the catalog and one provider client per
//! integration, and answers operational questions about them (whose token,
//! which endpoints are up). Task execution builds on it.

use std::collections::HashMap;

use serde::Serialize;

use crate::catalog::{Catalog, Integration};
use crate::config::diagnostic_suggest;
use crate::provider::huggingface::hub::{ManagedEndpoint, WhoAmI};
use crate::provider::huggingface::HuggingFace;
use crate::provider::{Api, EndpointInfo, LlmProvider, ProviderError};

/// Why a connector call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    /// No such integration, model or prompt.
    #[error("{0}")]
    NotFound(String),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The connector over one catalog.
#[derive(Debug)]
pub struct Connector {
    catalog: Catalog,
    providers: HashMap<String, HuggingFace>,
}

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

impl Connector {
    /// A connector over `catalog`, with one HTTP client per integration.
    pub fn new(catalog: Catalog) -> Result<Connector, ConnectorError> {
        let mut providers = HashMap::new();
        for i in catalog.integrations() {
            let key = i.api_key().secret().cloned().map_err(str::to_string);
            providers.insert(
                i.name().to_string(),
                HuggingFace::new(i.settings().clone(), key)?,
            );
        }
        Ok(Connector { catalog, providers })
    }

    /// The catalog in force.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn integration(&self, name: &str) -> Result<(&Integration, &HuggingFace), ConnectorError> {
        let found = self
            .catalog
            .integration(name)
            .and_then(|i| self.providers.get(name).map(|p| (i, p)));
        found.ok_or_else(|| {
            let names = self.catalog.integrations().iter().map(Integration::name);
            ConnectorError::NotFound(format!(
                "unknown integration `{name}`{}",
                diagnostic_suggest(name, names)
            ))
        })
    }

    /// Who owns the integration's token, and whether it fits the integration.
    pub async fn token_check(&self, integration: &str) -> Result<TokenReport, ConnectorError> {
        let (i, provider) = self.integration(integration)?;
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
        let (i, provider) = self.integration(integration)?;
        let models: Vec<_> = match model {
            Some(m) => match i.model(m) {
                Some(found) => vec![found],
                None => {
                    let names = i.models().iter().map(|m| m.name());
                    return Err(ConnectorError::NotFound(format!(
                        "unknown model `{m}` of integration `{integration}`{}",
                        diagnostic_suggest(m, names)
                    )));
                }
            },
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
            let spec = m.endpoint_spec();
            let probe = provider.probe(&spec).await;
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
