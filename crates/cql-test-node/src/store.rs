//! In-memory partitions of the fixture tables, kept in ring order.
//!
//! Role: hold each table's partitions in a `BTreeMap` keyed by `(token, key
//! bytes)`, which is exactly the order a Cassandra node serves partitions in
//! (tokens ascending, ties broken by unsigned key bytes), each partition's rows
//! in clustering order, and let tests insert and delete rows while the node is
//! serving.
//!
//! Invariants:
//! - A stored partition key is never empty (CQL forbids empty partition keys)
//!   and each of its components is a valid value of its column's type.
//! - A partition's `rows` are sorted by their clustering order key
//!   ([`Table::clustering_order_key`]) with no two equal; a table without
//!   clustering columns has exactly one row per partition, under the empty
//!   order key. A stored partition has at least one row or a static row.
//! - `cells[i]` belongs to `Table::columns[i]` (`Table::statics[i]` in a static
//!   row) and has been type-checked.
//! - Locks are held only for synchronous work (a page scan, an insert), never
//!   across an `.await`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::error::{show_key, Error, Result};
use crate::murmur3;
use crate::schema::{ColumnRef, Row, Table, Value};

/// Ring position of a partition: token, then key bytes.
pub type RowKey = (i64, Vec<u8>);

/// A stored row (or a partition's static row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Serialized clustering values (empty without clustering columns and in
    /// a static row).
    pub clustering: Vec<Vec<u8>>,
    pub cells: Vec<Option<Vec<u8>>>,
    /// Microseconds; applies to every non-null cell.
    pub writetime: i64,
    pub ttl: Option<i32>,
}

impl StoredRow {
    /// Bytes of the row's values, for `size_estimates`.
    fn value_bytes(&self) -> usize {
        self.clustering.iter().map(Vec::len).sum::<usize>() + self.cells.iter().flatten().map(Vec::len).sum::<usize>()
    }
}

/// A stored partition: its static row and its rows in clustering order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partition {
    /// Static cells, if any was ever set.
    pub statics: Option<StoredRow>,
    /// `(clustering order key, row)`, sorted by the order key.
    pub rows: Vec<(Vec<u8>, StoredRow)>,
}

impl Partition {
    /// Bytes of the partition's values (key excluded), for `size_estimates`.
    pub fn value_bytes(&self) -> usize {
        self.statics.as_ref().map_or(0, StoredRow::value_bytes)
            + self.rows.iter().map(|(_, r)| r.value_bytes()).sum::<usize>()
    }

    /// The index of the first row after order key `after` (all rows for `None`).
    pub fn rows_after(&self, after: Option<&[u8]>) -> usize {
        match after {
            None => 0,
            Some(a) => self.rows.partition_point(|(k, _)| k.as_slice() <= a),
        }
    }
}

/// One table's schema and partitions.
pub struct TableData {
    pub schema: Arc<Table>,
    pub rows: RwLock<BTreeMap<RowKey, Partition>>,
}

