//! The Connector: the one entry point front doors call (library users, the
//! CLI, the HTTP service and the Conductor worker). It holds the catalog, its
//! policy, one provider client per integration and the admission limits as
//! one immutable snapshot behind an atomic pointer; a reload swaps it.
//!
//! The task path, by file:
//! - `snapshot`: what tasks run against, and a task's plan (its integration,
//!   model, client and metric series, looked up once);
//! - `prepare`: decide, check, build the call (pure);
//! - `run`: the one entry ([`Connector::run`] of a [`TaskRequest`]): admit,
//!   call the provider, shape the output, record — one path for plain and
//!   streamed tasks, one guard per task owning in-flight counting and the
//!   audit event;
//! - `audit`: the audit event and the metrics of a task or a refusal;
//! - `ops`: what else front doors ask (token, endpoints, templates, catalog).

mod audit;
mod lifecycle;
mod ops;
mod prepare;
mod run;
mod snapshot;
mod spend;
#[cfg(test)]
mod tests;
mod views;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use futures_util::Stream;
use secrecy::SecretString;

use crate::access::{Access, Decision, Principal, PrincipalError, Subject, Target};
use crate::catalog::{Catalog, Integration};
use crate::config::{ConfigError, LoadOptions};
use crate::metrics::Metrics;
use crate::provider::huggingface::HuggingFace;
use crate::provider::{CallSettings, LlmProvider, ProviderError};
use crate::runtime::Runtime;
use crate::task::{TaskError, TaskErrorKind, TaskEvent};

pub(crate) use audit::Refusal;
pub use lifecycle::{EndpointAnswer, EndpointOperation, WaitStep};
pub use ops::{EndpointStatus, ModelStatus, TokenReport};
pub(crate) use prepare::MAX_EMBED_TEXTS;
pub use run::{Ran, Reply, TaskRequest};
use snapshot::hugging_face;
pub(crate) use snapshot::Snapshot;
pub use spend::{BudgetUsage, DayUsage, UsageView, HISTORY_DAYS};
pub(crate) use views::RunnableModel;
pub use views::{
    AdmissionStatus, CatalogView, ConfigStatus, IntegrationView, ModelView, PromptView,
    RefusedReload,
};

/// Why a connector operation (other than a task) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// No such integration, model or prompt.
    #[error("{0}")]
    NotFound(String),
    /// The config could not be loaded; the connector keeps the snapshot it had.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider failed: its client could not be built, or a call
    /// outside a task (the Hub, the management API) was refused.
    #[error("{message}")]
    Provider {
        /// What kind of failure it was.
        kind: crate::task::ProviderErrorKind,
        /// The failure, in words (never a key).
        message: String,
    },
    /// The usage store (`admission.store`) cannot be opened or is in use.
    #[error("{0}")]
    Store(String),
    /// Something in hfconnect itself failed (such as building the metrics registry).
    #[error("{0}")]
    Internal(String),
}

impl ConnectorError {
    /// A provider's failure outside a task.
    pub(crate) fn from_provider(e: ProviderError) -> ConnectorError {
        ConnectorError::Provider {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A streamed task: chunks, then the output, or an error; and what is
/// left of the limits that admitted it.
pub struct TaskStream {
    inner: Pin<Box<dyn Stream<Item = Result<TaskEvent, TaskError>> + Send>>,
    headroom: Option<crate::catalog::Headroom>,
    token_headroom: Option<crate::catalog::TokenHeadroom>,
}

impl TaskStream {
    /// The tightest token budget that admitted the task, once its worst
    /// case was reserved (`None` when no budget covers it).
    pub fn token_headroom(&self) -> Option<crate::catalog::TokenHeadroom> {
        self.token_headroom
    }

    /// The tightest rate limit or quota that admitted the task, as it
    /// stood then (`None` when no limit applied, or the stream was refused).
    pub fn headroom(&self) -> Option<crate::catalog::Headroom> {
        self.headroom
    }
}

impl std::fmt::Debug for TaskStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStream")
            .field("headroom", &self.headroom)
            .finish_non_exhaustive()
    }
}

impl Stream for TaskStream {
    type Item = Result<TaskEvent, TaskError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How a connector gets the provider client of each integration of a
/// catalog: from the integration (its settings) and its key, or why there is
/// none. Called when a snapshot is built, never per task.
pub type ProviderFactory<P> = Arc<
    dyn Fn(&Integration, &CallSettings, Result<SecretString, String>) -> Result<P, ProviderError>
        + Send
        + Sync,
>;

/// The state of one integration's key ([`Core::key_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStatus {
    /// The integration.
    pub integration: String,
    /// Whether it is active (an inactive one runs no task, key or not).
    pub active: bool,
    /// Where its key is read from, in words.
    pub source: String,
    /// Why there is no usable key; `None` when there is one.
    pub error: Option<String>,
}

/// What the loaded config is and how reloads went.
#[derive(Debug, Clone, Default)]
struct ConfigState {
    /// The first 16 hex digits of the SHA-256 of the config files.
    hash: Option<String>,
    loaded_at: Option<SystemTime>,
    reloads: u64,
    refused: u64,
    /// When the last refused reload was, and how many errors it had.
    last_refused: Option<(SystemTime, usize)>,
}

/// The connector: what an engine (and every front door) runs tasks with.
///
/// Built from the config files ([`Connector::from_path`]); it calls Hugging
/// Face. It is cheap to share (`Arc<Connector>`): every task reads one
/// snapshot of the catalog, and [`Connector::reload_from`] swaps in a new one.
pub struct Connector(Core<HuggingFace>);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Connector {
    /// Load the config at `path` and build a connector over it.
    pub fn from_path(path: &Path, options: &LoadOptions) -> Result<Connector, ConnectorError> {
        Connector::from_loaded(crate::config::load(path, options)?)
    }

