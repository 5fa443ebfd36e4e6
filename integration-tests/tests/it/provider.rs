//! The Hugging Face provider against the fake server over real HTTP: request
//! bodies per flavour, answers, streams, every error kind and retry rule.

use std::time::{Duration, Instant};

use hfconnect::testing::provider::huggingface::HuggingFace;
use hfconnect::testing::provider::{
    Api, ChatMessage, ChatRequest, ChatRole, ErrorKind, FinishReason, GenerationParams,
    LlmProvider, SummarizeRequest, TextRequest,
};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use secrecy::SecretString;
use serde_json::json;

use crate::support::provider::{
    collect, failure_cases, model, provider, quick_provider, settings, text,
};
use crate::support::TOKEN;

fn chat_req(msg: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage {
                role: ChatRole::System,
                content: "be brief".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: msg.into(),
            },
        ],
        params: GenerationParams {
            max_tokens: Some(10),
            ..GenerationParams::default()
        },
    }
}

#[tokio::test]
async fn tgi_generate_sends_the_documented_body_and_reads_details_and_headers() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = provider(&fake);
    let req = TextRequest {
        prompt: "Say hi".into(),
        params: GenerationParams {
            max_tokens: Some(3),
            temperature: Some(0.5),
            top_p: Some(0.9),
            stop: vec!["zzz".into()],
            seed: Some(1),
        },
    };
    let c = p.generate(&model(&fake, Api::Tgi), &req).await.unwrap();
    assert_eq!(c.text, "Hello from the ");
    assert_eq!(c.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        (c.usage.prompt_tokens, c.usage.completion_tokens),
        (Some(2), Some(3))
    );
    assert_eq!(c.request_id.as_deref(), Some("fake-req-1"));
    assert_eq!(c.timings.inference, Some(Duration::from_millis(12)));
    assert_eq!(c.attempts, 1);
    let reqs = fake.requests_to("/generate");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.json(),
        json!({"inputs": "Say hi", "parameters": {"max_new_tokens": 3, "temperature": 0.5, "top_p": 0.9, "stop": ["zzz"], "seed": 1, "details": true}})
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("user-agent").unwrap().starts_with("hfconnect/"));
    assert_eq!(r.header("x-scale-up-timeout"), Some("3"));

    // Stop sequences and the end of the answer.
    let req = TextRequest {
        prompt: "x".into(),
        params: GenerationParams {
            stop: vec!["from".into()],
            ..GenerationParams::default()
        },
    };
    let c = p.generate(&model(&fake, Api::Tgi), &req).await.unwrap();
    assert_eq!(
        (c.text.as_str(), c.finish_reason),
        ("Hello from ", Some(FinishReason::StopSequence))
    );
    let c = p
        .generate(&model(&fake, Api::Tgi), &text("x"))
        .await
        .unwrap();
    assert_eq!(c.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        fake.requests_to("/generate")[2].json(),
        json!({"inputs": "x", "parameters": {"details": true}})
    );
}

#[tokio::test]
async fn usage_falls_back_to_headers_or_stays_unknown() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.token_headers = false);
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("a b c"))
        .await
        .unwrap();
    assert_eq!(
        (c.usage.prompt_tokens, c.usage.completion_tokens),
        (None, Some(5)),
        "completion from details, prompt unknown"
    );
}

#[tokio::test]
async fn chat_sends_model_and_messages_and_reads_usage_from_the_body() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let c = provider(&fake)
        .chat(&model(&fake, Api::Chat), &chat_req("hi there"))
        .await
        .unwrap();
    assert_eq!(c.text, "Hello from the fake endpoint");
    assert_eq!(c.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        (c.usage.prompt_tokens, c.usage.completion_tokens),
        (Some(4), Some(5))
    );
    let r = &fake.requests_to("/v1/chat/completions")[0];
    assert_eq!(
        r.json(),
        json!({"model": "org/model", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}], "max_tokens": 10, "stream": false})
    );
}

