//! A queue consumer: the keys of a queue's work stream handed to a tool's workers (repair's copier,
//! verify's checker) through the worker pool, with the rules of the module doc of `queue`.
//!
//! ```text
//!  feed (blocking thread)                     workers (pool)                 acker + heartbeat (tasks)
//!   every claim_idle/2: XAUTOCLAIM idle ──┐
//!   XREADGROUP > COUNT n ─────────────────┼─► Delivery ─► work(d) ─► complete(d, outcome)
//!   nothing new: done? pending == 0? ─ end│                              │ buffered, a script every 20 ms:
//!                                          │                              │ XACK; acked: XADD outcome,
//!   held ids ◄─────────────────────────────┘                              │ HINCRBY meta, HDEL intents
//!   XCLAIM JUSTID held (keep them from going idle) every claim_idle/3     ▼ (a failed try: HSET errors, no ack)
//! ```
//! A tool's `work` records the outcome in its own journal first and calls [`Consumer::complete`] after,
//! so an entry is acknowledged only once its outcome is safe. A delivery claimed more than
//! `max_deliveries` times arrives with [`Delivery::dead`] set: the tool records it as failed with that
//! reason, and `complete` puts it on the dead-letter stream.

use super::{parse_entries, parse_read, Entry, Queue, QueueUrl, GROUP};
use crate::error::{Error, Result};
use crate::keys::Item;
use crate::pool::{self, Feeder, Flow};
use redis::Value;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an outcome may wait for its acknowledgement (all outcomes of that time go in one script).
const ACK_EVERY: Duration = Duration::from_millis(20);
/// The acknowledgement of a flush. KEYS: the work stream, outcomes, dead letters, meta, intents,
/// errors. ARGV: group, consumer, the number F of final outcomes, then F times (entry id, key,
/// outcome, record, deliveries or "" , reason or ""), then (key, error) pairs of failed tries.
/// Returns {outcomes recorded, dead-lettered}.
const ACK_SCRIPT: &str = r#"
local group, consumer, nf = ARGV[1], ARGV[2], tonumber(ARGV[3])
local done, dead, i = 0, 0, 4
local ids, keys, per = {}, {}, {}
for _ = 1, nf do
  local id, key, o, rec, n, why = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    redis.call('XADD', KEYS[2], '*', 'k', key, 'o', o, 'c', consumer, 'd', rec)
    if n ~= '' then
      redis.call('XADD', KEYS[3], '*', 'k', key, 'n', n, 'e', why)
      dead = dead + 1
    end
    per[o] = (per[o] or 0) + 1
    done = done + 1
  end
  ids[#ids + 1] = id
  keys[#keys + 1] = key
end
-- Batched, in slices that stay within Lua's stack for unpack.
for s = 1, #ids, 1000 do
  local e = math.min(s + 999, #ids)
  redis.call('XDEL', KEYS[1], unpack(ids, s, e))
  redis.call('HDEL', KEYS[5], unpack(keys, s, e))
  redis.call('HDEL', KEYS[6], unpack(keys, s, e))
end
for o, n in pairs(per) do
  redis.call('HINCRBY', KEYS[4], 'n:' .. o, n)
end
if done > 0 then
  redis.call('HINCRBY', KEYS[4], 'c:' .. consumer, done)
end
while i < #ARGV do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return {done, dead}
"#;

/// How long to wait before asking again when the stream has nothing new.
const IDLE_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub url: QueueUrl,
    /// This consumer's name in the group (unique per process: a second process with the same name
    /// would take the first one's pending keys for its own).
    pub consumer: String,
    /// The tool consuming (`keyrecon-repair`, `keyrecon-verify`): a queue is consumed by one tool.
    pub tool: &'static str,
    /// The tool's `--prefix` (target key = prefix + key): one per queue, and the fleet report's.
    pub prefix: Vec<u8>,
    /// Entries idle this long (their consumer died, or a try failed) are claimed by a live consumer.
    pub claim_idle: Duration,
    /// Deliveries of one key before it is given up (dead-letter stream, outcome failed).
    pub max_deliveries: u64,
    /// Keys taken from the queue at a time (about the tool's concurrency).
    pub batch: usize,
    pub redis_timeout: Duration,
    pub quiet: bool,
}

/// A key delivered to this consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub item: Item,
    /// Times the key was delivered, this one included.
    pub deliveries: u64,
    /// Set when the key is to be given up: why (deliveries and the last error).
    pub dead: Option<String>,
}

/// What this consumer did (its summary's `queue` part).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStats {
    pub queue: String,
    pub consumer: String,
    /// Keys read from the stream for the first time.
    pub delivered: u64,
    /// Keys claimed from idle entries (a dead consumer's, or failed tries).
    pub claimed: u64,
    /// Final outcomes acknowledged.
    pub acknowledged: u64,
    /// Final outcomes dropped because another consumer had recorded the key's outcome first (it
    /// claimed the key while this one could not reach Redis to keep it).
    pub superseded: u64,
    /// Failed tries left pending for another delivery.
    pub failed_tries: u64,
    /// Keys given up after --max-deliveries.
    pub dead_lettered: u64,
    pub redis_outages: u64,
}

