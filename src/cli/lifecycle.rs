//! `hfconnect endpoint pause|resume|scale-to-zero|scale|create|delete|plan|apply`:
//! change a model's Inference Endpoint as a subject, under the policy
//! (`UPDATE`, `CREATE`, `DELETE`; `READ` for a plan); `--wait` follows a
//! resume, scale, create or apply until the endpoint runs and its health
//! route answers, showing each state it passes and the time taken, bounded
//! by `--timeout`.

use std::time::Duration;

use clap::Args;

use super::{exit_for_task, CallerArgs, Exit, Io, EXIT_OK};
use crate::connector::{EndpointAnswer, EndpointOperation, WaitStep};

#[derive(Debug, Args)]
pub(crate) struct LifecycleArgs {
    #[command(flatten)]
    caller: CallerArgs,
    /// The integration.
    #[arg(long)]
    integration: String,
    /// The model whose endpoint it is.
    #[arg(long)]
    model: String,
    /// Wait until the endpoint runs and its health route answers (resume,
    /// scale, create, apply).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// How often `--wait` asks, in milliseconds.
    #[arg(long, default_value_t = 2000, hide = true)]
    poll_ms: u64,
    /// Print the endpoint's state as JSON.
    #[arg(long)]
    json: bool,
}

impl LifecycleArgs {
    /// `endpoint status --as`: the governed status of one model's endpoint.
    pub(crate) fn status(caller: CallerArgs, integration: &str, model: &str, json: bool) -> Self {
        LifecycleArgs {
            caller,
            integration: integration.to_string(),
            model: model.to_string(),
            wait: false,
            timeout: 0,
            poll_ms: 0,
            json,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    #[command(flatten)]
    common: LifecycleArgs,
    /// The fewest replicas (0 lets it scale to zero).
    #[arg(long)]
    min: u32,
    /// The most replicas.
    #[arg(long)]
    max: u32,
    /// Idle minutes before it scales to zero.
    #[arg(long, value_name = "MINUTES")]
    scale_to_zero_after: Option<u32>,
}

pub(crate) fn scale(args: &ScaleArgs, io: &mut Io<'_>) -> Exit {
    if args.min > args.max {
        let _ = writeln!(
            io.err,
            "error: `--min` ({}) is more than `--max` ({})",
            args.min, args.max
        );
        return super::EXIT_BAD_INPUT;
    }
    run(
        &args.common,
        EndpointOperation::Scale {
            min: args.min,
            max: args.max,
            scale_to_zero_after: args.scale_to_zero_after,
        },
        io,
    )
}

pub(crate) fn run(args: &LifecycleArgs, op: EndpointOperation, io: &mut Io<'_>) -> Exit {
    // Who did what to which endpoint is recorded here too, on stderr.
    let _audit =
        crate::logging::init_with(crate::logging::LogFormat::Human, "hfconnect::audit=info");
    let (connector, rt) = match super::connector_and_runtime(&args.caller.config, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let subject = match super::acting_subject(&args.caller.subject) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return super::EXIT_BAD_INPUT;
        }
    };
    let principal = match connector.principal(&subject, args.caller.group.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return exit_for_task(&e);
        }
    };
    let core = connector.core();
    let answer =
        match rt.block_on(core.manage_endpoint(&principal, &args.integration, &args.model, op)) {
            Ok(a) => a,
            Err(e) => {
                let _ = writeln!(io.err, "error: {e}");
                return exit_for_task(&e);
            }
        };
    let waits = matches!(
        op,
        EndpointOperation::Resume
            | EndpointOperation::Scale { .. }
            | EndpointOperation::Create
            | EndpointOperation::Apply
    );
    if !args.wait || !waits {
        show(&answer, args.json, io);
        return EXIT_OK;
    }
    if !args.json {
        show(&answer, false, io);
    }
    let err = &mut *io.err;
    let waited = rt.block_on(core.wait_for_endpoint(
        &principal,
        &args.integration,
        &args.model,
        Duration::from_secs(args.timeout),
        Duration::from_millis(args.poll_ms),
        &mut |step: &WaitStep| {
            let _ = writeln!(
                err,
                "{:>6.1}s  {}{}",
                step.elapsed.as_secs_f64(),
                step.state,
                if step.serving {
                    " and serving (its health route answers)"
                } else {
                    ""
                }
            );
        },
    ));
    match waited {
        Ok(done) => {
            if args.json {
                show(&done, true, io);
            }
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            // A timeout or a failed endpoint is the provider's code (5).
            exit_for_task(&e)
        }
    }
}

fn show(a: &EndpointAnswer, json: bool, io: &mut Io<'_>) {
    if json {
        let _ = writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(a).unwrap_or_default()
        );
        return;
    }
    if let Some(action) = a.action {
        let what = match action {
            "create" if a.operation == "plan" => "does not exist: `apply` creates it",
            "create" => "created",
            "none" => "matches its `deployment` block",
            "update" if a.operation == "plan" => "differs from its `deployment` block: `apply` updates it",
            "update" => "updated to match its `deployment` block",
            _ => "differs from its `deployment` block where an update cannot change it: delete it and create it again",
        };
        let _ = writeln!(
            io.out,
            "{} {}/{}: endpoint `{}` {what}",
            a.operation, a.integration, a.model, a.endpoint
        );
        for d in &a.drift {
            let _ = writeln!(
                io.out,
                "  {:<24} {} -> {}{}",
                d.field,
                d.live.as_deref().unwrap_or("(unset)"),
                d.wanted.as_deref().unwrap_or("(removed)"),
                if d.updatable {
                    ""
                } else {
                    "  (needs re-creation)"
                }
            );
        }
        if a.operation == "plan" || a.status.is_none() {
            return;
        }
    }
    let _ = match &a.status {
        Some(s) => writeln!(
            io.out,
            "{} {}/{}: endpoint `{}` is {} (replicas {}/{}, scaling {}–{})",
            a.operation,
            a.integration,
            a.model,
            a.endpoint,
            s.state,
            s.ready_replica.map_or("?".into(), |n| n.to_string()),
            s.target_replica.map_or("?".into(), |n| n.to_string()),
            s.min_replica.map_or("?".into(), |n| n.to_string()),
            s.max_replica.map_or("?".into(), |n| n.to_string()),
        ),
        None => writeln!(
            io.out,
            "{} {}/{}: endpoint `{}` deleted",
            a.operation, a.integration, a.model, a.endpoint
        ),
    };
}
