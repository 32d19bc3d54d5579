//! What a table is, as `system_schema.columns` says: its partition key (columns in order), clustering,
//! static and regular columns. Read once at start by the lister, repair and verify, so that the flags
//! are checked against the table before anything is listed or fetched: `--key-column` must name the
//! partition key exactly (every column, in order), and a flag that reads a row's value says what it
//! means when a partition has many rows (see [`TableDef::per_partition`]).

use super::session::ident;
use crate::error::{Error, Result};
use scylla::client::session::Session;

/// What kind of column `system_schema.columns` says a column is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    PartitionKey,
    Clustering,
    Static,
    Regular,
}

/// One table's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// `keyspace.table`, as the user named it.
    pub name: String,
    /// Partition key columns in key order, with their CQL type names.
    pub partition_key: Vec<(String, String)>,
    /// Clustering columns in clustering order.
    pub clustering: Vec<String>,
    /// Every other column and its kind.
    pub others: Vec<(String, Kind)>,
}

const QUERY: &str =
    "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?";

impl TableDef {
    /// Reads the table's columns from `system_schema.columns`.
    pub async fn describe(session: &Session, keyspace: &str, table: &str) -> Result<TableDef> {
        let name = format!("{keyspace}.{table}");
        let ctx = || format!("{name}: reading its columns from system_schema.columns");
        let stmt = session.prepare(QUERY).await.map_err(|e| Error::remote(ctx(), e))?;
        let res = session.execute_unpaged(&stmt, (keyspace, table)).await.map_err(|e| Error::remote(ctx(), e))?;
        let rows = res.into_rows_result().map_err(|e| Error::remote(ctx(), e))?;
        let mut cols = Vec::new();
        for r in rows.rows::<(String, String, i32, String)>().map_err(|e| Error::remote(ctx(), e))? {
            cols.push(r.map_err(|e| Error::remote(ctx(), e))?);
        }
        Self::from_columns(name, cols)
    }

    /// From `system_schema.columns` rows: (column_name, kind, position, type).
    pub fn from_columns(name: String, mut cols: Vec<(String, String, i32, String)>) -> Result<TableDef> {
        if cols.is_empty() {
            return Err(Error::Schema {
                table: name,
                msg: "no such table (system_schema.columns has no column of it)".into(),
            });
        }
        cols.sort_by_key(|c| c.2);
        let mut t = TableDef { name, partition_key: Vec::new(), clustering: Vec::new(), others: Vec::new() };
        for (col, kind, _, typ) in cols {
            match kind.as_str() {
                "partition_key" => t.partition_key.push((col, typ)),
                "clustering" => t.clustering.push(col),
                "static" => t.others.push((col, Kind::Static)),
                _ => t.others.push((col, Kind::Regular)),
            }
        }
        Ok(t)
    }

    /// The partition key as CQL would write it: `(bucket, id)`.
    pub fn key_names(&self) -> String {
        let names: Vec<String> = self.partition_key.iter().map(|(c, t)| format!("{} {t}", ident(c))).collect();
        format!("({})", names.join(", "))
    }

    /// The kind of `col`, if the table has it.
    pub fn kind(&self, col: &str) -> Option<Kind> {
        if self.partition_key.iter().any(|(c, _)| c == col) {
            Some(Kind::PartitionKey)
        } else if self.clustering.iter().any(|c| c == col) {
            Some(Kind::Clustering)
        } else {
            self.others.iter().find(|(c, _)| c == col).map(|(_, k)| *k)
        }
    }

    /// A partition may hold many rows (the table has clustering columns).
    pub fn is_wide(&self) -> bool {
        !self.clustering.is_empty()
    }

