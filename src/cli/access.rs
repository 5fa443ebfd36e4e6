//! `hfconnect access explain` and `hfconnect access list`: ask the policy and
//! show the decision with its reason.

use clap::Args;
use serde_json::json;

use super::{CallerArgs, Exit, Io, EXIT_BAD_INPUT, EXIT_DENIED, EXIT_OK};
use crate::access::{Access, Decision, Principal, Reason, Subject, Target};
use crate::catalog::Catalog;
use crate::connector::Connector;

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    caller: CallerArgs,
    #[command(flatten)]
    about: super::analysis::TargetArgs,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    caller: CallerArgs,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

fn bad(io: &mut Io<'_>, message: impl std::fmt::Display) -> Exit {
    let _ = writeln!(io.err, "error: {message}");
    EXIT_BAD_INPUT
}

/// The Connector over the config and the caller it resolves, or the exit code.
fn caller(args: &CallerArgs, io: &mut Io<'_>) -> Result<(Connector, Principal), Exit> {
    let connector = args.config.connector(io)?;
    let subject: Subject = super::acting_subject(&args.subject).map_err(|e| bad(io, e))?;
    let principal = connector
        .principal(&subject, args.group.as_deref())
        .map_err(|e| bad(io, e))?;
    Ok((connector, principal))
}

/// What bounds `principal` on `target`: the integration's and model's
/// limits, the quotas and the token budgets that cover it.
fn bounds(catalog: &Catalog, principal: &Principal, target: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let (integration, model) = match target {
        Target::Integration(i) => (catalog.integration(i), None),
        Target::Model(i, m) => (catalog.integration(i), catalog.model(i, m)),
        Target::Prompt(_) => return out,
    };
    let Some(integration) = integration else {
        return out;
    };
    let mut limits = |whose: String, l: crate::catalog::Limits| {
        if let Some((per_second, burst)) = l.rate {
            out.push(format!(
                "rate limit of {whose}: {per_second} per second, burst {burst}"
            ));
        }
        if let Some(n) = l.max_concurrency {
            out.push(format!("max concurrency of {whose}: {n}"));
        }
    };
    limits(
        format!("integration `{}`", integration.name()),
        integration.limits(),
    );
    if let Some(m) = model {
        limits(format!("model `{}`", m.name()), m.limits());
    }
    let counts = |s: &Subject| {
        s == principal.subject() || matches!(s, Subject::Group(g) if principal.groups().contains(g))
    };
    for q in catalog.quotas() {
        if &*q.integration == integration.name() && counts(&q.subject) {
            out.push(format!(
                "quota of `{}`: {} tasks per minute (at {})",
                q.subject,
                q.per_minute,
                q.origin.at()
            ));
        }
    }
    for b in catalog.budgets() {
        let covers = match model {
            Some(m) => b.payer(principal, integration.name(), m.name()).is_some(),
            None => {
                counts(b.subject())
                    && match b.target() {
                        None => true,
                        Some(Target::Integration(i)) => &**i == integration.name(),
                        Some(_) => false,
                    }
            }
        };
        if covers {
            out.push(format!(
                "budget `{}`: {} tokens per {} for `{}`{} (at {})",
                b.name(),
                b.tokens(),
                b.window().describe(),
                b.subject(),
                if b.each_member() { ", each member" } else { "" },
                b.origin().at()
            ));
        }
    }
    out
}

fn principal_json(p: &Principal) -> serde_json::Value {
    json!({
        "subject": p.subject().to_string(),
        "groups": p.groups().iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "scope": p.scope(),
        "admin_via": p.admin_via(),
    })
}