    /// A connector over a loaded config (its files identify it in `/readyz`
    /// and `hfconnect_config_info`).
    pub fn from_loaded(loaded: crate::config::LoadedConfig) -> Result<Connector, ConnectorError> {
        Core::from_loaded_with(loaded, Arc::new(hugging_face)).map(Connector)
    }

    /// Run a task: the one way to, plain or streamed ([`TaskRequest`]).
    /// What comes back says what the policy decided and holds the reply;
    /// refusals made before anything is sent upstream (unknown names,
    /// inactive, denied, invalid input, rate limited) are its error.
    // The core's future itself, not one wrapping it: the facade adds nothing
    // to a task's path.
    pub fn run<'a>(&'a self, req: TaskRequest<'a>) -> impl Future<Output = Ran> + Send + 'a {
        self.0.run(req)
    }

    /// Load `path` and swap it in; a config that fails validation is refused
    /// and the old one stays. Tasks in flight finish on the snapshot they
    /// started with. Either way the outcome is counted
    /// (`hfconnect_config_reloads_total`).
    pub fn reload_from(&self, path: &Path, options: &LoadOptions) -> Result<(), ConnectorError> {
        self.0.reload_from(path, options)
    }

    /// Resolve a caller: its groups and roles, optionally narrowed to one
    /// group; an unknown application or group, or a group the caller is not
    /// in, is refused (`?` in a task path).
    pub fn principal(
        &self,
        subject: &Subject,
        group: Option<&str>,
    ) -> Result<Principal, TaskError> {
        self.0
            .principal(subject, group)
            .map_err(TaskError::from_principal)
    }

    /// Ask the policy in force, without running anything: may `principal`
    /// do `access` on `target`? The decision says why.
    pub fn decide(&self, principal: &Principal, access: Access, target: &Target) -> Decision {
        self.0.decide(principal, access, target)
    }

    /// The metrics in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        self.0.metrics_text()
    }

    /// The token budgets that cover `principal`, what each has left, and
    /// its tokens by day (everyone's for an `ADMIN`): what `GET /v1/usage`
    /// answers. On Redis, an `overloaded` error while it cannot be read.
    pub async fn usage(&self, principal: &Principal) -> Result<UsageView, TaskError> {
        self.0.usage(principal).await
    }

    /// Open the in-process usage store (`admission.store`) now, so that one
    /// that cannot be used (in use by another process, not writable) is an
    /// error at start rather than a refusal of every budgeted task.
    pub fn open_usage_store(&self) -> Result<(), ConnectorError> {
        self.0.open_usage_store()
    }

    /// The connector under the facade, for the front doors.
    pub(crate) fn core(&self) -> &Core<HuggingFace> {
        &self.0
    }
}

/// The connector's machinery, generic over the provider it calls
/// ([`Connector`] is this over Hugging Face; tests and the benchmark run it
/// over an in-process provider, feature `test-support`).
pub struct Core<P> {
    state: ArcSwap<Snapshot<P>>,
    build: ProviderFactory<P>,
    metrics: Arc<Metrics>,
    config: Mutex<ConfigState>,
}

