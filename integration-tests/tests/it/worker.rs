//! The Conductor worker against the fake Conductor and fake Hugging Face
//! servers: each report status, identity modes, Orkes tokens, Conductor
//! down, a 240-task run with faults on both sides, and shutdown mid-run
//! (library and binary).

use std::collections::HashMap;
use std::time::Duration;

use hfconnect::testing::conductor::Worker;
use hfconnect_integration_tests::fake_conductor::{CFault, CRoute, FakeConductor, Schedule};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::{json, Value};

use crate::support::working::{setup, spawn_worker, worker_config};
use crate::support::{Dir, TOKEN};

fn text(model: &str, prompt: &str) -> Value {
    json!({"llmProvider": "hf", "model": model, "prompt": prompt})
}

const FIXED: &str = "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nconcurrency = 4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_is_reported_with_its_status_and_logs() {
    let s = setup(FIXED).await;
    let c = &s.conductor;
    let ok = c.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        text("tgi", "alpha beta"),
    ));
    let chat = c.schedule(Schedule::new(
        "LLM_CHAT_COMPLETE",
        json!({"llmProvider": "hf", "model": "org/chat-model", "messages": [{"role": "user", "message": "gamma delta"}]}),
    ));
    let unknown = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("nope", "x")));
    let inactive = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("off", "x")));
    let bad = c.schedule(Schedule::new(
        "LLM_TEXT_COMPLETE",
        json!({"llmProvider": "hf", "model": "tgi", "promt": "typo"}),
    ));
    let run = s.run_all().await;

    let wf = c.workflow(&ok).unwrap();
    assert_eq!(wf.status, "COMPLETED");
    let t = c.last_task(&ok).unwrap();
    let out = t.output.clone().unwrap();
    assert_eq!(out["result"], "alpha beta");
    assert_eq!(out["finishReason"], "STOP");
    assert!(out["tokenUsed"].as_u64().is_some(), "{out}");
    let logs = t.logs.join("\n");
    assert!(logs.contains("as `app:batch`"), "{logs}");
    assert!(logs.contains("on `hf/tgi`"), "{logs}");
    assert!(logs.contains("decision: allowed"), "{logs}");
    assert!(logs.contains("COMPLETED in"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(
        !logs.contains("alpha beta"),
        "prompt text in the logs: {logs}"
    );

    assert_eq!(
        c.last_task(&chat).unwrap().output.unwrap()["result"],
        "gamma delta"
    );

    for (wf, kind, words) in [
        (&unknown, "not_found", "unknown model `nope`"),
        (&inactive, "inactive", "`off`"),
        (&bad, "invalid_input", "promt"),
    ] {
        let w = c.workflow(wf).unwrap();
        assert_eq!(w.status, "FAILED");
        assert_eq!(w.tasks.len(), 1, "a terminal error is not retried");
        let t = c.last_task(wf).unwrap();
        assert_eq!(t.status, "FAILED_WITH_TERMINAL_ERROR");
        let reason = t.reason.unwrap();
        assert!(
            reason.starts_with(kind) && reason.contains(words),
            "{reason}"
        );
        assert_eq!(t.output.as_ref().unwrap()["kind"], kind);
        assert_eq!(t.output.as_ref().unwrap()["retryable"], false);
    }
    assert_eq!(run.completed, 2);
    assert_eq!(run.terminal, 3);
    assert_eq!(run.unreported, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_fail_or_come_back_later() {
    let s = setup(FIXED).await;
    let c = &s.conductor;
    // Rate limited for longer than the retry budget (1 s): not retried by the
    // provider; IN_PROGRESS, back in 2 s.
    s.hf.push(Route::Generate, Fault::rate_limited(2));
    let limited = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "later")));
    let started = std::time::Instant::now();
    s.run_all().await;
    let t = c.last_task(&limited).unwrap();
    assert_eq!(c.workflow(&limited).unwrap().tasks.len(), 1);
    assert_eq!(t.status, "COMPLETED");
    assert_eq!(t.poll_count, 2, "handed out again after the callback");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let reports = c.reports();
    assert_eq!(reports[0].status, "IN_PROGRESS");
    assert_eq!(reports[0].body["callbackAfterSeconds"], 2);
    assert_eq!(reports[1].status, "COMPLETED");

    // A server error outlasting the provider's retries: FAILED, and Conductor's retry completes it.
    s.hf.push_n(Route::Generate, Fault::text(500, "boom"), 2);
    let failing = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "again")));
    s.run_all().await;
    let w = c.workflow(&failing).unwrap();
    assert_eq!(w.status, "COMPLETED");
    assert_eq!(w.tasks.len(), 2);
    let first = c.task(&w.tasks[0]).unwrap();
    assert_eq!(first.status, "FAILED");
    assert!(first.reason.unwrap().contains("boom"));
    assert_eq!(
        c.task(&w.tasks[1]).unwrap().output.unwrap()["result"],
        "again"
    );

    // Retries used up: after `retryCount` retries the workflow fails.
    s.hf.push_n(Route::Generate, Fault::text(500, "still broken"), 4);
    let exhausted = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "never")).retries(1));
    s.run_all().await;
    let w = c.workflow(&exhausted).unwrap();
    assert_eq!(w.status, "FAILED");
    assert_eq!(w.tasks.len(), 2, "the first try and one retry");
    for t in &w.tasks {
        assert_eq!(c.task(t).unwrap().status, "FAILED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_input_identity_and_group_scope() {
    let s = setup("[worker]\nidentity = \"task-input\"\npoll_timeout = 0.2").await;
    let c = &s.conductor;
    let with = |by: Value, group: Option<&str>, model: &str| {
        let mut input = json!({"llmProvider": "hf", "model": model, "text": "long text"});
        input["_createdBy"] = by;
        if let Some(g) = group {
            input["_group"] = json!(g);
        }
        c.schedule(Schedule::new("LLM_SUMMARIZE", input))
    };
    let ann = with(json!("ann"), None, "bart");
    let ann_support = with(json!("ann"), Some("support"), "bart");
    let bo = with(json!("user:bo"), None, "bart");
    let app = with(json!("app:intruder"), None, "bart");
    let stranger = with(json!("zed@example.com"), None, "bart");
    let not_member = with(json!("bo"), Some("support"), "bart");
    let missing = c.schedule(Schedule::new(
        "LLM_SUMMARIZE",
        json!({"llmProvider": "hf", "model": "bart", "text": "t"}),
    ));
    s.run_all().await;
    for wf in [&ann, &bo] {
        assert_eq!(c.workflow(wf).unwrap().status, "COMPLETED");
        assert_eq!(
            c.last_task(wf).unwrap().output.unwrap()["result"],
            "long text"
        );
    }
    // Scoped to support, ann still has the integration grant of support.
    assert_eq!(c.workflow(&ann_support).unwrap().status, "COMPLETED");
    for (wf, kind) in [
        (&app, "denied"),
        (&stranger, "denied"),
        (&not_member, "denied"),
        (&missing, "invalid_input"),
    ] {
        let t = c.last_task(wf).unwrap();
        assert_eq!(t.status, "FAILED_WITH_TERMINAL_ERROR", "{wf}");
        assert!(
            t.reason.as_ref().unwrap().starts_with(kind),
            "{:?}",
            t.reason
        );
    }
    let t = c.last_task(&stranger).unwrap();
    assert!(
        t.logs.join("\n").contains("decision: denied"),
        "{:?}",
        t.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_identity_is_looked_up_once_per_workflow() {
    let s = setup("[worker]\nidentity = \"workflow\"\npoll_timeout = 0.2").await;
    let c = &s.conductor;
    // Alone first, so that the faults hit it: its retry (a second task of the
    // same workflow) must use the cached owner.
    s.hf.push_n(Route::Generate, Fault::text(500, "boom"), 2);
    let retried =
        c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "r")).created_by("ann"));
    s.run_all().await;
    let by_user =
        c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "u")).created_by("ann"));
    let by_app =
        c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "a")).owner_app("batch"));
    let nobody = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "n")));
    let denied =
        c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "d")).created_by("app:intruder"));
    s.run_all().await;
    for wf in [&by_user, &by_app, &retried] {
        assert_eq!(c.workflow(wf).unwrap().status, "COMPLETED", "{wf}");
    }
    for wf in [&nobody, &denied] {
        assert_eq!(
            c.last_task(wf).unwrap().status,
            "FAILED_WITH_TERMINAL_ERROR"
        );
    }
    assert!(c
        .last_task(&by_app)
        .unwrap()
        .logs
        .join(" ")
        .contains("as `app:batch`"));
    assert!(c
        .last_task(&by_user)
        .unwrap()
        .logs
        .join(" ")
        .contains("as `user:ann`"));
    // One lookup per workflow: the retry of `retried` used the cached owner.
    assert_eq!(c.workflow(&retried).unwrap().tasks.len(), 2);
    assert_eq!(c.workflow_lookups(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orkes_tokens_are_fetched_refreshed_and_renewed_after_a_401() {
    let s = setup(
        "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nkey_id = \"kid\"\nkey_secret = { env = \"HF_TOKEN\" }",
    )
    .await;
    let c = &s.conductor;
    // The secret stays out of Debug output of the settings and the worker.
    let debug = format!("{:?}", s.settings);
    assert!(debug.contains("kid") && !debug.contains(TOKEN), "{debug}");
    let w = Worker::new(
        s.connector.clone(),
        s.settings.clone(),
        &url::Url::parse(&c.url()).unwrap(),
    )
    .unwrap();
    assert!(!format!("{w:?}").contains(TOKEN));
    c.require_auth("kid", TOKEN, Duration::from_secs(2));
    let first = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "one")));
    // Run for 3.5 s: the 2 s token must be replaced before it expires.
    let until = std::time::Instant::now() + Duration::from_millis(3500);
    s.run_until(s.settings.clone(), |_| std::time::Instant::now() >= until)
        .await;
    assert_eq!(c.workflow(&first).unwrap().status, "COMPLETED");
    let (tokens, refused) = c.auth_counts();
    assert!(
        tokens >= 2,
        "the token was not refreshed: {tokens} token requests"
    );
    assert_eq!(refused, 0, "a request went out with an expired token");

    // Revoked on the server side while the worker runs: one 401, a new token,
    // and work goes on.
    let tokens_before = c.auth_counts().0;
    let (tx, handle) = spawn_worker(&s, s.settings.clone());
    crate::support::wait_for("the new worker's token", Duration::from_secs(10), || {
        let n = c.auth_counts().0;
        async move { n > tokens_before }
    })
    .await;
    let before = c.auth_counts();
    c.revoke_tokens();
    let second = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "two")));
    assert!(c.wait_all_done(Duration::from_secs(10)).await);
    let _ = tx.send(());
    handle.await.unwrap();
    assert_eq!(c.workflow(&second).unwrap().status, "COMPLETED");
    let after = c.auth_counts();
    assert!(
        after.1 > before.1,
        "no request was refused after the revocation"
    );
    assert!(after.0 > before.0, "no new token after the 401");

    // Wrong credentials: polls fail, nothing crashes, nothing is reported.
    let mut wrong = s.settings.clone();
    if let Some(a) = wrong.auth.as_mut() {
        a.key_id = "other".into();
    }
    let third = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "three")));
    let until = std::time::Instant::now() + Duration::from_millis(800);
    let report = s
        .run_until(wrong, |_| std::time::Instant::now() >= until)
        .await;
    assert!(report.poll_errors >= 1);
    assert_eq!(c.workflow(&third).unwrap().status, "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conductor_down_or_failing_is_waited_out_without_a_busy_loop() {
    let s = setup(FIXED).await;
    let c = &s.conductor;
    c.set_down(true);
    let wfs: Vec<String> = (0..10)
        .map(|i| {
            c.schedule(Schedule::new(
                "LLM_TEXT_COMPLETE",
                text("tgi", &format!("t{i}")),
            ))
        })
        .collect();
    let (tx, handle) = spawn_worker(&s, s.settings.clone());
    // The pollers fail against the down server and back off a few times.
    crate::support::wait_for("failed polls", Duration::from_secs(10), || {
        let n = c.refused_while_down();
        async move { n >= 6 }
    })
    .await;
    c.push_n(CRoute::Poll, CFault::Status(503, "no".into()), 3);
    c.push_n(CRoute::Update, CFault::Status(502, "bad gateway".into()), 4);
    c.set_down(false);
    assert!(c.wait_all_done(Duration::from_secs(15)).await);
    let _ = tx.send(());
    let report = handle.await.unwrap();
    // Three pollers over 2 s with backoff from 100 ms: a handful of tries each.
    assert!(
        report.poll_errors >= 3 && report.poll_errors <= 40,
        "{report:?}"
    );
    assert_eq!(report.completed, 10);
    for wf in &wfs {
        assert_eq!(c.workflow(wf).unwrap().status, "COMPLETED");
    }
    let completed = c
        .reports()
        .iter()
        .filter(|r| r.status == "COMPLETED")
        .count();
    assert_eq!(completed, 10, "each result reported once");
}

