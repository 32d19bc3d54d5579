//! Sorted chunk files and chunk sets.
//!
//! A **chunk** is one file of records in strictly increasing key byte order. A **chunk set** is a directory
//! of chunks plus `manifest.json` ([`set`]). Every producer (keyrecon-sort, the listers) writes chunk sets;
//! every consumer (keyrecon-diff, repair) reads them through [`reader::ChunkCursor`]. A lister records
//! what it listed (source, table or bucket, filters, shard) in the manifest ([`listing`]).
//!
//! # Chunk file format (version 1, all integers little endian)
//! ```text
//! +--------------------------------------------------------------+
//! | header  16 B: magic "KRCHUNK1" | version u8 = 1 | schema u8 |
//! |               | reserved [0; 6]                              |
//! +--------------------------------------------------------------+
//! | records: klen:varint key[klen] ( mlen:varint meta[mlen] )?   |  meta present iff schema != 0
//! |          ... strictly increasing by key bytes ...            |  (see record.rs for meta)
//! +--------------------------------------------------------------+
//! | footer  40 B: records u64 | data_len u64 | xxh3_64(data) u64 |
//! |               | schema u8 | reserved [0; 7] | magic "KRCEND01"|
//! +--------------------------------------------------------------+
//! ```
//! Invariants a reader checks, each failure an error naming the file and byte offset:
//! `16 + data_len + 40 == file length` (so truncation is caught before the first key is read), header and
//! footer magic and schema agree, every record decodes inside the data region, keys strictly increase,
//! and at the end the record count and checksum match the footer. A chunk is written as
//! `.NAME.tmp` and renamed when complete, so a crash never leaves a file that looks finished.

pub mod listing;
pub mod range;
pub mod reader;
pub mod set;
pub mod writer;

pub use listing::{Listing, Shard};
pub use range::{KeyRange, RangeStream};
pub use reader::ChunkCursor;
pub use set::{ChunkInfo, ChunkSet, ChunkSetWriter, ChunkSets, Manifest};
pub use writer::ChunkWriter;

pub const HEADER_MAGIC: &[u8; 8] = b"KRCHUNK1";
pub const FOOTER_MAGIC: &[u8; 8] = b"KRCEND01";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
pub const FOOTER_LEN: usize = 40;
/// Writers buffer at least this much before a write(2).
pub const WRITE_BUF: usize = 1 << 20;
