//! Shared admission on a real `redis-server`: replicas (connectors in this
//! process, and `hfconnect serve` processes) share quotas, rate limits and
//! concurrency slots; Redis down or frozen is fallen back from (or denied)
//! without a task hanging, and recovered from; used quota survives reloads
//! and restarts; the URL's password never shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::access::Subject;
use hfconnect::config::{EnvLookup, LoadOptions};
use hfconnect::task::{Task, TaskErrorKind, TextCompleteInput};
use hfconnect::testing::AdmissionStatus;
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_hf::FakeHf;
use hfconnect_integration_tests::redis::RedisServer;
use serde_json::{json, Value};

use crate::support::hash;
use crate::support::metric;
use crate::support::Dir;
use crate::support::TOKEN;

const KEY: &str = "hfc_shared_limits_key_0001";

/// Two integrations on the fake: `hf` (the quota of `group:support`, 30 a
/// minute unless `quota` says otherwise) and `hf2`, whose model `slow` runs
/// 2 tasks at once across every replica.
fn config(fake: &str, quota: u32, admission: &str) -> String {
    format!(
        r#"
[[integrations]]
name = "hf"
api_key = {{ env = "HF_TOKEN" }}
hub_url = "{fake}"
retry = {{ max_attempts = 1 }}
queue_timeout = 0

[[integrations.models]]
name = "tgi"
endpoint = "{fake}/"
api = "tgi"
tasks = ["text-generation"]

[[integrations.models]]
name = "tei"
endpoint = "{fake}/tei"
api = "tei"
tasks = ["embeddings"]

[[integrations]]
name = "hf2"
api_key = {{ env = "HF_TOKEN" }}
hub_url = "{fake}"
retry = {{ max_attempts = 1 }}
queue_timeout = 20

[[integrations.models]]
name = "slow"
endpoint = "{fake}/"
api = "tgi"
tasks = ["text-generation"]
max_concurrency = 2

[[groups]]
name = "support"
members = ["alice"]

[[applications]]
name = "batch"
groups = ["support"]
keys = ["{key}"]

[[grants]]
subject = "group:support"
target = "integration:hf"
access = ["EXECUTE"]

[[grants]]
subject = "group:support"
target = "integration:hf2"
access = ["EXECUTE"]

[[quotas]]
subject = "group:support"
integration = "hf"
requests_per_minute = {quota}

{admission}
"#,
        key = hash(KEY)
    )
}

fn redis_section(on_unavailable: &str) -> String {
    format!(
        "[admission]\nbackend = \"redis\"\nurl = {{ env = \"HFCONNECT_REDIS_URL\" }}\non_unavailable = \"{on_unavailable}\"\ntimeout = 0.2\nlease = 2\n"
    )
}

fn env_with(redis_url: String) -> EnvLookup {
    Arc::new(move |k| match k {
        "HF_TOKEN" => Some(TOKEN.to_string()),
        "HFCONNECT_REDIS_URL" => Some(redis_url.clone()),
        _ => None,
    })
}

fn task(integration: &str, model: &str) -> Task {
    Task::TextComplete(
        serde_json::from_value::<TextCompleteInput>(
            json!({"llmProvider": integration, "model": model, "prompt": "hi"}),
        )
        .unwrap(),
    )
}

async fn run_one(c: &Connector, integration: &str, model: &str) -> Result<(), TaskErrorKind> {
    let app = c
        .principal(&"app:batch".parse::<Subject>().unwrap(), None)
        .unwrap();
    c.run(TaskRequest::new(&app, &task(integration, model)))
        .await
        .output()
        .map(|_| ())
        .map_err(|e| e.kind())
}

