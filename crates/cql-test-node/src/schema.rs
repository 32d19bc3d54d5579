//! Fixture table definitions and the system tables the driver reads.
//!
//! Role: describe user tables ([`Table`], [`ColumnType`], [`Value`], [`Row`])
//! and generate the rows of `system.local`, `system.peers`, `system.peers_v2`,
//! `system.size_estimates` and `system_schema.*` that the scylla driver queries
//! on connect and on every metadata refresh (see `cluster/metadata/fetching.rs`
//! in scylla 1.x: peers, local, keyspaces, types, columns, tables, views, and
//! the ScyllaDB-only `scylla_tables`/`scylla_keyspaces`, which must fail with
//! INVALID "unconfigured table" exactly as on Cassandra).
//!
//! Invariants:
//! - One node, one data center (`datacenter1`, rack `rack1`), Murmur3 partitioner,
//!   every user keyspace `SimpleStrategy` with replication factor 1.
//! - A table has one partition-key column and no clustering columns; regular
//!   columns are one of [`ColumnType`]. `system_schema.columns` reports the
//!   partition key with kind `partition_key`, position 0, and regular columns
//!   with kind `regular`, position -1 (as Cassandra does).
//! - System rows are generated on each query from the fixed schema, so they are
//!   always consistent with the user tables.

use std::net::IpAddr;

use crate::murmur3;
use crate::protocol::CqlType;

/// Types a fixture column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Text,
    Blob,
    Bigint,
    Int,
    Timestamp,
}

impl ColumnType {
    pub fn cql_type(self) -> CqlType {
        match self {
            ColumnType::Text => CqlType::Text,
            ColumnType::Blob => CqlType::Blob,
            ColumnType::Bigint => CqlType::Bigint,
            ColumnType::Int => CqlType::Int,
            ColumnType::Timestamp => CqlType::Timestamp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Blob => "blob",
            ColumnType::Bigint => "bigint",
            ColumnType::Int => "int",
            ColumnType::Timestamp => "timestamp",
        }
    }

    /// Parses a CQL type name (`text`/`varchar`, `blob`, `bigint`, `int`, `timestamp`).
    pub fn parse(s: &str) -> Option<ColumnType> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "varchar" => Some(ColumnType::Text),
            "blob" => Some(ColumnType::Blob),
            "bigint" => Some(ColumnType::Bigint),
            "int" => Some(ColumnType::Int),
            "timestamp" => Some(ColumnType::Timestamp),
            _ => None,
        }
    }

    /// Checks that `b` is a valid serialized value of this type.
    pub fn validate(self, b: &[u8]) -> Result<(), String> {
        match self {
            ColumnType::Text => std::str::from_utf8(b).map(|_| ()).map_err(|_| "String didn't validate.".to_string()),
            ColumnType::Blob => Ok(()),
            // Empty values are legal for these types in CQL (legacy "empty" values).
            ColumnType::Bigint | ColumnType::Timestamp if b.len() == 8 || b.is_empty() => Ok(()),
            ColumnType::Int if b.len() == 4 || b.is_empty() => Ok(()),
            ColumnType::Bigint | ColumnType::Timestamp => {
                Err(format!("Expected 8 or 0 byte long for {} ({})", self.name(), b.len()))
            }
            ColumnType::Int => Err(format!("Expected 4 or 0 byte int ({})", b.len())),
        }
    }
}

/// A user table: one partition-key column plus regular columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub keyspace: String,
    pub name: String,
    pub partition_key: (String, ColumnType),
    pub columns: Vec<(String, ColumnType)>,
}

impl Table {
    /// A table `keyspace.name` with partition key `pk` of type `pk_type`.
    pub fn new(keyspace: &str, name: &str, pk: &str, pk_type: ColumnType) -> Table {
        Table {
            keyspace: keyspace.to_string(),
            name: name.to_string(),
            partition_key: (pk.to_string(), pk_type),
            columns: Vec::new(),
        }
    }

    /// Adds a regular column.
    pub fn column(mut self, name: &str, typ: ColumnType) -> Table {
        self.columns.push((name.to_string(), typ));
        self
    }

