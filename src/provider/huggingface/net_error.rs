//! Why a call did not get an answer at all: refused, name not resolved, TLS,
//! a timeout, a broken connection. The cause goes into the error callers
//! see; the endpoint's URL and the whole error chain go to the log only
//! (endpoint URLs are internal addresses a caller has no business seeing).

use std::error::Error as _;

use crate::untrusted::Field;

/// What the error chain of a failed request says, in a few words.
pub(crate) fn cause(e: &reqwest::Error) -> String {
    let chain = chain_text(e).to_ascii_lowercase();
    let io_kind = io_kind(e);
    if e.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        return if e.is_connect() {
            "timed out connecting".into()
        } else {
            "timed out".into()
        };
    }
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        return "the host name could not be resolved (DNS)".into();
    }
    let https = e.url().is_some_and(|u| u.scheme() == "https");
    let tls_words = [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "alert",
        "peer is incompatible",
    ];
    if tls_words.iter().any(|w| chain.contains(w))
        || (https && e.is_connect() && io_kind == Some(std::io::ErrorKind::InvalidData))
    {
        return "the TLS handshake failed (certificate or protocol)".into();
    }
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "the connection was refused".into(),
        Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) => {
            "the connection was reset".into()
        }
        Some(std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof) => {
            "the connection broke".into()
        }
        _ if e.is_connect() => "the connection could not be established".into(),
        _ if e.is_body() || e.is_decode() => "the connection broke while reading the answer".into(),
        _ if e.is_request() => "the request could not be sent".into(),
        _ => "the connection failed".into(),
    }
}

/// The first I/O error kind in the chain.
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// The error and its sources, `: `-separated (for the log).
pub(crate) fn chain_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Log a transport failure with what only operators should see.
pub(crate) fn log(integration: &str, model: Option<&str>, e: &reqwest::Error, redacted: &str) {
    tracing::warn!(
        integration,
        model = model.unwrap_or(""),
        url = %Field::new(e.url().map(|u| u.as_str()).unwrap_or_default()),
        error = %Field::new(redacted),
        "call to Hugging Face failed"
    );
}
