//! Resumable scan state: an append-only journal in the scan's work directory.
//!
//! ```text
//! CHUNKSET/.keyrecon-scan/
//!   journal.jsonl      one JSON event per line, appended as the scan makes progress:
//!     {"plan":{"params":{..},"ranges":[[lo,hi],..]}}          first line: what this scan is
//!     {"flush":{"range":[lo,hi],"next":T,"keys":"chunk-000007.krc","rejects":"rejects-000007.krc"}}
//!                         rows of (lo,hi] up to token T+1 are in those files; continue with (T,hi]
//!     {"done":[lo,hi]}     the range is fully listed (its chunks hold all of it)
//!     {"split":{"range":[lo,hi],"into":[[lo,m],[m,hi]]}}     a failing range was cut in two
//!     {"failed":{"range":[lo,hi],"error":"..."}}              given up on (retried by --resume)
//!   chunk-NNNNNN.krc   sorted chunks of listed keys (chunk format); rejects-NNNNNN.krc: rejected keys
//! ```
//! Chunk files are complete (renamed into place) before their journal line is written, so after a
//! kill -9 the journal never names a missing file; files the journal does not name are orphans and are
//! deleted on resume. A torn last line (killed mid-write, no newline yet) is cut off on resume. Only
//! process crashes are covered: the journal is not fsynced per line.
//!
//! `next` is one token *before* the last listed row's token, so resuming re-lists the rows with that
//! token (a page may have ended between rows sharing a token); the final merge drops the duplicates.
//! Ranges are keyed by their bounds; a split replaces a range by its parts.

use super::ring::TokenRange;
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const WORK_DIR: &str = ".keyrecon-scan";
pub const JOURNAL: &str = "journal.jsonl";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// What must match for a resume to be valid (table, columns, mapping, window, schema).
    pub params: serde_json::Value,
    pub ranges: Vec<(i64, i64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Flush {
    pub range: (i64, i64),
    pub next: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects: Option<String>,
    /// Rows listed into these chunks (for summaries).
    #[serde(default)]
    pub rows: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Plan(Plan),
    Flush(Flush),
    Done((i64, i64)),
    Split { range: (i64, i64), into: Vec<(i64, i64)> },
    Failed { range: (i64, i64), error: String },
}

/// Where one range stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeState {
    /// Still to list: `(next, hi]`.
    Pending {
        next: i64,
    },
    Done,
    Failed {
        next: i64,
        error: String,
    },
}

/// The state rebuilt from a journal.
#[derive(Debug, Default)]
pub struct Replay {
    pub plan: Option<Plan>,
    pub ranges: BTreeMap<TokenRange, RangeState>,
    /// Every flush line, in journal order.
    pub flushes: Vec<Flush>,
    pub rows: u64,
}

/// The open journal. `Sync`: scan workers append through it.
pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

fn tr(r: (i64, i64)) -> TokenRange {
    TokenRange { lo: r.0, hi: r.1 }
}

impl Journal {
    /// Starts a fresh journal in `work` with `plan` as its first line (an existing one is replaced).
    pub fn create(work: &Path, plan: Plan) -> Result<Journal> {
        std::fs::create_dir_all(work).ctx(work)?;
        let path = work.join(JOURNAL);
        let file = std::fs::File::create(&path).ctx(&path)?;
        let j = Journal { path, file: Mutex::new(file) };
        j.append(&Event::Plan(plan))?;
        Ok(j)
    }

    /// Reopens the journal in `work` for appending and replays it.
    pub fn open(work: &Path) -> Result<(Journal, Replay)> {
        let path = work.join(JOURNAL);
        let text = std::fs::read_to_string(&path).ctx(&path)?;
        // Every event ends with a newline; bytes after the last one are a line torn by a kill. Cut them
        // off so the next event starts a line of its own.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let replay = replay(&path, &text[..complete])?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).ctx(&path)?;
        if complete < text.len() {
            file.set_len(complete as u64).ctx(&path)?;
        }
        Ok((Journal { path, file: Mutex::new(file) }, replay))
    }

