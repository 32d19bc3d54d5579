//! **TEST NODE ONLY** — a CQL native protocol v4 server that serves fixture
//! tables to the real `scylla` driver in keyrecon's tests. It is not Cassandra
//! and must never be pointed at by production code.
//!
//! What it does: answers the driver's handshake (OPTIONS, STARTUP, optional
//! PasswordAuthenticator SASL PLAIN, REGISTER), optionally over TLS, serves
//! the system tables the driver reads (`system.local`, `system.peers`,
//! `system_schema.*`), and runs a small SELECT subset over in-memory tables:
//! token-range scans (`token(a, b) > ? AND token(a, b) <= ?`), `SELECT
//! DISTINCT` over partitions, and single-partition lookups (`a = ? AND b =
//! ?`, optionally with a clustering prefix), with paging across and inside
//! partitions, via QUERY or PREPARE/EXECUTE. Tables have composite partition
//! keys, clustering columns (ASC or DESC) and static columns of ten types;
//! selectors are columns, `token(..)`, `writetime(..)`, `ttl(..)`, and
//! `octet_length(..)` when the node plays Cassandra 6.0 or later
//! ([`TestNodeBuilder::release_version`]). Tests can inject faults and read
//! request statistics, including rows and partitions read per kind of read
//! ([`Stats::reads`]), at runtime.
//!
//! Module map:
//! - [`protocol`]: frames, request decoding, response encoding (wire format).
//! - [`cql`]: the hand-written parser of the supported CQL subset.
//! - [`schema`]: fixture table model, key serialization, the system tables.
//! - [`store`]: partitions in ring order, rows in clustering order,
//!   insert/delete while serving.
//! - [`exec`]: planning/validation (Cassandra's rules), paging, prepared ids.
//! - [`murmur3`]: Cassandra's Murmur3Partitioner token.
//! - [`faults`]: fault injection and stats.
//! - [`tls`]: run-time test certificates and rustls configs.
//! - `server`: accept loop, TLS handshake, per-connection protocol state.
//! - [`fixtures`]: deterministic row generation and CSV loading.
//!
//! Invariants kept across modules: partitions are served in token order (ties
//! by key bytes) and rows of a partition in clustering order; a partition key
//! is identified everywhere by its serialized form ([`compose_key`] for
//! composite keys), whose Murmur3 hash is its token; token-range semantics
//! follow Cassandra exactly (see [`exec`]); faults only touch page requests on
//! fixture tables, never the driver's metadata traffic.
//!
//! ```no_run
//! # async fn demo() -> cql_test_node::Result<()> {
//! use cql_test_node::{ColumnType, Fault, ReadKind, Row, Table, TestNode, TlsCerts, Value};
//! // CREATE TABLE ks.t (k text PRIMARY KEY, v blob)
//! let simple = Table::new("ks", "t", "k", ColumnType::Text).column("v", ColumnType::Blob);
//! // CREATE TABLE ks.parts (bucket text, id bigint, part int, meta blob static, data blob,
//! //                        PRIMARY KEY ((bucket, id), part))
//! let parts = Table::new("ks", "parts", "bucket", ColumnType::Text)
//!     .partition_key_column("id", ColumnType::Bigint)
//!     .clustering_column("part", ColumnType::Int)
//!     .static_column("meta", ColumnType::Blob)
//!     .column("data", ColumnType::Blob);
//! let certs = TlsCerts::generate()?;
//! let node = TestNode::builder()
//!     .table(simple)
//!     .rows((0..10).map(|i| Row::new(format!("k{i}")).blob("v", vec![i as u8])))
//!     .table(parts)
//!     .rows((0..3).map(|p| {
//!         Row::partition([Value::Text("photos".into()), Value::Bigint(42)])
//!             .clustering([Value::Int(p)])
//!             .blob("data", vec![0; 100])
//!     }))
//!     .release_version("6.0.0") // serves octet_length(data)
//!     .tls(&certs) // clients trust certs.ca_pem, e.g. via certs.client_config()
//!     .build()
//!     .start("127.0.0.1:0")
//!     .await?;
//! node.faults().fail_next(1, Fault::ReadTimeout);
//! let stats = node.stats();
//! println!("{} pages, {} partitions by DISTINCT", stats.page_requests, stats.reads(ReadKind::DistinctRange).partitions);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cql;
pub mod error;
pub mod exec;
pub mod faults;
pub mod fixtures;
pub mod murmur3;
pub mod protocol;
pub mod schema;
mod server;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::{Error, Result};
pub use faults::{Fault, FaultHandle, ReadKind, ReadStats, Stats};
pub use schema::{compose_key, split_key, ColumnRef, ColumnType, Order, Row, Table, Value, Version};
pub use store::{Partition, StoredRow};
pub use tls::TlsCerts;

