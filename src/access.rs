//! RBAC: subjects, targets, access types, grants, the compiled policy and its
//! decisions.
//!
//! A pure function of the catalog's grants and memberships: it knows nothing of
//! HTTP, providers or files. Deny by default; `decide` never fails, it answers
//! with a [`Decision`] that says why (the grant that allowed it, or what was
//! checked and what grant is missing).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::origin::Origin;
use crate::untrusted::Untrusted;

/// What a subject may do with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Access {
    /// Create resources under the target.
    Create,
    /// See the target.
    Read,
    /// Change the target.
    Update,
    /// Remove the target.
    Delete,
    /// Run tasks on the target.
    Execute,
}

impl Access {
    /// Every access type, in the order they are listed.
    pub const ALL: [Access; 5] = [
        Access::Create,
        Access::Read,
        Access::Update,
        Access::Delete,
        Access::Execute,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The upper-case name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Create => "CREATE",
            Access::Read => "READ",
            Access::Update => "UPDATE",
            Access::Delete => "DELETE",
            Access::Execute => "EXECUTE",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Access::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown access `{s}`; expected `CREATE`, `READ`, `UPDATE`, `DELETE` or `EXECUTE`"))
    }
}

/// A set of access types.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AccessSet(u8);

impl AccessSet {
    /// The empty set.
    pub const EMPTY: AccessSet = AccessSet(0);

    /// Whether `access` is in the set.
    pub fn contains(self, access: Access) -> bool {
        self.0 & access.bit() != 0
    }

    /// Add `access`; returns false when it was already there.
    pub fn insert(&mut self, access: Access) -> bool {
        let had = self.contains(access);
        self.0 |= access.bit();
        !had
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(self, other: AccessSet) -> AccessSet {
        AccessSet(self.0 | other.0)
    }

    /// The members, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Access> {
        Access::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Access> for AccessSet {
    fn from_iter<I: IntoIterator<Item = Access>>(iter: I) -> Self {
        let mut s = AccessSet::EMPTY;
        for a in iter {
            s.insert(a);
        }
        s
    }
}

impl fmt::Display for AccessSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for AccessSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{self}]")
    }
}

/// A role carried by a group. `ADMIN` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Role {
    /// Every access on every target.
    Admin,
}

/// Who a grant is given to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Subject {
    /// A person, by the id the engine knows them by (often an e-mail address).
    User(Arc<str>),
    /// A declared group; its members inherit its grants.
    Group(Arc<str>),
    /// A declared application (service account).
    App(Arc<str>),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(id) => write!(f, "user:{}", Untrusted(id)),
            Subject::Group(g) => write!(f, "group:{}", Untrusted(g)),
            Subject::App(a) => write!(f, "app:{}", Untrusted(a)),
        }
    }
}

/// Why a subject or target string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseRefError {
    message: String,
}

impl ParseRefError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

fn non_empty<'a>(s: &'a str, what: &str, full: &str) -> Result<&'a str, ParseRefError> {
    let full = Untrusted(full);
    if s.trim().is_empty() {
        Err(ParseRefError::new(format!("`{full}` has an empty {what}")))
    } else if s.trim() != s {
        Err(ParseRefError::new(format!(
            "`{full}` has spaces around its {what}"
        )))
    } else {
        Ok(s)
    }
}

impl FromStr for Subject {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, ParseRefError> {
        let bad = || {
            ParseRefError::new(format!(
                "`{}` is not a subject; write `group:NAME`, `app:NAME` or `user:ID`",
                Untrusted(s)
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "user" => Ok(Subject::User(non_empty(rest, "user id", s)?.into())),
            "group" => Ok(Subject::Group(non_empty(rest, "group name", s)?.into())),
            "app" => Ok(Subject::App(non_empty(rest, "application name", s)?.into())),
            _ => Err(bad()),
        }
    }
}

/// What a grant is about. A grant on an integration covers all its models.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Target {
    /// An integration and every model under it.
    Integration(Arc<str>),
    /// One model of an integration.
    Model(Arc<str>, Arc<str>),
    /// A saved prompt.
    Prompt(Arc<str>),
}

impl Target {
    /// A model target.
    pub fn model(integration: &str, model: &str) -> Target {
        Target::Model(integration.into(), model.into())
    }

