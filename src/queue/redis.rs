//! The Redis connection of a queue: one multiplexed connection (`ConnectionManager`, which reconnects
//! by itself) and [`Redis::run`], which retries a command while Redis is unreachable.
//!
//! A command that fails because the connection dropped, was refused or timed out (Redis restarting,
//! a network blip) is sent again with jittered exponential backoff until `--redis-timeout` has passed
//! since the outage began; the outage is logged once when it starts and once when it ends. Every other
//! error (a wrong type, NOGROUP, a script error) is returned at once, with the command's name.
//! Commands keyrecon sends are safe to repeat: XADD of a batch goes with the producer's offset in one
//! MULTI, XACK/XDEL/HDEL/HSET are idempotent, and a repeated outcome entry is deduplicated by the report.

use crate::error::{Error, Result};
use crate::limit::Backoff;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Sleep between attempts while Redis is unreachable: 100 ms doubling to 5 s, 50-100% of that.
const BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(5), max_doublings: 6, jitter: [0.5, 1.0] };

/// A connection to the queue's Redis.
pub struct Redis {
    conn: ConnectionManager,
    /// `redis://host:port/db` (for messages; no password).
    pub shown: String,
    /// How long commands are retried while Redis is unreachable.
    retry_for: Duration,
    quiet: bool,
    /// Outages survived (summary).
    pub outages: AtomicU64,
}

/// Is `e` "Redis is not there right now" (worth waiting for), rather than an answer?
pub fn unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN"))
}

impl Redis {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`), waiting up to `retry_for` for a
    /// Redis that is not up yet.
    pub async fn connect(url: &str, shown: &str, retry_for: Duration, quiet: bool) -> Result<Redis> {
        let client = redis::Client::open(url).map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let t0 = Instant::now();
        let mut attempt = 0;
        let conn = loop {
            match ConnectionManager::new_with_config(client.clone(), cfg.clone()).await {
                Ok(c) => break c,
                Err(e) if unreachable(&e) && t0.elapsed() < retry_for => {
                    if attempt == 0 && !quiet {
                        eprintln!(
                            "keyrecon: Redis at {shown} is not reachable ({e}); retrying for up to {retry_for:?}"
                        );
                    }
                    tokio::time::sleep(BACKOFF.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(Error::remote(format!("connecting to Redis at {shown}"), e)),
            }
        };
        Ok(Redis { conn, shown: shown.to_string(), retry_for, quiet, outages: AtomicU64::new(0) })
    }

    /// Runs `cmd` (a command or a pipeline), retrying while Redis is unreachable; `what` names it in
    /// errors and logs.
    pub async fn run<T: FromRedisValue>(&self, what: &str, cmd: &impl Runnable) -> Result<T> {
        let mut outage: Option<Instant> = None;
        let mut attempt = 0;
        loop {
            let mut conn = self.conn.clone();
            match cmd.send(&mut conn).await {
                Ok(v) => {
                    if let Some(t) = outage {
                        if !self.quiet {
                            eprintln!(
                                "keyrecon: Redis at {} is back after {:.1}s",
                                self.shown,
                                t.elapsed().as_secs_f64()
                            );
                        }
                    }
                    return redis::from_redis_value(v)
                        .map_err(|e| Error::remote(format!("{what}: unexpected reply"), e));
                }
                Err(e) if unreachable(&e) => {
                    let t = *outage.get_or_insert_with(|| {
                        self.outages.fetch_add(1, Relaxed);
                        if !self.quiet {
                            eprintln!("keyrecon: Redis at {} unreachable ({e}); retrying {what}", self.shown);
                        }
                        Instant::now()
                    });
                    if t.elapsed() >= self.retry_for {
                        return Err(Error::remote(
                            format!(
                                "{what}: Redis at {} unreachable for {:?} (--redis-timeout)",
                                self.shown, self.retry_for
                            ),
                            e,
                        ));
                    }
                    tokio::time::sleep(BACKOFF.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(Error::remote(format!("{what} on Redis at {}", self.shown), e)),
            }
        }
    }
}

/// A command or a pipeline (MULTI/EXEC when atomic).
pub trait Runnable: Sync {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a;
}

impl Runnable for redis::Cmd {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Runnable for redis::Pipeline {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}

/// The server error code of `e`, when it is an error result of ours (e.g. `NOGROUP`).
pub fn code_of(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<RedisError>() {
            return r.code().map(str::to_string);
        }
        cur = err.source();
    }
    None
}
