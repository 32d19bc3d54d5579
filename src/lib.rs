//! keyrecon: find and repair what a large data migration lost.
//!
//! Two crates. [`keyrecon_engine`] (crates/engine, no network) sorts, merges and compares keys; this
//! crate puts the stores on top of it and holds the binaries' shared flags:
//! ```text
//!                       ┌──────────────── keyrecon (this crate, feature `net`) ───────────────┐
//!  Cassandra ──► sources::cassandra ─┐                                                        │
//!  S3 ─────────► sources::s3 ────────┼─► chunk sets ─► keyrecon_engine::{merge, diff} ─► missing
//!  key files ──► keyrecon_engine::input / sort ─┘                                 │            │
//!                                                                  repair ◄───────┘   verify   │
//!                       └─────────────────────────────────────────────────────────────────────┘
//! ```
//! - The engine's modules are re-exported under their own names ([`chunk`], [`diff`], [`sort`], ...), so
//!   `keyrecon::chunk::ChunkSet` is the engine's type.
//! - [`cli`]: flags every binary shares (sizes, input formats, the Cassandra and S3 connection groups)
//!   and the exit-code contract.
//! - [`civil`]: calendar dates as days since the epoch, both ways (every time written as text).
//! - [`limit`]: AIMD concurrency limiter, token bucket, jittered backoff for the tools that talk to servers.
//! - [`rt`]: the one tokio runtime builder.
//! - [`sources`]: the listers (`cassandra`, `s3`), each writing a chunk set.
//! - [`keys`]: the keys repair and verify work on (an input read into a sorted chunk; the queue's items).
//! - [`pool`]: the worker pool that repair and verify run their keys through.
//! - [`nightly`]: keyrecon-reconcile, a nightly reconciliation as one job (stages, history, brake,
//!   report, metrics).
//! - [`queue`]: the fleet's shared work queue on Redis Streams (keyrecon-queue; repair/verify --queue).
//! - [`repair`]: keyrecon-repair (Cassandra blob -> S3 PUT, journal, throttle).
//! - [`verify`] (in `repair/`): keyrecon-verify (HEAD, and with --deep compare size and MD5/ETag with the blob).
//!
//! Without the default feature `net` only the engine and the engine's binaries build (keyrecon-diff,
//! keyrecon-sort): what a newcomer's first command needs, without the S3 SDK and the Cassandra driver.
//!
//! Invariants: keys are bytes and compare in byte order everywhere; nothing is dropped silently (bad
//! input is rejected with a reason, failures are counted and make the exit code 2).

pub use keyrecon_engine::{
    chunk, csvout, diff, error, hashdiff, hex, input, job, keymap, merge, progress, record, scratch, sort, summary,
};
pub use keyrecon_engine::{Error, Result};

pub mod civil;
pub mod cli;
/// The keys repair and verify work on, read from an input and sorted (a queue's producer reads the same).
#[cfg(feature = "net")]
pub mod keys;
#[cfg(feature = "net")]
pub mod limit;
#[cfg(feature = "net")]
pub mod nightly;
#[cfg(feature = "net")]
pub mod pool;
#[cfg(feature = "net")]
pub mod queue;
#[cfg(feature = "net")]
pub mod repair;
#[cfg(feature = "net")]
pub mod rt;
#[cfg(feature = "net")]
pub mod sources;
/// keyrecon-verify lives beside repair, whose fetch, HEAD, throttle and key machinery it shares.
#[cfg(feature = "net")]
pub use repair::verify;
