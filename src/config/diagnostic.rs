//! Diagnostics: what is wrong (or suspicious) in the config, and exactly where.
//!
//! Every problem found while loading a config becomes a [`Diagnostic`] naming the
//! file, line and column, and the key path (`integrations[0].models[2].endpoint`).
//! Messages follow one style: lowercase, user input in backticks, never a secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config can be used, but something deserves a look.
    Warning,
    /// The config cannot be used.
    Error,
}

/// Index of a file in the loader's file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileId(pub(crate) u32);

/// Where a value came from: file, 1-based line and column, key path.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    file: Arc<Path>,
    line: u32,
    column: u32,
    path: String,
}

impl Origin {
    pub(crate) fn new(file: Arc<Path>, line: u32, column: u32, path: String) -> Self {
        Self {
            file,
            line,
            column,
            path,
        }
    }

    /// An origin for values built in code rather than read from a file.
    pub fn builtin(path: impl Into<String>) -> Self {
        Self {
            file: Arc::from(Path::new("<built-in>")),
            line: 0,
            column: 0,
            path: path.into(),
        }
    }

    /// The file the value was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line (0 when the format gives none).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// 1-based column (0 when the format gives none).
    pub fn column(&self) -> u32 {
        self.column
    }

    /// The key path, such as `integrations[0].models[2].endpoint`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `file:line:column`, the part editors and terminals make clickable.
    pub fn position(&self) -> String {
        self.at().to_string()
    }

    /// [`Origin::position`] written where it is displayed, without a string
    /// of its own (audit lines name the grant behind every decision).
    pub fn at(&self) -> impl fmt::Display + '_ {
        Position(self)
    }
}

struct Position<'a>(&'a Origin);

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        if o.line == 0 {
            write!(f, "{}", o.file.display())
        } else {
            write!(f, "{}:{}:{}", o.file.display(), o.line, o.column)
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.at(), self.path)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.at())
        } else {
            write!(f, "{}, at `{}`", self.at(), self.path)
        }
    }
}

pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// One problem in the config.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
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
            file: origin.file.to_path_buf(),
            line: origin.line,
            column: origin.column,
            path: origin.path.clone(),
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
        .max_by(|a, b| a.0.total_cmp(&b.0))
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
