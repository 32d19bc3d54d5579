//! Chunk sets: a directory of chunk files plus `manifest.json`, written last (temporary name + rename), so
//! a directory without a manifest is an unfinished chunk set and is refused by readers.
//!
//! ```text
//! CHUNKSET/
//!   manifest.json        {"format":"keyrecon-chunkset","version":1,"order":"bytewise","disjoint":true,
//!                         "schema":["key","size"],"records":N,"producer":{..},"chunks":[{"file":..,
//!                         "records":N,"data_len":N,"checksum":"xxh3:..","first_key_hex":..,"last_key_hex":..}],
//!                         "info":{..producer specific: bucket, prefix, listing stats..}}
//!   chunk-000000.krc     sorted chunks (see `chunk` module doc)
//!   chunk-000001.krc
//!   rejects.csv          optional: inputs that could not become records, with the reason
//! ```
//! Each chunk is strictly increasing. `disjoint: true` means chunk i's last key < chunk i+1's first key in
//! manifest order, so the set is one sorted, duplicate-free sequence read chunk after chunk. Otherwise
//! chunks may overlap (e.g. one chunk per Cassandra token range) and readers k-way merge them, removing
//! duplicates.

use super::listing::{check_side, Listing};
use super::range::KeyRange;
use super::reader::ChunkCursor;
use super::writer::{ChunkStats, ChunkWriter};
use crate::error::{Error, IoContext, Result};
use crate::record::Schema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT: &str = "keyrecon-chunkset";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChunkInfo {
    pub file: String,
    pub records: u64,
    pub data_len: u64,
    pub checksum: String,
    pub first_key_hex: String,
    pub last_key_hex: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Producer {
    pub tool: String,
    pub version: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl Producer {
    /// The running binary, its version and its command line.
    pub fn current(tool: &str) -> Self {
        Producer {
            tool: tool.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            args: std::env::args().skip(1).collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub order: String,
    pub disjoint: bool,
    pub schema: Vec<String>,
    pub records: u64,
    pub producer: Producer,
    pub created_unix_ms: u64,
    pub chunks: Vec<ChunkInfo>,
    #[serde(default)]
    pub info: serde_json::Value,
}

impl Manifest {
    pub fn schema(&self) -> Result<Schema> {
        Schema::from_names(self.schema.iter().map(|s| s.as_str()))
            .map_err(|msg| Error::Manifest { path: PathBuf::from(MANIFEST), msg })
    }
}

impl ChunkInfo {
    /// The chunk's first key (decoded from the manifest's hex).
    pub fn first_key(&self) -> Result<Vec<u8>> {
        self.key_of(&self.first_key_hex)
    }
    /// The chunk's last key.
    pub fn last_key(&self) -> Result<Vec<u8>> {
        self.key_of(&self.last_key_hex)
    }
    fn key_of(&self, h: &str) -> Result<Vec<u8>> {
        crate::hex::decode(h).map_err(|msg| Error::Manifest { path: PathBuf::from(&self.file), msg })
    }
}

/// Builds a chunk set. `Sync`: parallel producers each open their own chunk with [`new_chunk`] and hand it
/// back with [`add_chunk`]; chunk ids come from an atomic counter.
///
/// Two ways to order the chunks in the manifest:
/// - [`finish`]: by id, i.e. the order the chunks were opened (a sort writing its chunks one after another).
/// - [`finish_key_ordered`]: by first key, for producers whose chunks hold disjoint key ranges but are
///   opened and finished in any order (range-partitioned listers: stream 7 may open its chunk before
///   stream 2). The set is then the concatenation of the chunks in key order. Nothing is renamed or
///   reread: each chunk's first key, last key, count and checksum come from its writer.
///
/// [`new_chunk`]: ChunkSetWriter::new_chunk
/// [`add_chunk`]: ChunkSetWriter::add_chunk
/// [`finish`]: ChunkSetWriter::finish
/// [`finish_key_ordered`]: ChunkSetWriter::finish_key_ordered
pub struct ChunkSetWriter {
    dir: PathBuf,
    schema: Schema,
    next_id: AtomicU64,
    chunks: Mutex<Vec<Added>>,
    /// Write buffer of each chunk writer.
    write_buf: usize,
}

/// A finished chunk: its id (open order), its first key (key order) and its manifest entry.
struct Added {
    id: u64,
    first_key: Vec<u8>,
    info: ChunkInfo,
}

impl ChunkSetWriter {
    /// Creates `dir` (and parents). A directory that already holds a manifest or chunks is refused unless
    /// `overwrite`, in which case those files are removed first; other files are never touched.
    pub fn create(dir: impl AsRef<Path>, schema: Schema, overwrite: bool) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        let ours: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ctx(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_chunk_set_file(p))
            .collect();
        if !ours.is_empty() {
            if !overwrite {
                return Err(Error::Usage(format!(
                    "{}: already holds a chunk set; remove it or pass --force to replace it",
                    dir.display()
                )));
            }
            for p in ours {
                std::fs::remove_file(&p).ctx(&p)?;
            }
        }
        Ok(ChunkSetWriter {
            dir,
            schema,
            next_id: AtomicU64::new(0),
            chunks: Mutex::new(Vec::new()),
            write_buf: super::WRITE_BUF,
        })
    }

    /// Reopens an unfinished chunk set (no manifest) to continue it: complete chunks already in `dir` are
    /// verified (read once: a crash may have left anything) and kept, temporary files of chunks that were
    /// being written are removed. Returns the writer and the names of the chunks kept, so a resuming
    /// producer can skip their work; [`chunks`](Self::chunks) gives their key spans.
    pub fn resume(dir: impl AsRef<Path>, schema: Schema) -> Result<(Self, Vec<String>)> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        if dir.join(MANIFEST).exists() {
            return Err(Error::Usage(format!(
                "{}: chunk set is already complete (has {MANIFEST}); nothing to resume",
                dir.display()
            )));
        }
        let mut kept = Vec::new();
        let mut max_id = None;
        for e in std::fs::read_dir(&dir).ctx(&dir)? {
            let p = e.ctx(&dir)?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.starts_with(".chunk-") && name.ends_with(".tmp") {
                std::fs::remove_file(&p).ctx(&p)?;
            } else if let Some(id) = chunk_id(&name) {
                let c = ChunkCursor::open(&p)?;
                if c.schema() != schema {
                    return Err(Error::Usage(format!(
                        "{}: schema {} differs from this run's {}",
                        p.display(),
                        c.schema(),
                        schema
                    )));
                }
                let (first_key, info) = verify_to_info(&p)?;
                max_id = Some(max_id.map_or(id, |m: u64| m.max(id)));
                kept.push(Added { id, first_key, info });
            }
        }
        kept.sort_by_key(|a| a.id);
        let names = kept.iter().map(|a| a.info.file.clone()).collect();
        let w = ChunkSetWriter {
            dir,
            schema,
            next_id: AtomicU64::new(max_id.map_or(0, |m| m + 1)),
            chunks: Mutex::new(kept),
            write_buf: super::WRITE_BUF,
        };
        Ok((w, names))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// Write buffer of the chunks opened from now on (default [`WRITE_BUF`](super::WRITE_BUF), at least
    /// 64 KiB): producers with one open chunk per stream keep memory at streams x this.
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.write_buf = bytes;
        self
    }

    /// Opens the next chunk. [`finish`](Self::finish) orders chunks by the order of these calls.
    pub fn new_chunk(&self) -> Result<ChunkWriter> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        ChunkWriter::create_with_buffer(self.dir.join(chunk_name(id)), self.schema, self.write_buf)
    }

    /// Finishes `w` and records it. Empty chunks leave no file and no entry. Returns the chunk's file name.
    pub fn add_chunk(&self, w: ChunkWriter) -> Result<Option<String>> {
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        let id = chunk_id(&name).expect("writer made by new_chunk");
        match w.finish()? {
            None => Ok(None),
            Some(st) => {
                let info = info_of(&name, &st);
                self.chunks.lock().unwrap().push(Added { id, first_key: st.first_key, info });
                Ok(Some(name))
            }
        }
    }

    /// The chunks added so far (including those kept by [`resume`](Self::resume)), in id order.
    pub fn chunks(&self) -> Vec<ChunkInfo> {
        let mut v: Vec<(u64, ChunkInfo)> = self.chunks.lock().unwrap().iter().map(|a| (a.id, a.info.clone())).collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// Writes the manifest with the chunks in id (open) order, which makes the set complete. `disjoint`
    /// is checked, not trusted.
    pub fn finish(self, producer: Producer, disjoint: bool, info: serde_json::Value) -> Result<Manifest> {
        let mut chunks = std::mem::take(&mut *self.chunks.lock().unwrap());
        chunks.sort_by_key(|a| a.id);
        self.write_manifest(chunks, producer, disjoint, info)
    }

    /// Writes the manifest with the chunks in key order (by first key) and `disjoint: true`. Fails, naming
    /// both chunks, if two chunks overlap: their producer broke its own partitioning.
    pub fn finish_key_ordered(self, producer: Producer, info: serde_json::Value) -> Result<Manifest> {
        let mut chunks = std::mem::take(&mut *self.chunks.lock().unwrap());
        chunks.sort_by(|a, b| a.first_key.cmp(&b.first_key).then(a.id.cmp(&b.id)));
        self.write_manifest(chunks, producer, true, info)
    }

    fn write_manifest(
        self,
        chunks: Vec<Added>,
        producer: Producer,
        disjoint: bool,
        info: serde_json::Value,
    ) -> Result<Manifest> {
        let chunks: Vec<ChunkInfo> = chunks.into_iter().map(|a| a.info).collect();
        if disjoint {
            for w in chunks.windows(2) {
                let (a, b) = (w[0].last_key()?, w[1].first_key()?);
                if a >= b {
                    return Err(Error::Internal(format!(
                        "chunk set {}: {} (last key {:?}) overlaps {} (first key {:?}) but the set was declared disjoint",
                        self.dir.display(),
                        w[0].file,
                        crate::record::show_key(&a),
                        w[1].file,
                        crate::record::show_key(&b)
                    )));
                }
            }
        }
        let m = Manifest {
            format: FORMAT.into(),
            version: 1,
            order: "bytewise".into(),
            disjoint,
            schema: std::iter::once("key").chain(self.schema.names()).map(String::from).collect(),
            records: chunks.iter().map(|c| c.records).sum(),
            producer,
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            chunks,
            info,
        };
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        let body = serde_json::to_vec_pretty(&m).map_err(|e| Error::json(&tmp, e))?;
        std::fs::write(&tmp, body).ctx(&tmp)?;
        let fin = self.dir.join(MANIFEST);
        std::fs::rename(&tmp, &fin).ctx(&fin)?;
        Ok(m)
    }
}

fn chunk_name(id: u64) -> String {
    format!("chunk-{id:06}.krc")
}

fn chunk_id(name: &str) -> Option<u64> {
    name.strip_prefix("chunk-")?.strip_suffix(".krc")?.parse().ok()
}

fn is_chunk_set_file(p: &Path) -> bool {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    name == MANIFEST
        || chunk_id(&name).is_some()
        || (name.starts_with(".chunk-") && name.ends_with(".tmp"))
        || name == "rejects.csv"
}

fn info_of(name: &str, st: &ChunkStats) -> ChunkInfo {
    ChunkInfo {
        file: name.to_string(),
        records: st.records,
        data_len: st.data_len,
        checksum: format!("xxh3:{:016x}", st.checksum),
        first_key_hex: crate::hex::encode(&st.first_key),
        last_key_hex: crate::hex::encode(&st.last_key),
    }
}

/// Reads a chunk once (checking it) for its manifest entry; also returns its first key.
fn verify_to_info(p: &Path) -> Result<(Vec<u8>, ChunkInfo)> {
    use crate::merge::SortedCursor;
    let mut c = ChunkCursor::open(p)?;
    let (mut first, mut last, mut n) = (Vec::new(), Vec::new(), 0u64);
    while c.advance()? {
        if n == 0 {
            first = c.key().to_vec();
        }
        n += 1;
        if c.consumed() == c.data_len() {
            last = c.key().to_vec();
        }
    }
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let data_len = c.data_len();
    let checksum = read_footer_checksum(p)?;
    let info = info_of(&name, &ChunkStats { records: n, data_len, checksum, first_key: first.clone(), last_key: last });
    Ok((first, info))
}

fn read_footer_checksum(p: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).ctx(p)?;
    f.seek(SeekFrom::End(-(super::FOOTER_LEN as i64) + 16)).ctx(p)?;
    let mut b = [0u8; 8];
    f.read_exact(&mut b).ctx(p)?;
    Ok(u64::from_le_bytes(b))
}

/// A complete chunk set, opened for reading.
pub struct ChunkSet {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub schema: Schema,
}

impl ChunkSet {
    /// True if `path` looks like a chunk set (a directory with a manifest).
    pub fn is_chunk_set(path: &Path) -> bool {
        path.is_dir() && path.join(MANIFEST).is_file()
    }

    /// Opens and checks the manifest: every chunk file it names exists with the size it promises.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mpath = dir.join(MANIFEST);
        if !mpath.exists() {
            return Err(Error::Manifest {
                path: dir.clone(),
                msg: format!(
                    "no {MANIFEST}: not a chunk set, or one whose producer did not finish (rerun it, or resume)"
                ),
            });
        }
        let body = std::fs::read(&mpath).ctx(&mpath)?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| Error::Manifest { path: mpath.clone(), msg: format!("invalid manifest: {e}") })?;
        if manifest.format != FORMAT || manifest.version != 1 {
            return Err(Error::Manifest {
                path: mpath,
                msg: format!("unsupported format {:?} version {}", manifest.format, manifest.version),
            });
        }
        if manifest.order != "bytewise" {
            return Err(Error::Manifest { path: mpath, msg: format!("unsupported key order {:?}", manifest.order) });
        }
        let schema = manifest.schema().map_err(|e| Error::Manifest { path: mpath.clone(), msg: e.to_string() })?;
        for c in &manifest.chunks {
            let p = dir.join(&c.file);
            let len = std::fs::metadata(&p).ctx(&p)?.len();
            let want = c.data_len + (super::HEADER_LEN + super::FOOTER_LEN) as u64;
            if len != want {
                return Err(Error::corrupt(
                    &p,
                    len,
                    format!("file is {len} bytes, manifest says {want}: truncated or replaced"),
                ));
            }
        }
        Ok(ChunkSet { dir, manifest, schema })
    }

    pub fn records(&self) -> u64 {
        self.manifest.records
    }
    pub fn data_len(&self) -> u64 {
        self.manifest.chunks.iter().map(|c| c.data_len).sum()
    }

    /// Opens a cursor per chunk, in manifest order, checking each chunk agrees with the manifest.
    pub fn cursors(&self) -> Result<Vec<ChunkCursor>> {
        self.cursors_where(|_| true)
    }

    /// [`cursors`](Self::cursors) of the chunks whose manifest index `keep` accepts.
    fn cursors_where(&self, keep: impl Fn(usize) -> bool) -> Result<Vec<ChunkCursor>> {
        self.manifest
            .chunks
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, c)| {
                let p = self.dir.join(&c.file);
                let cur = ChunkCursor::open(&p)?;
                if cur.expected_records() != c.records || cur.schema() != self.schema {
                    return Err(Error::corrupt(&p, 0, "chunk footer disagrees with the manifest (records or schema)"));
                }
                Ok(cur)
            })
            .collect()
    }
}

