//! S3 Inventory input: a report's `manifest.json` (local path or `s3://bucket/key`) names gzip'd CSV
//! files whose columns its `fileSchema` lists. The files are streamed in parallel (never read whole),
//! their rows become records (the same fields as a listing: key, size, ETag, LastModified, storage
//! class), each file is sorted (memory-budgeted, spilling) into its own chunk and journaled, and the
//! file chunks are merged into one disjoint chunk set. `--resume` skips the files the journal lists.
//! Each data file's bytes are checked against the manifest's `size` and `MD5checksum` as they stream;
//! an `s3://` file whose GET fails (5xx, throttling, timeout) or whose bytes do not match is read again
//! from its start (`--retries`), then fails the run, named: a damaged report must never look like
//! missing keys.
//!
//! ```text
//! manifest.json  {"sourceBucket":"src","destinationBucket":"arn:aws:s3:::dest","fileFormat":"CSV",
//!                 "fileSchema":"Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
//!                 "files":[{"key":"dest-prefix/src/config/data/UUID.csv.gz","size":N,"MD5checksum":".."}]}
//! data file      "src","photos/a%20b.jpg","1234","2024-05-01T10:00:00.000Z","9b2cf535f27731c974343645a3985328","STANDARD"
//! ```
//! Keys in CSV inventories are URL-encoded and are decoded here. Rows of versioned inventories that are
//! not the latest version, or are delete markers, are skipped (they are not keys a listing would show).
//! File keys of a local manifest are looked up relative to the manifest's directory and its ancestors
//! (a downloaded report keeps the bucket layout), then by file name beside the manifest or in `data/`.

use super::listxml::url_decode_into;
use super::{parse_time_us, Cutoff, SCHEMA};
use crate::chunk::set::{Producer, MANIFEST};
use crate::chunk::{ChunkCursor, ChunkSetWriter};
use crate::error::{Error, IoContext, Result, ResultExt};
use crate::limit::Backoff;
use crate::merge::SortedCursor;
use crate::progress::{Progress, Unit};
use crate::record::MetaRef;
use crate::sort::{merge_into_set, SortConfig, Sorter};
use crate::summary::{self, Summary};
use aws_sdk_s3::primitives::ByteStream;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub source_bucket: String,
    #[serde(default)]
    pub destination_bucket: String,
    #[serde(default)]
    pub file_format: String,
    pub file_schema: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ManifestFile {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// Hex MD5 of the (gzip'd) file as stored; checked while the file streams.
    #[serde(rename = "MD5checksum", default)]
    pub md5: Option<String>,
}

#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Local path or `s3://bucket/key`.
    pub manifest: String,
    /// Only keys with this prefix (the report may cover more than wanted).
    pub prefix: String,
    pub start_after: Option<String>,
    pub end_before: Option<String>,
    pub cutoff: Cutoff,
    /// Files read at once.
    pub concurrency: usize,
    /// Memory of the sort, shared by the files read at once.
    pub mem: usize,
    pub chunk_bytes: u64,
    /// Further attempts at an `s3://` data file whose transfer failed or arrived damaged (wrong size or
    /// MD5); each attempt reads the file again from its start.
    pub retries: u32,
    /// No progress line on stderr.
    pub quiet: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct InventorySummary {
    pub manifest: String,
    pub source_bucket: String,
    pub files: u64,
    /// Files an earlier run had finished (`--resume`), not read again.
    pub files_skipped: u64,
    pub resumed: bool,
    pub rows: u64,
    pub keys_written: u64,
    pub keys_filtered: u64,
    pub not_latest_or_deleted: u64,
    pub duplicates: u64,
    pub bytes: u64,
    /// Data files read again after a failed or damaged transfer.
    pub retries: u64,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    pub peak_rss_bytes: u64,
}

impl Summary for InventorySummary {
    fn exit_code(&self) -> i32 {
        // Every file was read and checked, or the read failed with an error.
        0
    }

