//! The three paths to the same fake TGI endpoint, and the interleaved runs
//! that compare them: `direct` (reqwest posting the body hfconnect would
//! send: the limit), `library` (`Connector::run`: catalog, RBAC,
//! admission, provider, output shaping, audit and metrics), and `serve`
//! (HTTP to a running `hfconnect serve` process); and the same comparison
//! for embeddings on the fake text-embeddings-inference (one text, and a
//! batch of [`EMBED_BATCH`] texts of about [`EMBED_WORDS`] words).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::access::{Principal, Subject};
use hfconnect::config::LoadOptions;
use hfconnect::task::{EmbedInput, Task, TextCompleteInput};
use hfconnect::{Connector, TaskRequest};
use serde_json::{json, Value};

use super::Samples;
use crate::fake_hf::FakeHf;

/// The token the fake endpoint accepts.
pub const TOKEN: &str = "hf_bench_token_0000000000000000";
/// The application key `serve` accepts.
pub const APP_KEY: &str = "hfc_bench_key_0000000000000000000000000000000000000000000000000000";
const PROMPT: &str = "Summarize the ticket: the printer on floor 3 prints every page twice.";
/// The texts of the batch embeddings paths.
pub const EMBED_BATCH: usize = 64;
/// Words (the fake's tokens) per embedded text.
pub const EMBED_WORDS: usize = 200;
/// The size of the fake embedding model's vectors in the benchmark.
pub const EMBED_DIM: usize = 384;

/// A path a request can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// reqwest straight to the endpoint.
    Direct,
    /// `Connector::run` in this process.
    Library,
    /// The library with a quota and a rate limit, admitted in-process.
    LibraryLimits,
    /// The same limits shared on Redis (loopback).
    LibraryRedis,
    /// The library with one token budget covering the task, kept in
    /// process with its SQLite store (no limits: against `library`).
    LibraryBudget,
    /// The same budget kept on Redis (loopback).
    LibraryBudgetRedis,
    /// HTTP to `hfconnect serve`.
    Serve,
    /// HTTP to a second `hfconnect serve` logging at `warn`: no audit lines,
    /// so that the audit line's own cost can be told apart.
    ServeQuiet,
    /// HTTP to the same `hfconnect serve`, by its OpenAI-compatible door
    /// (`POST /v1/completions`: the same task).
    ServeOpenAi,
    /// reqwest straight to TEI's `/embed`, one text.
    DirectEmbed,
    /// An embeddings task of one text through `Connector::run`.
    LibraryEmbed,
    /// reqwest straight to TEI's `/embed`, [`EMBED_BATCH`] texts.
    DirectEmbedBatch,
    /// An embeddings task of [`EMBED_BATCH`] texts through `Connector::run`.
    LibraryEmbedBatch,
}

impl PathKind {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Library => "library",
            PathKind::LibraryLimits => "library+limits",
            PathKind::LibraryRedis => "library+redis",
            PathKind::LibraryBudget => "library+budget",
            PathKind::LibraryBudgetRedis => "library+budget+redis",
            PathKind::Serve => "serve",
            PathKind::ServeQuiet => "serve, RUST_LOG=warn",
            PathKind::ServeOpenAi => "serve (openai door)",
            PathKind::DirectEmbed => "direct, 1 text",
            PathKind::LibraryEmbed => "library, 1 text",
            PathKind::DirectEmbedBatch => "direct, 64 texts",
            PathKind::LibraryEmbedBatch => "library, 64 texts",
        }
    }

    /// The direct path an embeddings path is compared with.
    pub fn embed_base(self) -> Option<PathKind> {
        match self {
            PathKind::LibraryEmbed => Some(PathKind::DirectEmbed),
            PathKind::LibraryEmbedBatch => Some(PathKind::DirectEmbedBatch),
            _ => None,
        }
    }

    /// Whether the path is a `serve` process.
    pub fn is_serve(self) -> bool {
        matches!(
            self,
            PathKind::Serve | PathKind::ServeQuiet | PathKind::ServeOpenAi
        )
    }
}

