//! keyrecon-verify's engine: check that keys are in S3 and, with `--deep`, that each object holds its
//! Cassandra blob.
//!
//! Per key: HEAD `prefix + key` (absent: `missing`). With `--deep`, fetch the blob (the source table,
//! then the fallbacks, like repair) and compare:
//! 1. size: the object's Content-Length against the blob's length;
//! 2. content, by the ETag:
//!    - a plain ETag (no `-`) is the MD5 of the bytes on S3 and on Garage: compared with the blob's MD5
//!      (comparison `md5`);
//!    - a multipart ETag (`md5-of-part-md5s-N`) is not an MD5 of the content. It is recomputed from the
//!      blob with the object's part size — `--part-size` when given, else the size of part 1 from
//!      `HEAD ?partNumber=1` — and compared (comparison `multipart-etag(part size P)`); when the
//!      part size cannot be known the content is not compared (comparison `size-only`, said so in
//!      ok.csv);
//!    - no ETag: `size-only`.
//!
//! Outcome files (rows in key byte order) in `--out`:
//!
//! | file | columns |
//! |---|---|
//! | `ok.csv` | key, origin, target_key, size, etag, comparison |
//! | `missing.csv` | key, origin, target_key |
//! | `differ.csv` | key, origin, target_key, s3_size, blob_size, s3_etag, blob_md5, comparison, reason |
//! | `failed.csv` | key, origin, stage (key, head, fetch), attempts, error |
//!
//! plus `summary.json`. Exit status: 0 all ok, 1 some missing or different, 2 some failed. Verify only
//! reads, so it keeps no journal: an interrupted verify is simply run again.
//!
//! With `--queue` the keys come from a fleet's queue instead ([`KeySource::Queue`], see
//! [`crate::queue::consume`]): a result other than `failed` is kept and acknowledged (the [`Checked`]
//! record goes to the fleet's outcome stream); a failed check stays pending for another delivery, and
//! after `--max-deliveries` the key is recorded as failed with the reason. The outcome files in
//! `--out` then hold this consumer's results; `keyrecon-queue report` renders the fleet's.
//!
//! Memory is flat in the number of keys, as in repair: the keys are sorted (each once, in byte order)
//! into a chunk of a scratch directory under `--tmp` and fed to the pool from there, and each result
//! goes through a second sort (key -> the [`Checked`] as JSON, the same record a queue consumer puts in
//! the fleet's outcome stream; [`Schema::OPAQUE`]) within `--mem`, from which the outcome files are
//! written, streaming.

use crate::chunk::ChunkCursor;
use crate::csvout::CsvOut;
use crate::error::{Error, IoContext, Result};
use crate::hex::encode as hex;
use crate::keys::Item;
use crate::merge::SortedCursor;
use crate::pool::{self, Flow};
use crate::queue::consume::{Consumer, ConsumerStats, Delivery};
use crate::record::{show_key, Schema};
use crate::repair::fetch::{self, BlobSource, ClusterSummary, Fetched, Fetcher};
use crate::repair::keys::{self, KeySource, KeysIn};
use crate::repair::live::{self, Live};
use crate::repair::put::{self, Head, Target};
use crate::repair::resume::Todo;
use crate::repair::retry::Retry;
use crate::repair::throttle::{Side, Throttle};
use crate::scratch::ScratchDir;
use crate::sort::{SortConfig, Sorter};
use crate::sources::s3::client::ClientOptions;
use crate::summary::Summary;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOOL: &str = "keyrecon-verify";

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The keys to check: a key input (`-` = stdin; see [`crate::repair::keys`]) or a fleet's queue.
    pub keys: KeySource,
    pub s3: ClientOptions,
    pub bucket: String,
    pub prefix: Vec<u8>,
    /// `Some`: compare with the Cassandra blobs.
    pub deep: Option<BlobSource>,
    /// Part size of multipart uploads, when known (else asked per object).
    pub part_size: Option<usize>,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub latency_target: Duration,
    /// Further attempts of a failed request (0: one attempt only).
    pub retries: u32,
    pub out: PathBuf,
    /// Memory budget of each sort, in bytes.
    pub mem: usize,
    /// Where sorts spill and the run's scratch directory goes.
    pub tmp_dir: PathBuf,
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Missing,
    Differ,
    Failed,
}