impl<P> std::fmt::Debug for Core<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("state", &self.state.load())
            .finish_non_exhaustive()
    }
}

impl Core<HuggingFace> {
    /// A connector over `catalog` run as `runtime` says, with one Hugging
    /// Face client per integration.
    pub fn new(catalog: Catalog, runtime: Runtime) -> Result<Core<HuggingFace>, ConnectorError> {
        Core::with_provider(catalog, runtime, Arc::new(hugging_face))
    }
}

impl<P: LlmProvider> Core<P> {
    /// A connector over `catalog` whose integrations call the providers
    /// `build` makes (an in-process provider in tests, another server).
    pub fn with_provider(
        catalog: Catalog,
        runtime: Runtime,
        build: ProviderFactory<P>,
    ) -> Result<Core<P>, ConnectorError> {
        let metrics = Metrics::new().map_err(|e| {
            ConnectorError::Internal(format!("the metrics registry could not be built: {e}"))
        })?;
        Ok(Core {
            state: ArcSwap::from_pointee(Snapshot::new(catalog, runtime, &metrics, &build, None)?),
            build,
            metrics: Arc::new(metrics),
            config: Mutex::new(ConfigState {
                loaded_at: Some(SystemTime::now()),
                ..ConfigState::default()
            }),
        })
    }

    /// [`Core::with_provider`] over a loaded config.
    pub fn from_loaded_with(
        loaded: crate::config::LoadedConfig,
        build: ProviderFactory<P>,
    ) -> Result<Core<P>, ConnectorError> {
        let hash = config_hash(&loaded.files);
        let c = Core::with_provider(loaded.catalog, loaded.runtime, build)?;
        c.loaded(hash);
        Ok(c)
    }

    /// Replace the catalog. Tasks in flight finish on the snapshot they started
    /// with; the next task sees the new one. On error nothing changes.
    pub fn reload(&self, catalog: Catalog, runtime: Runtime) -> Result<(), ConnectorError> {
        let old = self.state.load_full();
        let snapshot = Snapshot::new(catalog, runtime, &self.metrics, &self.build, Some(&old))?;
        self.state.store(Arc::new(snapshot));
        Ok(())
    }

