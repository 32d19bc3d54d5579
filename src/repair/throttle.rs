//! Throughput with manners for repair and verify: the crate's AIMD [`Limiter`] on keys in flight with
//! one latency signal per [`Side`], plus `--rate` (objects/s) and `--bandwidth` (bytes/s) [`Bucket`]s.
//!
//! The limit starts at `--concurrency` (the ceiling) and is halved on an overload signal from either
//! side — S3 `503 SlowDown`/`429`, a timeout, Cassandra `ReadTimeout`/`Overloaded` — or when the
//! smoothed request latency of a side (EWMA, new sample weighted 0.1) rises above `--latency-target`;
//! it grows back by one after enough fast completions. See [`crate::limit`] for the cooldown, the pause
//! at limit 1 and the log lines. Keys waiting for their `--rate` slot do not count as in flight.

use crate::limit::{Bucket, Limiter, Permit};
use std::time::Duration;

pub use crate::limit::COOLDOWN;

/// Which server a signal came from (also the index of its latency source in the limiter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Cassandra = 0,
    S3 = 1,
}

impl Side {
    fn name(self) -> &'static str {
        SOURCES[self as usize]
    }
}

/// Latency sources of the limiter, indexed by [`Side`].
const SOURCES: &[&str] = &["cassandra", "s3"];
/// Weight of a new latency sample: smooth, because one key's latency varies with its blob size.
pub(crate) const EWMA_WEIGHT: f64 = 0.1;

pub struct Throttle {
    aimd: Limiter,
    rate: Option<Bucket>,
    bandwidth: Option<Bucket>,
}

impl std::ops::Deref for Throttle {
    type Target = Limiter;
    /// The limiter's state and counters (`limit()`, `inflight()`, `events`, `min_limit`).
    fn deref(&self) -> &Limiter {
        &self.aimd
    }
}

impl Throttle {
    pub fn new(
        tool: &'static str,
        max: usize,
        rate: Option<f64>,
        bandwidth: Option<f64>,
        latency_target: Duration,
        quiet: bool,
    ) -> Throttle {
        Throttle {
            aimd: Limiter::new(tool, max, latency_target, SOURCES, EWMA_WEIGHT, quiet),
            rate: rate.map(Bucket::new),
            bandwidth: bandwidth.map(Bucket::new),
        }
    }

    /// Waits for the `--rate` bucket, then for a slot (fewer than `limit` in flight, no pause).
    pub async fn acquire(&self) -> Permit<'_> {
        if let Some(b) = &self.rate {
            b.take(1.0).await;
        }
        self.aimd.acquire().await
    }

    /// Waits until `bytes` more may be sent under `--bandwidth`.
    pub async fn bandwidth(&self, bytes: usize) {
        if let Some(b) = &self.bandwidth {
            b.take(bytes as f64).await;
        }
    }

    /// A request to `side` completed in `latency` (successfully or with a non-load error).
    pub fn on_latency(&self, side: Side, latency: Duration) {
        self.aimd.observe(side as usize, latency);
    }

    /// An overload signal from `side` (503 SlowDown, timeout, Cassandra ReadTimeout/Overloaded).
    pub fn on_overload(&self, side: Side, why: &str) {
        self.aimd.overload(&format!("{}: {why}", side.name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    // The limiter and buckets are tested in `crate::limit`; this checks the wiring of sides and flags.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn sides_feed_their_own_latency_and_flags_their_buckets() {
        let t = Throttle::new("test", 4, Some(10.0), Some(1000.0), Duration::from_secs(1), true);
        t.on_latency(Side::S3, Duration::from_millis(30));
        t.on_latency(Side::Cassandra, Duration::from_millis(7));
        assert_eq!((t.smoothed_ms(0), t.smoothed_ms(1)), (7.0, 30.0));
        t.on_overload(Side::Cassandra, "ReadTimeout");
        assert_eq!((t.limit(), t.events.load(Relaxed)), (2, 1));
        let t0 = tokio::time::Instant::now();
        for _ in 0..3 {
            drop(t.acquire().await);
            t.bandwidth(500).await;
        }
        // 3 keys at 10/s: 0.2 s; 3 x 500 bytes at 1000 B/s: the third may start 1 s after the first.
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
    }
}
