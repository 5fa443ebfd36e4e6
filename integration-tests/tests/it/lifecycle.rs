//! The endpoint lifecycle under the policy, through the command line: an
//! allowed pause, resume (followed with `--wait` through the fake's state
//! machine) and scale change the endpoint; a denied one makes no upstream
//! call and exits with the denied code; a token without
//! `inference.endpoints.write` is a clear error; no token byte is shown.

use std::path::Path;
use std::time::Duration;

use hfconnect_integration_tests::fake_hf::FakeHf;
use serde_json::Value;

use crate::support::{serve_config, Dir, Output, Run, TOKEN};

/// The fake's endpoint `tgi-ep` serves model `hf:tgi`; group `support`
/// (alice) may READ and UPDATE it, nobody may DELETE it.
fn setup(fake: &FakeHf, dir: &Dir) -> std::path::PathBuf {
    fake.add_endpoint("tgi-ep", "running", &fake.url());
    dir.write(
        "c.toml",
        &(serve_config(&fake.url())
            + "\n[[grants]]\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\naccess = [\"READ\", \"UPDATE\"]\n"),
    )
}

fn endpoint(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["endpoint"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "hf",
        "--model",
        "tgi",
    ]);
    let out = Run::new(&all)
        .unwrap()
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        !out.all().contains(TOKEN),
        "the token showed: {}",
        out.all()
    );
    out
}

