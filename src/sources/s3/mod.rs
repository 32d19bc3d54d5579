//! S3 as a source: `keyrecon-list-s3` lists a bucket (or reads an S3 Inventory report) into a chunk set.
//!
//! - [`client`]: an aws-sdk-s3 client from AWS conventions (credential chain, profiles, endpoint, region).
//! - [`ranges`]: key-space ranges and UTF-8-safe split points.
//! - [`list`]: the parallel lister (work stealing, retries, slow-down, checkpoint/resume, output).
//! - [`listxml`]: ListObjectsV2 bodies taken from the SDK's HTTP client and parsed byte-level.
//! - [`inventory`]: S3 Inventory manifests and their CSV.gz files.
//!
//! Records carry key, size, ETag (without quotes), LastModified (microseconds since the epoch) and storage
//! class ([`list::SCHEMA`]). Keys are the object keys' UTF-8 bytes, compared in byte order, which is the
//! order S3 lists them in.

pub mod client;
pub mod inventory;
pub mod list;
pub mod listxml;
pub mod ranges;

use anyhow::{anyhow, bail, Result};

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

/// Parses a duration: `90s`, `15m`, `36h`, `7d`, `2w`, or a number of seconds.
pub fn parse_age(s: &str) -> Result<std::time::Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow!("{s:?} is not a duration (examples: 90s, 15m, 36h, 7d)"))?;
    let mult = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        other => bail!("unknown duration unit {other:?} in {s:?} (use s, m, h, d, w)"),
    };
    Ok(std::time::Duration::from_secs_f64(n * mult))
}

/// Parses an RFC 3339 time (`2024-05-01T00:00:00Z`) into microseconds since the epoch.
pub fn parse_time_us(s: &str) -> Result<i64> {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    let t = DateTime::from_str(s.trim(), DateTimeFormat::DateTime)
        .map_err(|e| anyhow!("{s:?} is not an RFC 3339 time such as 2024-05-01T00:00:00Z: {e}"))?;
    Ok(t.secs() * 1_000_000 + (t.subsec_nanos() / 1000) as i64)
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

pub(crate) fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
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
