//! Load limits shared by every tool that talks to a server: an AIMD concurrency [`Limiter`], a
//! reservation-style token [`Bucket`], a jittered exponential [`Backoff`], and a [`SharedPause`] that
//! one server's "slow down" imposes on every stream at once.
//!
//! ```text
//!  task ──► Bucket::take (rate) ──► Limiter::acquire (inflight < limit, no pause) ──► request
//!                                           ▲                                   │ latency / overload
//!                                           └── halve (cooldown) / +1 ◄─────────┘
//! ```
//! Limiter: the limit starts at the ceiling (`max`) and is halved on an overload signal or when the
//! smoothed latency (an EWMA per named signal source, e.g. "cassandra" and "s3", or one "page" source)
//! rises above the target; it grows back by one after `limit * 4` completions while every source is
//! below half the target (additive increase). Changes are at least [`COOLDOWN`] apart so the servers
//! get to react, and every change is logged with its reason as `<tool>: throttle: concurrency 16 -> 8
//! (reason)`. At limit 1 an overload pauses new work for a cooldown instead ("pausing ... at
//! concurrency 1"). Invariant: `1 <= limit <= max`; `inflight` may exceed `limit` only right after a
//! decrease (work already started is never interrupted).
//!
//! Bucket: reserves time slots (`next_free`), so many tasks can wait at once without a busy loop and
//! the long-run rate is exact; it never lets a burst through after an idle period. A caller that
//! reserved more than it used (a page of rows that came back short) gives the rest back.
//!
//! SharedPause: each slow-down signal (S3 `503 SlowDown`) doubles a penalty (50 ms .. 10 s) and pauses
//! every stream for between half and all of it; each success halves it. Sustained throttling thus
//! lowers the request rate of the whole tool, while an isolated 503 costs little.
//!
//! All clocks are tokio's: the same as std's in a run, pausable in tests.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Smallest time between two concurrency changes: let the servers react first.
pub const COOLDOWN: Duration = Duration::from_millis(1000);

/// AIMD limit on requests (or keys) in flight; see the module docs.
pub struct Limiter {
    /// The log lines' prefix: the tool, or the tool and the server it limits (`keyrecon-repair: cluster old`).
    tool: std::borrow::Cow<'static, str>,
    max: usize,
    limit: AtomicUsize,
    inflight: AtomicUsize,
    notify: Notify,
    target: Duration,
    /// Names of the latency signal sources; `observe(i, ..)` feeds `sources[i]`.
    sources: &'static [&'static str],
    /// Weight of a new latency sample in the EWMA (0.1 = slow to react, 0.2 = faster).
    weight: f64,
    quiet: bool,
    /// Decreases and pauses so far (summary).
    pub events: AtomicU64,
    /// Lowest limit reached (summary).
    pub min_limit: AtomicUsize,
    st: Mutex<State>,
}

struct State {
    ewma_ms: Vec<f64>,
    good: usize,
    last_change: Instant,
    pause_until: Option<Instant>,
}

/// A slot in flight; frees it on drop (also on errors and cancellation).
pub struct Permit<'a>(&'a Limiter);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
        self.0.notify.notify_one();
    }
}

