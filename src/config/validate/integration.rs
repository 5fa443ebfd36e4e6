//! Integrations and their models: URLs, keys, call settings, limits and
//! quotas, model defaults.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::super::de::Spanned;
use super::super::raw::{RawIntegration, RawModel, RawQuota, RawRate};
use super::super::secret;
use super::{at_least_one, is_local, parse_http_url, seconds, suggest, MAX_RESPONSE_BYTES_CAP, V};
use crate::access::{Subject, Target};
use crate::catalog::{Integration, Limits, Model, ModelDefaults, Quota, TaskKind};
use crate::provider::huggingface::{DEFAULT_MANAGEMENT_URL, DEFAULT_ROUTER_URL};
use crate::provider::{Api, CallSettings};
use crate::retry::{ColdStartPolicy, RetryPolicy};
pub(super) fn integration(
    v: &mut V<'_>,
    ri: Spanned<RawIntegration>,
    hub_default: &Result<Url, String>,
) -> Option<(Integration, (Arc<str>, CallSettings))> {
    let loc = ri.loc;
    let r = ri.value;
    let mut ok = true;
    if let Some(ns) = &r.namespace {
        let bad = ns.value.is_empty()
            || !ns
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if bad {
            v.error(
                &ns.loc,
                format!(
                    "namespace `{}` is not a Hub user or organization name",
                    ns.value
                ),
            )
            .help = Some("Hub names hold letters, digits, `-`, `_` and `.`".into());
            ok = false;
        }
    }
    let hub_url = match &r.hub_url {
        Some(h) => match parse_http_url(h.value.trim_end_matches('/')) {
            Ok(u) => Some(u),
            Err(e) => {
                v.error(&h.loc, format!("`hub_url` is {e}"));
                None
            }
        },
        None => match hub_default {
            Ok(u) => Some(u.clone()),
            Err(e) => {
                v.error(&loc, e.clone()).help =
                    Some("fix `HF_ENDPOINT` or set `hub_url` on the integration".into());
                None
            }
        },
    };

    let management_url = match &r.management_url {
        Some(m) => match parse_http_url(m.value.trim_end_matches('/')) {
            Ok(u) => Some(u),
            Err(e) => {
                v.error(&m.loc, format!("`management_url` is {e}"));
                None
            }
        },
        None => Url::parse(DEFAULT_MANAGEMENT_URL).ok(),
    };
    let calls = calls(v, &r, &mut ok);
    let limits = limits(v, &r.rate_limit, &r.max_concurrency, &mut ok);
    let queue_timeout = seconds(v, &r.queue_timeout, "queue_timeout", true, &mut ok)
        .unwrap_or(Duration::from_secs(30));

    let base = v.dir_of(&r.api_key.loc).to_path_buf();
    let key_loc = r.api_key.loc.clone();
    let resolved = secret::resolve(r.api_key.value, &base, v.env);
    if let Some(reason) = resolved.key.unavailable_reason() {
        let reason = reason.to_string();
        v.warn(
            &key_loc,
            format!(
                "the key of integration `{}` is not available: {reason}",
                r.name.value
            ),
        )
        .help = Some("tasks on this integration will fail until the key can be read".into());
    }
    for w in resolved.warnings {
        v.warn(&key_loc, w);
    }

    let mut models = Vec::new();
    let mut seen = HashMap::new();
    let models_path = format!("{}.models", loc.path);
    let had_broken_models = v
        .broken
        .iter()
        .any(|(f, list, _)| *f == loc.file && *list == models_path);
    if r.models.0.is_empty() && !had_broken_models {
        v.warn(
            &loc,
            format!("integration `{}` has no models", r.name.value),
        )
        .help = Some("add models under `[[integrations.models]]`".into());
    }
    for rm in r.models.0 {
        let name_ok = v.name_ok("model", &rm.value.name, true)
            && v.unique("model", &mut seen, &rm.value.name);
        let at = Managed {
            namespace: r.namespace.as_ref().map(|n| n.value.as_str()),
            management_url: management_url.as_ref(),
        };
        match model(v, rm, at) {
            Some(m) if name_ok => models.push(m),
            _ => ok = false,
        }
    }
    let (hub_url, management_url) = (hub_url?, management_url?);
    if !ok {
        return None;
    }
    let model_index = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    let name: Arc<str> = r.name.value.into();
    for m in &mut models {
        m.target = Target::Model(name.clone(), m.name.clone());
    }
    let calls_of = (name.clone(), calls);
    Some((
        Integration {
            name,
            description: r.description,
            namespace: r.namespace.map(|n| n.value),
            active: r.active.unwrap_or(true),
            api_key: resolved.key,
            hub_url,
            management_url,
            limits,
            queue_timeout,
            models,
            model_index,
            origin: v.origin(&loc),
        },
        calls_of,
    ))
}

