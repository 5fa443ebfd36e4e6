//! `serve` run in the test process on a config, and requests to its task routes.

use std::sync::Arc;
use std::time::Duration;

use hfconnect::config::LoadOptions;
use hfconnect::testing::server::{serve, ServeOptions};
use hfconnect::Connector;
use hfconnect_integration_tests::fake_hf::FakeHf;
use serde_json::{json, Value};

use super::fixtures::{env, serve_config};
use super::Dir;

/// How often `start_with`'s server checks its files for changes.
pub const WATCH: Duration = Duration::from_millis(200);

pub struct Server {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: Dir,
}

impl Server {
    /// The config file it serves.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("c.toml")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(fake: &FakeHf) -> Server {
    start_with(serve_config(&fake.url()), |_| {}).await
}

/// `serve` in this process on `config`, with 1 s header and 2 s body
/// timeouts and files checked every [`WATCH`] unless `tweak` says otherwise.
pub async fn start_with(config: String, tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    let dir = Dir::new();
    let path = dir.write("c.toml", &config);
    let connector = Arc::new(Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut options = ServeOptions::new(path);
    options.grace = Duration::from_secs(5);
    options.header_timeout = Duration::from_secs(1);
    options.body_timeout = Duration::from_secs(2);
    options.watch_interval = WATCH;
    tweak(&mut options);
    tokio::spawn(serve(connector, listener, options, async move {
        let _ = rx.await;
    }));
    Server {
        url,
        stop: Some(tx),
        dir,
    }
}

pub async fn post(
    s: &Server,
    kind: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/tasks/{kind}", s.url))
        .json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    for (h, v) in headers {
        r = r.header(*h, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn text_body(model: &str) -> Value {
    json!({"llmProvider": "hf", "model": model, "prompt": "hello"})
}
