//! A fake Conductor server: the subset of the REST API (base `/api`) an
//! external worker uses, with real queue semantics. Tasks are scheduled into
//! per-type queues and handed out once per poll (batch long-polls wait up to
//! `timeout` ms); a task not reported within its `responseTimeoutSeconds` is
//! re-queued; `FAILED` schedules a retry until the retry count is used up;
//! `FAILED_WITH_TERMINAL_ERROR` ends the workflow; `IN_PROGRESS` with
//! `callbackAfterSeconds` hands the task out again later. Workflows answer
//! `GET /workflow/{id}` with `createdBy` / `ownerApp`; task logs are kept.
//! Faults on demand: statuses and delays per route, and "down" (connections
//! dropped and refused). Optional Orkes auth: `POST /token` and `X-Authorization`.
//! Definitions come by the metadata API, as to a real Conductor
//! ([`metadata`]): task and workflow definitions, and workflows started by
//! name whose `SIMPLE` tasks run in order, outputs feeding inputs.

pub mod admin;
mod metadata;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Map, Value};

/// Routes faults can be scripted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CRoute {
    /// `GET /api/tasks/poll/batch/{type}` (and `/tasks/poll/{type}`)
    Poll,
    /// `POST /api/tasks`
    Update,
    /// `GET /api/workflow/{id}`
    Workflow,
    /// `POST /api/token`
    Token,
}

/// What the next request of a route gets.
#[derive(Debug, Clone)]
pub enum CFault {
    /// This status and plain-text body (the request has no effect).
    Status(u16, String),
    /// Wait, then answer normally.
    Delay(Duration),
}

/// A workflow of one task, to schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The task type.
    pub task_type: String,
    /// The task's input.
    pub input: Value,
    /// Retries after `FAILED` (Conductor's `retryCount`).
    pub retry_count: u32,
    /// Re-queue the task when it is not reported within this long.
    pub response_timeout: Duration,
    /// The workflow's `createdBy`.
    pub created_by: Option<String>,
    /// The workflow's `ownerApp`.
    pub owner_app: Option<String>,
}

impl Schedule {
    /// A task of `task_type` with `input`: 3 retries, 30 s response timeout.
    pub fn new(task_type: &str, input: Value) -> Schedule {
        Schedule {
            task_type: task_type.into(),
            input,
            retry_count: 3,
            response_timeout: Duration::from_secs(30),
            created_by: None,
            owner_app: None,
        }
    }
    /// Set the retry count.
    #[must_use]
    pub fn retries(mut self, n: u32) -> Schedule {
        self.retry_count = n;
        self
    }
    /// Set the response timeout.
    #[must_use]
    pub fn response_timeout(mut self, d: Duration) -> Schedule {
        self.response_timeout = d;
        self
    }
    /// Set the workflow's `createdBy`.
    #[must_use]
    pub fn created_by(mut self, s: &str) -> Schedule {
        self.created_by = Some(s.into());
        self
    }
    /// Set the workflow's `ownerApp`.
    #[must_use]
    pub fn owner_app(mut self, s: &str) -> Schedule {
        self.owner_app = Some(s.into());
        self
    }
}

/// A task instance as the fake holds it.
#[derive(Debug, Clone)]
pub struct TaskState {
    /// Its id.
    pub task_id: String,
    /// Its workflow.
    pub workflow_id: String,
    /// Its type.
    pub task_type: String,
    /// `SCHEDULED`, `IN_PROGRESS`, `COMPLETED`, `FAILED`, `FAILED_WITH_TERMINAL_ERROR`.
    pub status: String,
    /// Which retry this instance is.
    pub retry_count: u32,
    /// How often it was handed out.
    pub poll_count: u32,
    /// How often it was re-queued after its response timeout.
    pub timeouts: u32,
    /// The reported output.
    pub output: Option<Value>,
    /// The reported reason.
    pub reason: Option<String>,
    /// Every log line reported.
    pub logs: Vec<String>,
    input: Value,
    response_timeout: Duration,
    visible_at: Instant,
    leased_until: Option<Instant>,
}

