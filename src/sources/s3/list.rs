//! The parallel, range-partitioned lister: `--parallel N` ListObjectsV2 streams over disjoint key ranges
//! (see [`super::ranges`]), with work stealing, retries, a shared slow-down, a checkpoint for `--resume`,
//! and output to a chunk set or to stdout.
//!
//! ```text
//!  Sched (mutex): ranges [(after, end, pos, state)]      workers (tokio tasks, N of them)
//!   pending ──────────────────────────────────────────►  take a pending range, or split the widest
//!   split(widest active) = (after, Incl(mid)) + (mid, end)   active one (work stealing) and take the
//!                                                        upper half; list it page by page:
//!   pos := last key of each page, under the mutex  ◄────  keys admitted by `end` (read under the mutex)
//!   checkpoint.json rewritten on every split/finish        are written, a key past `end` stops the stream
//!   (serialized under the mutex, written outside it)
//! ```
//! Invariants: a key is written only by the range that holds it, and only after `pos` (under the mutex)
//! covers it, and a split point is always above `pos`; so a split never takes a key already written,
//! and never leaves one out. A page that fails after all retries is counted, reported, leaves its range
//! unfinished (exit code 2) and is never skipped.
//!
//! Chunk-set output: each stream writes its keys into chunks of the chunk set (sorted, at most
//! `chunk_keys` records each) opened from one shared [`ChunkSetWriter`]. Ranges are disjoint, so the set
//! is the concatenation of the chunks in key order: when every range is done the writer lists them in
//! the manifest by first key ([`ChunkSetWriter::finish_key_ordered`], overlap checked), from the
//! counts, checksums and key spans their writers computed. Nothing is renamed or read back, so memory
//! stays flat in the key count. `checkpoint.json` lists the ranges; on `--resume`, the finished chunks
//! are verified once and a range continues after the last key of the chunks it holds, so only
//! unfinished work is listed again.

use super::listxml::{Page, PageInfo};
use super::ranges::{self, End};
use super::{hex, Cutoff};
use crate::chunk::set::{unhex, Producer};
use crate::chunk::{ChunkSetWriter, ChunkWriter};
use crate::limit::Backoff;
use crate::record::{put_bytes, put_varint, Schema};
use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::EncodingType;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fields of the records the lister writes.
pub const SCHEMA: Schema = Schema(Schema::SIZE | Schema::ETAG | Schema::MTIME | Schema::CLASS);
pub const CHECKPOINT: &str = "checkpoint.json";
pub const SUMMARY: &str = "summary.json";
const TOOL: &str = "keyrecon-list-s3";
/// Keys asked for in the first page of a range split off another: it may well be empty (a split point
/// in a gap of the key space), and then a full page would be server work thrown away.
const PROBE_KEYS: i32 = 100;
/// Write buffer per open chunk: one chunk is open per stream, so memory is `--parallel` x this.
const CHUNK_WRITE_BUF: usize = 256 << 10;
/// log2 of the number of pages a range must have left (by its last page's width) to be split.
const MIN_SPLIT_PAGES_LOG2: f64 = 3.0;

/// Retries of one page: up to `max_retries` more attempts, sleeping a random time in
/// `[0, min(cap, base * 2^attempt))` before each ("full jitter").
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The sleeps between attempts: full jitter, doublings stop at 2^20 (the cap is reached long before).
    pub fn backoff(&self) -> Backoff {
        Backoff { base: self.base, cap: self.cap, max_doublings: 20, jitter: [0.0, 1.0] }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 10, base: Duration::from_millis(100), cap: Duration::from_secs(20) }
    }
}

#[derive(Clone, Debug)]
pub struct ListConfig {
    pub bucket: String,
    pub prefix: String,
    pub start_after: Option<String>,
    pub end_before: Option<String>,
    pub parallel: usize,
    /// MaxKeys per request (S3 caps it at 1000).
    pub page_size: i32,
    pub cutoff: Cutoff,
    pub retry: RetryPolicy,
    /// Records per part file (resume granularity).
    pub chunk_keys: u64,
    pub quiet: bool,
}

/// Where listed records go.
#[derive(Clone, Debug)]
pub enum Sink {
    /// A chunk set directory. `force` replaces an existing set; `resume` continues an unfinished one.
    ChunkSet { dir: PathBuf, force: bool, resume: bool },
    /// Plain keys on stdout, `\n`- or NUL-terminated, in listing order (sorted with one stream; with
    /// several, each stream's keys are sorted but streams interleave).
    Lines { terminator: u8 },
}

