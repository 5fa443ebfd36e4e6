//! Token budgets end to end: the in-process store survives a restart (and a
//! crash) and is read by `hfconnect usage` beside a running `serve`; one
//! store has one writer; two `serve` replicas on a real `redis-server` charge
//! one budget exactly under 64 concurrent plain and streamed tasks; Redis
//! away follows `on_unavailable`; a call that fails after its retries is
//! refunded.

use std::sync::Arc;
use std::time::Duration;

use hfconnect::access::Subject;
use hfconnect::config::{EnvLookup, LoadOptions};
use hfconnect::task::{Task, TaskErrorKind, TextCompleteInput};
use hfconnect::{Connector, TaskRequest};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use hfconnect_integration_tests::redis::RedisServer;
use serde_json::{json, Value};

use crate::support::{serve_config, serve_process, wait_for, Dir, Run, APP_KEY, TOKEN};

/// Budget `support-tgi`: `tokens` a day for group `support` (application
/// `batch` is in it) on model `hf:tgi`, whose completions are capped at 3.
fn budget(tokens: u64) -> String {
    format!(
        "\n[[budgets]]\nname = \"support-tgi\"\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\ntokens = {tokens}\nwindow = \"day\"\n"
    )
}

fn local_store() -> &'static str {
    "\n[admission]\nstore = \"usage.sqlite\"\n"
}

fn redis_section(on_unavailable: &str) -> String {
    format!(
        "\n[admission]\nbackend = \"redis\"\nurl = {{ env = \"HFCONNECT_REDIS_URL\" }}\non_unavailable = \"{on_unavailable}\"\ntimeout = 0.2\nlease = 2\n"
    )
}

/// `hfconnect usage --config PATH --json [extra]`, parsed.
fn usage_cli(path: &std::path::Path, env: &[(&str, String)], extra: &[&str]) -> Value {
    let mut args = vec!["usage", "--config", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let mut run = Run::new(&args).unwrap();
    for (k, v) in env {
        run = run.env(k, v);
    }
    let out = run.output().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.all()))
}

fn first_budget(v: &Value) -> (u64, u64) {
    let row = &v["budgets"][0];
    (
        row["used"].as_u64().unwrap_or(u64::MAX),
        row["reserved"].as_u64().unwrap_or(u64::MAX),
    )
}

async fn task_over_http(base: &str, stream: bool) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/tasks/text-complete"))
        .bearer_auth(APP_KEY)
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "hello", "stream": stream}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if status != 200 || !stream {
        return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    // The stream's `output` event, or its `error`.
    let mut event = "";
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim();
        } else if let Some(data) = line.strip_prefix("data:") {
            if event == "output" {
                return (200, serde_json::from_str(data.trim()).unwrap());
            }
            if event == "error" {
                return (599, serde_json::from_str(data.trim()).unwrap());
            }
        }
    }
    panic!("a stream without its output: {text}");
}

