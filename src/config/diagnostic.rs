//! Diagnostics: what is wrong (or suspicious) in the config, and exactly where.
//!
//! Every problem found while loading a config becomes a [`Diagnostic`] naming the
//! file, line and column, and the key path (`integrations[0].models[2].endpoint`).
//! Messages follow one style: lowercase, user input in backticks, never a secret.

use std::fmt;
use std::path::PathBuf;

use crate::origin::Origin;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The config can be used, but something deserves a look.
    Warning,
    /// The config cannot be used.
    Error,
}

/// Index of a file in the loader's file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileId(pub(crate) u32);

pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// One problem in the config.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Error or warning.
    pub(crate) severity: Severity,
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// The key path, such as `integrations[0].models[2].endpoint` (empty for the whole file).
    pub path: String,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
    /// What to do about it, when there is something specific to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub(crate) fn at(severity: Severity, origin: &Origin, message: impl Into<String>) -> Self {
        Self {
            severity,
            file: origin.file().to_path_buf(),
            line: origin.line(),
            column: origin.column(),
            path: origin.path().to_string(),
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn error(origin: &Origin, message: impl Into<String>) -> Self {
        Self::at(Severity::Error, origin, message)
    }

    pub(crate) fn warning(origin: &Origin, message: impl Into<String>) -> Self {
        Self::at(Severity::Warning, origin, message)
    }

    /// True for errors, false for warnings.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.message)?;
        write!(f, "\n  --> {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ", at `{}`", self.path)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `input`, when one is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Names are at most 128 characters: a longer input is no typo of one, and
    // comparing a caller's 500 KB string with every name would cost seconds.
    if input.len() > 512 {
        return None;
    }
    let input_l = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&input_l, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        // On a tie the first name in order wins: candidates often come from
        // a hash set, and the same typo must get the same suggestion.
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// Quote a list of candidates for a message: `a`, `b` or `c`.
pub(crate) fn one_of(candidates: &[&str]) -> String {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tie_gets_the_same_suggestion_whatever_the_order() {
        assert_eq!(did_you_mean("team", ["team-b", "team-a"]), Some("team-a"));
        assert_eq!(did_you_mean("team", ["team-a", "team-b"]), Some("team-a"));
    }
}
