//! `cql-test-node`: run the TEST NODE (not Cassandra) from the command line for
//! benchmarks and manual runs. Flags -> table and rows -> serve until killed.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use cql_test_node::{fixtures, ColumnType, Credentials, Table, TestNode};

/// TEST NODE ONLY: serve a fixture table over CQL native protocol v4.
///
/// Prints `listening on ADDR` once ready, then serves until killed.
#[derive(Parser, Debug)]
#[command(name = "cql-test-node", version)]
struct Args {
    /// Address to listen on (loopback by default; this is a test node).
    #[arg(long, default_value = "127.0.0.1:9042")]
    listen: String,
    /// Table as keyspace.table.
    #[arg(long, default_value = "ks.t")]
    table: String,
    /// Partition key as name:type (type text or blob).
    #[arg(long, default_value = "k:text")]
    pk: String,
    /// Regular column as name:type (blob, text, bigint, int, timestamp); repeatable.
    #[arg(long = "col")]
    cols: Vec<String>,
    /// Generate this many rows with deterministic random keys and values.
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
}

fn name_type(s: &str, what: &str) -> anyhow::Result<(String, ColumnType)> {
    let (name, typ) = s.split_once(':').with_context(|| format!("{what} {s:?}: expected name:type"))?;
    let typ = ColumnType::parse(typ).with_context(|| format!("{what} {s:?}: unknown type"))?;
    Ok((name.to_string(), typ))
}

fn table(args: &Args) -> anyhow::Result<Table> {
    let (ks, name) =
        args.table.split_once('.').with_context(|| format!("--table {:?}: expected keyspace.table", args.table))?;
    let (pk, pk_type) = name_type(&args.pk, "--pk")?;
    if !matches!(pk_type, ColumnType::Text | ColumnType::Blob) {
        bail!("--pk {:?}: the partition key must be text or blob", args.pk);
    }
    let mut t = Table::new(ks, name, &pk, pk_type);
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
        rows.extend(fixtures::generate_rows(&t, n, args.seed, args.blob_size));
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
    let node = TestNode::builder()
        .table(t)
        .rows(rows)
        .credentials(creds)
        .num_tokens(args.num_tokens)
        .build()
        .start(&args.listen)
        .await
        .context("start test node")?;
    println!("listening on {}", node.addr());
    tokio::signal::ctrl_c().await.context("wait for ctrl-c")?;
    node.shutdown().await;
    Ok(())
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