enum Ack {
    /// A final outcome: `outcome` is its name, `record` the tool's record of it (a journal line).
    Final { id: String, key: Vec<u8>, outcome: &'static str, record: Vec<u8>, dead: Option<(u64, String)> },
    /// A failed try: remembered for the dead-letter record, not acknowledged.
    Failed { key: Vec<u8>, error: String },
}

pub struct Consumer {
    q: Queue,
    cfg: ConsumerConfig,
    /// The queue's run id when this consumer started: another one means the queue vanished.
    run: String,
    held: Mutex<HashSet<String>>,
    acks: Mutex<Vec<Ack>>,
    stop: AtomicBool,
    delivered: AtomicU64,
    claimed: AtomicU64,
    acknowledged: AtomicU64,
    superseded: AtomicU64,
    failed_tries: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Consumer {
    /// Joins the queue's consumer group. The queue must exist (`keyrecon-queue enqueue` made it) and
    /// must be consumed by this tool.
    pub async fn open(cfg: ConsumerConfig) -> Result<Arc<Consumer>> {
        let q = Queue::connect(&cfg.url, cfg.redis_timeout, cfg.quiet).await?;
        let meta = q.meta().await?;
        if !meta.exists() {
            return Err(Error::Usage(format!(
                "{}: no such queue (create it with `keyrecon-queue enqueue --keys FILE {}`)",
                cfg.url.shown, cfg.url.shown
            )));
        }
        let set: bool =
            q.redis.run("HSETNX meta tool", redis::cmd("HSETNX").arg(q.key("meta")).arg("tool").arg(cfg.tool)).await?;
        if !set {
            let tool = q.meta().await?.str("tool").unwrap_or_default();
            if tool != cfg.tool {
                return Err(Error::Usage(format!(
                    "{}: the queue is consumed by {tool}; {} needs a queue of its own",
                    cfg.url.shown, cfg.tool
                )));
            }
        }
        let set: bool = q
            .redis
            .run("HSETNX meta prefix", redis::cmd("HSETNX").arg(q.key("meta")).arg("prefix").arg(&cfg.prefix))
            .await?;
        if !set {
            let prefix = q.meta().await?.0.get("prefix").cloned().unwrap_or_default();
            if prefix != cfg.prefix {
                return Err(Error::Usage(format!(
                    "{}: the queue's other consumers write under --prefix {:?}, this one under {:?}: one queue, one target",
                    cfg.url.shown,
                    String::from_utf8_lossy(&prefix),
                    String::from_utf8_lossy(&cfg.prefix)
                )));
            }
        }
        Ok(Arc::new(Consumer {
            run: meta.str("run").unwrap_or_default(),
            q,
            cfg,
            held: Mutex::new(HashSet::new()),
            acks: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
            failed_tries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        }))
    }

    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            queue: self.cfg.url.shown.clone(),
            consumer: self.cfg.consumer.clone(),
            delivered: self.delivered.load(Relaxed),
            claimed: self.claimed.load(Relaxed),
            acknowledged: self.acknowledged.load(Relaxed),
            superseded: self.superseded.load(Relaxed),
            failed_tries: self.failed_tries.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            redis_outages: self.q.redis.outages.load(Relaxed),
        }
    }

    /// Records that a PUT of `key` is about to start (the intent rule of repair, fleet-wide).
    pub async fn intent(&self, key: &[u8]) -> Result<()> {
        self.q
            .redis
            .run("HSET intents", redis::cmd("HSET").arg(self.q.key("intents")).arg(key).arg(&self.cfg.consumer))
            .await
    }

