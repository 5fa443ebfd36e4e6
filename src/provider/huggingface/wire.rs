//! What every flavour's answers share: the headers read from them (request
//! id, token counts, server timings) and [`Parsed`], what an answer carried.
//! Each flavour's bodies and shapes are in its own file. Nothing here does I/O.

use std::time::Duration;

use crate::provider::{FinishReason, Timings, Usage};
use reqwest::header::{HeaderMap, HeaderName};

// Header names as constants: a lookup by `&str` parses the name first, and
// these run on every answer.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_PROMPT_TOKENS: HeaderName = HeaderName::from_static("x-prompt-tokens");
pub(super) const X_GENERATED_TOKENS: HeaderName = HeaderName::from_static("x-generated-tokens");
const X_QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time");
const X_INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time");

/// The upstream request id (`x-request-id`), escaped and bounded.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&X_REQUEST_ID)?;
    let text = String::from_utf8_lossy(v.as_bytes());
    Some(crate::untrusted::bounded(text.trim()))
}

pub(crate) fn header_u32(headers: &HeaderMap, name: &HeaderName) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_ms(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    let ms: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// Server-reported timings (`x-queue-time`, `x-inference-time`, milliseconds).
pub(crate) fn server_timings(headers: &HeaderMap) -> Timings {
    Timings {
        queue: header_ms(headers, &X_QUEUE_TIME),
        inference: header_ms(headers, &X_INFERENCE_TIME),
        ..Timings::default()
    }
}

/// What an answer carried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub text: String,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
}
