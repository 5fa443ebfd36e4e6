//! `access diff`: every (subject, access, target) whose decision differs
//! between two configs, with the path before and after; and, apart (they
//! are not access), the limits, quotas and budgets that changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{decide, subjects, targets, AccessMap, Path, Who};
use crate::access::{Access, Target};
use crate::catalog::{Catalog, Limits};

/// One decision that changed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Change {
    pub subject: Who,
    pub access: Access,
    pub target: String,
    /// Allowed now and not before (`false`: revoked).
    pub gained: bool,
    /// What decided it in the old config, and in the new one.
    pub before: Path,
    pub after: Path,
}

/// A limit, quota or budget that was added, removed or changed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LimitChange {
    /// What it is (`quota of group:support on hf`, `budget daily`, …).
    pub what: String,
    /// How it read before and after (`None`: absent).
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a config change does.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Diff {
    /// In subject order, then target, then access.
    pub changes: Vec<Change>,
    pub limits: Vec<LimitChange>,
}

impl Diff {
    /// How many decisions became allowed, and how many stopped being.
    pub fn counts(&self) -> (usize, usize) {
        let gained = self.changes.iter().filter(|c| c.gained).count();
        (gained, self.changes.len() - gained)
    }
}

/// Every decision that differs between `old` and `new`.
pub fn diff(old: &Catalog, new: &Catalog) -> Diff {
    let mut who: Vec<Who> = subjects(old);
    let seen: BTreeSet<Who> = who.iter().cloned().collect();
    who.extend(subjects(new).into_iter().filter(|w| !seen.contains(w)));
    // Any other user last, once.
    who.retain(|w| *w != Who::OtherUser);
    who.sort();
    who.push(Who::OtherUser);
    let mut all: Vec<Target> = targets(old);
    let known: BTreeSet<Target> = all.iter().cloned().collect();
    all.extend(targets(new).into_iter().filter(|t| !known.contains(t)));

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| AccessMap::new(old, &who, &all));
        let b = AccessMap::new(new, &who, &all);
        (a.join().ok(), b)
    });
    let Some(a) = a else {
        return Diff {
            changes: Vec::new(),
            limits: limit_changes(old, new),
        };
    };
    let mut changes = Vec::new();
    for w in &who {
        let (ra, rb) = (a.row(w), b.row(w));
        if ra == rb {
            continue;
        }
        for t in &all {
            for access in Access::ALL {
                let (was, is) = (a.allows(w, access, t), b.allows(w, access, t));
                if was == is {
                    continue;
                }
                let (_, before) = decide(old, w, access, t);
                let (_, after) = decide(new, w, access, t);
                changes.push(Change {
                    subject: w.clone(),
                    access,
                    target: t.to_string(),
                    gained: is,
                    before,
                    after,
                });
            }
        }
    }
    Diff {
        changes,
        limits: limit_changes(old, new),
    }
}

fn limits_text(l: &Limits) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some((per_second, burst)) = l.rate {
        out.push((
            "rate_limit",
            format!("{per_second} per second, burst {burst}"),
        ));
    }
    if let Some(n) = l.max_concurrency {
        out.push(("max_concurrency", n.to_string()));
    }
    out
}

/// Every limit, quota and budget of `c`, by what it is.
fn limits_of(c: &Catalog) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in c.integrations() {
        for (k, v) in limits_text(&i.limits()) {
            out.insert(format!("`{k}` of integration `{}`", i.name()), v);
        }
        for m in i.models() {
            for (k, v) in limits_text(&m.limits()) {
                out.insert(
                    format!(
                        "`{k}` of model `{}` of integration `{}`",
                        m.name(),
                        i.name()
                    ),
                    v,
                );
            }
        }
    }
    for q in c.quotas() {
        out.insert(
            format!(
                "quota of `{}` on integration `{}`",
                q.subject, q.integration
            ),
            format!("{} tasks per minute", q.per_minute),
        );
    }
    for b in c.budgets() {
        out.insert(
            format!("budget `{}`", b.name()),
            format!(
                "{} tokens per {} for `{}`{} on {}",
                b.tokens(),
                b.window().describe(),
                b.subject(),
                if b.each_member() {
                    " (each member)"
                } else {
                    ""
                },
                b.target()
                    .map_or_else(|| "everything".to_string(), |t| format!("`{t}`"))
            ),
        );
    }
    out
}

fn limit_changes(old: &Catalog, new: &Catalog) -> Vec<LimitChange> {
    let (a, b) = (limits_of(old), limits_of(new));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| LimitChange {
            what: k.clone(),
            before: a.get(k).cloned(),
            after: b.get(k).cloned(),
        })
        .collect()
}
