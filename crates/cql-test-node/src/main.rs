//! `cql-test-node`: run the TEST NODE (not Cassandra) from the command line for
//! benchmarks and manual runs. Flags -> table and rows -> serve until killed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cql_test_node::{fixtures, ColumnType, Credentials, ReadKind, Stats, Table, TestNode, TlsCerts};

/// TEST NODE ONLY, not Cassandra: serve a fixture table over CQL native protocol v4
/// for keyrecon's tests, benchmarks and manual runs.
///
/// Prints `listening on ADDR` once ready, then serves until killed. On SIGUSR1 it prints one line of
/// what page requests read since the last one (`stats page_requests=N rows=N partitions=N bytes=N
/// range_rows=N distinct_rows=N lookup_rows=N`) and counts anew, so a benchmark can say how many rows
/// each client made the node read.
#[derive(Parser, Debug)]
#[command(name = "cql-test-node", version)]
struct Args {
    /// Address to listen on (loopback by default; this is a test node).
    #[arg(long, default_value = "127.0.0.1:9042")]
    listen: String,
    /// Table as keyspace.table.
    #[arg(long, default_value = "ks.t")]
    table: String,
    /// Partition key as name:type, or several comma-separated for a composite
    /// key (`bucket:text,id:bigint` is PRIMARY KEY ((bucket, id))).
    #[arg(long, default_value = "k:text")]
    pk: String,
    /// Rows per partition: adds the clustering column `c int` (0..N-1 in each
    /// partition); 0 means no clustering column.
    #[arg(long, default_value_t = 0)]
    clustering: u64,
    /// Regular column as name:type (text, ascii, blob, bigint, int, smallint,
    /// tinyint, timestamp, uuid, timeuuid); repeatable.
    #[arg(long = "col")]
    cols: Vec<String>,
    /// Generate this many partitions with deterministic random keys and values.
    #[arg(long)]
    rows: Option<u64>,
    /// Seed for --rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Size in bytes of generated blob (and text) values.
    #[arg(long, default_value_t = 64)]
    blob_size: usize,
    /// Load rows from a CSV file of `key,hexblob` lines.
    #[arg(long)]
    rows_csv: Option<PathBuf>,
    /// Require this username (PasswordAuthenticator); needs --password.
    #[arg(long, requires = "password")]
    username: Option<String>,
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// Ring tokens (vnodes) the node owns.
    #[arg(long, default_value_t = 16)]
    num_tokens: usize,
    /// Cassandra version to report and behave like (6.0 and later serve
    /// octet_length).
    #[arg(long, default_value = cql_test_node::Version::DEFAULT)]
    release_version: String,
    /// Serve TLS only, with a CA and server certificate (127.0.0.1, ::1,
    /// localhost) generated at start; the CA's PEM is written to this file for
    /// clients to trust.
    #[arg(long, value_name = "PATH")]
    tls_ca_out: Option<PathBuf>,
}

fn name_type(s: &str, what: &str) -> anyhow::Result<(String, ColumnType)> {
    let (name, typ) = s.split_once(':').with_context(|| format!("{what} {s:?}: expected name:type"))?;
    let typ = ColumnType::parse(typ).with_context(|| format!("{what} {s:?}: unknown type"))?;
    Ok((name.to_string(), typ))
}

fn table(args: &Args) -> anyhow::Result<Table> {
    let (ks, name) =
        args.table.split_once('.').with_context(|| format!("--table {:?}: expected keyspace.table", args.table))?;
    let mut key = args.pk.split(',').map(|c| name_type(c, "--pk"));
    let (pk, pk_type) = key.next().context("--pk: empty")??;
    let mut t = Table::new(ks, name, &pk, pk_type);
    for c in key {
        let (n, ct) = c?;
        t = t.partition_key_column(&n, ct);
    }
    if args.clustering > 0 {
        t = t.clustering_column("c", ColumnType::Int);
    }
    for c in &args.cols {
        let (n, ct) = name_type(c, "--col")?;
        t = t.column(&n, ct);
    }
    Ok(t)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let t = table(&args)?;
    let mut rows = Vec::new();
    if let Some(n) = args.rows {
        rows.extend(fixtures::generate_partitions(&t, n, args.clustering, args.seed, args.blob_size));
    }
    if let Some(path) = &args.rows_csv {
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let csv = fixtures::rows_from_csv(&t, std::io::BufReader::new(f), &path.display().to_string())?;
        rows.extend(csv);
    }
    let creds = match (&args.username, &args.password) {
        (Some(u), Some(p)) => Some(Credentials::new(u, p)),
        _ => None,
    };
    let mut builder = TestNode::builder();
    if let Some(path) = &args.tls_ca_out {
        let certs = TlsCerts::generate()?;
        std::fs::write(path, &certs.ca_pem).with_context(|| format!("write the CA to {}", path.display()))?;
        builder = builder.tls(&certs);
    }
    let node = builder
        .table(t)
        .rows(rows)
        .credentials(creds)
        .num_tokens(args.num_tokens)
        .release_version(&args.release_version)
        .build()
        .start(&args.listen)
        .await
        .context("start test node")?;
    // Before "listening on": a SIGUSR1 sent as soon as the node is up must not kill it.
    let mut usr1 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).context("listen for SIGUSR1")?;
    println!("listening on {}", node.addr());
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("wait for ctrl-c")?;
                break;
            }
            _ = usr1.recv() => {
                println!("{}", stats_line(&node.stats()));
                node.reset_stats();
            }
        }
    }
    node.shutdown().await;
    Ok(())
}

/// The SIGUSR1 line: what page requests read, in all and per kind of read.
fn stats_line(s: &Stats) -> String {
    format!(
        "stats page_requests={} rows={} partitions={} bytes={} range_rows={} distinct_rows={} lookup_rows={}",
        s.page_requests,
        s.rows_served,
        s.partitions_served,
        s.reads.values().map(|r| r.bytes).sum::<u64>(),
        s.reads(ReadKind::Range).rows,
        s.reads(ReadKind::DistinctRange).rows,
        s.reads(ReadKind::Lookup).rows,
    )
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cql-test-node: tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cql-test-node: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
