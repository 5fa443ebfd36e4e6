//! The poll loop: one poller per task type sharing a pool of task slots,
//! each task run through the Connector and reported with its logs; backoff
//! when Conductor is down; on shutdown, no new polls, in-flight tasks finish
//! and report within the grace period.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::client::{ConductorClient, PolledTask, ReportStatus, TaskLog, TaskResult};
use super::identity::Identities;
use crate::catalog::TaskKind;
use crate::connector::{Connector, EndpointAnswer, EndpointOperation, TaskRequest};
use crate::retry::Backoff;
use crate::runtime::{EndpointTask, WorkerSettings};
use crate::task::{Door, Failure, FailureKind, Task};
use crate::untrusted::{Field, Untrusted};

/// A report that cannot be delivered for this long is given up: the task is
/// left for Conductor to re-queue after its response timeout.
const REPORT_PATIENCE: Duration = Duration::from_secs(60);
/// Backoff bounds when Conductor is down or failing.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A poll that returned nothing faster than this did not wait (a server that
/// ignores `timeout`): pause before the next one instead of spinning.
const EMPTY_POLL_PAUSE: Duration = Duration::from_millis(100);

/// Why the worker cannot start.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WorkerError(String);

/// What a worker did, counted from its start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Tasks received from polls.
    pub polled: u64,
    /// Reported `COMPLETED`.
    pub completed: u64,
    /// Reported `FAILED` (Conductor retries them).
    pub failed: u64,
    /// Reported `FAILED_WITH_TERMINAL_ERROR`.
    pub terminal: u64,
    /// Reported `IN_PROGRESS` with a callback (rate limited or loading).
    pub deferred: u64,
    /// Results that could not be reported (left for Conductor to re-queue).
    pub unreported: u64,
    /// Polls that failed.
    pub poll_errors: u64,
}

/// What the worker counts, as Prometheus metrics in the Connector's registry
/// (`hfconnect worker --metrics-listen`); the report at the end reads them.
struct Counters {
    polls: IntCounter,
    poll_errors: IntCounter,
    polled: IntCounter,
    reports: IntCounterVec,
    report_retries: IntCounter,
    dropped: IntCounter,
}

impl Counters {
    fn new(connector: &Connector) -> Result<Counters, prometheus::Error> {
        let c = Counters {
            polls: IntCounter::new("hfconnect_worker_polls_total", "Polls sent to Conductor")?,
            poll_errors: IntCounter::new(
                "hfconnect_worker_poll_errors_total",
                "Polls that failed (Conductor down or answering an error)",
            )?,
            polled: IntCounter::new(
                "hfconnect_worker_tasks_polled_total",
                "Tasks received from polls",
            )?,
            reports: IntCounterVec::new(
                Opts::new(
                    "hfconnect_worker_reports_total",
                    "Task results delivered to Conductor, by status",
                ),
                &["status"],
            )?,
            report_retries: IntCounter::new(
                "hfconnect_worker_report_retries_total",
                "Report attempts that failed and were tried again",
            )?,
            dropped: IntCounter::new(
                "hfconnect_worker_reports_dropped_total",
                "Results that could not be delivered (Conductor re-queues the task)",
            )?,
        };
        let m = connector.core().metrics();
        for collector in [
            Box::new(c.polls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(c.poll_errors.clone()),
            Box::new(c.polled.clone()),
            Box::new(c.reports.clone()),
            Box::new(c.report_retries.clone()),
            Box::new(c.dropped.clone()),
        ] {
            match m.register(collector) {
                // A second worker on one connector counts for itself only.
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    fn report(&self) -> WorkerReport {
        let status = |s: ReportStatus| self.reports.with_label_values(&[s.as_str()]).get();
        WorkerReport {
            polled: self.polled.get(),
            completed: status(ReportStatus::Completed),
            failed: status(ReportStatus::Failed),
            terminal: status(ReportStatus::FailedWithTerminalError),
            deferred: status(ReportStatus::InProgress),
            unreported: self.dropped.get(),
            poll_errors: self.poll_errors.get(),
        }
    }
}

struct Inner {
    connector: Arc<Connector>,
    client: ConductorClient,
    settings: WorkerSettings,
    worker_id: String,
    kinds: HashMap<String, Work>,
    identities: Identities,
    counters: Counters,
}

/// A Conductor worker running tasks through a [`Connector`].
pub struct Worker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.inner.worker_id)
            .field("conductor", &self.inner.client)
            .finish_non_exhaustive()
    }
}

/// `hfconnect-<host>-<pid>`.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("hfconnect-{host}-{}", std::process::id())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sleep for `d`, or less when the worker is told to stop.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

impl Worker {
    /// A worker for the Conductor API at `conductor_url`, running tasks through `connector`.
    pub fn new(
        connector: Arc<Connector>,
        settings: WorkerSettings,
        conductor_url: &Url,
    ) -> Result<Worker, WorkerError> {
        let auth = match &settings.auth {
            None => None,
            Some(a) => {
                let secret = a.key_secret.secret().map_err(|why| {
                    WorkerError(format!("the worker's `key_secret` is not available: {why}"))
                })?;
                Some((a.key_id.clone(), secret.clone()))
            }
        };
        let client =
            ConductorClient::new(conductor_url, auth).map_err(|e| WorkerError(e.to_string()))?;
        let worker_id = settings.worker_id.clone().unwrap_or_else(default_worker_id);
        let kinds = settings
            .task_types
            .iter()
            .map(|(t, k)| (t.clone(), Work::Task(*k)))
            .chain(
                settings
                    .endpoint_task_types
                    .iter()
                    .map(|(t, e)| (t.clone(), Work::Endpoint(*e))),
            )
            .collect();
        let identities = Identities::new(settings.identity.clone());
        let counters = Counters::new(&connector)
            .map_err(|e| WorkerError(format!("the worker's metrics cannot be registered: {e}")))?;
        Ok(Worker {
            inner: Arc::new(Inner {
                connector,
                client,
                settings,
                worker_id,
                kinds,
                identities,
                counters,
            }),
        })
    }

