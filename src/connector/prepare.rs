//! Step two of the task path: a pure function of the snapshot, the caller
//! and the task. It applies the rules in order — unknown names, inactive
//! integration or model, grants (`EXECUTE` on the model, `READ` on a named
//! prompt), the model's task kinds, prompt variables, the prompt's model list
//! — and builds the provider call (prompt, chat template, model defaults).
//! It returns the access decision with the outcome, so that the decision
//! travels with the result and no front door decides twice.

use std::collections::HashMap;

use serde_json::Value;

use super::audit::{Decided, DecisionText};
use super::Snapshot;
use crate::access::{Access, Principal, Target};
use crate::catalog::{Catalog, Integration, Model};
use crate::config::diagnostic_suggest;
use crate::provider::{
    Api, ChatMessage, ChatRequest, ChatRole, Completion, EmbedRequest, Embeddings,
    GenerationParams, ModelEndpoint, SummarizeRequest, TextRequest,
};
use crate::task::{finish_reason_name, Task, TaskError, TaskErrorKind, TaskOutput};
use crate::untrusted::Untrusted;

/// A task checked and turned into a provider call. It borrows from the
/// snapshot: taking shares of its `Arc`s made every task contend on their counts.
pub(crate) struct Prepared<'s, P> {
    pub integration: &'s str,
    pub model: &'s str,
    pub provider: &'s P,
    pub endpoint: &'s ModelEndpoint,
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
        serde_json::from_str(body.trim()).map_err(|e| {
            TaskError::new(
                TaskErrorKind::InvalidOutput,
                format!("`jsonOutput` is set but the model's answer is not valid JSON ({e})"),
            )
        })?
    } else {
        Value::String(c.text)
    };
    Ok(TaskOutput {
        result,
        finish_reason: c.finish_reason.as_ref().map(finish_reason_name),
        token_used: c.usage.total(),
        dimensions: None,
        prompt_tokens: c.usage.prompt_tokens,
        completion_tokens: c.usage.completion_tokens,
        headroom: None,
    })
}

/// An embeddings task's output: one vector for `text`, a list for `texts`,
/// after checking that every vector has the size the task or model promised.
pub(crate) fn embed_output(
    e: Embeddings,
    call: &EmbedCall,
    model: &str,
) -> Result<TaskOutput, TaskError> {
    let size = e.dimensions();
    if let Some(want) = call.dimensions {
        let len = |v: &Value| v.as_array().map_or(0, Vec::len);
        if let Some(v) = e.vectors.iter().find(|v| len(v) != want as usize) {
            return Err(TaskError::new(
                TaskErrorKind::InvalidOutput,
                format!(
                    "model `{model}` returned vectors of {} dimensions where {want} were expected",
                    len(v)
                ),
            ));
        }
    }
    let result = if call.single {
        e.vectors.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(e.vectors)
    };
    Ok(TaskOutput {
        result,
        finish_reason: None,
        token_used: e.usage.prompt_tokens,
        dimensions: u32::try_from(size).ok(),
        prompt_tokens: e.usage.prompt_tokens,
        completion_tokens: None,
        headroom: None,
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
/// refused before: unknown names), and the provider call or why not.
pub(crate) fn prepare<'s, P>(
    snap: &'s Snapshot<P>,
    principal: &Principal,
    task: &Task,
) -> (Decided, Result<Prepared<'s, P>, TaskError>) {
    let mut decided = None;
    let prepared = rules(snap, principal, task, &mut decided);
    (decided, prepared)
}

/// The rules, in order: unknown names, inactive, grants, the model's task kinds,
/// prompt variables, the prompt's model list; then the request.
fn rules<'s, P>(
    snap: &'s Snapshot<P>,
    principal: &Principal,
    task: &Task,
    decided: &mut Decided,
) -> Result<Prepared<'s, P>, TaskError> {
    let catalog = &snap.catalog;
    let not_found = |m: String| TaskError::new(TaskErrorKind::NotFound, m);
    let integration = catalog
        .integration(task.integration())
        .ok_or_else(|| not_found(unknown_integration(catalog, task.integration())))?;
    let model = integration
        .model(task.model())
        .ok_or_else(|| not_found(unknown_model(integration, task.model())))?;
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
    if !integration.is_active() {
        let m = format!("integration `{}` is inactive", integration.name());
        *decided = Some((false, DecisionText::Text(m.clone())));
        return Err(TaskError::new(TaskErrorKind::Inactive, m));
    }
    if !model.is_active() {
        let m = format!(
            "model `{}` of integration `{}` is inactive",
            model.name(),
            integration.name()
        );
        *decided = Some((false, DecisionText::Text(m.clone())));
        return Err(TaskError::new(TaskErrorKind::Inactive, m));
    }
    let policy = catalog.policy();
    let decision = policy.decide(principal, Access::Execute, model.target());
    if !decision.allowed {
        let message = format!("denied: {}", decision.reason);
        *decided = Some((false, DecisionText::Reason(decision.reason)));
        return Err(TaskError::new(TaskErrorKind::Denied, message));
    }
    let mut reason = DecisionText::Reason(decision.reason);
    if let Some(p) = prompt {
        let d = policy.decide(principal, Access::Read, &Target::Prompt(p.name().into()));
        if !d.allowed {
            let message = format!("denied: {}", d.reason);
            *decided = Some((false, DecisionText::Reason(d.reason)));
            return Err(TaskError::new(TaskErrorKind::Denied, message));
        }
        if let DecisionText::Reason(first) = reason {
            reason = DecisionText::Both(first, d.reason);
        }
    }
    *decided = Some((true, reason));
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
    let provider = snap
        .providers
        .get(integration.name())
        .ok_or_else(|| not_found(unknown_integration(catalog, integration.name())))?;
    Ok(Prepared {
        integration: integration.name(),
        model: model.name(),
        provider,
        endpoint: model.spec(),
        call,
        json_output,
        cost: std::num::NonZeroU32::new(task.cost()).unwrap_or(std::num::NonZeroU32::MIN),
    })
}
