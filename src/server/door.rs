//! What every HTTP door does around its handlers, once: a layer that counts
//! each request by door and status (`hfconnect_door_requests_total`) and
//! writes the audit event and count of a request refused before it became a
//! task; and the extractors that say who is calling.
//!
//! A handler or extractor that refuses a request answers [`Refused`]: the
//! error in its door's shape, with what was learned of the request (who,
//! which names) attached to the response for the layer. Errors of tasks the
//! Connector ran are answered plainly: the Connector recorded them.

use std::marker::PhantomData;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{claimed, Claimed, Presented};
use super::error::ApiError;
use super::AppState;
use crate::access::Principal;
use crate::catalog::TaskKind;
use crate::connector::Refusal;
use crate::task::{Door, FailureKind};

/// What a door's error answer says of itself, for the refusal's record.
pub(crate) trait DoorError: IntoResponse {
    fn status(&self) -> StatusCode;
    fn outcome(&self) -> FailureKind;
    fn message(&self) -> &str;
}

impl DoorError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn outcome(&self) -> FailureKind {
        self.failure.kind
    }
    fn message(&self) -> &str {
        &self.failure.message
    }
}

/// What a door learned of a request before refusing it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Who the caller was, as far as it could be told.
    pub caller: String,
    /// The integration and model its body named, if it was read that far.
    pub integration: Option<String>,
    pub model: Option<String>,
}

impl Seen {
    pub(crate) fn caller(who: impl ToString) -> Seen {
        Seen {
            caller: who.to_string(),
            ..Seen::default()
        }
    }

    pub(crate) fn naming(mut self, names: (Option<String>, Option<String>)) -> Seen {
        (self.integration, self.model) = names;
        self
    }
}

/// A request refused here, before it became a task.
pub(crate) struct Refused<E> {
    pub error: E,
    pub seen: Seen,
}

impl<E> Refused<E> {
    pub(crate) fn new(error: impl Into<E>, seen: Seen) -> Refused<E> {
        Refused {
            error: error.into(),
            seen,
        }
    }
}

/// The refusal as the layer reads it from the response.
#[derive(Debug, Clone)]
struct RefusedHere {
    seen: Seen,
    outcome: FailureKind,
    denied: bool,
    message: String,
}

impl<E: DoorError> IntoResponse for Refused<E> {
    fn into_response(self) -> Response {
        let here = RefusedHere {
            outcome: self.error.outcome(),
            denied: matches!(
                self.error.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
            message: self.error.message().to_string(),
            seen: self.seen,
        };
        let mut r = self.error.into_response();
        r.extensions_mut().insert(here);
        r
    }
}

/// Which door a route group is, and the task kind a path names.
#[derive(Clone)]
pub(crate) struct DoorLayer {
    pub state: AppState,
    pub door: Door,
    pub kind_of: fn(&str) -> Option<TaskKind>,
}

/// The layer: one count per request, one audit event per refusal made here.
pub(crate) async fn layer(State(d): State<DoorLayer>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let kind = (d.kind_of)(req.uri().path());
    let mut r = next.run(req).await;
    if let Some(here) = r.extensions_mut().remove::<RefusedHere>() {
        d.state.connector.core().record_refusal(&Refusal {
            caller: &here.seen.caller,
            kind,
            integration: here.seen.integration.as_deref(),
            model: here.seen.model.as_deref(),
            outcome: here.outcome,
            denied: here.denied,
            message: &here.message,
            started,
            door: d.door,
        });
    }
    d.state
        .connector
        .core()
        .metrics()
        .doors
        .count(d.door, r.status().as_u16());
    r
}

/// The caller of a request, resolved: the application owning the key, or
/// the user it acts for, scoped to a group when asked. A refusal is
/// answered in the door's shape `E`.
pub(crate) struct Caller<E = ApiError> {
    pub principal: Principal,
    _shape: PhantomData<E>,
}

impl<E> FromRequestParts<AppState> for Caller<E>
where
    E: DoorError + From<ApiError> + Send,
{
    type Rejection = Refused<E>;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Caller<E>, Refused<E>> {
        let claim = Claim::<E>::from_request_parts(parts, state).await?;
        let principal = claim
            .claimed
            .resolve(&state.connector)
            .map_err(|(e, who)| Refused::new(e, Seen::caller(who)))?;
        Ok(Caller {
            principal,
            _shape: PhantomData,
        })
    }
}

/// Who a request says it is, not resolved yet (the OpenAI door reads its
/// body's `user` first).
pub(crate) struct Claim<E = ApiError> {
    pub claimed: Claimed,
    _shape: PhantomData<E>,
}

impl<E> FromRequestParts<AppState> for Claim<E>
where
    E: DoorError + From<ApiError> + Send,
{
    type Rejection = Refused<E>;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Claim<E>, Refused<E>> {
        claimed(&state.connector, &parts.headers)
            .map(|claimed| Claim {
                claimed,
                _shape: PhantomData,
            })
            .map_err(|(e, who): (ApiError, Presented)| Refused::new(e, Seen::caller(who)))
    }
}
