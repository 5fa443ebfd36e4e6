//! Admission through the Connector: rate limits wait up to `queue_timeout` then
//! fail with `retry_after`; quotas are charged to the scoped group or to every
//! quota naming the caller or its groups, and refill; concurrency is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::config::LoadOptions;
use hfconnect::task::{ChatCompleteInput, InputMessage, TextCompleteInput};
use hfconnect::{Connector, Subject, Task, TaskErrorKind};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};

use crate::provider::TOKEN;
use crate::support::Dir;
use crate::tasks::{config, env};

async fn connector(edit: impl Fn(String) -> String) -> (FakeHf, Dir, Connector) {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &edit(config(&fake.url())));
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    (fake, dir, c)
}

fn with_queue_timeout(cfg: String, secs: f64) -> String {
    cfg.replacen(
        "cold_start = { wait = 1 }",
        &format!("cold_start = {{ wait = 1 }}\nqueue_timeout = {secs}"),
        1,
    )
}

fn tgi_model_extra(cfg: String, extra: &str) -> String {
    let anchor = "defaults = { max_tokens = 3, temperature = 0.7, stop = [\"<stop>\"] }";
    assert!(cfg.contains(anchor));
    cfg.replacen(anchor, &format!("{anchor}\n{extra}"), 1)
}

fn text() -> Task {
    Task::TextComplete(TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("x".into()),
        ..Default::default()
    })
}

fn chat() -> Task {
    Task::ChatComplete(ChatCompleteInput {
        llm_provider: "hf".into(),
        model: "org/chat-model".into(),
        messages: vec![InputMessage {
            role: hfconnect::provider::ChatRole::User,
            message: "hi".into(),
        }],
        ..Default::default()
    })
}

#[tokio::test]
async fn a_model_rate_limit_refuses_then_refills() {
    let (_fake, _dir, c) = connector(|cfg| {
        tgi_model_extra(
            with_queue_timeout(cfg, 0.0),
            "rate_limit = { per_second = 2, burst = 1 }",
        )
    })
    .await;
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    c.execute(&alice, &text()).await.unwrap();
    let e = c.execute(&alice, &text()).await.unwrap_err();
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
    c.execute(&alice, &text()).await.expect("refilled");
}

#[tokio::test]
async fn a_task_waits_for_its_turn_within_the_queue_timeout() {
    let (_fake, _dir, c) = connector(|cfg| {
        with_queue_timeout(cfg, 2.0).replacen(
            "queue_timeout = 2",
            "queue_timeout = 2\nrate_limit = { per_second = 2, burst = 1 }",
            1,
        )
    })
    .await;
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        c.execute(&alice, &text()).await.unwrap();
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "three tasks at 2/s with burst 1 take about 1 s, took {took:?}"
    );
}

#[tokio::test]
async fn quotas_are_charged_to_the_right_subject_and_refill() {
    let quota = "\n[[quotas]]\nsubject = \"group:support\"\nintegration = \"hf\"\nrequests_per_minute = 120\n";
    let (_fake, _dir, c) = connector(|cfg| with_queue_timeout(cfg, 0.0) + quota).await;
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    for _ in 0..120 {
        c.execute(&alice, &text()).await.unwrap();
    }
    let e = c.execute(&alice, &text()).await.unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    assert!(
        e.to_string()
            .contains("the quota of `group:support` on integration `hf` (120 tasks per minute)"),
        "{e}"
    );
    // Scoped to research, alice is not charged to support's quota.
    let as_research = c
        .principal(&Subject::User("alice".into()), Some("research"))
        .unwrap();
    c.execute(&as_research, &chat()).await.unwrap();
    // Bob is not in support.
    let bob = c.principal(&Subject::User("bob".into()), None).unwrap();
    c.execute(&bob, &chat()).await.unwrap();
    // Scoped to support, alice is charged to it.
    let as_support = c
        .principal(&Subject::User("alice".into()), Some("support"))
        .unwrap();
    let e = c.execute(&as_support, &chat()).await.unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    // 120 per minute refills one every 0.5 s.
    tokio::time::sleep(e.retry_after().unwrap()).await;
    c.execute(&alice, &text()).await.expect("refilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let (fake, _dir, c) =
        connector(|cfg| tgi_model_extra(with_queue_timeout(cfg, 0.3), "max_concurrency = 1")).await;
    let c = Arc::new(c);
    fake.push(Route::Generate, Fault::Delay(Duration::from_millis(800)));
    let first = {
        let c = c.clone();
        tokio::spawn(async move {
            let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
            c.execute(&alice, &text()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    let e = c.execute(&alice, &text()).await.unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::RateLimited);
    assert!(
        e.to_string()
            .contains("running its `max_concurrency` of 1 tasks"),
        "{e}"
    );
    first.await.unwrap().unwrap();
    c.execute(&alice, &text())
        .await
        .expect("the slot is free again");
}
