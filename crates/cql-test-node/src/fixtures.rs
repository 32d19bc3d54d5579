//! Fixture row generators: deterministic random rows and `key,hexblob` CSV.
//!
//! Role: produce [`Row`]s for a [`Table`] for benchmarks, manual runs and
//! tests, so the binary stays a thin flag parser.
//!
//! Invariants:
//! - [`generate_rows`] is a pure function of (table, n, seed, blob size): the
//!   same arguments give the same keys and values on every platform (SplitMix64).
//! - Generated keys are distinct: each embeds its row index.
//! - CSV lines are `key,hex` (blank lines and lines starting with `#` are
//!   skipped); for a blob partition key the key is hex too; the hex value goes
//!   to the table's first blob column. Errors name the line number.

use std::io::BufRead;

use crate::error::{Error, Result};
use crate::schema::{ColumnType, Row, Table, Value};

/// SplitMix64: tiny, seedable, and stable across platforms.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes hex with an optional `0x` prefix.
pub fn hex_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if s.len() & 1 == 1 {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("invalid hex in {s:?}")))
        .collect()
}

/// `n` partitions of one row each with deterministic random keys; blob and
/// text columns get `blob_size` bytes (text: hex characters), numbers random
/// values. See [`generate_partitions`].
pub fn generate_rows(table: &Table, n: u64, seed: u64, blob_size: usize) -> Vec<Row> {
    generate_partitions(table, n, 1, seed, blob_size)
}

/// `partitions` partitions of `rows_per_partition` rows each (clustering
/// values 0, 1, ... in each clustering column's type; a table without
/// clustering columns gets one row per partition whatever is asked), static
/// cells set once per partition.
///
/// Every partition-key column embeds the partition's index, so keys are
/// distinct while the key types can hold `partitions` values (a `tinyint`
/// key column wraps after 256).
pub fn generate_partitions(
    table: &Table,
    partitions: u64,
    rows_per_partition: u64,
    seed: u64,
    blob_size: usize,
) -> Vec<Row> {
    let mut rng = SplitMix64::new(seed);
    let per = if table.clustering.is_empty() { 1 } else { rows_per_partition.max(1) };
    let mut rows = Vec::with_capacity((partitions * per) as usize);
    for i in 0..partitions {
        // The first draw keys the partition, as in earlier versions, so a
        // one-column key table gets the same keys for the same seed.
        let r = rng.next_u64();
        let mut parts = vec![key_value(table.partition_key[0].1, i, r)];
        for (_, typ) in &table.partition_key[1..] {
            parts.push(key_value(*typ, i, rng.next_u64()));
        }
        let key = Row::partition(parts).key;
        let statics: Vec<(String, Value)> =
            table.statics.iter().map(|(name, typ)| (name.clone(), random_value(*typ, &mut rng, blob_size))).collect();
        for k in 0..per {
            let mut row = Row::new(key.clone());
            if !table.clustering.is_empty() {
                row = row.clustering(table.clustering.iter().map(|(_, typ, _)| key_value(*typ, k, k)));
            }
            if k == 0 {
                row.cells.extend(statics.iter().cloned());
            }
            for (name, typ) in &table.columns {
                row = row.set(name, random_value(*typ, &mut rng, blob_size));
            }
            rows.push(row);
        }
    }
    rows
}

/// A key value of type `typ` that embeds `i` (distinct for distinct `i`
/// while the type can hold it), varied by `r`.
fn key_value(typ: ColumnType, i: u64, r: u64) -> Value {
    match typ {
        ColumnType::Blob => {
            let mut k = i.to_be_bytes().to_vec();
            k.extend_from_slice(&r.to_be_bytes());
            Value::Blob(k)
        }
        ColumnType::Text => Value::Text(format!("key-{r:016x}-{i}")),
        ColumnType::Ascii => Value::Ascii(format!("key-{r:016x}-{i}")),
        ColumnType::Bigint => Value::Bigint(i as i64),
        ColumnType::Int => Value::Int(i as i32),
        ColumnType::Smallint => Value::Smallint(i as i16),
        ColumnType::Tinyint => Value::Tinyint(i as i8),
        ColumnType::Timestamp => Value::Timestamp(1_000_000_000_000 + i as i64),
        ColumnType::Uuid => Value::Uuid(uuid(4, r, i)),
        // A version 1 UUID whose timestamp is `i`.
        ColumnType::Timeuuid => {
            Value::Timeuuid(uuid(1, ((i & 0xffff_ffff) << 32) | (((i >> 32) & 0xffff) << 16) | ((i >> 48) & 0x0fff), r))
        }
    }
}

/// A UUID of `version` with `high` and `low` halves (version and variant
/// bits overwritten).
fn uuid(version: u8, high: u64, low: u64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&high.to_be_bytes());
    u[8..].copy_from_slice(&low.to_be_bytes());
    u[6] = (version << 4) | (u[6] & 0x0f);
    u[8] = 0x80 | (u[8] & 0x3f);
    u
}

