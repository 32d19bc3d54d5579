//! keyrecon-queue: the fleet's shared repair queue on Redis Streams — fill it, watch it, report on it.
//! The consumers are keyrecon-repair and keyrecon-verify with `--queue`.
use clap::{Parser, Subcommand};
use keyrecon::cli::{main_with, parse_secs, report, KeysArgs, MemArgs};
use keyrecon::queue::produce::{self, EnqueueConfig};
use keyrecon::queue::{report as fleet, status, QueueUrl};
use std::path::PathBuf;
use std::time::Duration;

const TOOL: &str = "keyrecon-queue";

/// Run one repair (or verify) on many machines: put the keys of a diff into a Redis Streams queue,
/// start `keyrecon-repair --queue URL --consumer NAME` on every machine, watch the queue, and render one
/// report for the whole fleet.
///
/// A queue is a URL: redis://HOST:PORT[/DB]/NAME (rediss:// for TLS; credentials as
/// redis://user:password@HOST:PORT/NAME or from the environment of your secret store). Redis must run
/// with `appendonly yes` (see docs/fleet.md): a Redis that restarts without its data loses the queue,
/// and the consumers stop with exit status 2 rather than report "done".
///
/// Every key ends with exactly one outcome in the report, however often it was delivered: a consumer
/// that dies leaves its keys pending, and a live one claims them after --claim-idle; a key that keeps
/// failing is given up after --max-deliveries (failed.csv, and the dead-letter stream).
///
/// Example (a diff's missing keys repaired by three machines):
///   keyrecon-queue enqueue --keys diff/missing-on-target.csv redis://10.0.0.9:6379/repair-2026-12-02
///   keyrecon-repair --queue redis://10.0.0.9:6379/repair-2026-12-02 --consumer "$(hostname)" \
///     --contact-points 10.0.0.1:9042 --source media.objects --key-column id --blob-column data \
///     --bucket images --out repair/                 # on each machine
///   keyrecon-queue status redis://10.0.0.9:6379/repair-2026-12-02
///   keyrecon-queue report redis://10.0.0.9:6379/repair-2026-12-02 --out fleet-report/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-queue", version, verbatim_doc_comment)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// Seconds to keep retrying while Redis is unreachable (a restart, a network blip) before giving up.
    #[arg(long, global = true, default_value = "300", value_name = "SECS", value_parser = parse_secs)]
    redis_timeout: Duration,
    /// No progress and no summary paragraph on stderr.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put the keys of a key input (missing-on-target.csv with origin and size, a key file, or -) into the
    /// queue, in batches. Rerun after a kill, it continues where it stopped: no key is enqueued twice.
    #[command(verbatim_doc_comment)]
    #[command(mut_arg("format", |a| a.default_value("auto")))]
    Enqueue {
        /// The queue: redis://HOST:PORT[/DB]/NAME.
        #[arg(value_name = "URL", value_parser = parse_url)]
        queue: QueueUrl,
        #[command(flatten)]
        keys: KeysArgs,
        /// Keys per MULTI.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// The queue holds another input's keys: delete it first.
        #[arg(long)]
        force: bool,
        /// Where input rows that cannot be keys go (with the reason).
        #[arg(long, value_name = "FILE", default_value = "rejects.csv")]
        rejects: PathBuf,
    },
    /// Where a queue is: keys done, waiting and pending, outcomes, each consumer's pending keys and rate,
    /// the total rate and an ETA. --json for monitors; --watch to repeat.
    Status {
        #[arg(value_name = "URL", value_parser = parse_url)]
        queue: QueueUrl,
        /// Print JSON instead of the paragraph.
        #[arg(long)]
        json: bool,
        /// Print again every SECS seconds (until the queue is drained).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        watch: Option<Duration>,
    },
    /// The fleet's outcome files, every key exactly once (its newest final outcome, whatever was
    /// redelivered), and summary.json: the same files keyrecon-repair (or -verify) writes for one machine.
    /// Exit status: 0 all ok; 1 some not found or different; 2 some failed, or the queue is not drained.
    Report {
        #[arg(value_name = "URL", value_parser = parse_url)]
        queue: QueueUrl,
        /// Directory for the outcome files and summary.json.
        #[arg(long, short = 'o', value_name = "DIR")]
        out: PathBuf,
        /// The outcomes are sorted by key within --mem, spilling to --tmp beyond it.
        #[command(flatten)]
        mem: MemArgs,
    },
}

fn parse_url(s: &str) -> Result<QueueUrl, String> {
    QueueUrl::parse(s).map_err(|e| e.to_string())
}

fn main() {
    main_with(TOOL, || {
        let a = Args::parse();
        match a.cmd {
            Cmd::Enqueue { queue, keys, batch, force, rejects } => {
                let cfg = EnqueueConfig {
                    url: queue,
                    keys: keys.spec()?,
                    batch: batch.max(1),
                    force,
                    rejects: Some(rejects),
                    redis_timeout: a.redis_timeout,
                    quiet: a.quiet,
                };
                Ok(report(TOOL, &produce::enqueue(cfg)?, a.quiet))
            }
            Cmd::Status { queue, json, watch } => {
                let rt = keyrecon::rt::runtime()?;
                loop {
                    let s = rt.block_on(status::status(&queue, a.redis_timeout))?;
                    if json {
                        println!("{}", serde_json::to_string(&s)?);
                    } else {
                        println!("{}", keyrecon::summary::Summary::paragraph(&s));
                    }
                    match watch {
                        Some(every) if !s.drained => std::thread::sleep(every),
                        _ => return Ok(0),
                    }
                }
            }
            Cmd::Report { queue, out, mem } => {
                let cfg = fleet::ReportConfig {
                    url: queue,
                    out,
                    mem: mem.mem,
                    tmp: mem.tmp_dir(),
                    redis_timeout: a.redis_timeout,
                    quiet: a.quiet,
                };
                Ok(report(TOOL, &fleet::report(cfg, keyrecon::repair::fleet_render)?, a.quiet))
            }
        }
    })
}
