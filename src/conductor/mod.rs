//! The Conductor worker front door: a client for Conductor's task API and a
//! poll loop that runs polled tasks through the [`crate::Connector`]. It
//! never calls a provider or the policy itself.
//!
//! Reports follow the task's error: `COMPLETED` with the output; terminal
//! errors (denied, bad input, unknown model) `FAILED_WITH_TERMINAL_ERROR`;
//! retryable ones `FAILED`, or `IN_PROGRESS` with `callbackAfterSeconds`
//! when the error says when to come back. A result that cannot be reported
//! is left for Conductor to re-queue; nothing is reported `COMPLETED`
//! without its output.

mod client;
mod identity;
mod worker;

pub use worker::{Worker, WorkerError, WorkerReport};