    fn paragraph(&self) -> String {
        format!(
            "read {} rows from {} inventory files of s3://{} ({}{}) in {:.2}s ({:.0} rows/s): {} keys written, {} outside the key/age window, {} old versions or delete markers skipped, {} duplicates, {} files read again; peak RSS {} MiB.",
            self.rows,
            self.files,
            self.source_bucket,
            self.manifest,
            if self.resumed { format!("; resumed, {} files already done", self.files_skipped) } else { String::new() },
            self.elapsed_s,
            self.keys_per_s,
            self.keys_written,
            self.keys_filtered,
            self.not_latest_or_deleted,
            self.duplicates,
            self.retries,
            self.peak_rss_bytes >> 20
        )
    }
}

/// Column positions named by `fileSchema`.
#[derive(Clone, Copy, Debug)]
struct Columns {
    key: usize,
    size: Option<usize>,
    mtime: Option<usize>,
    etag: Option<usize>,
    class: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl Columns {
    fn parse(schema: &str) -> Result<Columns> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let find = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
        Ok(Columns {
            key: find("Key").ok_or_else(|| Error::Usage(format!("fileSchema {schema:?} has no Key column")))?,
            size: find("Size"),
            mtime: find("LastModifiedDate"),
            etag: find("ETag"),
            class: find("StorageClass"),
            is_latest: find("IsLatest"),
            is_delete_marker: find("IsDeleteMarker"),
        })
    }
}

enum Location {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

fn parse_s3_url(u: &str) -> Option<(String, String)> {
    let rest = u.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/')?;
    Some((b.to_string(), k.to_string()))
}

/// Where an inventory run keeps its per-file results until the final merge (inside the output dir).
pub const WORK_DIR: &str = "inventory-work";
/// One JSON line per finished data file, appended when its sorted chunk is complete.
pub const JOURNAL: &str = "journal.jsonl";

/// A finished data file, as journaled.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct FileDone {
    index: usize,
    key: String,
    /// Its sorted records; `None` when no row was kept.
    chunk: Option<String>,
    rows: u64,
    filtered: u64,
    old: u64,
    bytes: u64,
}

/// The manifest and the data files' locations.
struct Report {
    m: Manifest,
    cols: Columns,
    locations: Vec<Location>,
}