use crate::exec::Engine;
use crate::faults::StatsCell;
use crate::schema::NodeInfo;
use crate::server::Shared;
use crate::store::Store;

/// Default writetime of fixture cells: 2023-11-14T22:13:20Z in microseconds.
pub const DEFAULT_WRITETIME: i64 = 1_700_000_000_000_000;

/// The token of a serialized partition key (Murmur3Partitioner); for a
/// composite key, serialize it with [`compose_key`] first.
pub fn token(key: &[u8]) -> i64 {
    murmur3::token(key)
}

/// Username and password for the node's PasswordAuthenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials { username: username.to_string(), password: password.to_string() }
    }
}

/// A configured test node, not yet listening. Create with [`TestNode::builder`].
pub struct TestNode {
    b: TestNodeBuilder,
}

/// Builder for [`TestNode`].
pub struct TestNodeBuilder {
    tables: Vec<Table>,
    rows: Vec<(String, Vec<Row>)>,
    credentials: Option<Credentials>,
    num_tokens: usize,
    tokens: Option<Vec<i64>>,
    seed: u64,
    default_writetime: i64,
    cluster_name: String,
    release_version: String,
    tls: Option<TlsCerts>,
}

impl TestNodeBuilder {
    /// Adds a table; a following [`TestNodeBuilder::rows`] fills it.
    pub fn table(mut self, t: Table) -> Self {
        self.tables.push(t);
        self
    }

    /// Rows for the most recently added table.
    ///
    /// # Panics
    /// If no table was added yet (a test-writing mistake).
    pub fn rows(mut self, rows: impl IntoIterator<Item = Row>) -> Self {
        let t = self.tables.last().expect("TestNodeBuilder::rows called before any table()");
        let name = format!("{}.{}", t.keyspace, t.name);
        self.rows.push((name, rows.into_iter().collect()));
        self
    }

    /// Rows for the table `keyspace.table`.
    pub fn rows_for(mut self, table: &str, rows: impl IntoIterator<Item = Row>) -> Self {
        self.rows.push((table.to_string(), rows.into_iter().collect()));
        self
    }

    /// Requires PasswordAuthenticator login (`Some`), or no auth (`None`).
    pub fn credentials(mut self, c: impl Into<Option<Credentials>>) -> Self {
        self.credentials = c.into();
        self
    }

    /// Serves TLS only, presenting `certs`' server certificate; clients trust
    /// `certs.ca_pem` (or use [`TlsCerts::client_config`]).
    pub fn tls(mut self, certs: &TlsCerts) -> Self {
        self.tls = Some(certs.clone());
        self
    }

    /// Number of ring tokens (vnodes) the node owns; default 16 like Cassandra 4.
    pub fn num_tokens(mut self, n: usize) -> Self {
        self.num_tokens = n.max(1);
        self
    }

    /// Exact ring tokens (overrides `num_tokens`).
    pub fn tokens(mut self, tokens: Vec<i64>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Seed for the generated tokens and host id.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Writetime (µs) of rows that do not set one.
    pub fn default_writetime(mut self, micros: i64) -> Self {
        self.default_writetime = micros;
        self
    }

    pub fn cluster_name(mut self, name: &str) -> Self {
        self.cluster_name = name.to_string();
        self
    }

    /// The Cassandra version the node reports (`system.local.release_version`)
    /// and behaves like where versions differ: `"4.0.7"` and `"5.0.2"` answer
    /// `octet_length(col)` with "Unknown function 'octet_length'", `"6.0.0"`
    /// serves it. Default [`Version::DEFAULT`] (4.1.0). An unparsable version
    /// fails `start`.
    pub fn release_version(mut self, version: &str) -> Self {
        self.release_version = version.to_string();
        self
    }

    pub fn build(self) -> TestNode {
        TestNode { b: self }
    }
}

impl TestNode {
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder {
            tables: Vec::new(),
            rows: Vec::new(),
            credentials: None,
            num_tokens: 16,
            tokens: None,
            seed: 1,
            default_writetime: DEFAULT_WRITETIME,
            cluster_name: "cql-test-node".to_string(),
            release_version: Version::DEFAULT.to_string(),
            tls: None,
        }
    }

