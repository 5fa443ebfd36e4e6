//! `hfconnect run …`: run a task as a subject, through the Connector, and
//! print its output (or stream its text).

use std::collections::HashMap;

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{task_failed, Exit, Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::access::Subject;
use crate::connector::{Reply, TaskRequest};
use crate::task::{
    ChatCompleteInput, Door, EmbedInput, InputMessage, SummarizeInput, Task, TaskEvent, TaskOutput,
    TaskResult, TextCompleteInput,
};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    caller: RunCaller,
    #[command(subcommand)]
    task: RunTask,
}

/// `--config`, `--as` and `--group`, before or after the task's name (global
/// to its subcommands, so they cannot be `required` to clap: checked here).
#[derive(Debug, Args)]
struct RunCaller {
    /// Config file or directory (`.toml`, `.yaml`, `.yml`, `.json`).
    #[arg(long, short = 'c', env = crate::config::CONFIG_ENV, value_name = "PATH", global = true)]
    config: Option<std::path::PathBuf>,
    /// Who acts: `user:ID` or `app:NAME` (required).
    #[arg(long = "as", value_name = "SUBJECT", global = true)]
    subject: Option<String>,
    /// Act as this one group of the subject's: only its grants (and the subject's own) count.
    #[arg(long, value_name = "GROUP", global = true)]
    group: Option<String>,
}

#[derive(Debug, Args)]
struct Target {
    /// The integration (`llmProvider`).
    #[arg(long)]
    integration: String,
    /// The model.
    #[arg(long)]
    model: String,
}

#[derive(Debug, Args)]
struct Sampling {
    /// Maximum new tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus sampling.
    #[arg(long)]
    top_p: Option<f64>,
    /// A stop sequence (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, Args)]
struct Output {
    /// Print tokens as they arrive.
    #[arg(long)]
    stream: bool,
    /// Print the task output as JSON (Orkes names).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum RunTask {
    /// `LLM_TEXT_COMPLETE`: a prompt, or a saved prompt with variables.
    TextComplete {
        #[command(flatten)]
        target: Target,
        /// The prompt.
        #[arg(
            long,
            required_unless_present = "prompt_name",
            conflicts_with = "prompt_name"
        )]
        prompt: Option<String>,
        /// A saved prompt.
        #[arg(long)]
        prompt_name: Option<String>,
        /// A prompt variable, `name=value` (repeatable).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        output: Output,
    },
    /// `LLM_CHAT_COMPLETE`: messages `role:text`, optional saved instructions.
    ChatComplete {
        #[command(flatten)]
        target: Target,
        /// A message, `user:text`, `assistant:text` or `system:text` (repeatable, in order).
        #[arg(long = "message", required = true, value_parser = super::parse_message)]
        messages: Vec<InputMessage>,
        /// A saved prompt used as system text.
        #[arg(long)]
        instructions: Option<String>,
        /// A prompt variable, `name=value` (repeatable).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Parse the answer as JSON.
        #[arg(long)]
        json_output: bool,
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        output: Output,
    },
    /// Summarize `--text` or the content of `--file`.
    Summarize {
        #[command(flatten)]
        target: Target,
        /// The text.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// A file holding the text.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Upper bound on the summary length.
        #[arg(long)]
        max_length: Option<u32>,
        /// Lower bound on the summary length.
        #[arg(long)]
        min_length: Option<u32>,
        #[command(flatten)]
        output: Output,
    },
    /// `LLM_GENERATE_EMBEDDINGS`: one vector per `--text`, or per line of `--file`,
    /// printed one JSON array per line in input order.
    Embed {
        #[command(flatten)]
        target: Target,
        /// A text (repeatable, in order).
        #[arg(
            long = "text",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        texts: Vec<String>,
        /// A file of texts, one per line (empty lines are skipped).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The size of the vectors wanted (at most the model's).
        #[arg(long)]
        dimensions: Option<u32>,
        /// Cut texts longer than the model takes instead of failing.
        #[arg(long)]
        truncate: bool,
        /// Print the task output as JSON (Orkes names) instead of one array per line.
        #[arg(long)]
        json: bool,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not `name=value`"))
}

fn vars(v: &[(String, String)]) -> HashMap<String, Value> {
    v.iter()
        .map(|(k, val)| (k.clone(), Value::String(val.clone())))
        .collect()
}

/// Vectors one JSON array per line, in input order (or the Orkes output with
/// `--json`); the count and size on stderr.
fn print_vectors(o: &TaskOutput, json: bool, io: &mut Io<'_>) {
    if json {
        let _ = writeln!(io.out, "{:#}", json!(o));
        return;
    }
    let tokens = o
        .prompt_tokens
        .map_or_else(|| "token counts unknown".into(), |t| format!("{t} tokens"));
    let dimensions = o.dimensions.unwrap_or_default();
    let vectors = o.result.vectors().unwrap_or_default();
    for v in vectors.iter() {
        let _ = writeln!(io.out, "{}", json!(v));
    }
    let _ = writeln!(
        io.err,
        "{} vectors of {dimensions} dimensions, {tokens}",
        vectors.len(),
    );
}

