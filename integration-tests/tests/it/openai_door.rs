//! The OpenAI-compatible door of `serve`, driven by a real OpenAI client
//! (`async-openai`): chat plain and streamed, completions, embeddings in
//! floats and base64, the models list filtered by grants, a denied model as
//! the client's permission error, a rate limit as its rate-limit error with
//! the wait, fields hfconnect does not do refused by name, the `door` metric.

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequestArgs, FinishReason,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use async_openai::Client;
use futures_util::StreamExt;
use hfconnect_integration_tests::fake_hf::tei::fake_embedding;
use hfconnect_integration_tests::fake_hf::FakeHf;
use serde_json::{json, Value};

use crate::support::TOKEN;
use crate::support::{serve_config, start_with, Server, APP_KEY, PORTAL_KEY};

/// The task routes' config, plus a TEI model and an integration whose
/// rate limit admits one task a second and no queue.
fn config(url: &str) -> String {
    serve_config(url).replacen(
        "[[integrations]]\nname = \"hf-off\"",
        &format!(
            "[[integrations.models]]\nname = \"tei\"\nendpoint = \"{url}/tei\"\napi = \"tei\"\ntasks = [\"embeddings\"]\n\n\
             [[integrations]]\nname = \"tight\"\napi_key = {{ env = \"HF_TOKEN\" }}\nrate_limit = {{ per_second = 1, burst = 1 }}\nqueue_timeout = 0\n\n\
             [[integrations.models]]\nname = \"tgi\"\nendpoint = \"{url}/\"\napi = \"tgi\"\ntasks = [\"text-generation\", \"chat\"]\n\n\
             [[grants]]\nsubject = \"group:support\"\ntarget = \"integration:tight\"\naccess = [\"EXECUTE\"]\n\n\
             [[integrations]]\nname = \"hf-off\""
        ),
        1,
    )
}

async fn setup() -> (FakeHf, Server) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = start_with(config(&fake.url()), |_| {}).await;
    (fake, s)
}

fn client(s: &Server, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", s.url))
            .with_api_key(key),
    )
}

