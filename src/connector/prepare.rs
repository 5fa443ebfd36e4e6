//! Step two of the task path: a pure function of the task's plan (its
//! integration and model, looked up once), the catalog, the caller and the
//! task. It applies the rules in order — an unknown prompt, the policy's one
//! decision (inactive integration or model, `EXECUTE` on the model, `READ` on
//! a named prompt), the model's task kinds, prompt variables, the prompt's
//! model list — and builds the provider call (prompt, chat template, model
//! defaults).
//! It returns the access decision with the outcome, so that the decision
//! travels with the result and no front door decides twice.

use std::collections::HashMap;

use serde_json::Value;

use super::snapshot::Plan;
use crate::access::{Access, Decision, Principal, Target};
use crate::catalog::{Catalog, Integration, Model};
use crate::config::diagnostic_suggest;
use crate::provider::{
    Api, ChatMessage, ChatRequest, ChatRole, Completion, EmbedRequest, Embeddings,
    GenerationParams, SummarizeRequest, TextRequest,
};
use crate::task::{Task, TaskError, TaskErrorKind, TaskOutput, TaskResult};
use crate::untrusted::Untrusted;

/// A task checked and turned into a provider call. It borrows from the
/// snapshot: taking shares of its `Arc`s made every task contend on their counts.
pub(crate) struct Prepared<'s, P> {
    pub plan: Plan<'s, P>,
    pub call: Call,
    pub json_output: bool,
    /// What admission charges: the number of texts of an embeddings task, else 1.
    pub cost: std::num::NonZeroU32,
}

pub(crate) enum Call {
    Generate(TextRequest),
    Chat(ChatRequest),
    Summarize(SummarizeRequest),
    Embed(EmbedCall),
}

/// An embeddings call and what its answer must be.
pub(crate) struct EmbedCall {
    pub request: EmbedRequest,
    /// The size every vector must have: the task's `dimensions`, else the model's.
    pub dimensions: Option<u32>,
    /// One `text` (the result is a vector) rather than `texts` (a list of them).
    pub single: bool,
}

/// The most texts one embeddings task may carry.
pub(crate) const MAX_EMBED_TEXTS: usize = 2048;

/// Requests of a split batch in flight at once when no `max_concurrency` says.
const DEFAULT_EMBED_PARALLEL: usize = 4;

pub(crate) fn unknown_integration(catalog: &Catalog, name: &str) -> String {
    let names = catalog.integrations().iter().map(Integration::name);
    format!(
        "unknown integration `{}`{}",
        Untrusted(name),
        diagnostic_suggest(name, names)
    )
}

pub(crate) fn unknown_model(integration: &Integration, model: &str) -> String {
    let names = integration.models().iter().map(Model::name);
    format!(
        "unknown model `{}` of integration `{}`{}",
        Untrusted(model),
        integration.name(),
        diagnostic_suggest(model, names)
    )
}

pub(crate) fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::new(TaskErrorKind::InvalidInput, message)
}

fn vars_as_text(vars: &HashMap<String, Value>) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn params(
    model: &Model,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: &[String],
    seed: Option<u64>,
) -> Result<GenerationParams, TaskError> {
    let d = model.defaults();
    let p = GenerationParams {
        max_tokens: max_tokens.or(d.max_tokens.map(std::num::NonZeroU32::get)),
        temperature: temperature.or(d.temperature),
        top_p: top_p.or(d.top_p),
        stop: if stop.is_empty() {
            d.stop.clone()
        } else {
            stop.to_vec()
        },
        seed: seed.or(d.seed),
    };
    crate::task::check_stop_words(stop, "stopWords").map_err(invalid)?;
    if p.max_tokens == Some(0) {
        return Err(invalid("`maxTokens` must be at least 1"));
    }
    if p.temperature.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err(invalid("`temperature` must be greater than 0"));
    }
    if p.top_p.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
        return Err(invalid("`topP` must be greater than 0 and at most 1"));
    }
    Ok(p)
}

pub(crate) fn to_output(c: Completion, json_output: bool) -> Result<TaskOutput, TaskError> {
    let result = if json_output {
        let text = c.text.trim();
        let body = text
            .strip_prefix("```json")
            .or_else(|| text.strip_prefix("```"))
            .and_then(|t| t.trim_end().strip_suffix("```"))
            .unwrap_or(text);
        TaskResult::Json(serde_json::from_str(body.trim()).map_err(|e| {
            TaskError::new(
                TaskErrorKind::InvalidOutput,
                format!("`jsonOutput` is set but the model's answer is not valid JSON ({e})"),
            )
        })?)
    } else {
        TaskResult::Text(c.text)
    };
    Ok(TaskOutput {
        result,
        finish_reason: c.finish_reason,
        token_used: c.usage.total(),
        dimensions: None,
        prompt_tokens: c.usage.prompt_tokens,
        completion_tokens: c.usage.completion_tokens,
        headroom: None,
        token_headroom: None,
    })
}

