//! Config files: reading TOML/YAML/JSON files and directories, the raw schema,
//! secret locations, and validation into the catalog and the runtime
//! settings a [`Connector`](crate::Connector) runs on.
//!
//! Loading has two phases. Each file is parsed into a position-carrying tree and
//! deserialized into raw structs that reject unknown keys (`raw`); then all
//! files are validated together into the catalog (`validate`). Both phases
//! report every problem with file, line, column and key path.

pub(crate) mod de;
mod diagnostic;
pub(crate) mod node;
mod raw;
pub(crate) mod secret;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostic::Diagnostic;
pub(crate) use secret::process_env;
pub use secret::EnvLookup;

use crate::catalog::Catalog;
use crate::origin::Origin;
use diagnostic::FileId;

/// ` (did you mean `x`?)` when a candidate is close to `input`, else nothing.
pub(crate) fn diagnostic_suggest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    diagnostic::did_you_mean(input, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// The largest config file read (a catalog of 10,000 models is about 3 MB).
pub(crate) const MAX_FILE_BYTES: u64 = 32 << 20;

/// The environment variable naming the config path when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "HFCONNECT_CONFIG";

/// How to load: where environment look-ups (key locations, `HF_ENDPOINT`) go.
#[derive(Clone)]
pub struct LoadOptions {
    env: EnvLookup,
}

impl LoadOptions {
    /// Look-ups in the process environment.
    pub fn new() -> Self {
        Self { env: process_env() }
    }

    /// Use `env` instead of the process environment.
    #[must_use]
    pub fn env(mut self, env: EnvLookup) -> Self {
        self.env = env;
        self
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoadOptions")
    }
}

/// A loaded, valid config: the catalog, the runtime settings, the files it
/// came from, and warnings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// What is governed: integrations, models, prompts, groups, applications, grants, quotas.
    pub(crate) catalog: Catalog,
    /// How hfconnect runs: admission, audit, the worker, each integration's call settings.
    pub(crate) runtime: crate::runtime::Runtime,
    /// The files read, in the order they were merged.
    pub(crate) files: Vec<PathBuf>,
    /// Warnings: the config is usable, but these deserve a look.
    pub warnings: Vec<Diagnostic>,
}

/// What kind of failure a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The path could not be read (missing, not a config file, unreadable).
    Unreadable,
    /// A file is not valid TOML, YAML or JSON.
    Syntax,
    /// The files parse but break the schema or its rules.
    Invalid,
}

/// Why a config could not be loaded: every problem found, located.
#[derive(Debug, Clone)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// Every diagnostic, errors and warnings, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    fn unreadable(path: &Path, message: String) -> Self {
        let origin = Origin::new(Arc::from(path), 0, 0, String::new());
        Self {
            kind: ConfigErrorKind::Unreadable,
            diagnostics: vec![Diagnostic::error(&origin, message)],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors().count();
        for d in self.errors() {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "config is invalid: {n} error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy)]
enum Format {
    Toml,
    Yaml,
    Json,
}

fn format_of(path: &Path) -> Option<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("toml") => Some(Format::Toml),
        Some("yaml" | "yml") => Some(Format::Yaml),
        Some("json") => Some(Format::Json),
        _ => None,
    }
}

