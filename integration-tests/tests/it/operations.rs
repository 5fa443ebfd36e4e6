//! hfconnect as an operator sees it, each place where it once misled one:
//! what may use the cold-start wait, `Retry-After` without a server hint,
//! limits and quotas across reloads, quotas of applications and users, keys
//! that rotate, every refusal audited and counted, in-flight tasks, refused
//! reloads shown, the worker's metrics, one status rule for streamed tasks,
//! one exit-code rule for commands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::TextCompleteInput;
use hfconnect::task::{Task, TaskErrorKind};
use hfconnect::testing::provider::{Api, ErrorKind, LlmProvider};
use hfconnect::testing::provider::{ColdStartPolicy, RetryPolicy};
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_conductor::Schedule;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};

use crate::support::global_logs;
use crate::support::metric;
use crate::support::provider::{model, settings, text};
use crate::support::TOKEN;
use crate::support::{config, env};
use crate::support::{hash, post, serve_config, start_with, APP_KEY, PORTAL_KEY};
use crate::support::{scrape, Dir, Run};
use hfconnect::testing::server::ServeOptions;

fn task(model: &str) -> Task {
    Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: model.into(),
        prompt: Some("hello".into()),
        ..Default::default()
    })
}

#[tokio::test]
async fn only_evidence_of_a_cold_start_may_use_the_cold_start_wait() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let mut s = settings(&fake);
    s.calls.retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        budget: Duration::from_secs(2),
    };
    s.calls.cold_start = ColdStartPolicy {
        wait: Duration::from_secs(6),
        resume_paused: false,
    };
    let p = hfconnect::testing::provider::huggingface::HuggingFace::new(
        s,
        Ok(secrecy::SecretString::from(TOKEN)),
    )
    .unwrap();
    let m = model(&fake, Api::Tgi);

    // A gateway that always answers 502: two attempts, as `max_attempts` says.
    fake.push_n(Route::Generate, Fault::text(502, "Bad Gateway"), 100);
    let started = Instant::now();
    let e = p.generate(&m, &text("x")).await.unwrap_err();
    assert_eq!((e.kind(), e.attempts()), (ErrorKind::Upstream, 2), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    fake.clear_faults();

    // A bare 503 nobody explains (the management API knows no such endpoint): the same.
    fake.push_n(Route::Generate, Fault::scaled_to_zero(), 100);
    let e = p.generate(&m, &text("x")).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.attempts()),
        (ErrorKind::EndpointUnavailable, 2),
        "{e}"
    );
    fake.clear_faults();

    // The other side: evidence, then waiting beyond `max_attempts`.
    // A loading answer (`estimated_time`).
    fake.push_n(Route::Generate, Fault::loading(0.05), 5);
    let c = p.generate(&m, &text("x")).await.unwrap();
    assert_eq!(c.attempts, 6);
    // A 503 that says the endpoint is scaling up.
    fake.push_n(
        Route::Generate,
        Fault::text(503, "Service Unavailable: the endpoint is scaling up"),
        4,
    );
    assert_eq!(p.generate(&m, &text("x")).await.unwrap().attempts, 5);
    // A bare 503 while the management API says the endpoint is initializing.
    fake.add_endpoint("ep", "initializing", &format!("{}/", fake.url()));
    fake.push_n(Route::Generate, Fault::scaled_to_zero(), 4);
    assert_eq!(p.generate(&m, &text("x")).await.unwrap().attempts, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_unavailable_endpoints_answer_with_retry_after() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(serve_config(&fake.url()), |_| {}).await;
    for (fault, status) in [
        (Fault::json(429, json!({"error": "slow down"})), 429),
        (Fault::scaled_to_zero(), 503),
        (Fault::overloaded(), 429),
    ] {
        fake.clear_faults();
        fake.push_n(Route::Generate, fault, 50);
        let (got, headers, body) = post(
            &s,
            "text-complete",
            Some(APP_KEY),
            &[],
            crate::support::text_body("tgi"),
        )
        .await;
        assert_eq!(got, status, "{body}");
        let after: u64 = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{status} without Retry-After: {body}"));
        assert!((1..=60).contains(&after), "{after}");
        assert_eq!(body["retryable"], true);
    }
}

