//! Access analysis: who may do what under a config, and what a change of
//! config grants or revokes. Every answer is a decision of the same
//! [`Policy::decide_at`](crate::access::Policy) that decides at run time,
//! asked for every subject the config names (each user a group or grant
//! names, each application, and one user it names nowhere: "any other
//! user"), every integration, model and prompt, and every access type —
//! never a second reading of the files.
//!
//! Callers whose decisions cannot differ are asked once: a subject that no
//! grant names is decided by its groups (in order) and its `ADMIN` role
//! alone, so the users and applications sharing those are one class and
//! share one row of answers. A subject some grant names is a class of its
//! own.

mod assertions;
mod diff;
mod who_can;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::access::{Access, Decision, Principal, Reason, Subject, Target};
use crate::catalog::Catalog;

pub use self::assertions::check;
pub use self::diff::{diff, Change, Diff};
pub use self::who_can::who_can;

/// A user id no config can name (config ids are printable), standing for
/// every user the config does not name.
const OTHER_USER: &str = "\u{1}any other user";

/// A subject of the analysis: one the config names, or any other user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// A user or application the config names.
    Named(Subject),
    /// Every user the config names nowhere (in no group, in no grant).
    OtherUser,
}

impl Who {
    fn subject(&self) -> Subject {
        match self {
            Who::Named(s) => s.clone(),
            Who::OtherUser => Subject::User(OTHER_USER.into()),
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Named(s) => write!(f, "{s}"),
            Who::OtherUser => f.write_str("any other user"),
        }
    }
}

impl Serialize for Who {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every subject that can act and that `catalog` names: the users its
/// groups and grants name, and its applications; then any other user.
pub fn subjects(catalog: &Catalog) -> Vec<Who> {
    let mut named: BTreeSet<Subject> = BTreeSet::new();
    for g in catalog.groups() {
        named.extend(g.members().iter().map(|m| Subject::User(m.clone())));
    }
    for a in catalog.applications() {
        named.insert(Subject::App(a.name().into()));
    }
    for g in catalog.policy().grants() {
        if matches!(g.subject, Subject::User(_)) {
            named.insert(g.subject.clone());
        }
    }
    named
        .into_iter()
        .map(Who::Named)
        .chain(std::iter::once(Who::OtherUser))
        .collect()
}

/// Every target of `catalog`: each integration, then its models; then the prompts.
pub fn targets(catalog: &Catalog) -> Vec<Target> {
    let mut out = Vec::new();
    for i in catalog.integrations() {
        out.push(Target::Integration(i.name().into()));
        out.extend(i.models().iter().map(|m| m.target().clone()));
    }
    out.extend(
        catalog
            .prompts()
            .iter()
            .map(|p| Target::Prompt(p.name().into())),
    );
    out
}

/// What allowed a decision, or why none did: the analysis's "path".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Path {
    /// `grant`, `admin`, or the refusal's kind (`no_grant`,
    /// `integration_inactive`, `model_inactive`, `unknown_target`,
    /// `unknown_subject`).
    pub kind: &'static str,
    /// How it reads.
    pub text: String,
    /// The group it goes through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_group: Option<String>,
    /// Where the grant that allows it was written (`FILE:LINE:COLUMN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    fn of(reason: &Reason) -> Path {
        let plain = |kind, text: String| Path {
            kind,
            text,
            via_group: None,
            at: None,
        };
        match reason {
            Reason::Granted { grant } => {
                let at = grant.origin.at().to_string();
                match &grant.subject {
                    Subject::Group(g) => Path {
                        kind: "grant",
                        text: format!(
                            "via group `{g}`: grant at {at} (`{}` may {} on `{}`)",
                            grant.subject, grant.access, grant.target
                        ),
                        via_group: Some(g.to_string()),
                        at: Some(at),
                    },
                    s => Path {
                        kind: "grant",
                        text: format!(
                            "direct grant at {at} (`{s}` may {} on `{}`)",
                            grant.access, grant.target
                        ),
                        via_group: None,
                        at: Some(at),
                    },
                }
            }
            Reason::Admin { group } => Path {
                kind: "admin",
                text: format!("the `ADMIN` role of group `{group}`"),
                via_group: Some(group.to_string()),
                at: None,
            },
            Reason::NoGrant { .. } => plain("no_grant", "no grant".into()),
            Reason::All { reasons } => reasons
                .first()
                .map_or_else(|| plain("no_grant", "no grant".into()), Path::of),
            other => plain(other.kind(), other.to_string()),
        }
    }

    fn unknown(who: &Who) -> Path {
        Path {
            kind: "unknown_subject",
            text: format!("`{who}` is not in this config"),
            via_group: None,
            at: None,
        }
    }
}