/// What a listing did; written to `summary.json` and into the manifest's `info`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListSummary {
    pub bucket: String,
    pub prefix: String,
    pub complete: bool,
    pub resumed: bool,
    pub keys_listed: u64,
    pub keys_written: u64,
    pub keys_filtered: u64,
    pub bytes: u64,
    pub pages: u64,
    /// Keys the server returned, including those past a range's end that the range's stream threw
    /// away (they belong to the next range): `keys_returned - keys_listed` is server work wasted on
    /// splitting.
    pub keys_returned: u64,
    pub retries: u64,
    pub slowdowns: u64,
    pub errors: u64,
    pub error_messages: Vec<String>,
    pub parallel: usize,
    pub ranges: u64,
    pub ranges_done: u64,
    pub ranges_failed: u64,
    pub splits: u64,
    pub chunks: u64,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    pub peak_rss_bytes: u64,
}

impl ListSummary {
    /// The one-paragraph summary printed on stderr.
    pub fn paragraph(&self) -> String {
        let mut s = format!(
            "listed {} keys ({} written, {} outside the age window, {} bytes) from s3://{}/{} in {:.2}s ({:.0} keys/s) with {} streams over {} ranges ({} splits): {} pages, {} retries, {} slow-downs, {} errors; peak RSS {} MiB.",
            self.keys_listed, self.keys_written, self.keys_filtered, self.bytes, self.bucket, self.prefix, self.elapsed_s,
            self.keys_per_s, self.parallel, self.ranges, self.splits, self.pages, self.retries, self.slowdowns, self.errors,
            self.peak_rss_bytes >> 20
        );
        if !self.complete {
            s.push_str(&format!(
                " INCOMPLETE: {} of {} ranges not finished; rerun with --resume to continue them.",
                self.ranges - self.ranges_done,
                self.ranges
            ));
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------------
// Ranges and the scheduler

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Pending,
    Active,
    Done,
    Failed,
}

#[derive(Clone, Debug)]
struct Slot {
    after: Option<Vec<u8>>,
    end: End,
    /// Last key listed (and written, if inside the age window) by this range's stream.
    pos: Option<Vec<u8>>,
    state: St,
    /// log2 width of the last page (see [`ranges::width`]); a range narrower than 8 pages is not split.
    page_width: f64,
    /// The range this one was split from, and keys this one listed: an empty split-off range means the
    /// parent's split point was a bad guess (e.g. the empty key space above the last key).
    parent: Option<usize>,
    listed: u64,
    /// log2 of extra pages required before this range is split again (+1 per empty split-off range).
    split_penalty: f64,
}

impl Slot {
    fn new(after: Option<Vec<u8>>, end: End) -> Slot {
        Slot {
            after,
            end,
            pos: None,
            state: St::Pending,
            page_width: f64::NEG_INFINITY,
            parent: None,
            listed: 0,
            split_penalty: 0.0,
        }
    }
    fn lo<'a>(&'a self, prefix: &'a [u8]) -> &'a [u8] {
        self.pos.as_deref().or(self.after.as_deref()).map_or(prefix, |k| k.max(prefix))
    }
    fn contains(&self, key: &[u8]) -> bool {
        self.after.as_deref().is_none_or(|a| key > a) && self.end.admits(key)
    }
}

enum Next {
    Work(usize),
    Wait,
    Finished,
}

struct Sched {
    slots: Vec<Slot>,
    /// Ranges may be split blindly (before their first page) until there are this many.
    initial_streams: usize,
    pending: VecDeque<usize>,
    active: usize,
    splits: u64,
    /// Whether the range set is checkpointed (chunk-set output), and how many times it changed.
    checkpointing: bool,
    version: u64,
    settings: CheckpointSettings,
}

/// The range set as of one change, serialized under the scheduler's mutex and written outside it.
struct Snapshot {
    version: u64,
    body: Vec<u8>,
}

/// `checkpoint.json` and the version of the range set it holds. File I/O happens under this mutex, not the
/// scheduler's, so streams keep taking their pages while a checkpoint is written; a snapshot older than
/// the one on disk is dropped, so the file only moves forward.
struct CheckpointFile {
    path: PathBuf,
    written: Mutex<u64>,
}

impl CheckpointFile {
    /// Writes `snap` (temporary file + rename) unless a newer one is already written. Called by the task
    /// that changed the range set before that task goes on: a split is on disk before the new range's
    /// stream writes anything, which `--resume` relies on (a chunk must lie inside a checkpointed range
    /// that starts at or below its first key, or keys between the parent's last chunk and the split
    /// point would be skipped).
    fn persist(&self, snap: Snapshot) -> Result<()> {
        let mut written = self.written.lock().unwrap();
        if *written >= snap.version {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, &snap.body).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming {} into place", tmp.display()))?;
        *written = snap.version;
        Ok(())
    }
}

impl Sched {
    /// The next range to list, and the snapshot to persist when the range set changed (a split).
    fn next_work(&mut self, prefix: &[u8]) -> Result<(Next, Option<Snapshot>)> {
        if let Some(i) = self.pending.pop_front() {
            self.slots[i].state = St::Active;
            self.active += 1;
            return Ok((Next::Work(i), None));
        }
        if self.active == 0 {
            return Ok((Next::Finished, None));
        }
        // Work stealing: split the widest active range that is more than two pages wide.
        let mut best: Option<(f64, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if s.state != St::Active {
                continue;
            }
            // Only a stream that has returned a page is split (its page width says how much is left;
            // splitting fresh ranges would let idle workers split each other's empty ranges forever),
            // except for the first range, before any page, to start all streams at once.
            let fresh = s.pos.is_none() && self.slots.len() < self.initial_streams;
            if s.pos.is_none() && !fresh {
                continue;
            }
            let w = ranges::width(s.lo(prefix), &s.end, prefix);
            // Each split wastes about one page (the old stream's page that crosses the split point), so
            // only ranges with an estimated 8+ pages left are worth it.
            if w == f64::NEG_INFINITY || (s.pos.is_some() && w <= s.page_width + MIN_SPLIT_PAGES_LOG2 + s.split_penalty)
            {
                continue;
            }
            if best.is_none_or(|(bw, _)| w > bw) {
                best = Some((w, i));
            }
        }
        let Some((_, i)) = best else {
            return Ok((Next::Wait, None));
        };
        let s = &self.slots[i];
        let Some(mid) = ranges::split_point(s.lo(prefix), &s.end, prefix) else {
            return Ok((Next::Wait, None));
        };
        let upper = std::mem::replace(&mut self.slots[i].end, End::Incl(mid.clone()));
        let mut new = Slot::new(Some(mid), upper);
        new.state = St::Active;
        new.parent = Some(i);
        self.slots.push(new);
        self.active += 1;
        self.splits += 1;
        Ok((Next::Work(self.slots.len() - 1), self.snapshot()?))
    }

    fn finish(&mut self, i: usize, state: St) -> Result<Option<Snapshot>> {
        self.slots[i].state = state;
        if state == St::Done && self.slots[i].listed == 0 {
            if let Some(p) = self.slots[i].parent {
                self.slots[p].split_penalty += 1.0;
            }
        }
        self.active -= 1;
        self.snapshot()
    }

    /// Serializes the range set after a change, to be written by [`CheckpointFile::persist`] once the
    /// mutex is released. `None` when nothing is checkpointed (lines output).
    fn snapshot(&mut self) -> Result<Option<Snapshot>> {
        if !self.checkpointing {
            return Ok(None);
        }
        self.version += 1;
        let cp = Checkpoint {
            format: "keyrecon-list-s3-checkpoint".into(),
            settings: self.settings.clone(),
            ranges: self
                .slots
                .iter()
                .map(|s| CheckpointRange {
                    after_hex: s.after.as_deref().map(hex),
                    end: end_to_str(&s.end),
                    done: s.state == St::Done,
                })
                .collect(),
        };
        Ok(Some(Snapshot { version: self.version, body: serde_json::to_vec_pretty(&cp)? }))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CheckpointSettings {
    bucket: String,
    prefix: String,
    start_after: Option<String>,
    end_before: Option<String>,
    min_mtime_us: Option<i64>,
    max_mtime_us: Option<i64>,
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
        End::Incl(k) => format!("incl:{}", hex(k)),
        End::Excl(k) => format!("excl:{}", hex(k)),
    }
}

fn end_from_str(s: &str) -> Option<End> {
    if s == "open" {
        return Some(End::Open);
    }
    let (kind, h) = s.split_once(':')?;
    let k = unhex(h)?;
    match kind {
        "incl" => Some(End::Incl(k)),
        "excl" => Some(End::Excl(k)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------
// Shared state of a run

#[derive(Default)]
struct Counters {
    listed: AtomicU64,
    written: AtomicU64,
    filtered: AtomicU64,
    bytes: AtomicU64,
    pages: AtomicU64,
    returned: AtomicU64,
    retries: AtomicU64,
    slowdowns: AtomicU64,
    errors: AtomicU64,
    ranges_done: AtomicU64,
}

/// A global pause shared by all streams: each `503 SlowDown` doubles a penalty (50 ms .. 10 s) and
/// pauses every stream for about that long; each success halves it. Sustained throttling thus lowers
/// the request rate of the whole lister, while an isolated 503 costs little.
struct Throttle {
    state: Mutex<(Instant, Duration)>,
}

impl Throttle {
    async fn wait(&self) {
        let until = self.state.lock().unwrap().0;
        if until > Instant::now() {
            tokio::time::sleep_until(until.into()).await;
        }
    }
    fn slow_down(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 = (s.1 * 2).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let pause = s.1.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
        s.0 = s.0.max(Instant::now() + pause);
    }
    fn ok(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.1.is_zero() {
            s.1 = if s.1 < Duration::from_millis(50) { Duration::ZERO } else { s.1 / 2 };
        }
    }
}

enum Out {
    Chunks(ChunkSetWriter),
    Lines { out: Mutex<std::io::BufWriter<std::io::Stdout>>, terminator: u8 },
}

struct Shared {
    client: aws_sdk_s3::Client,
    cfg: ListConfig,
    sched: Mutex<Sched>,
    checkpoint: Option<CheckpointFile>,
    wake: tokio::sync::Notify,
    n: Counters,
    throttle: Throttle,
    out: Out,
    messages: Mutex<Vec<String>>,
}

/// Appends the record metadata encoding (see [`crate::record`]) of the given fields.
pub fn encode_meta(
    out: &mut Vec<u8>,
    size: Option<u64>,
    etag: Option<&[u8]>,
    mtime: Option<i64>,
    class: Option<&[u8]>,
) {
    let presence = size.map_or(0, |_| Schema::SIZE)
        | etag.map_or(0, |_| Schema::ETAG)
        | mtime.map_or(0, |_| Schema::MTIME)
        | class.map_or(0, |_| Schema::CLASS);
    out.push(presence);
    if let Some(s) = size {
        put_varint(out, s);
    }
    if let Some(e) = etag {
        put_bytes(out, e);
    }
    if let Some(m) = mtime {
        put_varint(out, ((m << 1) ^ (m >> 63)) as u64);
    }
    if let Some(c) = class {
        put_bytes(out, c);
    }
}

/// Decodes S3's `encoding-type=url` form (`%XX` escapes, `+` for space) onto `out`.
pub fn url_decode_into(s: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let h = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.ok_or_else(|| anyhow!("bad %-escape at byte {i}"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(())
}

impl Shared {
    /// Finishes a chunk (last write, rename) and hands it to the chunk-set writer, which keeps its key span.
    fn close_part(&self, w: ChunkWriter) -> Result<()> {
        if let Out::Chunks(set) = &self.out {
            off_worker(|| set.add_chunk(w))?;
        }
        Ok(())
    }

    fn persist(&self, snap: Option<Snapshot>) -> Result<()> {
        match (&self.checkpoint, snap) {
            (Some(c), Some(snap)) => off_worker(|| c.persist(snap)),
            _ => Ok(()),
        }
    }

    fn note(&self, msg: String) {
        eprintln!("{TOOL}: {msg}");
        let mut m = self.messages.lock().unwrap();
        if m.len() < 50 {
            m.push(msg);
        }
    }

    /// One page into `page`, retried per the policy. `Err` = the page failed for good (already counted).
    /// The body is parsed by [`Page::parse`], not by the SDK (see `listxml`); a body that does not parse
    /// is retried like any garbled response.
    async fn fetch(
        &self,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: i32,
        page: &mut Page,
    ) -> std::result::Result<PageInfo, String> {
        let mut attempt = 0u32;
        loop {
            self.throttle.wait().await;
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .max_keys(max_keys)
                .encoding_type(EncodingType::Url);
            if !self.cfg.prefix.is_empty() {
                req = req.prefix(&self.cfg.prefix);
            }
            match token {
                Some(t) => req = req.continuation_token(t),
                None => {
                    if let Some(s) = start_after {
                        req = req.start_after(s);
                    }
                }
            }
            let (retryable, slow, msg) = match super::listxml::capture(req.send()).await {
                (Ok(_), Some(body)) => match page.parse(&body.into_bytes(), &self.cfg.cutoff) {
                    // An empty truncated page is normal (Ceph returns them while it skips index entries),
                    // but one whose continuation is this very request would be asked again forever.
                    Ok(info) if page.recs.is_empty() && info.truncated && info.next_token.as_deref() == token => {
                        self.n.pages.fetch_add(1, Relaxed);
                        (true, false, "an empty truncated page handed back the continuation it was asked with".into())
                    }
                    Ok(info) => {
                        self.throttle.ok();
                        self.n.pages.fetch_add(1, Relaxed);
                        return Ok(info);
                    }
                    Err(e) => (true, false, format!("unreadable ListObjectsV2 response: {e:#}")),
                },
                // The capturing connector did not see this request: a bug, not a page to skip.
                (Ok(_), None) => return Err("internal error: the ListObjectsV2 response body was not captured".into()),
                (Err(e), _) => {
                    let (retryable, slow) = classify(&e);
                    (retryable, slow, format!("{}", DisplayErrorContext(&e)))
                }
            };
            if slow {
                self.n.slowdowns.fetch_add(1, Relaxed);
                self.throttle.slow_down();
            }
            if !retryable || attempt >= self.cfg.retry.max_retries {
                return Err(format!("after {} attempts: {msg}", attempt + 1));
            }
            let sleep = self.cfg.retry.backoff().delay(attempt);
            self.n.retries.fetch_add(1, Relaxed);
            attempt += 1;
            tokio::time::sleep(sleep).await;
        }
    }

    async fn run_range(&self, i: usize) -> Result<()> {
        let prefix = self.cfg.prefix.as_bytes();
        let start = {
            let s = &self.sched.lock().unwrap().slots[i];
            s.pos.clone().or(s.after.clone())
        };
        let mut start_after = match start {
            Some(k) => {
                Some(String::from_utf8(k).map_err(|_| anyhow!("range start is not UTF-8 (corrupt checkpoint?)"))?)
            }
            None => None,
        };
        let mut token: Option<String> = None;
        // Whether this range already had a page trimmed (see crossing_page_keys).
        let mut trimmed = false;
        let mut part: Option<ChunkWriter> = None;
        let mut page = Page::default();
        let mut lines = Vec::new();
        let outcome = loop {
            let (max_keys, trim) = {
                let g = self.sched.lock().unwrap();
                let s = &g.slots[i];
                if s.pos.is_none() && s.parent.is_some() {
                    // The first page of a split-off range: the split point may have fallen in a gap
                    // of the key space, and then the whole page belongs to the ranges above. Probe.
                    (PROBE_KEYS.min(self.cfg.page_size), false)
                } else if trimmed || matches!(s.end, End::Open) {
                    (self.cfg.page_size, false)
                } else {
                    let k = crossing_page_keys(
                        self.cfg.page_size,
                        s.page_width,
                        ranges::width(s.lo(prefix), &s.end, prefix),
                    );
                    (k, k < self.cfg.page_size)
                }
            };
            trimmed |= trim;
            let info = match self.fetch(start_after.as_deref(), token.as_deref(), max_keys, &mut page).await {
                Ok(i) => i,
                Err(msg) => {
                    self.n.errors.fetch_add(1, Relaxed);
                    self.note(format!("range after {:?}: page failed {msg}", start_after.as_deref().unwrap_or("")));
                    break St::Failed;
                }
            };
            let truncated = info.truncated;
            // Decide under the mutex which keys belong to this range, and advance pos over them.
            let admitted = {
                let mut g = self.sched.lock().unwrap();
                let s = &mut g.slots[i];
                let n = (0..page.recs.len()).take_while(|&j| s.end.admits(page.key(j))).count();
                s.listed += n as u64;
                if n > 0 {
                    let last = page.key(n - 1);
                    // Width of a full page at this page's density (short pages are normal).
                    s.page_width = ranges::span(s.lo(prefix), last) + (self.cfg.page_size as f64 / n as f64).log2();
                    s.pos = Some(last.to_vec());
                }
                n
            };
            self.n.listed.fetch_add(admitted as u64, Relaxed);
            self.n.returned.fetch_add(page.recs.len() as u64, Relaxed);
            self.n.bytes.fetch_add(page.recs[..admitted].iter().map(|r| r.4).sum::<u64>(), Relaxed);
            let mut written = 0;
            for j in 0..admitted {
                if !page.recs[j].3 {
                    continue;
                }
                written += 1;
                match &self.out {
                    Out::Chunks(set) => {
                        if part.is_none() {
                            part = Some(off_worker(|| set.new_chunk())?);
                        }
                        let w = part.as_mut().unwrap();
                        w.push(page.key(j), page.meta(j))?;
                        if w.records() >= self.cfg.chunk_keys {
                            self.close_part(part.take().unwrap())?;
                        }
                    }
                    Out::Lines { terminator, .. } => {
                        lines.extend_from_slice(page.key(j));
                        lines.push(*terminator);
                    }
                }
            }
            if let Out::Lines { out, .. } = &self.out {
                if !lines.is_empty() {
                    out.lock().unwrap().write_all(&lines).context("writing keys to stdout")?;
                    lines.clear();
                }
            }
            self.n.written.fetch_add(written, Relaxed);
            self.n.filtered.fetch_add(admitted as u64 - written, Relaxed);
            if admitted < page.recs.len() || !truncated {
                break St::Done;
            }
            token = info.next_token;
            if token.is_none() {
                // Truncated without a token: continue after the last key instead.
                let g = self.sched.lock().unwrap();
                start_after = g.slots[i].pos.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()).or(start_after);
            }
        };
        if let Some(w) = part.take() {
            self.close_part(w)?;
        }
        if outcome == St::Done {
            self.n.ranges_done.fetch_add(1, Relaxed);
        }
        let snap = self.sched.lock().unwrap().finish(i, outcome)?;
        self.persist(snap)?;
        self.wake.notify_waiters();
        Ok(())
    }
}

/// Runs file-system work (create, rename, the checkpoint) from a stream's task without stalling the
/// others. The runtime has as many workers as cores (2 here), and on a busy or virtualized disk a rename
/// can wait for a journal commit for tens of ms; two tasks waiting at once (one for the disk, one for
/// the checkpoint's mutex) stopped every stream. On a multi-thread runtime the worker first hands its
/// other tasks to a new thread ([`tokio::task::block_in_place`]); elsewhere `f` just runs.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// MaxKeys for the next page of a range where a full page spans a log2 width of `page_width` (from
/// the range's last page, or inherited from the range it was split from) and a log2 width of `left`
/// is left before the range's end. When less than a page is estimated to be left, asks for about that
/// many keys (+30% and 8) instead of a full page: keys past the end belong to the next range and are
/// thrown away, and the server's work for them (on Garage, most of the cost of a page) is wasted.
/// Only one page per range is trimmed: if the estimate was short, the range continues with full pages.
fn crossing_page_keys(page_size: i32, page_width: f64, left: f64) -> i32 {
    if !page_width.is_finite() || left == f64::INFINITY {
        return page_size;
    }
    if left == f64::NEG_INFINITY {
        return 1.min(page_size);
    }
    let est = page_size as f64 * (left - page_width).exp2();
    if est >= page_size as f64 {
        return page_size;
    }
    ((est * 1.3).ceil() as i32 + 8).clamp(1, page_size)
}

/// (retryable, slow down everyone)
pub(super) fn classify<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (bool, bool) {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = Some(se.raw().status().as_u16());
            let slow = status == Some(503) || status == Some(429) || code == "SlowDown" || code == "Throttling";
            // A 2xx that could not be parsed (truncated or garbled body) is worth another try too.
            let garbled = code.is_empty() && status.is_some_and(|s| (200..300).contains(&s));
            let retryable = slow
                || garbled
                || status.is_some_and(|s| s >= 500)
                || matches!(code, "InternalError" | "RequestTimeout");
            (retryable, slow)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (true, false),
        _ => (false, false),
    }
}

/// Files of an unfinished listing written by keyrecon-list-s3 before chunks went straight into the set.
fn is_legacy_part(name: &str) -> bool {
    (name.starts_with("part-") || name.starts_with("stage-") || name.starts_with(".part-"))
        && (name.ends_with(".krc") || name.ends_with(".tmp"))
}

// ---------------------------------------------------------------------------------------------------
// Entry point

/// Lists `cfg` into `sink`. Returns the summary; `summary.complete` is false when some range failed
/// (the caller exits 2). Errors are trouble that stopped the run (I/O, bad arguments).
pub async fn list(client: aws_sdk_s3::Client, cfg: ListConfig, sink: Sink) -> Result<ListSummary> {
    let started = Instant::now();
    if cfg.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let settings = CheckpointSettings {
        bucket: cfg.bucket.clone(),
        prefix: cfg.prefix.clone(),
        start_after: cfg.start_after.clone(),
        end_before: cfg.end_before.clone(),
        min_mtime_us: cfg.cutoff.min_mtime_us,
        max_mtime_us: cfg.cutoff.max_mtime_us,
    };
    let first = Slot::new(
        cfg.start_after.clone().map(String::into_bytes),
        cfg.end_before.clone().map_or(End::Open, |e| End::Excl(e.into_bytes())),
    );
    let (out, slots, checkpoint, resumed) = match &sink {
        Sink::Lines { terminator } => (
            Out::Lines {
                out: Mutex::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout())),
                terminator: *terminator,
            },
            vec![first],
            None,
            false,
        ),
        Sink::ChunkSet { dir, force, resume } => {
            let cp_path = dir.join(CHECKPOINT);
            if *resume {
                let (set, slots) = load_resume(dir, &cp_path, &settings)?;
                (Out::Chunks(set.with_write_buffer(CHUNK_WRITE_BUF)), slots, Some(cp_path), true)
            } else {
                let set = prepare_fresh(dir, *force)?;
                (Out::Chunks(set.with_write_buffer(CHUNK_WRITE_BUF)), vec![first], Some(cp_path), false)
            }
        }
    };
    let pending: VecDeque<usize> =
        slots.iter().enumerate().filter(|(_, s)| s.state == St::Pending).map(|(i, _)| i).collect();
    let done_before = slots.iter().filter(|s| s.state == St::Done).count() as u64;
    let initial_streams = if resumed { 0 } else { cfg.parallel };
    let mut sched = Sched {
        slots,
        initial_streams,
        pending,
        active: 0,
        splits: 0,
        checkpointing: checkpoint.is_some(),
        version: 0,
        settings,
    };
    let checkpoint = checkpoint.map(|path| CheckpointFile { path, written: Mutex::new(0) });
    if let (Some(c), Some(snap)) = (&checkpoint, sched.snapshot()?) {
        c.persist(snap)?;
    }
    let sh = Arc::new(Shared {
        client,
        cfg: cfg.clone(),
        sched: Mutex::new(sched),
        checkpoint,
        wake: tokio::sync::Notify::new(),
        n: Counters::default(),
        throttle: Throttle { state: Mutex::new((Instant::now(), Duration::ZERO)) },
        out,
        messages: Mutex::new(Vec::new()),
    });
    sh.n.ranges_done.store(done_before, Relaxed);

    let ticker = spawn_ticker(sh.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.parallel {
        let sh = sh.clone();
        tasks.spawn(async move {
            loop {
                let (next, snap) = sh.sched.lock().unwrap().next_work(sh.cfg.prefix.as_bytes())?;
                sh.persist(snap)?;
                match next {
                    Next::Work(i) => sh.run_range(i).await?,
                    Next::Finished => return Ok::<(), anyhow::Error>(()),
                    Next::Wait => {
                        let _ = tokio::time::timeout(Duration::from_millis(20), sh.wake.notified()).await;
                    }
                }
            }
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(|e| anyhow!("listing task panicked: {e}")).and_then(|r| r);
        if let Err(e) = r {
            if first_err.is_none() {
                first_err = Some(e);
                tasks.abort_all();
            }
        }
    }
    ticker.abort();
    let _ = ticker.await; // its clone of the run state is dropped before we take it back below
    if !cfg.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[2K");
    }
    if let Out::Lines { out, .. } = &sh.out {
        out.lock().unwrap().flush().context("writing keys to stdout")?;
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    let g = sh.sched.lock().unwrap();
    let n = &sh.n;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sum = ListSummary {
        bucket: cfg.bucket.clone(),
        prefix: cfg.prefix.clone(),
        complete: g.slots.iter().all(|s| s.state == St::Done),
        resumed,
        keys_listed: n.listed.load(Relaxed),
        keys_written: n.written.load(Relaxed),
        keys_filtered: n.filtered.load(Relaxed),
        bytes: n.bytes.load(Relaxed),
        pages: n.pages.load(Relaxed),
        keys_returned: n.returned.load(Relaxed),
        retries: n.retries.load(Relaxed),
        slowdowns: n.slowdowns.load(Relaxed),
        errors: n.errors.load(Relaxed),
        error_messages: sh.messages.lock().unwrap().clone(),
        parallel: cfg.parallel,
        ranges: g.slots.len() as u64,
        ranges_done: n.ranges_done.load(Relaxed),
        ranges_failed: g.slots.iter().filter(|s| s.state == St::Failed).count() as u64,
        splits: g.splits,
        chunks: 0,
        elapsed_s: elapsed,
        keys_per_s: n.listed.load(Relaxed) as f64 / elapsed.max(1e-9),
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
    };
    drop(g);
    if let Sink::ChunkSet { dir, .. } = &sink {
        let sh = Arc::into_inner(sh).ok_or_else(|| anyhow!("listing tasks still hold the run state"))?;
        if let (true, Out::Chunks(set)) = (sum.complete, sh.out) {
            sum.chunks = set.chunks().len() as u64;
            set.finish_key_ordered(Producer::current(TOOL), serde_json::to_value(&sum)?)?;
            let cp = dir.join(CHECKPOINT);
            std::fs::remove_file(&cp).with_context(|| format!("removing {}", cp.display()))?;
        }
        let p = dir.join(SUMMARY);
        std::fs::write(&p, serde_json::to_vec_pretty(&sum)?).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(sum)
}

/// Checks a fresh run may use `dir`, clearing what `force` allows, and opens the chunk-set writer.
fn prepare_fresh(dir: &Path, force: bool) -> Result<ChunkSetWriter> {
    let mut leftovers = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name == CHECKPOINT || name == SUMMARY || is_legacy_part(&name) {
                leftovers.push(p);
            }
        }
    }
    if leftovers.iter().any(|p| p.ends_with(CHECKPOINT)) && !force {
        bail!(
            "{}: holds an unfinished listing (checkpoint.json); pass --resume to continue it or --force to start over",
            dir.display()
        );
    }
    let set = ChunkSetWriter::create(dir, SCHEMA, force)?;
    if force {
        for p in leftovers {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(set)
}

/// Rebuilds the ranges of an interrupted run: done ranges stay done, the others continue after the last
/// key of the chunks they hold. Returns the reopened chunk-set writer and the slots.
fn load_resume(dir: &Path, cp_path: &Path, settings: &CheckpointSettings) -> Result<(ChunkSetWriter, Vec<Slot>)> {
    let body = std::fs::read(cp_path)
        .with_context(|| format!("--resume: reading {} (nothing to resume?)", cp_path.display()))?;
    let cp: Checkpoint = serde_json::from_slice(&body).with_context(|| format!("parsing {}", cp_path.display()))?;
    if cp.settings != *settings {
        bail!("--resume: {} was written for {:?}, this run asks for {:?}", cp_path.display(), cp.settings, settings);
    }
    let mut slots = Vec::new();
    for r in &cp.ranges {
        let after = match &r.after_hex {
            Some(h) => Some(unhex(h).ok_or_else(|| anyhow!("{}: bad hex {h:?}", cp_path.display()))?),
            None => None,
        };
        let end = end_from_str(&r.end).ok_or_else(|| anyhow!("{}: bad range end {:?}", cp_path.display(), r.end))?;
        let mut s = Slot::new(after, end);
        if r.done {
            s.state = St::Done;
        }
        slots.push(s);
    }
    if let Some(old) = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| is_legacy_part(n))
    {
        bail!(
            "{}: {old} was written by an older keyrecon-list-s3 that cannot be resumed by this one; rerun with --force",
            dir.display()
        );
    }
    let (set, _) = ChunkSetWriter::resume(dir, SCHEMA)?;
    for c in set.chunks() {
        let p = dir.join(&c.file);
        let (first, last) = (unhex(&c.first_key_hex).unwrap_or_default(), unhex(&c.last_key_hex).unwrap_or_default());
        let s = slots
            .iter_mut()
            .find(|s| s.contains(&first))
            .ok_or_else(|| anyhow!("{}: holds keys outside every checkpointed range", p.display()))?;
        if !s.contains(&last) {
            bail!("{}: spans more than one checkpointed range", p.display());
        }
        if s.pos.as_ref().is_none_or(|pos| last > *pos) {
            s.pos = Some(last);
        }
    }
    Ok((set, slots))
}

fn spawn_ticker(sh: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    use std::io::IsTerminal;
    tokio::spawn(async move {
        if sh.cfg.quiet {
            return;
        }
        let tty = std::io::stderr().is_terminal();
        let every = if tty { Duration::from_millis(500) } else { Duration::from_secs(30) };
        let start = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let (ranges, active) = {
                let g = sh.sched.lock().unwrap();
                (g.slots.len(), g.active)
            };
            let listed = sh.n.listed.load(Relaxed);
            let el = start.elapsed().as_secs_f64();
            let line = format!(
                "{TOOL}: {listed} keys ({:.0}/s), ranges {} done / {ranges} ({active} active), {} retries, {} errors, {:.0}s",
                listed as f64 / el,
                sh.n.ranges_done.load(Relaxed),
                sh.n.retries.load(Relaxed),
                sh.n.errors.load(Relaxed),
                el
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_page_is_trimmed_to_what_is_left() {
        // A full page spans width 10: 1/8 of that left = ~125 keys, ask for 125*1.3+8.
        assert_eq!(crossing_page_keys(1000, 10.0, 7.0), 171);
        // More than a page left, unknown density, an open end: full pages.
        assert_eq!(crossing_page_keys(1000, 10.0, 10.5), 1000);
        assert_eq!(crossing_page_keys(1000, f64::NEG_INFINITY, 7.0), 1000);
        assert_eq!(crossing_page_keys(1000, 10.0, f64::INFINITY), 1000);
        // Nothing left by the estimate: one key confirms the end.
        assert_eq!(crossing_page_keys(1000, 10.0, f64::NEG_INFINITY), 1);
        // Never more than the page size, never less than 1.
        assert_eq!(crossing_page_keys(20, 10.0, 9.9), 20);
        assert_eq!(crossing_page_keys(1000, 10.0, -40.0), 9);
    }
}