/// `rate_limit = { per_second, burst }` (burst defaults to `per_second`) and `max_concurrency`.
fn limits(
    v: &mut V<'_>,
    rate: &Option<RawRate>,
    conc: &Option<Spanned<u32>>,
    ok: &mut bool,
) -> Limits {
    let rate = rate.as_ref().and_then(|r| {
        let per_second = at_least_one(v, &r.per_second, "rate_limit.per_second", ok)?;
        let burst = match &r.burst {
            Some(b) => at_least_one(v, b, "rate_limit.burst", ok)?,
            None => per_second,
        };
        Some((per_second, burst))
    });
    let max_concurrency = conc
        .as_ref()
        .and_then(|c| at_least_one(v, c, "max_concurrency", ok));
    Limits {
        rate,
        max_concurrency,
    }
}

pub(super) fn quota(
    v: &mut V<'_>,
    rq: Spanned<RawQuota>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    index: &rustc_hash::FxHashMap<Arc<str>, usize>,
) -> Option<Quota> {
    let r = rq.value;
    let mut ok = true;
    let subject = match r.subject.value.parse::<Subject>() {
        Ok(Subject::Group(g)) if !groups.contains(&*g) => {
            v.error(&r.subject.loc, format!("quota names unknown group `{g}`"));
            None
        }
        Ok(Subject::App(a)) if !apps.contains(&*a) => {
            v.error(
                &r.subject.loc,
                format!("quota names unknown application `{a}`"),
            );
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            v.error(&r.subject.loc, e.to_string());
            None
        }
    };
    if !index.contains_key(r.integration.value.as_str())
        && !v.broken_integrations.contains(&r.integration.value)
    {
        let help = suggest(
            &r.integration.value,
            index.keys().map(|k| &**k),
            "integrations are declared under `[[integrations]]`",
        );
        v.error(
            &r.integration.loc,
            format!("quota names unknown integration `{}`", r.integration.value),
        )
        .help = Some(help);
        ok = false;
    }
    let per_minute = at_least_one(v, &r.requests_per_minute, "requests_per_minute", &mut ok);
    let (subject, per_minute) = (subject?, per_minute?);
    if !ok {
        return None;
    }
    Some(Quota {
        subject,
        integration: r.integration.value.as_str().into(),
        per_minute,
        origin: v.origin(&rq.loc),
    })
}