#[tokio::test]
async fn pipeline_summarization_and_the_unused_kwargs_retry() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = provider(&fake);
    let req = SummarizeRequest {
        text: "long text".into(),
        max_length: Some(50),
        min_length: Some(5),
    };
    let c = p
        .summarize(&model(&fake, Api::Pipeline), &req)
        .await
        .unwrap();
    assert_eq!(c.text, "Hello from the fake endpoint");
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"inputs": "long text", "parameters": {"max_length": 50, "min_length": 5}})
    );

    // A text-generation pipeline does not know max_length: 400, then once more without parameters.
    fake.clear_requests();
    fake.behave(|b| b.pipeline_task = "text-generation".into());
    let c = p
        .summarize(&model(&fake, Api::Pipeline), &req)
        .await
        .unwrap();
    assert_eq!(c.text, "Hello from the fake endpoint");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].json().get("parameters").is_some());
    assert_eq!(reqs[1].json(), json!({"inputs": "long text"}));
}

#[tokio::test]
async fn router_paths() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = provider(&fake);
    let m = model(&fake, Api::Router);
    p.summarize(
        &m,
        &SummarizeRequest {
            text: "t".into(),
            max_length: None,
            min_length: None,
        },
    )
    .await
    .unwrap();
    p.chat(&m, &chat_req("hi")).await.unwrap();
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/hf-inference/models/org/model",
            "/hf-inference/models/org/model/v1/chat/completions"
        ]
    );
    assert_eq!(fake.requests()[0].json(), json!({"inputs": "t"}));
}

#[tokio::test]
async fn tgi_streams_with_and_without_a_space_and_with_keepalives() {
    for (space, keepalive) in [(false, false), (true, false), (false, true)] {
        let fake = FakeHf::start(TOKEN).await.unwrap();
        fake.behave(|b| {
            b.sse_space = space;
            b.keepalive = keepalive;
        });
        let (tokens, done) = collect(
            provider(&fake).generate_stream(&model(&fake, Api::Tgi), text("one two three")),
        )
        .await;
        let c = done.unwrap();
        assert_eq!(
            tokens,
            ["Hello ", "from ", "the ", "fake ", "endpoint"],
            "space={space}"
        );
        assert_eq!(c.text, tokens.concat());
        assert_eq!(c.finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            (c.usage.prompt_tokens, c.usage.completion_tokens),
            (Some(3), Some(5)),
            "usage from the last event"
        );
        assert!(c.timings.first_token.is_some());
        assert_eq!(
            fake.requests_to("/generate_stream")[0].json()["parameters"]["details"],
            true
        );
    }
}

#[tokio::test]
async fn chat_streams_with_and_without_done_and_usage() {
    for (done, usage) in [(true, true), (false, true), (true, false), (false, false)] {
        let fake = FakeHf::start(TOKEN).await.unwrap();
        fake.behave(|b| {
            b.chat_done = done;
            b.chat_usage = usage;
        });
        let (tokens, c) =
            collect(provider(&fake).chat_stream(&model(&fake, Api::Chat), chat_req("a b"))).await;
        let c = c.unwrap_or_else(|e| panic!("done={done} usage={usage}: {e}"));
        assert_eq!(tokens.concat(), "Hello from the fake endpoint");
        assert_eq!(c.text, tokens.concat());
        assert_eq!(c.finish_reason, Some(FinishReason::Stop));
        let want = if usage {
            (Some(4), Some(5))
        } else {
            (None, None)
        };
        assert_eq!(
            (c.usage.prompt_tokens, c.usage.completion_tokens),
            want,
            "done={done} usage={usage}"
        );
        let body = fake.requests_to("/v1/chat/completions")[0].json();
        assert_eq!(
            (body["stream"].clone(), body["stream_options"].clone()),
            (json!(true), json!({"include_usage": true}))
        );
    }
}

