//! The fake's Inference Endpoints management API, as `huggingface_hub`
//! calls it: list, get, create, update (`compute.scaling`), delete, pause,
//! resume (a 400 "already running" when it runs), scale-to-zero; with a state
//! machine (created → pending → initializing → running; updating → running;
//! paused; scaledToZero) that moves on its own when `endpoint_start` is set,
//! endpoints that never finish starting (`stuck_endpoints`) or end it
//! `failed` (`failing_endpoints`), and a token
//! without `inference.endpoints.write` (`manage_forbidden`). A created
//! endpoint is served by the fake itself under `/ep/{name}` while it runs
//! (503 otherwise; a request wakes one scaled to zero).

use std::sync::Mutex;
use std::time::Instant;

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, lock, respond, Behaviour, Body, FakeEndpoint};

/// `over` merged into `base`: objects key by key, anything else replaced
/// (a `PUT` is a partial update).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn endpoint_json(e: &FakeEndpoint) -> Value {
    let running = e.state == "running";
    let mut v = json!({
        "name": e.name,
        "type": "protected",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu", "instanceType": "nvidia-a10g", "instanceSize": "x1",
            "scaling": {"minReplica": e.min_replica, "maxReplica": e.max_replica, "scaleToZeroTimeout": e.scale_to_zero_timeout},
        },
        "model": {"repository": e.repository, "task": e.task, "framework": "pytorch", "image": {"huggingface": {}}},
        "healthRoute": "/health",
        "status": {
            "state": e.state,
            "url": if e.url.is_empty() { Value::Null } else { json!(e.url) },
            "message": format!("endpoint is {}", e.state),
            "readyReplica": if running { e.min_replica.max(1) } else { 0 },
            "targetReplica": e.min_replica.max(1),
        },
    });
    let mut spec = e.spec.clone();
    if let Some(o) = spec.as_object_mut() {
        o.remove("name");
        o.remove("status");
        if let Some(c) = o.get_mut("compute").and_then(Value::as_object_mut) {
            c.remove("scaling");
        }
    }
    if spec.is_object() {
        merge(&mut v, &spec);
    }
    // One image, not a merge of two.
    if let Some(i) = spec.pointer("/model/image") {
        v["model"]["image"] = i.clone();
    }
    v["model"]["repository"] = json!(e.repository);
    v["model"]["task"] = json!(e.task);
    v
}

fn not_found() -> Response {
    respond(404, Body::Json(json!({"error": "Endpoint not found"})), &[])
}

/// Move every starting endpoint on, as time says.
pub(super) fn advance(eps: &mut [FakeEndpoint], b: &Behaviour) {
    let Some(start) = b.endpoint_start else {
        return;
    };
    for e in eps.iter_mut() {
        let starting = matches!(e.state.as_str(), "pending" | "initializing" | "updating");
        if starting && !b.stuck_endpoints.contains(&e.name) && e.since.elapsed() >= start {
            e.state = match (b.failing_endpoints.contains(&e.name), e.state.as_str()) {
                (false, _) => "running",
                (true, "updating") => "updateFailed",
                (true, _) => "failed",
            }
            .into();
            e.since = Instant::now();
        } else if e.state == "pending" && e.since.elapsed() >= start / 2 {
            e.state = "initializing".into();
        }
    }
}

fn set(e: &mut FakeEndpoint, state: &str) {
    e.state = state.into();
    e.since = Instant::now();
}

