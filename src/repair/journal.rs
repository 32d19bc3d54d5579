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
//! Reading it back holds no key in memory beyond the sort budget ([`states`]). Every line goes through
//! the engine's external sorter (`--mem`, spilling to `--tmp`) under the sort key "journal key, then
//! line number" ([`push_seq_key`]), so a key's records come out together in journal order, keys in byte
//! order. [`KeyStates`] folds each key's records into its [`KeyState`]: the **last** final record (it
//! wins: a key repaired across a kill and a resume is in ok.csv once, with its last outcome) and whether
//! an intent follows it. `--resume` walks these states in lockstep with the sorted keys
//! (`repair::resume`); the outcome files are rendered from them (`repair::outcome`).
//!
//! A [`KeyState`] travels as the metadata of a sorted record (the states of a resume are written to a
//! chunk, [`Schema::OPAQUE`]):
//! ```text
//!  intent: u8 (1: an intent follows the last final record) | outcome: u8 (0: no final record, else
//!  Outcome::code) | the last final record's journal line, without its newline
//! ```

use crate::error::{Error, IoContext, Result};
use crate::merge::SortedCursor;
use crate::record::Schema;
use crate::sort::{push_seq_key, split_seq_key, SortConfig, SortedOutput, Sorter};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
    /// The outcome as one byte (1 + its place in [`Outcome::ALL`]; 0 stands for "none").
    pub fn code(self) -> u8 {
        Outcome::ALL.iter().position(|o| *o == self).expect("in ALL") as u8 + 1
    }
    pub fn from_code(c: u8) -> Option<Outcome> {
        Outcome::ALL.get((c as usize).checked_sub(1)?).copied()
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

/// What the journal says about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyState<'a> {
    /// The key's last final record: its outcome and its journal line.
    pub last: Option<(Outcome, &'a [u8])>,
    /// An intent follows the last final record (or there is none): a PUT may have been sent and not
    /// journaled.
    pub intent: bool,
}

impl<'a> KeyState<'a> {
    /// Appends the encoding (module doc) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.intent as u8);
        match self.last {
            None => out.push(0),
            Some((o, line)) => {
                out.push(o.code());
                out.extend_from_slice(line);
            }
        }
    }

    pub fn decode(meta: &'a [u8]) -> std::result::Result<KeyState<'a>, String> {
        let [intent @ (0 | 1), code, line @ ..] = meta else {
            return Err(format!("not a journal key state: {:?}", meta.escape_ascii().to_string()));
        };
        let last = match code {
            0 => None,
            c => Some((Outcome::from_code(*c).ok_or_else(|| format!("unknown outcome code {c}"))?, line)),
        };
        Ok(KeyState { last, intent: *intent == 1 })
    }

    /// A resumed run skips the key: its last outcome is final. (A `failed` key is tried again.)
    pub fn done(&self) -> bool {
        self.last.is_some_and(|(o, _)| o.is_final())
    }

    /// The last final record, decoded.
    pub fn record(&self) -> Result<Option<Done>> {
        let Some((_, line)) = self.last else { return Ok(None) };
        // Every line was decoded once when it was read (`states`): a failure here is ours.
        decode_final(line).map(Some).map_err(|e| Error::Internal(format!("a journal line read back: {e}")))
    }
}

/// Reads the journal at `path` (none there: no keys) through the external sorter, within `mem` bytes,
/// spilling to `tmp`. Every line is decoded, so a bad line is an error naming it, except a last line
/// without its newline: torn by a crash, dropped ([`KeyStates::torn_tail`]).
pub fn states(path: &Path, mem: usize, tmp: &Path) -> Result<KeyStates> {
    let mut sorter = Sorter::new(SortConfig::new(mem, tmp, Schema::OPAQUE));
    let mut torn_tail = false;
    let file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, e)),
    };
    if let Some(f) = file {
        let mut r = BufReader::with_capacity(1 << 16, f);
        let (mut line, mut sort_key, mut rec) = (Vec::new(), Vec::new(), Vec::new());
        let mut n = 0u64;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).ctx(path)? == 0 {
                break;
            }
            n += 1;
            if line.pop() != Some(b'\n') {
                torn_tail = true;
                break;
            }
            if line.is_empty() {
                continue;
            }
            let (key, code) =
                match decode(&line).map_err(|msg| Error::Parse { path: path.to_path_buf(), line: n, msg })? {
                    Parsed::Intent(k) => (k, 0),
                    Parsed::Final(d) => (d.key, d.outcome.code()),
                };
            sort_key.clear();
            push_seq_key(&mut sort_key, &key, n);
            rec.clear();
            rec.push(code);
            rec.extend_from_slice(&line);
            sorter.push(&sort_key, &rec)?;
        }
    }
    Ok(KeyStates {
        sorted: sorter.finish()?,
        started: false,
        pending: false,
        key: Vec::new(),
        next: Vec::new(),
        state: Vec::new(),
        torn_tail,
    })
}

