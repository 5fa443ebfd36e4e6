//! Turning an error answer (status, headers, body: JSON, plain text or empty)
//! or an error event inside a 200 stream into a [`ProviderError`].

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::provider::error::MESSAGE_LIMIT;
use crate::provider::{ErrorKind, ProviderError};

/// Who the call was for (integration, model, Hub base for gated-model pages).
pub(crate) struct CallContext<'a> {
    pub integration: &'a str,
    pub model: Option<&'a str>,
    pub upstream_model: Option<&'a str>,
    pub hub_url: &'a str,
}

impl CallContext<'_> {
    pub(crate) fn error(&self, kind: ErrorKind) -> ProviderError {
        ProviderError::new(kind, self.integration, self.model)
    }
}

/// What a server said, for a message: at most [`MESSAGE_LIMIT`] characters,
/// hidden characters escaped (it reaches callers, logs and task logs).
pub(crate) fn cut(s: &str) -> String {
    let s = s.trim();
    let kept = match s.char_indices().nth(MESSAGE_LIMIT) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    };
    let mut out = crate::untrusted::escape_all(kept);
    if kept.len() < s.len() {
        out.push('…');
    }
    out
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `Retry-After: <seconds>` or the `ratelimit: "api";r=0;t=55` header.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(v) = header(headers, "retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs.min(86_400.0)));
            }
        }
    }
    let rl = header(headers, "ratelimit")?;
    let t = rl.split(';').find_map(|p| p.trim().strip_prefix("t="))?;
    t.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The message of an error body, wherever the server put it.
fn message_of(v: &Value) -> Option<String> {
    let from_error = match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .or_else(|| i.get("message").and_then(Value::as_str).map(str::to_string))
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Some(Value::Object(o)) => o.get("message").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    from_error
        .or_else(|| {
            v.get("error_description")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| {
            let errs = v.get("errors")?.as_array()?;
            let parts: Vec<&str> = errs
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        })
        .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
        .or_else(|| v.get("detail").and_then(Value::as_str).map(str::to_string))
}

/// TGI's `error_type`s (snake_case) and Text Embeddings Inference's
/// (`Overloaded`, `Backend`, …: its enum's variant names), matched without case.
fn kind_of_error_type(t: &str) -> Option<ErrorKind> {
    match t.to_ascii_lowercase().as_str() {
        "validation" | "template_error" | "tokenizer" | "empty" => Some(ErrorKind::InvalidRequest),
        "overloaded" => Some(ErrorKind::Overloaded),
        "generation" | "incomplete_generation" | "backend" => Some(ErrorKind::Upstream),
        "healthcheck" | "unhealthy" => Some(ErrorKind::EndpointUnavailable),
        _ => None,
    }
}

fn is_loading(message: &str) -> bool {
    message.to_ascii_lowercase().contains("loading")
}

/// A 503's words that say a replica is on its way (the proxy of a
/// scaled-to-zero endpoint): evidence of a cold start, like `estimated_time`.
fn is_scaling(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "scaling up",
        "scale up",
        "scaled to zero",
        "scale-to-zero",
        "initializing",
        "starting up",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn model_page(message: &str, ctx: &CallContext<'_>) -> Option<String> {
    let from_message = message
        .split_whitespace()
        .find(|w| w.starts_with("https://") || w.starts_with("http://"))
        .map(|w| w.trim_end_matches(['.', ',', ')', '"']).to_string());
    from_message.or_else(|| {
        ctx.upstream_model
            .map(|m| format!("{}/{m}", ctx.hub_url.trim_end_matches('/')))
    })
}

/// Classify an error answer.
pub(crate) fn classify(
    ctx: &CallContext<'_>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> ProviderError {
    if (300..400).contains(&status) {
        return redirected(ctx, status, headers);
    }
    let text = String::from_utf8_lossy(body);
    let json: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
    let error_type = json
        .as_ref()
        .and_then(|v| v.get("error_type"))
        .and_then(Value::as_str)
        .map(crate::untrusted::bounded);
    let message = header(headers, "x-error-message")
        .map(str::to_string)
        .or_else(|| json.as_ref().and_then(message_of))
        .or_else(|| (json.is_none() && !text.trim().is_empty()).then(|| text.to_string()));
    let estimated = json
        .as_ref()
        .and_then(|v| v.get("estimated_time"))
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0);
    let msg = message.clone().unwrap_or_default();
    let error_code = header(headers, "x-error-code");

    let kind = match status {
        401 => ErrorKind::Unauthorized,
        403 if error_code == Some("GatedRepo")
            || msg.contains("is restricted")
            || msg.to_ascii_lowercase().contains("gated") =>
        {
            ErrorKind::GatedModel
        }
        403 => ErrorKind::Forbidden,
        404 | 410 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        429 if error_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("overloaded")) =>
        {
            ErrorKind::Overloaded
        }
        429 => ErrorKind::RateLimited,
        503 if estimated.is_some() || is_loading(&msg) => ErrorKind::ModelLoading,
        503 => ErrorKind::EndpointUnavailable,
        502 => ErrorKind::Upstream,
        400 | 413 | 415 | 422 => ErrorKind::InvalidRequest,
        // TGI's `generation` and TEI's `Backend` failures: the model failed on this input.
        424 => ErrorKind::Upstream,
        _ => match error_type.as_deref().and_then(kind_of_error_type) {
            Some(k) => k,
            None if status >= 500 => ErrorKind::Upstream,
            None => ErrorKind::InvalidRequest,
        },
    };
    let mut e = ctx.error(kind);
    e.status = Some(status);
    e.cold = kind == ErrorKind::ModelLoading || (status == 503 && is_scaling(&msg));
    e.text.error_type = error_type;
    e.text.upstream_message = message.as_deref().map(cut).filter(|m| !m.is_empty());
    e.text.request_id = header(headers, "x-request-id").map(crate::untrusted::bounded);
    e.retry_after = estimated
        .map(Duration::from_secs_f64)
        .or_else(|| retry_after(headers));
    if kind == ErrorKind::GatedModel {
        e.text.model_page = model_page(&msg, ctx);
    }
    if kind == ErrorKind::NotFound && status == 410 {
        e.text.detail = Some("the server says this route is gone (the old serverless API answers 410): use the router or an Inference Endpoint".into());
    }
    e
}

