//! `hfconnect run` through the binary: output, streaming, JSON, exit codes;
//! and the audit event of a task (no prompt, no output, no key).

use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::Task;
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use hfconnect_integration_tests::{Output, Run};

use crate::support::assert_exit;
use crate::support::global_logs;
use crate::support::Dir;
use crate::support::TOKEN;
use crate::support::{config, env};
use crate::support::{text_complete_args, words};

async fn hfconnect(path: &std::path::Path, args: &[&str]) -> Output {
    let mut all: Vec<String> = vec![
        "run".into(),
        "--config".into(),
        path.to_str().unwrap().into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    with_token(all).await
}

/// The binary with `args` and the fake's token, off the async threads.
async fn with_token(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Run::new(&args)
            .unwrap()
            .env("HF_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `hfconnect run --as WHO text-complete` on model `tgi` of `hf` with `prompt`, then `extra`.
async fn complete(path: &std::path::Path, who: &str, prompt: &str, extra: &[&str]) -> Output {
    with_token(text_complete_args(path, who, prompt, extra)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_results_and_exits_with_the_right_code() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));

    let out = complete(&path, "user:alice", "Say hi", &[]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, "Hello from the \n");
    // `--config`, `--as` and `--group` may also follow the task's name.
    let after = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            Run::new([
                "run",
                "text-complete",
                "--integration",
                "hf",
                "--model",
                "tgi",
                "--prompt",
                "Say hi",
                "--as",
                "user:alice",
                "--config",
                path.to_str().unwrap(),
            ])
            .unwrap()
            .env("HF_TOKEN", TOKEN)
            .output()
            .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (after.code, after.stdout.as_str()),
        (0, "Hello from the \n"),
        "{}",
        after.all()
    );
    let no_subject = hfconnect(
        &path,
        &words("text-complete --integration hf --model tgi --prompt x"),
    )
    .await;
    assert_exit(&no_subject, 2, &["needs `--as SUBJECT`"]);
    assert!(
        out.stderr
            .contains("finish: LENGTH, 5 tokens (2 prompt, 3 completion)"),
        "{}",
        out.stderr
    );

    let out = complete(&path, "user:alice", "x", &["--max-tokens", "50", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["result"], "Hello from the fake endpoint");
    assert_eq!(v["finishReason"], "STOP");

    let out = hfconnect(&path, &words("--as user:alice text-complete --integration hf --model tgi --prompt-name ticket --var id=4 --var body=broken --max-tokens 50 --stream"))
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, "Hello from the fake endpoint\n");
    assert_eq!(
        fake.requests_to("/generate_stream")[0].json()["inputs"],
        "Summarize ticket 4: broken"
    );

    let out = hfconnect(&path, &words("--as user:bob chat-complete --integration hf --model org/chat-model --message user:hi --instructions sys --var lang=Dutch"))
    .await;
    assert_eq!(out.code, 0, "{}", out.all());

    let out = hfconnect(
        &path,
        &words("--as user:alice summarize --integration hf --model bart --text long"),
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from the fake endpoint\n"),
        "{}",
        out.all()
    );

    // Denied and inactive: 3. Bad input: 2. Provider failure: 5.
    let cases: &[(&str, i32, &str)] = &[
        (
            "--as user:bob text-complete --integration hf --model tgi --prompt x",
            3,
            "no grant gives `EXECUTE` on `model:hf:tgi`",
        ),
        ("--as user:alice text-complete --integration hf --model off --prompt x", 3, "is inactive"),
        ("--as user:alice text-complete --integration hf --model tgi --prompt-name ticket", 2, "missing prompt variables: `body`, `id`"),
        ("--as user:alice text-complete --integration nope --model tgi --prompt x", 2, "unknown integration `nope`"),
        ("--as app:ghost text-complete --integration hf --model tgi --prompt x", 3, "unknown application `ghost`"),
        ("--as user:alice chat-complete --integration hf --model org/chat-model --message robot:hi", 2, "unknown role `robot`"),
    ];
    for (args, code, needle) in cases {
        let out = hfconnect(&path, &words(args)).await;
        assert_eq!(out.code, *code, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(needle),
            "{args:?}: want `{needle}` in {}",
            out.stderr
        );
    }
    fake.push_n(
        Route::Generate,
        Fault::json(500, serde_json::json!({"error": "boom"})),
        10,
    );
    let out = complete(&path, "user:alice", "x", &[]).await;
    assert_exit(&out, 5, &["upstream said: boom"]);
    assert!(!out.all().contains(TOKEN));
}

#[tokio::test]
async fn one_audit_event_per_task_without_prompt_output_or_key() {
    let logs = global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url()).replacen(
        "members = [\"alice\"]",
        "members = [\"alice\", \"auditor-q7\"]",
        1,
    );
    let path = dir.write("c.toml", &cfg);
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let auditor = c
        .principal(&Subject::User("auditor-q7".into()), Some("support"))
        .unwrap();
    let secret_prompt = "PROMPT-MARKER-31337 please";
    let task = Task::TextComplete(hfconnect::task::TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some(secret_prompt.into()),
        ..Default::default()
    });
    c.run(TaskRequest::new(&auditor, &task))
        .await
        .output()
        .unwrap();
    let denied = Task::TextComplete(hfconnect::task::TextCompleteInput {
        model: "org/chat-model".into(),
        ..match &task {
            Task::TextComplete(t) => t.clone(),
            _ => unreachable!(),
        }
    });
    c.run(TaskRequest::new(&auditor, &denied))
        .await
        .output()
        .unwrap_err();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("hfconnect::audit") && l.contains("user:auditor-q7"))
        .collect();
    assert_eq!(events.len(), 2, "one event per task:\n{text}");
    let ok = events[0];
    for needle in [
        "task_id=task-",
        "group=support",
        "integration=hf",
        "model=tgi",
        "task_kind=text-generation",
        "decision=\"allowed\"",
        "outcome=\"ok\"",
        "prompt_tokens=2",
        "completion_tokens=3",
        "latency_ms=",
    ] {
        assert!(ok.contains(needle), "want `{needle}` in {ok}");
    }
    // The chat model serves no text-generation: allowed by RBAC, refused as invalid input.
    assert!(
        events[1].contains("decision=\"allowed\"")
            && events[1].contains("outcome=\"invalid_input\""),
        "{}",
        events[1]
    );
    assert!(
        events[1]
            .contains("reason=\"allowed: `group:support` may READ, EXECUTE on `integration:hf`"),
        "{}",
        events[1]
    );
    assert!(
        !text.contains("PROMPT-MARKER-31337"),
        "the prompt leaked into the logs"
    );
    // Other tests log with include_text on, so look at this task's events only.
    assert!(
        events.iter().all(|e| !e.contains("Hello from the")
            && !e.contains("input=")
            && !e.contains("output=")),
        "the output leaked into the audit events: {events:#?}"
    );
    assert!(!text.contains(TOKEN), "the key leaked into the logs");
}