/// One key's result (also the record a queue consumer puts in the fleet's outcome stream).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Checked {
    pub verdict: Verdict,
    pub item: Item,
    pub s3_size: Option<u64>,
    pub s3_etag: Option<String>,
    pub blob_size: Option<u64>,
    pub blob_md5: Option<String>,
    /// Which comparison was made: `exists` (no --deep), `md5`, `multipart-etag(part size P)`, `size-only`.
    pub comparison: String,
    /// differ: what differs; failed: the last error.
    pub reason: String,
    pub stage: String,
    pub attempts: u32,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerifyCounts {
    pub ok: u64,
    pub missing: u64,
    pub differ: u64,
    pub failed: u64,
}

impl VerifyCounts {
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 {
            2
        } else if self.missing > 0 || self.differ > 0 {
            1
        } else {
            0
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct VerifySummary {
    #[serde(flatten)]
    pub keys: KeysIn,
    /// The output directory.
    pub out: String,
    pub bucket: String,
    pub deep: bool,
    /// With --deep: the tables blobs are read from, in lookup order (`KS.TABLE`, `NAME:KS.TABLE`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// With --deep: the fallback clusters (`--cluster`), connected or why not, blobs read, retries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallback_clusters: Vec<ClusterSummary>,
    pub outcomes: VerifyCounts,
    /// ok/differ keys by the comparison made.
    pub compared_md5: u64,
    pub compared_multipart_etag: u64,
    pub compared_size_only: u64,
    pub not_in_source: u64,
    pub bytes_compared: u64,
    pub objects_per_sec: f64,
    pub retries_cassandra: u64,
    pub retries_s3: u64,
    pub throttle_events: u64,
    pub min_concurrency: usize,
    /// `--mem`: the budget of each sort.
    pub mem_budget_bytes: u64,
    pub elapsed_ms: u64,
    pub peak_rss_bytes: u64,
    /// With `--queue`: what this consumer took from the queue and gave back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<ConsumerStats>,
}

impl Summary for VerifySummary {
    fn exit_code(&self) -> i32 {
        self.keys.exit_code(self.outcomes.exit_code())
    }

    fn paragraph(&self) -> String {
        let o = &self.outcomes;
        format!(
            "{} keys: {} ok, {} missing, {} differ, {} failed{}{}; {:.0} keys/s; see {}",
            self.keys.keys_input,
            o.ok,
            o.missing,
            o.differ,
            o.failed,
            if self.deep {
                format!(
                    " (compared: {} by MD5, {} by multipart ETag, {} by size only)",
                    self.compared_md5, self.compared_multipart_etag, self.compared_size_only
                )
            } else {
                " (existence only; --deep compares content)".to_string()
            },
            self.keys.rejected_note(),
            self.objects_per_sec,
            self.out
        ) + &crate::repair::clusters_paragraph(&self.fallback_clusters, "run the verify again")
            + &self.queue.as_ref().map(crate::repair::queue_paragraph).unwrap_or_default()
    }
}

struct Shared {
    cfg: VerifyConfig,
    fetcher: Option<Fetcher>,
    target: Target,
    throttle: Throttle,
    live: Arc<Live>,
    retries: [AtomicU64; 2],
    /// Key -> the result as JSON, taken once the pool is done.
    results: Mutex<Option<Sorter>>,
    fatal: Mutex<Option<Error>>,
    /// With `--queue`: the consumer the keys come from and go back to.
    queue: Option<Arc<Consumer>>,
}

pub fn run(cfg: VerifyConfig) -> Result<VerifySummary> {
    crate::rt::runtime()?.block_on(run_async(cfg))
}

async fn run_async(cfg: VerifyConfig) -> Result<VerifySummary> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&cfg.out).ctx(&cfg.out)?;
    let scratch = ScratchDir::create(&cfg.tmp_dir, "verify")?;
    let mut summary = VerifySummary {
        out: cfg.out.display().to_string(),
        bucket: cfg.bucket.clone(),
        deep: cfg.deep.is_some(),
        tables: cfg.deep.as_ref().map(BlobSource::table_names).unwrap_or_default(),
        mem_budget_bytes: cfg.mem as u64,
        ..Default::default()
    };
    let (keys, keys_in) = keys::read(&cfg.keys, &cfg.out, cfg.mem, &cfg.tmp_dir, scratch.path())?;
    summary.keys = keys_in;
    let manners = fetch::Manners::new(TOOL, cfg.concurrency, cfg.retries, cfg.latency_target, cfg.quiet);
    let fetcher = match &cfg.deep {
        Some(d) => Some(Fetcher::connect(d, manners).await?),
        None => None,
    };
    let client = crate::sources::s3::client::build(&cfg.s3).await?;
    let target = Target { client, bucket: cfg.bucket.clone(), multipart_threshold: usize::MAX, part_size: 0 };
    let keys = keys.open().await?;
    let queue = keys.queue();
    let total = keys.sorted().map(|k| k.count);
    let workers = keys::workers(cfg.concurrency, total);
    let live = Arc::new(Live::default());
    let results = Sorter::new(SortConfig::new(cfg.mem, &cfg.tmp_dir, Schema::OPAQUE));
    let sh = Arc::new(Shared {
        throttle: Throttle::new(TOOL, cfg.concurrency, cfg.rate, None, cfg.latency_target, cfg.quiet),
        cfg,
        fetcher,
        target,
        live: live.clone(),
        retries: Default::default(),
        results: Mutex::new(Some(results)),
        fatal: Mutex::new(None),
        queue: queue.clone(),
    });
    live.limit.store(sh.throttle.limit(), Relaxed);
    let ticker = live::progress(TOOL, total, live.clone(), sh.cfg.quiet);
    let tr = Instant::now();
    keys::work(
        workers,
        &sh,
        keys,
        |keys| move |feed: pool::Feeder<Item>| Todo::<_, ChunkCursor>::new(keys.cursor()?, None).feed(&feed),
        |sh, item| async move { check_item(&sh, item).await },
        |sh, d| async move { check_delivery(&sh, d).await },
    )
    .await?;
    let secs = tr.elapsed().as_secs_f64().max(1e-3);
    ticker.finish();
    if let Some(e) = sh.fatal.lock().unwrap().take() {
        return Err(e);
    }