/// One catalog's policy, asked as `who`: the principal, or why there is none.
fn principal(catalog: &Catalog, who: &Who) -> Option<Principal> {
    catalog.policy().principal(&who.subject(), None).ok()
}

/// The decision and its path for one question.
fn decide(catalog: &Catalog, who: &Who, access: Access, target: &Target) -> (bool, Path) {
    match principal(catalog, who) {
        None => (false, Path::unknown(who)),
        Some(p) => {
            let d: Decision = catalog.policy().decide(&p, access, target);
            (d.allowed, Path::of(&d.reason))
        }
    }
}

fn bit(a: Access) -> u8 {
    match a {
        Access::Create => 1,
        Access::Read => 2,
        Access::Update => 4,
        Access::Delete => 8,
        Access::Execute => 16,
    }
}

/// Every answer of one catalog: for each subject, the access types allowed
/// on each target (a bit each), as rows shared by subjects of one class.
pub(crate) struct AccessMap {
    index: FxHashMap<Target, usize>,
    rows: Vec<Arc<[u8]>>,
    of: HashMap<Who, usize>,
}

/// What makes two callers decide alike: their own subject when a grant
/// names it, their groups in order, and the group making them `ADMIN`.
type ClassKey = (Option<Subject>, Vec<Arc<str>>, Option<Arc<str>>);

impl AccessMap {
    /// Ask `catalog` about every one of `subjects` on every one of `targets`.
    pub(crate) fn new(catalog: &Catalog, subjects: &[Who], targets: &[Target]) -> AccessMap {
        let policy = catalog.policy();
        let granted: HashSet<&Subject> = policy.grants().iter().map(|g| &g.subject).collect();
        let mut classes: HashMap<ClassKey, usize> = HashMap::new();
        let mut reps: Vec<Option<Principal>> = Vec::new();
        let mut of = HashMap::new();
        for who in subjects {
            let p = principal(catalog, who);
            let key = match &p {
                None => (Some(who.subject()), Vec::new(), None),
                Some(p) => (
                    granted.contains(p.subject()).then(|| p.subject().clone()),
                    p.groups().to_vec(),
                    p.admin_via().map(Arc::from),
                ),
            };
            let n = reps.len();
            let class = *classes.entry(key).or_insert_with(|| {
                reps.push(p);
                n
            });
            of.insert(who.clone(), class);
        }
        let ids: Vec<_> = targets.iter().map(|t| policy.target_id(t)).collect();
        let row = |p: &Option<Principal>| -> Arc<[u8]> {
            let Some(p) = p else {
                return vec![0u8; targets.len()].into();
            };
            targets
                .iter()
                .zip(&ids)
                .map(|(t, id)| {
                    Access::ALL
                        .iter()
                        .filter(|a| policy.decide_at(p, **a, t, *id).allowed)
                        .fold(0u8, |bits, a| bits | bit(*a))
                })
                .collect()
        };
        // The classes are independent: spread them over the cores.
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(reps.len().max(1));
        let chunk = reps.len().div_ceil(threads).max(1);
        let rows: Vec<Arc<[u8]>> = std::thread::scope(|s| {
            let handles: Vec<_> = reps
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(row).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let index = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        AccessMap { index, rows, of }
    }

    /// The access bits of `who` on every target, in the order given.
    fn row(&self, who: &Who) -> Option<&[u8]> {
        self.of
            .get(who)
            .and_then(|&c| self.rows.get(c))
            .map(|r| &r[..])
    }

    /// Whether `who` may do `access` on `target`.
    pub(crate) fn allows(&self, who: &Who, access: Access, target: &Target) -> bool {
        let (Some(row), Some(&t)) = (self.row(who), self.index.get(target)) else {
            return false;
        };
        row.get(t).is_some_and(|b| b & bit(access) != 0)
    }
}

#[cfg(test)]
mod tests;
