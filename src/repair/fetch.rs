//! Fetching blobs from Cassandra: `SELECT blob FROM ks.t WHERE k = ?`, prepared once per table, for
//! `--source` and then each `--fallback` in order.
//!
//! The key is bound as the bytes the key column's type expects, converted from the key as the
//! listers print it (text/ascii/blob: the bytes as stored; integers: decimal text; uuid: hyphenated
//! hex) — the inverse of `sources::cassandra::scan::KeyKind`. A key that cannot be that type (a
//! non-UTF-8 key for a text column, `abc` for a bigint) is not in that table.
//!
//! One call is one request: retries, backoff and throttling belong to the caller (`repair::mod`),
//! which gets a [`RequestError`] saying whether the error is worth retrying and whether it signals load.

use super::retry::RequestError;
use crate::error::{Error, Result};
use crate::sources::cassandra::session::{self, ident, Connect};
use scylla::client::session::Session;
use scylla::deserialize::row::ColumnIterator;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::frame::response::result::{ColumnType, NativeType};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::serialize::SerializationError;
use scylla::statement::prepared::PreparedStatement;

/// Where blobs come from: the source table first, then the fallbacks, in lookup order.
#[derive(Clone, Debug)]
pub struct BlobSource {
    pub connect: Connect,
    pub tables: Vec<TableRef>,
    /// The partition key column.
    pub key_column: String,
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

/// How a printed key becomes the bound value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Text,
    Blob,
    /// Big-endian integer of this many bytes.
    Int(usize),
    Uuid,
}

impl KeyType {
    pub fn of(t: &ColumnType) -> std::result::Result<KeyType, String> {
        Ok(match t {
            ColumnType::Native(NativeType::Text | NativeType::Ascii) => KeyType::Text,
            ColumnType::Native(NativeType::Blob) => KeyType::Blob,
            ColumnType::Native(NativeType::BigInt) => KeyType::Int(8),
            ColumnType::Native(NativeType::Int) => KeyType::Int(4),
            ColumnType::Native(NativeType::SmallInt) => KeyType::Int(2),
            ColumnType::Native(NativeType::TinyInt) => KeyType::Int(1),
            ColumnType::Native(NativeType::Uuid | NativeType::Timeuuid) => KeyType::Uuid,
            o => return Err(format!("key column type {o:?} is not supported (text, ascii, blob, integers, uuid)")),
        })
    }

    /// The serialized value of `key` for this type, or why it cannot be one.
    pub fn encode(self, key: &[u8]) -> std::result::Result<Vec<u8>, String> {
        match self {
            KeyType::Blob => Ok(key.to_vec()),
            KeyType::Text => std::str::from_utf8(key)
                .map(|_| key.to_vec())
                .map_err(|_| "key is not valid UTF-8, the key column is text".to_string()),
            KeyType::Int(n) => {
                let v: i64 = std::str::from_utf8(key)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("key is not a decimal integer, the key column is one")?;
                let bytes = v.to_be_bytes();
                let (hi, lo) = bytes.split_at(8 - n);
                // In range iff the dropped high bytes are the sign extension of the kept ones.
                let sign = if lo[0] & 0x80 != 0 { 0xff } else { 0 };
                if hi.iter().any(|b| *b != sign) {
                    return Err(format!("key {v} does not fit the {}-byte integer key column", n));
                }
                Ok(lo.to_vec())
            }
            KeyType::Uuid => {
                let hex: Vec<u8> = key.iter().copied().filter(|b| *b != b'-').collect();
                if hex.len() != 32 || key.len() != 36 {
                    return Err("key is not a hyphenated UUID, the key column is a uuid".into());
                }
                crate::hex::decode(std::str::from_utf8(&hex).unwrap_or("zz"))
                    .map_err(|_| "key is not a hyphenated UUID, the key column is a uuid".into())
            }
        }
    }
}

/// Already-serialized cell bytes, bound as they are (their type was checked by [`KeyType::encode`]).
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
    key_type: KeyType,
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
}

impl Fetcher {
    /// Connects and prepares the lookup of every table (`tables[0]` is the source).
    pub async fn connect(src: &BlobSource) -> Result<Fetcher> {
        let (tables, key_column, blob_column) = (&src.tables, &src.key_column, &src.blob_column);
        let session = session::connect(&src.connect).await?;
        let mut sources = Vec::new();
        for t in tables {
            let cql = format!(
                "SELECT {} FROM {}.{} WHERE {} = ?",
                ident(blob_column),
                ident(&t.keyspace),
                ident(&t.table),
                ident(key_column)
            );
            let stmt =
                session.prepare(cql.as_str()).await.map_err(|e| Error::remote(format!("{t}: preparing {cql:?}"), e))?;
            let specs = stmt.get_variable_col_specs();
            let spec =
                specs.get_by_index(0).ok_or_else(|| Error::Internal(format!("{t}: {cql:?} has no bind marker")))?;
            let key_type = KeyType::of(spec.typ()).map_err(|e| Error::Usage(format!("{t}.{key_column}: {e}")))?;
            sources.push(Source { name: t.to_string(), table: t.clone(), stmt, key_type });
        }
        Ok(Fetcher { session, sources })
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
        let bound = match s.key_type.encode(key) {
            Ok(b) => b,
            Err(why) => return Ok(Lookup::NotAKey(why)),
        };
        let fatal = |e: &dyn std::fmt::Display| RequestError::new(format!("{}: {e}", s.name), false, false);
        let res = match self.session.execute_unpaged(&s.stmt, (Raw(&bound),)).await {
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
    fn keys_encode_as_their_column_type() {
        assert_eq!(KeyType::Text.encode(b"abc").unwrap(), b"abc");
        assert!(KeyType::Text.encode(b"a\xff").unwrap_err().contains("UTF-8"));
        assert_eq!(KeyType::Blob.encode(b"a\xff").unwrap(), b"a\xff");
        assert_eq!(KeyType::Int(8).encode(b"-2").unwrap(), (-2i64).to_be_bytes());
        assert_eq!(KeyType::Int(4).encode(b"258").unwrap(), 258i32.to_be_bytes());
        assert_eq!(KeyType::Int(1).encode(b"-128").unwrap(), [0x80]);
        assert!(KeyType::Int(1).encode(b"128").is_err());
        assert!(KeyType::Int(8).encode(b"x1").is_err());
        let u = KeyType::Uuid.encode(b"00112233-4455-6677-8899-aabbccddeeff").unwrap();
        assert_eq!(u, (0..16u8).map(|i| i * 0x11).collect::<Vec<_>>());
        assert!(KeyType::Uuid.encode(b"00112233445566778899aabbccddeeff").is_err());
        assert_eq!(TableRef::parse("ks.t").unwrap().to_string(), "ks.t");
        assert!(TableRef::parse("kst").is_err());
        assert!(TableRef::parse("a.b.c").is_err());
    }
}
