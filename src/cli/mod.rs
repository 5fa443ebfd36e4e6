//! The `hfconnect` command line: argument parsing and the commands, one file per
//! command group. Output goes to the writers passed in; `main.rs` only wires
//! stdout/stderr and turns the returned code into the exit status.

mod access;
mod analysis;
mod config;
mod endpoint;
mod keys;
mod lifecycle;
mod run;
mod serve;
mod service;
mod template;
mod token;
mod usage;
mod worker;

/// Exit code: the token was rejected (or there is none, or it may not be used here).
pub const EXIT_REJECTED: i32 = 4;
/// Exit code: Hugging Face unreachable or failing, or a task rate limited.
pub const EXIT_PROVIDER: i32 = 5;

/// The exit code of a provider failure, one rule for every command: the token
/// missing, rejected, or without the permission it needs is 4; the rest 5.
pub(crate) fn exit_for_provider(kind: ProviderErrorKind) -> Exit {
    use ProviderErrorKind as ErrorKind;
    match kind {
        ErrorKind::KeyUnavailable
        | ErrorKind::Unauthorized
        | ErrorKind::Forbidden
        | ErrorKind::GatedModel => EXIT_REJECTED,
        _ => EXIT_PROVIDER,
    }
}

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LoadOptions, LoadedConfig, CONFIG_ENV};
use crate::connector::{Connector, ConnectorError};
use crate::task::{ChatRole, InputMessage, ProviderErrorKind, TaskError, TaskErrorKind};

/// Exit code: success (valid, allowed).
pub const EXIT_OK: i32 = 0;
/// Exit code: an unexpected failure writing output.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad input (invalid config, unknown names, bad arguments).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: access denied.
pub const EXIT_DENIED: i32 = 3;
/// Exit code: `config check --strict` found warnings (the config is valid).
pub const EXIT_WARNINGS: i32 = 6;

