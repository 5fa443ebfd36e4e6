//! What long-running front doors (`serve`, `worker`) share: reloading the
//! config on SIGHUP and when its files change (a bad config is refused and the
//! old one stays), and the shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::LoadOptions;
use crate::connector::Connector;

#[cfg(unix)]
pub(crate) fn spawn_reload_on_sighup(connector: Arc<Connector>, config: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match connector.reload_from(&config, &LoadOptions::new()) {
                Ok(()) => tracing::info!(config = %config.display(), "config reloaded"),
                Err(e) => {
                    tracing::error!(config = %config.display(), error = %e, "config refused; the previous one keeps serving")
                }
            }
        }
    });
}

/// What identifies the config's current content: each file's path, length and mtime.
fn fingerprint(
    config: &std::path::Path,
) -> Option<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> {
    let files = crate::config::config_files(config).ok()?;
    Some(
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
                let modified = meta.and_then(|m| m.modified().ok());
                (f, len, modified)
            })
            .collect(),
    )
}

/// How often the config files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Reload when the config files change (checked every [`WATCH_INTERVAL`]).
pub(crate) fn spawn_reload_on_change(connector: Arc<Connector>, config: PathBuf) {
    tokio::spawn(async move {
        let mut last = fingerprint(&config);
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let now = fingerprint(&config);
            if now == last {
                continue;
            }
            last = now;
            match connector.reload_from(&config, &LoadOptions::new()) {
                Ok(()) => tracing::info!(config = %config.display(), "config changed; reloaded"),
                Err(e) => {
                    tracing::error!(config = %config.display(), error = %e, "config changed but was refused; the previous one keeps serving")
                }
            }
        }
    });
}

#[cfg(not(unix))]
pub(crate) fn spawn_reload_on_sighup(_connector: Arc<Connector>, _config: PathBuf) {}

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
