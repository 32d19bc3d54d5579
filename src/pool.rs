//! The worker pool keyrecon-repair and keyrecon-verify run their keys through.
//!
//! ```text
//!  producer (a blocking thread: reads the key input) ──► bounded channel ──► N tokio workers
//!                                                         (backpressure)      work(item) each
//! ```
//! The producer runs on its own thread, so reading and parsing the input never stalls the workers'
//! network I/O, and the channel's bound keeps memory flat whatever the input size: the keys in memory
//! are the keys in flight plus [`QUEUE`] waiting. A worker whose `work` says [`Flow::Stop`] (a fatal
//! error, already recorded by the caller) stops every worker after the items they hold; the producer
//! then stops at its next send. The pool returns when the producer is done and every item it sent is
//! done.

use crate::error::{Error, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Items waiting in the channel at most.
pub const QUEUE: usize = 1024;

/// What a worker does after an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop the pool (the caller kept the reason).
    Stop,
}

/// Hands items to the pool from a blocking producer; `send` returns false once the pool stopped.
pub struct Feeder<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Feeder<T> {
    /// Waits for room in the channel. False: the pool stopped taking items.
    pub fn send(&self, item: T) -> bool {
        self.tx.blocking_send(item).is_ok()
    }
}

/// Runs `produce` on a blocking thread and `work` on up to `workers` items at once until the producer
/// returned and every item is done, or a worker said [`Flow::Stop`]. Returns the producer's result.
pub async fn run<T, P, W, Fut>(workers: usize, produce: P, work: W) -> Result<()>
where
    T: Send + 'static,
    P: FnOnce(Feeder<T>) -> Result<()> + Send + 'static,
    W: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Flow> + Send,
{
    run_with_queue(workers, QUEUE, produce, work).await
}

/// [`run`] with `queue` items waiting at most: a queue consumer takes no more keys from the shared
/// queue than it can start soon, so the other machines get the rest.
pub async fn run_with_queue<T, P, W, Fut>(workers: usize, queue: usize, produce: P, work: W) -> Result<()>
where
    T: Send + 'static,
    P: FnOnce(Feeder<T>) -> Result<()> + Send + 'static,
    W: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Flow> + Send,
{
    let (tx, rx) = mpsc::channel(queue.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::task::spawn_blocking(move || produce(Feeder { tx }));
    let mut handles = Vec::with_capacity(workers.max(1));
    for _ in 0..workers.max(1) {
        let (rx, stop, work) = (rx.clone(), stop.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            loop {
                if stop.load(Relaxed) {
                    return;
                }
                let Some(item) = rx.lock().await.recv().await else { return };
                if work(item).await == Flow::Stop {
                    stop.store(true, Relaxed);
                    // Dropping the receiver's items makes the producer's next send fail.
                    rx.lock().await.close();
                    return;
                }
            }
        }));
    }
    let mut panicked = None;
    for h in handles {
        if let Err(e) = h.await {
            panicked.get_or_insert(e.to_string());
        }
    }
    // Workers are gone: a producer still waiting for room must not wait forever.
    rx.lock().await.close();
    let produced = producer.await.map_err(|e| Error::Internal(format!("key reader: {e}")))?;
    if let Some(p) = panicked {
        return Err(Error::Internal(format!("worker: {p}")));
    }
    produced
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_once_and_stop_stops_the_producer() {
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        run(
            4,
            |f: Feeder<u64>| {
                for i in 1..=10_000 {
                    assert!(f.send(i));
                }
                Ok(())
            },
            move |i| {
                let s = s.clone();
                async move {
                    s.fetch_add(i, Relaxed);
                    Flow::Continue
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(sum.load(Relaxed), 10_000 * 10_001 / 2);

        // A stop ends the run although the producer had far more to give.
        let sent = Arc::new(AtomicU64::new(0));
        let s2 = sent.clone();
        run(
            2,
            move |f: Feeder<u64>| {
                for i in 0..1_000_000 {
                    if !f.send(i) {
                        break;
                    }
                    s2.fetch_add(1, Relaxed);
                }
                Ok(())
            },
            |i| async move {
                if i == 100 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        )
        .await
        .unwrap();
        assert!(sent.load(Relaxed) < 1_000_000);

        // The producer's error is the run's.
        let e = run(1, |_f: Feeder<u64>| Err(Error::Usage("bad input".into())), |_| async { Flow::Continue }).await;
        assert!(e.unwrap_err().to_string().contains("bad input"));
    }
}
