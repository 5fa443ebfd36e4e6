//! The configs every area runs on: the fake endpoint's token, the test
//! config (integration `hf` on the fake, its groups and grants) and its
//! environment, and the serve config with its two applications' keys.

use std::sync::Arc;

use hfconnect::config::EnvLookup;

pub const TOKEN: &str = "hf_testTOKENvalue0123456789";

pub fn config(url: &str) -> String {
    format!(
        r##"
[[integrations]]
name = "hf"
namespace = "acme"
api_key = {{ env = "HF_TOKEN" }}
hub_url = "{url}"
management_url = "{url}/v2"
retry = {{ max_attempts = 2, initial_backoff = 0.01, max_backoff = 0.05, budget = 2 }}
cold_start = {{ wait = 1 }}

[[integrations.models]]
name = "tgi"
endpoint = "{url}/"
api = "tgi"
tasks = ["text-generation", "chat", "summarization"]
defaults = {{ max_tokens = 3, temperature = 0.7, stop = ["<stop>"] }}

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
    hfconnect::server::key_hash(key)
}

pub fn serve_config(url: &str) -> String {
    config(url)
        + &format!(
            "\n[[applications]]\nname = \"batch\"\ngroups = [\"support\"]\nkeys = [\"{}\"]\n\n[[applications]]\nname = \"portal\"\nact_for_users = true\nkeys = [\"{}\"]\n",
            hash(APP_KEY),
            hash(PORTAL_KEY)
        )
}