/// Reads the report into a new chunk set at `dir`. `client` is needed for `s3://` manifests.
///
/// ```text
///  data file i ──stream: GET body / file ─► gunzip ─► CSV rows ─► records ─► sorter (mem / parallel)
///       │                                                                       │
///       │                 DIR/inventory-work/file-NNNNNN.krc  (sorted chunk) ◄──┘
///       └─► DIR/inventory-work/journal.jsonl += {"index":i,"chunk":..,"rows":..}   (after the rename)
///  all files done ─► k-way merge of the file chunks (dedup) ─► DIR/chunk-*.krc + manifest.json
/// ```
/// Memory is bounded by `mem` (split among the `parallel` readers) plus I/O buffers, whatever the size
/// of a data file: bodies are streamed, never read whole. With `resume`, files the journal lists as done
/// (and whose chunk is intact) are not read again.
pub fn read_inventory(
    rt: &tokio::runtime::Runtime,
    client: Option<&aws_sdk_s3::Client>,
    cfg: &InventoryConfig,
    dir: &Path,
    force: bool,
    resume: bool,
) -> Result<InventorySummary> {
    let started = std::time::Instant::now();
    // A GET that fails with a retryable error (5xx, throttling, timeouts) is a transfer error: the
    // file is read again; others (404, 403) are not.
    let get = |bucket: &str, key: &str| -> std::result::Result<ByteStream, FileError> {
        let c = client.ok_or_else(|| FileError {
            error: Error::Internal("an s3:// inventory needs an S3 client".into()),
            transfer: false,
        })?;
        rt.block_on(async { c.get_object().bucket(bucket).key(key).send().await }).map(|o| o.body).map_err(|e| {
            FileError {
                transfer: super::fetch::classify(&e).0,
                error: Error::remote(
                    format!("fetching s3://{bucket}/{key}"),
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                ),
            }
        })
    };
    let report = load_report(cfg, rt, &get)?;
    let (m, cols) = (&report.m, report.cols);

    // The output directory: a fresh run, or the continuation of an unfinished one.
    let work = dir.join(WORK_DIR);
    let journal = work.join(JOURNAL);
    let mut done: Vec<Option<FileDone>> = vec![None; m.files.len()];
    if resume {
        if dir.join(MANIFEST).exists() {
            return Err(Error::Usage(format!(
                "{}: the inventory was already read completely (manifest.json exists); nothing to resume",
                dir.display()
            )));
        }
        if !journal.exists() {
            return Err(Error::Usage(format!(
                "--resume: {} does not exist: no unfinished inventory read in {}",
                journal.display(),
                dir.display()
            )));
        }
        for d in read_journal(&journal)? {
            let i = d.index;
            if i >= m.files.len() || m.files[i].key != d.key {
                return Err(Error::Usage(format!(
                    "--resume: {} lists {:?} as file {i}, which this manifest does not have: a different report?",
                    journal.display(),
                    d.key
                )));
            }
            // A chunk that is missing or damaged means the file is read again.
            if d.chunk.as_ref().is_none_or(|c| ChunkCursor::open(work.join(c)).is_ok()) {
                done[i] = Some(d);
            }
        }
    } else if work.exists() {
        if !force {
            return Err(Error::Usage(format!(
                "{}: holds an unfinished inventory read ({WORK_DIR}/); pass --resume to continue it or --force to start over",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(&work).ctx(&work)?;
    }
    let out = ChunkSetWriter::create(dir, SCHEMA, force || resume)?;
    std::fs::create_dir_all(&work).ctx(&work)?;
    let skipped = done.iter().flatten().count() as u64;
    let journal_w =
        std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&journal).ctx(&journal)?);

    // Each file: stream, decode, sort within its share of the memory, write its chunk, journal it.
    let todo: Vec<usize> = (0..m.files.len()).filter(|&i| done[i].is_none()).collect();
    let per_file_mem = (cfg.mem / cfg.concurrency.max(1)).max(1 << 20);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.concurrency.max(1))
        .build()
        .context("starting the inventory reader threads")?;
    let retries = AtomicU64::new(0);
    let files_now = Arc::new(AtomicU64::new(skipped));
    let total_files = m.files.len() as u64;
    let files = files_now.clone();
    let progress = Progress::spec("keyrecon-list-s3", "inventory", Unit::Items("rows"))
        .fraction(move || Some(files.load(Relaxed) as f64 / total_files.max(1) as f64))
        .note({
            let files = files_now.clone();
            move || format!("files {} done / {total_files}", files.load(Relaxed))
        })
        .start(cfg.quiet);
    let rows_now = &*progress.counter;
    let results = {
        let r = read_files(&pool, &todo, |i| -> Result<FileDone> {
            let f = &m.files[i];
            let chunk = format!("file-{i:06}.krc");
            // A transfer that fails or arrives damaged is read again from the start, with a fresh
            // sorter; a local file, or a file whose rows do not parse, fails at once.
            let mut attempt = 0u32;
            let (mut d, sorter) = loop {
                let mut d = FileDone { index: i, key: f.key.clone(), ..Default::default() };
                let mut sorter = Sorter::new(SortConfig::new(per_file_mem, &work, SCHEMA));
                let r = match &report.locations[i] {
                    // A local file is what it is: reading it again cannot help.
                    Location::Local(p) => match std::fs::File::open(p).ctx(p) {
                        Ok(file) => read_checked(file, f, cols, cfg, &mut d, &mut sorter, rows_now)
                            .map_err(|e| FileError { transfer: false, ..e }),
                        Err(error) => Err(FileError { error, transfer: false }),
                    },
                    Location::S3 { bucket, key } => get(bucket, key).and_then(|body| {
                        read_checked(BodyReader::new(rt, body), f, cols, cfg, &mut d, &mut sorter, rows_now)
                    }),
                };
                match r {
                    Ok(()) => break (d, sorter),
                    Err(e) if e.transfer && attempt < cfg.retries => {
                        attempt += 1;
                        retries.fetch_add(1, Relaxed);
                        // Take back the rows this attempt reported (read_file reports whole steps).
                        rows_now.fetch_sub(d.rows / PROGRESS_ROWS * PROGRESS_ROWS, Relaxed);
                        eprintln!(
                            "keyrecon-list-s3: inventory file {} (attempt {attempt} of {}): {}; reading it again",
                            f.key,
                            cfg.retries + 1,
                            crate::error::chain(&e.error)
                        );
                        std::thread::sleep(BACKOFF.delay(attempt));
                    }
                    Err(e) => return Err(Error::context(format!("inventory file {}", f.key), e.error)),
                }
            };
            let mut sorted = sorter.finish()?;
            let mut w = crate::chunk::ChunkWriter::create(work.join(&chunk), SCHEMA)?;
            while sorted.advance()? {
                w.push(sorted.key(), sorted.meta())?;
            }
            if w.finish()?.is_some() {
                d.chunk = Some(chunk);
            }
            let mut line = serde_json::to_vec(&d).map_err(|e| Error::json(&journal, e))?;
            line.push(b'\n');
            let mut j = journal_w.lock().unwrap();
            j.write_all(&line).and_then(|_| j.flush()).ctx(&journal)?;
            files_now.fetch_add(1, Relaxed);
            Ok(d)
        });
        progress.finish();
        r
    }?;
    for d in results {
        let i = d.index;
        done[i] = Some(d);
    }
    let done: Vec<FileDone> = done.into_iter().map(|d| d.expect("every file read")).collect();

    // Merge the files' chunks into the chunk set.
    let chunks: Vec<PathBuf> = done.iter().filter_map(|d| d.chunk.as_ref().map(|c| work.join(c))).collect();
    let merged = merge_into_set(chunks, &work, SCHEMA, &out, cfg.chunk_bytes, cfg.mem)?;
    let (written, duplicates) = (merged.records, merged.duplicates);
    let elapsed = started.elapsed().as_secs_f64();
    let sum_of = |f: fn(&FileDone) -> u64| done.iter().map(f).sum::<u64>();
    let rows = sum_of(|d| d.rows);
    let sum = InventorySummary {
        manifest: cfg.manifest.clone(),
        source_bucket: m.source_bucket.clone(),
        files: m.files.len() as u64,
        files_skipped: skipped,
        resumed: resume,
        rows,
        keys_written: written,
        keys_filtered: sum_of(|d| d.filtered),
        not_latest_or_deleted: sum_of(|d| d.old),
        duplicates,
        bytes: sum_of(|d| d.bytes),
        retries: retries.load(Relaxed),
        elapsed_s: elapsed,
        keys_per_s: rows as f64 / elapsed.max(1e-9),
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
    };
    let info = serde_json::to_value(&sum).map_err(|e| Error::json(dir.join(MANIFEST), e))?;
    out.finish(Producer::current("keyrecon-list-s3"), true, info)?;
    std::fs::remove_dir_all(&work).ctx(&work)?;
    summary::write_json(dir, &sum)?;
    Ok(sum)
}

fn load_report(
    cfg: &InventoryConfig,
    rt: &tokio::runtime::Runtime,
    get: &dyn Fn(&str, &str) -> std::result::Result<ByteStream, FileError>,
) -> Result<Report> {
    let (body, base) = match parse_s3_url(&cfg.manifest) {
        Some((b, k)) => {
            let mut v = Vec::new();
            BodyReader::new(rt, get(&b, &k).map_err(|e| e.error)?)
                .read_to_end(&mut v)
                .remote(format!("reading {}", cfg.manifest))?;
            (v, None)
        }
        None => {
            let p = PathBuf::from(&cfg.manifest);
            (std::fs::read(&p).ctx(&p)?, Some(p))
        }
    };
    let m: Manifest = serde_json::from_slice(&body).map_err(|e| Error::json(&cfg.manifest, e))?;
    if !m.file_format.is_empty() && !m.file_format.eq_ignore_ascii_case("CSV") {
        return Err(Error::Usage(format!(
            "inventory {}: fileFormat {:?} is not supported (only CSV)",
            cfg.manifest, m.file_format
        )));
    }
    let cols = Columns::parse(&m.file_schema).with_context(|| format!("inventory manifest {}", cfg.manifest))?;
    let dest_bucket = m.destination_bucket.rsplit(':').next().unwrap_or("").to_string();
    let locations: Vec<Location> = m
        .files
        .iter()
        .map(|f| match &base {
            Some(mp) => resolve_local(mp, &f.key).map(Location::Local),
            None => {
                let bucket =
                    if dest_bucket.is_empty() { parse_s3_url(&cfg.manifest).unwrap().0 } else { dest_bucket.clone() };
                Ok(Location::S3 { bucket, key: f.key.clone() })
            }
        })
        .collect::<Result<_>>()?;
    Ok(Report { m, cols, locations })
}

/// Reads the files `todo` on `pool`, stopping at the first error.
fn read_files(
    pool: &rayon::ThreadPool,
    todo: &[usize],
    one: impl Fn(usize) -> Result<FileDone> + Sync,
) -> Result<Vec<FileDone>> {
    pool.install(|| todo.par_iter().map(|&i| one(i)).collect())
}

/// Finished files of an earlier run. A torn last line (the run died while appending) is ignored.
fn read_journal(p: &Path) -> Result<Vec<FileDone>> {
    let body = std::fs::read(p).ctx(p)?;
    let mut v = Vec::new();
    for (n, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            break;
        }
        v.push(serde_json::from_slice(line).map_err(|e| Error::Parse {
            path: p.to_path_buf(),
            line: n as u64 + 1,
            msg: format!("not a journal entry: {e}"),
        })?);
    }
    Ok(v)
}

