//! The parallel, range-partitioned lister: `--concurrency N` ListObjectsV2 streams over disjoint key
//! ranges ([`super::ranges`]) handed out by the scheduler ([`super::sched`], work stealing), each page
//! fetched and retried by [`super::fetch`], progress checkpointed for `--resume`
//! ([`super::checkpoint`]), records written to a chunk set or to stdout.
//!
//! ```text
//!  streams (tokio tasks) ── next_work ──► Sched (mutex) ── a range, or the upper half of the widest
//!     │                                                    active one (work stealing)
//!     ├─ Pager::fetch (retries, 503 pause) ─► Page (parsed by listxml) ─► Sched::admit (its keys)
//!     └─ keys ─► chunk of the chunk set (or stdout) ; checkpoint.json on every split / finished range
//! ```
//! A page that fails after all retries is counted, reported, leaves its range unfinished (exit code 2)
//! and is never skipped.
//!
//! With `--shard I/N` the first range is shard I's key range ([`super::ranges::shard_range`]) instead of
//! the whole listing, and work stealing splits inside it. The checkpoint records the shard (a resume
//! with another is refused); the manifest's `info.listing` and summary.json record what was listed
//! ([`Listing`]: bucket and prefix, key range and age window as given, shard).
//!
//! Chunk-set output: each stream writes its keys into chunks of the chunk set (sorted, at most
//! `chunk_keys` records each) opened from one shared [`ChunkSetWriter`]. Ranges are disjoint, so the set
//! is the concatenation of the chunks in key order: when every range is done the writer lists them in
//! the manifest by first key ([`ChunkSetWriter::finish_key_ordered`], overlap checked), from the
//! counts, checksums and key spans their writers computed. Nothing is renamed or read back, so memory
//! stays flat in the key count.

use super::checkpoint::{self, CheckpointFile, CheckpointSettings, Snapshot, CHECKPOINT};
use super::fetch::{Pager, RetryPolicy};
use super::listxml::Page;
use super::sched::{Next, Sched, Slot, St};
use super::Window;
use crate::chunk::listing::{Filters, Listing, Source};
use crate::chunk::set::{Producer, MANIFEST};
use crate::chunk::Shard;
use crate::chunk::{ChunkSetWriter, ChunkWriter};
use crate::error::{Error, IoContext, Result};
use crate::progress::{Progress, Unit};
use crate::summary::{self, Summary};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOOL: &str = "keyrecon-list-s3";
/// Write buffer per open chunk: one chunk is open per stream, so memory is `--concurrency` x this.
const CHUNK_WRITE_BUF: usize = 256 << 10;