/// A workflow as the fake holds it.
#[derive(Debug, Clone)]
pub struct WorkflowState {
    /// Its id.
    pub id: String,
    /// `RUNNING`, `COMPLETED` or `FAILED`.
    pub status: String,
    /// Its task instances, first to last.
    pub tasks: Vec<String>,
    /// `createdBy`.
    pub created_by: Option<String>,
    /// `ownerApp`.
    pub owner_app: Option<String>,
    retry_limit: u32,
    /// A workflow started from a definition: its tasks, run in order.
    plan: Option<metadata::Plan>,
    /// Its `outputParameters`, resolved, once `COMPLETED`.
    pub output: Option<Value>,
}

/// Every task result received, in order.
#[derive(Debug, Clone)]
pub struct Report {
    /// The task.
    pub task_id: String,
    /// The reported status.
    pub status: String,
    /// The whole body.
    pub body: Value,
    /// Whether it arrived for a task already finished (and was ignored).
    pub late: bool,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, TaskState>,
    workflows: HashMap<String, WorkflowState>,
    queues: HashMap<String, VecDeque<String>>,
    reports: Vec<Report>,
    faults: HashMap<CRoute, VecDeque<CFault>>,
    seq: u64,
    polls: u64,
    poll_queries: Vec<String>,
    auth: Option<(String, String, Duration)>,
    tokens: HashMap<String, Instant>,
    token_requests: u64,
    unauthorized: u64,
    workflow_lookups: u64,
    taskdefs: HashMap<String, Value>,
    workflow_defs: HashMap<String, Value>,
}

