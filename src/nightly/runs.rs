//! Where nightly runs live, one directory per run, and what they remember of each other.
//!
//! ```text
//! RUNS/
//!   .lock                        flock(2)ed by the run in progress: a second run refuses to start
//!   history.jsonl                one line per finished run (its run-level summary), oldest first
//!   2026-12-02T020000Z/          one run
//!     stages.jsonl               {"stage":"list-source","state":"started"|"done"|"failed",..} appended
//!     source/ target/ diff/      each stage's outputs, as the binaries write them
//!     changes/                   new.txt, still.txt, resolved.txt against the previous run
//!     repair/ verify/            when enabled
//!     summary.json report.html report.md
//! ```
//! The stage journal is what `--resume` reads: stages recorded `done` are skipped, the first other one
//! runs again (with its own `--resume` where the binary has one). A run directory is named by its UTC
//! start time, so `ls` sorts runs by time.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const HISTORY: &str = "history.jsonl";
pub const STAGES: &str = "stages.jsonl";
const LOCK: &str = ".lock";
/// The note of a `finish` event when the brake held repair back (such a run can be resumed past it).
pub const BRAKED: &str = "brake held";

/// The lock on RUNS, held while the value lives (the kernel drops it when the process dies).
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the lock without waiting; a run in progress makes this an error that says so.
    pub fn take(runs: &Path) -> Result<Lock> {
        std::fs::create_dir_all(runs).ctx(runs)?;
        let p = runs.join(LOCK);
        let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&p).ctx(&p)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&p).unwrap_or_default();
            return Err(Error::Usage(format!(
                "{}: another run is in progress ({}); this one does not start (a slow night must not collide with the next)",
                runs.display(),
                holder.trim()
            )));
        }
        f.set_len(0).ctx(&p)?;
        let _ = writeln!(f, "pid {} since {}", std::process::id(), now_utc());
        Ok(Lock { _file: f })
    }
}

/// `2026-12-02T020000Z` of now (UTC).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    utc_name(secs)
}

