//! Phase two of loading: raw structs from all files into a [`Catalog`] whose
//! values cannot be invalid. Every check reports where (file, line, column, key
//! path) and keeps going, so one run shows every problem.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use url::Url;

use super::de::{Loc, Spanned};
use super::diagnostic::{did_you_mean, Diagnostic, FileId};
use super::raw::{
    IdentityMode, RawApplication, RawFile, RawGrant, RawGroup, RawIntegration, RawModel, RawPrompt,
    RawQuota, RawRate, RawWorker,
};
use super::secret::{self, EnvLookup};
use crate::access::{AccessSet, Grant, GroupInput, Policy, PolicyInput, Subject, Target};
use crate::catalog::{
    Application, Catalog, ConductorAuth, Group, Integration, Limits, Model, ModelDefaults,
    ModelRef, Prompt, Quota, TaskKind, WorkerIdentity, WorkerSettings,
};
use crate::origin::Origin;
use crate::prompt::PromptTemplate;
use crate::provider::huggingface::{DEFAULT_HUB_URL, DEFAULT_MANAGEMENT_URL, DEFAULT_ROUTER_URL};
use crate::provider::{Api, CallSettings};
use crate::retry::{ColdStartPolicy, RetryPolicy};
use std::time::Duration;

/// The largest `max_response_bytes` accepted (1 GiB).
const MAX_RESPONSE_BYTES_CAP: u64 = 1 << 30;

/// A parsed file, ready for validation.
pub(crate) struct ParsedFile {
    pub id: FileId,
    pub raw: RawFile,
    /// (list path, name) of entries dropped because they did not parse.
    pub broken: Vec<(String, String)>,
}

struct V<'a> {
    files: &'a [Arc<Path>],
    diags: Vec<Diagnostic>,
    env: &'a EnvLookup,
    broken: HashSet<(FileId, String, String)>,
    broken_integrations: HashSet<String>,
    broken_names: HashMap<&'static str, HashSet<String>>,
}

impl V<'_> {
    fn origin(&self, loc: &Loc) -> Origin {
        let file = self
            .files
            .get(loc.file.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(Path::new("<unknown>")));
        Origin::new(file, loc.pos.line, loc.pos.col, loc.path.clone())
    }

    fn error(&mut self, loc: &Loc, message: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::error(&self.origin(loc), message);
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn warn(&mut self, loc: &Loc, message: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::warning(&self.origin(loc), message);
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn dir_of(&self, loc: &Loc) -> &Path {
        self.files
            .get(loc.file.0 as usize)
            .and_then(|f| f.parent())
            .unwrap_or(Path::new("."))
    }

    fn is_broken(&self, list: &'static str, name: &str) -> bool {
        self.broken_names
            .get(list)
            .is_some_and(|s| s.contains(name))
    }

    /// Check a name; returns false (after reporting) when it is unusable.
    fn name_ok(&mut self, kind: &str, name: &Spanned<String>, allow_slash: bool) -> bool {
        let n = &name.value;
        let bad_char = n.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.')
                || (allow_slash && *c == '/'))
        });
        let problem = if n.is_empty() {
            Some(format!("{kind} name is empty"))
        } else if n == crate::catalog::UNKNOWN_NAME {
            Some(format!(
                "{kind} name `{n}` is reserved: metrics count names the catalog does not know under it"
            ))
        } else if n.chars().count() > 128 {
            Some(format!("{kind} name is longer than 128 characters"))
        } else if let Some(c) = bad_char {
            let allowed = if allow_slash {
                "letters, digits, `-`, `_`, `.` and `/`"
            } else {
                "letters, digits, `-`, `_` and `.`"
            };
            Some(format!(
                "{kind} name `{n}` contains `{c}`; names may hold {allowed}"
            ))
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.error(&name.loc, p);
                false
            }
            None => true,
        }
    }

    fn unique(
        &mut self,
        kind: &str,
        seen: &mut HashMap<String, Loc>,
        name: &Spanned<String>,
    ) -> bool {
        if let Some(first) = seen.get(&name.value) {
            let first = self.origin(first);
            self.error(
                &name.loc,
                format!("{kind} `{}` is defined twice", name.value),
            )
            .help = Some(format!("first defined at {first}; names must be unique"));
            false
        } else {
            seen.insert(name.value.clone(), name.loc.clone());
            true
        }
    }
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be `http` or `https`, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL carries credentials; put the key in `api_key` instead".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not carry a query string or fragment".into());
    }
    Ok(url)
}

fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Validate all parsed files into a catalog. Returns the catalog when there is
/// no error, and every diagnostic (errors and warnings) either way.
pub(crate) fn validate(
    files: &[Arc<Path>],
    parsed: Vec<ParsedFile>,
    env: &EnvLookup,
) -> (Option<Catalog>, Vec<Diagnostic>) {
    let mut v = V {
        files,
        diags: Vec::new(),
        env,
        broken: HashSet::new(),
        broken_integrations: HashSet::new(),
        broken_names: HashMap::new(),
    };
    for p in &parsed {
        for (list, name) in &p.broken {
            v.broken.insert((p.id, list.clone(), name.clone()));
            let top: Option<&'static str> = match list.as_str() {
                "integrations" => Some("integrations"),
                "prompts" => Some("prompts"),
                "groups" => Some("groups"),
                "applications" => Some("applications"),
                _ => None,
            };
            if let Some(top) = top {
                v.broken_names.entry(top).or_default().insert(name.clone());
                if top == "integrations" {
                    v.broken_integrations.insert(name.clone());
                }
            }
        }
    }

    let mut raw_integrations = Vec::new();
    let mut raw_prompts = Vec::new();
    let mut raw_groups = Vec::new();
    let mut raw_apps = Vec::new();
    let mut raw_grants = Vec::new();
    let mut raw_quotas = Vec::new();
    let mut audit: Option<Spanned<super::raw::RawAudit>> = None;
    let mut raw_worker: Option<Spanned<RawWorker>> = None;
    for p in parsed {
        if let Some(w) = p.raw.worker {
            match &raw_worker {
                Some(first) => {
                    let first = v.origin(&first.loc);
                    v.error(&w.loc, "`[worker]` is defined twice").help =
                        Some(format!("first defined at {first}; keep one"));
                }
                None => raw_worker = Some(w),
            }
        }
        raw_quotas.extend(p.raw.quotas.0);
        if let Some(a) = p.raw.audit {
            match &audit {
                Some(first) => {
                    let first = v.origin(&first.loc);
                    v.error(&a.loc, "`[audit]` is defined twice").help =
                        Some(format!("first defined at {first}; keep one"));
                }
                None => audit = Some(a),
            }
        }
        raw_integrations.extend(p.raw.integrations.0);
        raw_prompts.extend(p.raw.prompts.0);
        raw_groups.extend(p.raw.groups.0);
        raw_apps.extend(p.raw.applications.0);
        raw_grants.extend(p.raw.grants.0);
    }

    let hub_default = hub_default(&mut v);

    let mut seen = HashMap::new();
    let mut integrations = Vec::new();
    for ri in raw_integrations {
        let ok_name = v.name_ok("integration", &ri.value.name, false);
        let unique = ok_name && v.unique("integration", &mut seen, &ri.value.name);
        let name = ri.value.name.value.clone();
        match integration(&mut v, ri, &hub_default) {
            Some(i) if unique => integrations.push(i),
            Some(_) => {}
            // Invalid: references to it would only repeat the problem.
            None => {
                v.broken_integrations.insert(name);
            }
        }
    }

    let mut seen = HashMap::new();
    let mut groups = Vec::new();
    for rg in raw_groups {
        let ok = v.name_ok("group", &rg.value.name, false)
            && v.unique("group", &mut seen, &rg.value.name);
        let g = group(&mut v, rg);
        if ok {
            groups.push(g);
        }
    }
    let group_names: HashSet<&str> = groups.iter().map(|g| &*g.name).collect();

    let mut seen = HashMap::new();
    let mut applications = Vec::new();
    for ra in raw_apps {
        let ok = v.name_ok("application", &ra.value.name, false)
            && v.unique("application", &mut seen, &ra.value.name);
        let a = application(&mut v, ra, &group_names);
        if ok {
            applications.push(a);
        }
    }

    let index: crate::FxHashMap<Arc<str>, usize> = integrations
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.clone(), i))
        .collect();
    let lookup_model = |i: &str, m: &str| -> Option<&Model> {
        index
            .get(i)
            .and_then(|&k| integrations.get(k))
            .and_then(|x| x.model(m))
    };

    let mut seen = HashMap::new();
    let mut prompts = Vec::new();
    for rp in raw_prompts {
        let ok = v.name_ok("prompt", &rp.value.name, false)
            && v.unique("prompt", &mut seen, &rp.value.name);
        let name = rp.value.name.value.clone();
        match prompt(&mut v, rp, &lookup_model, &index) {
            Some(p) if ok => prompts.push(p),
            Some(_) => {}
            None => {
                v.broken_names.entry("prompts").or_default().insert(name);
            }
        }
    }
    let prompt_names: HashSet<&str> = prompts.iter().map(|p| &*p.name).collect();
    let app_names: HashSet<&str> = applications.iter().map(|a| &*a.name).collect();
    let worker = raw_worker.and_then(|w| worker(&mut v, w, &app_names));

    let mut grants = Vec::new();
    for rg in raw_grants {
        if let Some(g) = grant(
            &mut v,
            rg,
            &group_names,
            &app_names,
            &prompt_names,
            &lookup_model,
            &index,
        ) {
            grants.push(g);
        }
    }

    let mut quotas = Vec::new();
    for rq in raw_quotas {
        if let Some(q) = quota(&mut v, rq, &group_names, &app_names, &index) {
            quotas.push(q);
        }
    }

    let diags = std::mem::take(&mut v.diags);
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }

    let policy = Policy::new(PolicyInput {
        grants,
        groups: groups
            .iter()
            .map(|g| GroupInput {
                name: g.name.clone(),
                members: g.members.clone(),
                roles: g.roles.clone(),
            })
            .collect(),
        applications: applications
            .iter()
            .map(|a| (a.name.clone(), a.groups.clone()))
            .collect(),
        integrations: integrations
            .iter()
            .map(|i| (i.name.clone(), i.active))
            .collect(),
        models: integrations
            .iter()
            .flat_map(|i| {
                i.models
                    .iter()
                    .map(move |m| (i.name.clone(), m.name.clone(), m.active))
            })
            .collect(),
        prompts: prompts.iter().map(|p| p.name.clone()).collect(),
    });
    let prompt_index = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    let catalog = Catalog {
        integrations,
        integration_index: index,
        prompts,
        prompt_index,
        groups,
        applications,
        quotas,
        audit_include_text: audit.and_then(|a| a.value.include_text).unwrap_or(false),
        policy,
        worker,
    };
    (Some(catalog), diags)
}

