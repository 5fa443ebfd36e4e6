//! `hfconnect serve`: the HTTP service, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::service::{start_service, LogFormat};
use super::{ConfigArg, Exit, Io, EXIT_FAILURE, EXIT_OK};
use crate::server::{serve, shutdown_signal, ServeOptions};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on: `IP:PORT` or `HOST:PORT` (such as `localhost:8080`).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = super::service::listen_addr)]
    listen: SocketAddr,
    /// Seconds in-flight requests may run after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// Seconds a connection may go without a request in flight (to send a
    /// request's head, or idle between requests) before it is closed.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body may take to arrive whole (408 after).
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Connections open at once; more are answered 503 and closed. Keep it
    /// below the open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Log lines for people or as JSON; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Seconds between checks of the config and key files for changes (a
    /// change reloads, as SIGHUP does).
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = super::service::watch_interval)]
    watch_interval: std::time::Duration,
    /// Report ready (`/readyz` 200) even while an active integration has no
    /// usable API key; by default such a service is not ready (503), so an
    /// orchestrator holds traffic until the key's Secret is mounted.
    #[arg(long, env = "HFCONNECT_READY_WITHOUT_KEYS")]
    ready_without_keys: bool,
}

pub(crate) fn run(args: &ServeArgs, io: &mut Io<'_>) -> Exit {
    let (path, loaded) = match args.config.load_for_service(io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let service = match start_service(loaded, args.log_format, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let connector = service.connector.clone();
    let options = ServeOptions {
        grace: Duration::from_secs(args.grace),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        watch_interval: args.watch_interval,
        require_keys: !args.ready_without_keys,
        ..ServeOptions::new(path)
    };
    let result = service.rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        serve(connector, listener, options, shutdown_signal()).await
    });
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(io.err, "error: cannot serve on `{}`: {e}", args.listen);
            EXIT_FAILURE
        }
    }
}