    /// Index of a regular column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(n, _)| n == name)
    }

    /// Checks names are unique and non-empty.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = vec![self.partition_key.0.as_str()];
        names.extend(self.columns.iter().map(|(n, _)| n.as_str()));
        for n in &names {
            if n.is_empty() {
                return Err(format!("{}.{}: empty column name", self.keyspace, self.name));
            }
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(format!("{}.{}: duplicate column names in {names:?}", self.keyspace, self.name));
        }
        if self.keyspace.is_empty() || self.name.is_empty() {
            return Err("keyspace and table names must not be empty".into());
        }
        Ok(())
    }

    /// Columns in the order `SELECT *` returns them: partition key, then
    /// regular columns sorted by name (Cassandra's order).
    pub fn star_order(&self) -> Vec<Option<usize>> {
        let mut idx: Vec<usize> = (0..self.columns.len()).collect();
        idx.sort_by(|a, b| self.columns[*a].0.cmp(&self.columns[*b].0));
        std::iter::once(None).chain(idx.into_iter().map(Some)).collect()
    }
}

/// A typed cell value, serialized per the protocol's section 6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Blob(Vec<u8>),
    Bigint(i64),
    Int(i32),
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

impl Value {
    pub fn serialize(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => None,
            Value::Text(s) => Some(s.as_bytes().to_vec()),
            Value::Blob(b) => Some(b.clone()),
            Value::Bigint(v) | Value::Timestamp(v) => Some(v.to_be_bytes().to_vec()),
            Value::Int(v) => Some(v.to_be_bytes().to_vec()),
        }
    }

    pub fn column_type(&self) -> Option<ColumnType> {
        match self {
            Value::Null => None,
            Value::Text(_) => Some(ColumnType::Text),
            Value::Blob(_) => Some(ColumnType::Blob),
            Value::Bigint(_) => Some(ColumnType::Bigint),
            Value::Int(_) => Some(ColumnType::Int),
            Value::Timestamp(_) => Some(ColumnType::Timestamp),
        }
    }
}

/// One partition (one row): the serialized partition key and its cells.
///
/// Cells not given are null. `writetime` (microseconds) applies to every
/// non-null cell; `None` means the node's default writetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    pub cells: Vec<(String, Value)>,
    pub writetime: Option<i64>,
    pub ttl: Option<i32>,
}

impl Row {
    /// A row whose partition key serializes to `key` (UTF-8 bytes for text
    /// keys, raw bytes for blob keys).
    pub fn new(key: impl Into<Vec<u8>>) -> Row {
        Row { key: key.into(), cells: Vec::new(), writetime: None, ttl: None }
    }

    pub fn set(mut self, column: &str, value: Value) -> Row {
        self.cells.push((column.to_string(), value));
        self
    }

    /// Shorthand for `set(column, Value::Blob(..))`.
    pub fn blob(self, column: &str, value: impl Into<Vec<u8>>) -> Row {
        self.set(column, Value::Blob(value.into()))
    }

    pub fn writetime(mut self, micros: i64) -> Row {
        self.writetime = Some(micros);
        self
    }

    /// TTL in seconds reported by `ttl(col)` for the row's non-null cells.
    pub fn ttl(mut self, seconds: i32) -> Row {
        self.ttl = Some(seconds);
        self
    }

    pub fn token(&self) -> i64 {
        murmur3::token(&self.key)
    }
}

/// Identity and topology of the node, as reported in `system.local`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub cluster_name: String,
    pub host_id: [u8; 16],
    pub schema_version: [u8; 16],
    /// Sorted ring tokens owned by the node.
    pub tokens: Vec<i64>,
}

/// A system table's column definitions.
pub struct SysTable {
    pub keyspace: &'static str,
    pub name: String,
    pub columns: Vec<(&'static str, CqlType)>,
}

fn set_text() -> CqlType {
    CqlType::Set(Box::new(CqlType::Text))
}
fn list_text() -> CqlType {
    CqlType::List(Box::new(CqlType::Text))
}
fn map_text() -> CqlType {
    CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Text))
}

