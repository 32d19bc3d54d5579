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
//! - A table has one or more partition-key columns, zero or more clustering
//!   columns (each ascending or descending), static columns (only with
//!   clustering columns, as Cassandra requires) and regular columns; every
//!   column is one of [`ColumnType`]. `system_schema.columns` reports them as
//!   Cassandra does: kind `partition_key` / `clustering` with position 0..n-1,
//!   `static` / `regular` with position -1, and `clustering_order` `asc`/`desc`
//!   for clustering columns (`none` otherwise).
//! - A partition key is *serialized* as Cassandra's partitioner sees it: the
//!   column's value for a one-column key; for a composite key, per component a
//!   2-byte big-endian length, the bytes and a 0x00 end-of-component byte
//!   ([`compose_key`]). The token is Murmur3 of exactly these bytes, which is
//!   also the routing key the driver computes.
//! - Clustering values are ordered by an order-preserving byte encoding
//!   ([`ColumnType::order_bytes`]): rows of a partition sort by the bytes of
//!   their encoded clustering values, which equals Cassandra's comparator
//!   order for every supported type (signed integers, unsigned bytes for
//!   text/ascii/blob, UUIDType and TimeUUIDType rules), inverted for DESC.
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
    Ascii,
    Smallint,
    Tinyint,
    Uuid,
    Timeuuid,
}

impl ColumnType {
    /// Every supported type, for table tests.
    pub const ALL: [ColumnType; 10] = [
        ColumnType::Text,
        ColumnType::Blob,
        ColumnType::Bigint,
        ColumnType::Int,
        ColumnType::Timestamp,
        ColumnType::Ascii,
        ColumnType::Smallint,
        ColumnType::Tinyint,
        ColumnType::Uuid,
        ColumnType::Timeuuid,
    ];

    pub fn cql_type(self) -> CqlType {
        match self {
            ColumnType::Text => CqlType::Text,
            ColumnType::Blob => CqlType::Blob,
            ColumnType::Bigint => CqlType::Bigint,
            ColumnType::Int => CqlType::Int,
            ColumnType::Timestamp => CqlType::Timestamp,
            ColumnType::Ascii => CqlType::Ascii,
            ColumnType::Smallint => CqlType::Smallint,
            ColumnType::Tinyint => CqlType::Tinyint,
            ColumnType::Uuid => CqlType::Uuid,
            ColumnType::Timeuuid => CqlType::Timeuuid,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Blob => "blob",
            ColumnType::Bigint => "bigint",
            ColumnType::Int => "int",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Ascii => "ascii",
            ColumnType::Smallint => "smallint",
            ColumnType::Tinyint => "tinyint",
            ColumnType::Uuid => "uuid",
            ColumnType::Timeuuid => "timeuuid",
        }
    }

    /// Parses a CQL type name (`text`/`varchar` or any [`ColumnType::name`]).
    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.to_ascii_lowercase();
        if s == "varchar" {
            return Some(ColumnType::Text);
        }
        ColumnType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The byte width of fixed-size types; `None` for text, ascii and blob.
    pub fn fixed_width(self) -> Option<usize> {
        match self {
            ColumnType::Text | ColumnType::Ascii | ColumnType::Blob => None,
            ColumnType::Bigint | ColumnType::Timestamp => Some(8),
            ColumnType::Int => Some(4),
            ColumnType::Smallint => Some(2),
            ColumnType::Tinyint => Some(1),
            ColumnType::Uuid | ColumnType::Timeuuid => Some(16),
        }
    }