/// `hfconnect --version`: the version, the git revision and the features.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("HFCONNECT_REVISION"),
    "; features: ",
    env!("HFCONNECT_FEATURES"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "hfconnect",
    version = VERSION,
    about = "Governed Hugging Face LLM tasks for workflow engines",
    after_help = "Exit codes, for every command: 0 ok or allowed; 1 hfconnect itself failed; \
2 bad input (invalid config, unknown names, bad arguments); 3 denied or inactive; \
4 the token is missing or refused; 5 Hugging Face unreachable or failing, or rate limited; \
6 `config check --strict` found warnings.\n\
Config: --config PATH (-c), else HFCONNECT_CONFIG."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask the access policy.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Check an integration's Hugging Face token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect model endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Run a task as a subject: exit 0 ok, 3 denied or inactive, 2 bad input, 4 token missing or refused, 5 provider error or rate limited.
    Run(run::RunArgs),
    /// Chat templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Serve tasks over HTTP (the main job): `POST /v1/tasks/{text-complete,chat-complete,summarize,embed}`.
    Serve(serve::ServeArgs),
    /// Run as a Conductor worker: poll LLM tasks, run them, report results (needs a `[worker]` section).
    Worker(worker::WorkerArgs),
    /// Application keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Token budgets and usage: each budget's limit, used, reserved, remaining and reset; tokens by day and model (31 days).
    Usage(usage::UsageArgs),
    /// Print a shell completion script: `hfconnect completions bash > /etc/bash_completion.d/hfconnect`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key for an application: prints the key once (stdout) and the config line with its hash (stderr).
    New(keys::KeysNewArgs),
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// Print the prompt a `tgi` model's chat template makes of messages.
    Render(template::RenderArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Ask the Hub who owns the token (whoami): exit 0 valid, 4 rejected, missing or not the namespace's, 5 unreachable, 2 bad input.
    Check(token::TokenCheckArgs),
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// Health and info of each model endpoint, plus the management API's view: exit 0 all healthy, 4 token missing or refused, 5 otherwise; with `--as SUBJECT --model M`, one model's endpoint under the policy (`READ`).
    Status(endpoint::EndpointStatusArgs),
    /// Pause a model's Inference Endpoint as a subject (needs `UPDATE` on the model): not billed until resumed.
    Pause(lifecycle::LifecycleArgs),
    /// Resume it (`UPDATE`); `--wait` follows it until it runs.
    Resume(lifecycle::LifecycleArgs),
    /// Scale it to zero (`UPDATE`): the next request wakes it.
    ScaleToZero(lifecycle::LifecycleArgs),
    /// Set its replicas (`UPDATE`): `--min N --max N [--scale-to-zero-after MINUTES]`.
    Scale(lifecycle::ScaleArgs),
    /// Delete it, irreversibly (`DELETE`).
    Delete(lifecycle::LifecycleArgs),
    /// Create it from the model's `deployment` block (`CREATE`); `--wait` follows it until it serves.
    Create(lifecycle::LifecycleArgs),
    /// Show what differs between the model's `deployment` block and the live endpoint (`READ`).
    Plan(lifecycle::LifecycleArgs),
    /// Change the live endpoint to match the `deployment` block (`UPDATE`; `CREATE` when it does not exist).
    Apply(lifecycle::LifecycleArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file or directory: exit 0 when valid (warnings allowed), 2 when not, 6 with `--strict` and warnings.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Fail on warnings too (exit 6): for CI, where an unset key or a
        /// questionable setting should stop a deploy.
        #[arg(long)]
        strict: bool,
        /// Ask no server: skip asking the Hub whether the tokens of
        /// integrations with `deployment` blocks may manage endpoints.
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Explain whether a subject may act on an integration, model or prompt: exit 0 allowed, 3 denied, 2 bad input.
    Explain(access::ExplainArgs),
    /// List every integration, model and prompt a subject can READ or EXECUTE, and why, with the limits, quotas and budgets on each.
    List(access::ListArgs),
    /// Every subject that may do an access on an integration, model or prompt, each with the path that allows it.
    WhoCan(analysis::WhoCanArgs),
    /// What a config change grants or revokes, by subject: exit 0 no access change, 1 some (`--fail-on gained`: only gains), 2 bad input.
    Diff(analysis::DiffArgs),
    /// Check statements the config must keep true (`--assert FILE`): exit 0 all hold, 1 one fails, 2 bad input.
    Check(analysis::CheckArgs),
}

/// `--config PATH`, else `HFCONNECT_CONFIG`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// Config file or directory (`.toml`, `.yaml`, `.yml`, `.json`).
    #[arg(long, short = 'c', env = CONFIG_ENV, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Who acts: `--config`, `--as SUBJECT`, `--group G`.
#[derive(Debug, Args)]
pub(crate) struct CallerArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Who acts: `user:ID` or `app:NAME`.
    #[arg(long = "as", value_name = "SUBJECT")]
    pub subject: String,
    /// Act as this one group of the subject's: only its grants (and the subject's own) count.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// The subject `--as` names: `user:ID` or `app:NAME` (groups cannot act);
/// a bare id gets the `user:` form suggested.
pub(crate) fn acting_subject(s: &str) -> Result<crate::access::Subject, String> {
    crate::access::parse_id(s, crate::access::IdSyntax::CALLER).map_err(|e| e.to_string())
}

/// Output streams of a command.
pub(crate) struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// A command's failure after its message was written: just the exit code.
pub(crate) type Exit = i32;

impl ConfigArg {
    /// The argument as a command with its own flags read it.
    pub(crate) fn from_path(config: Option<PathBuf>) -> ConfigArg {
        ConfigArg { config }
    }

    /// The config path, or a message and the exit code.
    pub(crate) fn path(&self, io: &mut Io<'_>) -> Result<&std::path::Path, Exit> {
        self.config.as_deref().ok_or_else(|| {
            let _ = writeln!(
                io.err,
                "error: no config given: pass `--config PATH` or set `{CONFIG_ENV}`"
            );
            EXIT_BAD_INPUT
        })
    }

    /// Load the config or write every problem to `io.err` and return the exit code.
    pub(crate) fn load(&self, io: &mut Io<'_>) -> Result<LoadedConfig, Exit> {
        let path = self.path(io)?;
        crate::config::load(path, &LoadOptions::new()).map_err(|e| {
            for d in e.diagnostics() {
                let _ = writeln!(io.err, "{d}");
            }
            let _ = writeln!(io.err, "{}", summary_line(&e));
            EXIT_BAD_INPUT
        })
    }
}

impl ConfigArg {
    /// For long-running commands (`serve`, `worker`): the config path (kept for
    /// reloads) and the loaded config, its warnings written to `io.err`.
    pub(crate) fn load_for_service(
        &self,
        io: &mut Io<'_>,
    ) -> Result<(PathBuf, LoadedConfig), Exit> {
        let path = self.path(io)?.to_path_buf();
        let loaded = self.load(io)?;
        for w in &loaded.warnings {
            let _ = writeln!(io.err, "{w}");
        }
        Ok((path, loaded))
    }

    /// Load the config and build a Connector over it, or write why not.
    pub(crate) fn connector(&self, io: &mut Io<'_>) -> Result<crate::connector::Connector, Exit> {
        let loaded = self.load(io)?;
        crate::connector::Connector::from_loaded(loaded).map_err(|e| {
            let _ = writeln!(io.err, "error: {e}");
            EXIT_FAILURE
        })
    }
}

/// A tokio runtime for a command, or the message and exit code.
pub(crate) fn runtime(
    multi_thread: bool,
    io: &mut Io<'_>,
) -> Result<tokio::runtime::Runtime, Exit> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        let _ = writeln!(io.err, "error: cannot start the async runtime: {e}");
        EXIT_FAILURE
    })
}

