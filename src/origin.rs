//! Where a value of the catalog came from: file, line, column and key path.
//! Every catalog item and every grant carries one, so that decisions,
//! diagnostics and listings can point at the line an admin wrote.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

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

    /// An origin for values built in tests rather than read from a file.
    #[cfg(test)]
    pub(crate) fn builtin(path: impl Into<String>) -> Self {
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