    /// Checks that `b` is a valid serialized value of this type (Cassandra's
    /// messages). Empty values are legal where Cassandra allows them (the
    /// legacy "empty" value of the older fixed-size types).
    pub fn validate(self, b: &[u8]) -> Result<(), String> {
        match self {
            ColumnType::Text => std::str::from_utf8(b).map(|_| ()).map_err(|_| "String didn't validate.".to_string()),
            ColumnType::Ascii => match b.iter().find(|c| **c > 0x7f) {
                Some(c) => Err(format!("Invalid byte for ascii: {}", *c as i8)),
                None => Ok(()),
            },
            ColumnType::Blob => Ok(()),
            ColumnType::Bigint | ColumnType::Timestamp if b.len() == 8 || b.is_empty() => Ok(()),
            ColumnType::Int if b.len() == 4 || b.is_empty() => Ok(()),
            ColumnType::Bigint | ColumnType::Timestamp => {
                Err(format!("Expected 8 or 0 byte long for {} ({})", self.name(), b.len()))
            }
            ColumnType::Int => Err(format!("Expected 4 or 0 byte int ({})", b.len())),
            ColumnType::Smallint if b.len() == 2 => Ok(()),
            ColumnType::Smallint => Err(format!("Expected 2 bytes for a smallint ({})", b.len())),
            ColumnType::Tinyint if b.len() == 1 => Ok(()),
            ColumnType::Tinyint => Err(format!("Expected 1 byte for a tinyint ({})", b.len())),
            ColumnType::Uuid | ColumnType::Timeuuid if b.len() != 16 && !b.is_empty() => {
                Err(format!("UUID should be 16 or 0 bytes ({})", b.len()))
            }
            ColumnType::Timeuuid if !b.is_empty() && b[6] >> 4 != 1 => Err("Invalid version for TimeUUID type.".into()),
            ColumnType::Uuid | ColumnType::Timeuuid => Ok(()),
        }
    }

    /// [`ColumnType::validate`] for a primary-key part: fixed-size types must
    /// also be non-empty (the test node does not order legacy empty values).
    pub fn validate_key(self, b: &[u8]) -> Result<(), String> {
        self.validate(b)?;
        if b.is_empty() && self.fixed_width().is_some() {
            return Err(format!("empty {} value in a primary key", self.name()));
        }
        Ok(())
    }

    /// Appends the order-preserving encoding of a valid key value `b`: byte
    /// order of the encodings is Cassandra's comparator order for the type,
    /// and the encoding is prefix-free, so encodings of several columns can be
    /// concatenated and compared as one byte string.
    pub fn order_bytes(self, b: &[u8], out: &mut Vec<u8>) {
        match self {
            ColumnType::Text | ColumnType::Ascii | ColumnType::Blob => {
                // Unsigned bytes; 0x00 is escaped so the 0x00 0x00 end marker
                // sorts before any continuation.
                for &c in b {
                    out.push(c);
                    if c == 0 {
                        out.push(0xff);
                    }
                }
                out.extend_from_slice(&[0, 0]);
            }
            ColumnType::Bigint
            | ColumnType::Timestamp
            | ColumnType::Int
            | ColumnType::Smallint
            | ColumnType::Tinyint => {
                // Signed big-endian: flipping the sign bit makes it unsigned.
                if let Some((first, rest)) = b.split_first() {
                    out.push(first ^ 0x80);
                    out.extend_from_slice(rest);
                }
            }
            ColumnType::Timeuuid => {
                // TimeUUIDType: the timestamp, then the low half as signed bytes.
                let (msb, lsb) = uuid_halves(b);
                out.extend_from_slice(&reorder_timestamp(msb).to_be_bytes());
                out.extend(lsb.to_be_bytes().iter().map(|c| c ^ 0x80));
            }
            ColumnType::Uuid => {
                // UUIDType: version, then the timestamp for version 1 or the
                // high half unsigned, then the low half unsigned.
                let (msb, lsb) = uuid_halves(b);
                let version = ((msb >> 12) & 0xf) as u8;
                out.push(version);
                let high = if version == 1 { reorder_timestamp(msb) } else { msb };
                out.extend_from_slice(&high.to_be_bytes());
                out.extend_from_slice(&lsb.to_be_bytes());
            }
        }
    }
}

