//! The API key on the wire. This is the one place the secret is exposed: to
//! build the `Authorization` header, and to scrub the key from anything the
//! server echoes back before it reaches an error message.

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

/// An integration's key, or why it has none.
#[derive(Clone)]
pub(crate) struct Credential {
    key: Result<SecretString, String>,
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
        Self { key }
    }

    /// The `Authorization: Bearer …` value, marked sensitive so that HTTP
    /// libraries never print it; or why there is no key.
    pub(crate) fn bearer(&self) -> Result<HeaderValue, &str> {
        let key = self.key.as_ref().map_err(String::as_str)?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| "the key holds characters that cannot go in an HTTP header")?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `text` with every occurrence of the key replaced by `[REDACTED]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.key {
            Ok(k) if !k.expose_secret().is_empty() && text.contains(k.expose_secret()) => {
                text.replace(k.expose_secret(), "[REDACTED]")
            }
            _ => text.to_string(),
        }
    }
}
