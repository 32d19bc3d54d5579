//! Bounded retries with exponential backoff and jitter, feeding the throttle.
//!
//! Every request of repair/verify goes through [`Retry::run`]: a success or a non-load error reports
//! its latency to the [`Throttle`] (rising latency slows everything down), a load error (503 SlowDown,
//! timeout, Cassandra ReadTimeout/Overloaded) is an overload signal, and a retryable error is tried
//! again after [`BACKOFF`] (`100 ms × 2^(n-1)`, capped at 10 s, between half and all of that), up to
//! `max_attempts` attempts in all. Bodies are in memory (`bytes::Bytes`), so an attempt never resends a
//! half-consumed stream.
//!
//! A server with limits of its own (a fallback cluster: `--cluster-concurrency`, `--cluster-retries`)
//! goes through [`Retry::run_own`]: its signals feed its own [`Limiter`] instead of the throttle, and it
//! has its own number of attempts.
//!
//! [`RequestError`] is the one error of a failed request of repair/verify, to Cassandra or to S3.

use super::throttle::{Side, Throttle};
use crate::limit::{Backoff, Limiter};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// An error that knows whether it is worth another attempt.
pub trait Transient {
    fn retry(&self) -> bool;
    fn load(&self) -> bool;
    fn describe(&self) -> String;
}

/// A failed request to either side: what happened (with the operation and key), whether another
/// attempt may succeed, and whether it means "slow down". S3 errors also carry the HTTP status and the
/// S3 error code.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub msg: String,
    /// Worth another attempt (timeouts, overload, unavailable, broken connection, 5xx).
    pub retry: bool,
    /// The server says it is busy (timeout, overload, 503 SlowDown, 429): slow down.
    pub load: bool,
    pub status: Option<u16>,
    pub code: Option<String>,
}

impl RequestError {
    /// An error without an HTTP status (Cassandra, or no response at all).
    pub fn new(msg: String, retry: bool, load: bool) -> RequestError {
        RequestError { msg, retry, load, status: None, code: None }
    }

    pub fn is_precondition_failed(&self) -> bool {
        self.status == Some(412)
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl Transient for RequestError {
    fn retry(&self) -> bool {
        self.retry
    }
    fn load(&self) -> bool {
        self.load
    }
    fn describe(&self) -> String {
        self.msg.clone()
    }
}

pub struct Retry<'a> {
    pub throttle: &'a Throttle,
    pub max_attempts: u32,
    /// Retries counted per side (summary).
    pub retries: [&'a AtomicU64; 2],
}

/// A server with its own limit and attempts (a fallback cluster), for [`Retry::run_own`].
pub struct Own<'a> {
    /// Its AIMD limit: latency and load signals go here, not to the tool's throttle.
    pub limit: &'a Limiter,
    pub max_attempts: u32,
    /// Its retries (also counted in the tool's per-side count).
    pub retries: &'a AtomicU64,
}

/// Sleep before another attempt of a repair/verify request: the first retry waits 50..100 ms.
pub const BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(10), max_doublings: 7, jitter: [0.5, 1.0] };

/// Sleep after failed attempt `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF.delay(attempt.saturating_sub(1))
}

impl Retry<'_> {
    /// Runs `f` until it succeeds, fails for good, or `max_attempts` are used. `attempts` counts the
    /// requests made (for the outcome record).
    pub async fn run<T, E, F, Fut>(&self, side: Side, attempts: &mut u32, f: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_as(side, None, attempts, f).await
    }

    /// [`Self::run`] against a server with limits of its own: `own`'s limit gets the signals and its
    /// `max_attempts` bounds the attempts.
    pub async fn run_own<T, E, F, Fut>(&self, side: Side, own: &Own<'_>, attempts: &mut u32, f: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_as(side, Some(own), attempts, f).await
    }

    async fn run_as<T, E, F, Fut>(
        &self,
        side: Side,
        own: Option<&Own<'_>>,
        attempts: &mut u32,
        mut f: F,
    ) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let max_attempts = own.map_or(self.max_attempts, |o| o.max_attempts);
        let mut n = 0;
        loop {
            n += 1;
            *attempts += 1;
            let t0 = Instant::now();
            let r = f().await;
            let latency = t0.elapsed();
            let overload = r.as_ref().err().filter(|e| e.load()).map(|e| e.describe());
            match (own, overload) {
                (None, None) => self.throttle.on_latency(side, latency),
                (None, Some(why)) => self.throttle.on_overload(side, &why),
                (Some(o), None) => o.limit.observe(0, latency),
                (Some(o), Some(why)) => o.limit.overload(&why),
            }
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if !e.retry() || n >= max_attempts {
                        return Err(e);
                    }
                    self.retries[side as usize].fetch_add(1, Relaxed);
                    if let Some(o) = own {
                        o.retries.fetch_add(1, Relaxed);
                    }
                    tokio::time::sleep(backoff(n)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(bool);
    impl Transient for E {
        fn retry(&self) -> bool {
            self.0
        }
        fn load(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "e".into()
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn bounded_attempts_and_permanent_errors() {
        let t = Throttle::new("test", 4, None, None, Duration::from_secs(1), true);
        let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
        let r = Retry { throttle: &t, max_attempts: 3, retries: [&a, &b] };
        let mut att = 0;
        let mut calls = 0;
        let res: Result<(), E> = r
            .run(Side::S3, &mut att, || {
                calls += 1;
                async { Err(E(true)) }
            })
            .await;
        assert!(res.is_err());
        assert_eq!((att, calls, b.load(Relaxed)), (3, 3, 2));
        let mut att = 0;
        let res: Result<(), E> = r.run(Side::Cassandra, &mut att, || async { Err(E(false)) }).await;
        assert!(res.is_err());
        assert_eq!(att, 1);
        let mut att = 0;
        let mut left = 2;
        let res: Result<u8, E> = r
            .run(Side::Cassandra, &mut att, || {
                left -= 1;
                let fail = left > 0;
                async move {
                    if fail {
                        Err(E(true))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await;
        assert_eq!((res.ok(), att, a.load(Relaxed)), (Some(7), 2, 1));
        // A server with its own limit: its attempts, its signals; the tool's throttle is left alone.
        let limit = Limiter::new("test: cluster old", 8, Duration::from_secs(1), &["cassandra"], 0.1, true);
        let mine = AtomicU64::new(0);
        let own = Own { limit: &limit, max_attempts: 4, retries: &mine };
        let (before, mut att) = (t.limit(), 0);
        let res: Result<(), E> = r.run_own(Side::Cassandra, &own, &mut att, || async { Err(E(true)) }).await;
        assert!(res.is_err());
        assert_eq!((att, mine.load(Relaxed), a.load(Relaxed)), (4, 3, 4), "its retries, also counted per side");
        assert_eq!((limit.limit(), t.limit()), (4, before), "the overload halved its limit only");
        for n in 1..20 {
            assert!(backoff(n) <= Duration::from_secs(10) && backoff(n) >= Duration::from_millis(50));
        }
    }
}
