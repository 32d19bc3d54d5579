//! keyrecon-list-cassandra's engine: list every partition key of a Cassandra table (with optional size
//! and writetime) into a chunk set, gently, resumably and exactly.
//!
//! ```text
//!  connect (session) ─► ring tokens ─► split_ring (ring) ─► queue ─► workers (scan) ─► chunks
//!                                                                        │ journal (checkpoint)
//!  finish: merge_into_set of all chunks (dedup) ─► disjoint chunk set + rejects.csv + summary.json
//! ```
//! Why chunks in a work directory and a final merge rather than one in-memory sorter: rows arrive in
//! token order, i.e. in random key order, and a kill -9 must not lose what was listed. Each worker
//! sorts what it buffered (at most `mem / concurrency` bytes) into a chunk file and journals it, so a
//! resume only re-lists the unflushed tail of unfinished ranges, and memory stays bounded whatever the
//! table size. The merge at the end (the engine's [`merge_into_set`]: multi-level when there are more
//! chunks than it opens at once, I/O bound) produces a *disjoint* chunk set, so every later
//! keyrecon-diff reads it sequentially instead of k-way merging thousands of overlapping per-range
//! chunks each time. Because the chunks are merged in a fixed order (by range, then position) and
//! duplicates are dropped, an interrupted and resumed run produces the same chunk set as a clean one.
//!
//! Sharding (`--shard I/N`): the scan covers only shard I's slice of the token ring
//! ([`ring::shard_slice`]); the journal's plan records the shard, so a resume with another is refused.
//! The manifest's `info.listing` and summary.json say what was listed ([`Listing`]: table, key map,
//! writetime window, shard), so keyrecon-diff can check that it was given every shard exactly once.
//!
//! Records: key = the (mapped) key; meta per [`Schema`]: `size` (`--size-of`, measured by the server
//! where it has `octet_length`, else fetched and measured here, see [`session::prepare_scan`]; or
//! `--size-column`; summary.json `size` says which and the blob bytes it moved),
//! `mtime` = writetime in microseconds (`--writetime-of`), `origin` = the Cassandra key when
//! `--key-map` is given (always present then, even when the mapping left the key unchanged).
//!
//! The table first ([`table`]): `--key-column` must be its partition key, every column in order. A
//! key of several columns is written by a template ([`pk`]: `{a}/{b}` by default), checked row by row
//! to split back into the same columns; a row whose key would not is rejected (rejects.csv, exit 2).
//! A table with clustering columns is listed a partition at a time (`SELECT DISTINCT` of the key and
//! its token), never row by row; a size or writetime is then taken only from a column with one value
//! per partition (a static column), see [`table::TableDef::per_partition`].

pub mod checkpoint;
pub mod pk;
pub mod ring;
pub mod scan;
pub mod session;
pub mod table;

use crate::chunk::listing::{Filters, Listing, Source};
use crate::chunk::set::Producer;
use crate::chunk::ChunkCursor;
use crate::chunk::ChunkSetWriter;
use crate::chunk::Shard;
use crate::error::{Error, IoContext, Result};
use crate::keymap::KeyMap;
use crate::merge::Merge;
use crate::merge::SortedCursor;
use crate::progress::{peak_rss_bytes, Progress, Unit};
use crate::record::{MetaRef, Schema};
use crate::sort::{fanin, merge_into_set, reduce, MergeStats};
use crate::summary::Summary;
use checkpoint::{Journal, Plan, RangeState, Replay, WORK_DIR};
use pk::{KeyCodec, KeyFormat, KeyType};
use scan::{Counters, Scan, Task, Throttle};
use serde::Serialize;
use session::{Connect, Selection, SizeSource};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::TableDef;

pub const TOOL: &str = "keyrecon-list-cassandra";