fn uuid_halves(b: &[u8]) -> (u64, u64) {
    let mut u = [0u8; 16];
    let n = b.len().min(16);
    u[..n].copy_from_slice(&b[..n]);
    (u64::from_be_bytes(u[..8].try_into().expect("8")), u64::from_be_bytes(u[8..].try_into().expect("8")))
}

/// Cassandra's `TimeUUIDType.reorderTimestampBytes`: time_hi, time_mid,
/// time_low, so the timestamp compares as a number.
fn reorder_timestamp(msb: u64) -> u64 {
    (msb << 48) | ((msb << 16) & 0xffff_0000_0000) | (msb >> 32)
}

/// Clustering order of a clustering column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// Serializes a partition key from its columns' serialized values: the value
/// itself for one column, Cassandra's composite form for several (per
/// component: u16 big-endian length, bytes, 0x00).
///
/// # Panics
/// If a component is longer than 65535 bytes (Cassandra's limit too).
pub fn compose_key<B: AsRef<[u8]>>(parts: &[B]) -> Vec<u8> {
    if let [one] = parts {
        return one.as_ref().to_vec();
    }
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.as_ref().len() + 3).sum());
    for p in parts {
        let p = p.as_ref();
        let len = u16::try_from(p.len()).expect("a partition key component is at most 65535 bytes");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

/// Splits a serialized partition key of `n` columns into their values (the
/// inverse of [`compose_key`]).
pub fn split_key(key: &[u8], n: usize) -> Result<Vec<&[u8]>, String> {
    if n == 1 {
        return Ok(vec![key]);
    }
    let mut parts = Vec::with_capacity(n);
    let mut rest = key;
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            return Err("truncated composite key: a length needs 2 bytes".into());
        };
        let len = u16::from_be_bytes([*hi, *lo]) as usize;
        if tail.len() < len + 1 {
            return Err(format!("truncated composite key: component {} needs {} bytes", parts.len(), len + 1));
        }
        if tail[len] != 0 {
            return Err(format!("composite key component {} does not end with 0x00", parts.len()));
        }
        parts.push(&tail[..len]);
        rest = &tail[len + 1..];
    }
    if parts.len() != n {
        return Err(format!("composite key has {} components, the table's partition key has {n}", parts.len()));
    }
    Ok(parts)
}

/// Which column of a table a name refers to, with its index in that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRef {
    PartitionKey(usize),
    Clustering(usize),
    Static(usize),
    Regular(usize),
}

/// A user table: partition key columns, clustering columns, static and
/// regular columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub keyspace: String,
    pub name: String,
    /// Partition key columns in key order (one for a simple key).
    pub partition_key: Vec<(String, ColumnType)>,
    /// Clustering columns in clustering order.
    pub clustering: Vec<(String, ColumnType, Order)>,
    /// Static columns: one value per partition.
    pub statics: Vec<(String, ColumnType)>,
    /// Regular columns.
    pub columns: Vec<(String, ColumnType)>,
}

impl Table {
    /// A table `keyspace.name` with partition key `pk` of type `pk_type`.
    pub fn new(keyspace: &str, name: &str, pk: &str, pk_type: ColumnType) -> Table {
        Table {
            keyspace: keyspace.to_string(),
            name: name.to_string(),
            partition_key: vec![(pk.to_string(), pk_type)],
            clustering: Vec::new(),
            statics: Vec::new(),
            columns: Vec::new(),
        }
    }

    /// Adds a partition key column after the existing ones: `Table::new(ks, t,
    /// "bucket", Text).partition_key_column("id", Bigint)` is `PRIMARY KEY
    /// ((bucket, id))`.
    pub fn partition_key_column(mut self, name: &str, typ: ColumnType) -> Table {
        self.partition_key.push((name.to_string(), typ));
        self
    }

    /// Adds an ascending clustering column after the existing ones.
    pub fn clustering_column(mut self, name: &str, typ: ColumnType) -> Table {
        self.clustering.push((name.to_string(), typ, Order::Asc));
        self
    }