/// The system tables served, or `None` for any other table in a system keyspace
/// (which then fails with "unconfigured table", as on Cassandra).
pub fn sys_table(keyspace: &str, name: &str) -> Option<SysTable> {
    use CqlType::*;
    let (ks, cols): (&'static str, Vec<(&'static str, CqlType)>) = match (keyspace, name) {
        ("system", "local") => (
            "system",
            vec![
                ("key", Text),
                ("bootstrapped", Text),
                ("broadcast_address", Inet),
                ("broadcast_port", Int),
                ("cluster_name", Text),
                ("cql_version", Text),
                ("data_center", Text),
                ("gossip_generation", Int),
                ("host_id", Uuid),
                ("listen_address", Inet),
                ("listen_port", Int),
                ("native_protocol_version", Text),
                ("partitioner", Text),
                ("rack", Text),
                ("release_version", Text),
                ("rpc_address", Inet),
                ("rpc_port", Int),
                ("schema_version", Uuid),
                ("tokens", set_text()),
                ("truncated_at", Map(Box::new(Uuid), Box::new(Blob))),
            ],
        ),
        ("system", "peers") => (
            "system",
            vec![
                ("peer", Inet),
                ("data_center", Text),
                ("host_id", Uuid),
                ("preferred_ip", Inet),
                ("rack", Text),
                ("release_version", Text),
                ("rpc_address", Inet),
                ("schema_version", Uuid),
                ("tokens", set_text()),
            ],
        ),
        ("system", "peers_v2") => (
            "system",
            vec![
                ("peer", Inet),
                ("peer_port", Int),
                ("data_center", Text),
                ("host_id", Uuid),
                ("native_address", Inet),
                ("native_port", Int),
                ("preferred_ip", Inet),
                ("preferred_port", Int),
                ("rack", Text),
                ("release_version", Text),
                ("schema_version", Uuid),
                ("tokens", set_text()),
            ],
        ),
        ("system", "size_estimates") => (
            "system",
            vec![
                ("keyspace_name", Text),
                ("table_name", Text),
                ("range_start", Text),
                ("range_end", Text),
                ("mean_partition_size", Bigint),
                ("partitions_count", Bigint),
            ],
        ),
        ("system_schema", "keyspaces") => {
            ("system_schema", vec![("keyspace_name", Text), ("durable_writes", Boolean), ("replication", map_text())])
        }
        ("system_schema", "tables") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("table_name", Text),
                ("bloom_filter_fp_chance", Double),
                ("caching", map_text()),
                ("comment", Text),
                ("compaction", map_text()),
                ("compression", map_text()),
                ("default_time_to_live", Int),
                ("flags", set_text()),
                ("gc_grace_seconds", Int),
                ("id", Uuid),
                ("speculative_retry", Text),
            ],
        ),
        ("system_schema", "columns") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("table_name", Text),
                ("column_name", Text),
                ("clustering_order", Text),
                ("column_name_bytes", Blob),
                ("kind", Text),
                ("position", Int),
                ("type", Text),
            ],
        ),
        ("system_schema", "types") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("type_name", Text),
                ("field_names", list_text()),
                ("field_types", list_text()),
            ],
        ),
        ("system_schema", "functions") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("function_name", Text),
                ("argument_types", list_text()),
                ("argument_names", list_text()),
                ("body", Text),
                ("called_on_null_input", Boolean),
                ("language", Text),
                ("return_type", Text),
            ],
        ),
        ("system_schema", "aggregates") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("aggregate_name", Text),
                ("argument_types", list_text()),
                ("final_func", Text),
                ("initcond", Text),
                ("return_type", Text),
                ("state_func", Text),
                ("state_type", Text),
            ],
        ),
        ("system_schema", "views") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("view_name", Text),
                ("base_table_id", Uuid),
                ("base_table_name", Text),
                ("id", Uuid),
                ("include_all_columns", Boolean),
                ("where_clause", Text),
            ],
        ),
        ("system_schema", "indexes") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("table_name", Text),
                ("index_name", Text),
                ("kind", Text),
                ("options", map_text()),
            ],
        ),
        ("system_schema", "triggers") => (
            "system_schema",
            vec![("keyspace_name", Text), ("table_name", Text), ("trigger_name", Text), ("options", map_text())],
        ),
        ("system_schema", "dropped_columns") => (
            "system_schema",
            vec![
                ("keyspace_name", Text),
                ("table_name", Text),
                ("column_name", Text),
                ("dropped_time", Timestamp),
                ("kind", Text),
                ("type", Text),
            ],
        ),
        _ => return None,
    };
    Some(SysTable { keyspace: ks, name: name.to_string(), columns: cols })
}

