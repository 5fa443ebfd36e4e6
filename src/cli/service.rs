//! The start-up the long-running commands (`serve`, `worker`) share: logs
//! on, the Connector over the loaded config, a multi-threaded runtime.

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;

use super::{Exit, Io, EXIT_FAILURE};
use crate::connector::Connector;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

/// What a long-running command runs with: the Connector, a multi-threaded
/// runtime, and the log output (written out when this is dropped, after the runtime).
pub(crate) struct Service {
    pub connector: Arc<Connector>,
    pub rt: tokio::runtime::Runtime,
    _logs: Option<crate::logging::LogGuard>,
}

impl Drop for Service {
    /// What the service charged is on disk before the process ends.
    fn drop(&mut self) {
        self.connector.core().flush_usage();
    }
}

/// For long-running commands: logs on, the Connector over `catalog`, and a
/// multi-threaded runtime; or the message and exit code.
pub(crate) fn start_service(
    loaded: crate::config::LoadedConfig,
    log_format: LogFormat,
    io: &mut Io<'_>,
) -> Result<Service, Exit> {
    let logs = crate::logging::init(match log_format {
        LogFormat::Human => crate::logging::LogFormat::Human,
        LogFormat::Json => crate::logging::LogFormat::Json,
    });
    let connector = Connector::from_loaded(loaded).map_err(|e| {
        let _ = writeln!(io.err, "error: {e}");
        EXIT_FAILURE
    })?;
    // A usage store that cannot be used (in use by another process, not
    // writable) stops the service now, not task by task.
    if let Err(e) = connector.core().open_usage_store() {
        let _ = writeln!(io.err, "error: {e}");
        return Err(EXIT_FAILURE);
    }
    let rt = super::runtime(true, io)?;
    rt.block_on(async { crate::logging::spawn_drain() });
    Ok(Service {
        connector: Arc::new(connector),
        rt,
        _logs: logs,
    })
}

/// `--watch-interval`: seconds, fractions allowed, from 0.05 to 3600.
pub(crate) fn watch_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.05..=3600.0).contains(&secs) {
        return Err(format!("`{s}` is not from 0.05 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--listen` and `--metrics-listen`: `IP:PORT` or `HOST:PORT` (a host name
/// is resolved once, here; the first address it has is used).
pub(crate) fn listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not `IP:PORT` or `HOST:PORT` that resolves ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::listen_addr;

    #[test]
    fn listen_addresses_take_ips_and_host_names() {
        assert_eq!(listen_addr("127.0.0.1:8080").unwrap().port(), 8080);
        let local = listen_addr("localhost:8099").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8099, "{local}");
        assert!(listen_addr("8080").unwrap_err().contains("`8080`"));
    }
}
