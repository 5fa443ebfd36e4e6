//! Tasks through the Connector against the fake server: every rule in order,
//! group scoping, defaults, prompts, jsonOutput, streaming, reload, and the
//! audit event (with neither prompt nor key).

use std::sync::Arc;

use futures_util::StreamExt;
use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::{
    ChatCompleteInput, InputMessage, SummarizeInput, TaskEvent, TextCompleteInput,
};
use hfconnect::task::{FinishReason, Task, TaskErrorKind, TaskResult};
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::json;

use crate::support::{config, env, Dir};

async fn setup() -> (FakeHf, Dir, Connector) {
    crate::support::connector_on_fake(config).await
}

fn text_task(model: &str, prompt: &str) -> Task {
    Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: model.into(),
        prompt: Some(prompt.into()),
        ..Default::default()
    })
}

fn user(id: &str) -> Subject {
    Subject::User(id.into())
}

#[tokio::test]
async fn text_complete_applies_model_defaults_and_returns_orkes_output() {
    let (fake, _dir, c) = setup().await;
    let alice = c.principal(&user("alice"), None).unwrap();
    let out = c
        .run(TaskRequest::new(&alice, &text_task("tgi", "Say hi")))
        .await
        .output()
        .unwrap();
    assert_eq!(json!(out.result), json!("Hello from the "));
    assert_eq!(out.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        (out.prompt_tokens, out.completion_tokens, out.token_used),
        (Some(2), Some(3), Some(5))
    );
    let body = fake.requests_to("/generate")[0].json();
    assert_eq!(
        body["parameters"],
        json!({"max_new_tokens": 3, "temperature": 0.7, "stop": ["<stop>"], "details": true})
    );
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(
        v,
        json!({"result": "Hello from the ", "finishReason": "LENGTH", "tokenUsed": 5, "promptTokens": 2, "completionTokens": 3})
    );

    // Task values win over defaults.
    let task: Task = Task::TextComplete(serde_json::from_value(json!({
        "llmProvider": "hf", "model": "tgi", "prompt": "x", "maxTokens": 10, "temperature": 0.2, "topP": 0.5, "stopWords": ["fake"]
    })).unwrap());
    let out = c
        .run(TaskRequest::new(&alice, &task))
        .await
        .output()
        .unwrap();
    assert_eq!(
        (json!(out.result), out.finish_reason),
        (
            json!("Hello from the fake "),
            Some(FinishReason::StopSequence)
        )
    );
    assert_eq!(
        fake.requests_to("/generate")[1].json()["parameters"],
        json!({"max_new_tokens": 10, "temperature": 0.2, "top_p": 0.5, "stop": ["fake"], "details": true})
    );
}

#[tokio::test]
async fn the_rules_apply_in_order() {
    let (fake, _dir, c) = setup().await;
    let alice = c.principal(&user("alice"), None).unwrap();
    let bob = c.principal(&user("bob"), None).unwrap();
    let prompt_task = |model: &str, vars: serde_json::Value| {
        Task::TextComplete(serde_json::from_value(json!({"llmProvider": "hf", "model": model, "promptName": "ticket", "promptVariables": vars})).unwrap())
    };
    let cases: Vec<(&str, &hfconnect::access::Principal, Task, TaskErrorKind, &str)> = vec![
        ("unknown integration", &alice, Task::TextComplete(TextCompleteInput { llm_provider: "hff".into(), model: "tgi".into(), prompt: Some("x".into()), ..Default::default() }), TaskErrorKind::NotFound, "unknown integration `hff` (did you mean `hf`?)"),
        ("unknown model", &alice, text_task("tgj", "x"), TaskErrorKind::NotFound, "unknown model `tgj` of integration `hf`"),
        ("unknown prompt", &alice, Task::TextComplete(TextCompleteInput { llm_provider: "hf".into(), model: "tgi".into(), prompt_name: Some("tickets".into()), ..Default::default() }), TaskErrorKind::NotFound, "unknown prompt `tickets` (did you mean `ticket`?)"),
        // Not found comes before denied: bob has no grant on hf:tgi but gets not-found for a bad name.
        ("not found before denied", &bob, text_task("nope", "x"), TaskErrorKind::NotFound, "unknown model `nope`"),
        ("inactive integration before grants", &bob, Task::TextComplete(TextCompleteInput { llm_provider: "hf-off".into(), model: "tgi".into(), prompt: Some("x".into()), ..Default::default() }), TaskErrorKind::Inactive, "integration `hf-off` is inactive"),
        ("inactive model", &alice, text_task("off", "x"), TaskErrorKind::Inactive, "model `off` of integration `hf` is inactive"),
        ("denied", &bob, text_task("tgi", "x"), TaskErrorKind::Denied, "no grant gives `EXECUTE` on `model:hf:tgi`"),
        ("unsupported task kind", &alice, Task::Summarize(SummarizeInput { llm_provider: "hf".into(), model: "org/chat-model".into(), text: "t".into(), ..Default::default() }), TaskErrorKind::InvalidInput, "does not serve `summarization`; it serves chat"),
        ("missing variables", &alice, prompt_task("tgi", json!({"id": 7})), TaskErrorKind::InvalidInput, "prompt `ticket`: missing prompt variables: `body`"),
        ("prompt not listed for the model", &alice, prompt_task("bart", json!({"id": 1, "body": "b"})), TaskErrorKind::InvalidInput, "does not serve `text-generation`"),
        ("both prompt and promptName", &alice, Task::TextComplete(serde_json::from_value(json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "promptName": "ticket", "promptVariables": {"id": 1, "body": "b"}})).unwrap()), TaskErrorKind::InvalidInput, "not both"),
        ("bad temperature", &alice, Task::TextComplete(serde_json::from_value(json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "temperature": 0})).unwrap()), TaskErrorKind::InvalidInput, "`temperature` must be greater than 0"),
    ];
    for (name, who, task, kind, needle) in cases {
        let e = c
            .run(TaskRequest::new(who, &task))
            .await
            .output()
            .expect_err(name);
        assert_eq!(e.kind(), kind, "{name}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{name}: `{e}` lacks `{needle}`"
        );
        assert!(e.is_terminal(), "{name}");
    }
    assert!(
        fake.requests().is_empty(),
        "no refused task reached the endpoint"
    );

    // A prompt used with a model it does not list (both serve text-generation).
    let mut cfg = config(&fake.url());
    cfg = cfg.replace(
        "tasks = [\"text-generation\"]\nactive = false",
        "tasks = [\"text-generation\"]",
    );
    let dir = Dir::new();
    let path = dir.write("c.toml", &cfg);
    let c2 = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let alice2 = c2.principal(&user("alice"), None).unwrap();
    let e = c2
        .run(TaskRequest::new(
            &alice2,
            &prompt_task("off", json!({"id": 1, "body": "b"})),
        ))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("prompt `ticket` may not be used with `hf:off`; it lists `hf:tgi`"),
        "{e}"
    );
    let out = c2
        .run(TaskRequest::new(
            &alice2,
            &prompt_task("tgi", json!({"id": 1, "body": "printer on fire"})),
        ))
        .await
        .output()
        .unwrap();
    assert_eq!(json!(out.result), json!("Hello from the "));
    assert_eq!(
        fake.requests_to("/generate").last().unwrap().json()["inputs"],
        "Summarize ticket 1: printer on fire"
    );
}

