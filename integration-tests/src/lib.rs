//! Test support for hfconnect's end-to-end tests: building and running the real
//! `hfconnect` binary with a controlled environment, and the fake Hugging Face and Conductor servers.

pub mod bench;
pub mod fake_conductor;
pub mod fake_hf;
pub mod redis;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variables that would make a run depend on the machine.
const SCRUBBED: &[&str] = &[
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HOME",
    "HF_ENDPOINT",
    "HFCONNECT_CONFIG",
    "RUST_LOG",
    "CONDUCTOR_SERVER_URL",
];

/// The path of the `hfconnect` binary, built once per test process with the
/// same cargo that runs the tests.
pub fn hfconnect_bin() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build(false)).clone()
}

/// The path of the `hfconnect` binary built with `--release` (for benchmarks).
pub fn hfconnect_bin_release() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build(true)).clone()
}

fn build(release: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    // What cargo sets for the test that runs this: a build script that
    // watches one of them (ring watches `CARGO_MANIFEST_DIR`) would
    // otherwise see it change and rebuild half the dependency tree, twice.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .args([
            "--quiet",
            "--message-format=json",
            "-p",
            "hfconnect",
            "--bin",
            "hfconnect",
            // The features this crate's own dependency on hfconnect has:
            // the binary then shares the library the tests just built (no
            // second build). The feature adds a test provider and widens
            // nothing the binary runs.
            "--features",
            "test-support",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building hfconnect failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "hfconnect")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no `hfconnect` executable".to_string())
}

/// The outcome of one run of the binary.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertions that do not care which.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A command line for the binary, with a scrubbed environment: no token, no
/// Hub override, `HF_HOME` pointing at an empty directory.
pub struct Run {
    cmd: Command,
}

impl Run {
    /// `hfconnect ARGS…`
    pub fn new<I, S>(args: I) -> Result<Run, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(hfconnect_bin()?);
        for k in SCRUBBED {
            cmd.env_remove(k);
        }
        let empty_home = std::env::temp_dir().join("hfconnect-it-empty-hf-home");
        cmd.env("HF_HOME", empty_home);
        cmd.args(args);
        Ok(Run { cmd })
    }

    /// Set an environment variable for this run.
    #[must_use]
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    /// Run to completion.
    pub fn output(mut self) -> Result<Output, String> {
        let out = self
            .cmd
            .output()
            .map_err(|e| format!("cannot run hfconnect: {e}"))?;
        Ok(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The repository root (for `config-examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