#[tokio::test]
async fn probe_reads_health_and_info_in_both_spellings() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = provider(&fake);
    let info = p.probe(&model(&fake, Api::Tgi)).await.unwrap();
    assert!(info.healthy);
    assert_eq!(
        (
            info.model_id.as_deref(),
            info.max_input_tokens,
            info.max_total_tokens
        ),
        (Some("fake/model"), Some(4096), Some(8192))
    );
    fake.behave(|b| b.legacy_info = true);
    assert_eq!(
        p.probe(&model(&fake, Api::Tgi))
            .await
            .unwrap()
            .max_input_tokens,
        Some(4096)
    );
    fake.push(
        Route::Health,
        Fault::json(
            503,
            json!({"error": "unhealthy", "error_type": "healthcheck"}),
        ),
    );
    let e = p.probe(&model(&fake, Api::Tgi)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EndpointUnavailable);
}

#[tokio::test]
async fn every_error_kind_through_real_http() {
    // Each case has a fake of its own, so they run at once.
    let failures: Vec<String> =
        futures_util::future::join_all(failure_cases().into_iter().map(|case| async move {
            let fake = FakeHf::start(TOKEN).await.unwrap();
            for (f, n) in &case.faults {
                fake.push_n(Route::Generate, f.clone(), *n);
            }
            let e = match quick_provider(&fake)
                .generate(&model(&fake, Api::Tgi), &text("hi"))
                .await
            {
                Ok(c) => return Some(format!("{}: succeeded with {c:?}", case.name)),
                Err(e) => e,
            };
            let shown = e.to_string();
            (e.kind() != case.kind
                || e.is_retryable() != case.retryable
                || !shown.contains(case.message))
            .then(|| {
                format!(
                    "{}: got {:?} retryable={} `{shown}`",
                    case.name,
                    e.kind(),
                    e.is_retryable()
                )
            })
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // 401 with the empty body TGI sends, from a wrong key.
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let wrong = HuggingFace::new(settings(&fake), Ok(SecretString::from("hf_wrong"))).unwrap();
    let e = wrong
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.status(), e.is_terminal()),
        (ErrorKind::Unauthorized, Some(401), true)
    );
    assert!(e.to_string().contains("the token for integration `hf-test` was rejected (401): check that it has not expired or been revoked; `hfconnect token check --config CONFIG --integration hf-test`"), "{e}");
    assert_eq!(fake.requests().len(), 1, "401 is not retried");

    // 422 from TGI's own validation (empty inputs): not retried, message kept.
    let e = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text(""))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.error_type(), Some("validation"));
    assert!(e
        .upstream_message()
        .unwrap()
        .contains("`inputs` cannot be empty"));

    // No key at all.
    let nokey = HuggingFace::new(
        settings(&fake),
        Err("environment variable `HF_TOKEN` is not set".into()),
    )
    .unwrap();
    let e = nokey
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnavailable);
    assert!(e.to_string().contains("`HF_TOKEN` is not set"), "{e}");

    // Nothing listening.
    let closed = crate::support::unused_port();
    let mut m = model(&fake, Api::Tgi);
    m.base_url = format!("http://127.0.0.1:{closed}/").parse().unwrap();
    let e = provider(&fake).generate(&m, &text("hi")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection);
    assert_eq!(
        e.attempts(),
        4,
        "connection failures are retried up to max_attempts"
    );
}

#[tokio::test]
async fn retries_honour_estimated_time_and_retry_after_within_bounds() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.push_n(Route::Generate, Fault::loading(0.3), 2);
    let start = Instant::now();
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(c.attempts, 3);
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(2),
        "waited {took:?} for 2 x estimated_time 0.3 s"
    );

    fake.push(Route::Generate, Fault::rate_limited(1));
    let start = Instant::now();
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    assert_eq!(c.attempts, 2);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 honoured"
    );

    // A hint past the budget gives up at once instead of sleeping.
    fake.clear_requests();
    fake.push(Route::Generate, Fault::rate_limited(30));
    let start = Instant::now();
    let e = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.retry_after()),
        (ErrorKind::RateLimited, Some(Duration::from_secs(30)))
    );
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn retry_counts_and_what_is_not_retried() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.push_n(Route::Generate, Fault::overloaded(), 2);
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    assert_eq!(c.attempts, 3);

    fake.clear_requests();
    fake.push_n(Route::Generate, Fault::overloaded(), 10);
    let e = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.attempts()), (ErrorKind::Overloaded, 4));
    assert_eq!(fake.requests().len(), 4, "max_attempts bounds the calls");
    assert!(e.to_string().contains("after 4 attempts"), "{e}");

    fake.clear_requests();
    fake.clear_faults();
    fake.push(
        Route::Generate,
        Fault::json(422, json!({"error": "bad", "error_type": "validation"})),
    );
    provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(fake.requests().len(), 1, "422 is not retried");
}