#[tokio::test]
async fn include_text_puts_input_and_output_in_the_audit_event_but_never_the_key() {
    let logs = global_logs();
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = config(&fake.url()).replacen(
        "members = [\"alice\"]",
        "members = [\"alice\", \"auditor-text\"]",
        1,
    ) + "\n[audit]\ninclude_text = true\n";
    let path = dir.write("c.toml", &cfg);
    let c = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let who = c
        .principal(&Subject::User("auditor-text".into()), None)
        .unwrap();
    let task = Task::TextComplete(hfconnect::task::TextCompleteInput {
        llm_provider: "hf".into(),
        model: "tgi".into(),
        prompt: Some("INCLUDED-PROMPT-9".into()),
        ..Default::default()
    });
    c.run(TaskRequest::new(&who, &task)).await.output().unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let event = text
        .lines()
        .find(|l| l.contains("hfconnect::audit") && l.contains("user:auditor-text"))
        .expect(&text);
    assert!(
        event.contains("input=INCLUDED-PROMPT-9") && event.contains("output=\"Hello from the \""),
        "{event}"
    );
    assert!(!text.contains(TOKEN));

    // `[audit]` twice across files is an error naming both.
    dir.write("conf/a.toml", "[audit]\ninclude_text = true\n");
    dir.write("conf/b.toml", "[audit]\ninclude_text = false\n");
    let out = crate::support::check(&dir.path().join("conf"));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("`[audit]` is defined twice") && out.stderr.contains("a.toml:1:1"),
        "{}",
        out.stderr
    );
}