impl TableData {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<RowKey, Partition>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (inserts are single map operations), so poisoning is ignored.
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<RowKey, Partition>> {
        self.rows.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A row checked against its table, ready to store.
struct Checked {
    pos: RowKey,
    statics: Option<StoredRow>,
    /// `None` for a row that only sets static cells.
    row: Option<(Vec<u8>, StoredRow)>,
}

/// All fixture tables.
pub struct Store {
    tables: Vec<Arc<TableData>>,
    default_writetime: i64,
}

impl Store {
    pub fn new(tables: Vec<Table>, default_writetime: i64) -> Result<Store> {
        let mut out: Vec<Arc<TableData>> = Vec::new();
        for t in tables {
            let full = format!("{}.{}", t.keyspace, t.name);
            t.validate().map_err(|reason| Error::Schema { table: full.clone(), reason })?;
            if crate::schema::is_system_keyspace(&t.keyspace) {
                return Err(Error::Schema {
                    table: full,
                    reason: "system keyspaces cannot hold fixture tables".into(),
                });
            }
            if out.iter().any(|o| o.schema.keyspace == t.keyspace && o.schema.name == t.name) {
                return Err(Error::Schema { table: full, reason: "defined twice".into() });
            }
            out.push(Arc::new(TableData { schema: Arc::new(t), rows: RwLock::new(BTreeMap::new()) }));
        }
        Ok(Store { tables: out, default_writetime })
    }

    pub fn table(&self, keyspace: &str, name: &str) -> Option<&Arc<TableData>> {
        self.tables.iter().find(|t| t.schema.keyspace == keyspace && t.schema.name == name)
    }

    /// Finds a table by `keyspace.table`.
    pub fn table_by_name(&self, full: &str) -> Result<&Arc<TableData>> {
        let (ks, t) = full.split_once('.').ok_or_else(|| Error::UnknownTable(full.to_string()))?;
        self.table(ks, t).ok_or_else(|| Error::UnknownTable(full.to_string()))
    }

    pub fn schemas(&self) -> Vec<Arc<Table>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    pub fn has_keyspace(&self, ks: &str) -> bool {
        self.tables.iter().any(|t| t.schema.keyspace == ks)
    }

    /// Inserts (or replaces) a row; static cells it sets replace the
    /// partition's. Returns true if it replaced a row with the same primary
    /// key (for a row that sets only static cells: if the partition existed).
    pub fn insert(&self, table: &str, row: Row) -> Result<bool> {
        let td = self.table_by_name(table)?;
        let checked = self.check(&td.schema, row)?;
        Ok(apply(&mut td.write(), checked))
    }

    /// Inserts many rows under one lock.
    pub fn insert_many(&self, table: &str, rows: impl IntoIterator<Item = Row>) -> Result<usize> {
        let td = self.table_by_name(table)?;
        let mut checked = Vec::new();
        for row in rows {
            checked.push(self.check(&td.schema, row)?);
        }
        let n = checked.len();
        let mut map = td.write();
        for c in checked {
            apply(&mut map, c);
        }
        Ok(n)
    }

    /// Deletes a partition by its serialized key. Returns true if it existed.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<bool> {
        let td = self.table_by_name(table)?;
        let k = (murmur3::token(key), key.to_vec());
        Ok(td.write().remove(&k).is_some())
    }

    /// Number of partitions in a table.
    pub fn len(&self, table: &str) -> Result<usize> {
        Ok(self.table_by_name(table)?.read().len())
    }

    /// Number of rows in a table (a partition with only static cells counts
    /// one, as a SELECT returns it).
    pub fn row_count(&self, table: &str) -> Result<usize> {
        Ok(self.table_by_name(table)?.read().values().map(|p| p.rows.len().max(1)).sum())
    }

    /// All partition keys of a table in ring order.
    pub fn keys(&self, table: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self.table_by_name(table)?.read().keys().map(|(_, k)| k.clone()).collect())
    }

    /// A partition's first row (its only row without clustering columns), or
    /// `None` if the partition is absent or has only static cells.
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<StoredRow>> {
        Ok(self.get_partition(table, key)?.and_then(|p| p.rows.into_iter().next().map(|(_, r)| r)))
    }

    /// A whole partition, or `None` if absent.
    pub fn get_partition(&self, table: &str, key: &[u8]) -> Result<Option<Partition>> {
        let td = self.table_by_name(table)?;
        let k = (murmur3::token(key), key.to_vec());
        Ok(td.read().get(&k).cloned())
    }

    fn check(&self, t: &Table, row: Row) -> Result<Checked> {
        let table = format!("{}.{}", t.keyspace, t.name);
        let err = |reason: String| Error::Row { table: table.clone(), key: show_key(&row.key), reason };
        t.key_parts(&row.key).map_err(err)?;
        let writetime = row.writetime.unwrap_or(self.default_writetime);
        let stored = |n: usize| StoredRow { clustering: Vec::new(), cells: vec![None; n], writetime, ttl: row.ttl };
        let mut regular = stored(t.columns.len());
        let mut statics = None::<StoredRow>;
        let mut sets_regular = false;
        for (name, value) in &row.cells {
            let (cell, typ) = match t.resolve(name) {
                Some(c @ ColumnRef::Regular(i)) => {
                    sets_regular = true;
                    (&mut regular.cells[i], t.column_type(c))
                }
                Some(c @ ColumnRef::Static(i)) => {
                    (&mut statics.get_or_insert_with(|| stored(t.statics.len())).cells[i], t.column_type(c))
                }
                Some(_) => {
                    return Err(err(format!("{name} is a primary key column: give it in the key or clustering")))
                }
                None => return Err(err(format!("no regular or static column {name:?}"))),
            };
            check_value(value, typ).map_err(|r| err(format!("column {name} {r}")))?;
            *cell = value.serialize();
        }
        if row.clustering.is_empty() && !t.clustering.is_empty() && (sets_regular || statics.is_none()) {
            let names: Vec<&str> = t.clustering.iter().map(|c| c.0.as_str()).collect();
            return Err(err(format!("Some clustering keys are missing: {}", names.join(", "))));
        }
        let row_part = if row.clustering.is_empty() && !t.clustering.is_empty() {
            None
        } else {
            if row.clustering.len() != t.clustering.len() {
                return Err(err(format!(
                    "{} clustering values for {} clustering columns",
                    row.clustering.len(),
                    t.clustering.len()
                )));
            }
            let mut values = Vec::with_capacity(row.clustering.len());
            for (v, (name, typ, _)) in row.clustering.iter().zip(&t.clustering) {
                check_value(v, *typ).map_err(|r| err(format!("clustering column {name} {r}")))?;
                let b = v.serialize().ok_or_else(|| err(format!("clustering column {name} may not be null")))?;
                typ.validate_key(&b).map_err(|r| err(format!("clustering column {name}: {r}")))?;
                values.push(b);
            }
            regular.clustering = values;
            Some((t.clustering_order_key(&regular.clustering), regular))
        };
        let pos = (murmur3::token(&row.key), row.key);
        Ok(Checked { pos, statics, row: row_part })
    }
}

