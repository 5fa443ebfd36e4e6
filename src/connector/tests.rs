//! The task path in-process: the scripted provider instead of HTTP, tokio's
//! paused clock instead of waits. What the wire looks like is tested
//! against the fake Hugging Face server in `integration-tests`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::{Core, TaskRequest};
use crate::access::Subject;
use crate::config::LoadOptions;
use crate::provider::scripted::{Reply, Scripted};
use crate::provider::{ErrorKind, FinishReason};
use crate::task::{
    ChatCompleteInput, InputMessage, SummarizeInput, Task, TaskErrorKind, TaskEvent,
    TextCompleteInput,
};

const CONFIG: &str = concat!(
    r#"
[[integrations]]
name = "hf"
api_key = { env = "HF_TOKEN" }
queue_timeout = 0

[[integrations.models]]
name = "tgi"
endpoint = "http://127.0.0.1:9/"
api = "tgi"
tasks = ["text-generation", "summarization"]
defaults = { max_tokens = 3, temperature = 0.7, stop = ["<stop>"] }

[[integrations.models]]
name = "chat"
endpoint = "http://127.0.0.1:9/"
api = "chat"
tasks = ["chat"]

[[integrations.models]]
name = "off"
endpoint = "http://127.0.0.1:9/"
api = "tgi"
tasks = ["text-generation"]
active = false

[[integrations]]
name = "hf-off"
api_key = { env = "HF_TOKEN" }
active = false

[[integrations.models]]
name = "tgi"
endpoint = "http://127.0.0.1:9/"
api = "tgi"
tasks = ["text-generation"]

[[grants]]
subject = "group:research"
target = "model:hf:chat"
access = ["EXECUTE"]
"#,
    include_str!("../../integration-tests/fixtures/teams.toml")
);

/// A connector over `CONFIG` plus `extra` (appended, or replacing what
/// `edit` says), calling one scripted provider.
fn connector_with(edit: impl Fn(&str) -> String) -> (Core<Scripted>, Scripted) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, edit(CONFIG)).unwrap();
    let env: crate::config::EnvLookup = Arc::new(|k| (k == "HF_TOKEN").then(|| "hf_test".into()));
    let loaded = crate::config::load(&path, &LoadOptions::new().env(env)).unwrap();
    let scripted = Scripted::new();
    let s = scripted.clone();
    let c = Core::from_loaded_with(
        loaded,
        Arc::new(move |i, _calls, _key| Ok(s.serving(i.name()))),
    )
    .unwrap();
    (c, scripted)
}

fn connector() -> (Core<Scripted>, Scripted) {
    connector_with(str::to_string)
}

/// `CONFIG` with `extra` after the `tgi` model's defaults.
fn tgi_model_extra(extra: &str) -> impl Fn(&str) -> String + '_ {
    move |c: &str| {
        let anchor = "defaults = { max_tokens = 3, temperature = 0.7, stop = [\"<stop>\"] }";
        c.replacen(anchor, &format!("{anchor}\n{extra}"), 1)
    }
}

fn text(model: &str, prompt: &str) -> Task {
    Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: model.into(),
        prompt: Some(prompt.into()),
        ..Default::default()
    })
}

fn chat(message: &str) -> Task {
    Task::ChatComplete(ChatCompleteInput {
        llm_provider: "hf".into(),
        model: "chat".into(),
        messages: vec![InputMessage {
            role: crate::task::ChatRole::User,
            message: message.into(),
        }],
        ..Default::default()
    })
}

fn user(id: &str) -> Subject {
    Subject::User(id.into())
}

