//! `[admission]`: where limits and quotas are kept. In-process by default;
//! on Redis, replicas share one set of limits.

use std::time::Duration;

use crate::catalog::{ApiKey, Origin};

/// Where admission state lives.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum AdmissionBackend {
    /// In this process: limits hold per replica.
    #[default]
    Local,
    /// On a Redis server shared by every replica.
    Redis(Box<RedisSettings>),
}

/// What to do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnUnavailable {
    /// Each replica applies the limits in-process until Redis is back.
    Local,
    /// Tasks are refused at once as `overloaded` (retryable).
    Deny,
}

impl OnUnavailable {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Local => "local",
            OnUnavailable::Deny => "deny",
        }
    }
}

/// The shared backend's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisSettings {
    /// The server's URL (`redis://`, `rediss://`), resolved once from its
    /// location; it may hold a password, so it is kept as a secret.
    pub url: ApiKey,
    /// Prefix of every key (wrapped in `{}` so a cluster keeps them in one slot).
    pub key_prefix: String,
    /// What to do while Redis cannot be reached.
    pub on_unavailable: OnUnavailable,
    /// The bound on every Redis call.
    pub timeout: Duration,
    /// How long a concurrency slot outlives its replica (renewed while its task runs).
    pub lease: Duration,
    /// Where `[admission]` was written.
    pub origin: Origin,
}