/// A blocking `Read` over an S3 object body, chunk by chunk as the network delivers it (bounded
/// memory), for the gzip and CSV readers; runs on reader threads outside the tokio runtime.
struct BodyReader<'a> {
    rt: &'a tokio::runtime::Runtime,
    body: ByteStream,
    cur: bytes::Bytes,
}

impl<'a> BodyReader<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, body: ByteStream) -> Self {
        BodyReader { rt, body, cur: bytes::Bytes::new() }
    }
}

impl std::io::Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.body.next()) {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Passes reads through while hashing and counting the bytes, and remembers whether the transfer itself
/// failed (as opposed to the data being bad).
struct Checked<R> {
    inner: R,
    md5: md5::Md5,
    len: u64,
    io_failed: bool,
}

impl<R: std::io::Read> std::io::Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use md5::Digest;
        match self.inner.read(buf) {
            Ok(n) => {
                self.md5.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.io_failed = true;
                Err(e)
            }
        }
    }
}

/// Why reading a data file failed; `transfer` when reading it again may help (the bytes did not
/// arrive, or arrived different from what the manifest lists).
#[derive(Debug)]
struct FileError {
    error: Error,
    transfer: bool,
}

/// [`read_file`] on `input`, then checks the bytes read against the manifest's size and MD5checksum.
/// Damage is reported as a transfer error.
fn read_checked(
    input: impl std::io::Read,
    f: &ManifestFile,
    cols: Columns,
    cfg: &InventoryConfig,
    d: &mut FileDone,
    sorter: &mut Sorter,
    rows_now: &AtomicU64,
) -> std::result::Result<(), FileError> {
    use md5::Digest;
    let mut c = Checked { inner: input, md5: md5::Md5::new(), len: 0, io_failed: false };
    let r = read_file(&mut c, cols, cfg, d, sorter, rows_now).and_then(|()| {
        // gunzip stops at the end of the last member; count any bytes after it too.
        std::io::copy(&mut c, &mut std::io::sink()).context("reading to the end of the file")?;
        Ok(())
    });
    if let Err(error) = r {
        return Err(FileError { error, transfer: c.io_failed });
    }
    let damaged = |what: String| FileError {
        error: Error::Usage(format!("{what}: damaged in transfer or not the listed file")),
        transfer: true,
    };
    if let Some(size) = f.size.filter(|&s| s != c.len) {
        return Err(damaged(format!("{} bytes read, the manifest lists {size}", c.len)));
    }
    if let Some(want) = f.md5.as_deref().filter(|m| !m.is_empty()) {
        let got = crate::hex::encode(&c.md5.finalize());
        if !got.eq_ignore_ascii_case(want.trim_matches('"')) {
            return Err(damaged(format!("MD5 {got}, the manifest lists MD5checksum {want}")));
        }
    }
    Ok(())
}

