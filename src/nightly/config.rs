//! recon.toml: the settings of a nightly reconciliation.
//!
//! Every stage section holds the **flags of the binary that runs the stage**, under the flag's own name
//! (`key-column`, `min-age`, `written-before`...), so a setting means exactly what the flag means and
//! `keyrecon-reconcile --print-commands` prints the pipeline a person would type. A value is a string,
//! a number, `true` (a flag without a value; `false` leaves it out) or an array (the flag repeated, e.g.
//! `fallback = ["media_old.objects"]`). Flags the run owns (`--out`, `--resume`, `--force`, `--quiet`,
//! the diff's inputs) are set by keyrecon-reconcile and refused here.
//!
//! ```toml
//! runs = "/var/lib/keyrecon/media-objects"      # RUNS/2026-12-02T020000Z/, RUNS/history.jsonl
//!
//! [source]                 # keyrecon-list-cassandra
//! contact-points = "10.0.0.1:9042"
//! keyspace = "media"
//! table = "objects"
//! key-column = "id"
//! writetime-of = "data"
//! written-before = "2026-11-01T00:00:00Z"     # the dual-write start
//!
//! [target]                 # keyrecon-list-s3
//! bucket = "images"
//! min-age = "1h"                              # objects written in the last hour are still in flight
//!
//! [diff]                   # keyrecon-diff
//! compare = "size"
//!
//! [repair]                 # keyrecon-repair; mode: off | dry-run | on
//! mode = "dry-run"
//! source = "media.objects"
//! key-column = "id"
//! blob-column = "data"
//! bucket = "images"
//!
//! [verify]                 # keyrecon-verify; mode: off | head | deep
//! mode = "head"
//!
//! [brake]
//! max-missing-fraction = 0.01                  # of the source's keys
//! max-listing-drop = 0.10                      # a side listing 10% fewer keys than last night
//!
//! [report]
//! notify-cmd = "mail -s 'keyrecon: media.objects' ops@example.com <"   # gets the report.md path
//! metrics = "/var/lib/node_exporter/textfile_collector/keyrecon.prom"
//! ```
//! The source and the target may each be listed in `shards = N` parts (the listers' `--shard i/N`,
//! run one after another here; the diff merges them).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a stage's mode says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairMode {
    Off,
    DryRun,
    On,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    Off,
    Head,
    Deep,
}

/// A mode as recon.toml spells it (`dry-run`).
pub fn mode_name(m: impl serde::Serialize) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A stage's flags, sorted by name, as `(flag, value)`: `None` for a flag without a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags(pub Vec<(String, Option<String>)>);

impl Flags {
    /// As command-line arguments.
    pub fn args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (f, val) in &self.0 {
            v.push(format!("--{f}"));
            if let Some(val) = val {
                v.push(val.clone());
            }
        }
        v
    }
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == flag).and_then(|(_, v)| v.as_deref())
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (messages).
    pub path: PathBuf,
    pub runs: PathBuf,
    pub source: Flags,
    pub source_shards: u32,
    pub target: Flags,
    pub target_shards: u32,
    pub diff: Flags,
    pub repair_mode: RepairMode,
    pub repair: Flags,
    pub verify_mode: VerifyMode,
    pub verify: Flags,
    /// Repair does not start when more than this share of the source's keys is missing.
    pub max_missing_fraction: f64,
    /// ... or when a side listed more than this share fewer keys than the previous run.
    pub max_listing_drop: f64,
    pub notify_cmd: Option<String>,
    pub metrics: Option<PathBuf>,
    /// Runs kept in RUNS (older run directories are removed; history.jsonl keeps every line).
    pub keep: usize,
}

/// Flags a stage section may not set: the run sets them.
const OWNED: &[&str] = &["out", "o", "resume", "force", "quiet", "q", "source-dir", "target-dir", "queue", "keys"];

