//! `/v1/endpoints/{integration}/{model}`: a model's Inference Endpoint under
//! the policy, for the caller the request authenticates (`GET`: its status,
//! `READ`; `POST …/pause`, `…/resume`, `…/scale-to-zero`, `…/scale` with
//! `{min, max, scale_to_zero_after}`: `UPDATE`; `POST …/create`: `CREATE`;
//! `POST …/delete`: `DELETE`; `POST …/plan`: `READ`, changes nothing;
//! `POST …/apply`: `UPDATE`, and `CREATE` when it creates).
//! Model names may hold `/`: the operation is the path's last segment.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;

use super::door::Caller;
use super::error::ApiError;
use super::limits::read_body;
use super::AppState;
use crate::connector::{EndpointAnswer, EndpointOperation};
use crate::task::{TaskError, TaskErrorKind};
use crate::untrusted::Untrusted;

/// `GET /v1/endpoints/{integration}/{model}`
pub(crate) async fn status(
    State(state): State<AppState>,
    Path((integration, model)): Path<(String, String)>,
    Caller { principal, .. }: Caller,
) -> Result<Json<EndpointAnswer>, ApiError> {
    Ok(Json(
        state
            .connector
            .core()
            .manage_endpoint(&principal, &integration, &model, EndpointOperation::Status)
            .await?,
    ))
}

/// `POST /v1/endpoints/{integration}/{model}/{operation}`
pub(crate) async fn change(
    State(state): State<AppState>,
    Path((integration, rest)): Path<(String, String)>,
    Caller { principal, .. }: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointAnswer>, ApiError> {
    let invalid = |m: String| ApiError::from(TaskError::new(TaskErrorKind::InvalidInput, m));
    let Some((model, op)) = rest.rsplit_once('/') else {
        return Err(invalid(format!(
            "`{}` names no operation: end the path with `/pause`, `/resume`, `/scale-to-zero`, `/scale`, `/create`, `/delete`, `/plan` or `/apply`",
            Untrusted(&rest)
        )));
    };
    let op = match op {
        "pause" => EndpointOperation::Pause,
        "resume" => EndpointOperation::Resume,
        "scale-to-zero" => EndpointOperation::ScaleToZero,
        "delete" => EndpointOperation::Delete,
        "create" => EndpointOperation::Create,
        "plan" => EndpointOperation::Plan,
        "apply" => EndpointOperation::Apply,
        "scale" => {
            let bytes = read_body(&headers, body, state.body_limit, state.body_timeout).await?;
            scale_of(&bytes).map_err(invalid)?
        }
        other => {
            return Err(invalid(format!(
                "unknown endpoint operation `{}`: `pause`, `resume`, `scale-to-zero`, `scale`, `create`, `delete`, `plan` or `apply`",
                Untrusted(other)
            )))
        }
    };
    Ok(Json(
        state
            .connector
            .core()
            .manage_endpoint(&principal, &integration, model, op)
            .await?,
    ))
}

/// `{"min": N, "max": N, "scale_to_zero_after": MINUTES}`
fn scale_of(body: &[u8]) -> Result<EndpointOperation, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let n = |k: &str, required: bool| -> Result<Option<u32>, String> {
        match v.get(k) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(format!("`{k}` is required")),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "`{k}` must be a whole number, not `{}`",
                        Untrusted(&x.to_string())
                    )
                }),
        }
    };
    if let Value::Object(o) = &v {
        if let Some(k) = o
            .keys()
            .find(|k| !["min", "max", "scale_to_zero_after"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field `{}`: `min`, `max`, `scale_to_zero_after`",
                Untrusted(k)
            ));
        }
    }
    let (min, max) = (n("min", true)?.unwrap_or(0), n("max", true)?.unwrap_or(0));
    if min > max {
        return Err(format!("`min` ({min}) is more than `max` ({max})"));
    }
    Ok(EndpointOperation::Scale {
        min,
        max,
        scale_to_zero_after: n("scale_to_zero_after", false)?,
    })
}