/// A value's type must be the column's (null fits every column).
fn check_value(v: &Value, typ: crate::schema::ColumnType) -> std::result::Result<(), String> {
    match v.column_type() {
        Some(vt) if vt != typ => Err(format!("is {} but the value is {}", typ.name(), vt.name())),
        _ => Ok(()),
    }
}

/// Stores a checked row; true if it replaced a row (or, setting only static
/// cells, if the partition existed).
fn apply(map: &mut BTreeMap<RowKey, Partition>, c: Checked) -> bool {
    let existed = map.contains_key(&c.pos);
    let part = map.entry(c.pos).or_default();
    if let Some(new) = c.statics {
        match &mut part.statics {
            // Cells merge (an INSERT leaves other static cells alone); the
            // row's writetime and TTL become the static row's.
            Some(old) => {
                for (o, n) in old.cells.iter_mut().zip(new.cells) {
                    if n.is_some() {
                        *o = n;
                    }
                }
                old.writetime = new.writetime;
                old.ttl = new.ttl;
            }
            None => part.statics = Some(new),
        }
    }
    let Some((order, row)) = c.row else {
        return existed;
    };
    match part.rows.binary_search_by(|(k, _)| k.cmp(&order)) {
        Ok(i) => {
            part.rows[i].1 = row;
            true
        }
        Err(i) => {
            part.rows.insert(i, (order, row));
            false
        }
    }
}

