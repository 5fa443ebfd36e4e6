//! hfconnect: governed Hugging Face LLM tasks for workflow engines.
//!
//! A [`Connector`] runs [`task::Task`]s (text completion, chat,
//! summarization, embeddings, with Orkes Conductor's field names) on behalf
//! of a caller, along one path: look the names up in the catalog, refuse
//! what is inactive, ask the access policy, build the request, admit it under
//! the rate, concurrency and quota limits, call Hugging Face, shape the
//! output, and leave one audit event and its metrics.
//!
//! The API is what an engine embedding the crate needs:
//!
//! - [`Connector::from_path`] reads the files admins write (TOML, YAML or
//!   JSON); a [`config::ConfigError`]'s diagnostics name file, line, column
//!   and key;
//! - [`Connector::run`] runs a [`TaskRequest`] (who asks, the task, plain or
//!   streamed) and answers with a [`Ran`]: the [`access::Decision`] taken and
//!   the typed reply ([`task::TaskOutput`], or a [`TaskStream`]);
//! - [`Connector::decide`] asks the policy without running anything;
//! - errors carry a kind to match on and predicates
//!   ([`task::TaskError::is_retryable`], [`task::TaskError::retry_after`]).
//!
//! The doors the `hfconnect` binary runs (the HTTP service, the Conductor
//! worker, the command line) are cargo features, on by default (`serve`,
//! `worker`, `cli`); an engine that embeds only the library turns them off
//! and builds no HTTP server. They are not part of the API: the binary
//! reaches them through `run_cli`. The `test-support` feature adds
//! `testing`, what the crate's own tests reach beyond the API (not for
//! production, not covered by semver).

// Built without every door, some of what the doors share goes unused; built
// without `test-support`, so does what only the tests reach (`testing`): not
// defects of that build. The workspace build (all features) lints it all.
#![cfg_attr(
    not(all(
        feature = "serve",
        feature = "worker",
        feature = "cli",
        feature = "test-support"
    )),
    allow(dead_code, unused_imports)
)]

pub mod access;
mod admission;
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
mod analysis;
mod catalog;
mod chat_template;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "worker")]
mod conductor;
pub mod config;
mod connector;
mod exposure;
mod keys;
mod logging;
mod metrics;
mod origin;
mod prompt;
mod provider;
mod reload;
mod retry;
mod runtime;
#[cfg(feature = "serve")]
mod server;
mod stripe;
pub mod task;
#[cfg(feature = "test-support")]
pub mod testing;
mod untrusted;

pub use catalog::{Headroom, TokenHeadroom};
#[cfg(feature = "cli")]
pub use cli::run as run_cli;
pub use connector::{
    BudgetUsage, Connector, ConnectorError, DayUsage, Ran, Reply, TaskRequest, TaskStream,
    UsageView,
};

/// The README's code examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The library guide's examples, compiled as doctests so they stay true.
#[doc = include_str!("../docs/library.md")]
#[cfg(doctest)]
pub struct LibraryDoctests;
