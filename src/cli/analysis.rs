//! `hfconnect access who-can`, `access diff` and `access check`: the access
//! analysis of [`crate::analysis`] on config files, for admins and for CI.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::access::{Access, Target};
use crate::analysis::{self, Change, Diff};
use crate::catalog::Catalog;
use crate::config::{diagnostic_suggest, LoadOptions};

/// What a question is about: `--integration I [--model M]` or `--prompt P`,
/// and `--access`.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// The integration (required unless `--prompt` is given).
    #[arg(long, required_unless_present = "prompt")]
    pub integration: Option<String>,
    /// A model of the integration.
    #[arg(long, conflicts_with = "prompt", requires = "integration")]
    pub model: Option<String>,
    /// A saved prompt.
    #[arg(long)]
    pub prompt: Option<String>,
    /// The access asked about.
    #[arg(long, default_value = "EXECUTE", value_parser = parse_access)]
    pub access: Access,
}

impl TargetArgs {
    /// The target named, in `catalog`.
    pub(crate) fn target(&self, catalog: &Catalog) -> Result<Target, String> {
        named_target(
            catalog,
            self.integration.as_deref(),
            self.model.as_deref(),
            self.prompt.as_deref(),
        )
    }
}

#[derive(Debug, Args)]
pub(crate) struct WhoCanArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    about: TargetArgs,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailOn {
    /// Any access gained or revoked.
    Any,
    /// Only access gained (a revocation passes).
    Gained,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The config before the change (file or directory).
    #[arg(long, value_name = "PATH")]
    old: PathBuf,
    /// The config after it.
    #[arg(long, value_name = "PATH")]
    new: PathBuf,
    /// `text`, `json`, or `markdown` (for a pull request comment).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// What exits 1: `any` change of access, or only access `gained`.
    #[arg(long, value_enum, default_value = "any")]
    fail_on: FailOn,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The statements the config must keep true (TOML `[[assert]]` tables).
    #[arg(long = "assert", value_name = "FILE")]
    assertions: PathBuf,
    /// Print the outcomes as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_access(s: &str) -> Result<Access, String> {
    s.parse()
}

fn bad(io: &mut Io<'_>, message: impl std::fmt::Display) -> Exit {
    let _ = writeln!(io.err, "error: {message}");
    EXIT_BAD_INPUT
}

/// The target `--integration [--model]` or `--prompt` names in `catalog`.
fn named_target(
    catalog: &Catalog,
    integration: Option<&str>,
    model: Option<&str>,
    prompt: Option<&str>,
) -> Result<Target, String> {
    if let Some(p) = prompt {
        if catalog.prompt(p).is_none() {
            let names = catalog.prompts().iter().map(|p| p.name());
            return Err(format!(
                "unknown prompt `{p}`{}",
                diagnostic_suggest(p, names)
            ));
        }
        return Ok(Target::Prompt(p.into()));
    }
    let Some(i) = integration else {
        return Err("give `--integration` (with `--model`) or `--prompt`".into());
    };
    let Some(int) = catalog.integration(i) else {
        let names = catalog.integrations().iter().map(|i| i.name());
        return Err(format!(
            "unknown integration `{i}`{}",
            diagnostic_suggest(i, names)
        ));
    };
    match model {
        None => Ok(Target::Integration(i.into())),
        Some(m) if int.model(m).is_none() => {
            let names = int.models().iter().map(|m| m.name());
            Err(format!(
                "unknown model `{m}` of integration `{i}`{}",
                diagnostic_suggest(m, names)
            ))
        }
        Some(m) => Ok(Target::model(i, m)),
    }
}

pub(crate) fn who_can(args: &WhoCanArgs, io: &mut Io<'_>) -> Exit {
    let loaded = match args.config.load(io) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let target = match args.about.target(&loaded.catalog) {
        Ok(t) => t,
        Err(e) => return bad(io, e),
    };
    let answer = analysis::who_can(&loaded.catalog, args.about.access, &target);
    if args.json {
        let _ = writeln!(io.out, "{:#}", json!(answer));
        return EXIT_OK;
    }
    let _ = writeln!(io.out, "who may {} on `{target}`:", args.about.access);
    if let Some(why) = &answer.nobody_because {
        let _ = writeln!(io.out, "  nobody, because {why}");
        return EXIT_OK;
    }
    if answer.allowed.is_empty() {
        let _ = writeln!(
            io.out,
            "  nobody: no grant gives it and no group is `ADMIN`"
        );
    }
    let width = answer
        .allowed
        .iter()
        .map(|a| a.subject.to_string().len())
        .max()
        .unwrap_or(0);
    for a in &answer.allowed {
        let _ = writeln!(io.out, "  {:<width$}  {}", a.subject.to_string(), a.path);
    }
    if !answer.any_other_user {
        let _ = writeln!(
            io.out,
            "  any other user: no (no grant or group names a user outside the config)"
        );
    }
    EXIT_OK
}