    /// Adds a clustering column with `WITH CLUSTERING ORDER BY (name DESC)`.
    pub fn clustering_column_desc(mut self, name: &str, typ: ColumnType) -> Table {
        self.clustering.push((name.to_string(), typ, Order::Desc));
        self
    }

    /// Adds a static column (one value per partition; needs a clustering column).
    pub fn static_column(mut self, name: &str, typ: ColumnType) -> Table {
        self.statics.push((name.to_string(), typ));
        self
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

    /// The column a name refers to.
    pub fn resolve(&self, name: &str) -> Option<ColumnRef> {
        let find = |mut names: std::slice::Iter<'_, (String, ColumnType)>| names.position(|c| c.0 == name);
        find(self.partition_key.iter())
            .map(ColumnRef::PartitionKey)
            .or_else(|| self.clustering.iter().position(|c| c.0 == name).map(ColumnRef::Clustering))
            .or_else(|| find(self.statics.iter()).map(ColumnRef::Static))
            .or_else(|| find(self.columns.iter()).map(ColumnRef::Regular))
    }

    pub fn column_name(&self, c: ColumnRef) -> &str {
        match c {
            ColumnRef::PartitionKey(i) => &self.partition_key[i].0,
            ColumnRef::Clustering(i) => &self.clustering[i].0,
            ColumnRef::Static(i) => &self.statics[i].0,
            ColumnRef::Regular(i) => &self.columns[i].0,
        }
    }

    pub fn column_type(&self, c: ColumnRef) -> ColumnType {
        match c {
            ColumnRef::PartitionKey(i) => self.partition_key[i].1,
            ColumnRef::Clustering(i) => self.clustering[i].1,
            ColumnRef::Static(i) => self.statics[i].1,
            ColumnRef::Regular(i) => self.columns[i].1,
        }
    }

    /// The partition key's column names joined by `", "`, as Cassandra's
    /// messages print them.
    pub fn partition_key_names(&self) -> String {
        self.partition_key.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Checks names are unique and non-empty, and static columns have a
    /// clustering column to be static to.
    pub fn validate(&self) -> Result<(), String> {
        if self.keyspace.is_empty() || self.name.is_empty() {
            return Err("keyspace and table names must not be empty".into());
        }
        if self.partition_key.is_empty() {
            return Err("a table needs a partition key column".into());
        }
        if !self.statics.is_empty() && self.clustering.is_empty() {
            return Err(
                "Static columns are only useful (and thus allowed) if the table has at least one clustering column"
                    .into(),
            );
        }
        let names: Vec<&str> = (self.partition_key.iter().map(|c| c.0.as_str()))
            .chain(self.clustering.iter().map(|c| c.0.as_str()))
            .chain(self.statics.iter().map(|c| c.0.as_str()))
            .chain(self.columns.iter().map(|c| c.0.as_str()))
            .collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(format!("{}.{}: empty column name", self.keyspace, self.name));
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(format!("{}.{}: duplicate column names in {names:?}", self.keyspace, self.name));
        }
        Ok(())
    }

    /// Columns in the order `SELECT *` returns them (Cassandra's order):
    /// partition key and clustering columns in key order, then static columns
    /// by name, then regular columns by name.
    pub fn star_order(&self) -> Vec<ColumnRef> {
        let by_name = |cols: &[(String, ColumnType)]| {
            let mut idx: Vec<usize> = (0..cols.len()).collect();
            idx.sort_by(|a, b| cols[*a].0.cmp(&cols[*b].0));
            idx
        };
        (0..self.partition_key.len())
            .map(ColumnRef::PartitionKey)
            .chain((0..self.clustering.len()).map(ColumnRef::Clustering))
            .chain(by_name(&self.statics).into_iter().map(ColumnRef::Static))
            .chain(by_name(&self.columns).into_iter().map(ColumnRef::Regular))
            .collect()
    }

    /// Splits and checks a serialized partition key against the key's types.
    pub fn key_parts<'k>(&self, key: &'k [u8]) -> Result<Vec<&'k [u8]>, String> {
        if key.is_empty() {
            return Err("Key may not be empty".into());
        }
        let parts = split_key(key, self.partition_key.len())?;
        for (p, (name, typ)) in parts.iter().zip(&self.partition_key) {
            typ.validate_key(p).map_err(|e| format!("partition key {name}: {e}"))?;
        }
        Ok(parts)
    }

    /// The order-preserving encoding of serialized clustering values (a prefix
    /// of the clustering columns), DESC columns inverted.
    pub fn clustering_order_key<B: AsRef<[u8]>>(&self, values: &[B]) -> Vec<u8> {
        let mut out = Vec::new();
        for (v, (_, typ, order)) in values.iter().zip(&self.clustering) {
            let start = out.len();
            typ.order_bytes(v.as_ref(), &mut out);
            if *order == Order::Desc {
                // Inverting a prefix-free encoding reverses its order.
                out[start..].iter_mut().for_each(|b| *b = !*b);
            }
        }
        out
    }
}

