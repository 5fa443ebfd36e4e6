//! Who is calling: the application owning the bearer key, or the user it acts
//! for (`X-Hfconnect-User`), optionally scoped to one group
//! (`X-Hfconnect-Group`).
//!
//! A header that is present is used or refused, never ignored: a value that
//! is not UTF-8, empty, only whitespace, over 256 bytes, holds control
//! characters, or is given twice is a 400. Reading it as "absent" would run
//! the task as the application with the application's grants, or without the
//! group scope the caller asked for. User ids are UTF-8 (engines often use
//! e-mail addresses, internationalised ones included); `user:ID` is the same
//! as `ID`.

use crate::task::FailureKind;
use axum::http::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::access::{parse_id, IdSyntax, Principal, Subject};
use crate::connector::Connector;

pub(crate) const USER_HEADER: &str = "x-hfconnect-user";
pub(crate) const GROUP_HEADER: &str = "x-hfconnect-group";

/// Who the caller is, as far as the request got (for the audit event of a
/// request refused before it became a task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No `Authorization` header, or not a bearer key.
    NoKey,
    /// A key no application holds: the first 8 hex digits of its SHA-256.
    UnknownKey(String),
    /// The application owning the key.
    App(String),
    /// The user an application acts for.
    User { user: String, app: String },
}

impl std::fmt::Display for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::NoKey => f.write_str("no key"),
            Presented::UnknownKey(h) => write!(f, "key:sha256:{h}"),
            Presented::App(a) => write!(f, "app:{a}"),
            Presented::User { user, app } => write!(f, "user:{user} via app:{app}"),
        }
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, FailureKind::INVALID_INPUT, message)
}

/// A header's value: `None` when absent, an error when present but
/// unusable (given twice, not UTF-8); its id is read by [`parse_id`].
fn identity_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let shown = display_name(name);
    if values.next().is_some() {
        return Err(bad_request(format!("`{shown}` is given more than once")));
    }
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| {
            bad_request(format!(
                "`{shown}` is not UTF-8 text; send the id as UTF-8 bytes"
            ))
        })
}

/// The user a value names, as `shown` writes it: `ID` or `user:ID`.
fn user_named(value: &str, shown: &str) -> Result<std::sync::Arc<str>, ApiError> {
    match parse_id(value, IdSyntax::user(shown)) {
        Ok(Subject::User(id)) => Ok(id),
        Ok(_) => Err(bad_request(format!("`{shown}` names no user"))),
        Err(e) => Err(bad_request(e.to_string())),
    }
}

/// The group a value names: `NAME` or `group:NAME`.
fn group_named(value: &str, shown: &str) -> Result<std::sync::Arc<str>, ApiError> {
    match parse_id(value, IdSyntax::group(shown)) {
        Ok(Subject::Group(g)) => Ok(g),
        Ok(_) => Err(bad_request(format!("`{shown}` names no group"))),
        Err(e) => Err(bad_request(e.to_string())),
    }
}

/// The user the OpenAI door's `user` field names, checked as
/// `X-Hfconnect-User` is: `ID` or `user:ID`, usable or refused.
pub(crate) fn user_field(value: &str) -> Result<std::sync::Arc<str>, ApiError> {
    user_named(value, "user")
}

fn display_name(header: &str) -> &'static str {
    match header {
        USER_HEADER => "X-Hfconnect-User",
        GROUP_HEADER => "X-Hfconnect-Group",
        _ => "Authorization",
    }
}

/// The bearer key of the request. RFC 9110: the scheme is case-insensitive.
pub(crate) fn bearer_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthorized =
        |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, FailureKind::Unauthorized, m);
    let mut values = headers.get_all("authorization").iter();
    let Some(value) = values.next() else {
        return Err(unauthorized("no `Authorization: Bearer <key>` header"));
    };
    if values.next().is_some() {
        return Err(unauthorized(
            "the `Authorization` header is given more than once",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| unauthorized("the `Authorization` header is not readable text"))?
        .trim();
    let (scheme, key) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "the `Authorization` header must be `Bearer <key>`",
        ));
    }
    let key = key.trim();
    if key.is_empty() {
        return Err(unauthorized("the `Authorization` header holds no key"));
    }
    Ok(key)
}

/// Who a request says it is, before the policy resolves it: the
/// application owning the bearer key, the user it acts for (when it names
/// one and may), and the group it asks to be scoped to.
#[derive(Debug)]
pub(crate) struct Claimed {
    app: String,
    user: Option<std::sync::Arc<str>>,
    group: Option<std::sync::Arc<str>>,
}

