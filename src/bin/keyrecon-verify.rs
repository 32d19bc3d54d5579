//! keyrecon-verify: check that keys are in S3 and, with --deep, that each object holds its Cassandra blob.
use clap::Parser;
use keyrecon::cli::{main_with, parse_size};
use keyrecon::repair::fetch::TableRef;
use keyrecon::repair::keys::KeysFormat;
use keyrecon::sources::cassandra::session::{parse_consistency, Connect};
use keyrecon::sources::s3::client::ClientOptions;
use keyrecon::verify::{self, DeepSource, VerifyConfig, TOOL};
use std::path::PathBuf;
use std::time::Duration;

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
/// Example (after a repair):
///   keyrecon-verify --keys repair/ok.csv --bucket photos --deep --contact-points 10.0.0.1:9042 \
///     --source media.objects --key-column id --blob-column data --out verify/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-verify", version, verbatim_doc_comment)]
struct Args {
    /// Keys to check: a CSV with a `key` column (missing-on-target.csv, ok.csv), a key-per-line file, or -.
    #[arg(long, value_name = "FILE|-")]
    keys: PathBuf,
    /// Input format: auto (CSV when the first line is `key` or starts with `key,`), csv or lines.
    #[arg(long, default_value = "auto", value_parser = ["auto", "csv", "lines"])]
    format: String,
    /// Plain keys are NUL-terminated.
    #[arg(short = 'z', long = "null-data")]
    null: bool,
    /// Directory for the outcome files and summary.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,

    /// Bucket to check.
    #[arg(long)]
    bucket: String,
    /// Prepended to every key to form the S3 key.
    #[arg(long, default_value = "")]
    prefix: String,
    /// S3-compatible endpoint (Garage, Ceph, MinIO); path-style addressing then.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region (default: from the AWS configuration, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// AWS profile from ~/.aws/config.
    #[arg(long)]
    profile: Option<String>,
    /// Timeout of one S3 request attempt, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    s3_timeout: u64,
    /// Part size the objects were uploaded with (for multipart ETags; default: ask the server).
    #[arg(long, value_parser = parse_size)]
    part_size: Option<usize>,

    /// Compare each object with its Cassandra blob (size and MD5/ETag); needs --source and --contact-points.
    #[arg(long, requires_all = ["source", "contact_points", "key_column"])]
    deep: bool,
    /// Table to fetch blobs from, as KEYSPACE.TABLE.
    #[arg(long, value_name = "KS.TABLE", value_parser = TableRef::parse)]
    source: Option<TableRef>,
    /// Table to try when the previous ones lack the key (repeatable, in order).
    #[arg(long, value_name = "KS.TABLE", value_parser = TableRef::parse)]
    fallback: Vec<TableRef>,
    /// The partition key column.
    #[arg(long)]
    key_column: Option<String>,
    /// The column holding the object's bytes.
    #[arg(long, default_value = "blob")]
    blob_column: String,
    /// Nodes to connect to first, as HOST:PORT,...
    #[arg(long, value_delimiter = ',')]
    contact_points: Vec<String>,
    /// Datacenter to read from (no failover to other DCs).
    #[arg(long, value_name = "DC")]
    local_dc: Option<String>,
    /// Consistency level of the reads.
    #[arg(long, default_value = "LOCAL_QUORUM", value_parser = parse_consistency)]
    consistency: scylla::statement::Consistency,
    /// Username (default: $KEYRECON_CASSANDRA_USERNAME).
    #[arg(long)]
    username: Option<String>,
    /// Password (default: $KEYRECON_CASSANDRA_PASSWORD; prefer the environment).
    #[arg(long)]
    password: Option<String>,
    /// Connect with TLS, verifying nodes against this PEM CA bundle (needs a build with `--features tls`).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Client-side timeout of one Cassandra read, in seconds.
    #[arg(long, default_value_t = 12.0, value_name = "SECS")]
    request_timeout: f64,

