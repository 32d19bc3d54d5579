//! Progress lines, one style for every tool, and resource readings.
//!
//! ```text
//!  keyrecon-list-cassandra: media.objects: 1.23M rows, 41% of the token ring, 61.8k rows/s, ETA 35s
//!  keyrecon-diff: reading: 1.23 GiB of 3.00 GiB (41%), 612 MiB/s, ETA 3s
//!  keyrecon-repair: 120k of 400k keys (30%), 3.41k keys/s, ETA 1m22s; 48.1 MB/s, 32 in flight (limit 32)
//! ```
//! A line is: what is counted so far, the share done and the ETA when they can be known (a total, or a
//! tool's own fraction such as the share of the token ring listed), a rounded rate, and a short note of
//! the tool's own (retries, requests in flight). Hot loops only bump an `AtomicU64` ([`Progress::counter`]);
//! a ticker thread draws an indicatif bar on a terminal (5 times a second), writes the line every
//! [`LOG_EVERY`] when stderr is not a terminal (cron, orchestrators), and nothing with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a progress line is written when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// What the counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items(&'static str),
}

impl Unit {
    /// `v` of this unit for people: `1.23 GiB`, `61.8k rows`.
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::Bytes => bytes(v),
            Unit::Items(name) => format!("{} {name}", human(v)),
        }
    }
    /// A rate of this unit: `612 MiB/s`, `61.8k rows/s`.
    pub fn rate(self, per_sec: f64) -> String {
        format!("{}/s", self.show(per_sec))
    }
}

type Fraction = Box<dyn Fn() -> Option<f64> + Send>;
type Note = Box<dyn Fn() -> String + Send>;

/// A progress line to start: what it counts, and optionally how to know the share done and a note.
pub struct Spec {
    tool: &'static str,
    label: String,
    unit: Unit,
    total: Option<u64>,
    fraction: Option<Fraction>,
    /// What the fraction is of (`the token ring`); `None`: "done".
    of: Option<&'static str>,
    note: Option<Note>,
}

/// A running progress line; stops (and clears a terminal bar) when finished or dropped.
pub struct Progress {
    /// What hot loops bump: the count of [`Unit`]s done.
    pub counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// A line for `tool` counting `unit`s; `label` says what (`reading`, `media.objects`), or is empty.
    pub fn spec(tool: &'static str, label: impl Into<String>, unit: Unit) -> Spec {
        Spec { tool, label: label.into(), unit, total: None, fraction: None, of: None, note: None }
    }

    /// Starts reporting `counter` against `total` (if known). `tool` prefixes log lines.
    pub fn start(tool: &'static str, label: &str, unit: Unit, total: Option<u64>, quiet: bool) -> Progress {
        let mut s = Progress::spec(tool, label, unit);
        s.total = total;
        s.start(quiet)
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

impl Spec {
    /// The count to reach, when known: gives the share done and the ETA.
    pub fn total(mut self, total: Option<u64>) -> Spec {
        self.total = total;
        self
    }
    /// The share done (0..=1) when the tool knows it better than count / total (the share of the token
    /// ring a scan covered); `None` while unknown.
    pub fn fraction(mut self, f: impl Fn() -> Option<f64> + Send + 'static) -> Spec {
        self.fraction = Some(Box::new(f));
        self
    }
    /// [`Self::fraction`], shown as the share of `what` (`41% of the token ring`).
    pub fn fraction_of(mut self, what: &'static str, f: impl Fn() -> Option<f64> + Send + 'static) -> Spec {
        self.of = Some(what);
        self.fraction(f)
    }
    /// A short note appended to the line (requests in flight, retries).
    pub fn note(mut self, f: impl Fn() -> String + Send + 'static) -> Spec {
        self.note = Some(Box::new(f));
        self
    }

    /// Starts the ticker thread (none when `quiet`).
    pub fn start(self, quiet: bool) -> Progress {
        self.start_counting(Arc::new(AtomicU64::new(0)), quiet)
    }

    /// [`Self::start`] on a counter the tool already keeps.
    pub fn start_counting(self, counter: Arc<AtomicU64>, quiet: bool) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (!quiet).then(|| {
            let (c, s) = (counter.clone(), stop.clone());
            std::thread::spawn(move || self.tick(&c, &s))
        });
        Progress { counter, stop, handle }
    }

    /// The share done: the tool's own fraction, else count / total.
    fn share(&self, done: u64) -> Option<f64> {
        match (&self.fraction, self.total) {
            (Some(f), _) => f(),
            (None, Some(t)) if t > 0 => Some(done as f64 / t as f64),
            _ => None,
        }
        .map(|f| f.clamp(0.0, 1.0))
    }

    /// The line after `elapsed` with `done` counted (without the tool prefix).
    fn line(&self, done: u64, elapsed: Duration) -> (String, Option<f64>) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let share = self.share(done);
        let mut s = String::new();
        if !self.label.is_empty() {
            s.push_str(&self.label);
            s.push_str(": ");
        }
        match (self.total, &self.fraction) {
            (Some(t), None) if t > 0 => {
                let (d, t) = (self.unit.show(done as f64), self.unit.show(t as f64));
                s.push_str(&format!("{d} of {t} ({:.0}%)", share.unwrap_or(0.0) * 100.0));
            }
            _ => {
                s.push_str(&self.unit.show(done as f64));
                if let Some(f) = share {
                    match self.of {
                        Some(what) => s.push_str(&format!(", {:.0}% of {what}", f * 100.0)),
                        None => s.push_str(&format!(", {:.0}% done", f * 100.0)),
                    }
                }
            }
        }
        s.push_str(&format!(", {}", self.unit.rate(done as f64 / secs)));
        if let Some(eta) = share.and_then(|f| eta(f, elapsed)) {
            s.push_str(&format!(", ETA {}", duration(eta)));
        }
        if let Some(n) = &self.note {
            let n = n();
            if !n.is_empty() {
                s.push_str("; ");
                s.push_str(&n);
            }
        }
        (s, share)
    }