    /// The targets whose grants count for this one, most specific first.
    pub fn covering(&self) -> Vec<Target> {
        match self {
            Target::Model(i, _) => vec![self.clone(), Target::Integration(i.clone())],
            _ => vec![self.clone()],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Integration(i) => write!(f, "integration:{}", Untrusted(i)),
            Target::Model(i, m) => write!(f, "model:{}:{}", Untrusted(i), Untrusted(m)),
            Target::Prompt(p) => write!(f, "prompt:{}", Untrusted(p)),
        }
    }
}

impl FromStr for Target {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, ParseRefError> {
        let bad = || {
            ParseRefError::new(format!(
                "`{}` is not a target; write `integration:NAME`, `model:INTEGRATION:MODEL` or `prompt:NAME`",
                Untrusted(s)
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "integration" => Ok(Target::Integration(
                non_empty(rest, "integration name", s)?.into(),
            )),
            "prompt" => Ok(Target::Prompt(non_empty(rest, "prompt name", s)?.into())),
            "model" => {
                let (i, m) = rest.split_once(':').ok_or_else(|| {
                    ParseRefError::new(format!(
                        "`{}` names no integration; write `model:INTEGRATION:MODEL`",
                        Untrusted(s)
                    ))
                })?;
                Ok(Target::Model(
                    non_empty(i, "integration name", s)?.into(),
                    non_empty(m, "model name", s)?.into(),
                ))
            }
            _ => Err(bad()),
        }
    }
}

/// One grant: a subject may do `access` on `target`.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Who.
    pub subject: Subject,
    /// On what.
    pub target: Target,
    /// What they may do.
    pub access: AccessSet,
    /// Where the grant was written.
    pub origin: Origin,
    /// How it reads, formatted once: every allowed task's audit event says
    /// which grant allowed it, and formatting it each time showed in the profile.
    shown: std::sync::OnceLock<Box<str>>,
}

impl Grant {
    /// `subject` may do `access` on `target`, as written at `origin`.
    pub(crate) fn new(
        subject: Subject,
        target: Target,
        access: AccessSet,
        origin: Origin,
    ) -> Grant {
        Grant {
            subject,
            target,
            access,
            origin,
            shown: std::sync::OnceLock::new(),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown.get_or_init(|| {
            format!(
                "`{}` may {} on `{}` (grant at {})",
                self.subject,
                self.access,
                self.target,
                self.origin.at()
            )
            .into_boxed_str()
        }))
    }
}

/// A caller, resolved: its own subject, the groups whose grants count, and
/// the group that makes it an admin, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: Subject,
    groups: Arc<[Arc<str>]>,
    admin_via: Option<Arc<str>>,
    scope: Option<Arc<str>>,
}

impl Principal {
    /// The caller's own subject (`user:…` or `app:…`).
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The groups whose grants count (only the scoped group when scoped).
    pub fn groups(&self) -> &[Arc<str>] {
        &self.groups
    }

    /// The group the task is scoped to, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The group through which the caller holds `ADMIN`, if any.
    pub fn admin_via(&self) -> Option<&str> {
        self.admin_via.as_deref()
    }

    fn subjects(&self) -> impl Iterator<Item = Subject> + '_ {
        std::iter::once(self.subject.clone())
            .chain(self.groups.iter().map(|g| Subject::Group(g.clone())))
    }
}

/// Why a principal could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalError {
    /// `app:NAME` names no declared application.
    #[error("unknown application `{}`: applications must be declared under `[[applications]]`", Untrusted(.0))]
    UnknownApplication(String),
    /// A subject that cannot call (`group:…`).
    #[error("`{}` cannot act: tasks run as `user:ID` or `app:NAME`", Untrusted(.0))]
    NotACaller(String),
    /// The scope names no declared group.
    #[error("unknown group `{}`", Untrusted(.0))]
    UnknownGroup(String),
    /// The scope names a group the caller is not in.
    #[error("`{}` is not a member of group `{}`, so it cannot act as that group", Untrusted(.subject), Untrusted(.group))]
    NotAMember {
        /// The caller.
        subject: String,
        /// The group named.
        group: String,
    },
}