/// A chunk set read as one sorted, duplicate-free stream: chunk after chunk when the set is disjoint,
/// otherwise a k-way merge; several chunk sets ([`ChunkSets`]) as a k-way merge of their streams.
pub enum SetStream {
    Concat(crate::merge::Concat<ChunkCursor>),
    Merge(crate::merge::Merge<ChunkCursor>),
    Union(Box<crate::merge::Merge<SetStream>>),
}

impl SetStream {
    /// Records dropped because their key was seen already (within a set, or in another set of a union).
    pub fn duplicates(&self) -> u64 {
        match self {
            SetStream::Concat(_) => 0,
            SetStream::Merge(m) => m.duplicates(),
            SetStream::Union(m) => m.duplicates() + m.cursors().iter().map(SetStream::duplicates).sum::<u64>(),
        }
    }
}

impl crate::merge::SortedCursor for SetStream {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        match self {
            SetStream::Concat(c) => c.advance(),
            SetStream::Merge(m) => m.advance(),
            SetStream::Union(m) => m.advance(),
        }
    }
    #[inline]
    fn key(&self) -> &[u8] {
        match self {
            SetStream::Concat(c) => c.key(),
            SetStream::Merge(m) => m.key(),
            SetStream::Union(m) => m.key(),
        }
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        match self {
            SetStream::Concat(c) => c.meta(),
            SetStream::Merge(m) => m.meta(),
            SetStream::Union(m) => m.meta(),
        }
    }
    #[inline]
    fn prefix(&self) -> u64 {
        match self {
            SetStream::Concat(c) => c.prefix(),
            SetStream::Merge(m) => m.prefix(),
            SetStream::Union(m) => m.prefix(),
        }
    }
}

