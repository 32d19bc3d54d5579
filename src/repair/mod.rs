//! keyrecon-repair's engine: copy the blobs of missing keys from Cassandra to S3 and bring every key
//! to a final, recorded outcome.
//!
//! ```text
//!  keys (missing-on-target.csv | key file | stdin)
//!    │  external sort (--mem, spilling to --tmp): byte order, each key once    [crate::keys::sort]
//!    │  lockstep walk against the journal's sorted key states (--resume):
//!    │  minus keys done, intents flagged                                       [resume::Todo]
//!    ▼
//!  N tokio workers, each key: permit (AIMD limit, --rate) ─► fetch (source, fallbacks) ─► HEAD ─►
//!                             --bandwidth ─► journal "put" intent ─► PUT / multipart (Content-MD5)
//!    │ outcome: ok | not_found | failed | exists | differ                      [record]
//!    ▼
//!  journal.jsonl (append, batched fsync) ─► external sort ─► outcome CSVs, streamed [write_outcome_files]
//!                                                          + summary.json
//! ```
//! The steps in brackets are separate functions: a fleet's queue ([`KeySource::Queue`], see
//! [`crate::queue::consume`]) feeds the same workers instead of the sorted keys, records outcomes the
//! same way and renders the same files; each key's final outcome is journaled, then acknowledged.
//!
//! Why this order:
//! - Fetch before HEAD: an object that exists is only `exists` if it has the blob's size; otherwise it
//!   is `differ`. Existing objects are rare (keys that arrived since the listing), so the extra read
//!   is cheap, and not-found keys are reported without touching S3.
//! - HEAD before PUT (`--recheck`, on by default, off with `--overwrite`): Garage ignores
//!   `If-None-Match: *`, so the HEAD is what keeps a repair from overwriting a live writer's object.
//!   The PUT still sends If-None-Match for servers that honour it (a 412 becomes `exists`).
//! - The intent record before the PUT: a key killed between PUT and journal record is PUT again by
//!   `--resume`, whose HEAD then finds an object. If the journal has an intent for that key and the
//!   object's ETag is the blob's MD5 (or its multipart ETag), it is our own upload: `ok`, not `exists`.
//!   So a kill -9 at any point leaves every key in ok.csv exactly once after the resume.
//! - Bodies are `Bytes` in memory: a retry resends the same bytes.
//!
//! Memory is flat in the number of keys: a fixed base, one sort at a time within `--mem` (the keys,
//! then on `--resume` the journal's states, at the end the journal for the outcome files), the pool's
//! queue of [`pool::QUEUE`] keys, and the keys in flight × the object size. The sorted keys and the
//! journal's states wait in chunks of a scratch directory under `--tmp`, removed at the end.

pub mod fetch;
pub mod journal;
pub mod keys;
pub mod live;
pub mod outcome;
pub mod put;
pub mod resume;
pub mod retry;
pub mod throttle;
pub mod verify;

use crate::chunk::ChunkCursor;
use crate::error::{Error, IoContext, Result};
use crate::keys::{Item, SortedKeys};
use crate::merge::Concat;
use crate::pool::{self, Flow};
use crate::queue::consume::{self, Consumer, ConsumerStats, Delivery};
use crate::scratch::ScratchDir;
use crate::sources::s3::client::ClientOptions;
use crate::summary::Summary;
use bytes::Bytes;
use fetch::{BlobSource, ClusterSummary, Fetched, Fetcher};
use journal::{Done, Journal, Outcome};
use keys::{KeySource, KeysIn};
use live::Live;
use put::Target;
use resume::Todo;
use retry::Retry;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use throttle::{Side, Throttle};

pub const TOOL: &str = "keyrecon-repair";