    let results = sh.results.lock().unwrap().take().expect("the results are taken once");
    summary.outcomes = write_outcomes(&sh.cfg.out, &sh.cfg.prefix, &mut results.finish()?, &mut summary)?;
    summary.bytes_compared = live.bytes.load(Relaxed);
    summary.objects_per_sec = live.done.load(Relaxed) as f64 / secs;
    summary.retries_cassandra = sh.retries[0].load(Relaxed);
    summary.retries_s3 = sh.retries[1].load(Relaxed);
    summary.throttle_events = sh.throttle.events.load(Relaxed);
    summary.min_concurrency = sh.throttle.min_limit.load(Relaxed);
    summary.elapsed_ms = t0.elapsed().as_millis() as u64;
    summary.queue = sh.queue.as_ref().map(|q| q.stats());
    if let (Some(f), Some(src)) = (&sh.fetcher, &sh.cfg.deep) {
        summary.fallback_clusters = f.fallback_clusters(src);
    }
    if summary.queue.is_some() {
        summary.keys.keys_input =
            summary.outcomes.ok + summary.outcomes.missing + summary.outcomes.differ + summary.outcomes.failed;
    }
    summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
    crate::summary::write_json(&sh.cfg.out, &summary)?;
    Ok(summary)
}

/// One key checked and its result sorted away. A result that cannot be kept (the sort's spill
/// failed) stops the pool.
async fn check_item(sh: &Shared, item: Item) -> Flow {
    let c = check(sh, &item).await;
    keep(sh, &item, &record(&c))
}

/// One key from a queue: checked like a key of the input; a result is kept, then acknowledged, and a
/// failed check is left pending for another delivery (see the module doc).
async fn check_delivery(sh: &Shared, dl: Delivery) -> Flow {
    let q = sh.queue.as_ref().expect("a delivery comes from a queue");
    let c = match &dl.dead {
        Some(why) => failed(checked(&dl.item, Verdict::Failed), "queue", why.clone()),
        None => check(sh, &dl.item).await,
    };
    if c.verdict == Verdict::Failed && dl.dead.is_none() {
        q.complete(&dl, "failed", Vec::new(), false, Some(c.reason));
        return Flow::Continue;
    }
    let rec = record(&c);
    let flow = keep(sh, &dl.item, &rec);
    if matches!(flow, Flow::Continue) {
        let name = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Missing => "missing",
            Verdict::Differ => "differ",
            Verdict::Failed => "failed",
        };
        q.complete(&dl, name, rec, true, None);
    }
    flow
}

