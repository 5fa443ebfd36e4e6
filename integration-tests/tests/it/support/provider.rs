//! The Hugging Face provider on the fake endpoint: its settings, clients,
//! model endpoints and requests; a stream collected; and the failure cases
//! the provider and provider-secrets areas both run.

use std::time::Duration;

use futures_util::StreamExt;
use hfconnect::testing::provider::huggingface::{HuggingFace, Settings};
use hfconnect::testing::provider::{
    Api, ColdStartPolicy, Completion, ErrorKind, GenerationParams, ModelEndpoint, ProviderError,
    RetryPolicy, StreamEvent, TextRequest,
};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault};
use secrecy::SecretString;
use serde_json::json;

use super::fixtures::TOKEN;

pub fn settings(fake: &FakeHf) -> Settings {
    let mut s = Settings::new("hf-test");
    s.namespace = Some("acme".into());
    s.hub_url = fake.url().parse().unwrap();
    s.management_url = fake.management_url().parse().unwrap();
    s.calls.request_timeout = Duration::from_secs(2);
    s.calls.first_token_timeout = Duration::from_secs(2);
    s.calls.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        budget: Duration::from_secs(3),
    };
    s.calls.cold_start = ColdStartPolicy {
        wait: Duration::from_secs(3),
        resume_paused: false,
    };
    s
}

pub fn provider(fake: &FakeHf) -> HuggingFace {
    HuggingFace::new(settings(fake), Ok(SecretString::from(TOKEN))).unwrap()
}

/// [`provider`] with half-second timeouts and a one-second budget, for the
/// failure cases: a hang or an endless 503 ends in a second, not three.
pub fn quick_provider(fake: &FakeHf) -> HuggingFace {
    let mut s = settings(fake);
    s.calls.request_timeout = Duration::from_millis(500);
    s.calls.first_token_timeout = Duration::from_millis(500);
    s.calls.retry.budget = Duration::from_secs(1);
    s.calls.cold_start.wait = Duration::from_secs(1);
    HuggingFace::new(s, Ok(SecretString::from(TOKEN))).unwrap()
}

pub fn model(fake: &FakeHf, api: Api) -> ModelEndpoint {
    let base = match api {
        Api::Router => fake.url(),
        _ => format!("{}/", fake.url()),
    };
    ModelEndpoint {
        name: "m".into(),
        base_url: base.parse().unwrap(),
        api,
        upstream_model: "org/model".into(),
        inference_endpoint: None,
        url_from_management: false,
    }
}

pub fn text(prompt: &str) -> TextRequest {
    TextRequest {
        prompt: prompt.into(),
        params: GenerationParams::default(),
    }
}

/// Collect a stream: the tokens and the final completion, or the error (with tokens seen before it).
pub async fn collect(
    mut s: hfconnect::testing::provider::CompletionStream,
) -> (Vec<String>, Result<Completion, ProviderError>) {
    let mut tokens = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::Token(t)) => tokens.push(t),
            Ok(StreamEvent::Done(c)) => {
                assert!(s.next().await.is_none(), "nothing after Done");
                return (tokens, Ok(c));
            }
            Ok(other) => panic!("an event this test does not know: {other:?}"),
            Err(e) => {
                assert!(s.next().await.is_none(), "nothing after an error");
                return (tokens, Err(e));
            }
        }
    }
    panic!("the stream ended without Done or an error");
}

/// One failure case: a fault (or setup), the kind it must become, and whether it is retryable.
pub struct Case {
    pub name: &'static str,
    pub faults: Vec<(Fault, usize)>,
    pub kind: ErrorKind,
    pub retryable: bool,
    pub message: &'static str,
}

pub fn failure_cases() -> Vec<Case> {
    let case = |name, faults, kind, retryable, message| Case {
        name,
        faults,
        kind,
        retryable,
        message,
    };
    vec![
        case(
            "403 forbidden",
            vec![(
                Fault::json(
                    403,
                    json!({"error": "does not have sufficient permissions to call Inference Providers"}),
                ),
                1,
            )],
            ErrorKind::Forbidden,
            false,
            "sufficient permissions",
        ),
        case(
            "403 gated",
            vec![(Fault::gated("org/model"), 1)],
            ErrorKind::GatedModel,
            false,
            "https://huggingface.co/org/model",
        ),
        case(
            "404 plain text",
            vec![(Fault::text(404, "Not Found"), 1)],
            ErrorKind::NotFound,
            false,
            "Not Found",
        ),
        case(
            "410 gone",
            vec![(
                Fault::json(410, json!({"error": "The requested model is deprecated"})),
                1,
            )],
            ErrorKind::NotFound,
            false,
            "deprecated",
        ),
        case(
            "413 plain text",
            vec![(Fault::text(413, "Payload Too Large"), 1)],
            ErrorKind::InvalidRequest,
            false,
            "Payload Too Large",
        ),
        case(
            "415 plain text",
            vec![(Fault::text(415, "Unsupported Media Type"), 1)],
            ErrorKind::InvalidRequest,
            false,
            "Unsupported Media Type",
        ),
        case(
            "422 template error",
            vec![(
                Fault::json(
                    422,
                    json!({"error": "Template error: template not found", "error_type": "template_error"}),
                ),
                1,
            )],
            ErrorKind::InvalidRequest,
            false,
            "Template error",
        ),
        case(
            "424 generation",
            vec![(
                Fault::json(
                    424,
                    json!({"error": "Request failed during generation", "error_type": "generation"}),
                ),
                1,
            )],
            ErrorKind::Upstream,
            false,
            "during generation",
        ),
        case(
            "429 overloaded, always",
            vec![(Fault::overloaded(), 10)],
            ErrorKind::Overloaded,
            true,
            "overloaded",
        ),
        case(
            "429 retry-after past the budget",
            vec![(Fault::rate_limited(30), 1)],
            ErrorKind::RateLimited,
            true,
            "retry after 30.0s",
        ),
        case(
            "503 loading past the cold-start budget",
            vec![(Fault::loading(30.0), 1)],
            ErrorKind::ModelLoading,
            true,
            "currently loading",
        ),
        case(
            "503 scaled to zero, always",
            vec![(Fault::scaled_to_zero(), 500)],
            ErrorKind::EndpointUnavailable,
            true,
            "not available",
        ),
        case(
            "502 bad gateway, always",
            vec![(Fault::text(502, "Bad Gateway"), 500)],
            ErrorKind::Upstream,
            true,
            "Bad Gateway",
        ),
        case(
            "500 incomplete, always",
            vec![(
                Fault::json(
                    500,
                    json!({"error": "Incomplete generation", "error_type": "incomplete_generation"}),
                ),
                10,
            )],
            ErrorKind::Upstream,
            true,
            "Incomplete generation",
        ),
        case(
            "504 gateway timeout, always",
            vec![(Fault::empty(504), 10)],
            ErrorKind::Timeout,
            true,
            "timed out",
        ),
        case(
            "slow headers",
            vec![(Fault::Delay(Duration::from_secs(5)), 10)],
            ErrorKind::Timeout,
            true,
            "timed out",
        ),
        case(
            "connection reset",
            vec![(Fault::Reset, 10)],
            ErrorKind::Connection,
            true,
            "could not talk",
        ),
        case(
            "truncated body",
            vec![(Fault::Truncated, 1)],
            ErrorKind::InvalidResponse,
            false,
            "not JSON",
        ),
    ]
}