/// The files a config path stands for: the file itself, or the config files
/// directly inside a directory, sorted by name. Hidden entries are skipped
/// (Kubernetes ConfigMap mounts keep their bookkeeping in `..data` and the like).
pub(crate) fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let msg = if e.kind() == std::io::ErrorKind::NotFound {
            format!("config path `{}` does not exist", path.display())
        } else {
            format!("config path `{}` cannot be read: {e}", path.display())
        };
        ConfigError::unreadable(path, msg)
    })?;
    if meta.is_file() {
        if format_of(path).is_none() {
            return Err(ConfigError::unreadable(
                path,
                format!("`{}` is not a config file: use the extension `.toml`, `.yaml`, `.yml` or `.json`", path.display()),
            ));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        ConfigError::unreadable(
            path,
            format!("config directory `{}` cannot be read: {e}", path.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            !hidden && p.is_file() && format_of(p).is_some()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::unreadable(
            path,
            format!(
                "config directory `{}` holds no `.toml`, `.yaml`, `.yml` or `.json` file",
                path.display()
            ),
        ));
    }
    Ok(files)
}

/// Load and validate a config file or directory.
pub fn load(path: &Path, options: &LoadOptions) -> Result<LoadedConfig, ConfigError> {
    let files = config_files(path)?;
    let table: Vec<Arc<Path>> = files.iter().map(|f| Arc::from(f.as_path())).collect();
    let mut parsed = Vec::with_capacity(files.len());
    let mut diagnostics = Vec::new();
    let mut syntax_failed = false;
    for (i, (file, shared)) in files.iter().zip(&table).enumerate() {
        let id = FileId(u32::try_from(i).unwrap_or(u32::MAX));
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if size > MAX_FILE_BYTES {
            let o = Origin::new(shared.clone(), 0, 0, String::new());
            diagnostics.push(Diagnostic::error(
                &o,
                format!(
                    "the file is larger than {} MiB ({size} bytes)",
                    MAX_FILE_BYTES >> 20
                ),
            ));
            syntax_failed = true;
            continue;
        }
        let text = match std::fs::read(file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    let o = Origin::new(shared.clone(), 0, 0, String::new());
                    diagnostics.push(Diagnostic::error(&o, "the file is not UTF-8 text"));
                    syntax_failed = true;
                    continue;
                }
            },
            Err(e) => {
                let o = Origin::new(shared.clone(), 0, 0, String::new());
                diagnostics.push(Diagnostic::error(
                    &o,
                    format!("the file cannot be read: {e}"),
                ));
                syntax_failed = true;
                continue;
            }
        };
        let tree = match format_of(file) {
            Some(Format::Toml) => node::parse_toml(&text),
            Some(Format::Yaml) => node::parse_yaml(&text),
            Some(Format::Json) => node::parse_json(&text),
            None => continue,
        };
        let tree = match tree {
            Ok(t) => t,
            Err(errors) => {
                syntax_failed = true;
                for e in errors {
                    let o = Origin::new(shared.clone(), e.pos.line, e.pos.col, String::new());
                    diagnostics.push(Diagnostic::error(&o, e.message));
                }
                continue;
            }
        };
        let ctx = de::Ctx::new(id);
        let raw: Option<raw::RawFile> = match &tree.value {
            node::Value::Map(_) => de::from_node(&tree, &ctx),
            _ => {
                let o = Origin::new(shared.clone(), tree.pos.line, tree.pos.col, String::new());
                diagnostics.push(Diagnostic::error(
                    &o,
                    format!("the file must hold a table of `integrations`, `prompts`, `groups`, `applications` and `grants`, not {}", tree.kind()),
                ));
                None
            }
        };
        for p in ctx.problems.into_inner() {
            let o = Origin::new(shared.clone(), p.pos.line, p.pos.col, p.path);
            let mut d = Diagnostic::error(&o, p.message);
            d.help = p.help;
            diagnostics.push(d);
        }
        parsed.push(validate::ParsedFile {
            id,
            raw: raw.unwrap_or_default(),
            broken: ctx.broken.into_inner(),
        });
    }
    if syntax_failed {
        return Err(ConfigError {
            kind: ConfigErrorKind::Syntax,
            diagnostics,
        });
    }
    let (validated, more) = validate::validate(&table, parsed, &options.env);
    diagnostics.extend(more);
    match validated {
        Some((catalog, runtime)) if !diagnostics.iter().any(Diagnostic::is_error) => {
            Ok(LoadedConfig {
                catalog,
                runtime,
                files,
                warnings: diagnostics,
            })
        }
        _ => {
            sort(&mut diagnostics, &table);
            Err(ConfigError {
                kind: ConfigErrorKind::Invalid,
                diagnostics,
            })
        }
    }
}

/// File order first (as merged), then line and column.
fn sort(diags: &mut [Diagnostic], files: &[Arc<Path>]) {
    let rank = |d: &Diagnostic| {
        files
            .iter()
            .position(|f| **f == *d.file)
            .unwrap_or(usize::MAX)
    };
    diags.sort_by_key(|a| (rank(a), a.line, a.column));
}
