//! Resolved secrets as the catalog holds them: where a key lives
//! ([`KeySource`]) and its value or why there is none ([`ApiKey`]).
//!
//! The value is a `secrecy::SecretString` from the moment it is read; Debug and
//! Display show the location and `[REDACTED]`, never the value. Only
//! `crate::exposure` reads the value. Reading locations is `config`'s job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

/// Where a resolved key came from (safe to show: a name or path that may be
/// a pasted secret is not).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// The Hugging Face default lookup.
    HuggingFace,
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
    /// Written in the config.
    Inline,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::HuggingFace => f.write_str("the Hugging Face token lookup"),
            KeySource::Env(v) => f.write_str(&shown_var(v)),
            KeySource::File(p) => f.write_str(&shown_path(p).replacen("token file", "file", 1)),
            KeySource::Inline => f.write_str("the config file (inline value)"),
        }
    }
}

/// An integration's API key: its source, and the value or why there is none.
#[derive(Clone)]
pub struct ApiKey {
    source: KeySource,
    /// Where the lookup actually found it (the Hugging Face lookup tries several places).
    found_in: Option<String>,
    /// The file the value is (or would be) read from, watched for rotation.
    read_from: Option<PathBuf>,
    value: Result<SecretString, Arc<str>>,
}

impl ApiKey {
    /// Where the config says the key lives.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Where the key was found, when the lookup tries several places.
    pub fn found_in(&self) -> Option<&str> {
        self.found_in.as_deref()
    }

    /// The file the key is read from (a `file` location, or the token file
    /// of the Hugging Face lookup), when it comes from a file.
    pub fn read_from(&self) -> Option<&Path> {
        self.read_from.as_deref()
    }

    /// Whether a non-empty key was found.
    pub fn is_available(&self) -> bool {
        self.value.is_ok()
    }

    /// Why no key is available (names the place looked at, never a value).
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.value.as_ref().err().map(|r| &**r)
    }

    /// The key, or why there is none. Within hfconnect only `crate::exposure`
    /// reads its value.
    pub(crate) fn secret(&self) -> Result<&SecretString, &str> {
        self.value.as_ref().map_err(|r| &**r)
    }

    /// A key resolved from its location.
    pub(crate) fn resolved(
        source: KeySource,
        found_in: Option<String>,
        read_from: Option<PathBuf>,
        value: Result<SecretString, Arc<str>>,
    ) -> ApiKey {
        ApiKey {
            source,
            found_in,
            read_from,
            value,
        }
    }

    /// A key for tests and embedders who hold the value already.
    pub fn from_secret(value: SecretString) -> ApiKey {
        ApiKey {
            source: KeySource::Inline,
            found_in: None,
            read_from: None,
            value: Ok(value),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.value.is_ok() {
            "[REDACTED]"
        } else {
            "<unavailable>"
        };
        write!(f, "ApiKey {{ source: {:?}, value: {state} }}", self.source)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ([REDACTED])", self.source)
    }
}

/// Whether text written as a location could be the secret itself (a token
/// pasted where a variable name or a path belongs): then it is never shown.
fn looks_secret(s: &str) -> bool {
    let s = s.trim();
    let token_like = s.len() >= 20
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic());
    s.starts_with("hf_") || s.starts_with("hfc_") || token_like
}

/// An environment variable's name for a message, unless it may be a secret.
pub(crate) fn shown_var(var: &str) -> String {
    let name_like = !var.is_empty()
        && var.len() <= 64
        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !var.bytes().next().is_some_and(|b| b.is_ascii_digit());
    if name_like && !var.starts_with("hf_") {
        format!("environment variable `{var}`")
    } else {
        "the environment variable named there (its name is not shown: it may be the secret)".into()
    }
}

/// A token file's path for a message, unless its name may be a secret.
pub(crate) fn shown_path(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if looks_secret(&name) {
        "the token file named there (its name is not shown: it may be the secret)".into()
    } else {
        format!("token file `{}`", path.display())
    }
}
