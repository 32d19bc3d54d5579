//! Fetching blobs from Cassandra: `SELECT blob FROM ks.t WHERE a = ? AND b = ?`, prepared once per
//! table, for `--source` and then each `--fallback` in order.
//!
//! Each table's schema is checked first (`--key-column` is its partition key, in order; in a table
//! with clustering columns the blob column must be static, the partition's one value, and the lookup
//! reads one row: `LIMIT 1`). The key is parsed back into its columns' values by the lister's own
//! [`KeyCodec`] (the inverse of how keyrecon-list-cassandra wrote it), so the lookup names exactly the
//! row that was listed. A one-column key that cannot be that column's type (`abc` for a bigint) is not
//! in that table ([`Lookup::NotAKey`], as before composite keys); a key written by a template that
//! does not parse back into its columns names no row at all ([`Lookup::Unparsable`]: the caller fails
//! it at the "key" stage with the reason, rather than guess a row).
//!
//! One call is one request: retries, backoff and throttling belong to the caller (`repair::mod`),
//! which gets a [`RequestError`] saying whether the error is worth retrying and whether it signals load.

use super::retry::RequestError;
use crate::error::{Error, Result};
use crate::sources::cassandra::pk::{KeyCodec, KeyFormat, KeyType};
use crate::sources::cassandra::session::{self, ident, Connect};
use crate::sources::cassandra::table::{Kind, TableDef};
use scylla::client::session::Session;
use scylla::deserialize::row::ColumnIterator;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::frame::response::result::ColumnType;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::serialize::SerializationError;
use scylla::statement::prepared::PreparedStatement;

/// Where blobs come from: the source table first, then the fallbacks, in lookup order.
#[derive(Clone, Debug)]
pub struct BlobSource {
    pub connect: Connect,
    pub tables: Vec<TableRef>,
    /// The partition key columns and how keys write them.
    pub key: KeyFormat,
    /// The column holding the object's bytes.
    pub blob_column: String,
}

/// `keyspace.table` as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub keyspace: String,
    pub table: String,
}

impl TableRef {
    pub fn parse(s: &str) -> std::result::Result<TableRef, String> {
        match s.split_once('.') {
            Some((k, t)) if !k.is_empty() && !t.is_empty() && !t.contains('.') => {
                Ok(TableRef { keyspace: k.to_string(), table: t.to_string() })
            }
            _ => Err(format!("{s:?}: expected KEYSPACE.TABLE")),
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

/// Already-serialized cell bytes, bound as they are (their type was checked by [`KeyCodec::parse`]).
struct Raw<'a>(&'a [u8]);

impl SerializeValue for Raw<'_> {
    fn serialize<'b>(
        &self,
        _typ: &ColumnType,
        writer: CellWriter<'b>,
    ) -> std::result::Result<WrittenCellProof<'b>, SerializationError> {
        writer.set_value(self.0).map_err(SerializationError::new)
    }
}

struct Source {
    table: TableRef,
    name: String,
    stmt: PreparedStatement,
    key: KeyCodec,
}

/// One connection pool, one prepared lookup per table.
pub struct Fetcher {
    session: Session,
    sources: Vec<Source>,
}

/// What one table said about one key.
#[derive(Debug)]
pub enum Lookup {
    Found(Vec<u8>),
    /// No row, or a row whose blob is null.
    Absent,
    /// The key cannot be a value of this table's key type.
    NotAKey(String),
    /// The key does not parse back into the key columns (a key of several columns, or written by
    /// --key-template): it names no row, and no table is asked.
    Unparsable(String),
}

impl Fetcher {
    /// Connects, checks every table's schema and prepares its lookup (`tables[0]` is the source).
    pub async fn connect(src: &BlobSource) -> Result<Fetcher> {
        let session = session::connect(&src.connect).await?;
        let mut sources = Vec::new();
        for t in &src.tables {
            sources.push(Self::prepare(&session, src, t).await?);
        }
        Ok(Fetcher { session, sources })
    }