impl Limiter {
    /// `tool` prefixes the log lines; `max` is the ceiling and the start (at least 1); latency above
    /// `target` (smoothed with `weight` per source in `sources`) is an overload signal.
    pub fn new(
        tool: impl Into<std::borrow::Cow<'static, str>>,
        max: usize,
        target: Duration,
        sources: &'static [&'static str],
        weight: f64,
        quiet: bool,
    ) -> Limiter {
        assert!(!sources.is_empty() && weight > 0.0 && weight <= 1.0);
        let max = max.max(1);
        Limiter {
            tool: tool.into(),
            max,
            limit: AtomicUsize::new(max),
            inflight: AtomicUsize::new(0),
            notify: Notify::new(),
            target,
            sources,
            weight,
            quiet,
            events: AtomicU64::new(0),
            min_limit: AtomicUsize::new(max),
            st: Mutex::new(State {
                ewma_ms: vec![0.0; sources.len()],
                good: 0,
                last_change: Instant::now() - COOLDOWN,
                pause_until: None,
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }
    pub fn inflight(&self) -> usize {
        self.inflight.load(Relaxed)
    }
    /// The smoothed latency of `source` in ms (0 before its first sample).
    pub fn smoothed_ms(&self, source: usize) -> f64 {
        self.st.lock().unwrap().ewma_ms[source]
    }

    /// Waits for a slot: fewer than `limit` in flight and no pause.
    pub async fn acquire(&self) -> Permit<'_> {
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
            // Woken by a finished request; the timeout covers a limit raised with nobody finishing.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        Permit(self)
    }

    /// A request whose latency belongs to `sources[source]` completed in `latency` (successfully or
    /// with an error that does not signal load).
    pub fn observe(&self, source: usize, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let target = self.target.as_secs_f64() * 1000.0;
        let mut st = self.st.lock().unwrap();
        let e = &mut st.ewma_ms[source];
        *e = if *e == 0.0 { ms } else { (1.0 - self.weight) * *e + self.weight * ms };
        let e = *e;
        if e > target {
            let why = format!("{} latency {e:.0} ms (smoothed) above the {target:.0} ms target", self.sources[source]);
            self.decrease(&mut st, &why);
        } else if st.ewma_ms.iter().all(|e| *e < target / 2.0) {
            st.good += 1;
            let limit = self.limit.load(Relaxed);
            if limit < self.max && st.good >= limit * 4 && st.last_change.elapsed() >= COOLDOWN {
                self.limit.store(limit + 1, Relaxed);
                st.last_change = Instant::now();
                st.good = 0;
                self.notify.notify_one();
                let why = if let [name] = self.sources {
                    format!("{name} latency {:.0} ms is well below target", st.ewma_ms[0])
                } else {
                    let each: Vec<String> =
                        self.sources.iter().zip(&st.ewma_ms).map(|(n, e)| format!("{n} {e:.0} ms")).collect();
                    format!("latency well below target: {}", each.join(", "))
                };
                self.log(&format!("concurrency {limit} -> {} ({why})", limit + 1));
            }
        }
    }

    /// An overload signal (503 SlowDown, timeout, Cassandra ReadTimeout/Overloaded); `why` goes into the log.
    pub fn overload(&self, why: &str) {
        let mut st = self.st.lock().unwrap();
        self.decrease(&mut st, why);
    }

    fn decrease(&self, st: &mut State, why: &str) {
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

/// A token bucket of `per_sec` units per second, by reservation: `take` books the next free time slot.
pub struct Bucket {
    per_sec: f64,
    next_free: Mutex<Instant>,
}

impl Bucket {
    pub fn new(per_sec: f64) -> Bucket {
        Bucket { per_sec, next_free: Mutex::new(Instant::now()) }
    }

    /// Reserves `amount` units; returns when the caller may go.
    pub async fn take(&self, amount: f64) {
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

    /// Gives back `amount` reserved but unused units, so the next caller may go earlier; never earlier
    /// than now (time that has passed cannot be handed out again as a burst).
    pub fn give_back(&self, amount: f64) {
        let unused = Duration::from_secs_f64(amount.max(0.0) / self.per_sec);
        let mut nf = self.next_free.lock().unwrap();
        let floor = Instant::now();
        *nf = nf.checked_sub(unused).unwrap_or(floor).max(floor);
    }
}

/// Jittered exponential backoff: before retry `n` (0 = the first retry) sleep
/// `min(cap, base * 2^min(n, max_doublings)) * u` with `u` uniform in `jitter`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Doublings stop here (also keeps `2^n` from overflowing).
    pub max_doublings: u32,
    /// Range of the random factor applied to the ceiling: `[0, 1]` is "full jitter", `[0.5, 1]` "equal jitter".
    pub jitter: [f64; 2],
}

impl Backoff {
    /// The ceiling (before jitter) of retry `n`.
    pub fn ceiling(&self, n: u32) -> Duration {
        self.cap.min(self.base.saturating_mul(1u32 << n.min(self.max_doublings).min(31)))
    }

    /// A random sleep before retry `n` (0 = the first retry).
    pub fn delay(&self, n: u32) -> Duration {
        let [lo, hi] = self.jitter;
        self.ceiling(n).mul_f64(lo + (hi - lo) * rand::random::<f64>())
    }
}

/// A pause shared by all streams of a tool; see the module docs.
pub struct SharedPause {
    /// (paused until, current penalty)
    state: Mutex<(Instant, Duration)>,
}

impl Default for SharedPause {
    fn default() -> Self {
        SharedPause { state: Mutex::new((Instant::now(), Duration::ZERO)) }
    }
}

impl SharedPause {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(10);

    /// Waits out the current pause, if any.
    pub async fn wait(&self) {
        let until = self.state.lock().unwrap().0;
        if until > Instant::now() {
            tokio::time::sleep_until(until).await;
        }
    }

    /// A slow-down signal: double the penalty and pause everyone.
    pub fn slow_down(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 = (s.1 * 2).clamp(Self::MIN, Self::MAX);
        let pause = s.1.mul_f64(0.5 + 0.5 * rand::random::<f64>());
        s.0 = s.0.max(Instant::now() + pause);
    }

    /// A success: halve the penalty (to zero below the minimum).
    pub fn ok(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.1.is_zero() {
            s.1 = if s.1 < Self::MIN { Duration::ZERO } else { s.1 / 2 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: usize, target_ms: u64, sources: &'static [&'static str], weight: f64) -> Limiter {
        Limiter::new("test", max, Duration::from_millis(target_ms), sources, weight, true)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn halves_on_overload_grows_back_by_one_and_bounds_inflight() {
        let t = limiter(8, 1000, &["cassandra", "s3"], 0.1);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(t.acquire().await);
        }
        assert_eq!(t.inflight(), 8);
        assert!(tokio::time::timeout(Duration::from_millis(200), t.acquire()).await.is_err(), "a 9th key must wait");
        t.overload("s3: 503 SlowDown");
        assert_eq!(t.limit(), 4);
        t.overload("s3: 503 SlowDown");
        assert_eq!(t.limit(), 4, "cooldown between changes");
        tokio::time::advance(COOLDOWN).await;
        t.overload("cassandra: ReadTimeout");
        assert_eq!(t.limit(), 2);
        assert_eq!(t.events.load(Relaxed), 2);
        held.clear();
        tokio::time::advance(COOLDOWN).await;
        for _ in 0..8 {
            t.observe(1, Duration::from_millis(5));
        }
        assert_eq!(t.limit(), 3);
        assert_eq!(t.min_limit.load(Relaxed), 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn pauses_at_limit_one_instead_of_going_lower() {
        let t = limiter(1, 1000, &["page"], 0.2);
        t.overload("timeout");
        assert_eq!((t.limit(), t.events.load(Relaxed)), (1, 1));
        let t0 = Instant::now();
        drop(t.acquire().await);
        assert_eq!(t0.elapsed(), COOLDOWN, "no new work during the pause");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn ewma_per_source_with_its_weight() {
        // (weight, samples per source as (source, ms), expected smoothed ms per source, limit after)
        #[allow(clippy::type_complexity)]
        let cases: &[(f64, &[(usize, u64)], [f64; 2], usize)] = &[
            // The first sample is taken as is.
            (0.1, &[(0, 100)], [100.0, 0.0], 8),
            (0.1, &[(0, 100), (0, 200)], [110.0, 0.0], 8),
            (0.2, &[(0, 100), (0, 200)], [120.0, 0.0], 8),
            // Sources do not mix.
            (0.1, &[(0, 100), (1, 300), (1, 400)], [100.0, 310.0], 8),
            // One slow source lowers the limit even if the other is fast.
            (0.1, &[(0, 10), (1, 1500)], [10.0, 1500.0], 4),
            (0.5, &[(1, 200), (1, 1800)], [0.0, 1000.0], 8),
            (0.5, &[(1, 200), (1, 1900)], [0.0, 1050.0], 4),
        ];
        for (i, (w, samples, want, limit)) in cases.iter().enumerate() {
            let t = limiter(8, 1000, &["cassandra", "s3"], *w);
            for (s, ms) in samples.iter() {
                t.observe(*s, Duration::from_millis(*ms));
            }
            for (s, want) in want.iter().enumerate() {
                assert!((t.smoothed_ms(s) - want).abs() < 1e-9, "case {i} source {s}: {}", t.smoothed_ms(s));
            }
            assert_eq!(t.limit(), *limit, "case {i}");
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rate_bucket_spaces_requests() {
        let b = Bucket::new(10.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            b.take(1.0).await;
        }
        // 5 objects at 10/s: the 5th may start 0.4 s after the first.
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn bandwidth_bucket_spaces_bytes() {
        let b = Bucket::new(1000.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.take(1000.0).await;
        }
        // 3 x 1000 bytes at 1000 B/s: the third may start 2 s after the first.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn bucket_give_back() {
        // (reserve per take, give back after each take, takes, ms until the last take may go)
        let cases: &[(f64, f64, u32, u64)] = &[
            (100.0, 0.0, 3, 200),
            // A page of 100 that came back with 40 rows gives 60 back.
            (100.0, 60.0, 3, 80),
            (100.0, 100.0, 3, 0),
            // Giving back more than was reserved does not open a burst window in the past.
            (100.0, 500.0, 3, 0),
        ];
        for (i, (take, back, n, want_ms)) in cases.iter().enumerate() {
            let b = Bucket::new(1000.0); // 1000 units/s: 100 units = 100 ms
            let t0 = Instant::now();
            for _ in 0..*n {
                b.take(*take).await;
                b.give_back(*back);
            }
            assert_eq!(t0.elapsed(), Duration::from_millis(*want_ms), "case {i}");
            // After an over-generous give-back the bucket is still at "now", not before it.
            assert!(*b.next_free.lock().unwrap() >= Instant::now(), "case {i}");
        }
    }

    #[test]
    fn backoff_bounds() {
        let ms = Duration::from_millis;
        // (policy, retry n, lowest, highest)
        let equal = Backoff { base: ms(100), cap: ms(10_000), max_doublings: 7, jitter: [0.5, 1.0] };
        let full = Backoff { base: ms(100), cap: ms(20_000), max_doublings: 20, jitter: [0.0, 1.0] };
        let above = Backoff { base: ms(100), cap: ms(5000), max_doublings: 5, jitter: [1.0, 1.5] };
        let cases = [
            (equal, 0, ms(50), ms(100)),
            (equal, 3, ms(400), ms(800)),
            (equal, 7, ms(5000), ms(10_000)),
            (equal, 1000, ms(5000), ms(10_000)),
            (full, 0, ms(0), ms(100)),
            (full, 10, ms(0), ms(20_000)),
            (above, 0, ms(100), ms(150)),
            (above, 5, ms(3200), ms(4800)),
            (above, 99, ms(3200), ms(4800)),
        ];
        for (i, (b, n, lo, hi)) in cases.iter().enumerate() {
            for _ in 0..200 {
                let d = b.delay(*n);
                assert!(*lo <= d && d <= *hi, "case {i}: {d:?} not in [{lo:?}, {hi:?}]");
            }
        }
        assert_eq!(equal.ceiling(2), ms(400));
        assert_eq!(above.ceiling(6), ms(3200), "doublings stop at max_doublings");
        let huge = Backoff {
            base: Duration::from_secs(u64::MAX / 4),
            cap: Duration::MAX,
            max_doublings: 40,
            jitter: [0.0, 1.0],
        };
        assert_eq!(huge.ceiling(40), Duration::MAX, "the ceiling saturates instead of overflowing");
    }
}