fn limited_config(url: &str, quota: u32, extra: &str) -> String {
    config(url).replacen(
        "cold_start = { wait = 1 }",
        &format!("cold_start = {{ wait = 1 }}\nqueue_timeout = 0\nmax_concurrency = 1{extra}"),
        1,
    ) + &format!(
        "\n[[quotas]]\nsubject = \"group:support\"\nintegration = \"hf\"\nrequests_per_minute = {quota}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_quotas_survive_reloads_unless_their_rate_changes() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &limited_config(&fake.url(), 2, ""));
    let c = Arc::new(Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap());
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    for _ in 0..2 {
        c.run(TaskRequest::new(&alice, &task("tgi")))
            .await
            .output()
            .unwrap();
    }
    let e = c
        .run(TaskRequest::new(&alice, &task("tgi")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited, "{e}");
    // The same config again, then an unrelated edit: the quota stays used up.
    c.reload_from(&path, &LoadOptions::new().env(env()))
        .unwrap();
    assert_eq!(
        c.run(TaskRequest::new(&alice, &task("tgi")))
            .await
            .output()
            .unwrap_err()
            .kind(),
        TaskErrorKind::RateLimited
    );
    dir.write(
        "c.toml",
        &limited_config(&fake.url(), 2, "").replace(
            "members = [\"alice\", \"bob\"]",
            "members = [\"alice\", \"bob\", \"carol\"]",
        ),
    );
    c.reload_from(&path, &LoadOptions::new().env(env()))
        .unwrap();
    let e = c
        .run(TaskRequest::new(&alice, &task("tgi")))
        .await
        .output()
        .unwrap_err();
    assert!(
        e.to_string().contains("the quota of `group:support`"),
        "{e}"
    );
    // Concurrency: a slot held by a task in flight is still held after a reload.
    dir.write("c.toml", &limited_config(&fake.url(), 1000, ""));
    c.reload_from(&path, &LoadOptions::new().env(env()))
        .unwrap();
    fake.push(Route::Generate, Fault::Delay(Duration::from_millis(800)));
    let slow = {
        let (c, a) = (c.clone(), alice.clone());
        tokio::spawn(async move { c.run(TaskRequest::new(&a, &task("tgi"))).await.output() })
    };
    crate::support::wait_for("the slow task upstream", Duration::from_secs(10), || {
        let n = fake.in_flight();
        async move { n >= 1 }
    })
    .await;
    c.reload_from(&path, &LoadOptions::new().env(env()))
        .unwrap();
    let e = c
        .run(TaskRequest::new(&alice, &task("tgi")))
        .await
        .output()
        .unwrap_err();
    assert!(e.to_string().contains("`max_concurrency` of 1"), "{e}");
    slow.await.unwrap().unwrap();
    // A changed rate starts afresh (1000 a minute: the old 2 are forgotten too).
    c.run(TaskRequest::new(&alice, &task("tgi")))
        .await
        .output()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_of_applications_and_users_are_charged_refused_and_refilled() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url()).replacen(
        "cold_start = { wait = 1 }",
        "cold_start = { wait = 1 }\nqueue_timeout = 0",
        1,
    ) + "\n[[applications]]\nname = \"batch\"\ngroups = [\"support\"]\n\n\
         [[quotas]]\nsubject = \"app:batch\"\nintegration = \"hf\"\nrequests_per_minute = 120\n\n\
         [[quotas]]\nsubject = \"user:alice\"\nintegration = \"hf\"\nrequests_per_minute = 120\n";
    let path = dir.write("c.toml", &cfg);
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    for (subject, text) in [
        (Subject::App("batch".into()), "the quota of `app:batch`"),
        (Subject::User("alice".into()), "the quota of `user:alice`"),
    ] {
        let p = c.principal(&subject, None).unwrap();
        for _ in 0..120 {
            c.run(TaskRequest::new(&p, &task("tgi")))
                .await
                .output()
                .unwrap();
        }
        let e = c
            .run(TaskRequest::new(&p, &task("tgi")))
            .await
            .output()
            .unwrap_err();
        assert_eq!(e.kind(), TaskErrorKind::RateLimited, "{subject}: {e}");
        assert!(e.to_string().contains(text), "{e}");
        assert!(e.retry_after().is_some_and(|w| w <= Duration::from_secs(1)));
        // 120 a minute: one more every half second.
        crate::support::wait_for("the quota's refill", Duration::from_secs(3), || {
            let (c, p) = (&c, &p);
            async move {
                c.run(TaskRequest::new(p, &task("tgi")))
                    .await
                    .output()
                    .is_ok()
            }
        })
        .await;
    }
    // A group-scoped task is charged to its group, not to the user's own quota.
    let scoped = c
        .principal(&Subject::User("alice".into()), Some("support"))
        .unwrap();
    c.run(TaskRequest::new(&scoped, &task("tgi")))
        .await
        .output()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_read_without_a_sighup_and_a_vanished_key_keeps_serving() {
    const OLD: &str = "hf_oldTOKENvalue0000000000";
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let mut mount = crate::support::SecretMount::new(dir.path(), OLD);
    let cfg = mount.in_config(&serve_config(&fake.url()));
    let s = start_with(cfg, |_| {}).await;
    let call = || {
        post(
            &s,
            "text-complete",
            Some(APP_KEY),
            &[],
            crate::support::text_body("tgi"),
        )
    };
    let (status, _, body) = call().await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (502, Some("unauthorized")),
        "{body}"
    );
    // The kubelet swaps the link to a new directory holding the new token.
    mount.rotate(TOKEN);
    let mut ok = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if call().await.0 == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the rotated key was not picked up");
    // The file goes away: the key read before keeps serving.
    let reloads = || async {
        let r: Value = reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["config"]["reloads"].as_u64().unwrap_or(0)
    };
    let before = reloads().await;
    std::fs::remove_file(mount.token_path()).unwrap();
    crate::support::wait_for(
        "the reload after the file went",
        Duration::from_secs(10),
        || async { reloads().await > before },
    )
    .await;
    let (status, _, body) = call().await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = reqwest::get(format!("{}/readyz", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready["config"]["reloads"].as_u64().unwrap() >= 2, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_at_the_door_is_audited_and_counted_once() {
    let logs = global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    const KEY: &str = "hfc_test_auditor_key_0004";
    let cfg = serve_config(&fake.url())
        + &format!(
            "\n[[applications]]\nname = \"auditor-app\"\ngroups = [\"support\"]\nkeys = [\"{}\"]\n",
            hash(KEY)
        );
    let s = start_with(cfg, |_| {}).await;
    let before = scrape(&s.url).await;
    let big = "x".repeat(ServeOptions::new(Default::default()).body_limit + 1);
    /// Route, headers, body, status, kind.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let x = json!({"llmProvider": "hf", "model": "tgi", "prompt": "x"}).to_string();
    let cases: Vec<Case> = vec![
        (
            "text-complete",
            vec![("x-hfconnect-user", "alice")],
            x.clone(),
            403,
            "denied",
        ),
        (
            "text-complete",
            vec![("x-hfconnect-group", "research")],
            x.clone(),
            403,
            "denied",
        ),
        (
            "text-complete",
            vec![("x-hfconnect-group", "nope")],
            x.clone(),
            404,
            "not_found",
        ),
        (
            "text-complete",
            vec![("x-hfconnect-user", "")],
            x.clone(),
            400,
            "invalid_input",
        ),
        (
            "text-complete",
            vec![],
            format!("{{\"llmProvider\": \"hf\", \"model\": \"tgi\", \"prompt\": \"{big}\"}}"),
            413,
            "payload_too_large",
        ),
        (
            "text-complete",
            vec![],
            "{not json".into(),
            400,
            "invalid_input",
        ),
        (
            "text-complete",
            vec![],
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "colour": 1}).to_string(),
            422,
            "invalid_input",
        ),
        ("translate", vec![], "{}".into(), 404, "not_found"),
    ];
    for (route, headers, body, status, kind) in &cases {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/tasks/{route}", s.url))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.clone());
        for (h, v) in headers {
            r = r.header(*h, *v);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{route} {headers:?}");
        let b: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{status} is JSON: {e}"));
        assert_eq!(b["kind"], *kind, "{b}");
    }
    // Keys: none, and one nobody holds.
    for key in [None, Some("hfc_nobody_holds_this_0005")] {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/tasks/text-complete", s.url))
            .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "x"}));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        assert_eq!(r.send().await.unwrap().status().as_u16(), 401);
    }
    let after = scrape(&s.url).await;
    let counted = |outcome: &str, kind: &str| {
        let series = |t: &str| {
            t.lines()
                .filter(|l| {
                    l.starts_with("hfconnect_tasks_total{")
                        && l.contains(&format!("outcome=\"{outcome}\""))
                        && l.contains(&format!("kind=\"{kind}\""))
                })
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>()
        };
        series(&after) - series(&before)
    };
    assert_eq!(counted("denied", "text-generation"), 2.0, "{after}");
    assert_eq!(counted("not_found", "text-generation"), 1.0);
    assert_eq!(counted("not_found", "_unknown"), 1.0);
    assert_eq!(counted("payload_too_large", "text-generation"), 1.0);
    assert_eq!(counted("invalid_input", "text-generation"), 3.0);
    assert_eq!(counted("unauthorized", "text-generation"), 2.0);
    assert_eq!(
        metric(&after, "hfconnect_denials_total{integration=\"hf\"}")
            + metric(&after, "hfconnect_denials_total{integration=\"_unknown\"}")
            - metric(&before, "hfconnect_denials_total{integration=\"hf\"}")
            - metric(&before, "hfconnect_denials_total{integration=\"_unknown\"}"),
        4.0,
        "two 403s and two 401s are denials: {after}"
    );
    // One audit event per request, the key never in it.
    let text = logs.text();
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("hfconnect::audit") && l.contains("app:auditor-app"))
        .collect();
    assert_eq!(mine.len(), cases.len(), "{mine:#?}");
    let hint = hfconnect::testing::server::key_hash("hfc_nobody_holds_this_0005")
        ["sha256:".len()..][..8]
        .to_string();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(&format!("key:sha256:{hint}")))
            .count(),
        1
    );
    assert!(!text.contains(KEY) && !text.contains("hfc_nobody_holds_this_0005"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_flight_are_counted_streamed_or_not() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(serve_config(&fake.url()), |_| {}).await;
    for stream in [false, true] {
        fake.push(
            if stream {
                Route::GenerateStream
            } else {
                Route::Generate
            },
            Fault::Delay(Duration::from_millis(800)),
        );
        let url = s.url.clone();
        let running = tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/tasks/text-complete"))
                .bearer_auth(APP_KEY)
                .json(
                    &json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "stream": stream}),
                )
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        crate::support::wait_for("the task in flight", Duration::from_secs(10), || async {
            metric(&scrape(&s.url).await, "hfconnect_tasks_in_flight") == 1.0
        })
        .await;
        running.await.unwrap();
        assert_eq!(
            metric(&scrape(&s.url).await, "hfconnect_tasks_in_flight"),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tasks_refused_before_upstream_get_the_status_of_a_plain_one() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let cfg = serve_config(&fake.url()).replacen(
        "cold_start = { wait = 1 }",
        "cold_start = { wait = 1 }\nqueue_timeout = 0\nrate_limit = { per_second = 1 }",
        1,
    );
    let s = start_with(cfg, |_| {}).await;
    let streamed = |m: &str, extra: Value| {
        let mut body = json!({"llmProvider": "hf", "model": m, "prompt": "x", "stream": true});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let cases = [
        (None, streamed("nope", json!({})), 404, "not_found"),
        (None, streamed("off", json!({})), 409, "inactive"),
        (
            Some(("x-hfconnect-user", "bob")),
            streamed("tgi", json!({})),
            403,
            "denied",
        ),
        (
            None,
            streamed("tgi", json!({"maxTokens": 0})),
            422,
            "invalid_input",
        ),
    ];
    for (header, body, status, kind) in cases {
        let key = if header.is_some() {
            PORTAL_KEY
        } else {
            APP_KEY
        };
        let (got, _, b) = post(
            &s,
            "text-complete",
            Some(key),
            &header.into_iter().collect::<Vec<_>>(),
            body,
        )
        .await;
        assert_eq!((got, b["kind"].as_str()), (status, Some(kind)), "{b}");
    }
    // Rate limited: one a second; the second streamed task within it is a 429.
    assert_eq!(
        post(
            &s,
            "text-complete",
            Some(APP_KEY),
            &[],
            streamed("tgi", json!({}))
        )
        .await
        .0,
        200
    );
    let (got, headers, b) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[],
        streamed("tgi", json!({})),
    )
    .await;
    assert_eq!(
        (got, b["kind"].as_str()),
        (429, Some("rate_limited")),
        "{b}"
    );
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_is_visible_and_sighup_with_an_edit_reloads_once() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &serve_config(&fake.url()));
    let port = crate::support::unused_port();
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    let child = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--watch-interval",
            "0.2",
        ])
        .env("HF_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::support::wait_up(&base).await;
    let ready = || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let first = ready().await;
    assert!(
        first["config"]["hash"]
            .as_str()
            .is_some_and(|h| h.len() == 16),
        "{first}"
    );
    // An edit, and a SIGHUP for it: one reload.
    std::fs::write(
        &path,
        serve_config(&fake.url())
            .replace("members = [\"alice\"]", "members = [\"alice\", \"zed\"]"),
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    // Waits end as soon as `/readyz` shows what they wait for.
    let until = |what: &'static str, done: fn(&Value) -> bool| {
        let ready = &ready;
        async move {
            for _ in 0..100 {
                let r = ready().await;
                if done(&r) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no {what} within 10 s");
        }
    };
    let after = until("reload", |r| r["config"]["reloads"] != 0).await;
    assert_eq!(after["config"]["reloads"], 1, "{after}");
    assert_ne!(after["config"]["hash"], first["config"]["hash"]);
    // A broken file: refused (the watcher sees it: one check after the
    // reload above, which must not reload a second time), still ready, and shown.
    std::fs::write(&path, "[[integrations]]\nname = 3\n").unwrap();
    let refused = until("refusal", |r| r["config"]["refused_reloads"] != 0).await;
    assert_eq!(refused["config"]["reloads"], 1, "{refused}");
    assert_eq!(refused["ready"], true);
    assert_eq!(refused["config"]["refused_reloads"], 1, "{refused}");
    assert!(
        refused["config"]["last_refused"]["errors"]
            .as_u64()
            .unwrap()
            >= 1,
        "{refused}"
    );
    let m = scrape(&base).await;
    assert_eq!(
        metric(&m, "hfconnect_config_reloads_total{outcome=\"ok\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hfconnect_config_reloads_total{outcome=\"refused\"}"),
        1.0,
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "hfconnect_config_info{{hash=\"{}\"}} 1",
            after["config"]["hash"].as_str().unwrap()
        )),
        "{m}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("config reloaded").count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_polls_reports_and_tasks() {
    let w = crate::support::working::setup("[worker]\napp = \"batch\"\n").await;
    for _ in 0..3 {
        w.conductor.schedule(Schedule::new(
            "LLM_TEXT_COMPLETE",
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi"}),
        ));
    }
    w.conductor.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        json!({"llmProvider": "hf", "model": "nope", "prompt": "hi"}),
    ));
    let report = w.run_until(w.settings.clone(), |c| c.running() == 0).await;
    assert_eq!((report.completed, report.terminal), (3, 1), "{report:?}");
    let m = w.connector.metrics_text();
    assert!(metric(&m, "hfconnect_worker_polls_total") >= 1.0, "{m}");
    assert_eq!(metric(&m, "hfconnect_worker_tasks_polled_total"), 4.0);
    assert_eq!(
        metric(&m, "hfconnect_worker_reports_total{status=\"COMPLETED\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "hfconnect_worker_reports_total{status=\"FAILED_WITH_TERMINAL_ERROR\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "hfconnect_tasks_in_flight"), 0.0);
    assert_eq!(
        metric(&m, "hfconnect_tasks_total{door=\"worker\",integration=\"hf\",kind=\"text-generation\",model=\"_unknown\",outcome=\"not_found\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_serves_its_metrics() {
    let hf = FakeHf::start(TOKEN).await.unwrap();
    let conductor = hfconnect_integration_tests::fake_conductor::FakeConductor::start()
        .await
        .unwrap();
    let dir = Dir::new();
    let path = dir.write(
        "c.toml",
        &crate::support::working::worker_config(&hf.url(), "[worker]\napp = \"batch\"\n"),
    );
    conductor.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi"}),
    ));
    let port = crate::support::unused_port();
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "worker",
            "--config",
            path.to_str().unwrap(),
            "--conductor-url",
            &conductor.url(),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("HF_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut seen = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(r) = reqwest::get(format!("{base}/metrics")).await {
            seen = r.text().await.unwrap();
            if metric(
                &seen,
                "hfconnect_worker_reports_total{status=\"COMPLETED\"}",
            ) == 1.0
            {
                break;
            }
        }
    }
    let _ = child.kill().await;
    assert_eq!(
        metric(
            &seen,
            "hfconnect_worker_reports_total{status=\"COMPLETED\"}"
        ),
        1.0,
        "{seen}"
    );
    assert!(
        seen.contains("hfconnect_tasks_total") || seen.contains("hfconnect_task_duration_seconds"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_refused_token_exits_4_from_every_command() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));
    let p = path.to_str().unwrap();
    let run_task = crate::support::text_complete_args(&path, "user:alice", "x", &[]);
    let run_task: Vec<&str> = run_task.iter().map(String::as_str).collect();
    let status = ["endpoint", "status", "--config", p, "--integration", "hf"];
    let check = ["token", "check", "--config", p, "--integration", "hf"];
    for args in [&run_task[..], &status[..], &check[..]] {
        // No token at all.
        let out = Run::new(args).unwrap().output().unwrap();
        assert_eq!(out.code, 4, "{args:?} without a token:\n{}", out.all());
        // A token the server refuses.
        let out = Run::new(args)
            .unwrap()
            .env("HF_TOKEN", "hf_not_the_right_one")
            .output()
            .unwrap();
        assert_eq!(out.code, 4, "{args:?} with a refused token:\n{}", out.all());
    }
}