/// A result as it is sorted for the outcome files and sent to the fleet's outcome stream.
fn record(c: &Checked) -> Vec<u8> {
    serde_json::to_vec(c).expect("a result serializes")
}

/// Sorts a result (its [`record`]) away for the outcome files.
fn keep(sh: &Shared, item: &Item, rec: &[u8]) -> Flow {
    // A push that spills sorts and writes up to --mem bytes on this worker: rare, like the journal's fsync.
    let pushed = sh.results.lock().unwrap().as_mut().expect("results are taken after the pool").push(&item.key, rec);
    if let Err(e) = pushed {
        sh.fatal.lock().unwrap().get_or_insert(e);
        return Flow::Stop;
    }
    sh.live.done.fetch_add(1, Relaxed);
    sh.live.inflight.store(sh.throttle.inflight(), Relaxed);
    sh.live.limit.store(sh.throttle.limit(), Relaxed);
    Flow::Continue
}

fn checked(item: &Item, verdict: Verdict) -> Checked {
    Checked {
        verdict,
        item: item.clone(),
        s3_size: None,
        s3_etag: None,
        blob_size: None,
        blob_md5: None,
        comparison: String::new(),
        reason: String::new(),
        stage: String::new(),
        attempts: 0,
    }
}

fn failed(mut c: Checked, stage: &str, reason: String) -> Checked {
    c.verdict = Verdict::Failed;
    c.stage = stage.into();
    c.reason = reason;
    c
}

async fn check(sh: &Shared, item: &Item) -> Checked {
    let mut c = checked(item, Verdict::Failed);
    let tk = match String::from_utf8([&sh.cfg.prefix[..], &item.key].concat()) {
        Ok(s) => s,
        Err(_) => return failed(c, "key", "target key is not valid UTF-8 (S3 keys are UTF-8 strings)".into()),
    };
    let _permit = sh.throttle.acquire().await;
    let retry =
        Retry { throttle: &sh.throttle, max_attempts: sh.cfg.retries + 1, retries: [&sh.retries[0], &sh.retries[1]] };
    let head = match retry.run(Side::S3, &mut c.attempts, || sh.target.head(&tk)).await {
        Err(e) => return failed(c, "head", e.msg),
        Ok(None) => {
            c.verdict = Verdict::Missing;
            return c;
        }
        Ok(Some(h)) => h,
    };
    c.s3_size = Some(head.size);
    c.s3_etag = head.etag.clone();
    let Some(fetcher) = &sh.fetcher else {
        c.verdict = Verdict::Ok;
        c.comparison = "exists".into();
        return c;
    };
    let blob = match fetcher.fetch(&retry, &mut c.attempts, item.origin()).await {
        Fetched::Found { blob, .. } => blob,
        Fetched::NotFound(tried) => return failed(c, "fetch", format!("{tried}: nothing to compare the object with")),
        Fetched::Failed { stage, reason } => return failed(c, stage, reason),
    };
    sh.live.bytes.fetch_add(blob.len() as u64, Relaxed);
    let md5 = hex(&put::md5(&blob));
    c.blob_size = Some(blob.len() as u64);
    c.blob_md5 = Some(md5.clone());
    match compare(sh, &retry, &mut c.attempts, &tk, &head, &blob, &md5).await {
        Err(e) => failed(c, "head", e),
        Ok((comparison, None)) => {
            c.verdict = Verdict::Ok;
            c.comparison = comparison;
            c
        }
        Ok((comparison, Some(reason))) => {
            c.verdict = Verdict::Differ;
            c.comparison = comparison;
            c.reason = reason;
            c
        }
    }
}