    async fn prepare(session: &Session, src: &BlobSource, t: &TableRef) -> Result<Source> {
        let def = TableDef::describe(session, &t.keyspace, &t.table).await?;
        def.check_key(src.key.columns())?;
        let blob = &src.blob_column;
        match def.kind(blob) {
            None => {
                return Err(Error::Schema { table: def.name, msg: format!("--blob-column {blob}: no such column") })
            }
            Some(Kind::Regular) if def.is_wide() => {
                return Err(Error::Schema {
                    table: def.name.clone(),
                    msg: format!(
                        "--blob-column {blob}: the table has clustering columns ({}), so a partition holds many rows \
                         and {blob} one value per row; which row holds the object is not known. Name a static \
                         column (one value per partition).",
                        def.clustering.join(", ")
                    ),
                })
            }
            Some(_) => {}
        }
        let key: Vec<String> = src.key.columns().iter().map(|c| format!("{} = ?", ident(c))).collect();
        let cql = format!(
            "SELECT {} FROM {}.{} WHERE {}{}",
            ident(blob),
            ident(&t.keyspace),
            ident(&t.table),
            key.join(" AND "),
            // The static value is on every row of the partition: read one.
            if def.is_wide() { " LIMIT 1" } else { "" }
        );
        let stmt =
            session.prepare(cql.as_str()).await.map_err(|e| Error::remote(format!("{t}: preparing {cql:?}"), e))?;
        let specs = stmt.get_variable_col_specs();
        let mut types = Vec::new();
        for (i, c) in src.key.columns().iter().enumerate() {
            let spec = specs
                .get_by_index(i)
                .ok_or_else(|| Error::Internal(format!("{t}: {cql:?} has no bind marker {}", i + 1)))?;
            types.push(
                KeyType::of(spec.typ())
                    .map_err(|e| Error::Schema { table: t.to_string(), msg: format!("{c}: {e}") })?,
            );
        }
        Ok(Source { name: t.to_string(), table: t.clone(), stmt, key: KeyCodec::new(src.key.clone(), types) })
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableRef> {
        self.sources.iter().map(|s| &s.table)
    }

    pub fn name(&self, i: usize) -> &str {
        &self.sources[i].name
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Looks `key` up in table `i` (one request).
    pub async fn get(&self, i: usize, key: &[u8]) -> std::result::Result<Lookup, RequestError> {
        let s = &self.sources[i];
        let bound = match s.key.parse(key) {
            Ok(b) => b,
            Err(why) if s.key.format().is_raw() => return Ok(Lookup::NotAKey(why)),
            Err(why) => return Ok(Lookup::Unparsable(why)),
        };
        let bound: Vec<Raw> = bound.iter().map(|b| Raw(b)).collect();
        let fatal = |e: &dyn std::fmt::Display| RequestError::new(format!("{}: {e}", s.name), false, false);
        let res = match self.session.execute_unpaged(&s.stmt, &bound).await {
            Ok(r) => r,
            Err(e) => {
                let (retry, load) = classify(&e);
                return Err(RequestError::new(format!("{}: {e}", s.name), retry, load));
            }
        };
        let rows = res.into_rows_result().map_err(|e| fatal(&e))?;
        let mut it = rows.rows::<ColumnIterator>().map_err(|e| fatal(&e))?;
        let Some(row) = it.next() else {
            return Ok(Lookup::Absent);
        };
        let mut cols = row.map_err(|e| fatal(&e))?;
        let col = cols.next().ok_or_else(|| fatal(&"empty row"))?.map_err(|e| fatal(&e))?;
        Ok(match col.slice {
            Some(b) => Lookup::Found(b.as_slice().to_vec()),
            None => Lookup::Absent,
        })
    }
}

/// (worth retrying, load signal)
fn classify(e: &ExecutionError) -> (bool, bool) {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::ReadTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::Overloaded
            | DbError::RateLimitReached { .. } => (true, true),
            DbError::Unavailable { .. } | DbError::ServerError | DbError::IsBootstrapping | DbError::TruncateError => {
                (true, false)
            }
            _ => (false, false),
        },
        ExecutionError::LastAttemptError(
            RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId,
        ) => (true, false),
        ExecutionError::RequestTimeout(_) => (true, true),
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => (true, false),
        _ => (false, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_refs_parse() {
        assert_eq!(TableRef::parse("ks.t").unwrap().to_string(), "ks.t");
        assert!(TableRef::parse("kst").is_err());
        assert!(TableRef::parse("a.b.c").is_err());
    }
}