/// A config loaded for a diff, or its located errors under its side's name.
fn load_side(side: &str, path: &Path, io: &mut Io<'_>) -> Result<Catalog, Exit> {
    crate::config::load(path, &LoadOptions::new())
        .map(|l| l.catalog)
        .map_err(|e| {
            let _ = writeln!(
                io.err,
                "error: the {side} config (`{}`) is not valid:",
                path.display()
            );
            for d in e.diagnostics() {
                let _ = writeln!(io.err, "{d}");
            }
            let _ = writeln!(io.err, "{}", super::summary_line(&e));
            EXIT_BAD_INPUT
        })
}

/// A markdown table cell: pipes and line breaks escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(d: &Diff) -> String {
    let (gained, revoked) = d.counts();
    let mut out = String::new();
    if d.changes.is_empty() {
        out.push_str("### Access: no change\n\nNo subject gains or loses any access.\n");
    } else {
        out.push_str(&format!(
            "### Access: {gained} gained, {revoked} revoked\n\n| subject | change | access | target | before | after |\n|---|---|---|---|---|---|\n"
        ));
        for c in &d.changes {
            out.push_str(&format!(
                "| `{}` | {} | {} | `{}` | {} | {} |\n",
                cell(&c.subject.to_string()),
                if c.gained { "**gained**" } else { "revoked" },
                c.access,
                cell(&c.target),
                cell(&c.before.text),
                cell(&c.after.text)
            ));
        }
    }
    if !d.limits.is_empty() {
        out.push_str("\n#### Limits, quotas and budgets (not access)\n\n");
        for l in &d.limits {
            out.push_str(&format!(
                "- {}: {} → {}\n",
                cell(&l.what),
                l.before.as_deref().unwrap_or("*none*"),
                l.after.as_deref().unwrap_or("*none*")
            ));
        }
    }
    out
}

fn text(d: &Diff) -> String {
    let (gained, revoked) = d.counts();
    let mut out = format!("access: {gained} gained, {revoked} revoked\n");
    let mut last: Option<String> = None;
    for c in &d.changes {
        let who = c.subject.to_string();
        if last.as_deref() != Some(who.as_str()) {
            out.push_str(&format!("{who}\n"));
            last = Some(who);
        }
        let Change {
            access,
            target,
            before,
            after,
            gained,
            ..
        } = c;
        if *gained {
            out.push_str(&format!(
                "  + {access} on `{target}`: {after} (before: {before})\n"
            ));
        } else {
            out.push_str(&format!(
                "  - {access} on `{target}`: {after} (before: {before})\n"
            ));
        }
    }
    if !d.limits.is_empty() {
        out.push_str("limits, quotas and budgets (not access):\n");
        for l in &d.limits {
            out.push_str(&format!(
                "  {}: {} -> {}\n",
                l.what,
                l.before.as_deref().unwrap_or("none"),
                l.after.as_deref().unwrap_or("none")
            ));
        }
    }
    out
}

pub(crate) fn diff(args: &DiffArgs, io: &mut Io<'_>) -> Exit {
    let old = match load_side("old", &args.old, io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let new = match load_side("new", &args.new, io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let d = analysis::diff(&old, &new);
    let shown = match args.format {
        Format::Json => {
            let (gained, revoked) = d.counts();
            format!(
                "{:#}\n",
                json!({"gained": gained, "revoked": revoked, "changes": d.changes, "limits": d.limits})
            )
        }
        Format::Markdown => markdown(&d),
        Format::Text => text(&d),
    };
    let _ = write!(io.out, "{shown}");
    let (gained, revoked) = d.counts();
    let fails = match args.fail_on {
        FailOn::Any => gained + revoked > 0,
        FailOn::Gained => gained > 0,
    };
    if fails {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

pub(crate) fn check(args: &CheckArgs, io: &mut Io<'_>) -> Exit {
    let loaded = match args.config.load(io) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let file = args.assertions.display().to_string();
    let text = match std::fs::read_to_string(&args.assertions) {
        Ok(t) => t,
        Err(e) => return bad(io, format!("cannot read `{file}`: {e}")),
    };
    let outcomes = match analysis::check(&loaded.catalog, &file, &text) {
        Ok(o) => o,
        Err(e) => return bad(io, e),
    };
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if args.json {
        let _ = writeln!(
            io.out,
            "{:#}",
            json!({"passed": failed == 0, "failed": failed, "outcomes": outcomes})
        );
    } else {
        for o in &outcomes {
            let _ = writeln!(
                io.out,
                "{} {} ({file}:{})",
                if o.passed { "PASS" } else { "FAIL" },
                o.statement,
                o.line
            );
            for b in &o.breaks {
                let _ = writeln!(io.out, "  {b}");
            }
        }
        let _ = writeln!(
            io.out,
            "{} of {} statements hold",
            outcomes.len() - failed,
            outcomes.len()
        );
    }
    if failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}
