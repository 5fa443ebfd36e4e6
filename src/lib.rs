//! hfconnect: governed Hugging Face LLM tasks for workflow engines.
//!
//! The pieces, bottom up:
//! - [`config`] reads the files admins write (TOML, YAML or JSON) and validates
//!   them into a [`catalog::Catalog`]: integrations, models, prompts, groups,
//!   applications and grants, with API keys resolved once from their locations;
//! - [`access`] answers "may this principal do this on that target?" with a
//!   [`access::Decision`] and its reason;
//! - [`provider`] turns typed requests into calls to Hugging Face servers
//!   ([`provider::huggingface`]) and typed answers or errors, with the retry
//!   policy of [`retry`]; it knows nothing of access control;
//! - [`connector::Connector`] runs [`task::Task`]s along the one path: look up,
//!   refuse inactive, authorize, check, build the request ([`prompt`],
//!   [`chat_template`]), admit, call the provider, shape the output, audit and
//!   count ([`metrics`]); it is what every front door calls;
//! - the front doors: [`server`] (`hfconnect serve`, application [`keys`]),
//!   [`conductor`] (`hfconnect worker`, a Conductor external worker) and
//!   [`cli`], the `hfconnect` command (the binary only parses and exits).

pub mod access;
pub mod catalog;
pub mod chat_template;
pub mod cli;
pub mod conductor;
pub mod config;
pub mod connector;
mod exposure;
pub mod keys;
mod limits;
pub mod logging;
pub mod metrics;
pub mod prompt;
pub mod provider;
mod reload;
pub mod retry;
pub mod server;
mod stripe;
pub mod task;
mod untrusted;

/// A map keyed by names from configs, looked up on every task: FxHash is
/// several times cheaper than SipHash there, and the keys are the admin's.
pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

pub use access::{Access, Decision, Policy, Principal, Subject, Target};
pub use catalog::Catalog;
pub use config::{load, ConfigError, LoadOptions, LoadedConfig};
pub use connector::Connector;
pub use task::{Task, TaskError, TaskErrorKind, TaskOutput};

/// The README's code examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