/// `YYYY-MM-DDTHHMMSSZ` of a Unix time.
pub fn utc_name(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One line of a stage journal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageEvent {
    pub stage: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A run directory and its stage journal.
pub struct Run {
    pub dir: PathBuf,
    pub name: String,
    journal: std::fs::File,
    /// Stages a previous attempt finished (`--resume`).
    pub done: Vec<StageEvent>,
}

impl Run {
    /// A new run directory named by now.
    pub fn create(runs: &Path) -> Result<Run> {
        let mut name = now_utc();
        let mut dir = runs.join(&name);
        // Two runs in one second (tests, a retry): a suffix keeps them apart and in order.
        let mut n = 1;
        while dir.exists() {
            name = format!("{}-{n}", now_utc());
            dir = runs.join(&name);
            n += 1;
        }
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        Run::open_dir(dir, name)
    }

    /// The newest run directory, to continue it (`--resume`); an error when it had finished, unless
    /// it finished at the brake and `past_brake` (`--accept-large`): then it continues with repair,
    /// after a person looked at exactly that run's numbers, without listing both stores again.
    pub fn resume(runs: &Path, past_brake: bool) -> Result<Run> {
        let last = list(runs)?.pop().ok_or_else(|| Error::Usage(format!("--resume: no run in {}", runs.display())))?;
        let r = Run::open_dir(runs.join(&last), last)?;
        match (r.finished(), r.braked(), past_brake) {
            (false, _, _) | (true, true, true) => Ok(r),
            (true, true, false) => Err(Error::Usage(format!(
                "--resume: the last run ({}) stopped at the brake; after a look, `--resume --accept-large` \
                 continues it with repair, or start a new run without --resume",
                r.dir.display()
            ))),
            (true, false, _) => Err(Error::Usage(format!(
                "--resume: the last run ({}) finished; start a new one without --resume",
                r.dir.display()
            ))),
        }
    }

    fn open_dir(dir: PathBuf, name: String) -> Result<Run> {
        let p = dir.join(STAGES);
        let mut done = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&p) {
            // A torn last line (killed mid-write) is cut off, so the next event starts a line of its own.
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                let f = std::fs::OpenOptions::new().write(true).open(&p).ctx(&p)?;
                f.set_len(keep as u64).ctx(&p)?;
            }
            for (i, line) in text.lines().enumerate() {
                // A torn last line (killed mid-write) is not an event.
                match serde_json::from_str::<StageEvent>(line) {
                    Ok(e) if e.state == "done" => done.push(e),
                    Ok(_) => {}
                    Err(_) if i + 1 == text.lines().count() => {}
                    Err(e) => return Err(Error::Parse { path: p, line: i as u64 + 1, msg: e.to_string() }),
                }
            }
        }
        let journal = std::fs::OpenOptions::new().create(true).append(true).open(&p).ctx(&p)?;
        Ok(Run { dir, name, journal, done })
    }

    /// Was `stage` finished by an earlier attempt of this run?
    pub fn is_done(&self, stage: &str) -> bool {
        self.done.iter().any(|e| e.stage == stage)
    }

    /// The journal's event of a stage an earlier attempt finished.
    pub fn done_event(&self, stage: &str) -> Option<&StageEvent> {
        self.done.iter().rev().find(|e| e.stage == stage)
    }

    pub fn finished(&self) -> bool {
        self.is_done("finish")
    }

    /// Did the run's last attempt finish with the brake holding repair back?
    pub fn braked(&self) -> bool {
        self.done_event("finish").is_some_and(|e| e.note.as_deref() == Some(BRAKED))
    }

    /// Appends an event (one write, synced: a kill -9 right after must not lose a `done`).
    pub fn record(&mut self, e: &StageEvent) -> Result<()> {
        let p = self.dir.join(STAGES);
        let mut line = serde_json::to_vec(e).map_err(|err| Error::json(&p, err))?;
        line.push(b'\n');
        self.journal.write_all(&line).ctx(&p)?;
        self.journal.sync_data().ctx(&p)?;
        if e.state == "done" {
            self.done.push(e.clone());
        }
        Ok(())
    }
}

/// Run directory names in RUNS, oldest first.
pub fn list(runs: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(runs) {
        for e in rd {
            let e = e.ctx(runs)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir()
                && name.len() >= 18
                && name.as_bytes()[4] == b'-'
                && name.ends_with(|c: char| c == 'Z' || c.is_ascii_digit())
            {
                v.push(name);
            }
        }
    }
    v.sort();
    Ok(v)
}

