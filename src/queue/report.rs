//! `keyrecon-queue report`: one set of outcome files for the whole fleet, each key exactly once.
//!
//! ```text
//!  outcomes stream ── XREVRANGE, newest first, pages of 1000 ──► external sorter (first pushed wins:
//!  (every final outcome any consumer acknowledged;                 the newest record of each key)
//!   a redelivered key may have several)                              │ key byte order
//!                                                                     ▼
//!                               the tool's outcome writer (repair: ok.csv, not-found.csv, failed.csv,
//!                               exists.csv; verify: ok.csv, missing.csv, differ.csv, failed.csv) + summary.json
//! ```
//! Memory stays within `--mem` whatever the number of keys (the sorter spills). The report of a queue
//! that is not drained yet is written too (what is known so far) and exits 2, saying how many keys
//! have no outcome yet.

use super::{parse_entries, Queue, QueueUrl};
use crate::error::{Error, Result};
use crate::merge::SortedCursor;
use crate::record::Schema;
use crate::sort::{SortConfig, Sorter};
use crate::summary::Summary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Outcome entries read per XREVRANGE.
const PAGE: usize = 1000;

pub struct ReportConfig {
    pub url: QueueUrl,
    pub out: PathBuf,
    /// The sorter's budget.
    pub mem: usize,
    pub tmp: PathBuf,
    pub redis_timeout: Duration,
    pub quiet: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct FleetReport {
    pub queue: String,
    pub tool: String,
    pub input: String,
    pub out: String,
    pub enqueued: u64,
    /// Keys with a final outcome (rows of the outcome files).
    pub keys: u64,
    /// Keys per outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Keys per consumer that gave them their (newest) outcome.
    pub consumers: BTreeMap<String, u64>,
    /// Outcome entries beyond one per key (keys delivered again after a consumer died mid-ack).
    pub redelivered: u64,
    pub dead_lettered: u64,
    /// Keys enqueued without a final outcome yet (waiting or pending).
    pub unfinished: u64,
    pub producer_done: bool,
    pub elapsed_ms: u64,
    pub exit_code: i32,
}

impl Summary for FleetReport {
    fn exit_code(&self) -> i32 {
        self.exit_code
    }
    fn paragraph(&self) -> String {
        let mut s = format!(
            "{} ({}): {} keys with an outcome of {} enqueued: {}; {} dead-lettered, {} redelivered outcomes merged; by consumer: {}; see {}.",
            self.queue,
            self.tool,
            self.keys,
            self.enqueued,
            self.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
            self.dead_lettered,
            self.redelivered,
            self.consumers.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            self.out
        );
        if self.unfinished > 0 || !self.producer_done {
            s.push_str(&format!(
                " NOT DRAINED: {} keys have no outcome yet{}; report again when `keyrecon-queue status` says drained.",
                self.unfinished,
                if self.producer_done { "" } else { " and the producer is still enqueuing" }
            ));
        }
        s
    }
}

/// How a tool turns its outcome records into its outcome files. The tools that consume a queue give
/// theirs ([`crate::repair::fleet_render`]): the queue knows entries, not outcomes.
pub trait Render {
    /// One key's record (its newest), keys in byte order.
    fn row(&mut self, record: &[u8]) -> Result<()>;
    /// (outcome name -> keys, the tool's exit code for them).
    fn finish(self: Box<Self>) -> Result<(BTreeMap<String, u64>, i32)>;
}

/// The outcome writer of the tool named by the queue (`keyrecon-repair`, `keyrecon-verify`; a queue no
/// consumer joined yet names none), writing into `out`, keys shown with the queue's `prefix`.
pub type Renderer = for<'p> fn(tool: &str, out: &Path, prefix: &'p [u8]) -> Result<Box<dyn Render + 'p>>;

/// Runs `keyrecon-queue report`.
pub fn report(cfg: ReportConfig, renderer: Renderer) -> Result<FleetReport> {
    let t0 = Instant::now();
    let rt = crate::rt::runtime()?;
    let q = rt.block_on(Queue::connect(&cfg.url, cfg.redis_timeout, cfg.quiet))?;
    let meta = rt.block_on(q.meta())?;
    if !meta.exists() {
        return Err(Error::Usage(format!("{}: no such queue", cfg.url.shown)));
    }
    let tool = meta.str("tool").unwrap_or_default();
    let prefix = meta.0.get("prefix").cloned().unwrap_or_default();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let mut render = renderer(&tool, &cfg.out, &prefix)?;

    // Newest first into the sorter: among equal keys the first pushed (the newest) wins.
    let mut sorter = Sorter::new(SortConfig::new(cfg.mem, &cfg.tmp, Schema(Schema::CLASS)));
    let mut entries = 0u64;
    let mut consumer_of: Vec<u8> = Vec::new();
    let mut end = "+".to_string();
    loop {
        let page: redis::Value = rt.block_on(q.redis.run(
            "XREVRANGE outcomes",
            redis::cmd("XREVRANGE").arg(q.key("outcomes")).arg(&end).arg("-").arg("COUNT").arg(PAGE),
        ))?;
        let page = parse_entries(&page);
        for e in &page {
            let (Some(k), Some(d)) = (e.get("k"), e.get("d")) else { continue };
            // meta = consumer name, NUL, record (consumer names hold no NUL).
            consumer_of.clear();
            consumer_of.extend_from_slice(e.get("c").unwrap_or_default());
            consumer_of.push(0);
            consumer_of.extend_from_slice(d);
            sorter.push(k, &consumer_of)?;
            entries += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => end = format!("({}", last.id),
            _ => break,
        }
    }
    let mut sorted = sorter.finish()?;
    let mut consumers: BTreeMap<String, u64> = BTreeMap::new();
    let mut keys = 0u64;
    while sorted.advance()? {
        let m = sorted.meta();
        let cut = memchr::memchr(0, m).unwrap_or(m.len());
        *consumers.entry(String::from_utf8_lossy(&m[..cut]).into_owned()).or_default() += 1;
        render.row(&m[(cut + 1).min(m.len())..])?;
        keys += 1;
    }
    let (outcomes, tool_code) = render.finish()?;
    let dead: u64 = rt.block_on(q.redis.run("XLEN dead", redis::cmd("XLEN").arg(q.key("dead"))))?;
    let len: u64 = rt.block_on(q.redis.run("XLEN keys", redis::cmd("XLEN").arg(q.key("keys"))))?;
    let mut r = FleetReport {
        queue: cfg.url.shown.clone(),
        tool,
        input: meta.str("input").unwrap_or_default(),
        out: cfg.out.display().to_string(),
        enqueued: meta.num("enqueued"),
        keys,
        outcomes,
        consumers,
        redelivered: entries - keys,
        dead_lettered: dead,
        // Acknowledged entries are deleted: what the work stream still holds has no outcome yet.
        unfinished: len,
        producer_done: meta.done(),
        elapsed_ms: 0,
        exit_code: 0,
    };
    r.exit_code = if r.unfinished > 0 || !r.producer_done { 2 } else { tool_code };
    r.elapsed_ms = t0.elapsed().as_millis() as u64;
    crate::summary::write_json(&cfg.out, &r)?;
    Ok(r)
}