/// The value of the series `name{labels}` in Prometheus text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What the audit events written on this thread say (one line each).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Where the global subscriber writes: this thread's capture, or nowhere.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(c) => c.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends a capture.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Captured {
    /// Capture this thread's events from now until the guard drops.
    ///
    /// One global subscriber, installed once, listens to every callsite, so
    /// no thread caches "nobody listens" (which a per-thread default
    /// subscriber cannot rule out while other tests run); what it writes
    /// goes to the capture of the thread the event happened on (a
    /// `#[tokio::test]` runs its tasks on its own thread).
    fn start() -> (Captured, Capturing) {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .without_time()
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in unit tests");
        });
        let c = Captured::default();
        CAPTURE.with(|slot| *slot.borrow_mut() = Some(c.clone()));
        (c, Capturing)
    }

    fn audit_lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("hfconnect::audit"))
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test]
async fn a_task_runs_with_model_defaults_and_leaves_one_event_and_its_counts() {
    let (c, p) = connector();
    p.then(
        Reply::text("hello")
            .tokens(Some(4), Some(2))
            .finish(Some(FinishReason::Length)),
    );
    let (log, _g) = Captured::start();
    let alice = c.principal(&user("alice"), None).unwrap();
    let out = c
        .run(TaskRequest::new(&alice, &text("tgi", "say hi")))
        .await
        .output()
        .unwrap();
    assert_eq!(out.result.as_text(), Some("hello"));
    assert_eq!(out.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        (out.prompt_tokens, out.completion_tokens, out.token_used),
        (Some(4), Some(2), Some(6))
    );
    let asked = p.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (
            asked[0].integration.as_str(),
            asked[0].model.as_str(),
            asked[0].call
        ),
        ("hf", "tgi", "generate")
    );
    assert_eq!(asked[0].input, "say hi");
    let events = log.audit_lines();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains("outcome=\"ok\"") || events[0].contains("outcome=ok"),
        "{}",
        events[0]
    );
    assert!(
        events[0].contains("decision=\"allowed\"") && events[0].contains("grant at"),
        "{}",
        events[0]
    );
    let m = c.metrics_text();
    assert_eq!(metric(&m, "hfconnect_tasks_total{door=\"library\",integration=\"hf\",kind=\"text-generation\",model=\"tgi\",outcome=\"ok\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "hfconnect_tasks_in_flight"), 0.0);
}

#[tokio::test]
async fn refusals_come_in_order_and_say_why() {
    let (c, p) = connector();
    let alice = c.principal(&user("alice"), None).unwrap();
    let bob = c.principal(&user("bob"), None).unwrap();
    let cases: Vec<(
        Task,
        &crate::access::Principal,
        TaskErrorKind,
        &str,
        Option<bool>,
    )> = vec![
        (
            Task::TextComplete(TextCompleteInput {
                llm_provider: "hf-of".into(),
                model: "tgi".into(),
                prompt: Some("x".into()),
                ..Default::default()
            }),
            &alice,
            TaskErrorKind::NotFound,
            "unknown integration `hf-of` (did you mean `hf-off`?)",
            None,
        ),
        (
            text("tgj", "x"),
            &alice,
            TaskErrorKind::NotFound,
            "unknown model `tgj` of integration `hf` (did you mean `tgi`?)",
            None,
        ),
        (
            Task::TextComplete(TextCompleteInput {
                llm_provider: "hf-off".into(),
                model: "tgi".into(),
                prompt: Some("x".into()),
                ..Default::default()
            }),
            &alice,
            TaskErrorKind::Inactive,
            "integration `hf-off` is inactive",
            Some(false),
        ),
        (
            text("off", "x"),
            &alice,
            TaskErrorKind::Inactive,
            "model `off` of integration `hf` is inactive",
            Some(false),
        ),
        (
            text("tgi", "x"),
            &bob,
            TaskErrorKind::Denied,
            "denied: ",
            Some(false),
        ),
        (
            text("chat", "x"),
            &alice,
            TaskErrorKind::InvalidInput,
            "does not serve `text-generation`; it serves chat",
            Some(true),
        ),
        (
            text("tgi", "  "),
            &alice,
            TaskErrorKind::InvalidInput,
            "the prompt is empty",
            Some(true),
        ),
        (
            Task::TextComplete(TextCompleteInput {
                llm_provider: "hf".into(),
                model: "tgi".into(),
                prompt: Some("x".into()),
                temperature: Some(0.0),
                ..Default::default()
            }),
            &alice,
            TaskErrorKind::InvalidInput,
            "`temperature` must be greater than 0",
            Some(true),
        ),
        (
            Task::TextComplete(TextCompleteInput {
                llm_provider: "hf".into(),
                model: "tgi".into(),
                prompt_name: Some("ticket".into()),
                ..Default::default()
            }),
            &alice,
            TaskErrorKind::InvalidInput,
            "prompt `ticket`: ",
            Some(true),
        ),
    ];
    for (task, who, kind, words, decided) in cases {
        let done = c.run(TaskRequest::new(who, &task)).await;
        let e = done.reply.err().unwrap();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(done.decision.map(|d| d.allowed), decided, "{e}");
    }
    assert!(p.asked().is_empty(), "nothing refused reaches the provider");
    // Scoped to research, only research's grants count: the chat model, not `tgi`.
    let as_research = c.principal(&user("alice"), Some("research")).unwrap();
    c.run(TaskRequest::new(&as_research, &chat("hi")))
        .await
        .output()
        .unwrap();
    let e = c
        .run(TaskRequest::new(&as_research, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Denied, "{e}");
}

#[tokio::test]
async fn a_saved_prompt_is_rendered_and_its_grant_is_in_the_decision() {
    let (c, p) = connector();
    let alice = c.principal(&user("alice"), None).unwrap();
    let task = Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt_name: Some("ticket".into()),
        prompt_variables: [
            ("id".to_string(), serde_json::json!(7)),
            ("body".to_string(), "it broke".into()),
        ]
        .into(),
        ..Default::default()
    });
    let mut done = c.run(TaskRequest::new(&alice, &task)).await;
    let d = done.decision.take().unwrap();
    assert_eq!(
        done.output().unwrap().result.as_text(),
        Some("echo: Summarize ticket 7: it broke")
    );
    assert!(
        d.allowed && d.reason.to_string().contains("prompt:ticket"),
        "{}",
        d.reason
    );
    assert_eq!(p.asked()[0].input, "Summarize ticket 7: it broke");
}