impl ChunkSet {
    /// The whole set as one sorted stream. Overlapping sets with more chunks than the process may keep
    /// open should be compacted first (keyrecon-sort does); we open them all here.
    pub fn stream(&self) -> Result<SetStream> {
        self.stream_in(&KeyRange::default())
    }

    /// [`stream`](Self::stream) over only the chunks whose keys meet `range` (plus any empty chunk, in
    /// the range that starts at the first key, so that it is still checked once); the stream still
    /// holds their keys outside the range ([`RangeStream`](super::RangeStream) cuts them off).
    pub fn stream_in(&self, range: &KeyRange) -> Result<SetStream> {
        let mut keep = Vec::with_capacity(self.manifest.chunks.len());
        for c in &self.manifest.chunks {
            keep.push(
                range.is_whole()
                    || if c.records == 0 { range.lo.is_none() } else { range.meets(&c.first_key()?, &c.last_key()?) },
            );
        }
        let cursors = self.cursors_where(|i| keep[i])?;
        Ok(if self.manifest.disjoint {
            SetStream::Concat(crate::merge::Concat::new(cursors))
        } else {
            SetStream::Merge(crate::merge::Merge::new(cursors, true))
        })
    }

    /// Why the set does not hold the whole listing, when its lister says so (`info.complete: false`, as
    /// keyrecon-list-cassandra writes when token ranges failed after their retries): the keys of what
    /// was not listed would read as missing.
    pub fn incomplete(&self) -> Option<String> {
        let info = &self.manifest.info;
        if info.get("complete").and_then(serde_json::Value::as_bool) != Some(false) {
            return None;
        }
        let failed = info.get("failed_ranges").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
        Some(format!(
            "{} is an incomplete listing ({failed} ranges failed; see its summary.json): its missing keys would \
             show as differences. Resume the listing (--resume) until it completes, or pass --allow-incomplete",
            self.dir.display()
        ))
    }

