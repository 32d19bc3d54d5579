//! Progress reporting and resource counters.
//!
//! Hot loops only bump an `AtomicU64`; a ticker thread turns it into an indicatif bar when stderr is a
//! terminal, or into a log line every [`LOG_EVERY`] when it is not (cron, orchestrators), and nothing
//! with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items(&'static str),
}

pub struct Progress {
    pub counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `counter` against `total` (if known). `tool` prefixes log lines.
    pub fn start(tool: &'static str, label: &str, unit: Unit, total: Option<u64>, quiet: bool) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = if quiet {
            None
        } else {
            let (c, s, label) = (counter.clone(), stop.clone(), label.to_string());
            Some(std::thread::spawn(move || ticker(tool, &label, unit, total, &c, &s)))
        };
        Progress { counter, stop, handle }
    }

    /// A reporter that shows nothing (library callers, tests).
    pub fn hidden() -> Progress {
        Progress { counter: Arc::new(AtomicU64::new(0)), stop: Arc::new(AtomicBool::new(true)), handle: None }
    }

    pub fn finish(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn ticker(tool: &str, label: &str, unit: Unit, total: Option<u64>, c: &AtomicU64, stop: &AtomicBool) {
    let start = Instant::now();
    if std::io::stderr().is_terminal() {
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr_with_hz(5)),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5)),
        };
        let tmpl = match (unit, total.is_some()) {
            (Unit::Bytes, true) => {
                "{spinner} {msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})"
            }
            (Unit::Bytes, false) => "{spinner} {msg} [{elapsed_precise}] {bytes} ({bytes_per_sec})",
            (Unit::Items(_), true) => {
                "{spinner} {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, ETA {eta})"
            }
            (Unit::Items(_), false) => "{spinner} {msg} [{elapsed_precise}] {human_pos} ({per_sec})",
        };
        bar.set_style(ProgressStyle::with_template(tmpl).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.set_message(label.to_string());
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(c.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    } else {
        let mut next = LOG_EVERY;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let el = start.elapsed();
            if el >= next {
                next += LOG_EVERY;
                let v = c.load(Ordering::Relaxed);
                let what = match unit {
                    Unit::Bytes => format!("{} MiB", v >> 20),
                    Unit::Items(name) => format!("{v} {name}"),
                };
                let pct = total
                    .filter(|t| *t > 0)
                    .map(|t| format!(" ({:.0}%)", v as f64 * 100.0 / t as f64))
                    .unwrap_or_default();
                eprintln!("{tool}: {label}: {what}{pct} after {}s", el.as_secs());
            }
        }
    }
}

/// A rate for people: `61.8k rows/s`, `276 keys/s`, `3.4 objects/s` (three significant digits;
/// indicatif's `{per_sec}` printed `61,773.7931/s`).
pub fn rate(per_sec: f64, unit: &str) -> String {
    format!("{} {unit}/s", human(per_sec))
}

/// A number with three significant digits and a k/M/G suffix: `7`, `3.4`, `950`, `61.8k`, `1.23M`.
pub fn human(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "?".into();
    }
    let (x, suffix) = match v {
        v if v >= 999.5e6 => (v / 1e9, "G"),
        v if v >= 999.5e3 => (v / 1e6, "M"),
        v if v >= 999.5 => (v / 1e3, "k"),
        v => (v, ""),
    };
    if x >= 99.95 || (suffix.is_empty() && (x >= 9.995 || x == x.trunc())) {
        format!("{x:.0}{suffix}")
    } else if x >= 9.995 {
        format!("{x:.1}{suffix}")
    } else if suffix.is_empty() {
        format!("{x:.1}")
    } else {
        format!("{x:.2}{suffix}")
    }
}

/// Peak resident set size of this process, in bytes.
///
/// `VmHWM` of /proc/self/status, not `getrusage`: Linux carries `ru_maxrss` over `fork` + `exec`, so a
/// tool started by a large process (a test harness holding fixtures, a script runner) would report its
/// parent's size. `getrusage` only where /proc is missing.
pub fn peak_rss_bytes() -> u64 {
    if let Ok(st) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = st
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            return kb * 1024;
        }
    }
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) == 0 {
            return ru.ru_maxrss as u64 * 1024;
        }
    }
    0
}