/// What a task of the big run should end as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Completed,
    Terminal(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_forty_tasks_with_faults_on_both_sides_end_right_and_once() {
    let s = setup(
        "[worker]\nidentity = \"task-input\"\npoll_timeout = 0.2\nconcurrency = 8\nbatch = 4",
    )
    .await;
    let c = &s.conductor;
    // Hugging Face: loading, rate limits, server errors, overload.
    s.hf.push_n(Route::Generate, Fault::loading(0.05), 6);
    s.hf.push_n(Route::Generate, Fault::text(500, "boom"), 10);
    s.hf.push_n(Route::Chat, Fault::rate_limited(1), 4);
    s.hf.push_n(Route::Chat, Fault::overloaded(), 4);
    s.hf.push_n(Route::Pipeline, Fault::text(502, "Bad Gateway"), 6);
    // Conductor: failing and slow polls, failing reports.
    c.push_n(CRoute::Poll, CFault::Status(500, "poll broke".into()), 5);
    c.push_n(CRoute::Poll, CFault::Delay(Duration::from_millis(300)), 5);
    c.push_n(CRoute::Update, CFault::Status(503, "busy".into()), 12);

    let mut expected: HashMap<String, (Expect, Option<String>)> = HashMap::new();
    for i in 0..240 {
        let prompt = format!("task number {i}");
        let by = if i % 2 == 0 { "ann" } else { "app:batch" };
        let (ty, mut input, expect, answer) = match i % 8 {
            0..=2 => (
                "LLM_TEXT_COMPLETE",
                text("tgi", &prompt),
                Expect::Completed,
                Some(prompt.clone()),
            ),
            3 => (
                "LLM_CHAT_COMPLETE",
                json!({"llmProvider": "hf", "model": "org/chat-model", "messages": [{"role": "user", "message": prompt}]}),
                Expect::Completed,
                Some(prompt.clone()),
            ),
            4 => (
                "LLM_SUMMARIZE",
                json!({"llmProvider": "hf", "model": "bart", "text": prompt}),
                // bart is granted to research: ann is a member, the app is not.
                if by == "ann" {
                    Expect::Completed
                } else {
                    Expect::Terminal("denied")
                },
                Some(prompt.clone()),
            ),
            5 => (
                "LLM_TEXT_COMPLETE",
                text("off", &prompt),
                Expect::Terminal("inactive"),
                None,
            ),
            6 => (
                "LLM_TEXT_COMPLETE",
                json!({"llmProvider": "hf", "model": "tgi"}),
                Expect::Terminal("invalid_input"),
                None,
            ),
            _ => (
                "LLM_TEXT_COMPLETE",
                text("tgi", &prompt),
                Expect::Completed,
                Some(prompt.clone()),
            ),
        };
        input["_createdBy"] = json!(by);
        let wf = c.schedule(Schedule::new(ty, input).retries(6));
        expected.insert(wf, (expect, answer));
    }
    let report = s.run_all().await;
    assert_eq!(c.running(), 0, "{report:?}");

    let reports = c.reports();
    for (wf, (expect, answer)) in &expected {
        let w = c.workflow(wf).unwrap();
        let last = c.last_task(wf).unwrap();
        match expect {
            Expect::Completed => {
                assert_eq!(w.status, "COMPLETED", "{wf}: {:?}", last.reason);
                assert_eq!(
                    last.output.as_ref().unwrap()["result"],
                    json!(answer.clone().unwrap()),
                    "{wf}: another task's output"
                );
            }
            Expect::Terminal(kind) => {
                assert_eq!(w.status, "FAILED", "{wf}");
                assert_eq!(last.status, "FAILED_WITH_TERMINAL_ERROR");
                assert!(
                    last.reason.as_ref().unwrap().starts_with(kind),
                    "{:?}",
                    last.reason
                );
                assert_eq!(w.tasks.len(), 1, "{wf}: a terminal task was retried");
            }
        }
        // Exactly one final report per workflow, none late.
        let finals = w
            .tasks
            .iter()
            .flat_map(|t| reports.iter().filter(move |r| &r.task_id == t))
            .filter(|r| r.status == "COMPLETED" || r.status == "FAILED_WITH_TERMINAL_ERROR")
            .count();
        assert_eq!(finals, 1, "{wf}: {finals} final reports");
    }
    assert!(
        reports.iter().all(|r| !r.late),
        "a report arrived for a finished task"
    );
    assert_eq!(report.unreported, 0);
    assert!(
        report.failed + report.deferred > 0,
        "no fault reached the worker: {report:?}"
    );
    assert!(report.poll_errors >= 5, "{report:?}");
    assert_eq!(
        report.polled,
        report.completed + report.failed + report.terminal + report.deferred
    );
}

/// Start a worker; the sender stops it.
fn completed_once(c: &FakeConductor, wfs: &[String]) {
    let reports = c.reports();
    for wf in wfs {
        let w = c.workflow(wf).unwrap();
        assert_eq!(w.status, "COMPLETED", "{wf}");
        let n = reports
            .iter()
            .filter(|r| w.tasks.contains(&r.task_id) && r.status == "COMPLETED")
            .count();
        assert_eq!(n, 1, "{wf} reported COMPLETED {n} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_run_finishes_and_reports_what_it_started() {
    let s = setup(
        "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nconcurrency = 4\nshutdown_grace = 10",
    )
    .await;
    let c = &s.conductor;
    s.hf.push_n(
        Route::Generate,
        Fault::Delay(Duration::from_millis(400)),
        200,
    );
    let wfs: Vec<String> = (0..30)
        .map(|i| {
            c.schedule(Schedule::new(
                "LLM_TEXT_COMPLETE",
                text("tgi", &format!("t{i}")),
            ))
        })
        .collect();
    let (stop, handle) = spawn_worker(&s, s.settings.clone());
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while c.in_progress() == 0 && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        c.in_progress() > 0,
        "nothing running when the shutdown came"
    );
    let _ = stop.send(());
    let first = handle.await.unwrap();
    // Everything handed out was run and reported; the rest is still queued.
    assert_eq!(c.in_progress(), 0, "a task was left running unreported");
    assert!(c.running() > 0, "the run was not cut short");
    assert_eq!(first.polled, first.completed);
    assert_eq!(first.unreported, 0);

    let (stop, handle) = spawn_worker(&s, s.settings.clone());
    assert!(c.wait_all_done(Duration::from_secs(30)).await);
    let _ = stop.send(());
    let second = handle.await.unwrap();
    assert_eq!(first.completed + second.completed, 30);
    completed_once(c, &wfs);
    // 30 slow tasks, `concurrency = 4`: never more than 4 at the model at once, and 4 reached.
    assert_eq!(s.hf.max_in_flight(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outliving_the_grace_period_are_left_for_conductor_to_requeue() {
    let s = setup(
        "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nconcurrency = 2\nshutdown_grace = 0.2",
    )
    .await;
    let c = &s.conductor;
    s.hf.push_n(
        Route::Generate,
        Fault::Delay(Duration::from_millis(1500)),
        2,
    );
    let wfs: Vec<String> = (0..2)
        .map(|i| {
            c.schedule(
                Schedule::new("LLM_TEXT_COMPLETE", text("tgi", &format!("slow{i}")))
                    .response_timeout(Duration::from_secs(1)),
            )
        })
        .collect();
    let (stop, handle) = spawn_worker(&s, s.settings.clone());
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while c.in_progress() < 2 && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.in_progress(), 2);
    let _ = stop.send(());
    let first = handle.await.unwrap();
    assert_eq!(first.completed, 0, "{first:?}");
    assert!(
        c.reports().is_empty(),
        "nothing may be reported for unfinished work"
    );

    // Conductor re-queues them after their response timeout; a new worker completes them.
    let (stop, handle) = spawn_worker(&s, s.settings.clone());
    assert!(c.wait_all_done(Duration::from_secs(15)).await);
    let _ = stop.send(());
    handle.await.unwrap();
    completed_once(c, &wfs);
    for wf in &wfs {
        assert_eq!(c.last_task(wf).unwrap().timeouts, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_stops_on_sigterm_after_reporting_its_running_tasks() {
    let hf = FakeHf::start(TOKEN).await.unwrap();
    hf.behave(|b| b.echo = true);
    hf.push_n(
        Route::Generate,
        Fault::Delay(Duration::from_millis(500)),
        200,
    );
    let c = FakeConductor::start().await.unwrap();
    let dir = Dir::new();
    let path = dir.write(
        "c.toml",
        &worker_config(
            &hf.url(),
            "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nconcurrency = 3",
        ),
    );
    let wfs: Vec<String> = (0..20)
        .map(|i| {
            c.schedule(Schedule::new(
                "LLM_TEXT_COMPLETE",
                text("tgi", &format!("b{i}")),
            ))
        })
        .collect();
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "worker",
            "--config",
            path.to_str().unwrap(),
            "--conductor-url",
            &c.url(),
        ])
        .env("HF_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .env_remove("CONDUCTOR_SERVER_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    // SIGTERM once some tasks are done and others are running.
    while !(c.reports().len() >= 3 && c.in_progress() > 0) && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.in_progress() > 0, "no task running to cut short");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut err = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}\n{err}");
    assert!(err.contains("stopping: no new polls"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert_eq!(
        c.in_progress(),
        0,
        "a polled task was left unreported\n{err}"
    );
    let done = c.reports().len();
    assert!(done < 20, "the run was not cut short");
    assert_eq!(c.running(), 20 - done);
    let completed: Vec<String> = wfs
        .iter()
        .filter(|w| c.workflow(w).unwrap().status == "COMPLETED")
        .cloned()
        .collect();
    assert_eq!(completed.len(), done);
    completed_once(&c, &completed);
}

#[test]
fn the_binary_explains_a_missing_worker_section_or_url() {
    let dir = Dir::new();
    let no_section = dir.write("a.toml", &worker_config("http://127.0.0.1:9", ""));
    let out = crate::support::run(&[
        "worker",
        "--config",
        no_section.to_str().unwrap(),
        "--conductor-url",
        "http://127.0.0.1:9/api",
    ]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("has no `[worker]` section"),
        "{}",
        out.stderr
    );

    let no_url = dir.write(
        "b.toml",
        &worker_config("http://127.0.0.1:9", "[worker]\napp = \"batch\""),
    );
    let out = crate::support::run(&["worker", "--config", no_url.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("no Conductor URL"), "{}", out.stderr);

    let out = crate::support::run(&[
        "worker",
        "--config",
        no_url.to_str().unwrap(),
        "--conductor-url",
        "ftp://x",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`--conductor-url` `ftp://x` is not an http(s) URL"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_secret_never_appears_in_logs_reports_or_debug() {
    const SECRET: &str = "orkes-secret-5f1c9a7e-never-print";
    let logs = crate::support::global_logs();
    let s = setup(&format!(
        "[worker]\napp = \"batch\"\npoll_timeout = 0.2\nkey_id = \"kid\"\nkey_secret = {{ value = \"{SECRET}\" }}"
    ))
    .await;
    let c = &s.conductor;
    c.require_auth("kid", SECRET, Duration::from_secs(1));
    let ok = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "fine")));
    let denied = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("nope", "x")));
    s.run_all().await;
    assert_eq!(c.workflow(&ok).unwrap().status, "COMPLETED");
    assert_eq!(c.workflow(&denied).unwrap().status, "FAILED");
    // Refused credentials: errors are logged, the secret is not.
    let mut wrong = s.settings.clone();
    if let Some(a) = wrong.auth.as_mut() {
        a.key_id = "other".into();
    }
    let until = std::time::Instant::now() + Duration::from_millis(600);
    let report = s
        .run_until(wrong, |_| std::time::Instant::now() >= until)
        .await;
    assert!(report.poll_errors >= 1);

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("poll failed"), "the refusal was not logged");
    assert!(!text.contains(SECRET), "the secret is in the logs");
    for r in c.reports() {
        assert!(!r.body.to_string().contains(SECRET), "{}", r.body);
    }
    assert!(!format!("{:?} {report:?}", s.settings).contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_queue_is_not_polled_in_a_busy_loop() {
    // `poll_timeout = 0`: Conductor answers an empty poll at once.
    let s = setup("[worker]\napp = \"batch\"\npoll_timeout = 0").await;
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(1);
    s.run_until(s.settings.clone(), |_| std::time::Instant::now() >= until)
        .await;
    let secs = started.elapsed().as_secs_f64();
    let (polls, queries) = s.conductor.polls();
    // Every task type, at most one poll each per 100 ms (and a little slack).
    let types = s.settings.task_types.len() as f64;
    assert!(
        (polls as f64) <= types * (secs * 10.0 + 2.0),
        "{polls} polls in {secs:.2} s"
    );
    assert!(
        queries.iter().all(|q| q.contains("timeout=0")),
        "{queries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_a_terminal_failure_naming_it() {
    // `tgi` caps completions at 64 tokens: no task fits in 10.
    let budget = "\n[[budgets]]\nname = \"nightly\"\nsubject = \"app:batch\"\ntarget = \"model:hf:tgi\"\ntokens = 10\nwindow = \"month\"\n\n[admission]\nstore = \"usage.sqlite\"\n";
    let s = setup(&format!("{FIXED}\n{budget}")).await;
    let c = &s.conductor;
    let wf = c.schedule(Schedule::new("LLM_TEXT_COMPLETE", text("tgi", "x")));
    let run = s.run_all().await;
    let t = c.last_task(&wf).unwrap();
    assert_eq!(t.status, "FAILED_WITH_TERMINAL_ERROR");
    let reason = t.reason.unwrap();
    assert!(
        reason.starts_with("budget_exhausted") && reason.contains("budget `nightly`"),
        "{reason}"
    );
    assert_eq!(c.workflow(&wf).unwrap().tasks.len(), 1, "not retried");
    assert_eq!(run.terminal, 1);
    assert!(s.hf.requests_to("/generate").is_empty());
}
