//! The lifecycle of a model's Inference Endpoint under the policy: its
//! status needs `READ` on the model; pause, resume, scale-to-zero and scale
//! need `UPDATE`; delete needs `DELETE` (create, `CREATE`). The policy
//! decides first, with its reasons, and a refused operation makes no
//! upstream call. Every operation leaves one audit event (target
//! `hfconnect::audit`: who, which operation, which endpoint, the decision and
//! the outcome) and one count in `hfconnect_endpoint_operations_total`.

use serde::Serialize;
use serde_json::json;

use super::prepare::{refusal, unknown_model};
use super::Core;
use crate::access::{Access, Decision, Principal};
use crate::catalog::Model;
use crate::provider::huggingface::{EndpointChange, HuggingFace, ManagedEndpoint};
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
}

impl EndpointOperation {
    /// The access it needs on the model.
    pub fn access(&self) -> Access {
        match self {
            EndpointOperation::Status => Access::Read,
            EndpointOperation::Delete => Access::Delete,
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
        }
    }

    fn change(&self) -> Option<EndpointChange> {
        Some(match *self {
            EndpointOperation::Status => return None,
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
    /// Its state after the operation (`None` once deleted).
    pub status: Option<ManagedEndpoint>,
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
        let outcome: Result<EndpointAnswer, (TaskError, Option<Decision>)> = async {
            let (i, provider) = snap
                .integration(integration)
                .map_err(|e| (TaskError::new(TaskErrorKind::NotFound, e.to_string()), None))?;
            let m: &Model = i
                .model(model)
                .ok_or_else(|| (TaskError::new(TaskErrorKind::NotFound, unknown_model(i, model)), None))?;
            let decision = snap
                .catalog
                .policy()
                .decide(principal, op.access(), m.target());
            if !decision.allowed {
                return Err((refusal(&decision), Some(decision)));
            }
            let found = async {
                if let Some(named) = m.inference_endpoint() {
                    return Ok(named.to_string());
                }
                let list = provider.endpoints().await.map_err(TaskError::from_provider)?;
                list.into_iter()
                    .find(|e| e.serves(m.endpoint().as_str()))
                    .map(|e| e.name)
                    .ok_or_else(|| {
                        TaskError::new(
                            TaskErrorKind::NotFound,
                            format!(
                                "no Inference Endpoint of namespace `{}` serves model `{}` of integration `{}` (its URL `{}`)",
                                i.namespace().unwrap_or_default(),
                                m.name(),
                                i.name(),
                                m.endpoint()
                            ),
                        )
                    })
            }
            .await;
            let name = match found {
                Ok(n) => n,
                Err(e) => return Err((e, Some(decision))),
            };
            let status = match op.change() {
                None => provider.endpoint(&name).await.map(Some),
                Some(change) => provider.change_endpoint(&name, &change).await,
            };
            match status {
                Ok(status) => Ok(EndpointAnswer {
                    integration: i.name().to_string(),
                    model: m.name().to_string(),
                    operation: op.as_str(),
                    endpoint: name,
                    status,
                    decision: Some(decision),
                }),
                Err(e) => Err((TaskError::from_provider(e), Some(decision))),
            }
        }
        .await;
        let labels = snap.labels_of(integration, model);
        let (kind, decision, endpoint) = match &outcome {
            Ok(a) => ("ok", "allowed", a.endpoint.as_str()),
            Err((e, d)) => (
                e.kind().as_str(),
                match d {
                    Some(d) if d.allowed => "allowed",
                    Some(_) => "denied",
                    None => "not_reached",
                },
                "",
            ),
        };
        self.metrics
            .endpoint_operations
            .with_label_values(&[op.as_str(), kind, labels.integration, labels.model])
            .inc();
        let reason = match &outcome {
            Ok(a) => a.decision.as_ref().map(|d| d.reason.to_string()),
            Err((_, d)) => d.as_ref().map(|d| d.reason.to_string()),
        }
        .unwrap_or_default();
        tracing::info!(
            target: "hfconnect::audit",
            caller = %super::audit::caller_field(principal.subject()),
            integration = %Field::new(integration),
            model = %Field::new(model),
            operation = op.as_str(),
            endpoint = %Field::new(endpoint),
            decision,
            reason = %Field::text(&reason),
            outcome = kind,
            "endpoint"
        );
        outcome.map_err(|(e, _)| e)
    }
}
