//! The endpoint lifecycle under the policy, through the command line: an
//! allowed pause, resume (followed with `--wait` through the fake's state
//! machine) and scale change the endpoint; a denied one makes no upstream
//! call and exits with the denied code; a token without
//! `inference.endpoints.write` is a clear error; no token byte is shown.
//! A model's `deployment` block is created (`CREATE`), its drift planned
//! (`READ`) and applied (`UPDATE`); a model that names its endpoint and
//! gives no URL is called at the URL the management API gives.

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

/// The states a `--wait` reported (its `  1.2s  state` lines).
fn states(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|t| t.strip_suffix('s'))
                .is_some_and(|t| t.parse::<f64>().is_ok())
        })
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect()
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

    // The governed status: alice may READ it, bob may not.
    let out = endpoint(&config, &["status", "--as", "user:alice", "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["endpoint"].as_str(), v["status"]["state"].as_str()),
        (Some("tgi-ep"), Some("running")),
        "{v}"
    );
    let out = endpoint(&config, &["status", "--as", "user:bob"]);
    assert_eq!(out.code, 3, "{}", out.all());

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
        &[
            "resume",
            "--as",
            "user:alice",
            "--wait",
            "--timeout",
            "20",
            "--poll-ms",
            "100",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let states = states(&out.stderr);
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

/// Model `made` of `hf` names endpoint `made-ep`, gives no URL and carries a
/// `deployment` block; group `support` (alice) may READ, UPDATE and CREATE
/// it, `ops` (bob) may only READ it.
fn deploying(fake: &FakeHf, dir: &Dir) -> std::path::PathBuf {
    let model = r#"
[[integrations.models]]
name = "made"
api = "tgi"
tasks = ["text-generation"]
inference_endpoint = "made-ep"
defaults = { max_tokens = 3 }

[integrations.models.deployment]
repository = "org/made"
task = "text-generation"
image = "tgi"
accelerator = "gpu"
vendor = "aws"
region = "us-east-1"
instance_type = "nvidia-a10g"
instance_size = "x1"
min_replica = 0
max_replica = 2
scale_to_zero_timeout = 15
env = { MAX_INPUT_TOKENS = "4096" }
"#;
    let text = serve_config(&fake.url()).replacen(
        "\n[[integrations]]\nname = \"hf-off\"",
        &format!("{model}\n[[integrations]]\nname = \"hf-off\""),
        1,
    );
    assert!(text.contains("made-ep"));
    dir.write(
        "c.toml",
        &(text
            + "\n[[groups]]\nname = \"ops\"\nmembers = [\"bob\"]\n"
            + "\n[[grants]]\nsubject = \"group:support\"\ntarget = \"model:hf:made\"\naccess = [\"READ\", \"UPDATE\", \"CREATE\", \"EXECUTE\"]\n"
            + "\n[[grants]]\nsubject = \"group:ops\"\ntarget = \"model:hf:made\"\naccess = [\"READ\"]\n"),
    )
}

fn on_made(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["endpoint"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "hf",
        "--model",
        "made",
        "--poll-ms",
        "100",
    ]);
    // Every log line, down to debug, is searched for the token.
    let out = Run::new(&all)
        .unwrap()
        .env("HF_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        !out.all().contains(TOKEN),
        "the token showed: {}",
        out.all()
    );
    out
}

/// A text task on model `made` as alice, through the command line.
fn say_hi_on_made(config: &Path) -> Output {
    Run::new([
        "run",
        "text-complete",
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "hf",
        "--model",
        "made",
        "--prompt",
        "Say hi",
        "--as",
        "user:alice",
    ])
    .unwrap()
    .env("HF_TOKEN", TOKEN)
    .output()
    .unwrap()
}

fn writes(fake: &FakeHf, method: &str) -> Vec<Value> {
    fake.requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with("/v2/endpoint/"))
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_plan_and_apply_hold_the_endpoint_to_its_deployment_block() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.endpoint_start = Some(Duration::from_millis(600)));
    let dir = Dir::new();
    let config = deploying(&fake, &dir);

    // Nothing there yet: the plan says `apply` creates it, and changes nothing.
    let out = on_made(&config, &["plan", "--as", "user:bob"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("endpoint `made-ep` does not exist"),
        "{}",
        out.all()
    );
    assert!(writes(&fake, "POST").is_empty());

    // bob may only READ: create and apply are denied, nothing is sent.
    for op in ["create", "apply"] {
        let out = on_made(&config, &[op, "--as", "user:bob"]);
        assert_eq!(out.code, 3, "{op}: {}", out.all());
        assert!(out.stderr.contains("denied"), "{}", out.all());
    }
    assert!(writes(&fake, "POST").is_empty());
    assert!(fake.endpoint_state("made-ep").is_none());

    // alice creates it and waits through pending and initializing until it
    // runs and its health route answers.
    let out = on_made(
        &config,
        &["create", "--as", "user:alice", "--wait", "--timeout", "20"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let states = states(&out.stderr);
    assert_eq!(states.first(), Some(&"pending"), "{}", out.all());
    assert_eq!(states.last(), Some(&"running"), "{}", out.all());
    assert!(out.stderr.contains("and serving"), "{}", out.all());
    let created = writes(&fake, "POST");
    assert_eq!(created.len(), 1, "{created:?}");
    let body = &created[0];
    assert_eq!(body["name"], "made-ep");
    assert_eq!(body["model"]["repository"], "org/made");
    assert_eq!(body["model"]["image"], serde_json::json!({"tgi": {}}));
    assert_eq!(body["model"]["env"]["MAX_INPUT_TOKENS"], "4096");
    assert_eq!(body["compute"]["instanceType"], "nvidia-a10g");
    assert_eq!(
        body["compute"]["scaling"],
        serde_json::json!({"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15})
    );
    assert_eq!(body["provider"]["region"], "us-east-1");
    // The health route was asked at the URL the endpoint got.
    assert!(!fake.requests_to("/ep/made-ep/health").is_empty());

    // The model has no URL of its own: a task goes where the management API says.
    let run = say_hi_on_made(&config);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(fake.requests_to("/ep/made-ep/generate").len(), 1);

    // In step: nothing to do.
    let out = on_made(&config, &["plan", "--as", "user:bob", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["action"], "none", "{v}");

    // Someone changed it in the UI: the plan shows the drift, field by field.
    fake.change_endpoint("made-ep", |e| {
        e.max_replica = 5;
        e.spec["model"]["env"] = serde_json::json!({"MAX_INPUT_TOKENS": "4096", "DEBUG": "1"});
    });
    let out = on_made(&config, &["plan", "--as", "user:bob"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("`apply` updates it"), "{}", out.all());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("max_replica") && l.contains("5 -> 2")),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("env.DEBUG") && l.contains("1 -> (removed)")),
        "{}",
        out.all()
    );
    assert!(writes(&fake, "PUT").is_empty());

    // apply removes it with one partial update of just those sections.
    let out = on_made(&config, &["apply", "--as", "user:alice", "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let puts = writes(&fake, "PUT");
    assert_eq!(
        puts,
        [serde_json::json!({
            "compute": {"scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15}},
            "model": {"env": {"MAX_INPUT_TOKENS": "4096"}},
        })]
    );
    let out = on_made(&config, &["plan", "--as", "user:bob", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["action"], "none", "{v}");

    // A region cannot be updated: apply says so and sends nothing.
    fake.change_endpoint("made-ep", |e| {
        e.spec["provider"]["region"] = serde_json::json!("eu-west-1");
    });
    let out = on_made(&config, &["apply", "--as", "user:alice"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("`region`, which an update cannot change"),
        "{}",
        out.all()
    );
    assert_eq!(writes(&fake, "PUT").len(), 1);

    // Each operation is audited: who, which operation, which endpoint, the outcome.
    let audit = out
        .stderr
        .lines()
        .find(|l| l.contains("hfconnect::audit"))
        .unwrap_or_default();
    for part in [
        "caller=user:alice",
        "operation=\"apply\"",
        "endpoint=made-ep",
        "outcome=\"invalid_input\"",
    ] {
        assert!(audit.contains(part), "{part}: {audit} in {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_to_zero_endpoint_wakes_on_a_task() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.endpoint_start = Some(Duration::from_millis(400)));
    let dir = Dir::new();
    let config = deploying(&fake, &dir);
    let out = on_made(
        &config,
        &["create", "--as", "user:alice", "--wait", "--timeout", "20"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let out = on_made(&config, &["scale-to-zero", "--as", "user:alice"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        fake.endpoint_state("made-ep").as_deref(),
        Some("scaledToZero")
    );
    // The first request wakes it (503 while it starts); the task waits it out.
    let run = say_hi_on_made(&config);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(fake.endpoint_state("made-ep").as_deref(), Some("running"));
    assert!(fake.requests_to("/ep/made-ep/generate").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_warns_when_a_deployment_cannot_be_managed() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = deploying(&fake, &dir);
    let check = |extra: &[&str]| {
        let mut args = vec!["config", "check", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Run::new(&args)
            .unwrap()
            .env("HF_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(!out.all().contains(TOKEN));
        out
    };
    // The fake's token may call endpoints but not manage them.
    let out = check(&[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains(
            "model `made` has a `deployment` block, but the token of integration `hf` may not manage the Inference Endpoints of namespace `acme` (it lacks `inference.endpoints.write`)"
        ),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("c.toml:"), "located: {}", out.all());
    assert_eq!(check(&["--strict"]).code, 6);
    // `--offline` asks nobody.
    let asked = fake.requests_to("/api/whoami-v2").len();
    let out = check(&["--offline"]);
    assert!(!out.stderr.contains("`deployment` block"), "{}", out.all());
    assert_eq!(fake.requests_to("/api/whoami-v2").len(), asked);
    // With the scope, no warning.
    fake.behave(|b| {
        b.token_role = "fineGrained".into();
        b.token_permissions.push("inference.endpoints.write".into());
    });
    let out = check(&[]);
    assert!(!out.stderr.contains("`deployment` block"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_blocks_are_validated_with_located_errors() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = deploying(&fake, &dir);
    let good = std::fs::read_to_string(&config).unwrap();
    for (from, to, says) in [
        (
            "env = { MAX_INPUT_TOKENS = \"4096\" }",
            "env = { HF_TOKEN = \"whatever\" }",
            "`deployment.env` key `HF_TOKEN` of model `made` looks like a secret",
        ),
        (
            "max_replica = 2",
            "max_replica = 0",
            "`deployment.max_replica` must be at least 1",
        ),
        (
            "inference_endpoint = \"made-ep\"\n",
            "",
            "model `made` has a `deployment` block but no `inference_endpoint`",
        ),
        (
            "image = \"tgi\"",
            "image = \"tgi\"\nport = 8080",
            "`deployment.port` is only for a custom image",
        ),
        ("instance_size = \"x1\"\n", "", "instance_size"),
    ] {
        std::fs::write(&config, good.replacen(from, to, 1)).unwrap();
        let out = crate::support::check(&config);
        assert_eq!(out.code, 2, "{from} -> {to}: {}", out.all());
        assert!(out.stderr.contains(says), "{says}: {}", out.all());
        assert!(out.stderr.contains("c.toml:"), "located: {}", out.all());
        assert!(!out.all().contains("whatever"), "{}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_plans_and_applies_deployments() {
    use crate::support::{start_with, APP_KEY, PORTAL_KEY};
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.behave(|b| b.endpoint_start = Some(Duration::from_millis(200)));
    let dir = Dir::new();
    let config = deploying(&fake, &dir);
    let s = start_with(std::fs::read_to_string(config).unwrap(), |_| {}).await;
    let client = reqwest::Client::new();
    let post = |op: &str, key: &str, user: Option<&str>| {
        let mut r = client
            .post(format!("{}/v1/endpoints/hf/made/{op}", s.url))
            .bearer_auth(key);
        if let Some(u) = user {
            r = r.header("x-hfconnect-user", u);
        }
        r.send()
    };
    let r = post("plan", APP_KEY, None).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"], "create", "{v}");
    // bob may READ but not CREATE: 403 and no create sent.
    let r = post("create", PORTAL_KEY, Some("bob")).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(writes(&fake, "POST").is_empty());
    let r = post("apply", APP_KEY, None).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["action"].as_str(), v["status"]["state"].as_str()),
        (Some("create"), Some("pending")),
        "{v}"
    );
    assert_eq!(writes(&fake, "POST").len(), 1);
    // Created: a second create is the management API's conflict, not a panic.
    let r = post("create", APP_KEY, None).await.unwrap();
    assert_eq!(r.status().as_u16() / 100, 4);
    let text = r.text().await.unwrap();
    assert!(text.contains("already exists"), "{text}");
    assert!(!text.contains(TOKEN));
    // A model without a `deployment` block has nothing to create from.
    let r = client
        .post(format!("{}/v1/endpoints/hf/tgi/plan", s.url))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has no `deployment` block"),
        "{v}"
    );
    assert!(!v.to_string().contains(TOKEN));
}

/// The faults, driven over HTTP as from a shell against `fake-hf`: an
/// endpoint that never finishes starting ends `--wait` at `--timeout`, one
/// that fails ends it at once, a 5xx of the management API is an error that
/// says so, and a token without the scope is refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_end_on_failure_timeout_and_management_errors() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let config = deploying(&fake, &dir);
    let client = reqwest::Client::new();
    let admin = |path: &str, body: Value| {
        client
            .post(format!("{}/_fake/{path}", fake.url()))
            .json(&body)
            .send()
    };
    let r = admin(
        "behaviour",
        serde_json::json!({"endpoint_start_ms": 200, "stuck_endpoints": ["made-ep"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let out = on_made(
        &config,
        &["create", "--as", "user:alice", "--wait", "--timeout", "1"],
    );
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr.contains("is still `initializing` after 1 s"),
        "{}",
        out.all()
    );

    admin(
        "behaviour",
        serde_json::json!({"stuck_endpoints": [], "failing_endpoints": ["made-ep"]}),
    )
    .await
    .unwrap();
    let out = on_made(
        &config,
        &["resume", "--as", "user:alice", "--wait", "--timeout", "20"],
    );
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("is `failed`"), "{}", out.all());

    admin(
        "faults",
        serde_json::json!({"route": "endpoints", "fault": {"type": "status", "status": 502, "text": "Bad Gateway"}, "times": 5}),
    )
    .await
    .unwrap();
    let out = on_made(&config, &["plan", "--as", "user:bob"]);
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("502"), "{}", out.all());
    client
        .delete(format!("{}/_fake/faults", fake.url()))
        .send()
        .await
        .unwrap();

    admin("behaviour", serde_json::json!({"manage_forbidden": true}))
        .await
        .unwrap();
    let out = on_made(&config, &["scale-to-zero", "--as", "user:alice"]);
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(
        out.stderr.contains("inference.endpoints.write"),
        "{}",
        out.all()
    );
}
