//! `hfconnect access who-can`, `access diff` and `access check` through the
//! binary: every subject with its path, nobody on an inactive target, what
//! an edit grants and revokes (text, JSON, markdown; the exit codes of a CI
//! gate), and statements that hold or break.

use serde_json::Value;

use crate::support::fixtures::ACCESS_CONFIG as CONFIG;
use crate::support::{assert_exit, run, Dir, Output};

fn who_can(dir: &Dir, args: &[&str]) -> Output {
    let path = dir.path().join("c.toml");
    let mut all = vec!["access", "who-can", "--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn who_can_names_every_subject_with_its_path() {
    let dir = Dir::new();
    dir.write("c.toml", CONFIG);
    // The line of support's grant on hf-prod, as the fixture has it.
    let at = CONFIG
        .find("[[grants]]\nsubject = \"group:support\"\ntarget = \"integration:hf-prod\"")
        .unwrap();
    let line = format!("c.toml:{}:1", CONFIG[..at].matches('\n').count() + 1);
    let out = who_can(&dir, &["--integration", "hf-prod", "--model", "mistral"]);
    assert_exit(
        &out,
        0,
        &[
            "who may EXECUTE on `model:hf-prod:mistral`:",
            "user:alice@acme.com",
            "via group `support`: grant at ",
            &line,
            "user:root@acme.com",
            "the `ADMIN` role of group `admins`",
            "any other user: no",
        ],
    );
    // carol is in support too; bob and the apps are not allowed.
    assert!(out.stdout.contains("user:carol@acme.com"), "{}", out.all());
    assert!(!out.stdout.contains("app:billing"), "{}", out.all());
    assert!(!out.stdout.contains("app:batch"), "{}", out.all());

    // A direct grant, and an application through its group.
    let out = who_can(
        &dir,
        &["--integration", "hf-research", "--model", "llama", "--json"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let who: Vec<&str> = v["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        who,
        ["user:carol@acme.com", "user:root@acme.com", "app:batch"],
        "{v}"
    );
    assert_eq!(v["allowed"][2]["path"]["via_group"], "research", "{v}");
    assert_eq!(v["any_other_user"], false);

    // Inactive: nobody, and why.
    let out = who_can(&dir, &["--integration", "hf-staging", "--model", "mistral"]);
    assert_exit(
        &out,
        0,
        &["nobody, because integration `hf-staging` is inactive"],
    );
    // A prompt, and bad input.
    let out = who_can(&dir, &["--prompt", "summary", "--access", "READ"]);
    assert_exit(&out, 0, &["user:alice@acme.com", "user:carol@acme.com"]);
    let out = who_can(&dir, &["--integration", "hf-prod", "--model", "mistrl"]);
    assert_exit(
        &out,
        2,
        &["unknown model `mistrl`", "did you mean `mistral`"],
    );
}

fn diff(dir: &Dir, extra: &[&str]) -> Output {
    let old = dir.path().join("old.toml");
    let new = dir.path().join("new.toml");
    let mut all = vec![
        "access",
        "diff",
        "--old",
        old.to_str().unwrap(),
        "--new",
        new.to_str().unwrap(),
    ];
    all.extend_from_slice(extra);
    run(&all)
}

#[test]
fn diff_says_what_a_change_grants_and_revokes_and_gates_on_it() {
    let dir = Dir::new();
    dir.write("old.toml", CONFIG);
    // Nothing changed: exit 0.
    dir.write("new.toml", CONFIG);
    assert_exit(&diff(&dir, &[]), 0, &["access: 0 gained, 0 revoked"]);

    // bob joins support (gains hf-prod), batch leaves research (loses llama),
    // a quota appears.
    let edited = CONFIG
        .replace(
            "members = [\"alice@acme.com\", \"carol@acme.com\"]",
            "members = [\"alice@acme.com\", \"carol@acme.com\", \"bob@acme.com\"]",
        )
        .replace(
            "name = \"batch\"\ngroups = [\"research\"]",
            "name = \"batch\"\ngroups = []",
        )
        + "\n[[quotas]]\nsubject = \"group:support\"\nintegration = \"hf-prod\"\nrequests_per_minute = 60\n";
    dir.write("new.toml", &edited);
    let out = diff(&dir, &[]);
    assert_exit(
        &out,
        1,
        &[
            "user:bob@acme.com\n  + ",
            "  + EXECUTE on `model:hf-prod:mistral`: via group `support`",
            "(before: no grant)",
            "app:batch\n  - EXECUTE on `model:hf-research:llama`: no grant (before: via group `research`",
            "limits, quotas and budgets (not access):",
            "quota of `group:support` on integration `hf-prod`: none -> 60 tasks per minute",
        ],
    );
    let out = diff(&dir, &["--format", "json"]);
    assert_eq!(out.code, 1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["revoked"], 1, "{v}");
    assert!(v["gained"].as_u64().unwrap() >= 2, "{v}");
    let out = diff(&dir, &["--format", "markdown"]);
    assert_exit(
        &out,
        1,
        &[
            "| subject | change | access | target | before | after |",
            "| `app:batch` | revoked | EXECUTE | `model:hf-research:llama` |",
            "#### Limits, quotas and budgets (not access)",
        ],
    );
    // `--fail-on gained`: a change that only revokes passes.
    dir.write(
        "new.toml",
        &CONFIG.replace(
            "name = \"batch\"\ngroups = [\"research\"]",
            "name = \"batch\"\ngroups = []",
        ),
    );
    assert_exit(
        &diff(&dir, &["--fail-on", "gained"]),
        0,
        &["0 gained, 1 revoked"],
    );
    assert_eq!(diff(&dir, &[]).code, 1);

    // Either side broken: exit 2, located as `config check` locates it.
    dir.write(
        "new.toml",
        &CONFIG.replace("api = \"chat\"", "api = \"chta\""),
    );
    assert_exit(
        &diff(&dir, &[]),
        2,
        &["the new config", "new.toml:", "unknown value `chta`"],
    );
}

#[test]
fn check_reports_each_statement_with_what_breaks_it() {
    let dir = Dir::new();
    let config = dir.write("c.toml", CONFIG);
    let statements = dir.write(
        "rules.toml",
        r#"
[[assert]]
never = "group:research"
access = "EXECUTE"
target = "integration:hf-prod"

[[assert]]
only = ["group:support", "group:admins"]
access = "EXECUTE"
target = "model:hf-prod:mistral"

[[assert]]
may = "app:batch"
access = "EXECUTE"
target = "model:hf-research:llama"

[[assert]]
never = "app:billing"
access = "EXECUTE"
target = "integration:hf-prod"
description = "billing runs nothing on production"
"#,
    );
    let out = run(&[
        "access",
        "check",
        "--config",
        config.to_str().unwrap(),
        "--assert",
        statements.to_str().unwrap(),
    ]);
    // carol is in research and support: she may run hf-prod, which breaks
    // the first; billing's grant on bart breaks the last.
    assert_exit(
        &out,
        1,
        &[
            "FAIL group:research never EXECUTE on integration:hf-prod",
            "`user:carol@acme.com` may EXECUTE on `integration:hf-prod`: via group `support`",
            "PASS only group:support, group:admins may EXECUTE on model:hf-prod:mistral",
            "PASS app:batch may EXECUTE on model:hf-research:llama",
            "FAIL app:billing never EXECUTE on integration:hf-prod",
            "`app:billing` may EXECUTE on `model:hf-prod:bart`: direct grant at",
            "2 of 4 statements hold",
        ],
    );
    // A file that says nothing sensible is bad input, with its line.
    let broken = dir.write(
        "bad.toml",
        "[[assert]]\nnever = \"group:nobody\"\naccess = \"EXECUTE\"\ntarget = \"integration:hf-prod\"\n",
    );
    let out = run(&[
        "access",
        "check",
        "--config",
        config.to_str().unwrap(),
        "--assert",
        broken.to_str().unwrap(),
    ]);
    assert_exit(&out, 2, &["bad.toml:1: unknown group `nobody`"]);
    let broken = dir.write("bad.toml", "[[assert]]\nnevr = \"group:support\"\n");
    let out = run(&[
        "access",
        "check",
        "--config",
        config.to_str().unwrap(),
        "--assert",
        broken.to_str().unwrap(),
    ]);
    assert_exit(&out, 2, &["bad.toml:2:", "nevr"]);
}

#[test]
fn list_shows_the_limits_quotas_and_budgets_on_each_target() {
    let dir = Dir::new();
    let text = CONFIG.replace(
        "name = \"hf-research\"\napi_key = { env = \"HF_TOKEN\" }",
        "name = \"hf-research\"\napi_key = { env = \"HF_TOKEN\" }\nrate_limit = { per_second = 5 }",
    ) + "\n[[quotas]]\nsubject = \"group:research\"\nintegration = \"hf-research\"\nrequests_per_minute = 30\n";
    let config = dir.write("c.toml", &text);
    let out = run(&[
        "access",
        "list",
        "--config",
        config.to_str().unwrap(),
        "--as",
        "app:batch",
    ]);
    assert_exit(
        &out,
        0,
        &[
            "model:hf-research:llama: EXECUTE",
            "bounded by the rate limit of integration `hf-research`: 5 per second, burst 5",
            "bounded by the quota of `group:research`: 30 tasks per minute",
        ],
    );
}
