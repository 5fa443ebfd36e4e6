//! The shape of `src/`: no import cycle anywhere, and the arrows of
//! `shared/design/architecture.md` that must never exist.
//!
//! Every file is a module; a reference from module `a::b::c` to `a::d::e`
//! (through `crate::`, `super::` or a sibling `use`) is an arrow between the
//! siblings `b` and `d` under their common parent `a`. Arrows between
//! siblings must form no cycle, at every level. A child naming its own
//! ancestors, or a parent its descendants, is a namespace, not an arrow.
//! Test modules (`#[cfg(test)]` and what follows) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path of a file: `src/connector/run.rs` → `["connector", "run"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every module path a file names (`crate::a::b`, `super::x`), resolved.
fn references(
    module: &[String],
    text: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let word = |i: usize| {
        i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
    };
    for start in [0usize]
        .into_iter()
        .chain((1..bytes.len()).filter(|&i| !word(i - 1) && word(i)))
    {
        let mut end = start;
        while word(end) {
            end += 1;
        }
        let path = &code[start..end];
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let (mut base, rest): (Vec<String>, &[&str]) = match segs.first() {
            Some(&"crate") => (Vec::new(), &segs[1..]),
            Some(&"super") => {
                let mut b = module.to_vec();
                let mut k = 0;
                while segs.get(k) == Some(&"super") {
                    b.pop();
                    k += 1;
                }
                (b, &segs[k..])
            }
            Some(&"self") => (module.to_vec(), &segs[1..]),
            _ => continue,
        };
        // The longest prefix that is a module.
        let mut found = base.clone();
        for s in rest {
            base.push((*s).to_string());
            if modules.contains(&base) {
                found = base.clone();
            } else {
                break;
            }
        }
        out.insert(found);
    }
    // Sibling modules named by `use x::…` or `x::…` without a prefix.
    let parent: Vec<String> = module.to_vec();
    for m in modules {
        if m.len() == parent.len() + 1 && m.starts_with(&parent) {
            let name = m.last().unwrap();
            let pat = format!("{name}::");
            if code
                .match_indices(&pat)
                .any(|(i, _)| i == 0 || !word(i - 1))
            {
                out.insert(m.clone());
            }
        }
    }
    out
}

/// The arrows between siblings, by their parent.
fn arrows(src: &Path) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut out: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> =
        BTreeMap::new();
    for f in &files {
        let from = module_of(src, f);
        if from.first().is_some_and(|m| m == "main") || from.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for to in references(&from, &text, &modules) {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // an ancestor or a descendant
            }
            let parent = from[..common].to_vec();
            out.entry(parent)
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .entry(to[common].clone())
                .or_insert_with(|| f.display().to_string());
        }
    }
    out
}

/// The groups of modules that reach each other (strongly connected
/// components with more than one member): each holds at least one cycle.
fn tangles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in graph.keys() {
        if !reaches[n].contains(n) || out.iter().any(|t| t.contains(n)) {
            continue;
        }
        let group: BTreeSet<String> = reaches[n]
            .iter()
            .filter(|m| reaches.get(m).is_some_and(|r| r.contains(n)))
            .cloned()
            .collect();
        out.push(group);
    }
    out
}

fn src() -> PathBuf {
    hfconnect_integration_tests::repo_root().join("src")
}

#[test]
fn no_import_cycle_anywhere_in_src() {
    let all = arrows(&src());
    let mut found = Vec::new();
    let root = src();
    for (parent, graph) in &all {
        for group in tangles(graph) {
            let evidence: Vec<String> = group
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|(b, _)| group.contains(*b))
                        .map(move |(b, f)| (a, b, f))
                })
                .map(|(a, b, f)| {
                    format!(
                        "  {a} -> {b} ({})",
                        Path::new(f)
                            .strip_prefix(&root)
                            .unwrap_or(Path::new(f))
                            .display()
                    )
                })
                .collect();
            found.push(format!(
                "under `crate::{}`:\n{}",
                parent.join("::"),
                evidence.join("\n")
            ));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_arrows_that_must_never_exist_do_not() {
    let all = arrows(&src());
    let top = all.get(&Vec::new()).cloned().unwrap_or_default();
    let uses = |from: &str, to: &str| top.get(from).and_then(|m| m.get(to)).cloned();
    let mut broken = Vec::new();
    let forbidden: &[(&str, &[&str], &str)] = &[
        (
            "provider",
            &[
                "access",
                "catalog",
                "connector",
                "config",
                "server",
                "conductor",
                "cli",
                "admission",
                "task",
            ],
            "the provider knows nothing of access, the catalog or front doors",
        ),
        (
            "access",
            &[
                "config",
                "catalog",
                "provider",
                "server",
                "conductor",
                "cli",
                "connector",
            ],
            "access is a pure function of grants",
        ),
        (
            "catalog",
            &["config", "connector", "server", "conductor", "cli"],
            "the catalog never imports config or doors",
        ),
        (
            "admission",
            &["task", "server", "conductor", "cli", "connector"],
            "admission never imports task or door types",
        ),
        (
            "connector",
            &["server", "conductor", "cli"],
            "the Connector knows no front door",
        ),
        (
            "analysis",
            &[
                "provider",
                "admission",
                "connector",
                "server",
                "conductor",
                "cli",
            ],
            "the analysis asks the policy of a catalog, nothing else",
        ),
    ];
    for (from, tos, why) in forbidden {
        for to in *tos {
            if let Some(file) = uses(from, to) {
                broken.push(format!("{from} -> {to} in {file}: {why}"));
            }
        }
    }
    // Front doors call the Connector; they never call a provider or the policy.
    for door in ["server", "conductor", "cli"] {
        for to in ["provider", "admission"] {
            if let Some(file) = uses(door, to) {
                broken.push(format!(
                    "{door} -> {to} in {file}: front doors call the Connector"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    std::fs::create_dir_all(s.join("a")).unwrap();
    std::fs::write(s.join("lib.rs"), "mod a; mod b;").unwrap();
    std::fs::write(s.join("a/mod.rs"), "mod x; mod y;\nuse crate::b::B;").unwrap();
    std::fs::write(s.join("a/x.rs"), "use super::y::Y;").unwrap();
    std::fs::write(
        s.join("a/y.rs"),
        "pub struct Y; fn f() { let _ = super::x::f; }",
    )
    .unwrap();
    std::fs::write(s.join("b.rs"), "pub struct B;\nuse crate::a::x;").unwrap();
    let all = arrows(s);
    assert_eq!(tangles(&all[&Vec::new()]).len(), 1, "a <-> b");
    assert_eq!(tangles(&all[&vec!["a".to_string()]]).len(), 1, "x <-> y");
    std::fs::write(s.join("b.rs"), "pub struct B;").unwrap();
    assert!(tangles(&arrows(s)[&Vec::new()]).is_empty(), "a -> b only");
}
