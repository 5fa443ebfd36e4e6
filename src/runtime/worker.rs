//! The `[worker]` section: how `hfconnect worker`
//! polls Conductor, as whom its tasks run, and how it authenticates to Orkes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::catalog::{ApiKey, TaskKind};

/// As whom the worker runs a task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerIdentity {
    /// Every task runs as this application.
    Fixed(Arc<str>),
    /// The subject in `inputData._createdBy` (`user:ID`, `app:NAME`, or a bare user id).
    TaskInput,
    /// The subject that started the workflow (`createdBy`, else `ownerApp`), cached per workflow.
    Workflow,
}

/// Orkes application credentials: exchanged for a token at `POST /token`.
#[derive(Debug, Clone)]
pub struct ConductorAuth {
    /// The key id (not a secret).
    pub key_id: String,
    /// The key secret, resolved from its location (redacted in Debug).
    pub key_secret: ApiKey,
}

/// A worker task that acts on a model's Inference Endpoint, so a workflow
/// can bracket a batch: resume before, pause after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointTask {
    /// Resume it, and report `IN_PROGRESS` (polled again) until it runs.
    Resume,
    /// Pause it.
    Pause,
    /// Set its replicas (`minReplica`, `maxReplica`, `scaleToZeroAfter`).
    Scale,
}

impl EndpointTask {
    /// The task type it is polled as by default.
    pub fn conductor_type(self) -> &'static str {
        match self {
            EndpointTask::Resume => "HF_ENDPOINT_RESUME",
            EndpointTask::Pause => "HF_ENDPOINT_PAUSE",
            EndpointTask::Scale => "HF_ENDPOINT_SCALE",
        }
    }
}

/// The validated `[worker]` section.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The Conductor API base (`http://host:8080/api`); `--conductor-url` overrides it.
    pub conductor_url: Option<Url>,
    /// Conductor task types and the task each one runs.
    pub task_types: Vec<(String, TaskKind)>,
    /// Conductor task types that act on a model's Inference Endpoint (none
    /// unless `task_types` names them).
    pub endpoint_task_types: Vec<(String, EndpointTask)>,
    /// As whom tasks run.
    pub identity: WorkerIdentity,
    /// The `workerid` sent with polls and reports; the host name and pid when unset.
    pub worker_id: Option<String>,
    /// The task domain to poll, if any.
    pub domain: Option<String>,
    /// Tasks run at once, over all task types.
    pub concurrency: NonZeroU32,
    /// Tasks asked for per poll (never more than the free slots).
    pub batch: NonZeroU32,
    /// How long a poll waits on the server for tasks (Conductor's long-poll).
    pub poll_timeout: Duration,
    /// How long running tasks may take to finish and report after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Orkes credentials, when the server wants them.
    pub auth: Option<ConductorAuth>,
}

impl WorkerSettings {
    /// Defaults for the given identity: the three Orkes task types, 8 at once,
    /// batches of 8, 1 s long-polls, 30 s grace.
    pub fn new(identity: WorkerIdentity) -> WorkerSettings {
        WorkerSettings {
            conductor_url: None,
            task_types: TaskKind::ALL
                .iter()
                .map(|k| (k.conductor_type().to_string(), *k))
                .collect(),
            endpoint_task_types: Vec::new(),
            identity,
            worker_id: None,
            domain: None,
            concurrency: NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN),
            batch: NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN),
            poll_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            auth: None,
        }
    }
}
