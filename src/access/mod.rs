//! RBAC: subjects, targets, access types, grants, the compiled policy and its
//! decisions.
//!
//! A pure function of the catalog's grants and memberships: it knows nothing of
//! HTTP, providers or files. Deny by default; `decide` never fails, it answers
//! with a [`Decision`] that says why (the grant that allowed it, or what was
//! checked and what grant is missing).

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
    pub(crate) const ALL: [Access; 5] = [
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
        caller::parse_id(s, caller::IdSyntax::SUBJECT)
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
    pub(crate) fn covering(&self) -> Vec<Target> {
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
    pub(crate) access: AccessSet,
    /// Where the grant was written.
    pub(crate) origin: Origin,
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
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Who reads what `serve` recorded from the command line, holding the
    /// config: `ADMIN` for views (`hfconnect usage`), in no group, granted
    /// nothing to run.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn operator() -> Principal {
        Principal {
            subject: Subject::App("(operator)".into()),
            groups: Arc::from(Vec::new()),
            admin_via: Some("(the config file)".into()),
            scope: None,
        }
    }

    /// The group through which the caller holds `ADMIN`, if any.
    pub(crate) fn admin_via(&self) -> Option<&str> {
        self.admin_via.as_deref()
    }

    fn subjects(&self) -> impl Iterator<Item = Subject> + '_ {
        std::iter::once(self.subject.clone())
            .chain(self.groups.iter().map(|g| Subject::Group(g.clone())))
    }
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

impl Decision {
    /// Both decisions: allowed when both are, with both reasons; else the
    /// first refusal.
    pub(crate) fn and(self, other: Decision) -> Decision {
        match (self.allowed, other.allowed) {
            (true, true) => Decision {
                allowed: true,
                reason: Reason::All {
                    reasons: vec![self.reason, other.reason],
                },
            },
            (false, _) => self,
            (true, false) => other,
        }
    }
}

/// Why a decision came out the way it did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reason {
    /// Several questions were asked (a model and the prompt a task names)
    /// and each was allowed, for these reasons.
    All {
        /// Each question's reason, in the order asked.
        reasons: Vec<Reason>,
    },
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
        /// The caller whose subjects were looked at (it and the groups that count).
        principal: Principal,
        /// Grants that matched subject and target but not the access.
        near_misses: Vec<Arc<Grant>>,
    },
}

impl Reason {
    /// With [`Reason::NoGrant`]: the subjects whose grants were looked at (the
    /// caller, then the groups that count).
    pub(crate) fn checked_subjects(&self) -> Vec<Subject> {
        match self {
            Reason::NoGrant { principal, .. } => principal.subjects().collect(),
            _ => Vec::new(),
        }
    }

    /// With [`Reason::NoGrant`]: the targets whose grants count (the model and its integration).
    pub(crate) fn checked_targets(&self) -> Vec<Target> {
        match self {
            Reason::NoGrant { target, .. } => target.covering(),
            _ => Vec::new(),
        }
    }

    /// A short machine-readable name for the reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::All { .. } => "all",
            Reason::Admin { .. } => "admin",
            Reason::Granted { .. } => "granted",
            Reason::IntegrationInactive { .. } => "integration_inactive",
            Reason::ModelInactive { .. } => "model_inactive",
            Reason::UnknownTarget { .. } => "unknown_target",
            Reason::NoGrant { .. } => "no_grant",
        }
    }

    /// The grant that allowed the decision, if one did.
    pub(crate) fn grant(&self) -> Option<&Grant> {
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
            Reason::All { reasons } => {
                for (i, r) in reasons.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
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

mod caller;
pub(crate) mod carried;
pub(crate) mod policy;
#[cfg(test)]
mod tests;

pub(crate) use self::caller::{parse_id, IdSyntax};
pub(crate) use self::carried::{AccessSet, Role};
pub(crate) use self::policy::{GroupInput, Policy, PolicyInput, PrincipalError, TargetId};
