//! The parallel token-range scanner: `--concurrency` workers take ranges from a queue, page through each with
//! `execute_single_page` (manual paging, so the position is ours to checkpoint), decode rows straight
//! from the response frame, map keys, and flush sorted chunks to the work directory.
//!
//! ```text
//!  queue of ranges ──► workers ──► gate (pages in flight < AIMD limit, pause, --rate) ──► one page
//!        ▲                    │ rows: key, token, [writetime], [size] as raw frame slices
//!        │ split halves       ▼
//!        └── range failed  RunBuffer (arena + index, reused) ──full/range done──► chunk-N.krc + journal
//! ```
//! A row is its partition key columns, their token, then what was asked for. The key columns become
//! the key through the [`KeyCodec`] into the worker's reused [`Rendered`] buffers; a row whose key
//! cannot be written so that it splits back into its columns is rejected (reason starting with
//! [`UNUSABLE`]), never listed under a key that could name another row.
//! Errors: timeouts, unavailable, overloaded and dropped connections are retried on the same page
//! with exponential backoff; after `retries` the rest of the range is split in two and re-queued, up to
//! `split_depth` times, then reported as failed. Anything else (bad query, auth) stops the scan.
//!
//! Gentleness: the concurrency limit is the crate's AIMD [`Limiter`] (halved on timeouts/overload or
//! when the smoothed page latency exceeds the target; +1 after a window of fast pages), at limit 1 the
//! scan pauses instead; `--rate` is a rows/s token [`Bucket`] shared by all workers. Every change is
//! logged and counted.

use super::checkpoint::{Event, Flush, Journal};
use super::pk::{be_int, KeyCodec, Rendered};
use super::ring::TokenRange;
use super::session::{Measure, SizeSource};
use crate::error::{Error, Result};
use crate::keymap::KeyMap;
use crate::limit::{Backoff, Bucket, Limiter, Permit};
use crate::record::{MetaRef, Schema};
use crate::sort::RecordBuffer;
use scylla::client::session::Session;
use scylla::deserialize::row::ColumnIterator;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::frame::response::result::{ColumnType, NativeType};
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the size column becomes a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeKind {
    /// Byte length of the fetched value (blob/text); null = 0. The bytes count as moved.
    Length,
    /// The server's `octet_length(col)`; null (a null value) = 0, as for [`SizeKind::Length`].
    OctetLength,
    /// Big-endian integer value (bigint/int/...); null = no size.
    Int,
}

/// The size kind of a size source selected as `measure` says, checked against the type the server
/// gave the selected column.
pub fn size_kind(t: &ColumnType, size: &SizeSource, measure: Measure) -> std::result::Result<SizeKind, String> {
    let int = matches!(
        t,
        ColumnType::Native(
            NativeType::BigInt | NativeType::Int | NativeType::SmallInt | NativeType::TinyInt | NativeType::Varint,
        )
    );
    match (size, measure) {
        (SizeSource::BlobLength(_), Measure::Fetch) => Ok(SizeKind::Length),
        (SizeSource::BlobLength(_), Measure::OctetLength) if int => Ok(SizeKind::OctetLength),
        (SizeSource::BlobLength(c), Measure::OctetLength) => {
            Err(format!("octet_length({c}) is a {t:?}, not an integer"))
        }
        (SizeSource::Column(_), _) if int => Ok(SizeKind::Int),
        (SizeSource::Column(_), _) => Err(format!("--size-column must be an integer column, not {t:?}")),
    }
}

