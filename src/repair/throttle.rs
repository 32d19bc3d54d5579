//! Throughput with manners: an AIMD limit on keys in flight, plus `--rate` (objects/s) and
//! `--bandwidth` (bytes/s) token buckets.
//!
//! The limit starts at `--concurrency` (the ceiling) and is halved on an overload signal from either
//! side — S3 `503 SlowDown`/`429`, a timeout, Cassandra `ReadTimeout`/`Overloaded` — or when the
//! smoothed request latency of a side rises above `--latency-target`; it grows back by one after
//! enough fast completions (additive increase). Changes are at least [`COOLDOWN`] apart so the servers
//! get to react, and every change is logged with its reason. At limit 1 an overload pauses new work
//! for a cooldown instead.
//!
//! The buckets reserve time slots (`next_free`), so many tasks can wait at once without a busy loop
//! and the long-run rate is exact; a bucket never lets a burst through after an idle period.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
// tokio's clock: the same as std's in a run, pausable in tests.
use tokio::time::Instant;

pub const COOLDOWN: Duration = Duration::from_millis(1000);

/// Which server a signal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Cassandra,
    S3,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Cassandra => "cassandra",
            Side::S3 => "s3",
        }
    }
}

pub struct Throttle {
    tool: &'static str,
    max: usize,
    limit: AtomicUsize,
    inflight: AtomicUsize,
    notify: Notify,
    latency_target: Duration,
    quiet: bool,
    pub events: AtomicU64,
    pub min_limit: AtomicUsize,
    st: Mutex<Aimd>,
    rate: Option<Bucket>,
    bandwidth: Option<Bucket>,
}

struct Aimd {
    ewma_ms: [f64; 2],
    good: usize,
    last_change: Instant,
    pause_until: Option<Instant>,
}

struct Bucket {
    per_sec: f64,
    next_free: Mutex<Instant>,
}

impl Bucket {
    fn new(per_sec: f64) -> Bucket {
        Bucket { per_sec, next_free: Mutex::new(Instant::now()) }
    }
    /// Reserves `amount` units; returns when the caller may go.
    async fn take(&self, amount: f64) {
        let at = {
            let mut nf = self.next_free.lock().unwrap();
            let now = Instant::now();
            if *nf < now {
                *nf = now;
            }
            let at = *nf;
            *nf += Duration::from_secs_f64(amount / self.per_sec);
            at
        };
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// A key in flight; frees its slot on drop (also on cancellation).
pub struct Permit<'a>(&'a Throttle);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
        self.0.notify.notify_one();
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
        let max = max.max(1);
        let now = Instant::now();
        Throttle {
            tool,
            max,
            limit: AtomicUsize::new(max),
            inflight: AtomicUsize::new(0),
            notify: Notify::new(),
            latency_target,
            quiet,
            events: AtomicU64::new(0),
            min_limit: AtomicUsize::new(max),
            st: Mutex::new(Aimd { ewma_ms: [0.0; 2], good: 0, last_change: now - COOLDOWN, pause_until: None }),
            rate: rate.map(Bucket::new),
            bandwidth: bandwidth.map(Bucket::new),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }
    pub fn inflight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    /// Waits for the `--rate` bucket, then for a slot (fewer than `limit` in flight, no pause). Keys
    /// waiting for their rate slot do not count as in flight.
    pub async fn acquire(&self) -> Permit<'_> {
        if let Some(b) = &self.rate {
            b.take(1.0).await;
        }
        loop {
            let pause = self.st.lock().unwrap().pause_until;
            if let Some(p) = pause.filter(|p| *p > Instant::now()) {
                tokio::time::sleep_until(p).await;
                continue;
            }
            let notified = self.notify.notified();
            let cur = self.inflight.load(Relaxed);
            if cur < self.limit.load(Relaxed) {
                if self.inflight.compare_exchange(cur, cur + 1, Relaxed, Relaxed).is_ok() {
                    break;
                }
                continue;
            }
            // Woken by a finished key; the timeout covers a limit raised with nobody finishing.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        Permit(self)
    }

    /// Waits until `bytes` more may be sent under `--bandwidth`.
    pub async fn bandwidth(&self, bytes: usize) {
        if let Some(b) = &self.bandwidth {
            b.take(bytes as f64).await;
        }
    }

