//! The shipped examples are valid and mean what their comments say; a config
//! directory mixing formats merges into one catalog.

use hfconnect_integration_tests::repo_root;

use crate::support::{check, run, Dir};

fn example(rel: &str) -> String {
    repo_root()
        .join("config-examples")
        .join(rel)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn quickstart_and_multi_team_are_valid() {
    for rel in ["quickstart.toml", "multi-team.yaml"] {
        let out = check(std::path::Path::new(&example(rel)));
        assert_eq!(out.code, 0, "{rel}: {}", out.all());
        assert!(!out.stderr.contains("error:"), "{rel}: {}", out.stderr);
        assert!(out.stdout.contains("is valid"), "{rel}: {}", out.stdout);
    }
}

#[test]
fn the_example_worker_sections_mean_what_they_say() {
    use hfconnect::catalog::WorkerIdentity;
    use hfconnect::config::LoadOptions;
    let load = |rel: &str| {
        hfconnect::config::load(std::path::Path::new(&example(rel)), &LoadOptions::new())
            .unwrap()
            .catalog
    };
    let quick = load("quickstart.toml");
    let w = quick.worker().unwrap();
    assert_eq!(w.identity, WorkerIdentity::Fixed("billing-service".into()));
    assert_eq!(w.task_types.len(), 3);
    assert!(w.auth.is_none());
    let multi = load("multi-team.yaml");
    let w = multi.worker().unwrap();
    assert_eq!(w.identity, WorkerIdentity::Workflow);
    let types: Vec<&str> = w.task_types.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["LLM_CHAT_COMPLETE", "LLM_SUMMARIZE"]);
    assert_eq!(w.concurrency.get(), 16);
    assert_eq!(w.batch.get(), 4);
    assert_eq!(w.auth.as_ref().unwrap().key_id, "hfconnect-worker");
}

/// The config embedded in the Kubernetes ConfigMap (the `hfconnect.toml: |` block).
fn configmap_config() -> String {
    let text = std::fs::read_to_string(example("kubernetes/configmap.yaml")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("hfconnect.toml: |"))
        .skip(1);
    let mut out = String::new();
    for l in lines.by_ref() {
        if !l.is_empty() && !l.starts_with("    ") {
            break;
        }
        out.push_str(l.strip_prefix("    ").unwrap_or(l));
        out.push('\n');
    }
    assert!(
        out.contains("[[integrations]]"),
        "no config found in the ConfigMap"
    );
    out
}

#[test]
fn kubernetes_configmap_config_is_valid_and_reads_the_mounted_token() {
    let dir = Dir::new();
    // As mounted by Kubernetes: the file plus hidden bookkeeping entries.
    dir.write("etc-hfconnect/hfconnect.toml", &configmap_config());
    dir.write("etc-hfconnect/..data/hfconnect.toml", "not = [valid");
    let out = check(&dir.path().join("etc-hfconnect"));
    assert_eq!(out.code, 0, "{}", out.all());
    // Off-cluster the secret volume is absent: a warning naming the file, not an error.
    if !std::path::Path::new("/etc/secret-volume/huggingfacetoken").exists() {
        assert!(
            out.stderr
                .contains("token file `/etc/secret-volume/huggingfacetoken` does not exist"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn multi_team_grants_mean_what_the_comments_say() {
    let cfg = example("multi-team.yaml");
    let explain = |who: &str, integration: &str, model: &str| {
        run(&[
            "access",
            "explain",
            "--config",
            &cfg,
            "--as",
            who,
            "--integration",
            integration,
            "--model",
            model,
        ])
        .code
    };
    assert_eq!(
        explain("user:alice@acme.com", "hf-prod", "mistral-7b-instruct"),
        0
    );
    assert_eq!(
        explain("user:alice@acme.com", "hf-prod", "bart-large-cnn"),
        3
    );
    assert_eq!(
        explain("user:frank@acme.com", "hf-prod", "bart-large-cnn"),
        0
    );
    assert_eq!(
        explain("user:frank@acme.com", "hf-prod", "mistral-7b-instruct"),
        3
    );
    assert_eq!(
        explain("user:dana@acme.com", "hf-research", "llama-3-70b"),
        0
    );
    assert_eq!(
        explain("user:dana@acme.com", "hf-research", "qwen-experimental"),
        3,
        "inactive"
    );
    assert_eq!(
        explain("user:root@acme.com", "hf-research", "qwen-experimental"),
        3,
        "inactive even for admins"
    );
    assert_eq!(
        explain("user:root@acme.com", "hf-prod", "bart-large-cnn"),
        0
    );
    assert_eq!(
        explain("app:ticket-bot", "hf-prod", "mistral-7b-instruct"),
        0
    );
    assert_eq!(
        explain(
            "app:nightly-eval",
            "hf-serverless",
            "meta-llama/Llama-3.1-8B-Instruct"
        ),
        0
    );
}

#[test]
fn a_directory_of_mixed_formats_merges() {
    let dir = Dir::new();
    dir.write(
        "conf/10-integrations.toml",
        "[[integrations]]\nname = \"hf\"\napi_key = { env = \"HF_TOKEN\" }\n\n[[integrations.models]]\nname = \"m\"\nendpoint = \"https://e.example\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\n",
    );
    dir.write(
        "conf/20-teams.yaml",
        "groups:\n  - name: team\n    members: [u1]\n",
    );
    dir.write(
        "conf/30-grants.json",
        "{\"grants\": [{\"subject\": \"group:team\", \"target\": \"model:hf:m\", \"access\": [\"EXECUTE\"]}]}",
    );
    dir.write("conf/README.md", "not a config file: ignored");
    dir.write("conf/.hidden.toml", "broken = [");
    let conf = dir.path().join("conf");
    let out = run(&[
        "config",
        "check",
        "--json",
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    assert_eq!(v["summary"]["grants"], 1);
    let out = run(&[
        "access",
        "explain",
        "--config",
        conf.to_str().unwrap(),
        "--as",
        "user:u1",
        "--integration",
        "hf",
        "--model",
        "m",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());

    // HFCONNECT_CONFIG stands in for --config.
    let out = hfconnect_integration_tests::Run::new(["config", "check"])
        .unwrap()
        .env("HFCONNECT_CONFIG", &conf)
        .output()
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
}