/// Everything the workers share.
pub struct Scan {
    pub session: Session,
    pub stmt: PreparedStatement,
    /// The partition key columns (the row's first columns) -> the key.
    pub key: KeyCodec,
    pub has_writetime: bool,
    pub size_kind: Option<SizeKind>,
    pub keymap: Option<KeyMap>,
    pub written_after: Option<i64>,
    pub written_before: Option<i64>,
    pub schema: Schema,
    pub work: PathBuf,
    pub journal: Journal,
    pub next_seg: AtomicU64,
    pub retries: u32,
    pub split_depth: u32,
    /// Bytes a worker buffers before flushing a chunk.
    pub buf_bytes: usize,
    pub throttle: Throttle,
    pub counters: Counters,
    pub queue: Mutex<VecDeque<Task>>,
    /// Tasks queued or running; workers exit when it reaches 0.
    pub outstanding: AtomicUsize,
    pub failed: Mutex<Vec<(TokenRange, String)>>,
    /// The first error that stopped the scan.
    pub fatal: Mutex<Option<Error>>,
    pub stop: AtomicBool,
    pub progress: Arc<AtomicU64>,
    /// Share of the token ring listed, in units of [`RING_UNIT`] tokens (the progress line's fraction).
    pub ring: Arc<AtomicU64>,
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Task {
    /// The range as planned (journal key).
    pub range: TokenRange,
    /// List `(next, range.hi]`.
    pub next: i64,
    pub depth: u32,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub rows: AtomicU64,
    pub listed: AtomicU64,
    pub pages: AtomicU64,
    pub empty_pages: AtomicU64,
    pub retries: AtomicU64,
    pub rejects: AtomicU64,
    /// Rows whose key cannot be written so that it splits back into its columns.
    pub unusable: AtomicU64,
    pub outside_window: AtomicU64,
    pub no_writetime: AtomicU64,
    /// Bytes of values fetched only to be measured (`--size-of` without octet_length).
    pub measured_bytes: AtomicU64,
    pub ranges_done: AtomicU64,
    pub ranges_split: AtomicU64,
    pub chunks: AtomicU64,
}

enum Fail {
    /// Retries exhausted; `(next, hi]` is still to list.
    Transient {
        next: i64,
        error: String,
    },
    Fatal(Error),
}

/// Is this error worth retrying (the cluster is busy or a node is away), and is it a load signal?
fn classify(e: &ExecutionError) -> Option<bool> {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::ReadTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::Overloaded
            | DbError::RateLimitReached { .. } => Some(true),
            DbError::Unavailable { .. } | DbError::ServerError | DbError::IsBootstrapping | DbError::TruncateError => {
                Some(false)
            }
            _ => None,
        },
        ExecutionError::LastAttemptError(
            RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId,
        ) => Some(false),
        ExecutionError::RequestTimeout(_) => Some(true),
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => Some(false),
        _ => None,
    }
}