#[tokio::test]
async fn provider_failures_keep_their_kind_retryability_and_wait() {
    let (c, p) = connector();
    let alice = c.principal(&user("alice"), None).unwrap();
    p.then(Reply::error_with_retry_after(
        ErrorKind::RateLimited,
        Duration::from_secs(3),
    ));
    p.then(Reply::error(ErrorKind::Unauthorized));
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Provider(ErrorKind::RateLimited));
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert!(
        std::error::Error::source(&e).is_some(),
        "the provider's error is the source"
    );
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::Provider(ErrorKind::Unauthorized));
    assert!(e.is_terminal());
    let m = c.metrics_text();
    assert_eq!(metric(&m, "hfconnect_tasks_total{door=\"library\",integration=\"hf\",kind=\"text-generation\",model=\"tgi\",outcome=\"rate_limited\"}"), 1.0, "{m}");
}

#[tokio::test]
async fn json_output_is_parsed_or_fails_as_invalid_output() {
    let (c, p) = connector();
    let bob = c.principal(&user("bob"), None).unwrap();
    let mut task = chat("give json");
    if let Task::ChatComplete(t) = &mut task {
        t.json_output = true;
    }
    p.then(Reply::text("```json\n{\"a\": 1}\n```"));
    p.then(Reply::text("not json"));
    let out = c.run(TaskRequest::new(&bob, &task)).await.output().unwrap();
    assert_eq!(
        out.result,
        crate::task::TaskResult::Json(serde_json::json!({"a": 1}))
    );
    let e = c
        .run(TaskRequest::new(&bob, &task))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidOutput);
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_counted_in_flight_until_its_output_and_audited_once() {
    let (c, p) = connector();
    p.then(
        Reply::text("")
            .chunks(["a ", "b ", "c"])
            .after(Duration::from_secs(5)),
    );
    let (log, _g) = Captured::start();
    let alice = c.principal(&user("alice"), None).unwrap();
    let mut stream = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")).streamed())
        .await
        .stream()
        .unwrap();
    assert_eq!(metric(&c.metrics_text(), "hfconnect_tasks_in_flight"), 1.0);
    let mut chunks = String::new();
    let mut output = None;
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            TaskEvent::Chunk(t) => chunks.push_str(&t),
            TaskEvent::Done(o) => output = Some(o),
        }
    }
    assert_eq!(chunks, "a b c");
    assert_eq!(output.unwrap().result.as_text(), Some("a b c"));
    drop(stream);
    assert_eq!(metric(&c.metrics_text(), "hfconnect_tasks_in_flight"), 0.0);
    assert_eq!(log.audit_lines().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_plain_task_is_in_flight_while_it_runs_and_a_dropped_one_is_audited_as_cancelled() {
    let (c, p) = connector();
    p.always(Reply::echo().after(Duration::from_secs(60)));
    let (log, _g) = Captured::start();
    let alice = c.principal(&user("alice"), None).unwrap();
    let task = text("tgi", "x");
    {
        let run = c.run(TaskRequest::new(&alice, &task));
        tokio::pin!(run);
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut run)
            .await
            .is_err());
        assert_eq!(metric(&c.metrics_text(), "hfconnect_tasks_in_flight"), 1.0);
    }
    assert_eq!(metric(&c.metrics_text(), "hfconnect_tasks_in_flight"), 0.0);
    let lines = log.audit_lines();
    assert_eq!(
        lines.len(),
        1,
        "{lines:?} {:?}",
        String::from_utf8_lossy(&log.0.lock().unwrap())
    );
    assert!(lines[0].contains("cancelled"), "{}", lines[0]);
    let m = c.metrics_text();
    assert_eq!(metric(&m, "hfconnect_tasks_total{door=\"library\",integration=\"hf\",kind=\"text-generation\",model=\"tgi\",outcome=\"cancelled\"}"), 1.0, "{m}");
}