/// A validated repair job.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// The keys to repair: a key input (`-` = stdin; see [`keys`]) or a fleet's queue.
    pub keys: KeySource,
    /// Where blobs come from.
    pub source: BlobSource,
    pub s3: ClientOptions,
    pub bucket: String,
    /// Prepended to every key to form the S3 key.
    pub prefix: Vec<u8>,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub bandwidth: Option<f64>,
    pub latency_target: Duration,
    /// Further attempts of a failed request (0: one attempt only).
    pub retries: u32,
    pub overwrite: bool,
    pub dry_run: bool,
    pub recheck: bool,
    /// Fixed Content-Type; `None` = sniff images, else leave it to the server.
    pub content_type: Option<String>,
    pub multipart_threshold: usize,
    pub part_size: usize,
    pub out: PathBuf,
    pub resume: bool,
    pub force: bool,
    /// Memory budget of each sort (the keys, the journal), in bytes.
    pub mem: usize,
    /// Where sorts spill and the run's scratch directory goes.
    pub tmp_dir: PathBuf,
    pub quiet: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RepairSummary {
    #[serde(flatten)]
    pub keys: KeysIn,
    /// The output directory.
    pub out: String,
    pub bucket: String,
    /// The tables in lookup order (`KS.TABLE`, or `NAME:KS.TABLE` in the fallback cluster NAME).
    pub tables: Vec<String>,
    /// The fallback clusters (`--cluster`): connected or why not, blobs found, retries, throttling.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallback_clusters: Vec<ClusterSummary>,
    pub dry_run: bool,
    pub resumed: bool,
    /// Keys skipped because the journal of an earlier run has their final outcome.
    pub skipped_done_earlier: u64,
    /// Keys processed by this run.
    pub processed: u64,
    /// Outcomes of every key over all runs of this --out (= rows of the outcome files).
    pub outcomes: outcome::Counts,
    /// Outcomes of this run alone.
    pub this_run: outcome::Counts,
    pub bytes_copied: u64,
    pub objects_per_sec: f64,
    pub bytes_per_sec: f64,
    pub from_fallback: u64,
    pub multipart_uploads: u64,
    /// Keys an interrupted run had uploaded but not journaled (found with matching ETag on resume).
    pub completed_by_interrupted_run: u64,
    pub retries_cassandra: u64,
    pub retries_s3: u64,
    pub throttle_events: u64,
    pub min_concurrency: usize,
    pub final_concurrency: usize,
    pub journal_torn_tail_dropped: bool,
    /// `--mem`: the budget of each sort.
    pub mem_budget_bytes: u64,
    pub timings: Timings,
    pub peak_rss_bytes: u64,
    /// With `--queue`: what this consumer took from the queue and gave back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<ConsumerStats>,
}

#[derive(Debug, Default, Serialize)]
pub struct Timings {
    /// Reading and sorting the keys, and with --resume the journal's states and the walk.
    pub read_keys_ms: u64,
    pub connect_ms: u64,
    pub repair_ms: u64,
    /// Sorting the journal and writing the outcome files.
    pub outcome_files_ms: u64,
    pub total_ms: u64,
    /// Mean time of a successful blob fetch (all tables tried).
    pub fetch_mean_ms: f64,
    /// Mean time of a successful upload, retries included.
    pub put_mean_ms: f64,
}

impl Summary for RepairSummary {
    fn exit_code(&self) -> i32 {
        self.keys.exit_code(self.outcomes.exit_code())
    }

    fn paragraph(&self) -> String {
        let o = &self.outcomes;
        format!(
            "{} keys{}: {} ok, {} not found, {} failed, {} exist, {} differ{}{}; this run: {} keys, {:.1} MB at {:.0} objects/s ({:.1} MB/s), {} from fallbacks, {} multipart; retries {} cassandra / {} s3; {} throttle events (lowest concurrency {}); see {}",
            self.keys.keys_input,
            if self.skipped_done_earlier > 0 {
                format!(" ({} done by an earlier run)", self.skipped_done_earlier)
            } else {
                String::new()
            },
            o.ok,
            o.not_found,
            o.failed,
            o.exists,
            o.differ,
            if self.dry_run { " (dry run: nothing written)" } else { "" },
            self.keys.rejected_note(),
            self.processed,
            self.bytes_copied as f64 / 1e6,
            self.objects_per_sec,
            self.bytes_per_sec / 1e6,
            self.from_fallback,
            self.multipart_uploads,
            self.retries_cassandra,
            self.retries_s3,
            self.throttle_events,
            self.min_concurrency,
            self.out
        ) + &clusters_paragraph(&self.fallback_clusters, "rerun with --resume")
            + &self.queue.as_ref().map(queue_paragraph).unwrap_or_default()
    }
}

