//! The one place secrets leave their `SecretString`: the bearer header of a
//! Hugging Face request, the body of an Orkes token request, the Redis URL
//! handed to its driver, scrubbing a key
//! that a server echoed back, and the checks config loading makes on a value
//! (trimming it, looking at its prefix). Everything else holds secrets only as
//! `SecretString`, whose Debug output is redacted.

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

/// `Authorization: Bearer <key>`, marked sensitive so that HTTP libraries never
/// print it; `None` when the key cannot go in a header.
pub(crate) fn bearer_header(key: &SecretString) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// `text` with every occurrence of `key` replaced by `[REDACTED]`.
pub(crate) fn redact(key: &SecretString, text: &str) -> String {
    let k = key.expose_secret();
    if !k.is_empty() && text.contains(k) {
        text.replace(k, "[REDACTED]")
    } else {
        text.to_string()
    }
}

/// The Orkes `POST /token` body: `{"keyId", "keySecret"}`.
pub(crate) fn orkes_token_body(key_id: &str, secret: &SecretString) -> Vec<u8> {
    serde_json::json!({ "keyId": key_id, "keySecret": secret.expose_secret() })
        .to_string()
        .into_bytes()
}

/// A Redis client for the URL in `url` (it may hold a password); the
/// error names what is wrong without the URL.
pub(crate) fn redis_client(url: &SecretString) -> Result<redis::Client, String> {
    let u = url.expose_secret();
    let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|s| u.starts_with(s));
    if !scheme_ok {
        return Err("is not a `redis://`, `rediss://` or `unix://` URL".into());
    }
    redis::Client::open(u).map_err(|e| {
        // The driver's message may quote the URL: only its kind leaves.
        format!("is not a Redis URL the driver accepts ({:?})", e.kind())
    })
}

/// The value without surrounding whitespace; `None` when nothing is left.
pub(crate) fn trimmed(raw: &SecretString) -> Option<SecretString> {
    let t = raw.expose_secret().trim();
    (!t.is_empty()).then(|| SecretString::from(t.to_string()))
}

/// Whether the value starts with `prefix` (nothing of it leaves this function).
pub(crate) fn has_prefix(secret: &SecretString, prefix: &str) -> bool {
    secret.expose_secret().starts_with(prefix)
}

/// The value itself, for tests that check where a key went.
#[cfg(test)]
pub(crate) fn reveal(secret: &SecretString) -> String {
    secret.expose_secret().to_string()
}
