//! `hfconnect config check` on broken configs: each case asserts the exit code
//! (2) and that one diagnostic names the file, line and column, the key path
//! and what is wrong.

use crate::support::{check, Dir};

/// A valid integration with one TGI model; cases edit or extend it.
const BASE: &str = r#"[[integrations]]
name = "hf"
api_key = { env = "T" }

[[integrations.models]]
name = "m"
endpoint = "https://e.example"
api = "tgi"
tasks = ["text-generation"]
"#;

struct Case {
    name: &'static str,
    file: &'static str,
    text: String,
    /// `line:column`
    at: &'static str,
    /// the key path (empty for syntax errors)
    path: &'static str,
    /// a part of the message (or its help)
    msg: &'static str,
}

fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn base_plus(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// The diagnostics of a run's stderr, one string per diagnostic (message, location, help).
fn blocks(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("error:")
            || line.starts_with("warning:")
            || line.starts_with("config is invalid")
        {
            out.push(line.to_string());
        } else if let Some(last) = out.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    out
}

fn cases() -> Vec<Case> {
    let grant = |subject: &str, target: &str, access: &str| {
        base_plus(&format!(
            "\n[[grants]]\nsubject = \"{subject}\"\ntarget = \"{target}\"\naccess = {access}\n"
        ))
    };
    let prompt = |template: &str, models: &str| {
        base_plus(&format!(
            "\n[[prompts]]\nname = \"p\"\ntemplate = \"{template}\"\nmodels = {models}\n"
        ))
    };
    vec![
        Case { name: "unknown worker key", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"task-input\"\nconcurency = 4\n"), at: "13:1", path: "worker.concurency", msg: "did you mean `concurrency`?" },
        Case { name: "fixed worker identity without an app", file: "c.toml", text: base_plus("\n[worker]\nconcurrency = 2\n"), at: "11:1", path: "worker", msg: "needs `worker.app`" },
        Case { name: "worker app unknown", file: "c.toml", text: base_plus("\n[worker]\napp = \"batch\"\n"), at: "12:7", path: "worker.app", msg: "unknown application `batch`" },
        Case { name: "unknown worker identity", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"user\"\n"), at: "12:12", path: "worker.identity", msg: "task-input" },
        Case { name: "worker concurrency 0", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\nconcurrency = 0\n"), at: "13:15", path: "worker.concurrency", msg: "must be at least 1" },
        Case { name: "worker key_id without key_secret", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\nkey_id = \"k\"\n"), at: "11:1", path: "worker", msg: "`worker.key_secret` is not" },
        Case { name: "worker secret from the HF lookup", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\nkey_id = \"k\"\nkey_secret = \"huggingface\"\n"), at: "14:14", path: "worker.key_secret", msg: "cannot use the Hugging Face token lookup" },
        Case { name: "worker polls nothing", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\ntask_types = {}\n"), at: "13:14", path: "worker.task_types", msg: "would poll nothing" },
        Case { name: "worker task type typo", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\ntask_types = { text_completion = \"X\" }\n"), at: "13:16", path: "worker.task_types.text_completion", msg: "did you mean `text_complete`?" },
        Case { name: "worker conductor_url not http", file: "c.toml", text: base_plus("\n[worker]\nidentity = \"workflow\"\nconductor_url = \"localhost:8080\"\n"), at: "13:17", path: "worker.conductor_url", msg: "`worker.conductor_url` is" },
        Case { name: "worker defined twice", file: "c.yaml", text: "worker:\n  identity: workflow\nworker:\n  identity: fixed\n".into(), at: "3:1", path: "worker", msg: "twice" },
        Case { name: "unknown top-level key", file: "c.toml", text: "integration = []\n".into(), at: "1:1", path: "integration", msg: "did you mean `integrations`?" },
        Case { name: "unknown integration key", file: "c.toml", text: base_with("api_key = { env = \"T\" }", "api_key = { env = \"T\" }\ndescripton = \"x\""), at: "4:1", path: "integrations[0].descripton", msg: "did you mean `description`?" },
        Case { name: "unknown model key", file: "c.toml", text: base_plus("endpont = \"x\"\n"), at: "10:1", path: "integrations[0].models[0].endpont", msg: "did you mean `endpoint`?" },
        Case { name: "missing api_key", file: "c.toml", text: base_with("api_key = { env = \"T\" }", "namespace = \"acme\""), at: "1:1", path: "integrations[0].api_key", msg: "missing required key `api_key`" },
        Case { name: "missing api", file: "c.toml", text: base_with("api = \"tgi\"", "active = true"), at: "5:1", path: "integrations[0].models[0].api", msg: "missing required key `api`" },
        Case { name: "missing endpoint on a tgi model", file: "c.toml", text: base_with("endpoint = \"https://e.example\"", "active = true"), at: "5:1", path: "integrations[0].models[0].endpoint", msg: "missing required key `endpoint`" },
        Case { name: "duplicate integration", file: "c.toml", text: base_plus("\n[[integrations]]\nname = \"hf\"\napi_key = \"huggingface\"\n"), at: "12:8", path: "integrations[1].name", msg: "integration `hf` is defined twice" },
        Case { name: "duplicate model", file: "c.toml", text: base_plus("\n[[integrations.models]]\nname = \"m\"\nendpoint = \"https://f.example\"\napi = \"chat\"\ntasks = [\"chat\"]\n"), at: "12:8", path: "integrations[0].models[1].name", msg: "model `m` is defined twice" },
        Case { name: "endpoint not a URL", file: "c.toml", text: base_with("https://e.example", "not a url"), at: "7:12", path: "integrations[0].models[0].endpoint", msg: "`endpoint` is not a valid URL" },
        Case { name: "endpoint with another scheme", file: "c.toml", text: base_with("https://e.example", "ftp://e.example"), at: "7:12", path: "integrations[0].models[0].endpoint", msg: "the scheme must be `http` or `https`, not `ftp`" },
        Case { name: "endpoint with credentials", file: "c.toml", text: base_with("https://e.example", "https://u:p@e.example"), at: "7:12", path: "integrations[0].models[0].endpoint", msg: "carries credentials" },
        Case { name: "unknown task kind", file: "c.toml", text: base_with("[\"text-generation\"]", "[\"text-gen\"]"), at: "9:10", path: "integrations[0].models[0].tasks[0]", msg: "did you mean `text-generation`?" },
        Case { name: "unknown api flavour", file: "c.toml", text: base_with("api = \"tgi\"", "api = \"tgl\""), at: "8:7", path: "integrations[0].models[0].api", msg: "unknown value `tgl`" },
        Case { name: "pipeline claims chat", file: "c.toml", text: base_with("api = \"tgi\"\ntasks = [\"text-generation\"]", "api = \"pipeline\"\ntasks = [\"summarization\", \"chat\"]"), at: "9:27", path: "integrations[0].models[0].tasks[1]", msg: "has api `pipeline`, which cannot serve `chat`" },
        Case { name: "tgi claims embeddings", file: "c.toml", text: base_with("[\"text-generation\"]", "[\"text-generation\", \"embeddings\"]"), at: "9:29", path: "integrations[0].models[0].tasks[1]", msg: "has api `tgi`, which cannot serve `embeddings`" },
        Case { name: "tei claims chat", file: "c.toml", text: base_with("api = \"tgi\"\ntasks = [\"text-generation\"]", "api = \"tei\"\ntasks = [\"embeddings\", \"chat\"]"), at: "9:24", path: "integrations[0].models[0].tasks[1]", msg: "text-embeddings-inference only embeds" },
        Case { name: "zero dimensions", file: "c.toml", text: base_with("api = \"tgi\"\ntasks = [\"text-generation\"]", "api = \"tei\"\ntasks = [\"embeddings\"]\ndimensions = 0"), at: "10:14", path: "integrations[0].models[0].dimensions", msg: "`dimensions` must be at least 1" },
        Case { name: "grant to unknown group", file: "c.toml", text: grant("group:nope", "integration:hf", "[\"READ\"]"), at: "12:11", path: "grants[0].subject", msg: "grant names unknown group `nope`" },
        Case { name: "grant to unknown application", file: "c.toml", text: grant("app:nope", "integration:hf", "[\"READ\"]"), at: "12:11", path: "grants[0].subject", msg: "grant names unknown application `nope`" },
        Case { name: "grant on unknown integration", file: "c.toml", text: grant("user:x", "integration:hff", "[\"READ\"]"), at: "13:10", path: "grants[0].target", msg: "did you mean `hf`?" },
        Case { name: "grant on unknown model", file: "c.toml", text: grant("user:x", "model:hf:m2", "[\"READ\"]"), at: "13:10", path: "grants[0].target", msg: "unknown model `m2` of integration `hf`" },
        Case { name: "grant on a misspelled model", file: "c.toml", text: grant("user:x", "model:hf:mistral-7", "[\"READ\"]").replacen("name = \"m\"", "name = \"mistral-7b\"", 1), at: "13:10", path: "grants[0].target", msg: "did you mean `mistral-7b`?" },
        Case { name: "grant on unknown prompt", file: "c.toml", text: grant("user:x", "prompt:nope", "[\"READ\"]"), at: "13:10", path: "grants[0].target", msg: "grant names unknown prompt `nope`" },
        Case { name: "malformed subject", file: "c.toml", text: grant("team:x", "integration:hf", "[\"READ\"]"), at: "12:11", path: "grants[0].subject", msg: "`team:x` is not a subject" },
        Case { name: "malformed target", file: "c.toml", text: grant("user:x", "model:hf", "[\"READ\"]"), at: "13:10", path: "grants[0].target", msg: "`model:hf` names no integration" },
        Case { name: "empty access list", file: "c.toml", text: grant("user:x", "integration:hf", "[]"), at: "14:10", path: "grants[0].access", msg: "`access` is empty" },
        Case { name: "unknown access type", file: "c.toml", text: grant("user:x", "integration:hf", "[\"EXEC\"]"), at: "14:11", path: "grants[0].access[0]", msg: "did you mean `EXECUTE`?" },
        Case { name: "prompt names unknown model", file: "c.toml", text: prompt("hi ${x}", "[\"hf:nope\"]"), at: "14:11", path: "prompts[0].models[0]", msg: "prompt `p` names unknown model `nope` of integration `hf`" },
        Case { name: "malformed template", file: "c.toml", text: prompt("hi ${x", "[\"hf:m\"]"), at: "13:12", path: "prompts[0].template", msg: "`${` is not closed by `}`" },
        Case { name: "empty placeholder", file: "c.toml", text: prompt("hi ${}", "[\"hf:m\"]"), at: "13:12", path: "prompts[0].template", msg: "empty placeholder" },
        Case { name: "prompt lists no models", file: "c.toml", text: prompt("hi", "[]"), at: "14:10", path: "prompts[0].models", msg: "prompt `p` lists no models" },
        Case { name: "model reference without integration", file: "c.toml", text: prompt("hi", "[\"m\"]"), at: "14:11", path: "prompts[0].models[0]", msg: "`m` is not a model reference" },
        Case { name: "application in unknown group", file: "c.toml", text: base_plus("\n[[applications]]\nname = \"a\"\ngroups = [\"nope\"]\n"), at: "13:11", path: "applications[0].groups[0]", msg: "application `a` names unknown group `nope`" },
        Case { name: "unknown role", file: "c.toml", text: base_plus("\n[[groups]]\nname = \"g\"\nroles = [\"ADMN\"]\n"), at: "13:10", path: "groups[0].roles[0]", msg: "did you mean `ADMIN`?" },
        Case { name: "wrong type for active", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\nactive = \"yes\""), at: "3:10", path: "integrations[0].active", msg: "expected `true` or `false`, found a string" },
        Case { name: "list expected", file: "c.toml", text: base_with("[\"text-generation\"]", "\"chat\""), at: "9:9", path: "integrations[0].models[0].tasks", msg: "expected a list, found a string" },
        Case { name: "max_tokens zero", file: "c.toml", text: base_plus("defaults = { max_tokens = 0 }\n"), at: "10:27", path: "integrations[0].models[0].defaults.max_tokens", msg: "`max_tokens` must be at least 1" },
        Case { name: "temperature zero", file: "c.toml", text: base_plus("defaults = { temperature = 0.0 }\n"), at: "10:28", path: "integrations[0].models[0].defaults.temperature", msg: "`temperature` must be greater than 0" },
        Case { name: "top_p above one", file: "c.toml", text: base_plus("defaults = { top_p = 1.5 }\n"), at: "10:22", path: "integrations[0].models[0].defaults.top_p", msg: "`top_p` must be greater than 0 and at most 1" },
        Case { name: "integration name with a space", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf prod\""), at: "2:8", path: "integrations[0].name", msg: "integration name `hf prod` contains ` `" },
        Case { name: "integration name with a colon", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf:prod\""), at: "2:8", path: "integrations[0].name", msg: "contains `:`" },
        Case { name: "chat template file missing", file: "c.toml", text: base_plus("chat_template = \"nope.jinja\"\n"), at: "10:17", path: "integrations[0].models[0].chat_template", msg: "does not exist" },
        Case { name: "bad namespace", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\nnamespace = \"acme corp\""), at: "3:13", path: "integrations[0].namespace", msg: "is not a Hub user or organization name" },
        Case { name: "bad hub_url", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\nhub_url = \"huggingface.co\""), at: "3:11", path: "integrations[0].hub_url", msg: "`hub_url` is not a valid URL" },
        Case { name: "empty tasks", file: "c.toml", text: base_with("[\"text-generation\"]", "[]"), at: "9:9", path: "integrations[0].models[0].tasks", msg: "model `m` lists no tasks" },
        Case { name: "empty member id", file: "c.toml", text: base_plus("\n[[groups]]\nname = \"g\"\nmembers = [\"\"]\n"), at: "13:12", path: "groups[0].members[0]", msg: "member id is empty" },
        Case { name: "key location with two keys", file: "c.toml", text: base_with("{ env = \"T\" }", "{ env = \"T\", file = \"x\" }"), at: "3:11", path: "integrations[0].api_key", msg: "expected a table with exactly one key" },
        Case { name: "unknown key location", file: "c.toml", text: base_with("{ env = \"T\" }", "{ vault = \"T\" }"), at: "3:11", path: "integrations[0].api_key", msg: "is not a secret's location" },
        Case { name: "yaml unknown key", file: "c.yaml", text: "integrations:\n  - name: hf\n    api_key: {env: T}\n    models:\n      - name: m\n        endpoint: https://e.example\n        api: chat\n        tasks: [chat]\n        taks: 1\n".into(), at: "9:9", path: "integrations[0].models[0].taks", msg: "did you mean `tasks`?" },
        Case { name: "yaml repeated key", file: "c.yaml", text: "integrations:\n  - name: hf\n    name: hf2\n    api_key: huggingface\n".into(), at: "3:5", path: "integrations[0].name", msg: "key `name` is given twice" },
        Case { name: "yaml wrong type", file: "c.yml", text: "groups:\n  - name: g\n    members: alice\n".into(), at: "3:14", path: "groups[0].members", msg: "expected a list, found a string" },
        Case { name: "json unknown key", file: "c.json", text: "{\"integrations\": [\n  {\"name\": \"hf\", \"api_key\": {\"env\": \"T\"},\n   \"modls\": []}]}\n".into(), at: "3:4", path: "integrations[0].modls", msg: "did you mean `models`?" },
        Case { name: "json grant on unknown integration", file: "c.json", text: "{\"grants\": [\n {\"subject\": \"user:x\",\n  \"target\": \"integration:nope\",\n  \"access\": [\"READ\"]}]}".into(), at: "3:13", path: "grants[0].target", msg: "grant names unknown integration `nope`" },
        Case { name: "zero request timeout", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\ntimeouts = { request = 0 }"), at: "3:24", path: "integrations[0].timeouts.request", msg: "`timeouts.request` must be a number of seconds, more than 0" },
        Case { name: "unknown timeout key", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\ntimeouts = { conect = 1 }"), at: "3:14", path: "integrations[0].timeouts.conect", msg: "did you mean `connect`?" },
        Case { name: "no attempts", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\nretry = { max_attempts = 0 }"), at: "3:26", path: "integrations[0].retry.max_attempts", msg: "`retry.max_attempts` must be from 1 (no retry) to 20" },
        Case { name: "negative cold-start wait", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\ncold_start = { wait = -1 }"), at: "3:23", path: "integrations[0].cold_start.wait", msg: "`cold_start.wait` must be a number of seconds, 0 or more" },
        Case { name: "bad management_url", file: "c.toml", text: base_with("name = \"hf\"", "name = \"hf\"\nmanagement_url = \"api.endpoints\""), at: "3:18", path: "integrations[0].management_url", msg: "`management_url` is not a valid URL" },
        Case { name: "zero rate", file: "c.toml", text: base_plus("rate_limit = { per_second = 0 }\n"), at: "10:29", path: "integrations[0].models[0].rate_limit.per_second", msg: "`rate_limit.per_second` must be at least 1" },
        Case { name: "zero concurrency", file: "c.toml", text: base_plus("max_concurrency = 0\n"), at: "10:19", path: "integrations[0].models[0].max_concurrency", msg: "`max_concurrency` must be at least 1" },
        Case { name: "quota on unknown integration", file: "c.toml", text: base_plus("\n[[quotas]]\nsubject = \"user:x\"\nintegration = \"hff\"\nrequests_per_minute = 5\n"), at: "13:15", path: "quotas[0].integration", msg: "did you mean `hf`?" },
        Case { name: "quota for unknown group", file: "c.toml", text: base_plus("\n[[quotas]]\nsubject = \"group:nope\"\nintegration = \"hf\"\nrequests_per_minute = 5\n"), at: "12:11", path: "quotas[0].subject", msg: "quota names unknown group `nope`" },
        Case { name: "budget with an unknown window", file: "c.toml", text: base_plus("\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"weekly\"\n"), at: "15:10", path: "budgets[0].window", msg: "`weekly` is not a window" },
        Case { name: "budget over an uncapped model", file: "c.toml", text: base_plus("\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"day\"\n"), at: "11:1", path: "budgets[0]", msg: "budget `b` covers model `m` of integration `hf`, which has no `defaults.max_tokens`" },
        Case { name: "budget on a prompt", file: "c.toml", text: base_plus("\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"day\"\ntarget = \"prompt:p\"\n"), at: "16:10", path: "budgets[0].target", msg: "a budget counts tokens of models; `prompt:p` is a prompt" },
        Case { name: "budget each member of a user", file: "c.toml", text: base_plus("\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"day\"\neach_member = true\n"), at: "16:15", path: "budgets[0].each_member", msg: "`user:x` is not a group" },
        Case { name: "budget on an unknown model", file: "c.toml", text: base_plus("\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"1h\"\ntarget = \"model:hf:mm\"\n"), at: "16:10", path: "budgets[0].target", msg: "budget names unknown model `mm` of integration `hf`" },
        Case { name: "budget without a usage store", file: "c.toml", text: base_with("tasks = [\"text-generation\"]", "tasks = [\"text-generation\"]\ndefaults = { max_tokens = 5 }") + "\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"day\"\n", at: "12:1", path: "budgets[0]", msg: "budget `b` needs a usage store: there is no `[admission]` section" },
        Case { name: "budget with an [admission] but no store", file: "c.toml", text: base_with("tasks = [\"text-generation\"]", "tasks = [\"text-generation\"]\ndefaults = { max_tokens = 5 }") + "\n[[budgets]]\nname = \"b\"\nsubject = \"user:x\"\ntokens = 10\nwindow = \"day\"\n\n[admission]\nbackend = \"local\"\n", at: "18:1", path: "admission", msg: "budget `b` needs a usage store: `[admission]` has no `store`" },
        Case { name: "toml syntax error", file: "c.toml", text: "[[integrations]]\nname = \n".into(), at: "2:", path: "", msg: "invalid TOML" },
        Case { name: "yaml syntax error", file: "c.yaml", text: "integrations:\n  - name: \"hf\n".into(), at: "", path: "", msg: "invalid YAML" },
        Case { name: "yaml indented with a tab", file: "c.yaml", text: "integrations:\n  - name: hf\n\tapi_key: {env: T}\n".into(), at: "3:1", path: "", msg: "indented with a tab; YAML indents with spaces only" },
        Case { name: "json syntax error", file: "c.json", text: "{\"integrations\": [}\n".into(), at: "1:", path: "", msg: "invalid JSON" },
        Case { name: "root is not a table", file: "c.yaml", text: "- a\n- b\n".into(), at: "1:1", path: "", msg: "the file must hold a table" },
    ]
}

#[test]
fn every_bad_config_case_names_file_location_and_key() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let dir = Dir::new();
        let path = dir.write(case.file, &case.text);
        let out = check(&path);
        let want_loc = format!("{}:{}", path.display(), case.at);
        let want_path = format!("at `{}`", case.path);
        let found = blocks(&out.stderr).iter().any(|b| {
            b.starts_with("error:")
                && b.contains(case.msg)
                && b.contains(&want_loc)
                && (case.path.is_empty() || b.contains(&want_path))
        });
        if out.code != 2 || !found {
            failures.push(format!(
                "case `{}`: exit {} (want 2); want one error with `{}`, `{want_loc}`, `{want_path}`; stderr:\n{}",
                case.name, out.code, case.msg, out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let dir = Dir::new();
    let text = base_with("https://e.example", "not a url")
        + "colour = \"blue\"\n\n[[prompts]]\nname = \"p\"\ntemplate = \"${x\"\nmodels = [\"hf:m\"]\n\n[[grants]]\nsubject = \"group:nope\"\ntarget = \"integration:hf\"\naccess = [\"READ\"]\n";
    let path = dir.write("many.toml", &text);
    let out = check(&path);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let errors: Vec<String> = blocks(&out.stderr)
        .into_iter()
        .filter(|b| b.starts_with("error:"))
        .collect();
    for needle in [
        "`endpoint` is not a valid URL",
        "unknown key `colour`",
        "`${` is not closed",
        "unknown group `nope`",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "missing `{needle}` in:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("config is invalid: 4 errors"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_broken_entry_does_not_cause_false_reference_errors() {
    // The integration fails to parse (bad `active`); grants naming it must not add "unknown integration".
    let dir = Dir::new();
    let text = base_with("name = \"hf\"", "name = \"hf\"\nactive = 3")
        + "\n[[grants]]\nsubject = \"user:x\"\ntarget = \"model:hf:m\"\naccess = [\"READ\"]\n";
    let out = check(&dir.write("c.toml", &text));
    assert_eq!(out.code, 2);
    let errors: Vec<String> = blocks(&out.stderr)
        .into_iter()
        .filter(|b| b.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains("expected `true` or `false`, found an integer"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_name_defined_in_two_files_names_both_places() {
    let dir = Dir::new();
    let a = dir.write("conf/a.toml", BASE);
    dir.write(
        "conf/b.yaml",
        "integrations:\n  - name: hf\n    api_key: huggingface\n",
    );
    let out = check(&dir.path().join("conf"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let b = dir.path().join("conf/b.yaml");
    let block = blocks(&out.stderr)
        .into_iter()
        .find(|b| b.contains("integration `hf` is defined twice"))
        .expect(&out.stderr);
    assert!(block.contains(&format!("{}:2:11", b.display())), "{block}");
    assert!(
        block.contains(&format!("first defined at {}:2:8", a.display())),
        "{block}"
    );
}

#[test]
fn unreadable_paths_are_bad_input() {
    let dir = Dir::new();
    let txt = dir.write("c.txt", BASE);
    let out = check(&txt);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "is not a config file: use the extension `.toml`, `.yaml`, `.yml` or `.json`"
        ),
        "{}",
        out.stderr
    );

    let missing = dir.path().join("nope.toml");
    let out = check(&missing);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&format!(
            "config path `{}` does not exist",
            missing.display()
        )),
        "{}",
        out.stderr
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = check(&empty);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("holds no `.toml`, `.yaml`, `.yml` or `.json` file"),
        "{}",
        out.stderr
    );

    let out = crate::support::run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("no config given: pass `--config PATH` or set `HFCONNECT_CONFIG`"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_output_lists_every_diagnostic() {
    let dir = Dir::new();
    let path = dir.write("c.toml", &base_with("api = \"tgi\"", "api = \"tgl\""));
    let out = crate::support::run(&[
        "config",
        "check",
        "--json",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap()
        .clone();
    assert_eq!(d["line"], 8);
    assert_eq!(d["column"], 7);
    assert_eq!(d["path"], "integrations[0].models[0].api");
    assert_eq!(d["file"], path.to_str().unwrap());
}
