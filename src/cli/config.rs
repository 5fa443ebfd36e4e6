//! `hfconnect config check`: validate and summarize a config.

use std::io::Write;

use serde_json::json;

use super::{ConfigArg, Exit, Io, EXIT_BAD_INPUT, EXIT_OK, EXIT_WARNINGS};
use crate::catalog::Catalog;
use crate::config::{ConfigError, Diagnostic, LoadOptions, LoadedConfig};

/// `strict`: warnings fail the check too, with their own exit code.
/// Unless `offline`, an integration with models that carry a `deployment`
/// block has its token asked (`whoami-v2`) whether it may manage endpoints.
pub(crate) fn check(
    arg: &ConfigArg,
    json: bool,
    strict: bool,
    offline: bool,
    io: &mut Io<'_>,
) -> Exit {
    let path = match arg.path(io) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut result = crate::config::load(path, &LoadOptions::new());
    if let (Ok(loaded), false) = (&mut result, offline) {
        let more = management_warnings(path, &loaded.catalog);
        loaded.warnings.extend(more);
    }
    let passed = |loaded: &LoadedConfig| {
        if strict && !loaded.warnings.is_empty() {
            EXIT_WARNINGS
        } else {
            EXIT_OK
        }
    };
    match (result, json) {
        (Ok(loaded), false) => {
            for w in &loaded.warnings {
                let _ = writeln!(io.err, "{w}");
            }
            write_summary(io.out, path, &loaded);
            let code = passed(&loaded);
            if code != EXIT_OK {
                let _ = writeln!(
                    io.err,
                    "config check failed: --strict and {}",
                    plural(loaded.warnings.len(), "warning")
                );
            }
            code
        }
        (Ok(loaded), true) => {
            let code = passed(&loaded);
            let value = json!({
                "valid": true,
                "strict": strict,
                "passed": code == EXIT_OK,
                "files": loaded.files,
                "summary": summary_json(&loaded.catalog),
                "diagnostics": loaded.warnings,
            });
            let _ = writeln!(io.out, "{value:#}");
            code
        }
        (Err(e), false) => {
            for d in e.diagnostics() {
                let _ = writeln!(io.err, "{d}");
            }
            let _ = writeln!(io.err, "{}", super::summary_line(&e));
            EXIT_BAD_INPUT
        }
        (Err(e), true) => {
            let _ = writeln!(io.out, "{:#}", error_json(&e));
            EXIT_BAD_INPUT
        }
    }
}

