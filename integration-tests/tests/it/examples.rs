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
    use hfconnect::config::LoadOptions;
    use hfconnect::testing::runtime::WorkerIdentity;
    let load = |rel: &str| {
        let loaded =
            hfconnect::config::load(std::path::Path::new(&example(rel)), &LoadOptions::new())
                .unwrap();
        hfconnect::testing::runtime_of(&loaded).clone()
    };
    let quick = load("quickstart.toml");
    let w = quick.worker().unwrap();
    assert_eq!(w.identity, WorkerIdentity::Fixed("billing-service".into()));
    assert_eq!(w.task_types.len(), hfconnect::task::TaskKind::ALL.len());
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

/// With the files the README's Secrets provide (the token, the Redis URL,
/// `applications.toml` made as it says), the config the pods mount passes
/// the strict check the Job runs: no warning at all.
#[test]
fn the_kubernetes_config_passes_strictly_with_the_secrets_the_readme_makes() {
    let dir = Dir::new();
    let root = dir.path().to_str().unwrap().to_string();
    let config = configmap_config()
        .replace("/etc/secret-volume/", &format!("{root}/secret-volume/"))
        .replace("/etc/redis/", &format!("{root}/redis/"));
    dir.write("etc-hfconnect/hfconnect.toml", &config);
    dir.write(
        "secret-volume/huggingfacetoken",
        "hf_kubernetesExampleToken000",
    );
    dir.write("redis/url", "redis://:pw@hfconnect-redis:6379/0");
    // What README.md step 4 writes, with the hash `keys new` prints.
    let readme = std::fs::read_to_string(example("kubernetes/README.md")).unwrap();
    let apps = readme
        .split("cat > applications.toml <<'TOML'\n")
        .nth(1)
        .and_then(|r| r.split("TOML\n").next())
        .expect("README.md writes applications.toml")
        .lines()
        .map(|l| l.trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let hash = hfconnect::testing::server::key_hash("hfc_kubernetes_example_key");
    dir.write(
        "etc-hfconnect/applications.toml",
        &apps.replace("sha256:…", &hash),
    );
    let out = crate::support::check_strict(&dir.path().join("etc-hfconnect"));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.stderr.contains("warning:"), "{}", out.all());
    // An application written without its key hash: nobody could call `serve`
    // as it, and the strict check says so.
    dir.write(
        "etc-hfconnect/applications.toml",
        &apps.replace("keys = [\"sha256:…\"]", "keys = []"),
    );
    let out = crate::support::check_strict(&dir.path().join("etc-hfconnect"));
    assert_eq!(out.code, 6, "{}", out.all());
    assert!(
        out.stderr.contains("application `engine` has no `keys`"),
        "{}",
        out.stderr
    );
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

/// The Secrets config-examples/kubernetes/README.md makes (`kubectl create
/// secret generic NAME --from-file=KEY=… --from-literal=KEY=…`), and their keys.
fn readme_secrets() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(example("kubernetes/README.md")).unwrap();
    let joined = readme.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kubectl create secret generic "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap().to_string();
            let keys = words
                .filter_map(|w| {
                    let v = w
                        .strip_prefix("--from-file=")
                        .or_else(|| w.strip_prefix("--from-literal="))?;
                    // `KEY=…`, or a file whose name is the key.
                    Some(match v.split_once('=') {
                        Some((k, _)) => k.to_string(),
                        None => v.rsplit('/').next().unwrap().to_string(),
                    })
                })
                .collect();
            (name, keys)
        })
        .collect()
}