/// A validated listing job.
pub struct ListConfig {
    pub connect: Connect,
    pub selection: Selection,
    /// The key's columns and text form (the same columns and template as `selection`).
    pub key: KeyFormat,
    pub out: PathBuf,
    pub resume: bool,
    pub force: bool,
    /// `--shard I/N`: list only this shard's slice of the token ring (`None`: the whole ring).
    pub shard: Option<Shard>,
    /// Target number of token ranges of the ring, or of the shard's slice (at least one per vnode range).
    pub splits: usize,
    pub page_size: i32,
    pub concurrency: usize,
    /// Rows per second cap over all workers.
    pub rate: Option<f64>,
    /// Smoothed page latency above which concurrency is halved.
    pub latency_target: Duration,
    pub retries: u32,
    pub split_depth: u32,
    pub keymap: Option<KeyMap>,
    /// Keep rows with writetime >= this (µs).
    pub written_after: Option<i64>,
    /// Keep rows with writetime < this (µs).
    pub written_before: Option<i64>,
    /// Memory for buffered rows over all workers.
    pub mem: usize,
    pub chunk_bytes: u64,
    pub quiet: bool,
    /// The command line with secrets removed (for the manifest).
    pub args: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ListSummary {
    pub keyspace: String,
    pub table: String,
    /// What was listed (table, key map, writetime window, shard); also the manifest's `info.listing`.
    pub listing: Option<Listing>,
    pub out: String,
    pub schema: String,
    pub complete: bool,
    /// Rows received from Cassandra in this run (a resumed run counts only its own).
    pub rows_read: u64,
    /// Records in the chunk set (distinct comparison keys).
    pub records: u64,
    /// Rows listed more than once (re-listed after a retry/resume) or mapped onto an existing key.
    pub duplicates: u64,
    /// Distinct rejected keys (rows of rejects.csv): by --key-map, and unusable keys.
    pub rejects: u64,
    /// Rows whose partition key could not be written as a key that splits back into its columns
    /// (in rejects.csv with the reason; they make the exit status 2).
    pub unusable_keys: u64,
    /// Each partition was read once (`SELECT DISTINCT`): the table has clustering columns.
    pub distinct: bool,
    /// How sizes were obtained and what that moved (absent without --size-of/--size-column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeReport>,
    pub outside_window: u64,
    pub no_writetime: u64,
    pub pages: u64,
    pub empty_pages: u64,
    pub retries: u64,
    pub ranges: u64,
    pub ranges_resumed_done: u64,
    pub ranges_split: u64,
    pub failed_ranges: Vec<FailedRange>,
    pub throttle_events: u64,
    pub min_concurrency: usize,
    pub resumed: bool,
    pub timings: Timings,
    pub peak_rss_bytes: u64,
}

/// summary.json `size`: how each key's size was obtained, decided once at start.
#[derive(Debug, Serialize)]
pub struct SizeReport {
    /// The column measured (`--size-of`) or read (`--size-column`).
    pub column: String,
    pub method: SizeMethod,
    /// Bytes of values transferred only to be measured, in this run (0 unless `fetch`).
    pub blob_bytes_moved: u64,
    /// The server's answer to `octet_length(column)`, when it refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub octet_length_refused: Option<String>,
}

/// How the sizes were obtained (summary.json and the manifest's `size_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeMethod {
    /// The server measured each value (`octet_length`): no blob moved.
    OctetLength,
    /// The server has no octet_length: every value was transferred and measured here.
    Fetch,
    /// Read from the integer column (`--size-column`).
    Column,
}

impl SizeReport {
    fn new(size: &SizeSource, measure: session::Measure, refused: Option<String>) -> SizeReport {
        let (column, method) = match (size, measure) {
            (SizeSource::BlobLength(c), session::Measure::OctetLength) => (c, SizeMethod::OctetLength),
            (SizeSource::BlobLength(c), session::Measure::Fetch) => (c, SizeMethod::Fetch),
            (SizeSource::Column(c), _) => (c, SizeMethod::Column),
        };
        SizeReport { column: column.clone(), method, blob_bytes_moved: 0, octet_length_refused: refused }
    }

    /// The one line that says a listing will move every blob, and what to do instead.
    fn warning(&self) -> Option<String> {
        (self.method == SizeMethod::Fetch).then(|| {
            format!(
                "WARNING: --size-of {c} fetches every value of {c} to measure it: the scan moves the column's \
                 whole data over the network (summary.json size.blob_bytes_moved says how much), because this \
                 server has no octet_length() (it answered: {}; Cassandra has it from 6.0). The cheap way is \
                 --size-column with a length column.",
                self.octet_length_refused.as_deref().unwrap_or("nothing"),
                c = self.column
            )
        })
    }

