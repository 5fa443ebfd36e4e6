//! A snapshot: everything a task runs against (the catalog, one provider
//! client and key per integration, admission, metric handles), built whole
//! from a catalog and replaced whole on reload; and a task's [`Plan`], its
//! integration and model looked up once.

use std::sync::Arc;

use secrecy::SecretString;

use super::audit::{Labels, UNKNOWN};
use super::{prepare, ConnectorError, ProviderFactory};
use crate::access::TargetId;
use crate::admission::budget::Ledger;
use crate::admission::{Admission, Place};
use crate::catalog::{Catalog, Integration, KeySource, Model};
use crate::metrics::{Metrics, ModelSeries};
use crate::provider::huggingface::{HuggingFace, Settings};
use crate::provider::{CallSettings, ProviderError};
use crate::runtime::Runtime;
use crate::task::{TaskError, TaskErrorKind};
use rustc_hash::FxHashMap;

/// The key an integration's client uses: where it comes from, and the value
/// or why there is none.
type Key = (KeySource, Result<SecretString, String>);

/// What one integration of the catalog runs with, at the integration's
/// position: its client, its key, and each model's metric series at the
/// model's position (resolved once per snapshot: looking labels up in the
/// registry on every task costs more than the counting itself).
pub(super) struct Client<P> {
    pub provider: P,
    pub key: Key,
    pub series: Vec<Arc<ModelSeries>>,
    /// Each model's target in the policy, by the model's position.
    pub targets: Vec<Option<TargetId>>,
}

/// Everything a task runs against; replaced whole on reload.
pub(crate) struct Snapshot<P> {
    pub(super) catalog: Arc<Catalog>,
    pub(super) runtime: Arc<Runtime>,
    /// By the catalog's integration position.
    pub(super) clients: Vec<Client<P>>,
    pub(super) admission: Admission,
    /// Each application key's SHA-256 digest, to the application's position.
    ///
    /// Keys are looked up by their digest rather than compared with every
    /// application's hashes: the cost stays flat in the number of
    /// applications. Indexing a hash of a secret is safe where indexing the
    /// secret is not: a lookup's timing depends only on the digest of what
    /// the caller sent, which the caller already knows, and says nothing
    /// about a stored digest beyond whether it was hit; reaching a stored
    /// digest takes a preimage of SHA-256 of a 256-bit random key. For the
    /// same reason callers cannot choose digests that collide in the map.
    pub(super) keys_by_digest: FxHashMap<[u8; 32], usize>,
}

/// A task's integration and model, looked up once per task and passed by
/// reference to the policy, admission, the provider and the record.
pub(crate) struct Plan<'s, P> {
    pub integration: &'s Integration,
    pub model: &'s Model,
    pub provider: &'s P,
    pub series: &'s ModelSeries,
    /// The model's target in the policy.
    pub target: Option<TargetId>,
    pub place: Place<'s>,
}

impl<P> Clone for Plan<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Plan<'_, P> {}

impl<P> Plan<'_, P> {
    pub(super) fn labels(&self) -> Labels<'_> {
        Labels {
            integration: self.integration.name(),
            model: self.model.name(),
        }
    }
}

impl<P> std::fmt::Debug for Snapshot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("integrations", &self.catalog.integrations().len())
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

/// The in-process ledger of a snapshot: the one it replaces (budgets keep
/// their spend across reloads), opened on the usage store when there is one.
/// A store is opened once; a reload naming another one is warned about and
/// takes effect on restart.
fn ledger(runtime: &Runtime, old: Option<&Ledger>) -> Result<Ledger, ConnectorError> {
    let want = match runtime.admission() {
        crate::runtime::AdmissionBackend::Local => runtime.usage_store(),
        _ => None,
    };
    match (old, want) {
        (Some(l), Some(path)) if l.store_path().is_none() => Ok(Ledger::on_disk(path)),
        (Some(l), Some(path)) => {
            if l.store_path() != Some(path) {
                tracing::warn!(
                    store = %crate::untrusted::Field::new(&path.display().to_string()),
                    "`admission.store` changed; the store opened at start keeps being written until a restart"
                );
            }
            Ok(l.clone())
        }
        (Some(l), None) => Ok(l.clone()),
        (None, Some(path)) => Ok(Ledger::on_disk(path)),
        (None, None) => Ok(Ledger::default()),
    }
}

