//! `hfconnect token check`: ask the Hub whose an integration's token is and
//! whether it may use the integration's namespace, through the Connector.

use clap::Args;
use serde_json::json;

use super::{connector_and_runtime, connector_failed, ConfigArg, Exit, Io, EXIT_OK, EXIT_REJECTED};

#[derive(Debug, Args)]
pub(crate) struct TokenCheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The integration whose token to check.
    #[arg(long)]
    integration: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn check(args: &TokenCheckArgs, io: &mut Io<'_>) -> Exit {
    let (connector, rt) = match connector_and_runtime(&args.config, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report = match rt.block_on(connector.core().token_check(&args.integration)) {
        Ok(r) => r,
        Err(e) => return connector_failed(&e, io),
    };
    // A token whose owner is neither the namespace nor a member of it gets
    // 403 from the namespace's endpoints: it cannot do this integration's work.
    let code = if report.namespace_ok == Some(false) {
        EXIT_REJECTED
    } else {
        EXIT_OK
    };
    if args.json {
        let _ = writeln!(io.out, "{:#}", json!(report));
        return code;
    }
    let o = &report.owner;
    let _ = writeln!(
        io.out,
        "token of integration `{}` is valid",
        report.integration
    );
    let _ = writeln!(
        io.out,
        "  owner: `{}`{}",
        o.name,
        o.kind
            .as_deref()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default()
    );
    if !o.orgs.is_empty() {
        let orgs: Vec<String> = o.orgs.iter().map(|g| format!("`{g}`")).collect();
        let _ = writeln!(io.out, "  organizations: {}", orgs.join(", "));
    }
    let _ = writeln!(
        io.out,
        "  token: {}role `{}`",
        o.token_name
            .as_deref()
            .map(|n| format!("`{n}`, "))
            .unwrap_or_default(),
        o.role.as_deref().unwrap_or("unknown")
    );
    match (&report.namespace, report.namespace_ok) {
        (Some(ns), Some(true)) => {
            let _ = writeln!(
                io.out,
                "  namespace `{ns}`: owned by the token's account or one of its organizations"
            );
        }
        (Some(ns), _) => {
            let _ = writeln!(io.out, "  namespace `{ns}`: NOT reachable with this token");
        }
        (None, _) => {
            let _ = writeln!(io.out, "  namespace: none configured");
        }
    }
    match report.may_manage {
        Some(true) => {
            let _ = writeln!(
                io.out,
                "  endpoint management: allowed (pause, resume, scale, create, delete)"
            );
        }
        Some(false) => {
            let _ = writeln!(
                io.out,
                "  endpoint management: NOT allowed (a fine-grained token needs `inference.endpoints.write` on the namespace; a `read` token cannot)"
            );
        }
        None => {}
    }
    for w in &report.warnings {
        let _ = writeln!(io.err, "warning: {w}");
    }
    if code == EXIT_REJECTED {
        let _ = writeln!(
            io.err,
            "error: the token of integration `{}` cannot use the endpoints of namespace `{}`: its owner `{}` is neither that namespace nor a member of it, so the endpoints will answer 403; use a token of the namespace (or of a member of its organization)",
            report.integration,
            report.namespace.as_deref().unwrap_or_default(),
            o.name
        );
    }
    code
}
