//! The rate-limit headers both doors answer with, in OpenAI's names and
//! forms: `x-ratelimit-{limit,remaining,reset}-requests` for the tightest
//! rate limit or quota that admitted a task, and
//! `x-ratelimit-{limit,remaining,reset}-tokens` for the tightest token
//! budget (once the task's worst case was reserved), and on a refusal by a
//! budget `x-ratelimit-remaining-tokens: 0` with the time to its reset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};

use crate::catalog::{Headroom, TokenHeadroom};

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The request headers of `headroom`, when a limit admitted the task.
pub(crate) fn requests(headers: &mut HeaderMap, headroom: Option<Headroom>) {
    let Some(h) = headroom else { return };
    put(headers, "x-ratelimit-limit-requests", &h.limit.to_string());
    put(
        headers,
        "x-ratelimit-remaining-requests",
        &h.remaining.to_string(),
    );
    put(headers, "x-ratelimit-reset-requests", &duration(h.reset));
}

/// The token headers of `headroom`, when a budget covered the task.
pub(crate) fn tokens(headers: &mut HeaderMap, headroom: Option<TokenHeadroom>) {
    let Some(h) = headroom else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    put(headers, "x-ratelimit-limit-tokens", &h.limit.to_string());
    put(
        headers,
        "x-ratelimit-remaining-tokens",
        &h.remaining.to_string(),
    );
    put(
        headers,
        "x-ratelimit-reset-tokens",
        &duration(Duration::from_secs(h.reset_at.saturating_sub(now))),
    );
}

/// A task refused by a budget: nothing left for it, and when it resets.
pub(crate) fn exhausted(headers: &mut HeaderMap, reset_in: Option<u64>) {
    put(headers, "x-ratelimit-remaining-tokens", "0");
    if let Some(s) = reset_in {
        put(
            headers,
            "x-ratelimit-reset-tokens",
            &duration(Duration::from_secs(s)),
        );
    }
}

/// A duration as OpenAI writes it in its rate-limit headers: `20ms`, `1s`,
/// `6m0s`, `2h3m0s` (whole seconds rounded up).
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_openai_writes_them() {
        for (secs_ms, want) in [
            (20, "20ms"),
            (1_000, "1s"),
            (1_500, "2s"),
            (360_000, "6m0s"),
            (7_380_000, "2h3m0s"),
        ] {
            assert_eq!(duration(Duration::from_millis(secs_ms)), want);
        }
    }
}
