//! `fake-conductor`: the fake Conductor server on its own, for trying
//! `hfconnect worker` by hand. It schedules `--schedule` tasks, prints each
//! workflow's state as it changes, takes more work and faults over its admin
//! routes, and stops on Ctrl-C.

use std::time::Duration;

use clap::Parser;
use hfconnect_integration_tests::fake_conductor::{admin, FakeConductor, Schedule};

/// A fake Conductor (the worker's REST API under `/api`) with real queue
/// semantics, Orkes tokens and faults on demand.
#[derive(Debug, Parser)]
#[command(name = "fake-conductor", after_help = admin::HELP)]
struct Args {
    /// Port on 127.0.0.1 (0 for any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Workflows of one task to schedule at start.
    #[arg(long, default_value_t = 0)]
    schedule: usize,
    /// Their task type.
    #[arg(long = "type", default_value = "LLM_SUMMARIZE")]
    task_type: String,
    /// Their input (JSON); a summarization of the quickstart's `hf-prod/bart-large-cnn` by default.
    #[arg(long)]
    input: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let input = match &args.input {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--input: {e}"))
        })?,
        None => serde_json::json!({
            "llmProvider": "hf-prod", "model": "bart-large-cnn",
            "text": "Invoice 1042 was paid twice; the customer asks for a refund of the second payment."
        }),
    };
    let server = FakeConductor::start_on(args.port).await?;
    let ids: Vec<String> = (0..args.schedule)
        .map(|_| server.schedule(Schedule::new(&args.task_type, input.clone())))
        .collect();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "fake Conductor on {} ({} `{}` tasks scheduled; admin routes: {}/_fake/help)",
            server.url(),
            args.schedule,
            args.task_type,
            server.url().trim_end_matches("/api")
        );
    }
    let mut last: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let now: Vec<String> = ids
            .iter()
            .map(|id| {
                let t = server.last_task(id);
                let status = t
                    .as_ref()
                    .map_or_else(|| "?".to_string(), |t| t.status.clone());
                let detail = t
                    .and_then(|t| t.output.or(t.reason.map(serde_json::Value::String)))
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                format!("{id}: {status} {detail}")
            })
            .collect();
        if now != last {
            #[allow(clippy::print_stdout)]
            for line in now.iter().filter(|l| !last.contains(l)) {
                println!("{line}");
            }
            last = now;
        }
    }
}