/// The answer to "may this principal do this on that target?".
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
}

/// Why a decision came out the way it did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reason {
    /// The principal holds `ADMIN` through this group.
    Admin {
        /// The group carrying the role.
        group: Arc<str>,
    },
    /// A grant allowed it.
    Granted {
        /// The grant.
        grant: Arc<Grant>,
    },
    /// The integration is switched off; no grant is looked at.
    IntegrationInactive {
        /// The integration.
        integration: Arc<str>,
    },
    /// The model is switched off; no grant is looked at.
    ModelInactive {
        /// The integration.
        integration: Arc<str>,
        /// The model.
        model: Arc<str>,
    },
    /// The target is not in the catalog.
    UnknownTarget {
        /// The target asked about.
        target: Target,
    },
    /// No grant gives the access asked for.
    NoGrant {
        /// The access asked for.
        access: Access,
        /// The target asked about.
        target: Target,
        /// The caller whose subjects were looked at (see [`Reason::checked_subjects`]).
        principal: Principal,
        /// Grants that matched subject and target but not the access.
        near_misses: Vec<Arc<Grant>>,
    },
}

impl Reason {
    /// With [`Reason::NoGrant`]: the subjects whose grants were looked at (the
    /// caller, then the groups that count).
    pub fn checked_subjects(&self) -> Vec<Subject> {
        match self {
            Reason::NoGrant { principal, .. } => principal.subjects().collect(),
            _ => Vec::new(),
        }
    }

    /// With [`Reason::NoGrant`]: the targets whose grants count (the model and its integration).
    pub fn checked_targets(&self) -> Vec<Target> {
        match self {
            Reason::NoGrant { target, .. } => target.covering(),
            _ => Vec::new(),
        }
    }

    /// A short machine-readable name for the reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Admin { .. } => "admin",
            Reason::Granted { .. } => "granted",
            Reason::IntegrationInactive { .. } => "integration_inactive",
            Reason::ModelInactive { .. } => "model_inactive",
            Reason::UnknownTarget { .. } => "unknown_target",
            Reason::NoGrant { .. } => "no_grant",
        }
    }

    /// The grant that allowed the decision, if one did.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Reason::Granted { grant } => Some(grant.as_ref()),
            _ => None,
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    quoted.join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Admin { group } => write!(f, "allowed by the `ADMIN` role of group `{group}`"),
            Reason::Granted { grant } => write!(f, "allowed: {grant}"),
            Reason::IntegrationInactive { integration } => {
                write!(f, "integration `{integration}` is inactive (`active = false`); no grant is looked at")
            }
            Reason::ModelInactive { integration, model } => {
                write!(f, "model `{model}` of integration `{integration}` is inactive (`active = false`); no grant is looked at")
            }
            Reason::UnknownTarget { target } => write!(f, "`{target}` is not in the catalog"),
            Reason::NoGrant {
                access,
                target,
                principal,
                near_misses,
            } => {
                let subjects = &self.checked_subjects();
                let targets = &self.checked_targets();
                let scope = &principal.scope;
                write!(
                    f,
                    "no grant gives `{access}` on `{target}`; checked subjects {} against {}",
                    list(subjects),
                    list(targets)
                )?;
                if let Some(g) = scope {
                    write!(f, " (scoped to group `{g}`: grants of the caller's other groups do not count)")?;
                }
                for g in near_misses {
                    write!(
                        f,
                        "; `{}` has only {} on `{}` (grant at {})",
                        g.subject,
                        g.access,
                        g.target,
                        g.origin.at()
                    )?;
                }
                let who = subjects
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                write!(f, "; needed: a grant of `{access}` on ")?;
                let alts: Vec<String> = targets.iter().map(|t| format!("`{t}`")).collect();
                write!(f, "{}", alts.join(" or "))?;
                if subjects.len() > 1 {
                    write!(f, " to `{who}` or one of its groups")
                } else {
                    write!(f, " to `{who}`")
                }
            }
        }
    }
}