/// A random regular or static cell of type `typ`.
fn random_value(typ: ColumnType, rng: &mut SplitMix64, blob_size: usize) -> Value {
    let hex_text = |rng: &mut SplitMix64| {
        let mut b = vec![0u8; blob_size.div_ceil(2)];
        rng.fill(&mut b);
        let mut s = hex_encode(&b);
        s.truncate(blob_size);
        s
    };
    match typ {
        ColumnType::Blob => {
            let mut b = vec![0u8; blob_size];
            rng.fill(&mut b);
            Value::Blob(b)
        }
        ColumnType::Text => Value::Text(hex_text(rng)),
        ColumnType::Ascii => Value::Ascii(hex_text(rng)),
        ColumnType::Bigint => Value::Bigint(rng.next_u64() as i64),
        ColumnType::Int => Value::Int(rng.next_u64() as i32),
        ColumnType::Smallint => Value::Smallint(rng.next_u64() as i16),
        ColumnType::Tinyint => Value::Tinyint(rng.next_u64() as i8),
        // Within 2001..2033 so it renders sensibly anywhere.
        ColumnType::Timestamp => Value::Timestamp(1_000_000_000_000 + (rng.next_u64() % 1_000_000_000_000) as i64),
        ColumnType::Uuid => Value::Uuid(uuid(4, rng.next_u64(), rng.next_u64())),
        ColumnType::Timeuuid => Value::Timeuuid(uuid(1, rng.next_u64(), rng.next_u64())),
    }
}

/// Reads `key,hexblob` lines (see the module docs).
pub fn rows_from_csv(table: &Table, input: impl BufRead, source: &str) -> Result<Vec<Row>> {
    let full = format!("{}.{}", table.keyspace, table.name);
    let blob_col =
        table.columns.iter().find(|(_, t)| *t == ColumnType::Blob).map(|(n, _)| n.clone()).ok_or_else(|| {
            Error::Schema { table: full.clone(), reason: "a CSV fixture needs a blob column for its hex values".into() }
        })?;
    if table.partition_key.len() != 1 {
        return Err(Error::Schema {
            table: full,
            reason: "a CSV fixture needs a one-column partition key (key,hexblob lines)".into(),
        });
    }
    let mut rows = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let bad = |reason: String| Error::Row { table: full.clone(), key: format!("{source}:{line_no}"), reason };
        let line = line.map_err(|e| bad(format!("read error: {e}")))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, hex) = line.rsplit_once(',').ok_or_else(|| bad("expected key,hexblob".into()))?;
        let key = match table.partition_key[0].1 {
            ColumnType::Blob => hex_decode(key).map_err(bad)?,
            _ => key.as_bytes().to_vec(),
        };
        let blob = hex_decode(hex).map_err(bad)?;
        rows.push(Row::new(key).blob(&blob_col, blob));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new("ks", "t", "k", ColumnType::Text).column("blob", ColumnType::Blob).column("n", ColumnType::Bigint)
    }

    #[test]
    fn generation_is_deterministic_and_keys_distinct() {
        let a = generate_rows(&table(), 100, 7, 10);
        let b = generate_rows(&table(), 100, 7, 10);
        assert_eq!(a, b);
        let mut keys: Vec<_> = a.iter().map(|r| r.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 100);
        assert_eq!(a[0].cells[0].1, a[0].cells[0].1.clone());
        match &a[0].cells[0].1 {
            Value::Blob(b) => assert_eq!(b.len(), 10),
            other => panic!("{other:?}"),
        }
        assert_ne!(generate_rows(&table(), 1, 8, 10), generate_rows(&table(), 1, 7, 10));
    }

    #[test]
    fn one_column_keys_are_unchanged_by_composite_support() {
        // Benchmarks and earlier fixtures rely on these exact keys.
        let rows = generate_rows(&table(), 2, 7, 4);
        let mut rng = SplitMix64::new(7);
        let r = rng.next_u64();
        assert_eq!(rows[0].key, format!("key-{r:016x}-0").into_bytes());
    }

    #[test]
    fn partitions_of_every_key_type_with_clustering_rows() {
        let mut t = Table::new("ks", "t", "a", ColumnType::Text);
        for (i, typ) in ColumnType::ALL.into_iter().enumerate() {
            t = t.partition_key_column(&format!("p{i}"), typ);
        }
        let t = t
            .clustering_column("c", ColumnType::Int)
            .clustering_column_desc("d", ColumnType::Timeuuid)
            .static_column("s", ColumnType::Blob)
            .column("v", ColumnType::Blob);
        let rows = generate_partitions(&t, 50, 3, 1, 8);
        assert_eq!(rows.len(), 150);
        let store = crate::store::Store::new(vec![t], 0).unwrap();
        store.insert_many("ks.t", rows.clone()).unwrap();
        assert_eq!((store.len("ks.t").unwrap(), store.row_count("ks.t").unwrap()), (50, 150));
        // Statics once per partition, on its first row.
        assert_eq!(rows.iter().filter(|r| r.cells.iter().any(|(n, _)| n == "s")).count(), 50);
        assert_eq!(generate_partitions(&table(), 5, 3, 1, 8).len(), 5, "no clustering: one row per partition");
    }

    #[test]
    fn csv_rows_and_errors() {
        let input = "# comment\nk1,0x00ff\n\nk,2,cafe\n";
        let rows = rows_from_csv(&table(), input.as_bytes(), "f.csv").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, b"k1");
        assert_eq!(rows[0].cells[0].1, Value::Blob(vec![0, 0xff]));
        // The last comma separates the blob, so keys may contain commas.
        assert_eq!(rows[1].key, b"k,2");
        let e = rows_from_csv(&table(), "a,zz\n".as_bytes(), "f.csv").unwrap_err().to_string();
        assert!(e.contains("f.csv:1") && e.contains("invalid hex"), "{e}");
        let no_blob = Table::new("ks", "t", "k", ColumnType::Text);
        assert!(rows_from_csv(&no_blob, "a,00\n".as_bytes(), "f").is_err());
        let composite = table().partition_key_column("k2", ColumnType::Int);
        assert!(rows_from_csv(&composite, "a,00\n".as_bytes(), "f").unwrap_err().to_string().contains("one-column"));
    }
}
