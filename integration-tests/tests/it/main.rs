//! hfconnect end-to-end tests: one binary, a module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod access_analysis;
mod access_cli;
mod budgets;
mod chat_templates;
mod config_errors;
mod embeddings;
mod examples;
mod hardening;
mod http_docs;
mod hub_cli;
mod layering;
mod lifecycle;
mod openai_door;
mod operations;
mod provider;
mod provider_secrets;
mod run_cli;
mod secrets;
mod security;
mod serve;
mod shared_limits;
mod support;
mod tasks;
mod toolchain;
mod worker;