#[tokio::test]
async fn a_refused_stream_is_an_error_before_any_item_and_a_summary_is_one_chunk() {
    let (c, p) = connector();
    let bob = c.principal(&user("bob"), None).unwrap();
    let e = c
        .run(TaskRequest::new(&bob, &text("tgi", "x")).streamed())
        .await
        .stream()
        .err()
        .unwrap();
    assert_eq!(e.kind(), TaskErrorKind::Denied);
    let items: Vec<_> = streamed(&c, &bob, &text("tgi", "x")).await;
    assert!(matches!(&items[..], [Err(e)] if e.kind() == TaskErrorKind::Denied));
    let alice = c.principal(&user("alice"), None).unwrap();
    let summary = Task::Summarize(SummarizeInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        text: "a long text".into(),
        ..Default::default()
    });
    p.then(Reply::text("short"));
    let items: Vec<_> = streamed(&c, &alice, &summary).await;
    assert!(
        matches!(&items[..], [Ok(TaskEvent::Chunk(t)), Ok(TaskEvent::Done(o))] if t == "short" && o.result.as_text() == Some("short")),
        "{items:?}"
    );
    assert_eq!(p.asked().last().map(|a| a.call), Some("summarize"));
}

#[tokio::test]
async fn a_failure_inside_a_stream_is_its_last_item() {
    let (c, p) = connector();
    let alice = c.principal(&user("alice"), None).unwrap();
    p.then(Reply::error(ErrorKind::Upstream));
    let items: Vec<_> = streamed(&c, &alice, &text("tgi", "x")).await;
    assert!(
        matches!(&items[..], [Err(e)] if e.kind() == TaskErrorKind::Provider(ErrorKind::Upstream)),
        "{items:?}"
    );
    assert_eq!(metric(&c.metrics_text(), "hfconnect_tasks_in_flight"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_refuses_with_the_wait_then_refills() {
    let (c, _p) = connector_with(tgi_model_extra(
        "rate_limit = { per_second = 2, burst = 1 }",
    ));
    let alice = c.principal(&user("alice"), None).unwrap();
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap();
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    assert!(e.is_retryable());
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    assert!(
        e.to_string()
            .contains("model `tgi` of integration `hf` is over its rate limit"),
        "{e}"
    );
    tokio::time::sleep(wait).await;
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .expect("refilled");
    let m = c.metrics_text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("hfconnect_rate_limited_total{") && l.ends_with(" 1")),
        "{m}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_waits_for_its_turn_within_the_queue_timeout() {
    let (c, _p) = connector_with(|cfg| {
        tgi_model_extra("rate_limit = { per_second = 2, burst = 1 }")(cfg).replacen(
            "queue_timeout = 0",
            "queue_timeout = 2",
            1,
        )
    });
    let alice = c.principal(&user("alice"), None).unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        c.run(TaskRequest::new(&alice, &text("tgi", "x")))
            .await
            .output()
            .unwrap();
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(990) && took <= Duration::from_millis(1100),
        "three tasks at 2/s with burst 1 take 1 s, took {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn quotas_are_charged_to_the_right_subject_and_refill() {
    let (c, _p) = connector_with(|cfg| {
        format!("{cfg}\n[[quotas]]\nsubject = \"group:support\"\nintegration = \"hf\"\nrequests_per_minute = 120\n")
    });
    let alice = c.principal(&user("alice"), None).unwrap();
    for _ in 0..120 {
        c.run(TaskRequest::new(&alice, &text("tgi", "x")))
            .await
            .output()
            .unwrap();
    }
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    assert!(
        e.to_string()
            .contains("the quota of `group:support` on integration `hf` (120 tasks per minute)"),
        "{e}"
    );
    // Scoped to research, alice is not charged to support's quota; bob is not in support.
    let as_research = c.principal(&user("alice"), Some("research")).unwrap();
    c.run(TaskRequest::new(&as_research, &chat("hi")))
        .await
        .output()
        .unwrap();
    let bob = c.principal(&user("bob"), None).unwrap();
    c.run(TaskRequest::new(&bob, &chat("hi")))
        .await
        .output()
        .unwrap();
    // 120 per minute refills one every 0.5 s.
    tokio::time::sleep(e.retry_after().unwrap()).await;
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .expect("refilled");
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_a_slot_frees_when_a_task_ends() {
    let (c, p) = connector_with(|cfg| {
        tgi_model_extra("max_concurrency = 1")(cfg).replacen(
            "queue_timeout = 0",
            "queue_timeout = 0.3",
            1,
        )
    });
    let c = Arc::new(c);
    p.then(Reply::echo().after(Duration::from_millis(800)));
    let alice = c.principal(&user("alice"), None).unwrap();
    let first = {
        let (c, alice) = (c.clone(), alice.clone());
        tokio::spawn(async move {
            c.run(TaskRequest::new(&alice, &text("tgi", "x")))
                .await
                .output()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    assert!(
        e.to_string()
            .contains("running its `max_concurrency` of 1 tasks"),
        "{e}"
    );
    first.await.unwrap().unwrap();
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .expect("the slot is free again");
}

#[tokio::test(start_paused = true)]
async fn limits_survive_a_reload_unless_their_rate_changes() {
    let edit = tgi_model_extra("rate_limit = { per_second = 1, burst = 1 }");
    let (c, _p) = connector_with(&edit);
    let alice = c.principal(&user("alice"), None).unwrap();
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap();
    let reload = |cfg: String| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, cfg).unwrap();
        let env: crate::config::EnvLookup =
            Arc::new(|k| (k == "HF_TOKEN").then(|| "hf_test".into()));
        c.reload_from(&path, &LoadOptions::new().env(env)).unwrap();
    };
    reload(edit(CONFIG).replace(
        "members = [\"alice\", \"bob\"]",
        "members = [\"alice\", \"bob\", \"zed\"]",
    ));
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        TaskErrorKind::RateLimited,
        "the same limiter: still empty"
    );
    reload(tgi_model_extra(
        "rate_limit = { per_second = 2, burst = 1 }",
    )(CONFIG));
    c.run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .expect("a new rate starts afresh");
}

#[test]
fn prepare_builds_the_call_with_the_model_defaults_and_the_task_overrides() {
    use super::prepare::{prepare, Call, Prepared};
    type Prepped<'s> = (
        Option<crate::access::Decision>,
        Result<Prepared<'s, Scripted>, crate::task::TaskError>,
    );
    fn prep<'s>(
        snap: &'s super::Snapshot<Scripted>,
        who: &crate::access::Principal,
        task: &Task,
    ) -> Prepped<'s> {
        let plan = snap.plan(task.integration(), task.model()).ok().unwrap();
        prepare(plan, &snap.catalog, who, task)
    }
    let (c, _p) = connector();
    let snap = c.state.load();
    let alice = c.principal(&user("alice"), None).unwrap();
    let (decided, prepared) = prep(&snap, &alice, &text("tgi", "hi"));
    assert!(decided.is_some_and(|d| d.allowed));
    let p = prepared.unwrap();
    assert_eq!(
        (
            p.plan.integration.name(),
            p.plan.model.name(),
            p.plan.model.spec().name.as_str()
        ),
        ("hf", "tgi", "tgi")
    );
    let Call::Generate(r) = &p.call else {
        panic!("a text task on tgi calls generate")
    };
    assert_eq!(r.prompt, "hi");
    assert_eq!(
        (
            r.params.max_tokens,
            r.params.temperature,
            r.params.stop.clone()
        ),
        (Some(3), Some(0.7), vec!["<stop>".to_string()])
    );
    let task = Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("hi".into()),
        max_tokens: Some(9),
        stop_words: vec!["END".into()],
        ..Default::default()
    });
    let (_, prepared) = prep(&snap, &alice, &task);
    let Call::Generate(r) = &prepared.unwrap().call else {
        panic!("generate")
    };
    assert_eq!(
        (r.params.max_tokens, r.params.stop.clone()),
        (Some(9), vec!["END".to_string()])
    );
    let bob = c.principal(&user("bob"), None).unwrap();
    let (_, prepared) = prep(&snap, &bob, &chat("hi"));
    let Call::Chat(r) = &prepared.unwrap().call else {
        panic!("a chat task on a chat model calls chat")
    };
    assert_eq!(r.messages.len(), 1);
    let unknown = snap
        .plan("hf", "nope")
        .err()
        .map(|(e, labels)| (e.kind(), labels.model));
    assert_eq!(
        unknown,
        Some((TaskErrorKind::NotFound, crate::catalog::UNKNOWN_NAME)),
        "unknown names are refused before any decision, counted as `unknown`"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_known_to_pass_the_queue_timeout_is_refused_at_once_and_waits_are_recorded() {
    // 5 a minute: one more every 12 s; a queue timeout of 30 s holds two waiters.
    let (c, _p) = connector_with(|cfg| {
        format!("{cfg}\n[[quotas]]\nsubject = \"group:support\"\nintegration = \"hf\"\nrequests_per_minute = 5\n")
            .replacen("queue_timeout = 0", "queue_timeout = 30", 1)
    });
    let c = Arc::new(c);
    let alice = c.principal(&user("alice"), None).unwrap();
    for i in 0..5 {
        let out = c
            .run(TaskRequest::new(&alice, &text("tgi", "x")))
            .await
            .output()
            .unwrap();
        let h = out.headroom.expect("the quota applied");
        assert_eq!((h.limit, h.remaining), (5, 4 - i), "{h:?}");
    }
    let started = tokio::time::Instant::now();
    // Calls 6 and 7 queue (12 s and 24 s away); call 8 would wait 36 s.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (c, alice) = (c.clone(), alice.clone());
            tokio::spawn(async move {
                let out = c
                    .run(TaskRequest::new(&alice, &text("tgi", "x")))
                    .await
                    .output();
                (out, tokio::time::Instant::now())
            })
        })
        .collect();
    // Let both reach the queue (no real time passes under the paused clock).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited, "{e}");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refused at once, never held"
    );
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(30) && wait <= Duration::from_secs(36),
        "the known wait: {wait:?}"
    );
    let mut done = Vec::new();
    for w in waiters {
        let (out, at) = w.await.unwrap();
        out.unwrap();
        done.push(at.duration_since(started));
    }
    done.sort();
    assert_eq!(done, [Duration::from_secs(12), Duration::from_secs(24)]);
    let m = c.metrics_text();
    assert!(
        m.contains("hfconnect_admission_wait_seconds_count 2"),
        "two tasks waited: {m}"
    );
}