/// The config the library and `serve` run with: one TGI model, one application
/// in one group with an `EXECUTE` grant on the integration; no limits.
pub fn config(upstream: &str) -> String {
    let hash = hfconnect::testing::server::key_hash(APP_KEY);
    format!(
        r#"
[[integrations]]
name = "hf"
api_key = {{ env = "HF_TOKEN" }}

[[integrations.models]]
name = "tgi"
endpoint = "{upstream}/"
api = "tgi"
tasks = ["text-generation"]

[[integrations.models]]
name = "tei"
endpoint = "{upstream}/tei"
api = "tei"
tasks = ["embeddings"]

[[groups]]
name = "bench"

[[applications]]
name = "bench-app"
groups = ["bench"]
keys = ["{hash}"]

[[grants]]
subject = "group:bench"
target = "integration:hf"
access = ["EXECUTE"]
"#
    )
}

/// [`config`] with a quota on the application's group and a rate limit on
/// the integration, both too high to refuse anything (so every task pays
/// for checking them), and `admission` (an `[admission]` section, or none).
pub fn config_with_limits(upstream: &str, admission: &str) -> String {
    config(upstream).replace(
        "tasks = [\"text-generation\"]\n",
        "tasks = [\"text-generation\"]\nrate_limit = { per_second = 1000000, burst = 1000000 }\n",
    ) + "\n[[quotas]]\nsubject = \"group:bench\"\nintegration = \"hf\"\nrequests_per_minute = 100000000\n\n"
        + admission
}

/// [`config`] with one token budget too large to refuse anything covering
/// the task (every task reserves and settles), the model's completion cap
/// it needs, and `admission`.
pub fn config_with_budget(upstream: &str, admission: &str) -> String {
    config(upstream).replace(
        "tasks = [\"text-generation\"]\n",
        "tasks = [\"text-generation\"]\ndefaults = { max_tokens = 64 }\n",
    ) + "\n[[budgets]]\nname = \"bench\"\nsubject = \"group:bench\"\ntarget = \"model:hf:tgi\"\ntokens = 1000000000000000\nwindow = \"day\"\n\n"
        + admission
}

/// A running `hfconnect serve`; stopped (SIGTERM) when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Resident memory right after start-up, before any request.
    pub idle_rss: Option<u64>,
}

impl ServeProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Start `bin serve` on `config` (the upstream accepting `token`) with logs
/// at `log_level` (to /dev/null) and wait until it answers; with `cores`,
/// confined to them with one worker thread each.
pub async fn start_serve(
    bin: &Path,
    config: &Path,
    token: &str,
    cores: Option<&[usize]>,
    log_level: &str,
) -> Result<ServeProcess, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let mut cmd = std::process::Command::new(bin);
    if let Some(cores) = cores {
        // tokio sizes its pool from this; the threads are pinned once it answers.
        cmd.env("TOKIO_WORKER_THREADS", cores.len().to_string());
    }
    let child = cmd
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HF_TOKEN", token)
        .env("RUST_LOG", log_level)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", bin.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let mut proc = ServeProcess {
        child,
        url,
        idle_rss: None,
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{}/readyz", proc.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if let Some(cores) = cores {
                super::cores::pin_process(proc.pid(), cores)?;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            proc.idle_rss = super::proc_status_bytes(proc.pid(), "VmRSS:");
            return Ok(proc);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("`hfconnect serve` did not come up within 5 s".into())
}

/// The TGI body of the direct path: exactly what the provider sends for the
/// library's task (checked in [`Targets::verify`]).
fn direct_body() -> Value {
    json!({"inputs": PROMPT, "parameters": {"details": true}})
}

/// The texts of the embeddings paths: `n` of [`EMBED_WORDS`] words each, all different.
fn embed_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..EMBED_WORDS)
                .map(|w| format!("w{}", (i * 31 + w * 7) % 997))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Everything the three paths need.
pub struct Targets {
    token: String,
    direct_url: String,
    client: reqwest::Client,
    connector: Arc<Connector>,
    limited: Option<Arc<Connector>>,
    shared: Option<Arc<Connector>>,
    budget: Option<Arc<Connector>>,
    budget_shared: Option<Arc<Connector>>,
    principal: Principal,
    task: Task,
    serve_url: Option<String>,
    quiet_url: Option<String>,
    serve_body: bytes::Bytes,
    openai_url: Option<String>,
    openai_body: bytes::Bytes,
    embed_url: String,
    embed_one: (Task, Value),
    embed_batch: (Task, Value),
}

