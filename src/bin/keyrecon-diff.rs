//! keyrecon-diff: which keys are missing on either side, and which differ.
use anyhow::Context;
use clap::Parser;
use keyrecon::cli::{main_with, report, FormatArgs, MemArgs};
use keyrecon::input::InputSpec;
use keyrecon::job::{self, DiffConfig, Engine, Field, Side};
use std::path::PathBuf;

/// Compare two sets of keys and write what is missing on each side and what differs.
///
/// SOURCE and TARGET are each a chunk set (a directory written by keyrecon-sort or a lister), a key
/// file, or - for stdin. Key files need not be sorted and may hold duplicates.
///
/// A side may be several chunk sets: give it with --source DIR / --target DIR, repeated, instead of
/// its positional (e.g. the shards of a listing, one per machine: keyrecon-list-cassandra and
/// keyrecon-list-s3 --shard I/N). They are merged into one sorted stream, duplicates dropped. Before
/// anything is read, shards are checked: all N shards of one listing (same table or bucket and prefix,
/// same filters, same N), each exactly once; otherwise the diff stops with exit status 2 and says which
/// shard is missing or doubled, or which set lists something else (a missing shard would otherwise
/// show its keys as missing). Chunk sets that are not shards (keyrecon-sort outputs) merge unchecked.
///
/// Writes into --out DIR: missing-on-target.txt (in SOURCE only: repair these), missing-on-source.txt
/// (in TARGET only: orphans), differ.txt (in both, metadata differs), match.txt (--match),
/// combined.txt (--combined; `+ ` only in source, `- ` only in target, `* ` differ, `= ` match),
/// *.csv with metadata when the inputs carry it, rejects.csv, and summary.json.
/// Every key file is sorted in byte order (like LC_ALL=C sort) with one key per line.
///
/// Two chunk sets are walked in key ranges on every core (cut where chunks start; RAYON_NUM_THREADS=N
/// to use fewer), each range into a part of --out that is appended in order: the files are the same as
/// one walk's. Key files are partitioned by hash on every core.
///
/// Exit status: 0 no differences, 1 differences found, 2 trouble (an error, or inputs rejected).
///
/// Example:
///   keyrecon-diff cassandra-keys.txt s3-keys.txt --out diff/ && echo "in sync"
///   keyrecon-diff ks.chunks/ s3.chunks/ --out diff/ --compare size,mtime; keyrecon-repair --keys diff/missing-on-target.csv ...
///
///   # a bucket listed by three machines (keyrecon-list-s3 --shard 1/3, 2/3, 3/3), diffed as one:
///   keyrecon-diff cassandra.chunks \
///     --target s3-1.chunks --target s3-2.chunks --target s3-3.chunks --out diff/
///   # both sides sharded (keyrecon-list-cassandra --shard 1/2, 2/2):
///   keyrecon-diff --source cass-1.chunks --source cass-2.chunks \
///     --target s3-1.chunks --target s3-2.chunks --target s3-3.chunks --out diff/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-diff", version, verbatim_doc_comment)]
#[command(mut_arg("mem", |a| a.default_value("1G").help("Memory budget for sorting/partitioning (e.g. 256M, 1G). Inputs larger than this spill to --tmp.")))]
struct Args {
    /// Source side: chunk set directory, key file, or - (stdin). Positionals go to the sides not given
    /// with --source/--target, in order: with --source flags, the one positional is the target.
    #[arg(value_name = "SOURCE")]
    first: Option<PathBuf>,
    /// Target side: chunk set directory, key file, or - (stdin).
    #[arg(value_name = "TARGET")]
    second: Option<PathBuf>,
    /// A chunk set of the source side; repeat for several (e.g. the shards of a listing).
    #[arg(long, value_name = "DIR")]
    source: Vec<PathBuf>,
    /// A chunk set of the target side; repeat for several (e.g. the shards of a listing).
    #[arg(long, value_name = "DIR")]
    target: Vec<PathBuf>,
    /// Output directory (created if missing; outcome files in it are replaced).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Metadata fields to compare for keys on both sides (comma separated). Default: size when both
    /// sides carry it. mtime "differs" when the source was written after the target.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FIELDS")]
    compare: Option<Vec<Field>>,
    /// Diff a listing that did not complete (token ranges that failed after their retries): the keys of
    /// those ranges then show as missing on that side. Refused by default.
    #[arg(long)]
    allow_incomplete: bool,
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
        let (sources, targets) = sides(&a)?;
        let specs = |ps: Vec<PathBuf>| -> anyhow::Result<Vec<InputSpec>> {
            ps.into_iter().map(|p| a.fmt.spec(p).map_err(anyhow::Error::msg)).collect()
        };
        let source = Side::open_all(specs(sources)?).context("source")?;
        let target = Side::open_all(specs(targets)?).context("target")?;
        if !a.allow_incomplete {
            source.check_complete().context("source")?;
            target.check_complete().context("target")?;
        }
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
            merge_ranges: None,
        };
        Ok(report("keyrecon-diff", &job::diff(cfg)?, a.quiet))
    })
}

/// The inputs of each side: its --source/--target flags, or else the next positional.
fn sides(a: &Args) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut positionals = a.first.iter().chain(&a.second).cloned();
    let mut side = |flags: &[PathBuf], name: &str, flag: &str| -> anyhow::Result<Vec<PathBuf>> {
        if !flags.is_empty() {
            return Ok(flags.to_vec());
        }
        match positionals.next() {
            Some(p) => Ok(vec![p]),
            None => anyhow::bail!("no {name}: give SOURCE TARGET, or --{flag} DIR (repeatable) for that side"),
        }
    };
    let sources = side(&a.source, "SOURCE", "source")?;
    let targets = side(&a.target, "TARGET", "target")?;
    if let Some(extra) = positionals.next() {
        anyhow::bail!(
            "{}: one input too many (a side given with --source or --target takes no positional)",
            extra.display()
        );
    }
    Ok((sources, targets))
}