/// Sleep before reading a data file again, by attempt (1-based, as counted in `read_inventory`): at most
/// 1 s, 2 s, 4 s ... capped at 30 s, at least half of that.
const BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), max_doublings: 6, jitter: [0.5, 1.0] };

/// Rows a reader counts before it adds them to the shared progress counter (in whole steps, so an
/// attempt that is read again can take back exactly what it added).
const PROGRESS_ROWS: u64 = 65536;

fn field(row: &csv::ByteRecord, i: Option<usize>) -> Option<&[u8]> {
    i.and_then(|i| row.get(i)).filter(|f| !f.is_empty())
}

/// Streams one gzip'd CSV data file into `sorter`, counting into `d`. Errors name the CSV line.
fn read_file(
    input: impl std::io::Read,
    cols: Columns,
    cfg: &InventoryConfig,
    d: &mut FileDone,
    sorter: &mut Sorter,
    rows_now: &AtomicU64,
) -> Result<()> {
    let dec = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 16, input));
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, dec));
    let mut row = csv::ByteRecord::new();
    let mut key = Vec::new();
    let mut meta = Vec::new();
    let prefix = cfg.prefix.as_bytes();
    while rdr.read_byte_record(&mut row).context("reading CSV (is the file gzip'd CSV?)")? {
        d.rows += 1;
        if d.rows % PROGRESS_ROWS == 0 {
            rows_now.fetch_add(PROGRESS_ROWS, Relaxed);
        }
        let line = row.position().map_or(0, |p| p.line());
        if field(&row, cols.is_latest).is_some_and(|v| v.eq_ignore_ascii_case(b"false"))
            || field(&row, cols.is_delete_marker).is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
        {
            d.old += 1;
            continue;
        }
        let bad = |msg: String| Error::Usage(format!("line {line}: {msg}"));
        let raw = row.get(cols.key).ok_or_else(|| bad("no Key column".into()))?;
        key.clear();
        url_decode_into(raw, &mut key).map_err(|e| bad(format!("key: {e}")))?;
        let in_keys = key.starts_with(prefix)
            && cfg.start_after.as_ref().is_none_or(|s| key.as_slice() > s.as_bytes())
            && cfg.end_before.as_ref().is_none_or(|e| key.as_slice() < e.as_bytes());
        let mtime = match field(&row, cols.mtime) {
            Some(t) => Some(
                parse_time_us(std::str::from_utf8(t).unwrap_or(""))
                    .map_err(|e| bad(format!("LastModifiedDate: {e}")))?,
            ),
            None => None,
        };
        if !in_keys || !cfg.cutoff.admits(mtime) {
            d.filtered += 1;
            continue;
        }
        let size = match field(&row, cols.size) {
            Some(s) => Some(
                std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| bad(format!("bad Size {:?}", String::from_utf8_lossy(s))))?,
            ),
            None => None,
        };
        d.bytes += size.unwrap_or(0);
        meta.clear();
        MetaRef { size, etag: field(&row, cols.etag), mtime, origin: None, class: field(&row, cols.class) }
            .encode(&mut meta);
        sorter.push(&key, &meta)?;
    }
    rows_now.fetch_add(d.rows % PROGRESS_ROWS, Relaxed);
    Ok(())
}

/// Finds a data file of a local report: `key` below the manifest's directory or one of its ancestors,
/// else its file name beside the manifest or in a `data/` directory there or one level up.
fn resolve_local(manifest: &Path, key: &str) -> Result<PathBuf> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    for anc in dir.ancestors() {
        let p = anc.join(key);
        if p.is_file() {
            return Ok(p);
        }
    }
    let name = Path::new(key)
        .file_name()
        .ok_or_else(|| Error::Usage(format!("inventory file key {key:?} has no file name")))?;
    for p in [dir.join(name), dir.join("data").join(name), dir.join("..").join("data").join(name)] {
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Usage(format!(
        "inventory file {key:?} not found below {} or its parents (nor as {}/data/{})",
        dir.display(),
        dir.display(),
        name.to_string_lossy()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_from_schema() {
        let c = Columns::parse(
            "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
        )
        .unwrap();
        assert_eq!((c.key, c.size, c.etag, c.is_latest, c.is_delete_marker), (1, Some(5), Some(7), Some(3), Some(4)));
        assert!(Columns::parse("Bucket, Size").is_err());
    }
}