fn reason_json(r: &Reason) -> serde_json::Value {
    let mut v = json!({ "kind": r.kind(), "message": r.to_string() });
    if let Some(g) = r.grant() {
        v["grant"] = json!({
            "subject": g.subject.to_string(),
            "target": g.target.to_string(),
            "access": g.access.iter().map(Access::as_str).collect::<Vec<_>>(),
            "file": g.origin.file(),
            "line": g.origin.line(),
            "column": g.origin.column(),
        });
    }
    if let Reason::NoGrant { .. } = r {
        let subjects = r.checked_subjects();
        let targets = r.checked_targets();
        v["checked_subjects"] = json!(subjects.iter().map(ToString::to_string).collect::<Vec<_>>());
        v["checked_targets"] = json!(targets.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    v
}

fn describe_principal(p: &Principal) -> String {
    let groups: Vec<String> = p.groups().iter().map(|g| format!("`{g}`")).collect();
    let mut s = format!("`{}`", p.subject());
    if groups.is_empty() {
        s.push_str(" (no groups)");
    } else {
        s.push_str(&format!(" (groups {})", groups.join(", ")));
    }
    if let Some(g) = p.scope() {
        s.push_str(&format!(", scoped to group `{g}`"));
    }
    s
}

pub(crate) fn explain(args: &ExplainArgs, io: &mut Io<'_>) -> Exit {
    let (connector, principal) = match caller(&args.caller, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let catalog = connector.core().catalog();
    let target = match args.about.target(&catalog) {
        Ok(t) => t,
        Err(e) => return bad(io, e),
    };
    let decision: Decision = connector.decide(&principal, args.about.access, &target);
    if args.json {
        let v = json!({
            "allowed": decision.allowed,
            "principal": principal_json(&principal),
            "access": args.about.access.as_str(),
            "target": target.to_string(),
            "reason": reason_json(&decision.reason),
        });
        let _ = writeln!(io.out, "{v:#}");
    } else {
        let verdict = if decision.allowed {
            "ALLOWED"
        } else {
            "DENIED"
        };
        let _ = writeln!(
            io.out,
            "{verdict}: `{}` {} `{}` on `{target}`",
            principal.subject(),
            if decision.allowed { "may" } else { "may not" },
            args.about.access
        );
        let _ = writeln!(io.out, "  principal: {}", describe_principal(&principal));
        let _ = writeln!(io.out, "  reason: {}", decision.reason);
    }
    if decision.allowed {
        EXIT_OK
    } else {
        EXIT_DENIED
    }
}

pub(crate) fn list(args: &ListArgs, io: &mut Io<'_>) -> Exit {
    let (connector, principal) = match caller(&args.caller, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let catalog = connector.core().catalog();
    let mut targets: Vec<Target> = Vec::new();
    for i in catalog.integrations() {
        targets.push(Target::Integration(i.name().into()));
        for m in i.models() {
            targets.push(Target::model(i.name(), m.name()));
        }
    }
    targets.extend(
        catalog
            .prompts()
            .iter()
            .map(|p| Target::Prompt(p.name().into())),
    );

    let mut rows = Vec::new();
    for t in targets {
        let allowed: Vec<(Access, Decision)> = [Access::Read, Access::Execute]
            .into_iter()
            .map(|a| (a, connector.decide(&principal, a, &t)))
            .filter(|(_, d)| d.allowed)
            .collect();
        if !allowed.is_empty() {
            rows.push((t, allowed));
        }
    }
    if args.json {
        let v = json!({
            "principal": principal_json(&principal),
            "targets": rows.iter().map(|(t, allowed)| json!({
                "target": t.to_string(),
                "bounds": bounds(&catalog, &principal, t),
                "access": allowed.iter().map(|(a, d)| json!({
                    "access": a.as_str(),
                    "reason": reason_json(&d.reason),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let _ = writeln!(io.out, "{v:#}");
        return EXIT_OK;
    }
    let _ = writeln!(io.out, "access of {}", describe_principal(&principal));
    if rows.is_empty() {
        let _ = writeln!(
            io.out,
            "  nothing: no grant gives READ or EXECUTE on any integration, model or prompt"
        );
    }
    for (t, allowed) in &rows {
        let names: Vec<&str> = allowed.iter().map(|(a, _)| a.as_str()).collect();
        let _ = writeln!(io.out, "  {t}: {}", names.join(", "));
        let mut reasons: Vec<String> = allowed.iter().map(|(_, d)| d.reason.to_string()).collect();
        reasons.dedup();
        for r in reasons {
            let _ = writeln!(io.out, "    {r}");
        }
        for b in bounds(&catalog, &principal, t) {
            let _ = writeln!(io.out, "    bounded by the {b}");
        }
    }
    EXIT_OK
}