impl Targets {
    /// Build the paths against the endpoint at `upstream` accepting `token`;
    /// `serve` and `quiet` are the running services (audit lines on, off), if any.
    pub fn new(
        upstream: &str,
        token: &str,
        config_path: &Path,
        serve: Option<&ServeProcess>,
        quiet: Option<&ServeProcess>,
        redis_url: Option<&str>,
    ) -> Result<Targets, String> {
        let key = token.to_string();
        let redis = redis_url.map(str::to_string);
        let env: hfconnect::config::EnvLookup = Arc::new(move |k| match k {
            "HF_TOKEN" => Some(key.clone()),
            "HFCONNECT_REDIS_URL" => redis.clone(),
            _ => None,
        });
        let connector = Connector::from_path(config_path, &LoadOptions::new().env(env.clone()))
            .map_err(|e| e.to_string())?;
        let with = |name: &str, admission: &str| -> Result<Option<Arc<Connector>>, String> {
            let path = config_path.with_file_name(name);
            std::fs::write(&path, config_with_limits(upstream, admission))
                .map_err(|e| e.to_string())?;
            Connector::from_path(&path, &LoadOptions::new().env(env.clone()))
                .map(|c| Some(Arc::new(c)))
                .map_err(|e| e.to_string())
        };
        let limited = with("limits.toml", "")?;
        const REDIS: &str = "[admission]\nbackend = \"redis\"\nurl = { env = \"HFCONNECT_REDIS_URL\" }\non_unavailable = \"deny\"\n";
        let shared = match redis_url {
            Some(_) => with("redis.toml", REDIS)?,
            None => None,
        };
        let budgeted = |name: &str, admission: &str| -> Result<Option<Arc<Connector>>, String> {
            let path = config_path.with_file_name(name);
            std::fs::write(&path, config_with_budget(upstream, admission))
                .map_err(|e| e.to_string())?;
            let c = Connector::from_path(&path, &LoadOptions::new().env(env.clone()))
                .map_err(|e| e.to_string())?;
            hfconnect::testing::core(&c)
                .open_usage_store()
                .map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(c)))
        };
        let budget = budgeted("budget.toml", "[admission]\nstore = \"usage.sqlite\"\n")?;
        let budget_shared = match redis_url {
            Some(_) => budgeted("budget-redis.toml", REDIS)?,
            None => None,
        };
        let principal = connector
            .principal(&Subject::App("bench-app".into()), None)
            .map_err(|e| e.to_string())?;
        let task = Task::TextComplete(TextCompleteInput {
            llm_provider: "hf".into(),
            model: "tgi".into(),
            prompt: Some(PROMPT.into()),
            ..Default::default()
        });
        let serve_body = json!({"llmProvider": "hf", "model": "tgi", "prompt": PROMPT}).to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| e.to_string())?;
        let embed = |texts: Vec<String>| {
            let body = json!({"inputs": texts});
            let task = Task::Embed(EmbedInput {
                llm_provider: "hf".into(),
                model: "tei".into(),
                texts: Some(texts),
                ..Default::default()
            });
            (task, body)
        };
        let one_text = embed_texts(1).pop().unwrap_or_default();
        let embed_one = (
            Task::Embed(EmbedInput {
                llm_provider: "hf".into(),
                model: "tei".into(),
                text: Some(one_text.clone()),
                ..Default::default()
            }),
            json!({"inputs": [one_text]}),
        );
        Ok(Targets {
            embed_url: format!("{}/tei/embed", upstream.trim_end_matches('/')),
            embed_one,
            embed_batch: embed(embed_texts(EMBED_BATCH)),
            token: token.to_string(),
            direct_url: format!("{}/generate", upstream.trim_end_matches('/')),
            client,
            connector: Arc::new(connector),
            limited,
            shared,
            budget,
            budget_shared,
            principal,
            task,
            serve_url: serve.map(|s| format!("{}/v1/tasks/text-complete", s.url)),
            quiet_url: quiet.map(|s| format!("{}/v1/tasks/text-complete", s.url)),
            serve_body: serve_body.into(),
            openai_url: serve.map(|s| format!("{}/v1/completions", s.url)),
            openai_body: json!({"model": "hf/tgi", "prompt": PROMPT})
                .to_string()
                .into(),
        })
    }

    /// One request on `path`; an error when the answer is not a good one.
    pub async fn one(&self, path: PathKind) -> Result<(), String> {
        match path {
            PathKind::Direct => {
                // Like any client, build the body of each request from its prompt.
                let body = direct_body();
                let resp = self
                    .client
                    .post(&self.direct_url)
                    .bearer_auth(&self.token)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("direct: HTTP {}", resp.status()));
                }
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                v.get("generated_text")
                    .and_then(Value::as_str)
                    .map(|_| ())
                    .ok_or_else(|| "direct: no generated_text".to_string())
            }
            PathKind::Library => self
                .connector
                .run(TaskRequest::new(&self.principal, &self.task))
                .await
                .output()
                .map(|_| ())
                .map_err(|e| e.to_string()),
            PathKind::LibraryLimits
            | PathKind::LibraryRedis
            | PathKind::LibraryBudget
            | PathKind::LibraryBudgetRedis => {
                let c = match path {
                    PathKind::LibraryLimits => self.limited.as_ref(),
                    PathKind::LibraryRedis => self.shared.as_ref(),
                    PathKind::LibraryBudget => self.budget.as_ref(),
                    _ => self.budget_shared.as_ref(),
                };
                c.ok_or("no Redis for this path")?
                    .run(TaskRequest::new(&self.principal, &self.task))
                    .await
                    .output()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            PathKind::DirectEmbed => self.direct_embed(&self.embed_one.0, 1).await,
            PathKind::DirectEmbedBatch => self.direct_embed(&self.embed_batch.0, EMBED_BATCH).await,
            PathKind::LibraryEmbed => self.library_embed(&self.embed_one.0).await,
            PathKind::LibraryEmbedBatch => self.library_embed(&self.embed_batch.0).await,
            PathKind::ServeOpenAi => {
                let url = self.openai_url.as_deref().ok_or("serve: not running")?;
                let resp = self
                    .client
                    .post(url)
                    .bearer_auth(APP_KEY)
                    .header("content-type", "application/json")
                    .body(self.openai_body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("serve (openai door): HTTP {}", resp.status()));
                }
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                v.pointer("/choices/0/text")
                    .map(|_| ())
                    .ok_or_else(|| "serve (openai door): no choices[0].text".to_string())
            }
            PathKind::Serve | PathKind::ServeQuiet => {
                let url = if path == PathKind::Serve {
                    self.serve_url.as_deref()
                } else {
                    self.quiet_url.as_deref()
                };
                let url = url.ok_or("serve: not running")?;
                let resp = self
                    .client
                    .post(url)
                    .bearer_auth(APP_KEY)
                    .header("content-type", "application/json")
                    .body(self.serve_body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("serve: HTTP {}", resp.status()));
                }
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                v.get("result")
                    .map(|_| ())
                    .ok_or_else(|| "serve: no result".to_string())
            }
        }
    }

    /// One embeddings request straight to TEI: the body, the answer parsed
    /// into vectors as a client would, each checked for its size.
    async fn direct_embed(&self, task: &Task, n: usize) -> Result<(), String> {
        // Like any client, write the body of each request from its texts.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            inputs: &'a [String],
        }
        let one;
        let inputs: &[String] = match task {
            Task::Embed(EmbedInput { texts: Some(t), .. }) => t,
            Task::Embed(EmbedInput { text: Some(t), .. }) => {
                one = [t.clone()];
                &one
            }
            _ => return Err("not an embeddings task".into()),
        };
        let resp = self
            .client
            .post(&self.embed_url)
            .bearer_auth(&self.token)
            .json(&Body { inputs })
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("direct embed: HTTP {}", resp.status()));
        }
        // Parsed as JSON, as the generation direct path parses its answer:
        // the vectors a workflow engine gets are JSON values.
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        let v: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if v.len() == n
            && v.iter()
                .all(|x| x.as_array().is_some_and(|a| a.len() == EMBED_DIM))
        {
            Ok(())
        } else {
            Err(format!("direct embed: {} vectors for {n} texts", v.len()))
        }
    }

    async fn library_embed(&self, task: &Task) -> Result<(), String> {
        self.connector
            .run(TaskRequest::new(&self.principal, task))
            .await
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| match o.dimensions {
                Some(d) if d as usize == EMBED_DIM => Ok(()),
                other => Err(format!("library embed: {other:?} dimensions")),
            })
    }

    /// Check that the library sends the bodies the direct embeddings paths send.
    pub async fn verify_embed(&self, fake: &FakeHf) -> Result<(), String> {
        fake.set_recording(true);
        fake.clear_requests();
        self.one(PathKind::LibraryEmbed).await?;
        self.one(PathKind::LibraryEmbedBatch).await?;
        let sent = fake.requests_to("/tei/embed");
        fake.set_recording(false);
        let bodies: Vec<Value> = sent
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect();
        let want = vec![self.embed_one.1.clone(), self.embed_batch.1.clone()];
        if bodies == want {
            Ok(())
        } else {
            Err(format!(
                "the library sent {} embed requests, not the direct paths' bodies (one of each)",
                bodies.len()
            ))
        }
    }

    /// Check that the library sends the body the direct path sends.
    pub async fn verify(&self, fake: &FakeHf) -> Result<(), String> {
        fake.set_recording(true);
        fake.clear_requests();
        self.one(PathKind::Library).await?;
        let sent = fake.requests_to("/generate");
        fake.set_recording(false);
        let body: Value = sent
            .first()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .ok_or("the library sent nothing to /generate")?;
        let direct = direct_body();
        if body == direct {
            Ok(())
        } else {
            Err(format!("the library sent {body}, the direct path {direct}"))
        }
    }
}

