//! The API key on the wire. This is the one place the secret is exposed: to
//! build the `Authorization` header, and to scrub the key from anything the
//! server echoes back before it reaches an error message.

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

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
            Ok(k) => HeaderValue::from_str(&format!("Bearer {}", k.expose_secret()))
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
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
            Ok(k) if !k.expose_secret().is_empty() && text.contains(k.expose_secret()) => {
                text.replace(k.expose_secret(), "[REDACTED]")
            }
            _ => text.to_string(),
        }
    }
}