impl<P> Snapshot<P> {
    /// A snapshot of `catalog`; `old` is the one it replaces: its unchanged
    /// limits carry over, and so does a key that can no longer be read from
    /// the same place (a rotated Secret between its old file going and its
    /// new one arriving), with a warning.
    pub(super) fn new(
        catalog: Catalog,
        runtime: Runtime,
        metrics: &Metrics,
        build: &ProviderFactory<P>,
        old: Option<&Snapshot<P>>,
    ) -> Result<Snapshot<P>, ConnectorError> {
        let mut clients = Vec::with_capacity(catalog.integrations().len());
        for i in catalog.integrations() {
            let source = i.api_key().source().clone();
            let fresh = i.api_key().secret().cloned().map_err(str::to_string);
            let was = old.and_then(|o| o.key(i.name()));
            let key = match (fresh, was) {
                (Ok(k), _) => Ok(k),
                (Err(why), Some((was, Ok(k)))) if *was == source => {
                    tracing::warn!(
                        integration = %i.name(),
                        reason = %crate::untrusted::Field::new(&why),
                        "the key can no longer be read; the key read before keeps serving until a new one can be"
                    );
                    Ok(k.clone())
                }
                (Err(why), _) => Err(why),
            };
            let series = i
                .models()
                .iter()
                .map(|m| metrics.series.get(i.name_arc(), m.name_arc()))
                .collect();
            let targets = i
                .models()
                .iter()
                .map(|m| catalog.policy().target_id(m.target()))
                .collect();
            clients.push(Client {
                provider: build(i, &runtime.calls(i.name()), key.clone())
                    .map_err(ConnectorError::from_provider)?,
                key: (source, key),
                series,
                targets,
            });
        }
        let ledger = ledger(&runtime, old.map(|o| o.admission.ledger()))?;
        let admission = Admission::new(
            &catalog,
            runtime.admission(),
            old.map(|o| &o.admission),
            &metrics.admission,
            ledger,
        );
        let mut keys_by_digest = FxHashMap::default();
        for (at, app) in catalog.applications().iter().enumerate() {
            for h in app.key_hashes() {
                // Validation refuses a hash given twice; the first holder wins anyway.
                keys_by_digest.entry(*h).or_insert(at);
            }
        }
        Ok(Snapshot {
            catalog: Arc::new(catalog),
            runtime: Arc::new(runtime),
            clients,
            admission,
            keys_by_digest,
        })
    }

    /// The key of integration `name`, as this snapshot holds it.
    pub(super) fn key(&self, name: &str) -> Option<&Key> {
        let at = self.catalog.integration_position(name)?;
        self.clients.get(at).map(|r| &r.key)
    }

    /// The plan of a task on `integration` and `model`, or why there is none
    /// (with the labels to count the refusal under).
    pub(super) fn plan(
        &self,
        integration: &str,
        model: &str,
    ) -> Result<Plan<'_, P>, (TaskError, Labels<'_>)> {
        let not_found = |m: String| TaskError::new(TaskErrorKind::NotFound, m);
        let catalog = &*self.catalog;
        let unknown = Labels {
            integration: UNKNOWN,
            model: UNKNOWN,
        };
        let Some((at, i)) = catalog
            .integration_position(integration)
            .and_then(|at| Some((at, catalog.integrations().get(at)?)))
        else {
            return Err((
                not_found(prepare::unknown_integration(catalog, integration)),
                unknown,
            ));
        };
        let client = self.clients.get(at);
        let found = i
            .model_position(model)
            .and_then(|m_at| Some((m_at, i.models().get(m_at)?, client?.series.get(m_at)?)));
        let (Some(client), Some((m_at, m, series))) = (client, found) else {
            return Err((
                not_found(prepare::unknown_model(i, model)),
                Labels {
                    integration: i.name(),
                    model: UNKNOWN,
                },
            ));
        };
        Ok(Plan {
            integration: i,
            model: m,
            provider: &client.provider,
            series,
            target: client.targets.get(m_at).copied().flatten(),
            place: Place {
                integration: at,
                model: m_at,
                integration_name: i.name(),
                model_name: m.name(),
            },
        })
    }

    /// The metric labels of an integration and model named by a caller.
    pub(super) fn labels_of(&self, integration: &str, model: &str) -> Labels<'_> {
        let i = self.catalog.integration(integration);
        Labels {
            integration: i.map_or(UNKNOWN, Integration::name),
            model: i.and_then(|i| i.model(model)).map_or(UNKNOWN, Model::name),
        }
    }

    pub(super) fn integration(&self, name: &str) -> Result<(&Integration, &P), ConnectorError> {
        let found = self.catalog.integration_position(name).and_then(|at| {
            Some((
                self.catalog.integrations().get(at)?,
                &self.clients.get(at)?.provider,
            ))
        });
        found.ok_or_else(|| {
            ConnectorError::NotFound(prepare::unknown_integration(&self.catalog, name))
        })
    }
}

/// The Hugging Face client of an integration.
pub(super) fn hugging_face(
    i: &Integration,
    calls: &CallSettings,
    key: Result<SecretString, String>,
) -> Result<HuggingFace, ProviderError> {
    HuggingFace::new(hf_settings(i, calls), key)
}

/// The Hugging Face client settings of an integration.
fn hf_settings(i: &Integration, calls: &CallSettings) -> Settings {
    Settings {
        integration: i.name().to_string(),
        namespace: i.namespace().map(str::to_string),
        hub_url: i.hub_url().clone(),
        management_url: i.management_url().clone(),
        calls: calls.clone(),
    }
}