/// (comparison made, what differs).
async fn compare(
    sh: &Shared,
    retry: &Retry<'_>,
    attempts: &mut u32,
    tk: &str,
    head: &Head,
    blob: &[u8],
    md5: &str,
) -> std::result::Result<(String, Option<String>), String> {
    let size_differs =
        (head.size != blob.len() as u64).then(|| format!("size: S3 {} bytes, blob {} bytes", head.size, blob.len()));
    let Some(etag) = head.etag.as_deref() else { return Ok(("size-only".into(), size_differs)) };
    if let Some(reason) = size_differs {
        // A different size is a difference whatever the ETag says; say which comparison decided it.
        return Ok(("size".into(), Some(reason)));
    }
    if !etag.contains('-') {
        let differs = (!etag.eq_ignore_ascii_case(md5)).then(|| format!("md5: S3 ETag {etag}, blob MD5 {md5}"));
        return Ok(("md5".into(), differs));
    }
    let part = match sh.cfg.part_size {
        Some(p) => Some(p as u64),
        None => retry.run(Side::S3, attempts, || sh.target.first_part_size(tk)).await.map_err(|e| e.msg)?,
    };
    let Some(part) = part.filter(|p| *p > 0) else { return Ok(("size-only".into(), None)) };
    let want = put::multipart_etag(blob, part as usize);
    let comparison = format!("multipart-etag(part size {part})");
    let differs =
        (!etag.eq_ignore_ascii_case(&want)).then(|| format!("multipart ETag: S3 {etag}, from the blob {want}"));
    Ok((comparison, differs))
}

/// Writes the outcome files from the sorted results (one per key, in key byte order) and counts the
/// comparisons into `summary`; returns the outcome counts.
fn write_outcomes(
    dir: &std::path::Path,
    prefix: &[u8],
    results: &mut impl SortedCursor,
    summary: &mut VerifySummary,
) -> Result<VerifyCounts> {
    let mut w = Writer::create(dir, prefix)?;
    while results.advance()? {
        let r: Checked = serde_json::from_slice(results.meta())
            .map_err(|e| Error::Internal(format!("the result of {:?} read back: {e}", show_key(results.key()))))?;
        count_comparison(summary, &r);
        w.row(&r)?;
    }
    w.finish()
}

/// Counts which comparison decided a result, and a blob in no table.
fn count_comparison(summary: &mut VerifySummary, r: &Checked) {
    if matches!(r.verdict, Verdict::Ok | Verdict::Differ) {
        match r.comparison.as_str() {
            "md5" => summary.compared_md5 += 1,
            "size-only" => summary.compared_size_only += 1,
            c if c.starts_with("multipart-etag") => summary.compared_multipart_etag += 1,
            _ => {}
        }
    }
    if r.stage == "fetch" && r.reason.starts_with("not in ") {
        summary.not_in_source += 1;
    }
}

/// The outcome files of a verify, written one key at a time (keys in byte order, once each).
pub struct Writer<'a> {
    prefix: &'a [u8],
    ok: CsvOut,
    missing: CsvOut,
    differ: CsvOut,
    failed: CsvOut,
    counts: VerifyCounts,
}

impl<'a> Writer<'a> {
    pub fn create(dir: &std::path::Path, prefix: &'a [u8]) -> Result<Writer<'a>> {
        let open = |name: &str, header: &[&str]| CsvOut::create(dir, name, header);
        Ok(Writer {
            prefix,
            ok: open("ok.csv", &["key", "origin", "target_key", "size", "etag", "comparison"])?,
            missing: open("missing.csv", &["key", "origin", "target_key"])?,
            differ: open(
                "differ.csv",
                &["key", "origin", "target_key", "s3_size", "blob_size", "s3_etag", "blob_md5", "comparison", "reason"],
            )?,
            failed: open("failed.csv", &["key", "origin", "stage", "attempts", "error"])?,
            counts: VerifyCounts::default(),
        })
    }

    /// One key's result.
    pub fn row(&mut self, r: &Checked) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default().into_bytes();
        let s = |v: &Option<String>| v.clone().unwrap_or_default().into_bytes();
        let origin = r.item.origin.clone().unwrap_or_default();
        let tk = [self.prefix, &r.item.key].concat();
        let (w, row): (&mut CsvOut, Vec<Vec<u8>>) = match r.verdict {
            Verdict::Ok => {
                self.counts.ok += 1;
                (
                    &mut self.ok,
                    vec![
                        r.item.key.clone(),
                        origin,
                        tk,
                        n(r.s3_size),
                        s(&r.s3_etag),
                        r.comparison.clone().into_bytes(),
                    ],
                )
            }
            Verdict::Missing => {
                self.counts.missing += 1;
                (&mut self.missing, vec![r.item.key.clone(), origin, tk])
            }
            Verdict::Differ => {
                self.counts.differ += 1;
                (
                    &mut self.differ,
                    vec![
                        r.item.key.clone(),
                        origin,
                        tk,
                        n(r.s3_size),
                        n(r.blob_size),
                        s(&r.s3_etag),
                        s(&r.blob_md5),
                        r.comparison.clone().into_bytes(),
                        r.reason.clone().into_bytes(),
                    ],
                )
            }
            Verdict::Failed => {
                self.counts.failed += 1;
                (
                    &mut self.failed,
                    vec![
                        r.item.key.clone(),
                        origin,
                        r.stage.clone().into_bytes(),
                        r.attempts.to_string().into_bytes(),
                        r.reason.clone().into_bytes(),
                    ],
                )
            }
        };
        w.row(&row)
    }