fn print_output(o: &TaskOutput, json: bool, streamed: bool, io: &mut Io<'_>) {
    if json {
        let _ = writeln!(io.out, "{:#}", json!(o));
        return;
    }
    if !streamed {
        match &o.result {
            TaskResult::Json(v) => {
                let _ = writeln!(io.out, "{v:#}");
            }
            other => {
                let _ = writeln!(io.out, "{}", other.to_text());
            }
        }
    } else {
        let _ = writeln!(io.out);
    }
    let tokens = match (o.token_used, o.prompt_tokens, o.completion_tokens) {
        (Some(t), Some(p), Some(c)) => format!("{t} tokens ({p} prompt, {c} completion)"),
        (_, _, Some(c)) => format!("{c} completion tokens"),
        _ => "token counts unknown".into(),
    };
    let _ = writeln!(
        io.err,
        "finish: {}, {tokens}",
        o.finish_reason
            .as_ref()
            .map_or("unknown".into(), crate::task::orkes_finish_reason_name)
    );
}

pub(crate) fn run(args: &RunArgs, io: &mut Io<'_>) -> Exit {
    let Some(subject) = args.caller.subject.as_deref() else {
        let _ = writeln!(
            io.err,
            "error: `hfconnect run` needs `--as SUBJECT` (`user:ID` or `app:NAME`), before or after the task's name"
        );
        return EXIT_BAD_INPUT;
    };
    let config = super::ConfigArg::from_path(args.caller.config.clone());
    let connector = match config.connector(io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let subject: Subject = match super::acting_subject(subject) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let principal = match connector.principal(&subject, args.caller.group.as_deref()) {
        Ok(p) => p,
        Err(e) => return task_failed(&e, io),
    };
    let (task, output) = match &args.task {
        RunTask::TextComplete {
            target,
            prompt,
            prompt_name,
            vars: v,
            sampling,
            output,
        } => (
            Task::TextComplete(TextCompleteInput {
                llm_provider: target.integration.clone(),
                model: target.model.clone(),
                prompt: prompt.clone(),
                prompt_name: prompt_name.clone(),
                prompt_variables: vars(v),
                temperature: sampling.temperature,
                top_p: sampling.top_p,
                max_tokens: sampling.max_tokens,
                stop_words: sampling.stop.clone(),
                seed: None,
            }),
            *output,
        ),
        RunTask::ChatComplete {
            target,
            messages,
            instructions,
            vars: v,
            json_output,
            sampling,
            output,
        } => (
            Task::ChatComplete(ChatCompleteInput {
                llm_provider: target.integration.clone(),
                model: target.model.clone(),
                instructions: instructions.clone(),
                prompt_variables: vars(v),
                messages: messages.clone(),
                temperature: sampling.temperature,
                top_p: sampling.top_p,
                max_tokens: sampling.max_tokens,
                stop_words: sampling.stop.clone(),
                json_output: *json_output,
                seed: None,
            }),
            *output,
        ),
        RunTask::Summarize {
            target,
            text,
            file,
            max_length,
            min_length,
            output,
        } => {
            let text = match (text, file) {
                (Some(t), _) => t.clone(),
                (None, Some(f)) => match std::fs::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = writeln!(io.err, "error: cannot read `{}`: {e}", f.display());
                        return EXIT_BAD_INPUT;
                    }
                },
                (None, None) => String::new(),
            };
            (
                Task::Summarize(SummarizeInput {
                    llm_provider: target.integration.clone(),
                    model: target.model.clone(),
                    text,
                    max_length: *max_length,
                    min_length: *min_length,
                }),
                *output,
            )
        }
        RunTask::Embed {
            target,
            texts,
            file,
            dimensions,
            truncate,
            json,
        } => {
            let texts = match file {
                None => texts.clone(),
                Some(f) => match std::fs::read_to_string(f) {
                    Ok(t) => t
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_string)
                        .collect(),
                    Err(e) => {
                        let _ = writeln!(io.err, "error: cannot read `{}`: {e}", f.display());
                        return EXIT_BAD_INPUT;
                    }
                },
            };
            let single = file.is_none() && texts.len() == 1;
            let mut texts = texts;
            (
                Task::Embed(EmbedInput {
                    llm_provider: target.integration.clone(),
                    model: target.model.clone(),
                    text: if single { texts.pop() } else { None },
                    texts: (!single).then_some(texts),
                    dimensions: *dimensions,
                    truncate: truncate.then_some(true),
                    ..EmbedInput::default()
                }),
                Output {
                    stream: false,
                    json: *json,
                },
            )
        }
    };
    let rt = match super::runtime(false, io) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut req = TaskRequest::new(&principal, &task).via(Door::Cli);
    if output.stream && !matches!(task, Task::Embed(_)) {
        req = req.streamed();
    }
    rt.block_on(async {
        let reply = match connector.run(req).await.reply {
            Ok(r) => r,
            Err(e) => return task_failed(&e, io),
        };
        let mut s = match reply {
            Reply::Output(o) => {
                if let Task::Embed(_) = &task {
                    print_vectors(&o, output.json, io);
                } else {
                    print_output(&o, output.json, false, io);
                }
                return EXIT_OK;
            }
            Reply::Stream(s) => s,
        };
        while let Some(ev) = s.next().await {
            match ev {
                Ok(TaskEvent::Chunk(t)) => {
                    if !output.json {
                        let _ = write!(io.out, "{t}");
                        let _ = io.out.flush();
                    }
                }
                Ok(TaskEvent::Done(o)) => {
                    print_output(&o, output.json, true, io);
                    return EXIT_OK;
                }
                Err(e) => {
                    let _ = writeln!(io.out);
                    return task_failed(&e, io);
                }
            }
        }
        EXIT_FAILURE
    })
}
