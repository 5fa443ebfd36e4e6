//! What long-running front doors (`serve`, `worker`) share: reloading the
//! config on SIGHUP and when its files change, and the shutdown signal.
//!
//! One task owns reloads, so a SIGHUP and the change that prompted it reload
//! once. It watches the config files and the files keys are read from (a
//! rewritten token file, a Kubernetes Secret whose mount swapped its `..data`
//! link): a rotated key is read without a SIGHUP. A config that fails
//! validation is refused and the old one keeps serving; a key that cannot be
//! read any more keeps the one read before (with a warning) until a new one
//! can be read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::LoadOptions;
use crate::connector::Connector;

/// How often the config and key files are checked for changes, by default.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies a file's content cheaply: length and modification time,
/// following links, and the `..data` link of its directory (where
/// Kubernetes swaps a Secret's content).
type Seen = (PathBuf, Option<(u64, Option<SystemTime>)>, Option<PathBuf>);

fn seen(files: &[PathBuf]) -> Vec<Seen> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f)
                .ok()
                .map(|m| (m.len(), m.modified().ok()));
            let data_link = f
                .parent()
                .and_then(|d| std::fs::read_link(d.join("..data")).ok());
            (f.clone(), meta, data_link)
        })
        .collect()
}

/// The config files and the key files the loaded config reads.
#[derive(Clone, PartialEq)]
struct Fingerprint {
    config: Vec<Seen>,
    keys: Vec<Seen>,
}

impl Fingerprint {
    fn take(config: &Path, connector: &Connector) -> Self {
        Fingerprint {
            config: seen(&crate::config::config_files(config).unwrap_or_default()),
            keys: seen(&connector.core().key_files()),
        }
    }
}

fn reload(connector: &Connector, config: &Path, why: &str) {
    match connector.reload_from(config, &LoadOptions::new()) {
        Ok(()) => tracing::info!(config = %config.display(), trigger = why, "config reloaded"),
        Err(e) => tracing::error!(
            config = %config.display(),
            trigger = why,
            error = %e,
            "config refused; the previous one keeps serving"
        ),
    }
}

/// Reload on SIGHUP and when the config or key files change (checked every
/// `every`).
///
/// A change is loaded once it has settled: the files look the same on two
/// checks in a row. An editor or `cp` that truncates a file and then writes
/// it would otherwise be caught half way, and an empty file is a valid
/// config with nothing in it. A SIGHUP reloads at once: the admin says the
/// files are ready.
pub(crate) fn spawn_reloader(connector: Arc<Connector>, config: PathBuf, every: Duration) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(_) => {
                tracing::warn!("cannot listen for SIGHUP; reloads follow file changes only");
                None
            }
        };
        let mut last = Fingerprint::take(&config, &connector);
        let mut pending: Option<Fingerprint> = None;
        loop {
            #[cfg(unix)]
            let signalled = match hup.as_mut() {
                Some(h) => tokio::select! {
                    s = h.recv() => s.is_some(),
                    () = tokio::time::sleep(every) => false,
                },
                None => {
                    tokio::time::sleep(every).await;
                    false
                }
            };
            #[cfg(not(unix))]
            let signalled = {
                tokio::time::sleep(every).await;
                false
            };
            // Taken before reading: an edit made while loading is seen on
            // the next check.
            let now = Fingerprint::take(&config, &connector);
            if signalled {
                reload(&connector, &config, "SIGHUP");
            } else if now == last {
                pending = None;
                continue;
            } else if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            } else {
                reload(&connector, &config, "files changed");
            }
            // What was just loaded (or refused) is the new baseline: a
            // SIGHUP and the edit behind it reload once, and the key files
            // of the new config are watched from now on.
            pending = None;
            last = Fingerprint {
                config: now.config,
                keys: seen(&connector.core().key_files()),
            };
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