/// The clustered table of the unit tests: `PRIMARY KEY ((a text, b int), c
/// int, d text) WITH CLUSTERING ORDER BY (c ASC, d DESC)`, static `s blob`,
/// regular `v blob`.
#[cfg(test)]
pub(crate) fn clustered_test_table() -> Table {
    Table::new("ks", "c", "a", ColumnType::Text)
        .partition_key_column("b", ColumnType::Int)
        .clustering_column("c", ColumnType::Int)
        .clustering_column_desc("d", ColumnType::Text)
        .static_column("s", ColumnType::Blob)
        .column("v", ColumnType::Blob)
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
    Ascii(String),
    Smallint(i16),
    Tinyint(i8),
    Uuid([u8; 16]),
    /// A version 1 (time-based) UUID.
    Timeuuid([u8; 16]),
}

impl Value {
    pub fn serialize(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => None,
            Value::Text(s) | Value::Ascii(s) => Some(s.as_bytes().to_vec()),
            Value::Blob(b) => Some(b.clone()),
            Value::Bigint(v) | Value::Timestamp(v) => Some(v.to_be_bytes().to_vec()),
            Value::Int(v) => Some(v.to_be_bytes().to_vec()),
            Value::Smallint(v) => Some(v.to_be_bytes().to_vec()),
            Value::Tinyint(v) => Some(v.to_be_bytes().to_vec()),
            Value::Uuid(u) | Value::Timeuuid(u) => Some(u.to_vec()),
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
            Value::Ascii(_) => Some(ColumnType::Ascii),
            Value::Smallint(_) => Some(ColumnType::Smallint),
            Value::Tinyint(_) => Some(ColumnType::Tinyint),
            Value::Uuid(_) => Some(ColumnType::Uuid),
            Value::Timeuuid(_) => Some(ColumnType::Timeuuid),
        }
    }
}

/// One CQL row: the serialized partition key, clustering values (none for a
/// table without clustering columns) and cells.
///
/// Cells not given are null. `writetime` (microseconds) applies to every
/// non-null cell; `None` means the node's default writetime. Static cells set
/// on a row update the partition's static row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    pub clustering: Vec<Value>,
    pub cells: Vec<(String, Value)>,
    pub writetime: Option<i64>,
    pub ttl: Option<i32>,
}

impl Row {
    /// A row whose partition key serializes to `key` (UTF-8 bytes for text
    /// keys, raw bytes for blob keys, [`compose_key`] for composite keys).
    pub fn new(key: impl Into<Vec<u8>>) -> Row {
        Row { key: key.into(), clustering: Vec::new(), cells: Vec::new(), writetime: None, ttl: None }
    }

    /// A row of the partition whose key columns have these values, in key
    /// order (one value for a simple key). `Value::Null` serializes as empty.
    pub fn partition(parts: impl IntoIterator<Item = Value>) -> Row {
        let parts: Vec<Vec<u8>> = parts.into_iter().map(|v| v.serialize().unwrap_or_default()).collect();
        Row::new(compose_key(&parts))
    }