/// Keyspaces whose tables are system tables (never user tables).
pub fn is_system_keyspace(ks: &str) -> bool {
    matches!(ks, "system" | "system_schema" | "system_auth" | "system_distributed" | "system_traces")
}

/// A value of a system-table cell, before serialization.
#[derive(Debug, Clone)]
pub enum SysValue {
    Null,
    Text(String),
    Bool(bool),
    Int(i32),
    Bigint(i64),
    Double(f64),
    Uuid([u8; 16]),
    Inet(IpAddr),
    Blob(Vec<u8>),
    TextCollection(Vec<String>),
    TextMap(Vec<(String, String)>),
}

impl SysValue {
    pub fn serialize(&self) -> Option<Vec<u8>> {
        fn collection(items: &[&str]) -> Vec<u8> {
            let mut out = (items.len() as i32).to_be_bytes().to_vec();
            for s in items {
                out.extend_from_slice(&(s.len() as i32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
        Some(match self {
            SysValue::Null => return None,
            SysValue::Text(s) => s.as_bytes().to_vec(),
            SysValue::Bool(b) => vec![*b as u8],
            SysValue::Int(v) => v.to_be_bytes().to_vec(),
            SysValue::Bigint(v) => v.to_be_bytes().to_vec(),
            SysValue::Double(v) => v.to_be_bytes().to_vec(),
            SysValue::Uuid(u) => u.to_vec(),
            SysValue::Inet(IpAddr::V4(a)) => a.octets().to_vec(),
            SysValue::Inet(IpAddr::V6(a)) => a.octets().to_vec(),
            SysValue::Blob(b) => b.clone(),
            SysValue::TextCollection(v) => collection(&v.iter().map(String::as_str).collect::<Vec<_>>()),
            SysValue::TextMap(kv) => {
                let flat: Vec<&str> = kv.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect();
                // A map is n followed by n key/value pairs: n is the pair count.
                let mut out = collection(&flat);
                out[..4].copy_from_slice(&(kv.len() as i32).to_be_bytes());
                out
            }
        })
    }
}

/// `(table, range start, range end) -> (partitions, bytes)` for `size_estimates`.
pub type EstimateFn<'a> = &'a dyn Fn(&Table, i64, i64) -> (i64, i64);

/// Context needed to generate system rows.
pub struct SysContext<'a> {
    pub info: &'a NodeInfo,
    pub tables: &'a [std::sync::Arc<Table>],
    /// The address the client connected to, reported as the node's address.
    pub local_ip: IpAddr,
    pub local_port: u16,
    /// Row count and total serialized bytes per table and per local range, for
    /// `size_estimates`; `None` when not needed.
    pub estimates: Option<EstimateFn<'a>>,
}

fn simple_strategy(rf: u32) -> SysValue {
    SysValue::TextMap(vec![
        ("class".into(), "org.apache.cassandra.locator.SimpleStrategy".into()),
        ("replication_factor".into(), rf.to_string()),
    ])
}

/// Deterministic UUID (version 4 bits set) derived from a name.
pub fn name_uuid(name: &str) -> [u8; 16] {
    let (a, b) = murmur3::hash3_x64_128(name.as_bytes(), 0x7e57);
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&a.to_be_bytes());
    u[8..].copy_from_slice(&b.to_be_bytes());
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Generates all rows of a system table, one `Vec<SysValue>` per row in the
/// table's column order.
pub fn sys_rows(t: &SysTable, cx: &SysContext<'_>) -> Vec<Vec<SysValue>> {
    use SysValue as V;
    let text = |s: &str| V::Text(s.to_string());
    let mut keyspaces: Vec<&str> = cx.tables.iter().map(|t| t.keyspace.as_str()).collect();
    keyspaces.sort_unstable();
    keyspaces.dedup();
    match (t.keyspace, t.name.as_str()) {
        ("system", "local") => vec![vec![
            text("local"),
            text("COMPLETED"),
            V::Inet(cx.local_ip),
            V::Int(7000),
            text(&cx.info.cluster_name),
            text("3.4.5"),
            text("datacenter1"),
            V::Int(1_700_000_000),
            V::Uuid(cx.info.host_id),
            V::Inet(cx.local_ip),
            V::Int(7000),
            text("4"),
            text("org.apache.cassandra.dht.Murmur3Partitioner"),
            text("rack1"),
            text("4.1.0"),
            V::Inet(cx.local_ip),
            V::Int(cx.local_port as i32),
            V::Uuid(cx.info.schema_version),
            V::TextCollection(cx.info.tokens.iter().map(i64::to_string).collect()),
            V::Null,
        ]],
        ("system", "size_estimates") => {
            let Some(est) = cx.estimates else {
                return Vec::new();
            };
            let mut rows = Vec::new();
            for table in cx.tables {
                for (start, end) in local_ranges(&cx.info.tokens) {
                    let (count, bytes) = est(table, start, end);
                    let mean = if count > 0 { bytes / count } else { 0 };
                    rows.push(vec![
                        text(&table.keyspace),
                        text(&table.name),
                        V::Text(start.to_string()),
                        V::Text(end.to_string()),
                        V::Bigint(mean),
                        V::Bigint(count),
                    ]);
                }
            }
            rows
        }
        ("system_schema", "keyspaces") => {
            let mut rows = vec![
                vec![
                    text("system"),
                    V::Bool(true),
                    V::TextMap(vec![("class".into(), "org.apache.cassandra.locator.LocalStrategy".into())]),
                ],
                vec![text("system_auth"), V::Bool(true), simple_strategy(1)],
                vec![text("system_distributed"), V::Bool(true), simple_strategy(3)],
                vec![
                    text("system_schema"),
                    V::Bool(true),
                    V::TextMap(vec![("class".into(), "org.apache.cassandra.locator.LocalStrategy".into())]),
                ],
                vec![text("system_traces"), V::Bool(true), simple_strategy(2)],
            ];
            for ks in keyspaces {
                if !is_system_keyspace(ks) {
                    rows.push(vec![text(ks), V::Bool(true), simple_strategy(1)]);
                }
            }
            rows
        }
        ("system_schema", "tables") => cx
            .tables
            .iter()
            .map(|t| {
                vec![
                    text(&t.keyspace),
                    text(&t.name),
                    V::Double(0.01),
                    V::TextMap(vec![("keys".into(), "ALL".into()), ("rows_per_partition".into(), "NONE".into())]),
                    text("cql-test-node fixture table"),
                    V::TextMap(vec![
                        ("class".into(), "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy".into()),
                        ("max_threshold".into(), "32".into()),
                        ("min_threshold".into(), "4".into()),
                    ]),
                    V::TextMap(vec![
                        ("chunk_length_in_kb".into(), "16".into()),
                        ("class".into(), "org.apache.cassandra.io.compress.LZ4Compressor".into()),
                    ]),
                    V::Int(0),
                    V::TextCollection(vec!["compound".into()]),
                    V::Int(864000),
                    V::Uuid(name_uuid(&format!("{}.{}", t.keyspace, t.name))),
                    text("99p"),
                ]
            })
            .collect(),
        ("system_schema", "columns") => {
            let mut rows = Vec::new();
            for t in cx.tables {
                let (pk, pk_type) = &t.partition_key;
                rows.push(vec![
                    text(&t.keyspace),
                    text(&t.name),
                    text(pk),
                    text("none"),
                    V::Blob(pk.as_bytes().to_vec()),
                    text("partition_key"),
                    V::Int(0),
                    text(pk_type.name()),
                ]);
                for (c, ct) in &t.columns {
                    rows.push(vec![
                        text(&t.keyspace),
                        text(&t.name),
                        text(c),
                        text("none"),
                        V::Blob(c.as_bytes().to_vec()),
                        text("regular"),
                        V::Int(-1),
                        text(ct.name()),
                    ]);
                }
            }
            rows
        }
        // peers (single node), peers_v2, types, functions, aggregates, views,
        // indexes, triggers, dropped_columns: empty.
        _ => Vec::new(),
    }
}

/// The node's ranges `(start, end]` for sorted `tokens`, with the wrapping
/// range split at the ring's minimum token as `size_estimates` reports it.
pub fn local_ranges(tokens: &[i64]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    if tokens.is_empty() {
        return out;
    }
    for w in tokens.windows(2) {
        out.push((w[0], w[1]));
    }
    let last = *tokens.last().expect("non-empty");
    let first = tokens[0];
    // The wrapping range (last, first] covers (last, MAX] and (MIN, first].
    out.push((last, murmur3::MIN_TOKEN));
    out.push((murmur3::MIN_TOKEN, first));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_serialization_counts_pairs() {
        let v = SysValue::TextMap(vec![("a".into(), "b".into())]).serialize().unwrap();
        assert_eq!(v, vec![0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']);
        let s = SysValue::TextCollection(vec!["x".into(), "yz".into()]).serialize().unwrap();
        assert_eq!(s, vec![0, 0, 0, 2, 0, 0, 0, 1, b'x', 0, 0, 0, 2, b'y', b'z']);
    }

    #[test]
    fn star_order_is_pk_then_sorted_columns() {
        let t = Table::new("ks", "t", "k", ColumnType::Text).column("z", ColumnType::Blob).column("a", ColumnType::Int);
        assert_eq!(t.star_order(), vec![None, Some(1), Some(0)]);
    }

    #[test]
    fn duplicate_columns_are_rejected() {
        let t = Table::new("ks", "t", "k", ColumnType::Text).column("k", ColumnType::Blob);
        assert!(t.validate().unwrap_err().contains("duplicate"));
    }

    #[test]
    fn value_validation() {
        assert!(ColumnType::Bigint.validate(&[0; 8]).is_ok());
        assert!(ColumnType::Bigint.validate(&[0; 4]).is_err());
        assert!(ColumnType::Text.validate(&[0xff]).is_err());
        assert!(ColumnType::Int.validate(&[]).is_ok());
    }

    #[test]
    fn local_ranges_cover_ring_once() {
        let r = local_ranges(&[-10, 5, 100]);
        assert_eq!(r, vec![(-10, 5), (5, 100), (100, i64::MIN), (i64::MIN, -10)]);
    }

    #[test]
    fn every_served_system_table_has_rows_matching_columns() {
        let info = NodeInfo { cluster_name: "c".into(), host_id: [1; 16], schema_version: [2; 16], tokens: vec![0] };
        let tables =
            vec![std::sync::Arc::new(Table::new("ks", "t", "k", ColumnType::Text).column("v", ColumnType::Blob))];
        let est = |_: &Table, _: i64, _: i64| (1i64, 10i64);
        let cx = SysContext {
            info: &info,
            tables: &tables,
            local_ip: "127.0.0.1".parse().unwrap(),
            local_port: 9042,
            estimates: Some(&est),
        };
        for (ks, name) in [
            ("system", "local"),
            ("system", "peers"),
            ("system", "peers_v2"),
            ("system", "size_estimates"),
            ("system_schema", "keyspaces"),
            ("system_schema", "tables"),
            ("system_schema", "columns"),
            ("system_schema", "types"),
            ("system_schema", "functions"),
            ("system_schema", "aggregates"),
            ("system_schema", "views"),
            ("system_schema", "indexes"),
            ("system_schema", "triggers"),
            ("system_schema", "dropped_columns"),
        ] {
            let t = sys_table(ks, name).unwrap_or_else(|| panic!("{ks}.{name}"));
            assert_eq!(t.name, name);
            for row in sys_rows(&t, &cx) {
                assert_eq!(row.len(), t.columns.len(), "{ks}.{name}");
            }
        }
        assert!(sys_table("system_schema", "scylla_tables").is_none());
    }
}
