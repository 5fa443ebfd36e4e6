//! Micro figures: access decisions at growing policy sizes, config load and
//! validation at growing catalog sizes, and SSE parsing throughput.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::access::{Access, Subject, Target};
use hfconnect::config::LoadOptions;
use hfconnect::testing::provider::huggingface::sse::SseParser;

/// Groups in every policy of the RBAC figures.
pub const GROUPS: usize = 1000;
/// Integrations the generated models are spread over.
const INTEGRATIONS: usize = 10;

/// A config with `models` models (over 10 integrations), `grants` grants
/// (over the groups and the models) and the user `bench-user` in groups
/// g0..g4. Grant k: model (k mod models) to group ((k div models) * 37 + k)
/// mod groups, so that no grant repeats.
pub fn generated_config(models: usize, grants: usize, groups: usize) -> String {
    let mut s = String::with_capacity(200 * (models + grants + groups));
    for i in 0..INTEGRATIONS {
        s.push_str(&format!(
            "[[integrations]]\nname = \"i{i}\"\napi_key = {{ env = \"HF_TOKEN\" }}\n\n"
        ));
        for m in (0..models).filter(|m| m % INTEGRATIONS == i) {
            s.push_str(&format!(
                "[[integrations.models]]\nname = \"m{m}\"\nendpoint = \"https://m{m}.example.com\"\napi = \"tgi\"\ntasks = [\"text-generation\", \"chat\"]\n\n"
            ));
        }
    }
    for g in 0..groups {
        let members = if g < 5 { "[\"bench-user\"]" } else { "[]" };
        s.push_str(&format!(
            "[[groups]]\nname = \"g{g}\"\nmembers = {members}\n\n"
        ));
    }
    for k in 0..grants {
        let m = k % models.max(1);
        s.push_str(&format!(
            "[[grants]]\nsubject = \"group:g{}\"\ntarget = \"model:i{}:m{m}\"\naccess = [\"READ\", \"EXECUTE\"]\n\n",
            (k / models.max(1) * 37 + k) % groups.max(1),
            m % INTEGRATIONS
        ));
    }
    s
}

fn env() -> LoadOptions {
    LoadOptions::new().env(Arc::new(|k| {
        (k == "HF_TOKEN").then(|| "hf_bench".to_string())
    }))
}

/// One RBAC figure.
#[derive(Debug, Clone)]
pub struct RbacRow {
    /// Grants in the policy.
    pub grants: usize,
    /// The case measured.
    pub case: &'static str,
    /// Mean time per decision.
    pub per_decision: Duration,
    /// What the decision was (checked against the case).
    pub allowed: bool,
}

/// Decision latency at each size: allowed and denied, group-scoped and not.
pub fn rbac(dir: &Path, sizes: &[usize], iterations: u64) -> Result<Vec<RbacRow>, String> {
    let mut rows = Vec::new();
    for &grants in sizes {
        // Enough models that every grant targets a distinct pair at 10,000.
        let models = 1000;
        let path = dir.join(format!("rbac-{grants}.toml"));
        std::fs::write(&path, generated_config(models, grants, GROUPS))
            .map_err(|e| e.to_string())?;
        let loaded = hfconnect::config::load(&path, &env()).map_err(|e| e.to_string())?;
        let policy = hfconnect::testing::catalog_of(&loaded).policy();
        let user = Subject::User("bench-user".into());
        let all = policy.principal(&user, None).map_err(|e| e.to_string())?;
        let scoped = policy
            .principal(&user, Some("g0"))
            .map_err(|e| e.to_string())?;
        // Model 0 is granted to g0, a group of the user; model 999 to none of
        // the user's groups (g999, g36, g73, ... or nobody below 1,000 grants).
        let granted = Target::model("i0", "m0");
        let other = Target::model("i9", "m999");
        for (case, principal, target, expect) in [
            ("allowed", &all, &granted, true),
            ("denied", &all, &other, false),
            ("allowed, group-scoped", &scoped, &granted, true),
            ("denied, group-scoped", &scoped, &other, false),
        ] {
            let d = policy.decide(principal, Access::Execute, target);
            if d.allowed != expect {
                return Err(format!(
                    "{grants} grants, {case}: decided {} ({})",
                    d.allowed, d.reason
                ));
            }
            // Warm up, then time `iterations` decisions.
            for _ in 0..iterations / 10 {
                black_box(policy.decide(black_box(principal), Access::Execute, black_box(target)));
            }
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(policy.decide(black_box(principal), Access::Execute, black_box(target)));
            }
            let per = start.elapsed() / u32::try_from(iterations).unwrap_or(u32::MAX);
            rows.push(RbacRow {
                grants,
                case,
                per_decision: per,
                allowed: expect,
            });
        }
    }
    Ok(rows)
}