/// The history: every finished run's summary line, oldest first.
pub fn history(runs: &Path) -> Result<Vec<serde_json::Value>> {
    let p = runs.join(HISTORY);
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Parse {
                path: p.clone(),
                line: i as u64 + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

/// Appends a run's line to the history, or replaces the line of the same run in its place (a braked
/// run continued with `--resume --accept-large` finishes twice; the history keeps one line per run).
pub fn append_history(runs: &Path, line: &serde_json::Value) -> Result<()> {
    let p = runs.join(HISTORY);
    let name = line.get("run").and_then(|r| r.as_str());
    let old = history(runs)?;
    if name.is_some() && old.iter().any(|h| h.get("run").and_then(|r| r.as_str()) == name) {
        // Rewritten under a temporary name and renamed: a kill leaves the old history or the new one.
        let tmp = runs.join(format!("{HISTORY}.tmp"));
        let mut b = Vec::new();
        for h in old.iter().map(|h| if h.get("run").and_then(|r| r.as_str()) == name { line } else { h }) {
            serde_json::to_writer(&mut b, h).map_err(|e| Error::json(&p, e))?;
            b.push(b'\n');
        }
        let mut f = std::fs::File::create(&tmp).ctx(&tmp)?;
        f.write_all(&b).ctx(&tmp)?;
        f.sync_data().ctx(&tmp)?;
        return std::fs::rename(&tmp, &p).ctx(&p);
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).ctx(&p)?;
    let mut b = serde_json::to_vec(line).map_err(|e| Error::json(&p, e))?;
    b.push(b'\n');
    f.write_all(&b).ctx(&p)?;
    f.sync_data().ctx(&p)
}

/// Removes the oldest run directories beyond `keep` (history.jsonl keeps their lines).
pub fn prune(runs: &Path, keep: usize) -> Result<Vec<String>> {
    let all = list(runs)?;
    let n = all.len().saturating_sub(keep);
    let gone: Vec<String> = all.into_iter().take(n).collect();
    for name in &gone {
        let d = runs.join(name);
        std::fs::remove_dir_all(&d).ctx(&d)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time() {
        assert_eq!(utc_name(0), "1970-01-01T000000Z");
        assert_eq!(utc_name(1_764_640_800), "2025-12-02T020000Z");
        assert_eq!(utc_name(951_825_599), "2000-02-29T115959Z");
    }

    #[test]
    fn a_second_lock_is_refused_and_released_with_the_first() {
        let d = tempfile::tempdir().unwrap();
        let l = Lock::take(d.path()).unwrap();
        let e = Lock::take(d.path()).err().unwrap().to_string();
        assert!(e.contains("another run is in progress") && e.contains("pid"), "{e}");
        drop(l);
        Lock::take(d.path()).unwrap();
    }

    #[test]
    fn stages_resume_after_the_last_done() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Run::create(d.path()).unwrap();
        for (stage, state) in [("list-source", "started"), ("list-source", "done"), ("list-target", "started")] {
            r.record(&StageEvent { stage: stage.into(), state: state.into(), ms: None, exit: None, note: None })
                .unwrap();
        }
        drop(r);
        // A torn last line is ignored.
        let p = d.path().join(list(d.path()).unwrap()[0].clone()).join(STAGES);
        let mut t = std::fs::read(&p).unwrap();
        t.extend_from_slice(b"{\"stage\":\"list-tar");
        std::fs::write(&p, t).unwrap();
        let r = Run::resume(d.path(), false).unwrap();
        assert!(r.is_done("list-source") && !r.is_done("list-target") && !r.finished());
        let mut r = r;
        r.record(&StageEvent { stage: "finish".into(), state: "done".into(), ms: None, exit: None, note: None })
            .unwrap();
        for past_brake in [false, true] {
            assert!(Run::resume(d.path(), past_brake).err().unwrap().to_string().contains("finished"));
        }
    }

    #[test]
    fn a_run_that_stopped_at_the_brake_resumes_only_past_it() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Run::create(d.path()).unwrap();
        let finish = |note: Option<&str>| StageEvent {
            stage: "finish".into(),
            state: "done".into(),
            ms: None,
            exit: Some(2),
            note: note.map(str::to_string),
        };
        r.record(&finish(Some(BRAKED))).unwrap();
        drop(r);
        let e = Run::resume(d.path(), false).err().unwrap().to_string();
        assert!(e.contains("stopped at the brake") && e.contains("--accept-large"), "{e}");
        let mut r = Run::resume(d.path(), true).unwrap();
        assert!(r.braked());
        // Continued past the brake, it finishes again; then it is done for good.
        r.record(&finish(None)).unwrap();
        drop(r);
        assert!(Run::resume(d.path(), true).err().unwrap().to_string().contains("finished"));
    }

    #[test]
    fn history_keeps_one_line_per_run_its_last() {
        let d = tempfile::tempdir().unwrap();
        let line = |run: &str, exit: i32| serde_json::json!({"run": run, "exit_code": exit});
        for l in [line("a", 1), line("b", 2), line("c", 0), line("b", 1)] {
            append_history(d.path(), &l).unwrap();
        }
        assert_eq!(history(d.path()).unwrap(), [line("a", 1), line("b", 1), line("c", 0)]);
        assert!(!d.path().join("history.jsonl.tmp").exists());
    }
}