    pub fn finish(self) -> Result<VerifyCounts> {
        for w in [self.ok, self.missing, self.differ, self.failed] {
            w.finish()?;
        }
        Ok(self.counts)
    }
}

/// A fleet report's rows: the results consumers acknowledged (a [`Checked`] as JSON).
impl crate::queue::report::Render for Writer<'_> {
    fn row(&mut self, record: &[u8]) -> Result<()> {
        let c: Checked = serde_json::from_slice(record)
            .map_err(|e| Error::Internal(format!("an outcome record that does not decode: {e}")))?;
        Writer::row(self, &c)
    }
    fn finish(self: Box<Self>) -> Result<(std::collections::BTreeMap<String, u64>, i32)> {
        let c = Writer::finish(*self)?;
        let code = c.exit_code();
        let m = [("ok", c.ok), ("missing", c.missing), ("differ", c.differ), ("failed", c.failed)];
        Ok((m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results in the order workers finish, through a sort that spills: the files come out one row per
    /// key in key byte order, with every field the result had.
    #[test]
    fn results_come_out_sorted_from_a_spilling_sort() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::new(SortConfig::new(4096, dir.path(), Schema::OPAQUE));
        let mut want = Vec::new();
        for i in (0..300u32).rev() {
            let mut key = format!("k{i:03}").into_bytes();
            key.push(0xff);
            let item =
                Item { key: key.clone(), origin: (i % 2 == 0).then(|| b"o,\xfe".to_vec()), size: None, intent: false };
            let mut c =
                checked(&item, [Verdict::Ok, Verdict::Missing, Verdict::Differ, Verdict::Failed][i as usize % 4]);
            c.comparison = if i % 4 == 0 { "md5".into() } else { String::new() };
            c.s3_size = Some(i as u64);
            c.reason = format!("reason, \"{i}\"");
            sorter.push(&key, &serde_json::to_vec(&c).unwrap()).unwrap();
            want.push(c);
        }
        want.sort_by(|a, b| a.item.key.cmp(&b.item.key));
        let mut sorted = sorter.finish().unwrap();
        assert!(sorted.stats().chunks_spilled > 1);
        let mut summary = VerifySummary::default();
        let counts = write_outcomes(dir.path(), b"p/", &mut sorted, &mut summary).unwrap();
        assert_eq!(counts, VerifyCounts { ok: 75, missing: 75, differ: 75, failed: 75 });
        assert_eq!(summary.compared_md5, 75);

        let out = tempfile::tempdir().unwrap();
        let mut w = Writer::create(out.path(), b"p/").unwrap();
        for c in &want {
            w.row(c).unwrap();
        }
        w.finish().unwrap();
        for f in ["ok.csv", "missing.csv", "differ.csv", "failed.csv"] {
            let got = std::fs::read(dir.path().join(f)).unwrap();
            assert_eq!(got, std::fs::read(out.path().join(f)).unwrap(), "{f}: as if written from the sorted results");
            assert_eq!(got.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), 76, "{f}");
        }
    }
}
