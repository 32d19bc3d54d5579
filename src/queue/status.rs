//! `keyrecon-queue status`: how far a queue is — keys waiting, pending per consumer, outcomes so far,
//! the rate per consumer and in total, and an ETA — as a paragraph with a table, or as JSON (`--json`)
//! for a monitor. Rates come from the newest outcome entries (their ids carry the time they were
//! acknowledged), over the last [`WINDOW`] outcomes or up to now, so a stalled fleet shows a falling
//! rate, not the rate it once had.

use super::{parse_entries, Queue, QueueUrl, GROUP};
use crate::error::{Error, Result};
use crate::progress::{duration, human};
use crate::summary::Summary;
use redis::Value;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Outcome entries the rates are measured over.
pub const WINDOW: usize = 2000;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Keys it holds (delivered, no final outcome yet).
    pub pending: u64,
    /// Milliseconds since it last talked to the queue.
    pub idle_ms: u64,
    /// Final outcomes it acknowledged over the whole run.
    pub done: u64,
    /// Its share of the recent rate, keys/s.
    pub keys_per_sec: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub queue: String,
    /// The tool consuming it (empty before the first consumer started).
    pub tool: String,
    pub input: String,
    pub producer_done: bool,
    pub enqueued: u64,
    /// Keys with a final outcome.
    pub done: u64,
    /// Keys no consumer took yet.
    pub waiting: u64,
    /// Keys delivered without a final outcome (in flight, or a failed try waiting to be claimed).
    pub pending: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub dead_lettered: u64,
    pub consumers: Vec<ConsumerStatus>,
    pub keys_per_sec: f64,
    /// Seconds to drain the queue at the recent rate (none while nothing is being done).
    pub eta_s: Option<f64>,
    /// The producer is done and nothing is waiting or pending.
    pub drained: bool,
}

impl Summary for Status {
    fn exit_code(&self) -> i32 {
        0
    }
    fn paragraph(&self) -> String {
        let share = if self.enqueued > 0 {
            format!(" ({:.0}%)", self.done as f64 * 100.0 / self.enqueued as f64)
        } else {
            String::new()
        };
        let mut s = format!(
            "{}{}: {} of {} keys done{share}, {} waiting, {} pending; {}{}; producer {}; outcomes: {}; {} dead-lettered.",
            self.queue,
            if self.tool.is_empty() { String::new() } else { format!(" ({})", self.tool) },
            self.done,
            self.enqueued,
            self.waiting,
            self.pending,
            crate::progress::rate(self.keys_per_sec, "keys"),
            match self.eta_s {
                Some(e) if !self.drained => format!(", ETA {}", duration(Duration::from_secs_f64(e))),
                _ if self.drained => ", drained".to_string(),
                _ => String::new(),
            },
            if self.producer_done { "done" } else { "still enqueuing" },
            if self.outcomes.is_empty() {
                "none yet".to_string()
            } else {
                self.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            },
            self.dead_lettered,
        );
        if !self.consumers.is_empty() {
            s.push_str("\n  consumer                         pending      idle      done      rate");
            for c in &self.consumers {
                s.push_str(&format!(
                    "\n  {:<30} {:>9} {:>9} {:>9} {:>9}",
                    c.name,
                    c.pending,
                    duration(Duration::from_millis(c.idle_ms)),
                    c.done,
                    format!("{}/s", human(c.keys_per_sec))
                ));
            }
        }
        s
    }
}

/// Field `name` of an XINFO reply entry (a flat key/value array, or a map in RESP3).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => {
            m.iter().find(|(k, _)| matches!(k, Value::BulkString(b) if b == name.as_bytes())).map(|(_, v)| v)
        }
        Value::Array(a) => a.chunks(2).find_map(|p| match (&p[0], p.get(1)) {
            (Value::BulkString(b), Some(v)) if b == name.as_bytes() => Some(v),
            (Value::SimpleString(s), Some(v)) if s == name => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

fn num(v: Option<&Value>) -> u64 {
    v.and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok()).unwrap_or(0)
}

/// Reads a queue's status.
pub async fn status(url: &QueueUrl, redis_timeout: Duration) -> Result<Status> {
    let q = Queue::connect(url, redis_timeout, true).await?;
    let meta = q.meta().await?;
    if !meta.exists() {
        return Err(Error::Usage(format!("{}: no such queue", url.shown)));
    }
    let len: u64 = q.redis.run("XLEN keys", redis::cmd("XLEN").arg(q.key("keys"))).await?;
    let dead: u64 = q.redis.run("XLEN dead", redis::cmd("XLEN").arg(q.key("dead"))).await?;
    let infos: Value = match q
        .redis
        .run("XINFO CONSUMERS", redis::cmd("XINFO").arg("CONSUMERS").arg(q.key("keys")).arg(GROUP))
        .await
    {
        Err(e) if super::redis::code_of(&e).as_deref() == Some("NOGROUP") => Value::Array(vec![]),
        r => r?,
    };
    let recent: Value = q
        .redis
        .run(
            "XREVRANGE outcomes",
            redis::cmd("XREVRANGE").arg(q.key("outcomes")).arg("+").arg("-").arg("COUNT").arg(WINDOW),
        )
        .await?;
    let recent = parse_entries(&recent);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    // Over the window up to now: a fleet that stopped shows its rate falling.
    let window_s = recent.last().map_or(0.0, |e| (now_ms.saturating_sub(e.ms())) as f64 / 1000.0).max(1.0);
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for e in &recent {
        *per.entry(String::from_utf8_lossy(e.get("c").unwrap_or_default()).into_owned()).or_default() += 1;
    }
    let mut consumers: Vec<ConsumerStatus> = match &infos {
        Value::Array(a) => a
            .iter()
            .map(|c| {
                let name = field(c, "name")
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                    .unwrap_or_default();
                ConsumerStatus {
                    pending: num(field(c, "pending")),
                    idle_ms: num(field(c, "idle")),
                    done: meta.num(&format!("c:{name}")),
                    keys_per_sec: per.get(&name).copied().unwrap_or(0) as f64 / window_s,
                    name,
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    let pending: u64 = consumers.iter().map(|c| c.pending).sum();
    let outcomes: BTreeMap<String, u64> = meta.counters("n:").into_iter().collect();
    let done: u64 = outcomes.values().sum();
    let keys_per_sec = recent.len() as f64 / window_s;
    let waiting = len.saturating_sub(pending);
    let drained = meta.done() && waiting == 0 && pending == 0;
    Ok(Status {
        queue: url.shown.clone(),
        tool: meta.str("tool").unwrap_or_default(),
        input: meta.str("input").unwrap_or_default(),
        producer_done: meta.done(),
        enqueued: meta.num("enqueued"),
        done,
        waiting,
        pending,
        outcomes,
        dead_lettered: dead,
        consumers,
        keys_per_sec,
        eta_s: (keys_per_sec > 0.0).then(|| (waiting + pending) as f64 / keys_per_sec),
        drained,
    })
}