    /// Did some consumer start a PUT of `key` that has no final outcome yet?
    pub async fn has_intent(&self, key: &[u8]) -> Result<bool> {
        self.q.redis.run("HEXISTS intents", redis::cmd("HEXISTS").arg(self.q.key("intents")).arg(key)).await
    }

    /// A delivery is done: with a final outcome (`record` is the tool's record of it, e.g. a journal
    /// line) it is acknowledged in the next flush; a failed try (`final_ == false`) stays pending for
    /// another delivery. Call only after the outcome is in the tool's journal.
    pub fn complete(&self, d: &Delivery, outcome: &'static str, record: Vec<u8>, final_: bool, error: Option<String>) {
        self.held.lock().unwrap().remove(&d.id);
        let ack = if final_ || d.dead.is_some() {
            Ack::Final {
                id: d.id.clone(),
                key: d.item.key.clone(),
                outcome,
                record,
                dead: d.dead.clone().map(|why| (d.deliveries, why)),
            }
        } else {
            Ack::Failed { key: d.item.key.clone(), error: error.unwrap_or_default() }
        };
        self.acks.lock().unwrap().push(ack);
    }

    /// Sends the buffered acknowledgements in one script (atomic, like MULTI). A final outcome is
    /// recorded only if its XACK acknowledged the entry: when two consumers finished one key (one
    /// claimed it while the other, cut off from Redis, could not keep it), the first wins and the
    /// second's outcome is dropped, so the outcome stream has one outcome per entry. A resend of a
    /// script whose reply was lost records nothing twice, for the same reason.
    async fn flush(&self) -> Result<()> {
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        if acks.is_empty() {
            return Ok(());
        }
        let mut c = redis::cmd("EVAL");
        c.arg(ACK_SCRIPT).arg(6);
        for part in ["keys", "outcomes", "dead", "meta", "intents", "errors"] {
            c.arg(self.q.key(part));
        }
        let finals = acks.iter().filter(|a| matches!(a, Ack::Final { .. })).count();
        c.arg(GROUP).arg(&self.cfg.consumer).arg(finals);
        let mut failed = 0;
        for a in &acks {
            if let Ack::Final { id, key, outcome, record, dead } = a {
                c.arg(id).arg(key).arg(*outcome).arg(record);
                match dead {
                    Some((n, why)) => c.arg(*n).arg(why),
                    None => c.arg("").arg(""),
                };
            }
        }
        for a in &acks {
            if let Ack::Failed { key, error } = a {
                failed += 1;
                c.arg(key).arg(error);
            }
        }
        let (done, dead): (u64, u64) = self.q.redis.run("EVAL acknowledge", &c).await?;
        self.acknowledged.fetch_add(done, Relaxed);
        self.superseded.fetch_add(finals as u64 - done, Relaxed);
        self.failed_tries.fetch_add(failed, Relaxed);
        self.dead_lettered.fetch_add(dead, Relaxed);
        Ok(())
    }

    /// Keeps the entries this consumer holds from looking idle (so they are not claimed from a live
    /// consumer), without counting a delivery (JUSTID).
    async fn heartbeat(&self) -> Result<()> {
        let held: Vec<String> = self.held.lock().unwrap().iter().cloned().collect();
        if held.is_empty() {
            return Ok(());
        }
        let mut c = redis::cmd("XCLAIM");
        c.arg(self.q.key("keys")).arg(GROUP).arg(&self.cfg.consumer).arg(0);
        for id in &held {
            c.arg(id);
        }
        c.arg("JUSTID");
        self.q.redis.run::<Value>("XCLAIM JUSTID", &c).await.map(|_| ())
    }

    fn delivery(&self, e: Entry, deliveries: u64, dead: Option<String>) -> Option<Delivery> {
        let key = e.get("k")?.to_vec();
        let origin = e.get("o").map(<[u8]>::to_vec);
        let size = e.get("s").and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
        self.held.lock().unwrap().insert(e.id.clone());
        Some(Delivery { id: e.id, item: Item { key, origin, size, intent: false }, deliveries, dead })
    }

