//! `keyrecon-queue enqueue`: the keys of a diff (missing-on-target.csv / .txt / stdin, with origin and
//! size) into a queue's work stream, in batches, resumably.
//!
//! Each batch of entries goes in one MULTI with the input offset it reaches (the number of keys read
//! from the input so far), so the stream and the offset always agree. Rerun after a kill, the producer
//! skips the offset's keys and continues: no key is enqueued twice. Before each batch the offset is
//! read back; one that went backwards means Redis lost writes (restarted from an older snapshot): a
//! file input is reread from the stored offset, a pipe cannot be and is an error. The queue remembers
//! its input (name and size); another input into the same queue is refused unless `--force` (which
//! deletes the queue first).

use super::{Queue, QueueUrl, GROUP};
use crate::error::{Error, Result};
use crate::input::{for_each_record, InputSpec, InputStats, Rejects};
use crate::keys::Item;
use crate::progress::{Progress, Unit};
use crate::summary::Summary;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOOL: &str = "keyrecon-queue";

pub struct EnqueueConfig {
    pub url: QueueUrl,
    pub keys: InputSpec,
    /// Entries per MULTI.
    pub batch: usize,
    /// Delete the queue first when it holds another input.
    pub force: bool,
    /// Where rejected input rows go (`None`: counted only).
    pub rejects: Option<PathBuf>,
    pub redis_timeout: Duration,
    pub quiet: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct EnqueueSummary {
    pub queue: String,
    pub input: String,
    /// Keys this run added.
    pub enqueued: u64,
    /// Keys the queue holds from this input over all runs.
    pub total: u64,
    /// Keys an earlier run had enqueued (skipped).
    pub resumed_at: u64,
    /// The producer had already finished: nothing was read.
    pub already_done: bool,
    /// Input rows that could not be keys (see the rejects file): exit status 2.
    pub rejected: u64,
    pub blank: u64,
    /// Times the input was reread because Redis lost enqueued batches.
    pub rereads: u64,
    pub redis_outages: u64,
    pub elapsed_ms: u64,
    pub keys_per_sec: f64,
}

impl Summary for EnqueueSummary {
    fn exit_code(&self) -> i32 {
        if self.rejected > 0 {
            2
        } else {
            0
        }
    }
    fn paragraph(&self) -> String {
        if self.already_done {
            return format!(
                "{}: all {} keys of {} were already enqueued; nothing to do.",
                self.queue, self.total, self.input
            );
        }
        format!(
            "{}: {} keys enqueued from {}{} ({} in the queue from this input), {}; {} rejected, {} blank lines{}.",
            self.queue,
            self.enqueued,
            self.input,
            if self.resumed_at > 0 {
                format!(" after the {} an earlier run enqueued", self.resumed_at)
            } else {
                String::new()
            },
            self.total,
            crate::progress::rate(self.keys_per_sec, "keys"),
            self.rejected,
            self.blank,
            if self.rereads > 0 {
                format!("; the input was reread {} times (Redis lost writes)", self.rereads)
            } else {
                String::new()
            },
        )
    }
}

/// Why a pass over the input stopped early.
enum Stop {
    /// Redis holds fewer keys than we sent: read the input again from this offset.
    Rewind(u64),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Runs `keyrecon-queue enqueue`.
pub fn enqueue(cfg: EnqueueConfig) -> Result<EnqueueSummary> {
    let t0 = Instant::now();
    let rt = crate::rt::runtime()?;
    let q = rt.block_on(Queue::connect(&cfg.url, cfg.redis_timeout, cfg.quiet))?;
    let identity =
        format!("{} ({} bytes)", cfg.keys.display(), cfg.keys.len_hint().map_or("?".into(), |n| n.to_string()));
    let mut sum = EnqueueSummary { queue: cfg.url.shown.clone(), input: identity.clone(), ..Default::default() };

    let meta = rt.block_on(q.meta())?;
    if meta.exists() && meta.str("input").as_deref() != Some(identity.as_str()) {
        if !cfg.force {
            return Err(Error::Usage(format!(
                "{} already holds the keys of {}; enqueue {} into a queue of its own name, or pass --force to delete the queue first",
                cfg.url.shown,
                meta.str("input").unwrap_or_default(),
                identity
            )));
        }
        rt.block_on(delete(&q))?;
    }
    let meta = rt.block_on(q.meta())?;
    if meta.exists() && meta.done() {
        sum.already_done = true;
        sum.total = meta.num("enqueued");
        return Ok(sum);
    }
    if !meta.exists() {
        rt.block_on(create(&q, &identity))?;
    }
    let run = rt.block_on(q.meta())?.str("run").unwrap_or_default();

    let rejects = Rejects::new(cfg.rejects.clone());
    let progress = Progress::start(TOOL, "enqueue", Unit::Bytes, cfg.keys.len_hint(), cfg.quiet);
    let mut from = rt.block_on(q.meta())?.num("offset");
    sum.resumed_at = from;
    let stats = loop {
        match pass(&rt, &q, &cfg, &run, from, &rejects, &progress, &mut sum) {
            Ok(st) => break st,
            Err(Stop::Rewind(to)) if !cfg.keys.is_stdin() => {
                sum.rereads += 1;
                if !cfg.quiet {
                    eprintln!("{TOOL}: {}: Redis holds keys up to input offset {to} only (it lost writes); reading the input again from there", cfg.url.shown);
                }
                from = to;
            }
            Err(Stop::Rewind(to)) => {
                return Err(Error::Usage(format!(
                    "{}: Redis lost enqueued keys (it holds keys up to input offset {to} of this pipe); a pipe cannot be reread: rerun the producer from a file",
                    cfg.url.shown
                )))
            }
            Err(Stop::Failed(e)) => return Err(e),
        }
    };
    progress.finish();
    rejects.flush()?;
    rt.block_on(q.redis.run::<()>("HSET meta done", ::redis::cmd("HSET").arg(q.key("meta")).arg("done").arg(1)))?;
    sum.total = rt.block_on(q.meta())?.num("enqueued");
    sum.rejected = stats.rejected;
    sum.blank = stats.blank;
    sum.redis_outages = q.redis.outages.load(std::sync::atomic::Ordering::Relaxed);
    sum.elapsed_ms = t0.elapsed().as_millis() as u64;
    sum.keys_per_sec = sum.enqueued as f64 / t0.elapsed().as_secs_f64().max(1e-3);
    Ok(sum)
}

/// One pass over the input from key `from` (0-based count of keys read), flushing batches.
#[allow(clippy::too_many_arguments)]
fn pass(
    rt: &tokio::runtime::Runtime,
    q: &Queue,
    cfg: &EnqueueConfig,
    run: &str,
    from: u64,
    rejects: &Rejects,
    progress: &Progress,
    sum: &mut EnqueueSummary,
) -> std::result::Result<InputStats, Stop> {
    let mut batch = Batch { entries: Vec::with_capacity(cfg.batch) };
    let mut n = 0u64;
    // What the stream holds, as far as we know: the offset of our last batch.
    let mut written = from;
    let mut stop = None;
    let r = for_each_record(&cfg.keys, rejects, &progress.counter, |r| {
        n += 1;
        if n <= from {
            return Ok(());
        }
        batch.push(r.key, r.origin, r.size);
        if batch.entries.len() >= cfg.batch {
            match rt.block_on(flush(q, run, &mut batch, written, n)) {
                Ok(added) => {
                    written = n;
                    sum.enqueued += added;
                }
                Err(s) => {
                    stop = Some(s);
                    return Err(Error::Internal("stop".into()));
                }
            }
        }
        Ok(())
    });
    if let Some(s) = stop {
        return Err(s);
    }
    let stats = r?;
    sum.enqueued += rt.block_on(flush(q, run, &mut batch, written, n))?;
    Ok(stats)
}

/// Entries waiting for their MULTI.
struct Batch {
    entries: Vec<Item>,
}

impl Batch {
    fn push(&mut self, key: &[u8], origin: Option<&[u8]>, size: Option<u64>) {
        self.entries.push(Item { key: key.to_vec(), origin: origin.map(<[u8]>::to_vec), size, intent: false });
    }
}

/// Adds the batch and moves the offset from `expect` to `offset` in one MULTI. Fails with
/// [`Stop::Rewind`] when the stored offset is not `expect` any more (Redis lost writes).
async fn flush(q: &Queue, run: &str, b: &mut Batch, expect: u64, offset: u64) -> std::result::Result<u64, Stop> {
    let meta = q.meta().await?;
    if meta.str("run").as_deref() != Some(run) {
        return Err(Stop::Failed(Error::Usage(format!(
            "{}: the queue vanished or was recreated while enqueuing (Redis restarted without persistence, or someone deleted it)",
            q.url.shown
        ))));
    }
    let stored = meta.num("offset");
    if stored < expect {
        return Err(Stop::Rewind(stored));
    }
    if b.entries.is_empty() && stored == offset {
        return Ok(0);
    }
    let mut p = ::redis::pipe();
    p.atomic();
    for it in &b.entries {
        let mut c = ::redis::cmd("XADD");
        c.arg(q.key("keys")).arg("*").arg("k").arg(&it.key);
        if let Some(o) = &it.origin {
            c.arg("o").arg(o);
        }
        if let Some(s) = it.size {
            c.arg("s").arg(s);
        }
        p.add_command(c).ignore();
    }
    let n = b.entries.len() as u64;
    p.cmd("HSET").arg(q.key("meta")).arg("offset").arg(offset).ignore();
    p.cmd("HINCRBY").arg(q.key("meta")).arg("enqueued").arg(n).ignore();
    q.redis.run::<()>("MULTI XADD batch", &p).await?;
    b.entries.clear();
    Ok(n)
}

/// Creates the queue: its meta hash (a new run id) and the consumer group on an empty work stream.
async fn create(q: &Queue, input: &str) -> Result<()> {
    let run = format!("{:016x}", rand::random::<u64>());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut p = ::redis::pipe();
    p.atomic()
        .cmd("HSET")
        .arg(q.key("meta"))
        .arg("run")
        .arg(&run)
        .arg("created_ms")
        .arg(now)
        .arg("input")
        .arg(input)
        .arg("offset")
        .arg(0)
        .arg("enqueued")
        .arg(0)
        .ignore();
    q.redis.run::<()>("HSET meta", &p).await?;
    match q
        .redis
        .run::<()>(
            "XGROUP CREATE",
            ::redis::cmd("XGROUP").arg("CREATE").arg(q.key("keys")).arg(GROUP).arg("0").arg("MKSTREAM"),
        )
        .await
    {
        Err(e) if super::redis::code_of(&e).as_deref() == Some("BUSYGROUP") => Ok(()),
        r => r,
    }
}

/// Deletes every key of the queue.
pub async fn delete(q: &Queue) -> Result<()> {
    let mut c = ::redis::cmd("DEL");
    for part in ["keys", "meta", "outcomes", "dead", "intents", "errors"] {
        c.arg(q.key(part));
    }
    q.redis.run::<()>("DEL queue", &c).await
}