/// The fallback clusters that could not be reached, for a summary paragraph; `rerun` says how to try
/// their keys again.
pub(crate) fn clusters_paragraph(clusters: &[ClusterSummary], rerun: &str) -> String {
    let down: Vec<&str> = clusters.iter().filter(|c| c.not_connected.is_some()).map(|c| c.name.as_str()).collect();
    match &down[..] {
        [] => String::new(),
        names => format!(
            "; cluster {} was not connected: the keys that needed it failed (failed.csv; {rerun} when it is back)",
            names.join(", ")
        ),
    }
}

/// The queue's part of a consumer's summary paragraph.
pub(crate) fn queue_paragraph(q: &ConsumerStats) -> String {
    format!(
        "; queue {} as {}: {} keys read, {} claimed from idle consumers, {} acknowledged, {} failed tries left for redelivery, {} given up (dead-letter stream); the fleet's report: keyrecon-queue report {} --out DIR",
        q.queue, q.consumer, q.delivered, q.claimed, q.acknowledged, q.failed_tries, q.dead_lettered, q.queue
    )
}

#[derive(Default)]
struct Counters {
    from_fallback: AtomicU64,
    multipart: AtomicU64,
    completed_earlier: AtomicU64,
    retries: [AtomicU64; 2],
    fetch_us: AtomicU64,
    fetches: AtomicU64,
    put_us: AtomicU64,
    puts: AtomicU64,
}

struct Shared {
    cfg: RepairConfig,
    fetcher: Fetcher,
    target: Target,
    throttle: Throttle,
    journal: Journal,
    live: Arc<Live>,
    counters: Counters,
    this_run: Mutex<outcome::Counts>,
    fatal: Mutex<Option<Error>>,
    /// With `--queue`: the consumer the keys come from and go back to.
    queue: Option<Arc<Consumer>>,
}

/// The outcome files of a fleet's queue (`keyrecon-queue report`): the writer of the tool that
/// consumed it ([`crate::queue::report::Renderer`]). A queue no consumer joined yet has only what its
/// producer put in: it is rendered as a repair's.
pub fn fleet_render<'p>(
    tool: &str,
    out: &Path,
    prefix: &'p [u8],
) -> Result<Box<dyn crate::queue::report::Render + 'p>> {
    Ok(match tool {
        verify::TOOL => Box::new(verify::Writer::create(out, prefix)?),
        _ => Box::new(outcome::Writer::create(out, prefix, false)?),
    })
}

/// Runs a repair to the end and writes its outcome files and summary into `cfg.out`.
pub fn run(cfg: RepairConfig) -> Result<RepairSummary> {
    crate::rt::runtime()?.block_on(run_async(cfg))
}