async fn usage_http(base: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/v1/usage"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_usage_survives_a_crash_and_a_restart_and_is_read_beside_serve() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write(
        "c.toml",
        &(serve_config(&fake.url()) + &budget(1_000) + local_store()),
    );
    let env = [("HF_TOKEN", TOKEN.to_string())];
    let (mut first, base) = serve_process(&path, &env).await;
    let mut used = 0;
    for stream in [false, true, false] {
        let (status, out) = task_over_http(&base, stream).await;
        assert_eq!(status, 200, "{out}");
        used += out["tokenUsed"].as_u64().unwrap();
    }
    // A call that fails after its two attempts is refunded.
    fake.push_n(Route::Generate, Fault::text(500, "boom"), 2);
    let (status, out) = task_over_http(&base, false).await;
    assert_eq!(status, 502, "{out}");
    assert_eq!(first_budget(&usage_http(&base).await), (used, 0));

    // Read beside the running serve (which holds the store's lock).
    wait_for(
        "the store to hold what serve charged",
        Duration::from_secs(10),
        || {
            let path = path.clone();
            let env = env.clone();
            async move { first_budget(&usage_cli(&path, &env, &[])) == (used, 0) }
        },
    )
    .await;
    let everyone = usage_cli(&path, &env, &[]);
    let day = &everyone["history"][0];
    assert_eq!(
        (day["subject"].as_str(), day["model"].as_str()),
        (Some("app:batch"), Some("tgi")),
        "{everyone}"
    );
    assert_eq!(
        day["prompt_tokens"].as_u64().unwrap() + day["completion_tokens"].as_u64().unwrap(),
        used
    );
    // bob is in no group a budget charges, and sees nobody's tokens but his.
    let bobs = usage_cli(&path, &env, &["--as", "user:bob"]);
    assert_eq!(
        (bobs["budgets"].clone(), bobs["history"].clone()),
        (json!([]), json!([]))
    );

    // One process writes a store.
    let second = Run::new([
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap()
    .env("HF_TOKEN", TOKEN)
    .output()
    .unwrap();
    assert_ne!(second.code, 0);
    assert!(
        second.stderr.contains("is in use by another process"),
        "{}",
        second.all()
    );

    // A crash (SIGKILL) loses nothing that was written; a new serve starts there.
    first.kill().await.unwrap();
    let _ = first.wait().await;
    let (_again, base) = serve_process(&path, &env).await;
    assert_eq!(first_budget(&usage_http(&base).await), (used, 0));
    let (status, out) = task_over_http(&base, false).await;
    assert_eq!(status, 200, "{out}");
    used += out["tokenUsed"].as_u64().unwrap();
    assert_eq!(first_budget(&usage_http(&base).await), (used, 0));
}

#[test]
fn budgets_in_process_need_a_store() {
    let dir = Dir::new();
    let path = dir.write(
        "c.toml",
        &(serve_config("http://127.0.0.1:9") + &budget(1_000)),
    );
    let out = crate::support::check(&path);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(
            "budget `support-tgi` needs a usage store: there is no `[admission]` section"
        ),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_redis_charge_one_budget_exactly_under_64_concurrent_tasks() {
    let redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    // Tasks overlap: each holds its worst case while the model answers.
    fake.behave(|b| b.delay = Duration::from_millis(150));
    let limit = 300;
    let dir = Dir::new();
    let cfg = serve_config(&fake.url()) + &budget(limit) + &redis_section("deny");
    let env = [
        ("HF_TOKEN", TOKEN.to_string()),
        ("HFCONNECT_REDIS_URL", redis.url()),
    ];
    let a_path = dir.write("a.toml", &cfg);
    let (_a, a) = serve_process(&a_path, &env).await;
    let (_b, b) = serve_process(&dir.write("b.toml", &cfg), &env).await;

    let tasks = (0..64).map(|i| {
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { task_over_http(&base, i % 4 < 2).await }
    });
    let answers = futures_util::future::join_all(tasks).await;
    let mut charged = 0;
    let mut ran = 0;
    for (status, body) in &answers {
        match status {
            200 => {
                ran += 1;
                charged += body["tokenUsed"].as_u64().unwrap();
            }
            429 => {
                // Refused only when what was left could not hold its worst case.
                assert_eq!(body["kind"], "budget_exhausted", "{body}");
                let m = body["error"].as_str().unwrap();
                let n = |after: &str| -> u64 {
                    let rest = &m[m.find(after).unwrap() + after.len()..];
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                let (left, need) = (n("has "), n("may use up to "));
                assert!(left < need, "{m}");
            }
            _ => panic!("{status}: {body}"),
        }
    }
    assert!(ran > 0 && ran < 64, "{ran} of 64 ran");
    // Settles are applied in the background: wait for none to be held.
    wait_for(
        "every reservation to be settled",
        Duration::from_secs(10),
        || {
            let a = a.clone();
            async move { first_budget(&usage_http(&a).await).1 == 0 }
        },
    )
    .await;
    let (used, _) = first_budget(&usage_http(&b).await);
    assert_eq!(
        used, charged,
        "the budget holds what the tasks that ran reported"
    );
    assert!(used <= limit, "{used} charged against {limit}");
    // The command line reads the same backend.
    assert_eq!(first_budget(&usage_cli(&a_path, &env, &[])), (charged, 0));
    let history = usage_cli(&a_path, &env, &[]);
    let day = &history["history"][0];
    assert_eq!(
        day["prompt_tokens"].as_u64().unwrap() + day["completion_tokens"].as_u64().unwrap(),
        charged,
        "{history}"
    );
}

fn connector_env(redis_url: String) -> EnvLookup {
    Arc::new(move |k| match k {
        "HF_TOKEN" => Some(TOKEN.to_string()),
        "HFCONNECT_REDIS_URL" => Some(redis_url.clone()),
        _ => None,
    })
}

fn text_task() -> Task {
    Task::TextComplete(
        serde_json::from_value::<TextCompleteInput>(
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "hello"}),
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_follows_on_unavailable_for_budgets() {
    let mut redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let options = LoadOptions::new().env(connector_env(redis.url()));
    let deny = Connector::from_path(
        &dir.write(
            "deny.toml",
            &(serve_config(&fake.url()) + &budget(1_000) + &redis_section("deny")),
        ),
        &options,
    )
    .unwrap();
    let local = Connector::from_path(
        &dir.write(
            "local.toml",
            &(serve_config(&fake.url()) + &budget(1_000) + &redis_section("local")),
        ),
        &options,
    )
    .unwrap();
    let app = deny
        .principal(&"app:batch".parse::<Subject>().unwrap(), None)
        .unwrap();
    deny.run(TaskRequest::new(&app, &text_task()))
        .await
        .output()
        .unwrap();
    // bob's chat is under no budget: its tokens reach the history on Redis
    // (written by the replica every second), where he sees them.
    let bob = deny
        .principal(&"user:bob".parse::<Subject>().unwrap(), None)
        .unwrap();
    let chat = Task::ChatComplete(
        serde_json::from_value(json!({"llmProvider": "hf", "model": "org/chat-model", "messages": [{"role": "user", "message": "hi"}]}))
            .unwrap(),
    );
    let out = deny
        .run(TaskRequest::new(&bob, &chat))
        .await
        .output()
        .unwrap();
    assert!(out.token_headroom.is_none(), "no budget covers it");
    let used = u64::from(out.token_used.unwrap());
    wait_for(
        "bob's tokens in the history on Redis",
        Duration::from_secs(10),
        || {
            let (deny, bob) = (&deny, &bob);
            async move {
                let v = deny.usage(bob).await.unwrap();
                v.history.len() == 1
                    && v.history[0].subject == "user:bob"
                    && v.history[0].model == "org/chat-model"
                    && v.history[0].prompt_tokens + v.history[0].completion_tokens == used
            }
        },
    )
    .await;
    assert!(deny.usage(&bob).await.unwrap().budgets.is_empty());
    redis.stop();
    let before = fake.requests_to("/generate").len();
    let e = deny
        .run(TaskRequest::new(&app, &text_task()))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Overloaded, "{e}");
    assert!(e.to_string().contains("budgets cannot be checked"), "{e}");
    assert_eq!(
        fake.requests_to("/generate").len(),
        before,
        "nothing was sent upstream"
    );
    // `local`: the replica keeps the budget in process until Redis is back.
    let out = local
        .run(TaskRequest::new(&app, &text_task()))
        .await
        .output()
        .unwrap();
    assert!(out.token_headroom.is_some(), "a budget still covered it");
    let m = local.metrics_text();
    assert!(
        crate::support::metric(&m, "hfconnect_admission_fallbacks_total{mode=\"local\"}") >= 1.0,
        "{m}"
    );
}
