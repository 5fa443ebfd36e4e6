//! Embeddings end to end against the fake's text-embeddings-inference, its
//! OpenAI-style route and the feature-extraction pipeline: single texts and
//! batches split at `max_client_batch_size` and put back in order, each TEI
//! error, grants and group scope, admission charging a batch its size, the
//! audit event without texts or vectors, and the three front doors.

use std::sync::Arc;

use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::{EmbedInput, Task, TaskErrorKind, TaskOutput, TaskResult, Vectors};
use hfconnect::testing::conductor::Worker;
use hfconnect::testing::provider::ErrorKind;
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_conductor::{FakeConductor, Schedule};
use hfconnect_integration_tests::fake_hf::tei::fake_embedding;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};

use crate::support::env;
use crate::support::fixtures::{hf_on_fake, Retry};
use crate::support::Dir;
use crate::support::TOKEN;

pub(crate) fn config(url: &str) -> String {
    hf_on_fake(
        url,
        None,
        Retry {
            attempts: 3,
            budget: 2,
        },
        2,
    ) + &format!(
        r##"
[[integrations.models]]
name = "tei"
endpoint = "{url}/tei"
api = "tei"
tasks = ["embeddings"]
dimensions = 8

[[integrations.models]]
name = "tei-openai"
endpoint = "{url}/tei"
api = "chat"
tasks = ["embeddings"]
upstream_model = "fake/embedder"

[[integrations.models]]
name = "fe"
endpoint = "{url}/fe"
api = "pipeline"
tasks = ["embeddings"]

[[integrations.models]]
name = "org/minilm"
endpoint = "{url}"
api = "router"
tasks = ["embeddings"]

[[integrations]]
name = "small"
api_key = {{ env = "HF_TOKEN" }}
rate_limit = {{ per_second = 1, burst = 5 }}
queue_timeout = 0.2

[[integrations.models]]
name = "tei"
endpoint = "{url}/tei"
api = "tei"
tasks = ["embeddings"]

[[groups]]
name = "search"
members = ["alice", "carol"]

[[groups]]
name = "other"
members = ["carol"]

[[applications]]
name = "indexer"
groups = ["search"]
keys = ["{key}"]

[[grants]]
subject = "group:search"
target = "integration:hf"
access = ["READ", "EXECUTE"]

[[grants]]
subject = "group:search"
target = "integration:small"
access = ["EXECUTE"]
"##,
        key = crate::support::hash(crate::support::APP_KEY)
    )
}

async fn setup() -> (FakeHf, Dir, Connector) {
    crate::support::connector_on_fake(config).await
}

fn one(model: &str, text: &str) -> Task {
    Task::Embed(EmbedInput {
        llm_provider: "hf".into(),
        model: model.into(),
        text: Some(text.into()),
        ..Default::default()
    })
}

fn many(integration: &str, model: &str, texts: &[String]) -> Task {
    Task::Embed(EmbedInput {
        llm_provider: integration.into(),
        model: model.into(),
        texts: Some(texts.to_vec()),
        ..Default::default()
    })
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("document number {i} of the batch"))
        .collect()
}

