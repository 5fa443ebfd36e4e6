//! `hfconnect serve` (the HTTP service) and `hfconnect keys new` (an
//! application key, shown once, and the config line holding its hash).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::connector::Connector;
use crate::server::{serve, shutdown_signal, ServeOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
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
}

#[derive(Debug, Args)]
pub(crate) struct KeysNewArgs {
    /// The application the key is for.
    #[arg(long)]
    app: String,
}

/// What a long-running command runs with: the Connector, a multi-threaded
/// runtime, and the log output (written out when this is dropped, after the runtime).
pub(crate) struct Service {
    pub connector: Arc<Connector>,
    pub rt: tokio::runtime::Runtime,
    _logs: Option<crate::logging::LogGuard>,
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
    let rt = super::runtime(true, io)?;
    rt.block_on(async { crate::logging::spawn_drain() });
    Ok(Service {
        connector: Arc::new(connector),
        rt,
        _logs: logs,
    })
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

pub(crate) fn keys_new(args: &KeysNewArgs, io: &mut Io<'_>) -> Exit {
    if args.app.trim().is_empty() {
        let _ = writeln!(io.err, "error: `--app` is empty");
        return EXIT_BAD_INPUT;
    }
    match crate::keys::new_key() {
        Ok((key, hash)) => {
            let _ = writeln!(io.out, "{key}");
            let _ = writeln!(
                io.err,
                "the key above is shown once: give it to application `{}`, which sends it as `Authorization: Bearer <key>`.\n\
                 add its hash to the application in the config:\n\n[[applications]]\nname = \"{}\"\nkeys = [\"{hash}\"]\n",
                args.app, args.app
            );
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            EXIT_FAILURE
        }
    }
}
