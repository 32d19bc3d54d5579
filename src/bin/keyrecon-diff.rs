//! keyrecon-diff: which keys are missing on either side, and which differ.
use anyhow::Context;
use clap::Parser;
use keyrecon::cli::{main_with, report, FormatArgs, MemArgs};
use keyrecon::job::{self, DiffConfig, Engine, Side};
use std::path::PathBuf;

/// Compare two sets of keys and write what is missing on each side and what differs.
///
/// SOURCE and TARGET are each a chunk set (a directory written by keyrecon-sort or a lister), a key
/// file, or - for stdin. Key files need not be sorted and may hold duplicates.
///
/// Writes into --out DIR: missing-on-target.txt (in SOURCE only: repair these), missing-on-source.txt
/// (in TARGET only: orphans), differ.txt (in both, metadata differs), match.txt (--match),
/// combined.txt (--combined; `+ ` only in source, `- ` only in target, `* ` differ, `= ` match),
/// *.csv with metadata when the inputs carry it, rejects.csv, and summary.json.
/// Every key file is sorted in byte order (like LC_ALL=C sort) with one key per line.
///
/// Exit status: 0 no differences, 1 differences found, 2 trouble (an error, or inputs rejected).
///
/// Example:
///   keyrecon-diff cassandra-keys.txt s3-keys.txt --out diff/ && echo "in sync"
///   keyrecon-diff ks.chunks/ s3.chunks/ --out diff/ --compare size,mtime; keyrecon-repair --keys diff/missing-on-target.csv ...
#[derive(Parser, Debug)]
#[command(name = "keyrecon-diff", version, verbatim_doc_comment)]
#[command(mut_arg("mem", |a| a.default_value("1G").help("Memory budget for sorting/partitioning (e.g. 256M, 1G). Inputs larger than this spill to --tmp.")))]
struct Args {
    /// Source side: chunk set directory, key file, or - (stdin).
    source: PathBuf,
    /// Target side: chunk set directory, key file, or - (stdin).
    target: PathBuf,
    /// Output directory (created if missing; outcome files in it are replaced).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Metadata fields to compare for keys on both sides: any of size, etag, mtime (comma separated).
    /// Default: size when both sides carry it. mtime "differs" when the source was written after the target.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    compare: Option<Vec<String>>,
    /// Also write match.txt with the keys that are on both sides and equal.
    #[arg(long = "match")]
    write_match: bool,
    /// Also write combined.txt with every key and a marker (rclone check's format).
    #[arg(long)]
    combined: bool,
    #[command(flatten)]
    sort: MemArgs,
    /// Engine: auto (merge sorted chunk sets, hash-partition anything else), hash, or sort.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// No progress bar, no summary paragraph on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    fmt: FormatArgs,
}

fn main() {
    main_with("keyrecon-diff", || {
        let a = Args::parse();
        let spec = |p: PathBuf| a.fmt.spec(p).map_err(anyhow::Error::msg);
        let source = Side::open(spec(a.source.clone())?).context("source")?;
        let target = Side::open(spec(a.target.clone())?).context("target")?;
        let cfg = DiffConfig {
            source,
            target,
            out_dir: a.out.clone(),
            compare: a.compare.clone(),
            write_match: a.write_match,
            combined: a.combined,
            term: a.fmt.terminator(),
            mem: a.sort.mem,
            tmp_dir: a.sort.tmp_dir(),
            engine: a.engine,
            quiet: a.quiet,
        };
        Ok(report("keyrecon-diff", &job::diff(cfg)?, a.quiet))
    })
}