struct Shared {
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
    down: std::sync::atomic::AtomicBool,
    /// Connections dropped while down.
    refused: std::sync::atomic::AtomicU64,
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn schedule(&self, s: Schedule) -> String {
        let id = {
            let mut g = lock(&self.inner);
            let id = g.next_id("wf");
            g.workflows.insert(
                id.clone(),
                WorkflowState {
                    id: id.clone(),
                    status: "RUNNING".into(),
                    tasks: Vec::new(),
                    created_by: s.created_by,
                    owner_app: s.owner_app,
                    retry_limit: s.retry_count,
                    plan: None,
                    output: None,
                },
            );
            g.new_task(&id, &s.task_type, s.input, 0, s.response_timeout);
            id
        };
        self.notify.notify_waiters();
        id
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            for c in lock(&self.conns).drain(..) {
                c.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fake Conductor; stops when dropped.
pub struct FakeConductor {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeConductor {
    fn drop(&mut self) {
        self.task.abort();
        for c in lock(&self.shared.conns).drain(..) {
            c.abort();
        }
    }
}

impl Inner {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:06}", self.seq)
    }

    fn enqueue(&mut self, task_id: &str, task_type: &str) {
        self.queues
            .entry(task_type.to_string())
            .or_default()
            .push_back(task_id.to_string());
    }

    fn new_task(
        &mut self,
        workflow_id: &str,
        task_type: &str,
        input: Value,
        retry: u32,
        rt: Duration,
    ) -> String {
        let id = self.next_id("task");
        self.tasks.insert(
            id.clone(),
            TaskState {
                task_id: id.clone(),
                workflow_id: workflow_id.to_string(),
                task_type: task_type.to_string(),
                status: "SCHEDULED".into(),
                retry_count: retry,
                poll_count: 0,
                timeouts: 0,
                output: None,
                reason: None,
                logs: Vec::new(),
                input,
                response_timeout: rt,
                visible_at: Instant::now(),
                leased_until: None,
            },
        );
        if let Some(w) = self.workflows.get_mut(workflow_id) {
            w.tasks.push(id.clone());
        }
        self.enqueue(&id, task_type);
        id
    }

    /// Re-queue tasks whose lease ran out without a report.
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        for t in self.tasks.values_mut() {
            if t.status == "IN_PROGRESS" && t.leased_until.is_some_and(|l| l <= now) {
                t.status = "SCHEDULED".into();
                t.leased_until = None;
                t.timeouts += 1;
                t.visible_at = now;
                expired.push((t.task_id.clone(), t.task_type.clone()));
            }
        }
        for (id, ty) in expired {
            self.enqueue(&id, &ty);
        }
    }

    fn take(
        &mut self,
        task_type: &str,
        count: usize,
        worker: &str,
        domain: Option<&str>,
    ) -> Vec<Value> {
        self.sweep();
        let now = Instant::now();
        let mut out: Vec<String> = Vec::new();
        let Some(q) = self.queues.get_mut(task_type) else {
            return Vec::new();
        };
        let mut keep = VecDeque::new();
        while let Some(id) = q.pop_front() {
            let ready = self
                .tasks
                .get(&id)
                .is_some_and(|t| t.status == "SCHEDULED" && t.visible_at <= now);
            let stale = self.tasks.get(&id).is_none_or(|t| t.status != "SCHEDULED");
            if ready && out.len() < count {
                out.push(id);
            } else if !stale {
                keep.push_back(id);
            }
        }
        *q = keep;
        let mut tasks = Vec::new();
        for id in out {
            let Some(t) = self.tasks.get_mut(&id) else {
                continue;
            };
            t.status = "IN_PROGRESS".into();
            t.poll_count += 1;
            t.leased_until = Some(now + t.response_timeout);
            let wf = self.workflows.get(&t.workflow_id);
            tasks.push(json!({
                "taskType": t.task_type,
                "status": "IN_PROGRESS",
                "inputData": t.input,
                "referenceTaskName": format!("{}_ref", t.task_type.to_ascii_lowercase()),
                "retryCount": t.retry_count,
                "seq": 1,
                "correlationId": null,
                "pollCount": t.poll_count,
                "taskDefName": t.task_type,
                "scheduledTime": 0,
                "startTime": chrono_ms(),
                "endTime": 0,
                "updateTime": 0,
                "startDelayInSeconds": 0,
                "retried": false,
                "executed": false,
                "callbackFromWorker": true,
                "responseTimeoutSeconds": t.response_timeout.as_secs(),
                "workflowInstanceId": t.workflow_id,
                "workflowType": "llm_flow",
                "taskId": t.task_id,
                "callbackAfterSeconds": 0,
                "workerId": worker,
                "domain": domain,
                "workflowPriority": 0,
                "iteration": 0,
                "subworkflowChanged": false,
                "loopOverTask": false,
                "queueWaitTime": 0,
                "taskDefinition": null,
                "ownerApp": wf.and_then(|w| w.owner_app.clone()),
            }));
        }
        tasks
    }

    fn apply(&mut self, body: &Value) -> Result<String, (u16, String)> {
        let task_id = body
            .get("taskId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let wf_id = body
            .get("workflowInstanceId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if task_id.is_empty() || wf_id.is_empty() {
            return Err((400, "Workflow Id and Task Id are required".into()));
        }
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !matches!(
            status.as_str(),
            "IN_PROGRESS" | "COMPLETED" | "FAILED" | "FAILED_WITH_TERMINAL_ERROR"
        ) {
            return Err((400, format!("Invalid task status: {status}")));
        }
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return Err((404, format!("No such task found by id: {task_id}")));
        };
        if t.workflow_id != wf_id {
            return Err((400, format!("task {task_id} is not of workflow {wf_id}")));
        }
        let late = matches!(
            t.status.as_str(),
            "COMPLETED" | "FAILED" | "FAILED_WITH_TERMINAL_ERROR"
        );
        self.reports.push(Report {
            task_id: task_id.clone(),
            status: status.clone(),
            body: body.clone(),
            late,
        });
        if late {
            return Ok(task_id);
        }
        if let Some(logs) = body.get("logs").and_then(Value::as_array) {
            t.logs.extend(
                logs.iter()
                    .filter_map(|l| l.get("log").and_then(Value::as_str))
                    .map(str::to_string),
            );
        }
        t.reason = body
            .get("reasonForIncompletion")
            .and_then(Value::as_str)
            .map(str::to_string);
        t.output = body.get("outputData").cloned();
        t.leased_until = None;
        let (ty, input, retry, rt) = (
            t.task_type.clone(),
            t.input.clone(),
            t.retry_count,
            t.response_timeout,
        );
        match status.as_str() {
            "COMPLETED" => {
                t.status = status;
                let output = t.output.clone().unwrap_or(Value::Null);
                self.advance(wf_id, output);
            }
            "FAILED_WITH_TERMINAL_ERROR" => {
                t.status = status;
                if let Some(w) = self.workflows.get_mut(wf_id) {
                    w.status = "FAILED".into();
                }
            }
            "FAILED" => {
                t.status = status;
                let limit = self.workflows.get(wf_id).map_or(0, |w| w.retry_limit);
                if retry < limit {
                    self.new_task(wf_id, &ty, input, retry + 1, rt);
                } else if let Some(w) = self.workflows.get_mut(wf_id) {
                    w.status = "FAILED".into();
                }
            }
            _ => {
                let cb = body
                    .get("callbackAfterSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if cb > 0 {
                    t.status = "SCHEDULED".into();
                    t.visible_at = Instant::now() + Duration::from_secs(cb);
                    self.enqueue(&task_id, &ty);
                } else {
                    t.leased_until = Some(Instant::now() + rt);
                }
            }
        }
        Ok(task_id)
    }
}

fn chrono_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn text(status: u16, body: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [("content-type", "text/plain")], body.into()).into_response()
}