/// Lower scan bound for rows with token `> t` (or `>= t` when `inclusive`).
pub fn lower_from_token(t: i64, inclusive: bool) -> Option<Bound<RowKey>> {
    if inclusive {
        // The empty key sorts first among keys of a token and is never stored.
        Some(Bound::Included((t, Vec::new())))
    } else if t == i64::MAX {
        None
    } else {
        Some(Bound::Included((t + 1, Vec::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{compose_key, ColumnType};

    fn store() -> Store {
        Store::new(vec![Table::new("ks", "t", "k", ColumnType::Text).column("v", ColumnType::Blob)], 7).unwrap()
    }

    #[test]
    fn rows_are_kept_in_token_order() {
        let s = store();
        for k in ["a", "b", "c", "d", "e", "f"] {
            s.insert("ks.t", Row::new(k).blob("v", k)).unwrap();
        }
        let keys = s.keys("ks.t").unwrap();
        let tokens: Vec<i64> = keys.iter().map(|k| murmur3::token(k)).collect();
        let mut sorted = tokens.clone();
        sorted.sort();
        assert_eq!(tokens, sorted);
        assert_eq!(keys.len(), 6);
    }

    #[test]
    fn insert_replaces_and_delete_removes() {
        let s = store();
        assert!(!s.insert("ks.t", Row::new("a").blob("v", "1")).unwrap());
        assert!(s.insert("ks.t", Row::new("a").blob("v", "2").writetime(9)).unwrap());
        let r = s.get("ks.t", b"a").unwrap().unwrap();
        assert_eq!(r.cells, vec![Some(b"2".to_vec())]);
        assert_eq!(s.row_count("ks.t").unwrap(), 1);
        assert_eq!(r.writetime, 9);
        assert!(s.delete("ks.t", b"a").unwrap());
        assert!(!s.delete("ks.t", b"a").unwrap());
        assert_eq!(s.len("ks.t").unwrap(), 0);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let s = store();
        let e = s.insert("ks.t", Row::new("")).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = s.insert("ks.t", Row::new("a").set("v", Value::Int(1))).unwrap_err().to_string();
        assert!(e.contains("column v is blob but the value is int"), "{e}");
        let e = s.insert("ks.t", Row::new("a").blob("nope", "x")).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("\"a\""), "{e}");
        let e = s.insert("ks.t", Row::new("a").blob("k", "x")).unwrap_err().to_string();
        assert!(e.contains("primary key column"), "{e}");
        let e = s.insert("ks.t", Row::new(vec![0xff])).unwrap_err().to_string();
        assert!(e.contains("partition key k"), "{e}");
        assert!(matches!(s.insert("ks.x", Row::new("a")), Err(Error::UnknownTable(_))));
    }

    fn clustered() -> Store {
        Store::new(vec![crate::schema::clustered_test_table()], 7).unwrap()
    }

    fn key(a: &str, b: i32) -> Vec<u8> {
        compose_key(&[a.as_bytes().to_vec(), b.to_be_bytes().to_vec()])
    }

    #[test]
    fn rows_of_a_partition_are_in_clustering_order() {
        let s = clustered();
        let row = |c: i32, d: &str| {
            Row::partition([Value::Text("x".into()), Value::Int(1)])
                .clustering([Value::Int(c), Value::Text(d.into())])
                .blob("v", format!("{c}{d}"))
        };
        for (c, d) in [(1, "b"), (3, "a"), (1, "a"), (2, "z")] {
            assert!(!s.insert("ks.c", row(c, d)).unwrap());
        }
        assert!(s.insert("ks.c", row(1, "a").writetime(9)).unwrap(), "same primary key replaces");
        let p = s.get_partition("ks.c", &key("x", 1)).unwrap().unwrap();
        let got: Vec<Option<Vec<u8>>> = p.rows.iter().map(|(_, r)| r.cells[0].clone()).collect();
        // c ASC, then d DESC.
        let want: Vec<Option<Vec<u8>>> = ["1b", "1a", "2z", "3a"].iter().map(|v| Some(v.as_bytes().to_vec())).collect();
        assert_eq!(got, want);
        assert_eq!((s.len("ks.c").unwrap(), s.row_count("ks.c").unwrap()), (1, 4));
        assert_eq!(p.rows_after(Some(&p.rows[1].0)), 2);
        assert_eq!(p.rows_after(None), 0);
    }

    #[test]
    fn static_cells_belong_to_the_partition() {
        let s = clustered();
        let part = || Row::partition([Value::Text("x".into()), Value::Int(1)]);
        // Only static cells: a partition with no rows, which SELECT shows as one row.
        assert!(!s.insert("ks.c", part().blob("s", "one")).unwrap());
        assert_eq!((s.len("ks.c").unwrap(), s.row_count("ks.c").unwrap()), (1, 1));
        assert_eq!(s.get("ks.c", &key("x", 1)).unwrap(), None);
        s.insert("ks.c", part().clustering([Value::Int(1), Value::Text("a".into())]).blob("s", "two")).unwrap();
        s.insert("ks.c", part().clustering([Value::Int(2), Value::Text("a".into())]).blob("v", "v")).unwrap();
        let p = s.get_partition("ks.c", &key("x", 1)).unwrap().unwrap();
        assert_eq!(p.statics.unwrap().cells, vec![Some(b"two".to_vec())]);
        assert_eq!(p.rows.len(), 2);
        for (row, needle) in [
            (part().blob("v", "x"), "Some clustering keys are missing: c, d"),
            (part(), "Some clustering keys are missing"),
            (part().clustering([Value::Int(1)]), "1 clustering values for 2 clustering columns"),
            (part().clustering([Value::Int(1), Value::Int(2)]), "clustering column d is text but the value is int"),
            (part().clustering([Value::Null, Value::Text("a".into())]), "clustering column c may not be null"),
            (Row::partition([Value::Text("x".into())]).blob("s", "x"), "composite key"),
            (Row::partition([Value::Text("x".into()), Value::Bigint(1)]).blob("s", "x"), "partition key b"),
        ] {
            let e = s.insert("ks.c", row).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn duplicate_and_system_tables_are_refused() {
        let t = Table::new("ks", "t", "k", ColumnType::Text);
        assert!(Store::new(vec![t.clone(), t], 0).is_err());
        assert!(Store::new(vec![Table::new("system", "x", "k", ColumnType::Text)], 0).is_err());
    }

    #[test]
    fn exclusive_lower_bound_at_max_token_is_empty() {
        assert!(lower_from_token(i64::MAX, false).is_none());
        assert_eq!(lower_from_token(5, false), Some(Bound::Included((6, Vec::new()))));
    }
}