    fn into_shared(self) -> Result<Arc<Shared>> {
        let b = self.b;
        if Version::parse(&b.release_version).is_none() {
            return Err(Error::Config(format!(
                "release version {:?}: expected major.minor[.patch], e.g. 4.0.7",
                b.release_version
            )));
        }
        let store = Store::new(b.tables, b.default_writetime)?;
        for (table, rows) in b.rows {
            store.insert_many(&table, rows)?;
        }
        let mut tokens = match b.tokens {
            Some(t) => t,
            None => {
                let mut rng = fixtures::SplitMix64::new(b.seed ^ 0x70_6b_65_6e);
                (0..b.num_tokens).map(|_| rng.next_u64() as i64).collect()
            }
        };
        tokens.retain(|t| *t != murmur3::MIN_TOKEN);
        tokens.sort_unstable();
        tokens.dedup();
        if tokens.is_empty() {
            tokens.push(0);
        }
        let info = NodeInfo {
            cluster_name: b.cluster_name,
            host_id: schema::name_uuid(&format!("host-{}", b.seed)),
            schema_version: schema::name_uuid("schema-1"),
            tokens,
            release_version: b.release_version,
        };
        Ok(Arc::new(Shared {
            engine: Engine::new(store, info),
            faults: FaultHandle::default(),
            stats: StatsCell::default(),
            credentials: b.credentials.map(|c| (c.username, c.password)),
            tls: match &b.tls {
                Some(certs) => Some(tokio_rustls::TlsAcceptor::from(certs.server_config()?)),
                None => None,
            },
        }))
    }

    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves on the current tokio runtime.
    pub async fn start(self, addr: &str) -> Result<RunningNode> {
        let shared = self.into_shared()?;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let local = listener.local_addr().map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), rx));
        Ok(RunningNode { addr: local, handle: NodeHandle { shared }, shutdown: tx, task: Some(task) })
    }

    /// Starts the node on its own runtime thread, for synchronous tests.
    pub fn start_blocking(self, addr: &str) -> Result<BlockingNode> {
        let addr = addr.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cql-test-node".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Runtime(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    match self.start(&addr).await {
                        Ok(node) => {
                            let _ = ready_tx.send(Ok((node.addr, node.handle.clone())));
                            // Stop on request or when the BlockingNode is gone.
                            let _ = stop_rx.await;
                            node.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(Error::Runtime)?;
        let (addr, handle) = ready_rx
            .recv()
            .map_err(|_| Error::Runtime(std::io::Error::other("test node thread exited before starting")))??;
        Ok(BlockingNode { addr, handle, stop: Some(stop_tx), thread: Some(thread) })
    }
}

/// Runtime access to a node: faults, stats and data. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl NodeHandle {
    pub fn faults(&self) -> FaultHandle {
        self.shared.faults.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.shared.stats.reset()
    }

    /// Inserts or replaces a row of `keyspace.table`; true if it replaced a
    /// row with the same primary key.
    pub fn insert(&self, table: &str, row: Row) -> Result<bool> {
        self.shared.engine.store.insert(table, row)
    }

    pub fn insert_many(&self, table: &str, rows: impl IntoIterator<Item = Row>) -> Result<usize> {
        self.shared.engine.store.insert_many(table, rows)
    }

    /// Deletes a partition by serialized key; true if it existed.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<bool> {
        self.shared.engine.store.delete(table, key)
    }

    /// A partition's first row (its only row without clustering columns).
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<StoredRow>> {
        self.shared.engine.store.get(table, key)
    }

    /// A whole partition: static row and rows in clustering order.
    pub fn get_partition(&self, table: &str, key: &[u8]) -> Result<Option<Partition>> {
        self.shared.engine.store.get_partition(table, key)
    }

    /// Number of partitions.
    pub fn len(&self, table: &str) -> Result<usize> {
        self.shared.engine.store.len(table)
    }

    /// Number of rows (what a full scan without DISTINCT returns).
    pub fn row_count(&self, table: &str) -> Result<usize> {
        self.shared.engine.store.row_count(table)
    }

    /// Keys of a table in ring (token) order.
    pub fn keys(&self, table: &str) -> Result<Vec<Vec<u8>>> {
        self.shared.engine.store.keys(table)
    }

    /// The node's ring tokens, sorted.
    pub fn ring_tokens(&self) -> Vec<i64> {
        self.shared.engine.info.tokens.clone()
    }
}

/// A node serving on the caller's tokio runtime.
pub struct RunningNode {
    addr: SocketAddr,
    handle: NodeHandle,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    pub fn faults(&self) -> FaultHandle {
        self.handle.faults()
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Stops accepting, closes every connection and waits for the accept loop.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl std::ops::Deref for RunningNode {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A node serving on its own runtime thread; shuts down on drop.
pub struct BlockingNode {
    addr: SocketAddr,
    handle: NodeHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlockingNode {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the node and joins its thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::ops::Deref for BlockingNode {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Drop for BlockingNode {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
