//! In-memory partitions of the fixture tables, kept in ring order.
//!
//! Role: hold each table's rows in a `BTreeMap` keyed by `(token, key bytes)`,
//! which is exactly the order a Cassandra node serves partitions in (tokens
//! ascending, ties broken by unsigned key bytes), and let tests insert and
//! delete rows while the node is serving.
//!
//! Invariants:
//! - A stored row's key is never empty (CQL forbids empty partition keys) and is
//!   a valid value of the table's partition-key type.
//! - `cells[i]` belongs to `Table::columns[i]` and has been type-checked.
//! - Locks are held only for synchronous work (a page scan, an insert), never
//!   across an `.await`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::error::{show_key, Error, Result};
use crate::murmur3;
use crate::schema::{Row, Table};

/// Ring position of a partition: token, then key bytes.
pub type RowKey = (i64, Vec<u8>);

/// A stored partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub cells: Vec<Option<Vec<u8>>>,
    /// Microseconds; applies to every non-null cell.
    pub writetime: i64,
    pub ttl: Option<i32>,
}

/// One table's schema and rows.
pub struct TableData {
    pub schema: Arc<Table>,
    pub rows: RwLock<BTreeMap<RowKey, StoredRow>>,
}

impl TableData {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<RowKey, StoredRow>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (inserts are single map operations), so poisoning is ignored.
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<RowKey, StoredRow>> {
        self.rows.write().unwrap_or_else(|e| e.into_inner())
    }
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

    /// Inserts (or replaces) a partition. Returns true if it replaced one.
    pub fn insert(&self, table: &str, row: Row) -> Result<bool> {
        let td = self.table_by_name(table)?;
        let (key, stored) = self.to_stored(&td.schema, row)?;
        Ok(td.write().insert(key, stored).is_some())
    }

    /// Inserts many partitions under one lock.
    pub fn insert_many(&self, table: &str, rows: impl IntoIterator<Item = Row>) -> Result<usize> {
        let td = self.table_by_name(table)?;
        let mut converted = Vec::new();
        for row in rows {
            converted.push(self.to_stored(&td.schema, row)?);
        }
        let n = converted.len();
        let mut map = td.write();
        for (k, v) in converted {
            map.insert(k, v);
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

    /// All partition keys of a table in ring order.
    pub fn keys(&self, table: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self.table_by_name(table)?.read().keys().map(|(_, k)| k.clone()).collect())
    }

    /// A stored partition's cells by column name, or `None` if absent.
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<StoredRow>> {
        let td = self.table_by_name(table)?;
        let k = (murmur3::token(key), key.to_vec());
        Ok(td.read().get(&k).cloned())
    }

    fn to_stored(&self, t: &Table, row: Row) -> Result<(RowKey, StoredRow)> {
        let table = format!("{}.{}", t.keyspace, t.name);
        let err = |reason: String| Error::Row { table: table.clone(), key: show_key(&row.key), reason };
        if row.key.is_empty() {
            return Err(err("Key may not be empty".into()));
        }
        t.partition_key.1.validate(&row.key).map_err(|r| err(format!("partition key {}: {r}", t.partition_key.0)))?;
        let mut cells = vec![None; t.columns.len()];
        for (name, value) in &row.cells {
            let i = t.column_index(name).ok_or_else(|| err(format!("no regular column {name:?}")))?;
            if let Some(vt) = value.column_type() {
                if vt != t.columns[i].1 {
                    return Err(err(format!(
                        "column {name} is {} but the value is {}",
                        t.columns[i].1.name(),
                        vt.name()
                    )));
                }
            }
            cells[i] = value.serialize();
        }
        let key = (murmur3::token(&row.key), row.key.clone());
        Ok((key, StoredRow { cells, writetime: row.writetime.unwrap_or(self.default_writetime), ttl: row.ttl }))
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
    use crate::schema::{ColumnType, Value};

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
        let e = s.insert("ks.t", Row::new(vec![0xff])).unwrap_err().to_string();
        assert!(e.contains("partition key k"), "{e}");
        assert!(matches!(s.insert("ks.x", Row::new("a")), Err(Error::UnknownTable(_))));
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