/// Report a failed connector operation and pick its exit code.
pub(crate) fn connector_failed(e: &ConnectorError, io: &mut Io<'_>) -> Exit {
    let _ = writeln!(io.err, "error: {e}");
    match e {
        ConnectorError::NotFound(_) | ConnectorError::Config(_) => EXIT_BAD_INPUT,
        ConnectorError::Provider { kind, .. } => exit_for_provider(*kind),
        ConnectorError::Internal(_) | ConnectorError::Store(_) => EXIT_FAILURE,
    }
}

/// The Connector over the config and a runtime for its one call, or the exit code.
pub(crate) fn connector_and_runtime(
    config: &ConfigArg,
    io: &mut Io<'_>,
) -> Result<(Connector, tokio::runtime::Runtime), Exit> {
    let connector = config.connector(io)?;
    Ok((connector, runtime(false, io)?))
}

/// The exit code for a task error.
pub(crate) fn exit_for_task(e: &TaskError) -> Exit {
    match e.kind() {
        TaskErrorKind::Denied | TaskErrorKind::Inactive => EXIT_DENIED,
        TaskErrorKind::NotFound | TaskErrorKind::InvalidInput => EXIT_BAD_INPUT,
        TaskErrorKind::Provider(k) => exit_for_provider(k),
        _ => EXIT_PROVIDER,
    }
}

/// Report a failed task and pick its exit code.
pub(crate) fn task_failed(e: &TaskError, io: &mut Io<'_>) -> Exit {
    let _ = writeln!(io.err, "error: {e}");
    exit_for_task(e)
}

/// `role:text`, as `--message` takes a chat message.
pub(crate) fn parse_message(s: &str) -> Result<InputMessage, String> {
    let (role, text) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `role:text`"))?;
    let role = match role {
        "user" => ChatRole::User,
        "assistant" => ChatRole::Assistant,
        "system" => ChatRole::System,
        other => {
            return Err(format!(
                "unknown role `{other}`; use `user`, `assistant` or `system`"
            ))
        }
    };
    Ok(InputMessage {
        role,
        message: text.to_string(),
    })
}

pub(crate) fn summary_line(e: &crate::config::ConfigError) -> String {
    let errors = e.errors().count();
    let warnings = e.diagnostics().len() - errors;
    format!(
        "config is invalid: {errors} error{}, {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    )
}

/// Run the command line `args` (including the program name); returns the exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let code = e.exit_code();
            let stream: &mut dyn Write = if code == 0 { out } else { err };
            let _ = write!(stream, "{text}");
            return code;
        }
    };
    let mut io = Io { out, err };
    let code = match cli.command {
        Command::Config(ConfigCommand::Check {
            config,
            json,
            strict,
            offline,
        }) => config::check(&config, json, strict, offline, &mut io),
        Command::Access(AccessCommand::Explain(args)) => access::explain(&args, &mut io),
        Command::Access(AccessCommand::List(args)) => access::list(&args, &mut io),
        Command::Access(AccessCommand::WhoCan(args)) => analysis::who_can(&args, &mut io),
        Command::Access(AccessCommand::Diff(args)) => analysis::diff(&args, &mut io),
        Command::Access(AccessCommand::Check(args)) => analysis::check(&args, &mut io),
        Command::Token(TokenCommand::Check(args)) => token::check(&args, &mut io),
        Command::Endpoint(EndpointCommand::Status(args)) => endpoint::status(&args, &mut io),
        Command::Endpoint(EndpointCommand::Pause(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Pause, &mut io)
        }
        Command::Endpoint(EndpointCommand::Resume(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Resume, &mut io)
        }
        Command::Endpoint(EndpointCommand::ScaleToZero(args)) => lifecycle::run(
            &args,
            crate::connector::EndpointOperation::ScaleToZero,
            &mut io,
        ),
        Command::Endpoint(EndpointCommand::Scale(args)) => lifecycle::scale(&args, &mut io),
        Command::Endpoint(EndpointCommand::Delete(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Delete, &mut io)
        }
        Command::Endpoint(EndpointCommand::Create(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Create, &mut io)
        }
        Command::Endpoint(EndpointCommand::Plan(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Plan, &mut io)
        }
        Command::Endpoint(EndpointCommand::Apply(args)) => {
            lifecycle::run(&args, crate::connector::EndpointOperation::Apply, &mut io)
        }
        Command::Run(args) => run::run(&args, &mut io),
        Command::Template(TemplateCommand::Render(args)) => template::render(&args, &mut io),
        Command::Serve(args) => serve::run(&args, &mut io),
        Command::Worker(args) => worker::run(&args, &mut io),
        Command::Keys(KeysCommand::New(args)) => keys::new(&args, &mut io),
        Command::Usage(args) => usage::run(&args, &mut io),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "hfconnect", io.out);
            EXIT_OK
        }
    };
    if io.out.flush().is_err() {
        return EXIT_FAILURE;
    }
    code
}
