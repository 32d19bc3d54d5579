//! The fleet's shared work queue: Redis Streams with a consumer group, so any number of machines
//! repair (or verify) the keys of one diff, and nothing is lost when one of them dies.
//!
//! A queue is named by a URL, `redis://HOST:PORT[/DB]/NAME`; its Redis keys share the hash tag
//! `{NAME}` (one cluster slot, so a MULTI may touch them all):
//! ```text
//!  keyrecon:{NAME}:keys      stream   the work: one entry per key, fields k (key bytes), o (origin), s (size)
//!  keyrecon:{NAME}:meta      hash     run (id of this queue), tool, input, offset, enqueued, done,
//!                                     n:<outcome> counters, c:<consumer> counters
//!  keyrecon:{NAME}:outcomes  stream   every final outcome: k, o (outcome), c (consumer), d (the record)
//!  keyrecon:{NAME}:dead      stream   keys given up after --max-deliveries: k, n (deliveries), e (last error)
//!  keyrecon:{NAME}:intents   hash     key -> consumer, set before a PUT (see repair's intent rule)
//!  keyrecon:{NAME}:errors    hash     key -> the last error of a key whose try failed
//! ```
//! ```text
//!  keyrecon-queue enqueue ──MULTI(XADD x batch, HSET offset)──► keys ──XREADGROUP──► consumer A ─┐
//!   (resumes at meta.offset)                                    │   ──XAUTOCLAIM (idle)─► consumer B │
//!                                                               │                                   ▼
//!  keyrecon-queue report ◄── outcomes ◄── script(XACK; if acked: XADD outcome, HINCRBY; XDEL) ── final outcome
//!  keyrecon-queue status ◄── XINFO / XPENDING / meta / recent outcomes
//! ```
//! The rules that keep every key:
//! - The producer adds a batch of entries and its input offset in one MULTI; rerun, it continues after
//!   the offset, so no key is enqueued twice. If the offset goes backwards under it (Redis lost writes),
//!   a file input is reread from there; a pipe is an error.
//! - A consumer acknowledges (XACK) an entry only after the key's final outcome is in its journal, and in
//!   the same script appends the outcome to the outcomes stream, only if the XACK acknowledged it: when
//!   two consumers finished one entry (one claimed it while the other was cut off from Redis and could
//!   not keep it), the first outcome stands. A try that failed is not acknowledged:
//!   the entry stays pending and is claimed again (XAUTOCLAIM) once idle for `--claim-idle`, by any
//!   consumer; after `--max-deliveries` deliveries it is given up: recorded as failed with the last
//!   error, and put on the dead-letter stream.
//! - Entries a consumer holds are kept from looking idle (XCLAIM JUSTID every `--claim-idle` / 3), so a
//!   slow key is not taken from a live consumer; a dead consumer's entries go idle and are claimed.
//! - Consumers end when the producer is done, nothing new is left and nothing is pending.
//! - A queue whose keys vanished (Redis restarted without persistence) is an error, never "done":
//!   consumers remember the queue's run id and check it when the stream looks empty.
//!
//! Redis should run with `appendonly yes` (and `appendfsync always` to survive a kill -9 of Redis
//! without losing the last second of acknowledgements); see docs/fleet.md.

pub mod consume;
pub mod produce;
pub mod redis;
pub mod report;
pub mod status;

use crate::error::{Error, Result};
use ::redis::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The consumer group every keyrecon consumer of a queue belongs to.
pub const GROUP: &str = "keyrecon";

/// A queue's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueUrl {
    /// What the Redis client connects to: `redis://[auth@]host:port[/db]`.
    pub redis_url: String,
    /// The same without credentials, for messages and summaries.
    pub shown: String,
    pub name: String,
}

impl QueueUrl {
    /// Parses `redis://[user:password@]HOST[:PORT][/DB]/NAME` (or `rediss://`). NAME: letters, digits
    /// and `-_.:`, not `{` or `}` (the hash tag).
    pub fn parse(s: &str) -> Result<QueueUrl> {
        let bad = |why: &str| {
            Error::Usage(format!("queue URL {:?}: {why} (expected redis://HOST:PORT[/DB]/NAME)", redact(s)))
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if scheme != "redis" && scheme != "rediss" {
            return Err(bad("the scheme must be redis or rediss"));
        }
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no queue name"))?;
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let name = parts.pop().ok_or_else(|| bad("no queue name"))?.to_string();
        let db = match parts.as_slice() {
            [] => None,
            [db] if db.parse::<u32>().is_ok() => Some(*db),
            _ => return Err(bad("the path is /NAME or /DB/NAME")),
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            return Err(bad("the name may hold letters, digits and - _ . : only"));
        }
        let redis_url = format!("{scheme}://{authority}/{}", db.unwrap_or("0"));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        Ok(QueueUrl {
            shown: format!("{scheme}://{host}/{}{name}", db.map(|d| format!("{d}/")).unwrap_or_default()),
            redis_url,
            name,
        })
    }

    /// The Redis key of one part of the queue (module doc).
    pub fn key(&self, part: &str) -> String {
        format!("keyrecon:{{{}}}:{part}", self.name)
    }
}

/// `s` with any password replaced (for messages).
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(i), Some(j)) if j > i => format!("{}<credentials>{}", &s[..i + 3], &s[j..]),
        _ => s.to_string(),
    }
}

