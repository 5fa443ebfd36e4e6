//! hfconnect: governed Hugging Face LLM tasks for workflow engines.
//!
//! A [`Connector`] runs [`task::Task`]s (text completion, chat,
//! summarization, with Orkes Conductor's field names) on behalf of a caller,
//! along one path: look the names up in the [`catalog`], refuse what is
//! inactive, ask the [`access`] policy, build the request, admit it under the
//! rate, concurrency and quota limits, call the [`provider`] (Hugging Face),
//! shape the output, and leave one audit event and its metrics.
//!
//! - [`config::load`] reads the files admins write (TOML, YAML or JSON) into a
//!   [`catalog::Catalog`], or a [`config::ConfigError`] whose diagnostics name
//!   file, line, column and key;
//! - [`access`] answers "may this principal do this on that target?" with a
//!   [`access::Decision`] and its reason;
//! - [`provider::LlmProvider`] is what the Connector calls;
//!   [`provider::huggingface::HuggingFace`] implements it;
//! - errors carry a kind to match on and predicates
//!   ([`task::TaskError::is_retryable`], [`task::TaskError::retry_after`]);
//! - the front doors the `hfconnect` binary runs are here too:
//!   [`server::serve`] (the HTTP service) and [`conductor::Worker`] (a
//!   Conductor external worker).
//!
//! The doors are cargo features, on by default: `serve` (the HTTP service),
//! `worker` (the Conductor worker) and `cli` (the command line and the
//! binary); an engine that embeds only the library turns them off and
//! builds no HTTP server. With the `test-support` feature,
//! `provider::scripted` is an in-process provider for tests of code built
//! on the Connector.

// Built without every door, some of what the doors share goes unused: not a
// defect of that build.
#![cfg_attr(
    not(all(feature = "serve", feature = "worker", feature = "cli")),
    allow(dead_code, unused_imports)
)]

pub mod access;
mod admission;
mod chat_template;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "worker")]
pub mod conductor;
pub mod config;
mod connector;
mod exposure;
mod keys;
mod logging;
mod metrics;
mod origin;
mod prompt;
pub mod provider;
mod reload;
mod retry;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod server;
mod stripe;
pub mod task;
mod untrusted;

pub mod catalog;

pub use catalog::Headroom;

#[cfg(feature = "cli")]
pub use cli::run as run_cli;
pub use connector::{
    AdmissionStatus, CatalogView, ConfigStatus, Connector, ConnectorError, EndpointStatus,
    IntegrationView, KeyStatus, ModelStatus, ModelView, PromptView, ProviderFactory, Ran,
    RefusedReload, Reply, TaskRequest, TaskStream, TokenReport,
};

/// The README's code examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The library guide's examples, compiled as doctests so they stay true.
#[doc = include_str!("../docs/library.md")]
#[cfg(doctest)]
pub struct LibraryDoctests;