    /// For the summary paragraph.
    fn describe(&self) -> String {
        match self.method {
            SizeMethod::OctetLength => format!(" Sizes: octet_length({}) on the server, no blob moved.", self.column),
            SizeMethod::Fetch => format!(
                " Sizes: every {} value fetched and measured, {} moved (the server has no octet_length).",
                self.column,
                crate::progress::bytes(self.blob_bytes_moved as f64)
            ),
            SizeMethod::Column => String::new(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct FailedRange {
    pub lo: i64,
    pub hi: i64,
    pub error: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub connect_ms: u64,
    pub scan_ms: u64,
    pub merge_ms: u64,
    pub total_ms: u64,
    pub rows_per_sec: f64,
}

impl Summary for ListSummary {
    /// 0 when every range was listed and every key could be written, else 2 (rerun with --resume;
    /// see rejects.csv).
    fn exit_code(&self) -> i32 {
        if self.complete && self.failed_ranges.is_empty() && self.unusable_keys == 0 {
            0
        } else {
            2
        }
    }

    fn paragraph(&self) -> String {
        let failed = if self.failed_ranges.is_empty() {
            String::new()
        } else {
            let list: Vec<String> =
                self.failed_ranges.iter().map(|f| format!("({}, {}]: {}", f.lo, f.hi, f.error)).collect();
            format!(" NOT LISTED ({} ranges): {}.", self.failed_ranges.len(), list.join("; "))
        };
        let shard = match self.listing.as_ref().and_then(|l| l.shard) {
            Some(s) => format!(" shard {s}"),
            None => String::new(),
        };
        let unusable = if self.unusable_keys == 0 {
            String::new()
        } else {
            format!(
                " {} KEYS NOT LISTED: they would not split back into their columns (see rejects.csv).",
                self.unusable_keys
            )
        };
        format!(
            "{}.{}{shard}: {} {} read in {} pages over {} ranges{}; {} records in {} ({} duplicates, {} rejected, {} outside the writetime window); {} retries, {} ranges split, {} throttle events (lowest concurrency {}); scan {:.2}s ({}), merge {:.2}s, peak RSS {} MiB.{}{}{unusable}",
            self.keyspace,
            self.table,
            self.rows_read,
            if self.distinct { "partitions" } else { "rows" },
            self.pages,
            self.ranges,
            if self.resumed {
                format!(" (resumed, {} ranges were already done)", self.ranges_resumed_done)
            } else {
                String::new()
            },
            self.records,
            self.out,
            self.duplicates,
            self.rejects,
            self.outside_window,
            self.retries,
            self.ranges_split,
            self.throttle_events,
            self.min_concurrency,
            self.timings.scan_ms as f64 / 1000.0,
            crate::progress::rate(self.timings.rows_per_sec, "rows"),
            self.timings.merge_ms as f64 / 1000.0,
            self.peak_rss_bytes >> 20,
            self.size.as_ref().map(SizeReport::describe).unwrap_or_default(),
            failed
        )
    }
}

fn schema_of(cfg: &ListConfig) -> Schema {
    let mut s = 0;
    if cfg.selection.size.is_some() {
        s |= Schema::SIZE;
    }
    if cfg.selection.writetime_of.is_some() {
        s |= Schema::MTIME;
    }
    if cfg.keymap.is_some() {
        s |= Schema::ORIGIN;
    }
    Schema(s)
}

/// What must not change between a run and its resume. The shard is there only when given, so journals
/// of unsharded runs written before `--shard` existed still resume.
fn params(cfg: &ListConfig, schema: Schema) -> serde_json::Value {
    let mut p = serde_json::json!({
        "selection": cfg.selection,
        "key_map": cfg.keymap.as_ref().map(|k| k.source()),
        "written_after": cfg.written_after,
        "written_before": cfg.written_before,
        "schema": schema.to_string(),
    });
    if let Some(s) = cfg.shard {
        p["shard"] = serde_json::json!(s.to_string());
    }
    p
}

/// What this run lists, for the manifest and the summary.
fn listing(cfg: &ListConfig) -> Listing {
    Listing {
        source: Source::Cassandra,
        what: format!("{}.{}", cfg.selection.keyspace, cfg.selection.table),
        filters: Filters {
            key_template: (!cfg.key.is_raw()).then(|| cfg.key.template().to_string()),
            key_map: cfg.keymap.as_ref().map(|k| k.source().to_string()),
            written_after: cfg.written_after,
            written_before: cfg.written_before,
            ..Default::default()
        },
        shard: cfg.shard,
    }
}

/// The part of the ring this run lists: the shard's slice, or the whole ring.
fn slice(cfg: &ListConfig) -> ring::TokenRange {
    cfg.shard.map_or(ring::TokenRange::ring(), ring::shard_slice)
}

/// Runs the listing. Errors that stop the run are returned; failed ranges are in the summary.
pub fn list(cfg: ListConfig) -> Result<ListSummary> {
    let t0 = Instant::now();
    let schema = schema_of(&cfg);
    let work = cfg.out.join(WORK_DIR);
    prepare_out(&cfg, &work)?;
    let rt = crate::rt::runtime()?;
    let mut sum = ListSummary {
        keyspace: cfg.selection.keyspace.clone(),
        table: cfg.selection.table.clone(),
        out: cfg.out.display().to_string(),
        listing: Some(listing(&cfg)),
        schema: schema.to_string(),
        resumed: cfg.resume,
        ..Default::default()
    };
    let scanned = rt.block_on(scan_all(&cfg, schema, &work, &mut sum))?;
    sum.timings.connect_ms = scanned.connect_ms;
    sum.timings.scan_ms = scanned.scan_ms;
    drop(rt);

    // Finish: merge what the journal says was listed.
    let t_merge = Instant::now();
    let (_, replay) = Journal::open(&work)?;
    sum.failed_ranges = replay
        .ranges
        .iter()
        .filter_map(|(r, st)| match st {
            RangeState::Failed { next, error } => Some(FailedRange { lo: *next, hi: r.hi, error: error.clone() }),
            _ => None,
        })
        .collect();
    let unfinished = replay.ranges.values().filter(|s| matches!(s, RangeState::Pending { .. })).count();
    sum.ranges = replay.ranges.len() as u64;
    sum.complete = unfinished == 0;
    let (records, duplicates, rejects) = merge_chunks(&cfg, schema, &work, &replay, &mut sum)?;
    sum.records = records;
    sum.duplicates = duplicates;
    sum.rejects = rejects;
    sum.timings.merge_ms = t_merge.elapsed().as_millis() as u64;
    sum.timings.total_ms = t0.elapsed().as_millis() as u64;
    sum.timings.rows_per_sec = sum.rows_read as f64 / (sum.timings.scan_ms.max(1) as f64 / 1000.0);
    sum.peak_rss_bytes = peak_rss_bytes();
    crate::summary::write_json(&cfg.out, &sum)?;
    if sum.complete && sum.failed_ranges.is_empty() {
        // Everything is in the chunk set now (unusable keys in rejects.csv); the work directory only
        // mattered for resuming.
        std::fs::remove_dir_all(&work).ctx(&work)?;
    }
    Ok(sum)
}

/// Checks the output directory against `--resume`/`--force`.
fn prepare_out(cfg: &ListConfig, work: &Path) -> Result<()> {
    let has_work = work.join(checkpoint::JOURNAL).exists();
    let has_set = cfg.out.join(crate::chunk::set::MANIFEST).exists();
    if cfg.resume {
        if !has_work {
            return Err(Error::Usage(format!(
                "{}: nothing to resume (no {}/{})",
                cfg.out.display(),
                WORK_DIR,
                checkpoint::JOURNAL
            )));
        }
        return Ok(());
    }
    if (has_work || has_set) && !cfg.force {
        let what = if has_work { "an unfinished listing (continue it with --resume)" } else { "a chunk set" };
        return Err(Error::Usage(format!("{}: already holds {what}; pass --force to start over", cfg.out.display())));
    }
    if work.exists() {
        std::fs::remove_dir_all(work).ctx(work)?;
    }
    Ok(())
}

struct Scanned {
    connect_ms: u64,
    scan_ms: u64,
}

async fn scan_all(cfg: &ListConfig, schema: Schema, work: &Path, sum: &mut ListSummary) -> Result<Scanned> {
    let t0 = Instant::now();
    let session = session::connect(&cfg.connect).await?;
    let sel = &cfg.selection;
    let table = TableDef::describe(&session, &sel.keyspace, &sel.table).await?;
    table.check_key(cfg.key.columns())?;
    // A wide partition is listed once; a value it gives must be one per partition.
    if let Some(w) = &sel.writetime_of {
        table.per_partition("--writetime-of", w, "Name a static column, or list without --writetime-of.")?;
    }
    match &sel.size {
        Some(SizeSource::BlobLength(c)) => table.per_partition(
            "--size-of",
            c,
            "Name a static column, --size-column with a static length column, or list without a size.",
        )?,
        Some(SizeSource::Column(c)) => {
            table.per_partition("--size-column", c, "Name a static length column, or list without a size.")?
        }
        None => {}
    }
    sum.distinct = table.is_wide();
    let session::Prepared { mut stmt, measure, refused } = session::prepare_scan(&session, sel, sum.distinct).await?;
    sum.size = sel.size.as_ref().map(|s| SizeReport::new(s, measure, refused));
    if let Some(warning) = sum.size.as_ref().and_then(SizeReport::warning) {
        // Loud even with -q: it is what the listing costs the cluster, not progress.
        eprintln!("{TOOL}: {warning}");
    }
    stmt.set_page_size(cfg.page_size);
    // A token-range read changes nothing: safe to retry anywhere.
    stmt.set_is_idempotent(true);
    let guard = stmt.get_current_result_set_col_specs();
    let specs = guard.get();
    let n_key = cfg.key.columns().len();
    let mut types = Vec::with_capacity(n_key);
    for (i, c) in cfg.key.columns().iter().enumerate() {
        let t = KeyType::of(specs.get_by_index(i).unwrap().typ())
            .map_err(|e| Error::Schema { table: table.name.clone(), msg: format!("{c}: {e}") })?;
        types.push(t);
    }
    let wt_idx = n_key + 1;
    let size_idx = wt_idx + cfg.selection.writetime_of.is_some() as usize;
    let size_kind = match &cfg.selection.size {
        None => None,
        Some(s) => {
            Some(scan::size_kind(specs.get_by_index(size_idx).unwrap().typ(), s, measure).map_err(Error::Usage)?)
        }
    };
    let connect_ms = t0.elapsed().as_millis() as u64;

    // The plan: fresh from the ring, or replayed from the journal (with the share of the ring it listed).
    let mut ring_done = 0u64;
    let (journal, tasks) = if cfg.resume {
        let (j, replay) = Journal::open(work)?;
        let plan = replay.plan.as_ref().unwrap();
        let want = params(cfg, schema);
        let shard_of = |p: &serde_json::Value| p.get("shard").and_then(|s| s.as_str()).map(String::from);
        let (was, now) = (shard_of(&plan.params), shard_of(&want));
        if was != now {
            return Err(Error::Usage(format!(
                "--resume: the interrupted run listed {}.{}{}, this run asks for {}; resume it with the same \
                 --shard (or list this shard into another --out)",
                cfg.selection.keyspace,
                cfg.selection.table,
                was.map_or(" (the whole table, no --shard)".into(), |s| format!(" shard {s}")),
                now.map_or("the whole table (no --shard)".into(), |s| format!("shard {s}"))
            )));
        }
        if plan.params != want {
            return Err(Error::Usage(format!(
                "--resume: this run's table, columns, key map or window differ from the interrupted run's:\n  was {}\n  now {}",
                plan.params, want
            )));
        }
        remove_orphans(work, &replay)?;
        let mut tasks = Vec::new();
        for (r, st) in &replay.ranges {
            match st {
                RangeState::Pending { next } | RangeState::Failed { next, .. } => {
                    ring_done += scan::ring_units(r.lo, *next);
                    tasks.push(Task { range: *r, next: *next, depth: 0 })
                }
                RangeState::Done => {
                    ring_done += scan::ring_units(r.lo, r.hi);
                    sum.ranges_resumed_done += 1
                }
            }
        }
        if !cfg.quiet {
            eprintln!(
                "{TOOL}: resuming: {} of {} ranges done, {} to list",
                sum.ranges_resumed_done,
                replay.ranges.len(),
                tasks.len()
            );
        }
        (j, tasks)
    } else {
        let tokens: Vec<i64> =
            session.get_cluster_state().replica_locator().ring().iter().map(|(t, _)| t.value()).collect();
        let ranges = ring::split_ring(&tokens, cfg.splits, slice(cfg));
        ring::check_cover(&ranges, slice(cfg)).map_err(Error::Internal)?;
        let plan = Plan { params: params(cfg, schema), ranges: ranges.iter().map(|r| (r.lo, r.hi)).collect() };
        let j = Journal::create(work, plan)?;
        (j, ranges.iter().map(|r| Task { range: *r, next: r.lo, depth: 0 }).collect())
    };
    let next_seg = max_chunk_id(work)?.map_or(0, |m| m + 1);

    let ring = Arc::new(AtomicU64::new(ring_done));
    let listed = ring.clone();
    // The share of what this run lists: the ring, or the shard's slice of it.
    let units = scan::ring_units(slice(cfg).lo, slice(cfg).hi).max(1) as f64;
    let of = if cfg.shard.is_some() { "the shard's slice of the ring" } else { "the token ring" };
    let progress = Progress::spec(TOOL, listing(cfg).to_string(), Unit::Items("rows"))
        .fraction_of(of, move || Some(listed.load(Relaxed) as f64 / units))
        .start(cfg.quiet);
    let n_tasks = tasks.len();
    let sh = Arc::new(Scan {
        session,
        stmt,
        key: KeyCodec::new(cfg.key.clone(), types),
        has_writetime: cfg.selection.writetime_of.is_some(),
        size_kind,
        keymap: cfg.keymap.clone(),
        written_after: cfg.written_after,
        written_before: cfg.written_before,
        schema,
        work: work.to_path_buf(),
        journal,
        next_seg: AtomicU64::new(next_seg),
        retries: cfg.retries,
        split_depth: cfg.split_depth,
        buf_bytes: (cfg.mem / cfg.concurrency.max(1)).max(64 << 10),
        throttle: Throttle::new(
            cfg.concurrency.max(1),
            cfg.rate,
            cfg.page_size.max(1) as usize,
            cfg.latency_target,
            cfg.quiet,
        ),
        counters: Counters::default(),
        queue: Mutex::new(VecDeque::from(tasks)),
        outstanding: AtomicUsize::new(n_tasks),
        failed: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        stop: AtomicBool::new(false),
        progress: progress.counter.clone(),
        ring,
        quiet: cfg.quiet,
    });
    let t_scan = Instant::now();
    let workers: Vec<_> = (0..cfg.concurrency.max(1)).map(|_| tokio::spawn(scan::worker(sh.clone()))).collect();
    for w in workers {
        w.await.map_err(|e| Error::Internal(format!("scan worker panicked: {e}")))?;
    }
    progress.finish();
    let scan_ms = t_scan.elapsed().as_millis() as u64;
    let c = &sh.counters;
    sum.rows_read = c.rows.load(Relaxed);
    sum.rejects = c.rejects.load(Relaxed);
    sum.outside_window = c.outside_window.load(Relaxed);
    sum.no_writetime = c.no_writetime.load(Relaxed);
    if let Some(s) = &mut sum.size {
        s.blob_bytes_moved = c.measured_bytes.load(Relaxed);
    }
    sum.pages = c.pages.load(Relaxed);
    sum.empty_pages = c.empty_pages.load(Relaxed);
    sum.retries = c.retries.load(Relaxed);
    sum.ranges_split = c.ranges_split.load(Relaxed);
    sum.throttle_events = sh.throttle.events.load(Relaxed);
    sum.min_concurrency = sh.throttle.min_limit.load(Relaxed);
    if let Some(e) = sh.fatal.lock().unwrap().take() {
        return Err(Error::context(
            format!(
                "listing {}.{} stopped (rerun with --resume to continue)",
                cfg.selection.keyspace, cfg.selection.table
            ),
            e,
        ));
    }
    Ok(Scanned { connect_ms, scan_ms })
}

fn chunk_id(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("chunk-").or_else(|| name.strip_prefix("rejects-"))?;
    rest.strip_suffix(".krc")?.parse().ok()
}

fn max_chunk_id(work: &Path) -> Result<Option<u64>> {
    let mut max = None;
    for e in std::fs::read_dir(work).ctx(work)? {
        let name = e.ctx(work)?.file_name().to_string_lossy().into_owned();
        if let Some(id) = chunk_id(&name) {
            max = Some(max.map_or(id, |m: u64| m.max(id)));
        }
    }
    Ok(max)
}

/// Deletes chunk files the journal does not name (written just before a kill) and temporaries.
fn remove_orphans(work: &Path, replay: &Replay) -> Result<()> {
    let known: std::collections::HashSet<&str> =
        replay.flushes.iter().flat_map(|s| s.keys.iter().chain(s.rejects.iter())).map(String::as_str).collect();
    for e in std::fs::read_dir(work).ctx(work)? {
        let p = e.ctx(work)?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if (chunk_id(&name).is_some() && !known.contains(name.as_str())) || name.ends_with(".tmp") {
            std::fs::remove_file(&p).ctx(&p)?;
        }
    }
    Ok(())
}

/// Merges the journal's chunks into the chunk set and writes rejects.csv.
/// Returns (records, duplicates, rejects).
fn merge_chunks(
    cfg: &ListConfig,
    schema: Schema,
    work: &Path,
    replay: &Replay,
    sum: &mut ListSummary,
) -> Result<(u64, u64, u64)> {
    // A fixed order (range, then position in it) makes "first wins" among equal keys deterministic.
    let mut flushes: Vec<&checkpoint::Flush> = replay.flushes.iter().collect();
    flushes.sort_by_key(|s| (s.range.0, s.next));
    let keys: Vec<PathBuf> = flushes.iter().filter_map(|s| s.keys.as_ref()).map(|n| work.join(n)).collect();
    let rejects: Vec<PathBuf> = flushes.iter().filter_map(|s| s.rejects.as_ref()).map(|n| work.join(n)).collect();

    let out = ChunkSetWriter::create(&cfg.out, schema, true)?;
    let merged = merge_into_set(keys, work, schema, &out, cfg.chunk_bytes, cfg.mem)?;
    let (records, dups) = (merged.records, merged.duplicates);

    let (n_rejects, unusable) = write_rejects(
        &cfg.out.join("rejects.csv"),
        &format!("{}.{}", cfg.selection.keyspace, cfg.selection.table),
        rejects,
        work,
        cfg.mem,
    )?;
    let info = serde_json::json!({
        Listing::KEY: listing(cfg),
        "source": "cassandra",
        "keyspace": cfg.selection.keyspace,
        "table": cfg.selection.table,
        "key_column": cfg.selection.key_columns.join(","),
        "key_template": (!cfg.key.is_raw()).then(|| cfg.key.template()),
        "distinct": sum.distinct,
        "writetime_of": cfg.selection.writetime_of,
        "size": cfg.selection.size,
        "size_method": sum.size.as_ref().map(|s| s.method),
        "key_map": cfg.keymap.as_ref().map(|k| k.source()),
        "written_after": cfg.written_after,
        "written_before": cfg.written_before,
        "complete": sum.complete && sum.failed_ranges.is_empty(),
        "failed_ranges": sum.failed_ranges,
        "rejects": n_rejects,
        "unusable_keys": unusable,
    });
    let producer = Producer { tool: TOOL.into(), version: env!("CARGO_PKG_VERSION").into(), args: cfg.args.clone() };
    out.finish(producer, true, info)?;
    // Counted from what was merged, so a resumed run counts the rows its first part rejected too.
    sum.unusable_keys = unusable;
    Ok((records, dups, n_rejects))
}

/// rejects.csv: `table,token,reason,key`, sorted by key. Returns how many (0: no file), and how many of
/// them are unusable keys (reason starting with [`scan::UNUSABLE`]) rather than --key-map rejects.
fn write_rejects(path: &Path, table: &str, chunks: Vec<PathBuf>, work: &Path, mem: usize) -> Result<(u64, u64)> {
    let mut stats = MergeStats::default();
    let chunks = reduce(chunks, fanin(mem), work, scan::REJECT_SCHEMA, false, &mut stats)?;
    let cursors = chunks.iter().map(|(p, _)| ChunkCursor::open(p)).collect::<Result<Vec<_>>>()?;
    let mut m = Merge::new(cursors, true);
    let mut w: Option<csv::Writer<std::fs::File>> = None;
    let mut unusable = 0;
    let err = |e: csv::Error| Error::csv(path, e);
    while m.advance()? {
        if w.is_none() {
            let mut nw = csv::Writer::from_writer(std::fs::File::create(path).ctx(path)?);
            nw.write_record(["table", "token", "reason", "key"]).map_err(err)?;
            w = Some(nw);
        }
        let meta = MetaRef::decode(m.meta()).map_err(|e| Error::corrupt(path, 0, e))?;
        let token = meta.mtime.unwrap_or_default().to_string();
        unusable += meta.class.is_some_and(|c| c.starts_with(scan::UNUSABLE.as_bytes())) as u64;
        w.as_mut()
            .unwrap()
            .write_record([table.as_bytes(), token.as_bytes(), meta.class.unwrap_or_default(), m.key()])
            .map_err(err)?;
    }
    if let Some(mut w) = w {
        w.flush().ctx(path)?;
    }
    Ok((m.records(), unusable))
}

/// Removes the values of secret-bearing flags from a command line (for manifests and logs).
pub fn redacted_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("<redacted>".into());
            hide_next = false;
        } else if a == "--password" {
            out.push(a);
            hide_next = true;
        } else if a.starts_with("--password=") {
            out.push("--password=<redacted>".into());
        } else {
            out.push(a);
        }
    }
    out
}

/// Parses a writetime cutoff: microseconds since the epoch (Cassandra's writetime unit) or an RFC 3339
/// UTC/offset time like `2024-03-01T12:00:00Z`, `2024-03-01T12:00:00.5+01:00`, `2024-03-01`.
pub fn parse_writetime(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Ok(v);
    }
    let bad = || format!("{s:?} is not a time (use 2024-03-01T12:00:00Z or microseconds since the epoch)");
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let (mut secs, mut micros) = (0i64, 0i64);
    let mut rest = &s[10..];
    if !rest.is_empty() {
        if !rest.starts_with(['T', 't', ' ']) || rest.len() < 9 {
            return Err(bad());
        }
        let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        secs = h * 3600 + mi * 60 + se;
        rest = &s[19..];
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            let digits = &f[..n];
            let mut frac = format!("{digits:0<6}");
            frac.truncate(6);
            micros = frac.parse().map_err(|_| bad())?;
            rest = &f[n..];
        }
        match rest {
            "Z" | "z" | "" => {}
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
                let off =
                    o[1..3].parse::<i64>().map_err(|_| bad())? * 3600 + o[4..6].parse::<i64>().map_err(|_| bad())? * 60;
                secs -= if o.starts_with('+') { off } else { -off };
            }
            _ => return Err(bad()),
        }
    }
    Ok((crate::civil::days_from_civil(y, mo, d) * 86400 + secs) * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn writetime_cutoffs_parse() {
        assert_eq!(parse_writetime("1700000000000000").unwrap(), 1_700_000_000_000_000);
        assert_eq!(parse_writetime("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000);
        assert_eq!(parse_writetime("2023-11-14T23:13:20.25+01:00").unwrap(), 1_700_000_000_250_000);
        assert_eq!(parse_writetime("1970-01-01").unwrap(), 0);
        assert_eq!(parse_writetime("1969-12-31T23:59:59Z").unwrap(), -1_000_000);
        assert!(parse_writetime("yesterday").is_err());
        assert!(parse_writetime("2023-13-01").is_err());
    }
    #[test]
    fn passwords_are_redacted() {
        let a = redacted_args([
            "--password".to_string(),
            "s3cret".into(),
            "--password=x".into(),
            "--keyspace".into(),
            "ks".into(),
        ]);
        assert_eq!(a, vec!["--password", "<redacted>", "--password=<redacted>", "--keyspace", "ks"]);
    }
}