fn json_resp(v: &Value) -> Response {
    (StatusCode::OK, axum::Json(v.clone())).into_response()
}

fn route_of(method: &Method, path: &str) -> Option<CRoute> {
    match (method, path) {
        (&Method::GET, p) if p.starts_with("/api/tasks/poll/") => Some(CRoute::Poll),
        (&Method::POST, "/api/tasks") => Some(CRoute::Update),
        (&Method::GET, p) if p.starts_with("/api/workflow/") => Some(CRoute::Workflow),
        (&Method::POST, "/api/token") => Some(CRoute::Token),
        _ => None,
    }
}

fn query(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

async fn handle(
    s: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path.starts_with(admin::PREFIX) {
        return admin::handle(&s, &method, &path, &body);
    }
    let route = route_of(&method, &path);
    if let Some(r) = route {
        let fault = lock(&s.inner)
            .faults
            .get_mut(&r)
            .and_then(VecDeque::pop_front);
        match fault {
            Some(CFault::Status(code, body)) => return text(code, body),
            Some(CFault::Delay(d)) => tokio::time::sleep(d).await,
            None => {}
        }
    }
    if route == Some(CRoute::Token) {
        let mut g = lock(&s.inner);
        g.token_requests += 1;
        let Some((id, secret, ttl)) = g.auth.clone() else {
            return text(404, "no auth on this server");
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v.get("keyId").and_then(Value::as_str) != Some(id.as_str())
            || v.get("keySecret").and_then(Value::as_str) != Some(secret.as_str())
        {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"status": 401, "message": "Invalid access key or secret"})),
            )
                .into_response();
        }
        let n = g.next_id("tok");
        // A JWT-shaped token whose `exp` is the real expiry.
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + ttl.as_secs();
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!("{{\"sub\":\"{id}\",\"exp\":{exp},\"n\":\"{n}\"}}"),
        );
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.fakesig");
        g.tokens.insert(token.clone(), Instant::now() + ttl);
        return json_resp(&json!({"token": token}));
    }
    {
        let mut g = lock(&s.inner);
        if g.auth.is_some() {
            let ok = headers
                .get("x-authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|t| g.tokens.get(t))
                .is_some_and(|exp| *exp > Instant::now());
            if !ok {
                g.unauthorized += 1;
                return (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"status": 401, "message": "Token cannot be verified"})),
                )
                    .into_response();
            }
        }
    }
    match route {
        Some(CRoute::Poll) => {
            let rest = path.trim_start_matches("/api/tasks/poll/");
            let (task_type, count) = match rest.strip_prefix("batch/") {
                Some(t) => (
                    t.to_string(),
                    query(&uri, "count")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                ),
                None => (rest.to_string(), 1usize),
            };
            let wait = Duration::from_millis(
                query(&uri, "timeout")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(100),
            );
            let worker = query(&uri, "workerid").unwrap_or_default();
            let domain = query(&uri, "domain");
            {
                let mut g = lock(&s.inner);
                g.polls += 1;
                g.poll_queries
                    .push(uri.query().unwrap_or_default().to_string());
            }
            let deadline = Instant::now() + wait;
            loop {
                let notified = s.notify.notified();
                let got = lock(&s.inner).take(&task_type, count, &worker, domain.as_deref());
                if !got.is_empty() {
                    if rest.starts_with("batch/") {
                        return json_resp(&Value::Array(got));
                    }
                    return json_resp(&got[0]);
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let step = (deadline - now).min(Duration::from_millis(50));
                let _ = tokio::time::timeout(step, notified).await;
            }
            if rest.starts_with("batch/") {
                json_resp(&json!([]))
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        Some(CRoute::Update) => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return text(400, "body is not a TaskResult");
            };
            let r = lock(&s.inner).apply(&v);
            s.notify.notify_waiters();
            match r {
                Ok(id) => text(200, id),
                Err((code, msg)) => (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                    axum::Json(json!({"status": code, "message": msg})),
                )
                    .into_response(),
            }
        }
        Some(CRoute::Workflow) => {
            let id = path.trim_start_matches("/api/workflow/");
            let mut g = lock(&s.inner);
            g.workflow_lookups += 1;
            match g.workflows.get(id) {
                Some(w) => {
                    let tasks: Vec<Value> = w
                        .tasks
                        .iter()
                        .filter_map(|t| g.tasks.get(t))
                        .map(|t| json!({"taskId": t.task_id, "taskType": t.task_type, "status": t.status, "outputData": t.output, "reasonForIncompletion": t.reason}))
                        .collect();
                    json_resp(&json!({
                        "workflowId": w.id, "status": w.status,
                        "workflowName": w.plan.as_ref().map_or("llm_flow", |p| p.name.as_str()), "workflowVersion": 1,
                        "createdBy": w.created_by, "ownerApp": w.owner_app, "tasks": tasks, "output": w.output,
                    }))
                }
                None => (StatusCode::NOT_FOUND, axum::Json(json!({"status": 404, "message": format!("No such workflow found by id: {id}")}))).into_response(),
            }
        }
        _ => {
            if let Some(r) = metadata_route(&s, &method, &path, &body) {
                return r;
            }
            if method == Method::POST && path.starts_with("/api/tasks/") && path.ends_with("/log") {
                let id = path
                    .trim_start_matches("/api/tasks/")
                    .trim_end_matches("/log");
                let mut g = lock(&s.inner);
                if let Some(t) = g.tasks.get_mut(id) {
                    t.logs.push(String::from_utf8_lossy(&body).into_owned());
                    return StatusCode::OK.into_response();
                }
                return text(404, format!("No such task found by id: {id}"));
            }
            text(404, format!("no route {method} {path}"))
        }
    }
}