/// A group as the policy sees it.
#[derive(Debug, Clone)]
pub(crate) struct GroupInput {
    /// Group name.
    pub name: Arc<str>,
    /// User ids.
    pub members: Vec<Arc<str>>,
    /// Roles carried by the group.
    pub roles: Vec<Role>,
}

/// Everything the policy is compiled from.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyInput {
    /// All grants.
    pub grants: Vec<Grant>,
    /// Declared groups.
    pub groups: Vec<GroupInput>,
    /// Declared applications and their groups.
    pub applications: Vec<(Arc<str>, Vec<Arc<str>>)>,
    /// Integrations and whether each is active.
    pub integrations: Vec<(Arc<str>, bool)>,
    /// Models (integration, model) and whether each is active.
    pub models: Vec<(Arc<str>, Arc<str>, bool)>,
    /// Prompt names.
    pub prompts: Vec<Arc<str>>,
}

/// The compiled policy: grants indexed by target then subject, memberships,
/// roles and active flags. Immutable; rebuild it to change it.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    grants: Vec<Arc<Grant>>,
    /// Every integration, model and prompt, with its grants.
    targets: FxHashMap<Target, usize>,
    nodes: Vec<Node>,
    groups: HashMap<Arc<str>, Vec<Role>>,
    user_groups: HashMap<Arc<str>, Vec<Arc<str>>>,
    app_groups: HashMap<Arc<str>, Vec<Arc<str>>>,
}

use crate::FxHashMap;

/// A target as decisions need it: active or not, the integration above a
/// model, and the grants on it by subject (indexes into `grants`; grants with
/// the same subject and target are merged at compile time).
#[derive(Debug, Clone, Default)]
struct Node {
    active: bool,
    parent: Option<usize>,
    users: FxHashMap<Arc<str>, usize>,
    groups: FxHashMap<Arc<str>, usize>,
    apps: FxHashMap<Arc<str>, usize>,
}

impl Node {
    fn len(&self) -> usize {
        self.users.len() + self.groups.len() + self.apps.len()
    }

    fn map(&mut self, subject: &Subject) -> (&mut FxHashMap<Arc<str>, usize>, Arc<str>) {
        match subject {
            Subject::User(u) => (&mut self.users, u.clone()),
            Subject::Group(g) => (&mut self.groups, g.clone()),
            Subject::App(a) => (&mut self.apps, a.clone()),
        }
    }