#[tokio::test]
async fn two_connectors_share_one_quota_and_a_third_started_later_sees_it_used() {
    let redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 30, &redis_section("local")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let a = Connector::from_path(&path, &options).unwrap();
    let b = Connector::from_path(&path, &options).unwrap();
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..100 {
        let c = if i % 2 == 0 { &a } else { &b };
        match run_one(c, "hf", "tgi").await {
            Ok(()) => ok += 1,
            Err(k) => assert_eq!(k, TaskErrorKind::RateLimited),
        }
    }
    // 30 a minute is one more every 2 s: a slow machine may earn a refill.
    let refills = (started.elapsed().as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (30..=30 + refills).contains(&ok),
        "{ok} admitted in {:?}",
        started.elapsed()
    );
    // A reload and a restart (a new connector on the same Redis) keep it.
    a.reload_from(&path, &options).unwrap();
    assert_eq!(
        run_one(&a, "hf", "tgi").await,
        Err(TaskErrorKind::RateLimited)
    );
    let restarted = Connector::from_path(&path, &options).unwrap();
    assert_eq!(
        run_one(&restarted, "hf", "tgi").await,
        Err(TaskErrorKind::RateLimited)
    );
    // A changed rate applies to the next task.
    std::fs::write(&path, config(&fake.url(), 45, &redis_section("local"))).unwrap();
    restarted.reload_from(&path, &options).unwrap();
    let app = restarted
        .principal(&"app:batch".parse::<Subject>().unwrap(), None)
        .unwrap();
    let e = restarted
        .run(TaskRequest::new(&app, &task("hf", "tgi")))
        .await
        .output()
        .err()
        .map(|e| e.to_string());
    if let Some(e) = e {
        assert!(e.contains("45 tasks per minute"), "{e}");
    }
    let status = hfconnect::testing::core(&restarted)
        .admission_status()
        .await;
    assert!(
        matches!(
            status,
            AdmissionStatus::Redis {
                reachable: true,
                ..
            }
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn an_embeddings_batch_is_charged_its_number_of_texts_on_redis() {
    let redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 10, &redis_section("deny")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let a = Connector::from_path(&path, &options).unwrap();
    let b = Connector::from_path(&path, &options).unwrap();
    let app = a
        .principal(&"app:batch".parse::<Subject>().unwrap(), None)
        .unwrap();
    let embed = |n: usize| {
        Task::Embed(
            serde_json::from_value(json!({"llmProvider": "hf", "model": "tei",
                "texts": (0..n).map(|i| format!("text {i}")).collect::<Vec<_>>()}))
            .unwrap(),
        )
    };
    // More texts than the quota ever admits at once: the task must change.
    let e = a
        .run(TaskRequest::new(&app, &embed(11)))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("task of 11 texts"), "{e}");
    // 7 on one replica and 3 on another use the quota of 10 up.
    a.run(TaskRequest::new(&app, &embed(7)))
        .await
        .output()
        .unwrap();
    let e = b
        .run(TaskRequest::new(&app, &embed(4)))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited, "{e}");
    b.run(TaskRequest::new(&app, &embed(3)))
        .await
        .output()
        .unwrap();
    assert_eq!(
        run_one(&a, "hf", "tgi").await,
        Err(TaskErrorKind::RateLimited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_slots_hold_across_connectors() {
    let redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.delay = Duration::from_millis(150));
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 30, &redis_section("local")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let a = Arc::new(Connector::from_path(&path, &options).unwrap());
    let b = Arc::new(Connector::from_path(&path, &options).unwrap());
    fake.reset_max_in_flight();
    let runs = (0..10).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { run_one(&c, "hf2", "slow").await }
    });
    let results = futures_util::future::join_all(runs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        fake.max_in_flight(),
        2,
        "max_concurrency = 2 across both connectors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_frozen_falls_back_to_local_limits_and_comes_back() {
    let mut redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 3, &redis_section("local")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let c = Connector::from_path(&path, &options).unwrap();
    assert_eq!(run_one(&c, "hf", "tgi").await, Ok(()));
    let mut local_ok = 0;
    for (what, down) in [("stopped", true), ("frozen", false)] {
        if down {
            redis.stop();
        } else {
            redis.pause();
        }
        // Local limits: the in-process quota of 3 a minute, counted afresh.
        let mut results = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            results.push(run_one(&c, "hf", "tgi").await);
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "Redis {what}: a task waited {:?}",
                t.elapsed()
            );
        }
        // The in-process quota (3 a minute) counts from the first outage
        // on and keeps counting through the second.
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(TaskErrorKind::RateLimited))),
            "Redis {what}: {results:?}"
        );
        local_ok += results.iter().filter(|r| r.is_ok()).count();
        let m = c.metrics_text();
        assert!(
            metric(&m, "hfconnect_admission_fallbacks_total{mode=\"local\"}") >= 5.0,
            "{m}"
        );
        assert!(matches!(
            hfconnect::testing::core(&c).admission_status().await,
            AdmissionStatus::Redis {
                reachable: false,
                ..
            }
        ));
        // Back: tasks are admitted on Redis again.
        if down {
            redis.restart().unwrap();
        } else {
            redis.resume();
        }
        let mut back = false;
        for _ in 0..50 {
            if matches!(
                hfconnect::testing::core(&c).admission_status().await,
                AdmissionStatus::Redis {
                    reachable: true,
                    ..
                }
            ) {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back, "Redis {what}: never reachable again");
    }
    assert_eq!(local_ok, 3, "the local quota admitted its 3 and no more");
    let m = c.metrics_text();
    assert_eq!(
        metric(&m, "hfconnect_admission_redis_outages_total"),
        2.0,
        "one per outage: {m}"
    );
    assert_eq!(metric(&m, "hfconnect_admission_redis_up"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_deny_refuses_fast_as_overloaded_and_recovers() {
    let mut redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 30, &redis_section("deny")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let c = Connector::from_path(&path, &options).unwrap();
    assert_eq!(run_one(&c, "hf", "tgi").await, Ok(()));
    redis.stop();
    let app = c
        .principal(&"app:batch".parse::<Subject>().unwrap(), None)
        .unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let e = c
            .run(TaskRequest::new(&app, &task("hf", "tgi")))
            .await
            .output()
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(e.kind(), TaskErrorKind::Overloaded, "{e}");
        assert!(e.is_retryable());
        assert!(e.retry_after().is_some());
    }
    redis.restart().unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if run_one(&c, "hf", "tgi").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "tasks run again once Redis is back");
    let m = c.metrics_text();
    assert!(
        metric(&m, "hfconnect_admission_fallbacks_total{mode=\"deny\"}") >= 3.0,
        "{m}"
    );
    assert!(
        m.contains("outcome=\"overloaded\""),
        "refusals are counted as overloaded: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_works_and_never_shows() {
    let password = "s3cret-redis-PASSWORD-42";
    let redis = RedisServer::start_with_password(password).unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let logs = crate::support::global_logs();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 2, &redis_section("deny")));
    let options = LoadOptions::new().env(env_with(redis.url()));
    let c = Connector::from_path(&path, &options).unwrap();
    assert_eq!(run_one(&c, "hf", "tgi").await, Ok(()));
    assert_eq!(run_one(&c, "hf", "tgi").await, Ok(()));
    assert_eq!(
        run_one(&c, "hf", "tgi").await,
        Err(TaskErrorKind::RateLimited),
        "the quota is kept on the password-protected Redis"
    );
    // A wrong password: Redis refuses, tasks are denied, and neither
    // password shows anywhere.
    let wrong_url = redis.url().replace(password, "wrong-PASSWORD-77");
    let wrong = Connector::from_path(&path, &LoadOptions::new().env(env_with(wrong_url))).unwrap();
    assert_eq!(
        run_one(&wrong, "hf", "tgi").await,
        Err(TaskErrorKind::Overloaded)
    );
    let shown = format!(
        "{c:?} {wrong:?} {:?} {:?} {:?} {}",
        hfconnect::testing::core(&c).catalog(),
        hfconnect::testing::core(&c).admission_status().await,
        hfconnect::testing::core(&wrong).admission_status().await,
        c.metrics_text()
    );
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for secret in [password, "wrong-PASSWORD-77"] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!logged.contains(secret), "{logged}");
    }
}

