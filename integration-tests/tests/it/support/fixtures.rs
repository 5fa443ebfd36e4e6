//! The configs every area runs on: the fake endpoint's token, the test
//! config (integration `hf` on the fake, its groups and grants) and its
//! environment, and the serve config with its two applications' keys.

use std::sync::Arc;

use hfconnect::config::EnvLookup;

pub const TOKEN: &str = "hf_testTOKENvalue0123456789";

/// The retries of an integration on the fake: few, and quick.
pub struct Retry {
    pub attempts: u32,
    /// Seconds.
    pub budget: u32,
}

/// `[[integrations]]` `hf` on the fake at `url`: its key from `HF_TOKEN`,
/// the fake's Hub and management API, `retry`, and a cold-start wait of
/// `wait` seconds.
pub fn hf_on_fake(url: &str, namespace: Option<&str>, retry: Retry, wait: u32) -> String {
    let namespace = namespace.map_or(String::new(), |n| format!("namespace = \"{n}\"\n"));
    let Retry { attempts, budget } = retry;
    format!(
        "\n[[integrations]]\nname = \"hf\"\n{namespace}api_key = {{ env = \"HF_TOKEN\" }}\nhub_url = \"{url}\"\nmanagement_url = \"{url}/v2\"\nretry = {{ max_attempts = {attempts}, initial_backoff = 0.01, max_backoff = 0.05, budget = {budget} }}\ncold_start = {{ wait = {wait} }}\n"
    )
}

/// The generation models of `hf` on the fake: `tgi` (serving `tgi_tasks`
/// with `tgi_defaults`), `org/chat-model` (chat), `bart` (a summarization
/// pipeline) and `off` (inactive).
pub fn generation_models(url: &str, tgi_tasks: &str, tgi_defaults: &str) -> String {
    format!(
        r##"
[[integrations.models]]
name = "tgi"
endpoint = "{url}/"
api = "tgi"
tasks = {tgi_tasks}
defaults = {tgi_defaults}

[[integrations.models]]
name = "org/chat-model"
endpoint = "{url}/"
api = "chat"
tasks = ["chat"]

[[integrations.models]]
name = "bart"
endpoint = "{url}/"
api = "pipeline"
tasks = ["summarization"]

[[integrations.models]]
name = "off"
endpoint = "{url}/"
api = "tgi"
tasks = ["text-generation"]
active = false
"##
    )
}

pub fn config(url: &str) -> String {
    hf_on_fake(
        url,
        Some("acme"),
        Retry {
            attempts: 2,
            budget: 2,
        },
        1,
    ) + &generation_models(
        url,
        r#"["text-generation", "chat", "summarization"]"#,
        r#"{ max_tokens = 3, temperature = 0.7, stop = ["<stop>"] }"#,
    ) + &format!(
        r##"

[[integrations]]
name = "hf-off"
api_key = {{ env = "HF_TOKEN" }}
active = false

[[integrations.models]]
name = "tgi"
endpoint = "{url}/"
api = "tgi"
tasks = ["text-generation"]

[[prompts]]
name = "ticket"
template = "Summarize ticket ${{id}}: ${{body}}"
models = ["hf:tgi"]

[[prompts]]
name = "sys"
template = "You answer in ${{lang}}."
models = ["hf:org/chat-model"]

[[groups]]
name = "support"
members = ["alice"]

[[groups]]
name = "research"
members = ["alice", "bob"]

[[grants]]
subject = "group:support"
target = "integration:hf"
access = ["READ", "EXECUTE"]

[[grants]]
subject = "group:support"
target = "prompt:ticket"
access = ["READ"]

[[grants]]
subject = "group:research"
target = "model:hf:org/chat-model"
access = ["EXECUTE"]

[[grants]]
subject = "group:research"
target = "prompt:sys"
access = ["READ"]

[[grants]]
subject = "group:support"
target = "integration:hf-off"
access = ["EXECUTE"]
"##
    )
}

pub fn env() -> EnvLookup {
    Arc::new(|k| (k == "HF_TOKEN").then(|| TOKEN.to_string()))
}

pub const APP_KEY: &str = "hfc_test_app_key_0001";
pub const PORTAL_KEY: &str = "hfc_test_portal_key_0002";

pub fn hash(key: &str) -> String {
    hfconnect::testing::server::key_hash(key)
}

pub fn serve_config(url: &str) -> String {
    config(url)
        + &format!(
            "\n[[applications]]\nname = \"batch\"\ngroups = [\"support\"]\nkeys = [\"{}\"]\n\n[[applications]]\nname = \"portal\"\nact_for_users = true\nkeys = [\"{}\"]\n",
            hash(APP_KEY),
            hash(PORTAL_KEY)
        )
}