async fn run_async(cfg: RepairConfig) -> Result<RepairSummary> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    if cfg.dry_run && cfg.out.join(journal::FILE).exists() {
        // Its outcome files would replace the real run's.
        return Err(Error::Usage(format!(
            "--dry-run: {} holds a repair journal; give the dry run its own --out",
            cfg.out.display()
        )));
    }
    if matches!(cfg.keys, KeySource::Queue(_)) && cfg.dry_run {
        return Err(Error::Usage(
            "--dry-run takes its keys from --keys, not --queue: the queue would hand its keys to a run that copies nothing".into(),
        ));
    }
    let scratch = ScratchDir::create(&cfg.tmp_dir, "repair")?;
    let journal = if cfg.dry_run {
        // A dry run's journal is scratch: it leaves nothing to resume.
        Journal::create(&scratch.path().join(journal::FILE))?
    } else if let KeySource::Queue(q) = &cfg.keys {
        consumer_journal(&cfg, q)?
    } else {
        Journal::open(&cfg.out, cfg.resume, cfg.force)?
    };
    let mut summary = RepairSummary {
        out: cfg.out.display().to_string(),
        bucket: cfg.bucket.clone(),
        tables: cfg.source.table_names(),
        dry_run: cfg.dry_run,
        resumed: cfg.resume,
        journal_torn_tail_dropped: journal.torn_tail(),
        mem_budget_bytes: cfg.mem as u64,
        ..Default::default()
    };
    let (keys, keys_in) = keys::read(&cfg.keys, &cfg.out, cfg.mem, &cfg.tmp_dir, scratch.path())?;
    summary.keys = keys_in;
    let keys = keys.map_sorted(|sorted| Input::new(sorted, cfg.resume.then_some(&journal), &cfg, scratch.path()))?;
    summary.skipped_done_earlier = keys.sorted().map_or(0, |i| i.skipped);
    let read_ms = t0.elapsed().as_millis() as u64;

    let tc = Instant::now();
    let manners = fetch::Manners::new(TOOL, cfg.concurrency, cfg.retries, cfg.latency_target, cfg.quiet);
    let fetcher = Fetcher::connect(&cfg.source, manners).await?;
    let client = crate::sources::s3::client::build(&cfg.s3).await?;
    let target = Target {
        client,
        bucket: cfg.bucket.clone(),
        multipart_threshold: cfg.multipart_threshold,
        part_size: cfg.part_size,
    };
    let keys = keys.open().await?;
    let queue = keys.queue();
    let connect_ms = tc.elapsed().as_millis() as u64;

    let throttle = Throttle::new(TOOL, cfg.concurrency, cfg.rate, cfg.bandwidth, cfg.latency_target, cfg.quiet);
    let live = Arc::new(Live::default());
    let total = keys.sorted().map(Input::left);
    let workers = keys::workers(cfg.concurrency, total);
    let sh = Arc::new(Shared {
        cfg,
        fetcher,
        target,
        throttle,
        journal,
        live: live.clone(),
        counters: Counters::default(),
        this_run: Mutex::new(Default::default()),
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
        |input| move |feed: pool::Feeder<Item>| input.todo()?.feed(&feed),
        |sh, item| async move { repair_item(&sh, item).await },
        |sh, d| async move { repair_delivery(&sh, d).await },
    )
    .await?;
    let repair_ms = tr.elapsed().as_millis() as u64;
    ticker.finish();
    if let Some(e) = sh.fatal.lock().unwrap().take() {
        return Err(e);
    }

    let to = Instant::now();
    summary.outcomes = write_outcome_files(&sh.journal, &sh.cfg)?;
    let outcome_files_ms = to.elapsed().as_millis() as u64;
    summary.this_run = sh.this_run.lock().unwrap().clone();
    summary.processed = summary.this_run.total();
    let c = &sh.counters;
    summary.bytes_copied = live.bytes.load(Relaxed);
    let secs = (repair_ms as f64 / 1000.0).max(1e-3);
    summary.objects_per_sec = summary.this_run.ok as f64 / secs;
    summary.bytes_per_sec = summary.bytes_copied as f64 / secs;
    summary.from_fallback = c.from_fallback.load(Relaxed);
    summary.multipart_uploads = c.multipart.load(Relaxed);
    summary.completed_by_interrupted_run = c.completed_earlier.load(Relaxed);
    summary.retries_cassandra = c.retries[0].load(Relaxed);
    summary.retries_s3 = c.retries[1].load(Relaxed);
    summary.throttle_events = sh.throttle.events.load(Relaxed);
    summary.min_concurrency = sh.throttle.min_limit.load(Relaxed);
    summary.final_concurrency = sh.throttle.limit();
    let mean = |us: &AtomicU64, n: &AtomicU64| us.load(Relaxed) as f64 / 1000.0 / n.load(Relaxed).max(1) as f64;
    summary.timings = Timings {
        read_keys_ms: read_ms,
        connect_ms,
        repair_ms,
        outcome_files_ms,
        total_ms: t0.elapsed().as_millis() as u64,
        fetch_mean_ms: mean(&c.fetch_us, &c.fetches),
        put_mean_ms: mean(&c.put_us, &c.puts),
    };
    summary.queue = sh.queue.as_ref().map(|q| q.stats());
    summary.fallback_clusters = sh.fetcher.fallback_clusters(&sh.cfg.source);
    summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
    crate::summary::write_json(&sh.cfg.out, &summary)?;
    Ok(summary)
}

