//! The repair journal: an append-only file of what happened to each key, the source of truth for
//! `--resume` and for the outcome files.
//!
//! Format (`OUT/journal.jsonl`): one JSON object per line, keys as lowercase hex (keys are bytes):
//! ```text
//! {"o":"put","k":"7430..."}                                  a PUT is about to start (intent)
//! {"o":"ok","k":"7430...","g":"7430...5f31","size":10240,"table":"media.objects","md5":"...","att":1}
//! {"o":"not_found","k":"...","err":"not in media.objects, media.old"}
//! {"o":"failed","k":"...","stage":"put","att":6,"err":"503 SlowDown: ..."}
//! {"o":"exists","k":"...","size":10,"existing":10}           (and "differ" when the sizes differ)
//! ```
//! Every record is one `write(2)` of a whole line, so a `kill -9` loses at most records not yet
//! written, never half of one that was; only a machine crash can leave a torn last line, which
//! [`Journal::open`] drops (and truncates away) when resuming. Records are `fsync`ed in batches
//! ([`SYNC_EVERY`] records or [`SYNC_INTERVAL`]), not one by one: a lost tail only means those keys are
//! repaired again, and the `put` intent records make that safe (see `repair::mod`).
//!
//! Outcome files are rendered from the journal at the end of a run ([`Journal::finals`]): the last
//! final record of each key wins, so a key repaired across a kill and a resume is in ok.csv once.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FILE: &str = "journal.jsonl";
pub const SYNC_EVERY: u64 = 256;
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A key's final outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Copied (or, in a resumed run, found complete with our bytes after an interrupted PUT).
    Ok,
    /// In none of the source tables.
    NotFound,
    /// Gave up: retries exhausted or a permanent error; `error` says why.
    Failed,
    /// The target object already exists with the blob's size (not overwritten).
    Exists,
    /// The target object already exists with a different size (not overwritten).
    Differ,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [Outcome::Ok, Outcome::NotFound, Outcome::Failed, Outcome::Exists, Outcome::Differ];
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Failed => "failed",
            Outcome::Exists => "exists",
            Outcome::Differ => "differ",
        }
    }
    /// Done for good: a resumed run skips the key. `failed` keys are tried again.
    pub fn is_final(self) -> bool {
        self != Outcome::Failed
    }
}

/// What happened to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub outcome: Outcome,
    pub key: Vec<u8>,
    /// The Cassandra key, when it differs from `key` (input with an origin column).
    pub origin: Option<Vec<u8>>,
    /// Blob size in bytes (when fetched).
    pub size: Option<u64>,
    /// Size of the object already in the bucket (exists/differ).
    pub existing: Option<u64>,
    /// The table the blob came from.
    pub table: Option<String>,
    /// Hex MD5 of the blob.
    pub md5: Option<String>,
    pub content_type: Option<String>,
    /// Multipart parts (0 = single PUT).
    pub parts: u32,
    /// Requests made for this key, retries included.
    pub attempts: u32,
    /// Where it failed: key, fetch, head, put.
    pub stage: Option<String>,
    /// Why (failed: the last error; not_found: the tables tried; ok: a note).
    pub error: Option<String>,
}

