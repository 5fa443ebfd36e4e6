//! Phase two of loading: raw structs from all files into a [`Catalog`] whose
//! values cannot be invalid. Every check reports where (file, line, column, key
//! path) and keeps going, so one run shows every problem.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use url::Url;

mod access;
mod admission;
mod budget;
mod deployment;
mod integration;
mod worker;

use self::access::{application, grant, group, prompt};
use self::admission::admission;
use self::integration::{integration, quota};
use self::worker::worker;

use super::de::{Loc, Spanned};
use super::diagnostic::{did_you_mean, Diagnostic, FileId};
use super::raw::{RawFile, RawWorker};
use super::secret::EnvLookup;
use crate::access::{GroupInput, Policy, PolicyInput};
use crate::catalog::{Catalog, Integration, Model};
use crate::origin::Origin;
use crate::provider::huggingface::DEFAULT_HUB_URL;
use crate::runtime::Runtime;
use crate::runtime::WorkerIdentity;
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

    /// An error at a value validated already (it keeps its origin, not its `Loc`).
    fn error_at(&mut self, origin: &Origin, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(origin, message));
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

/// The models of the integrations validated so far, by integration name.
pub(super) struct ModelIndex<'m> {
    integrations: &'m [Integration],
    index: &'m rustc_hash::FxHashMap<Arc<str>, usize>,
}

impl<'m> ModelIndex<'m> {
    fn integration(&self, i: &str) -> Option<&'m Integration> {
        self.index.get(i).and_then(|&k| self.integrations.get(k))
    }

    /// Model `m` of integration `i`.
    pub(super) fn get(&self, i: &str, m: &str) -> Option<&'m Model> {
        self.integration(i).and_then(|x| x.model(m))
    }

    /// The model names of integration `i` (for "did you mean").
    pub(super) fn names(&self, i: &str) -> impl Iterator<Item = &'m str> + 'm {
        self.integration(i)
            .into_iter()
            .flat_map(|x| x.models.iter().map(|m| &*m.name))
    }
}

/// Validate all parsed files into a catalog. Returns the catalog when there is
/// no error, and every diagnostic (errors and warnings) either way.
pub(crate) fn validate(
    files: &[Arc<Path>],
    parsed: Vec<ParsedFile>,
    env: &EnvLookup,
) -> (Option<(Catalog, Runtime)>, Vec<Diagnostic>) {
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
    let mut raw_budgets = Vec::new();
    let mut audit: Option<Spanned<super::raw::RawAudit>> = None;
    let mut raw_worker: Option<Spanned<RawWorker>> = None;
    let mut raw_admission: Option<Spanned<super::raw::RawAdmission>> = None;
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
        raw_budgets.extend(p.raw.budgets.0);
        if let Some(a) = p.raw.admission {
            match &raw_admission {
                Some(first) => {
                    let first = v.origin(&first.loc);
                    v.error(&a.loc, "`[admission]` is defined twice").help =
                        Some(format!("first defined at {first}; keep one"));
                }
                None => raw_admission = Some(a),
            }
        }
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
    let mut calls = rustc_hash::FxHashMap::default();
    for ri in raw_integrations {
        let ok_name = v.name_ok("integration", &ri.value.name, false);
        let unique = ok_name && v.unique("integration", &mut seen, &ri.value.name);
        let name = ri.value.name.value.clone();
        match integration(&mut v, ri, &hub_default) {
            Some((i, (name, settings))) if unique => {
                integrations.push(i);
                calls.insert(name, settings);
            }
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
    let mut keyless = Vec::new();
    for ra in raw_apps {
        let ok = v.name_ok("application", &ra.value.name, false)
            && v.unique("application", &mut seen, &ra.value.name);
        let loc = ra.loc.clone();
        let a = application(&mut v, ra, &group_names);
        if ok {
            if a.key_hashes.is_empty() {
                keyless.push((a.name.clone(), loc));
            }
            applications.push(a);
        }
    }

    let index: rustc_hash::FxHashMap<Arc<str>, usize> = integrations
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.clone(), i))
        .collect();
    let lookup_model = ModelIndex {
        integrations: &integrations,
        index: &index,
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
    let worker_loc = raw_worker.as_ref().map(|w| w.loc.clone());
    let worker = raw_worker.and_then(|w| worker(&mut v, w, &app_names));
    // Without a key an application can still be the worker's (its `app`,
    // or, with `task-input` and `workflow` identities, any application a
    // task names): only where neither can be is a keyless one a mistake.
    let worker_runs_as = |name: &str| match worker.as_ref().map(|w| &w.identity) {
        Some(WorkerIdentity::Fixed(app)) => &**app == name,
        Some(_) => true,
        None => false,
    };
    for (name, loc) in keyless {
        if worker_runs_as(&name) {
            continue;
        }
        v.warn(
            &loc,
            format!("application `{name}` has no `keys`: no request to `serve` can authenticate as it"),
        )
        .help = Some(format!(
            "`hfconnect keys new --app {name}` prints a key and the line to add; an application only the worker runs as needs none (name it in `worker.app`)"
        ));
    }
    if let (Some(w), Some(loc)) = (&worker, &worker_loc) {
        for (task_type, kind) in &w.task_types {
            let served = integrations
                .iter()
                .filter(|i| i.active)
                .any(|i| i.models.iter().any(|m| m.active && m.supports(*kind)));
            if !served {
                v.warn(
                    loc,
                    format!("the worker polls `{task_type}`, but no active model serves `{kind}`: such tasks would fail"),
                )
                .help = Some(format!(
                    "add `{kind}` to a model's `tasks`, or list only the task types the models serve in `worker.task_types`"
                ));
            }
        }
    }
    let admission_loc = raw_admission.as_ref().map(|a| a.loc.clone());
    let (admission, usage_store) = admission(&mut v, raw_admission);

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

    let budgets = budget::budgets(&mut v, raw_budgets, &group_names, &app_names, &integrations);
    if let (Some(first), crate::runtime::AdmissionBackend::Local, None) =
        (budgets.first(), &admission, &usage_store)
    {
        // In memory only, a restart would reset every budget's spend.
        let at = first.origin().to_string();
        let d = match &admission_loc {
            Some(loc) => v.error(
                loc,
                format!(
                    "budget `{}` needs a usage store: `[admission]` has no `store`",
                    first.name()
                ),
            ),
            None => v.error_at(
                first.origin(),
                format!(
                    "budget `{}` needs a usage store: there is no `[admission]` section",
                    first.name()
                ),
            ),
        };
        d.help = Some(format!("write `[admission]` with `store = \"usage.sqlite\"` (a file path, relative to the config file), or `backend = \"redis\"`, so that a restart keeps what was spent (budget at {at})"));
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
        budgets,
        policy,
    };
    let runtime = Runtime {
        admission,
        usage_store,
        audit_include_text: audit.and_then(|a| a.value.include_text).unwrap_or(false),
        worker,
        calls,
    };
    (Some((catalog, runtime)), diags)
}

fn hub_default(v: &mut V<'_>) -> Result<Url, String> {
    match (v.env)("HF_ENDPOINT").filter(|s| !s.trim().is_empty()) {
        None => Url::parse(DEFAULT_HUB_URL).map_err(|e| e.to_string()),
        Some(s) => parse_http_url(s.trim().trim_end_matches('/'))
            .map_err(|e| format!("`HF_ENDPOINT` is {e}")),
    }
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

impl Loc {
    fn child_of(&self, key: &str) -> Loc {
        Loc {
            path: super::diagnostic::join_path(&self.path, key),
            ..self.clone()
        }
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
