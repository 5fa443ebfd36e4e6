//! `hfconnect worker`: run as a Conductor external worker, with the config's
//! `[worker]` section, until SIGTERM or Ctrl-C.

use clap::Args;
use url::Url;

use super::service::{start_service, LogFormat};
use super::{ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_OK};
use crate::conductor::Worker;

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The Conductor API base, e.g. `http://localhost:8080/api` (else `worker.conductor_url`).
    #[arg(long, env = "CONDUCTOR_SERVER_URL", value_name = "URL")]
    conductor_url: Option<String>,
    /// Log lines for people or as JSON; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Serve Prometheus metrics (`/metrics`, with `/healthz` and `/readyz`)
    /// on this address: the task metrics and the worker's polls and reports.
    #[arg(long, value_name = "ADDR", value_parser = super::service::listen_addr)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds between checks of the config and key files for changes (a
    /// change reloads, as SIGHUP does).
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = super::service::watch_interval)]
    watch_interval: std::time::Duration,
    /// Report ready on `--metrics-listen`'s `/readyz` even while an active
    /// integration has no usable API key (by default: not ready, 503).
    #[arg(long, env = "HFCONNECT_READY_WITHOUT_KEYS")]
    ready_without_keys: bool,
}

pub(crate) fn run(args: &WorkerArgs, io: &mut Io<'_>) -> Exit {
    let (path, loaded) = match args.config.load_for_service(io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(settings) = loaded.runtime.worker().cloned() else {
        let _ = writeln!(
            io.err,
            "error: `{}` has no `[worker]` section\nhelp: add one naming at least the application tasks run as:\n\n[worker]\napp = \"NAME\"",
            path.display()
        );
        return EXIT_BAD_INPUT;
    };
    let url = match (&args.conductor_url, &settings.conductor_url) {
        (Some(u), _) => match Url::parse(u.trim_end_matches('/')) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => {
                let _ = writeln!(
                    io.err,
                    "error: `--conductor-url` `{u}` is not an http(s) URL such as `http://localhost:8080/api`"
                );
                return EXIT_BAD_INPUT;
            }
        },
        (None, Some(u)) => u.clone(),
        (None, None) => {
            let _ = writeln!(
                io.err,
                "error: no Conductor URL: pass `--conductor-url http://host:8080/api`, set `CONDUCTOR_SERVER_URL`, or set `worker.conductor_url`"
            );
            return EXIT_BAD_INPUT;
        }
    };
    let service = match start_service(loaded, args.log_format, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let connector = service.connector.clone();
    let worker = match Worker::new(connector.clone(), settings, &url) {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let listener = match args.metrics_listen {
        None => None,
        Some(addr) => match service.rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = writeln!(io.err, "error: cannot listen on `{addr}` for metrics: {e}");
                return super::EXIT_FAILURE;
            }
        },
    };
    service.rt.block_on(async {
        crate::reload::spawn_reloader(connector.clone(), path, args.watch_interval);
        let (stop_metrics, stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(l) = listener {
            let c = connector.clone();
            let require_keys = !args.ready_without_keys;
            tokio::spawn(async move {
                let until = async {
                    let _ = stopped.await;
                };
                if let Err(e) = crate::server::serve_metrics(c, require_keys, l, until).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let report = worker.run(crate::reload::shutdown_signal()).await;
        let _ = stop_metrics.send(());
        report
    });
    EXIT_OK
}
