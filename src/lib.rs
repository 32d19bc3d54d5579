//! keyrecon: find and repair what a large data migration lost.
//!
//! Module map (data flows top to bottom):
//! ```text
//!  input ──► sort ──────────► chunk (chunk files, chunk sets) ◄── sources::{s3, cassandra}
//!   │                              │
//!   │                              ▼
//!   └──────► hashdiff        merge (k-way, dedup)
//!               │                  │
//!               └──────► diff (two-sided walk, outcome files, summary) ──► repair
//! ```
//! - [`record`]: key bytes + optional metadata and their encoding.
//! - [`chunk`]: the on-disk sorted chunk format and chunk sets (manifest).
//! - [`input`]: key files (lines, NUL, CSV) into records; rejects.
//! - [`sort`]: memory-budgeted parallel external sort into chunk sets.
//! - [`merge`]: loser-tree k-way merge of sorted cursors, with deduplication.
//! - [`diff`]: the two-sided walk over sorted streams and the outcome sinks.
//! - [`hashdiff`]: diff of unsorted inputs by hash partitioning (no full sort).
//! - [`progress`]: progress bars, counters, summaries.
//! - [`limit`]: load limits shared by the tools that talk to servers: AIMD concurrency limiter, token
//!   bucket, jittered exponential backoff.
//! - [`repair`]: keyrecon-repair (Cassandra blob -> S3 PUT, journal, throttle).
//! - [`verify`]: keyrecon-verify (HEAD, and with --deep compare size and MD5/ETag with the blob).
//!
//! Invariants: keys are bytes and compare in byte order everywhere; nothing is dropped silently (bad
//! input is rejected with a reason, failures are counted and make the exit code 2).

pub mod chunk;
pub mod cli;
pub mod diff;
pub mod error;
pub mod hashdiff;
pub mod input;
pub mod job;
pub mod keymap;
pub mod limit;
pub mod merge;
pub mod progress;
pub mod record;
pub mod repair;
pub mod sort;
pub mod sources;
pub mod verify;

pub use error::{Error, Result};
