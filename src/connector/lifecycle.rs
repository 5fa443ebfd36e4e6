//! The lifecycle of a model's Inference Endpoint under the policy: its
//! status, a wait for it and a plan need `READ` on the model; pause, resume,
//! scale-to-zero, scale and apply need `UPDATE` (an apply that creates, also
//! `CREATE`); create needs `CREATE`; delete needs `DELETE`. The policy
//! decides first, with its reasons, and a refused operation makes no
//! upstream call. Create, plan and apply hold the endpoint to the model's
//! `deployment` block. Every operation leaves one audit event (target
//! `hfconnect::audit`: who, which operation, which endpoint, the decision and
//! the outcome) and one count in `hfconnect_endpoint_operations_total`.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::prepare::{refusal, unknown_model};
use super::snapshot::Snapshot;
use super::Core;
use crate::access::{Access, Decision, Principal};
use crate::catalog::{Integration, Model};
use crate::provider::huggingface::EndpointSpec;
use crate::provider::huggingface::{Drift, EndpointChange, HuggingFace, ManagedEndpoint};
use crate::task::{TaskError, TaskErrorKind};
use crate::untrusted::Field;

/// What is asked of a model's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointOperation {
    /// Its state, replicas and URL (`READ`).
    Status,
    /// Stop it; not billed until resumed (`UPDATE`).
    Pause,
    /// Start it again (`UPDATE`).
    Resume,
    /// Drop it to zero replicas; the next request wakes it (`UPDATE`).
    ScaleToZero,
    /// Set its replicas, and optionally its idle minutes before scaling to
    /// zero (`UPDATE`).
    Scale {
        /// The fewest replicas (0 allows scaling to zero).
        min: u32,
        /// The most replicas.
        max: u32,
        /// Idle minutes before it scales to zero.
        scale_to_zero_after: Option<u32>,
    },
    /// Remove it, irreversibly (`DELETE`).
    Delete,
    /// Create it from the model's `deployment` block (`CREATE`).
    Create,
    /// What differs between the `deployment` block and the live endpoint (`READ`).
    Plan,
    /// Change the live endpoint to match the `deployment` block (`UPDATE`;
    /// `CREATE` too when it does not exist).
    Apply,
}

impl EndpointOperation {
    /// The access it needs on the model.
    pub fn access(&self) -> Access {
        match self {
            EndpointOperation::Status | EndpointOperation::Plan => Access::Read,
            EndpointOperation::Delete => Access::Delete,
            EndpointOperation::Create => Access::Create,
            _ => Access::Update,
        }
    }

    /// Its name in audit events, metrics and the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointOperation::Status => "status",
            EndpointOperation::Pause => "pause",
            EndpointOperation::Resume => "resume",
            EndpointOperation::ScaleToZero => "scale-to-zero",
            EndpointOperation::Scale { .. } => "scale",
            EndpointOperation::Delete => "delete",
            EndpointOperation::Create => "create",
            EndpointOperation::Plan => "plan",
            EndpointOperation::Apply => "apply",
        }
    }

    fn change(&self) -> Option<EndpointChange> {
        Some(match *self {
            EndpointOperation::Status
            | EndpointOperation::Create
            | EndpointOperation::Plan
            | EndpointOperation::Apply => return None,
            EndpointOperation::Pause => EndpointChange::Pause,
            EndpointOperation::Resume => EndpointChange::Resume,
            EndpointOperation::ScaleToZero => EndpointChange::ScaleToZero,
            EndpointOperation::Delete => EndpointChange::Delete,
            EndpointOperation::Scale {
                min,
                max,
                scale_to_zero_after,
            } => {
                let mut scaling = json!({"minReplica": min, "maxReplica": max});
                if let Some(m) = scale_to_zero_after {
                    scaling["scaleToZeroTimeout"] = json!(m);
                }
                EndpointChange::Update(json!({"compute": {"scaling": scaling}}))
            }
        })
    }
}