/// A redirect, which no client of hfconnect follows (it would re-send the
/// prompt to another host). The caller learns the status and whose
/// endpoint it was; the `Location` goes to the operators' log only.
fn redirected(ctx: &CallContext<'_>, status: u16, headers: &HeaderMap) -> ProviderError {
    tracing::warn!(
        integration = ctx.integration,
        model = ctx.model.unwrap_or(""),
        status,
        location = %crate::untrusted::Field::new(header(headers, "location").unwrap_or("")),
        "an upstream answered with a redirect, which hfconnect does not follow"
    );
    let mut e = ctx.error(ErrorKind::InvalidResponse);
    e.status = Some(status);
    e.text.request_id = header(headers, "x-request-id").map(crate::untrusted::bounded);
    e.text.detail = Some(format!(
        "the endpoint answered {status}, a redirect, which hfconnect never follows: set the `endpoint` to the URL that serves the model"
    ));
    e
}

/// The status TGI answers an `error_type` with outside a stream, so that
/// the same error is the same kind, and equally retryable, inside one.
fn status_of_error_type(t: &str) -> Option<u16> {
    match t {
        "validation" | "template_error" => Some(422),
        "generation" => Some(424),
        "overloaded" => Some(429),
        "incomplete_generation" => Some(500),
        "healthcheck" => Some(503),
        _ => None,
    }
}

