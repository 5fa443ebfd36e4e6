//! `hfconnect token check` and `hfconnect endpoint status`: ask Hugging Face
//! about an integration's token and endpoints, through the Connector.

use clap::Args;
use serde_json::json;

use super::{
    exit_for_provider, ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_OK, EXIT_PROVIDER, EXIT_REJECTED,
};
use crate::connector::{Connector, ConnectorError};

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

#[derive(Debug, Args)]
pub(crate) struct EndpointStatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The integration.
    #[arg(long)]
    integration: String,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn fail(e: &ConnectorError, io: &mut Io<'_>) -> Exit {
    let _ = writeln!(io.err, "error: {e}");
    match e {
        ConnectorError::NotFound(_) | ConnectorError::Config(_) => EXIT_BAD_INPUT,
        ConnectorError::Provider(p) => exit_for_provider(p.kind()),
        ConnectorError::Internal(_) => super::EXIT_FAILURE,
    }
}

/// The Connector over the config and a runtime for its one call, or the exit code.
fn connector_and_runtime(
    config: &ConfigArg,
    io: &mut Io<'_>,
) -> Result<(Connector, tokio::runtime::Runtime), Exit> {
    let connector = config.connector(io)?;
    Ok((connector, super::runtime(false, io)?))
}

pub(crate) fn check(args: &TokenCheckArgs, io: &mut Io<'_>) -> Exit {
    let (connector, rt) = match connector_and_runtime(&args.config, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report = match rt.block_on(connector.token_check(&args.integration)) {
        Ok(r) => r,
        Err(e) => return fail(&e, io),
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

pub(crate) fn status(args: &EndpointStatusArgs, io: &mut Io<'_>) -> Exit {
    let (connector, rt) = match connector_and_runtime(&args.config, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report =
        match rt.block_on(connector.endpoint_status(&args.integration, args.model.as_deref())) {
            Ok(r) => r,
            Err(e) => return fail(&e, io),
        };
    let all_ok = report.models.iter().all(|m| m.probe.is_ok());
    if args.json {
        let models: Vec<_> = report
            .models
            .iter()
            .map(|m| {
                json!({
                    "model": m.model,
                    "api": m.api,
                    "endpoint": m.endpoint,
                    "healthy": m.probe.as_ref().is_ok_and(|i| i.healthy),
                    "info": m.probe.as_ref().ok(),
                    "error": m.probe.as_ref().err().map(|e| json!({"kind": e.kind().as_str(), "message": e.to_string()})),
                    "management": m.managed,
                })
            })
            .collect();
        let v = json!({
            "integration": report.integration,
            "models": models,
            "management_unavailable": report.management_unavailable,
        });
        let _ = writeln!(io.out, "{v:#}");
    } else {
        let _ = writeln!(io.out, "integration `{}`", report.integration);
        for m in &report.models {
            let _ = writeln!(
                io.out,
                "  model `{}` (api `{}`, {})",
                m.model, m.api, m.endpoint
            );
            match &m.probe {
                Ok(info) => {
                    let health = if info.healthy {
                        "healthy"
                    } else {
                        "not checked"
                    };
                    let mut facts = vec![health.to_string()];
                    if let Some(id) = &info.model_id {
                        facts.push(format!("serves `{id}`"));
                    }
                    if let Some(n) = info.max_input_tokens {
                        facts.push(format!("max input tokens {n}"));
                    }
                    if let Some(n) = info.max_total_tokens {
                        facts.push(format!("max total tokens {n}"));
                    }
                    if let Some(v) = &info.version {
                        facts.push(format!("version {v}"));
                    }
                    if let Some(n) = &info.note {
                        facts.push(n.clone());
                    }
                    let _ = writeln!(io.out, "    probe: {}", facts.join(", "));
                }
                Err(e) => {
                    let _ = writeln!(io.out, "    probe: FAILED ({}): {e}", e.kind());
                }
            }
            if let Some(ep) = &m.managed {
                let _ = writeln!(
                    io.out,
                    "    management: endpoint `{}` is `{}`{}",
                    ep.name,
                    ep.state,
                    ep.message
                        .as_deref()
                        .map(|msg| format!(" ({msg})"))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(why) = &report.management_unavailable {
            let _ = writeln!(io.out, "  management API: not consulted: {why}");
        }
    }
    // One rule with every command: a token problem (4) before any other failure (5).
    let worst = report
        .models
        .iter()
        .filter_map(|m| m.probe.as_ref().err())
        .map(|e| exit_for_provider(e.kind()))
        .min();
    match (all_ok, worst) {
        (true, _) => EXIT_OK,
        (false, Some(code)) => code,
        (false, None) => EXIT_PROVIDER,
    }
}