    /// Keys checked at once at most.
    #[arg(long, short = 'j', default_value_t = 32)]
    concurrency: usize,
    /// Cap on keys per second.
    #[arg(long, value_name = "OBJ/S")]
    rate: Option<f64>,
    /// Halve concurrency when the smoothed latency of Cassandra or S3 requests exceeds this (ms).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    latency_target: u64,
    /// Attempts per request (first try included) before the key is recorded as failed.
    #[arg(long, default_value_t = 6)]
    max_attempts: u32,
    /// Seconds between progress log lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    log_every: u64,
    /// No progress, no throttle log, no summary line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() {
    main_with(TOOL, || {
        let mut a = Args::parse();
        a.username = a.username.take().or_else(|| std::env::var("KEYRECON_CASSANDRA_USERNAME").ok());
        a.password = a.password.take().or_else(|| std::env::var("KEYRECON_CASSANDRA_PASSWORD").ok());
        if a.username.is_some() != a.password.is_some() {
            anyhow::bail!("give both a username and a password (or neither)");
        }
        if a.concurrency < 1 || a.max_attempts < 1 {
            anyhow::bail!("--concurrency and --max-attempts must be at least 1");
        }
        if a.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            anyhow::bail!("--rate must be positive");
        }
        let deep = match (&a.source, a.deep) {
            (Some(src), true) => {
                let mut tables = vec![src.clone()];
                tables.extend(a.fallback.iter().cloned());
                Some(DeepSource {
                    connect: Connect {
                        contact_points: a.contact_points.clone(),
                        local_dc: a.local_dc.clone(),
                        consistency: a.consistency,
                        username: a.username.clone(),
                        password: a.password.clone(),
                        request_timeout: Duration::from_secs_f64(a.request_timeout.max(0.001)),
                        connect_timeout: Duration::from_secs(10),
                        tls_ca: a.tls_ca.clone(),
                        keyspace: src.keyspace.clone(),
                    },
                    tables,
                    key_column: a.key_column.clone().unwrap_or_default(),
                    blob_column: a.blob_column.clone(),
                })
            }
            _ => None,
        };
        let cfg = VerifyConfig {
            keys: a.keys.clone(),
            keys_format: match a.format.as_str() {
                "csv" => KeysFormat::Csv,
                "lines" => KeysFormat::Lines,
                _ => KeysFormat::Auto,
            },
            nul: a.null,
            s3: ClientOptions {
                endpoint_url: a.endpoint_url.clone(),
                region: a.region.clone(),
                profile: a.profile.clone(),
                path_style: None,
                attempt_timeout: Some(Duration::from_secs(a.s3_timeout.max(1))),
            },
            bucket: a.bucket.clone(),
            prefix: a.prefix.clone().into_bytes(),
            deep,
            part_size: a.part_size,
            concurrency: a.concurrency,
            rate: a.rate,
            latency_target: Duration::from_millis(a.latency_target),
            max_attempts: a.max_attempts,
            out: a.out.clone(),
            quiet: a.quiet,
            log_every: Duration::from_secs(a.log_every.max(1)),
        };
        let s = verify::run(cfg)?;
        if !a.quiet {
            let o = &s.outcomes;
            eprintln!(
                "{TOOL}: {} keys: {} ok, {} missing, {} differ, {} failed{}; {:.0} keys/s; see {}",
                s.keys_input,
                o.ok,
                o.missing,
                o.differ,
                o.failed,
                if s.deep {
                    format!(
                        " (compared: {} by MD5, {} by multipart ETag, {} by size only)",
                        s.compared_md5, s.compared_multipart_etag, s.compared_size_only
                    )
                } else {
                    " (existence only; --deep compares content)".to_string()
                },
                s.objects_per_sec,
                a.out.display()
            );
        }
        Ok(s.outcomes.exit_code())
    })
}
