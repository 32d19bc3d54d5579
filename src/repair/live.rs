//! Live counters of repair and verify, and their progress line (the engine's one style, see
//! `keyrecon_engine::progress`): keys done of total, keys/s, ETA, then MB/s, keys in flight and the
//! current concurrency limit. Workers only bump atomics.

use crate::progress::{Progress, Unit};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Counters the workers bump.
#[derive(Default)]
pub struct Live {
    /// Keys with a final outcome (the progress line's count).
    pub done: Arc<AtomicU64>,
    pub bytes: AtomicU64,
    pub inflight: AtomicUsize,
    pub limit: AtomicUsize,
}

/// Starts the progress line of `total` keys (`None`: not known, e.g. keys from a queue; none when
/// `quiet`).
pub fn progress(tool: &'static str, total: Option<u64>, live: Arc<Live>, quiet: bool) -> Progress {
    let t0 = Instant::now();
    let counter = live.done.clone();
    Progress::spec(tool, "", Unit::Items("keys"))
        .total(total)
        .note(move || {
            let mbs = live.bytes.load(Relaxed) as f64 / 1e6 / t0.elapsed().as_secs_f64().max(1e-3);
            format!("{mbs:.1} MB/s, {} in flight (limit {})", live.inflight.load(Relaxed), live.limit.load(Relaxed))
        })
        .start_counting(counter, quiet)
}