/// An embeddings task's output: one vector for `text`, a list for `texts`,
/// after checking that every vector has the size the task or model promised.
pub(crate) fn embed_output(
    e: Embeddings,
    call: &EmbedCall,
    model: &str,
) -> Result<TaskOutput, TaskError> {
    let size = e.vectors.dimensions();
    if let Some(want) = call.dimensions {
        if size != want as usize {
            return Err(TaskError::new(
                TaskErrorKind::InvalidOutput,
                format!(
                    "model `{model}` returned vectors of {size} dimensions where {want} were expected"
                ),
            ));
        }
    }
    let result = if call.single {
        match e.vectors.into_single() {
            Some(v) => TaskResult::Vector(v),
            None => {
                return Err(TaskError::new(
                    TaskErrorKind::InvalidOutput,
                    format!("model `{model}` returned no vector for the one text"),
                ))
            }
        }
    } else {
        TaskResult::Vectors(e.vectors)
    };
    Ok(TaskOutput {
        result,
        finish_reason: None,
        token_used: e.usage.prompt_tokens,
        dimensions: u32::try_from(size).ok(),
        prompt_tokens: e.usage.prompt_tokens,
        completion_tokens: None,
        headroom: None,
        token_headroom: None,
    })
}

/// An embeddings task checked against its model.
fn embed_call(
    integration: &Integration,
    model: &Model,
    t: &crate::task::EmbedInput,
) -> Result<EmbedCall, TaskError> {
    let (inputs, single) = match (&t.text, &t.texts) {
        (Some(_), Some(_)) => return Err(invalid("give `text` or `texts`, not both")),
        (Some(text), None) => (vec![text.clone()], true),
        (None, Some(texts)) => (texts.clone(), false),
        (None, None) => return Err(invalid("give `text` or `texts`")),
    };
    if inputs.is_empty() {
        return Err(invalid("`texts` is empty"));
    }
    if inputs.len() > MAX_EMBED_TEXTS {
        return Err(invalid(format!(
            "`texts` has {} texts; one task embeds at most {MAX_EMBED_TEXTS}",
            inputs.len()
        )));
    }
    if let Some(i) = inputs.iter().position(|s| s.trim().is_empty()) {
        return Err(invalid(if single {
            "`text` is empty".to_string()
        } else {
            format!("`texts[{i}]` is empty")
        }));
    }
    if t.dimensions == Some(0) {
        return Err(invalid("`dimensions` must be at least 1"));
    }
    let declared = model.dimensions().map(std::num::NonZeroU32::get);
    if let (Some(want), Some(has)) = (t.dimensions, declared) {
        if want > has {
            return Err(invalid(format!(
                "`dimensions` ({want}) is above the {has} of model `{}` of integration `{}`",
                model.name(),
                integration.name()
            )));
        }
    }
    let d = model.defaults();
    let parallel = [
        integration.limits().max_concurrency,
        model.limits().max_concurrency,
    ]
    .into_iter()
    .flatten()
    .map(|n| n.get() as usize)
    .min()
    .unwrap_or(DEFAULT_EMBED_PARALLEL);
    Ok(EmbedCall {
        request: EmbedRequest {
            inputs,
            normalize: t.normalize.or(d.normalize),
            truncate: t.truncate.or(d.truncate),
            truncation_direction: t.truncation_direction,
            dimensions: t.dimensions,
            max_parallel: parallel,
        },
        dimensions: t.dimensions.or(declared),
        single,
    })
}

/// The access decision, when one was taken (`None` when the task was
/// refused before: an unknown prompt), and the provider call or why not.
pub(crate) fn prepare<'s, P>(
    plan: Plan<'s, P>,
    catalog: &Catalog,
    principal: &Principal,
    task: &Task,
) -> (Option<Decision>, Result<Prepared<'s, P>, TaskError>) {
    let mut decided = None;
    let prepared = rules(plan, catalog, principal, task, &mut decided);
    (decided, prepared)
}

/// The error a refusing decision is: inactive, or denied.
pub(super) fn refusal(d: &Decision) -> TaskError {
    match d.reason.kind() {
        "integration_inactive" | "model_inactive" => {
            TaskError::new(TaskErrorKind::Inactive, d.reason.to_string())
        }
        _ => TaskError::new(TaskErrorKind::Denied, format!("denied: {}", d.reason)),
    }
}

