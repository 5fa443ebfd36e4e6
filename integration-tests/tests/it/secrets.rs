//! API keys never leak: a unique marker used as the key (inline, from an env
//! var, from a file) must not appear in any output, Debug dump or error, even
//! when the line holding it is the broken one. Missing and empty key files are
//! warnings at check time.

use hfconnect::config::{load, LoadOptions};

use crate::support::{Dir, Output, Run};

const MARKER: &str = "hf_MARKERq7Zt0kenXw3";

fn config(token_file: &str) -> String {
    format!(
        r#"
[[integrations]]
name = "inline"
api_key = {{ value = "{MARKER}-inline" }}

[[integrations.models]]
name = "m"
endpoint = "https://e.example"
api = "tgi"
tasks = ["text-generation"]

[[integrations]]
name = "from-env"
api_key = {{ env = "SECRET_UNDER_TEST" }}

[[integrations.models]]
name = "m"
endpoint = "https://e.example"
api = "chat"
tasks = ["chat"]

[[integrations]]
name = "from-file"
api_key = {{ file = "{token_file}" }}

[[integrations.models]]
name = "m"
endpoint = "https://e.example"
api = "chat"
tasks = ["chat"]

[[groups]]
name = "g"
members = ["u"]

[[grants]]
subject = "group:g"
target = "integration:from-env"
access = ["READ", "EXECUTE"]
"#
    )
}

fn run_with_secret(args: &[&str]) -> Output {
    Run::new(args)
        .unwrap()
        .env("SECRET_UNDER_TEST", format!("  {MARKER}-env\n"))
        .output()
        .unwrap()
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains("MARKERq7Zt0ken"),
        "the key leaked in {what}:\n{text}"
    );
}

#[test]
fn keys_never_appear_in_cli_output() {
    let dir = Dir::new();
    dir.write("token", &format!("{MARKER}-file\n"));
    let path = dir.write("c.toml", &config("token"));
    let p = path.to_str().unwrap();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("config check", vec!["config", "check", "--config", p]),
        (
            "config check --json",
            vec!["config", "check", "--json", "--config", p],
        ),
        (
            "access explain",
            vec![
                "access",
                "explain",
                "--config",
                p,
                "--as",
                "user:u",
                "--integration",
                "from-env",
            ],
        ),
        (
            "access explain denied",
            vec![
                "access",
                "explain",
                "--config",
                p,
                "--as",
                "user:u",
                "--integration",
                "inline",
                "--json",
            ],
        ),
        (
            "access list",
            vec!["access", "list", "--config", p, "--as", "user:u"],
        ),
    ];
    for (what, args) in runs {
        let out = run_with_secret(&args);
        assert!(out.code == 0 || out.code == 3, "{what}: {}", out.all());
        assert_clean(what, &out.all());
    }
    // The keys were really read: all three are available, and the inline one is warned about.
    let out = run_with_secret(&["config", "check", "--config", p]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.matches("(available)").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("the key is written in the config file"),
        "{}",
        out.stderr
    );
}

#[test]
fn keys_never_appear_in_debug_dumps() {
    let dir = Dir::new();
    dir.write("token", &format!("{MARKER}-file\n"));
    let path = dir.write("c.toml", &config("token"));
    let env: hfconnect::config::EnvLookup =
        std::sync::Arc::new(|k| (k == "SECRET_UNDER_TEST").then(|| format!("{MARKER}-env")));
    let loaded = load(&path, &LoadOptions::new().env(env)).unwrap();
    for i in hfconnect::testing::catalog_of(&loaded).integrations() {
        assert!(
            i.api_key().is_available(),
            "{}: {:?}",
            i.name(),
            i.api_key().unavailable_reason()
        );
        assert_clean("Display of a key", &i.api_key().to_string());
    }
    assert_clean("Debug", &format!("{loaded:?}"));
    assert_clean("pretty Debug", &format!("{loaded:#?}"));
    assert!(format!("{loaded:?}").contains("[REDACTED]"));
}

#[test]
fn keys_never_appear_in_errors() {
    let broken = [
        ("literal.toml", format!("[[integrations]]\nname = \"x\"\napi_key = \"{MARKER}\"\n")),
        ("syntax.toml", format!("[[integrations]]\nname = \"x\"\napi_key = {{ value = \"{MARKER}\" \n")),
        ("syntax2.toml", format!("[[integrations]]\nname = \"x\"\napi_key = {{ value = \"{MARKER} }}\n")),
        ("syntax.yaml", format!("integrations:\n  - name: x\n    api_key: {{value: \"{MARKER}\"\n")),
        ("syntax.json", format!("{{\"integrations\": [{{\"name\": \"x\", \"api_key\": {{\"value\": \"{MARKER}\"}}]}}")),
        ("wrongtype.toml", format!("[[integrations]]\nname = \"x\"\napi_key = {{ value = [\"{MARKER}\"] }}\n")),
        ("asenv.toml", format!("[[integrations]]\nname = \"x\"\napi_key = {{ env = \"{MARKER}\" }}\nactive = \"{MARKER}\"\n")),
        ("badkey.yaml", format!("integrations:\n  - name: x\n    api_key: {{ vault: \"{MARKER}\" }}\n")),
    ];
    for (name, text) in &broken {
        let dir = Dir::new();
        let path = dir.write(name, text);
        for json in [false, true] {
            let mut args = vec!["config", "check", "--config", path.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            let out = run_with_secret(&args);
            assert_eq!(out.code, 2, "{name} should be invalid: {}", out.all());
            assert_clean(name, &out.all());
        }
        let err = load(&path, &LoadOptions::new()).unwrap_err();
        assert_clean(name, &format!("{err} {err:?}"));
    }
}

#[test]
fn missing_or_empty_key_files_warn_at_check_time() {
    let dir = Dir::new();
    dir.write("empty-token", "  \n");
    for (file, needle) in [
        ("missing-token", "does not exist"),
        ("empty-token", "is empty"),
    ] {
        let path = dir.write("c.toml", &config(file));
        let out = run_with_secret(&["config", "check", "--config", path.to_str().unwrap()]);
        assert_eq!(
            out.code,
            0,
            "a missing key is a warning at check time: {}",
            out.all()
        );
        let want = format!("token file `{}` {needle}", dir.path().join(file).display());
        assert!(
            out.stderr.contains(&want),
            "want `{want}` in {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("integrations[2].api_key"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.contains("(NOT AVAILABLE)"), "{}", out.stdout);
    }
}