    /// The grant of the caller's own subject, then those of its groups.
    fn each_grant(&self, principal: &Principal, mut f: impl FnMut(usize) -> bool) -> bool {
        let own = match &principal.subject {
            Subject::User(u) => self.users.get(u),
            Subject::App(a) => self.apps.get(a),
            Subject::Group(_) => None,
        };
        if let Some(&i) = own {
            if f(i) {
                return true;
            }
        }
        if self.groups.is_empty() {
            return false;
        }
        // Walk whichever side is smaller: the caller's groups or the target's group grants.
        if self.groups.len() <= principal.groups.len() {
            for (g, &i) in &self.groups {
                if principal.groups.contains(g) && f(i) {
                    return true;
                }
            }
        } else {
            for g in principal.groups.iter() {
                if let Some(&i) = self.groups.get(g) {
                    if f(i) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

impl Policy {
    /// Compile a policy.
    pub(crate) fn new(input: PolicyInput) -> Policy {
        let mut targets: FxHashMap<Target, usize> = FxHashMap::default();
        let mut nodes: Vec<Node> = Vec::new();
        let mut node = |targets: &mut FxHashMap<Target, usize>, t: Target, active: bool, parent| {
            let i = *targets.entry(t).or_insert_with(|| {
                nodes.push(Node::default());
                nodes.len() - 1
            });
            if let Some(n) = nodes.get_mut(i) {
                n.active = active;
                n.parent = parent;
            }
            i
        };
        let mut integration_nodes = HashMap::new();
        for (i, active) in input.integrations {
            let n = node(&mut targets, Target::Integration(i.clone()), active, None);
            integration_nodes.insert(i, n);
        }
        for (i, m, active) in input.models {
            let parent = integration_nodes.get(&i).copied();
            node(&mut targets, Target::Model(i, m), active, parent);
        }
        for p in input.prompts {
            node(&mut targets, Target::Prompt(p), true, None);
        }
        let mut grants: Vec<Grant> = Vec::with_capacity(input.grants.len());
        for g in input.grants {
            // Grants on targets outside the catalog can never apply; keep them
            // listed (for `grants()`) but unindexed.
            let Some(n) = targets.get(&g.target).and_then(|&i| nodes.get_mut(i)) else {
                grants.push(g);
                continue;
            };
            let (map, key) = n.map(&g.subject);
            match map.get(&key) {
                Some(&i) => {
                    if let Some(existing) = grants.get_mut(i) {
                        existing.access = existing.access.union(g.access);
                    }
                }
                None => {
                    map.insert(key, grants.len());
                    grants.push(g);
                }
            }
        }
        let mut user_groups: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
        let mut groups = HashMap::new();
        for g in input.groups {
            for m in &g.members {
                let entry = user_groups.entry(m.clone()).or_default();
                if !entry.contains(&g.name) {
                    entry.push(g.name.clone());
                }
            }
            groups.insert(g.name, g.roles);
        }
        Policy {
            grants: grants.into_iter().map(Arc::new).collect(),
            targets,
            nodes,
            groups,
            user_groups,
            app_groups: input.applications.into_iter().collect(),
        }
    }

    /// The (merged) grants of the policy.
    pub fn grants(&self) -> &[Arc<Grant>] {
        &self.grants
    }

    /// Resolve a caller into a principal, optionally narrowed to one of its groups.
    pub fn principal(
        &self,
        subject: &Subject,
        scope: Option<&str>,
    ) -> Result<Principal, PrincipalError> {
        let groups: Vec<Arc<str>> = match subject {
            Subject::User(id) => self.user_groups.get(id).cloned().unwrap_or_default(),
            Subject::App(name) => match self.app_groups.get(name) {
                Some(g) => g.clone(),
                None => return Err(PrincipalError::UnknownApplication(name.to_string())),
            },
            Subject::Group(_) => return Err(PrincipalError::NotACaller(subject.to_string())),
        };
        let groups = match scope {
            None => groups,
            Some(s) => {
                if !self.groups.contains_key(s) {
                    return Err(PrincipalError::UnknownGroup(s.to_string()));
                }
                match groups.into_iter().find(|g| &**g == s) {
                    Some(g) => vec![g],
                    None => {
                        return Err(PrincipalError::NotAMember {
                            subject: subject.to_string(),
                            group: s.to_string(),
                        })
                    }
                }
            }
        };
        let admin_via = groups
            .iter()
            .find(|g| {
                self.groups
                    .get(*g)
                    .is_some_and(|roles| roles.contains(&Role::Admin))
            })
            .cloned();
        Ok(Principal {
            subject: subject.clone(),
            groups: groups.into(),
            admin_via,
            scope: scope.map(Arc::from),
        })
    }

    /// May `principal` do `access` on `target`?
    pub fn decide(&self, principal: &Principal, access: Access, target: &Target) -> Decision {
        let deny = |reason| Decision {
            allowed: false,
            reason,
        };
        let Some(node) = self.targets.get(target).and_then(|&i| self.nodes.get(i)) else {
            return deny(Reason::UnknownTarget {
                target: target.clone(),
            });
        };
        let parent = node.parent.and_then(|i| self.nodes.get(i));
        match target {
            Target::Integration(i) if !node.active => {
                return deny(Reason::IntegrationInactive {
                    integration: i.clone(),
                })
            }
            Target::Model(i, _) if parent.is_some_and(|p| !p.active) => {
                return deny(Reason::IntegrationInactive {
                    integration: i.clone(),
                })
            }
            Target::Model(i, m) if !node.active => {
                return deny(Reason::ModelInactive {
                    integration: i.clone(),
                    model: m.clone(),
                })
            }
            _ => {}
        }
        if let Some(group) = &principal.admin_via {
            return Decision {
                allowed: true,
                reason: Reason::Admin {
                    group: group.clone(),
                },
            };
        }
        let mut near_misses = Vec::new();
        let mut allowed = None;
        for n in std::iter::once(node).chain(parent) {
            if n.len() == 0 {
                continue;
            }
            let found = n.each_grant(principal, |i| match self.grants.get(i) {
                Some(g) if g.access.contains(access) => {
                    allowed = Some(g.clone());
                    true
                }
                Some(g) => {
                    near_misses.push(g.clone());
                    false
                }
                None => false,
            });
            if found {
                break;
            }
        }
        match allowed {
            Some(grant) => Decision {
                allowed: true,
                reason: Reason::Granted { grant },
            },
            None => deny(Reason::NoGrant {
                access,
                target: target.clone(),
                principal: principal.clone(),
                near_misses,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INTEGRATIONS: [&str; 3] = ["i0", "i1", "i2"];
    const MODELS: [&str; 2] = ["m0", "m1"];
    const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
    const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
    const APPS: [&str; 2] = ["a0", "a1"];
    const PROMPTS: [&str; 2] = ["p0", "p1"];

    #[derive(Debug, Clone)]
    struct World {
        grants: Vec<(Subject, Target, AccessSet)>,
        memberships: Vec<Vec<bool>>, // group -> user
        app_groups: Vec<Vec<bool>>,  // app -> group
        admin_group: Option<usize>,
        inactive_integration: Option<usize>,
        inactive_model: Option<(usize, usize)>,
    }

    fn subject() -> impl Strategy<Value = Subject> {
        prop_oneof![
            (0..USERS.len()).prop_map(|i| Subject::User(USERS[i].into())),
            (0..GROUPS.len()).prop_map(|i| Subject::Group(GROUPS[i].into())),
            (0..APPS.len()).prop_map(|i| Subject::App(APPS[i].into())),
        ]
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (0..INTEGRATIONS.len()).prop_map(|i| Target::Integration(INTEGRATIONS[i].into())),
            (0..INTEGRATIONS.len(), 0..MODELS.len())
                .prop_map(|(i, m)| Target::model(INTEGRATIONS[i], MODELS[m])),
            (0..PROMPTS.len()).prop_map(|i| Target::Prompt(PROMPTS[i].into())),
        ]
    }

    fn access_set() -> impl Strategy<Value = AccessSet> {
        (1u8..32).prop_map(AccessSet)
    }

    fn access() -> impl Strategy<Value = Access> {
        (0..5usize).prop_map(|i| Access::ALL[i])
    }

    fn world() -> impl Strategy<Value = World> {
        (
            prop::collection::vec((subject(), target(), access_set()), 0..24),
            prop::collection::vec(
                prop::collection::vec(any::<bool>(), USERS.len()),
                GROUPS.len(),
            ),
            prop::collection::vec(
                prop::collection::vec(any::<bool>(), GROUPS.len()),
                APPS.len(),
            ),
            prop::option::of(0..GROUPS.len()),
            prop::option::of(0..INTEGRATIONS.len()),
            prop::option::of((0..INTEGRATIONS.len(), 0..MODELS.len())),
        )
            .prop_map(
                |(
                    grants,
                    memberships,
                    app_groups,
                    admin_group,
                    inactive_integration,
                    inactive_model,
                )| World {
                    grants,
                    memberships,
                    app_groups,
                    admin_group,
                    inactive_integration,
                    inactive_model,
                },
            )
    }

    fn policy(w: &World, skip_grant: Option<usize>) -> Policy {
        let grants = w
            .grants
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != skip_grant)
            .map(|(_, (s, t, a))| Grant::new(s.clone(), t.clone(), *a, Origin::builtin("grants")))
            .collect();
        let groups = GROUPS
            .iter()
            .enumerate()
            .map(|(gi, g)| GroupInput {
                name: (*g).into(),
                members: USERS
                    .iter()
                    .enumerate()
                    .filter(|(ui, _)| w.memberships[gi][*ui])
                    .map(|(_, u)| (*u).into())
                    .collect(),
                roles: if w.admin_group == Some(gi) {
                    vec![Role::Admin]
                } else {
                    vec![]
                },
            })
            .collect();
        let applications = APPS
            .iter()
            .enumerate()
            .map(|(ai, a)| {
                let gs = GROUPS
                    .iter()
                    .enumerate()
                    .filter(|(gi, _)| w.app_groups[ai][*gi])
                    .map(|(_, g)| (*g).into())
                    .collect();
                ((*a).into(), gs)
            })
            .collect();
        let integrations = INTEGRATIONS
            .iter()
            .enumerate()
            .map(|(k, i)| ((*i).into(), w.inactive_integration != Some(k)))
            .collect();
        let models = INTEGRATIONS
            .iter()
            .enumerate()
            .flat_map(|(ik, i)| {
                MODELS
                    .iter()
                    .enumerate()
                    .map(move |(mk, m)| ((*i).into(), (*m).into(), (ik, mk)))
            })
            .map(|(i, m, key)| (i, m, w.inactive_model != Some(key)))
            .collect();
        Policy::new(PolicyInput {
            grants,
            groups,
            applications,
            integrations,
            models,
            prompts: PROMPTS.iter().map(|p| (*p).into()).collect(),
        })
    }

    fn callers() -> Vec<Subject> {
        USERS
            .iter()
            .map(|u| Subject::User((*u).into()))
            .chain(APPS.iter().map(|a| Subject::App((*a).into())))
            .collect()
    }

    fn all_targets() -> Vec<Target> {
        let mut t: Vec<Target> = INTEGRATIONS
            .iter()
            .map(|i| Target::Integration((*i).into()))
            .collect();
        for i in INTEGRATIONS {
            for m in MODELS {
                t.push(Target::model(i, m));
            }
        }
        t.extend(PROMPTS.iter().map(|p| Target::Prompt((*p).into())));
        t
    }

    fn integration_of(t: &Target) -> Option<&str> {
        match t {
            Target::Integration(i) | Target::Model(i, _) => Some(i),
            Target::Prompt(_) => None,
        }
    }

    proptest! {
        #[test]
        fn deny_when_no_grant(mut w in world(), a in access()) {
            w.grants.clear();
            w.admin_group = None;
            let p = policy(&w, None);
            for c in callers() {
                let pr = p.principal(&c, None).unwrap();
                for t in all_targets() {
                    prop_assert!(!p.decide(&pr, a, &t).allowed, "{c} {a} {t}");
                }
            }
        }

        #[test]
        fn never_allowed_by_a_grant_on_another_integration(w in world(), a in access()) {
            let p = policy(&w, None);
            for c in callers() {
                let pr = p.principal(&c, None).unwrap();
                for t in all_targets() {
                    let d = p.decide(&pr, a, &t);
                    if let Some(g) = d.reason.grant() {
                        prop_assert!(t.covering().contains(&g.target), "{t} allowed by grant on {}", g.target);
                        prop_assert_eq!(integration_of(&g.target), integration_of(&t));
                        prop_assert!(g.access.contains(a));
                    }
                }
            }
        }

        #[test]
        fn group_scoping_never_widens_access(w in world(), a in access()) {
            let p = policy(&w, None);
            for c in callers() {
                let full = p.principal(&c, None).unwrap();
                for g in full.groups().to_vec() {
                    let scoped = p.principal(&c, Some(&g)).unwrap();
                    prop_assert!(scoped.groups().len() == 1);
                    for t in all_targets() {
                        if p.decide(&scoped, a, &t).allowed {
                            prop_assert!(p.decide(&full, a, &t).allowed, "{c} as {g}: {a} {t}");
                        }
                    }
                }
            }
        }

        #[test]
        fn scoping_to_a_group_not_joined_is_an_error(w in world()) {
            let p = policy(&w, None);
            for c in callers() {
                let full = p.principal(&c, None).unwrap();
                for g in GROUPS {
                    if !full.groups().iter().any(|x| &**x == g) {
                        let is_not_member = matches!(p.principal(&c, Some(g)), Err(PrincipalError::NotAMember { .. }));
                        prop_assert!(is_not_member);
                    }
                }
            }
        }

        #[test]
        fn admin_always_allowed_on_active_targets(w in world(), a in access(), admin in 0..GROUPS.len()) {
            let mut w = w;
            w.admin_group = Some(admin);
            w.memberships[admin][0] = true;
            let p = policy(&w, None);
            let pr = p.principal(&Subject::User(USERS[0].into()), None).unwrap();
            for t in all_targets() {
                let d = p.decide(&pr, a, &t);
                let inactive = matches!(d.reason, Reason::IntegrationInactive { .. } | Reason::ModelInactive { .. });
                prop_assert!(d.allowed || inactive, "{t}: {}", d.reason);
                prop_assert!(!(d.allowed && inactive));
            }
        }

        #[test]
        fn removing_a_grant_never_widens_access(w in world(), a in access(), k in 0usize..24) {
            prop_assume!(k < w.grants.len());
            let with = policy(&w, None);
            let without = policy(&w, Some(k));
            for c in callers() {
                let p1 = with.principal(&c, None).unwrap();
                let p2 = without.principal(&c, None).unwrap();
                for t in all_targets() {
                    if without.decide(&p2, a, &t).allowed {
                        prop_assert!(with.decide(&p1, a, &t).allowed, "{c} {a} {t}");
                    }
                }
            }
        }

        #[test]
        fn inactive_targets_are_denied_before_grants(w in world(), a in access()) {
            let p = policy(&w, None);
            if let Some(ik) = w.inactive_integration {
                for c in callers() {
                    let pr = p.principal(&c, None).unwrap();
                    for t in all_targets().into_iter().filter(|t| integration_of(t) == Some(INTEGRATIONS[ik])) {
                        let d = p.decide(&pr, a, &t);
                        prop_assert!(!d.allowed);
                        let is_inactive = matches!(d.reason, Reason::IntegrationInactive { .. });
                        prop_assert!(is_inactive);
                    }
                }
            }
        }
    }

    #[test]
    fn denial_names_the_missing_grant_and_near_misses() {
        let w = World {
            grants: vec![(
                Subject::Group("g0".into()),
                Target::Integration("i0".into()),
                [Access::Read].into_iter().collect(),
            )],
            memberships: vec![
                vec![true, false, false, false],
                vec![false; 4],
                vec![false; 4],
                vec![false; 4],
            ],
            app_groups: vec![vec![false; 4]; 2],
            admin_group: None,
            inactive_integration: None,
            inactive_model: None,
        };
        let p = policy(&w, None);
        let pr = p.principal(&Subject::User("u0".into()), None).unwrap();
        let d = p.decide(&pr, Access::Execute, &Target::model("i0", "m0"));
        assert!(!d.allowed);
        let msg = d.reason.to_string();
        assert!(
            msg.contains("no grant gives `EXECUTE` on `model:i0:m0`"),
            "{msg}"
        );
        assert!(
            msg.contains("`group:g0` has only READ on `integration:i0`"),
            "{msg}"
        );
        assert!(msg.contains("needed: a grant of `EXECUTE` on `model:i0:m0` or `integration:i0` to `user:u0` or one of its groups"), "{msg}");
        let d = p.decide(&pr, Access::Read, &Target::model("i0", "m1"));
        assert!(d.allowed);
        assert_eq!(
            d.reason.grant().unwrap().target,
            Target::Integration("i0".into())
        );
    }

    #[test]
    fn subjects_and_targets_parse_with_clear_errors() {
        assert_eq!(
            "group:x".parse::<Subject>().unwrap(),
            Subject::Group("x".into())
        );
        assert_eq!(
            "user:a@b.c".parse::<Subject>().unwrap(),
            Subject::User("a@b.c".into())
        );
        assert!("team:x"
            .parse::<Subject>()
            .unwrap_err()
            .to_string()
            .contains("write `group:NAME`"));
        assert!("group:"
            .parse::<Subject>()
            .unwrap_err()
            .to_string()
            .contains("empty group name"));
        assert_eq!(
            "model:i:org/m".parse::<Target>().unwrap(),
            Target::model("i", "org/m")
        );
        assert!("model:i"
            .parse::<Target>()
            .unwrap_err()
            .to_string()
            .contains("`model:INTEGRATION:MODEL`"));
        assert!("integration".parse::<Target>().is_err());
    }
}