/// Classify an error event received inside a 200 stream: TGI's
/// `{"error", "error_type"}` or the chat route's `{"error": {"message", "http_status_code"}}`.
pub(crate) fn classify_event(
    ctx: &CallContext<'_>,
    event: &Value,
    request_id: Option<&str>,
) -> ProviderError {
    let error_type = event
        .get("error_type")
        .and_then(Value::as_str)
        .map(crate::untrusted::bounded);
    let status = event
        .get("error")
        .and_then(|e| e.get("http_status_code"))
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .or_else(|| error_type.as_deref().and_then(status_of_error_type));
    let mut e = match status {
        Some(s) => {
            let body = serde_json::to_vec(event).unwrap_or_default();
            classify(ctx, s, &HeaderMap::new(), &body)
        }
        None => {
            let kind = error_type
                .as_deref()
                .and_then(kind_of_error_type)
                .unwrap_or(ErrorKind::Upstream);
            let mut e = ctx.error(kind);
            e.text.error_type = error_type;
            e.text.upstream_message = message_of(event).map(|m| cut(&m));
            e
        }
    };
    e.text.request_id = request_id.map(str::to_string);
    e.text.detail = Some("the server reported the error inside the stream".into());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn ctx() -> CallContext<'static> {
        CallContext {
            integration: "hf",
            model: Some("m"),
            upstream_model: Some("org/m"),
            hub_url: "https://huggingface.co",
        }
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn messages_come_from_every_place_servers_put_them() {
        let c = ctx();
        let cases: &[(&[(&str, &str)], &str, &str)] = &[
            (
                &[("x-error-message", "from header")],
                "{\"error\":\"body\"}",
                "from header",
            ),
            (&[], "{\"error\":\"plain\"}", "plain"),
            (&[], "{\"error\":[\"a\",\"b\"]}", "a; b"),
            (&[], "{\"error\":{\"message\":\"nested\"}}", "nested"),
            (&[], "{\"error_description\":\"desc\"}", "desc"),
            (
                &[],
                "{\"errors\":[{\"message\":\"e1\"},{\"message\":\"e2\"}]}",
                "e1; e2",
            ),
            (
                &[],
                "Failed to deserialize the JSON body",
                "Failed to deserialize the JSON body",
            ),
        ];
        for (headers, body, want) in cases {
            let e = classify(&c, 422, &h(headers), body.as_bytes());
            assert_eq!(e.upstream_message(), Some(*want), "{body}");
        }
        let e = classify(&c, 401, &HeaderMap::new(), b"");
        assert_eq!(e.upstream_message(), None);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let long = "x".repeat(2000);
        let e = classify(&c, 500, &HeaderMap::new(), long.as_bytes());
        assert_eq!(
            e.upstream_message().unwrap().chars().count(),
            MESSAGE_LIMIT + 1
        );
    }

    #[test]
    fn kinds_and_hints() {
        let c = ctx();
        let e = classify(
            &c,
            503,
            &HeaderMap::new(),
            b"{\"error\":\"Model org/m is currently loading\",\"estimated_time\":20.5}",
        );
        assert_eq!(
            (e.kind(), e.retry_after()),
            (ErrorKind::ModelLoading, Some(Duration::from_secs_f64(20.5)))
        );
        let e = classify(&c, 429, &h(&[("retry-after", "7")]), b"");
        assert_eq!(
            (e.kind(), e.retry_after()),
            (ErrorKind::RateLimited, Some(Duration::from_secs(7)))
        );
        let e = classify(&c, 429, &h(&[("ratelimit", "\"api\";r=0;t=55")]), b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(55)));
        let e = classify(
            &c,
            429,
            &HeaderMap::new(),
            b"{\"error\":\"Model is overloaded\",\"error_type\":\"overloaded\"}",
        );
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        let e = classify(&c, 403, &h(&[("x-error-code", "GatedRepo")]), b"{\"error\":\"Access to model org/m is restricted. Visit https://huggingface.co/org/m to ask for access.\"}");
        assert_eq!(e.kind(), ErrorKind::GatedModel);
        assert_eq!(e.model_page(), Some("https://huggingface.co/org/m"));
        assert_eq!(
            classify(&c, 410, &HeaderMap::new(), b"").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(
                &c,
                424,
                &HeaderMap::new(),
                b"{\"error\":\"x\",\"error_type\":\"generation\"}"
            )
            .kind(),
            ErrorKind::Upstream
        );
        assert!(!classify(
            &c,
            424,
            &HeaderMap::new(),
            b"{\"error_type\":\"generation\"}"
        )
        .is_retryable());
        assert!(classify(&c, 500, &HeaderMap::new(), b"").is_retryable());
        // The same error inside a 200 stream: the same kind, as retryable.
        for (t, retryable) in [
            ("generation", false),
            ("incomplete_generation", true),
            ("overloaded", true),
            ("validation", false),
        ] {
            let event = serde_json::json!({"error": "x", "error_type": t});
            let in_stream = classify_event(&c, &event, None);
            let status = status_of_error_type(t).unwrap();
            let body = serde_json::to_vec(&event).unwrap();
            let answered = classify(&c, status, &HeaderMap::new(), &body);
            assert_eq!(
                (in_stream.kind(), in_stream.is_retryable()),
                (answered.kind(), retryable),
                "{t}"
            );
        }
        assert_eq!(
            classify(&c, 502, &HeaderMap::new(), b"Bad Gateway").kind(),
            ErrorKind::Upstream
        );
        let plain = classify(&c, 503, &HeaderMap::new(), b"");
        assert_eq!(plain.kind(), ErrorKind::EndpointUnavailable);
        assert!(!plain.cold, "a bare 503 is no evidence of a cold start");
        assert!(classify(&c, 503, &HeaderMap::new(), b"endpoint is scaling up").cold);
        assert!(
            classify(
                &c,
                503,
                &HeaderMap::new(),
                b"{\"error\":\"x\",\"estimated_time\":3}"
            )
            .cold
        );
        assert_eq!(
            classify(&c, 504, &HeaderMap::new(), b"").kind(),
            ErrorKind::Timeout
        );
        assert_eq!(
            classify(&c, 413, &HeaderMap::new(), b"too big").kind(),
            ErrorKind::InvalidRequest
        );
    }
}