/// What an endpoint operation did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EndpointAnswer {
    /// The integration and model asked about.
    pub integration: String,
    pub model: String,
    /// The operation.
    pub operation: &'static str,
    /// The Inference Endpoint's name.
    pub endpoint: String,
    /// Its state after the operation (`None` once deleted, or for a plan
    /// of one that does not exist).
    pub status: Option<ManagedEndpoint>,
    /// For create, plan and apply: `create`, `update`, `none`, or
    /// `recreate` (a field an update cannot change differs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// For plan and apply: where the live endpoint differed from the
    /// `deployment` block.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// The policy's decision, with its reason.
    #[serde(skip)]
    pub decision: Option<Decision>,
}

impl EndpointAnswer {
    /// Whether the endpoint is in a state that ends a wait as an error
    /// (`failed`, `updateFailed`): the error it is.
    pub fn failure(&self) -> Option<TaskError> {
        let state = self.status.as_ref()?.state.as_str();
        matches!(state, "failed" | "updateFailed").then(|| {
            TaskError::new(
                TaskErrorKind::Provider(crate::provider::ErrorKind::Upstream),
                format!(
                    "endpoint `{}` of model `{}` is `{state}`{}",
                    crate::untrusted::Untrusted(&self.endpoint),
                    crate::untrusted::Untrusted(&self.model),
                    self.status
                        .as_ref()
                        .and_then(|s| s.message.as_deref())
                        .map(|m| format!(": {}", crate::untrusted::Untrusted(m)))
                        .unwrap_or_default()
                ),
            )
        })
    }
}

/// A wait's progress: a state the endpoint entered, or it serving.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitStep {
    /// Its state (`running` once it serves too).
    pub state: String,
    /// Whether its health route answered.
    pub serving: bool,
    /// Since the wait began.
    pub elapsed: Duration,
}

type Failed = (TaskError, Option<Decision>);

/// What a plan finds: the action, the drift and the live endpoint.
fn plan_of(
    spec: &EndpointSpec,
    live: Option<ManagedEndpoint>,
) -> (&'static str, Vec<Drift>, Option<ManagedEndpoint>) {
    match live {
        None => ("create", Vec::new(), None),
        Some(live) => {
            let drift = spec.drift(&live.spec);
            let action = if drift.is_empty() {
                "none"
            } else if drift.iter().any(|d| !d.updatable) {
                "recreate"
            } else {
                "update"
            };
            (action, drift, Some(live))
        }
    }
}