/// The metadata routes and starting a workflow ([`metadata`]), if `path` is one.
fn metadata_route(s: &Shared, method: &Method, path: &str, body: &[u8]) -> Option<Response> {
    let json_body = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| (400, format!("the body is not JSON: {e}")))
    };
    let answer = |r: Result<Response, (u16, String)>| match r {
        Ok(r) => r,
        Err((code, msg)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(json!({"status": code, "message": msg})),
        )
            .into_response(),
    };
    let mut g = lock(&s.inner);
    let r = match (method.as_str(), path) {
        ("POST", "/api/metadata/taskdefs") => json_body()
            .and_then(|b| g.register_taskdefs(&b))
            .map(|()| StatusCode::OK.into_response()),
        ("POST" | "PUT", "/api/metadata/workflow") => json_body()
            .and_then(|b| match b {
                // PUT takes a list, POST one definition.
                Value::Array(defs) => defs.iter().try_for_each(|d| g.register_workflow(d)),
                d => g.register_workflow(&d),
            })
            .map(|()| StatusCode::OK.into_response()),
        ("GET", p) if p.starts_with("/api/metadata/taskdefs/") => {
            let name = p.trim_start_matches("/api/metadata/taskdefs/");
            g.taskdefs
                .get(name)
                .map(json_resp)
                .ok_or((404, format!("No such taskType found by name: {name}")))
        }
        ("GET", p) if p.starts_with("/api/metadata/workflow/") => {
            let name = p.trim_start_matches("/api/metadata/workflow/");
            g.workflow_defs
                .get(name)
                .map(json_resp)
                .ok_or((404, format!("No such workflow found by name: {name}")))
        }
        ("POST", p)
            if p.starts_with("/api/workflow/")
                && !p.trim_start_matches("/api/workflow/").contains('/') =>
        {
            let name = p.trim_start_matches("/api/workflow/").to_string();
            let input = if body.is_empty() {
                Ok(Value::Object(Map::new()))
            } else {
                json_body()
            };
            let started = input
                .and_then(|i| g.start_workflow(&name, i))
                .map(|id| text(200, id));
            drop(g);
            s.notify.notify_waiters();
            return Some(answer(started));
        }
        _ => return None,
    };
    Some(answer(r))
}