fn api_error(e: OpenAIError) -> (u16, async_openai::error::ApiError) {
    match e {
        OpenAIError::ApiError(r) => (r.status_code.as_u16(), r.api_error),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_plain_and_streamed_through_an_openai_client() {
    let (fake, s) = setup().await;
    let c = client(&s, APP_KEY);
    let request = CreateChatCompletionRequestArgs::default()
        .model("hf/org/chat-model")
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("Be brief.")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Hi")
                .build()
                .unwrap()
                .into(),
        ])
        .max_tokens(5u32)
        .temperature(0.0)
        .seed(7)
        .stop(["never"])
        .build()
        .unwrap();
    let r = c.chat().create(request.clone()).await.unwrap();
    assert_eq!(r.model, "hf/org/chat-model");
    assert_eq!(r.object, "chat.completion");
    assert!(r.id.starts_with("chatcmpl-"), "{}", r.id);
    let choice = &r.choices[0];
    assert_eq!(
        choice.message.content.as_deref(),
        Some("Hello from the fake endpoint")
    );
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = r.usage.unwrap();
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    // What went upstream: the task the door made, on the model's chat route.
    let sent = fake.requests_to("/v1/chat/completions")[0].json();
    assert_eq!(sent["model"], "org/chat-model");
    assert_eq!(sent["max_tokens"], 5);
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["stop"], json!(["never"]));
    assert!(sent.get("temperature").is_none(), "0 is greedy: left out");

    // Streamed, with the usage chunk.
    let mut streamed = request;
    streamed.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        ..Default::default()
    });
    let mut st = c.chat().create_stream(streamed).await.unwrap();
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    while let Some(chunk) = st.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        if let Some(u) = chunk.usage {
            usage = Some(u);
        }
        for ch in chunk.choices {
            if let Some(t) = ch.delta.content {
                text.push_str(&t);
            }
            if ch.finish_reason.is_some() {
                finish = ch.finish_reason;
            }
        }
    }
    assert_eq!(text, "Hello from the fake endpoint");
    assert_eq!(finish, Some(FinishReason::Stop));
    assert!(usage.is_some(), "include_usage asks for the usage chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_embeddings_through_an_openai_client() {
    let (fake, s) = setup().await;
    let c = client(&s, APP_KEY);
    let r = c
        .completions()
        .create(
            CreateCompletionRequestArgs::default()
                .model("hf/tgi")
                .prompt("Say hi")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.object, "text_completion");
    assert_eq!(r.choices[0].text, "Hello from the ");
    assert_eq!(
        r.choices[0].finish_reason,
        Some(async_openai::types::chat::CompletionFinishReason::Length),
        "the model's default of 3 tokens"
    );
    let mut st = c
        .completions()
        .create_stream(
            CreateCompletionRequestArgs::default()
                .model("hf/tgi")
                .prompt("Say hi")
                .max_tokens(10u32)
                .stream(true)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = st.next().await {
        text.push_str(&chunk.unwrap().choices[0].text);
    }
    assert_eq!(text, "Hello from the fake endpoint");

    let input = vec!["first text".to_string(), "second text".to_string()];
    let r = c
        .embeddings()
        .create(
            CreateEmbeddingRequestArgs::default()
                .model("hf/tei")
                .input(input.clone())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    for (e, t) in r.data.iter().zip(&input) {
        let want = fake_embedding(t, 8, true);
        assert_eq!(e.embedding.len(), 8);
        for (g, w) in e.embedding.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{:?} vs {want:?}", e.embedding);
        }
    }
    assert_eq!(r.usage.prompt_tokens, 4);
    let b = c
        .embeddings()
        .create_base64(
            CreateEmbeddingRequestArgs::default()
                .model("hf/tei")
                .input("first text")
                .encoding_format(async_openai::types::embeddings::EncodingFormat::Base64)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let v: Vec<f32> = b.data[0].embedding.clone().into();
    assert_eq!(v, fake_embedding("first text", 8, true));
    assert_eq!(fake.requests_to("/tei/embed").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_the_callers_and_refusals_are_the_clients_errors() {
    let (_fake, s) = setup().await;
    let c = client(&s, APP_KEY);
    let mut ids: Vec<String> = c
        .models()
        .list()
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|m| {
            assert_eq!(m.object, "model");
            m.id
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "hf/bart",
            "hf/org/chat-model",
            "hf/tei",
            "hf/tgi",
            "tight/tgi"
        ],
        "inactive models and integrations are left out"
    );
    let m = c.models().retrieve("hf/org/chat-model").await.unwrap();
    assert_eq!(
        (m.id.as_str(), m.owned_by.as_str()),
        ("hf/org/chat-model", "hf")
    );

    // bob (group research) may run one model: the list says so, and a model
    // he may not use is a permission error naming the missing grant.
    let portal = client(&s, PORTAL_KEY);
    let bob = reqwest::Client::new()
        .get(format!("{}/v1/models", s.url))
        .bearer_auth(PORTAL_KEY)
        .header("X-Hfconnect-User", "bob")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(bob["data"].as_array().unwrap().len(), 1, "{bob}");
    assert_eq!(bob["data"][0]["id"], "hf/org/chat-model");
    let as_bob = |model: &str| {
        CreateChatCompletionRequestArgs::default()
            .model(model)
            .user("bob")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("Hi")
                .build()
                .unwrap()
                .into()])
            .build()
            .unwrap()
    };
    portal
        .chat()
        .create(as_bob("hf/org/chat-model"))
        .await
        .unwrap();
    let (status, e) = api_error(portal.chat().create(as_bob("hf/tgi")).await.unwrap_err());
    assert_eq!(status, 403, "{e:?}");
    assert_eq!(e.r#type.as_deref(), Some("permission_error"));
    assert!(
        e.message.contains("`EXECUTE` on `model:hf:tgi`"),
        "{}",
        e.message
    );
    // A `user` that is present must be usable, as `X-Hfconnect-User` must.
    for bad in ["", "bob\nadmin", "app:batch", "user:"] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", s.url))
            .bearer_auth(PORTAL_KEY)
            .json(&json!({"model": "hf/org/chat-model", "user": bad,
                          "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], "user", "{e}");
    }
    // An application that may not act for users gets nothing from `user`:
    // it runs as itself.
    c.chat().create(as_bob("hf/tgi")).await.unwrap();

    // `X-Hfconnect-Group` scopes a door's task as it scopes a task route's:
    // alice (support and research) scoped to research may not run hf/tgi.
    let scoped = |group: Option<&str>| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", s.url))
            .bearer_auth(PORTAL_KEY)
            .header("X-Hfconnect-User", "alice")
            .json(&json!({"model": "hf/tgi", "messages": [{"role": "user", "content": "Hi"}]}));
        if let Some(g) = group {
            r = r.header("X-Hfconnect-Group", g);
        }
        r.send()
    };
    assert_eq!(scoped(None).await.unwrap().status(), 200);
    let r = scoped(Some("research")).await.unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "permission_error", "{e}");

    // Unknown and hidden models are the same 404.
    let (status, e) = api_error(c.models().retrieve("hf/nope").await.unwrap_err());
    assert_eq!((status, e.code.as_deref()), (404, Some("model_not_found")));
    let (status, _) = api_error(portal.models().retrieve("hf/tgi").await.unwrap_err());
    assert_eq!(status, 404);
    let (status, e) = api_error(c.chat().create(as_bob("hf/nope")).await.unwrap_err());
    assert_eq!((status, e.param.as_deref()), (404, Some("model")));

    // A bad key.
    let (status, e) = api_error(client(&s, "hfc_wrong").models().list().await.unwrap_err());
    assert_eq!(
        (status, e.r#type.as_deref()),
        (401, Some("authentication_error"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_the_clients_rate_limit_error_with_the_wait() {
    let (_fake, s) = setup().await;
    let c = client(&s, APP_KEY);
    let req = || {
        CreateCompletionRequestArgs::default()
            .model("tight/tgi")
            .prompt("hi")
            .build()
            .unwrap()
    };
    c.completions().create(req()).await.unwrap();
    // The 429 in OpenAI's shape, read as the client's own error type, with
    // the wait in words and in `Retry-After`.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/completions", s.url))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "tight/tgi", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(wait, 1);
    let e: async_openai::error::WrappedError = r.json().await.unwrap();
    assert_eq!(e.error.r#type.as_deref(), Some("rate_limit_error"));
    assert_eq!(e.error.code.as_deref(), Some("rate_limit_exceeded"));
    assert!(e.error.message.contains("retry in"), "{}", e.error.message);
    // Asked again within the second, the client's own retry reads that
    // `Retry-After`, waits, and gets its answer instead of the error.
    c.completions().create(req()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hfconnect_does_not_do_is_refused_by_name_and_doors_are_counted() {
    let (_fake, s) = setup().await;
    let post = |path: &str, body: Value| {
        reqwest::Client::new()
            .post(format!("{}/v1/{path}", s.url))
            .bearer_auth(APP_KEY)
            .json(&body)
            .send()
    };
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    for (path, body, param) in [
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": msgs, "tools": []}),
            "tools",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": msgs, "logprobs": true}),
            "logprobs",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": msgs, "n": 2}),
            "n",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": msgs, "colour": 1}),
            "colour",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            "chat/completions",
            json!({"model": "hf/tgi", "messages": msgs, "response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        (
            "completions",
            json!({"model": "hf/tgi", "prompt": "x", "echo": true}),
            "echo",
        ),
        (
            "embeddings",
            json!({"model": "hf/tei", "input": [[1, 2, 3]]}),
            "input",
        ),
    ] {
        let r = post(path, body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    }
    // `json_object` is the task's jsonOutput; nulls count as left out.
    let r = post(
        "chat/completions",
        json!({"model": "hf/tgi", "messages": msgs, "response_format": {"type": "text"}, "tools": null}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = crate::support::scrape(&s.url).await;
    for door in [
        "hfconnect_door_requests_total{door=\"openai\",status=\"200\"} 1",
        "hfconnect_door_requests_total{door=\"openai\",status=\"400\"} 9",
    ] {
        assert!(metrics.contains(door), "{door} in {metrics}");
    }
    // The task metrics carry the door too: the refusals and the answer above.
    for series in [
        "hfconnect_tasks_total{door=\"openai\",integration=\"hf\",kind=\"chat\",model=\"tgi\",outcome=\"invalid_input\"} 7",
        "hfconnect_tasks_total{door=\"openai\",integration=\"hf\",kind=\"chat\",model=\"tgi\",outcome=\"ok\"} 1",
        "hfconnect_tasks_total{door=\"task\",integration=\"hf\",kind=\"chat\",model=\"tgi\",outcome=\"ok\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}
