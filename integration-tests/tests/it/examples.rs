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
    assert_eq!(w.task_types.len(), hfconnect::catalog::TaskKind::ALL.len());
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

/// Every document of every manifest in `config-examples/kubernetes/`.
fn manifests() -> Vec<(String, yaml_rust2::Yaml)> {
    let dir = repo_root().join("config-examples/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for d in docs {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            for key in ["apiVersion", "kind", "metadata"] {
                assert!(!d[key].is_badvalue(), "{name}: a document without `{key}`");
            }
            out.push((name, d));
        }
    }
    out
}

/// The manifests fit together (no cluster or schema download needed): each
/// Deployment's selector matches its pods, probes and scrape annotations
/// name the port the process listens on, every mounted ConfigMap and Secret
/// exists, the config's key and Redis URL files are mounted, the Redis URL
/// names the Redis Service, and the Services select pods that exist.
#[test]
fn kubernetes_manifests_fit_together() {
    use yaml_rust2::Yaml;
    let docs = manifests();
    let of_kind = |kind: &str| -> Vec<&(String, Yaml)> {
        docs.iter()
            .filter(|(_, d)| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let named = |kind: &str, name: &str| {
        of_kind(kind)
            .into_iter()
            .find(|(_, d)| d["metadata"]["name"].as_str() == Some(name))
            .map(|(_, d)| d.clone())
    };
    let config = configmap_config();
    let deployments = of_kind("Deployment");
    let mut roles = Vec::new();
    for (file, d) in &deployments {
        let spec = &d["spec"];
        let pod = &spec["template"];
        let labels = pod["metadata"]["labels"].as_hash().unwrap();
        for (k, v) in spec["selector"]["matchLabels"].as_hash().unwrap() {
            assert_eq!(labels.get(k), Some(v), "{file}: selector and pod labels");
        }
        let c = &pod["spec"]["containers"][0];
        let ports: Vec<(&str, i64)> = c["ports"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap(),
                            p["containerPort"].as_i64().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let port_of = |p: &Yaml| match p {
            Yaml::String(n) => ports.iter().find(|(name, _)| name == n).map(|(_, n)| *n),
            Yaml::Integer(n) => Some(*n),
            _ => None,
        };
        for probe in ["readinessProbe", "livenessProbe"] {
            let p = &c[probe];
            assert!(!p.is_badvalue(), "{file}: no {probe}");
            let port = if p["httpGet"].is_badvalue() {
                &p["tcpSocket"]["port"]
            } else {
                &p["httpGet"]["port"]
            };
            assert!(
                port_of(port).is_some(),
                "{file}: {probe} names no declared port"
            );
        }
        assert!(
            !c["resources"]["requests"]["memory"].is_badvalue(),
            "{file}: no resource requests"
        );
        let args: Vec<&str> = c["args"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mounts: Vec<(&str, &str)> = c["volumeMounts"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap(),
                            m["mountPath"].as_str().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let volumes = pod["spec"]["volumes"].as_vec().cloned().unwrap_or_default();
        for (name, _) in &mounts {
            let v = volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("{file}: mount `{name}` has no volume"));
            if let Some(cm) = v["configMap"]["name"].as_str() {
                assert!(
                    named("ConfigMap", cm).is_some(),
                    "{file}: no ConfigMap `{cm}`"
                );
            }
            if let Some(s) = v["secret"]["secretName"].as_str() {
                // secret.yaml's token is created from a file; the others are here.
                assert!(named("Secret", s).is_some(), "{file}: no Secret `{s}`");
                if let Some(items) = v["secret"]["items"].as_vec() {
                    let secret = named("Secret", s).unwrap();
                    for i in items {
                        let key = i["key"].as_str().unwrap();
                        assert!(
                            !secret["stringData"][key].is_badvalue(),
                            "{file}: Secret `{s}` has no `{key}`"
                        );
                    }
                }
            }
        }
        let Some(role @ ("serve" | "worker")) = args.first().copied() else {
            continue;
        };
        roles.push(role);
        // The config directory is the ConfigMap's mount, and every file the
        // config reads is under a mount.
        let at = args.iter().position(|a| *a == "--config").unwrap() + 1;
        assert!(
            mounts.iter().any(|(_, p)| *p == args[at]),
            "{file}: --config is not a mount"
        );
        for path in ["/etc/secret-volume/huggingfacetoken", "/etc/redis/url"] {
            assert!(config.contains(path), "the config no longer reads {path}");
            assert!(
                mounts
                    .iter()
                    .any(|(_, m)| path.starts_with(&format!("{m}/"))),
                "{file}: {path} is not mounted"
            );
        }
        let listen = if role == "serve" {
            "--listen"
        } else {
            "--metrics-listen"
        };
        let addr = args[args.iter().position(|a| *a == listen).unwrap() + 1];
        let port: i64 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            ports.iter().any(|(_, p)| *p == port),
            "{file}: {listen} {addr} is not a declared port"
        );
        let ann = &pod["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"), "{file}");
        assert_eq!(
            ann["prometheus.io/port"].as_str(),
            Some(port.to_string().as_str()),
            "{file}"
        );
        if role == "serve" {
            assert!(
                spec["replicas"].as_i64().unwrap() >= 2,
                "{file}: serve runs 2 replicas"
            );
            assert_eq!(
                c["readinessProbe"]["httpGet"]["path"].as_str(),
                Some("/readyz")
            );
            assert_eq!(
                c["livenessProbe"]["httpGet"]["path"].as_str(),
                Some("/healthz")
            );
        }
    }
    roles.sort();
    assert_eq!(roles, ["serve", "worker"]);
    // Services select pods of a Deployment and target a declared port.
    for (file, s) in of_kind("Service") {
        let sel = s["spec"]["selector"].as_hash().unwrap();
        assert!(
            deployments.iter().any(|(_, d)| {
                let labels = d["spec"]["template"]["metadata"]["labels"]
                    .as_hash()
                    .unwrap();
                sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            }),
            "{file}: Service `{}` selects no pods",
            s["metadata"]["name"].as_str().unwrap()
        );
    }
    // The Redis URL names the Redis Service and its port, with its password.
    let redis = named("Secret", "hfconnect-redis").unwrap();
    let url = redis["stringData"]["url"].as_str().unwrap();
    let password = redis["stringData"]["password"].as_str().unwrap();
    let svc = named("Service", "hfconnect-redis").unwrap();
    let port = svc["spec"]["ports"][0]["port"].as_i64().unwrap();
    assert!(
        url.starts_with(&format!("redis://:{password}@hfconnect-redis:{port}/")),
        "{url}"
    );
    assert!(config.contains("backend = \"redis\""));
}

/// One `curl` line of the README, as far as the test needs it.
struct Curl {
    path: String,
    body: serde_json::Value,
}

/// The `curl` commands (joined across `\` continuations) of the README's
/// code block under `heading`, and the `KEY=` it sets.
fn readme_curls(heading: &str) -> (String, Vec<Curl>) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find(heading).expect("the README has the section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let joined = block.replace("\\\n", " ");
    let key = joined
        .lines()
        .find_map(|l| l.strip_prefix("KEY="))
        .expect("the block sets KEY")
        .trim()
        .to_string();
    let curls = joined
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
        .map(|l| {
            assert!(l.contains("\"Authorization: Bearer $KEY\""), "{l}");
            let url = l
                .split_whitespace()
                .find(|w| w.starts_with("localhost:8080/"))
                .unwrap_or_else(|| panic!("no localhost:8080 URL in {l}"));
            let body = l
                .split("-d '")
                .nth(1)
                .and_then(|b| b.split('\'').next())
                .unwrap();
            Curl {
                path: url["localhost:8080".len()..].to_string(),
                body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{l}: {e}")),
            }
        })
        .collect();
    (key, curls)
}

/// The README's offline path, line by line: the fake, `serve` on
/// `config-examples/local.toml`, and each of its `curl` commands. The fake
/// and `serve` take free ports (the config's 8089 is rewritten to the
/// fake's), so the test runs beside a walkthrough that holds 8089 and 8080.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_governed_answer_works() {
    let fake = hfconnect_integration_tests::fake_hf::FakeHf::start("hf_fake_token")
        .await
        .unwrap();
    let (key, curls) = readme_curls("## A first governed answer, offline");
    assert_eq!(curls.len(), 5);
    let dir = crate::support::Dir::new();
    let local = std::fs::read_to_string(repo_root().join("config-examples/local.toml")).unwrap();
    assert!(
        local.contains("http://127.0.0.1:8089"),
        "the local example names the fake's port"
    );
    let config = dir.write(
        "local.toml",
        &local.replace("http://127.0.0.1:8089", &fake.url()),
    );
    // The files it names, beside it as in config-examples/.
    for t in std::fs::read_dir(repo_root().join("config-examples/templates")).unwrap() {
        let t = t.unwrap().path();
        let name = format!("templates/{}", t.file_name().unwrap().to_string_lossy());
        dir.write(&name, &std::fs::read_to_string(&t).unwrap());
    }
    let (_serve, base) = crate::support::serve_process(&config, &[]).await;
    let client = reqwest::Client::new();
    for c in curls {
        let r = client
            .post(format!("{base}{}", c.path))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/x-www-form-urlencoded") // what `curl -d` sends
            .body(c.body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if c.body["model"] == "restricted" {
            assert_eq!(status, 403, "{text}");
            assert!(text.contains("grant"), "{text}");
        } else if c.body["stream"] == true {
            assert_eq!(status, 200, "{text}");
            assert!(
                text.contains("event: chunk") && text.contains("event: output"),
                "{text}"
            );
        } else {
            assert_eq!(status, 200, "{} {}: {text}", c.path, c.body);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["result"].is_string(), "{v}");
            if c.body["model"] != "bart" {
                assert!(v["finishReason"].is_string(), "{v}");
            }
        }
    }

    // The OpenAI section: its curl lines, and the Python's key, model and call.
    let (key, curls) = readme_curls("## Any OpenAI client, governed");
    assert_eq!(curls.len(), 2);
    for c in curls {
        let r = client
            .post(format!("{base}{}", c.path))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(c.body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{} {}: {v}", c.path, c.body);
        assert!(
            v["choices"][0]["message"]["content"].is_string()
                || v["data"][1]["embedding"].is_array(),
            "{v}"
        );
    }
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let python = readme
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let quoted = |after: &str| {
        python
            .split(after)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string()
    };
    let (py_key, py_model) = (quoted("api_key=\""), quoted("model=\""));
    assert_eq!(quoted("base_url=\""), "http://localhost:8080/v1");
    let models: serde_json::Value = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(&py_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == py_model.as_str()),
        "{models}"
    );
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&py_key)
        .json(&serde_json::json!({"model": py_model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The local config's chat template renders, as its comment says.
#[test]
fn the_local_chat_template_renders() {
    let cfg = example("local.toml");
    let out = run(&[
        "template",
        "render",
        "--config",
        &cfg,
        "--integration",
        "local",
        "--model",
        "tgi",
        "--message",
        "system:Be brief",
        "--message",
        "user:Hi",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout,
        "<<SYS>>\nBe brief\n<</SYS>>\n\n[INST] Hi [/INST]"
    );
}
