//! Fetching blobs from Cassandra: `SELECT blob FROM ks.t WHERE a = ? AND b = ?`, prepared once per
//! table, for `--source` and then each `--fallback` in order.
//!
//! The tables may be on several clusters ([`ClusterSource`]): the first is the one of
//! `--contact-points` (the source table and its plain `--fallback KS.TABLE`s), then each `--cluster
//! NAME=...` in the order given, with its `--fallback NAME:KS.TABLE`s. [`Fetcher::fetch`] asks the
//! tables in that order (the lookup order) and stops at the first that has the blob. Every cluster has
//! its own session; a fallback cluster also has its own AIMD limit on requests in flight
//! (`--cluster-concurrency`, fed by its own latency and load signals, never slowing the first cluster)
//! and its own attempts (`--cluster-retries`); the first cluster's requests go through the tool's
//! throttle and `--retries` as before.
//!
//! The first cluster must connect (else the run does not start). A fallback cluster that cannot be
//! reached at the start is reported (stderr, summary.json) and the run goes on: a key found before it
//! in the lookup order is unaffected, a key that would be asked of it fails at the "fetch" stage with
//! the reason (never `not found`, and never taken from a cluster after it: the lookup order decides
//! which copy of a blob wins). A rerun (`--resume`) tries those keys again. A cluster that fails during
//! the run fails its keys the same way, after its retries.
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

use super::retry::{Own, RequestError, Retry};
use super::throttle::Side;
use crate::error::{Error, Result};
use crate::limit::Limiter;
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Where blobs come from: the clusters and their tables, in lookup order.
#[derive(Clone, Debug)]
pub struct BlobSource {
    /// `clusters[0]` is the cluster of `--contact-points`, its `tables[0]` the source table.
    pub clusters: Vec<ClusterSource>,
    /// The partition key columns and how keys write them.
    pub key: KeyFormat,
    /// The column holding the object's bytes.
    pub blob_column: String,
}

/// One cluster's connection and the tables read from it, in lookup order.
#[derive(Clone, Debug)]
pub struct ClusterSource {
    /// `connect.cluster`: `None` for the first cluster, else the `--cluster` name.
    pub connect: Connect,
    pub tables: Vec<TableRef>,
    /// A fallback cluster's requests in flight at most (`--cluster-concurrency`; default the tool's
    /// `--concurrency`). Not used for the first cluster, whose requests the tool's throttle limits.
    pub concurrency: Option<usize>,
    /// A fallback cluster's further attempts of a failed request (`--cluster-retries`; default the
    /// tool's `--retries`). Not used for the first cluster.
    pub retries: Option<u32>,
}

impl BlobSource {
    /// Every table's name in lookup order (`media.objects`, `old:media.objects`).
    pub fn table_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for c in &self.clusters {
            v.extend(c.tables.iter().map(|t| table_name(c.connect.cluster.as_deref(), t)));
        }
        v
    }
}

