//! `hfconnect endpoint status`: probe an integration's model endpoints and
//! read their state from the management API, through the Connector.

use clap::Args;
use serde_json::json;

use super::{
    connector_and_runtime, connector_failed, exit_for_provider, ConfigArg, Exit, Io, EXIT_OK,
    EXIT_PROVIDER,
};

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
    /// Ask as this subject (`user:ID` or `app:NAME`), under the policy
    /// (`READ` on the model; needs `--model`): the management API's view of
    /// the model's endpoint, audited. Without it, the config's holder
    /// probes every model.
    #[arg(long = "as", value_name = "SUBJECT")]
    subject: Option<String>,
    /// With `--as`: act as this one group of the subject's.
    #[arg(long, value_name = "GROUP", requires = "subject")]
    group: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn status(args: &EndpointStatusArgs, io: &mut Io<'_>) -> Exit {
    if let Some(subject) = &args.subject {
        let Some(model) = &args.model else {
            let _ = writeln!(io.err, "error: `--as` asks about one model: pass `--model`");
            return super::EXIT_BAD_INPUT;
        };
        let governed = super::lifecycle::LifecycleArgs::status(
            super::CallerArgs {
                config: args.config.clone(),
                subject: subject.clone(),
                group: args.group.clone(),
            },
            &args.integration,
            model,
            args.json,
        );
        return super::lifecycle::run(&governed, crate::connector::EndpointOperation::Status, io);
    }
    let (connector, rt) = match connector_and_runtime(&args.config, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report = match rt.block_on(
        connector
            .core()
            .endpoint_status(&args.integration, args.model.as_deref()),
    ) {
        Ok(r) => r,
        Err(e) => return connector_failed(&e, io),
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
                    if let Some(t) = &info.model_type {
                        facts.push(format!("model type {t}"));
                    }
                    if let Some(n) = info.max_batch_size {
                        facts.push(format!("max batch size {n}"));
                    }
                    if let Some(n) = info.max_batch_tokens {
                        facts.push(format!("max batch tokens {n}"));
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
