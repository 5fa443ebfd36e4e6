//! `hfconnect template render`: show what a model's chat template makes of
//! messages (what `/generate` would receive for a chat task).

use clap::Args;

use super::{parse_message, task_failed, ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_OK};
use crate::task::InputMessage;

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The integration (`llmProvider`).
    #[arg(long)]
    integration: Option<String>,
    /// The model (`integration:model` without `--integration`, as before).
    #[arg(long)]
    model: String,
    /// A message, `role:text` (repeatable, in order).
    #[arg(long = "message", required = true, value_parser = parse_message)]
    messages: Vec<InputMessage>,
}

pub(crate) fn render(args: &RenderArgs, io: &mut Io<'_>) -> Exit {
    let (integration, model) = match (&args.integration, args.model.split_once(':')) {
        (Some(i), _) => (i.as_str(), args.model.as_str()),
        (None, Some(both)) => both,
        (None, None) => {
            let _ = writeln!(
                io.err,
                "error: `hfconnect template render` needs `--integration I --model M`"
            );
            return EXIT_BAD_INPUT;
        }
    };
    let connector = match args.config.connector(io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match connector
        .core()
        .render_chat(integration, model, &args.messages)
    {
        Ok(text) => {
            let _ = write!(io.out, "{text}");
            EXIT_OK
        }
        Err(e) => task_failed(&e, io),
    }
}
