//! `fake-conductor --port N [--schedule K --type T --input JSON]`: the fake
//! Conductor server on its own, for trying `hfconnect worker` by hand. It
//! schedules K tasks, prints each workflow's state as it changes, and stops
//! on Ctrl-C.

use std::time::Duration;

use hfconnect_integration_tests::fake_conductor::{FakeConductor, Schedule};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let value = hfconnect_integration_tests::flag_value;
    let port: u16 = value("--port").and_then(|p| p.parse().ok()).unwrap_or(8080);
    let count: usize = value("--schedule")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let task_type = value("--type").unwrap_or_else(|| "LLM_SUMMARIZE".into());
    let input = match value("--input") {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--input: {e}"))
        })?,
        None => serde_json::json!({
            "llmProvider": "hf-prod", "model": "bart-large-cnn",
            "text": "Invoice 1042 was paid twice; the customer asks for a refund of the second payment."
        }),
    };
    let server = FakeConductor::start_on(port).await?;
    let ids: Vec<String> = (0..count)
        .map(|_| server.schedule(Schedule::new(&task_type, input.clone())))
        .collect();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "fake Conductor on {} ({count} `{task_type}` tasks scheduled)",
            server.url()
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