    pub fn append(&self, e: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(e).map_err(|e| Error::json(&self.path, e))?;
        line.push(b'\n');
        // One write per event: a kill leaves at most the last line torn.
        self.file.lock().unwrap().write_all(&line).ctx(&self.path)
    }
}

fn replay(path: &Path, text: &str) -> Result<Replay> {
    let mut r = Replay::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            msg: format!("bad journal event: {e}"),
        })?;
        match e {
            Event::Plan(p) => {
                r.ranges = p.ranges.iter().map(|&x| (tr(x), RangeState::Pending { next: x.0 })).collect();
                r.plan = Some(p);
            }
            Event::Flush(s) => {
                r.rows += s.rows;
                r.ranges.insert(tr(s.range), RangeState::Pending { next: s.next });
                r.flushes.push(s);
            }
            Event::Done(x) => {
                r.ranges.insert(tr(x), RangeState::Done);
            }
            Event::Split { range, into } => {
                r.ranges.remove(&tr(range));
                for x in into {
                    r.ranges.insert(tr(x), RangeState::Pending { next: x.0 });
                }
            }
            Event::Failed { range, error } => {
                let next = match r.ranges.get(&tr(range)) {
                    Some(RangeState::Pending { next }) => *next,
                    _ => range.0,
                };
                r.ranges.insert(tr(range), RangeState::Failed { next, error });
            }
        }
    }
    if r.plan.is_none() {
        return Err(Error::Parse { path: path.to_path_buf(), line: 1, msg: "journal has no plan line".into() });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_rebuilds_ranges_and_ignores_a_torn_last_line() {
        let d = tempfile::tempdir().unwrap();
        let plan =
            Plan { params: serde_json::json!({"t":"ks.t"}), ranges: vec![(i64::MIN, 0), (0, 10), (10, i64::MAX)] };
        let j = Journal::create(d.path(), plan.clone()).unwrap();
        j.append(&Event::Flush(Flush {
            range: (i64::MIN, 0),
            next: -7,
            keys: Some("chunk-000000.krc".into()),
            rejects: None,
            rows: 3,
        }))
        .unwrap();
        j.append(&Event::Done((i64::MIN, 0))).unwrap();
        j.append(&Event::Split { range: (0, 10), into: vec![(0, 5), (5, 10)] }).unwrap();
        j.append(&Event::Failed { range: (5, 10), error: "boom".into() }).unwrap();
        j.append(&Event::Flush(Flush {
            range: (10, i64::MAX),
            next: 99,
            keys: Some("chunk-000001.krc".into()),
            rejects: Some("rejects-000001.krc".into()),
            rows: 2,
        }))
        .unwrap();
        drop(j);
        let p = d.path().join(JOURNAL);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"done\":[10,");
        std::fs::write(&p, text).unwrap();
        let (j, r) = Journal::open(d.path()).unwrap();
        assert_eq!(r.plan.unwrap(), plan);
        let keys: Vec<_> = r.flushes.iter().filter_map(|s| s.keys.clone()).collect();
        assert_eq!(keys, vec!["chunk-000000.krc", "chunk-000001.krc"]);
        assert_eq!(r.flushes[1].rejects.as_deref(), Some("rejects-000001.krc"));
        assert_eq!(r.rows, 5);
        let st: Vec<_> = r.ranges.into_iter().collect();
        assert_eq!(
            st,
            vec![
                (tr((i64::MIN, 0)), RangeState::Done),
                (tr((0, 5)), RangeState::Pending { next: 0 }),
                (tr((5, 10)), RangeState::Failed { next: 5, error: "boom".into() }),
                (tr((10, i64::MAX)), RangeState::Pending { next: 99 }),
            ]
        );
        // Appending after a torn line starts a fresh line.
        j.append(&Event::Done((0, 5))).unwrap();
        drop(j);
        let (_, r) = Journal::open(d.path()).unwrap();
        assert_eq!(r.ranges[&tr((0, 5))], RangeState::Done);
    }
}