/// A streamed task's items; a refusal is the only item.
async fn streamed(
    c: &Core<Scripted>,
    who: &crate::access::Principal,
    task: &Task,
) -> Vec<Result<TaskEvent, crate::task::TaskError>> {
    match c.run(TaskRequest::new(who, task).streamed()).await.stream() {
        Ok(s) => s.collect().await,
        Err(e) => vec![Err(e)],
    }
}

/// A budget of `tokens` a day for group support on model `tgi` (whose
/// completions are capped at 3 tokens).
fn with_budget(tokens: u64) -> impl Fn(&str) -> String {
    let store =
        std::env::temp_dir().join(format!("hfconnect-unit-{:016x}.sqlite", fastrand::u64(..)));
    move |c: &str| {
        format!(
            "{c}\n[[budgets]]\nname = \"support-tgi\"\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\ntokens = {tokens}\nwindow = \"day\"\n\n[admission]\nstore = {:?}\n",
            store.display().to_string()
        )
    }
}

/// What the budgets of `c` stand at: (used, reserved) of the first.
fn spent(c: &Core<Scripted>) -> (u64, u64) {
    let snap = c.state.load();
    let s = snap
        .admission
        .ledger()
        .standing(snap.catalog.budgets(), std::time::SystemTime::now());
    s.first().map_or((0, 0), |s| (s.used, s.reserved))
}