/// Timeouts, retries and cold-start waits of an integration, defaults filled in.
fn calls(v: &mut V<'_>, r: &RawIntegration, ok: &mut bool) -> CallSettings {
    let mut s = CallSettings::default();
    if let Some(t) = &r.timeouts {
        s.connect_timeout =
            seconds(v, &t.connect, "timeouts.connect", false, ok).unwrap_or(s.connect_timeout);
        s.request_timeout =
            seconds(v, &t.request, "timeouts.request", false, ok).unwrap_or(s.request_timeout);
        s.first_token_timeout = seconds(v, &t.first_token, "timeouts.first_token", false, ok)
            .unwrap_or(s.first_token_timeout);
        s.stream_timeout =
            seconds(v, &t.stream, "timeouts.stream", false, ok).unwrap_or(s.stream_timeout);
    }
    if let Some(rt) = &r.retry {
        let d = RetryPolicy::default();
        let max_attempts = match &rt.max_attempts {
            Some(m) if (1..=20).contains(&m.value) => m.value,
            Some(m) => {
                v.error(
                    &m.loc,
                    format!(
                        "`retry.max_attempts` must be from 1 (no retry) to 20, not {}",
                        m.value
                    ),
                );
                *ok = false;
                d.max_attempts
            }
            None => d.max_attempts,
        };
        s.retry = RetryPolicy {
            max_attempts,
            initial_backoff: seconds(v, &rt.initial_backoff, "retry.initial_backoff", false, ok)
                .unwrap_or(d.initial_backoff),
            max_backoff: seconds(v, &rt.max_backoff, "retry.max_backoff", false, ok)
                .unwrap_or(d.max_backoff),
            budget: seconds(v, &rt.budget, "retry.budget", false, ok).unwrap_or(d.budget),
        };
    }
    if let Some(m) = &r.max_response_bytes {
        if (1024..=MAX_RESPONSE_BYTES_CAP).contains(&m.value) {
            s.max_response_bytes = usize::try_from(m.value).unwrap_or(s.max_response_bytes);
        } else {
            v.error(
                &m.loc,
                format!(
                    "`max_response_bytes` must be from 1024 to {MAX_RESPONSE_BYTES_CAP}, not {}",
                    m.value
                ),
            );
            *ok = false;
        }
    }
    if let Some(c) = &r.cold_start {
        let d = ColdStartPolicy::default();
        s.cold_start = ColdStartPolicy {
            wait: seconds(v, &c.wait, "cold_start.wait", true, ok).unwrap_or(d.wait),
            resume_paused: c.resume_paused.unwrap_or(d.resume_paused),
        };
    }
    s
}

/// Why an api cannot serve a task kind, as help; `None` when it can.
fn unserved(api: Api, kind: TaskKind) -> Option<&'static str> {
    match (api, kind) {
        (Api::Pipeline, TaskKind::Chat) => {
            Some("pipeline endpoints take `inputs` only; use api `chat` or `tgi` for chat models")
        }
        (Api::Tei, TaskKind::Embeddings) => None,
        (Api::Tei, _) => Some(
            "text-embeddings-inference only embeds; use api `tgi`, `chat` or `pipeline` to generate",
        ),
        (Api::Tgi, TaskKind::Embeddings) => Some(
            "text-generation-inference does not embed; use api `tei` (text-embeddings-inference), `chat` (an OpenAI-style `/v1/embeddings`), `pipeline` or `router` (`feature-extraction`)",
        ),
        _ => None,
    }
}

/// Where the integration's Inference Endpoints are managed.
#[derive(Clone, Copy)]
struct Managed<'a> {
    namespace: Option<&'a str>,
    management_url: Option<&'a Url>,
}

