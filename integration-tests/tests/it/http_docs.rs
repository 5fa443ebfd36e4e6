//! `docs/http-api.md` cannot drift: its field tables are the request and
//! answer schemas of `/openapi.json`, and its example requests, sent to
//! `serve` on the local example config (pointed at a fake), answer with the
//! fields its answer table lists.

use std::collections::BTreeSet;

use hfconnect_integration_tests::fake_hf::FakeHf;
use hfconnect_integration_tests::repo_root;
use serde_json::Value;

use crate::support::start_with;

const KEY: &str = "hfc_local_demo_key_0000000000000000000000000000000000000000000000000";

/// The field names in the first column of each table row of `section`.
fn table_fields(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The text of `### heading` up to the next heading.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/http-api.md has no `{heading}`"));
    let rest = &doc[start + heading.len()..];
    let end = rest
        .find("\n### ")
        .or_else(|| rest.find("\n## "))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The first ```json block of a section.
fn json_example(section: &str) -> Value {
    let block = section
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an example");
    serde_json::from_str(block).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_guide_matches_openapi_and_its_examples_run() {
    let doc = std::fs::read_to_string(repo_root().join("docs/http-api.md")).unwrap();
    let fake = FakeHf::start("hf_fake_token").await.unwrap();
    let template = repo_root().join("config-examples/templates/instruct.jinja");
    let config = std::fs::read_to_string(repo_root().join("config-examples/local.toml"))
        .unwrap()
        .replace("http://127.0.0.1:8089", &fake.url())
        .replace(
            "\"templates/instruct.jinja\"",
            &format!("{:?}", template.to_str().unwrap()),
        );
    let s = start_with(config, |_| {}).await;
    let api: Value = reqwest::get(format!("{}/openapi.json", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer = section(&doc, "### The answer");
    let answer_fields = table_fields(answer);
    for route in ["text-complete", "chat-complete", "summarize", "embed"] {
        let path = format!("/v1/tasks/{route}");
        let part = section(&doc, &format!("### `POST {path}`"));
        let op = &api["paths"][&path]["post"];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            table_fields(part),
            keys(&schema["properties"]),
            "{path}: the guide's fields and /openapi.json's"
        );
        let output = &op["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            answer_fields,
            keys(&output["properties"]),
            "the answer's fields"
        );
        // The example runs, and answers with the documented fields.
        let example = json_example(part);
        let r = reqwest::Client::new()
            .post(format!("{}{path}", s.url))
            .bearer_auth(KEY)
            .json(&example)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{path} {example}: {body}");
        // `dimensions` is the embed answer's alone.
        let mut want = answer_fields.clone();
        if route != "embed" {
            want.remove("dimensions");
        }
        assert_eq!(keys(&body), want, "{path}: {body}");
    }
    let mut example_answer = keys(&json_example(answer));
    example_answer.insert("dimensions".into());
    assert_eq!(example_answer, answer_fields);
}
