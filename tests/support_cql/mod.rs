//! Test support for the Cassandra side: the CQL test node (the real scylla driver on the wire, not a
//! real Cassandra) serving the `media.*` blob tables of a migration fixture, and keyrecon-list-cassandra
//! run on it with the fixture's key map.
//!
//! The fixture's migration stored Cassandra key `t01<16 hex>_1` (21 bytes) as S3 key `t01<16 hex>`:
//! [`cass_key`] and [`s3_key`] of the same row, and [`KEY_MAP`] turns one into the other.
#![allow(dead_code)]

use cql_test_node::{BlockingNode, ColumnType, Credentials, Row, Table, TestNode, TlsCerts};
use std::path::Path;
use std::process::{Command, Output};

pub const LIST_CASSANDRA: &str = env!("CARGO_BIN_EXE_keyrecon-list-cassandra");

/// keyrecon-list-cassandra's `--key-map` for the fixture: strip the `_1` the migration dropped.
pub const KEY_MAP: &str = "if length == 21 and ends-with _1 then strip-suffix _1; require-prefix t01";

/// Cassandra key of row i.
pub fn cass_key(i: usize) -> String {
    format!("t01{i:016x}_1")
}

/// S3 key of row i.
pub fn s3_key(i: usize) -> String {
    format!("t01{i:016x}")
}

/// `media.NAME (id text PRIMARY KEY, blob blob)`.
pub fn blob_table(name: &str) -> Table {
    Table::new("media", name, "id", ColumnType::Text).column("blob", ColumnType::Blob)
}

/// Rows `id = key(i), blob = blob(i)` for i in 0..n.
pub fn blob_rows(n: usize, key: fn(usize) -> String, blob: impl Fn(usize) -> Vec<u8>) -> Vec<Row> {
    (0..n).map(|i| Row::new(key(i)).blob("blob", blob(i))).collect()
}

/// A node on a free port of 127.0.0.1 serving the blob tables `media.NAME` with their rows.
pub fn node(tables: Vec<(&str, Vec<Row>)>) -> BlockingNode {
    let mut b = TestNode::builder();
    for (name, rows) in tables {
        b = b.table(blob_table(name)).rows(rows);
    }
    b.build().start_blocking("127.0.0.1:0").expect("start CQL test node")
}

/// [`node`] that asks for `user` and `password` (PasswordAuthenticator) and, with `tls`, serves TLS only.
pub fn secure_node(tables: Vec<(&str, Vec<Row>)>, tls: Option<&TlsCerts>, user: &str, password: &str) -> BlockingNode {
    let mut b = TestNode::builder().credentials(Credentials::new(user, password));
    if let Some(certs) = tls {
        b = b.tls(certs);
    }
    for (name, rows) in tables {
        b = b.table(blob_table(name)).rows(rows);
    }
    b.build().start_blocking("127.0.0.1:0").expect("start CQL test node")
}

/// keyrecon-list-cassandra of `media.objects` on `node` into the chunk set `out`, with blob sizes and the
/// fixture's key map; no credentials from the environment.
pub fn list_objects(node: &BlockingNode, out: &Path, extra: &[&str]) -> Output {
    Command::new(LIST_CASSANDRA)
        .args(["--contact-points", &node.addr().to_string(), "--keyspace", "media", "--table", "objects"])
        .args(["--key-column", "id", "--size-of", "blob", "--key-map", KEY_MAP, "--out"])
        .arg(out)
        .args(extra)
        .env_remove("KEYRECON_CASSANDRA_USERNAME")
        .env_remove("KEYRECON_CASSANDRA_PASSWORD")
        .output()
        .expect("run keyrecon-list-cassandra")
}
