//! `hfconnect endpoint pause|resume|scale-to-zero|scale|delete`: change a
//! model's Inference Endpoint as a subject, under the policy (`UPDATE`, or
//! `DELETE`); `--wait` follows a resume or a scale until the endpoint runs,
//! showing each state it passes and the time taken, bounded by `--timeout`.

use std::time::{Duration, Instant};

use clap::Args;

use super::{exit_for_task, CallerArgs, Exit, Io, EXIT_OK, EXIT_PROVIDER};
use crate::connector::{EndpointAnswer, EndpointOperation};

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
    /// Wait until the endpoint runs (resume, scale).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Print the endpoint's state as JSON.
    #[arg(long)]
    json: bool,
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
    show(&answer, args.json, io);
    if !args.wait
        || matches!(
            op,
            EndpointOperation::Delete | EndpointOperation::Pause | EndpointOperation::ScaleToZero
        )
    {
        return EXIT_OK;
    }
    let started = Instant::now();
    let mut last = state_of(&answer);
    let _ = writeln!(io.err, "{:>6.1}s  {last}", 0.0);
    loop {
        match last.as_str() {
            "running" => return EXIT_OK,
            "failed" | "updateFailed" => {
                let _ = writeln!(io.err, "error: the endpoint is `{last}`");
                return EXIT_PROVIDER;
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(args.timeout) {
            let _ = writeln!(
                io.err,
                "error: the endpoint is still `{last}` after {} s (`--timeout`)",
                args.timeout
            );
            return EXIT_PROVIDER;
        }
        std::thread::sleep(Duration::from_millis(250));
        let now = match rt.block_on(core.manage_endpoint(
            &principal,
            &args.integration,
            &args.model,
            EndpointOperation::Status,
        )) {
            Ok(a) => a,
            Err(e) => {
                let _ = writeln!(io.err, "error: {e}");
                return exit_for_task(&e);
            }
        };
        let state = state_of(&now);
        if state != last {
            let _ = writeln!(io.err, "{:>6.1}s  {state}", started.elapsed().as_secs_f64());
            last = state;
        }
    }
}

fn state_of(a: &EndpointAnswer) -> String {
    a.status
        .as_ref()
        .map_or_else(|| "deleted".to_string(), |s| s.state.clone())
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
