//! keyrecon-reconcile: a nightly reconciliation as one job. It runs the toolkit's binaries as stages
//! into a run directory, remembers every run, compares tonight with last night, brakes before a mass
//! repair, and leaves a report to look at and metrics to alert on.
//!
//! ```text
//!  recon.toml ─► lock RUNS ─► run dir RUNS/<UTC time>/ (stages.jsonl journals each stage)
//!   list-source  keyrecon-list-cassandra [flags] [--shard i/N] --out source/      ┐ the binaries, as a
//!   list-target  keyrecon-list-s3 [flags] [--shard i/N] --out target/             │ person would run
//!   diff         keyrecon-diff --source source/.. --target target/.. --out diff/  ┘ them (--print-commands)
//!   changes      tonight's missing keys against the previous run's: new, still, resolved (the engine)
//!   brake        too many missing, or a side listed far fewer keys than last night: no repair, exit 2
//!   repair       keyrecon-repair [flags] --keys diff/missing-on-target.csv --out repair/  (mode on/dry-run)
//!   verify       keyrecon-verify [flags] --keys repair/ok.csv --out verify/               (mode head/deep)
//!   report       summary.json, report.html, report.md, history.jsonl, metrics, --notify-cmd
//! ```
//! Stages are binaries, not library calls, so that each runs exactly as documented for it (flags,
//! progress line on a terminal, summary.json, exit status) and `--print-commands` is the pipeline. A
//! killed run continues with `--resume` from the first stage its journal does not record as done
//! (listers and repair get their own `--resume`). Children die with the run (PR_SET_PDEATHSIG).
//!
//! Exit status, as diff(1): 0 in sync, 1 differences found (and handled as configured), 2 trouble: a
//! stage failed, or the brake held repair back.

pub mod config;
pub mod metrics;
pub mod report;
pub mod runs;

use crate::error::{Error, IoContext, Result};
use crate::input::{Format, InputSpec};
use crate::job::{self, DiffConfig, Engine, Side};
use crate::summary::Summary;
use config::{Config, RepairMode, VerifyMode};
use runs::{Run, StageEvent};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const TOOL: &str = "keyrecon-reconcile";

/// What keyrecon-reconcile was asked to do besides the config.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Continue the last run from its first unfinished stage.
    pub resume: bool,
    /// Repair even when the brake would hold it back (after a person looked).
    pub accept_large: bool,
    pub quiet: bool,
    /// Where the sibling binaries are (default: beside this one).
    pub bin_dir: Option<PathBuf>,
}

/// Counts from a diff's summary that the run keeps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiffCounts {
    pub source_keys: u64,
    pub target_keys: u64,
    pub missing_on_target: u64,
    pub missing_on_source: u64,
    pub differ: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Changes {
    /// Missing tonight, not last night: a live loss to chase.
    pub new: u64,
    pub still: u64,
    /// Missing last night, not tonight.
    pub resolved: u64,
    /// The run compared with (none on the first night).
    pub previous: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Brake {
    pub tripped: bool,
    pub accepted: bool,
    pub reasons: Vec<String>,
}

impl Brake {
    /// Why the brake tripped and what became of it, for the summary paragraph and report.md.
    pub fn verdict(&self) -> String {
        format!(
            "{}{}",
            self.reasons.join("; "),
            if self.accepted {
                " (accepted with --accept-large)"
            } else {
                ": repair did not start (after a look, --resume --accept-large continues this run)"
            }
        )
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub ms: u64,
    pub exit: Option<i32>,
    /// Keys (or rows) a second the stage handled, when its summary says.
    pub per_sec: Option<f64>,
}

/// The run-level summary (RUN/summary.json, and one line of RUNS/history.jsonl).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub run: String,
    pub dir: String,
    pub started: String,
    pub finished_unix_ms: u64,
    pub resumed: bool,
    #[serde(flatten)]
    pub diff: DiffCounts,
    pub changes: Changes,
    pub brake: Brake,
    pub repair_mode: String,
    /// Repair outcomes (ok, not_found, failed, exists, differ) when it ran.
    pub repair: serde_json::Value,
    pub verify_mode: String,
    pub verify: serde_json::Value,
    /// Where missing keys cluster: (prefix, keys), most first.
    pub prefixes: Vec<(String, u64)>,
    pub stages: Vec<StageTime>,
    /// A stage that failed, with its exit status.
    pub failed_stage: Option<String>,
    pub exit_code: i32,
    pub settings: serde_json::Value,
}

impl Summary for RunSummary {
    fn exit_code(&self) -> i32 {
        self.exit_code
    }
    fn paragraph(&self) -> String {
        let mut s = format!(
            "run {}: {} missing on target ({} new, {} still, {} resolved), {} missing on source, {} differ; source {} keys, target {} keys",
            self.run,
            self.diff.missing_on_target,
            self.changes.new,
            self.changes.still,
            self.changes.resolved,
            self.diff.missing_on_source,
            self.diff.differ,
            self.diff.source_keys,
            self.diff.target_keys
        );
        if let Some(st) = &self.failed_stage {
            s.push_str(&format!("; STAGE {st} FAILED"));
        }
        if self.brake.tripped {
            s.push_str(&format!("; BRAKE: {}", self.brake.verdict()));
        }
        if let Some(ok) = self.repair.get("ok") {
            s.push_str(&format!("; repair ({}): {} ok", self.repair_mode, ok));
        }
        s.push_str(&format!("; see {}/report.html", self.dir));
        s
    }
}

/// The binaries of a run, where they are.
struct Bins {
    dir: PathBuf,
}

impl Bins {
    fn find(opts: &Options) -> Result<Bins> {
        let dir = match &opts.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .ctx("/proc/self/exe")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| Error::Internal("the executable has no directory".into()))?,
        };
        Ok(Bins { dir })
    }
    fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        if p.is_file() {
            p
        } else {
            PathBuf::from(name)
        }
    }
}