    /// The row's clustering values, in clustering order.
    pub fn clustering(mut self, values: impl IntoIterator<Item = Value>) -> Row {
        self.clustering = values.into_iter().collect();
        self
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
    /// The Cassandra version the node reports and behaves like.
    pub release_version: String,
}

/// A Cassandra release version, `major.minor.patch` as `release_version`
/// spells it. It decides what the node accepts where versions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// What the node reports unless told otherwise.
    pub const DEFAULT: &'static str = "4.1.0";

    /// Parses `4.0.7`, `5.0` or `5.0.2-SNAPSHOT` (a suffix after `-` is ignored).
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.split('-').next()?;
        let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
        let major = it.next()??;
        let minor = it.next()??;
        let patch = it.next().unwrap_or(Some(0))?;
        if it.next().is_some() {
            return None;
        }
        Some(Version { major, minor, patch })
    }

    /// `octet_length(col)` came with Cassandra 6.0 (CASSANDRA-20102, not
    /// backported to 4.x or 5.0); older versions answer "Unknown function
    /// 'octet_length'".
    pub fn has_octet_length(self) -> bool {
        self.major >= 6
    }
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
            text(&cx.info.release_version),
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
                let mut push = |c: ColumnRef, order: &str, kind: &str, position: i32| {
                    let name = t.column_name(c);
                    rows.push(vec![
                        text(&t.keyspace),
                        text(&t.name),
                        text(name),
                        text(order),
                        V::Blob(name.as_bytes().to_vec()),
                        text(kind),
                        V::Int(position),
                        text(t.column_type(c).name()),
                    ]);
                };
                for i in 0..t.partition_key.len() {
                    push(ColumnRef::PartitionKey(i), "none", "partition_key", i as i32);
                }
                for (i, (_, _, order)) in t.clustering.iter().enumerate() {
                    push(ColumnRef::Clustering(i), order.name(), "clustering", i as i32);
                }
                for i in 0..t.statics.len() {
                    push(ColumnRef::Static(i), "none", "static", -1);
                }
                for i in 0..t.columns.len() {
                    push(ColumnRef::Regular(i), "none", "regular", -1);
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
    fn star_order_is_keys_then_statics_then_regulars_by_name() {
        use ColumnRef::*;
        let t = Table::new("ks", "t", "k", ColumnType::Text).column("z", ColumnType::Blob).column("a", ColumnType::Int);
        assert_eq!(t.star_order(), vec![PartitionKey(0), Regular(1), Regular(0)]);
        let t = Table::new("ks", "t", "b", ColumnType::Text)
            .partition_key_column("a", ColumnType::Int)
            .clustering_column("z", ColumnType::Int)
            .clustering_column("c", ColumnType::Int)
            .column("y", ColumnType::Blob)
            .static_column("x", ColumnType::Blob)
            .static_column("s", ColumnType::Blob);
        assert_eq!(
            t.star_order(),
            vec![PartitionKey(0), PartitionKey(1), Clustering(0), Clustering(1), Static(1), Static(0), Regular(0)]
        );
        assert_eq!(t.resolve("s"), Some(Static(1)));
        assert_eq!(t.resolve("a"), Some(PartitionKey(1)));
        assert_eq!(t.resolve("nope"), None);
    }

    #[test]
    fn statics_need_a_clustering_column() {
        let t = Table::new("ks", "t", "k", ColumnType::Text).static_column("s", ColumnType::Blob);
        assert!(t.validate().unwrap_err().contains("Static columns"));
    }

    #[test]
    fn versions_parse_and_gate_functions() {
        let v = |s| Version::parse(s);
        assert_eq!(v("4.0.7"), Some(Version { major: 4, minor: 0, patch: 7 }));
        assert_eq!(v("5.0"), Some(Version { major: 5, minor: 0, patch: 0 }));
        assert_eq!(v("5.0.2-SNAPSHOT"), Some(Version { major: 5, minor: 0, patch: 2 }));
        for bad in ["", "5", "x.y", "4.0.7.1", "4.-1.0"] {
            assert_eq!(v(bad), None, "{bad}");
        }
        assert!(!v(Version::DEFAULT).unwrap().has_octet_length());
        assert!(!v("4.0.7").unwrap().has_octet_length());
        assert!(!v("5.0.2").unwrap().has_octet_length());
        assert!(v("6.0.0").unwrap().has_octet_length());
    }

    #[test]
    fn composite_keys_round_trip() {
        let key = compose_key(&[&b"ab"[..], &[], &[0, 0xff]]);
        assert_eq!(key, vec![0, 2, b'a', b'b', 0, 0, 0, 0, 0, 2, 0, 0xff, 0]);
        assert_eq!(split_key(&key, 3).unwrap(), vec![&b"ab"[..], &[], &[0, 0xff]]);
        // One column: the value itself, never the composite form.
        assert_eq!(compose_key(&[b"ab"]), b"ab");
        assert_eq!(split_key(b"ab", 1).unwrap(), vec![&b"ab"[..]]);
        for (bad, n, needle) in [
            (&key[..key.len() - 1], 3, "truncated"),
            (&key[..1], 3, "truncated"),
            (&key[..], 2, "3 components"),
            (&[0u8, 1, b'x', 1][..], 1 + 1, "does not end with 0x00"),
        ] {
            let e = split_key(bad, n).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
        let row = Row::partition([Value::Text("photos".into()), Value::Bigint(42)]);
        assert_eq!(row.key, compose_key(&[b"photos".to_vec(), 42i64.to_be_bytes().to_vec()]));
        assert_eq!(Row::partition([Value::Text("k".into())]).key, b"k");
    }

    #[test]
    fn key_parts_check_every_component() {
        let t = Table::new("ks", "t", "a", ColumnType::Text).partition_key_column("b", ColumnType::Int);
        let good = compose_key(&[&b"x"[..], &7i32.to_be_bytes()]);
        assert_eq!(t.key_parts(&good).unwrap(), vec![&b"x"[..], &7i32.to_be_bytes()[..]]);
        let bad = compose_key(&[&b"x"[..], &[1, 2]]);
        assert!(t.key_parts(&bad).unwrap_err().contains("partition key b"));
        let empty_int = compose_key(&[&b"x"[..], &[]]);
        assert!(t.key_parts(&empty_int).unwrap_err().contains("empty int"));
        assert!(t.key_parts(b"").unwrap_err().contains("Key may not be empty"));
    }

    /// The byte order of encodings must be the value order of the type.
    #[test]
    fn order_bytes_follow_cassandra_comparators() {
        fn enc(t: ColumnType, v: &Value) -> Vec<u8> {
            let mut out = Vec::new();
            t.order_bytes(&v.serialize().unwrap(), &mut out);
            out
        }
        let v1 = |ts: u64, lsb: u64| {
            // time_low | time_mid | version 1 + time_hi, then the low half.
            let msb = ((ts & 0xffff_ffff) << 32) | (((ts >> 32) & 0xffff) << 16) | 0x1000 | ((ts >> 48) & 0x0fff);
            let mut u = [0u8; 16];
            u[..8].copy_from_slice(&msb.to_be_bytes());
            u[8..].copy_from_slice(&lsb.to_be_bytes());
            u
        };
        let v4 = |x: u8| {
            let mut u = [x; 16];
            u[6] = 0x40 | (x & 0x0f);
            u
        };
        let cases: Vec<(ColumnType, Vec<Value>)> = vec![
            (ColumnType::Bigint, [i64::MIN, -1, 0, 1, i64::MAX].map(Value::Bigint).to_vec()),
            (ColumnType::Int, [i32::MIN, -300, -1, 0, 255, 256, i32::MAX].map(Value::Int).to_vec()),
            (ColumnType::Smallint, [i16::MIN, -1, 0, 1, i16::MAX].map(Value::Smallint).to_vec()),
            (ColumnType::Tinyint, [i8::MIN, -1, 0, 1, i8::MAX].map(Value::Tinyint).to_vec()),
            (ColumnType::Timestamp, [-5, 0, 1_700_000_000_000].map(Value::Timestamp).to_vec()),
            (
                ColumnType::Text,
                ["", "\0", "\0\0", "\0a", "a", "a\0", "a\u{1}", "ab", "b", "é"].map(|s| Value::Text(s.into())).to_vec(),
            ),
            (
                ColumnType::Blob,
                [&[][..], &[0], &[0, 0], &[0, 0xff], &[1], &[0xff]].map(|b| Value::Blob(b.to_vec())).to_vec(),
            ),
            // TimeUUIDType: by timestamp first (time_hi outranks time_low), then the low half as signed bytes.
            (
                ColumnType::Timeuuid,
                [
                    v1(1, 0x8000_0000_0000_0000),
                    v1(1, 0),
                    v1(1, 0x7f00_0000_0000_0000),
                    v1(0xffff_ffff, 0),
                    v1(1 << 32, 0),
                    v1(1 << 48, 0),
                ]
                .map(Value::Timeuuid)
                .to_vec(),
            ),
            // UUIDType: version first, time-based by timestamp, the rest unsigned.
            (
                ColumnType::Uuid,
                [v1(5, 0), v1(1 << 40, 0), v1(1 << 40, 0x8000_0000_0000_0000), v4(0), v4(0x7f), v4(0x80), v4(0xff)]
                    .map(Value::Uuid)
                    .to_vec(),
            ),
        ];
        for (t, values) in cases {
            for w in values.windows(2) {
                assert!(enc(t, &w[0]) < enc(t, &w[1]), "{}: {:?} < {:?}", t.name(), w[0], w[1]);
            }
        }
        // Concatenated encodings compare column by column; DESC inverts.
        let t = Table::new("ks", "t", "k", ColumnType::Text)
            .clustering_column("a", ColumnType::Text)
            .clustering_column_desc("b", ColumnType::Int);
        let key = |a: &str, b: i32| t.clustering_order_key(&[a.as_bytes().to_vec(), b.to_be_bytes().to_vec()]);
        assert!(key("a", 5) < key("a", 1));
        assert!(key("a", 1) < key("a\0", 9));
        assert!(key("a\0", 9) < key("b", -1));
        assert!(key("a", 1).starts_with(&t.clustering_order_key(&[b"a"])));
    }

    #[test]
    fn every_type_validates_like_cassandra() {
        use ColumnType::*;
        for (t, ok, bad) in [
            (Ascii, &b"abc"[..], &[0x80u8][..]),
            (Smallint, &[0, 1], &[]),
            (Tinyint, &[1], &[0, 1]),
            (Uuid, &[0; 16], &[0; 15]),
        ] {
            assert!(t.validate(ok).is_ok(), "{}", t.name());
            assert!(t.validate(bad).is_err(), "{}", t.name());
        }
        let mut v1 = [0u8; 16];
        v1[6] = 0x10;
        assert!(Timeuuid.validate(&v1).is_ok());
        v1[6] = 0x40;
        assert_eq!(Timeuuid.validate(&v1).unwrap_err(), "Invalid version for TimeUUID type.");
        for t in ColumnType::ALL {
            assert_eq!(ColumnType::parse(t.name()), Some(t));
            assert_eq!(t.cql_type().cql_name(), t.name());
        }
        assert_eq!(ColumnType::parse("VARCHAR"), Some(Text));
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
        let info = NodeInfo {
            cluster_name: "c".into(),
            host_id: [1; 16],
            schema_version: [2; 16],
            tokens: vec![0],
            release_version: "4.1.0".into(),
        };
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
