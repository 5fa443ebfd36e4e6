//! Chat templates for raw TGI endpoints: rendered like transformers (trim and
//! lstrip blocks, Python string methods, `raise_exception`), checked against
//! text written by hand for a ChatML and a Llama-2-style template, through
//! `template render`, the Connector and `config check`.

use hfconnect::access::Subject;
use hfconnect::config::LoadOptions;
use hfconnect::task::ChatCompleteInput;
use hfconnect::task::{Task, TaskErrorKind};
use hfconnect::Connector;
use hfconnect::TaskRequest;
use hfconnect_integration_tests::fake_hf::FakeHf;
use serde_json::json;

use crate::support::env;
use crate::support::TOKEN;
use crate::support::{run, Dir};

/// ChatML written across lines: with trim_blocks/lstrip_blocks the newlines after block tags vanish.
const CHATML: &str = "{% for message in messages %}\n<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}\n{% if add_generation_prompt %}\n<|im_start|>assistant\n{% endif %}\n";

const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

fn setup_files(dir: &Dir, url: &str) -> std::path::PathBuf {
    dir.write("templates/chatml.jinja", CHATML);
    let tokenizer_config = json!({
        "bos_token": "<s>",
        "eos_token": {"content": "</s>", "lstrip": false},
        "chat_template": LLAMA2,
    });
    dir.write(
        "templates/tokenizer_config.json",
        &tokenizer_config.to_string(),
    );
    dir.write(
        "c.toml",
        &format!(
            r#"
[[integrations]]
name = "hf"
api_key = {{ env = "HF_TOKEN" }}

[[integrations.models]]
name = "qwen"
endpoint = "{url}/"
api = "tgi"
tasks = ["chat"]
chat_template = "templates/chatml.jinja"

[[integrations.models]]
name = "llama2"
endpoint = "{url}/"
api = "tgi"
tasks = ["chat"]
chat_template = "templates/tokenizer_config.json"

[[groups]]
name = "g"
members = ["alice"]

[[grants]]
subject = "group:g"
target = "integration:hf"
access = ["EXECUTE"]
"#
        ),
    )
}

const CHATML_EXPECTED: &str = "<|im_start|>system\nYou are brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
const LLAMA2_EXPECTED: &str = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST]";

#[test]
fn template_render_matches_hand_written_text() {
    let dir = Dir::new();
    let cfg = setup_files(&dir, "http://127.0.0.1:9");
    let c = cfg.to_str().unwrap();
    let out = run(&[
        "template",
        "render",
        "--config",
        c,
        "--integration",
        "hf",
        "--model",
        "qwen",
        "--message",
        "system:You are brief.",
        "--message",
        "user:Hi",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, CHATML_EXPECTED);

    let out = run(&[
        "template",
        "render",
        "--config",
        c,
        "--integration",
        "hf",
        "--model",
        "llama2",
        "--message",
        "system:Be brief.",
        "--message",
        "user:Hi",
        "--message",
        "assistant: Hello! ",
        "--message",
        "user:How are you?",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout, LLAMA2_EXPECTED);

    let out = run(&[
        "template",
        "render",
        "--config",
        c,
        "--model",
        "hf:llama2",
        "--message",
        "user:a",
        "--message",
        "user:b",
    ]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("the chat template refused the messages: Conversation roles must alternate"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn chat_on_a_tgi_model_renders_the_template_and_calls_generate() {
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let dir = Dir::new();
    let cfg = setup_files(&dir, &fake.url());
    let c = Connector::from_path(&cfg, &LoadOptions::new().env(env())).unwrap();
    let alice = c.principal(&Subject::User("alice".into()), None).unwrap();
    let task = |model: &str, messages: serde_json::Value| {
        Task::ChatComplete(
            serde_json::from_value::<ChatCompleteInput>(
                json!({"llmProvider": "hf", "model": model, "messages": messages}),
            )
            .unwrap(),
        )
    };
    c.run(TaskRequest::new(&alice, &task("qwen", json!([{"role": "system", "message": "You are brief."}, {"role": "user", "message": "Hi"}])))).await.output().unwrap();
    assert_eq!(
        fake.requests_to("/generate")[0].json()["inputs"],
        CHATML_EXPECTED
    );
    assert!(fake.requests_to("/chat/completions").is_empty());

    let e = c
        .run(TaskRequest::new(
            &alice,
            &task(
                "llama2",
                json!([{"role": "user", "message": "a"}, {"role": "user", "message": "b"}]),
            ),
        ))
        .await
        .output()
        .unwrap_err();
    assert_eq!(e.kind(), TaskErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("Conversation roles must alternate"),
        "{e}"
    );
}

#[test]
fn a_template_that_does_not_compile_is_a_config_error() {
    let dir = Dir::new();
    let cfg = setup_files(&dir, "http://127.0.0.1:9");
    dir.write(
        "templates/chatml.jinja",
        "{% for message in messages %}{{ message.content }}",
    );
    let out = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("the chat template does not compile"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("at `integrations[0].models[0].chat_template`"),
        "{}",
        out.stderr
    );
}