/// One stage as a command: the binary and its arguments.
#[derive(Clone, Debug)]
pub struct Step {
    pub stage: &'static str,
    pub bin: &'static str,
    pub args: Vec<String>,
}

impl Step {
    /// The command as a shell would take it.
    pub fn shell(&self) -> String {
        std::iter::once(self.bin.to_string())
            .chain(self.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The listing steps of one side: one, or one per shard (`--shard i/N`, into `side/shard-i`).
fn listing_steps(
    stage: &'static str,
    bin: &'static str,
    flags: &[String],
    shards: u32,
    dir: &Path,
    resume: &dyn Fn(&Path) -> bool,
) -> Vec<(Step, PathBuf)> {
    (1..=shards)
        .map(|i| {
            let out = if shards == 1 { dir.to_path_buf() } else { dir.join(format!("shard-{i}")) };
            let mut args = flags.to_vec();
            if shards > 1 {
                args.extend(["--shard".into(), format!("{i}/{shards}")]);
            }
            args.extend(["--out".into(), s(&out)]);
            if resume(&out) {
                args.push("--resume".into());
            } else {
                args.push("--force".into());
            }
            (Step { stage, bin, args }, out)
        })
        .collect()
}

/// The chunk sets of a listed side (one, or its shards).
fn side_sets(dir: &Path, shards: u32) -> Vec<PathBuf> {
    if shards == 1 {
        vec![dir.to_path_buf()]
    } else {
        (1..=shards).map(|i| dir.join(format!("shard-{i}"))).collect()
    }
}

/// An unfinished listing in `out` (a checkpoint or a scan journal, no manifest): continue it.
fn unfinished_listing(out: &Path) -> bool {
    !out.join("manifest.json").exists()
        && (out.join("checkpoint.json").exists()
            || out.join(".keyrecon-scan").exists()
            || out.join("inventory-work").exists())
}

/// The commands of a run in `dir` (for `--print-commands`; the run adds `--resume` where it continues).
pub fn commands(cfg: &Config, dir: &Path) -> Vec<Step> {
    let no = |_: &Path| false;
    let mut v: Vec<Step> = Vec::new();
    v.extend(
        listing_steps(
            "list-source",
            "keyrecon-list-cassandra",
            &cfg.source.args(),
            cfg.source_shards,
            &dir.join("source"),
            &no,
        )
        .into_iter()
        .map(|(st, _)| st),
    );
    v.extend(
        listing_steps(
            "list-target",
            "keyrecon-list-s3",
            &cfg.target.args(),
            cfg.target_shards,
            &dir.join("target"),
            &no,
        )
        .into_iter()
        .map(|(st, _)| st),
    );
    v.push(diff_step(cfg, dir));
    if cfg.repair_mode != RepairMode::Off {
        v.push(repair_step(cfg, dir, &dir.join("diff/missing-on-target.csv"), false));
    }
    if cfg.verify_mode != VerifyMode::Off {
        v.push(verify_step(cfg, dir));
    }
    v
}

fn diff_step(cfg: &Config, dir: &Path) -> Step {
    let mut args = Vec::new();
    for p in side_sets(&dir.join("source"), cfg.source_shards) {
        args.extend(["--source".into(), s(&p)]);
    }
    for p in side_sets(&dir.join("target"), cfg.target_shards) {
        args.extend(["--target".into(), s(&p)]);
    }
    if cfg.source_shards == 1 && cfg.target_shards == 1 {
        // One set a side: the positional form works with every keyrecon-diff.
        args = vec![s(&dir.join("source")), s(&dir.join("target"))];
    }
    args.extend(cfg.diff.args());
    args.extend(["--out".into(), s(&dir.join("diff"))]);
    Step { stage: "diff", bin: "keyrecon-diff", args }
}

fn repair_step(cfg: &Config, dir: &Path, keys: &Path, resume: bool) -> Step {
    let mut args = vec!["--keys".to_string(), s(keys)];
    args.extend(cfg.repair.args());
    if cfg.repair_mode == RepairMode::DryRun {
        args.push("--dry-run".into());
    }
    args.extend(["--out".into(), s(&dir.join("repair"))]);
    if resume {
        args.push("--resume".into());
    }
    Step { stage: "repair", bin: "keyrecon-repair", args }
}

fn verify_step(cfg: &Config, dir: &Path) -> Step {
    let keys = if cfg.repair_mode == RepairMode::On {
        dir.join("repair/ok.csv")
    } else {
        dir.join("diff/missing-on-target.txt")
    };
    let mut args = vec!["--keys".to_string(), s(&keys)];
    args.extend(cfg.verify.args());
    if cfg.verify_mode == VerifyMode::Deep {
        args.push("--deep".into());
    }
    args.extend(["--out".into(), s(&dir.join("verify"))]);
    Step { stage: "verify", bin: "keyrecon-verify", args }
}

/// Runs a step's binary with the run's stderr (its progress line on a terminal), dying with the run.
fn exec(bins: &Bins, step: &Step, quiet: bool) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bins.path(step.bin));
    c.args(&step.args);
    if quiet {
        c.arg("--quiet");
    }
    // SAFETY: prctl is async-signal-safe; a child of a killed run must not go on writing into the run.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let status = c.status().map_err(|e| Error::context(format!("starting {}", bins.path(step.bin).display()), e))?;
    Ok(status.code().unwrap_or(2))
}

fn read_summary(dir: &Path) -> Result<serde_json::Value> {
    let p = dir.join("summary.json");
    let b = std::fs::read(&p).ctx(&p)?;
    serde_json::from_slice(&b).map_err(|e| Error::json(&p, e))
}

fn num(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(|v| v.as_u64()).unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs a night (or continues the last one with `opts.resume`).
pub fn run(cfg: &Config, opts: &Options) -> Result<RunSummary> {
    let _lock = runs::Lock::take(&cfg.runs)?;
    let bins = Bins::find(opts)?;
    let history = runs::history(&cfg.runs)?;
    let mut run = if opts.resume { Run::resume(&cfg.runs, opts.accept_large)? } else { Run::create(&cfg.runs)? };
    let dir = run.dir.clone();
    let mut sum = RunSummary {
        run: run.name.clone(),
        dir: s(&dir),
        started: run.name.clone(),
        resumed: opts.resume,
        repair_mode: config::mode_name(cfg.repair_mode),
        verify_mode: config::mode_name(cfg.verify_mode),
        settings: cfg.describe(),
        ..Default::default()
    };
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{TOOL}: {msg}");
        }
    };
    say(format!("run {} in {}", run.name, dir.display()));