    /// Load `path` and swap it in; a config that fails validation is refused
    /// and the old one stays. Either way the outcome is counted
    /// (`hfconnect_config_reloads_total`) and shown by [`Core::config_status`].
    pub fn reload_from(&self, path: &Path, options: &LoadOptions) -> Result<(), ConnectorError> {
        let outcome = crate::config::load(path, options)
            .map_err(ConnectorError::from)
            .and_then(|loaded| {
                let hash = config_hash(&loaded.files);
                self.reload(loaded.catalog, loaded.runtime).map(|()| hash)
            });
        match outcome {
            Ok(hash) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                let mut c = self.config_state();
                c.reloads += 1;
                drop(c);
                self.loaded(hash);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["refused"])
                    .inc();
                let errors = match &e {
                    ConnectorError::Config(c) => c.errors().count(),
                    _ => 1,
                };
                let mut c = self.config_state();
                c.refused += 1;
                c.last_refused = Some((SystemTime::now(), errors));
                Err(e)
            }
        }
    }

    fn config_state(&self) -> std::sync::MutexGuard<'_, ConfigState> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A config was loaded (at start or by a reload): its hash and time.
    fn loaded(&self, hash: Option<String>) {
        let now = SystemTime::now();
        let mut c = self.config_state();
        if let Some(h) = &c.hash {
            let _ = self.metrics.config_info.remove_label_values(&[h]);
        }
        if let Some(h) = &hash {
            self.metrics.config_info.with_label_values(&[h]).set(1);
        }
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.config_loaded.set(secs);
        c.hash = hash;
        c.loaded_at = Some(now);
    }

    /// The config in force and how reloads went, for `/readyz`: its hash
    /// and load time, reloads done and refused, and the last refusal.
    pub fn config_status(&self) -> ConfigStatus {
        let c = self.config_state().clone();
        let snap = self.state.load();
        let at = |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339();
        ConfigStatus {
            integrations: snap.catalog.integrations().len(),
            models: snap.catalog.model_count(),
            hash: c.hash,
            loaded_at: c.loaded_at.map(at),
            reloads: c.reloads,
            refused_reloads: c.refused,
            last_refused: c
                .last_refused
                .map(|(t, errors)| RefusedReload { at: at(t), errors }),
        }
    }

    /// Each integration's key as the snapshot in force holds it: whether
    /// the integration is active, where its key comes from, and why there
    /// is none when there is none (for `/readyz`; never the key itself).
    pub fn key_status(&self) -> Vec<KeyStatus> {
        let snap = self.state.load();
        snap.catalog
            .integrations()
            .iter()
            .map(|i| {
                let (source, error) = match snap.key(i.name()) {
                    Some((source, key)) => (source.to_string(), key.as_ref().err().cloned()),
                    None => (i.api_key().source().to_string(), Some("no key".into())),
                };
                KeyStatus {
                    integration: i.name().to_string(),
                    active: i.is_active(),
                    source,
                    error,
                }
            })
            .collect()
    }

    /// The files key values are read from, for the watcher that reloads
    /// when a key rotates (a rewritten token file, a new Secret mount).
    /// Where limits are kept, and for Redis whether it answers.
    pub async fn admission_status(&self) -> AdmissionStatus {
        let snap = self.state.load_full();
        match snap.admission.status().await {
            None => AdmissionStatus::Local,
            Some((reachable, on_unavailable, run_id_known)) => AdmissionStatus::Redis {
                reachable,
                on_unavailable: on_unavailable.as_str(),
                run_id_known,
            },
        }
    }

    /// When the config in force was loaded.
    pub(crate) fn loaded_at(&self) -> Option<SystemTime> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .loaded_at
    }

    pub(crate) fn key_files(&self) -> Vec<PathBuf> {
        let snap = self.state.load();
        let mut files: Vec<PathBuf> = snap
            .catalog
            .integrations()
            .iter()
            .filter_map(|i| i.api_key().read_from().map(Path::to_path_buf))
            .collect();
        if let Some(auth) = snap.runtime.worker().and_then(|w| w.auth.as_ref()) {
            files.extend(auth.key_secret.read_from().map(Path::to_path_buf));
        }
        files.sort();
        files.dedup();
        files
    }

    /// The catalog in force (a snapshot: later reloads do not change it).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state.load().catalog.clone()
    }

    /// The runtime settings in force (a snapshot, as [`Core::catalog`]).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.state.load().runtime.clone()
    }

    /// The metrics in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// The registry front doors add their own metrics to (connections, polls).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The HTTP service's connection gauges, in this connector's registry.
    pub(crate) fn connection_metrics(&self) -> crate::metrics::ConnectionMetrics {
        self.metrics.connections.clone()
    }

    /// The application an API key belongs to: its SHA-256 digest looked up
    /// (one hash and one map lookup, however many applications there are).
    pub fn authenticate(&self, key: &str) -> Option<String> {
        let snap = self.state.load();
        let at = *snap.keys_by_digest.get(&crate::keys::hash(key))?;
        snap.catalog
            .applications()
            .get(at)
            .map(|a| a.name().to_string())
    }

    /// Whether application `app` may name a user to act for.
    pub fn may_act_for_users(&self, app: &str) -> bool {
        self.state
            .load()
            .catalog
            .application(app)
            .is_some_and(|a| a.act_for_users())
    }

    /// Resolve a caller: its groups and roles, optionally narrowed to one
    /// group (`TaskError::from_principal` makes the error a task's).
    pub fn principal(
        &self,
        subject: &Subject,
        group: Option<&str>,
    ) -> Result<Principal, PrincipalError> {
        self.state.load().catalog.policy().principal(subject, group)
    }
}

impl TaskError {
    /// Why a caller could not be resolved, as a task error.
    pub(crate) fn from_principal(e: PrincipalError) -> TaskError {
        let kind = match e {
            PrincipalError::UnknownGroup(_) => TaskErrorKind::NotFound,
            PrincipalError::NotACaller(_) => TaskErrorKind::InvalidInput,
            PrincipalError::UnknownApplication(_) | PrincipalError::NotAMember { .. } => {
                TaskErrorKind::Denied
            }
        };
        TaskError::new(kind, e.to_string())
    }
}

/// The first 16 hex digits of the SHA-256 of the config files (paths and
/// contents, in merge order): which config is loaded, at a glance.
fn config_hash(files: &[PathBuf]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(std::fs::read(f).ok()?);
        h.update([0]);
    }
    Some(
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
