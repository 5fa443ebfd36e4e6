//! The compiled policy: grants indexed by target and subject, memberships
//! and active flags, and [`Policy::decide`], which answers with a decision
//! and its reasons.

use super::{Access, Decision, Grant, Principal, Reason, Role, Subject, Target};
use crate::untrusted::Untrusted;
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

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

/// A target as decisions need it: active or not, the integration above a
/// model, and the grants on it by subject (indexes into `grants`; grants with
/// the same subject and target are merged at compile time).
/// A target's place in the compiled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetId(usize);

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
        self.decide_at(principal, access, target, self.target_id(target))
    }

    /// Where `target` is in the compiled policy (`None`: not in the
    /// catalog), for a caller that decides on it often: a task's plan holds
    /// its model's, so a task looks its names up once.
    /// Whether `name` is a declared group.
    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    pub(crate) fn target_id(&self, target: &Target) -> Option<TargetId> {
        self.targets.get(target).copied().map(TargetId)
    }

    /// [`Policy::decide`] on a target already looked up with [`Policy::target_id`].
    pub(crate) fn decide_at(
        &self,
        principal: &Principal,
        access: Access,
        target: &Target,
        id: Option<TargetId>,
    ) -> Decision {
        let deny = |reason| Decision {
            allowed: false,
            reason,
        };
        let Some(node) = id.and_then(|TargetId(i)| self.nodes.get(i)) else {
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