    /// What the set lists, when a lister wrote it (`info.listing`, see [`super::listing`]).
    pub fn listing(&self) -> Result<Option<Listing>> {
        Listing::from_info(&self.manifest.info, &self.dir.join(MANIFEST))
    }
}

/// One side of a diff made of one or more chunk sets (e.g. the shards of a listing), read as one sorted,
/// duplicate-free stream: their union through the k-way merge. Shards of a Cassandra listing overlap in
/// key order (token order is not key order), so the sets are merged, not concatenated.
///
/// [`ChunkSets::open`] checks the sets before anything is read (see [`check_side`]) and orders them by
/// shard index, so among equal keys the lowest shard's record wins, as the lowest token's does in an
/// unsharded listing.
pub struct ChunkSets {
    /// In merge order.
    pub sets: Vec<ChunkSet>,
    /// What each set lists (`sets[i]`'s), when a lister wrote it.
    pub listings: Vec<Option<Listing>>,
    pub schema: Schema,
}

impl ChunkSets {
    /// Opens the chunk sets in `dirs` (at least one) and checks they make one side: the same record
    /// fields, and, when any is a shard, exactly the N shards of one listing.
    pub fn open(dirs: &[PathBuf]) -> Result<ChunkSets> {
        let sets = dirs.iter().map(ChunkSet::open).collect::<Result<Vec<_>>>()?;
        ChunkSets::new(sets)
    }

