//! Groups, applications, prompts and grants: names that must exist,
//! references checked (with suggestions), and the policy's input.

use std::collections::HashSet;
use std::sync::Arc;

use super::super::de::{Loc, Spanned};
use super::super::raw::{RawApplication, RawGrant, RawGroup, RawPrompt};
use super::{suggest, ModelIndex, V};
use crate::access::{AccessSet, Grant, Subject, Target};
use crate::catalog::{Application, Group, ModelRef, Prompt};
use crate::prompt::PromptTemplate;
pub(super) fn group(v: &mut V<'_>, rg: Spanned<RawGroup>) -> Group {
    let r = rg.value;
    let mut members: Vec<Arc<str>> = Vec::new();
    for m in &r.members {
        if m.value.trim().is_empty() {
            v.error(&m.loc, "member id is empty");
        } else if m.value.trim() != m.value {
            v.error(
                &m.loc,
                format!("member id `{}` has spaces around it", m.value),
            );
        } else if members.iter().any(|x| **x == *m.value) {
            v.warn(
                &m.loc,
                format!("`{}` is listed twice in group `{}`", m.value, r.name.value),
            );
        } else {
            members.push(m.value.as_str().into());
        }
    }
    let mut roles = Vec::new();
    for role in &r.roles {
        if !roles.contains(&role.value) {
            roles.push(role.value);
        }
    }
    Group {
        name: r.name.value.into(),
        description: r.description,
        members,
        roles,
        origin: v.origin(&rg.loc),
    }
}

pub(super) fn application(
    v: &mut V<'_>,
    ra: Spanned<RawApplication>,
    groups: &HashSet<&str>,
) -> Application {
    let r = ra.value;
    let mut out: Vec<Arc<str>> = Vec::new();
    for g in &r.groups {
        if groups.contains(g.value.as_str()) {
            if !out.iter().any(|x| **x == *g.value) {
                out.push(g.value.as_str().into());
            }
        } else if !v.is_broken("groups", &g.value) {
            let help = suggest(
                &g.value,
                groups.iter().copied(),
                "groups are declared under `[[groups]]`",
            );
            v.error(
                &g.loc,
                format!(
                    "application `{}` names unknown group `{}`",
                    r.name.value, g.value
                ),
            )
            .help = Some(help);
        }
    }
    let mut key_hashes = Vec::new();
    for k in &r.keys {
        match crate::keys::parse_hash(&k.value) {
            Some(h) => key_hashes.push(h),
            None => {
                v.error(
                    &k.loc,
                    "an application key must be written as its hash, `sha256:` and 64 hex digits",
                )
                .help = Some(format!(
                    "`hfconnect keys new --app {}` prints a new key and the line to add",
                    r.name.value
                ));
            }
        }
    }
    Application {
        name: r.name.value.into(),
        description: r.description,
        groups: out,
        key_hashes,
        act_for_users: r.act_for_users.unwrap_or(false),
        origin: v.origin(&ra.loc),
    }
}

/// Whether `integration:model` exists; reports and returns None when it does not.
fn check_model_ref<'m>(
    v: &mut V<'_>,
    loc: &Loc,
    what: &str,
    integration: &str,
    model: &str,
    lookup: &ModelIndex<'m>,
    index: &rustc_hash::FxHashMap<Arc<str>, usize>,
) -> bool {
    if lookup.get(integration, model).is_some() {
        return true;
    }
    if v.broken_integrations.contains(integration) {
        return false;
    }
    if !index.contains_key(integration) {
        let help = suggest(
            integration,
            index.keys().map(|k| &**k),
            "integrations are declared under `[[integrations]]`",
        );
        v.error(
            loc,
            format!("{what} names unknown integration `{integration}`"),
        )
        .help = Some(help);
        return false;
    }
    let broken_model = v
        .broken
        .iter()
        .any(|(_, list, name)| list.ends_with(".models") && name == model);
    if !broken_model {
        let help = suggest(
            model,
            lookup.names(integration),
            &format!("the models of integration `{integration}` are declared under its `[[integrations.models]]`"),
        );
        v.error(
            loc,
            format!("{what} names unknown model `{model}` of integration `{integration}`"),
        )
        .help = Some(help);
    }
    false
}