fn operations(fake: &FakeHf, op: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/endpoint/") && r.path.ends_with(op))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_scale_are_governed_and_followed_to_running() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.endpoint_start = Some(Duration::from_millis(600)));
    let dir = Dir::new();
    let config = setup(&fake, &dir);

    // bob may not: exit 3, the reason, and nothing sent to the management API.
    let out = endpoint(&config, &["pause", "--as", "user:bob"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("`UPDATE`"), "{}", out.all());
    assert_eq!(operations(&fake, "/pause"), 0);
    assert_eq!(fake.endpoint_state("tgi-ep").as_deref(), Some("running"));

    let out = endpoint(&config, &["pause", "--as", "user:alice"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("endpoint `tgi-ep` is paused"),
        "{}",
        out.all()
    );
    assert_eq!(fake.endpoint_state("tgi-ep").as_deref(), Some("paused"));

    let out = endpoint(
        &config,
        &["resume", "--as", "user:alice", "--wait", "--timeout", "20"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let states: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(states, ["initializing", "running"], "{}", out.all());

    let out = endpoint(
        &config,
        &[
            "scale",
            "--as",
            "user:alice",
            "--min",
            "0",
            "--max",
            "3",
            "--scale-to-zero-after",
            "15",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            v["status"]["min_replica"].as_u64(),
            v["status"]["max_replica"].as_u64(),
            v["status"]["scale_to_zero_timeout"].as_u64(),
            v["status"]["state"].as_str()
        ),
        (Some(0), Some(3), Some(15), Some("updating")),
        "{v}"
    );
    let bad = endpoint(
        &config,
        &["scale", "--as", "user:alice", "--min", "4", "--max", "3"],
    );
    assert_eq!(bad.code, 2, "{}", bad.all());

    // No grant gives DELETE: denied, and the endpoint is still there.
    let out = endpoint(&config, &["delete", "--as", "user:alice"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(fake.endpoint_state("tgi-ep").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_manage_endpoints_is_a_clear_error() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.manage_forbidden = true);
    let dir = Dir::new();
    let config = setup(&fake, &dir);
    let out = endpoint(&config, &["pause", "--as", "user:alice"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("inference.endpoints.write"),
        "{}",
        out.all()
    );
    assert_eq!(fake.endpoint_state("tgi-ep").as_deref(), Some("running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_governs_the_endpoint_routes() {
    use crate::support::{start_with, APP_KEY, PORTAL_KEY};
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = setup(&fake, &dir);
    let s = start_with(std::fs::read_to_string(config).unwrap(), |_| {}).await;
    let client = reqwest::Client::new();
    let url = |rest: &str| format!("{}/v1/endpoints/hf/tgi{rest}", s.url);

    let r = client
        .get(url(""))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["endpoint"].as_str(), v["status"]["state"].as_str()),
        (Some("tgi-ep"), Some("running")),
        "{v}"
    );

    // bob, through the portal, may not pause it: 403, nothing sent upstream.
    let r = client
        .post(url("/pause"))
        .bearer_auth(PORTAL_KEY)
        .header("x-hfconnect-user", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(operations(&fake, "/pause"), 0);

    let r = client
        .post(url("/pause"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(fake.endpoint_state("tgi-ep").as_deref(), Some("paused"));

    let r = client
        .post(url("/scale"))
        .bearer_auth(APP_KEY)
        .json(&serde_json::json!({"min": 0, "max": 2, "scale_to_zero_after": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"]["max_replica"], 2, "{v}");
    for (body, needle) in [
        (serde_json::json!({"min": 3, "max": 2}), "more than `max`"),
        (serde_json::json!({"max": 2}), "`min` is required"),
        (
            serde_json::json!({"min": 0, "max": 1, "replicas": 4}),
            "unknown field `replicas`",
        ),
    ] {
        let r = client
            .post(url("/scale"))
            .bearer_auth(APP_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    let r = client
        .post(url("/reboot"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let r = client
        .post(url("/delete"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "no grant gives DELETE");
    let m = crate::support::scrape(&s.url).await;
    assert!(
        crate::support::metric(&m, "hfconnect_endpoint_operations_total{integration=\"hf\",model=\"tgi\",operation=\"pause\",outcome=\"denied\"}") == 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_may_name_its_endpoint() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = setup(&fake, &dir);
    // `tgi` names `named-ep` (served elsewhere): its URL is not matched.
    fake.add_endpoint("named-ep", "running", "https://elsewhere.invalid");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "name = \"tgi\"\n",
        "name = \"tgi\"\ninference_endpoint = \"named-ep\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let out = endpoint(&config, &["pause", "--as", "user:alice"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(fake.endpoint_state("named-ep").as_deref(), Some("paused"));
    assert_eq!(fake.endpoint_state("tgi-ep").as_deref(), Some("running"));
    // A name that cannot be one is a config error, located.
    let bad = std::fs::read_to_string(&config).unwrap().replace(
        "inference_endpoint = \"named-ep\"",
        "inference_endpoint = \"Named_EP\"",
    );
    std::fs::write(&config, bad).unwrap();
    let out = crate::support::check(&config);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("`inference_endpoint` `Named_EP` is not an Inference Endpoint name"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_check_says_whether_the_token_may_manage_endpoints() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = setup(&fake, &dir);
    let check = || {
        let out = Run::new([
            "token",
            "check",
            "--config",
            config.to_str().unwrap(),
            "--integration",
            "hf",
        ])
        .unwrap()
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
        assert!(!out.all().contains(TOKEN));
        out
    };
    let out = check();
    assert!(
        out.stdout.contains("endpoint management: NOT allowed"),
        "{}",
        out.all()
    );
    fake.behave(|b| {
        b.token_role = "fineGrained".into();
        b.token_permissions.push("inference.endpoints.write".into());
    });
    let out = check();
    assert!(
        out.stdout.contains("endpoint management: allowed"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_resumes_the_endpoint_runs_its_batch_and_pauses_it() {
    use crate::support::working::setup_on;
    let s = setup_on(|url| {
        serve_config(url)
            + "\n[[grants]]\nsubject = \"group:support\"\ntarget = \"model:hf:tgi\"\naccess = [\"READ\", \"UPDATE\"]\n"
            + "\n[worker]\napp = \"batch\"\npoll_timeout = 0.2\nconcurrency = 4\ntask_types = { summarize = \"LLM_SUMMARIZE\", endpoint_resume = \"HF_ENDPOINT_RESUME\", endpoint_pause = \"HF_ENDPOINT_PAUSE\", endpoint_scale = \"HF_ENDPOINT_SCALE\" }\n"
    })
    .await;
    s.hf.add_endpoint("tgi-ep", "paused", &s.hf.url());
    s.hf.behave(|b| b.endpoint_start = Some(Duration::from_millis(1500)));
    let root = hfconnect_integration_tests::repo_root().join("config-examples/conductor");
    let client = reqwest::Client::new();
    let api = s.conductor.url();
    for (route, file) in [
        ("metadata/taskdefs", "taskdefs.json"),
        ("metadata/workflow", "batch-workflow.json"),
    ] {
        let r = client
            .post(format!("{api}/{route}"))
            .header("content-type", "application/json")
            .body(std::fs::read_to_string(root.join(file)).unwrap())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{route}: {}", r.status());
    }
    let wf = client
        .post(format!("{api}/workflow/hfconnect_resume_batch_pause"))
        .header("content-type", "application/json")
        .body(r#"{"llmProvider": "hf", "model": "tgi", "text": "The printer prints every page twice."}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    s.run_all().await;
    let w = s.conductor.workflow(wf.trim()).unwrap();
    assert_eq!(w.status, "COMPLETED", "{w:?}");
    assert_eq!(s.hf.endpoint_state("tgi-ep").as_deref(), Some("paused"));
    // The resume waited: at least one IN_PROGRESS before it completed, and
    // the summary ran only once the endpoint ran.
    let statuses: Vec<String> = s
        .conductor
        .reports()
        .iter()
        .map(|r| r.status.clone())
        .collect();
    assert!(
        statuses.iter().any(|st| st == "IN_PROGRESS"),
        "{statuses:?}"
    );
    assert_eq!(
        operations(&s.hf, "/resume"),
        1,
        "a starting endpoint is not resumed again"
    );
}
