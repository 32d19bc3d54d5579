//! keyrecon-list-s3's checkpoint: `OUT/checkpoint.json` lists the key ranges of an unfinished
//! chunk-set listing, so `--resume` lists only what is left.
//!
//! ```text
//! checkpoint.json  {"format":"keyrecon-list-s3-checkpoint",
//!                   "settings":{"bucket":..,"prefix":..,"start_after":..,"end_before":..,
//!                               "min_mtime_us":..,"max_mtime_us":..,"shard":{"index":2,"count":3}},
//!                   "ranges":[{"after_hex":null|"6b..","end":"open"|"incl:HEX"|"excl:HEX","done":bool}]}
//! ```
//! It is rewritten (temporary file + rename) on every change of the range set: a split, a finished
//! range. On `--resume` the chunks already in `OUT` are verified once ([`ChunkSetWriter::resume`]) and
//! each unfinished range continues after the last key of the chunks it holds. The settings must equal
//! the resumed run's, or `--resume` refuses. An age window (`--max-age`, `--min-age`) is compared as
//! the flags were given (`filters`), and the resumed run keeps the first run's absolute window
//! (`min_mtime_us`, `max_mtime_us`), so that both parts of the listing hold the same objects however
//! late the resume comes. (Checkpoints written before `filters` existed compare the absolute window.)

use super::ranges::{self, End};
use super::SCHEMA;
use crate::chunk::listing::Filters;
use crate::chunk::{ChunkSetWriter, Shard};
use crate::error::{Error, IoContext, Result};
use crate::hex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const CHECKPOINT: &str = "checkpoint.json";
pub const SUMMARY: &str = "summary.json";
const FORMAT: &str = "keyrecon-list-s3-checkpoint";

/// What a listing was asked for; a resumed run must ask for the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSettings {
    pub bucket: String,
    pub prefix: String,
    pub start_after: Option<String>,
    pub end_before: Option<String>,
    pub min_mtime_us: Option<i64>,
    pub max_mtime_us: Option<i64>,
    /// `--shard I/N`; absent (and so absent in checkpoints written before sharding) for a whole listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The filter flags as given; absent in checkpoints written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

impl CheckpointSettings {
    /// Does a resumed run asking for `now` continue this listing? With the flags recorded, the absolute
    /// window is not compared (it moves with the clock); without them it is.
    fn continued_by(&self, now: &CheckpointSettings) -> bool {
        match self.filters {
            Some(_) => {
                *self
                    == CheckpointSettings {
                        min_mtime_us: self.min_mtime_us,
                        max_mtime_us: self.max_mtime_us,
                        ..now.clone()
                    }
            }
            None => *self == CheckpointSettings { filters: None, ..now.clone() },
        }
    }

    /// What differs, one `name: checkpoint -> this run` each (filters by flag; the absolute window only
    /// when the checkpoint has no flags to compare).
    fn differences(&self, now: &CheckpointSettings) -> Vec<String> {
        let flat = |s: &CheckpointSettings| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            let mut fields: Vec<(String, serde_json::Value)> = Vec::new();
            if let Some(m) = v.as_object_mut() {
                // Compared as `continued_by` compares: by flag when the checkpoint has them, else by window.
                match m.remove("filters") {
                    Some(serde_json::Value::Object(f)) if self.filters.is_some() => fields.extend(f),
                    _ => {}
                }
                if self.filters.is_some() {
                    m.remove("min_mtime_us");
                    m.remove("max_mtime_us");
                }
                fields.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            fields
        };
        let (was, asked) = (flat(self), flat(now));
        let get = |f: &[(String, serde_json::Value)], k: &str| {
            f.iter().find(|(n, _)| n == k).map_or(serde_json::Value::Null, |(_, v)| v.clone())
        };
        let mut names: Vec<&String> = was.iter().chain(&asked).map(|(k, _)| k).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|k| get(&was, k) != get(&asked, k))
            .map(|k| format!("{k}: {} -> {}", get(&was, k), get(&asked, k)))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointRange {
    after_hex: Option<String>,
    end: String,
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: String,
    settings: CheckpointSettings,
    ranges: Vec<CheckpointRange>,
}

fn end_to_str(e: &End) -> String {
    match e {
        End::Open => "open".into(),
        End::Incl(k) => format!("incl:{}", hex::encode(k)),
        End::Excl(k) => format!("excl:{}", hex::encode(k)),
    }
}

fn end_from_str(s: &str) -> Option<End> {
    if s == "open" {
        return Some(End::Open);
    }
    let (kind, h) = s.split_once(':')?;
    let k = hex::decode(h).ok()?;
    match kind {
        "incl" => Some(End::Incl(k)),
        "excl" => Some(End::Excl(k)),
        _ => None,
    }
}

/// The range set as of one change, serialized under the scheduler's mutex and written outside it.
pub struct Snapshot {
    version: u64,
    body: Vec<u8>,
}

impl Snapshot {
    /// The checkpoint of `ranges`: each (listed after, end, done).
    pub(super) fn of<'a>(
        settings: &CheckpointSettings,
        ranges: impl Iterator<Item = (Option<&'a [u8]>, &'a End, bool)>,
        version: u64,
    ) -> Result<Snapshot> {
        let cp = Checkpoint {
            format: FORMAT.into(),
            settings: settings.clone(),
            ranges: ranges
                .map(|(after, end, done)| CheckpointRange {
                    after_hex: after.map(hex::encode),
                    end: end_to_str(end),
                    done,
                })
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&cp).map_err(|e| Error::json(CHECKPOINT, e))?;
        Ok(Snapshot { version, body })
    }
}