#[test]
fn the_admission_section_is_checked_and_the_url_never_echoed() {
    let dir = Dir::new();
    let check = |admission: &str, env: Vec<(&'static str, &'static str)>| {
        let path = dir.write("a.toml", &config("http://127.0.0.1:9", 30, admission));
        let env: EnvLookup = Arc::new(move |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
                .or_else(|| (k == "HF_TOKEN").then(|| TOKEN.to_string()))
        });
        match hfconnect::config::load(&path, &LoadOptions::new().env(env)) {
            Ok(l) => (
                true,
                l.warnings
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Err(e) => (false, e.to_string()),
        }
    };
    let (ok, text) = check("[admission]\nbackend = \"redis\"\n", vec![]);
    assert!(!ok && text.contains("needs `url`"), "{text}");
    let (ok, text) = check(
        "[admission]\nbackend = \"redis\"\nurl = { env = \"R\" }\n",
        vec![("R", "http://user:pw-not-shown-9@host:6379/")],
    );
    assert!(!ok && text.contains("is not a `redis://`"), "{text}");
    assert!(!text.contains("pw-not-shown-9"), "{text}");
    let (ok, text) = check(
        "[admission]\nbackend = \"redis\"\nurl = { env = \"R\" }\nkey_prefix = \"a{b}\"\ntimeout = 30\nlease = 0.5\n",
        vec![("R", "redis://127.0.0.1:9/")],
    );
    assert!(!ok, "{text}");
    for needle in ["key_prefix", "admission.timeout", "admission.lease"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (ok, text) = check(
        "[admission]\nbackend = \"redis\"\nurl = { env = \"R\" }\non_unavailable = \"maybe\"\n",
        vec![("R", "redis://127.0.0.1:9/")],
    );
    assert!(!ok && text.contains("admission.on_unavailable"), "{text}");
    let (ok, text) = check(
        "[admission]\nbackend = \"redis\"\nurl = { env = \"UNSET\" }\n",
        vec![],
    );
    assert!(ok && text.contains("Redis URL is not available"), "{text}");
    let (ok, text) = check(
        "[admission]\nurl = { env = \"R\" }\n",
        vec![("R", "redis://127.0.0.1:9/")],
    );
    assert!(ok && text.contains("`admission.url` is ignored"), "{text}");
    let (ok, text) = check(
        "[admission]\nbackend = \"redis\"\nurl = { env = \"R\" }\n",
        vec![("R", "rediss://:pw@redis.example:6380/0")],
    );
    assert!(ok, "a TLS URL is accepted: {text}");
}

/// `/readyz` of a `serve` process: its admission part.
async fn readyz(base: &str) -> Value {
    reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

/// An `hfconnect serve` process on `config`, ready.
async fn replica(
    dir: &Dir,
    name: &str,
    config: &str,
    redis: &RedisServer,
) -> (tokio::process::Child, String) {
    let path = dir.write(name, config);
    crate::support::serve_process(
        &path,
        &[
            ("HF_TOKEN", TOKEN.to_string()),
            ("HFCONNECT_REDIS_URL", redis.url()),
        ],
    )
    .await
}

async fn post(base: &str, integration: &str, model: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/tasks/text-complete"))
        .bearer_auth(KEY)
        .json(&json!({"llmProvider": integration, "model": model, "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_replicas_share_quota_and_slots_and_a_killed_ones_slots_come_back() {
    let redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url(), 30, &redis_section("local"));
    let (mut one, a) = replica(&dir, "a.toml", &cfg, &redis).await;
    let (_two, b) = replica(&dir, "b.toml", &cfg, &redis).await;
    assert_eq!(readyz(&a).await["admission"]["reachable"], true);

    // The quota: 100 tasks, alternately to each replica, 10 at a time.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for chunk in 0..10 {
        let batch = (0..10).map(|i| {
            let base = if (chunk * 10 + i) % 2 == 0 { &a } else { &b };
            post(base, "hf", "tgi")
        });
        statuses.extend(futures_util::future::join_all(batch).await);
    }
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refills = (started.elapsed().as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (30..=30 + refills).contains(&ok),
        "{ok} of 100 admitted in {:?}",
        started.elapsed()
    );
    assert!(statuses
        .iter()
        .all(|(s, b)| *s == 200 || (*s == 429 && b["kind"] == "rate_limited")));

    // Two slots across both replicas.
    fake.behave(|b| b.delay = Duration::from_millis(200));
    fake.reset_max_in_flight();
    let runs = (0..8).map(|i| post(if i % 2 == 0 { &a } else { &b }, "hf2", "slow"));
    let results = futures_util::future::join_all(runs).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(fake.max_in_flight(), 2);

    // A replica dies holding both slots: they come back when the lease
    // (2 s) runs out, and the other replica's task runs then.
    fake.behave(|b| b.delay = Duration::from_secs(30));
    let holders = {
        let a = a.clone();
        tokio::spawn(async move {
            futures_util::future::join(post(&a, "hf2", "slow"), post(&a, "hf2", "slow")).await
        })
    };
    for _ in 0..100 {
        if fake.in_flight() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.in_flight(), 2);
    one.kill().await.unwrap();
    holders.abort();
    fake.behave(|b| b.delay = Duration::ZERO);
    let t = Instant::now();
    let (status, body) = post(&b, "hf2", "slow").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "it waited for the dead replica's leases: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_restarted_empty_is_noticed_counted_and_logged() {
    let logs = crate::support::global_logs();
    let mut redis = RedisServer::start().unwrap();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url(), 3, &redis_section("local")));
    let c = Connector::from_path(&path, &LoadOptions::new().env(env_with(redis.url()))).unwrap();
    for _ in 0..3 {
        run_one(&c, "hf", "tgi").await.unwrap();
    }
    assert_eq!(
        run_one(&c, "hf", "tgi").await,
        Err(TaskErrorKind::RateLimited)
    );
    crate::support::wait_for("the server's run id", Duration::from_secs(10), || async {
        matches!(
            hfconnect::testing::core(&c).admission_status().await,
            AdmissionStatus::Redis {
                run_id_known: true,
                ..
            }
        )
    })
    .await;
    assert_eq!(
        metric(
            &c.metrics_text(),
            "hfconnect_admission_redis_restarts_total"
        ),
        0.0
    );
    // Restarted without persistence: empty, with a new run id.
    redis.restart().unwrap();
    crate::support::wait_for(
        "the restart to be counted",
        Duration::from_secs(15),
        || async {
            metric(
                &c.metrics_text(),
                "hfconnect_admission_redis_restarts_total",
            ) == 1.0
        },
    )
    .await;
    assert!(
        logs.text()
            .contains("the Redis server restarted (its run id changed)"),
        "the restart is logged"
    );
    // What docs/config.md warns of: the empty Redis forgot the quota's count.
    crate::support::wait_for(
        "a task admitted afresh",
        Duration::from_secs(10),
        || async { run_one(&c, "hf", "tgi").await.is_ok() },
    )
    .await;
}
