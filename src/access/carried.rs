//! What grants and groups carry: a set of access types, and roles.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Access;

/// A set of access types.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AccessSet(pub(super) u8);

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
