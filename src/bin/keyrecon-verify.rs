//! keyrecon-verify: check that keys are in S3 and, with --deep, that each object holds its Cassandra blob.
use clap::Parser;
use keyrecon::cli::{main_with, parse_size, report, BlobArgs, BucketArgs, KeysArgs, LoadArgs, MemArgs, QueueArgs};
use keyrecon::verify::{self, VerifyConfig, TOOL};
use std::path::PathBuf;

/// Check that keys exist in S3 (HEAD each) and, with --deep, that each object is its Cassandra blob.
///
/// --deep fetches the blob (--source, then each --fallback) and compares the size and the content:
/// a plain ETag is compared with the blob's MD5; a multipart ETag (md5-of-part-md5s-N, not an MD5) is
/// recomputed from the blob with the part size (--part-size, else asked with HEAD ?partNumber=1);
/// when the part size cannot be known only the size is compared. ok.csv says which comparison was
/// made for every key (exists, md5, multipart-etag(part size P), size-only).
///
/// Input (--keys FILE or -): missing-on-target.csv, repair's ok.csv, any CSV with a `key` column (an
/// `origin` column names the Cassandra key), or one key per line (-z: NUL-terminated). The S3 key is
/// --prefix + key.
///
/// Outcomes in --out DIR: ok.csv, missing.csv, differ.csv (with what differs), failed.csv (with the
/// last error), summary.json. Exit status: 0 all ok; 1 some missing or different; 2 some failed.
///
/// Memory stays flat whatever the number of keys: the keys (checked in byte order, each once) and the
/// results go through an external sort within --mem, spilling to --tmp.
///
/// A key of several columns (--key-column a,b and the listing's --key-template) is parsed back into
/// its columns to fetch exactly that row; a key that does not parse is failed (stage key) with the
/// reason.
///
/// --deep reads blobs like keyrecon-repair: the same Cassandra flags, --fallback tables, and fallback
/// clusters (--cluster NAME=HOST:PORT,... with --fallback NAME:KS.TABLE and the --cluster-* flags;
/// credentials from KEYRECON_CASSANDRA_<NAME>_USERNAME / _PASSWORD). A key that needs a cluster that
/// cannot be reached fails (stage fetch) with the reason.
///
/// Example (after a repair):
///   keyrecon-verify --keys repair/ok.csv --bucket photos --deep --contact-points 10.0.0.1:9042 \
///     --source media.objects --key-column id --blob-column data --out verify/
///   # a table keyed by (service, id), listed as PHOTO:12345:
///   keyrecon-verify --keys repair/ok.csv --bucket photos --deep --contact-points 10.0.0.1:9042 \
///     --source media.by_service --key-column service,id --key-template '{service}:{id}' \
///     --blob-column data --out verify/
///
/// On many machines: enqueue the keys (`keyrecon-queue enqueue --keys repair/ok.csv URL`), run
/// `keyrecon-verify --queue URL --consumer NAME ...` on each, then `keyrecon-queue report URL --out DIR`
/// (docs/fleet.md).
#[derive(Parser, Debug)]
#[command(name = "keyrecon-verify", version, verbatim_doc_comment)]
// Cassandra is only read with --deep, which requires the contact points itself.
#[command(mut_arg("contact_points", |a| a.required(false).help("Nodes to connect to first, as HOST:PORT,... (with --deep)")))]
#[command(mut_arg("format", |a| a.default_value("auto")))]
#[command(mut_arg("keys", |a| a.required(false)))]
#[command(mut_arg("bucket", |a| a.help("Bucket to check")))]
#[command(mut_arg("source", |a| a.help("Table to fetch blobs from with --deep, as KEYSPACE.TABLE")))]
#[command(mut_arg("concurrency", |a| a.help("Keys checked at once at most")))]
#[command(mut_arg("rate", |a| a.value_name("KEYS/S").help("Cap on keys per second")))]
#[command(mut_arg("mem", |a| a.help("Memory budget of each sort, the keys' and the results' (e.g. 256M, 1G). More than this spills to --tmp.")))]
struct Args {
    #[command(flatten)]
    keys: KeysArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// Directory for the outcome files and summary.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,

    #[command(flatten)]
    target: BucketArgs,
    /// Part size the objects were uploaded with (for multipart ETags; default: ask the server).
    #[arg(long, value_parser = parse_size)]
    part_size: Option<usize>,

    /// Compare each object with its Cassandra blob (size and MD5/ETag); needs --source and --contact-points.
    #[arg(long, requires_all = ["source", "contact_points", "key_column"])]
    deep: bool,
    #[command(flatten)]
    blobs: BlobArgs,

    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    sort: MemArgs,
    /// No progress, no throttle log, no summary line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() {
    main_with(TOOL, || {
        let a = Args::parse();
        a.load.check()?;
        let deep = if a.deep { a.blobs.source()? } else { None };
        let cfg = VerifyConfig {
            keys: a.queue.key_source(&a.keys, TOOL, a.load.concurrency, a.target.prefix.as_bytes(), a.quiet)?,
            s3: a.target.s3.client_options()?,
            bucket: a.target.bucket.clone(),
            prefix: a.target.prefix.clone().into_bytes(),
            deep,
            part_size: a.part_size,
            concurrency: a.load.concurrency,
            rate: a.load.rate,
            latency_target: a.load.latency_target(),
            retries: a.load.retries,
            out: a.out.clone(),
            mem: a.sort.mem,
            tmp_dir: a.sort.tmp_dir(),
            quiet: a.quiet,
        };
        Ok(report(TOOL, &verify::run(cfg)?, a.quiet))
    })
}
