//! What the areas share, and the only place they share it from: temporary
//! config files and running the binary on them (here), the config fixtures
//! (`fixtures`), `serve` in process (`serving`), the provider on the fake
//! (`provider`), the worker on the fake Conductor (`working`), captured logs
//! (`logs`), and reading a metric from a scrape.

pub mod fixtures;
pub mod logs;
pub mod provider;
pub mod serving;
pub mod working;

pub use fixtures::{config, env, hash, serve_config, APP_KEY, PORTAL_KEY, TOKEN};
pub use logs::global_logs;
pub use serving::{post, start, start_with, text_body, Server, WATCH};

use std::path::{Path, PathBuf};

pub use hfconnect_integration_tests::{Output, Run};

/// The fake endpoint, a directory holding `config(fake's url)` as `c.toml`,
/// and a Connector over it.
pub async fn connector_on_fake(
    config: impl Fn(&str) -> String,
) -> (
    hfconnect_integration_tests::fake_hf::FakeHf,
    Dir,
    hfconnect::Connector,
) {
    let fake = hfconnect_integration_tests::fake_hf::FakeHf::start(TOKEN)
        .await
        .unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&fake.url()));
    let options = hfconnect::config::LoadOptions::new().env(env());
    let connector = hfconnect::Connector::from_path(&path, &options).unwrap();
    (fake, dir, connector)
}

/// A loopback port the system just handed out and nothing listens on now
/// (for a process the test starts with `--listen`, or a refused connection).
pub fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A temporary directory holding config files.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `hfconnect ARGS…`, run.
pub fn run(args: &[&str]) -> Output {
    Run::new(args).unwrap().output().unwrap()
}

/// `hfconnect config check --config PATH`
pub fn check(path: &Path) -> Output {
    run(&["config", "check", "--config", path.to_str().unwrap()])
}

/// `hfconnect config check --strict --config PATH`
pub fn check_strict(path: &Path) -> Output {
    run(&[
        "config",
        "check",
        "--strict",
        "--config",
        path.to_str().unwrap(),
    ])
}

/// `hfconnect serve --config CONFIG` on a free loopback port with `env`
/// (and no `HF_TOKEN` unless given), output discarded, killed when the
/// child is dropped; returned once `/healthz` answers, with its base URL.
pub async fn serve_process(
    config: &Path,
    env: &[(&str, String)],
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = hfconnect_integration_tests::hfconnect_bin().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("HF_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&base).await;
    (child, base)
}

/// The Prometheus text a service at `base` serves at `/metrics`.
pub async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Wait (up to 5 s) until a service at `base` answers `/healthz`.
pub async fn wait_up(base: &str) {
    for _ in 0..100 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing answered at {base}/healthz within 5 s");
}

/// Wait (up to `within`) until `done` says so, checking every 20 ms; panics
/// naming `what` otherwise. Tests wait for conditions, never for a fixed time.
pub async fn wait_for<F, Fut>(what: &str, within: std::time::Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + within;
    loop {
        if done().await {
            return;
        }
        if std::time::Instant::now() >= end {
            panic!("waited {within:?} for {what}; it never happened");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A Kubernetes Secret volume holding one `token`, as the kubelet lays it
/// out: `token` → `..data/token`, `..data` → a versioned directory.
pub struct SecretMount {
    pub dir: PathBuf,
    version: u32,
}

impl SecretMount {
    /// A mount under `parent` holding `token`.
    pub fn new(parent: &Path, token: &str) -> SecretMount {
        let dir = parent.join("secret");
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        std::fs::write(dir.join("..v1/token"), token).unwrap();
        std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
        SecretMount { dir, version: 1 }
    }

    /// The path the config reads the token from.
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// `config` with its first `api_key = { env = "HF_TOKEN" }` reading this mount.
    pub fn in_config(&self, config: &str) -> String {
        config.replacen(
            "api_key = { env = \"HF_TOKEN\" }",
            &format!("api_key = {{ file = \"{}\" }}", self.token_path().display()),
            1,
        )
    }

    /// The kubelet's swap: the new token in a new directory, a new link
    /// renamed over `..data` (atomic), the old directory removed.
    pub fn rotate(&mut self, token: &str) {
        let (old, new) = (
            format!("..v{}", self.version),
            format!("..v{}", self.version + 1),
        );
        std::fs::create_dir_all(self.dir.join(&new)).unwrap();
        std::fs::write(self.dir.join(&new).join("token"), token).unwrap();
        std::os::unix::fs::symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        self.version += 1;
    }
}

/// A command line's words (for lines none of whose words holds a space).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `hfconnect run --config CONFIG --as WHO text-complete` on model `tgi` of
/// integration `hf` with `prompt`, then `extra`: the task the CLI areas run.
pub fn text_complete_args(config: &Path, who: &str, prompt: &str, extra: &[&str]) -> Vec<String> {
    let config = config.to_str().unwrap();
    let head = ["run", "--config", config, "--as", who, "text-complete"];
    let task = ["--integration", "hf", "--model", "tgi", "--prompt", prompt];
    head.iter()
        .chain(&task)
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// A command exited with `code` and printed each of `needles` on stdout.
pub fn assert_stdout(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{}", out.all());
    for n in needles {
        assert!(out.stdout.contains(n), "want `{n}` in {}", out.stdout);
    }
}

/// A command exited with `code` and printed each of `needles` (on stdout
/// or stderr).
pub fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{}", out.all());
    for n in needles {
        assert!(out.all().contains(n), "want `{n}` in {}", out.all());
    }
}

/// The value of the exact series `series` (name and labels as written) in a
/// Prometheus scrape; 0 when it is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
