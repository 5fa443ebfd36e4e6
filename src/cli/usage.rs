//! `hfconnect usage`: the budgets' spend and the tokens by day, read from the
//! backend `serve` writes (the in-process store on disk, read beside a
//! running `serve`, or Redis) — everyone's, or what one subject may see.

use clap::Args;

use super::{ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::connector::UsageView;

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Show what this subject sees (`user:ID` or `app:NAME`) instead of everyone's.
    #[arg(long = "as", value_name = "SUBJECT")]
    subject: Option<String>,
    /// Print the usage as JSON (what `GET /v1/usage` answers).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &UsageArgs, io: &mut Io<'_>) -> Exit {
    let connector = match args.config.connector(io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let principal = match &args.subject {
        Some(s) => {
            let subject = match super::acting_subject(s) {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(io.err, "error: {e}");
                    return EXIT_BAD_INPUT;
                }
            };
            match connector.principal(&subject, None) {
                Ok(p) => p,
                Err(e) => {
                    let _ = writeln!(io.err, "error: {e}");
                    return EXIT_BAD_INPUT;
                }
            }
        }
        // The operator holds the config: everyone's usage.
        None => crate::access::Principal::operator(),
    };
    let rt = match super::runtime(false, io) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let view = match rt.block_on(connector.core().usage_read_only(&principal)) {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return EXIT_FAILURE;
        }
    };
    if args.json {
        let _ = writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        let _ = write_table(&view, io);
    }
    EXIT_OK
}

fn write_table(view: &UsageView, io: &mut Io<'_>) -> std::io::Result<()> {
    if view.budgets.is_empty() {
        writeln!(io.out, "no budget covers this subject")?;
    } else {
        writeln!(
            io.out,
            "{:<24} {:<28} {:>12} {:>12} {:>12} {:>12}  resets at",
            "budget", "charged to", "limit", "used", "reserved", "remaining"
        )?;
        for b in &view.budgets {
            let who = b.member.as_deref().unwrap_or(&b.subject);
            writeln!(
                io.out,
                "{:<24} {:<28} {:>12} {:>12} {:>12} {:>12}  {}",
                b.name, who, b.limit, b.used, b.reserved, b.remaining, b.resets_at
            )?;
        }
    }
    writeln!(io.out)?;
    if view.history.is_empty() {
        writeln!(
            io.out,
            "no tokens used in the last {} days",
            crate::connector::HISTORY_DAYS
        )?;
        return Ok(());
    }
    writeln!(
        io.out,
        "{:<10} {:<28} {:<32} {:>12} {:>12}",
        "day", "subject", "model", "prompt", "completion"
    )?;
    for d in &view.history {
        writeln!(
            io.out,
            "{:<10} {:<28} {:<32} {:>12} {:>12}",
            d.day,
            d.subject,
            format!("{}/{}", d.integration, d.model),
            d.prompt_tokens,
            d.completion_tokens
        )?;
    }
    Ok(())
}