fn flags(path: &Path, section: &str, t: &toml::Table, skip: &[&str]) -> Result<Flags> {
    let bad = |msg: String| Error::Usage(format!("{}: [{section}] {msg}", path.display()));
    let mut out = Vec::new();
    for (k, v) in t {
        if skip.contains(&k.as_str()) {
            continue;
        }
        if OWNED.contains(&k.as_str()) {
            return Err(bad(format!("{k}: keyrecon-reconcile sets --{k} itself")));
        }
        if k.contains('_') {
            return Err(bad(format!("{k}: settings are the flags' names, with - (e.g. {})", k.replace('_', "-"))));
        }
        let scalar = |v: &toml::Value| -> Result<Option<Option<String>>> {
            Ok(match v {
                toml::Value::String(s) => Some(Some(s.clone())),
                toml::Value::Integer(i) => Some(Some(i.to_string())),
                toml::Value::Float(f) => Some(Some(f.to_string())),
                toml::Value::Boolean(true) => Some(None),
                toml::Value::Boolean(false) => None,
                other => return Err(bad(format!("{k}: a {} is not a flag value", other.type_str()))),
            })
        };
        match v {
            toml::Value::Array(a) => {
                for x in a {
                    if let Some(val) = scalar(x)? {
                        out.push((k.clone(), val));
                    }
                }
            }
            x => {
                if let Some(val) = scalar(x)? {
                    out.push((k.clone(), val));
                }
            }
        }
    }
    Ok(Flags(out))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let doc: toml::Table =
            text.parse().map_err(|e: toml::de::Error| Error::Usage(format!("{}: {}", path.display(), e.message())))?;
        let bad = |msg: String| Error::Usage(format!("{}: {msg}", path.display()));
        let known = ["runs", "source", "target", "diff", "repair", "verify", "brake", "report", "keep"];
        if let Some(k) = doc.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown setting {k:?} (sections: source, target, diff, repair, verify, brake, report)"
            )));
        }
        let runs =
            doc.get("runs").and_then(|v| v.as_str()).ok_or_else(|| bad("`runs = \"DIR\"` is required".into()))?;
        let runs = path.parent().unwrap_or(Path::new(".")).join(runs);
        let empty = toml::Table::new();
        let section = |name: &str| -> Result<&toml::Table> {
            match doc.get(name) {
                None => Ok(&empty),
                Some(toml::Value::Table(t)) => Ok(t),
                Some(_) => Err(bad(format!("{name} must be a [{name}] section"))),
            }
        };
        let (src, tgt) = (section("source")?, section("target")?);
        if src.is_empty() || tgt.is_empty() {
            return Err(bad(
                "both [source] (keyrecon-list-cassandra flags) and [target] (keyrecon-list-s3 flags) are required"
                    .into(),
            ));
        }
        let shards = |t: &toml::Table, name: &str| -> Result<u32> {
            match t.get("shards") {
                None => Ok(1),
                Some(toml::Value::Integer(n)) if (1..=1024).contains(n) => Ok(*n as u32),
                Some(v) => Err(bad(format!("[{name}] shards = {v}: a number of shards from 1 to 1024"))),
            }
        };
        let mode = |t: &toml::Table, name: &str| -> Result<Option<String>> {
            match t.get("mode") {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(bad(format!("[{name}] mode = {v}: a string"))),
            }
        };
        let (rep, ver) = (section("repair")?, section("verify")?);
        let repair_mode = match mode(rep, "repair")?.as_deref() {
            None | Some("off") => RepairMode::Off,
            Some("dry-run") => RepairMode::DryRun,
            Some("on") => RepairMode::On,
            Some(o) => return Err(bad(format!("[repair] mode = {o:?}: off, dry-run or on"))),
        };
        let verify_mode = match mode(ver, "verify")?.as_deref() {
            None | Some("off") => VerifyMode::Off,
            Some("head") => VerifyMode::Head,
            Some("deep") => VerifyMode::Deep,
            Some(o) => return Err(bad(format!("[verify] mode = {o:?}: off, head or deep"))),
        };
        let (brake, report) = (section("brake")?, section("report")?);
        let num = |t: &toml::Table, name: &str, key: &str, default: f64| -> Result<f64> {
            match t.get(key) {
                None => Ok(default),
                Some(toml::Value::Float(f)) if (0.0..=1.0).contains(f) => Ok(*f),
                Some(toml::Value::Integer(i)) if (0..=1).contains(i) => Ok(*i as f64),
                Some(v) => Err(bad(format!("[{name}] {key} = {v}: a fraction from 0 to 1"))),
            }
        };
        for (t, name, keys) in [
            (brake, "brake", &["max-missing-fraction", "max-listing-drop"][..]),
            (report, "report", &["notify-cmd", "metrics"][..]),
        ] {
            if let Some(k) = t.keys().find(|k| !keys.contains(&k.as_str())) {
                return Err(bad(format!("[{name}] {k}: unknown (known: {})", keys.join(", "))));
            }
        }
        let s = |t: &toml::Table, k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Ok(Config {
            path: path.to_path_buf(),
            runs,
            source: flags(path, "source", src, &["shards"])?,
            source_shards: shards(src, "source")?,
            target: flags(path, "target", tgt, &["shards"])?,
            target_shards: shards(tgt, "target")?,
            diff: flags(path, "diff", section("diff")?, &[])?,
            repair_mode,
            repair: flags(path, "repair", rep, &["mode"])?,
            verify_mode,
            verify: flags(path, "verify", ver, &["mode"])?,
            max_missing_fraction: num(brake, "brake", "max-missing-fraction", 0.01)?,
            max_listing_drop: num(brake, "brake", "max-listing-drop", 0.10)?,
            notify_cmd: s(report, "notify-cmd"),
            metrics: s(report, "metrics").map(PathBuf::from),
            keep: match doc.get("keep") {
                None => 60,
                Some(toml::Value::Integer(n)) if *n >= 2 => *n as usize,
                Some(v) => return Err(bad(format!("keep = {v}: the number of runs to keep (at least 2)"))),
            },
        })
    }

    /// The settings as one JSON object (for the run's summary: what this run was asked to do).
    pub fn describe(&self) -> serde_json::Value {
        let f = |x: &Flags| {
            x.0.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_else(|| "true".into()))).collect::<BTreeMap<_, _>>()
        };
        serde_json::json!({
            "config": self.path.display().to_string(),
            "source": f(&self.source), "source_shards": self.source_shards,
            "target": f(&self.target), "target_shards": self.target_shards,
            "diff": f(&self.diff),
            "repair_mode": self.repair_mode, "repair": f(&self.repair),
            "verify_mode": self.verify_mode, "verify": f(&self.verify),
            "max_missing_fraction": self.max_missing_fraction, "max_listing_drop": self.max_listing_drop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
runs = "runs"
[source]
contact-points = "10.0.0.1:9042"
keyspace = "media"
table = "objects"
key-column = "id"
concurrency = 16
[target]
bucket = "images"
min-age = "1h"
shards = 3
[repair]
mode = "dry-run"
fallback = ["a.b", "c.d"]
overwrite = false
no-recheck = true
[brake]
max-missing-fraction = 0.02
"#;

    #[test]
    fn flags_keep_their_names_and_order() {
        let c = Config::parse(Path::new("/etc/keyrecon/recon.toml"), OK).unwrap();
        assert_eq!(c.runs, Path::new("/etc/keyrecon/runs"));
        assert_eq!(
            c.source.args(),
            [
                "--concurrency",
                "16",
                "--contact-points",
                "10.0.0.1:9042",
                "--key-column",
                "id",
                "--keyspace",
                "media",
                "--table",
                "objects"
            ]
        );
        assert_eq!((c.target_shards, c.source_shards), (3, 1));
        assert_eq!(c.repair_mode, RepairMode::DryRun);
        assert_eq!((mode_name(c.repair_mode), mode_name(VerifyMode::Deep)), ("dry-run".into(), "deep".into()));
        assert_eq!(c.repair.args(), ["--fallback", "a.b", "--fallback", "c.d", "--no-recheck"]);
        assert_eq!((c.max_missing_fraction, c.max_listing_drop), (0.02, 0.10));
        assert_eq!(c.verify_mode, VerifyMode::Off);
    }

    #[test]
    fn mistakes_are_named() {
        let p = Path::new("recon.toml");
        for (text, want) in [
            ("[source]\na=1", "`runs = \"DIR\"` is required"),
            ("runs='r'\n[source]\nkeyspace='k'", "both [source]"),
            ("runs='r'\n[source]\nk='v'\n[target]\nbucket='b'\nout='x'", "sets --out itself"),
            ("runs='r'\n[source]\nkey_column='id'\n[target]\nbucket='b'", "with - (e.g. key-column)"),
            ("runs='r'\n[source]\nk='v'\n[target]\nbucket='b'\n[repair]\nmode='yes'", "off, dry-run or on"),
            ("runs='r'\n[source]\nk='v'\n[target]\nbucket='b'\n[brake]\nmax-missing-fraction=5", "a fraction"),
            ("runs='r'\n[sorce]\nk='v'", "unknown setting \"sorce\""),
            ("runs='r'\n[source]\nk={a=1}\n[target]\nbucket='b'", "is not a flag value"),
            ("runs = ", "recon.toml"),
        ] {
            let e = Config::parse(p, text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