#[tokio::test]
async fn group_scoping_narrows_grants() {
    let (_fake, _dir, c) = setup().await;
    let chat = Task::ChatComplete(ChatCompleteInput {
        llm_provider: "hf".into(),
        model: "org/chat-model".into(),
        messages: vec![InputMessage {
            role: hfconnect::testing::provider::ChatRole::User,
            message: "hi".into(),
        }],
        ..Default::default()
    });
    let as_research = c.principal(&user("alice"), Some("research")).unwrap();
    c.run(TaskRequest::new(&as_research, &chat))
        .await
        .output()
        .unwrap();
    let as_support = c.principal(&user("alice"), Some("support")).unwrap();
    c.run(TaskRequest::new(&as_support, &chat))
        .await
        .output()
        .unwrap(); // the integration grant covers the model
    let e = c
        .run(TaskRequest::new(&as_research, &text_task("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        TaskErrorKind::Denied,
        "research alone has no grant on hf:tgi"
    );
    let e = c.principal(&user("bob"), Some("support")).unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Denied);
    assert!(
        e.to_string().contains("not a member of group `support`"),
        "{e}"
    );
}

#[tokio::test]
async fn chat_with_instructions_and_json_output() {
    let (fake, _dir, c) = setup().await;
    let bob = c.principal(&user("bob"), None).unwrap();
    let task = |json_output: bool| {
        Task::ChatComplete(serde_json::from_value(json!({
            "llmProvider": "hf", "model": "org/chat-model", "instructions": "sys", "promptVariables": {"lang": "French"},
            "messages": [{"role": "user", "message": "hello"}], "jsonOutput": json_output
        })).unwrap())
    };
    let out = c
        .run(TaskRequest::new(&bob, &task(false)))
        .await
        .output()
        .unwrap();
    assert_eq!(out.finish_reason, Some(FinishReason::Stop));
    let body = fake.requests_to("/v1/chat/completions")[0].json();
    assert_eq!(body["model"], "org/chat-model");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "You answer in French."}, {"role": "user", "content": "hello"}])
    );

    fake.behave(|b| b.reply = "```json\n{\"answer\": 42, \"ok\": true}\n```".into());
    let out = c
        .run(TaskRequest::new(&bob, &task(true)))
        .await
        .output()
        .unwrap();
    assert_eq!(json!(out.result), json!({"answer": 42, "ok": true}));
    fake.behave(|b| b.reply = "{\"answer\": 42".into());
    let e = c
        .run(TaskRequest::new(&bob, &task(true)))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidOutput);
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

