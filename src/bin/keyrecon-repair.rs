//! keyrecon-repair: copy the blobs of missing keys from Cassandra to S3, resumably, gently, exactly.
use clap::Parser;
use keyrecon::cli::{main_with, parse_size, report, BlobArgs, BucketArgs, KeysArgs, LoadArgs, MemArgs, QueueArgs};
use keyrecon::repair::{self, RepairConfig, TOOL};
use std::path::PathBuf;

/// Copy the blobs of keys missing in S3 from Cassandra to S3, and record what happened to every key.
///
/// For each key: fetch the blob with `SELECT <blob-column> FROM <ks.table> WHERE <key-column> = ?`
/// (prepared once per table) from --source, then each --fallback in order; HEAD the target (an object
/// that arrived since the listing is recorded as `exists`, or `differ` when its size is not the blob's,
/// and is NOT overwritten unless --overwrite); PUT it from memory with Content-MD5 (multipart above
/// --multipart-threshold, Content-MD5 per part) and a Content-Type sniffed from the bytes for
/// jpeg/png/gif/webp unless --content-type.
///
/// Composite partition keys: --key-column a,b (every partition key column, in order; checked against
/// each table's schema) and the --key-template the listing used. The Cassandra key is parsed back into
/// its columns and fetched with `WHERE a = ? AND b = ?`; a key that does not parse is failed (stage
/// key) with the reason. In a table with clustering columns, --blob-column must be a static column.
///
/// Input (--keys FILE or - for stdin): keyrecon-diff's missing-on-target.csv (its `key` is the S3 key,
/// its `origin` the Cassandra key when a --key-map mapped it), a CSV with a `key` column (e.g. an
/// ok.csv), or one key per line (-z: NUL-terminated), e.g. missing-on-target.txt when the listings
/// carried no metadata. The S3 key is --prefix + key. Rows that cannot be used go to rejects.csv.
///
/// Manners: at most --concurrency keys in flight; the limit is halved on S3 503 SlowDown, timeouts,
/// Cassandra ReadTimeout/Overloaded and latency above --latency-target, and grows back by one when
/// things are fast (each change is logged). --rate and --bandwidth cap objects/s and bytes/s. Failed
/// requests are retried with exponential backoff and jitter, --retries times.
///
/// Outcomes in --out DIR: ok.csv, not-found.csv (in no table), failed.csv (with the last error),
/// exists.csv (exists / differ), summary.json (counts, bytes, rates, timings, retries, throttling),
/// journal.jsonl. After a crash or kill, rerun the same command with --resume: keys with a final
/// outcome are skipped, failed ones are tried again, nothing is copied twice or lost.
///
/// Memory stays flat whatever the number of keys: the keys (worked on in byte order, each once) and
/// the journal go through an external sort within --mem, spilling to --tmp; beyond that, memory is
/// about --concurrency x the object size.
///
/// Exit status: 0 every key ok or exists; 1 some not found or existing with another size (differ);
/// 2 some failed, input rows were rejected, or the run could not start.
///
/// Fallbacks on another cluster: --cluster NAME=HOST:PORT,... names it and --fallback NAME:KS.TABLE
/// reads a table there. Lookup order: --source, the plain --fallback tables, then each --cluster's
/// tables (clusters in --cluster order). Each cluster has its own session, its own concurrency limit
/// (--cluster-concurrency NAME=N) and retries (--cluster-retries NAME=N); its DC, TLS CA, consistency
/// and timeout are --cluster-local-dc, --cluster-tls-ca, --cluster-consistency,
/// --cluster-request-timeout (NAME=VALUE each). A fallback cluster that cannot be reached does not stop
/// the run: the keys that need it fail (stage fetch) with the reason; --resume retries them. ok.csv's
/// table column says NAME:KS.TABLE for a blob from there.
///
/// Credentials: Cassandra from KEYRECON_CASSANDRA_USERNAME / KEYRECON_CASSANDRA_PASSWORD (or flags),
/// a fallback cluster's from KEYRECON_CASSANDRA_<NAME>_USERNAME / _PASSWORD (NAME in capitals);
/// S3 from the AWS chain (environment, ~/.aws, --profile, SSO, instance role). TLS: --tls-ca PEM.
///
/// Example (list both sides, diff, repair; keyrecon-diff exits 1 when it found keys to repair, hence
/// `test $? -le 1` rather than `&&`):
///   keyrecon-list-cassandra --contact-points 10.0.0.1:9042 --keyspace media --table objects \
///     --key-column id --size-of data --key-map @keymap.rules --out cass.chunks
///   keyrecon-list-s3 --bucket photos --out s3.chunks
///   keyrecon-diff cass.chunks s3.chunks --out diff/ ; test $? -le 1 &&
///   keyrecon-repair --keys diff/missing-on-target.csv --contact-points 10.0.0.1:9042 \
///     --source media.objects --fallback media_old.objects --key-column id --blob-column data \
///     --bucket photos --concurrency 32 --out repair/
///   # dry run first: add --dry-run (prints what would be copied, writes nothing to S3)
///
///   # blobs the cluster lacks from the old cluster over TLS (its credentials in
///   # KEYRECON_CASSANDRA_OLD_USERNAME / _PASSWORD):
///   keyrecon-repair --keys diff/missing-on-target.csv --contact-points 10.0.0.1:9042 \
///     --source media.objects --cluster old=10.8.0.1:9042,10.8.0.2:9042 --cluster-tls-ca old=old-ca.pem \
///     --fallback old:media_old.objects --key-column id --blob-column data --bucket photos --out repair/
///
///   # a table keyed by (service, id), listed with --key-template '{service}:{id}' (PHOTO:12345):
///   keyrecon-repair --keys diff/missing-on-target.csv --contact-points 10.0.0.1:9042 \
///     --source media.by_service --key-column service,id --key-template '{service}:{id}' \
///     --blob-column data --bucket photos --out repair/
///
/// On many machines: put the keys into a Redis Streams queue once, and run the same repair with
/// --queue instead of --keys on every machine; each key is acknowledged only after its final
/// outcome is in the machine's journal, a dead machine's keys are taken over after --claim-idle, and
/// one report covers the fleet (see keyrecon-queue --help and docs/fleet.md):
///   keyrecon-queue enqueue --keys diff/missing-on-target.csv redis://10.0.0.9:6379/repair-1202
///   keyrecon-repair --queue redis://10.0.0.9:6379/repair-1202 --consumer "$(hostname)" \
///     --contact-points 10.0.0.1:9042 --source media.objects --key-column id --blob-column data \
///     --bucket photos --out repair/              # on each machine; rerun as is after a crash
///   keyrecon-queue report redis://10.0.0.9:6379/repair-1202 --out fleet-report/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-repair", version, verbatim_doc_comment)]
#[command(mut_arg("format", |a| a.default_value("auto")))]
#[command(mut_arg("keys", |a| a.required(false)))]
#[command(mut_arg("source", |a| a.required(true)))]
#[command(mut_arg("key_column", |a| a.required(true)))]
#[command(mut_arg("bucket", |a| a.help("Target bucket")))]
#[command(mut_arg("concurrency", |a| a.help("Keys in flight at most (each holds its blob in memory: memory ~ concurrency x object size)")))]
#[command(mut_arg("rate", |a| a.value_name("OBJ/S").help("Cap on objects per second")))]
#[command(mut_arg("mem", |a| a.help("Memory budget of each sort, the keys' and the journal's (e.g. 256M, 1G). More than this spills to --tmp.")))]
struct Args {
    #[command(flatten)]
    keys: KeysArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// Directory for the outcome files, summary.json and the journal.
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Continue an interrupted repair in --out (skips keys the journal has a final outcome for).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start over in an --out that holds an earlier repair's journal.
    #[arg(long)]
    force: bool,