fn model(v: &mut V<'_>, rm: Spanned<RawModel>, at: Managed<'_>) -> Option<Model> {
    let loc = rm.loc;
    let r = rm.value;
    let mut ok = true;
    let api = r.api.value;

    let url_from_management =
        r.endpoint.is_none() && r.inference_endpoint.is_some() && api != Api::Router;
    let endpoint = match (&r.endpoint, api) {
        (None, _) if url_from_management => match (at.namespace, at.management_url) {
            // Stands in until the provider asks the management API.
            (Some(ns), Some(m)) => r
                .inference_endpoint
                .as_ref()
                .map(|e| crate::provider::huggingface::management_resource(m, ns, &e.value)),
            (None, _) => {
                v.error(
                    &loc.child_of("endpoint"),
                    format!(
                        "model `{}` has no `endpoint` and its integration no `namespace` to find Inference Endpoint `{}` in",
                        r.name.value,
                        r.inference_endpoint.as_ref().map_or("", |e| e.value.as_str())
                    ),
                )
                .help = Some("set the integration's `namespace`, or the model's `endpoint` URL".into());
                None
            }
            (_, None) => None,
        },
        (Some(e), _) => match parse_http_url(&e.value) {
            Ok(u) => {
                if u.scheme() == "http" && !is_local(&u) {
                    v.warn(
                        &e.loc,
                        "the endpoint uses plain `http`: the API key would travel unencrypted",
                    );
                }
                Some(u)
            }
            Err(msg) => {
                v.error(&e.loc, format!("`endpoint` is {msg}"));
                None
            }
        },
        (None, Api::Router) => Url::parse(DEFAULT_ROUTER_URL).ok(),
        (None, _) => {
            v.error(
                &loc.child_of("endpoint"),
                format!(
                    "missing required key `endpoint` (model `{}` has api `{api}`)",
                    r.name.value
                ),
            )
            .help = Some("only `router` models may leave `endpoint` out".into());
            None
        }
    };

    let mut tasks: Vec<TaskKind> = Vec::new();
    if r.tasks.value.is_empty() {
        v.error(
            &r.tasks.loc,
            format!("model `{}` lists no tasks", r.name.value),
        )
        .help = Some(
            "list at least one of `text-generation`, `chat`, `summarization`, `embeddings`".into(),
        );
        ok = false;
    }
    for t in &r.tasks.value {
        if tasks.contains(&t.value) {
            v.warn(&t.loc, format!("task `{}` is listed twice", t.value));
        } else {
            tasks.push(t.value);
        }
        if let Some(help) = unserved(api, t.value) {
            v.error(
                &t.loc,
                format!(
                    "model `{}` has api `{api}`, which cannot serve `{}`",
                    r.name.value, t.value
                ),
            )
            .help = Some(help.into());
            ok = false;
        }
    }

    if let Some(u) = &r.upstream_model {
        if u.value.trim().is_empty() {
            v.error(&u.loc, "`upstream_model` is empty");
            ok = false;
        }
    }

    if let Some(e) = &r.inference_endpoint {
        // Inference Endpoint names are DNS labels: 1–32 lowercase letters,
        // digits and `-`, not starting or ending with `-`.
        let n = &e.value;
        let fine = (1..=32).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !fine {
            v.error(
                &e.loc,
                format!("`inference_endpoint` `{n}` is not an Inference Endpoint name"),
            )
            .help = Some("names are 1 to 32 lowercase letters, digits and `-`, not starting or ending with `-`".into());
            ok = false;
        }
    }

    let deployment = match (&r.deployment, &r.inference_endpoint) {
        (None, _) => None,
        (Some(d), None) => {
            v.error(
                &d.loc,
                format!(
                    "model `{}` has a `deployment` block but no `inference_endpoint`",
                    r.name.value
                ),
            )
            .help = Some(
                "name the Inference Endpoint the block deploys: `inference_endpoint = \"NAME\"`"
                    .into(),
            );
            ok = false;
            None
        }
        (Some(d), Some(_)) => Some(Arc::new(super::deployment::deployment(
            v,
            &r.name.value,
            d,
            &mut ok,
        ))),
    };

    let defaults = match &r.defaults {
        None => ModelDefaults::default(),
        Some(d) => {
            let d = &d.value;
            let mut out = ModelDefaults {
                seed: d.seed,
                normalize: d.normalize,
                truncate: d.truncate,
                ..ModelDefaults::default()
            };
            if let Some(m) = &d.max_tokens {
                match NonZeroU32::new(m.value) {
                    Some(n) => out.max_tokens = Some(n),
                    None => {
                        v.error(&m.loc, "`max_tokens` must be at least 1");
                        ok = false;
                    }
                }
            }
            if let Some(t) = &d.temperature {
                if t.value.is_finite() && t.value > 0.0 {
                    out.temperature = Some(t.value);
                } else {
                    v.error(
                        &t.loc,
                        format!("`temperature` must be greater than 0, not {}", t.value),
                    )
                    .help = Some(
                        "Hugging Face servers reject 0; leave it out for greedy decoding".into(),
                    );
                    ok = false;
                }
            }
            if let Some(p) = &d.top_p {
                if p.value > 0.0 && p.value <= 1.0 {
                    out.top_p = Some(p.value);
                } else {
                    v.error(
                        &p.loc,
                        format!(
                            "`top_p` must be greater than 0 and at most 1, not {}",
                            p.value
                        ),
                    );
                    ok = false;
                }
            }
            if let Some(s) = &d.stop {
                for (i, st) in s.value.iter().enumerate() {
                    if st.value.is_empty() {
                        v.error(&st.loc, format!("stop sequence {i} is empty"));
                        ok = false;
                    } else if st.value.len() > crate::task::MAX_STOP_WORD_BYTES {
                        v.error(
                            &st.loc,
                            format!(
                                "stop sequence {i} is {} bytes long; at most {} are allowed",
                                st.value.len(),
                                crate::task::MAX_STOP_WORD_BYTES
                            ),
                        );
                        ok = false;
                    }
                }
                if s.value.len() > crate::task::MAX_STOP_WORDS {
                    v.error(
                        &s.loc,
                        format!(
                            "{} stop sequences; at most {} are allowed",
                            s.value.len(),
                            crate::task::MAX_STOP_WORDS
                        ),
                    );
                    ok = false;
                } else if s.value.len() > 4 {
                    v.warn(&s.loc, format!("{} stop sequences: text-generation-inference accepts 4 unless its `max_stop_sequences` is raised", s.value.len()));
                }
                out.stop = s.value.iter().map(|s| s.value.clone()).collect();
            }
            out
        }
    };

    let chat_template = match &r.chat_template {
        None => None,
        Some(t) => {
            let path = v.dir_of(&t.loc).join(&t.value);
            if !path.is_file() {
                v.error(
                    &t.loc,
                    format!("chat template file `{}` does not exist", path.display()),
                );
                ok = false;
                None
            } else {
                if api != Api::Tgi {
                    v.warn(&t.loc, format!("`chat_template` is only used by `tgi` models; api `{api}` renders chats on the server"));
                }
                match crate::chat_template::ChatTemplate::load(&path) {
                    Ok(ct) => Some((path, std::sync::Arc::new(ct))),
                    Err(e) => {
                        v.error(&t.loc, e);
                        ok = false;
                        None
                    }
                }
            }
        }
    };

    let dimensions = match &r.dimensions {
        None => None,
        Some(d) => match NonZeroU32::new(d.value) {
            Some(n) => {
                if !tasks.contains(&TaskKind::Embeddings) {
                    v.warn(
                        &d.loc,
                        "`dimensions` is only used by models that serve `embeddings`",
                    );
                }
                Some(n)
            }
            None => {
                v.error(&d.loc, "`dimensions` must be at least 1");
                ok = false;
                None
            }
        },
    };

    let limits = limits(v, &r.rate_limit, &r.max_concurrency, &mut ok);
    let endpoint = endpoint?;
    if !ok {
        return None;
    }
    let name: Arc<str> = r.name.value.into();
    let upstream_model = r.upstream_model.map(|u| u.value);
    let spec = Arc::new(crate::provider::ModelEndpoint {
        name: name.to_string(),
        base_url: endpoint.clone(),
        api,
        upstream_model: upstream_model.clone().unwrap_or_else(|| name.to_string()),
        inference_endpoint: r.inference_endpoint.as_ref().map(|e| e.value.clone()),
        url_from_management,
    });
    Some(Model {
        limits,
        target: Target::Model(Arc::from(""), name.clone()),
        name,
        description: r.description,
        endpoint,
        api,
        tasks,
        active: r.active.unwrap_or(true),
        upstream_model,
        inference_endpoint: r.inference_endpoint.map(|e| e.value.into()),
        deployment,
        url_from_management,
        defaults,
        dimensions,
        chat_template,
        origin: v.origin(&loc),
        spec,
    })
}