/// Config load + validation time for `n` models and `n` grants (median of `runs`).
pub fn config_load(
    dir: &Path,
    sizes: &[usize],
    runs: usize,
) -> Result<Vec<(usize, u64, Duration)>, String> {
    let mut out = Vec::new();
    for &n in sizes {
        let path = dir.join(format!("load-{n}.toml"));
        let text = generated_config(n, n, 100);
        std::fs::write(&path, &text).map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            let loaded = hfconnect::config::load(&path, &env()).map_err(|e| e.to_string())?;
            times.push(start.elapsed());
            if hfconnect::testing::catalog_of(&loaded).model_count() != n {
                return Err(format!(
                    "loaded {} models, not {n}",
                    hfconnect::testing::catalog_of(&loaded).model_count()
                ));
            }
            black_box(loaded);
        }
        times.sort();
        out.push((n, text.len() as u64, times[times.len() / 2]));
    }
    Ok(out)
}

/// One authentication figure: a key looked up among `applications`.
#[derive(Debug, Clone)]
pub struct AuthRow {
    /// Applications in the config (each with one key).
    pub applications: usize,
    /// `known key` or `unknown key`.
    pub case: &'static str,
    /// Mean time per lookup, hashing included.
    pub per_lookup: Duration,
}

/// `Connector::authenticate` at each number of applications: the last
/// application's key, and a key nobody holds.
pub fn authentication(
    dir: &Path,
    sizes: &[usize],
    iterations: u64,
) -> Result<Vec<AuthRow>, String> {
    let mut rows = Vec::new();
    for &n in sizes {
        let mut text = generated_config(10, 10, 1);
        for a in 0..n {
            text.push_str(&format!(
                "[[applications]]\nname = \"app{a}\"\ngroups = [\"g0\"]\nkeys = [\"{}\"]\n\n",
                hfconnect::testing::server::key_hash(&format!("hfc_bench_key_{a}"))
            ));
        }
        let path = dir.join(format!("auth-{n}.toml"));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let connector =
            hfconnect::Connector::from_path(&path, &env()).map_err(|e| e.to_string())?;
        let known = format!("hfc_bench_key_{}", n - 1);
        for (case, key, want) in [
            ("known key", known.as_str(), Some(format!("app{}", n - 1))),
            ("unknown key", "hfc_nobody_holds_this_key", None),
        ] {
            if hfconnect::testing::core(&connector).authenticate(key) != want {
                return Err(format!(
                    "authentication at {n} applications: wrong answer for the {case}"
                ));
            }
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(hfconnect::testing::core(&connector).authenticate(black_box(key)));
            }
            rows.push(AuthRow {
                applications: n,
                case,
                per_lookup: start.elapsed() / iterations.max(1) as u32,
            });
        }
    }
    Ok(rows)
}

/// SSE parse throughput on a TGI stream of `tokens` token events, fed in 16 KiB reads.
pub fn sse(tokens: usize, runs: usize) -> Result<(usize, f64), String> {
    let mut stream = String::new();
    for i in 0..tokens {
        stream.push_str(&format!(
            "data:{{\"index\":{i},\"token\":{{\"id\":{},\"text\":\" word{i}\",\"logprob\":-0.25,\"special\":false}},\"generated_text\":null,\"details\":null,\"top_tokens\":null}}\n\n",
            i + 100
        ));
    }
    let bytes = stream.as_bytes();
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let mut p = SseParser::default();
        let mut events = 0usize;
        let start = Instant::now();
        for chunk in bytes.chunks(16 * 1024) {
            events += p.push(black_box(chunk)).map_err(|e| e.to_string())?.len();
        }
        let t = start.elapsed();
        if events != tokens {
            return Err(format!("parsed {events} events, not {tokens}"));
        }
        best = best.min(t);
    }
    Ok((bytes.len(), bytes.len() as f64 / best.as_secs_f64() / 1e6))
}