/// The journal's keys in byte order, each with its [`KeyState`]: a [`SortedCursor`] whose `meta` is
/// the state's encoding (module doc), so it can be written to a chunk and read back as one.
pub struct KeyStates {
    /// Records `(seq key, outcome code | line)`, code 0 for an intent.
    sorted: SortedOutput,
    started: bool,
    /// `sorted` stands on a record not folded yet, whose key is `next`.
    pending: bool,
    key: Vec<u8>,
    next: Vec<u8>,
    state: Vec<u8>,
    torn_tail: bool,
}

impl KeyStates {
    /// The journal ended in a torn line, which was dropped.
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    /// The current key's state.
    pub fn state(&self) -> KeyState<'_> {
        KeyState::decode(&self.state).expect("advance encodes a valid state")
    }

    fn split_next(&mut self) -> Result<()> {
        split_seq_key(self.sorted.key(), &mut self.next)
            .map(|_| ())
            .ok_or_else(|| Error::Internal("a journal sort key that push_seq_key did not write".into()))
    }
}

impl SortedCursor for KeyStates {
    /// Folds the next key's records, in journal order: a final record replaces the last one and clears
    /// the intent, an intent sets it.
    fn advance(&mut self) -> Result<bool> {
        if !self.started {
            self.started = true;
            self.pending = self.sorted.advance()?;
            if self.pending {
                self.split_next()?;
            }
        }
        if !self.pending {
            return Ok(false);
        }
        std::mem::swap(&mut self.key, &mut self.next);
        self.state.clear();
        self.state.extend_from_slice(&[0, 0]);
        let mut intent;
        loop {
            match self.sorted.meta().split_first() {
                Some((0, _)) => intent = true,
                Some((&code, line)) => {
                    intent = false;
                    self.state.truncate(1);
                    self.state.push(code);
                    self.state.extend_from_slice(line);
                }
                None => return Err(Error::Internal("a journal record without its outcome code".into())),
            }
            self.pending = self.sorted.advance()?;
            if !self.pending {
                break;
            }
            self.split_next()?;
            if self.next != self.key {
                break;
            }
        }
        self.state[0] = intent as u8;
        Ok(true)
    }
    fn key(&self) -> &[u8] {
        &self.key
    }
    fn meta(&self) -> &[u8] {
        &self.state
    }
}

/// Length of the whole lines at the start of `f`: what follows the last newline is a torn line.
fn whole_lines_len(f: &mut File, path: &Path) -> Result<u64> {
    let mut end = f.metadata().ctx(path)?.len();
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let block = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start)).ctx(path)?;
        f.read_exact(block).ctx(path)?;
        if let Some(i) = memchr::memrchr(b'\n', block) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The append side. Cheap to share (`&Journal` from many tasks).
pub struct Journal {
    path: PathBuf,
    torn_tail: bool,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    unsynced: u64,
    last_sync: Instant,
}

impl Journal {
    /// Opens `dir/journal.jsonl`. `resume`: append to it, after dropping (truncating away) a torn last
    /// line; otherwise it must not exist unless `force` (then it is truncated).
    pub fn open(dir: &Path, resume: bool, force: bool) -> Result<Journal> {
        let path = dir.join(FILE);
        let exists = path.exists();
        if exists && !resume && !force {
            return Err(Error::Usage(format!(
                "{} holds the journal of an earlier repair: continue it with --resume, or start over with --force (or another --out)",
                path.display()
            )));
        }
        if !(resume && exists) {
            return Journal::create(&path);
        }
        let mut f = OpenOptions::new().read(true).write(true).open(&path).ctx(&path)?;
        let good = whole_lines_len(&mut f, &path)?;
        let torn_tail = good < f.metadata().ctx(&path)?.len();
        if torn_tail {
            f.set_len(good).ctx(&path)?;
        }
        f.seek(SeekFrom::End(0)).ctx(&path)?;
        Ok(Journal::with_file(path, f, torn_tail))
    }

    /// A new, empty journal at `path` (truncated if it exists): a dry run's, in its scratch directory,
    /// so that it leaves nothing to resume.
    pub fn create(path: &Path) -> Result<Journal> {
        let f = OpenOptions::new().create(true).write(true).truncate(true).open(path).ctx(path)?;
        Ok(Journal::with_file(path.to_path_buf(), f, false))
    }