    // The stages that run binaries. A stage recorded done by an earlier attempt is skipped.
    let stage = |run: &mut Run,
                 sum: &mut RunSummary,
                 name: &'static str,
                 steps: Vec<Step>,
                 ok: &dyn Fn(i32) -> bool|
     -> Result<bool> {
        if let Some(e) = run.done_event(name) {
            say(format!("{name}: done by the earlier attempt"));
            sum.stages.push(StageTime { stage: name.into(), ms: e.ms.unwrap_or(0), exit: e.exit, per_sec: None });
            return Ok(true);
        }
        run.record(&StageEvent { stage: name.into(), state: "started".into(), ms: None, exit: None, note: None })?;
        let t0 = Instant::now();
        let mut code = 0;
        for st in &steps {
            say(format!("{name}: {}", st.shell()));
            code = exec(&bins, st, opts.quiet)?;
            if !ok(code) {
                break;
            }
        }
        let ms = t0.elapsed().as_millis() as u64;
        sum.stages.push(StageTime { stage: name.into(), ms, exit: Some(code), per_sec: None });
        let state = if ok(code) { "done" } else { "failed" };
        run.record(&StageEvent {
            stage: name.into(),
            state: state.into(),
            ms: Some(ms),
            exit: Some(code),
            note: None,
        })?;
        say(format!("{name}: {state} in {:.1}s (exit status {code})", ms as f64 / 1000.0));
        if !ok(code) {
            sum.failed_stage = Some(format!("{name} (exit status {code})"));
        }
        Ok(ok(code))
    };