fn hub_default(v: &mut V<'_>) -> Result<Url, String> {
    match (v.env)("HF_ENDPOINT").filter(|s| !s.trim().is_empty()) {
        None => Url::parse(DEFAULT_HUB_URL).map_err(|e| e.to_string()),
        Some(s) => parse_http_url(s.trim().trim_end_matches('/'))
            .map_err(|e| format!("`HF_ENDPOINT` is {e}")),
    }
}

fn integration(
    v: &mut V<'_>,
    ri: Spanned<RawIntegration>,
    hub_default: &Result<Url, String>,
) -> Option<Integration> {
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
        match model(v, rm) {
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
    Some(Integration {
        name,
        description: r.description,
        namespace: r.namespace.map(|n| n.value),
        active: r.active.unwrap_or(true),
        api_key: resolved.key,
        hub_url,
        management_url,
        calls,
        limits,
        queue_timeout,
        models,
        model_index,
        origin: v.origin(&loc),
    })
}

/// A duration in seconds: finite, above zero (or zero where `zero_ok`), at most a day.
fn seconds(
    v: &mut V<'_>,
    s: &Option<Spanned<f64>>,
    name: &str,
    zero_ok: bool,
    ok: &mut bool,
) -> Option<Duration> {
    let s = s.as_ref()?;
    let fine = s.value.is_finite()
        && s.value <= 86_400.0
        && (s.value > 0.0 || (zero_ok && s.value == 0.0));
    if fine {
        Some(Duration::from_secs_f64(s.value))
    } else {
        let bound = if zero_ok { "0 or more" } else { "more than 0" };
        v.error(
            &s.loc,
            format!(
                "`{name}` must be a number of seconds, {bound} and at most 86400, not {}",
                s.value
            ),
        );
        *ok = false;
        None
    }
}

fn at_least_one(v: &mut V<'_>, n: &Spanned<u32>, name: &str, ok: &mut bool) -> Option<NonZeroU32> {
    let out = NonZeroU32::new(n.value);
    if out.is_none() {
        v.error(&n.loc, format!("`{name}` must be at least 1"));
        *ok = false;
    }
    out
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

fn quota(
    v: &mut V<'_>,
    rq: Spanned<RawQuota>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    index: &crate::FxHashMap<Arc<str>, usize>,
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

fn model(v: &mut V<'_>, rm: Spanned<RawModel>) -> Option<Model> {
    let loc = rm.loc;
    let r = rm.value;
    let mut ok = true;
    let api = r.api.value;

    let endpoint = match (&r.endpoint, api) {
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
        .help = Some("list at least one of `text-generation`, `chat`, `summarization`".into());
        ok = false;
    }
    for t in &r.tasks.value {
        if tasks.contains(&t.value) {
            v.warn(&t.loc, format!("task `{}` is listed twice", t.value));
        } else {
            tasks.push(t.value);
        }
        if api == Api::Pipeline && t.value == TaskKind::Chat {
            v.error(
                &t.loc,
                format!(
                    "model `{}` has api `pipeline`, which cannot serve `chat`",
                    r.name.value
                ),
            )
            .help = Some(
                "pipeline endpoints take `inputs` only; use api `chat` or `tgi` for chat models"
                    .into(),
            );
            ok = false;
        }
    }

    if let Some(u) = &r.upstream_model {
        if u.value.trim().is_empty() {
            v.error(&u.loc, "`upstream_model` is empty");
            ok = false;
        }
    }

    let defaults = match &r.defaults {
        None => ModelDefaults::default(),
        Some(d) => {
            let d = &d.value;
            let mut out = ModelDefaults {
                seed: d.seed,
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
                    }
                }
                if s.value.len() > 4 {
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
        defaults,
        chat_template,
        origin: v.origin(&loc),
        spec,
    })
}

impl Loc {
    fn child_of(&self, key: &str) -> Loc {
        Loc {
            path: super::diagnostic::join_path(&self.path, key),
            ..self.clone()
        }
    }
}

fn group(v: &mut V<'_>, rg: Spanned<RawGroup>) -> Group {
    let r = rg.value;
    let mut members: Vec<Arc<str>> = Vec::new();
    for m in &r.members {
        if m.value.trim().is_empty() {
            v.error(&m.loc, "member id is empty");
        } else if m.value.trim() != m.value {
            v.error(
                &m.loc,
                format!("member id `{}` has spaces around it", m.value),
            );
        } else if members.iter().any(|x| **x == *m.value) {
            v.warn(
                &m.loc,
                format!("`{}` is listed twice in group `{}`", m.value, r.name.value),
            );
        } else {
            members.push(m.value.as_str().into());
        }
    }
    let mut roles = Vec::new();
    for role in &r.roles {
        if !roles.contains(&role.value) {
            roles.push(role.value);
        }
    }
    Group {
        name: r.name.value.into(),
        description: r.description,
        members,
        roles,
        origin: v.origin(&rg.loc),
    }
}

fn application(v: &mut V<'_>, ra: Spanned<RawApplication>, groups: &HashSet<&str>) -> Application {
    let r = ra.value;
    let mut out: Vec<Arc<str>> = Vec::new();
    for g in &r.groups {
        if groups.contains(g.value.as_str()) {
            if !out.iter().any(|x| **x == *g.value) {
                out.push(g.value.as_str().into());
            }
        } else if !v.is_broken("groups", &g.value) {
            let help = suggest(
                &g.value,
                groups.iter().copied(),
                "groups are declared under `[[groups]]`",
            );
            v.error(
                &g.loc,
                format!(
                    "application `{}` names unknown group `{}`",
                    r.name.value, g.value
                ),
            )
            .help = Some(help);
        }
    }
    let mut key_hashes = Vec::new();
    for k in &r.keys {
        match crate::keys::parse_hash(&k.value) {
            Some(h) => key_hashes.push(h),
            None => {
                v.error(
                    &k.loc,
                    "an application key must be written as its hash, `sha256:` and 64 hex digits",
                )
                .help = Some(format!(
                    "`hfconnect keys new --app {}` prints a new key and the line to add",
                    r.name.value
                ));
            }
        }
    }
    Application {
        name: r.name.value.into(),
        description: r.description,
        groups: out,
        key_hashes,
        act_for_users: r.act_for_users.unwrap_or(false),
        origin: v.origin(&ra.loc),
    }
}

fn suggest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    fallback: &str,
) -> String {
    match did_you_mean(input, candidates) {
        Some(s) => format!("did you mean `{s}`?"),
        None => fallback.to_string(),
    }
}

/// Whether `integration:model` exists; reports and returns None when it does not.
fn check_model_ref<'m>(
    v: &mut V<'_>,
    loc: &Loc,
    what: &str,
    integration: &str,
    model: &str,
    lookup: &dyn Fn(&str, &str) -> Option<&'m Model>,
    index: &crate::FxHashMap<Arc<str>, usize>,
) -> bool {
    if lookup(integration, model).is_some() {
        return true;
    }
    if v.broken_integrations.contains(integration) {
        return false;
    }
    if !index.contains_key(integration) {
        let help = suggest(
            integration,
            index.keys().map(|k| &**k),
            "integrations are declared under `[[integrations]]`",
        );
        v.error(
            loc,
            format!("{what} names unknown integration `{integration}`"),
        )
        .help = Some(help);
        return false;
    }
    let broken_model = v
        .broken
        .iter()
        .any(|(_, list, name)| list.ends_with(".models") && name == model);
    if !broken_model {
        v.error(
            loc,
            format!("{what} names unknown model `{model}` of integration `{integration}`"),
        );
    }
    false
}

fn prompt<'m>(
    v: &mut V<'_>,
    rp: Spanned<RawPrompt>,
    lookup: &dyn Fn(&str, &str) -> Option<&'m Model>,
    index: &crate::FxHashMap<Arc<str>, usize>,
) -> Option<Prompt> {
    let r = rp.value;
    let mut ok = true;
    let template = match PromptTemplate::parse(&r.template.value) {
        Ok(t) => Some(t),
        Err(e) => {
            v.error(
                &r.template.loc,
                format!("template of prompt `{}`: {e}", r.name.value),
            )
            .help = Some("placeholders look like `${name}`".into());
            None
        }
    };
    if r.template.value.trim().is_empty() {
        v.error(
            &r.template.loc,
            format!("template of prompt `{}` is empty", r.name.value),
        );
        ok = false;
    }
    if r.models.value.is_empty() {
        v.error(
            &r.models.loc,
            format!("prompt `{}` lists no models", r.name.value),
        )
        .help = Some(
            "only the models listed may use a prompt: list them as `\"integration:model\"`".into(),
        );
        ok = false;
    }
    let mut models = Vec::new();
    for m in &r.models.value {
        let Some((i, name)) = m.value.split_once(':') else {
            v.error(&m.loc, format!("`{}` is not a model reference", m.value))
                .help = Some("write `\"integration:model\"`".into());
            ok = false;
            continue;
        };
        let what = format!("prompt `{}`", r.name.value);
        if check_model_ref(v, &m.loc, &what, i, name, lookup, index) {
            models.push(ModelRef {
                integration: i.into(),
                model: name.into(),
            });
        } else {
            ok = false;
        }
    }
    let template = template?;
    if !ok {
        return None;
    }
    Some(Prompt {
        name: r.name.value.into(),
        description: r.description,
        template,
        models,
        origin: v.origin(&rp.loc),
    })
}