impl Done {
    pub fn new(outcome: Outcome, key: &[u8], origin: Option<&[u8]>) -> Done {
        Done {
            outcome,
            key: key.to_vec(),
            origin: origin.map(<[u8]>::to_vec),
            size: None,
            existing: None,
            table: None,
            md5: None,
            content_type: None,
            parts: 0,
            attempts: 0,
            stage: None,
            error: None,
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Line {
    o: String,
    k: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    g: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    existing: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ct: Option<String>,
    #[serde(skip_serializing_if = "is_zero", default)]
    parts: u32,
    #[serde(skip_serializing_if = "is_zero", default)]
    att: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    err: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

const INTENT: &str = "put";

use crate::hex::{decode as unhex, encode as hex};

/// The journal line of a final record (with its newline): also what a queue consumer puts in the
/// fleet's outcome stream.
pub fn encode(d: &Done) -> Vec<u8> {
    let l = Line {
        o: d.outcome.name().to_string(),
        k: hex(&d.key),
        g: d.origin.as_deref().map(hex),
        size: d.size,
        existing: d.existing,
        table: d.table.clone(),
        md5: d.md5.clone(),
        ct: d.content_type.clone(),
        parts: d.parts,
        att: d.attempts,
        stage: d.stage.clone(),
        err: d.error.clone(),
    };
    let mut v = serde_json::to_vec(&l).expect("journal line serializes");
    v.push(b'\n');
    v
}

/// A final record from its journal line (without or with the newline).
pub fn decode_final(line: &[u8]) -> std::result::Result<Done, String> {
    match decode(line.strip_suffix(b"\n").unwrap_or(line))? {
        Parsed::Final(d) => Ok(d),
        Parsed::Intent(_) => Err("an intent, not a final record".into()),
    }
}

enum Parsed {
    Intent(Vec<u8>),
    Final(Done),
}

fn decode(line: &[u8]) -> std::result::Result<Parsed, String> {
    let l: Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let key = unhex(&l.k)?;
    if l.o == INTENT {
        return Ok(Parsed::Intent(key));
    }
    let outcome =
        Outcome::ALL.into_iter().find(|o| o.name() == l.o).ok_or_else(|| format!("unknown outcome {:?}", l.o))?;
    Ok(Parsed::Final(Done {
        outcome,
        key,
        origin: l.g.as_deref().map(unhex).transpose()?,
        size: l.size,
        existing: l.existing,
        table: l.table,
        md5: l.md5,
        content_type: l.ct,
        parts: l.parts,
        attempts: l.att,
        stage: l.stage,
        error: l.err,
    }))
}

/// What an earlier run left in the journal.
#[derive(Default)]
pub struct Replay {
    /// The last final record of each key, in journal order of first appearance.
    pub finals: Vec<Done>,
    index: HashMap<Vec<u8>, usize>,
    /// Keys whose PUT may have started (intent without a later final record).
    pub intents: HashSet<Vec<u8>>,
    /// A torn last line was dropped.
    pub torn_tail: bool,
}

impl Replay {
    fn add(&mut self, p: Parsed) {
        match p {
            Parsed::Intent(k) => {
                self.intents.insert(k);
            }
            Parsed::Final(d) => {
                self.intents.remove(&d.key);
                match self.index.get(&d.key) {
                    Some(&i) => self.finals[i] = d,
                    None => {
                        self.index.insert(d.key.clone(), self.finals.len());
                        self.finals.push(d);
                    }
                }
            }
        }
    }
    /// The key's final outcome, if it has one that a resumed run must not redo.
    pub fn done(&self, key: &[u8]) -> Option<&Done> {
        self.index.get(key).map(|&i| &self.finals[i]).filter(|d| d.outcome.is_final())
    }
}

/// Parses journal bytes. A last line without its newline is torn (dropped); any other bad line is an
/// error naming the line. Returns the replay and the length of the well-formed prefix.
fn replay_bytes(path: &Path, data: &[u8]) -> Result<(Replay, u64)> {
    let mut r = Replay::default();
    let mut pos = 0usize;
    let mut line_no = 0u64;
    while pos < data.len() {
        line_no += 1;
        let Some(nl) = memchr::memchr(b'\n', &data[pos..]) else {
            r.torn_tail = true;
            break;
        };
        let line = &data[pos..pos + nl];
        if !line.is_empty() {
            let p = decode(line).map_err(|msg| Error::Parse { path: path.to_path_buf(), line: line_no, msg })?;
            r.add(p);
        }
        pos += nl + 1;
    }
    Ok((r, pos as u64))
}

/// The append side. Cheap to share (`&Journal` from many tasks).
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    unsynced: u64,
    last_sync: Instant,
    /// Records of a journal-less run (`--dry-run`).
    memory: Vec<Done>,
}

impl Journal {
    /// Opens `dir/journal.jsonl`. `resume`: replay it (dropping a torn tail); otherwise it must not
    /// exist unless `force` (then it is truncated).
    pub fn open(dir: &Path, resume: bool, force: bool) -> Result<(Journal, Replay)> {
        let path = dir.join(FILE);
        let mut replay = Replay::default();
        let exists = path.exists();
        if exists && !resume && !force {
            return Err(Error::Usage(format!(
                "{} holds the journal of an earlier repair: continue it with --resume, or start over with --force (or another --out)",
                path.display()
            )));
        }
        let file = if resume && exists {
            let mut f = OpenOptions::new().read(true).write(true).open(&path).ctx(&path)?;
            let mut data = Vec::new();
            f.read_to_end(&mut data).ctx(&path)?;
            let (r, good) = replay_bytes(&path, &data)?;
            if good < data.len() as u64 {
                f.set_len(good).ctx(&path)?;
            }
            f.seek(SeekFrom::End(0)).ctx(&path)?;
            replay = r;
            f
        } else {
            OpenOptions::new().create(true).write(true).truncate(true).open(&path).ctx(&path)?
        };
        let j = Journal {
            path,
            inner: Mutex::new(Inner { file: Some(file), unsynced: 0, last_sync: Instant::now(), memory: Vec::new() }),
        };
        Ok((j, replay))
    }

    /// A journal that keeps records in memory only (`--dry-run` must not leave a journal to resume).
    pub fn in_memory() -> Journal {
        Journal {
            path: PathBuf::from("(memory)"),
            inner: Mutex::new(Inner { file: None, unsynced: 0, last_sync: Instant::now(), memory: Vec::new() }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, line: &[u8]) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let Some(f) = inner.file.as_mut() else {
            return Ok(());
        };
        f.write_all(line).ctx(&self.path)?;
        inner.unsynced += 1;
        if inner.unsynced >= SYNC_EVERY || inner.last_sync.elapsed() >= SYNC_INTERVAL {
            f.sync_data().ctx(&self.path)?;
            inner.unsynced = 0;
            inner.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Records that a PUT of `key` is about to start.
    pub fn intent(&self, key: &[u8]) -> Result<()> {
        let l = Line { o: INTENT.to_string(), k: hex(key), ..Line::default() };
        let mut v = serde_json::to_vec(&l).expect("journal line serializes");
        v.push(b'\n');
        self.append(&v)
    }

    /// Records a key's outcome.
    pub fn record(&self, d: &Done) -> Result<()> {
        {
            let mut g = self.inner.lock().unwrap();
            if g.file.is_none() {
                g.memory.push(d.clone());
                return Ok(());
            }
        }
        self.append(&encode(d))
    }

    /// Flushes to disk.
    pub fn sync(&self) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        if let Some(f) = g.file.as_mut() {
            f.sync_data().ctx(&self.path)?;
        }
        g.unsynced = 0;
        Ok(())
    }

    /// Every key's final record over all runs (the last one wins), for the outcome files.
    pub fn finals(&self) -> Result<Vec<Done>> {
        self.sync()?;
        let g = self.inner.lock().unwrap();
        if g.file.is_none() {
            let mut r = Replay::default();
            for d in &g.memory {
                r.add(Parsed::Final(d.clone()));
            }
            return Ok(r.finals);
        }
        let data = std::fs::read(&self.path).ctx(&self.path)?;
        Ok(replay_bytes(&self.path, &data)?.0.finals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(o: Outcome, k: &[u8]) -> Done {
        let mut d = Done::new(o, k, Some(b"orig\xff"));
        d.size = Some(3);
        d.error = Some("line\nbreak \"quoted\"".into());
        d
    }

    #[test]
    fn round_trip_last_final_wins_and_failed_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (j, r) = Journal::open(dir.path(), false, false).unwrap();
        assert!(r.finals.is_empty());
        j.intent(b"a\xff\n").unwrap();
        j.record(&done(Outcome::Failed, b"a\xff\n")).unwrap();
        j.intent(b"b").unwrap();
        j.record(&done(Outcome::NotFound, b"c")).unwrap();
        drop(j);
        assert!(Journal::open(dir.path(), false, false).is_err(), "an existing journal needs --resume or --force");
        let (j, r) = Journal::open(dir.path(), true, false).unwrap();
        assert!(r.done(b"a\xff\n").is_none(), "failed keys are tried again");
        assert_eq!(r.done(b"c").unwrap().outcome, Outcome::NotFound);
        assert!(r.intents.contains(&b"b"[..]));
        assert!(!r.intents.contains(&b"a\xff\n"[..]));
        j.record(&done(Outcome::Ok, b"a\xff\n")).unwrap();
        let f = j.finals().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], done(Outcome::Ok, b"a\xff\n"));
    }

    #[test]
    fn torn_last_line_is_dropped_and_truncated_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), false, false).unwrap();
        j.record(&done(Outcome::Ok, b"k1")).unwrap();
        drop(j);
        let p = dir.path().join(FILE);
        let mut data = std::fs::read(&p).unwrap();
        let good = data.len();
        data.extend_from_slice(b"{\"o\":\"ok\",\"k\":\"6b");
        std::fs::write(&p, &data).unwrap();
        let (j, r) = Journal::open(dir.path(), true, false).unwrap();
        assert!(r.torn_tail);
        assert_eq!(r.finals.len(), 1);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), good as u64);
        j.record(&done(Outcome::Ok, b"k2")).unwrap();
        assert_eq!(j.finals().unwrap().len(), 2);
        drop(j);

        let mut data = std::fs::read(&p).unwrap();
        data.splice(0..0, b"garbage\n".iter().copied());
        std::fs::write(&p, &data).unwrap();
        let e = Journal::open(dir.path(), true, false).err().unwrap().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
