//! S3 as a source: `keyrecon-list-s3` lists a bucket (or reads an S3 Inventory report) into a chunk set.
//!
//! - [`client`]: an aws-sdk-s3 client from AWS conventions (credential chain, profiles, endpoint, region).
//! - [`ranges`]: key-space ranges and UTF-8-safe split points.
//! - [`sched`]: which range each stream lists next (work stealing), and how many keys a page asks for.
//! - [`fetch`]: one ListObjectsV2 page, retried, with the shared slow-down.
//! - [`listxml`]: ListObjectsV2 bodies taken from the SDK's HTTP client and parsed byte-level.
//! - [`checkpoint`]: checkpoint.json, and resuming an unfinished listing.
//! - [`list`]: the parallel lister that puts them together (output to a chunk set or stdout).
//! - [`inventory`]: S3 Inventory manifests and their CSV.gz files.
//!
//! Records carry key, size, ETag (without quotes), LastModified (microseconds since the epoch) and storage
//! class ([`SCHEMA`]). Keys are the object keys' UTF-8 bytes, compared in byte order, which is the
//! order S3 lists them in.

pub mod checkpoint;
pub mod client;
pub mod fetch;
pub mod inventory;
pub mod list;
pub mod listxml;
pub mod ranges;
pub mod sched;

use crate::error::Result;
use crate::record::Schema;
use crate::summary::Summary;
use std::path::PathBuf;

/// Fields of the records keyrecon-list-s3 writes (listing and inventory alike).
pub const SCHEMA: Schema = Schema(Schema::SIZE | Schema::ETAG | Schema::MTIME | Schema::CLASS);

/// A window on LastModified, in microseconds since the epoch, both ends inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cutoff {
    pub min_mtime_us: Option<i64>,
    pub max_mtime_us: Option<i64>,
}

impl Cutoff {
    /// True if an object modified at `mtime` is inside the window. An object without a LastModified is
    /// inside only when there is no window.
    #[inline]
    pub fn admits(&self, mtime: Option<i64>) -> bool {
        if self.min_mtime_us.is_none() && self.max_mtime_us.is_none() {
            return true;
        }
        let Some(m) = mtime else { return false };
        self.min_mtime_us.is_none_or(|lo| m >= lo) && self.max_mtime_us.is_none_or(|hi| m <= hi)
    }

    /// Narrows the window to `[lo, hi]` (intersection with the current one).
    pub fn narrow(&mut self, lo: Option<i64>, hi: Option<i64>) {
        if let Some(lo) = lo {
            self.min_mtime_us = Some(self.min_mtime_us.map_or(lo, |m| m.max(lo)));
        }
        if let Some(hi) = hi {
            self.max_mtime_us = Some(self.max_mtime_us.map_or(hi, |m| m.min(hi)));
        }
    }
}

/// Parses a duration: `90s`, `15m`, `36h`, `7d`, `2w`, or a number of seconds. (A clap value parser.)
pub fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (examples: 90s, 15m, 36h, 7d)"))?;
    let mult = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?} (use s, m, h, d, w)")),
    };
    std::time::Duration::try_from_secs_f64(n * mult).map_err(|_| format!("{s:?} is too long a duration"))
}

/// Parses an RFC 3339 time (`2024-05-01T00:00:00Z`) into microseconds since the epoch. (A clap value parser.)
pub fn parse_time_us(s: &str) -> Result<i64, String> {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    let t = DateTime::from_str(s.trim(), DateTimeFormat::DateTime)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2024-05-01T00:00:00Z: {e}"))?;
    Ok(t.secs() * 1_000_000 + (t.subsec_nanos() / 1000) as i64)
}

impl Cutoff {
    /// The window of `--max-age`, `--min-age` (relative to `now_us`), `--modified-since` and
    /// `--modified-before` (absolute), intersected.
    pub fn from_flags(
        now_us: i64,
        max_age: Option<std::time::Duration>,
        min_age: Option<std::time::Duration>,
        modified_since: Option<i64>,
        modified_before: Option<i64>,
    ) -> Cutoff {
        let mut c = Cutoff::default();
        c.narrow(max_age.map(|a| now_us - a.as_micros() as i64), min_age.map(|a| now_us - a.as_micros() as i64));
        c.narrow(modified_since, modified_before);
        c
    }
}

/// The LastModified window as the flags give it: ages relative to the start of a run (`--max-age`,
/// `--min-age`), times absolute (`--modified-since`, `--modified-before`). Recorded as given in a
/// listing's filters, so shards started minutes apart by the same command agree on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub max_age: Option<std::time::Duration>,
    pub min_age: Option<std::time::Duration>,
    pub modified_since: Option<i64>,
    pub modified_before: Option<i64>,
}

impl Window {
    /// The absolute window of a run starting at `now_us`.
    pub fn cutoff(&self, now_us: i64) -> Cutoff {
        Cutoff::from_flags(now_us, self.max_age, self.min_age, self.modified_since, self.modified_before)
    }
}

/// What keyrecon-list-s3 does.
pub enum Job {
    /// List a bucket into `sink`.
    List { cfg: list::ListConfig, sink: list::Sink },
    /// Read an S3 Inventory report into the chunk set `out`.
    Inventory { cfg: inventory::InventoryConfig, out: PathBuf, force: bool, resume: bool },
}

/// What keyrecon-list-s3 did.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum S3Summary {
    List(Box<list::ListSummary>),
    Inventory(inventory::InventorySummary),
}

impl Summary for S3Summary {
    fn paragraph(&self) -> String {
        match self {
            S3Summary::List(s) => s.paragraph(),
            S3Summary::Inventory(s) => s.paragraph(),
        }
    }
    fn exit_code(&self) -> i32 {
        match self {
            S3Summary::List(s) => s.exit_code(),
            S3Summary::Inventory(s) => s.exit_code(),
        }
    }
}

/// Runs keyrecon-list-s3: builds the runtime and the client (an inventory on local disk needs none),
/// then lists or reads the inventory.
pub fn run(client: &client::ClientOptions, job: Job) -> Result<S3Summary> {
    let rt = crate::rt::runtime()?;
    match job {
        Job::List { cfg, sink } => rt.block_on(async {
            let c = client::build(client).await?;
            list::list(c, cfg, sink).await.map(|s| S3Summary::List(Box::new(s)))
        }),
        Job::Inventory { cfg, out, force, resume } => {
            let c = if cfg.manifest.starts_with("s3://") { Some(rt.block_on(client::build(client))?) } else { None };
            inventory::read_inventory(&rt, c.as_ref(), &cfg, &out, force, resume).map(S3Summary::Inventory)
        }
    }
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_window() {
        let mut c = Cutoff::default();
        assert!(c.admits(None) && c.admits(Some(5)));
        c.narrow(Some(10), None);
        c.narrow(Some(5), Some(20));
        assert_eq!(c, Cutoff { min_mtime_us: Some(10), max_mtime_us: Some(20) });
        assert!(
            !c.admits(Some(9)) && c.admits(Some(10)) && c.admits(Some(20)) && !c.admits(Some(21)) && !c.admits(None)
        );
    }

    #[test]
    fn ages_and_times() {
        assert_eq!(parse_age("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_age("2d").unwrap().as_secs(), 172800);
        assert_eq!(parse_age("15").unwrap().as_secs(), 15);
        assert!(parse_age("3y").is_err());
        assert_eq!(parse_time_us("1970-01-01T00:00:01.5Z").unwrap(), 1_500_000);
        assert!(parse_time_us("yesterday").is_err());
    }
}