/// The rules, in order: an unknown prompt, the policy (inactive, grants),
/// the model's task kinds, prompt variables, the prompt's model list; then
/// the request.
fn rules<'s, P>(
    plan: Plan<'s, P>,
    catalog: &Catalog,
    principal: &Principal,
    task: &Task,
    decided: &mut Option<Decision>,
) -> Result<Prepared<'s, P>, TaskError> {
    let (integration, model) = (plan.integration, plan.model);
    let not_found = |m: String| TaskError::new(TaskErrorKind::NotFound, m);
    let prompt = match task.prompt_name() {
        Some(name) => Some(catalog.prompt(name).ok_or_else(|| {
            let names = catalog.prompts().iter().map(|p| p.name());
            not_found(format!(
                "unknown prompt `{}`{}",
                Untrusted(name),
                diagnostic_suggest(name, names)
            ))
        })?),
        None => None,
    };
    let policy = catalog.policy();
    let mut decision = policy.decide_at(principal, Access::Execute, model.target(), plan.target);
    if decision.allowed {
        if let Some(p) = prompt {
            let d = policy.decide(principal, Access::Read, &Target::Prompt(p.name().into()));
            decision = decision.and(d);
        }
    }
    let refused = (!decision.allowed).then(|| refusal(&decision));
    *decided = Some(decision);
    if let Some(e) = refused {
        return Err(e);
    }
    let kind = task.kind();
    if !model.supports(kind) {
        let serves: Vec<&str> = model.tasks().iter().map(|t| t.as_str()).collect();
        return Err(invalid(format!(
            "model `{}` of integration `{}` does not serve `{kind}`; it serves {}",
            model.name(),
            integration.name(),
            serves.join(", ")
        )));
    }
    let rendered = match (prompt, task) {
        (Some(p), Task::TextComplete(t)) => {
            Some(p.template().render(&vars_as_text(&t.prompt_variables)))
        }
        (Some(p), Task::ChatComplete(t)) => {
            Some(p.template().render(&vars_as_text(&t.prompt_variables)))
        }
        _ => None,
    };
    let rendered = match rendered {
        Some(Ok(text)) => Some(text),
        Some(Err(missing)) => {
            let name = task.prompt_name().unwrap_or_default();
            return Err(invalid(format!(
                "prompt `{name}`: {missing}; give them in `promptVariables`"
            )));
        }
        None => None,
    };
    if let Some(p) = prompt {
        if !p.allows(integration.name(), model.name()) {
            let listed: Vec<String> = p.models().iter().map(|m| format!("`{m}`")).collect();
            return Err(invalid(format!(
                "prompt `{}` may not be used with `{}:{}`; it lists {}",
                p.name(),
                integration.name(),
                model.name(),
                listed.join(", ")
            )));
        }
    }
    let (call, json_output) = match task {
        Task::TextComplete(t) => {
            let text = match (&t.prompt, rendered) {
                (Some(_), Some(_)) => {
                    return Err(invalid("give `prompt` or `promptName`, not both"))
                }
                (Some(raw), None) => raw.clone(),
                (None, Some(r)) => r,
                (None, None) => return Err(invalid("give `prompt` or `promptName`")),
            };
            if text.trim().is_empty() {
                return Err(invalid("the prompt is empty"));
            }
            let params = params(
                model,
                t.temperature,
                t.top_p,
                t.max_tokens,
                &t.stop_words,
                t.seed,
            )?;
            (
                Call::Generate(TextRequest {
                    prompt: text,
                    params,
                }),
                false,
            )
        }
        Task::ChatComplete(t) => {
            if t.messages.is_empty() {
                return Err(invalid("`messages` is empty"));
            }
            let mut messages = Vec::with_capacity(t.messages.len() + 1);
            if let Some(system) = rendered {
                messages.push(ChatMessage {
                    role: ChatRole::System,
                    content: system,
                });
            }
            messages.extend(t.messages.iter().map(|m| ChatMessage {
                role: m.role,
                content: m.message.clone(),
            }));
            let params = params(
                model,
                t.temperature,
                t.top_p,
                t.max_tokens,
                &t.stop_words,
                t.seed,
            )?;
            match (model.api(), model.chat_template()) {
                // A raw TGI endpoint with a configured template: render here, call `/generate`.
                (Api::Tgi, Some(template)) => {
                    let prompt = template
                        .render(&messages)
                        .map_err(|e| invalid(format!("model `{}`: {e}", model.name())))?;
                    (
                        Call::Generate(TextRequest { prompt, params }),
                        t.json_output,
                    )
                }
                _ => (Call::Chat(ChatRequest { messages, params }), t.json_output),
            }
        }
        Task::Summarize(t) => {
            if t.text.trim().is_empty() {
                return Err(invalid("`text` is empty"));
            }
            if let (Some(min), Some(max)) = (t.min_length, t.max_length) {
                if min > max {
                    return Err(invalid(format!(
                        "`minLength` ({min}) is above `maxLength` ({max})"
                    )));
                }
            }
            (
                Call::Summarize(SummarizeRequest {
                    text: t.text.clone(),
                    max_length: t.max_length,
                    min_length: t.min_length,
                }),
                false,
            )
        }
        Task::Embed(t) => (Call::Embed(embed_call(integration, model, t)?), false),
    };
    Ok(Prepared {
        plan,
        call,
        json_output,
        cost: std::num::NonZeroU32::new(task.cost()).unwrap_or(std::num::NonZeroU32::MIN),
    })
}