/// The input side of a run: the keys in byte order ([`crate::keys::sort`]), with `--resume` the journal's key
/// states beside them ([`resume::states_chunk`]), and how many keys the walk of the two leaves.
struct Input {
    keys: SortedKeys,
    /// `None`: no resume, or a journal without keys.
    states: Option<PathBuf>,
    /// Keys the journal has a final outcome for.
    skipped: u64,
}

impl Input {
    /// `resume`: the journal to walk the keys against, its states sorted within `cfg.mem` into `scratch`.
    fn new(keys: SortedKeys, resume: Option<&Journal>, cfg: &RepairConfig, scratch: &Path) -> Result<Input> {
        let states = match resume {
            Some(j) => resume::states_chunk(j, cfg.mem, &cfg.tmp_dir, scratch)?,
            None => None,
        };
        let mut input = Input { keys, states, skipped: 0 };
        if input.states.is_some() {
            // A walk of its own, so that the progress line and the summary know the count before the
            // first key goes out.
            input.skipped = input.todo()?.count_skipped()?;
        }
        Ok(input)
    }

    /// The walk that feeds the pool.
    fn todo(&self) -> Result<Todo<Concat<ChunkCursor>, ChunkCursor>> {
        Ok(Todo::new(self.keys.cursor()?, self.states.as_ref().map(ChunkCursor::open).transpose()?))
    }

    /// Keys left to work on.
    fn left(&self) -> u64 {
        self.keys.count - self.skipped
    }
}

/// One key from start to its journaled outcome.
async fn repair_item(sh: &Shared, item: Item) -> Flow {
    let d = repair_one(sh, &item).await;
    record(sh, &d)
}

/// One key from a queue: worked on like a key of the input, then handed back. A final outcome is
/// journaled, then acknowledged (with the journal line as the fleet's record of it); a failed try is
/// not an outcome yet: it stays pending, and the queue delivers the key again after `--claim-idle`
/// (to this consumer or another) until `--max-deliveries`, when it arrives dead and is recorded as
/// failed with the reason.
async fn repair_delivery(sh: &Shared, mut dl: Delivery) -> Flow {
    let q = sh.queue.as_ref().expect("a delivery comes from a queue");
    let d = match &dl.dead {
        Some(why) => fail(Done::new(Outcome::Failed, &dl.item.key, dl.item.origin.as_deref()), "queue", why.clone()),
        None => {
            // An earlier delivery may have PUT the object and died before its outcome was
            // acknowledged: the queue's intent for the key says so, like the journal's on --resume.
            let intent = if dl.deliveries > 1 { q.has_intent(&dl.item.key).await } else { Ok(false) };
            match intent {
                Ok(i) => {
                    dl.item.intent = i;
                    repair_one(sh, &dl.item).await
                }
                Err(e) => {
                    fail(Done::new(Outcome::Failed, &dl.item.key, dl.item.origin.as_deref()), "queue", e.to_string())
                }
            }
        }
    };
    if !d.outcome.is_final() && dl.dead.is_none() {
        q.complete(&dl, d.outcome.name(), Vec::new(), false, d.error.clone());
        return Flow::Continue;
    }
    let flow = record(sh, &d);
    if matches!(flow, Flow::Continue) {
        q.complete(&dl, d.outcome.name(), journal::encode(&d), true, d.error.clone());
    }
    flow
}

