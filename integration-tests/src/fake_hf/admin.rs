//! The fake's admin routes, under `/_fake/`: everything the Rust API does,
//! over HTTP, so that faults can be queued from a shell (`curl`) against
//! `--bin fake-hf` and a trial repeated without writing Rust.
//!
//! The routes and fault types are listed in `admin_help.txt`, which
//! `GET /_fake/help` and `fake-hf --help` print.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{lock, respond, Body, FakeEndpoint, Fault, Route, State};

/// Where the admin routes live.
pub const PREFIX: &str = "/_fake/";

/// The usage text of the admin routes (`GET /_fake/help`).
pub const HELP: &str = include_str!("admin_help.txt");

/// A fault as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultSpec {
    /// A status with a JSON (`json`) or plain-text (`text`) body, or none.
    Status {
        status: u16,
        #[serde(default)]
        json: Option<Value>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Wait before answering (slow headers).
    Delay { ms: u64 },
    /// Headers, then a broken connection.
    Reset,
    /// Half of the normal answer.
    Truncated,
    /// Half the body, a wait, then the rest.
    SlowBody { ms: u64 },
    /// A wait before each stream event.
    SlowEvents { ms: u64 },
    /// The stream stops after this many events, without its final one.
    StreamCut { after: usize },
    /// After this many events, this error event inside the 200 stream.
    StreamError { after: usize, event: Value },
    /// 503 while the model loads.
    Loading {
        #[serde(default = "twenty")]
        estimated_time: f64,
    },
    /// 503 with no body: a scaled-to-zero endpoint starting.
    ScaledToZero,
    /// 429 with `Retry-After`.
    RateLimited { retry_after: u64 },
    /// 429 `overloaded` (TGI's concurrency limit).
    Overloaded,
    /// 401 as the Hub answers it.
    Unauthorized,
    /// 403 for a gated model.
    Gated { repo: String },
    /// A 200 answer of this many bytes.
    Oversized { bytes: usize },
    /// A stream that never ends: tokens of `token_bytes` every `ms`.
    Endless {
        #[serde(default = "thousand")]
        token_bytes: usize,
        #[serde(default)]
        ms: u64,
    },
    /// A redirect to `location`.
    Redirect {
        #[serde(default = "temporary")]
        status: u16,
        location: String,
    },
}

fn thousand() -> usize {
    1000
}

fn temporary() -> u16 {
    307
}

fn twenty() -> f64 {
    20.0
}