impl Core<HuggingFace> {
    /// Do `op` on the Inference Endpoint of `model` of `integration` for
    /// `principal`, if the policy allows it.
    pub async fn manage_endpoint(
        &self,
        principal: &Principal,
        integration: &str,
        model: &str,
        op: EndpointOperation,
    ) -> Result<EndpointAnswer, TaskError> {
        let snap = self.state.load_full();
        let outcome = async {
            let needs_deployment = matches!(
                op,
                EndpointOperation::Create | EndpointOperation::Plan | EndpointOperation::Apply
            );
            let (i, provider, m, name, decision) =
                find(&snap, principal, integration, model, op.access(), needs_deployment).await?;
            let fail = |e, d: &Decision| (e, Some(d.clone()));
            let answer = |status, action, drift| EndpointAnswer {
                integration: i.name().to_string(),
                model: m.name().to_string(),
                operation: op.as_str(),
                endpoint: name.clone(),
                status,
                action,
                drift,
                decision: Some(decision.clone()),
            };
            let spec = || {
                m.deployment().ok_or_else(|| {
                    TaskError::new(
                        TaskErrorKind::InvalidInput,
                        format!(
                            "model `{}` of integration `{}` has no `deployment` block to {} its endpoint from",
                            m.name(),
                            i.name(),
                            op.as_str()
                        ),
                    )
                })
            };
            match op {
                EndpointOperation::Create => {
                    let spec = spec().map_err(|e| fail(e, &decision))?;
                    let status = provider
                        .change_endpoint(&name, &EndpointChange::Create(spec.create_body(&name)))
                        .await
                        .map_err(|e| fail(TaskError::from_provider(e), &decision))?;
                    Ok(answer(status, Some("create"), Vec::new()))
                }
                EndpointOperation::Plan | EndpointOperation::Apply => {
                    let spec = spec().map_err(|e| fail(e, &decision))?;
                    let live = match provider.endpoint(&name).await {
                        Ok(l) => Some(l),
                        Err(e) if e.kind == crate::provider::ErrorKind::NotFound => None,
                        Err(e) => return Err(fail(TaskError::from_provider(e), &decision)),
                    };
                    let (action, drift, live) = plan_of(spec, live);
                    if op == EndpointOperation::Plan {
                        return Ok(answer(live, Some(action), drift));
                    }
                    match action {
                        "none" => Ok(answer(live, Some(action), drift)),
                        "create" => {
                            let create = snap.catalog.policy().decide(principal, Access::Create, m.target());
                            if !create.allowed {
                                return Err((refusal(&create), Some(create)));
                            }
                            let status = provider
                                .change_endpoint(&name, &EndpointChange::Create(spec.create_body(&name)))
                                .await
                                .map_err(|e| fail(TaskError::from_provider(e), &create))?;
                            Ok(answer(status, Some(action), drift))
                        }
                        "recreate" => {
                            let fields: Vec<String> = drift
                                .iter()
                                .filter(|d| !d.updatable)
                                .map(|d| format!("`{}`", d.field))
                                .collect();
                            Err(fail(
                                TaskError::new(
                                    TaskErrorKind::InvalidInput,
                                    format!(
                                        "endpoint `{name}` differs from the `deployment` block of model `{}` in {}, which an update cannot change: delete the endpoint and create it again",
                                        m.name(),
                                        fields.join(", ")
                                    ),
                                ),
                                &decision,
                            ))
                        }
                        _ => {
                            let status = provider
                                .change_endpoint(&name, &EndpointChange::Update(spec.update_body(&drift)))
                                .await
                                .map_err(|e| fail(TaskError::from_provider(e), &decision))?;
                            Ok(answer(status, Some(action), drift))
                        }
                    }
                }
                _ => {
                    let status = match op.change() {
                        None => provider.endpoint(&name).await.map(Some),
                        Some(change) => provider.change_endpoint(&name, &change).await,
                    };
                    let status = status.map_err(|e| fail(TaskError::from_provider(e), &decision))?;
                    Ok(answer(status, None, Vec::new()))
                }
            }
        }
        .await;
        self.record(principal, integration, model, op.as_str(), &outcome);
        outcome.map_err(|(e, _)| e)
    }

    /// Wait, as `principal` (`READ` on the model), until the endpoint of
    /// `model` runs and its health route answers, telling `progress` each
    /// state it enters; `failed` and `updateFailed` end the wait as errors,
    /// and so does `timeout`.
    pub async fn wait_for_endpoint(
        &self,
        principal: &Principal,
        integration: &str,
        model: &str,
        timeout: Duration,
        poll: Duration,
        progress: &mut dyn FnMut(&WaitStep),
    ) -> Result<EndpointAnswer, TaskError> {
        let snap = self.state.load_full();
        let started = Instant::now();
        let outcome = async {
            let (i, provider, m, name, decision) =
                find(&snap, principal, integration, model, Access::Read, false).await?;
            let fail = |e| (e, Some(decision.clone()));
            let mut last: Option<(String, bool)> = None;
            loop {
                let status = provider
                    .endpoint(&name)
                    .await
                    .map_err(|e| fail(TaskError::from_provider(e)))?;
                let serving = status.state == "running" && provider.endpoint_serves(&status).await;
                let now = (status.state.clone(), serving);
                if last.as_ref() != Some(&now) {
                    progress(&WaitStep {
                        state: now.0.clone(),
                        serving,
                        elapsed: started.elapsed(),
                    });
                    last = Some(now);
                }
                let answer = EndpointAnswer {
                    integration: i.name().to_string(),
                    model: m.name().to_string(),
                    operation: "wait",
                    endpoint: name.clone(),
                    status: Some(status),
                    action: None,
                    drift: Vec::new(),
                    decision: Some(decision.clone()),
                };
                if serving {
                    return Ok(answer);
                }
                if let Some(e) = answer.failure() {
                    return Err(fail(e));
                }
                if started.elapsed() + poll > timeout {
                    let state = answer.status.as_ref().map_or("", |s| s.state.as_str());
                    return Err(fail(TaskError::new(
                        TaskErrorKind::Provider(crate::provider::ErrorKind::Timeout),
                        format!(
                            "endpoint `{name}` of model `{}` is still `{state}`{} after {} s",
                            m.name(),
                            if state == "running" {
                                " but its health route does not answer"
                            } else {
                                ""
                            },
                            timeout.as_secs()
                        ),
                    )));
                }
                tokio::time::sleep(poll).await;
            }
        }
        .await;
        self.record(principal, integration, model, "wait", &outcome);
        outcome.map_err(|(e, _)| e)
    }