#[allow(clippy::too_many_arguments)]
fn grant<'m>(
    v: &mut V<'_>,
    rg: Spanned<RawGrant>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    prompts: &HashSet<&str>,
    lookup: &dyn Fn(&str, &str) -> Option<&'m Model>,
    index: &crate::FxHashMap<Arc<str>, usize>,
) -> Option<Grant> {
    let r = rg.value;
    let mut ok = true;
    let subject = match r.subject.value.parse::<Subject>() {
        Ok(s) => {
            match &s {
                Subject::Group(g) if !groups.contains(&**g) && !v.is_broken("groups", g) => {
                    let help = suggest(
                        g,
                        groups.iter().copied(),
                        "groups are declared under `[[groups]]`",
                    );
                    v.error(&r.subject.loc, format!("grant names unknown group `{g}`"))
                        .help = Some(help);
                    ok = false;
                }
                Subject::App(a) if !apps.contains(&**a) && !v.is_broken("applications", a) => {
                    let help = suggest(
                        a,
                        apps.iter().copied(),
                        "applications are declared under `[[applications]]`",
                    );
                    v.error(
                        &r.subject.loc,
                        format!("grant names unknown application `{a}`"),
                    )
                    .help = Some(help);
                    ok = false;
                }
                _ => {}
            }
            Some(s)
        }
        Err(e) => {
            v.error(&r.subject.loc, e.to_string());
            None
        }
    };
    let target = match r.target.value.parse::<Target>() {
        Ok(t) => {
            match &t {
                Target::Integration(i)
                    if !index.contains_key(i) && !v.broken_integrations.contains(&**i) =>
                {
                    let help = suggest(
                        i,
                        index.keys().map(|k| &**k),
                        "integrations are declared under `[[integrations]]`",
                    );
                    v.error(
                        &r.target.loc,
                        format!("grant names unknown integration `{i}`"),
                    )
                    .help = Some(help);
                    ok = false;
                }
                Target::Model(i, m)
                    if !check_model_ref(v, &r.target.loc, "grant", i, m, lookup, index) =>
                {
                    ok = false;
                }
                Target::Prompt(p) if !prompts.contains(&**p) && !v.is_broken("prompts", p) => {
                    let help = suggest(
                        p,
                        prompts.iter().copied(),
                        "prompts are declared under `[[prompts]]`",
                    );
                    v.error(&r.target.loc, format!("grant names unknown prompt `{p}`"))
                        .help = Some(help);
                    ok = false;
                }
                _ => {}
            }
            Some(t)
        }
        Err(e) => {
            v.error(&r.target.loc, e.to_string());
            None
        }
    };
    let mut access = AccessSet::EMPTY;
    if r.access.value.is_empty() {
        v.error(&r.access.loc, "`access` is empty: a grant must give at least one of `CREATE`, `READ`, `UPDATE`, `DELETE`, `EXECUTE`");
        ok = false;
    }
    for a in &r.access.value {
        if !access.insert(a.value) {
            v.warn(&a.loc, format!("`{}` is listed twice", a.value));
        }
    }
    let (subject, target) = (subject?, target?);
    if !ok {
        return None;
    }
    Some(Grant::new(subject, target, access, v.origin(&rg.loc)))
}