#[tokio::test]
async fn streams_retry_before_the_first_token_and_never_after() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = provider(&fake);
    let m = model(&fake, Api::Tgi);

    // An error event before any token: retried, then the stream succeeds.
    fake.push(
        Route::GenerateStream,
        Fault::StreamError {
            after: 0,
            event: json!({"error": "Model is overloaded", "error_type": "overloaded"}),
        },
    );
    let (tokens, c) = collect(p.generate_stream(&m, text("hi"))).await;
    assert_eq!(c.unwrap().attempts, 2);
    assert_eq!(tokens.concat(), "Hello from the fake endpoint");
    assert_eq!(fake.requests_to("/generate_stream").len(), 2);

    // An error event after two tokens: the tokens, then the typed error; no retry.
    fake.clear_requests();
    fake.push(Route::GenerateStream, Fault::StreamError { after: 2, event: json!({"error": "Request failed during generation: out of memory", "error_type": "generation"}) });
    let (tokens, e) = collect(p.generate_stream(&m, text("hi"))).await;
    let e = e.unwrap_err();
    assert_eq!(tokens, ["Hello ", "from "]);
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(
        e.to_string().contains("out of memory") && e.to_string().contains("inside the stream"),
        "{e}"
    );
    assert_eq!(fake.requests().len(), 1);

    // A retryable error after a token is still not retried.
    fake.clear_requests();
    fake.push(
        Route::GenerateStream,
        Fault::StreamError {
            after: 1,
            event: json!({"error": "Model is overloaded", "error_type": "overloaded"}),
        },
    );
    let (tokens, e) = collect(p.generate_stream(&m, text("hi"))).await;
    assert_eq!(
        (tokens.len(), e.unwrap_err().kind()),
        (1, ErrorKind::Overloaded)
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "no retry after a token was delivered"
    );

    // A stream that ends without its final event is incomplete.
    fake.clear_requests();
    fake.push(Route::GenerateStream, Fault::StreamCut(2));
    let (tokens, e) = collect(p.generate_stream(&m, text("hi"))).await;
    let e = e.unwrap_err();
    assert_eq!((tokens.len(), e.kind()), (2, ErrorKind::Upstream));
    assert!(e.to_string().contains("incomplete"), "{e}");
    assert_eq!(fake.requests().len(), 1);

    // A chat stream error event (`{"error": {"message", "http_status_code"}}` then [DONE]).
    fake.push(Route::Chat, Fault::StreamError { after: 0, event: json!({"error": {"message": "Input validation error: too long", "http_status_code": 422}}) });
    let (_, e) = collect(p.chat_stream(&model(&fake, Api::Chat), chat_req("hi"))).await;
    let e = e.unwrap_err();
    assert_eq!(
        (e.kind(), e.status()),
        (ErrorKind::InvalidRequest, Some(422))
    );
    assert!(e.to_string().contains("too long"), "{e}");

    // HTTP errors before the stream opens are retried like any call.
    fake.push_n(Route::GenerateStream, Fault::loading(0.05), 2);
    let (_, c) = collect(p.generate_stream(&m, text("hi"))).await;
    assert_eq!(c.unwrap().attempts, 3);
}

