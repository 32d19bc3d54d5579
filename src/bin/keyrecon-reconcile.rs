//! keyrecon-reconcile: a nightly reconciliation as one job (recon.toml -> the pipeline of binaries ->
//! run directory, history, report, metrics). Flags -> `keyrecon::nightly::run` -> exit code.
use clap::Parser;
use keyrecon::cli::{main_with, report};
use keyrecon::nightly::{self, config::Config, Options, TOOL};
use std::path::PathBuf;

/// Reconcile a Cassandra table with an S3 bucket every night: list both, diff, compare with the
/// previous run (new / still / resolved missing keys), brake before a mass repair, repair and verify
/// as configured, and leave a report (report.html, report.md), a history and metrics.
///
/// The config (recon.toml) holds, per stage, the flags of the binary that runs it under their own
/// names: [source] keyrecon-list-cassandra, [target] keyrecon-list-s3, [diff] keyrecon-diff, [repair]
/// keyrecon-repair (mode = off | dry-run | on), [verify] keyrecon-verify (mode = off | head | deep),
/// plus [brake] (max-missing-fraction, max-listing-drop) and [report] (notify-cmd, metrics).
/// --print-commands shows the pipeline; docs/nightly.md has a full example.
///
/// Each run gets RUNS/<UTC time>/ with every stage's outputs, summary.json, report.html, report.md;
/// RUNS/history.jsonl gets a line. A lock keeps two runs from overlapping (the second exits 2).
/// A killed run continues with --resume from its first unfinished stage.
///
/// The brake: when more than max-missing-fraction (default 1%) of the source's keys are missing, or
/// a side listed more than max-listing-drop (default 10%) fewer keys than the previous run, repair
/// does not start and the run exits 2 with the reason (a half-failed listing must never trigger a
/// mass copy). Look, then continue that run with --resume --accept-large (repair of what you looked
/// at, without listing again), or start a new run with --accept-large.
///
/// New / still / resolved compare tonight's missing keys with the last run whose listings are
/// trusted: a run the brake held, or whose listing or diff failed, is skipped.
///
/// Exit status: 0 in sync, 1 differences found (repaired as configured), 2 trouble (a stage failed,
/// or the brake held). The notify-cmd of [report] runs (with report.md's path) whenever the status is not 0.
///
/// Example (crontab):
///   0 2 * * *  keyrecon-reconcile --config /etc/keyrecon/media-objects.toml -q
#[derive(Parser, Debug)]
#[command(name = "keyrecon-reconcile", version, verbatim_doc_comment)]
struct Args {
    /// The run's settings (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Continue the last run from its first unfinished stage.
    #[arg(long)]
    resume: bool,
    /// Repair even when the brake would hold it back (after you looked at the numbers); with --resume,
    /// continues the last run if it stopped at the brake.
    #[arg(long)]
    accept_large: bool,
    /// Print the commands a run executes, and exit.
    #[arg(long)]
    print_commands: bool,
    /// Directory of the keyrecon binaries (default: the one this binary is in).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// No stage lines and no progress on stderr (the stages run with --quiet); the summary paragraph is
    /// still printed when the run is in trouble.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() {
    main_with(TOOL, || {
        let a = Args::parse();
        let cfg = Config::load(&a.config)?;
        if a.print_commands {
            for st in nightly::commands(&cfg, &cfg.runs.join("RUN")) {
                println!("{}", st.shell());
            }
            return Ok(0);
        }
        let opts = Options { resume: a.resume, accept_large: a.accept_large, quiet: a.quiet, bin_dir: a.bin_dir };
        Ok(report(TOOL, &nightly::run(&cfg, &opts)?, a.quiet))
    })
}