impl From<FaultSpec> for Fault {
    fn from(f: FaultSpec) -> Fault {
        match f {
            FaultSpec::Status {
                status,
                json,
                text,
                headers,
            } => Fault::Status {
                status,
                body: match (json, text) {
                    (Some(v), _) => Body::Json(v),
                    (None, Some(t)) => Body::Text(t),
                    (None, None) => Body::Empty,
                },
                headers: headers.into_iter().collect(),
            },
            FaultSpec::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
            FaultSpec::Reset => Fault::Reset,
            FaultSpec::Truncated => Fault::Truncated,
            FaultSpec::SlowBody { ms } => Fault::SlowBody(Duration::from_millis(ms)),
            FaultSpec::SlowEvents { ms } => Fault::SlowEvents(Duration::from_millis(ms)),
            FaultSpec::StreamCut { after } => Fault::StreamCut(after),
            FaultSpec::StreamError { after, event } => Fault::StreamError { after, event },
            FaultSpec::Loading { estimated_time } => Fault::loading(estimated_time),
            FaultSpec::ScaledToZero => Fault::scaled_to_zero(),
            FaultSpec::RateLimited { retry_after } => Fault::rate_limited(retry_after),
            FaultSpec::Overloaded => Fault::overloaded(),
            FaultSpec::Unauthorized => Fault::unauthorized(),
            FaultSpec::Gated { repo } => Fault::gated(&repo),
            FaultSpec::Oversized { bytes } => Fault::Oversized(bytes),
            FaultSpec::Endless { token_bytes, ms } => Fault::Endless {
                token_bytes,
                every: Duration::from_millis(ms),
            },
            FaultSpec::Redirect { status, location } => Fault::redirect(status, &location),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFault {
    route: Route,
    fault: FaultSpec,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BehaviourPatch {
    reply: Option<String>,
    sse_space: Option<bool>,
    chat_done: Option<bool>,
    chat_usage: Option<bool>,
    token_headers: Option<bool>,
    keepalive: Option<bool>,
    pipeline_task: Option<String>,
    legacy_info: Option<bool>,
    token_role: Option<String>,
    echo: Option<bool>,
    delay_ms: Option<u64>,
    embed_dim: Option<usize>,
    tei_max_batch: Option<usize>,
    tei_max_input: Option<usize>,
    fe_per_token: Option<bool>,
    echo_stop: Option<bool>,
    endpoint_start_ms: Option<u64>,
    stuck_endpoints: Option<Vec<String>>,
    failing_endpoints: Option<Vec<String>>,
    manage_forbidden: Option<bool>,
    token_permissions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    name: String,
    state: String,
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    token: String,
}

fn ok(v: Value) -> Response {
    respond(200, Body::Json(v), &[])
}

fn bad(message: String) -> Response {
    respond(400, Body::Json(json!({"error": message})), &[])
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{e}; see GET /_fake/help"))
}

/// Answer an admin request.
pub(super) fn handle(s: &Arc<State>, method: &Method, path: &str, body: &[u8]) -> Response {
    let what = path.trim_start_matches(PREFIX).trim_end_matches('/');
    match (method.as_str(), what) {
        ("POST", "faults") => match parse::<QueueFault>(body) {
            Ok(q) => {
                let fault = Fault::from(q.fault);
                let mut faults = lock(&s.faults);
                let queue = faults.entry(q.route).or_default();
                for _ in 0..q.times {
                    queue.push_back(fault.clone());
                }
                ok(
                    json!({"queued": q.times, "route": format!("{:?}", q.route), "waiting": queue.len()}),
                )
            }
            Err(m) => bad(m),
        },
        ("DELETE", "faults") => {
            lock(&s.faults).clear();
            ok(json!({"cleared": true}))
        }
        ("GET", "requests") => {
            let list: Vec<Value> = lock(&s.requests)
                .iter()
                .map(|r| {
                    let headers: BTreeMap<&str, &str> = r
                        .headers
                        .iter()
                        .filter(|(k, _)| k != "authorization")
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    json!({"method": r.method, "path": r.path, "headers": headers, "body": r.json()})
                })
                .collect();
            ok(Value::Array(list))
        }
        ("DELETE", "requests") => {
            lock(&s.requests).clear();
            ok(json!({"cleared": true}))
        }
        ("POST", "behaviour") => match parse::<BehaviourPatch>(body) {
            Ok(p) => {
                let mut b = lock(&s.behaviour);
                macro_rules! set {
                    ($($f:ident),*) => { $(if let Some(v) = p.$f { b.$f = v; })* };
                }
                set!(
                    reply,
                    sse_space,
                    chat_done,
                    chat_usage,
                    token_headers,
                    keepalive,
                    pipeline_task,
                    legacy_info,
                    token_role,
                    echo,
                    embed_dim,
                    tei_max_batch,
                    tei_max_input,
                    fe_per_token,
                    echo_stop,
                    stuck_endpoints,
                    failing_endpoints,
                    manage_forbidden,
                    token_permissions
                );
                if let Some(ms) = p.endpoint_start_ms {
                    b.endpoint_start = Some(Duration::from_millis(ms));
                }
                if let Some(ms) = p.delay_ms {
                    b.delay = Duration::from_millis(ms);
                }
                ok(
                    json!({"reply": b.reply, "echo": b.echo, "delay_ms": b.delay.as_millis() as u64}),
                )
            }
            Err(m) => bad(m),
        },
        ("POST", "endpoints") => match parse::<NewEndpoint>(body) {
            Ok(e) => {
                lock(&s.endpoints).push(FakeEndpoint::new(&e.name, &e.state, &e.url));
                ok(json!({"endpoints": lock(&s.endpoints).len()}))
            }
            Err(m) => bad(m),
        },
        ("GET", "stats") => {
            use std::sync::atomic::Ordering::SeqCst;
            ok(json!({
                "in_flight": s.in_flight.load(SeqCst),
                "max_in_flight": s.max_in_flight.load(SeqCst),
                "requests": lock(&s.requests).len(),
                "open_streams": s.open_streams.load(SeqCst),
                "streamed_bytes": s.streamed_bytes.load(SeqCst),
            }))
        }
        ("POST", "tokens") => match parse::<NewToken>(body) {
            Ok(t) => {
                lock(&s.more_tokens).push(t.token);
                ok(json!({"accepted": lock(&s.more_tokens).len() + 1}))
            }
            Err(m) => bad(m),
        },
        ("GET", "help" | "") => respond(200, Body::Text(HELP.into()), &[]),
        _ => respond(
            404,
            Body::Json(json!({"error": "no such admin route; see GET /_fake/help"})),
            &[],
        ),
    }
}
