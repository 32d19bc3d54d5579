//! keyrecon-list-cassandra: list a Cassandra table's partition keys into a chunk set.
use clap::Parser;
use keyrecon::chunk::Shard;
use keyrecon::cli::{main_with, parse_size, report, CassandraArgs, KeyColumnArgs, LoadArgs};
use keyrecon::keymap::KeyMap;
use keyrecon::sources::cassandra::session::{Selection, SizeSource};
use keyrecon::sources::cassandra::{self as cass, ListConfig};
use std::path::PathBuf;

/// List every partition key of a Cassandra table (with size and writetime if asked) into a chunk set
/// that keyrecon-diff reads directly.
///
/// The Murmur3 token ring is cut into --splits ranges (along the nodes' vnode boundaries); at most
/// --concurrency ranges are scanned at once with `token(k) > ? AND token(k) <= ?` and manual paging.
///
/// The table's schema is read first: --key-column must be its partition key, every column in key
/// order (a missing, extra or misordered column is refused with the real key). A key of several
/// columns is written as their values joined by `/`, or by --key-template, and scanned with
/// `token(a, b)`. A table with clustering columns is listed one row per partition
/// (`SELECT DISTINCT a, b, token(a, b)`), never row by row; there --size-of, --size-column and
/// --writetime-of must name a static column (one value per partition): a regular column has one value
/// per row and is refused.
///
/// Timeouts, unavailable and overloaded errors are retried with backoff; a range that keeps failing is
/// split in two and retried, then reported (exit status 2). Concurrency is halved when timeouts occur
/// or the page latency rises above --latency-target and grows back slowly (each change is logged).
///
/// Progress is journaled in CHUNKSET/.keyrecon-scan: after a crash or kill, rerun the same command
/// with --resume; finished ranges are not listed again and the result equals an uninterrupted run.
///
/// Sharding: with --shard I/N, N machines list one table together. The ring is cut into N contiguous
/// slices of equal width (the same on every machine); shard I lists slice I only, cut into --splits
/// ranges. Each machine writes its own chunk set; keyrecon-diff takes all N (--source, repeated), checks
/// that each shard is there exactly once and that all list the same table with the same --key-map and
/// --written-* window, and merges them. A resume must use the same --shard.
///
/// Credentials: KEYRECON_CASSANDRA_USERNAME / KEYRECON_CASSANDRA_PASSWORD (preferred: flags show up
/// in `ps`). They are never logged or written to the manifest.
///
/// Output: CHUNKSET/ (manifest.json, chunks), CHUNKSET/summary.json, CHUNKSET/rejects.csv
/// (table,token,reason,key) for keys --key-map rejected, and for rows whose key would not split back
/// into its columns (reason "unusable key: ...", exit status 2).
///
/// Example:
///   keyrecon-list-cassandra --contact-points 10.0.0.1:9042,10.0.0.2:9042 --local-dc dc1 \
///     --keyspace media --table objects --key-column id --writetime-of data \
///     --key-map 'if length == 21 and ends-with _1 then strip-suffix _1; require-prefix t01' \
///     --out cassandra.chunks
///   keyrecon-diff cassandra.chunks s3.chunks --out diff/
///
///   # PRIMARY KEY ((service, id), part): one key per partition, e.g. PHOTO:12345
///   keyrecon-list-cassandra --contact-points 10.0.0.1:9042 --keyspace media --table parts \
///     --key-column service,id --key-template '{service}:{id}' --out parts.chunks
///
///   # three machines, one shard each, then one diff of the three shards against S3:
///   keyrecon-list-cassandra ... --table objects --key-column id --shard 1/3 --out cass-1.chunks  # machine 1
///   keyrecon-list-cassandra ... --table objects --key-column id --shard 2/3 --out cass-2.chunks  # machine 2
///   keyrecon-list-cassandra ... --table objects --key-column id --shard 3/3 --out cass-3.chunks  # machine 3
///   keyrecon-diff --source cass-1.chunks --source cass-2.chunks --source cass-3.chunks s3.chunks --out diff/
#[derive(Parser, Debug)]
#[command(name = "keyrecon-list-cassandra", version, verbatim_doc_comment)]
// A full scan reads every row once: LOCAL_ONE is enough (a diff against S3 tolerates a replica that lags
// a little, and the scan does not load a whole quorum), and a page takes longer than one key's read.
#[command(mut_arg("consistency", |a| a.default_value("LOCAL_ONE").help("Consistency level of the scan")))]
#[command(mut_arg("request_timeout", |a| a.default_value("30").help("Client-side timeout of one page request, in seconds")))]
#[command(mut_arg("concurrency", |a| a.default_value("16").help("Ranges scanned at once (the AIMD limit never goes above this)")))]
#[command(mut_arg("rate", |a| a.value_name("ROWS/S").help("Cap on rows per second over all ranges")))]
#[command(mut_arg("latency_target", |a| a.help("Halve concurrency when the smoothed page latency exceeds this many milliseconds")))]
#[command(mut_arg("key_column", |a| a.required(true)))]
#[command(mut_arg("retries", |a| a.default_value("6").help("Retries of one page on timeouts/unavailable/overloaded before the range is split")))]
struct Args {
    #[command(flatten)]
    cassandra: CassandraArgs,
    /// Keyspace of the table.
    #[arg(long)]
    keyspace: String,
    /// Table to list.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    key: KeyColumnArgs,
    /// Chunk set directory to write.
    #[arg(long, short = 'o', value_name = "CHUNKSET")]
    out: PathBuf,
    /// Continue an interrupted listing in --out.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace what --out holds (a chunk set or an unfinished listing).
    #[arg(long)]
    force: bool,

