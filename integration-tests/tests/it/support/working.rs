//! The Conductor worker on the fake Conductor and the fake endpoint: its
//! config, a connector over it, and a worker run until a condition holds.

use std::sync::Arc;
use std::time::Duration;

use hfconnect::config::LoadOptions;
use hfconnect::testing::conductor::{Worker, WorkerReport};
use hfconnect::testing::runtime::WorkerSettings;
use hfconnect::Connector;
use hfconnect_integration_tests::fake_conductor::FakeConductor;
use hfconnect_integration_tests::fake_hf::FakeHf;

use super::fixtures::{generation_models, hf_on_fake, Retry};
use super::{env, Dir, TOKEN};

pub fn worker_config(url: &str, worker: &str) -> String {
    hf_on_fake(
        url,
        None,
        Retry {
            attempts: 2,
            budget: 1,
        },
        2,
    ) + &generation_models(url, r#"["text-generation"]"#, "{ max_tokens = 64 }")
        + &format!(
            r##"

[[groups]]
name = "support"
members = ["ann"]

[[groups]]
name = "research"
members = ["ann", "bo"]

[[applications]]
name = "batch"
groups = ["support"]

[[applications]]
name = "intruder"

[[grants]]
subject = "group:support"
target = "integration:hf"
access = ["EXECUTE"]

[[grants]]
subject = "group:research"
target = "model:hf:bart"
access = ["EXECUTE"]

{worker}
"##
        )
}

pub struct Setup {
    pub hf: FakeHf,
    pub conductor: FakeConductor,
    pub connector: Arc<Connector>,
    pub settings: WorkerSettings,
    _dir: Dir,
}

pub async fn setup(worker: &str) -> Setup {
    setup_on(|url| worker_config(url, worker)).await
}

/// [`setup`] on the config `config` makes for the fake's URL.
pub async fn setup_on(config: impl FnOnce(&str) -> String) -> Setup {
    let hf = FakeHf::start(TOKEN).await.unwrap();
    hf.behave(|b| b.echo = true);
    let conductor = FakeConductor::start().await.unwrap();
    let dir = Dir::new();
    let path = dir.write("c.toml", &config(&hf.url()));
    let connector = Connector::from_path(&path, &LoadOptions::new().env(env())).unwrap();
    let settings = hfconnect::testing::core(&connector)
        .runtime()
        .worker()
        .cloned()
        .unwrap();
    Setup {
        hf,
        conductor,
        connector: Arc::new(connector),
        settings,
        _dir: dir,
    }
}

impl Setup {
    /// Run a worker until `done` says so (or 20 s), then stop it.
    pub async fn run_until(
        &self,
        settings: WorkerSettings,
        done: impl Fn(&FakeConductor) -> bool,
    ) -> WorkerReport {
        let (tx, handle) = spawn_worker(self, settings);
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while !done(&self.conductor) && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(());
        handle.await.unwrap()
    }

    pub async fn run_all(&self) -> WorkerReport {
        self.run_until(self.settings.clone(), |c| c.running() == 0)
            .await
    }
}

pub fn spawn_worker(
    s: &Setup,
    settings: WorkerSettings,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<WorkerReport>,
) {
    let worker = Worker::new(
        s.connector.clone(),
        settings,
        &url::Url::parse(&s.conductor.url()).unwrap(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    (tx, handle)
}