    /// A request to `side` completed in `latency` (successfully or with a non-load error).
    pub fn on_latency(&self, side: Side, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let target = self.latency_target.as_secs_f64() * 1000.0;
        let mut st = self.st.lock().unwrap();
        let e = &mut st.ewma_ms[side as usize];
        *e = if *e == 0.0 { ms } else { 0.9 * *e + 0.1 * ms };
        let e = *e;
        if e > target {
            let why = format!("{} latency {e:.0} ms (smoothed) above the {target:.0} ms target", side.name());
            self.decrease(&mut st, &why);
        } else if st.ewma_ms.iter().all(|e| *e < target / 2.0) {
            st.good += 1;
            let limit = self.limit.load(Relaxed);
            if limit < self.max && st.good >= limit * 4 && st.last_change.elapsed() >= COOLDOWN {
                self.limit.store(limit + 1, Relaxed);
                st.last_change = Instant::now();
                st.good = 0;
                self.notify.notify_one();
                self.log(&format!(
                    "concurrency {limit} -> {} (latency well below target: cassandra {:.0} ms, s3 {:.0} ms)",
                    limit + 1,
                    st.ewma_ms[0],
                    st.ewma_ms[1]
                ));
            }
        }
    }

    /// An overload signal from `side` (503 SlowDown, timeout, Cassandra ReadTimeout/Overloaded).
    pub fn on_overload(&self, side: Side, why: &str) {
        let mut st = self.st.lock().unwrap();
        self.decrease(&mut st, &format!("{}: {why}", side.name()));
    }

    fn decrease(&self, st: &mut Aimd, why: &str) {
        st.good = 0;
        if st.last_change.elapsed() < COOLDOWN {
            return;
        }
        st.last_change = Instant::now();
        self.events.fetch_add(1, Relaxed);
        let limit = self.limit.load(Relaxed);
        if limit > 1 {
            let new = (limit / 2).max(1);
            self.limit.store(new, Relaxed);
            self.min_limit.fetch_min(new, Relaxed);
            self.log(&format!("concurrency {limit} -> {new} ({why})"));
        } else {
            st.pause_until = Some(Instant::now() + COOLDOWN);
            self.log(&format!("pausing {} ms at concurrency 1 ({why})", COOLDOWN.as_millis()));
        }
    }

    fn log(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}: throttle: {msg}", self.tool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn halves_on_overload_grows_back_by_one_and_bounds_inflight() {
        let t = Throttle::new("test", 8, None, None, Duration::from_millis(1000), true);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(t.acquire().await);
        }
        assert_eq!(t.inflight(), 8);
        assert!(tokio::time::timeout(Duration::from_millis(200), t.acquire()).await.is_err(), "a 9th key must wait");
        t.on_overload(Side::S3, "503 SlowDown");
        assert_eq!(t.limit(), 4);
        t.on_overload(Side::S3, "503 SlowDown");
        assert_eq!(t.limit(), 4, "cooldown between changes");
        tokio::time::advance(COOLDOWN).await;
        t.on_overload(Side::Cassandra, "ReadTimeout");
        assert_eq!(t.limit(), 2);
        assert_eq!(t.events.load(Relaxed), 2);
        held.clear();
        tokio::time::advance(COOLDOWN).await;
        for _ in 0..8 {
            t.on_latency(Side::S3, Duration::from_millis(5));
        }
        assert_eq!(t.limit(), 3);
        assert_eq!(t.min_limit.load(Relaxed), 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rate_bucket_spaces_requests() {
        let t = Throttle::new("test", 4, Some(10.0), None, Duration::from_secs(1), true);
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            drop(t.acquire().await);
        }
        // 5 objects at 10/s: the 5th may start 0.4 s after the first.
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn bandwidth_bucket_spaces_bytes() {
        let t = Throttle::new("test", 4, None, Some(1000.0), Duration::from_secs(1), true);
        let t0 = tokio::time::Instant::now();
        for _ in 0..3 {
            t.bandwidth(1000).await;
        }
        // 3 x 1000 bytes at 1000 B/s: the third may start 2 s after the first.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }
}
