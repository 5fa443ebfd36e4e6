//! Prompt templates with `${var}` placeholders (the Orkes convention).
//!
//! A template is parsed once, at config load, so a malformed placeholder is a
//! config error rather than a surprise at run time. Rendering is strict: every
//! placeholder must be given a value.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// A parsed `${var}` template.
#[derive(Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// What is wrong with a template, and where (0-based character offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset} of the template)")]
pub struct TemplateError {
    /// 0-based character offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Placeholders that were not given a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing prompt variables: {}", .0.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "))]
pub struct MissingVariables(pub Vec<String>);

fn is_var_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl PromptTemplate {
    /// Parse a template. `${name}` is a placeholder; a `$` not followed by `{`
    /// is plain text.
    pub(crate) fn parse(source: &str) -> Result<PromptTemplate, TemplateError> {
        let chars: Vec<char> = source.chars().collect();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars.get(i).copied().unwrap_or_default();
            if c == '$' && chars.get(i + 1) == Some(&'{') {
                let start = i;
                let mut j = i + 2;
                let mut name = String::new();
                let mut closed = false;
                while let Some(&d) = chars.get(j) {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    if d == '$' && chars.get(j + 1) == Some(&'{') || d == '\n' {
                        break;
                    }
                    name.push(d);
                    j += 1;
                }
                if !closed {
                    return Err(TemplateError {
                        offset: start,
                        message: "`${` is not closed by `}`".into(),
                    });
                }
                let name_ok =
                    name.chars().next().is_some_and(is_var_start) && name.chars().all(is_var_char);
                if !name_ok {
                    let message = if name.is_empty() {
                        "empty placeholder `${}`".to_string()
                    } else {
                        format!(
                            "`${{{name}}}` is not a valid placeholder: names start with a letter or `_` \
                             and hold letters, digits, `_`, `-` or `.`"
                        )
                    };
                    return Err(TemplateError {
                        offset: start,
                        message,
                    });
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Var(name));
                i = j + 1;
            } else {
                text.push(c);
                i += 1;
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(PromptTemplate {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholder names, sorted, each once.
    pub fn variables(&self) -> BTreeSet<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v.as_str()),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// Fill every placeholder; a placeholder without a value is an error naming all of them.
    pub fn render(&self, vars: &HashMap<String, String>) -> Result<String, MissingVariables> {
        let missing: Vec<String> = self
            .variables()
            .into_iter()
            .filter(|v| !vars.contains_key(*v))
            .map(str::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(MissingVariables(missing));
        }
        let mut out = String::with_capacity(self.source.len());
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(vars.get(v).map_or("", String::as_str)),
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("variables", &self.variables())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = PromptTemplate::parse("Summarize ${ticket} for ${user.name}; cost $5, ${ticket}")
            .unwrap();
        assert_eq!(
            t.variables().into_iter().collect::<Vec<_>>(),
            ["ticket", "user.name"]
        );
        let vars = HashMap::from([
            ("ticket".to_string(), "T-1".to_string()),
            ("user.name".to_string(), "Ann".to_string()),
        ]);
        assert_eq!(
            t.render(&vars).unwrap(),
            "Summarize T-1 for Ann; cost $5, T-1"
        );
        let err = t.render(&HashMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing prompt variables: `ticket`, `user.name`"
        );
    }

    #[test]
    fn rejects_malformed_placeholders() {
        for (src, offset, needle) in [
            ("hello ${name", 6, "not closed"),
            ("a ${} b", 2, "empty placeholder"),
            ("${1abc}", 0, "not a valid placeholder"),
            ("${a b}", 0, "not a valid placeholder"),
            ("x ${a ${b}", 2, "not closed"),
        ] {
            let e = PromptTemplate::parse(src).unwrap_err();
            assert_eq!(e.offset, offset, "{src}");
            assert!(e.message.contains(needle), "{src}: {}", e.message);
        }
    }
}
