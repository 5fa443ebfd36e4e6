//! Chat templates: turning `messages` into the prompt a raw text-generation
//! endpoint expects, as the model's tokenizer config describes it.
//!
//! Rendered with minijinja the way TGI does (Python-compatible string methods,
//! loop controls, `raise_exception`, `strftime_now`) and with `trim_blocks` and
//! `lstrip_blocks` on, as transformers renders them, which is what template
//! authors write for.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::provider::ChatMessage;

/// A loaded, compiled chat template and its special tokens.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

fn token(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// Load a template: a `tokenizer_config.json` or `chat_template.json`
    /// (`chat_template` as a string, or a list of `{name, template}` where
    /// `default` is used; `bos_token`/`eos_token` as strings or `{content}`),
    /// or any other file holding the template text itself.
    pub fn load(path: &Path) -> Result<ChatTemplate, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
        if !is_json {
            return ChatTemplate::new(&text, "", "");
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
        let source = match v.get("chat_template") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!(
                        "`{}` lists chat templates but none named `default`",
                        path.display()
                    )
                })?
                .to_string(),
            _ => return Err(format!("`{}` has no `chat_template`", path.display())),
        };
        ChatTemplate::new(
            &source,
            &token(v.get("bos_token")),
            &token(v.get("eos_token")),
        )
    }

    /// Compile a template from its source.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, String> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_function("strftime_now", |format: String| {
            chrono::Utc::now().format(&format).to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the chat template does not compile: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Render `messages`, ending with the generation prompt for the assistant.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let tmpl = self.env.get_template("chat").map_err(|e| e.to_string())?;
        tmpl.render(minijinja::context! {
            messages => messages,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            add_generation_prompt => true,
            tools => Value::Null,
        })
        .map_err(|e| match e.kind() {
            minijinja::ErrorKind::InvalidOperation => format!(
                "the chat template refused the messages: {}",
                e.detail().unwrap_or("no reason given")
            ),
            _ => format!("the chat template failed: {e}"),
        })
    }
}