/// `v` (one vector, as a task's result or a row of one) is `want` within float error.
fn close(v: impl Into<Row>, want: &[f32]) {
    let got = v.into().0;
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

/// One vector's numbers.
struct Row(Vec<f32>);

impl From<&TaskResult> for Row {
    fn from(r: &TaskResult) -> Row {
        match r {
            TaskResult::Vector(v) => Row(v.clone()),
            other => panic!("not one vector: {other:?}"),
        }
    }
}

impl From<&Value> for Row {
    fn from(v: &Value) -> Row {
        let items = v.as_array().unwrap_or_else(|| panic!("not a vector: {v}"));
        Row(items.iter().map(|x| x.as_f64().unwrap() as f32).collect())
    }
}

impl From<&[f32]> for Row {
    fn from(r: &[f32]) -> Row {
        Row(r.to_vec())
    }
}

fn vectors(out: &TaskOutput) -> &Vectors {
    match &out.result {
        TaskResult::Vectors(v) => v,
        other => panic!("not a list of vectors: {other:?}"),
    }
}

fn alice(c: &Connector) -> hfconnect::access::Principal {
    c.principal(&Subject::User("alice".into()), None).unwrap()
}

#[tokio::test]
async fn one_text_on_tei_is_one_vector_with_its_size_and_tokens() {
    let (fake, _dir, c) = setup().await;
    let out = c
        .run(TaskRequest::new(
            &alice(&c),
            &one("tei", "the quick brown fox"),
        ))
        .await
        .output()
        .unwrap();
    close(&out.result, &fake_embedding("the quick brown fox", 8, true));
    assert_eq!(out.dimensions, Some(8));
    assert_eq!((out.token_used, out.prompt_tokens), (Some(4), Some(4)));
    assert_eq!(out.finish_reason, None);
    let body = fake.requests_to("/tei/embed")[0].json();
    assert_eq!(body, json!({"inputs": ["the quick brown fox"]}));
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["dimensions"], 8);
    assert_eq!(v["tokenUsed"], 4);

    // Options travel as TEI spells them.
    let task = Task::Embed(
        serde_json::from_value(json!({
            "llmProvider": "hf", "model": "tei", "text": "x y", "dimensions": 4,
            "normalize": false, "truncate": true, "truncationDirection": "left"
        }))
        .unwrap(),
    );
    let out = c
        .run(TaskRequest::new(&alice(&c), &task))
        .await
        .output()
        .unwrap();
    assert_eq!(out.dimensions, Some(4));
    let mut want = fake_embedding("x y", 8, false);
    want.truncate(4);
    close(&out.result, &want);
    assert_eq!(
        fake.requests_to("/tei/embed")[1].json(),
        json!({"inputs": ["x y"], "normalize": false, "truncate": true, "truncation_direction": "Left", "dimensions": 4})
    );
}

#[tokio::test]
async fn a_batch_above_max_client_batch_size_is_split_and_reassembled_in_order() {
    let (fake, _dir, c) = setup().await;
    fake.behave(|b| b.tei_max_batch = 3);
    let input = texts(10);
    let out = c
        .run(TaskRequest::new(&alice(&c), &many("hf", "tei", &input)))
        .await
        .output()
        .unwrap();
    let got = vectors(&out);
    assert_eq!(got.len(), 10);
    for (v, t) in got.iter().zip(&input) {
        close(v, &fake_embedding(t, 8, true));
    }
    let sizes: Vec<usize> = fake
        .requests_to("/tei/embed")
        .iter()
        .map(|r| r.json()["inputs"].as_array().unwrap().len())
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 3, 3, 3], "{sizes:?}");
    assert_eq!(out.prompt_tokens, Some(60), "tokens of every part add up");

    // `/info` is read once per endpoint.
    c.run(TaskRequest::new(&alice(&c), &many("hf", "tei", &texts(2))))
        .await
        .output()
        .unwrap();
    assert_eq!(fake.requests_to("/tei/info").len(), 1);
}

#[tokio::test]
async fn the_openai_style_route_asks_base64_and_is_split_too() {
    let (fake, _dir, c) = setup().await;
    let input = texts(6);
    let out = c
        .run(TaskRequest::new(
            &alice(&c),
            &many("hf", "tei-openai", &input),
        ))
        .await
        .output()
        .unwrap();
    for (v, t) in vectors(&out).iter().zip(&input) {
        close(v, &fake_embedding(t, 8, true));
    }
    let reqs = fake.requests_to("/tei/v1/embeddings");
    assert_eq!(reqs.len(), 2, "6 inputs, batches of 4");
    let body = reqs[0].json();
    assert_eq!(body["encoding_format"], "base64");
    assert_eq!(body["model"], "fake/embedder");
    assert_eq!(out.prompt_tokens, Some(36));
    // Decoded floats keep their short form.
    let text = serde_json::to_string(&out.result).unwrap();
    assert!(text.len() < 6 * 8 * 14, "long decimals: {text}");
}

#[tokio::test]
async fn the_feature_extraction_pipeline_pooled_or_per_token() {
    let (fake, _dir, c) = setup().await;
    for per_token in [false, true] {
        fake.behave(|b| b.fe_per_token = per_token);
        for model in ["fe", "org/minilm"] {
            let input = texts(3);
            let out = c
                .run(TaskRequest::new(&alice(&c), &many("hf", model, &input)))
                .await
                .output()
                .unwrap();
            for (v, t) in vectors(&out).iter().zip(&input) {
                close(v, &fake_embedding(t, 8, true));
            }
            let out = c
                .run(TaskRequest::new(&alice(&c), &one(model, "solo")))
                .await
                .output()
                .unwrap();
            close(&out.result, &fake_embedding("solo", 8, true));
        }
    }
    assert_eq!(
        fake.requests_to("/hf-inference/models/org/minilm/pipeline/feature-extraction")
            .len(),
        4
    );
    // A pipeline cannot cut vectors: hfconnect does, and scales them back to unit length.
    let task = Task::Embed(
        serde_json::from_value(
            json!({"llmProvider": "hf", "model": "fe", "text": "cut me", "dimensions": 3}),
        )
        .unwrap(),
    );
    let out = c
        .run(TaskRequest::new(&alice(&c), &task))
        .await
        .output()
        .unwrap();
    let mut want = fake_embedding("cut me", 8, true);
    want.truncate(3);
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let want: Vec<f32> = want.iter().map(|x| x / norm).collect();
    close(&out.result, &want);
}

