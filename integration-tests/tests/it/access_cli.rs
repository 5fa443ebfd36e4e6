//! `hfconnect access explain` and `access list` through the binary: allowed,
//! denied, group-scoped, admin, inactive, and bad input.

use crate::support::fixtures::ACCESS_CONFIG as CONFIG;
use crate::support::{assert_exit, assert_stdout, words};
use crate::support::{run, Dir, Output};

/// `access explain` with the words of `line`, on the dir's `c.toml`.
fn explain(dir: &Dir, line: &str) -> Output {
    let path = dir.path().join("c.toml");
    let mut all = vec!["access", "explain", "--config", path.to_str().unwrap()];
    all.extend(words(line));
    run(&all)
}

/// `access explain LINE` exits with `code` and prints each of `needles`.
fn expect(dir: &Dir, line: &str, code: i32, needles: &[&str]) -> Output {
    let out = explain(dir, line);
    assert_exit(&out, code, needles);
    out
}

fn setup() -> Dir {
    let dir = Dir::new();
    dir.write("c.toml", CONFIG);
    dir
}

#[test]
fn allowed_by_an_integration_grant_names_the_grant() {
    let dir = setup();
    let out = expect(
        &dir,
        "--as user:alice@acme.com --integration hf-prod --model mistral",
        0,
        &[],
    );
    assert!(
        out.stdout
            .starts_with("ALLOWED: `user:alice@acme.com` may `EXECUTE` on `model:hf-prod:mistral`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("`group:support` may READ, EXECUTE on `integration:hf-prod` (grant at "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("c.toml:71:1)"),
        "the grant's position: {}",
        out.stdout
    );
}

#[test]
fn denied_says_what_was_checked_and_what_is_missing() {
    let dir = setup();
    let out = expect(
        &dir,
        "--as user:alice@acme.com --integration hf-research --model llama",
        3,
        &[],
    );
    assert!(out.stdout.starts_with("DENIED"), "{}", out.stdout);
    assert_stdout(
        &out,
        3,
        &[
            "no grant gives `EXECUTE` on `model:hf-research:llama`",
            "checked subjects `user:alice@acme.com`, `group:support`",
            "`group:support` has only READ on `integration:hf-research`",
            "needed: a grant of `EXECUTE` on `model:hf-research:llama` or `integration:hf-research` to `user:alice@acme.com` or one of its groups",
        ],
    );
}

#[test]
fn an_undeclared_user_is_a_principal_without_grants() {
    let dir = setup();
    let out = explain(&dir, "--as user:nobody@acme.com --integration hf-prod");
    assert_exit(&out, 3, &["(no groups)"]);
}

#[test]
fn group_scoping_narrows_to_one_group() {
    let dir = setup();
    let base = "--as user:carol@acme.com --integration hf-research --model llama";
    // carol is in support and research: unscoped, research's grant allows.
    expect(&dir, base, 0, &[]);
    expect(
        &dir,
        &format!("{base} --group research"),
        0,
        &["scoped to group `research`"],
    );
    // Scoped to support, research's grant no longer counts.
    expect(
        &dir,
        &format!("{base} --group support"),
        3,
        &["scoped to group `support`: grants of the caller's other groups do not count"],
    );
    // A group the caller is not in is bad input.
    expect(
        &dir,
        &format!("{base} --group admins"),
        2,
        &["`user:carol@acme.com` is not a member of group `admins`"],
    );
    expect(
        &dir,
        &format!("{base} --group nope"),
        2,
        &["unknown group `nope`"],
    );
}

#[test]
fn applications_get_their_grants_and_their_groups() {
    let dir = setup();
    expect(
        &dir,
        "--as app:billing --integration hf-prod --model bart",
        0,
        &[],
    );
    expect(
        &dir,
        "--as app:billing --integration hf-prod --model mistral",
        3,
        &[],
    );
    expect(
        &dir,
        "--as app:batch --integration hf-research --model llama",
        0,
        &["`group:research` may EXECUTE on `model:hf-research:llama`"],
    );
}

#[test]
fn admin_is_allowed_everything_active() {
    let dir = setup();
    for access in ["EXECUTE", "DELETE", "CREATE"] {
        let out = explain(
            &dir,
            &format!("--as user:root@acme.com --integration hf-research --access {access}"),
        );
        assert_stdout(&out, 0, &["allowed by the `ADMIN` role of group `admins`"]);
    }
}

#[test]
fn inactive_integration_and_model_are_refused_before_grants() {
    let dir = setup();
    // support has EXECUTE on hf-staging, but it is inactive.
    expect(
        &dir,
        "--as user:alice@acme.com --integration hf-staging --model mistral",
        3,
        &["integration `hf-staging` is inactive"],
    );
    // Even an admin.
    let out = explain(&dir, "--as user:root@acme.com --integration hf-staging");
    assert_eq!(out.code, 3, "{}", out.all());
    expect(
        &dir,
        "--as user:alice@acme.com --integration hf-prod --model retired",
        3,
        &["model `retired` of integration `hf-prod` is inactive"],
    );
}

#[test]
fn prompts_need_their_own_grant() {
    let dir = setup();
    expect(
        &dir,
        "--as user:alice@acme.com --prompt summary --access READ",
        0,
        &[],
    );
    expect(
        &dir,
        "--as app:batch --prompt summary --access READ",
        3,
        &[],
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = setup();
    let cases: &[(&str, &str)] = &[
        ("--as app:nope --integration hf-prod", "unknown application `nope`"),
        ("--as group:support --integration hf-prod", "`--as` names `group:support`; it takes `user:…` or `app:…`"),
        ("--as alice@acme.com --integration hf-prod", "`alice@acme.com` is not a subject; write `user:ID` or `app:NAME` (did you mean `user:alice@acme.com`?)"),
        ("--as user:alice@acme.com --integration hf-prd", "unknown integration `hf-prd` (did you mean `hf-prod`?)"),
        ("--as user:alice@acme.com --integration hf-prod --model mistrl", "unknown model `mistrl` of integration `hf-prod` (did you mean `mistral`?)"),
        ("--as user:alice@acme.com --prompt sumary", "unknown prompt `sumary` (did you mean `summary`?)"),
        ("--as user:alice@acme.com --integration hf-prod --access RUN", "unknown access `RUN`"),
    ];
    for (args, needle) in cases {
        let out = explain(&dir, args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(needle),
            "{args:?}: want `{needle}` in {}",
            out.stderr
        );
    }
}

#[test]
fn explain_json_carries_the_decision_and_grant() {
    let dir = setup();
    let out = explain(
        &dir,
        "--as user:alice@acme.com --integration hf-prod --model mistral --json",
    );
    assert_eq!(out.code, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["reason"]["kind"], "granted");
    assert_eq!(v["reason"]["grant"]["target"], "integration:hf-prod");
    assert_eq!(v["reason"]["grant"]["line"], 71);
    assert_eq!(v["principal"]["groups"], serde_json::json!(["support"]));
}

#[test]
fn list_shows_what_a_subject_can_read_or_execute_and_why() {
    let dir = setup();
    let path = dir.path().join("c.toml");
    let out = run(&[
        "access",
        "list",
        "--config",
        path.to_str().unwrap(),
        "--as",
        "user:carol@acme.com",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let targets: Vec<(String, Vec<String>)> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let acc = t["access"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["access"].as_str().unwrap().to_string())
                .collect();
            (t["target"].as_str().unwrap().to_string(), acc)
        })
        .collect();
    let expect: Vec<(String, Vec<String>)> = [
        ("integration:hf-prod", vec!["READ", "EXECUTE"]),
        ("model:hf-prod:mistral", vec!["READ", "EXECUTE"]),
        ("model:hf-prod:bart", vec!["READ", "EXECUTE"]),
        ("integration:hf-research", vec!["READ"]),
        ("model:hf-research:llama", vec!["READ", "EXECUTE"]),
        ("prompt:summary", vec!["READ"]),
    ]
    .into_iter()
    .map(|(t, a)| (t.to_string(), a.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(targets, expect);

    let out = run(&[
        "access",
        "list",
        "--config",
        path.to_str().unwrap(),
        "--as",
        "user:carol@acme.com",
        "--group",
        "research",
    ]);
    assert_exit(&out, 0, &["model:hf-research:llama: EXECUTE"]);
    assert!(!out.stdout.contains("hf-prod"), "{}", out.stdout);

    let out = run(&[
        "access",
        "list",
        "--config",
        path.to_str().unwrap(),
        "--as",
        "user:nobody",
    ]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("nothing: no grant gives READ or EXECUTE"),
        "{}",
        out.stdout
    );
}
