//! Files for the geospatial tests: a scratch directory per test, and the public files
//! `./scripts/test.sh` fetches from packages at test time (never committed).

use std::path::PathBuf;

/// A scratch directory for one test, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new empty directory `cm-{tag}-test-…` under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("cm-{tag}-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    /// A file of this directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `rel` under the directory the variable `var` names; panics with `what` and how to get the
/// files (`ensure`, the geo.sh function) when the variable or the file is missing.
pub fn fetched(var: &str, what: &str, ensure: &str, rel: &str) -> PathBuf {
    let dir: PathBuf = std::env::var_os(var).map(Into::into).unwrap_or_else(|| {
        panic!(
            "{var} holds {what} (./scripts/test.sh fetches them; for one test: source scripts/lib/geo.sh && {ensure})"
        )
    });
    let p = dir.join(rel);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}
