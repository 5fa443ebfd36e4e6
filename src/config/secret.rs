//! API keys: where they live (the config says), resolved once at load.
//!
//! The value is a `secrecy::SecretString` from the moment it is read; Debug and
//! Display show the location and `[REDACTED]`, never the value. Only
//! `crate::exposure` reads the value (for the Authorization header, the Orkes
//! token request, and the trimming and prefix checks made here).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use crate::catalog::{shown_path, shown_var};
pub use crate::catalog::{ApiKey, KeySource};

/// Where an API key lives, as written in the config.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", rename = "ApiKeyLocation")]
pub(crate) enum ApiKeyLocation {
    /// The Hugging Face lookup: `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the file at
    /// `HF_TOKEN_PATH`, then `$HF_HOME/token`.
    Huggingface,
    /// An environment variable.
    Env(String),
    /// A file (such as a Kubernetes secret mount), relative to the config file.
    File(String),
    /// The key itself, written in the config (discouraged).
    Value(SecretString),
}

impl fmt::Debug for ApiKeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiKeyLocation::Huggingface => f.write_str("Huggingface"),
            ApiKeyLocation::Env(v) => write!(f, "Env({v:?})"),
            ApiKeyLocation::File(p) => write!(f, "File({p:?})"),
            ApiKeyLocation::Value(_) => f.write_str("Value([REDACTED])"),
        }
    }
}

/// Environment look-ups, injectable so that tests need not touch the process environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// Facts about a resolved key worth a warning at check time.
pub(crate) struct Resolved {
    pub key: ApiKey,
    pub warnings: Vec<String>,
}

fn clean(raw: &str) -> Option<SecretString> {
    let t = raw.trim();
    if t.is_empty() {
        None
    } else {
        Some(SecretString::from(t.to_string()))
    }
}

fn read_token_file(path: &Path) -> Result<SecretString, String> {
    let shown = shown_path(path);
    match std::fs::read_to_string(path) {
        Ok(text) => clean(&text).ok_or_else(|| format!("{shown} is empty")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{shown} does not exist"))
        }
        Err(e) => Err(format!("{shown} cannot be read: {}", e.kind())),
    }
}

fn shape_warning(value: &SecretString) -> Option<String> {
    if crate::exposure::has_prefix(value, "hf_") {
        None
    } else {
        Some(
            "the key does not look like a Hugging Face user token (they start with `hf_`)"
                .to_string(),
        )
    }
}

/// Resolve a Hugging Face key location. `base` is the directory of the config file, for relative paths.
pub(crate) fn resolve(location: ApiKeyLocation, base: &Path, env: &EnvLookup) -> Resolved {
    let mut resolved = resolve_secret(location, base, env);
    if let Ok(v) = resolved.key.secret() {
        resolved.warnings.extend(shape_warning(v));
    }
    resolved
}

/// Resolve any secret's location (no check of its shape).
pub(crate) fn resolve_secret(location: ApiKeyLocation, base: &Path, env: &EnvLookup) -> Resolved {
    let mut warnings = Vec::new();
    let mut read_from = None;
    let (source, found_in, value) = match location {
        ApiKeyLocation::Env(var) => {
            let value = match env(&var).as_deref().map(clean) {
                Some(Some(v)) => Ok(v),
                Some(None) => Err(format!("{} is empty", shown_var(&var))),
                None => Err(format!("{} is not set", shown_var(&var))),
            };
            (KeySource::Env(var), None, value)
        }
        ApiKeyLocation::File(p) => {
            let path = base.join(p);
            let value = read_token_file(&path);
            read_from = Some(path.clone());
            (KeySource::File(path), None, value)
        }
        ApiKeyLocation::Value(v) => {
            warnings.push(
                "the key is written in the config file; keep it in a file or an environment variable \
                 (`api_key = { file = \"...\" }` or `{ env = \"...\" }`)"
                    .to_string(),
            );
            let value =
                crate::exposure::trimmed(&v).ok_or_else(|| "the inline key is empty".to_string());
            (KeySource::Inline, None, value)
        }
        ApiKeyLocation::Huggingface => {
            let (found, file, value) = huggingface_lookup(env);
            read_from = file;
            (KeySource::HuggingFace, found, value)
        }
    };
    Resolved {
        key: ApiKey::resolved(source, found_in, read_from, value.map_err(Arc::from)),
        warnings,
    }
}