/// A warning for each model with a `deployment` block whose integration's
/// token may not manage endpoints (or could not be asked).
fn management_warnings(path: &std::path::Path, catalog: &Catalog) -> Vec<Diagnostic> {
    let deploying: Vec<_> = catalog
        .integrations()
        .iter()
        .filter(|i| i.models().iter().any(|m| m.deployment().is_some()))
        .collect();
    if deploying.is_empty() {
        return Vec::new();
    }
    let Ok(connector) = crate::connector::Connector::from_path(path, &LoadOptions::new()) else {
        return Vec::new();
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in deploying {
        let asked = rt.block_on(connector.core().token_check(i.name()));
        let problem = match asked {
            Ok(r) if r.may_manage == Some(true) => continue,
            Ok(r) => match r.namespace {
                None => format!("integration `{}` has no `namespace`, so its endpoints cannot be managed", i.name()),
                Some(ns) => format!(
                    "the token of integration `{}` may not manage the Inference Endpoints of namespace `{ns}` (it lacks `inference.endpoints.write`)",
                    i.name()
                ),
            },
            Err(e) => format!(
                "whether the token of integration `{}` may manage endpoints could not be checked: {e}",
                i.name()
            ),
        };
        for m in i.models().iter().filter(|m| m.deployment().is_some()) {
            let mut d = Diagnostic::warning(
                m.origin(),
                format!(
                    "model `{}` has a `deployment` block, but {problem}",
                    m.name()
                ),
            );
            d.help = Some("`hfconnect endpoint create|apply` will be refused upstream: use a token with `inference.endpoints.write` for the namespace (`hfconnect token check` shows it), or `--offline` to skip this check".into());
            out.push(d);
        }
    }
    out
}

fn error_json(e: &ConfigError) -> serde_json::Value {
    json!({
        "valid": false,
        "errors": e.errors().count(),
        "diagnostics": e.diagnostics(),
    })
}

fn summary_json(c: &Catalog) -> serde_json::Value {
    json!({
        "integrations": c.integrations().iter().map(|i| json!({
            "name": i.name(),
            "namespace": i.namespace(),
            "active": i.is_active(),
            "hub_url": i.hub_url().as_str(),
            "api_key": {
                "source": i.api_key().source().to_string(),
                "available": i.api_key().is_available(),
            },
            "models": i.models().iter().map(|m| json!({
                "name": m.name(),
                "api": m.api(),
                "tasks": m.tasks(),
                "endpoint": if m.url_from_management() { None } else { Some(m.endpoint().as_str()) },
                "inference_endpoint": m.inference_endpoint(),
                "deployment": m.deployment().is_some(),
                "active": m.is_active(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "models": c.model_count(),
        "prompts": c.prompts().iter().map(|p| p.name()).collect::<Vec<_>>(),
        "groups": c.groups().iter().map(|g| g.name()).collect::<Vec<_>>(),
        "applications": c.applications().iter().map(|a| a.name()).collect::<Vec<_>>(),
        "grants": c.policy().grants().len(),
    })
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn write_summary(out: &mut dyn Write, path: &std::path::Path, loaded: &LoadedConfig) {
    let c = &loaded.catalog;
    let _ = writeln!(
        out,
        "config `{}` is valid ({}, {})",
        path.display(),
        plural(loaded.files.len(), "file"),
        plural(loaded.warnings.len(), "warning")
    );
    let _ = writeln!(
        out,
        "  {}, {}, {}, {}, {}, {}",
        plural(c.integrations().len(), "integration"),
        plural(c.model_count(), "model"),
        plural(c.prompts().len(), "prompt"),
        plural(c.groups().len(), "group"),
        plural(c.applications().len(), "application"),
        plural(c.policy().grants().len(), "grant"),
    );
    for i in c.integrations() {
        let key = i.api_key();
        let key_state = if key.is_available() {
            "available"
        } else {
            "NOT AVAILABLE"
        };
        let _ = writeln!(
            out,
            "  integration `{}`{}{}: key from {} ({key_state})",
            i.name(),
            i.namespace()
                .map(|n| format!(" (namespace `{n}`)"))
                .unwrap_or_default(),
            if i.is_active() { "" } else { " [inactive]" },
            key.found_in()
                .map_or_else(|| key.source().to_string(), str::to_string),
        );
        for m in i.models() {
            let tasks: Vec<&str> = m.tasks().iter().map(|t| t.as_str()).collect();
            let _ = writeln!(
                out,
                "    model `{}`: api `{}`, tasks {}, {}{}",
                m.name(),
                m.api(),
                tasks.join(", "),
                match (m.url_from_management(), m.inference_endpoint()) {
                    (true, Some(e)) =>
                        format!("Inference Endpoint `{e}`, URL from the management API"),
                    _ => m.endpoint().to_string(),
                },
                if m.is_active() { "" } else { " [inactive]" },
            );
        }
    }
    if let Some(w) = loaded.runtime.worker() {
        let types: Vec<String> = w
            .task_types
            .iter()
            .map(|(t, k)| format!("{t} ({k})"))
            .collect();
        let identity = match &w.identity {
            crate::runtime::WorkerIdentity::Fixed(app) => format!("as application `{app}`"),
            crate::runtime::WorkerIdentity::TaskInput => "as `inputData._createdBy`".to_string(),
            crate::runtime::WorkerIdentity::Workflow => "as the workflow's creator".to_string(),
        };
        let _ = writeln!(
            out,
            "  worker: polls {}; runs tasks {identity}, {} at once{}",
            types.join(", "),
            w.concurrency,
            w.auth
                .as_ref()
                .map(|a| format!("; Orkes key `{}`", a.key_id))
                .unwrap_or_default(),
        );
    }
}
