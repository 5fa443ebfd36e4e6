//! `hfconnect serve` over real HTTP: auth, delegation, every status code,
//! streaming, the catalog, health; the binary's graceful shutdown and SIGHUP
//! reload.

use std::time::Duration;

use hfconnect::testing::server::ServeOptions;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};

use crate::support::{
    post, serve_config, start, start_with, text_body, Dir, APP_KEY, PORTAL_KEY, TOKEN, WATCH,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_auth_and_delegation() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    // The application acts as itself (member of support).
    let (status, _, body) = post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"result": "Hello from the ", "finishReason": "LENGTH", "tokenUsed": 4, "promptTokens": 1, "completionTokens": 3})
    );

    for (key, why) in [
        (None, "no `Authorization: Bearer <key>` header"),
        (Some("hfc_wrong"), "the application key is not valid"),
    ] {
        let (status, _, body) = post(&s, "text-complete", key, &[], text_body("tgi")).await;
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"error": why, "kind": "unauthorized", "retryable": false})
        );
    }
    // Delegation: allowed for the portal, refused for batch.
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(PORTAL_KEY),
        &[("x-hfconnect-user", "alice")],
        text_body("tgi"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(PORTAL_KEY),
        &[("x-hfconnect-user", "bob")],
        text_body("tgi"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no grant gives `EXECUTE` on `model:hf:tgi`"),
        "{body}"
    );
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[("x-hfconnect-user", "alice")],
        text_body("tgi"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("may not act for users"),
        "{body}"
    );
    // Group scoping through the header.
    let (status, _, _) = post(&s, "chat-complete", Some(PORTAL_KEY), &[("x-hfconnect-user", "alice"), ("x-hfconnect-group", "research")], json!({"llmProvider": "hf", "model": "tgi", "messages": [{"role": "user", "message": "hi"}]})).await;
    assert_eq!(status, 403, "research alone has no grant on hf:tgi");
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(PORTAL_KEY),
        &[
            ("x-hfconnect-user", "bob"),
            ("x-hfconnect-group", "support"),
        ],
        text_body("tgi"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a member of group `support`"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(APP_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        (
            json!({"llmProvider": "hf", "model": "tgi"}),
            "text-complete",
            422,
            "give `prompt` or `promptName`",
        ),
        (
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "colour": 1}),
            "text-complete",
            422,
            "unknown field `colour`",
        ),
        (
            text_body("nope"),
            "text-complete",
            404,
            "unknown model `nope`",
        ),
        (text_body("off"), "text-complete", 409, "is inactive"),
        (
            text_body("tgi"),
            "translate",
            404,
            "unknown task kind `translate`",
        ),
    ];
    for (body, kind, want, needle) in cases {
        let (status, _, b) = post(&s, kind, Some(APP_KEY), &[], body).await;
        assert_eq!(status, want, "{b}");
        assert!(
            b["error"].as_str().unwrap_or_default().contains(needle),
            "{b}"
        );
    }
    let upstream: Vec<(Fault, usize, u16, Option<&str>)> = vec![
        (Fault::rate_limited(30), 1, 429, Some("30")),
        (Fault::loading(30.0), 1, 503, Some("30")),
        (Fault::json(500, json!({"error": "boom"})), 10, 502, None),
        (Fault::empty(504), 10, 504, None),
    ];
    for (fault, n, want, retry_after) in upstream {
        fake.clear_faults();
        fake.push_n(Route::Generate, fault, n);
        let (status, headers, body) =
            post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi")).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            retry_after,
            "{body}"
        );
        assert!(
            body["kind"].is_string() && body["retryable"].is_boolean(),
            "{body}"
        );
    }
    fake.clear_faults();
    // 429 from admission comes with Retry-After too (rate limit in the config is covered by admission tests).
    let big = "x".repeat(ServeOptions::new(Default::default()).body_limit + 10);
    let (status, _, _) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "hf", "model": "tgi", "prompt": big}),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_catalog_and_health() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "maxTokens": 50, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let chunks = body.matches("event: chunk").count();
    assert_eq!(chunks, 5, "{body}");
    assert!(
        body.contains("event: output") && body.contains("\"finishReason\":\"STOP\""),
        "{body}"
    );

    // Refused before anything is sent upstream: the status and body of a
    // plain task, not a stream.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(PORTAL_KEY)
        .header("x-hfconnect-user", "bob")
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "denied", "{body}");
    // Failing after the stream started: an `error` event.
    fake.push(
        Route::GenerateStream,
        Fault::StreamError {
            after: 1,
            event: json!({"error": "out of memory", "error_type": "generation"}),
        },
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "maxTokens": 50, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("event: chunk")
            && body.contains("event: error")
            && body.contains("\"retryable\":false"),
        "{body}"
    );

    let cat: Value = reqwest::Client::new()
        .get(format!("{}/v1/catalog", s.url))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let models: Vec<&str> = cat["integrations"][0]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // `off` is inactive: refused before any grant, so not listed.
    assert_eq!(models, ["tgi", "org/chat-model", "bart"]);
    assert_eq!(cat["prompts"][0]["name"], "ticket");
    assert_eq!(
        reqwest::get(format!("{}/v1/catalog", s.url))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", s.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let ready: Value = reqwest::get(format!("{}/readyz", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_finishes_in_flight_requests_on_sigterm_and_reloads_on_sighup() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &serve_config(&fake.url()));
    let port = crate::support::unused_port();
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--grace",
            "10",
        ])
        .env("HF_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::support::wait_up(&base).await;
    let pid = child.id().unwrap().to_string();

    // SIGHUP with a config that removes batch's group grant: batch is denied afterwards.
    let call = |b: String| async move {
        reqwest::Client::new()
            .post(format!("{b}/v1/tasks/text-complete"))
            .bearer_auth(APP_KEY)
            .json(&text_body("tgi"))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(call(base.clone()).await.status().as_u16(), 200);
    std::fs::write(
        &path,
        serve_config(&fake.url()).replace(
            "subject = \"group:support\"\ntarget = \"integration:hf\"",
            "subject = \"group:research\"\ntarget = \"integration:hf\"",
        ),
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if call(base.clone()).await.status().as_u16() == 403 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP reloaded the config");
    // A broken config is refused; the last good one keeps serving.
    std::fs::write(&path, "[[integrations]]\nname = 3\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    crate::support::wait_for(
        "the broken config's refusal",
        Duration::from_secs(10),
        || {
            let url = format!("{base}/readyz");
            async move {
                let r: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                r["config"]["refused_reloads"].as_u64().unwrap_or(0) >= 1
            }
        },
    )
    .await;
    assert_eq!(
        call(base.clone()).await.status().as_u16(),
        403,
        "still serving the previous config"
    );

    // SIGTERM during a slow request: it completes, then the process exits 0.
    fake.push(Route::Generate, Fault::Delay(Duration::from_millis(1500)));
    let portal = {
        let b = base.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{b}/v1/tasks/text-complete"))
                .bearer_auth(PORTAL_KEY)
                .header("x-hfconnect-user", "bob")
                .json(&text_body("tgi"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    crate::support::wait_for("the slow request upstream", Duration::from_secs(10), || {
        let n = fake.in_flight();
        async move { n >= 1 }
    })
    .await;
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = portal
        .await
        .unwrap()
        .expect("the in-flight request got its answer");
    assert_eq!(status, 200, "bob is in research, which now holds the grant");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut err = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(
        err.contains("config reloaded")
            && err.contains("config refused; the previous one keeps serving")
            && err.contains("shutting down"),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !err.contains(APP_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_exactly_the_routes() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    // The endpoint routes find model `tgi`'s endpoint.
    fake.add_endpoint("tgi-ep", "running", &fake.url());
    let s = start(&fake).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    // (A unit test holds the documented routes and the router's list together.)
    let routes = documented;
    // Every documented route is really served (not 404/405).
    let client = reqwest::Client::new();
    for (method, path) in &routes {
        // A path parameter gets a value that exists.
        let url = format!(
            "{}{}",
            s.url,
            path.replace("{id}", "hf/tgi")
                .replace("{integration}", "hf")
                .replace("{model}", "tgi")
        );
        let resp = match method.as_str() {
            "get" => client.get(&url).bearer_auth(APP_KEY).send().await.unwrap(),
            _ => client.post(&url).bearer_auth(APP_KEY).json(&json!({"llmProvider": "hf", "model": "bart", "text": "t", "prompt": "p", "messages": [{"role": "user", "message": "m"}]})).send().await.unwrap(),
        };
        let status = resp.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}"
        );
    }
    // And an unlisted one is not.
    assert_eq!(
        client
            .get(format!("{}/v1/nothing", s.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_and_a_broken_one_refused() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let path = s.config_path();
    assert_eq!(
        post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi"))
            .await
            .0,
        200
    );
    // The reload reads key locations from the process environment, where HF_TOKEN is not
    // set: tasks that pass RBAC would then fail upstream, so the check uses a denial.
    let changed = serve_config(&fake.url()).replace(
        "subject = \"group:support\"\ntarget = \"integration:hf\"",
        "subject = \"group:research\"\ntarget = \"integration:hf\"",
    );
    std::fs::write(&path, &changed).unwrap();
    let mut seen = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi"))
            .await
            .0
            == 403
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "the change was picked up within 8 s");
    let ready = || async {
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let until = |done: &'static dyn Fn(&Value) -> bool| {
        let ready = &ready;
        async move {
            for _ in 0..100 {
                let r = ready().await;
                if done(&r) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("/readyz never showed what was waited for");
        }
    };
    let before = ready().await;
    assert_eq!(before["config"]["reloads"], 1, "{before}");
    assert_ne!(before["integrations"], 0, "{before}");
    // Written as some editors do: truncated, then (less than one check
    // later, so no two checks see the empty file) filled. The empty file in
    // between, a valid config with nothing in it, is never loaded. Each
    // round has a check inside the window nine times in ten.
    for round in 0..2 {
        std::fs::File::create(&path).unwrap();
        tokio::time::sleep(WATCH * 9 / 10).await;
        std::fs::write(&path, format!("{changed}# edit {round}\n")).unwrap();
        let after = until(if round == 0 {
            &|r| r["config"]["reloads"] != 1
        } else {
            &|r| r["config"]["reloads"] != 2
        })
        .await;
        assert_eq!(after["integrations"], before["integrations"], "{after}");
    }
    // No reload beyond the three: the next change seen is the broken file,
    // and by the time it was refused nothing else had been loaded.
    std::fs::write(&path, "[[integrations]]\nname = 3\n").unwrap();
    until(&|r| r["config"]["refused_reloads"] == 1).await;
    assert_eq!(ready().await["config"]["reloads"], 3);
    assert_eq!(
        post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi"))
            .await
            .0,
        403,
        "the broken file was refused; the last good config serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_change_with_tasks() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let scrape = || crate::support::scrape(&s.url);
    let value = crate::support::metric;
    let ok = "hfconnect_tasks_total{door=\"task\",integration=\"hf\",kind=\"text-generation\",model=\"tgi\",outcome=\"ok\"}";
    let before = scrape().await;
    assert_eq!(value(&before, ok), 0.0);
    for _ in 0..3 {
        assert_eq!(
            post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi"))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        post(
            &s,
            "text-complete",
            Some(PORTAL_KEY),
            &[("x-hfconnect-user", "bob")],
            text_body("tgi")
        )
        .await
        .0,
        403
    );
    let after = scrape().await;
    assert_eq!(value(&after, ok), 3.0, "{after}");
    assert_eq!(
        value(&after, "hfconnect_denials_total{integration=\"hf\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "hfconnect_tokens_total{integration=\"hf\",model=\"tgi\",type=\"completion\"}"
        ),
        9.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "hfconnect_upstream_duration_seconds_count{integration=\"hf\",model=\"tgi\"}"
        ),
        3.0,
        "{after}"
    );
    assert_eq!(value(&after, "hfconnect_task_duration_seconds_count{integration=\"hf\",kind=\"text-generation\",model=\"tgi\"}"), 4.0, "{after}");
    assert_eq!(value(&after, "hfconnect_tasks_in_flight"), 0.0);
    // Striped series and labelled vectors feed the same families: a label
    // set written twice would make Prometheus refuse the whole scrape.
    let mut seen = std::collections::HashSet::new();
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(k, _)| k);
        assert!(seen.insert(series), "`{series}` twice in the scrape");
    }
    assert!(
        !after.contains("bob") && !after.contains(TOKEN) && !after.contains("hello"),
        "no callers, prompts or keys in labels"
    );
}

/// A client that starts a request and never finishes its headers is cut off
/// after the header timeout; a well-behaved client on the same server is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // Without a header timeout this read would hang until the outer timeout.
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "the connection was still open after 10 s");
    assert!(
        waited >= Duration::from_millis(900),
        "closed before the timeout: {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");

    let ok = reqwest::get(format!("{}/healthz", s.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_refused_with_its_name_and_reset_on_both_doors() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    // Model `tgi` caps completions at 3 tokens; "hello" and the markers are
    // 21 more: no task fits in 5.
    let cfg = serve_config(&fake.url())
        + "\n[[budgets]]\nname = \"support-tgi\"\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\ntokens = 5\nwindow = \"day\"\n\n[admission]\nstore = \"usage.sqlite\"\n";
    let s = start_with(cfg, |_| {}).await;
    let (status, headers, body) =
        post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["kind"], "budget_exhausted", "{body}");
    assert_eq!(body["retryable"], false, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("budget `support-tgi` has 5 of its 5 tokens left"),
        "{message}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    assert_eq!(headers["x-should-retry"], "false");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "0");
    assert!(headers.contains_key("x-ratelimit-reset-tokens"));

    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "hf/tgi", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("insufficient_quota"), Some("insufficient_quota")),
        "{v}"
    );
    for route in ["/generate", "/v1/chat/completions"] {
        assert!(
            fake.requests_to(route).is_empty(),
            "nothing reached `{route}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_shows_the_callers_budgets_and_what_its_tasks_were_charged() {
    let logs = crate::support::global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let cfg = serve_config(&fake.url())
        + "\n[[budgets]]\nname = \"support-tgi\"\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\ntokens = 1000\nwindow = \"day\"\n\n[admission]\nstore = \"usage.sqlite\"\n";
    let s = start_with(cfg, |_| {}).await;
    let (status, headers, out) =
        post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi")).await;
    assert_eq!(status, 200, "{out}");
    let used = out["tokenUsed"].as_u64().unwrap();
    assert!(used > 0, "{out}");
    // The tightest budget once the task's worst case (the prompt's 5 bytes,
    // the markers' 16 and the model's cap of 3) was held: 1000 - 24.
    assert_eq!(headers["x-ratelimit-limit-tokens"], "1000");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "976");
    let reset = headers["x-ratelimit-reset-tokens"].to_str().unwrap();
    assert!(reset.ends_with('s'), "{reset}");
    let usage = |key: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let url = format!("{}/v1/usage", s.url);
        async move {
            let mut r = reqwest::Client::new().get(url).bearer_auth(key);
            for (h, v) in headers {
                r = r.header(*h, *v);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let mine = usage(APP_KEY, &[]).await;
    let rows = mine["budgets"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{mine}");
    let row = &rows[0];
    assert_eq!(
        (
            row["name"].as_str(),
            row["subject"].as_str(),
            row["limit"].as_u64(),
            row["used"].as_u64(),
            row["reserved"].as_u64(),
            row["remaining"].as_u64()
        ),
        (
            Some("support-tgi"),
            Some("group:support"),
            Some(1000),
            Some(used),
            Some(0),
            Some(1000 - used)
        ),
        "{mine}"
    );
    assert!(
        row["resets_at"].as_str().unwrap().ends_with("+00:00"),
        "{row}"
    );
    // Today's tokens, by subject and model.
    let today = mine["history"].as_array().unwrap();
    assert_eq!(today.len(), 1, "{mine}");
    assert_eq!(
        (
            today[0]["subject"].as_str(),
            today[0]["integration"].as_str(),
            today[0]["model"].as_str(),
            today[0]["prompt_tokens"].as_u64().unwrap()
                + today[0]["completion_tokens"].as_u64().unwrap()
        ),
        (Some("app:batch"), Some("hf"), Some("tgi"), used),
        "{mine}"
    );
    // bob is in research only: no budget covers him.
    let bobs = usage(PORTAL_KEY, &[("x-hfconnect-user", "bob")]).await;
    assert_eq!(bobs["budgets"], json!([]), "{bobs}");
    assert_eq!(
        bobs["history"],
        json!([]),
        "bob sees nobody else's tokens: {bobs}"
    );

    // The audit line says what the task was charged, and to which budget.
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("hfconnect::audit")
            && l.contains("caller=app:batch")
            && l.contains(&format!("tokens_charged={used}"))
            && l.contains("budgets=support-tgi")),
        "no audit line with the charge"
    );
    // Metrics: tokens by group (catalog names), and what the budget has left.
    let m = crate::support::scrape(&s.url).await;
    let by_group: f64 = ["prompt", "completion"]
        .iter()
        .map(|t| {
            crate::support::metric(
                &m,
                &format!("hfconnect_group_tokens_total{{group=\"support\",integration=\"hf\",model=\"tgi\",type=\"{t}\"}}"),
            )
        })
        .sum();
    assert_eq!(by_group, used as f64, "{m}");
    assert_eq!(
        crate::support::metric(
            &m,
            "hfconnect_budget_remaining_tokens{budget=\"support-tgi\"}"
        ),
        976.0,
        "as the reservation left it: {m}"
    );

    // A streamed answer and the OpenAI door carry the token headers too.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "hello", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let left: u64 = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        left,
        1000 - used - 24,
        "the first task's charge and this one's worst case"
    );
    let _ = r.text().await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/completions", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "hf/tgi", "prompt": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "1000");
    assert!(r.headers().contains_key("x-ratelimit-remaining-tokens"));
    assert!(r.headers().contains_key("x-ratelimit-reset-tokens"));
}