/// Records a key's outcome: the journal (what the outcome files are rendered from), this run's counts
/// and the progress line. A journal that cannot be written stops the pool.
fn record(sh: &Shared, d: &Done) -> Flow {
    if let Err(e) = sh.journal.record(d) {
        sh.fatal.lock().unwrap().get_or_insert(e);
        return Flow::Stop;
    }
    sh.this_run.lock().unwrap().add(d.outcome);
    sh.live.done.fetch_add(1, Relaxed);
    sh.live.inflight.store(sh.throttle.inflight(), Relaxed);
    sh.live.limit.store(sh.throttle.limit(), Relaxed);
    Flow::Continue
}

/// A consumer's `--out` keeps the journal of one queue across restarts: restarted (by cron, systemd, a
/// rescheduled pod) under the same `--out`, it appends to it without `--resume`. A journal of another
/// queue, or of a one-machine repair, is refused as on one machine (`--resume` or `--force`).
fn consumer_journal(cfg: &RepairConfig, q: &consume::ConsumerConfig) -> Result<Journal> {
    let marker = cfg.out.join("queue");
    let resume = match std::fs::read_to_string(&marker) {
        Ok(was) if was.trim_end() == q.url.shown => true,
        Ok(was) if !cfg.force => {
            return Err(Error::Usage(format!(
                "{} holds the journal of a consumer of {}, not of {}: use another --out, or start over with --force",
                cfg.out.display(),
                was.trim_end(),
                q.url.shown
            )))
        }
        _ => cfg.resume,
    };
    let journal = Journal::open(&cfg.out, resume, cfg.force)?;
    std::fs::write(&marker, format!("{}\n", q.url.shown)).ctx(&marker)?;
    Ok(journal)
}

/// Renders the outcome files into `cfg.out` from the journal: every key's last final record, in key
/// byte order, streamed from the journal's sorted key states (within `cfg.mem`).
fn write_outcome_files(journal: &Journal, cfg: &RepairConfig) -> Result<outcome::Counts> {
    let mut states = journal.states(cfg.mem, &cfg.tmp_dir)?;
    outcome::write(&cfg.out, &mut states, &cfg.prefix, cfg.dry_run)
}

fn fail(mut d: Done, stage: &str, error: String) -> Done {
    d.outcome = Outcome::Failed;
    d.stage = Some(stage.to_string());
    d.error = Some(error);
    d
}

/// Does an existing object hold exactly `blob` (ETag = MD5, or the multipart ETag for `part_size`)?
fn same_upload(etag: Option<&str>, blob: &[u8], md5hex: &str, part_size: usize) -> bool {
    match etag {
        Some(e) if e.contains('-') => e.eq_ignore_ascii_case(&put::multipart_etag(blob, part_size)),
        Some(e) => e.eq_ignore_ascii_case(md5hex),
        None => false,
    }
}

async fn repair_one(sh: &Shared, it: &Item) -> Done {
    let cfg = &sh.cfg;
    let d = Done::new(Outcome::Failed, &it.key, it.origin.as_deref());
    let tk = match String::from_utf8([&cfg.prefix[..], &it.key].concat()) {
        Ok(s) => s,
        Err(_) => {
            return fail(
                d,
                "key",
                "target key is not valid UTF-8 (S3 keys are UTF-8 strings): nothing fetched or written".into(),
            )
        }
    };
    let _permit = sh.throttle.acquire().await;
    sh.live.inflight.store(sh.throttle.inflight(), Relaxed);
    sh.live.limit.store(sh.throttle.limit(), Relaxed);
    repair_permitted(sh, it, d, &tk).await
}