/// The lookup order of the official Hugging Face tooling: where it found the
/// key (for people), the token file it read or would read, and the key.
fn huggingface_lookup(
    env: &EnvLookup,
) -> (
    Option<String>,
    Option<PathBuf>,
    Result<SecretString, String>,
) {
    for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(v) = env(var).as_deref().and_then(clean) {
            return (Some(format!("environment variable `{var}`")), None, Ok(v));
        }
    }
    let path = match env("HF_TOKEN_PATH").filter(|p| !p.trim().is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = match env("HF_HOME").filter(|p| !p.trim().is_empty()) {
                Some(h) => PathBuf::from(h),
                None => match env("HOME") {
                    Some(h) => Path::new(&h).join(".cache").join("huggingface"),
                    None => return (
                        None,
                        None,
                        Err(
                            "no token: `HF_TOKEN` is not set and neither `HF_HOME` nor `HOME` is"
                                .into(),
                        ),
                    ),
                },
            };
            home.join("token")
        }
    };
    match read_token_file(&path) {
        Ok(v) => (
            Some(format!("file `{}`", path.display())),
            Some(path),
            Ok(v),
        ),
        Err(e) => (
            None,
            Some(path),
            Err(format!("no token: `HF_TOKEN` is not set and {e}")),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn env_of(pairs: &[(&str, &str)]) -> EnvLookup {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(move |k| map.get(k).cloned())
    }

    /// The test helper that may expose a key.
    pub(crate) fn exposed(key: &ApiKey) -> String {
        key.secret()
            .map(crate::exposure::reveal)
            .unwrap_or_default()
    }

    #[test]
    fn env_values_are_trimmed_and_empty_is_missing() {
        let env = env_of(&[("A", "  hf_abc\n"), ("B", " \n")]);
        let r = resolve(ApiKeyLocation::Env("A".into()), Path::new("."), &env);
        assert_eq!(exposed(&r.key), "hf_abc");
        assert!(r.warnings.is_empty());
        let r = resolve(ApiKeyLocation::Env("B".into()), Path::new("."), &env);
        assert_eq!(
            r.key.unavailable_reason(),
            Some("environment variable `B` is empty")
        );
        let r = resolve(ApiKeyLocation::Env("C".into()), Path::new("."), &env);
        assert_eq!(
            r.key.unavailable_reason(),
            Some("environment variable `C` is not set")
        );
    }

    #[test]
    fn huggingface_lookup_order() {
        let dir = std::env::temp_dir().join(format!("hfconnect-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_from_home\n").unwrap();
        std::fs::write(dir.join("custom"), "hf_from_path").unwrap();
        let home = dir.to_str().unwrap();
        let custom = dir.join("custom");
        let custom = custom.to_str().unwrap();
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![
                    ("HF_TOKEN", "hf_env"),
                    ("HUGGING_FACE_HUB_TOKEN", "hf_legacy"),
                    ("HF_HOME", home),
                ],
                "hf_env",
            ),
            (
                vec![("HF_TOKEN", " "), ("HUGGING_FACE_HUB_TOKEN", "hf_legacy")],
                "hf_legacy",
            ),
            (
                vec![("HF_TOKEN_PATH", custom), ("HF_HOME", home)],
                "hf_from_path",
            ),
            (vec![("HF_HOME", home)], "hf_from_home"),
        ];
        for (pairs, want) in cases {
            let r = resolve(ApiKeyLocation::Huggingface, Path::new("."), &env_of(&pairs));
            assert_eq!(exposed(&r.key), want, "{pairs:?}");
        }
        let r = resolve(
            ApiKeyLocation::Huggingface,
            Path::new("."),
            &env_of(&[("HF_HOME", "/nonexistent")]),
        );
        assert!(r
            .key
            .unavailable_reason()
            .unwrap()
            .contains("`/nonexistent/token` does not exist"));
    }

    #[test]
    fn debug_and_display_redact() {
        let env = env_of(&[("A", "hf_SECRETMARKER")]);
        let r = resolve(ApiKeyLocation::Env("A".into()), Path::new("."), &env);
        let shown = format!(
            "{:?} {} {:?}",
            r.key,
            r.key,
            ApiKeyLocation::Value(SecretString::from("hf_SECRETMARKER"))
        );
        assert!(!shown.contains("SECRETMARKER"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}