/// How outcome files and messages name a table: `KS.TABLE` in the first cluster, `NAME:KS.TABLE` in
/// the fallback cluster NAME (as `--fallback` takes it).
pub fn table_name(cluster: Option<&str>, t: &TableRef) -> String {
    match cluster {
        Some(c) => format!("{c}:{t}"),
        None => t.to_string(),
    }
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

/// One table's prepared lookup.
struct Source {
    /// Index into [`Fetcher::clusters`].
    cluster: usize,
    name: String,
    /// `None` while the cluster is not connected.
    lookup: Option<(PreparedStatement, KeyCodec)>,
    /// Blobs found here.
    found: AtomicU64,
}

/// One cluster as the fetcher holds it.
struct Cluster {
    /// `Err`: the fallback cluster could not be reached at the start, and why.
    session: std::result::Result<Session, String>,
    /// A fallback cluster's own limit and attempts (`None` for the first cluster).
    own: Option<(Limiter, u32)>,
    retries: AtomicU64,
}

/// What the tool's flags say about load, for the fallback clusters' own limits.
#[derive(Clone, Copy, Debug)]
pub struct Manners {
    pub tool: &'static str,
    /// The tool's `--concurrency` and `--retries`: a fallback cluster's defaults.
    pub concurrency: usize,
    pub retries: u32,
    pub latency_target: Duration,
    pub quiet: bool,
}

impl Manners {
    pub fn new(tool: &'static str, concurrency: usize, retries: u32, latency_target: Duration, quiet: bool) -> Manners {
        Manners { tool, concurrency, retries, latency_target, quiet }
    }
}

/// One session per cluster, one prepared lookup per table.
pub struct Fetcher {
    clusters: Vec<Cluster>,
    /// Every table, in lookup order.
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

/// What the lookup order said about one key.
#[derive(Debug)]
pub enum Fetched {
    /// The blob, from the table [`Fetcher::name`]`(from)`; `from > 0` is a fallback.
    Found { blob: Vec<u8>, from: usize },
    /// In no table: `not in media.objects, old:media.objects (why)`.
    NotFound(String),
    /// No answer: `stage` is "key" (the key names no row) or "fetch" (a request failed for good, or a
    /// cluster is not connected); `reason` says which table or cluster and why.
    Failed { stage: &'static str, reason: String },
}

/// A fallback cluster's part of a summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClusterSummary {
    pub name: String,
    pub contact_points: Vec<String>,
    pub tables: Vec<String>,
    /// Not connected at the start: why (its keys failed at the "fetch" stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_connected: Option<String>,
    /// Blobs found in its tables.
    pub blobs: u64,
    pub retries: u64,
    pub throttle_events: u64,
    pub min_concurrency: usize,
}

impl Fetcher {
    /// Connects to every cluster at once, checks every table's schema and prepares its lookup. The
    /// first cluster must connect; a fallback cluster that cannot is reported on stderr (unless quiet)
    /// and fails the keys that reach it. A table that is not what the flags say stops the run.
    pub async fn connect(src: &BlobSource, m: Manners) -> Result<Fetcher> {
        let sessions = futures::future::join_all(src.clusters.iter().map(|c| session::connect(&c.connect))).await;
        let mut clusters = Vec::new();
        let mut sources = Vec::new();
        for (i, (c, session)) in src.clusters.iter().zip(sessions).enumerate() {
            let label = c.connect.label();
            let session = match session {
                Ok(s) => Ok(s),
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    let why = crate::error::chain(&e);
                    if !m.quiet {
                        eprintln!(
                            "{}: {why}; the keys not found before it in the lookup order fail (stage fetch) with this reason",
                            m.tool
                        );
                    }
                    Err(why)
                }
            };
            let own = (i > 0).then(|| {
                let limit = Limiter::new(
                    format!("{}: {label}", m.tool),
                    c.concurrency.unwrap_or(m.concurrency),
                    m.latency_target,
                    &["cassandra"],
                    super::throttle::EWMA_WEIGHT,
                    m.quiet,
                );
                (limit, c.retries.unwrap_or(m.retries) + 1)
            });
            for t in &c.tables {
                let lookup = match &session {
                    Ok(s) => Some(Self::prepare(s, src, t).await?),
                    Err(_) => None,
                };
                let name = table_name(c.connect.cluster.as_deref(), t);
                sources.push(Source { cluster: i, name, lookup, found: AtomicU64::new(0) });
            }
            clusters.push(Cluster { session, own, retries: AtomicU64::new(0) });
        }
        Ok(Fetcher { clusters, sources })
    }

    async fn prepare(session: &Session, src: &BlobSource, t: &TableRef) -> Result<(PreparedStatement, KeyCodec)> {
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
        Ok((stmt, KeyCodec::new(src.key.clone(), types)))
    }

    /// Table `i`'s name, as outcome files show it.
    pub fn name(&self, i: usize) -> &str {
        &self.sources[i].name
    }

    /// Looks `key` up in each table in lookup order until one has it. The first cluster's requests go
    /// through `retry` as they are; a fallback cluster's wait for a slot of its own limit and are tried
    /// its own number of times. `attempts` counts the requests made.
    pub async fn fetch(&self, retry: &Retry<'_>, attempts: &mut u32, key: &[u8]) -> Fetched {
        let mut tried = Vec::new();
        let shown = || String::from_utf8_lossy(key);
        for (i, s) in self.sources.iter().enumerate() {
            let c = &self.clusters[s.cluster];
            if let Err(why) = &c.session {
                let before = if tried.is_empty() { String::new() } else { format!("not in {}; ", tried.join(", ")) };
                let reason = format!("key {:?}: {before}{} not asked: {why}", shown(), s.name);
                return Fetched::Failed { stage: "fetch", reason };
            }
            let r = match &c.own {
                None => retry.run(Side::Cassandra, attempts, || self.get(i, key)).await,
                Some((limit, max_attempts)) => {
                    let _slot = limit.acquire().await;
                    let own = Own { limit, max_attempts: *max_attempts, retries: &c.retries };
                    retry.run_own(Side::Cassandra, &own, attempts, || self.get(i, key)).await
                }
            };
            match r {
                Ok(Lookup::Found(blob)) => {
                    s.found.fetch_add(1, Relaxed);
                    return Fetched::Found { blob, from: i };
                }
                Ok(Lookup::Absent) => tried.push(s.name.clone()),
                Ok(Lookup::NotAKey(why)) => tried.push(format!("{} ({why})", s.name)),
                Ok(Lookup::Unparsable(why)) => return Fetched::Failed { stage: "key", reason: why },
                Err(e) => return Fetched::Failed { stage: "fetch", reason: format!("key {:?}: {}", shown(), e.msg) },
            }
        }
        Fetched::NotFound(format!("not in {}", tried.join(", ")))
    }

    /// The fallback clusters' part of a summary (empty with one cluster).
    pub fn fallback_clusters(&self, src: &BlobSource) -> Vec<ClusterSummary> {
        let mut v = Vec::new();
        for (i, (c, cs)) in self.clusters.iter().zip(&src.clusters).enumerate().skip(1) {
            let mine = self.sources.iter().filter(|s| s.cluster == i);
            let (limit, _) = c.own.as_ref().expect("a fallback cluster has its own limit");
            v.push(ClusterSummary {
                name: cs.connect.cluster.clone().unwrap_or_default(),
                contact_points: cs.connect.contact_points.clone(),
                tables: mine.clone().map(|s| s.name.clone()).collect(),
                not_connected: c.session.as_ref().err().cloned(),
                blobs: mine.map(|s| s.found.load(Relaxed)).sum(),
                retries: c.retries.load(Relaxed),
                throttle_events: limit.events.load(Relaxed),
                min_concurrency: limit.min_limit.load(Relaxed),
            });
        }
        v
    }

    /// Looks `key` up in table `i` (one request; its cluster is connected).
    async fn get(&self, i: usize, key: &[u8]) -> std::result::Result<Lookup, RequestError> {
        let s = &self.sources[i];
        let (Ok(session), Some((stmt, codec))) = (&self.clusters[s.cluster].session, &s.lookup) else {
            return Err(RequestError::new(format!("{}: not connected", s.name), false, false));
        };
        let bound = match codec.parse(key) {
            Ok(b) => b,
            Err(why) if codec.format().is_raw() => return Ok(Lookup::NotAKey(why)),
            Err(why) => return Ok(Lookup::Unparsable(why)),
        };
        let bound: Vec<Raw> = bound.iter().map(|b| Raw(b)).collect();
        let fatal = |e: &dyn std::fmt::Display| RequestError::new(format!("{}: {e}", s.name), false, false);
        let res = match session.execute_unpaged(stmt, &bound).await {
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
