//! Shared helpers: temporary config files and running the binary on them.

use std::path::{Path, PathBuf};

pub use hfconnect_integration_tests::{Output, Run};

/// A temporary directory holding config files.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `hfconnect ARGS…`, run.
pub fn run(args: &[&str]) -> Output {
    Run::new(args).unwrap().output().unwrap()
}

/// `hfconnect config check --config PATH`
pub fn check(path: &Path) -> Output {
    run(&["config", "check", "--config", path.to_str().unwrap()])
}