impl Claimed {
    /// Who the caller was, for the audit event of a refusal: the user acted
    /// for, and through which application.
    pub(crate) fn presented(&self) -> Presented {
        match &self.user {
            Some(user) => Presented::User {
                user: user.to_string(),
                app: self.app.clone(),
            },
            None => Presented::App(self.app.clone()),
        }
    }

    /// Act for the user a request body names (the OpenAI door's `user`),
    /// exactly as `X-Hfconnect-User` would: only for an application that
    /// may act for users and only when no header named one; a value that
    /// is present and meant but unusable is refused, never taken as absent.
    pub(crate) fn act_for(&mut self, connector: &Connector, value: &str) -> Result<(), ApiError> {
        if self.user.is_some() || !connector.core().may_act_for_users(&self.app) {
            return Ok(());
        }
        self.user = Some(user_field(value)?);
        Ok(())
    }

    /// The principal: the acting subject first, then its group scope, so a
    /// scope is checked against the user acted for, not the application.
    pub(crate) fn resolve(
        &self,
        connector: &Connector,
    ) -> Result<Principal, (ApiError, Presented)> {
        let subject = match &self.user {
            Some(id) => Subject::User(id.clone()),
            None => Subject::App(self.app.as_str().into()),
        };
        connector
            .principal(&subject, self.group.as_deref())
            .map_err(|e| (ApiError::from(e), self.presented()))
    }
}

/// Who the request says it is: the key checked, the identity headers read
/// (used or refused, never ignored), delegation allowed or refused.
pub(crate) fn claimed(
    connector: &Connector,
    headers: &HeaderMap,
) -> Result<Claimed, (ApiError, Presented)> {
    let key = bearer_key(headers).map_err(|e| (e, Presented::NoKey))?;
    let Some(app) = connector.core().authenticate(key) else {
        let hint = key_hint(key);
        return Err((
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                FailureKind::Unauthorized,
                "the application key is not valid",
            ),
            Presented::UnknownKey(hint),
        ));
    };
    let presented = || Presented::App(app.clone());
    let user = identity_header(headers, USER_HEADER).map_err(|e| (e, presented()))?;
    let group = identity_header(headers, GROUP_HEADER).map_err(|e| (e, presented()))?;
    let group = group
        .map(|g| group_named(g, "X-Hfconnect-Group"))
        .transpose()
        .map_err(|e| (e, presented()))?;
    let user = match user {
        None => None,
        Some(value) => {
            let id = user_named(value, "X-Hfconnect-User").map_err(|e| (e, presented()))?;
            if !connector.core().may_act_for_users(&app) {
                return Err((
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        FailureKind::DENIED,
                        format!("application `{app}` may not act for users (`act_for_users` is not set), so `X-Hfconnect-User` is refused"),
                    ),
                    presented(),
                ));
            }
            Some(id)
        }
    };
    Ok(Claimed { app, user, group })
}

/// The first 8 hex digits of a presented key's SHA-256: enough to tell keys
/// apart in an audit trail, useless to anyone who reads it.
fn key_hint(key: &str) -> String {
    crate::keys::hash(key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn present_identity_headers_are_used_or_refused_never_ignored() {
        assert_eq!(identity_header(&headers(&[]), USER_HEADER).unwrap(), None);
        assert_eq!(
            identity_header(
                &headers(&[(USER_HEADER, "mallory@acmé.com".as_bytes())]),
                USER_HEADER
            )
            .unwrap(),
            Some("mallory@acmé.com")
        );
        for bad in [&b""[..], b"   ", b"\xff\xfe", &[b'a'; 300][..]] {
            let e = identity_header(&headers(&[(USER_HEADER, bad)]), USER_HEADER)
                .and_then(|v| user_named(v.unwrap_or_default(), "X-Hfconnect-User"))
                .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let twice = headers(&[(GROUP_HEADER, b"a"), (GROUP_HEADER, b"b")]);
        assert!(identity_header(&twice, GROUP_HEADER).is_err());
        let user_of = |v| user_named(v, "X-Hfconnect-User");
        assert_eq!(&*user_of("user:ben@acme.com").unwrap(), "ben@acme.com");
        assert!(user_of("app:batch").is_err() && user_of("user:").is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer k", "bearer k", "BEARER  k "] {
            assert_eq!(
                bearer_key(&headers(&[("authorization", v.as_bytes())])).unwrap(),
                "k"
            );
        }
        for v in ["Basic k", "Bearer", "Bearer   ", "k"] {
            assert!(
                bearer_key(&headers(&[("authorization", v.as_bytes())])).is_err(),
                "{v}"
            );
        }
    }
}
