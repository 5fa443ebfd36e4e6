//! A snapshot: everything a task runs against (the catalog, one provider
//! client and key per integration, admission, metric handles), built whole
//! from a catalog and replaced whole on reload.

use std::sync::Arc;

use secrecy::SecretString;

use super::audit::{Labels, UNKNOWN};
use super::{prepare, ConnectorError, ProviderFactory};
use crate::admission::Admission;
use crate::catalog::{Catalog, Integration, KeySource, Model};
use crate::metrics::{Metrics, ModelSeries};
use crate::provider::huggingface::{HuggingFace, Settings};
use crate::provider::ProviderError;
use crate::task::Task;
use crate::FxHashMap;

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

/// The key an integration's client uses: where it comes from, and the value
/// or why there is none.
type Key = (KeySource, Result<SecretString, String>);

/// Everything a task runs against; replaced whole on reload.
pub(crate) struct Snapshot<P> {
    pub(super) catalog: Arc<Catalog>,
    pub(super) providers: FxHashMap<String, P>,
    pub(super) keys: FxHashMap<String, Key>,
    pub(super) admission: Admission,
    pub(super) handles: Handles,
}

impl<P> std::fmt::Debug for Snapshot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("integrations", &self.catalog.integrations().len())
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

impl<P> Snapshot<P> {
    pub(super) fn handles(&self, integration: &str, model: &str) -> Option<&ModelSeries> {
        self.handles
            .get(integration)
            .and_then(|m| m.get(model))
            .map(|s| &**s)
    }

    /// A snapshot of `catalog`; `old` is the one it replaces: its unchanged
    /// limits carry over, and so does a key that can no longer be read from
    /// the same place (a rotated Secret between its old file going and its
    /// new one arriving), with a warning.
    pub(super) fn new(
        catalog: Catalog,
        metrics: &Metrics,
        build: &ProviderFactory<P>,
        old: Option<&Snapshot<P>>,
    ) -> Result<Snapshot<P>, ConnectorError> {
        let mut providers = FxHashMap::default();
        let mut keys = FxHashMap::default();
        for i in catalog.integrations() {
            let source = i.api_key().source().clone();
            let fresh = i.api_key().secret().cloned().map_err(str::to_string);
            let key = match (fresh, old.and_then(|o| o.keys.get(i.name()))) {
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
            providers.insert(i.name().to_string(), build(i, key.clone())?);
            keys.insert(i.name().to_string(), (source, key));
        }
        let admission = Admission::new(&catalog, old.map(|o| &o.admission), &metrics.admission);
        let handles = ok_handles(metrics, &catalog);
        Ok(Snapshot {
            catalog: Arc::new(catalog),
            providers,
            keys,
            admission,
            handles,
        })
    }

    /// The metric labels of `task`: the catalog's names, or [`UNKNOWN`].
    pub(super) fn labels(&self, task: &Task) -> Labels<'_> {
        self.labels_of(task.integration(), task.model())
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
        let found = self
            .catalog
            .integration(name)
            .and_then(|i| self.providers.get(name).map(|p| (i, p)));
        found.ok_or_else(|| {
            ConnectorError::NotFound(prepare::unknown_integration(&self.catalog, name))
        })
    }
}

/// The Hugging Face client of an integration.
pub(super) fn hugging_face(
    i: &Integration,
    key: Result<SecretString, String>,
) -> Result<HuggingFace, ProviderError> {
    HuggingFace::new(hf_settings(i), key)
}

/// The Hugging Face client settings of an integration.
fn hf_settings(i: &Integration) -> Settings {
    Settings {
        integration: i.name().to_string(),
        namespace: i.namespace().map(str::to_string),
        hub_url: i.hub_url().clone(),
        management_url: i.management_url().clone(),
        calls: i.calls().clone(),
    }
}