    let resume_of = |out: &Path| opts.resume && unfinished_listing(out);
    let src = listing_steps(
        "list-source",
        "keyrecon-list-cassandra",
        &cfg.source.args(),
        cfg.source_shards,
        &dir.join("source"),
        &resume_of,
    );
    let tgt = listing_steps(
        "list-target",
        "keyrecon-list-s3",
        &cfg.target.args(),
        cfg.target_shards,
        &dir.join("target"),
        &resume_of,
    );
    let zero = |c: i32| c == 0;
    let lt1 = |c: i32| c <= 1;
    let mut go = stage(&mut run, &mut sum, "list-source", src.into_iter().map(|(s, _)| s).collect(), &zero)?
        && stage(&mut run, &mut sum, "list-target", tgt.into_iter().map(|(s, _)| s).collect(), &zero)?
        && stage(&mut run, &mut sum, "diff", vec![diff_step(cfg, &dir)], &lt1)?;

    if go {
        let d = read_summary(&dir.join("diff"))?;
        sum.diff = DiffCounts {
            source_keys: num(&d, &["source", "unique_keys"]),
            target_keys: num(&d, &["target", "unique_keys"]),
            missing_on_target: num(&d, &["missing_on_target"]),
            missing_on_source: num(&d, &["missing_on_source"]),
            differ: num(&d, &["differ"]),
        };
        let previous = baseline(&history, &run.name);
        sum.changes = changes(&cfg.runs, &dir, previous, &mut run, opts.quiet)?;
        sum.prefixes = report::prefixes(&dir.join("diff/missing-on-target.txt"), 10)?;
        sum.brake = brake(cfg, &sum.diff, previous, opts.accept_large);
        if sum.brake.tripped {
            say(format!("brake: {}", sum.brake.reasons.join("; ")));
        }
        if sum.brake.tripped && !sum.brake.accepted {
            go = false;
        }
    }
    if go && cfg.repair_mode != RepairMode::Off {
        let keys = ["missing-on-target.csv", "missing-on-target.txt"].map(|f| dir.join("diff").join(f));
        let keys = keys.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| keys[1].clone());
        let resume = opts.resume && dir.join("repair/journal.jsonl").exists() && cfg.repair_mode == RepairMode::On;
        go = stage(&mut run, &mut sum, "repair", vec![repair_step(cfg, &dir, &keys, resume)], &lt1)?;
        if let Ok(r) = read_summary(&dir.join("repair")) {
            sum.repair = r.get("outcomes").cloned().unwrap_or_default();
        }
    }
    if go && cfg.verify_mode != VerifyMode::Off {
        go = stage(&mut run, &mut sum, "verify", vec![verify_step(cfg, &dir)], &lt1)?;
        if let Ok(v) = read_summary(&dir.join("verify")) {
            sum.verify = v.get("outcomes").cloned().unwrap_or_default();
        }
    }
    let _ = go;
    sum.exit_code = if sum.failed_stage.is_some() || (sum.brake.tripped && !sum.brake.accepted) {
        2
    } else if sum.diff.missing_on_target + sum.diff.missing_on_source + sum.diff.differ > 0 {
        1
    } else {
        0
    };
    for st in &mut sum.stages {
        st.per_sec = rate_of(&dir, &st.stage, st.ms);
    }
    sum.finished_unix_ms = now_ms();
    // The report, the history line, the metrics, the notification.
    crate::summary::write_json(&dir, &sum)?;
    runs::append_history(
        &cfg.runs,
        &serde_json::to_value(&sum).map_err(|e| Error::json(cfg.runs.join(runs::HISTORY), e))?,
    )?;
    let history = runs::history(&cfg.runs)?;
    report::write(&dir, &sum, &history)?;
    if let Some(m) = &cfg.metrics {
        metrics::write(m, &cfg.path, &sum, &history)?;
    }
    let held = sum.brake.tripped && !sum.brake.accepted;
    run.record(&StageEvent {
        stage: "finish".into(),
        state: "done".into(),
        ms: None,
        exit: Some(sum.exit_code),
        note: held.then(|| runs::BRAKED.to_string()),
    })?;
    if sum.exit_code != 0 {
        if let Some(cmd) = &cfg.notify_cmd {
            notify(cmd, &dir.join("report.md"), opts.quiet);
        }
    }
    runs::prune(&cfg.runs, cfg.keep)?;
    Ok(sum)
}

