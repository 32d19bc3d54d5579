//! Test support shared by every integration test binary: a [`Workdir`] (a temporary directory that
//! disappears with the test), readers of what the tools write (`summary.json`, CSVs with a header, chunk
//! sets) and an exit-code assertion that shows the tool's stderr. Nothing here starts a service: the S3
//! side is `support_s3`, the Cassandra side `support_cql`.
#![allow(dead_code)]

use keyrecon::chunk::ChunkSet;
use keyrecon::merge::SortedCursor;
use keyrecon::record::Meta;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A temporary directory for one test's inputs and outputs, removed when dropped.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Self {
        Workdir { dir: tempfile::tempdir().unwrap() }
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    /// The path of `name` in the directory (nothing is created).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Writes `data` to `name`; returns its path.
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
    /// `DIR/summary.json` of the tool run with `--out DIR`.
    pub fn summary(&self, dir_name: &str) -> serde_json::Value {
        summary(&self.join(dir_name))
    }
}

/// `dir/summary.json`.
pub fn summary(dir: &Path) -> serde_json::Value {
    let p = dir.join("summary.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The rows of a CSV file with a header (outcome files, missing-on-target.csv).
pub fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records().map(|r| r.unwrap()).collect()
}

/// Every record of a chunk set, in order (checks the set on the way: strictly increasing keys).
pub fn read_set(dir: &Path) -> Vec<(Vec<u8>, Meta)> {
    let set = ChunkSet::open(dir).unwrap_or_else(|e| panic!("open chunk set {}: {e}", dir.display()));
    let mut s = set.stream().unwrap();
    let mut v: Vec<(Vec<u8>, Meta)> = Vec::new();
    while s.advance().unwrap() {
        if let Some((k, _)) = v.last() {
            assert!(k.as_slice() < s.key(), "chunk set {} not strictly increasing", dir.display());
        }
        v.push((s.key().to_vec(), Meta::decode(s.meta()).unwrap()));
    }
    v
}

pub fn keys_of(set: &[(Vec<u8>, Meta)]) -> Vec<String> {
    set.iter().map(|(k, _)| String::from_utf8(k.clone()).unwrap()).collect()
}

/// No file under `dir` (summary.json, journals, outcome files, ...) holds `secret`.
pub fn assert_secret_absent(dir: &Path, secret: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_secret_absent(&p, secret);
        } else {
            let data = std::fs::read(&p).unwrap();
            assert!(!data.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the password", p.display());
        }
    }
}

/// Runs `cmd` (a tool writing into `out`) and asserts that `secret` (a password it was given) is
/// neither on its stderr nor in any file under `out`; returns the output and the stderr.
pub fn run_keeping_secret(cmd: &mut std::process::Command, out: &Path, secret: &str) -> (Output, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains(secret), "the password on stderr: {err}");
    assert_secret_absent(out, secret);
    (o, err)
}

/// Asserts a command's exit code, showing its stderr if not.
#[track_caller]
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "exit code; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}
