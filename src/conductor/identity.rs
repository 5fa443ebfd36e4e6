//! As whom a polled task runs: the configured application, the subject the
//! engine wrote into `inputData._createdBy`, or whoever started the workflow
//! (looked up once per workflow and cached).

use crate::task::FailureKind;
use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::client::{ConductorClient, ConductorErrorKind, PolledTask};
use crate::access::{parse_id, IdSyntax, Subject};
use crate::runtime::WorkerIdentity;
use crate::task::Failure;

/// Workflow owners cached at most; the cache is emptied when it is full.
const CACHE_LIMIT: usize = 10_000;

/// `user:ID`, `app:NAME`, or a bare id (a user, as Orkes writes `_createdBy`).
pub(crate) fn subject_of(raw: &str, field: &str) -> Result<Subject, Failure> {
    parse_id(raw, IdSyntax::caller(field))
        .map_err(|e| Failure::terminal(FailureKind::INVALID_INPUT, e.to_string()))
}

pub(crate) struct Identities {
    mode: WorkerIdentity,
    workflows: Mutex<HashMap<String, Subject>>,
}

impl Identities {
    pub(crate) fn new(mode: WorkerIdentity) -> Identities {
        Identities {
            mode,
            workflows: Mutex::new(HashMap::new()),
        }
    }

    /// The subject `task` runs as.
    pub(crate) async fn subject(
        &self,
        client: &ConductorClient,
        task: &PolledTask,
        input: &Map<String, Value>,
    ) -> Result<Subject, Failure> {
        match &self.mode {
            WorkerIdentity::Fixed(app) => Ok(Subject::App(app.clone())),
            WorkerIdentity::TaskInput => match input.get("_createdBy") {
                Some(Value::String(s)) => subject_of(s, "inputData._createdBy"),
                Some(_) => Err(Failure::terminal(
                    FailureKind::INVALID_INPUT,
                    "`inputData._createdBy` is not a string",
                )),
                None => Err(Failure::terminal(
                    FailureKind::INVALID_INPUT,
                    "the task has no `inputData._createdBy`; with `worker.identity = \"task-input\"` the engine must set it",
                )),
            },
            WorkerIdentity::Workflow => self.workflow_subject(client, &task.workflow_instance_id).await,
        }
    }

    async fn workflow_subject(
        &self,
        client: &ConductorClient,
        workflow_id: &str,
    ) -> Result<Subject, Failure> {
        if let Some(s) = self
            .workflows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(workflow_id)
        {
            return Ok(s.clone());
        }
        let owner = client.workflow_owner(workflow_id).await.map_err(|e| {
            if e.is_retryable() {
                Failure::retry(FailureKind::ConductorUnavailable, e.to_string(), None)
            } else if e.kind() == ConductorErrorKind::Status(404) {
                Failure::terminal(FailureKind::NOT_FOUND, e.to_string())
            } else {
                Failure::retry(FailureKind::ConductorError, e.to_string(), None)
            }
        })?;
        let subject = match (&owner.created_by, &owner.owner_app) {
            (Some(c), _) if !c.trim().is_empty() => subject_of(c, "createdBy of the workflow")?,
            (_, Some(a)) if !a.trim().is_empty() => Subject::App(a.trim().into()),
            _ => {
                return Err(Failure::terminal(
                    FailureKind::DENIED,
                    format!("workflow `{workflow_id}` has neither `createdBy` nor `ownerApp`; nobody to run the task as"),
                ))
            }
        };
        let mut cache = self
            .workflows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(workflow_id.to_string(), subject.clone());
        Ok(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_by_forms() {
        assert_eq!(
            subject_of("ann@example.com", "f").ok(),
            Some(Subject::User("ann@example.com".into()))
        );
        assert_eq!(
            subject_of("app:batch", "f").ok(),
            Some(Subject::App("batch".into()))
        );
        assert_eq!(
            subject_of(" user:bo ", "f").ok(),
            Some(Subject::User("bo".into()))
        );
        assert!(subject_of("group:support", "f").is_err());
        assert!(subject_of("  ", "f").is_err());
        assert!(subject_of("app:", "f").is_err());
    }
}