    /// Checks that `columns` is the partition key: every column, in key order. The error lists the
    /// table's real partition key and says what is wrong.
    pub fn check_key(&self, columns: &[String]) -> Result<()> {
        let real: Vec<&str> = self.partition_key.iter().map(|(c, _)| c.as_str()).collect();
        if real == columns {
            return Ok(());
        }
        let mut what = Vec::new();
        for c in columns {
            match self.kind(c) {
                None => what.push(format!("{c} is not a column of the table")),
                Some(Kind::PartitionKey) => {}
                Some(Kind::Clustering) => {
                    what.push(format!("{c} is a clustering column, not part of the partition key"))
                }
                Some(_) => what.push(format!("{c} is not part of the partition key")),
            }
        }
        let missing: Vec<&str> = real.iter().filter(|c| !columns.iter().any(|g| g == *c)).copied().collect();
        if !missing.is_empty() {
            what.push(format!("{} missing", missing.join(", ")));
        }
        if what.is_empty() {
            what.push("the columns are out of order".into());
        }
        Err(Error::Schema {
            table: self.name.clone(),
            msg: format!(
                "--key-column {} is not the partition key: {}. The partition key is {}: pass --key-column {}",
                columns.join(","),
                what.join("; "),
                self.key_names(),
                real.join(",")
            ),
        })
    }

    /// Checks that `col` (a `flag`'s column) holds one value per partition: any column of a table
    /// without clustering columns, a static one in a table with. A regular column of a wide partition
    /// holds one value per row, and reading it means reading every row, which listing by partition
    /// avoids: refused, with what to do instead.
    pub fn per_partition(&self, flag: &str, col: &str, instead: &str) -> Result<()> {
        let msg = match self.kind(col) {
            None => format!("{flag} {col}: the table has no column {col}"),
            Some(Kind::Regular) if self.is_wide() => format!(
                "{flag} {col}: the table has clustering columns ({}), so a partition holds many rows and {col} one \
                 value per row; keyrecon lists each partition once (SELECT DISTINCT) and cannot say which row's \
                 {col} is the partition's. {instead}",
                self.clustering.join(", ")
            ),
            Some(_) => return Ok(()),
        };
        Err(Error::Schema { table: self.name.clone(), msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> TableDef {
        let c = |n: &str, k: &str, p: i32, t: &str| (n.to_string(), k.to_string(), p, t.to_string());
        TableDef::from_columns(
            "media.parts".into(),
            vec![
                c("id", "partition_key", 1, "bigint"),
                c("data", "regular", -1, "blob"),
                c("bucket", "partition_key", 0, "text"),
                c("part", "clustering", 0, "int"),
                c("meta", "static", -1, "blob"),
            ],
        )
        .unwrap()
    }

    fn strs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn key_columns_must_be_the_partition_key_in_order() {
        let t = parts();
        assert_eq!(t.key_names(), "(bucket text, id bigint)");
        t.check_key(&strs(&["bucket", "id"])).unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&["id", "bucket"], "the columns are out of order"),
            (&["bucket"], "id missing"),
            (&["bucket", "id", "part"], "part is a clustering column"),
            (&["bucket", "id", "meta"], "meta is not part of the partition key"),
            (&["bucket", "nope"], "nope is not a column of the table; id missing"),
        ];
        for (given, why) in cases {
            let e = t.check_key(&strs(given)).unwrap_err().to_string();
            assert!(e.contains(why), "{given:?}: {e}");
            assert!(
                e.starts_with("media.parts: --key-column")
                    && e.ends_with("The partition key is (bucket text, id bigint): pass --key-column bucket,id"),
                "{e}"
            );
        }
        assert!(TableDef::from_columns("ks.none".into(), vec![]).unwrap_err().to_string().contains("no such table"));
    }

    #[test]
    fn row_values_of_wide_partitions_are_refused() {
        let t = parts();
        assert!(t.is_wide());
        t.per_partition("--size-of", "meta", "").unwrap();
        t.per_partition("--writetime-of", "bucket", "").unwrap();
        let e = t.per_partition("--size-of", "data", "Use a static column.").unwrap_err().to_string();
        assert!(e.contains("clustering columns (part)") && e.ends_with("Use a static column."), "{e}");
        assert!(t.per_partition("--size-of", "x", "").unwrap_err().to_string().contains("no column x"));
    }
}
