//! keyrecon-engine: the part of keyrecon that needs no network. Everything that sorts, merges and
//! compares keys lives here; the listers, repair and verify (in the `keyrecon` crate above) only
//! produce and consume what this crate defines.
//!
//! Module map (data flows top to bottom):
//! ```text
//!  input ──► sort ──────────► chunk (chunk files, chunk sets) ◄── listers (keyrecon crate)
//!   │                              │
//!   │                              ▼
//!   └──────► hashdiff        merge (k-way, dedup)
//!               │                  │
//!               └──────► diff (two-sided walk, outcome files, summary) ──► job (keyrecon-diff, -sort)
//! ```
//! - [`record`]: key bytes + optional metadata and their one encoding.
//! - [`chunk`]: the on-disk sorted chunk format and chunk sets (manifest); key ranges of chunk sets
//!   (`chunk::range`) for walks on every core.
//! - [`input`]: key files (lines, NUL, CSV) into records; rejects.
//! - [`sort`]: memory-budgeted parallel external sort into chunk sets; its `RecordBuffer` (a run of
//!   records sorted into one chunk, also each Cassandra lister worker's); the file-level merges every
//!   producer of chunk sets shares (`reduce`, `merge_into_set`) and their one fan-in policy (`fanin`).
//! - [`merge`]: loser-tree k-way merge of sorted cursors, with deduplication.
//! - [`diff`]: the two-sided walk over sorted streams and the outcome sinks.
//! - [`hashdiff`]: diff of unsorted inputs by hash partitioning and a hash join (no full sort).
//! - [`keymap`]: the key mapping rule language (source key -> comparison key).
//! - [`job`]: keyrecon-diff and keyrecon-sort as library calls (config in, summary out).
//! - [`progress`]: progress lines, counters, peak RSS.
//! - [`summary`]: what every tool's summary shares: the paragraph on stderr, the exit code, summary.json.
//! - [`csvout`]: the one CSV output file (diff sets with metadata; repair's and verify's outcome files).
//! - [`hex`]: the one hex encoding of key bytes in manifests, journals and checkpoints.
//! - [`scratch`]: private directories for intermediate files, and the sweep of those of killed runs.
//!
//! Invariants: keys are bytes and compare in byte order everywhere; nothing is dropped silently (bad
//! input is rejected with a reason, failures are counted and make the exit code 2).

pub mod chunk;
pub mod csvout;
pub mod diff;
pub mod error;
pub mod hashdiff;
pub mod hex;
pub mod input;
pub mod job;
pub mod keymap;
pub mod merge;
pub mod progress;
pub mod record;
pub mod scratch;
pub mod sort;
pub mod summary;

pub use error::{Error, Result};