    fn with_file(path: PathBuf, file: File, torn_tail: bool) -> Journal {
        Journal { path, torn_tail, inner: Mutex::new(Inner { file, unsynced: 0, last_sync: Instant::now() }) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opening for a resume dropped a torn last line.
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    fn append(&self, line: &[u8]) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        inner.file.write_all(line).ctx(&self.path)?;
        inner.unsynced += 1;
        if inner.unsynced >= SYNC_EVERY || inner.last_sync.elapsed() >= SYNC_INTERVAL {
            inner.file.sync_data().ctx(&self.path)?;
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
        self.append(&encode(d))
    }

    /// Flushes to disk.
    pub fn sync(&self) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.file.sync_data().ctx(&self.path)?;
        g.unsynced = 0;
        Ok(())
    }

    /// Every key the journal holds, with its state ([`states`]), after a [`sync`](Self::sync).
    pub fn states(&self, mem: usize, tmp: &Path) -> Result<KeyStates> {
        self.sync()?;
        states(&self.path, mem, tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn done(o: Outcome, k: &[u8]) -> Done {
        let mut d = Done::new(o, k, Some(b"orig\xff"));
        d.size = Some(3);
        d.error = Some("line\nbreak \"quoted\"".into());
        d
    }

    fn fin(o: Outcome, k: &[u8]) -> Vec<u8> {
        encode(&done(o, k))
    }

    fn intent(k: &[u8]) -> Vec<u8> {
        format!("{{\"o\":\"put\",\"k\":\"{}\"}}\n", hex(k)).into_bytes()
    }

    /// (key, last final outcome, intent) of every key, and the torn-tail flag, of a journal file.
    type Got = (Vec<(Vec<u8>, Option<Outcome>, bool)>, bool);

    fn read_states(path: &Path, mem: usize) -> Got {
        let mut st = states(path, mem, path.parent().unwrap()).unwrap();
        let mut v = Vec::new();
        while st.advance().unwrap() {
            let s = st.state();
            if let Some(d) = s.record().unwrap() {
                assert_eq!((d.key.as_slice(), Some(d.outcome)), (st.key(), s.last.map(|l| l.0)));
            }
            assert_eq!(KeyState::decode(st.meta()).unwrap(), s, "meta is the state's encoding");
            v.push((st.key().to_vec(), s.last.map(|l| l.0), s.intent));
        }
        (v, st.torn_tail())
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn states_last_final_wins_intents_and_torn_tail() {
        use Outcome::*;
        let k = |s: &[u8]| s.to_vec();
        let cases: Vec<(&str, Vec<Vec<u8>>, &[u8], Vec<(Vec<u8>, Option<Outcome>, bool)>)> = vec![
            ("empty", vec![], b"", vec![]),
            ("one final", vec![fin(Ok, b"a")], b"", vec![(k(b"a"), Some(Ok), false)]),
            (
                "failed then ok: the resume's",
                vec![fin(Failed, b"a"), fin(Ok, b"a")],
                b"",
                vec![(k(b"a"), Some(Ok), false)],
            ),
            (
                "the last wins, not the best",
                vec![fin(Ok, b"a"), fin(Failed, b"a")],
                b"",
                vec![(k(b"a"), Some(Failed), false)],
            ),
            ("intent alone", vec![intent(b"a")], b"", vec![(k(b"a"), None, true)]),
            ("intent then final", vec![intent(b"a"), fin(Ok, b"a")], b"", vec![(k(b"a"), Some(Ok), false)]),
            (
                "failed, then a resume's intent and a kill",
                vec![intent(b"a"), fin(Failed, b"a"), intent(b"a")],
                b"",
                vec![(k(b"a"), Some(Failed), true)],
            ),
            (
                "keys in byte order, whatever the journal order; NUL and prefixes",
                vec![
                    fin(NotFound, b"b"),
                    fin(Ok, b"a\x00"),
                    intent(b"\xff"),
                    fin(Exists, b"a"),
                    fin(Differ, b"a\x00\x00"),
                ],
                b"",
                vec![
                    (k(b"a"), Some(Exists), false),
                    (k(b"a\x00"), Some(Ok), false),
                    (k(b"a\x00\x00"), Some(Differ), false),
                    (k(b"b"), Some(NotFound), false),
                    (k(b"\xff"), None, true),
                ],
            ),
            (
                "blank lines are skipped",
                vec![b"\n".to_vec(), fin(Ok, b"a"), b"\n".to_vec()],
                b"",
                vec![(k(b"a"), Some(Ok), false)],
            ),
            (
                "a torn last line is dropped",
                vec![fin(Failed, b"a")],
                b"{\"o\":\"ok\",\"k\":\"61\"",
                vec![(k(b"a"), Some(Failed), false)],
            ),
            ("only a torn line", vec![], b"{\"o\":\"put\"", vec![]),
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        for (name, lines, torn, want) in cases {
            let mut data = lines.concat();
            data.extend_from_slice(torn);
            std::fs::write(&p, &data).unwrap();
            for mem in [4096, 1 << 20] {
                assert_eq!(read_states(&p, mem), (want.clone(), !torn.is_empty()), "{name} (mem {mem})");
            }
        }
        let none = read_states(&dir.path().join("absent.jsonl"), 1 << 20);
        assert_eq!(none, (vec![], false), "no journal: no keys");
    }

    /// Random journals against the rule in memory (what the old in-memory replay did), with budgets small
    /// enough to spill.
    #[test]
    fn states_equal_an_in_memory_replay() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        for round in 0..8 {
            let mut data = Vec::new();
            let mut model: BTreeMap<Vec<u8>, (Option<Done>, bool)> = BTreeMap::new();
            for _ in 0..rng.gen_range(0..3000) {
                let key: Vec<u8> =
                    (0..rng.gen_range(1..4)).map(|_| [0u8, 1, b'a', 0xff][rng.gen_range(0..4)]).collect();
                let e = model.entry(key.clone()).or_default();
                if rng.gen_bool(0.3) {
                    data.extend_from_slice(&intent(&key));
                    e.1 = true;
                } else {
                    let d = done(Outcome::ALL[rng.gen_range(0..5)], &key);
                    data.extend_from_slice(&encode(&d));
                    *e = (Some(d), false);
                }
            }
            std::fs::write(&p, &data).unwrap();
            for mem in [4096, 1 << 14, 1 << 24] {
                let mut st = states(&p, mem, dir.path()).unwrap();
                let mut got = BTreeMap::new();
                while st.advance().unwrap() {
                    got.insert(st.key().to_vec(), (st.state().record().unwrap(), st.state().intent));
                }
                assert_eq!(got, model, "round {round} mem {mem}");
            }
        }
        // The sorter's spills are gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn open_refuses_an_earlier_journal_without_resume_or_force_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), false, false).unwrap();
        j.intent(b"a\xff\n").unwrap();
        j.record(&done(Outcome::Failed, b"a\xff\n")).unwrap();
        drop(j);
        let e = Journal::open(dir.path(), false, false).err().unwrap().to_string();
        assert!(e.contains("--resume") && e.contains("--force"), "{e}");

        let p = dir.path().join(FILE);
        let good = std::fs::metadata(&p).unwrap().len();
        let mut data = std::fs::read(&p).unwrap();
        data.extend_from_slice(b"{\"o\":\"ok\",\"k\":\"6b");
        std::fs::write(&p, &data).unwrap();
        let j = Journal::open(dir.path(), true, false).unwrap();
        assert!(j.torn_tail());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), good, "the torn line is truncated away");
        j.record(&done(Outcome::Ok, b"a\xff\n")).unwrap();
        let mut st = j.states(1 << 20, dir.path()).unwrap();
        assert!(st.advance().unwrap());
        assert_eq!(st.state().record().unwrap(), Some(done(Outcome::Ok, b"a\xff\n")));
        assert!(!st.advance().unwrap());
        drop((st, j));

        let j = Journal::open(dir.path(), false, true).unwrap();
        assert!(!j.torn_tail());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "--force starts over");
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        let mut data = fin(Outcome::Ok, b"k1");
        data.extend_from_slice(b"garbage\n");
        data.extend_from_slice(&fin(Outcome::Ok, b"k2"));
        std::fs::write(&p, &data).unwrap();
        let e = states(&p, 1 << 20, dir.path()).err().unwrap().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn key_state_encoding() {
        for st in [
            KeyState { last: None, intent: false },
            KeyState { last: None, intent: true },
            KeyState { last: Some((Outcome::Differ, b"{}")), intent: true },
            KeyState { last: Some((Outcome::Failed, b"")), intent: false },
        ] {
            let mut b = Vec::new();
            st.encode(&mut b);
            assert_eq!(KeyState::decode(&b).unwrap(), st);
        }
        for bad in [&b""[..], b"\x00", b"\x02\x00", b"\x00\x09"] {
            assert!(KeyState::decode(bad).is_err(), "{bad:?}");
        }
        assert!(KeyState { last: Some((Outcome::Ok, b"")), intent: false }.done());
        assert!(!KeyState { last: Some((Outcome::Failed, b"")), intent: false }.done(), "failed keys are tried again");
        assert!(!KeyState { last: None, intent: true }.done());
    }
}
