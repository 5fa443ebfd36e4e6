//! The API key never leaks from the provider: not in an error's Display or
//! Debug, not in a log line, for every failure in the matrix, even when the
//! server echoes the key back.

use hfconnect::testing::provider::{Api, LlmProvider};
use hfconnect_integration_tests::fake_hf::{FakeHf, Fault, Route};
use serde_json::json;

use crate::support::global_logs;
use crate::support::provider::{
    collect, failure_cases, model, provider, quick_provider, text, Case,
};
use crate::support::TOKEN;
use hfconnect::testing::provider::ErrorKind;

#[tokio::test]
async fn the_key_never_appears_in_errors_debug_or_logs() {
    let logs = global_logs();
    let mut seen = Vec::new();
    let mut cases = failure_cases();
    cases.push(Case {
        name: "server echoes the key in a JSON error",
        faults: vec![(
            Fault::json(500, json!({"error": format!("bad token {TOKEN}")})),
            10,
        )],
        kind: ErrorKind::Upstream,
        retryable: true,
        message: "",
    });
    cases.push(Case {
        name: "server echoes the key in plain text",
        faults: vec![(
            Fault::text(400, &format!("Authorization: Bearer {TOKEN}")),
            1,
        )],
        kind: ErrorKind::InvalidRequest,
        retryable: false,
        message: "",
    });
    cases.push(Case {
        name: "server echoes the key in a header",
        faults: vec![(
            Fault::empty(403).header("x-error-message", &format!("token {TOKEN} denied")),
            1,
        )],
        kind: ErrorKind::Forbidden,
        retryable: false,
        message: "",
    });
    // Each case has a fake of its own, so they run at once.
    let runs = cases.iter().flat_map(|Case { name, faults, .. }| {
        [Route::Generate, Route::GenerateStream].map(|route| async move {
            let fake = FakeHf::start(TOKEN).await.unwrap();
            for (f, n) in faults {
                fake.push_n(route, f.clone(), *n);
            }
            let p = quick_provider(&fake);
            let m = model(&fake, Api::Tgi);
            let err = if route == Route::Generate {
                p.generate(&m, &text("hi")).await.err()
            } else {
                collect(p.generate_stream(&m, text("hi"))).await.1.err()
            };
            let e = err.unwrap_or_else(|| panic!("{name} on {route:?} should fail"));
            format!("{name}: {e} | {e:?}")
        })
    });
    seen.extend(futures_util::future::join_all(runs).await);
    // A wrong key: the rejected key must not show either.
    let fake = FakeHf::start(TOKEN).await.unwrap();
    let wrong = "hf_WRONGkeyMARKER42";
    let p = hfconnect::testing::provider::huggingface::HuggingFace::new(
        crate::support::provider::settings(&fake),
        Ok(secrecy::SecretString::from(wrong)),
    )
    .unwrap();
    let e = p
        .generate(&model(&fake, Api::Tgi), &text("hi"))
        .await
        .unwrap_err();
    seen.push(format!("{e} | {e:?} | {p:?}"));
    seen.push(format!("{:?}", provider(&fake)));

    let all = seen.join("\n");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("retrying"),
        "the retries were logged, so the log check is not vacuous:\n{logged}"
    );
    for (what, text) in [("errors and Debug", &all), ("logs", &logged)] {
        assert!(!text.contains(TOKEN), "the key leaked in {what}:\n{text}");
        assert!(
            !text.contains(wrong),
            "the wrong key leaked in {what}:\n{text}"
        );
    }
    assert!(
        all.contains("bad token [REDACTED]"),
        "echoed keys are scrubbed:\n{all}"
    );
}