/// A queue: its address and a connection.
pub struct Queue {
    pub url: QueueUrl,
    pub redis: redis::Redis,
}

impl Queue {
    pub async fn connect(url: &QueueUrl, retry_for: Duration, quiet: bool) -> Result<Queue> {
        let redis = redis::Redis::connect(&url.redis_url, &url.shown, retry_for, quiet).await?;
        Ok(Queue { url: url.clone(), redis })
    }

    pub fn key(&self, part: &str) -> String {
        self.url.key(part)
    }

    /// The queue's meta hash (empty when the queue does not exist).
    pub async fn meta(&self) -> Result<Meta> {
        let v: HashMap<String, Vec<u8>> =
            self.redis.run("HGETALL meta", ::redis::cmd("HGETALL").arg(self.key("meta"))).await?;
        Ok(Meta(v))
    }
}

/// The fields of `keyrecon:{NAME}:meta`.
#[derive(Clone, Debug, Default)]
pub struct Meta(pub HashMap<String, Vec<u8>>);

impl Meta {
    pub fn exists(&self) -> bool {
        self.0.contains_key("run")
    }
    pub fn str(&self, f: &str) -> Option<String> {
        self.0.get(f).map(|v| String::from_utf8_lossy(v).into_owned())
    }
    pub fn num(&self, f: &str) -> u64 {
        self.str(f).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    pub fn done(&self) -> bool {
        self.str("done").as_deref() == Some("1")
    }
    /// The `n:<outcome>` counters.
    pub fn counters(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            self.0.keys().filter_map(|k| k.strip_prefix(prefix).map(|n| (n.to_string(), self.num(k)))).collect();
        v.sort();
        v
    }
}

/// One stream entry: its id and fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn get(&self, field: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(f, _)| f == field.as_bytes()).map(|(_, v)| &v[..])
    }
    /// Milliseconds since the epoch when the entry was added (the first part of its id).
    pub fn ms(&self) -> u64 {
        self.id.split('-').next().and_then(|m| m.parse().ok()).unwrap_or(0)
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Entries of a reply shaped `[[id, [f, v, ...]], ...]` (XRANGE, XAUTOCLAIM's second element). An entry
/// whose fields are nil (deleted while pending) has no fields.
pub fn parse_entries(v: &Value) -> Vec<Entry> {
    array(v)
        .iter()
        .filter_map(|e| {
            let parts = array(e);
            let id = String::from_utf8(bytes(parts.first()?)?).ok()?;
            let flat = parts.get(1).map(array).unwrap_or(&[]);
            let fields = flat.chunks(2).filter_map(|p| Some((bytes(p.first()?)?, bytes(p.get(1)?)?))).collect();
            Some(Entry { id, fields })
        })
        .collect()
}

/// Entries of an XREADGROUP / XREAD reply (`[[stream, entries]]`, or a map in RESP3; nil on timeout).
pub fn parse_read(v: &Value) -> Vec<Entry> {
    match v {
        Value::Map(m) => m.iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => array(v).iter().flat_map(|s| array(s).get(1).map(parse_entries).unwrap_or_default()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = QueueUrl::parse("redis://10.0.0.5:6379/repair-2026-12-02").unwrap();
        assert_eq!((u.redis_url.as_str(), u.name.as_str()), ("redis://10.0.0.5:6379/0", "repair-2026-12-02"));
        assert_eq!(u.key("keys"), "keyrecon:{repair-2026-12-02}:keys");
        let u = QueueUrl::parse("rediss://user:s3cret@h:6380/3/q").unwrap();
        assert_eq!(u.redis_url, "rediss://user:s3cret@h:6380/3");
        assert_eq!(u.shown, "rediss://h:6380/3/q");
        for bad in ["http://h/q", "redis://h", "redis://h/", "redis://h/x/y/q", "redis://h/q{x}", "h:6379/q"] {
            assert!(QueueUrl::parse(bad).is_err(), "{bad}");
        }
        let e = QueueUrl::parse("redis://u:pw@h/a/b/c").unwrap_err().to_string();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn entries_from_replies() {
        let b = |s: &[u8]| Value::BulkString(s.to_vec());
        let entry =
            Value::Array(vec![b(b"1700000000000-0"), Value::Array(vec![b(b"k"), b(b"a\xff"), b(b"o"), b(b"a_1")])]);
        let read = Value::Array(vec![Value::Array(vec![b(b"keyrecon:{q}:keys"), Value::Array(vec![entry.clone()])])]);
        let es = parse_read(&read);
        assert_eq!(es.len(), 1);
        assert_eq!((es[0].get("k"), es[0].get("o"), es[0].get("s")), (Some(&b"a\xff"[..]), Some(&b"a_1"[..]), None));
        assert_eq!(es[0].ms(), 1_700_000_000_000);
        assert!(parse_read(&Value::Nil).is_empty());
        // A deleted entry in XAUTOCLAIM (Redis 6): nil fields.
        let gone = Value::Array(vec![b(b"1-0"), Value::Nil]);
        assert_eq!(parse_entries(&Value::Array(vec![gone])), vec![Entry { id: "1-0".into(), fields: vec![] }]);
    }
}