#[tokio::test]
async fn a_budget_refuses_what_does_not_fit_before_the_call_and_charges_usage() {
    let (c, scripted) = connector_with(with_budget(45));
    scripted.always(Reply::text("ok").tokens(Some(7), Some(3)));
    let alice = c.principal(&user("alice"), Some("support")).unwrap();
    // Each task reserves its prompt's bytes plus the markers (1 + 16) and the
    // model's cap (3): 20; each is charged the 10 it reports.
    for n in 1..=3 {
        c.run(TaskRequest::new(&alice, &text("tgi", "x")))
            .await
            .output()
            .unwrap();
        assert_eq!(spent(&c), (10 * n, 0));
    }
    let e = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::BudgetExhausted, "{e}");
    assert!(!e.is_retryable());
    assert!(e
        .retry_after()
        .is_some_and(|w| w <= Duration::from_secs(86_400)));
    let m = e.to_string();
    assert!(
        m.contains(
            "budget `support-tgi` has 15 of its 45 tokens left and the task may use up to 20"
        ),
        "{m}"
    );
    assert_eq!(scripted.asked().len(), 3, "the refused task was never sent");
    // Another group's caller is not under the budget.
    let bob = c.principal(&user("bob"), None).unwrap();
    let denied_anyway = c
        .run(TaskRequest::new(&bob, &text("tgi", "x")))
        .await
        .output();
    assert_ne!(
        denied_anyway.err().map(|e| e.kind()),
        Some(TaskErrorKind::BudgetExhausted)
    );
}