    /// [`open`](Self::open) for sets already opened.
    pub fn new(sets: Vec<ChunkSet>) -> Result<ChunkSets> {
        let first = sets.first().ok_or_else(|| Error::Usage("a diff side needs at least one input".into()))?;
        let schema = first.schema;
        let mut named =
            sets.iter().map(|s| Ok((s.dir.display().to_string(), s.listing()?))).collect::<Result<Vec<_>>>()?;
        let order = check_side(&named)?;
        if let Some(other) = sets.iter().find(|s| s.schema != schema) {
            return Err(Error::Usage(format!(
                "{} carries {} but {} carries {}: the chunk sets of one side must carry the same fields",
                first.dir.display(),
                schema,
                other.dir.display(),
                other.schema
            )));
        }
        let mut slots: Vec<Option<ChunkSet>> = sets.into_iter().map(Some).collect();
        let mut ordered = ChunkSets { sets: Vec::new(), listings: Vec::new(), schema };
        for i in order {
            ordered.sets.push(slots[i].take().expect("check_side returns a permutation"));
            ordered.listings.push(named[i].1.take());
        }
        Ok(ordered)
    }

    /// Bytes of record data over all sets.
    pub fn data_len(&self) -> u64 {
        self.sets.iter().map(ChunkSet::data_len).sum()
    }

