//! The configs the areas run on: the fake endpoint's token, the test
//! config (integration `hf` on the fake, its groups and grants) and its
//! environment, the serve config with its two applications' keys, and the
//! access questions' catalog. The test config's prompt, groups and grants
//! are `integration-tests/fixtures/teams.toml`, which the connector's unit
//! tests include too.

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

/// The prompt, groups and grants the connector's unit tests share.
const TEAMS: &str = include_str!("../../../fixtures/teams.toml");

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
name = "sys"
template = "You answer in ${{lang}}."
models = ["hf:org/chat-model"]

[[grants]]
subject = "group:research"
target = "model:hf:org/chat-model"
access = ["EXECUTE"]

[[grants]]
subject = "group:research"
target = "prompt:sys"
access = ["READ"]

"##
    ) + TEAMS
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

/// A catalog for access questions (`hfconnect access explain` and `list`):
/// three integrations, one of them inactive, a prompt, groups with and
/// without `ADMIN`, and grants on integrations, models and the prompt.
pub const ACCESS_CONFIG: &str = r#"
[[integrations]]
name = "hf-prod"
api_key = { env = "HF_TOKEN" }

[[integrations.models]]
name = "mistral"
endpoint = "https://mistral.example"
api = "tgi"
tasks = ["text-generation", "chat"]

[[integrations.models]]
name = "bart"
endpoint = "https://bart.example"
api = "pipeline"
tasks = ["summarization"]

[[integrations.models]]
name = "retired"
endpoint = "https://retired.example"
api = "chat"
tasks = ["chat"]
active = false

[[integrations]]
name = "hf-staging"
api_key = { env = "HF_TOKEN" }
active = false

[[integrations.models]]
name = "mistral"
endpoint = "https://staging.example"
api = "tgi"
tasks = ["text-generation"]

[[integrations]]
name = "hf-research"
api_key = { env = "HF_TOKEN" }

[[integrations.models]]
name = "llama"
endpoint = "https://llama.example"
api = "chat"
tasks = ["chat"]

[[prompts]]
name = "summary"
template = "Summarize: ${text}"
models = ["hf-prod:mistral"]

[[groups]]
name = "support"
members = ["alice@acme.com", "carol@acme.com"]

[[groups]]
name = "research"
members = ["carol@acme.com"]

[[groups]]
name = "admins"
members = ["root@acme.com"]
roles = ["ADMIN"]

[[applications]]
name = "billing"

[[applications]]
name = "batch"
groups = ["research"]

[[grants]]
subject = "group:support"
target = "integration:hf-prod"
access = ["READ", "EXECUTE"]

[[grants]]
subject = "group:research"
target = "model:hf-research:llama"
access = ["EXECUTE"]

[[grants]]
subject = "group:support"
target = "integration:hf-research"
access = ["READ"]

[[grants]]
subject = "app:billing"
target = "model:hf-prod:bart"
access = ["EXECUTE"]

[[grants]]
subject = "group:support"
target = "integration:hf-staging"
access = ["EXECUTE"]

[[grants]]
subject = "group:support"
target = "prompt:summary"
access = ["READ"]
"#;
