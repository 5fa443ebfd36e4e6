//! `ProviderError`: one error type for every way a call to a model server can
//! fail, with a kind to match on and predicates, so callers never parse messages.

use std::fmt;
use std::time::Duration;

/// What went wrong, as a caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The integration has no usable key (unset variable, missing file).
    KeyUnavailable,
    /// 401: the token is invalid, expired or missing.
    Unauthorized,
    /// 403: the token is valid but lacks permission.
    Forbidden,
    /// 403 on a gated model: the license must be accepted on the model page.
    GatedModel,
    /// 404/410: no such model, endpoint or route (incl. the retired serverless host).
    NotFound,
    /// 400/413/415/422 or `validation`: the request itself is wrong.
    InvalidRequest,
    /// 429 `overloaded`: the server's concurrency limit is full.
    Overloaded,
    /// 429: a rate limit, usually with `Retry-After`.
    RateLimited,
    /// 503 while the model loads (`estimated_time`).
    ModelLoading,
    /// 503: the endpoint is scaled to zero, starting, paused, or not ready.
    EndpointUnavailable,
    /// Other 5xx (502 included), `generation` errors, incomplete generations.
    Upstream,
    /// A connect, request or first-token timeout, or 408/504.
    Timeout,
    /// The connection failed or broke.
    Connection,
    /// The answer was not what the endpoint's kind promises.
    InvalidResponse,
}

impl ErrorKind {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::KeyUnavailable => "key_unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::GatedModel => "gated_model",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ModelLoading => "model_loading",
            ErrorKind::EndpointUnavailable => "endpoint_unavailable",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::InvalidResponse => "invalid_response",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Upstream messages are cut to this many characters.
pub(crate) const MESSAGE_LIMIT: usize = 500;

/// A failed call to a model server. Small to move around: the text lives
/// behind one box.
#[derive(Debug, Clone)]
pub struct ProviderError {
    pub(crate) kind: ErrorKind,
    pub(crate) status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) retry_after: Option<Duration>,
    /// The answer itself showed a cold start (loading, scaling up): worth
    /// the cold-start wait rather than a retry.
    pub(crate) cold: bool,
    pub(crate) text: Box<ErrorText>,
}

/// The words of a [`ProviderError`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorText {
    pub(crate) integration: String,
    pub(crate) model: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) upstream_message: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) model_page: Option<String>,
    pub(crate) detail: Option<String>,
}

impl ProviderError {
    /// A failure of `kind` calling `model` of `integration` (for providers
    /// other than Hugging Face; add words with [`ProviderError::with_detail`]).
    #[must_use]
    pub fn new(kind: ErrorKind, integration: &str, model: Option<&str>) -> Self {
        Self {
            kind,
            status: None,
            attempts: 1,
            retry_after: None,
            cold: false,
            text: Box::new(ErrorText {
                integration: integration.to_string(),
                model: model.map(str::to_string),
                ..ErrorText::default()
            }),
        }
    }

    /// What else to say about the failure (appended to the message).
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.text.detail = Some(detail.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The server's `error_type` (TGI), when given.
    pub fn error_type(&self) -> Option<&str> {
        self.text.error_type.as_deref()
    }

    /// What the server said, cut to a sane size.
    pub fn upstream_message(&self) -> Option<&str> {
        self.text.upstream_message.as_deref()
    }

    /// The upstream request id (`x-request-id`).
    pub fn request_id(&self) -> Option<&str> {
        self.text.request_id.as_deref()
    }

    /// How long the server asked to wait (`Retry-After`, `estimated_time`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The page where a gated model's license is accepted.
    pub fn model_page(&self) -> Option<&str> {
        self.text.model_page.as_deref()
    }

    /// How many HTTP attempts were made before giving up.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The integration the call was made for.
    pub fn integration(&self) -> &str {
        &self.text.integration
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Overloaded
            | ErrorKind::RateLimited
            | ErrorKind::ModelLoading
            | ErrorKind::EndpointUnavailable
            | ErrorKind::Timeout
            | ErrorKind::Connection => true,
            ErrorKind::Upstream => self
                .status
                .is_none_or(|s| matches!(s, 500 | 502 | 503 | 504)),
            _ => false,
        }
    }

    /// Whether trying again cannot help without a change (key, grant, request).
    pub fn is_terminal(&self) -> bool {
        !self.is_retryable()
    }

    /// Whether this is a timeout of any kind.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    fn target(&self) -> String {
        match &self.text.model {
            Some(m) => format!("model `{m}` of integration `{}`", self.text.integration),
            None => format!("integration `{}`", self.text.integration),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.text.integration;
        let status = self.status.map(|s| format!(" ({s})")).unwrap_or_default();
        let target = self.target();
        match self.kind {
            ErrorKind::KeyUnavailable => write!(f, "integration `{i}` has no usable API key")?,
            ErrorKind::Unauthorized => write!(
                f,
                "the token for integration `{i}` was rejected{status}: check that it has not expired or been revoked; `hfconnect token check --config CONFIG --integration {i}`"
            )?,
            ErrorKind::Forbidden => write!(
                f,
                "the token for integration `{i}` may not use {target}{status}: give it the needed permission (fine-grained tokens need \"Make calls to Inference Providers\" or access to the endpoint's namespace)"
            )?,
            ErrorKind::GatedModel => {
                write!(f, "{target} is gated{status}: accept its license with the account owning the token of integration `{i}`")?;
                if let Some(p) = &self.text.model_page {
                    write!(f, " at {p}")?;
                }
            }
            ErrorKind::NotFound => write!(f, "{target} was not found upstream{status}: check its `endpoint` and name")?,
            ErrorKind::InvalidRequest => write!(f, "{target} refused the request{status}")?,
            ErrorKind::Overloaded => write!(f, "{target} is overloaded{status}: retry later")?,
            ErrorKind::RateLimited => write!(f, "{target} is rate limited{status}")?,
            ErrorKind::ModelLoading => write!(f, "{target} is loading{status}")?,
            ErrorKind::EndpointUnavailable => write!(f, "the endpoint of {target} is not available{status}")?,
            ErrorKind::Upstream => write!(f, "{target} failed{status}")?,
            ErrorKind::Timeout => write!(f, "{target} timed out{status}")?,
            ErrorKind::Connection => write!(f, "could not talk to {target}")?,
            ErrorKind::InvalidResponse => write!(f, "{target} sent an answer that is not what its api promises")?,
        }
        if let Some(d) = &self.text.detail {
            write!(f, "; {d}")?;
        }
        if let Some(m) = &self.text.upstream_message {
            write!(f, "; upstream said: {m}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, "; retry after {:.1}s", r.as_secs_f64())?;
        }
        if let Some(id) = &self.text.request_id {
            write!(f, " (request id `{id}`)")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}