#[tokio::test]
async fn each_tei_error_maps_to_its_kind() {
    let (fake, _dir, c) = setup().await;
    let who = alice(&c);
    let kind_of = |r: Result<TaskOutput, hfconnect::task::TaskError>| {
        let e = r.unwrap_err();
        (e.kind(), e.is_retryable(), e.to_string())
    };

    // 422: longer than max_input_length without truncate; truncate makes it pass.
    fake.behave(|b| b.tei_max_input = 5);
    let long = "one two three four five six seven";
    let (k, retry, msg) = kind_of(
        c.run(TaskRequest::new(&who, &one("tei", long)))
            .await
            .output(),
    );
    assert_eq!(
        k,
        TaskErrorKind::Provider(ErrorKind::InvalidRequest),
        "{msg}"
    );
    assert!(
        !retry && msg.contains("must have less than 5 tokens"),
        "{msg}"
    );
    let task = Task::Embed(EmbedInput {
        truncate: Some(true),
        ..match one("tei", long) {
            Task::Embed(e) => e,
            _ => unreachable!(),
        }
    });
    c.run(TaskRequest::new(&who, &task)).await.output().unwrap();
    fake.behave(|b| b.tei_max_input = 512);

    // 413: a body above TEI's payload limit, in plain text.
    let huge = "word ".repeat(450_000);
    let (k, retry, msg) = kind_of(
        c.run(TaskRequest::new(&who, &one("tei", &huge)))
            .await
            .output(),
    );
    assert_eq!(
        k,
        TaskErrorKind::Provider(ErrorKind::InvalidRequest),
        "{msg}"
    );
    assert!(!retry && msg.contains("length limit exceeded"), "{msg}");

    // 424: the model failed on this input.
    fake.push(
        Route::Embed,
        Fault::json(
            424,
            json!({"error": "Backend error: inference failed", "error_type": "Backend"}),
        ),
    );
    let (k, retry, msg) = kind_of(
        c.run(TaskRequest::new(&who, &one("tei", "a")))
            .await
            .output(),
    );
    assert_eq!(k, TaskErrorKind::Provider(ErrorKind::Upstream), "{msg}");
    assert!(!retry, "{msg}");

    // 429 `Overloaded`: retried; when it persists, retryable with a wait.
    fake.push(
        Route::Embed,
        Fault::json(
            429,
            json!({"error": "Model is overloaded", "error_type": "Overloaded"}),
        ),
    );
    c.run(TaskRequest::new(&who, &one("tei", "a")))
        .await
        .output()
        .unwrap();
    fake.push_n(
        Route::Embed,
        Fault::json(
            429,
            json!({"error": "Model is overloaded", "error_type": "Overloaded"}),
        ),
        3,
    );
    let e = c
        .run(TaskRequest::new(&who, &one("tei", "a")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Provider(ErrorKind::Overloaded));
    assert!(e.is_retryable() && e.retry_after().is_some());

    // On the OpenAI-style route, TEI's error shape is `{message, code, error_type}`.
    fake.push(
        Route::Embeddings,
        Fault::json(
            429,
            json!({"message": "Model is overloaded", "code": 429, "error_type": "Overloaded"}),
        ),
    );
    c.run(TaskRequest::new(&who, &one("tei-openai", "a")))
        .await
        .output()
        .unwrap();

    // 503 while loading: a cold start, waited out.
    fake.push(Route::Embed, Fault::loading(0.05));
    c.run(TaskRequest::new(&who, &one("tei", "a")))
        .await
        .output()
        .unwrap();

    // An answer of the wrong shape is the endpoint's fault, not the task's.
    fake.push(
        Route::Embed,
        Fault::json(200, json!([[0.5, 0.5], [0.5, 0.5]])),
    );
    let (k, _, msg) = kind_of(
        c.run(TaskRequest::new(&who, &one("tei", "a")))
            .await
            .output(),
    );
    assert_eq!(
        k,
        TaskErrorKind::Provider(ErrorKind::InvalidResponse),
        "{msg}"
    );
    assert!(msg.contains("2 embeddings for 1 inputs"), "{msg}");
}

#[tokio::test]
async fn bad_inputs_are_refused_before_any_call() {
    let (fake, _dir, c) = setup().await;
    let who = alice(&c);
    let cases = [
        (
            json!({"llmProvider": "hf", "model": "tei"}),
            "give `text` or `texts`",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "text": "a", "texts": ["b"]}),
            "not both",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "texts": []}),
            "`texts` is empty",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "texts": ["a", " "]}),
            "`texts[1]` is empty",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "text": "a", "dimensions": 9}),
            "`dimensions` (9) is above the 8 of model `tei`",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "text": "a", "dimensions": 0}),
            "at least 1",
        ),
        (
            json!({"llmProvider": "hf", "model": "tei", "texts": vec!["a"; 2049]}),
            "at most 2048",
        ),
    ];
    for (input, words) in cases {
        let task = Task::Embed(serde_json::from_value(input).unwrap());
        let e = c
            .run(TaskRequest::new(&who, &task))
            .await
            .output()
            .unwrap_err();
        assert_eq!(e.kind(), TaskErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
    assert!(fake.requests_to("/tei/embed").is_empty());
}

#[tokio::test]
async fn denied_and_group_scoped_embeddings() {
    let (fake, _dir, c) = setup().await;
    let bob = c.principal(&Subject::User("bob".into()), None).unwrap();
    let e = c
        .run(TaskRequest::new(&bob, &one("tei", "a")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Denied);
    assert!(e.to_string().contains("`EXECUTE` on `model:hf:tei`"), "{e}");

    let carol = |g| {
        c.principal(&Subject::User("carol".into()), Some(g))
            .unwrap()
    };
    let e = c
        .run(TaskRequest::new(&carol("other"), &one("tei", "a")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        TaskErrorKind::Denied,
        "group `other` has no grant"
    );
    c.run(TaskRequest::new(&carol("search"), &one("tei", "a")))
        .await
        .output()
        .unwrap();
    assert_eq!(fake.requests_to("/tei/embed").len(), 1);
}

#[tokio::test]
async fn admission_charges_a_batch_its_number_of_texts() {
    let (_fake, _dir, c) = setup().await;
    let who = alice(&c);
    // Above the burst: no wait admits it, so it is the task that must change.
    let e = c
        .run(TaskRequest::new(&who, &many("small", "tei", &texts(6))))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("task of 6 texts"), "{e}");
    // Five texts take the whole burst; the next single text waits longer than the queue timeout.
    c.run(TaskRequest::new(&who, &many("small", "tei", &texts(5))))
        .await
        .output()
        .unwrap();
    let e = c
        .run(TaskRequest::new(&who, &{
            let Task::Embed(mut t) = one("tei", "a") else {
                unreachable!()
            };
            t.llm_provider = "small".into();
            Task::Embed(t)
        }))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited, "{e}");
}

#[tokio::test]
async fn the_audit_event_never_holds_texts_or_vectors() {
    let logs = crate::support::global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url()).replacen(
        "members = [\"alice\", \"carol\"]",
        "members = [\"alice\", \"carol\", \"auditor-embed\"]",
        1,
    ) + "\n[audit]\ninclude_text = true\n";
    let path = dir.write("c.toml", &cfg);
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let who = c
        .principal(&Subject::User("auditor-embed".into()), None)
        .unwrap();
    c.run(TaskRequest::new(&who, &one("tei", "SECRET-DOCUMENT-4711")))
        .await
        .output()
        .unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let event = text
        .lines()
        .find(|l| l.contains("hfconnect::audit") && l.contains("user:auditor-embed"))
        .expect(&text);
    assert!(event.contains("task_kind=embeddings"), "{event}");
    assert!(
        !event.contains("input=") && !event.contains("output="),
        "{event}"
    );
    assert!(!text.contains("SECRET-DOCUMENT-4711"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_embed_and_refuses_to_stream_it() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let s = crate::support::start_with(config(&fake.url()), |_| {}).await;
    let key = Some(crate::support::APP_KEY);
    let (status, _, body) = crate::support::post(
        &s,
        "embed",
        key,
        &[],
        json!({"llmProvider": "hf", "model": "tei", "texts": ["a b", "c"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dimensions"], 8);
    assert_eq!(body["tokenUsed"], 3);
    close(&body["result"][1], &fake_embedding("c", 8, true));
    let (status, _, body) = crate::support::post(
        &s,
        "embed",
        key,
        &[],
        json!({"llmProvider": "hf", "model": "tei", "text": "a", "stream": true}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("do not stream"));
    let metrics = crate::support::scrape(&s.url).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hfconnect_tasks_total")
                && l.contains("kind=\"embeddings\"")
                && l.contains("outcome=\"ok\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_completes_llm_generate_embeddings() {
    let hf = FakeHf::start(TOKEN).await.unwrap();
    let conductor = FakeConductor::start().await.unwrap();
    let dir = Dir::new();
    let cfg = config(&hf.url()) + "\n[worker]\napp = \"indexer\"\npoll_timeout = 0.2\n";
    let path = dir.write("c.toml", &cfg);
    let connector = Arc::new(Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap());
    let settings = hfconnect::testing::core(&connector)
        .runtime()
        .worker()
        .cloned()
        .unwrap();
    assert!(
        settings
            .task_types
            .iter()
            .any(|(t, _)| t == "LLM_GENERATE_EMBEDDINGS"),
        "polled by default"
    );
    let wf = conductor.schedule(Schedule::new(
        "LLM_GENERATE_EMBEDDINGS",
        json!({"llmProvider": "hf", "model": "tei", "text": "index me"}),
    ));
    let denied = conductor.schedule(Schedule::new(
        "LLM_GENERATE_EMBEDDINGS",
        json!({"llmProvider": "hf", "model": "nope", "text": "x"}),
    ));
    let worker = Worker::new(
        connector.clone(),
        settings,
        &url::Url::parse(&conductor.url()).unwrap(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while conductor.running() > 0 && std::time::Instant::now() < end {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = tx.send(());
    let _ = worker.await;
    assert_eq!(conductor.workflow(&wf).unwrap().status, "COMPLETED");
    let t = conductor.last_task(&wf).unwrap();
    let out = t.output.unwrap();
    close(&out["result"], &fake_embedding("index me", 8, true));
    assert_eq!(out["dimensions"], 8);
    assert!(!t.logs.join("\n").contains("index me"));
    assert_eq!(conductor.workflow(&denied).unwrap().status, "FAILED");
}

#[test]
fn run_embed_prints_one_array_per_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeHf::start(TOKEN)).unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));
    let file = dir.write("texts.txt", "first line\n\nsecond line\n");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "embed",
            "--config",
            path.to_str().unwrap(),
            "--as",
            "user:alice",
            "--integration",
            "hf",
            "--model",
            "tei",
        ];
        args.extend_from_slice(extra);
        hfconnect_integration_tests::Run::new(&args)
            .unwrap()
            .env("HF_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let out = run(&["--file", dir.path().join("texts.txt").to_str().unwrap()]);
    let stdout = &out.stdout;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    close(
        &serde_json::from_str::<Value>(lines[1]).unwrap(),
        &fake_embedding("second line", 8, true),
    );
    assert!(
        out.stderr.contains("2 vectors of 8 dimensions"),
        "{}",
        out.stderr
    );
    let _ = file;

    let out = run(&["--text", "solo", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    close(&v["result"], &fake_embedding("solo", 8, true));
    assert_eq!(v["dimensions"], 8);
}

#[tokio::test]
async fn a_tei_probe_reads_its_info() {
    use hfconnect::testing::provider::{Api, LlmProvider, ModelEndpoint};
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let p = crate::support::provider::provider(&fake);
    let tei = ModelEndpoint {
        name: "tei".into(),
        base_url: format!("{}/tei", fake.url()).parse().unwrap(),
        api: Api::Tei,
        upstream_model: "fake/embedder".into(),
        inference_endpoint: None,
        url_from_management: false,
    };
    let info = p.probe(&tei).await.unwrap();
    assert!(info.healthy);
    assert_eq!(info.model_id.as_deref(), Some("fake/embedder"));
    assert_eq!(info.max_input_tokens, Some(512));
    assert_eq!(info.max_batch_size, Some(4));
    assert_eq!(info.max_batch_tokens, Some(16384));
    assert_eq!(info.model_type.as_deref(), Some("embedding (mean pooling)"));
    // A TEI endpoint only embeds, whatever the caller asks of it.
    let e = p
        .generate(
            &tei,
            &hfconnect::testing::provider::TextRequest {
                prompt: "x".into(),
                params: Default::default(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.to_string().contains("only embeds"), "{e}");
}
