//! The API key on the wire: the `Authorization` header, and scrubbing the key
//! from anything the server echoes back before it reaches an error message
//! (both through [`crate::exposure`], the one place secrets are exposed).

use reqwest::header::HeaderValue;
use secrecy::SecretString;

use crate::provider::{Completion, ProviderError};

/// An integration's key, or why it has none.
#[derive(Clone)]
pub(crate) struct Credential {
    key: Result<SecretString, String>,
    /// The header value, built once (marked sensitive).
    header: Result<HeaderValue, String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_ok() {
            "Credential([REDACTED])"
        } else {
            "Credential(<unavailable>)"
        })
    }
}

impl Credential {
    pub(crate) fn new(key: Result<SecretString, String>) -> Self {
        let header = match &key {
            Ok(k) => crate::exposure::bearer_header(k).ok_or_else(|| {
                "the key holds characters that cannot go in an HTTP header".to_string()
            }),
            Err(why) => Err(why.clone()),
        };
        Self { key, header }
    }

    /// The `Authorization: Bearer …` value, marked sensitive so that HTTP
    /// libraries never print it; or why there is no key.
    pub(crate) fn bearer(&self) -> Result<HeaderValue, &str> {
        match &self.header {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(e.as_str()),
        }
    }

    /// `text` with every occurrence of the key replaced by `[REDACTED]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.key {
            Ok(k) => crate::exposure::redact(k, text),
            Err(_) => text.to_string(),
        }
    }

    /// `e` with the key scrubbed from every text that came from upstream or
    /// was built from it: what leaves the provider, streamed or not.
    pub(crate) fn scrub(&self, mut e: ProviderError) -> ProviderError {
        if self.key.is_err() {
            return e;
        }
        let t = &mut *e.text;
        for field in [
            &mut t.error_type,
            &mut t.upstream_message,
            &mut t.request_id,
            &mut t.model_page,
            &mut t.detail,
        ] {
            if let Some(v) = field.as_mut() {
                *v = self.redact(v);
            }
        }
        e
    }

    /// A completion's upstream request id, scrubbed like an error's.
    pub(crate) fn scrub_completion(&self, mut c: Completion) -> Completion {
        if let (Some(id), Ok(_)) = (&c.request_id, &self.key) {
            c.request_id = Some(self.redact(id));
        }
        c
    }
}
