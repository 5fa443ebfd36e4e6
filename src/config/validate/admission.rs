//! The `[admission]` section: the backend, the Redis URL's location (resolved
//! once, never shown), the key prefix and the bounds on Redis calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::de::Spanned;
use super::{seconds, V};
use crate::config::raw::{BackendName, OnUnavailableName, RawAdmission};
use crate::config::secret::ApiKeyLocation;
use crate::runtime::{AdmissionBackend, OnUnavailable, RedisSettings};

/// The bound on a Redis call, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a concurrency slot outlives a replica that died, by default.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The backend, and (in process) where the usage store is: `store`, as
/// written relative to the file that says it.
pub(super) fn admission(
    v: &mut V<'_>,
    raw: Option<Spanned<RawAdmission>>,
) -> (AdmissionBackend, Option<PathBuf>) {
    let Some(raw) = raw else {
        return (AdmissionBackend::Local, None);
    };
    let loc = raw.loc.clone();
    let r = raw.value;
    let backend = r.backend.as_ref().map_or(BackendName::Local, |b| b.value);
    let store = r.store.and_then(|s| {
        if backend == BackendName::Redis {
            v.warn(
                &s.loc,
                "`admission.store` is ignored: with `backend = \"redis\"` budgets are kept on Redis",
            );
            return None;
        }
        if s.value.trim().is_empty() || s.value.contains('\0') {
            v.error(&s.loc, "`admission.store` must be a file path");
            return None;
        }
        let p = Path::new(&s.value);
        Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            v.dir_of(&s.loc).join(p)
        })
    });
    if backend == BackendName::Local {
        for (set, key) in [
            (r.url.as_ref().map(|s| &s.loc), "url"),
            (r.key_prefix.as_ref().map(|s| &s.loc), "key_prefix"),
            (r.on_unavailable.as_ref().map(|s| &s.loc), "on_unavailable"),
            (r.timeout.as_ref().map(|s| &s.loc), "timeout"),
            (r.lease.as_ref().map(|s| &s.loc), "lease"),
        ] {
            if let Some(at) = set {
                v.warn(
                    at,
                    format!("`admission.{key}` is ignored: the backend is `local`"),
                )
                .help = Some("set `backend = \"redis\"` to share limits across replicas".into());
            }
        }
        return (AdmissionBackend::Local, store);
    }
    let mut ok = true;
    let url = match r.url {
        None => {
            v.error(&loc, "`[admission]` with `backend = \"redis\"` needs `url`")
                .help = Some(
                "write `url = { env = \"HFCONNECT_REDIS_URL\" }` or `url = { file = \"path\" }`"
                    .into(),
            );
            ok = false;
            None
        }
        Some(s) if matches!(s.value, ApiKeyLocation::Huggingface) => {
            v.error(
                &s.loc,
                "`admission.url` cannot use the Hugging Face token lookup",
            )
            .help = Some("write `{ env = \"VAR\" }` or `{ file = \"path\" }`".into());
            ok = false;
            None
        }
        Some(s) => {
            let base = v.dir_of(&s.loc).to_path_buf();
            let resolved = crate::config::secret::resolve_secret(s.value, &base, v.env);
            for w in resolved.warnings {
                v.warn(&s.loc, w);
            }
            match resolved.key.secret() {
                Ok(url) => {
                    if let Err(why) = crate::exposure::redis_client(url) {
                        v.error(&s.loc, format!("the Redis URL {why}")).help = Some(
                            "write it as `redis://[:password@]host:port[/db]` or `rediss://…` for TLS"
                                .into(),
                        );
                        ok = false;
                    }
                }
                Err(reason) => {
                    let reason = reason.to_string();
                    v.warn(&s.loc, format!("the Redis URL is not available: {reason}"))
                        .help = Some(
                        "until it can be read, admission acts as if Redis were unreachable (`on_unavailable`)"
                            .into(),
                    );
                }
            }
            Some(resolved.key)
        }
    };
    let key_prefix = match r.key_prefix {
        None => "hfconnect".to_string(),
        Some(p) => {
            let fine = !p.value.is_empty()
                && p.value.len() <= 64
                && p.value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
            if !fine {
                v.error(
                    &p.loc,
                    "`admission.key_prefix` must be 1 to 64 visible ASCII characters without `{` or `}`",
                );
                ok = false;
            }
            p.value
        }
    };
    let on_unavailable = match r.on_unavailable.map(|s| s.value) {
        None | Some(OnUnavailableName::Local) => OnUnavailable::Local,
        Some(OnUnavailableName::Deny) => OnUnavailable::Deny,
    };
    let timeout =
        seconds(v, &r.timeout, "admission.timeout", false, &mut ok).unwrap_or(DEFAULT_TIMEOUT);
    if let Some(t) = &r.timeout {
        if t.value > 10.0 {
            v.error(
                &t.loc,
                format!("`admission.timeout` must be at most 10 seconds, not {}: a task never waits long on Redis", t.value),
            );
            ok = false;
        }
    }
    let lease = seconds(v, &r.lease, "admission.lease", false, &mut ok).unwrap_or(DEFAULT_LEASE);
    if let Some(l) = &r.lease {
        if l.value < 1.0 {
            v.error(
                &l.loc,
                format!(
                    "`admission.lease` must be at least 1 second, not {}",
                    l.value
                ),
            );
            ok = false;
        }
    }
    let backend = match (ok, url) {
        (true, Some(url)) => AdmissionBackend::Redis(Box::new(RedisSettings {
            url,
            key_prefix,
            on_unavailable,
            timeout,
            lease,
            origin: v.origin(&loc),
        })),
        _ => AdmissionBackend::Local,
    };
    (backend, store)
}