    /// Claims entries idle for `claim_idle` (a dead consumer's, or failed tries), with their delivery
    /// counts; those past `max_deliveries` come back marked dead, with the last error.
    async fn claim(&self) -> Result<Vec<Delivery>> {
        let keys = self.q.key("keys");
        let idle = self.cfg.claim_idle.as_millis() as u64;
        let reply: Value = self
            .q
            .redis
            .run(
                "XAUTOCLAIM",
                redis::cmd("XAUTOCLAIM")
                    .arg(&keys)
                    .arg(GROUP)
                    .arg(&self.cfg.consumer)
                    .arg(idle)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(self.cfg.batch),
            )
            .await
            .map_err(|e| self.vanished_or(e))?;
        let parts = match &reply {
            Value::Array(a) => a.as_slice(),
            _ => &[],
        };
        let entries = parts.get(1).map(parse_entries).unwrap_or_default();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Delivery counts of what we hold now.
        let pending: Value = self
            .q
            .redis
            .run(
                "XPENDING",
                redis::cmd("XPENDING")
                    .arg(&keys)
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(self.cfg.batch * 4 + 1024)
                    .arg(&self.cfg.consumer),
            )
            .await?;
        let counts: HashMap<String, u64> = match &pending {
            Value::Array(rows) => rows
                .iter()
                .filter_map(|r| match r {
                    Value::Array(f) => {
                        let id = redis::from_redis_value::<String>(f.first()?.clone()).ok()?;
                        let n = redis::from_redis_value::<u64>(f.get(3)?.clone()).ok()?;
                        Some((id, n))
                    }
                    _ => None,
                })
                .collect(),
            _ => HashMap::new(),
        };
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for e in entries {
            if e.fields.is_empty() {
                gone.push(e.id);
                continue;
            }
            let n = counts.get(&e.id).copied().unwrap_or(2);
            let dead = if n > self.cfg.max_deliveries {
                let key = e.get("k").unwrap_or_default().to_vec();
                let last: Option<String> =
                    self.q.redis.run("HGET errors", redis::cmd("HGET").arg(self.q.key("errors")).arg(&key)).await?;
                Some(format!(
                    "gave up after {} deliveries (--max-deliveries {}); last error: {}",
                    n - 1,
                    self.cfg.max_deliveries,
                    last.unwrap_or_else(|| "none recorded (the consumers holding it stopped)".into())
                ))
            } else {
                None
            };
            out.extend(self.delivery(e, n, dead));
        }
        self.ack_deleted(&gone).await?;
        self.claimed.fetch_add(out.len() as u64, Relaxed);
        Ok(out)
    }

    /// Entries already pending on this consumer's name after `after`: a consumer restarted under its
    /// old name takes its keys back at once instead of after `claim_idle`. They were delivered before,
    /// so they count as redeliveries (the intent check applies).
    async fn read_own(&self, after: &str) -> Result<(Vec<Delivery>, Option<String>)> {
        let entries = self.read_group(after).await?;
        let last = entries.last().map(|e| e.id.clone());
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for e in entries {
            if e.fields.is_empty() {
                gone.push(e.id);
            } else {
                out.extend(self.delivery(e, 2, None));
            }
        }
        self.ack_deleted(&gone).await?;
        self.claimed.fetch_add(out.len() as u64, Relaxed);
        Ok((out, last))
    }