#[tokio::test]
async fn a_failed_call_is_refunded_and_a_stream_without_usage_pays_what_it_delivered() {
    let (c, scripted) = connector_with(with_budget(40));
    let alice = c.principal(&user("alice"), Some("support")).unwrap();
    scripted.then(Reply::error(ErrorKind::Upstream));
    assert!(c
        .run(TaskRequest::new(&alice, &text("tgi", "x")))
        .await
        .output()
        .is_err());
    assert_eq!(spent(&c), (0, 0), "a failed call is refunded");
    scripted.then(Reply::text("abc").chunks(["a", "b"]).tokens(None, None));
    let items = streamed(&c, &alice, &text("tgi", "x")).await;
    assert!(items.last().is_some_and(Result::is_ok), "{items:?}");
    // The prompt's worst case (17) and the two tokens it delivered.
    assert_eq!(spent(&c), (19, 0));
}

#[tokio::test]
async fn a_cancelled_stream_pays_what_it_delivered() {
    let (c, scripted) = connector_with(with_budget(100));
    let alice = c.principal(&user("alice"), Some("support")).unwrap();
    scripted.then(
        Reply::text("abc")
            .chunks(["a", "b", "c"])
            .tokens(Some(5), Some(3)),
    );
    let mut s = c
        .run(TaskRequest::new(&alice, &text("tgi", "x")).streamed())
        .await
        .stream()
        .unwrap();
    assert!(matches!(s.next().await, Some(Ok(TaskEvent::Chunk(_)))));
    assert_eq!(spent(&c), (0, 20), "reserved while it runs");
    drop(s);
    assert_eq!(spent(&c), (18, 0), "its prompt's worst case and one token");
}
