//! The third hardening round, as an attacker and a new user would try it:
//! streams bounded in bytes and in time on every door, redirects never
//! followed, the acting user settled before the group scope, bounded stop
//! lists, the caller's own bad input answered 4xx, readiness that tells the
//! truth, `x-should-retry`, rate-limit headers, HTTP/2 abuse, and a key
//! rotated under load. The hostile upstream is the fake's (`Fault::Endless`,
//! `Fault::redirect`, `echo_stop`), drivable over HTTP like its other faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};

use crate::support::TOKEN;
use crate::support::{post, serve_config, start_with, Server, APP_KEY, PORTAL_KEY};
use crate::support::{wait_for, Dir};

/// `serve_config` with integration `hf` held to 64 KiB answers, one task at
/// a time (refused at once when busy, so a slot that leaked shows as a
/// 429), and streams of at most 2 s.
fn bounded_config(url: &str) -> String {
    serve_config(url).replacen(
        "cold_start = { wait = 1 }",
        "cold_start = { wait = 1 }\nmax_response_bytes = 65536\nmax_concurrency = 1\nqueue_timeout = 0\ntimeouts = { stream = 2 }",
        1,
    )
}

/// A POST with the batch application's key; the whole answer read (within
/// 20 s) as its size and text.
async fn read_all(s: &Server, path: &str, body: Value) -> (u16, usize, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", s.url))
        .bearer_auth(APP_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let mut stream = resp.bytes_stream();
    let mut bytes = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(end.into(), stream.next()).await {
        match chunk {
            Ok(c) => bytes.extend_from_slice(&c),
            Err(_) => break,
        }
    }
    assert!(Instant::now() < end, "the answer to {path} never ended");
    let n = bytes.len();
    (status, n, String::from_utf8_lossy(&bytes).into_owned())
}

async fn upstream_closed(fake: &FakeHf) {
    wait_for(
        "the upstream connection to be dropped",
        Duration::from_secs(10),
        || {
            let n = fake.open_streams();
            async move { n == 0 }
        },
    )
    .await;
}

/// The one slot is free again: a plain task is admitted at once.
async fn slot_is_free(s: &Server) {
    let (status, _, body) = post(
        s,
        "text-complete",
        Some(APP_KEY),
        &[],
        crate::support::text_body("tgi"),
    )
    .await;
    assert_eq!(status, 200, "the concurrency slot was released: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_stops_at_max_response_bytes_on_every_door() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(bounded_config(&fake.url()), |_| {}).await;
    let flood = || Fault::Endless {
        token_bytes: 1000,
        every: Duration::ZERO,
    };
    // The task route.
    fake.push(Route::GenerateStream, flood());
    let (status, n, text) = read_all(
        &s,
        "/v1/tasks/text-complete",
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(n < 256 * 1024, "relayed {n} bytes past a 64 KiB limit");
    assert!(text.contains("event: error"), "{text:.300}");
    assert!(
        text.contains("invalid_response")
            && text.contains("65536")
            && text.contains("max_response_bytes"),
        "{}",
        &text[text.len().saturating_sub(600)..]
    );
    upstream_closed(&fake).await;
    slot_is_free(&s).await;
    // The OpenAI door: completions and chat.
    for (route, path, model) in [
        (Route::GenerateStream, "/v1/completions", "hf/tgi"),
        (Route::Chat, "/v1/chat/completions", "hf/org/chat-model"),
    ] {
        fake.push(route, flood());
        let body = if path.ends_with("chat/completions") {
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": true})
        } else {
            json!({"model": model, "prompt": "hi", "stream": true})
        };
        let (status, n, text) = read_all(&s, path, body).await;
        assert_eq!(status, 200, "{path}: {text:.300}");
        assert!(n < 256 * 1024, "{path}: relayed {n} bytes");
        let tail = &text[text.len().saturating_sub(600)..];
        assert!(
            tail.contains("max_response_bytes") && tail.contains("65536"),
            "{path}: {tail}"
        );
        assert!(
            !tail.contains("[DONE]"),
            "{path}: a cut stream is not a finished one: {tail}"
        );
        upstream_closed(&fake).await;
        slot_is_free(&s).await;
    }
    // The library (what the worker and `run` call): the same provider bound.
    let dir = Dir::new();
    let path = dir.write("c.toml", &bounded_config(&fake.url()));
    let c = hfconnect::Connector::from_path(
        &path,
        &hfconnect::config::LoadOptions::new().env(crate::support::env()),
    )
    .unwrap();
    let alice = c
        .principal(&hfconnect::access::Subject::User("alice".into()), None)
        .unwrap();
    fake.push(Route::GenerateStream, flood());
    let task = hfconnect::task::Task::TextComplete(hfconnect::task::TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("hi".into()),
        ..Default::default()
    });
    let mut stream = c
        .run(TaskRequest::new(&alice, &task).streamed())
        .await
        .stream()
        .unwrap();
    let mut last = None;
    while let Some(ev) = stream.next().await {
        last = Some(ev);
    }
    let e = last.unwrap().unwrap_err();
    assert_eq!(e.kind().as_str(), "invalid_response", "{e}");
    upstream_closed(&fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_is_cut_at_the_stream_timeout() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(bounded_config(&fake.url()), |_| {}).await;
    // Five bytes every 50 ms: far under the byte cap, never silent, never done.
    fake.push(
        Route::GenerateStream,
        Fault::Endless {
            token_bytes: 5,
            every: Duration::from_millis(50),
        },
    );
    let started = Instant::now();
    let (status, _, text) = read_all(
        &s,
        "/v1/tasks/text-complete",
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "stream": true}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let tail = &text[text.len().saturating_sub(400)..];
    assert!(
        tail.contains("event: error") && tail.contains("\"timeout\""),
        "{tail}"
    );
    assert!(tail.contains("timeouts.stream"), "{tail}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    upstream_closed(&fake).await;
    slot_is_free(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_and_their_target_never_named() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let capture = FakeHf::start(TOKEN).await.unwrap();
    let capture_port = capture.url().rsplit(':').next().unwrap().to_string();
    let s = start_with(serve_config(&fake.url()), |_| {}).await;
    for status in [307, 302, 301, 308] {
        fake.push(
            Route::Generate,
            Fault::redirect(status, &format!("{}/capture/generate", capture.url())),
        );
        let (code, headers, body) = post(
            &s,
            "text-complete",
            Some(APP_KEY),
            &[],
            crate::support::text_body("tgi"),
        )
        .await;
        assert_eq!(code, 502, "{status}: {body}");
        assert_eq!(body["kind"], "invalid_response", "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains(&status.to_string())
                && message.contains("`tgi`")
                && message.contains("`hf`"),
            "{message}"
        );
        assert!(
            !message.contains(&capture_port) && !message.contains("capture"),
            "{message}"
        );
        assert_eq!(headers["x-should-retry"], "false");
    }
    // A stream's redirect, and the Hub's.
    fake.push(
        Route::GenerateStream,
        Fault::redirect(302, &format!("{}/generate_stream", capture.url())),
    );
    let (code, _, text) = read_all(
        &s,
        "/v1/tasks/text-complete",
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "stream": true}),
    )
    .await;
    assert!(
        code == 502 || text.contains("invalid_response"),
        "{code}: {text}"
    );
    fake.push(
        Route::WhoAmI,
        Fault::redirect(307, &format!("{}/api/whoami-v2", capture.url())),
    );
    let dir = Dir::new();
    let path = dir.write("c.toml", &serve_config(&fake.url()));
    let c = hfconnect::Connector::from_path(
        &path,
        &hfconnect::config::LoadOptions::new().env(crate::support::env()),
    )
    .unwrap();
    let e = hfconnect::testing::core(&c)
        .token_check("hf")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("307"), "{e}");
    assert!(
        capture.requests().is_empty(),
        "a redirect was followed: {:?}",
        capture.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_user_field_acts_exactly_like_the_user_header_with_a_group_scope() {
    let logs = crate::support::global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(serve_config(&fake.url()), |_| {}).await;
    let chat = |user: Option<&str>, header_user: Option<&str>| {
        let mut body = json!({"model": "hf/tgi", "messages": [{"role": "user", "content": "hi"}]});
        if let Some(u) = user {
            body["user"] = json!(u);
        }
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", s.url))
            .bearer_auth(PORTAL_KEY)
            .header("x-hfconnect-group", "support")
            .json(&body);
        if let Some(u) = header_user {
            r = r.header("x-hfconnect-user", u);
        }
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // `portal` is in no group; alice is in `support`.
    let (by_header, b1) = chat(None, Some("alice")).await;
    let (by_field, b2) = chat(Some("alice"), None).await;
    assert_eq!((by_header, by_field), (200, 200), "{b1} {b2}");
    // A user outside the group: refused, and the audit line names the user.
    let (status, body) = chat(Some("carol-h28@acme.com"), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`user:carol-h28@acme.com`"),
        "{body}"
    );
    wait_for("the refusal's audit line", Duration::from_secs(5), || {
        let text = logs.text();
        async move {
            text.lines().any(|l| {
                l.contains("user:carol-h28@acme.com via app:portal") && l.contains("denied")
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_in_content_parts_and_oversized_stop_lists_are_refused_by_name() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(serve_config(&fake.url()), |_| {}).await;
    let openai = |path: &str, body: Value| {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", s.url))
            .bearer_auth(APP_KEY)
            .json(&body);
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = openai(
        "/v1/chat/completions",
        json!({"model": "hf/tgi", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {}}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["param"], "messages[0].content[0].cache_control",
        "{body}"
    );

    let many: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
    let (status, body) = openai(
        "/v1/completions",
        json!({"model": "hf/tgi", "prompt": "hi", "stop": many}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "stop", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 16"),
        "{body}"
    );
    let long = "x".repeat(300);
    let (status, body) = openai(
        "/v1/completions",
        json!({"model": "hf/tgi", "prompt": "hi", "stop": [long]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("stop")),
        "{body}"
    );
    // The task routes (and every other door: the bound is the task's).
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "stopWords": many}),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (422, Some("invalid_input")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("`stopWords`"),
        "{body}"
    );
    assert!(
        fake.requests_to("/generate").is_empty(),
        "an unbounded list went upstream"
    );
    // A hostile upstream that echoes its stop list back echoes only what the
    // bound let through (TGI itself takes 4 unless `max_stop_sequences` is raised).
    fake.behave(|b| b.echo_stop = true);
    let sixteen: Vec<String> = (0..4).map(|i| format!("stop{i}")).collect();
    let (status, _, body) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "stopWords": sixteen}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].as_str().unwrap().contains("stop3"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_callers_input_is_the_callers_4xx() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let url = fake.url();
    let cfg = serve_config(&url)
        + &format!(
            "\n[[integrations]]\nname = \"emb\"\napi_key = {{ env = \"HF_TOKEN\" }}\nretry = {{ max_attempts = 1 }}\n\n\
             [[integrations.models]]\nname = \"tei\"\nendpoint = \"{url}/tei\"\napi = \"tei\"\ntasks = [\"embeddings\"]\n\n\
             [[grants]]\nsubject = \"group:support\"\ntarget = \"integration:emb\"\naccess = [\"EXECUTE\"]\n"
        );
    let s = start_with(cfg, |_| {}).await;
    // TEI's HTTP layer refuses a body over its payload limit: 413, plain text.
    fake.push(Route::Embed, Fault::text(413, "Payload Too Large"));
    let big = "word ".repeat(1000);
    let embed = json!({"llmProvider": "emb", "model": "tei", "text": big});
    let (status, headers, body) = post(&s, "embed", Some(APP_KEY), &[], embed.clone()).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (413, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(body["retryable"], false);
    assert_eq!(headers["x-should-retry"], "false");
    // Over the model's token limit with `truncate: false`: TEI's 422 `Validation`.
    fake.behave(|b| b.tei_max_input = 8);
    let mut over = embed.clone();
    over["truncate"] = json!(false);
    let (status, _, body) = post(&s, "embed", Some(APP_KEY), &[], over).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
    // The OpenAI door answers the same refusal as OpenAI does: a 400.
    fake.push(Route::Embed, Fault::text(413, "Payload Too Large"));
    let r = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "emb/tei", "input": big}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(status == 413 || status == 400, "{status}: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    // A server fault stays a 5xx.
    fake.push_n(Route::Embed, Fault::text(500, "boom"), 3);
    let (status, _, body) = post(
        &s,
        "embed",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "emb", "model": "tei", "text": "x"}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_traffic_until_every_active_integration_has_a_key() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let url = fake.url();
    let cfg = serve_config(&url)
        + &format!(
            "\n[[integrations]]\nname = \"unkeyed\"\napi_key = {{ env = \"HF_TOKEN_H28_NOT_SET\" }}\n\n\
             [[integrations.models]]\nname = \"tgi\"\nendpoint = \"{url}/\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\n"
        );
    let ready = |s: &Server| {
        let url = format!("{}/readyz", s.url);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let strict = start_with(cfg.clone(), |_| {}).await;
    let (status, body) = ready(&strict).await;
    assert_eq!((status, &body["ready"]), (503, &json!(false)), "{body}");
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("`unkeyed`") && reasons.contains("HF_TOKEN_H28_NOT_SET"),
        "{body}"
    );
    assert_eq!(body["keys"]["unkeyed"]["available"], false, "{body}");
    assert_eq!(body["keys"]["hf"]["available"], true, "{body}");
    let relaxed = start_with(cfg.clone(), |o| o.require_keys = false).await;
    let (status, body) = ready(&relaxed).await;
    assert_eq!((status, &body["ready"]), (200, &json!(true)), "{body}");
    assert!(
        body["reasons"].to_string().contains("`unkeyed`"),
        "still reported: {body}"
    );
    // An inactive integration without a key holds nothing.
    let inactive = start_with(
        cfg.replace("name = \"unkeyed\"", "name = \"unkeyed\"\nactive = false"),
        |_| {},
    )
    .await;
    assert_eq!(ready(&inactive).await.0, 200);

    // `config check --strict`: the same config fails with its own code (6);
    // without `--strict` the warning passes (0).
    let dir = Dir::new();
    let path = dir.write("c.toml", &cfg);
    let p = path.to_str().unwrap();
    let plain = crate::support::run(&["config", "check", "--config", p]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    let strict = crate::support::run(&["config", "check", "--strict", "--config", p]);
    assert_eq!(strict.code, 6, "{}", strict.all());
    assert!(strict.all().contains("--strict"), "{}", strict.all());
    let json = crate::support::run(&["config", "check", "--strict", "--json", "--config", p]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!((json.code, &v["passed"]), (6, &json!(false)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_whether_to_retry_and_answers_carry_the_rate_limits() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let url = fake.url();
    let cfg = serve_config(&url)
        + &format!(
            "\n[[integrations]]\nname = \"tight\"\napi_key = {{ env = \"HF_TOKEN\" }}\nrate_limit = {{ per_second = 1, burst = 2 }}\nqueue_timeout = 0\n\n\
             [[integrations.models]]\nname = \"tgi\"\nendpoint = \"{url}/\"\napi = \"tgi\"\ntasks = [\"text-generation\", \"chat\"]\n\n\
             [[grants]]\nsubject = \"group:support\"\ntarget = \"integration:tight\"\naccess = [\"EXECUTE\"]\n"
        );
    let s = start_with(cfg, |_| {}).await;
    let client = reqwest::Client::new();
    // Not JSON under `json_object`: invalid output, which no retry mends.
    let r = client
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "hf/org/chat-model", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let (status, headers, body) = post(
        &s,
        "chat-complete",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "hf", "model": "org/chat-model", "messages": [{"role": "user", "message": "hi"}], "jsonOutput": true}),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (502, Some("invalid_output")),
        "{body}"
    );
    assert_eq!(headers["x-should-retry"], "false");
    // A burst of 2: the answers count down, the third is a 429 to retry.
    let complete = || {
        client
            .post(format!("{}/v1/completions", s.url))
            .bearer_auth(APP_KEY)
            .json(&json!({"model": "tight/tgi", "prompt": "hi"}))
            .send()
    };
    let first = complete().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    // One of two used, at one a second: whole again in a second.
    assert_eq!(first.headers()["x-ratelimit-reset-requests"], "1s");
    let second = complete().await.unwrap();
    assert_eq!(second.headers()["x-ratelimit-remaining-requests"], "0");
    let third = complete().await.unwrap();
    assert_eq!(third.status(), 429);
    let h = third.headers();
    assert_eq!(h["x-should-retry"], "true");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert!(h.contains_key("retry-after"));
    // The client is told to come back later: on a new connection.
    assert_eq!(h["connection"], "close");
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_are_capped_and_a_rapid_reset_flood_leaves_others_served() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &serve_config(&fake.url()));
    let (child, base) =
        crate::support::serve_process(&path, &[("HF_TOKEN", TOKEN.to_string())]).await;
    let pid = child.id().unwrap();
    let addr = base.trim_start_matches("http://").to_string();
    let before = rss_kib(pid);

    // The cap the server announces.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let announced = tokio::time::timeout(
        Duration::from_secs(5),
        std::future::poll_fn(|cx| {
            let _ = std::future::Future::poll(std::pin::Pin::new(&mut conn), cx);
            match conn.max_concurrent_send_streams() {
                256 => std::task::Poll::Ready(256),
                _ => std::task::Poll::Pending,
            }
        }),
    )
    .await
    .expect("the server announced its stream cap");
    assert_eq!(announced, 256);
    tokio::spawn(async move {
        let _ = conn.await;
    });

    // Others keep being answered while one connection floods.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let others = {
        let (stop, served, failed, base) =
            (stop.clone(), served.clone(), failed.clone(), base.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                match http.get(format!("{base}/healthz")).send().await {
                    Ok(r) if r.status() == 200 => served.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    // Open and reset streams in a loop (bounded in count and time).
    let mut client = client;
    let mut reset = 0u32;
    let end = Instant::now() + Duration::from_secs(10);
    while reset < 20_000 && Instant::now() < end {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let req = http::Request::post(format!("{base}/v1/tasks/text-complete"))
            .body(())
            .unwrap();
        let Ok((_resp, mut body)) = client.send_request(req, false) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
        reset += 1;
    }
    assert!(reset > 0);
    stop.store(true, Ordering::SeqCst);
    others.await.unwrap();
    assert!(
        served.load(Ordering::SeqCst) > 0,
        "nobody else was served during the flood"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "others were refused during the flood"
    );
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB over {reset} reset streams"
    );
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_under_load_fails_no_task() {
    const NEW_TOKEN: &str = "hf_rotated_token_after_swap";
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.accept_token(NEW_TOKEN);
    let dir = Dir::new();
    let mut mount = crate::support::SecretMount::new(dir.path(), TOKEN);
    let cfg = mount.in_config(&serve_config(&fake.url()));
    let path = dir.write("c.toml", &cfg);
    let (child, base) = crate::support::serve_process(&path, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, base) = (stop.clone(), ok.clone(), failed.clone(), base.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::SeqCst) {
                    let r = http
                        .post(format!("{base}/v1/tasks/text-complete"))
                        .bearer_auth(APP_KEY)
                        .json(&crate::support::text_body("tgi"))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    if status == 200 {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let text = r.text().await.unwrap();
                        failed.lock().unwrap().push(format!("{status}: {text}"));
                    }
                }
            })
        })
        .collect();
    let at_least = |n: u64| {
        let ok = ok.clone();
        move || {
            let done = ok.load(Ordering::SeqCst) >= n;
            async move { done }
        }
    };
    wait_for(
        "tasks flowing on the old token",
        Duration::from_secs(10),
        at_least(20),
    )
    .await;
    mount.rotate(NEW_TOKEN);
    let bearer = format!("Bearer {NEW_TOKEN}");
    wait_for("the new token upstream", Duration::from_secs(20), || {
        let seen = fake.requests().iter().any(|r| {
            r.headers
                .iter()
                .any(|(k, v)| k == "authorization" && *v == bearer)
        });
        async move { seen }
    })
    .await;
    let now = ok.load(Ordering::SeqCst);
    wait_for(
        "tasks flowing on the new token",
        Duration::from_secs(10),
        at_least(now + 20),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} tasks failed across the swap: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    drop(child);
}