pub(super) fn prompt<'m>(
    v: &mut V<'_>,
    rp: Spanned<RawPrompt>,
    lookup: &ModelIndex<'m>,
    index: &rustc_hash::FxHashMap<Arc<str>, usize>,
) -> Option<Prompt> {
    let r = rp.value;
    let mut ok = true;
    let template = match PromptTemplate::parse(&r.template.value) {
        Ok(t) => Some(t),
        Err(e) => {
            v.error(
                &r.template.loc,
                format!("template of prompt `{}`: {e}", r.name.value),
            )
            .help = Some("placeholders look like `${name}`".into());
            None
        }
    };
    if r.template.value.trim().is_empty() {
        v.error(
            &r.template.loc,
            format!("template of prompt `{}` is empty", r.name.value),
        );
        ok = false;
    }
    if r.models.value.is_empty() {
        v.error(
            &r.models.loc,
            format!("prompt `{}` lists no models", r.name.value),
        )
        .help = Some(
            "only the models listed may use a prompt: list them as `\"integration:model\"`".into(),
        );
        ok = false;
    }
    let mut models = Vec::new();
    for m in &r.models.value {
        let Some((i, name)) = m.value.split_once(':') else {
            v.error(&m.loc, format!("`{}` is not a model reference", m.value))
                .help = Some("write `\"integration:model\"`".into());
            ok = false;
            continue;
        };
        let what = format!("prompt `{}`", r.name.value);
        if check_model_ref(v, &m.loc, &what, i, name, lookup, index) {
            models.push(ModelRef {
                integration: i.into(),
                model: name.into(),
            });
        } else {
            ok = false;
        }
    }
    let template = template?;
    if !ok {
        return None;
    }
    Some(Prompt {
        name: r.name.value.into(),
        description: r.description,
        template,
        models,
        origin: v.origin(&rp.loc),
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn grant<'m>(
    v: &mut V<'_>,
    rg: Spanned<RawGrant>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    prompts: &HashSet<&str>,
    lookup: &ModelIndex<'m>,
    index: &rustc_hash::FxHashMap<Arc<str>, usize>,
) -> Option<Grant> {
    let r = rg.value;
    let mut ok = true;
    let subject = match r.subject.value.parse::<Subject>() {
        Ok(s) => {
            match &s {
                Subject::Group(g) if !groups.contains(&**g) && !v.is_broken("groups", g) => {
                    let help = suggest(
                        g,
                        groups.iter().copied(),
                        "groups are declared under `[[groups]]`",
                    );
                    v.error(&r.subject.loc, format!("grant names unknown group `{g}`"))
                        .help = Some(help);
                    ok = false;
                }
                Subject::App(a) if !apps.contains(&**a) && !v.is_broken("applications", a) => {
                    let help = suggest(
                        a,
                        apps.iter().copied(),
                        "applications are declared under `[[applications]]`",
                    );
                    v.error(
                        &r.subject.loc,
                        format!("grant names unknown application `{a}`"),
                    )
                    .help = Some(help);
                    ok = false;
                }
                _ => {}
            }
            Some(s)
        }
        Err(e) => {
            v.error(&r.subject.loc, e.to_string());
            None
        }
    };
    let target = match r.target.value.parse::<Target>() {
        Ok(t) => {
            match &t {
                Target::Integration(i)
                    if !index.contains_key(i) && !v.broken_integrations.contains(&**i) =>
                {
                    let help = suggest(
                        i,
                        index.keys().map(|k| &**k),
                        "integrations are declared under `[[integrations]]`",
                    );
                    v.error(
                        &r.target.loc,
                        format!("grant names unknown integration `{i}`"),
                    )
                    .help = Some(help);
                    ok = false;
                }
                Target::Model(i, m)
                    if !check_model_ref(v, &r.target.loc, "grant", i, m, lookup, index) =>
                {
                    ok = false;
                }
                Target::Prompt(p) if !prompts.contains(&**p) && !v.is_broken("prompts", p) => {
                    let help = suggest(
                        p,
                        prompts.iter().copied(),
                        "prompts are declared under `[[prompts]]`",
                    );
                    v.error(&r.target.loc, format!("grant names unknown prompt `{p}`"))
                        .help = Some(help);
                    ok = false;
                }
                _ => {}
            }
            Some(t)
        }
        Err(e) => {
            v.error(&r.target.loc, e.to_string());
            None
        }
    };
    let mut access = AccessSet::EMPTY;
    if r.access.value.is_empty() {
        v.error(&r.access.loc, "`access` is empty: a grant must give at least one of `CREATE`, `READ`, `UPDATE`, `DELETE`, `EXECUTE`");
        ok = false;
    }
    for a in &r.access.value {
        if !access.insert(a.value) {
            v.warn(&a.loc, format!("`{}` is listed twice", a.value));
        }
    }
    let (subject, target) = (subject?, target?);
    if !ok {
        return None;
    }
    Some(Grant::new(subject, target, access, v.origin(&rg.loc)))
}
