//! Build facts for `hfconnect --version`: the git revision the binary was
//! built from (`HFCONNECT_REVISION` when set, as an image build without a
//! `.git` directory sets it; else `git rev-parse`; else `unknown`) and the
//! cargo features it was built with.

#![allow(clippy::print_stdout)] // a build script speaks to cargo on stdout

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HFCONNECT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let revision = std::env::var("HFCONNECT_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    println!("cargo:rustc-env=HFCONNECT_REVISION={revision}");
    println!("cargo:rustc-env=HFCONNECT_FEATURES={features}");
}