/// Every document of every manifest in `config-examples/kubernetes/`.
fn manifests() -> Vec<(String, yaml_rust2::Yaml)> {
    let dir = repo_root().join("config-examples/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
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
    let secrets = readme_secrets();
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
            // A volume, or the sources of a projected one.
            let mut sources = vec![v.clone()];
            sources.extend(
                v["projected"]["sources"]
                    .as_vec()
                    .cloned()
                    .unwrap_or_default(),
            );
            for src in &sources {
                if let Some(cm) = src["configMap"]["name"].as_str() {
                    assert!(
                        named("ConfigMap", cm).is_some(),
                        "{file}: no ConfigMap `{cm}`"
                    );
                }
                let secret = src["secret"]["secretName"]
                    .as_str()
                    .or(src["secret"]["name"].as_str());
                if let Some(s) = secret {
                    // No Secret is shipped: README.md makes each one the pods mount.
                    let keys = secrets
                        .iter()
                        .find(|(n, _)| n == s)
                        .map(|(_, k)| k)
                        .unwrap_or_else(|| {
                            panic!("{file}: Secret `{s}` is neither shipped nor made by README.md")
                        });
                    for i in src["secret"]["items"].as_vec().into_iter().flatten() {
                        let key = i["key"].as_str().unwrap();
                        assert!(
                            keys.iter().any(|k| k == key),
                            "{file}: README.md's `{s}` has no `{key}`"
                        );
                    }
                }
            }
        }
        // Hardened pods: non-root, RuntimeDefault seccomp, read-only root, no capabilities.
        let psec = &pod["spec"]["securityContext"];
        assert_eq!(psec["runAsNonRoot"].as_bool(), Some(true), "{file}");
        assert_eq!(
            psec["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{file}"
        );
        let csec = &c["securityContext"];
        assert_eq!(
            csec["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{file}"
        );
        assert_eq!(
            csec["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{file}"
        );
        assert_eq!(
            csec["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{file}"
        );
        let image = c["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{file}: image `{image}` is not pinned"
        );
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
    // The Redis URL README.md writes names the Redis Service and its port.
    let redis = secrets
        .iter()
        .find(|(n, _)| n == "hfconnect-redis")
        .unwrap();
    assert!(redis.1.iter().any(|k| k == "password") && redis.1.iter().any(|k| k == "url"));
    let readme = std::fs::read_to_string(example("kubernetes/README.md")).unwrap();
    let url = readme
        .split("--from-literal=url=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let svc = named("Service", "hfconnect-redis").unwrap();
    let port = svc["spec"]["ports"][0]["port"].as_i64().unwrap();
    assert!(
        url.starts_with("redis://:") && url.contains(&format!("@hfconnect-redis:{port}/")),
        "{url}"
    );
    // serve: a disruption budget and a spread over nodes.
    let serve = named("Deployment", "hfconnect-serve").unwrap();
    let pdb =
        named("PodDisruptionBudget", "hfconnect-serve").expect("a PodDisruptionBudget for serve");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        serve["spec"]["selector"]["matchLabels"]
    );
    let spread = &serve["spec"]["template"]["spec"]["topologySpreadConstraints"];
    assert!(
        spread.as_vec().is_some_and(|v| !v.is_empty()),
        "serve is spread"
    );
    // Only hfconnect's pods reach Redis: the policy selects Redis, and every
    // hfconnect pod (serve, worker, the Job) carries the label it admits.
    let np = named("NetworkPolicy", "hfconnect-redis").expect("a NetworkPolicy in front of Redis");
    let redis_pods =
        &named("Deployment", "hfconnect-redis").unwrap()["spec"]["template"]["metadata"]["labels"];
    for (k, v) in np["spec"]["podSelector"]["matchLabels"].as_hash().unwrap() {
        assert_eq!(redis_pods.as_hash().unwrap().get(k), Some(v));
    }
    let admitted = &np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    let (ak, av) = admitted.as_hash().unwrap().iter().next().unwrap();
    for (file, d) in docs.iter().filter(|(f, _)| f != "redis.yaml") {
        if let Some(labels) = d["spec"]["template"]["metadata"]["labels"].as_hash() {
            assert_eq!(
                labels.get(ak),
                Some(av),
                "{file}: its pods cannot reach Redis"
            );
        }
    }
    // The config check Job is strict and runs once.
    let job = named("Job", "hfconnect-config-check").unwrap();
    assert_eq!(job["spec"]["backoffLimit"].as_i64(), Some(0));
    let job_args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_vec()
        .unwrap();
    assert!(job_args.iter().any(|a| a.as_str() == Some("--strict")));
    // The kustomization applies every manifest here, and pins the image.
    let kustomization = std::fs::read_to_string(example("kubernetes/kustomization.yaml")).unwrap();
    let k = &yaml_rust2::YamlLoader::load_from_str(&kustomization).unwrap()[0];
    let listed: Vec<&str> = k["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut files: Vec<String> = docs.iter().map(|(f, _)| f.clone()).collect();
    files.dedup();
    for f in &files {
        assert!(
            listed.contains(&f.as_str()),
            "kustomization.yaml does not apply {f}"
        );
    }
    assert_eq!(k["images"][0]["name"].as_str(), Some("hfconnect"));
    assert!(k["images"][0]["newTag"]
        .as_str()
        .is_some_and(|t| t != "latest"));
    assert!(config.contains("backend = \"redis\""));
}

/// `config-examples/local.toml` (and the templates it names) copied into
/// `dir`, the fakes' fixed ports (8089, and 8091 for the Conductor) rewritten
/// to the free ones a test's fakes took.
fn local_example(dir: &Dir, fake_hf: &str, conductor: Option<&str>) -> std::path::PathBuf {
    let local = std::fs::read_to_string(repo_root().join("config-examples/local.toml")).unwrap();
    assert!(
        local.contains("http://127.0.0.1:8089"),
        "the local example names the fake's port"
    );
    assert!(
        local.contains("http://127.0.0.1:8091/api"),
        "its worker names the fake Conductor"
    );
    let mut text = local.replace("http://127.0.0.1:8089", fake_hf);
    if let Some(c) = conductor {
        text = text.replace("http://127.0.0.1:8091/api", c);
    }
    for t in std::fs::read_dir(repo_root().join("config-examples/templates")).unwrap() {
        let t = t.unwrap().path();
        let name = format!("templates/{}", t.file_name().unwrap().to_string_lossy());
        dir.write(&name, &std::fs::read_to_string(&t).unwrap());
    }
    dir.write("local.toml", &text)
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
    let config = local_example(&dir, &fake.url(), None);
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

/// The Dockerfile builds the image `packaging/build-image.sh` builds (CI
/// builds and runs the script's; no Docker engine runs here): the same
/// static build, the same four files, user, entrypoint and command.
#[test]
fn the_dockerfile_and_the_image_script_build_the_same_image() {
    let script = std::fs::read_to_string(repo_root().join("packaging/build-image.sh")).unwrap();
    let docker = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    for both in [
        "RUSTFLAGS=\"-C target-feature=+crt-static\"",
        "cargo build --release --locked --target",
        "x86_64-unknown-linux-gnu",
        "--bin hfconnect",
        "/etc/ssl/certs/ca-certificates.crt",
        "packaging/rootfs/etc/passwd",
        "packaging/rootfs/etc/group",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(script.contains(both), "build-image.sh lacks `{both}`");
        assert!(docker.contains(both), "the Dockerfile lacks `{both}`");
    }
    assert!(script.contains("--config.user 65532:65532") && docker.contains("USER 65532:65532"));
    assert!(
        script.contains("--config.entrypoint /hfconnect")
            && docker.contains("ENTRYPOINT [\"/hfconnect\"]")
    );
    let script_cmd: Vec<&str> = script
        .split("--config.cmd=")
        .skip(1)
        .map(|w| w.split_whitespace().next().unwrap())
        .collect();
    let docker_cmd: Vec<String> = docker
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .map(|c| serde_json::from_str(c).unwrap())
        .unwrap();
    assert_eq!(script_cmd, docker_cmd);
    assert!(docker.contains("FROM scratch"), "an empty base");
    // The passwd the image carries names the user it runs as.
    let passwd = std::fs::read_to_string(repo_root().join("packaging/rootfs/etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.contains(":65532:65532:")),
        "{passwd}"
    );
}

#[test]
fn version_names_the_revision_and_completions_are_printed_for_each_shell() {
    let v = run(&["--version"]);
    assert_eq!(v.code, 0, "{}", v.all());
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert!(
        v.stdout.contains("(revision ") && v.stdout.contains("features: "),
        "{}",
        v.stdout
    );
    if let Some(r) = revision {
        // Built from this checkout (the tests build the binary from it).
        assert!(
            v.stdout.contains(&r) || v.stdout.contains("unknown"),
            "{} vs {r}",
            v.stdout
        );
    }
    for (shell, marker) in [
        ("bash", "_hfconnect()"),
        ("zsh", "#compdef hfconnect"),
        ("fish", "complete -c hfconnect"),
    ] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..out.stdout.len().min(200)]
        );
        assert!(out.stdout.contains("serve"), "{shell}");
    }
}

/// The README's worker walkthrough, line by line: the fakes on free ports
/// (`local.toml`'s 8089 and 8091 rewritten to theirs), the worker on it,
/// and the `curl` lines that register the definitions of
/// `config-examples/conductor/`, start the workflow and read how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_worker_walkthrough_completes() {
    let fake = hfconnect_integration_tests::fake_hf::FakeHf::start("hf_fake_token")
        .await
        .unwrap();
    let conductor = hfconnect_integration_tests::fake_conductor::FakeConductor::start()
        .await
        .unwrap();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## The Conductor worker, offline").unwrap()..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert!(
        block.contains("cargo run -- worker --config config-examples/local.toml"),
        "{block}"
    );
    let dir = Dir::new();
    let conductor_base = conductor.url();
    let config = local_example(&dir, &fake.url(), Some(&conductor_base));
    let _worker =
        tokio::process::Command::new(hfconnect_integration_tests::hfconnect_bin().unwrap())
            .args(["worker", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let client = reqwest::Client::new();
    let root = conductor_base.trim_end_matches("/api").to_string();
    let mut wf = String::new();
    let mut last = serde_json::Value::Null;
    for line in block.lines().filter(|l| l.contains("curl ")) {
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("localhost:8091/"))
            .unwrap_or_else(|| panic!("no localhost:8091 URL in {line}"))
            .replace("$WF", &wf)
            .replacen("localhost:8091", &root, 1);
        let r = match line.split("-d @").nth(1) {
            Some(file) => {
                let file = file
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches(')');
                let body = std::fs::read_to_string(repo_root().join(file)).unwrap();
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
            None => client.get(&url).send().await.unwrap(),
        };
        assert!(r.status().is_success(), "{line}: {}", r.status());
        let text = r.text().await.unwrap();
        if line.starts_with("WF=") {
            wf = text.trim().to_string();
            assert!(!wf.is_empty());
            // The worker runs both tasks; the walkthrough's last line reads the end.
            let c = &conductor;
            crate::support::wait_for(
                "the workflow to end",
                std::time::Duration::from_secs(30),
                || {
                    let done = c.workflow(&wf).is_some_and(|w| w.status != "RUNNING");
                    async move { done }
                },
            )
            .await;
        } else {
            last = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        }
    }
    assert_eq!(last["status"], "COMPLETED", "{last}");
    assert!(last["output"]["summary"].is_string(), "{last}");
    assert!(
        last["output"]["reply"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{last}"
    );
    // The chat task was fed the summary.
    let tasks = last["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{last}");
    let chat = fake.requests_to("/v1/chat/completions");
    let summary = last["output"]["summary"].as_str().unwrap();
    assert!(
        chat.iter().any(|r| r
            .json()
            .to_string()
            .contains(&summary[..summary.len().min(20)])),
        "the reply's request holds the summary"
    );
}

/// A worker polling task types no model serves is warned of (and fails a
/// strict check), as the Kubernetes example once did unseen.
#[test]
fn a_worker_polling_what_no_model_serves_is_warned_of() {
    let dir = Dir::new();
    let path = dir.write(
        "c.toml",
        "[[integrations]]\nname = \"hf\"\napi_key = { value = \"hf_x\" }\n\n\
         [[integrations.models]]\nname = \"m\"\nendpoint = \"https://e.example\"\napi = \"tgi\"\ntasks = [\"text-generation\", \"chat\"]\n\n\
         [[applications]]\nname = \"w\"\n\n[worker]\napp = \"w\"\n",
    );
    let p = path.to_str().unwrap();
    let out = run(&["config", "check", "--config", p]);
    assert_eq!(out.code, 0, "{}", out.all());
    for unserved in ["LLM_SUMMARIZE", "LLM_GENERATE_EMBEDDINGS"] {
        assert!(
            out.stderr.contains(&format!(
                "the worker polls `{unserved}`, but no active model serves"
            )),
            "{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("`LLM_CHAT_COMPLETE`, but"),
        "{}",
        out.stderr
    );
    // `w` is the worker's application: it needs no key, and is not warned of.
    assert!(
        !out.stderr.contains("application `w` has no `keys`"),
        "{}",
        out.stderr
    );
    assert_eq!(run(&["config", "check", "--strict", "--config", p]).code, 6);
}

/// README.md's "The endpoint's lifecycle, governed": its three commands, as
/// written, on the fake that `fake-hf` starts (with its demo endpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_endpoint_lifecycle_works() {
    let fake = hfconnect_integration_tests::fake_hf::FakeHf::start("hf_fake_token")
        .await
        .unwrap();
    fake.with_demo_endpoint(std::time::Duration::from_millis(300));
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## The endpoint's lifecycle, governed")
        .expect("the README has the section")..];
    let block = section.split("```sh\n").nth(1).unwrap();
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<Vec<&str>> = block
        .lines()
        .filter_map(|l| l.strip_prefix("cargo run -- "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(commands.len(), 3, "{block}");
    let dir = Dir::new();
    let config = local_example(&dir, &fake.url(), None);
    let mut codes = Vec::new();
    for words in &commands {
        let args: Vec<String> = words
            .iter()
            .map(|w| {
                if *w == "config-examples/local.toml" {
                    config.to_string_lossy().into_owned()
                } else {
                    (*w).to_string()
                }
            })
            .collect();
        let out = tokio::task::spawn_blocking(move || {
            crate::support::Run::new(&args).unwrap().output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.stderr.contains("hfconnect::audit"),
            "an audit line: {}",
            out.all()
        );
        assert!(!out.all().contains("hf_fake_token"), "{}", out.all());
        codes.push((out.code, out.all()));
    }
    assert_eq!(codes[0].0, 3, "{}", codes[0].1);
    assert!(codes[0].1.contains("`UPDATE`"), "{}", codes[0].1);
    assert_eq!(codes[1].0, 0, "{}", codes[1].1);
    assert!(codes[1].1.contains("is paused"), "{}", codes[1].1);
    assert_eq!(codes[2].0, 0, "{}", codes[2].1);
    assert!(codes[2].1.contains("running and serving"), "{}", codes[2].1);
    assert_eq!(fake.endpoint_state("local-tgi").as_deref(), Some("running"));
    let pauses = fake.requests_to("/local-tgi/pause").len();
    assert_eq!(pauses, 1, "the denied pause sent nothing");
}

/// README.md's "Reviewing access changes": its commands, as written, on the
/// shipped examples; and the CI job of `config-examples/ci/` runs the same
/// commands with flags the binary takes.
#[test]
fn the_readme_access_review_works() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Reviewing access changes")
        .expect("the README has the section")..];
    let block = section.split("```sh\n").nth(1).unwrap();
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<Vec<String>> = block
        .lines()
        .filter_map(|l| l.strip_prefix("cargo run -- "))
        .map(|l| {
            l.split_whitespace()
                .map(|w| {
                    if w.starts_with("config-examples/") {
                        repo_root().join(w).to_string_lossy().into_owned()
                    } else {
                        w.to_string()
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(commands.len(), 4, "{block}");
    let outs: Vec<_> = commands
        .iter()
        .map(|c| crate::support::run(&c.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let codes: Vec<i32> = outs.iter().map(|o| o.code).collect();
    assert_eq!(
        codes,
        [0, 1, 0, 1],
        "{:#?}",
        outs.iter().map(|o| o.all()).collect::<Vec<_>>()
    );
    assert!(
        outs[0].stdout.contains("user:alice@acme.com"),
        "{}",
        outs[0].all()
    );
    assert!(
        outs[1].stdout.contains("user:carol@acme.com\n  + ")
            && outs[1].stdout.contains(
                "  + EXECUTE on `model:hf-prod:mistral-7b-instruct`: via group `support`"
            ),
        "{}",
        outs[1].all()
    );
    assert!(
        outs[1].stdout.contains("app:billing-service\n"),
        "{}",
        outs[1].all()
    );
    assert!(
        outs[1].stdout.contains("quota of `group:support`"),
        "{}",
        outs[1].all()
    );
    assert!(
        outs[3]
            .stdout
            .contains("FAIL only group:support, group:platform-admins may EXECUTE"),
        "{}",
        outs[3].all()
    );
    assert!(
        outs[3]
            .stdout
            .contains("`app:billing-service` may EXECUTE on `model:hf-prod:mistral-7b-instruct`"),
        "{}",
        outs[3].all()
    );

    // The CI job: valid YAML, and each `hfconnect` command it runs works
    // here with its variables pointed at the shipped examples.
    let job =
        std::fs::read_to_string(repo_root().join("config-examples/ci/access-review.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&job).expect("the CI job is YAML");
    let steps = docs[0]["jobs"]["review"]["steps"]
        .as_vec()
        .expect("it has steps");
    let quickstart = repo_root().join("config-examples/quickstart.toml");
    let proposed = repo_root().join("config-examples/ci/quickstart-proposed.toml");
    let rules = repo_root().join("config-examples/ci/access-rules.toml");
    let mut ran = 0;
    for step in steps {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        let script = script.replace("\\\n", " ");
        for line in script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("hfconnect "))
        {
            let line = line.split('>').next().unwrap_or(line);
            let args: Vec<String> = line
                .split_whitespace()
                .map(|w| match w {
                    "\"new/$CONFIG\"" => proposed.to_string_lossy().into_owned(),
                    "\"old/$CONFIG\"" => quickstart.to_string_lossy().into_owned(),
                    "\"new/$RULES\"" => rules.to_string_lossy().into_owned(),
                    w => w.to_string(),
                })
                .collect();
            let out = crate::support::run(&args.iter().map(String::as_str).collect::<Vec<_>>());
            // 6: the shipped example's own warning (an application without
            // keys) under `--strict`; 2 would be flags the binary refuses.
            assert!(
                [0, 1, 6].contains(&out.code),
                "`hfconnect {line}`: {}",
                out.all()
            );
            ran += 1;
        }
    }
    assert_eq!(ran, 3, "config check, access diff, access check");
}
