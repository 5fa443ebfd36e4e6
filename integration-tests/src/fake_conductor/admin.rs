//! The fake Conductor's admin routes, under `/_fake/`: scheduling, faults,
//! outages and what the worker reported, over HTTP, so that a worker can be
//! tried against faults from a shell. The routes are listed in
//! `admin_help.txt`, which `GET /_fake/help` and `fake-conductor --help` print.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{lock, CFault, CRoute, Schedule, Shared};

/// Where the admin routes live.
pub const PREFIX: &str = "/_fake/";

/// The usage text of the admin routes (`GET /_fake/help`).
pub const HELP: &str = include_str!("admin_help.txt");

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FaultSpec {
    Status {
        status: u16,
        #[serde(default)]
        text: String,
    },
    Delay {
        ms: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFault {
    route: CRoute,
    fault: FaultSpec,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSpec {
    #[serde(rename = "type")]
    task_type: String,
    input: Value,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    retries: u32,
    response_timeout_s: Option<u64>,
    created_by: Option<String>,
    owner_app: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Down {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    key_id: String,
    key_secret: String,
    #[serde(default = "an_hour")]
    ttl_s: u64,
}

fn an_hour() -> u64 {
    3600
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message})),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{e}; see GET /_fake/help"))
}

/// Answer an admin request.
pub(super) fn handle(s: &Arc<Shared>, method: &Method, path: &str, body: &[u8]) -> Response {
    let what = path.trim_start_matches(PREFIX).trim_end_matches('/');
    match (method.as_str(), what) {
        ("POST", "schedule") => match parse::<ScheduleSpec>(body) {
            Ok(spec) => {
                let ids: Vec<String> = (0..spec.count.min(10_000))
                    .map(|_| {
                        let mut sc = Schedule::new(&spec.task_type, spec.input.clone())
                            .retries(spec.retries);
                        if let Some(t) = spec.response_timeout_s {
                            sc = sc.response_timeout(Duration::from_secs(t));
                        }
                        if let Some(c) = &spec.created_by {
                            sc = sc.created_by(c);
                        }
                        if let Some(a) = &spec.owner_app {
                            sc = sc.owner_app(a);
                        }
                        s.schedule(sc)
                    })
                    .collect();
                ok(json!({"workflows": ids}))
            }
            Err(m) => bad(m),
        },
        ("GET", "workflows") => {
            let g = lock(&s.inner);
            let mut list: Vec<Value> = g
                .workflows
                .values()
                .map(|w| {
                    let last = w.tasks.last().and_then(|t| g.tasks.get(t));
                    json!({
                        "id": w.id,
                        "status": w.status,
                        "task": last.map(|t| json!({
                            "id": t.task_id, "type": t.task_type, "status": t.status,
                            "output": t.output, "reason": t.reason, "logs": t.logs,
                            "poll_count": t.poll_count, "retry_count": t.retry_count,
                        })),
                    })
                })
                .collect();
            list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            ok(Value::Array(list))
        }
        ("GET", "reports") => {
            let g = lock(&s.inner);
            ok(Value::Array(
                g.reports
                    .iter()
                    .map(|r| json!({"task_id": r.task_id, "status": r.status, "late": r.late, "body": r.body}))
                    .collect(),
            ))
        }
        ("POST", "faults") => match parse::<QueueFault>(body) {
            Ok(q) => {
                let fault = match q.fault {
                    FaultSpec::Status { status, text } => CFault::Status(status, text),
                    FaultSpec::Delay { ms } => CFault::Delay(Duration::from_millis(ms)),
                };
                let mut g = lock(&s.inner);
                let queue = g.faults.entry(q.route).or_default();
                for _ in 0..q.times {
                    queue.push_back(fault.clone());
                }
                ok(json!({"queued": q.times, "waiting": queue.len()}))
            }
            Err(m) => bad(m),
        },
        ("DELETE", "faults") => {
            lock(&s.inner).faults.clear();
            ok(json!({"cleared": true}))
        }
        ("POST", "down") => match parse::<Down>(body) {
            Ok(d) => {
                // Answer first: going down drops this connection too.
                let s = s.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    s.set_down(true);
                    tokio::time::sleep(Duration::from_millis(d.ms)).await;
                    s.set_down(false);
                });
                ok(json!({"down_ms": d.ms}))
            }
            Err(m) => bad(m),
        },
        ("POST", "auth") => match parse::<Auth>(body) {
            Ok(a) => {
                lock(&s.inner).auth = Some((a.key_id, a.key_secret, Duration::from_secs(a.ttl_s)));
                ok(json!({"auth": true}))
            }
            Err(m) => bad(m),
        },
        ("POST", "revoke") => {
            lock(&s.inner).tokens.clear();
            ok(json!({"revoked": true}))
        }
        ("GET", "help" | "") => (StatusCode::OK, HELP).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such admin route; see GET /_fake/help"})),
        )
            .into_response(),
    }
}
