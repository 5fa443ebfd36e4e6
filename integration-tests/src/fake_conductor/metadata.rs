//! The metadata and workflow API the fake Conductor takes definitions by,
//! as Conductor's own does: `POST /api/metadata/taskdefs` (a list of task
//! definitions), `POST /api/metadata/workflow` (a workflow definition of
//! `SIMPLE` tasks run in order), `GET` of both by name, and `POST
//! /api/workflow/{name}` (the input; answers the workflow id as text). A
//! started workflow schedules its tasks one after another, each task's
//! `inputParameters` resolved from `${workflow.input.…}` and
//! `${REF.output.…}`; it ends `COMPLETED` with its `outputParameters`
//! resolved, or `FAILED` when a task fails for good.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{Inner, WorkflowState};

/// One task of a workflow definition, ready to schedule.
#[derive(Debug, Clone)]
pub(super) struct Step {
    task_type: String,
    reference: String,
    input: Value,
    retry_count: u32,
    response_timeout: Duration,
}

/// A running workflow's definition and what its tasks produced.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub name: String,
    steps: Vec<Step>,
    next: usize,
    input: Value,
    outputs: Map<String, Value>,
    output_parameters: Value,
}

/// `${…}` resolved against the workflow's input and its tasks' outputs: a
/// string that is one expression becomes the value (any JSON), one holding
/// expressions among text gets their text; objects and lists recursively.
fn resolve(v: &Value, plan: &Plan) -> Value {
    match v {
        Value::String(s) => resolve_str(s, plan),
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, plan)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve(x, plan)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn lookup(expr: &str, plan: &Plan) -> Value {
    let mut parts = expr.split('.');
    let root = match (parts.next(), parts.next()) {
        (Some("workflow"), Some("input")) => &plan.input,
        (Some(r), Some("output")) => plan.outputs.get(r).unwrap_or(&Value::Null),
        _ => return Value::Null,
    };
    parts.fold(root.clone(), |v, k| {
        v.get(k).cloned().unwrap_or(Value::Null)
    })
}

fn resolve_str(s: &str, plan: &Plan) -> Value {
    if let Some(expr) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !expr.contains("${") {
            return lookup(expr, plan);
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        match lookup(&rest[start + 2..start + end], plan) {
            Value::String(t) => out.push_str(&t),
            Value::Null => {}
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Value::String(out)
}

fn bad(m: impl Into<String>) -> (u16, String) {
    (400, m.into())
}

impl Inner {
    /// `POST /api/metadata/taskdefs`.
    pub(super) fn register_taskdefs(&mut self, body: &Value) -> Result<(), (u16, String)> {
        let defs = body
            .as_array()
            .ok_or_else(|| bad("the body must be a list of task definitions"))?;
        for d in defs {
            let name = d
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            let name = name.ok_or_else(|| bad("a task definition needs a `name`"))?;
            self.taskdefs.insert(name.to_string(), d.clone());
        }
        Ok(())
    }

    /// `POST /api/metadata/workflow`.
    pub(super) fn register_workflow(&mut self, def: &Value) -> Result<(), (u16, String)> {
        let name = def
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| bad("a workflow definition needs a `name`"))?;
        let tasks = def
            .get("tasks")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty());
        let tasks = tasks.ok_or_else(|| bad(format!("workflow `{name}` has no tasks")))?;
        for t in tasks {
            let task = t.get("name").and_then(Value::as_str).unwrap_or_default();
            if t.get("taskReferenceName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(bad(format!(
                    "task `{task}` of `{name}` has no `taskReferenceName`"
                )));
            }
            if t.get("type").and_then(Value::as_str).unwrap_or("SIMPLE") != "SIMPLE" {
                return Err(bad(format!(
                    "the fake runs `SIMPLE` tasks only; `{task}` is not one"
                )));
            }
            if !self.taskdefs.contains_key(task) {
                return Err(bad(format!(
                    "no task definition `{task}`: register it first"
                )));
            }
        }
        self.workflow_defs.insert(name.to_string(), def.clone());
        Ok(())
    }

    /// `POST /api/workflow/{name}`: the new workflow's id.
    pub(super) fn start_workflow(
        &mut self,
        name: &str,
        input: Value,
    ) -> Result<String, (u16, String)> {
        let def = self
            .workflow_defs
            .get(name)
            .cloned()
            .ok_or_else(|| (404, format!("No such workflow defined. name={name}")))?;
        let steps: Vec<Step> = def["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let task_type = t["name"].as_str().unwrap_or_default().to_string();
                let td = self.taskdefs.get(&task_type);
                let n = |k: &str, d: u64| {
                    td.and_then(|d| d.get(k))
                        .and_then(Value::as_u64)
                        .unwrap_or(d)
                };
                Step {
                    reference: t["taskReferenceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    input: t.get("inputParameters").cloned().unwrap_or(Value::Null),
                    retry_count: u32::try_from(n("retryCount", 0)).unwrap_or(0),
                    response_timeout: Duration::from_secs(n("responseTimeoutSeconds", 600)),
                    task_type,
                }
            })
            .collect();
        let id = self.next_id("wf");
        let plan = Plan {
            name: name.to_string(),
            steps,
            next: 0,
            input,
            outputs: Map::new(),
            output_parameters: def.get("outputParameters").cloned().unwrap_or(Value::Null),
        };
        self.workflows.insert(
            id.clone(),
            WorkflowState {
                id: id.clone(),
                status: "RUNNING".into(),
                tasks: Vec::new(),
                created_by: None,
                owner_app: None,
                retry_limit: 0,
                plan: Some(plan),
                output: None,
            },
        );
        self.schedule_next(&id);
        Ok(id)
    }

    /// A task of a workflow with a plan completed with `output`: the next
    /// task, or the workflow's end.
    pub(super) fn advance(&mut self, workflow_id: &str, output: Value) {
        let Some(w) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        let Some(plan) = w.plan.as_mut() else {
            w.status = "COMPLETED".into();
            return;
        };
        if let Some(step) = plan.steps.get(plan.next) {
            plan.outputs.insert(step.reference.clone(), output);
        }
        plan.next += 1;
        self.schedule_next(workflow_id);
    }

    fn schedule_next(&mut self, workflow_id: &str) {
        let Some(w) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        let Some(plan) = w.plan.as_ref() else { return };
        match plan.steps.get(plan.next).cloned() {
            Some(step) => {
                let input = resolve(&step.input, plan);
                w.retry_limit = step.retry_count;
                self.new_task(
                    workflow_id,
                    &step.task_type,
                    input,
                    0,
                    step.response_timeout,
                );
            }
            None => {
                w.output = Some(resolve(&plan.output_parameters, plan));
                w.status = "COMPLETED".into();
            }
        }
    }
}