    /// The `workerid` this worker polls with.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Poll and run tasks until `shutdown` resolves; then stop polling, let
    /// running tasks finish and report within the grace period, and return
    /// what was done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let inner = self.inner;
        let s = &inner.settings;
        let slots_total = s.concurrency.get() as usize;
        let slots = Arc::new(Semaphore::new(slots_total));
        let (stop_tx, stop_rx) = watch::channel(false);
        tracing::info!(
            worker_id = %inner.worker_id,
            conductor = %inner.client.base(),
            task_types = ?inner.kinds.keys().map(String::as_str).collect::<Vec<_>>(),
            concurrency = slots_total,
            "hfconnect worker polling"
        );
        let mut pollers = tokio::task::JoinSet::new();
        for task_type in inner.kinds.keys() {
            pollers.spawn(poll_loop(
                inner.clone(),
                task_type.clone(),
                slots.clone(),
                stop_rx.clone(),
            ));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        let grace = s.shutdown_grace;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "stopping: no new polls; finishing and reporting running tasks"
        );
        let deadline = Instant::now() + grace;
        let joined = tokio::time::timeout(grace, async {
            while pollers.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            pollers.abort_all();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let all = u32::try_from(slots_total).unwrap_or(u32::MAX);
        if tokio::time::timeout(left, slots.acquire_many(all))
            .await
            .is_err()
        {
            let running = slots_total - slots.available_permits();
            tracing::warn!(
                running,
                "grace period over: tasks still running are not reported; Conductor re-queues them"
            );
        }
        let report = inner.counters.report();
        tracing::info!(
            polled = report.polled,
            completed = report.completed,
            failed = report.failed,
            terminal = report.terminal,
            deferred = report.deferred,
            unreported = report.unreported,
            poll_errors = report.poll_errors,
            "hfconnect worker stopped"
        );
        report
    }
}

async fn poll_loop(
    inner: Arc<Inner>,
    task_type: String,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let s = &inner.settings;
    let batch = s.batch.get() as usize;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        if *stop.borrow() {
            break;
        }
        // Wait for a free slot without keeping it: a long poll must not hold
        // slots, or an idle task type would starve a busy one.
        tokio::select! {
            p = slots.acquire() => match p {
                Ok(p) => drop(p),
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let want = slots.available_permits().clamp(1, batch);
        let started = Instant::now();
        // A poll already sent is not abandoned on shutdown: the tasks it brings
        // are run and reported, not left to time out.
        inner.counters.polls.inc();
        let polled = inner
            .client
            .poll_batch(
                &task_type,
                &inner.worker_id,
                u32::try_from(want).unwrap_or(1),
                s.poll_timeout,
                s.domain.as_deref(),
            )
            .await;
        match polled {
            Ok(tasks) => {
                backoff.reset();
                let empty = tasks.is_empty();
                for task in tasks {
                    inner.counters.polled.inc();
                    // Pollers of other types may have taken the slots meanwhile:
                    // the task waits for one (the bound on running tasks holds).
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    tokio::spawn(run_task(inner.clone(), task, permit));
                }
                // Also covers `poll_timeout = 0`: an empty answer that came
                // back at once is followed by a short pause, never a spin.
                let took = started.elapsed();
                if empty && took < EMPTY_POLL_PAUSE {
                    pause(EMPTY_POLL_PAUSE - took, &mut stop).await;
                }
            }
            Err(e) => {
                inner.counters.poll_errors.inc();
                let wait = backoff.next_wait();
                tracing::warn!(task_type, error = %e, retry_in_ms = wait.as_millis() as u64, "poll failed");
                pause(wait, &mut stop).await;
            }
        }
    }
}

/// Run one task and report it; the permit is its slot.
async fn run_task(inner: Arc<Inner>, task: PolledTask, _slot: OwnedSemaphorePermit) {
    let started = Instant::now();
    let mut logs = Vec::new();
    let outcome = execute(&inner, &task, &mut logs).await;
    let mut result = TaskResult {
        workflow_instance_id: task.workflow_instance_id.clone(),
        task_id: task.task_id.clone(),
        status: ReportStatus::Completed,
        output_data: Map::new(),
        reason_for_incompletion: None,
        callback_after_seconds: None,
        worker_id: inner.worker_id.clone(),
        logs: Vec::new(),
    };
    let elapsed = started.elapsed().as_millis();
    let line = match outcome {
        Ok(Done::Endpoint(answer, again)) => {
            let state = answer
                .status
                .as_ref()
                .map_or("deleted", |s| s.state.as_str())
                .to_string();
            if let Ok(Value::Object(m)) = serde_json::to_value(&answer) {
                result.output_data = m;
            }
            match again {
                Some(secs) => {
                    result.status = ReportStatus::InProgress;
                    result.callback_after_seconds = Some(secs);
                    format!(
                        "IN_PROGRESS in {elapsed} ms: endpoint `{}` is `{}`, again in {secs} s",
                        Untrusted(&answer.endpoint),
                        Untrusted(&state)
                    )
                }
                None => format!(
                    "COMPLETED in {elapsed} ms: endpoint `{}` is `{}`",
                    Untrusted(&answer.endpoint),
                    Untrusted(&state)
                ),
            }
        }
        Ok(Done::Task(output)) => {
            let summary = format!(
                "COMPLETED in {elapsed} ms: finishReason {}, {} tokens",
                output
                    .finish_reason
                    .as_ref()
                    .map_or("-".into(), crate::task::orkes_finish_reason_name),
                output
                    .token_used
                    .map_or_else(|| "unknown".to_string(), |n| n.to_string())
            );
            match serde_json::to_value(&output) {
                Ok(Value::Object(m)) => {
                    result.output_data = m;
                    summary
                }
                _ => {
                    let f = Failure::terminal(
                        FailureKind::Internal,
                        "the task output cannot be written as JSON",
                    );
                    result.reason(&format!("{}: {}", f.kind, f.message));
                    result.status = ReportStatus::FailedWithTerminalError;
                    format!(
                        "{} in {elapsed} ms ({}): {}",
                        result.status.as_str(),
                        f.kind,
                        f.message
                    )
                }
            }
        }
        Err(f) => {
            result.output_data = match f.body() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            result.reason(&format!("{}: {}", f.kind, f.message));
            result.status = match (f.retryable, f.retry_after_secs()) {
                (false, _) => ReportStatus::FailedWithTerminalError,
                (true, Some(secs)) => {
                    result.callback_after_seconds = Some(secs.min(3600));
                    ReportStatus::InProgress
                }
                (true, None) => ReportStatus::Failed,
            };
            let again = result
                .callback_after_seconds
                .map(|s| format!(", again in {s} s"))
                .unwrap_or_default();
            format!(
                "{} in {elapsed} ms ({}){again}: {}",
                result.status.as_str(),
                f.kind,
                f.message
            )
        }
    };
    logs.push(line);
    let created = now_ms();
    result.logs = logs
        .into_iter()
        .map(|log| TaskLog {
            log,
            task_id: task.task_id.clone(),
            created_time: created,
        })
        .collect();
    report(&inner, &result).await;
}

/// Deliver a result, retrying while Conductor is down for up to [`REPORT_PATIENCE`].
async fn report(inner: &Inner, result: &TaskResult) {
    let give_up = Instant::now() + REPORT_PATIENCE;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        match inner.client.update(result).await {
            Ok(()) => {
                inner
                    .counters
                    .reports
                    .with_label_values(&[result.status.as_str()])
                    .inc();
                tracing::debug!(task_id = %Field::new(&result.task_id), status = result.status.as_str(), "reported");
                return;
            }
            Err(e) if e.is_retryable() && Instant::now() < give_up => {
                inner.counters.report_retries.inc();
                let wait = backoff.next_wait();
                tracing::warn!(task_id = %Field::new(&result.task_id), error = %e, retry_in_ms = wait.as_millis() as u64, "report failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                inner.counters.dropped.inc();
                tracing::error!(
                    task_id = %Field::new(&result.task_id),
                    workflow_id = %Field::new(&result.workflow_instance_id),
                    status = result.status.as_str(),
                    error = %e,
                    "cannot report the task; Conductor re-queues it after its response timeout"
                );
                return;
            }
        }
    }
}

/// Parse the input as the task its type runs: keys starting with `_` are the
/// engine's (`_createdBy`, `_group`) and not part of the task.
fn task_of(kind: TaskKind, task_type: &str, input: &Map<String, Value>) -> Result<Task, Failure> {
    let fields: Map<String, Value> = input
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Task::from_json(kind, Value::Object(fields)).map_err(|e| {
        Failure::terminal(
            FailureKind::INVALID_INPUT,
            format!(
                "the input of `{}` task is invalid: {}",
                Untrusted(task_type),
                Untrusted(&e.to_string())
            ),
        )
    })
}

/// What a polled task type runs.
#[derive(Debug, Clone, Copy)]
enum Work {
    Task(TaskKind),
    Endpoint(EndpointTask),
}

/// What a polled task gave: a task's output, or an endpoint operation's
/// answer and, while the endpoint is still starting, when to look again.
enum Done {
    Task(crate::task::TaskOutput),
    Endpoint(Box<EndpointAnswer>, Option<u64>),
}

/// Run a polled task through the Connector: its output, or why not.
async fn execute(
    inner: &Inner,
    task: &PolledTask,
    logs: &mut Vec<String>,
) -> Result<Done, Failure> {
    let Some(&work) = inner.kinds.get(&task.task_type) else {
        return Err(Failure::terminal(
            FailureKind::INVALID_INPUT,
            format!(
                "this worker does not run task type `{}`",
                Untrusted(&task.task_type)
            ),
        ));
    };
    let empty = Map::new();
    let input = task.input_data.as_ref().unwrap_or(&empty);
    let group = match input.get("_group") {
        None | Some(Value::Null) => None,
        Some(Value::String(g)) if !g.trim().is_empty() => Some(g.trim()),
        Some(_) => {
            return Err(Failure::terminal(
                FailureKind::INVALID_INPUT,
                "`inputData._group` must be a group name",
            ))
        }
    };
    let subject = inner.identities.subject(&inner.client, task, input).await?;
    let kind = match work {
        Work::Task(k) => k,
        Work::Endpoint(e) => {
            let principal = inner.connector.principal(&subject, group)?;
            return endpoint_task(inner, task, input, e, &principal, logs)
                .await
                .map(|(a, again)| Done::Endpoint(Box::new(a), again));
        }
    };
    let t = task_of(kind, &task.task_type, input)?;
    let scope = group
        .map(|g| format!(" in group `{}`", Untrusted(g)))
        .unwrap_or_default();
    logs.push(format!(
        "hfconnect worker `{}`: `{}` as `{subject}`{scope} on `{}/{}`",
        Untrusted(&inner.worker_id),
        Untrusted(&task.task_type),
        Untrusted(t.integration()),
        Untrusted(t.model())
    ));
    let principal = inner.connector.principal(&subject, group)?;
    // One decision, taken once, and the result it led to.
    let ran = inner
        .connector
        .run(TaskRequest::new(&principal, &t).via(Door::Worker))
        .await;
    if let Some(d) = &ran.decision {
        logs.push(format!(
            "decision: {} ({})",
            if d.allowed { "allowed" } else { "denied" },
            d.reason
        ));
    }
    Ok(Done::Task(ran.output()?))
}

/// An endpoint task: `llmProvider` and `model` name the model whose
/// endpoint it acts on; a scale takes `minReplica`, `maxReplica` and
/// `scaleToZeroAfter` (minutes); a resume takes `pollSeconds` (10 by
/// default, 1 to 300), how often it is looked at again while it starts. A
/// resume looks first: one already starting is not resumed again, one
/// running completes at once.
async fn endpoint_task(
    inner: &Inner,
    task: &PolledTask,
    input: &Map<String, Value>,
    kind: EndpointTask,
    principal: &crate::access::Principal,
    logs: &mut Vec<String>,
) -> Result<(EndpointAnswer, Option<u64>), Failure> {
    let bad = |m: String| Failure::terminal(FailureKind::INVALID_INPUT, m);
    let text = |k: &str| -> Result<String, Failure> {
        match input.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(bad(format!(
                "the input of `{}` task needs `{k}`",
                Untrusted(&task.task_type)
            ))),
        }
    };
    let number = |k: &str| -> Result<Option<u32>, Failure> {
        match input.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("`{k}` must be a whole number"))),
        }
    };
    let (integration, model) = (text("llmProvider")?, text("model")?);
    logs.push(format!(
        "hfconnect worker `{}`: `{}` on the endpoint of `{}/{}`",
        Untrusted(&inner.worker_id),
        Untrusted(&task.task_type),
        Untrusted(&integration),
        Untrusted(&model)
    ));
    let core = inner.connector.core();
    let run = |op| core.manage_endpoint(principal, &integration, &model, op);
    let answer = match kind {
        EndpointTask::Pause => run(EndpointOperation::Pause).await?,
        EndpointTask::Scale => {
            let (Some(min), Some(max)) = (number("minReplica")?, number("maxReplica")?) else {
                return Err(bad("a scale needs `minReplica` and `maxReplica`".into()));
            };
            if min > max {
                return Err(bad(format!(
                    "`minReplica` ({min}) is more than `maxReplica` ({max})"
                )));
            }
            run(EndpointOperation::Scale {
                min,
                max,
                scale_to_zero_after: number("scaleToZeroAfter")?,
            })
            .await?
        }
        EndpointTask::Resume => {
            let poll = u64::from(number("pollSeconds")?.unwrap_or(10).clamp(1, 300));
            let now = run(EndpointOperation::Status).await?;
            let state = now
                .status
                .as_ref()
                .map(|s| s.state.clone())
                .unwrap_or_default();
            let answer = match state.as_str() {
                "running" => return Ok((now, None)),
                "pending" | "initializing" | "updating" => now,
                "failed" | "updateFailed" => {
                    let e = now.failure().unwrap_or_else(|| {
                        crate::task::TaskError::new(
                            crate::task::TaskErrorKind::InvalidOutput,
                            format!(
                                "endpoint `{}` is `{}`",
                                Untrusted(&now.endpoint),
                                Untrusted(&state)
                            ),
                        )
                    });
                    let mut f = Failure::from(e);
                    f.retryable = false;
                    return Err(f);
                }
                _ => run(EndpointOperation::Resume).await?,
            };
            let running = answer.status.as_ref().is_some_and(|s| s.state == "running");
            return Ok((answer, (!running).then_some(poll)));
        }
    };
    Ok((answer, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_fields_are_not_task_fields() {
        let input = json!({"llmProvider": "hf", "model": "m", "prompt": "p", "_createdBy": "ann", "_group": "g"});
        let Value::Object(m) = input else {
            unreachable!()
        };
        let t = task_of(TaskKind::TextGeneration, "LLM_TEXT_COMPLETE", &m);
        assert!(matches!(t, Ok(Task::TextComplete(_))));
        let bad = json!({"llmProvider": "hf", "model": "m", "promt": "p"});
        let Value::Object(m) = bad else {
            unreachable!()
        };
        let e = task_of(TaskKind::TextGeneration, "LLM_TEXT_COMPLETE", &m).err();
        assert!(e.is_some_and(|f| !f.retryable && f.message.contains("promt")));
    }
}