/// One run of `requests` requests on `path` by `concurrency` loops.
#[derive(Debug, Default, Clone)]
pub struct Cell {
    /// Latency of each request.
    pub samples: Samples,
    /// Wall-clock time of the runs.
    pub wall: Duration,
    /// CPU time (this process, plus `serve` for the serve path).
    pub cpu: Duration,
    /// CPU time of the `serve` process alone (serve paths).
    pub serve_cpu: Duration,
    /// Per round merged in: the serve process's CPU time and the requests.
    pub rounds: Vec<(Duration, usize)>,
    /// Requests that failed.
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
}

impl Cell {
    /// Add another run's numbers.
    pub fn merge(&mut self, other: Cell) {
        self.rounds.push((other.serve_cpu, other.samples.0.len()));
        self.samples.0.extend(other.samples.0);
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.serve_cpu += other.serve_cpu;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.samples.0.len() as f64 / self.wall.as_secs_f64()
        }
    }
}

/// Run `requests` requests on `path` with `concurrency` loops, stopping at `deadline`.
pub async fn run_cell(
    t: &Arc<Targets>,
    path: PathKind,
    concurrency: usize,
    requests: usize,
    deadline: Instant,
    serve_pid: Option<u32>,
) -> Cell {
    let left = Arc::new(AtomicUsize::new(requests));
    let serve0 = serve_pid.and_then(super::cpu_time_fine).unwrap_or_default();
    let cpu0 = super::cpu_time(None).unwrap_or_default() + serve0;
    let start = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let t = t.clone();
        let left = left.clone();
        loops.spawn(async move {
            let mut samples = Vec::with_capacity(requests / concurrency + 1);
            let mut errors = 0u64;
            let mut first_error = None;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
                && Instant::now() < deadline
            {
                let s = Instant::now();
                match t.one(path).await {
                    Ok(()) => {
                        samples.push(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX))
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (samples, errors, first_error)
        });
    }
    let mut cell = Cell::default();
    while let Some(r) = loops.join_next().await {
        if let Ok((samples, errors, first_error)) = r {
            cell.samples.0.extend(samples);
            cell.errors += errors;
            if cell.first_error.is_none() {
                cell.first_error = first_error;
            }
        }
    }
    cell.wall = start.elapsed();
    let serve1 = serve_pid.and_then(super::cpu_time_fine).unwrap_or_default();
    let cpu1 = super::cpu_time(None).unwrap_or_default() + serve1;
    cell.cpu = cpu1.saturating_sub(cpu0);
    cell.serve_cpu = serve1.saturating_sub(serve0);
    cell
}
