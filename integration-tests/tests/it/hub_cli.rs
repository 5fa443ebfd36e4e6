//! `hfconnect token check` and `hfconnect endpoint status` through the binary,
//! against the fake Hugging Face server.

use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use hfconnect_integration_tests::{Output, Run};
use serde_json::json;

use crate::support::Dir;
use crate::support::TOKEN;
use crate::support::{assert_exit, assert_stdout};

fn config(fake: &FakeHf, namespace: &str) -> String {
    let url = fake.url();
    format!(
        r#"
[[integrations]]
name = "hf-test"
namespace = "{namespace}"
api_key = {{ env = "HF_TEST_TOKEN" }}
hub_url = "{url}"
management_url = "{url}/v2"
timeouts = {{ connect = 2, request = 2, first_token = 2 }}
retry = {{ max_attempts = 1 }}
cold_start = {{ wait = 0 }}

[[integrations.models]]
name = "mistral"
endpoint = "{url}/"
api = "tgi"
tasks = ["text-generation"]

[[integrations.models]]
name = "bart"
endpoint = "{url}/"
api = "pipeline"
tasks = ["summarization"]
"#
    )
}

/// `hfconnect` with the words of `line` and `--config` the dir's `c.toml`,
/// the integration's key set to `token` when there is one.
async fn hfconnect(dir: &Dir, token: Option<&str>, line: &str) -> Output {
    let path = dir.path().join("c.toml");
    let mut all: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    all.extend(["--config".to_string(), path.to_str().unwrap().to_string()]);
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut run = Run::new(&all).unwrap();
        if let Some(t) = token {
            run = run.env("HF_TEST_TOKEN", t);
        }
        run.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_check_reports_owner_role_and_namespace() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    dir.write("c.toml", &config(&fake, "acme"));
    let out = hfconnect(&dir, Some(TOKEN), "token check --integration hf-test").await;
    assert_stdout(
        &out,
        0,
        &[
            "token of integration `hf-test` is valid",
            "owner: `alice` (user)",
            "organizations: `acme`",
            "role `read`",
            "namespace `acme`: owned by",
        ],
    );
    assert!(!out.all().contains(TOKEN));
    assert_eq!(fake.requests_to("/api/whoami-v2").len(), 1);

    let out = hfconnect(
        &dir,
        Some(TOKEN),
        "token check --integration hf-test --json",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["owner"]["name"].clone(), v["namespace_ok"].clone()),
        (json!("alice"), json!(true))
    );

    fake.behave(|b| b.token_role = "write".into());
    dir.write("c.toml", &config(&fake, "someone-else"));
    let out = hfconnect(&dir, Some(TOKEN), "token check --integration hf-test").await;
    // A token that cannot use the namespace's endpoints fails the check (4).
    assert_exit(
        &out,
        4,
        &[
            "its owner `alice` is neither that namespace nor a member of it",
            "warning: the token has the `write` role; running tasks needs only `read`",
            "neither namespace `someone-else` nor one of its organizations",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_check_failures_have_their_exit_codes() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    dir.write("c.toml", &config(&fake, "acme"));
    let out = hfconnect(
        &dir,
        Some("hf_wrong_key_value"),
        "token check --integration hf-test",
    )
    .await;
    assert_exit(
        &out,
        4,
        &[
            "the token for integration `hf-test` was rejected (401)",
            "Invalid credentials in Authorization header",
        ],
    );
    assert!(!out.all().contains("hf_wrong_key_value"));

    let out = hfconnect(&dir, None, "token check --integration hf-test").await;
    assert_exit(&out, 4, &["integration `hf-test` has no usable API key; environment variable `HF_TEST_TOKEN` is not set"]);

    let out = hfconnect(&dir, Some(TOKEN), "token check --integration hf-tset").await;
    assert_exit(
        &out,
        2,
        &["unknown integration `hf-tset` (did you mean `hf-test`?)"],
    );

    fake.push(Route::WhoAmI, Fault::text(500, "Internal Server Error"));
    let out = hfconnect(&dir, Some(TOKEN), "token check --integration hf-test").await;
    assert_eq!(out.code, 5, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_status_shows_health_info_and_management_state() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    fake.add_endpoint("mistral-ep", "running", &format!("{}/", fake.url()));
    let dir = Dir::new();
    dir.write("c.toml", &config(&fake, "acme"));
    let out = hfconnect(&dir, Some(TOKEN), "endpoint status --integration hf-test").await;
    assert_stdout(
        &out,
        0,
        &[
        "model `mistral` (api `tgi`",
        "probe: healthy, serves `fake/model`, max input tokens 4096, max total tokens 8192, max batch size 4, version fake-2.4.0",
        "model `bart` (api `pipeline`",
        "management: endpoint `mistral-ep` is `running`",
        ],
    );

    let out = hfconnect(
        &dir,
        Some(TOKEN),
        "endpoint status --integration hf-test --model mistral --json",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    assert_eq!(v["models"][0]["info"]["max_input_tokens"], 4096);
    assert_eq!(v["models"][0]["management"]["state"], "running");

    fake.push(
        Route::Health,
        Fault::json(
            503,
            json!({"error": "unhealthy", "error_type": "healthcheck"}),
        ),
    );
    let out = hfconnect(
        &dir,
        Some(TOKEN),
        "endpoint status --integration hf-test --model mistral",
    )
    .await;
    assert_exit(&out, 5, &["probe: FAILED (endpoint_unavailable)"]);

    let out = hfconnect(
        &dir,
        Some(TOKEN),
        "endpoint status --integration hf-test --model mistrl",
    )
    .await;
    assert_exit(
        &out,
        2,
        &["unknown model `mistrl` of integration `hf-test` (did you mean `mistral`?)"],
    );
}
