//! Caller ids as every door reads them (`X-Hfconnect-User`,
//! `X-Hfconnect-Group`, the OpenAI door's `user`, Conductor's `_createdBy`,
//! the CLI's `--as`) and as config files write subjects: one parser, with the
//! place's own rules as data — which kinds it accepts, what a bare id
//! (without `kind:`) is, and the field its refusals name.
//!
//! Every id is trimmed and must be non-empty, at most [`MAX_ID_BYTES`] bytes
//! and free of control characters: ids reach audit lines and task logs.

use std::sync::Arc;

use super::{ParseRefError, Subject};
use crate::untrusted::Untrusted;

/// The longest caller id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The kind of subject an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    /// `user:ID`.
    User,
    /// `app:NAME`.
    App,
    /// `group:NAME`.
    Group,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::User => "user:",
            IdKind::App => "app:",
            IdKind::Group => "group:",
        }
    }

    fn what(self) -> &'static str {
        match self {
            IdKind::User => "user id",
            IdKind::App => "application name",
            IdKind::Group => "group name",
        }
    }

    fn subject(self, id: &str) -> Subject {
        let id: Arc<str> = id.into();
        match self {
            IdKind::User => Subject::User(id),
            IdKind::App => Subject::App(id),
            IdKind::Group => Subject::Group(id),
        }
    }
}

/// How a place writes caller ids.
#[derive(Debug, Clone, Copy)]
pub struct IdSyntax<'a> {
    /// Where the id was read, as refusals name it.
    pub field: &'a str,
    /// The kinds it accepts.
    pub accepts: &'a [IdKind],
    /// What an id without a `kind:` prefix is; `None`: a prefix is needed.
    pub bare: Option<IdKind>,
}

impl IdSyntax<'static> {
    /// A subject in a config file (a grant's, a quota's): any kind, prefixed.
    pub const SUBJECT: IdSyntax<'static> = IdSyntax {
        field: "subject",
        accepts: &[IdKind::Group, IdKind::App, IdKind::User],
        bare: None,
    };

    /// Who a task runs as (the CLI's `--as`): `user:ID` or `app:NAME`.
    pub const CALLER: IdSyntax<'static> = IdSyntax {
        field: "--as",
        accepts: &[IdKind::User, IdKind::App],
        bare: None,
    };
}

impl<'a> IdSyntax<'a> {
    /// The user an application acts for: `ID` or `user:ID`.
    pub fn user(field: &'a str) -> IdSyntax<'a> {
        IdSyntax {
            field,
            accepts: &[IdKind::User],
            bare: Some(IdKind::User),
        }
    }

    /// A group scope: `NAME` or `group:NAME`.
    pub fn group(field: &'a str) -> IdSyntax<'a> {
        IdSyntax {
            field,
            accepts: &[IdKind::Group],
            bare: Some(IdKind::Group),
        }
    }

    /// Who a task runs as, as an engine writes it: `user:ID`, `app:NAME`, or
    /// a bare id (a user, as Orkes writes `_createdBy`).
    pub fn caller(field: &'a str) -> IdSyntax<'a> {
        IdSyntax {
            field,
            accepts: &[IdKind::User, IdKind::App],
            bare: Some(IdKind::User),
        }
    }
}

/// `raw` read as `syntax` says, or why not (naming the field).
pub fn parse_id(raw: &str, syntax: IdSyntax<'_>) -> Result<Subject, ParseRefError> {
    let field = syntax.field;
    let s = raw.trim();
    if s.is_empty() {
        return Err(ParseRefError::new(format!("`{field}` is empty")));
    }
    if s.len() > MAX_ID_BYTES {
        return Err(ParseRefError::new(format!(
            "`{field}` is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(ParseRefError::new(format!(
            "`{field}` holds control characters (`{}`)",
            Untrusted(s)
        )));
    }
    let written = [IdKind::User, IdKind::App, IdKind::Group]
        .into_iter()
        .find_map(|k| s.strip_prefix(k.prefix()).map(|rest| (k, rest)));
    let (kind, id) = match (written, syntax.bare) {
        (Some((k, rest)), _) => (k, rest),
        (None, Some(k)) => (k, s),
        (None, None) => return Err(not_a_subject(s, syntax)),
    };
    if !syntax.accepts.contains(&kind) {
        let wanted: Vec<String> = syntax
            .accepts
            .iter()
            .map(|k| format!("`{}…`", k.prefix()))
            .collect();
        return Err(ParseRefError::new(format!(
            "`{field}` names `{}`; it takes {}",
            Untrusted(s),
            wanted.join(" or ")
        )));
    }
    if id.trim().is_empty() {
        return Err(ParseRefError::new(format!(
            "`{}` has an empty {}",
            Untrusted(s),
            kind.what()
        )));
    }
    if id.trim() != id {
        return Err(ParseRefError::new(format!(
            "`{}` has spaces around its {}",
            Untrusted(s),
            kind.what()
        )));
    }
    Ok(kind.subject(id))
}

fn not_a_subject(s: &str, syntax: IdSyntax<'_>) -> ParseRefError {
    let forms: Vec<&str> = syntax
        .accepts
        .iter()
        .map(|k| match k {
            IdKind::User => "`user:ID`",
            IdKind::App => "`app:NAME`",
            IdKind::Group => "`group:NAME`",
        })
        .collect();
    let forms = match forms.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let hint = if s.contains(':') || !syntax.accepts.contains(&IdKind::User) {
        String::new()
    } else {
        format!(" (did you mean `user:{}`?)", Untrusted(s))
    };
    ParseRefError::new(format!(
        "`{}` is not a subject; write {forms}{hint}",
        Untrusted(s)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_with_each_places_rules() {
        let user = |s: &str| Subject::User(s.into());
        assert_eq!(
            parse_id(" user:ann ", IdSyntax::user("X")).unwrap(),
            user("ann")
        );
        assert_eq!(
            parse_id("ann@acmé.com", IdSyntax::user("X")).unwrap(),
            user("ann@acmé.com")
        );
        assert_eq!(
            parse_id("ops", IdSyntax::group("G")).unwrap(),
            Subject::Group("ops".into())
        );
        assert_eq!(
            parse_id("bob", IdSyntax::caller("by")).unwrap(),
            user("bob")
        );
        assert_eq!(
            parse_id("app:batch", IdSyntax::caller("by")).unwrap(),
            Subject::App("batch".into())
        );
        for (raw, syntax, words) in [
            ("", IdSyntax::user("X"), "`X` is empty"),
            ("app:batch", IdSyntax::user("X"), "takes `user:…`"),
            (
                "group:ops",
                IdSyntax::caller("by"),
                "takes `user:…` or `app:…`",
            ),
            ("user:", IdSyntax::user("X"), "has an empty user id"),
            ("a\u{7}", IdSyntax::user("X"), "control characters"),
            ("alice", IdSyntax::CALLER, "did you mean `user:alice`?"),
            ("team:x", IdSyntax::SUBJECT, "`team:x` is not a subject"),
            (
                "group: x",
                IdSyntax::SUBJECT,
                "spaces around its group name",
            ),
        ] {
            let e = parse_id(raw, syntax).unwrap_err().to_string();
            assert!(e.contains(words), "{raw:?}: {e}");
        }
        assert!(parse_id(&"a".repeat(MAX_ID_BYTES + 1), IdSyntax::user("X")).is_err());
    }
}
