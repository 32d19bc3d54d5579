//! keyrecon-list-s3: list an S3 bucket (or read its S3 Inventory) into a chunk set for keyrecon-diff.
//! Flags -> config -> `keyrecon::sources::s3::run` -> summary and exit code (0 complete, 2 trouble or
//! unfinished ranges).

use anyhow::{bail, Result};
use clap::Parser;
use keyrecon::chunk::Shard;
use keyrecon::cli::{main_with, parse_size, report, S3Args};
use keyrecon::sources::s3::{
    self,
    fetch::RetryPolicy,
    inventory::InventoryConfig,
    list::{ListConfig, Sink},
    Job, Window,
};
use std::path::PathBuf;
use std::time::Duration;

/// List an S3 bucket with many parallel streams over disjoint key ranges (no dependence on prefixes),
/// or read an S3 Inventory report, into a chunk set that keyrecon-diff reads directly.
///
/// How it lists: the key space is cut into ranges, one ListObjectsV2 stream each (--concurrency); when a
/// stream finishes, the widest range still being listed is split and the idle stream takes its upper
/// half, so uniform hex keys, deep date paths and one giant prefix all keep every stream busy. Failed
/// pages are retried with backoff and jitter; 503 SlowDown slows every stream down. A page that still
/// fails is reported and leaves its range unfinished: nothing is skipped silently. Short or empty pages
/// that are still truncated (Ceph returns them) are followed; an empty one that hands back the token it
/// was asked with is retried like a failed page.
///
/// Sharding: with --shard I/N, N machines list one bucket together. The key space under --prefix (and
/// inside --start-after/--end-before) is cut into N contiguous key ranges at boundaries every machine
/// computes alike from those flags and N (evenly spaced over printable ASCII after the prefix; keys
/// beyond '~' fall in the last shard); shard I lists range I only, with all its streams. Each machine
/// writes its own chunk set; keyrecon-diff takes all N (--target, repeated), checks that each shard is
/// there exactly once and that all list the same bucket, prefix and filters, and merges them. A resume
/// must use the same --shard. Not with --inventory (an inventory report is files read by one machine,
/// not a listing to share out).
///
/// Credentials and region follow the AWS conventions (environment, ~/.aws/config and credentials,
/// --profile, SSO, instance roles). For S3-compatible servers pass --endpoint-url (path-style then).
///
/// Output (--out DIR): chunk-*.krc + manifest.json (written last: no manifest = not finished),
/// summary.json (keys, pages, retries, slow-downs, errors, ranges, keys/s, peak RSS), and while a listing
/// is unfinished checkpoint.json (or inventory-work/ for an inventory). Progress on stderr: keys, keys/s,
/// ranges done / total and active, retries, errors.
///
/// Exit codes: 0 complete; 2 trouble, including pages that failed after all retries (their ranges stay
/// unfinished: rerun the same command with --resume to continue them).
///
/// Examples:
///   keyrecon-list-s3 --bucket photos --concurrency 32 --out photos.chunks
///   keyrecon-list-s3 --bucket photos --out photos.chunks --resume          # after a failure or kill
///   keyrecon-list-s3 --bucket photos --prefix 2024/ --max-age 30d --out - | wc -l
///   keyrecon-list-s3 --bucket photos --modified-before 2024-05-01T00:00:00Z --out before-dual-write.chunks
///   keyrecon-list-s3 --endpoint-url http://127.0.0.1:3900 --region garage --bucket b --out b.chunks
///   keyrecon-list-s3 --inventory s3://inv/photos/all/2024-05-01T01-00Z/manifest.json --out photos.chunks
///   keyrecon-diff cassandra.chunks photos.chunks --out diff/
///
///   # three machines, one shard each, then one diff of Cassandra against the three shards:
///   keyrecon-list-s3 --bucket photos --shard 1/3 --out photos-1.chunks     # machine 1
///   keyrecon-list-s3 --bucket photos --shard 2/3 --out photos-2.chunks     # machine 2
///   keyrecon-list-s3 --bucket photos --shard 3/3 --out photos-3.chunks     # machine 3
///   keyrecon-diff cassandra.chunks --target photos-1.chunks --target photos-2.chunks \
///     --target photos-3.chunks --out diff/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-list-s3", version, verbatim_doc_comment)]
// A LIST page of 1000 keys may take longer than repair's and verify's single-key requests; the flag was
// --request-timeout here before the S3 flags were shared (where --request-timeout is Cassandra's).
#[command(mut_arg("s3_timeout", |a| a.default_value("120").alias("request-timeout")))]
struct Args {
    /// Bucket to list (not needed with a local --inventory).
    #[arg(long)]
    bucket: Option<String>,
    /// Only keys starting with this prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Output: a chunk set directory, or `-` for plain keys on stdout.
    #[arg(long, short)]
    out: PathBuf,
    /// With --out -: NUL-terminate keys instead of newline (keys may contain newlines).
    #[arg(short = 'z', long = "null-data")]
    null: bool,
    /// List streams at once (ranges are split dynamically to keep them all busy); with --inventory,
    /// data files read at once.
    #[arg(long, short = 'j', default_value_t = 16)]
    concurrency: usize,
    /// Keys per ListObjectsV2 request (S3 caps it at 1000).
    #[arg(long, default_value_t = 1000)]
    page_size: i32,
    /// Only keys after this one (exclusive).
    #[arg(long, value_name = "KEY")]
    start_after: Option<String>,
    /// Only keys before this one (exclusive).
    #[arg(long, value_name = "KEY")]
    end_before: Option<String>,
    /// Only objects modified at most this long ago (e.g. 7d, 36h).
    #[arg(long, value_name = "AGE", value_parser = s3::parse_age)]
    max_age: Option<Duration>,
    /// Only objects modified at least this long ago (e.g. 1h).
    #[arg(long, value_name = "AGE", value_parser = s3::parse_age)]
    min_age: Option<Duration>,
    /// Only objects modified at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = s3::parse_time_us)]
    modified_since: Option<i64>,
    /// Only objects modified at or before this time (RFC 3339), e.g. when dual writes began.
    #[arg(long, value_name = "TIME", value_parser = s3::parse_time_us)]
    modified_before: Option<i64>,
    /// List only shard I of N (1-based, e.g. 2/3): the I-th of N key ranges of the listing, so N machines
    /// can list one bucket; diff the N chunk sets together (keyrecon-diff --target, repeated).
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Read this S3 Inventory manifest.json (local path or s3://bucket/key) instead of listing.
    #[arg(long, value_name = "MANIFEST")]
    inventory: Option<String>,
    #[command(flatten)]
    s3: S3Args,
    /// Further attempts of a failed page before it counts as an error (with --inventory: further reads
    /// of a data file whose transfer failed or whose size or MD5 differs from the manifest's).
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// First retry backoff in milliseconds (doubles per retry, random jitter, capped at 20 s).
    #[arg(long, default_value_t = 100)]
    retry_base_ms: u64,
    /// Records per chunk file (also how much a resume may relist per range).
    #[arg(long, default_value_t = 1_000_000)]
    chunk_keys: u64,
    /// Continue an interrupted run in --out: a listing relists only its unfinished ranges, an
    /// inventory read skips the data files it had finished. Use the same other flags as the first run.
    #[arg(long)]
    resume: bool,
    /// Replace an existing chunk set or unfinished listing in --out.
    #[arg(long)]
    force: bool,
    /// Memory for sorting an inventory (e.g. 1G), shared by the data files read at once (--concurrency).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    mem: usize,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

fn main() {
    main_with("keyrecon-list-s3", || {
        let a = Args::parse();
        let quiet = a.quiet;
        Ok(report("keyrecon-list-s3", &s3::run(&a.s3.client_options()?, job(a)?)?, quiet))
    });
}

/// The flags as a job: a listing into a sink, or an inventory read.
fn job(a: Args) -> Result<Job> {
    let window = Window {
        max_age: a.max_age,
        min_age: a.min_age,
        modified_since: a.modified_since,
        modified_before: a.modified_before,
    };
    let lines = a.out.as_os_str() == "-";
    if let Some(manifest) = a.inventory {
        if let Some(s) = a.shard {
            bail!(
                "--shard {s} with --inventory: sharding splits the ListObjectsV2 requests of a listing among \
                 machines; an inventory report is a set of files S3 already wrote, read whole by one machine \
                 (drop --shard, or list the bucket with --shard instead of reading its inventory)"
            );
        }
        if lines {
            bail!("--inventory writes a chunk set: --out must be a directory, not -");
        }
        let cfg = InventoryConfig {
            manifest,
            prefix: a.prefix,
            start_after: a.start_after,
            end_before: a.end_before,
            cutoff: window.cutoff(s3::now_us()),
            concurrency: a.concurrency,
            mem: a.mem,
            chunk_bytes: 256 << 20,
            retries: a.retries,
            quiet: a.quiet,
        };
        return Ok(Job::Inventory { cfg, out: a.out, force: a.force, resume: a.resume });
    }
    let Some(bucket) = a.bucket else { bail!("--bucket is required (or --inventory)") };
    if lines && a.resume {
        bail!("--resume needs a chunk-set --out (lines output cannot be resumed)");
    }
    let cfg = ListConfig {
        bucket,
        prefix: a.prefix,
        start_after: a.start_after,
        end_before: a.end_before,
        concurrency: a.concurrency,
        page_size: a.page_size.clamp(1, 1000),
        window,
        shard: a.shard,
        retry: RetryPolicy {
            retries: a.retries,
            base: Duration::from_millis(a.retry_base_ms),
            cap: Duration::from_secs(20),
        },
        chunk_keys: a.chunk_keys.max(1),
        quiet: a.quiet,
    };
    let sink = if lines {
        Sink::Lines { terminator: if a.null { 0 } else { b'\n' } }
    } else {
        Sink::ChunkSet { dir: a.out, force: a.force, resume: a.resume }
    };
    Ok(Job::List { cfg, sink })
}