    #[command(flatten)]
    blobs: BlobArgs,
    #[command(flatten)]
    target: BucketArgs,
    /// Replace objects that already exist (no HEAD re-check, no If-None-Match).
    #[arg(long)]
    overwrite: bool,
    /// HEAD each key before writing, so keys that arrived since the listing are recorded as `exists`
    /// instead of overwritten (default: on).
    #[arg(long, overrides_with = "no_recheck")]
    recheck: bool,
    /// Skip the HEAD before PUT (faster; relies on If-None-Match, which Garage ignores).
    #[arg(long, overrides_with = "recheck")]
    no_recheck: bool,
    /// Print what would be copied (fetching blobs, HEADing targets), write nothing to S3 and no journal.
    #[arg(long)]
    dry_run: bool,
    /// Content-Type for every object (default: image types sniffed from the bytes, else none).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// Objects larger than this are uploaded in parts.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    multipart_threshold: usize,
    /// Part size of multipart uploads.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    part_size: usize,

    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    sort: MemArgs,
    /// Cap on bytes per second uploaded (K/M/G suffixes).
    #[arg(long, value_name = "BYTES/S", value_parser = parse_size)]
    bandwidth: Option<usize>,
    /// No progress, no throttle log, no summary line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() {
    main_with(TOOL, || {
        let a = Args::parse();
        a.load.check()?;
        if a.bandwidth == Some(0) {
            anyhow::bail!("--bandwidth must be positive");
        }
        if a.part_size < 1 {
            anyhow::bail!("--part-size must be at least 1 byte");
        }
        let cfg = RepairConfig {
            keys: a.queue.key_source(&a.keys, TOOL, a.load.concurrency, a.target.prefix.as_bytes(), a.quiet)?,
            source: a.blobs.source()?.expect("--source is required"),
            s3: a.target.s3.client_options()?,
            bucket: a.target.bucket.clone(),
            prefix: a.target.prefix.clone().into_bytes(),
            concurrency: a.load.concurrency,
            rate: a.load.rate,
            bandwidth: a.bandwidth.map(|b| b as f64),
            latency_target: a.load.latency_target(),
            retries: a.load.retries,
            overwrite: a.overwrite,
            dry_run: a.dry_run,
            recheck: !a.no_recheck,
            content_type: a.content_type.clone(),
            multipart_threshold: a.multipart_threshold,
            part_size: a.part_size,
            out: a.out.clone(),
            resume: a.resume,
            force: a.force,
            mem: a.sort.mem,
            tmp_dir: a.sort.tmp_dir(),
            quiet: a.quiet,
        };
        Ok(report(TOOL, &repair::run(cfg)?, a.quiet))
    })
}
