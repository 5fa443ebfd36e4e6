//! The security trial, repeated: each defect found by trying hfconnect as an
//! attacker would, with the request that showed it. Log injection, identity
//! headers that failed open, connections held forever, unbounded metric
//! labels, the key on the streaming path, secrets in config diagnostics, YAML
//! alias bombs, unbounded answers, endpoint URLs shown to callers, the bearer
//! scheme's case; and the fakes driven over HTTP as a shell would.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::TextCompleteInput;
use hfconnect::task::{Task, TaskErrorKind};
use hfconnect::testing::provider::LlmProvider;
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_conductor::Schedule;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::global_logs;
use crate::support::TOKEN;
use crate::support::{check, Dir, Run};
use crate::support::{config, env};
use crate::support::{hash, post, serve_config, start, start_with, text_body, APP_KEY, PORTAL_KEY};

/// A line an attacker would like to see in the log, and the escapes that
/// would hide or colour it on an operator's terminal.
const FORGED: &str =
    "2031-01-01T00:00:00.000000Z  INFO hfconnect::audit: task caller=app:root decision=\"allowed\"";

fn evil(marker: &str) -> String {
    format!("{marker}\n{FORGED}\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}")
}

fn no_hidden(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' || matches!(c, '\u{202a}'..='\u{202e}'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_text_is_escaped_and_bounded_in_logs_answers_and_task_logs() {
    let logs = global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let bad = evil("inj-7f3a");
    for body in [
        json!({"llmProvider": bad, "model": "tgi", "prompt": "x"}),
        json!({"llmProvider": "hf", "model": bad, "prompt": "x"}),
        json!({"llmProvider": "hf", "model": "tgi", "promptName": bad}),
    ] {
        let (status, _, b) = post(&s, "text-complete", Some(APP_KEY), &[], body).await;
        assert_eq!(status, 404, "{b}");
        let msg = b["error"].as_str().unwrap();
        assert!(no_hidden(msg) && !msg.contains('\n'), "{msg:?}");
        assert!(msg.contains("inj-7f3a\\n2031-01-01"), "{msg}");
    }
    // A 500 KB model name is cut in the answer and in the audit event.
    let huge = format!("inj-huge-{}", "m".repeat(500_000));
    let (status, _, b) = post(
        &s,
        "text-complete",
        Some(APP_KEY),
        &[],
        json!({"llmProvider": "hf", "model": huge, "prompt": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(b["error"].as_str().unwrap().len() < 2_000, "{}", b["error"]);
    assert!(b["error"].as_str().unwrap().contains("more bytes]"));

    // A 64 KiB user id with a newline, through the library.
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let who = format!("inj-user\n{FORGED}{}", "u".repeat(64 * 1024));
    let p = c
        .principal(&Subject::User(who.as_str().into()), None)
        .unwrap();
    let task = Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("x".into()),
        ..Default::default()
    });
    let e = c
        .run(TaskRequest::new(&p, &task))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Denied);
    assert!(e.to_string().len() < 4_000 && no_hidden(&e.to_string()));

    let text = logs.text();
    assert!(
        !text.lines().any(|l| l.starts_with("2031-01-01")),
        "a forged line reached the log"
    );
    for marker in ["inj-7f3a", "inj-huge", "inj-user"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(marker)).collect();
        assert!(!lines.is_empty(), "no log line about {marker}");
        for l in lines {
            assert!(no_hidden(l), "{l:?}");
            assert!(l.len() < 6_000, "{marker}: a line of {} bytes", l.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conductor_input_is_escaped_in_task_logs() {
    let w = crate::support::working::setup("[worker]\nidentity = \"task-input\"\n").await;
    let id = w.conductor.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        json!({"llmProvider": evil("inj-cond"), "model": "tgi", "prompt": "hi", "_createdBy": "ann"}),
    ));
    let creator = w.conductor.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        json!({"llmProvider": "hf", "model": "tgi", "prompt": "hi", "_createdBy": format!("ann\n{FORGED}")}),
    ));
    w.run_until(w.settings.clone(), |c| c.running() == 0).await;
    for wf in [&id, &creator] {
        let t = w.conductor.last_task(wf).unwrap();
        assert_eq!(t.status, "FAILED_WITH_TERMINAL_ERROR", "{t:?}");
        let all = format!(
            "{} {}",
            t.logs.join("\n"),
            t.reason.clone().unwrap_or_default()
        );
        for l in t.logs.iter().chain(t.reason.iter()) {
            assert!(no_hidden(l) && !l.contains('\n'), "{l:?}");
        }
        assert!(all.contains("\\n2031-01-01"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn present_identity_headers_are_used_or_refused_never_ignored() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    const GATEWAY_KEY: &str = "hfc_test_gateway_key_0003";
    let cfg = serve_config(&fake.url())
        + &format!(
            "\n[[applications]]\nname = \"gateway\"\ngroups = [\"support\"]\nact_for_users = true\nkeys = [\"{}\"]\n",
            hash(GATEWAY_KEY)
        );
    let s = start_with(cfg, |_| {}).await;
    let client = reqwest::Client::new();
    let send = |headers: Vec<(&'static str, reqwest::header::HeaderValue)>, auth: String| {
        let mut r = client
            .post(format!("{}/v1/tasks/text-complete", s.url))
            .header("authorization", auth)
            .json(&text_body("tgi"));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let hv = |b: &[u8]| reqwest::header::HeaderValue::from_bytes(b).unwrap();
    let bearer = format!("Bearer {GATEWAY_KEY}");
    // The gateway alone may run tgi (group support): a present user header
    // that would have been dropped must never run the task as the gateway.
    assert_eq!(send(vec![], bearer.clone()).await.0, 200);
    let (status, b) = send(
        vec![("x-hfconnect-user", hv("mallory@acmé.com".as_bytes()))],
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 403, "a UTF-8 id is a user with no grants: {b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("user:mallory@acmé.com"),
        "{b}"
    );
    for bad in [
        &b"\xff\xfeevil"[..],
        b"",
        b"   ",
        &[b'a'; 300][..],
        b"app:batch",
        b"user:",
    ] {
        let (status, b) = send(vec![("x-hfconnect-user", hv(bad))], bearer.clone()).await;
        assert_eq!(status, 400, "{:?}: {b}", String::from_utf8_lossy(bad));
        assert_eq!(b["kind"], "invalid_input");
    }
    // `user:ID` is the same as `ID`: alice is in support.
    let (status, b) = send(
        vec![("x-hfconnect-user", hv(b"user:alice"))],
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    // A group header that cannot name a group is an unknown group, not no scope.
    let (status, b) = send(
        vec![("x-hfconnect-group", hv("supp\u{f6}rt".as_bytes()))],
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 404, "{b}");
    let (status, _) = send(vec![("x-hfconnect-group", hv(b""))], bearer.clone()).await;
    assert_eq!(status, 400);
    let (status, _) = send(
        vec![("x-hfconnect-group", hv(b"group:support"))],
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // RFC 9110: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER"] {
        let (status, b) = send(vec![], format!("{scheme} {APP_KEY}")).await;
        assert_eq!(status, 200, "{scheme}: {b}");
    }
    let (status, _) = send(vec![], format!("Basic {APP_KEY}")).await;
    assert_eq!(status, 401);
}

/// Read until the server closes the connection; how long that took.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_surplus_connections_are_let_go() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await; // header timeout 1 s, body timeout 2 s
    let addr = s.url.trim_start_matches("http://").to_string();
    let limit = Duration::from_secs(10);

    // Not a single byte.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let took = closed_within(&mut silent, limit).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(900)),
        "{took:?}"
    );

    // HTTP/2: the preface and SETTINGS, then nothing.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut h2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    h2.write_all(preface).await.unwrap();
    assert!(
        closed_within(&mut h2, limit).await.is_some(),
        "an idle HTTP/2 connection was held"
    );

    // HTTP/2: a HEADERS frame announcing 100 bytes, 10 sent.
    let mut h2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    h2.write_all(preface).await.unwrap();
    h2.write_all(b"\x00\x00\x64\x01\x04\x00\x00\x00\x01")
        .await
        .unwrap();
    h2.write_all(&[0x82; 10]).await.unwrap();
    assert!(
        closed_within(&mut h2, limit).await.is_some(),
        "an unfinished HEADERS frame was held"
    );

    // A body that never arrives whole: 408 after the body timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/tasks/text-complete HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {APP_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"llm"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, slow.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(1900));

    // Over --max-connections: a 503 and a closed connection, counted.
    let capped = start_with(serve_config(&fake.url()), |o| {
        o.max_connections = 2;
        o.header_timeout = Duration::from_secs(30);
    })
    .await;
    let caddr = capped.url.trim_start_matches("http://").to_string();
    let _a = tokio::net::TcpStream::connect(&caddr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(&caddr).await.unwrap();
    // Accepted in order: by the time the third is, the first two hold both slots.
    let mut third = tokio::net::TcpStream::connect(&caddr).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(limit, third.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("overloaded"),
        "{answer}"
    );
    drop((_a, _b));
    // Until the service has seen the two close, a scrape is refused too
    // (and counted): keep asking, and count those refusals.
    let mut refused_scrapes = 0;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        // A refused connection gets the 503 written, or (if the socket did
        // not take it at once) is just closed: both are counted refusals.
        match reqwest::get(format!("{}/metrics", capped.url)).await {
            Ok(r) if r.status() != 503 => break r.text().await.unwrap(),
            _ => refused_scrapes += 1,
        }
        assert!(
            std::time::Instant::now() < end,
            "the slots were never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains(&format!(
            "hfconnect_connections_refused_total {}",
            1 + refused_scrapes
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_never_grow_the_metrics() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let series = || async {
        let m = crate::support::scrape(&s.url).await;
        assert!(!m.contains("ghost-"), "a caller's name became a label");
        m.lines().filter(|l| !l.starts_with('#')).count()
    };
    let flood =
        |from: usize, n: usize| {
            let s = &s;
            async move {
                futures_util::stream::iter(from..from + n)
                .for_each_concurrent(32, |i| async move {
                    let body = if i % 2 == 0 {
                        json!({"llmProvider": "hf", "model": format!("ghost-{i}"), "prompt": "x"})
                    } else {
                        json!({"llmProvider": format!("ghost-{i}"), "model": "m", "prompt": "x"})
                    };
                    assert_eq!(post(s, "text-complete", Some(APP_KEY), &[], body).await.0, 404);
                })
                .await;
            }
        };
    flood(0, 200).await;
    let before = series().await;
    flood(200, 2_000).await;
    let after = series().await;
    assert_eq!(before, after, "2,000 more distinct names added series");
    let m = crate::support::scrape(&s.url).await;
    assert!(
        m.contains("integration=\"_unknown\"") && m.contains("model=\"_unknown\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_never_leaves_on_the_streaming_path() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    fake.push(
        Route::GenerateStream,
        Fault::StreamError {
            after: 1,
            event: json!({"error": format!("token {TOKEN} is not valid"), "error_type": "generation"}),
        },
    );
    let body = reqwest::Client::new()
        .post(format!("{}/v1/tasks/text-complete", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("event: error") && body.contains("[REDACTED]"),
        "{body}"
    );
    assert!(!body.contains(TOKEN), "{body}");
    // The upstream request id, echoed back with the key in it.
    fake.push_n(
        Route::Generate,
        Fault::json(500, json!({"error": "boom"})).header("x-request-id", &format!("req-{TOKEN}")),
        4,
    );
    let (status, _, b) = post(&s, "text-complete", Some(APP_KEY), &[], text_body("tgi")).await;
    assert_eq!(status, 502);
    assert!(
        !b.to_string().contains(TOKEN) && b.to_string().contains("req-[REDACTED]"),
        "{b}"
    );

    // `hfconnect run --stream`, the binary.
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));
    fake.push(
        Route::GenerateStream,
        Fault::StreamError {
            after: 1,
            event: json!({"error": format!("bad token {TOKEN}"), "error_type": "generation"}),
        },
    );
    let out = Run::new(crate::support::text_complete_args(
        &path,
        "user:alice",
        "x",
        &["--stream"],
    ))
    .unwrap()
    .env("HF_TOKEN", TOKEN)
    .output()
    .unwrap();
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("[REDACTED]") && !out.all().contains(TOKEN),
        "{}",
        out.all()
    );
}

#[test]
fn config_diagnostics_never_echo_a_misplaced_secret() {
    let dir = Dir::new();
    let base = |api_key: &str, worker: &str| {
        format!(
            "[[integrations]]\nname = \"hf\"\napi_key = {api_key}\n\n[[applications]]\nname = \"batch\"\n\n{worker}"
        )
    };
    let secret = "S3CRETvalue0123456789xyz";
    let cases = [
        base(&format!("\"huggingfacx_{secret}\""), ""),
        base(&format!("\"hf_{secret}\""), ""),
        base(&format!("\"{secret}\""), ""),
        base(&format!("{{ env = \"hf_{secret}\" }}"), ""),
        base(&format!("{{ file = \"{secret}\" }}"), ""),
        base(
            "{ env = \"HF_TOKEN\" }",
            &format!("[worker]\napp = \"batch\"\nkey_id = \"k\"\nkey_secret = \"{secret}\"\n"),
        ),
        base(
            "{ env = \"HF_TOKEN\" }",
            "[worker]\napp = \"batch\"\nkey_id = \"k\"\nkey_secret = \"short9\"\n",
        ),
    ];
    for (i, text) in cases.iter().enumerate() {
        let path = dir.write(&format!("c{i}.toml"), text);
        let out = check(&path);
        assert!(
            !out.all().contains(secret) && !out.all().contains("short9"),
            "case {i}:\n{}",
            out.all()
        );
        let json = Run::new([
            "config",
            "check",
            "--json",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap()
        .output()
        .unwrap();
        assert!(
            !json.all().contains(secret),
            "case {i} (json):\n{}",
            json.all()
        );
        // What a refused reload logs is the same text.
        if let Err(e) = hfconnect::config::load(&path, &LoadOptions::new().env(env())) {
            assert!(!e.to_string().contains(secret), "case {i}: {e}");
        }
    }
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused_quickly_with_a_location() {
    let dir = Dir::new();
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for l in "bcdefghij".chars() {
        bomb.push_str(&format!(
            "{l}: &{l} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
        prev = l;
    }
    assert!(bomb.len() < 400);
    let n = 100_000;
    let cases: Vec<(&str, String, &str)> = vec![
        ("bomb.yaml", bomb, "aliases expand to more than"),
        (
            "deep.json",
            format!("{{\"x\": {}{}}}", "[".repeat(n), "]".repeat(n)),
            "nesting",
        ),
        (
            "deep.toml",
            format!("x = {}{}\n", "[".repeat(n), "]".repeat(n)),
            "recursion",
        ),
        (
            "deep.yaml",
            format!("x: {}{}\n", "[".repeat(n), "]".repeat(n)),
            "recursion",
        ),
        (
            "dotted.toml",
            format!("{} = 1\n", vec!["a"; n].join(".")),
            "recursion",
        ),
    ];
    // Aliases nesting deeper than the parser lets text nest.
    let mut chain = String::from("a0: &a0 [1]\n");
    for i in 1..300 {
        chain.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
    }
    let mut cases = cases;
    cases.push(("chain.yaml", chain, "deeper than"));
    // Built before the clock starts: the first run of the binary builds it.
    hfconnect_integration_tests::hfconnect_bin().unwrap();
    for (name, text, needle) in cases {
        let path = dir.write(name, &text);
        let started = Instant::now();
        let out = check(&path);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
        assert_eq!(out.code, 2, "{name}: {}", out.all());
        assert!(out.stderr.contains(needle), "{name}: {}", out.stderr);
        // The file always; the line too, except where TOML's own recursion
        // limit gives no position (a dotted key 100,000 levels deep).
        let located = if name == "dotted.toml" {
            format!("{name}\n")
        } else {
            format!("{name}:")
        };
        assert!(
            out.stderr.contains(&located),
            "{name} has a location: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_the_limit_fail_with_the_limit_named() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url()).replacen(
        "cold_start = { wait = 1 }",
        "cold_start = { wait = 1 }\nmax_response_bytes = 1048576",
        1,
    );
    let path = dir.write("c.toml", &cfg);
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    let task = Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("x".into()),
        ..Default::default()
    });
    fake.push(Route::Generate, Fault::Oversized(5 << 20));
    let e = c
        .run(TaskRequest::new(&alice, &task))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "invalid_response", "{e}");
    assert!(
        e.to_string().contains("1048576") && e.to_string().contains("max_response_bytes"),
        "{e}"
    );
    // A stream's text is held to the same limit.
    let chat = Task::ChatComplete(hfconnect::task::ChatCompleteInput {
        llm_provider: "hf".into(),
        model: "org/chat-model".into(),
        messages: vec![hfconnect::task::InputMessage {
            role: hfconnect::testing::provider::ChatRole::User,
            message: "hi".into(),
        }],
        ..Default::default()
    });
    let bob_or_alice = c
        .principal(&Subject::User("alice".into()), Some("research"))
        .unwrap();
    fake.push(Route::Chat, Fault::Oversized(5 << 20));
    let mut stream = c
        .run(TaskRequest::new(&bob_or_alice, &chat).streamed())
        .await
        .stream()
        .unwrap();
    let mut last = None;
    while let Some(ev) = stream.next().await {
        last = Some(ev);
    }
    let e = last.unwrap().unwrap_err();
    assert!(e.to_string().contains("max_response_bytes"), "{e}");
    // Without the key: the default, 16 MiB.
    let path = dir.write("d.toml", &config(&fake.url()));
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    fake.push(Route::Generate, Fault::Oversized(40 << 20));
    let e = c
        .run(TaskRequest::new(&alice, &task))
        .await
        .output()
        .unwrap_err();
    assert!(e.to_string().contains("16777216"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_get_names_and_the_cause_never_the_endpoint_url() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let closed = crate::support::unused_port();
    let fake_port = fake.url().rsplit(':').next().unwrap().to_string();
    let extra = format!(
        "\n[[integrations]]\nname = \"far\"\napi_key = {{ env = \"HF_TOKEN\" }}\nretry = {{ max_attempts = 1 }}\n\n\
         [[integrations.models]]\nname = \"dead\"\nendpoint = \"http://127.0.0.1:{closed}/\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\n\n\
         [[integrations.models]]\nname = \"tls\"\nendpoint = \"https://127.0.0.1:{fake_port}/\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\n\n\
         [[grants]]\nsubject = \"group:support\"\ntarget = \"integration:far\"\naccess = [\"EXECUTE\"]\n"
    );
    let s = start_with(serve_config(&fake.url()) + &extra, |_| {}).await;
    for (model, cause) in [("dead", "refused"), ("tls", "TLS")] {
        let (status, _, b) = post(
            &s,
            "text-complete",
            Some(APP_KEY),
            &[],
            json!({"llmProvider": "far", "model": model, "prompt": "x"}),
        )
        .await;
        let msg = b["error"].as_str().unwrap();
        assert_eq!(status, 502, "{b}");
        assert!(
            msg.contains(&format!("model `{model}` of integration `far`")),
            "{msg}"
        );
        assert!(msg.contains(cause), "{model}: {msg}");
        assert!(!msg.contains("127.0.0.1") && !msg.contains("http"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fakes_take_faults_and_work_over_http() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let client = reqwest::Client::new();
    let r: Value = client
        .post(format!("{}/_fake/faults", fake.url()))
        .json(&json!({"route": "generate", "fault": {"type": "status", "status": 418, "text": "teapot"}, "times": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["queued"], 2);
    let provider = crate::support::provider::provider(&fake);
    let model = crate::support::provider::model(&fake, hfconnect::testing::provider::Api::Tgi);
    let e = provider
        .generate(&model, &crate::support::provider::text("x"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(418));
    let help = client
        .get(format!("{}/_fake/help", fake.url()))
        .send()
        .await
        .unwrap();
    assert!(help.text().await.unwrap().contains("oversized"));
    let bad = client
        .post(format!("{}/_fake/faults", fake.url()))
        .json(&json!({"route": "nowhere", "fault": {"type": "reset"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    let conductor = hfconnect_integration_tests::fake_conductor::FakeConductor::start()
        .await
        .unwrap();
    let base = conductor.url().trim_end_matches("/api").to_string();
    let r: Value = client
        .post(format!("{base}/_fake/schedule"))
        .json(&json!({"type": "LLM_TEXT_COMPLETE", "input": {"prompt": "x"}, "count": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["workflows"].as_array().unwrap().len(), 2);
    client
        .post(format!("{base}/_fake/faults"))
        .json(&json!({"route": "poll", "fault": {"type": "status", "status": 503, "text": "maintenance"}}))
        .send()
        .await
        .unwrap();
    let polled = client
        .get(format!(
            "{}/tasks/poll/batch/LLM_TEXT_COMPLETE?workerid=w&count=1&timeout=10",
            conductor.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status().as_u16(), 503);
    let wfs: Value = client
        .get(format!("{base}/_fake/workflows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wfs.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_key_still_delegates() {
    // The fail-closed header rules keep the ordinary path: a known user through an
    // application that may act for users.
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start(&fake).await;
    let (status, _, b) = post(
        &s,
        "text-complete",
        Some(PORTAL_KEY),
        &[("x-hfconnect-user", "alice")],
        text_body("tgi"),
    )
    .await;
    assert_eq!(status, 200, "{b}");
}

/// The binary's own log output, in both formats: the audit line written
/// straight to the log buffer (human) and the structured event (JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_escape_caller_text_in_both_formats() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &serve_config(&fake.url()));
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    for format in ["human", "json"] {
        let port = crate::support::unused_port();
        let child = tokio::process::Command::new(&bin)
            .args([
                "serve",
                "--config",
                path.to_str().unwrap(),
                "--log-format",
                format,
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("HF_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut up = false;
        for _ in 0..50 {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "serve did not come up");
        for body in [
            json!({"llmProvider": evil("inj-bin"), "model": "tgi", "prompt": "x"}),
            json!({"llmProvider": "hf", "model": evil("inj-bin"), "prompt": "x"}),
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "x"}),
        ] {
            client
                .post(format!("{base}/v1/tasks/text-complete"))
                .bearer_auth(APP_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
        }
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().unwrap().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8(out.stderr).unwrap();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("2031-01-01") || l.contains("\"2031-01-01")),
            "{text}"
        );
        let audit: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("hfconnect::audit"))
            .collect();
        assert_eq!(
            audit.len(),
            3,
            "{format}: one audit line per request:\n{text}"
        );
        for line in text.lines() {
            assert!(no_hidden(line), "{format}: {line:?}");
            if format == "json" {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let fields = v["fields"].to_string();
                assert!(
                    !fields.contains("\\n2031") || fields.contains("\\\\n2031"),
                    "{fields}"
                );
            }
        }
        let injected: Vec<&&str> = audit.iter().filter(|l| l.contains("inj-bin")).collect();
        assert_eq!(injected.len(), 2, "{text}");
        if format == "human" {
            assert!(
                injected
                    .iter()
                    .all(|l| l.contains("\"inj-bin\\n2031-01-01")),
                "{injected:?}"
            );
            assert!(
                audit.iter().any(|l| l.contains("outcome=\"ok\"")),
                "{audit:?}"
            );
        }
    }
}