impl FakeConductor {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<FakeConductor> {
        Self::start_on(0).await
    }

    /// Start on `port` (0 for any).
    pub async fn start_on(port: u16) -> std::io::Result<FakeConductor> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            notify: tokio::sync::Notify::new(),
            down: std::sync::atomic::AtomicBool::new(false),
            refused: std::sync::atomic::AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let s = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(s, method, uri, headers, body).await }
            },
        );
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if s.down.load(std::sync::atomic::Ordering::SeqCst) {
                    s.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    drop(stream);
                    continue;
                }
                let conn = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
                    .into_owned();
                let h = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut conns = lock(&s.conns);
                conns.retain(|c| !c.is_finished());
                conns.push(h.abort_handle());
            }
        });
        Ok(FakeConductor { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/api`
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Schedule a workflow of one task; returns the workflow id.
    pub fn schedule(&self, s: Schedule) -> String {
        self.shared.schedule(s)
    }

    /// A workflow.
    pub fn workflow(&self, id: &str) -> Option<WorkflowState> {
        lock(&self.shared.inner).workflows.get(id).cloned()
    }

    /// A task instance.
    pub fn task(&self, id: &str) -> Option<TaskState> {
        lock(&self.shared.inner).tasks.get(id).cloned()
    }

    /// The last task instance of a workflow.
    pub fn last_task(&self, workflow_id: &str) -> Option<TaskState> {
        let g = lock(&self.shared.inner);
        let w = g.workflows.get(workflow_id)?;
        w.tasks.last().and_then(|t| g.tasks.get(t)).cloned()
    }

    /// Every task result received.
    pub fn reports(&self) -> Vec<Report> {
        lock(&self.shared.inner).reports.clone()
    }

    /// Workflows not yet `COMPLETED` or `FAILED`.
    pub fn running(&self) -> usize {
        lock(&self.shared.inner)
            .workflows
            .values()
            .filter(|w| w.status == "RUNNING")
            .count()
    }

    /// Tasks handed out and not reported yet.
    pub fn in_progress(&self) -> usize {
        lock(&self.shared.inner)
            .tasks
            .values()
            .filter(|t| t.status == "IN_PROGRESS")
            .count()
    }

    /// Wait until no workflow is running, up to `limit`; true when done.
    pub async fn wait_all_done(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.running() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.running() == 0
    }

    /// Polls received so far, and their query strings.
    pub fn polls(&self) -> (u64, Vec<String>) {
        let g = lock(&self.shared.inner);
        (g.polls, g.poll_queries.clone())
    }

    /// Queue a fault for the next request of `route`.
    pub fn push(&self, route: CRoute, fault: CFault) {
        lock(&self.shared.inner)
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// Queue the same fault `n` times.
    pub fn push_n(&self, route: CRoute, fault: CFault, n: usize) {
        for _ in 0..n {
            self.push(route, fault.clone());
        }
    }

    /// Connections dropped because the server was down.
    pub fn refused_while_down(&self) -> u64 {
        self.shared
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Go down (drop every connection, refuse new ones) or come back.
    pub fn set_down(&self, down: bool) {
        self.shared.set_down(down);
    }

    /// Require Orkes auth: `POST /token` with these credentials; tokens live `ttl`.
    pub fn require_auth(&self, key_id: &str, key_secret: &str, ttl: Duration) {
        lock(&self.shared.inner).auth = Some((key_id.into(), key_secret.into(), ttl));
    }

    /// Forget every issued token (the next request with one gets 401).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.inner).tokens.clear();
    }

    /// `GET /workflow/{id}` requests so far.
    pub fn workflow_lookups(&self) -> u64 {
        lock(&self.shared.inner).workflow_lookups
    }

    /// Token requests and requests refused with 401 so far.
    pub fn auth_counts(&self) -> (u64, u64) {
        let g = lock(&self.shared.inner);
        (g.token_requests, g.unauthorized)
    }
}