/// Keys/s of a stage, from its summary.json.
fn rate_of(dir: &Path, stage: &str, ms: u64) -> Option<f64> {
    let (sub, keys): (&str, &[&str]) = match stage {
        "list-source" => ("source", &["records"]),
        "list-target" => ("target", &["keys_listed"]),
        "diff" => ("diff", &["source", "records_read"]),
        "repair" => ("repair", &["processed"]),
        "verify" => ("verify", &["keys_input"]),
        _ => return None,
    };
    let v = read_summary(&dir.join(sub)).ok()?;
    let n = num(&v, keys);
    (ms > 0 && n > 0).then(|| n as f64 * 1000.0 / ms as f64)
}

/// Tonight's missing keys against the previous run's: RUN/changes/{new,still,resolved}.txt.
fn changes(
    runs: &Path,
    dir: &Path,
    previous: Option<&serde_json::Value>,
    run: &mut Run,
    quiet: bool,
) -> Result<Changes> {
    let out = dir.join("changes");
    let tonight = dir.join("diff/missing-on-target.txt");
    let prev_run = previous.and_then(|p| p.get("run")).and_then(|r| r.as_str()).map(str::to_string);
    let prev = prev_run.as_ref().map(|r| runs.join(r).join("diff/missing-on-target.txt")).filter(|p| p.exists());
    std::fs::create_dir_all(&out).ctx(&out)?;
    let Some(prev) = prev else {
        // The first night (or last night's run was pruned): everything missing is new.
        std::fs::copy(&tonight, out.join("new.txt")).ctx(&tonight)?;
        for f in ["still.txt", "resolved.txt"] {
            std::fs::write(out.join(f), b"").ctx(out.join(f))?;
        }
        let n = std::fs::read(&tonight).ctx(&tonight)?.iter().filter(|b| **b == b'\n').count() as u64;
        return Ok(Changes { new: n, previous: prev_run, ..Default::default() });
    };
    let t0 = Instant::now();
    let s = job::diff(DiffConfig {
        source: Side::File(InputSpec::new(&prev, Format::Lines)),
        target: Side::File(InputSpec::new(&tonight, Format::Lines)),
        out_dir: out.clone(),
        compare: None,
        write_match: true,
        combined: false,
        term: b'\n',
        mem: 256 << 20,
        tmp_dir: std::env::temp_dir(),
        engine: Engine::Auto,
        quiet,
        merge_ranges: None,
    })?;
    for (from, to) in
        [("missing-on-source.txt", "new.txt"), ("match.txt", "still.txt"), ("missing-on-target.txt", "resolved.txt")]
    {
        std::fs::rename(out.join(from), out.join(to)).ctx(out.join(from))?;
    }
    run.record(&StageEvent {
        stage: "changes".into(),
        state: "done".into(),
        ms: Some(t0.elapsed().as_millis() as u64),
        exit: Some(s.exit_code()),
        note: None,
    })?;
    Ok(Changes { new: s.missing_on_source, still: s.matched, resolved: s.missing_on_target, previous: prev_run })
}