/// The `[worker]` section; `None` (after reporting) when it is invalid.
fn worker(v: &mut V<'_>, rw: Spanned<RawWorker>, apps: &HashSet<&str>) -> Option<WorkerSettings> {
    let loc = rw.loc;
    let r = rw.value;
    let mut ok = true;
    let mode = r.identity.as_ref().map_or(IdentityMode::Fixed, |m| m.value);
    let identity = match (mode, &r.app) {
        (IdentityMode::Fixed, None) => {
            v.error(&loc, "`worker.identity = \"fixed\"` (the default) needs `worker.app`")
                .help = Some(
                "name the application the worker runs tasks as, or set `identity` to `task-input` or `workflow`"
                    .into(),
            );
            ok = false;
            None
        }
        (IdentityMode::Fixed, Some(app)) => {
            if apps.contains(app.value.as_str()) {
                Some(WorkerIdentity::Fixed(app.value.as_str().into()))
            } else {
                if !v.is_broken("applications", &app.value) {
                    let help = suggest(
                        &app.value,
                        apps.iter().copied(),
                        "applications are declared under `[[applications]]`",
                    );
                    v.error(
                        &app.loc,
                        format!("`worker.app` names unknown application `{}`", app.value),
                    )
                    .help = Some(help);
                }
                ok = false;
                None
            }
        }
        (other, app) => {
            if let Some(app) = app {
                v.warn(
                    &app.loc,
                    "`worker.app` is ignored: tasks run as the identity `worker.identity` finds",
                )
                .help = Some("remove `app`, or set `identity = \"fixed\"`".into());
            }
            Some(if other == IdentityMode::TaskInput {
                WorkerIdentity::TaskInput
            } else {
                WorkerIdentity::Workflow
            })
        }
    };

    let conductor_url = match &r.conductor_url {
        Some(u) => match parse_http_url(u.value.trim_end_matches('/')) {
            Ok(url) => Some(url),
            Err(e) => {
                v.error(&u.loc, format!("`worker.conductor_url` is {e}"));
                ok = false;
                None
            }
        },
        None => None,
    };

    let task_types = match &r.task_types {
        None => TaskKind::ALL
            .iter()
            .map(|k| (k.conductor_type().to_string(), *k))
            .collect(),
        Some(t) => {
            let mut out: Vec<(String, TaskKind)> = Vec::new();
            for (name, kind) in [
                (&t.value.text_complete, TaskKind::TextGeneration),
                (&t.value.chat_complete, TaskKind::Chat),
                (&t.value.summarize, TaskKind::Summarization),
            ] {
                let Some(name) = name else { continue };
                let n = name.value.trim();
                if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                    v.error(
                        &name.loc,
                        format!(
                            "task type `{}` is not a Conductor task type name",
                            name.value
                        ),
                    )
                    .help = Some("task type names hold no spaces or `/`".into());
                    ok = false;
                } else if out.iter().any(|(x, _)| x == n) {
                    v.error(&name.loc, format!("task type `{n}` is listed twice"))
                        .help = Some("each task type runs one kind of task".into());
                    ok = false;
                } else {
                    out.push((n.to_string(), kind));
                }
            }
            if out.is_empty() && ok {
                v.error(
                    &t.loc,
                    "`worker.task_types` lists no task type; the worker would poll nothing",
                )
                .help = Some(
                    "name at least one of `text_complete`, `chat_complete`, `summarize`".into(),
                );
                ok = false;
            }
            out
        }
    };

    let mut text = |field: &Option<Spanned<String>>, key: &str, ok: &mut bool| {
        let f = field.as_ref()?;
        let t = f.value.trim();
        if t.is_empty() {
            v.error(&f.loc, format!("`worker.{key}` is empty"));
            *ok = false;
            None
        } else {
            Some(t.to_string())
        }
    };
    let worker_id = text(&r.worker_id, "worker_id", &mut ok);
    let domain = text(&r.domain, "domain", &mut ok);
    let key_id = text(&r.key_id, "key_id", &mut ok);

    let defaults = WorkerSettings::new(WorkerIdentity::TaskInput);
    let concurrency = match &r.concurrency {
        Some(n) => at_least_one(v, n, "worker.concurrency", &mut ok),
        None => Some(defaults.concurrency),
    };
    let batch = match &r.batch {
        Some(n) => at_least_one(v, n, "worker.batch", &mut ok),
        None => concurrency,
    };
    let poll_timeout = seconds(v, &r.poll_timeout, "worker.poll_timeout", true, &mut ok)
        .unwrap_or(defaults.poll_timeout);
    let shutdown_grace = seconds(v, &r.shutdown_grace, "worker.shutdown_grace", true, &mut ok)
        .unwrap_or(defaults.shutdown_grace);

    let auth = match (key_id, r.key_secret) {
        (None, None) => None,
        (Some(_), None) => {
            v.error(
                &loc,
                "`worker.key_id` is set but `worker.key_secret` is not",
            )
            .help = Some("set both (Orkes application credentials) or neither".into());
            ok = false;
            None
        }
        (None, Some(s)) => {
            if r.key_id.is_none() {
                v.error(
                    &s.loc,
                    "`worker.key_secret` is set but `worker.key_id` is not",
                )
                .help = Some("set both (Orkes application credentials) or neither".into());
            }
            ok = false;
            None
        }
        (Some(key_id), Some(s)) => {
            if matches!(s.value, super::secret::ApiKeyLocation::Huggingface) {
                v.error(
                    &s.loc,
                    "`worker.key_secret` cannot use the Hugging Face token lookup",
                )
                .help = Some("write `{ env = \"VAR\" }` or `{ file = \"path\" }`".into());
                ok = false;
                None
            } else {
                let base = v.dir_of(&s.loc).to_path_buf();
                let resolved = secret::resolve_secret(s.value, &base, v.env);
                if let Some(reason) = resolved.key.unavailable_reason() {
                    let reason = reason.to_string();
                    v.warn(
                        &s.loc,
                        format!("the worker's `key_secret` is not available: {reason}"),
                    )
                    .help =
                        Some("`hfconnect worker` will refuse to start until it can be read".into());
                }
                for w in resolved.warnings {
                    v.warn(&s.loc, w);
                }
                Some(ConductorAuth {
                    key_id,
                    key_secret: resolved.key,
                })
            }
        }
    };

    let (identity, concurrency, batch) = (identity?, concurrency?, batch?);
    ok.then_some(WorkerSettings {
        conductor_url,
        task_types,
        identity,
        worker_id,
        domain,
        concurrency,
        batch,
        poll_timeout,
        shutdown_grace,
        auth,
    })
}
