//! How hfconnect runs, beside what it governs: where limits are kept
//! (`[admission]`), what the audit line holds (`[audit]`), the Conductor
//! worker (`[worker]`), and each integration's call settings (timeouts,
//! retries, cold starts). The catalog (integrations, models, prompts, groups,
//! applications, grants, quotas) is what is governed; this is the rest of a
//! config, validated with it and loaded with it.

mod admission;
mod worker;

use std::sync::Arc;

use rustc_hash::FxHashMap;

pub use admission::{AdmissionBackend, OnUnavailable, RedisSettings};
pub use worker::{ConductorAuth, EndpointTask, WorkerIdentity, WorkerSettings};

use crate::provider::CallSettings;

/// A config's runtime settings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Runtime {
    pub(crate) admission: AdmissionBackend,
    /// The in-process backend's usage store (`admission.store`).
    pub(crate) usage_store: Option<std::path::PathBuf>,
    pub(crate) audit_include_text: bool,
    pub(crate) worker: Option<WorkerSettings>,
    /// By integration name.
    pub(crate) calls: FxHashMap<Arc<str>, CallSettings>,
}

impl Runtime {
    /// Where limits and quotas are kept (`[admission]`).
    pub fn admission(&self) -> &AdmissionBackend {
        &self.admission
    }

    /// Where the in-process backend keeps budgets' spend and the usage
    /// history (`admission.store`), if it does.
    pub fn usage_store(&self) -> Option<&std::path::Path> {
        self.usage_store.as_deref()
    }

    /// Whether audit events carry the task's input and output text (`[audit] include_text`).
    pub fn audit_include_text(&self) -> bool {
        self.audit_include_text
    }

    /// The `[worker]` section, when the config has one.
    pub fn worker(&self) -> Option<&WorkerSettings> {
        self.worker.as_ref()
    }

    /// Timeouts, retries, cold-start waits and the largest answer read of
    /// integration `name` (the defaults for one the config does not name).
    pub fn calls(&self, name: &str) -> CallSettings {
        self.calls.get(name).cloned().unwrap_or_default()
    }
}