/// The run tonight is compared with: the last one in the history (not this run) whose listings can be
/// trusted. A run the brake held back, or whose listing or diff failed, is skipped: its missing set
/// may be a half-failed listing's, and a key lost since would hide in it as "still missing".
fn baseline<'h>(history: &'h [serde_json::Value], this: &str) -> Option<&'h serde_json::Value> {
    history.iter().rev().find(|h| {
        let str_at = |k: &str| h.get(k).and_then(|v| v.as_str());
        let flag = |k: &str| h.get("brake").and_then(|b| b.get(k)).and_then(|v| v.as_bool()).unwrap_or(false);
        let held = flag("tripped") && !flag("accepted");
        let unlisted = str_at("failed_stage").is_some_and(|f| ["list-", "diff"].iter().any(|p| f.starts_with(p)));
        str_at("run") != Some(this) && !held && !unlisted
    })
}

/// Should repair start? Too many keys missing, or a side listed far fewer keys than last night (a
/// half-failed listing must never trigger a mass copy).
fn brake(cfg: &Config, d: &DiffCounts, previous: Option<&serde_json::Value>, accept: bool) -> Brake {
    let mut reasons = Vec::new();
    let frac = d.missing_on_target as f64 / d.source_keys.max(1) as f64;
    if frac > cfg.max_missing_fraction {
        reasons.push(format!(
            "{} of {} source keys ({:.2}%) are missing on the target, above max-missing-fraction {:.2}%",
            d.missing_on_target,
            d.source_keys,
            frac * 100.0,
            cfg.max_missing_fraction * 100.0
        ));
    }
    if let Some(p) = previous {
        for (side, now, key) in [("source", d.source_keys, "source_keys"), ("target", d.target_keys, "target_keys")] {
            let before = p.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
            if before > 0 && (now as f64) < before as f64 * (1.0 - cfg.max_listing_drop) {
                reasons.push(format!(
                    "the {side} listed {now} keys against {before} in the previous run ({:.1}% fewer, above max-listing-drop {:.0}%)",
                    (before - now) as f64 * 100.0 / before as f64,
                    cfg.max_listing_drop * 100.0
                ));
            }
        }
    }
    Brake { tripped: !reasons.is_empty(), accepted: accept && !reasons.is_empty(), reasons }
}

/// Runs `--notify-cmd` through the shell with the report's path as its last argument; a failure is
/// reported, it does not change the run's outcome.
fn notify(cmd: &str, report: &Path, quiet: bool) {
    let full = format!("{cmd} {}", shell_quote(&s(report)));
    match Command::new("/bin/sh").arg("-c").arg(&full).status() {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("{TOOL}: --notify-cmd {full:?} exited with {st}"),
        Err(e) => eprintln!("{TOOL}: --notify-cmd {full:?}: {e}"),
    }
    let _ = quiet;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_skips_runs_whose_listings_are_not_trusted() {
        let h: Vec<serde_json::Value> = [
            r#"{"run":"n1","brake":{"tripped":false,"accepted":false}}"#,
            r#"{"run":"n2","brake":{"tripped":true,"accepted":true}}"#,
            r#"{"run":"n3","brake":{"tripped":false,"accepted":false},"failed_stage":"repair (exit status 2)"}"#,
            r#"{"run":"n4","brake":{"tripped":false,"accepted":false},"failed_stage":"list-target (exit status 2)"}"#,
            r#"{"run":"n5","brake":{"tripped":false,"accepted":false},"failed_stage":"diff (exit status 2)"}"#,
            r#"{"run":"n6","brake":{"tripped":true,"accepted":false}}"#,
            r#"{"run":"n7","brake":{"tripped":false,"accepted":false}}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let at = |this: &str, upto: usize| baseline(&h[..upto], this).map(|v| v["run"].as_str().unwrap().to_string());
        assert_eq!(at("n8", 7).as_deref(), Some("n7"));
        assert_eq!(at("n7", 7).as_deref(), Some("n3"), "a run is not its own baseline; held and unlisted are skipped");
        assert_eq!(at("n3", 2).as_deref(), Some("n2"), "a brake accepted after a look is trusted");
        assert_eq!(at("n1", 1), None);
    }
}