pub(super) fn handle(
    endpoints: &Mutex<Vec<FakeEndpoint>>,
    method: &Method,
    path: &str,
    body: &[u8],
    b: &Behaviour,
    host: &str,
) -> Response {
    let parts: Vec<&str> = path
        .trim_start_matches("/v2/endpoint/")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let mut eps = lock(endpoints);
    advance(&mut eps, b);
    if *method != Method::GET && b.manage_forbidden {
        return respond(
            403,
            Body::Json(
                json!({"error": "This token does not have the `inference.endpoints.write` permission"}),
            ),
            &[],
        );
    }
    match (method.as_str(), parts.as_slice()) {
        ("GET", [_ns]) => json_response(
            &json!({"items": eps.iter().map(endpoint_json).collect::<Vec<_>>()}),
            &[],
        ),
        ("GET", [_ns, name]) => match eps.iter().find(|e| e.name == *name) {
            Some(e) => json_response(&endpoint_json(e), &[]),
            None => not_found(),
        },
        ("POST", [_ns]) => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return respond(400, Body::Json(json!({"error": "invalid JSON"})), &[]);
            };
            let Some(name) = v.get("name").and_then(Value::as_str) else {
                return respond(400, Body::Json(json!({"error": "`name` is required"})), &[]);
            };
            if eps.iter().any(|e| e.name == name) {
                return respond(
                    409,
                    Body::Json(json!({"error": "Endpoint already exists"})),
                    &[],
                );
            }
            let scaling = v.pointer("/compute/scaling");
            let n = |k: &str| {
                scaling
                    .and_then(|s| s.get(k))
                    .and_then(Value::as_u64)
                    .map(|n| n as u32)
            };
            let e = FakeEndpoint {
                name: name.into(),
                state: "pending".into(),
                url: format!("http://{host}/ep/{name}"),
                min_replica: n("minReplica").unwrap_or(1),
                max_replica: n("maxReplica").unwrap_or(1),
                scale_to_zero_timeout: n("scaleToZeroTimeout"),
                repository: v
                    .pointer("/model/repository")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                task: v
                    .pointer("/model/task")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                since: Instant::now(),
                spec: v.clone(),
            };
            let answer = endpoint_json(&e);
            eps.push(e);
            json_response(&answer, &[])
        }
        ("PUT", [_ns, name]) => {
            let Some(e) = eps.iter_mut().find(|e| e.name == *name) else {
                return not_found();
            };
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return respond(400, Body::Json(json!({"error": "invalid JSON"})), &[]);
            };
            if let Some(s) = v.pointer("/compute/scaling") {
                let n = |k: &str| s.get(k).and_then(Value::as_u64).map(|n| n as u32);
                if let Some(m) = n("minReplica") {
                    e.min_replica = m;
                }
                if let Some(m) = n("maxReplica") {
                    e.max_replica = m;
                }
                if let Some(m) = n("scaleToZeroTimeout") {
                    e.scale_to_zero_timeout = Some(m);
                }
            }
            if let Some(r) = v.pointer("/model/repository").and_then(Value::as_str) {
                e.repository = r.into();
            }
            if let Some(t) = v.pointer("/model/task").and_then(Value::as_str) {
                e.task = t.into();
            }
            if e.spec.is_null() {
                e.spec = json!({});
            }
            // `env` and `image` are replaced whole, as the management API does.
            if let Some(m) = e.spec.get_mut("model").and_then(Value::as_object_mut) {
                for k in ["env", "image"] {
                    if let Some(x) = v.pointer(&format!("/model/{k}")) {
                        m.insert(k.into(), x.clone());
                    }
                }
            }
            merge(&mut e.spec, &v);
            set(e, "updating");
            json_response(&endpoint_json(e), &[])
        }
        ("DELETE", [_ns, name]) => match eps.iter().position(|e| e.name == *name) {
            Some(i) => {
                eps.remove(i);
                json_response(&json!({}), &[])
            }
            None => not_found(),
        },
        ("POST", [_ns, name, op]) => {
            let Some(e) = eps.iter_mut().find(|e| e.name == *name) else {
                return not_found();
            };
            match *op {
                "pause" => set(e, "paused"),
                "scale-to-zero" => set(e, "scaledToZero"),
                "resume" if e.state == "running" => {
                    return respond(
                        400,
                        Body::Json(json!({"error": "Endpoint is already running"})),
                        &[],
                    )
                }
                "resume" => set(e, "initializing"),
                _ => return respond(404, Body::Empty, &[]),
            }
            json_response(&endpoint_json(e), &[])
        }
        _ => respond(404, Body::Empty, &[]),
    }
}