    fn tick(self, c: &AtomicU64, stop: &AtomicBool) {
        let start = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr_with_hz(5));
            let style = |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_prefix(self.tool);
            while !stop.load(Ordering::Relaxed) {
                let (line, share) = self.line(c.load(Ordering::Relaxed), start.elapsed());
                match share {
                    Some(f) => {
                        bar.set_style(style("{prefix}: [{elapsed_precise}] {bar:30} {msg}"));
                        bar.set_position((f * 1000.0) as u64);
                    }
                    None => bar.set_style(style("{spinner} {prefix}: [{elapsed_precise}] {msg}")),
                }
                bar.set_message(line);
                bar.tick();
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        } else {
            let mut next = LOG_EVERY;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let el = start.elapsed();
                if el >= next {
                    next += LOG_EVERY;
                    let (line, _) = self.line(c.load(Ordering::Relaxed), el);
                    eprintln!("{}: {line}", self.tool);
                }
            }
        }
    }
}

/// Time left at the pace so far, once the share done is large enough to say anything.
fn eta(share: f64, elapsed: Duration) -> Option<Duration> {
    ((0.001..1.0).contains(&share) && elapsed >= Duration::from_secs(1))
        .then(|| Duration::from_secs_f64(elapsed.as_secs_f64() * (1.0 - share) / share))
}

/// `45s`, `3m05s`, `2h14m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A rate for people: `61.8k rows/s`, `276 keys/s`, `3.4 objects/s` (three significant digits;
/// indicatif's `{per_sec}` printed `61,773.7931/s`).
pub fn rate(per_sec: f64, unit: &str) -> String {
    format!("{} {unit}/s", human(per_sec))
}

/// A number with three significant digits and a k/M/G suffix: `7`, `3.4`, `950`, `61.8k`, `1.23M`.
pub fn human(v: f64) -> String {
    scaled(v, 1000.0, ["", "k", "M", "G", "T"], "")
}

/// Bytes with binary units: `512 B`, `61.8 KiB`, `1.23 GiB`.
pub fn bytes(v: f64) -> String {
    scaled(v, 1024.0, [" B", " KiB", " MiB", " GiB", " TiB"], " B")
}

fn scaled(v: f64, step: f64, suffixes: [&str; 5], small: &str) -> String {
    if !v.is_finite() || v < 0.0 {
        return "?".into();
    }
    let mut x = v;
    let mut i = 0;
    while x >= step * 0.9995 && i < suffixes.len() - 1 {
        x /= step;
        i += 1;
    }
    let suffix = suffixes[i];
    if i == 0 {
        // Below the first step: whole numbers as they are, fractions to one decimal.
        return if x >= 9.995 || x == x.trunc() { format!("{x:.0}{small}") } else { format!("{x:.1}{small}") };
    }
    if x >= 99.95 {
        format!("{x:.0}{suffix}")
    } else if x >= 9.995 {
        format!("{x:.1}{suffix}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        let cases = [
            (0.0, "0"),
            (7.0, "7"),
            (3.44, "3.4"),
            (950.0, "950"),
            (999.4, "999"),
            (999.6, "1.00k"),
            (61_773.793_1, "61.8k"),
            (276.6463, "277"),
            (1_234_567.0, "1.23M"),
            (12_345_678_901.0, "12.3G"),
        ];
        for (v, want) in cases {
            assert_eq!(human(v), want, "{v}");
        }
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(3.0 * (1u64 << 30) as f64), "3.00 GiB");
        assert_eq!(rate(61_773.793_1, "rows"), "61.8k rows/s");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(8040)), "2h14m");
    }

    #[test]
    fn lines_show_share_rate_and_eta_when_known() {
        let p = Progress::spec("t", "reading", Unit::Bytes).total(Some(4 << 30));
        let (l, share) = p.line(1 << 30, Duration::from_secs(10));
        assert_eq!(l, "reading: 1.00 GiB of 4.00 GiB (25%), 102 MiB/s, ETA 30s");
        assert_eq!(share, Some(0.25));
        let p = Progress::spec("t", "media.objects", Unit::Items("rows"))
            .fraction(|| Some(0.5))
            .note(|| "2 retries".into());
        let (l, _) = p.line(61_773, Duration::from_secs(1));
        assert_eq!(l, "media.objects: 61.8k rows, 50% done, 61.8k rows/s, ETA 1s; 2 retries");
        let p = Progress::spec("t", "", Unit::Items("keys"));
        assert_eq!(p.line(10, Duration::from_secs(4)).0, "10 keys, 2.5 keys/s");
        let p = Progress::spec("t", "ks.t", Unit::Items("rows")).fraction_of("the token ring", || Some(0.41));
        assert!(p
            .line(5, Duration::from_secs(2))
            .0
            .starts_with("ks.t: 5 rows, 41% of the token ring, 2.5 rows/s, ETA"));
    }
}
