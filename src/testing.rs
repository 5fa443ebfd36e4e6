//! What this crate's own tests and benchmark reach beyond the public API
//! (feature `test-support`; never needed in production, and not part of
//! the API the semver promise covers): the catalog, runtime settings,
//! provider and door modules as they are inside the crate, the
//! connector's generic core (to run it over the in-process
//! `provider::scripted`), and the operations only the doors use.

use crate::provider::huggingface::HuggingFace;
use crate::Connector;

/// The catalog's types (`crate::catalog`).
pub mod catalog {
    pub use crate::catalog::*;
}

/// The provider trait, its types and the Hugging Face provider (`crate::provider`).
pub mod provider {
    pub use crate::provider::*;
}

/// The runtime settings (`crate::runtime`).
pub mod runtime {
    pub use crate::runtime::*;
}

/// The HTTP service (`crate::server`).
#[cfg(feature = "serve")]
pub mod server {
    pub use crate::server::*;
}

/// The Conductor worker (`crate::conductor`).
#[cfg(feature = "worker")]
pub mod conductor {
    pub use crate::conductor::*;
}

pub use crate::connector::{
    AdmissionStatus, BudgetUsage, CatalogView, ConfigStatus, Core, DayUsage, EndpointStatus,
    IntegrationView, KeyStatus, ModelStatus, ModelView, PromptView, ProviderFactory, RefusedReload,
    TokenReport, UsageView,
};

/// The catalog a config loaded into.
pub fn catalog_of(loaded: &crate::config::LoadedConfig) -> &catalog::Catalog {
    &loaded.catalog
}

/// The runtime settings a config loaded into.
pub fn runtime_of(loaded: &crate::config::LoadedConfig) -> &runtime::Runtime {
    &loaded.runtime
}

/// The core under a [`Connector`], for the operations the doors use.
pub fn core(connector: &Connector) -> &Core<HuggingFace> {
    connector.core()
}