/// `checkpoint.json` and the version of the range set it holds. File I/O happens under this mutex, not the
/// scheduler's, so streams keep taking their pages while a checkpoint is written; a snapshot older than
/// the one on disk is dropped, so the file only moves forward.
pub struct CheckpointFile {
    path: PathBuf,
    written: Mutex<u64>,
}

impl CheckpointFile {
    pub fn new(path: PathBuf) -> CheckpointFile {
        CheckpointFile { path, written: Mutex::new(0) }
    }

    /// Writes `snap` (temporary file + rename) unless a newer one is already written. Called by the task
    /// that changed the range set before that task goes on: a split is on disk before the new range's
    /// stream writes anything, which `--resume` relies on (a chunk must lie inside a checkpointed range
    /// that starts at or below its first key, or keys between the parent's last chunk and the split
    /// point would be skipped).
    pub fn persist(&self, snap: Snapshot) -> Result<()> {
        let mut written = self.written.lock().unwrap();
        if *written >= snap.version {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, &snap.body).ctx(&tmp)?;
        std::fs::rename(&tmp, &self.path).ctx(&self.path)?;
        *written = snap.version;
        Ok(())
    }
}

/// Checks a fresh run may use `dir`, clearing what `force` allows, and opens the chunk-set writer.
pub fn prepare_fresh(dir: &Path, force: bool) -> Result<ChunkSetWriter> {
    let mut leftovers = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.ctx(dir)?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name == CHECKPOINT || name == SUMMARY {
                leftovers.push(p);
            }
        }
    }
    if leftovers.iter().any(|p| p.ends_with(CHECKPOINT)) && !force {
        return Err(Error::Usage(format!(
            "{}: holds an unfinished listing (checkpoint.json); pass --resume to continue it or --force to start over",
            dir.display()
        )));
    }
    let set = ChunkSetWriter::create(dir, SCHEMA, force)?;
    if force {
        for p in leftovers {
            std::fs::remove_file(&p).ctx(&p)?;
        }
    }
    Ok(set)
}

/// A range of an interrupted run: the keys after `after` up to `end`, whether it was done, and the last
/// key the chunks in the directory hold of it (where its stream continues).
pub(super) struct SavedRange {
    pub(super) after: Option<Vec<u8>>,
    pub(super) end: End,
    pub(super) done: bool,
    pub(super) pos: Option<Vec<u8>>,
}

/// Rebuilds the ranges of an interrupted run: done ranges stay done, the others continue after the last
/// key of the chunks they hold. Returns the reopened chunk-set writer, the ranges, and the settings to
/// go on with (the checkpoint's, whose window is the first run's).
pub(super) fn load_resume(
    dir: &Path,
    settings: &CheckpointSettings,
) -> Result<(ChunkSetWriter, Vec<SavedRange>, CheckpointSettings)> {
    let cp_path = dir.join(CHECKPOINT);
    let body = std::fs::read(&cp_path).ctx(&cp_path).map_err(|e| {
        Error::context(format!("--resume: nothing to resume in {} (no {CHECKPOINT})", dir.display()), e)
    })?;
    let cp: Checkpoint = serde_json::from_slice(&body).map_err(|e| Error::json(&cp_path, e))?;
    if cp.settings.shard != settings.shard {
        let show = |s: Option<Shard>| s.map_or("the whole bucket (no --shard)".to_string(), |s| format!("shard {s}"));
        return Err(Error::Usage(format!(
            "--resume: {} was written for {}, this run asks for {}; resume it with the same --shard (or list \
             this shard into another --out)",
            cp_path.display(),
            show(cp.settings.shard),
            show(settings.shard)
        )));
    }
    if !cp.settings.continued_by(settings) {
        return Err(Error::Usage(format!(
            "--resume: {} was written for another listing ({}); resume it with the same flags, or list into \
             another --out",
            cp_path.display(),
            cp.settings.differences(settings).join(", ")
        )));
    }
    let bad = |msg: String| Error::Manifest { path: cp_path.clone(), msg };
    let mut slots = Vec::new();
    for r in &cp.ranges {
        let after = match &r.after_hex {
            Some(h) => Some(hex::decode(h).map_err(bad)?),
            None => None,
        };
        let end = end_from_str(&r.end).ok_or_else(|| bad(format!("bad range end {:?}", r.end)))?;
        slots.push(SavedRange { after, end, done: r.done, pos: None });
    }
    let (set, _) = ChunkSetWriter::resume(dir, SCHEMA)?;
    for c in set.chunks() {
        let p = dir.join(&c.file);
        let (first, last) = (c.first_key()?, c.last_key()?);
        let s = slots.iter_mut().find(|s| ranges::contains(s.after.as_deref(), &s.end, &first)).ok_or_else(|| {
            Error::Manifest { path: p.clone(), msg: "holds keys outside every checkpointed range".into() }
        })?;
        if !ranges::contains(s.after.as_deref(), &s.end, &last) {
            return Err(Error::Manifest { path: p, msg: "spans more than one checkpointed range".into() });
        }
        if s.pos.as_ref().is_none_or(|pos| last > *pos) {
            s.pos = Some(last);
        }
    }
    Ok((set, slots, cp.settings))
}
