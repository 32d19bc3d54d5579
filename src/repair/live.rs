//! Live progress of repair/verify: keys done of total, objects/s, MB/s, keys in flight and the current
//! concurrency limit, ETA. An indicatif bar on a terminal; off a terminal a log line every
//! `every` (cron, CI, orchestrators); nothing with `--quiet`. Workers only bump atomics.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters the workers bump.
#[derive(Default)]
pub struct Live {
    pub done: AtomicU64,
    pub bytes: AtomicU64,
    pub inflight: AtomicUsize,
    pub limit: AtomicUsize,
}

pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn start(tool: &'static str, total: u64, live: Arc<Live>, quiet: bool, every: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (!quiet).then(|| {
            let s = stop.clone();
            std::thread::spawn(move || run(tool, total, &live, &s, every))
        });
        Ticker { stop, handle }
    }
    pub fn finish(mut self) {
        self.stop_now();
    }
    fn stop_now(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn run(tool: &str, total: u64, live: &Live, stop: &AtomicBool, every: Duration) {
    let t0 = Instant::now();
    let mbs = |el: f64| live.bytes.load(Relaxed) as f64 / 1e6 / el.max(1e-3);
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(tool.to_string());
        while !stop.load(Relaxed) {
            bar.set_position(live.done.load(Relaxed));
            bar.set_message(format!(
                "{:.1} MB/s, {} in flight (limit {})",
                mbs(t0.elapsed().as_secs_f64()),
                live.inflight.load(Relaxed),
                live.limit.load(Relaxed)
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
        return;
    }
    let mut next = every;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let el = t0.elapsed();
        if el < next {
            continue;
        }
        next += every;
        let done = live.done.load(Relaxed);
        let s = el.as_secs_f64();
        let rate = done as f64 / s;
        let eta = if rate > 0.0 { format!("{:.0}s", total.saturating_sub(done) as f64 / rate) } else { "?".into() };
        eprintln!(
            "{tool}: {done}/{total} keys ({:.0}%), {rate:.0} objects/s, {:.1} MB/s, {} in flight (limit {}), ETA {eta}",
            if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 },
            mbs(s),
            live.inflight.load(Relaxed),
            live.limit.load(Relaxed)
        );
    }
}