pub async fn worker(sh: Arc<Scan>) {
    let mut buf = RunBuffer::default();
    loop {
        if sh.stop.load(Relaxed) {
            return;
        }
        let task = sh.queue.lock().unwrap().pop_front();
        let Some(task) = task else {
            if sh.outstanding.load(Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let r = scan_range(&sh, task, &mut buf).await;
        buf.clear();
        let res = match r {
            Ok(()) => {
                sh.counters.ranges_done.fetch_add(1, Relaxed);
                sh.journal.append(&Event::Done((task.range.lo, task.range.hi)))
            }
            Err(Fail::Transient { next, error }) => give_up_or_split(&sh, task, next, error),
            Err(Fail::Fatal(e)) => Err(e),
        };
        if let Err(e) = res {
            sh.fatal.lock().unwrap().get_or_insert(e);
            sh.stop.store(true, Relaxed);
        }
        sh.outstanding.fetch_sub(1, Relaxed);
    }
}

fn give_up_or_split(sh: &Scan, task: Task, next: i64, error: String) -> Result<()> {
    let rest = TokenRange { lo: next, hi: task.range.hi };
    if task.depth < sh.split_depth && rest.width() >= 2 {
        let parts = rest.split(2);
        sh.counters.ranges_split.fetch_add(1, Relaxed);
        if !sh.quiet {
            eprintln!(
                "keyrecon-list-cassandra: range {} still failing after {} retries ({error}); splitting {rest} in two",
                task.range, sh.retries
            );
        }
        // Journal first: on resume the parts replace the range.
        sh.journal.append(&Event::Split {
            range: (task.range.lo, task.range.hi),
            into: parts.iter().map(|p| (p.lo, p.hi)).collect(),
        })?;
        let mut q = sh.queue.lock().unwrap();
        for p in parts {
            sh.outstanding.fetch_add(1, Relaxed);
            q.push_back(Task { range: p, next: p.lo, depth: task.depth + 1 });
        }
        Ok(())
    } else {
        if !sh.quiet {
            eprintln!("keyrecon-list-cassandra: giving up on {rest} of range {}: {error}", task.range);
        }
        sh.journal.append(&Event::Failed { range: (task.range.lo, task.range.hi), error: error.clone() })?;
        sh.failed.lock().unwrap().push((rest, error));
        Ok(())
    }
}

async fn scan_range(sh: &Scan, task: Task, buf: &mut RunBuffer) -> std::result::Result<(), Fail> {
    let (lo, hi) = (task.next, task.range.hi);
    let mut state = PagingState::start();
    let mut attempts = 0u32;
    let mut last_token: Option<i64> = None;
    // Where this range's share of the ring was counted up to.
    let mut covered = lo;
    let mut scratch = Rendered::default();
    // The driver's errors and our own (a chunk that cannot be written) stop the scan with their cause
    // chain, named by the range.
    let range = || format!("range ({lo}, {hi}]");
    let fatal = |e: ExecutionError| Fail::Fatal(Error::remote(range(), e));
    let ours = |e: Error| Fail::Fatal(Error::context(range(), e));
    loop {
        if sh.stop.load(Relaxed) {
            return Err(Fail::Fatal(Error::Internal("stopped".into())));
        }
        let permit = sh.throttle.gate().await;
        let t0 = Instant::now();
        let r = sh.session.execute_single_page(&sh.stmt, (lo, hi), state.clone()).await;
        let latency = t0.elapsed();
        drop(permit);
        match r {
            Ok((res, next)) => {
                attempts = 0;
                let rows = res.into_rows_result().map_err(|e| Fail::Fatal(Error::remote(range(), e)))?;
                let n = rows.rows_num();
                sh.throttle.on_page(latency, n);
                sh.counters.pages.fetch_add(1, Relaxed);
                if n == 0 {
                    sh.counters.empty_pages.fetch_add(1, Relaxed);
                }
                let mut measured = 0u64;
                for row in rows.rows::<ColumnIterator>().map_err(|e| Fail::Fatal(Error::remote(range(), e)))? {
                    let cols = row.map_err(|e| Fail::Fatal(Error::remote(range(), e)))?;
                    // A row that does not decode: what the server sent is not what was asked for.
                    let t = sh
                        .add_row(cols, buf, &mut scratch, &mut measured)
                        .map_err(|e| Fail::Fatal(Error::remote(range(), e)))?;
                    last_token = Some(t);
                }
                sh.counters.rows.fetch_add(n as u64, Relaxed);
                sh.counters.measured_bytes.fetch_add(measured, Relaxed);
                sh.progress.fetch_add(n as u64, Relaxed);
                if let Some(t) = last_token {
                    sh.ring.fetch_add(ring_units(covered, t), Relaxed);
                    covered = covered.max(t);
                }
                match next.into_paging_control_flow() {
                    // Only the server's "no more pages" ends a range: a page may be short or empty.
                    ControlFlow::Break(()) => {
                        sh.ring.fetch_add(ring_units(covered, hi), Relaxed);
                        sh.flush(task, hi, buf).map_err(ours)?;
                        return Ok(());
                    }
                    ControlFlow::Continue(ps) => state = ps,
                }
                if buf.bytes() >= sh.buf_bytes {
                    let next = resume_point(lo, last_token);
                    sh.flush(task, next, buf).map_err(ours)?;
                }
            }
            Err(e) => {
                let Some(load) = classify(&e) else { return Err(fatal(e)) };
                attempts += 1;
                sh.counters.retries.fetch_add(1, Relaxed);
                sh.throttle.on_error(load, &e);
                if attempts > sh.retries {
                    // Keep what was listed; the caller decides about the rest.
                    let next = resume_point(lo, last_token);
                    sh.flush(task, next, buf).map_err(ours)?;
                    return Err(Fail::Transient { next, error: e.to_string() });
                }
                tokio::time::sleep(BACKOFF.delay(attempts - 1)).await;
            }
        }
    }
}

/// Tokens per unit of [`Scan::ring`]: the ring's 2^64 tokens are 2^40 units.
pub const RING_UNIT: i128 = 1 << 24;

/// The ring units in `(from, to]` (0 when `to <= from`).
pub fn ring_units(from: i64, to: i64) -> u64 {
    ((to as i128 - from as i128).max(0) / RING_UNIT) as u64
}

/// How the reason of a rejected row starts when its key is unusable (not a --key-map reject).
pub const UNUSABLE: &str = "unusable key: ";

/// Where to continue after rows up to `last` were listed: one token earlier, so rows sharing the last
/// token are listed again rather than lost (duplicates are merged away).
fn resume_point(lo: i64, last: Option<i64>) -> i64 {
    last.map_or(lo, |t| t.saturating_sub(1).max(lo))
}

impl Scan {
    /// Decodes one row into `buf`; returns its token. `measured` grows by the bytes of a value fetched
    /// only to be measured.
    #[inline]
    fn add_row(
        &self,
        mut cols: ColumnIterator<'_, '_>,
        buf: &mut RunBuffer,
        scratch: &mut Rendered,
        measured: &mut u64,
    ) -> std::result::Result<i64, String> {
        let mut next = || {
            cols.next()
                .ok_or("short row")
                .and_then(|c| c.map_err(|_| "bad column"))
                .map(|c| c.slice.map(|s| s.as_slice()))
        };
        self.key.begin(scratch);
        let mut unusable = None;
        for _ in 0..self.key.types().len() {
            let cell = next()?.ok_or("null partition key")?;
            if unusable.is_none() {
                if let Err(e) = self.key.push(scratch, cell) {
                    unusable = Some((e, cell));
                }
            }
        }
        let token = be_int(next()?.ok_or("null token")?)?;
        let wt = if self.has_writetime { next()?.map(be_int).transpose()? } else { None };
        let size = match self.size_kind {
            None => None,
            Some(SizeKind::Length) => {
                let n = next()?.map_or(0, |b| b.len() as u64);
                *measured += n;
                Some(n)
            }
            Some(SizeKind::OctetLength) => Some(next()?.map(be_int).transpose()?.map_or(0, |v| v.max(0) as u64)),
            Some(SizeKind::Int) => next()?.map(be_int).transpose()?.map(|v| v.max(0) as u64),
        };
        if self.written_after.is_some() || self.written_before.is_some() {
            match wt {
                None => {
                    self.counters.no_writetime.fetch_add(1, Relaxed);
                }
                Some(w) => {
                    if self.written_after.is_some_and(|a| w < a) || self.written_before.is_some_and(|b| w >= b) {
                        self.counters.outside_window.fetch_add(1, Relaxed);
                        return Ok(token);
                    }
                }
            }
        }
        if let Some((why, cell)) = unusable {
            // No text for the key: the rejects file shows the offending value's bytes in hex.
            let shown = format!("0x{}", crate::hex::encode(cell));
            self.reject_unusable(shown.as_bytes(), token, &why, buf);
            return Ok(token);
        }
        let key = match self.key.finish(scratch) {
            Ok(k) => k,
            Err(why) => {
                self.reject_unusable(scratch.last_key(), token, &why, buf);
                return Ok(token);
            }
        };
        match &self.keymap {
            None => buf.push(key, self.schema, size, wt, None),
            Some(km) => match km.map_into(key, &mut buf.mapped) {
                Ok(()) => {
                    let mapped = std::mem::take(&mut buf.mapped);
                    buf.push(&mapped, self.schema, size, wt, Some(key));
                    buf.mapped = mapped;
                }
                Err(reason) => {
                    self.counters.rejects.fetch_add(1, Relaxed);
                    buf.reject(key, token, &reason);
                }
            },
        }
        Ok(token)
    }

    #[cold]
    fn reject_unusable(&self, key: &[u8], token: i64, why: &str, buf: &mut RunBuffer) {
        self.counters.unusable.fetch_add(1, Relaxed);
        buf.reject(key, token, &format!("{UNUSABLE}{why}"));
    }

    /// Writes the buffer as chunk files and journals that `(next, hi]` is what remains.
    fn flush(&self, task: Task, next: i64, buf: &mut RunBuffer) -> Result<()> {
        let id = self.next_seg.fetch_add(1, Relaxed);
        let keys = buf.write_keys(&self.work.join(format!("chunk-{id:06}.krc")), self.schema)?;
        let rejects = buf.write_rejects(&self.work.join(format!("rejects-{id:06}.krc")))?;
        let rows = buf.rows;
        buf.clear();
        if keys.is_some() || rejects.is_some() || next != task.next {
            self.counters.chunks.fetch_add(keys.is_some() as u64, Relaxed);
            self.journal.append(&Event::Flush(Flush {
                range: (task.range.lo, task.range.hi),
                next,
                keys,
                rejects,
                rows,
            }))?;
        }
        Ok(())
    }
}

/// Schema of reject chunks: key = the original key, mtime = its token, class = the reason.
pub const REJECT_SCHEMA: Schema = Schema(Schema::MTIME | Schema::CLASS);

/// One worker's records between flushes: the keys and the rejects, each a [`RecordBuffer`] (the
/// sorter's: sorted by prefix settling, first pushed wins), reused.
#[derive(Default)]
pub struct RunBuffer {
    data: RecordBuffer,
    rej: RecordBuffer,
    /// One record's encoded metadata.
    meta: Vec<u8>,
    mapped: Vec<u8>,
    rows: u64,
}

impl RunBuffer {
    fn bytes(&self) -> usize {
        self.data.bytes() + self.rej.bytes()
    }
    fn clear(&mut self) {
        self.data.clear();
        self.rej.clear();
        self.rows = 0;
    }

    #[inline]
    fn push(&mut self, key: &[u8], schema: Schema, size: Option<u64>, mtime: Option<i64>, origin: Option<&[u8]>) {
        self.meta.clear();
        if !schema.is_keys_only() {
            MetaRef { size, mtime, origin, ..Default::default() }.only(schema).encode(&mut self.meta);
        }
        self.data.push(key, &self.meta, schema);
        self.rows += 1;
    }

    fn reject(&mut self, key: &[u8], token: i64, reason: &str) {
        self.meta.clear();
        MetaRef { mtime: Some(token), class: Some(reason.as_bytes()), ..Default::default() }.encode(&mut self.meta);
        self.rej.push(key, &self.meta, REJECT_SCHEMA);
        self.rows += 1;
    }

    fn write_keys(&mut self, path: &std::path::Path, schema: Schema) -> Result<Option<String>> {
        write_sorted(&mut self.data, path, schema)
    }
    fn write_rejects(&mut self, path: &std::path::Path) -> Result<Option<String>> {
        write_sorted(&mut self.rej, path, REJECT_SCHEMA)
    }
}

/// Sorts `buf` by key (ties: first pushed wins) and writes a chunk; `None` if empty.
fn write_sorted(buf: &mut RecordBuffer, path: &std::path::Path, schema: Schema) -> Result<Option<String>> {
    Ok(buf.sort_into_chunk(path, schema)?.map(|_| path.file_name().unwrap().to_string_lossy().into_owned()))
}

/// Concurrency limit (the crate's AIMD [`Limiter`] over pages in flight, one "page" latency source
/// smoothed with weight 0.2), pauses and the rows/s cap, shared by all workers.
pub struct Throttle {
    aimd: Limiter,
    /// `--rate` in rows/s: each page reserves a full page of rows and gives back what it did not use.
    rate: Option<Bucket>,
    pub page_size: usize,
}

impl std::ops::Deref for Throttle {
    type Target = Limiter;
    /// The limiter's state and counters (`limit()`, `events`, `min_limit`).
    fn deref(&self) -> &Limiter {
        &self.aimd
    }
}

/// Weight of a new page latency: pages are alike, so the scan reacts faster than repair does.
const EWMA_WEIGHT: f64 = 0.2;

/// Sleep before retrying a page: the first retry waits 100..150 ms, at most 3.2..4.8 s.
const BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(5), max_doublings: 5, jitter: [1.0, 1.5] };

impl Throttle {
    pub fn new(max: usize, rate: Option<f64>, page_size: usize, target: Duration, quiet: bool) -> Throttle {
        Throttle {
            aimd: Limiter::new("keyrecon-list-cassandra", max, target, &["page"], EWMA_WEIGHT, quiet),
            rate: rate.map(Bucket::new),
            page_size,
        }
    }

    /// Waits until a page request may be sent: fewer than `limit` in flight, no pause, and the rate
    /// allows it. The request counts as in flight (also while it waits for the rate) until the
    /// returned guard is dropped.
    async fn gate(&self) -> Permit<'_> {
        let permit = self.aimd.acquire().await;
        if let Some(b) = &self.rate {
            // Reserve a full page of rows; `on_page` gives back what the page did not use.
            b.take(self.page_size as f64).await;
        }
        permit
    }

    fn on_page(&self, latency: Duration, rows: usize) {
        if let Some(b) = &self.rate {
            b.give_back(self.page_size.saturating_sub(rows) as f64);
        }
        self.aimd.observe(0, latency);
    }

    fn on_error(&self, load: bool, e: &ExecutionError) {
        if load {
            self.aimd.overload(&format!("timeout/overload: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkCursor;
    use crate::merge::SortedCursor;
    use crate::record::MetaRef;

    #[test]
    fn be_ints_and_resume_points() {
        assert_eq!(be_int(&[0xff, 0xfe]).unwrap(), -2);
        assert_eq!(be_int(&7i64.to_be_bytes()).unwrap(), 7);
        assert_eq!(be_int(&i64::MIN.to_be_bytes()).unwrap(), i64::MIN);
        assert!(be_int(&[]).is_err());
        assert_eq!(resume_point(10, None), 10);
        assert_eq!(resume_point(10, Some(11)), 10);
        assert_eq!(resume_point(10, Some(50)), 49);
        assert_eq!(resume_point(i64::MIN, Some(i64::MIN + 1)), i64::MIN);
    }

    #[test]
    fn run_buffer_sorts_dedups_and_encodes_meta() {
        let d = tempfile::tempdir().unwrap();
        let schema = Schema(Schema::SIZE | Schema::MTIME | Schema::ORIGIN);
        let mut b = RunBuffer::default();
        b.push(b"b", schema, Some(3), Some(-5), Some(b"B_1"));
        b.push(b"a", schema, None, Some(7), Some(b"A"));
        b.push(b"b", schema, Some(9), None, Some(b"other"));
        b.reject(b"zz", -42, "bad");
        let p = d.path().join("s.krc");
        b.write_keys(&p, schema).unwrap();
        let mut c = ChunkCursor::open(&p).unwrap();
        let mut got = Vec::new();
        while c.advance().unwrap() {
            let m = MetaRef::decode(c.meta()).unwrap();
            got.push((c.key().to_vec(), m.size, m.mtime, m.origin.map(<[u8]>::to_vec)));
        }
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), None, Some(7), Some(b"A".to_vec())),
                (b"b".to_vec(), Some(3), Some(-5), Some(b"B_1".to_vec()))
            ]
        );
        let r = d.path().join("r.krc");
        b.write_rejects(&r).unwrap();
        let mut c = ChunkCursor::open(&r).unwrap();
        assert!(c.advance().unwrap());
        let m = MetaRef::decode(c.meta()).unwrap();
        assert_eq!((c.key(), m.mtime, m.class), (&b"zz"[..], Some(-42), Some(&b"bad"[..])));
    }
}
