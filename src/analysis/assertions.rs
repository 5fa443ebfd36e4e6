//! `access check --assert FILE`: statements a config must keep true, each
//! answered pass or fail with the path that breaks it.
//!
//! ```toml
//! [[assert]]
//! never = "group:interns"          # no member of it, on the target or its models
//! access = "EXECUTE"
//! target = "integration:hf-prod"
//!
//! [[assert]]
//! only = ["group:ml-platform"]     # nobody else (members of these)
//! access = "UPDATE"
//! target = "model:hf-prod:llama-70b"
//!
//! [[assert]]
//! may = "app:nightly-eval"         # it (every member of a group) may
//! access = "EXECUTE"
//! target = "model:hf-prod:mistral"
//! ```
//!
//! A target `integration:I` covers the integration and each of its models.

use serde::{Deserialize, Serialize};

use super::{decide, subjects, Who};
use crate::access::{Access, Subject, Target};
use crate::catalog::Catalog;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    assert: Vec<toml::Spanned<RawStatement>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    never: Option<String>,
    may: Option<String>,
    only: Option<Vec<String>>,
    access: String,
    target: String,
    description: Option<String>,
}

/// What a statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Statement {
    /// No member of the subject may.
    Never(Subject),
    /// The subject (each member of a group) may.
    May(Subject),
    /// Nobody but members of these may.
    Only(Vec<Subject>),
}

/// A statement's answer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The statement as it reads (`group:interns never EXECUTE on integration:hf-prod`).
    pub statement: String,
    pub description: Option<String>,
    /// Its line in the file.
    pub line: usize,
    pub passed: bool,
    /// What breaks it: who may (or may not), where, and why.
    pub breaks: Vec<String>,
}

/// A file that cannot be read as statements about the config.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct AssertionError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
}

/// The callers a subject stands for: itself, or a group's members (users
/// and applications).
fn members(catalog: &Catalog, s: &Subject) -> Result<Vec<Who>, String> {
    match s {
        Subject::Group(g) => {
            let Some(group) = catalog.groups().iter().find(|x| x.name() == &**g) else {
                return Err(format!("unknown group `{g}`"));
            };
            let mut out: Vec<Who> = group
                .members()
                .iter()
                .map(|m| Who::Named(Subject::User(m.clone())))
                .collect();
            out.extend(
                catalog
                    .applications()
                    .iter()
                    .filter(|a| a.groups().iter().any(|x| x == g))
                    .map(|a| Who::Named(Subject::App(a.name().into()))),
            );
            Ok(out)
        }
        Subject::App(a) if catalog.application(a).is_none() => {
            Err(format!("unknown application `{a}`"))
        }
        other => Ok(vec![Who::Named(other.clone())]),
    }
}

/// The targets a statement's target covers: it, and an integration's models.
fn covered(catalog: &Catalog, t: &Target) -> Result<Vec<Target>, String> {
    match t {
        Target::Integration(i) => match catalog.integration(i) {
            None => Err(format!("unknown integration `{i}`")),
            Some(int) => Ok(std::iter::once(t.clone())
                .chain(int.models().iter().map(|m| m.target().clone()))
                .collect()),
        },
        Target::Model(i, m) if catalog.model(i, m).is_none() => {
            Err(format!("unknown model `{m}` of integration `{i}`"))
        }
        Target::Prompt(p) if catalog.prompt(p).is_none() => Err(format!("unknown prompt `{p}`")),
        _ => Ok(vec![t.clone()]),
    }
}

/// Check the statements of `text` (the file `file`) against `catalog`.
pub fn check(catalog: &Catalog, file: &str, text: &str) -> Result<Vec<Outcome>, AssertionError> {
    let err = |line, message: String| AssertionError {
        file: file.to_string(),
        line,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        err(line, e.message().to_string())
    })?;
    if raw.assert.is_empty() {
        return Err(err(
            1,
            "no statements: write `[[assert]]` tables with `never`, `may` or `only`".into(),
        ));
    }
    let mut out = Vec::new();
    for s in raw.assert {
        let line = line_of(text, s.span().start);
        let r = s.into_inner();
        let bad = |m: String| err(line, m);
        let parse = |x: &str| x.parse::<Subject>().map_err(|e| bad(e.to_string()));
        let statement =
            match (&r.never, &r.may, &r.only) {
                (Some(n), None, None) => Statement::Never(parse(n)?),
                (None, Some(m), None) => Statement::May(parse(m)?),
                (None, None, Some(o)) if !o.is_empty() => {
                    Statement::Only(o.iter().map(|x| parse(x)).collect::<Result<_, _>>()?)
                }
                _ => return Err(bad(
                    "a statement has exactly one of `never`, `may` or `only` (a non-empty list)"
                        .into(),
                )),
            };
        let access: Access = r.access.parse().map_err(bad)?;
        let target: Target = r
            .target
            .parse()
            .map_err(|e: crate::access::ParseRefError| bad(e.to_string()))?;
        let targets = covered(catalog, &target).map_err(bad)?;
        let mut breaks = Vec::new();
        let shown = match &statement {
            Statement::Never(s) => {
                for who in members(catalog, s).map_err(bad)? {
                    for t in &targets {
                        let (ok, path) = decide(catalog, &who, access, t);
                        if ok {
                            breaks.push(format!("`{who}` may {access} on `{t}`: {path}"));
                        }
                    }
                }
                format!("{s} never {access} on {target}")
            }
            Statement::May(s) => {
                for who in members(catalog, s).map_err(bad)? {
                    let (ok, path) = decide(catalog, &who, access, &target);
                    if !ok {
                        breaks.push(format!("`{who}` may not {access} on `{target}`: {path}"));
                    }
                }
                format!("{s} may {access} on {target}")
            }
            Statement::Only(list) => {
                let mut allowed: Vec<Who> = Vec::new();
                for s in list {
                    allowed.extend(members(catalog, s).map_err(bad)?);
                }
                for who in subjects(catalog) {
                    if allowed.contains(&who) {
                        continue;
                    }
                    for t in &targets {
                        let (ok, path) = decide(catalog, &who, access, t);
                        if ok {
                            breaks.push(format!("`{who}` may {access} on `{t}`: {path}"));
                        }
                    }
                }
                let names: Vec<String> = list.iter().map(ToString::to_string).collect();
                format!("only {} may {access} on {target}", names.join(", "))
            }
        };
        out.push(Outcome {
            statement: shown,
            description: r.description,
            line,
            passed: breaks.is_empty(),
            breaks,
        });
    }
    Ok(out)
}
