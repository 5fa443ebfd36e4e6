//! The public API of the `hfconnect` library, one line per item (modules,
//! types, functions, constants, variants, public fields, inherent methods,
//! trait impls), checked against `public-api.txt` at the repository root so
//! that growing or changing the API is a decision a diff shows.
//!
//! `cargo run -p hfconnect-integration-tests --bin public-api` checks;
//! `-- --bless` rewrites the list. It reads rustdoc's JSON output, which
//! needs a nightly feature: the stable toolchain allows it with
//! `RUSTC_BOOTSTRAP=1`, set here for that one rustdoc run only.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use serde_json::Value;

struct Doc {
    index: serde_json::Map<String, Value>,
    lines: BTreeSet<String>,
    seen: HashSet<(String, String)>,
}

fn kind_of(item: &Value) -> Option<(&str, &Value)> {
    item["inner"]
        .as_object()
        .and_then(|o| o.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|i| i.to_string()).collect())
        .unwrap_or_default()
}

impl Doc {
    fn item(&self, id: &str) -> Option<&Value> {
        self.index.get(id)
    }

    fn walk(&mut self, id: &str, path: &str, name_override: Option<&str>) {
        let Some(item) = self.item(id).cloned() else {
            return;
        };
        let Some((kind, inner)) = kind_of(&item) else {
            return;
        };
        let name = name_override
            .map(str::to_string)
            .or_else(|| item["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}::{name}")
        };
        if !self.seen.insert((id.to_string(), here.clone())) {
            return;
        }
        match kind {
            "module" => {
                self.lines.insert(format!("mod {here}"));
                for child in ids(&inner["items"]) {
                    self.walk(&child, &here, None);
                }
            }
            "use" => {
                let target = inner["id"].to_string();
                let alias = inner["name"].as_str().unwrap_or_default().to_string();
                if inner["is_glob"].as_bool() == Some(true) {
                    if let Some(m) = self.item(&target).cloned() {
                        for child in ids(&m["inner"]["module"]["items"]) {
                            self.walk(&child, path, None);
                        }
                    }
                } else if self.item(&target).is_some() {
                    self.walk(&target, path, Some(&alias));
                } else {
                    let source = inner["source"].as_str().unwrap_or_default();
                    self.lines.insert(format!("use {path}::{alias} = {source}"));
                }
            }
            "struct" | "enum" | "union" | "trait" => {
                self.lines.insert(format!("{kind} {here}"));
                if let Some(fields) = inner["kind"]["plain"]["fields"].as_array() {
                    for f in fields {
                        self.member(&f.to_string(), &here, "field", true);
                    }
                }
                for v in ids(&inner["variants"]) {
                    self.member(&v, &here, "variant", false);
                }
                for i in ids(&inner["items"]) {
                    self.member(&i, &here, "trait-item", false);
                }
                for imp in ids(&inner["impls"]) {
                    self.impl_block(&imp, &here);
                }
            }
            "function" => {
                self.lines.insert(format!("fn {here}"));
            }
            "constant" | "static" => {
                self.lines.insert(format!("const {here}"));
            }
            "type_alias" => {
                self.lines.insert(format!("type {here}"));
            }
            "macro" => {
                self.lines.insert(format!("macro {here}"));
            }
            other => {
                self.lines.insert(format!("{other} {here}"));
            }
        }
    }

    fn member(&mut self, id: &str, owner: &str, what: &str, public_only: bool) {
        if let Some(m) = self.item(id) {
            if public_only && m["visibility"] != "public" {
                return;
            }
            let name = m["name"].as_str().unwrap_or_default();
            self.lines.insert(format!("{what} {owner}::{name}"));
        }
    }

    fn impl_block(&mut self, id: &str, owner: &str) {
        let Some(imp) = self.item(id).cloned() else {
            return;
        };
        let i = &imp["inner"]["impl"];
        if i["is_synthetic"].as_bool() == Some(true) || !i["blanket_impl"].is_null() {
            return;
        }
        match i["trait"].as_object() {
            Some(t) => {
                let name = t["path"].as_str().unwrap_or_default();
                let name = name.rsplit("::").next().unwrap_or(name);
                self.lines.insert(format!("impl {name} for {owner}"));
            }
            None => {
                for m in ids(&i["items"]) {
                    if let Some(item) = self.item(&m) {
                        if item["visibility"] == "public" {
                            let kind = match kind_of(item) {
                                Some(("function", _)) => "fn",
                                Some(("assoc_const", _)) => "const",
                                Some(("assoc_type", _)) => "type",
                                _ => "item",
                            };
                            let name = item["name"].as_str().unwrap_or_default();
                            self.lines.insert(format!("{kind} {owner}::{name}"));
                        }
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let bless = std::env::args().any(|a| a == "--bless");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("public-api");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "rustdoc",
            "--quiet",
            "--locked",
            "-p",
            "hfconnect",
            "--lib",
            "--target-dir",
        ])
        .arg(&target)
        .args(["--", "-Z", "unstable-options", "--output-format", "json"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("error: rustdoc failed ({s})");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    }
    let json = target.join("doc").join("hfconnect.json");
    let doc: Value = match std::fs::read(&json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", json.display());
            return ExitCode::FAILURE;
        }
    };
    let mut d = Doc {
        index: doc["index"].as_object().cloned().unwrap_or_default(),
        lines: BTreeSet::new(),
        seen: HashSet::new(),
    };
    d.walk(&doc["root"].to_string(), "", None);
    let now: String = d.lines.iter().map(|l| format!("{l}\n")).collect();
    let list = root.join("public-api.txt");
    if bless {
        if let Err(e) = std::fs::write(&list, &now) {
            eprintln!("error: cannot write `{}`: {e}", list.display());
            return ExitCode::FAILURE;
        }
        println!("{} items written to public-api.txt", d.lines.len());
        return ExitCode::SUCCESS;
    }
    let kept = std::fs::read_to_string(&list).unwrap_or_default();
    let kept: BTreeSet<&str> = kept.lines().collect();
    let now: BTreeSet<&str> = d.lines.iter().map(String::as_str).collect();
    let added: Vec<&&str> = now.difference(&kept).collect();
    let removed: Vec<&&str> = kept.difference(&now).collect();
    if added.is_empty() && removed.is_empty() {
        println!("public API: {} items, as in public-api.txt", now.len());
        return ExitCode::SUCCESS;
    }
    for l in &removed {
        println!("- {l}");
    }
    for l in &added {
        println!("+ {l}");
    }
    eprintln!(
        "error: the public API differs from public-api.txt ({} added, {} removed); if that is intended, run `cargo run -p hfconnect-integration-tests --bin public-api -- --bless` and commit the list",
        added.len(),
        removed.len()
    );
    ExitCode::FAILURE
}
