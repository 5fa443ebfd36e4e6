//! `who-can`: every subject that may do one access on one target, each with
//! the path that allows it; nobody, with the reason, when the target is
//! inactive.

use serde::Serialize;

use super::{decide, subjects, Path, Who};
use crate::access::{Access, Target};
use crate::catalog::Catalog;

/// One subject that may, and how.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Allowed {
    /// The user, application, or any other user.
    pub subject: Who,
    /// What allows it.
    pub path: Path,
}

/// The answer to "who may do `access` on `target`?".
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WhoCan {
    pub target: String,
    pub access: Access,
    /// Everyone who may, in subject order (users, then applications, then
    /// any other user).
    pub allowed: Vec<Allowed>,
    /// When nobody may whatever the grants say (an inactive integration
    /// or model): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nobody_because: Option<String>,
    /// Whether users the config names nowhere may too.
    pub any_other_user: bool,
}

/// Who may do `access` on `target` under `catalog`.
pub fn who_can(catalog: &Catalog, access: Access, target: &Target) -> WhoCan {
    let mut allowed = Vec::new();
    let mut nobody_because = None;
    let mut any_other_user = false;
    for who in subjects(catalog) {
        let (ok, path) = decide(catalog, &who, access, target);
        if ok {
            any_other_user |= who == Who::OtherUser;
            allowed.push(Allowed { subject: who, path });
        } else if matches!(path.kind, "integration_inactive" | "model_inactive") {
            nobody_because = Some(path.text);
        }
    }
    WhoCan {
        target: target.to_string(),
        access,
        allowed,
        nobody_because,
        any_other_user,
    }
}