#[derive(Clone, Debug)]
pub struct ListConfig {
    pub bucket: String,
    pub prefix: String,
    pub start_after: Option<String>,
    pub end_before: Option<String>,
    /// Streams listing at once.
    pub concurrency: usize,
    /// MaxKeys per request (S3 caps it at 1000).
    pub page_size: i32,
    /// The LastModified window, as the flags gave it (made absolute when the run starts).
    pub window: Window,
    /// `--shard I/N`: list only shard I's key range (`None`: the whole listing).
    pub shard: Option<Shard>,
    pub retry: RetryPolicy,
    /// Records per chunk (the granularity of --resume).
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListSummary {
    pub bucket: String,
    pub prefix: String,
    /// What was listed (bucket and prefix, key range, age window, shard); the manifest's `info.listing`.
    pub listing: Listing,
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
    pub concurrency: usize,
    pub ranges: u64,
    pub ranges_done: u64,
    pub ranges_failed: u64,
    pub splits: u64,
    pub chunks: u64,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    pub peak_rss_bytes: u64,
}

impl Summary for ListSummary {
    /// The one-paragraph summary printed on stderr.
    fn paragraph(&self) -> String {
        let mut s = format!(
            "listed {} keys ({} written, {} outside the age window, {} bytes) from {} in {:.2}s ({:.0} keys/s) with {} streams over {} ranges ({} splits): {} pages, {} retries, {} slow-downs, {} errors; peak RSS {} MiB.",
            self.keys_listed, self.keys_written, self.keys_filtered, self.bytes, self.listing, self.elapsed_s,
            self.keys_per_s, self.concurrency, self.ranges, self.splits, self.pages, self.retries, self.slowdowns, self.errors,
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

    /// 0 when every range was listed and no page failed, else 2.
    fn exit_code(&self) -> i32 {
        if self.complete && self.errors == 0 {
            0
        } else {
            2
        }
    }
}

#[derive(Default)]
struct Counters {
    /// Shared with the progress line.
    listed: Arc<AtomicU64>,
    written: AtomicU64,
    filtered: AtomicU64,
    bytes: AtomicU64,
    returned: AtomicU64,
    errors: AtomicU64,
    ranges_done: AtomicU64,
}

enum Out {
    Chunks(ChunkSetWriter),
    Lines { out: Mutex<std::io::BufWriter<std::io::Stdout>>, terminator: u8 },
}

struct Shared {
    pager: Pager,
    cfg: ListConfig,
    sched: Mutex<Sched>,
    checkpoint: Option<CheckpointFile>,
    wake: tokio::sync::Notify,
    n: Counters,
    out: Out,
    messages: Mutex<Vec<String>>,
}

impl Shared {
    /// Finishes a chunk (last write, rename) and hands it to the chunk-set writer, which keeps its key span.
    fn close_chunk(&self, w: ChunkWriter) -> Result<()> {
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
    async fn run_range(&self, i: usize) -> Result<()> {
        let prefix = self.cfg.prefix.as_bytes();
        let start = {
            let s = &self.sched.lock().unwrap().slots[i];
            s.pos.clone().or(s.after.clone())
        };
        let mut start_after = match start {
            Some(k) => Some(String::from_utf8(k).map_err(|_| {
                Error::Usage(format!("--resume: a range starts at a key that is not UTF-8 (corrupt {CHECKPOINT}?)"))
            })?),
            None => None,
        };
        let mut token: Option<String> = None;
        // Whether this range already had a page trimmed (see crossing_page_keys).
        let mut trimmed = false;
        let mut chunk: Option<ChunkWriter> = None;
        let mut page = Page::default();
        let mut lines = Vec::new();
        let outcome = loop {
            let (max_keys, trim) = self.sched.lock().unwrap().page_keys(i, self.cfg.page_size, prefix, trimmed);
            trimmed |= trim;
            let info = match self.pager.fetch(start_after.as_deref(), token.as_deref(), max_keys, &mut page).await {
                Ok(i) => i,
                Err(msg) => {
                    self.n.errors.fetch_add(1, Relaxed);
                    self.note(format!("range after {:?}: page failed {msg}", start_after.as_deref().unwrap_or("")));
                    break St::Failed;
                }
            };
            let truncated = info.truncated;
            // Decide under the mutex which keys belong to this range, and advance pos over them.
            let admitted = self.sched.lock().unwrap().admit(i, &page, self.cfg.page_size, prefix);
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
                        if chunk.is_none() {
                            chunk = Some(off_worker(|| set.new_chunk())?);
                        }
                        let w = chunk.as_mut().unwrap();
                        w.push(page.key(j), page.meta(j))?;
                        if w.records() >= self.cfg.chunk_keys {
                            self.close_chunk(chunk.take().unwrap())?;
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
                    out.lock().unwrap().write_all(&lines).ctx("<stdout>")?;
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
        if let Some(w) = chunk.take() {
            self.close_chunk(w)?;
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

// ---------------------------------------------------------------------------------------------------
// Entry point

/// Lists `cfg` into `sink`. Returns the summary; `summary.complete` is false when some range failed
/// (the caller exits 2). Errors are trouble that stopped the run (I/O, bad arguments).
pub async fn list(client: aws_sdk_s3::Client, cfg: ListConfig, sink: Sink) -> Result<ListSummary> {
    let started = Instant::now();
    if cfg.concurrency == 0 {
        return Err(Error::Usage("--concurrency must be at least 1".into()));
    }
    let mut cutoff = cfg.window.cutoff(super::now_us());
    let mut settings = CheckpointSettings {
        bucket: cfg.bucket.clone(),
        prefix: cfg.prefix.clone(),
        start_after: cfg.start_after.clone(),
        end_before: cfg.end_before.clone(),
        min_mtime_us: cutoff.min_mtime_us,
        max_mtime_us: cutoff.max_mtime_us,
        shard: cfg.shard,
        filters: Some(listing(&cfg).filters),
    };
    // The whole listing (shard 1/1), or the shard's part of it.
    let s = cfg.shard.unwrap_or(Shard::WHOLE);
    let (after, end) = super::ranges::shard_range(
        &cfg.prefix,
        cfg.start_after.as_deref(),
        cfg.end_before.as_deref(),
        s.index,
        s.count,
    );
    let first = Slot::new(after, end);
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
                let (set, saved, first_run) = checkpoint::load_resume(dir, &settings)?;
                // The first run's window: both parts of the listing hold the same objects.
                cutoff = super::Cutoff { min_mtime_us: first_run.min_mtime_us, max_mtime_us: first_run.max_mtime_us };
                settings = first_run;
                let slots = saved.into_iter().map(Slot::resumed).collect();
                (Out::Chunks(set.with_write_buffer(CHUNK_WRITE_BUF)), slots, Some(cp_path), true)
            } else {
                let set = checkpoint::prepare_fresh(dir, *force)?;
                (Out::Chunks(set.with_write_buffer(CHUNK_WRITE_BUF)), vec![first], Some(cp_path), false)
            }
        }
    };
    let pending: VecDeque<usize> =
        slots.iter().enumerate().filter(|(_, s)| s.state == St::Pending).map(|(i, _)| i).collect();
    let done_before = slots.iter().filter(|s| s.state == St::Done).count() as u64;
    let initial_streams = if resumed { 0 } else { cfg.concurrency };
    let mut sched = Sched {
        slots,
        initial_streams,
        pending,
        active: 0,
        splits: 0,
        checkpoint: checkpoint.is_some().then_some(settings),
        version: 0,
    };
    let checkpoint = checkpoint.map(CheckpointFile::new);
    if let (Some(c), Some(snap)) = (&checkpoint, sched.snapshot()?) {
        c.persist(snap)?;
    }
    let sh = Arc::new(Shared {
        pager: Pager::new(client, &cfg.bucket, &cfg.prefix, cutoff, cfg.retry.clone()),
        cfg: cfg.clone(),
        sched: Mutex::new(sched),
        checkpoint,
        wake: tokio::sync::Notify::new(),
        n: Counters::default(),
        out,
        messages: Mutex::new(Vec::new()),
    });
    sh.n.ranges_done.store(done_before, Relaxed);

    let ticker = progress(sh.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.concurrency {
        let sh = sh.clone();
        tasks.spawn(async move {
            loop {
                let (next, snap) = sh.sched.lock().unwrap().next_work(sh.cfg.prefix.as_bytes())?;
                sh.persist(snap)?;
                match next {
                    Next::Work(i) => sh.run_range(i).await?,
                    Next::Finished => return Ok::<(), Error>(()),
                    Next::Wait => {
                        let _ = tokio::time::timeout(Duration::from_millis(20), sh.wake.notified()).await;
                    }
                }
            }
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(|e| Error::Internal(format!("listing task panicked: {e}"))).and_then(|r| r);
        if let Err(e) = r {
            if first_err.is_none() {
                first_err = Some(e);
                tasks.abort_all();
            }
        }
    }
    ticker.finish(); // its clone of the run state is dropped before we take it back below
    if let Out::Lines { out, .. } = &sh.out {
        out.lock().unwrap().flush().ctx("<stdout>")?;
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
        listing: listing(&cfg),
        complete: g.slots.iter().all(|s| s.state == St::Done),
        resumed,
        keys_listed: n.listed.load(Relaxed),
        keys_written: n.written.load(Relaxed),
        keys_filtered: n.filtered.load(Relaxed),
        bytes: n.bytes.load(Relaxed),
        pages: sh.pager.pages.load(Relaxed),
        keys_returned: n.returned.load(Relaxed),
        retries: sh.pager.retries.load(Relaxed),
        slowdowns: sh.pager.slowdowns.load(Relaxed),
        errors: n.errors.load(Relaxed),
        error_messages: sh.messages.lock().unwrap().clone(),
        concurrency: cfg.concurrency,
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
        let sh = Arc::into_inner(sh).ok_or_else(|| Error::Internal("listing tasks still hold the run state".into()))?;
        if let (true, Out::Chunks(set)) = (sum.complete, sh.out) {
            sum.chunks = set.chunks().len() as u64;
            let info = serde_json::to_value(&sum).map_err(|e| Error::json(dir.join(MANIFEST), e))?;
            set.finish_key_ordered(Producer::current(TOOL), info)?;
            let cp = dir.join(CHECKPOINT);
            std::fs::remove_file(&cp).ctx(&cp)?;
        }
        summary::write_json(dir, &sum)?;
    }
    Ok(sum)
}

/// What `cfg` lists, for the manifest and the summary.
fn listing(cfg: &ListConfig) -> Listing {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    Listing {
        source: Source::S3,
        what: format!("s3://{}/{}", cfg.bucket, cfg.prefix),
        filters: Filters {
            start_after: cfg.start_after.clone(),
            end_before: cfg.end_before.clone(),
            max_age_ms: ms(cfg.window.max_age),
            min_age_ms: ms(cfg.window.min_age),
            modified_since: cfg.window.modified_since,
            modified_before: cfg.window.modified_before,
            ..Default::default()
        },
        shard: cfg.shard,
    }
}

/// The progress line: keys listed, keys/s, then ranges done / total (active), retries, errors.
fn progress(sh: Arc<Shared>) -> Progress {
    let (quiet, counter) = (sh.cfg.quiet, sh.n.listed.clone());
    let label = sh.cfg.shard.map_or(String::new(), |s| format!("shard {s}"));
    Progress::spec(TOOL, label, Unit::Items("keys"))
        .note(move || {
            let (ranges, active) = {
                let g = sh.sched.lock().unwrap();
                (g.slots.len(), g.active)
            };
            format!(
                "ranges {} done / {ranges} ({active} active), {} retries, {} errors",
                sh.n.ranges_done.load(Relaxed),
                sh.pager.retries.load(Relaxed),
                sh.n.errors.load(Relaxed)
            )
        })
        .start_counting(counter, quiet)
}