#[tokio::test]
async fn first_token_timeout_then_retry() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let mut s = settings(&fake);
    s.calls.first_token_timeout = Duration::from_millis(300);
    let p = HuggingFace::new(s, Ok(SecretString::from(TOKEN))).unwrap();
    fake.push(
        Route::GenerateStream,
        Fault::SlowEvents(Duration::from_millis(800)),
    );
    let (tokens, c) = collect(p.generate_stream(&model(&fake, Api::Tgi), text("hi"))).await;
    assert_eq!(
        c.unwrap().attempts,
        2,
        "the slow attempt timed out before its first token and was retried"
    );
    assert_eq!(tokens.len(), 5);

    // Always slow: a timeout error.
    let mut s = settings(&fake);
    s.calls.first_token_timeout = Duration::from_millis(200);
    s.calls.retry.max_attempts = 1;
    let p = HuggingFace::new(s, Ok(SecretString::from(TOKEN))).unwrap();
    fake.push(
        Route::GenerateStream,
        Fault::SlowEvents(Duration::from_millis(600)),
    );
    let (_, e) = collect(p.generate_stream(&model(&fake, Api::Tgi), text("hi"))).await;
    let e = e.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.to_string().contains("first-token timeout"), "{e}");
}

#[tokio::test]
async fn a_slow_body_within_the_timeout_is_read_and_past_it_times_out() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.push(Route::Generate, Fault::SlowBody(Duration::from_millis(300)));
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    assert_eq!(
        (c.text.as_str(), c.attempts),
        ("Hello from the fake endpoint", 1)
    );

    let mut s = settings(&fake);
    s.calls.request_timeout = Duration::from_millis(300);
    s.calls.retry.max_attempts = 2;
    let p = HuggingFace::new(s, Ok(SecretString::from(TOKEN))).unwrap();
    fake.push_n(Route::Generate, Fault::SlowBody(Duration::from_secs(2)), 2);
    let e = p
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert!(e.is_timeout() && e.is_retryable(), "{e}");
    assert_eq!(e.attempts(), 2);
}

#[tokio::test]
async fn scaled_to_zero_then_running() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.add_endpoint("mistral-ep", "scaledToZero", &fake.url());
    fake.push_n(Route::Generate, Fault::scaled_to_zero(), 3);
    let c = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    assert_eq!(c.attempts, 4);
    assert!(
        fake.requests_to("/v2/endpoint/acme").len() == 1,
        "the management API was asked once"
    );
    assert!(fake
        .requests_to("/generate")
        .iter()
        .all(|r| r.header("x-scale-up-timeout") == Some("3")));
}

#[tokio::test]
async fn a_paused_endpoint_fails_fast_or_is_resumed_when_allowed() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.add_endpoint("mistral-ep", "paused", &fake.url());
    fake.push_n(Route::Generate, Fault::scaled_to_zero(), 2);
    let start = Instant::now();
    let e = provider(&fake)
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EndpointUnavailable);
    let msg = e.to_string();
    assert!(
        msg.contains("endpoint `mistral-ep` is paused") && msg.contains("resume_paused = true"),
        "{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no waiting on a paused endpoint"
    );
    assert!(fake.requests_to("/resume").is_empty());

    let mut s = settings(&fake);
    s.calls.cold_start.resume_paused = true;
    let p = HuggingFace::new(s, Ok(SecretString::from(TOKEN))).unwrap();
    let c = p
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap();
    assert_eq!(c.text, "Hello from the fake endpoint");
    assert_eq!(
        fake.requests_to("/v2/endpoint/acme/mistral-ep/resume")
            .len(),
        1
    );
    assert_eq!(
        fake.endpoint_state("mistral-ep").as_deref(),
        Some("initializing")
    );
}

#[tokio::test]
async fn whoami_reads_owner_orgs_and_role() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let who = provider(&fake).whoami().await.unwrap();
    assert_eq!(
        (who.name.as_str(), who.role.as_deref(), who.orgs.clone()),
        ("alice", Some("read"), vec!["acme".to_string()])
    );
    assert!(who.covers("acme") && who.covers("alice") && !who.covers("other"));
    let r = &fake.requests_to("/api/whoami-v2")[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}