    /// List only shard I of N (1-based, e.g. 2/3): the I-th of N equal slices of the token ring, so N
    /// machines can list one table; diff the N chunk sets together (keyrecon-diff --source, repeated).
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Number of token ranges to cut the ring (or the --shard's slice) into (at least one per vnode range).
    #[arg(long, default_value_t = 1024)]
    splits: usize,
    /// Rows per page.
    #[arg(long, default_value_t = 5000)]
    page_size: i32,
    #[command(flatten)]
    load: LoadArgs,
    /// How many times a failing range may be split in two before it is reported as failed.
    #[arg(long, default_value_t = 3)]
    split_depth: u32,

    /// Record each key's size as the byte length of this column's value. Measured by the server,
    /// octet_length(COL), where it has it (Cassandra 6.0 on): no blob moves. Elsewhere (Cassandra
    /// 4.x/5.0, ScyllaDB) COSTS: every value is transferred to be measured (the scan moves the
    /// column's whole data), with a warning; summary.json size.method and size.blob_bytes_moved say
    /// which it was. Probed once at start. --size-column is cheap on any server. With clustering
    /// columns: a static column only.
    #[arg(long, value_name = "COL", conflicts_with = "size_column")]
    size_of: Option<String>,
    /// Record each key's size from this integer column (cheap: no blob is fetched). With clustering
    /// columns: a static column only.
    #[arg(long, value_name = "COL")]
    size_column: Option<String>,
    /// Record writetime(COL) as the key's mtime (µs), for edit detection (keyrecon-diff --compare mtime)
    /// and the --written-* cutoffs. Costs 8 bytes per row. With clustering columns: a static column
    /// only (its writetime is the partition's).
    #[arg(long, value_name = "COL")]
    writetime_of: Option<String>,
    /// Keep only rows written at or after this time (RFC 3339 or µs since the epoch). Needs --writetime-of.
    #[arg(long, value_name = "TIME", value_parser = cass::parse_writetime, requires = "writetime_of")]
    written_after: Option<i64>,
    /// Keep only rows written before this time (e.g. the dual-write cutoff). Needs --writetime-of.
    #[arg(long, value_name = "TIME", value_parser = cass::parse_writetime, requires = "writetime_of")]
    written_before: Option<i64>,
    /// Key mapping rules, inline (`;` between rules) or @FILE (one rule per line, # comments). The mapped
    /// key is compared; the Cassandra key is kept as the record's origin; rejected keys go to rejects.csv.
    /// A rule is `[if COND [and COND]... then] ACTION`, applied in order to the current key.
    /// COND: length (==|!=|<|<=|>|>=) N, starts-with S, ends-with S, contains S, matches REGEX, not COND.
    /// ACTION: strip-prefix S, strip-suffix S, add-prefix S, add-suffix S, replace REGEX TEMPLATE ($1,
    /// ${name}), require-prefix S, require-suffix S, require REGEX, reject REASON, stop.
    /// S: word, "quoted \" string" or 'raw string'. Example: 'if length == 21 and ends-with _1 then
    /// strip-suffix _1; require-prefix t01'.
    #[arg(long, value_name = "RULES|@FILE")]
    key_map: Option<String>,

    /// Memory for buffered rows over all workers.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    mem: usize,
    /// Target size of each chunk file.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    chunk_size: usize,
    /// No progress, no summary, no throttle log on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() {
    main_with(cass::TOOL, || {
        let a = Args::parse();
        a.load.check()?;
        if a.page_size < 1 || a.splits < 1 {
            anyhow::bail!("--page-size and --splits must be at least 1");
        }
        let key = a.key.format()?.expect("--key-column is required");
        let keymap =
            a.key_map.as_deref().map(KeyMap::from_arg).transpose().map_err(|e| anyhow::anyhow!("--key-map: {e}"))?;
        let size = match (&a.size_of, &a.size_column) {
            (Some(c), _) => Some(SizeSource::BlobLength(c.clone())),
            (_, Some(c)) => Some(SizeSource::Column(c.clone())),
            _ => None,
        };
        let cfg = ListConfig {
            connect: a.cassandra.connect(&a.keyspace)?,
            selection: Selection {
                keyspace: a.keyspace.clone(),
                table: a.table.clone(),
                key_columns: key.columns().to_vec(),
                key_template: a.key.key_template.clone(),
                writetime_of: a.writetime_of.clone(),
                size,
            },
            key,
            out: a.out.clone(),
            resume: a.resume,
            force: a.force,
            shard: a.shard,
            splits: a.splits,
            page_size: a.page_size,
            concurrency: a.load.concurrency,
            rate: a.load.rate,
            latency_target: a.load.latency_target(),
            retries: a.load.retries,
            split_depth: a.split_depth,
            keymap,
            written_after: a.written_after,
            written_before: a.written_before,
            mem: a.mem,
            chunk_bytes: a.chunk_size as u64,
            quiet: a.quiet,
            args: cass::redacted_args(std::env::args().skip(1)),
        };
        Ok(report(cass::TOOL, &cass::list(cfg)?, a.quiet))
    })
}