    /// Acknowledges pending entries whose stream entry is gone (another consumer finished and deleted
    /// it): there is nothing left to work on.
    async fn ack_deleted(&self, gone: &[String]) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut c = redis::cmd("XACK");
        c.arg(self.q.key("keys")).arg(GROUP);
        for id in gone {
            c.arg(id);
        }
        self.q.redis.run::<()>("XACK deleted", &c).await
    }

    /// XREADGROUP of up to a batch of entries: `>` for entries never delivered, an id for those
    /// pending on this consumer's name after it.
    async fn read_group(&self, after: &str) -> Result<Vec<Entry>> {
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP").arg(GROUP).arg(&self.cfg.consumer).arg("COUNT").arg(self.cfg.batch);
        c.arg("STREAMS").arg(self.q.key("keys")).arg(after);
        let reply: Value = self.q.redis.run("XREADGROUP", &c).await.map_err(|e| self.vanished_or(e))?;
        Ok(parse_read(&reply))
    }

    /// New entries for this consumer.
    async fn read_new(&self) -> Result<Vec<Delivery>> {
        let entries = self.read_group(">").await?;
        let out: Vec<Delivery> = entries.into_iter().filter_map(|e| self.delivery(e, 1, None)).collect();
        self.delivered.fetch_add(out.len() as u64, Relaxed);
        Ok(out)
    }

    /// NOGROUP means the stream or its group is gone: the queue vanished.
    fn vanished_or(&self, e: Error) -> Error {
        if super::redis::code_of(&e).as_deref() == Some("NOGROUP") {
            self.vanished()
        } else {
            e
        }
    }

    fn vanished(&self) -> Error {
        Error::Usage(format!(
            "{}: the queue vanished under the consumer (Redis restarted without its data: run Redis with appendonly yes; see docs/fleet.md). Keys that were not acknowledged have no outcome: enqueue the diff again into a new queue.",
            self.cfg.url.shown
        ))
    }

    /// True when the queue is drained: the producer finished and no entry is pending. Checks that
    /// the queue is still the one this consumer joined.
    async fn drained(&self) -> Result<bool> {
        let meta = self.q.meta().await?;
        if meta.str("run").as_deref() != Some(self.run.as_str()) {
            return Err(self.vanished());
        }
        if !meta.done() {
            return Ok(false);
        }
        let summary: Value = self
            .q
            .redis
            .run("XPENDING", redis::cmd("XPENDING").arg(self.q.key("keys")).arg(GROUP))
            .await
            .map_err(|e| self.vanished_or(e))?;
        let pending = match &summary {
            Value::Array(a) => a.first().and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok()).unwrap_or(0),
            _ => 0,
        };
        Ok(pending == 0 && self.acks.lock().unwrap().is_empty())
    }

    /// The producer side of the pool: claims and reads deliveries until the queue is drained.
    fn feed(&self, feed: Feeder<Delivery>, rt: tokio::runtime::Handle) -> Result<()> {
        let claim_every = (self.cfg.claim_idle / 2).max(Duration::from_millis(50));
        let mut last_claim: Option<Instant> = None;
        // First what an earlier process of this name left pending.
        let mut own = Some("0".to_string());
        while let Some(after) = own.take() {
            let (got, last) = rt.block_on(self.read_own(&after))?;
            for d in got {
                if !feed.send(d) {
                    return Ok(());
                }
            }
            own = last;
        }
        loop {
            if self.stop.load(Relaxed) {
                return Ok(());
            }
            let mut got = Vec::new();
            if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
                last_claim = Some(Instant::now());
                got = rt.block_on(self.claim())?;
            }
            if got.is_empty() {
                got = rt.block_on(self.read_new())?;
            }
            if got.is_empty() {
                if rt.block_on(self.drained())? {
                    return Ok(());
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            for d in got {
                if !feed.send(d) {
                    return Ok(());
                }
            }
        }
    }
}

/// Runs a consumer: deliveries through `work` on up to `workers` tasks (the pool), acknowledgements
/// and heartbeats in the background, until the queue is drained or `work` stops the pool. Every
/// buffered acknowledgement is sent before it returns.
pub async fn run<W, Fut>(consumer: Arc<Consumer>, workers: usize, work: W) -> Result<()>
where
    W: Fn(Delivery) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Flow> + Send,
{
    let bg = {
        let c = consumer.clone();
        tokio::spawn(async move {
            let beat_every = (c.cfg.claim_idle / 3).max(Duration::from_millis(50));
            let mut last_beat = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(ACK_EVERY).await;
                let mut r = c.flush().await;
                if r.is_ok() && last_beat.elapsed() >= beat_every {
                    last_beat = tokio::time::Instant::now();
                    r = c.heartbeat().await;
                }
                if r.is_err() || c.stop.load(Relaxed) {
                    // An error stops the feed; the workers finish what they hold.
                    c.stop.store(true, Relaxed);
                    return r;
                }
            }
        })
    };
    let feeder = consumer.clone();
    let rt = tokio::runtime::Handle::current();
    // Room for two batches: the next read overlaps the work on the current one.
    let room = consumer.cfg.batch * 2;
    let r = pool::run_with_queue(workers, room, move |feed| feeder.feed(feed, rt), work).await;
    consumer.stop.store(true, Relaxed);
    let b = bg.await.map_err(|e| Error::Internal(format!("queue acknowledgements: {e}")))?;
    consumer.flush().await?;
    r.and(b)
}