    /// One audit event and one count for an endpoint operation.
    fn record(
        &self,
        principal: &Principal,
        integration: &str,
        model: &str,
        operation: &'static str,
        outcome: &Result<EndpointAnswer, Failed>,
    ) {
        let snap = self.state.load_full();
        let labels = snap.labels_of(integration, model);
        // A failed operation names the endpoint when the config does.
        let named = snap
            .catalog
            .integration(integration)
            .and_then(|i| i.model(model))
            .and_then(Model::inference_endpoint)
            .unwrap_or("");
        let (kind, decision, endpoint) = match outcome {
            Ok(a) => ("ok", "allowed", a.endpoint.as_str()),
            Err((e, d)) => (
                e.kind().as_str(),
                match d {
                    Some(d) if d.allowed => "allowed",
                    Some(_) => "denied",
                    None => "not_reached",
                },
                named,
            ),
        };
        self.metrics
            .endpoint_operations
            .with_label_values(&[operation, kind, labels.integration, labels.model])
            .inc();
        let reason = match outcome {
            Ok(a) => a.decision.as_ref().map(|d| d.reason.to_string()),
            Err((_, d)) => d.as_ref().map(|d| d.reason.to_string()),
        }
        .unwrap_or_default();
        tracing::info!(
            target: "hfconnect::audit",
            caller = %super::audit::caller_field(principal.subject()),
            integration = %Field::new(integration),
            model = %Field::new(model),
            operation,
            endpoint = %Field::new(endpoint),
            decision,
            reason = %Field::text(&reason),
            outcome = kind,
            "endpoint"
        );
    }
}

/// The integration, its provider, the model and its endpoint's name, once
/// the policy allows `access`: a refusal, an unknown name or an endpoint
/// nobody can find is the error (with the decision, once made).
async fn find<'s>(
    snap: &'s Snapshot<HuggingFace>,
    principal: &Principal,
    integration: &str,
    model: &str,
    access: Access,
    needs_deployment: bool,
) -> Result<
    (
        &'s Integration,
        &'s HuggingFace,
        &'s Model,
        String,
        Decision,
    ),
    Failed,
> {
    let (i, provider) = snap
        .integration(integration)
        .map_err(|e| (TaskError::new(TaskErrorKind::NotFound, e.to_string()), None))?;
    let m: &Model = i.model(model).ok_or_else(|| {
        (
            TaskError::new(TaskErrorKind::NotFound, unknown_model(i, model)),
            None,
        )
    })?;
    let decision = snap.catalog.policy().decide(principal, access, m.target());
    if !decision.allowed {
        return Err((refusal(&decision), Some(decision)));
    }
    if needs_deployment && m.deployment().is_none() {
        let e = TaskError::new(
            TaskErrorKind::InvalidInput,
            format!(
                "model `{}` of integration `{}` has no `deployment` block to hold its endpoint to",
                m.name(),
                i.name()
            ),
        );
        return Err((e, Some(decision)));
    }
    if let Some(named) = m.inference_endpoint() {
        return Ok((i, provider, m, named.to_string(), decision));
    }
    let list = match provider.endpoints().await {
        Ok(l) => l,
        Err(e) => return Err((TaskError::from_provider(e), Some(decision))),
    };
    match list.into_iter().find(|e| e.serves(m.endpoint().as_str())) {
        Some(e) => Ok((i, provider, m, e.name, decision)),
        None => Err((
            TaskError::new(
                TaskErrorKind::NotFound,
                format!(
                    "no Inference Endpoint of namespace `{}` serves model `{}` of integration `{}` (its URL `{}`)",
                    i.namespace().unwrap_or_default(),
                    m.name(),
                    i.name(),
                    m.endpoint()
                ),
            ),
            Some(decision),
        )),
    }
}