    /// The sets' directories, in merge order, as given.
    pub fn names(&self) -> Vec<String> {
        self.sets.iter().map(|s| s.dir.display().to_string()).collect()
    }

    /// The union as one sorted, duplicate-free stream (one set: its own stream, no merge).
    pub fn stream(&self) -> Result<SetStream> {
        self.stream_in(&KeyRange::default())
    }

    /// [`stream`](Self::stream) over only the chunks whose keys meet `range` ([`ChunkSet::stream_in`]).
    pub fn stream_in(&self, range: &KeyRange) -> Result<SetStream> {
        if let [one] = &self.sets[..] {
            return one.stream_in(range);
        }
        let streams = self.sets.iter().map(|s| s.stream_in(range)).collect::<Result<Vec<_>>>()?;
        Ok(SetStream::Union(Box::new(crate::merge::Merge::new(streams, true))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::SortedCursor;

    /// A chunk of `w` holding `keys`, not yet added.
    fn write(w: &ChunkSetWriter, keys: &[&str]) -> ChunkWriter {
        let mut c = w.new_chunk().unwrap();
        for k in keys {
            c.push(k.as_bytes(), &[]).unwrap();
        }
        c
    }

    fn read_all(dir: &Path) -> Vec<String> {
        let set = ChunkSet::open(dir).unwrap();
        let mut s = set.stream().unwrap();
        let mut v = Vec::new();
        while s.advance().unwrap() {
            v.push(String::from_utf8(s.key().to_vec()).unwrap());
        }
        v
    }

    /// Issue 3: ranges of a parallel lister finish out of key order; the set must still be one sorted
    /// sequence, with chunks listed by first key, without renaming or rereading them.
    #[test]
    fn key_ordered_finish_orders_chunks_opened_out_of_order() {
        let t = tempfile::tempdir().unwrap();
        let w = ChunkSetWriter::create(t.path(), Schema::KEYS_ONLY, false).unwrap();
        // Opened in the order: high range, low range, middle range; finished in yet another order.
        let high = write(&w, &["x", "y", "z"]);
        let low = write(&w, &["a", "b"]);
        let mid = write(&w, &["m", "n"]);
        let empty = w.new_chunk().unwrap();
        for c in [mid, high, empty, low] {
            w.add_chunk(c).unwrap();
        }
        let files_before: Vec<String> = w.chunks().iter().map(|c| c.file.clone()).collect();
        let m = w.finish_key_ordered(Producer::default(), serde_json::Value::Null).unwrap();
        assert!(m.disjoint);
        let order: Vec<&str> = m.chunks.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(order, ["chunk-000001.krc", "chunk-000002.krc", "chunk-000000.krc"], "by first key, not by id");
        let mut sorted_before = files_before.clone();
        sorted_before.sort();
        assert_eq!(files_before, sorted_before, "chunks() lists by id");
        assert_eq!(read_all(t.path()), ["a", "b", "m", "n", "x", "y", "z"]);
        assert_eq!(m.records, 7);
    }

    #[test]
    fn key_ordered_finish_refuses_overlapping_chunks() {
        let t = tempfile::tempdir().unwrap();
        let w = ChunkSetWriter::create(t.path(), Schema::KEYS_ONLY, false).unwrap();
        let a = write(&w, &["a", "m"]);
        let b = write(&w, &["k", "z"]);
        w.add_chunk(b).unwrap();
        w.add_chunk(a).unwrap();
        let e = w.finish_key_ordered(Producer::default(), serde_json::Value::Null).unwrap_err().to_string();
        assert!(e.contains("chunk-000000.krc") && e.contains("chunk-000001.krc") && e.contains("overlaps"), "{e}");
        assert!(!t.path().join(MANIFEST).exists(), "no manifest for a broken set");
    }

    /// A finished chunk set in `dir` of `keys` (each its own chunk list: overlapping chunks allowed), with
    /// `size` metadata = `tag` and `info`.
    fn set_of(dir: &Path, chunks: &[&[&str]], tag: u64, info: serde_json::Value) -> ChunkSet {
        let w = ChunkSetWriter::create(dir, Schema(Schema::SIZE), false).unwrap();
        let mut meta = Vec::new();
        for keys in chunks {
            let mut c = w.new_chunk().unwrap();
            for k in *keys {
                meta.clear();
                crate::record::MetaRef { size: Some(tag), ..Default::default() }.encode(&mut meta);
                c.push(k.as_bytes(), &meta).unwrap();
            }
            w.add_chunk(c).unwrap();
        }
        w.finish(Producer::default(), false, info).unwrap();
        ChunkSet::open(dir).unwrap()
    }

    fn shard_info(i: u32, n: u32) -> serde_json::Value {
        let l = Listing {
            source: super::super::listing::Source::Cassandra,
            what: "ks.t".into(),
            filters: Default::default(),
            shard: Some(super::super::Shard::new(i, n).unwrap()),
        };
        serde_json::json!({ Listing::KEY: l })
    }

    /// Several chunk sets read as one: sorted, deduplicated across sets (shards of a Cassandra listing
    /// overlap in key order), ties to the lowest shard whatever order the sets were given in.
    #[test]
    fn sets_merge_into_one_stream_in_shard_order() {
        let t = tempfile::tempdir().unwrap();
        let s3 = set_of(&t.path().join("c"), &[&["b", "z"], &["a", "y"]], 3, shard_info(3, 3));
        let s1 = set_of(&t.path().join("a"), &[&["m", "y"]], 1, shard_info(1, 3));
        let s2 = set_of(&t.path().join("b"), &[&["c", "m", "n"]], 2, shard_info(2, 3));
        let sets = ChunkSets::new(vec![s3, s1, s2]).unwrap();
        assert_eq!(sets.names().iter().map(|n| n.rsplit('/').next().unwrap()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(sets.listings[0].as_ref().unwrap().shard.unwrap().index, 1);
        let mut s = sets.stream().unwrap();
        let mut got = Vec::new();
        while s.advance().unwrap() {
            let size = crate::record::MetaRef::decode(s.meta()).unwrap().size.unwrap();
            got.push((String::from_utf8(s.key().to_vec()).unwrap(), size));
        }
        let want = [("a", 3), ("b", 3), ("c", 2), ("m", 1), ("n", 2), ("y", 1), ("z", 3)];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v)));
        assert_eq!(s.duplicates(), 2, "m twice, y twice");
    }

    #[test]
    fn sets_of_one_side_must_carry_the_same_fields_and_be_whole() {
        let t = tempfile::tempdir().unwrap();
        let a = set_of(&t.path().join("a"), &[&["a"]], 1, serde_json::Value::Null);
        let w = ChunkSetWriter::create(t.path().join("b"), Schema::KEYS_ONLY, false).unwrap();
        w.finish(Producer::default(), true, serde_json::Value::Null).unwrap();
        let b = ChunkSet::open(t.path().join("b")).unwrap();
        let e = ChunkSets::new(vec![a, b]).err().unwrap().to_string();
        assert!(e.contains("carries key,size but") && e.contains("carries key:"), "{e}");
        // One shard alone is not a side: the others are missing.
        let lone = set_of(&t.path().join("c"), &[&["a"]], 1, shard_info(2, 2));
        let e = ChunkSets::new(vec![lone]).err().unwrap();
        assert!(matches!(e, Error::Shards(_)) && e.to_string() == "shard 1/2 of ks.t is missing", "{e}");
    }

    #[test]
    fn resume_keeps_finished_chunks_with_their_key_spans() {
        let t = tempfile::tempdir().unwrap();
        let w = ChunkSetWriter::create(t.path(), Schema::KEYS_ONLY, false).unwrap();
        let hi = write(&w, &["p", "q"]);
        w.add_chunk(hi).unwrap();
        let mut unfinished = w.new_chunk().unwrap();
        unfinished.push(b"zz", &[]).unwrap();
        std::mem::forget(unfinished); // a crash: its temporary file stays behind
        drop(w);
        let (w, kept) = ChunkSetWriter::resume(t.path(), Schema::KEYS_ONLY).unwrap();
        assert_eq!(kept, ["chunk-000000.krc"]);
        assert_eq!((w.chunks()[0].first_key_hex.as_str(), w.chunks()[0].last_key_hex.as_str()), ("70", "71"));
        let lo = write(&w, &["c"]);
        w.add_chunk(lo).unwrap();
        w.finish_key_ordered(Producer::default(), serde_json::Value::Null).unwrap();
        assert_eq!(read_all(t.path()), ["c", "p", "q"]);
        let leftovers: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