#[tokio::test]
async fn summarize_on_a_pipeline_and_on_tgi() {
    let (fake, _dir, c) = setup().await;
    let alice = c.principal(&user("alice"), None).unwrap();
    let task = |model: &str| {
        Task::Summarize(SummarizeInput {
            llm_provider: "hf".into(),
            model: model.into(),
            text: "a long text".into(),
            max_length: Some(60),
            min_length: None,
        })
    };
    let out = c
        .run(TaskRequest::new(&alice, &task("bart")))
        .await
        .output()
        .unwrap();
    assert_eq!(json!(out.result), json!("Hello from the fake endpoint"));
    assert_eq!(
        fake.requests()[0].json(),
        json!({"inputs": "a long text", "parameters": {"max_length": 60}})
    );
    c.run(TaskRequest::new(&alice, &task("tgi")))
        .await
        .output()
        .unwrap();
    let body = fake.requests_to("/generate")[0].json();
    assert!(
        body["inputs"]
            .as_str()
            .unwrap()
            .contains("Summarize the following text")
            && body["inputs"].as_str().unwrap().contains("a long text")
    );
    assert_eq!(body["parameters"]["max_new_tokens"], 60);
}

#[tokio::test]
async fn streaming_yields_chunks_then_the_output() {
    let (fake, _dir, c) = setup().await;
    let alice = c.principal(&user("alice"), None).unwrap();
    let task: Task = Task::TextComplete(
        serde_json::from_value(
            json!({"llmProvider": "hf", "model": "tgi", "prompt": "x", "maxTokens": 50}),
        )
        .unwrap(),
    );
    let mut s = c
        .run(TaskRequest::new(&alice, &task).streamed())
        .await
        .stream()
        .unwrap();
    let mut chunks = Vec::new();
    let mut done = None;
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            TaskEvent::Chunk(t) => chunks.push(t),
            TaskEvent::Done(o) => done = Some(o),
            other => panic!("unexpected {other:?}"),
        }
    }
    let out = done.unwrap();
    assert_eq!(out.result, TaskResult::Text(chunks.concat()));
    assert_eq!(out.finish_reason, Some(FinishReason::Stop));
    assert_eq!(fake.requests_to("/generate_stream").len(), 1);

    let bob = c.principal(&user("bob"), None).unwrap();
    let ran = c.run(TaskRequest::new(&bob, &task).streamed()).await;
    assert!(ran.decision.as_ref().is_some_and(|d| !d.allowed));
    let e = ran.stream().unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Denied, "refused before the stream");
}

#[tokio::test]
async fn provider_errors_keep_their_kind_and_predicates() {
    let (fake, _dir, c) = setup().await;
    let alice = c.principal(&user("alice"), None).unwrap();
    fake.push_n(Route::Generate, Fault::rate_limited(30), 3);
    let e = c
        .run(TaskRequest::new(&alice, &text_task("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        TaskErrorKind::Provider(hfconnect::testing::provider::ErrorKind::RateLimited)
    );
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(30)));
    fake.clear_faults();
    fake.push(Route::Generate, Fault::gated("org/model"));
    let e = c
        .run(TaskRequest::new(&alice, &text_task("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert!(e.is_terminal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_concurrent_tasks() {
    let (fake, dir, c) = setup().await;
    let c = Arc::new(c);
    fake.behave(|b| b.reply = "a b c d e f g h".into());
    let path = dir.path().join("c.toml");
    let mut handles = Vec::new();
    for i in 0..40 {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
            c.run(TaskRequest::new(
                &alice,
                &text_task("tgi", &format!("task {i}")),
            ))
            .await
            .output()
        }));
    }
    // Swap the config back and forth while tasks run; a bad one is refused.
    let good = std::fs::read_to_string(&path).unwrap();
    for n in 0..10 {
        if n % 3 == 2 {
            std::fs::write(&path, "[[integrations]]\nname = 3\n").unwrap();
            assert!(c
                .reload_from(&path, &LoadOptions::new().env(env()))
                .is_err());
        } else {
            std::fs::write(&path, &good).unwrap();
            c.reload_from(&path, &LoadOptions::new().env(env()))
                .unwrap();
        }
        tokio::task::yield_now().await;
    }
    for h in handles {
        h.await.unwrap().expect("no task fails because of a swap");
    }
    // A reload that removes the grant takes effect for the next task.
    let without = good.replace(
        "subject = \"group:support\"\ntarget = \"integration:hf\"",
        "subject = \"group:research\"\ntarget = \"integration:hf\"",
    );
    c.reload_from(
        &dir.write("c2.toml", &without),
        &LoadOptions::new().env(env()),
    )
    .unwrap();
    let alice = c.principal(&user("alice"), None).unwrap();
    // alice is in research too, so scope her to support to see the removal.
    let alice_support = c.principal(&user("alice"), Some("support")).unwrap();
    assert!(c
        .run(TaskRequest::new(&alice, &text_task("tgi", "x")))
        .await
        .output()
        .is_ok());
    assert_eq!(
        c.run(TaskRequest::new(&alice_support, &text_task("tgi", "x")))
            .await
            .output()
            .unwrap_err()
            .kind(),
        TaskErrorKind::Denied
    );
}