async fn repair_permitted(sh: &Shared, it: &Item, mut d: Done, tk: &str) -> Done {
    let cfg = &sh.cfg;
    let c = &sh.counters;
    let retry =
        Retry { throttle: &sh.throttle, max_attempts: cfg.retries + 1, retries: [&c.retries[0], &c.retries[1]] };

    // Fetch: the source, then each fallback, in lookup order.
    let tf = Instant::now();
    let (ti, blob) = match sh.fetcher.fetch(&retry, &mut d.attempts, it.origin()).await {
        Fetched::Found { blob, from } => (from, blob),
        Fetched::NotFound(tried) => {
            d.outcome = Outcome::NotFound;
            d.error = Some(tried);
            return d;
        }
        Fetched::Failed { stage, reason } => return fail(d, stage, reason),
    };
    c.fetch_us.fetch_add(tf.elapsed().as_micros() as u64, Relaxed);
    c.fetches.fetch_add(1, Relaxed);
    if ti > 0 {
        c.from_fallback.fetch_add(1, Relaxed);
    }
    let blob = Bytes::from(blob);
    let sum = put::md5(&blob);
    let md5hex = crate::hex::encode(&sum);
    let ct = cfg.content_type.clone().or_else(|| put::sniff(&blob).map(str::to_string));
    d.table = Some(sh.fetcher.name(ti).to_string());
    d.size = Some(blob.len() as u64);
    d.md5 = Some(md5hex.clone());
    d.content_type = ct.clone();

    // Re-check the target.
    let interrupted = it.intent;
    if !cfg.overwrite && (cfg.recheck || interrupted) {
        match retry.run(Side::S3, &mut d.attempts, || sh.target.head(tk)).await {
            Err(e) => return fail(d, "head", e.msg),
            Ok(None) => {}
            Ok(Some(h)) => {
                if interrupted
                    && h.size == blob.len() as u64
                    && same_upload(h.etag.as_deref(), &blob, &md5hex, cfg.part_size)
                {
                    c.completed_earlier.fetch_add(1, Relaxed);
                    d.outcome = Outcome::Ok;
                    d.error = Some("uploaded by an interrupted run (ETag matches the blob)".into());
                    return d;
                }
                d.existing = Some(h.size);
                d.outcome = if h.size == blob.len() as u64 { Outcome::Exists } else { Outcome::Differ };
                return d;
            }
        }
    }
    if cfg.dry_run {
        // Not println!: `--dry-run | head` closes the pipe, which must not panic a worker.
        use std::io::Write;
        let _ =
            writeln!(std::io::stdout().lock(), "would copy {tk} ({} bytes from {})", blob.len(), sh.fetcher.name(ti));
        d.outcome = Outcome::Ok;
        d.error = Some("dry run: not written".into());
        return d;
    }

    sh.throttle.bandwidth(blob.len()).await;
    if let Err(e) = sh.journal.intent(&it.key) {
        return fail(d, "journal", e.to_string());
    }
    if let Some(q) = &sh.queue {
        // The fleet's intent: a consumer that takes the key over after this one dies knows a PUT
        // may have completed.
        if let Err(e) = q.intent(&it.key).await {
            return fail(d, "queue", e.to_string());
        }
    }
    let tp = Instant::now();
    let up = put::Upload { body: blob, md5: sum, content_type: ct, if_none_match: !cfg.overwrite };
    match sh.target.put(&retry, &mut d.attempts, tk, &up).await {
        Ok(p) => {
            c.put_us.fetch_add(tp.elapsed().as_micros() as u64, Relaxed);
            c.puts.fetch_add(1, Relaxed);
            if p.parts > 0 {
                c.multipart.fetch_add(1, Relaxed);
            }
            sh.live.bytes.fetch_add(up.body.len() as u64, Relaxed);
            d.parts = p.parts;
            d.outcome = Outcome::Ok;
            d
        }
        Err(e) if e.is_precondition_failed() => {
            // The server honoured If-None-Match: someone wrote the key since our HEAD.
            if let Ok(Some(h)) = sh.target.head(tk).await {
                d.existing = Some(h.size);
                d.outcome = if h.size == up.body.len() as u64 { Outcome::Exists } else { Outcome::Differ };
            } else {
                d.outcome = Outcome::Exists;
            }
            d
        }
        Err(e) => fail(d, "put", e.msg),
    }
}
