//! Memory-budgeted external sort of records into byte order, removing duplicates.
//!
//! ```text
//!  push(key, meta) ──► buffer (one arena of record bytes + one array of 16-byte entries)
//!                         │ full (bytes, not records, decide: half of --mem)
//!                         ▼
//!                      on the spill thread, while push fills the other buffer: sort entries in
//!                      parallel (rayon) by cached 8-byte prefix, then key bytes; drop duplicates
//!                      ──► spill-NNNNNN.krc, a chunk in the spill directory
//!  finish() ──► no spill: the buffer itself is the sorted result
//!           └─► spills: k-way merge (loser tree) of the spilled chunks; more than `fanin` are first
//!               merged in groups (multi-level merge, [`reduce`]) so open files stay bounded
//! ```
//! The budget bounds the merge too: each open chunk's cursor holds a read buffer of [`BUF`] bytes,
//! so a sort merges at most `mem / BUF` chunks at once (at least 2). Without that bound, the
//! merge's buffers would grow with the number of spills, that is with the input.
//! The file-level merges every producer of chunk sets shares live here too: [`reduce`] (multi-level,
//! one fan-in policy for every merge, [`fanin`] of the budget), [`write_set`] (a sorted stream into a chunk set, cut into chunks of a
//! target size) and [`merge_into_set`] (both): keyrecon-sort, the Cassandra lister's final merge and the
//! S3 inventory reader all end through them.
//! The budget holds two buffers of half of it each ([`Sorter`]), so reading and pushing go on while the
//! previous buffer is sorted and written. Their arenas and entry arrays are allocated once and reused
//! for every spill: first touch of fresh memory is slow on the VMs we run on, and the budget is then an
//! honest ceiling on resident memory.
//! Ties among equal keys keep the first record pushed (spilled chunks are merged with ties broken by spill order),
//! so `sort -u`-like "first wins" holds for metadata as well. A caller that must keep every record of a
//! key (repair's journal, where the last one wins) sorts by [`push_seq_key`] instead.
//! Spills go to a [`ScratchDir`] under `tmp_dir`, removed when the sort's output is dropped; tools keep
//! their own intermediate chunks in one too.

use crate::chunk::reader::BUF;
use crate::chunk::writer::ChunkStats;
use crate::chunk::ChunkCursor;
use crate::chunk::{ChunkSetWriter, ChunkWriter};
use crate::error::{Error, IoContext, Result};
use crate::merge::SortedCursor;
use crate::merge::{prefix8, Merge};
use crate::record::{get_varint, put_varint, Schema};
use crate::scratch::ScratchDir;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most sorted files one merge reads at once; more are first merged in groups ([`reduce`]), so the
/// open files (and their read buffers) stay bounded whatever the number of inputs.
pub const FANIN: usize = 128;

/// The one fan-in policy: how many sorted files a merge within `mem` bytes reads at once. Each open
/// file's cursor holds a read buffer of [`BUF`] bytes, so at most `mem / BUF`, never more than
/// [`FANIN`], at least 2.
pub fn fanin(mem: usize) -> usize {
    (mem.max(4096) / BUF).clamp(2, FANIN)
}

/// What a file-level merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeStats {
    /// Records written by the final merge.
    pub records: u64,
    /// Records dropped because an earlier input had the same key.
    pub duplicates: u64,
    /// Intermediate levels ([`reduce`]); 0 when one merge took every input.
    pub passes: u64,
}

/// Reduces sorted chunk files to at most `fanin`: groups of `fanin` consecutive files are merged
/// (duplicates dropped, the earlier file's record kept) into one file in `dir` that takes the group's
/// place, level by level. Keeping the order keeps "the first input wins" across levels. Intermediate
/// files are removed once merged; the inputs only if `remove_inputs` (a sort's private spills, but not
/// a lister's journaled files, which a resume still needs). Returns the files left, each with whether
/// it is an intermediate file (or an input the caller gave away), to be removed after use.
pub fn reduce(
    mut files: Vec<PathBuf>,
    fanin: usize,
    dir: &Path,
    schema: Schema,
    remove_inputs: bool,
    stats: &mut MergeStats,
) -> Result<Vec<(PathBuf, bool)>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let fanin = fanin.max(2);
    let mut ours = vec![remove_inputs; files.len()];
    while files.len() > fanin {
        stats.passes += 1;
        let (level, owned) = (std::mem::take(&mut files), std::mem::take(&mut ours));
        for (group, own) in level.chunks(fanin).zip(owned.chunks(fanin)) {
            if group.len() == 1 {
                files.push(group[0].clone());
                ours.push(own[0]);
                continue;
            }
            let cursors = group.iter().map(ChunkCursor::open).collect::<Result<Vec<_>>>()?;
            let mut m = Merge::new(cursors, true);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let p = dir.join(format!("merge-{}-{n:06}.krc", std::process::id()));
            let written = write_chunk(&mut m, &p, schema)?;
            stats.duplicates += m.duplicates();
            drop(m);
            if written.is_some() {
                files.push(p);
                ours.push(true);
            }
            for (f, o) in group.iter().zip(own) {
                if *o {
                    std::fs::remove_file(f).ctx(f)?;
                }
            }
        }
    }
    Ok(files.into_iter().zip(ours).collect())
}

/// Writes a sorted, duplicate-free stream into the one chunk file `path`. An empty stream leaves no
/// file: `None`.
pub fn write_chunk(src: &mut dyn SortedCursor, path: &Path, schema: Schema) -> Result<Option<ChunkStats>> {
    let mut w = ChunkWriter::create(path, schema)?;
    while src.advance()? {
        w.push(src.key(), src.meta())?;
    }
    w.finish()
}

/// Writes a sorted, duplicate-free stream into `out` as chunks of about `chunk_bytes` each (so the set
/// is disjoint). Returns the records written.
pub fn write_set(src: &mut dyn SortedCursor, out: &ChunkSetWriter, chunk_bytes: u64) -> Result<u64> {
    let mut w = out.new_chunk()?;
    let mut n = 0;
    while src.advance()? {
        if w.data_len() >= chunk_bytes {
            out.add_chunk(std::mem::replace(&mut w, out.new_chunk()?))?;
        }
        w.push(src.key(), src.meta())?;
        n += 1;
    }
    out.add_chunk(w)?;
    Ok(n)
}

/// Merges sorted chunk files (each strictly increasing; together overlapping, with duplicates) into
/// the chunk set `out`: [`reduce`] to the [`fanin`] of `mem` in `dir`, one loser-tree merge,
/// [`write_set`]. Among equal keys the record of the earliest file in `files` wins. The inputs are left
/// in place.
pub fn merge_into_set(
    files: Vec<PathBuf>,
    dir: &Path,
    schema: Schema,
    out: &ChunkSetWriter,
    chunk_bytes: u64,
    mem: usize,
) -> Result<MergeStats> {
    let mut stats = MergeStats::default();
    let files = reduce(files, fanin(mem), dir, schema, false, &mut stats)?;
    let cursors = files.iter().map(|(f, _)| ChunkCursor::open(f)).collect::<Result<Vec<_>>>()?;
    let mut m = Merge::new(cursors, true);
    stats.records = write_set(&mut m, out, chunk_bytes)?;
    stats.duplicates += m.duplicates();
    drop(m);
    for (f, _) in files.iter().filter(|(_, ours)| *ours) {
        std::fs::remove_file(f).ctx(f)?;
    }
    Ok(stats)
}

#[derive(Clone, Debug)]
pub struct SortConfig {
    /// Memory for the buffer, in bytes.
    pub mem: usize,
    /// Parent directory for spill files (a private subdirectory is created lazily and removed at the end).
    pub tmp_dir: PathBuf,
    /// Most chunks merged at once ([`Sorter::new`] lowers it to what the budget holds).
    pub fanin: usize,
    pub schema: Schema,
}

impl SortConfig {
    pub fn new(mem: usize, tmp_dir: impl Into<PathBuf>, schema: Schema) -> Self {
        SortConfig { mem, tmp_dir: tmp_dir.into(), fanin: FANIN, schema }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SortStats {
    pub records_in: u64,
    pub duplicates: u64,
    pub unique: u64,
    pub chunks_spilled: u64,
    pub bytes_spilled: u64,
    pub merge_passes: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    /// First 8 key bytes, big endian, zero padded: integer order = byte order on this prefix.
    prefix: u64,
    /// Offset of the record in the arena: key bytes, then (if schema) varint meta length + meta.
    off: u32,
    klen: u32,
}

/// Runs shorter than this are finished with a comparison sort of their key bytes.
const SETTLE_SMALL: usize = 16;
/// Key depth after which runs (long shared prefixes, many copies of one long key) are finished with a
/// comparison sort instead of more levels.
const SETTLE_MAX_DEPTH: usize = 64;
/// Slices at least this long are split or sorted on several threads.
const SETTLE_PAR: usize = 1 << 16;

/// `es` is ordered by `prefix`, which holds key bytes `d..d + 8` (zero padded) of keys whose first `d`
/// bytes are equal within each run of equal prefixes. Puts every run in key order, ties by arena
/// offset (push order). Large slices are split at a run boundary and settled on two threads.
fn settle_runs(es: &mut [Entry], arena: &[u8], d: usize) {
    if es.len() >= SETTLE_PAR {
        let mid = es.len() / 2;
        let differs = |i: usize| es[i].prefix != es[i - 1].prefix;
        let cut = (mid..es.len()).find(|&i| differs(i)).or_else(|| (1..mid).rev().find(|&i| differs(i)));
        match cut {
            Some(cut) => {
                let (a, b) = es.split_at_mut(cut);
                rayon::join(|| settle_runs(a, arena, d), || settle_runs(b, arena, d));
            }
            None => settle(es, arena, d),
        }
        return;
    }
    let mut start = 0;
    while start < es.len() {
        let p = es[start].prefix;
        let end = start + es[start..].iter().position(|e| e.prefix != p).unwrap_or(es.len() - start);
        if end - start > 1 {
            settle(&mut es[start..end], arena, d);
        }
        start = end;
    }
}

/// Sorts `run`, whose keys all have the same first `d` bytes (and are at least `d` long) and the same
/// `prefix` (bytes `d..d + 8`, zero padded), into key order, ties by arena offset.
fn settle(run: &mut [Entry], arena: &[u8], d: usize) {
    let window = |e: &Entry| (e.klen as usize - d).min(8);
    if run.iter().any(|e| window(e) < 8) {
        // Some keys end inside the window. With equal padded bytes, fewer real bytes come first (the
        // key is a prefix of the longer one, or that one goes on with zero bytes); keys that end at the
        // same place inside the window are equal. Only the full-window group goes deeper.
        run.sort_unstable_by_key(|e| window(e));
        let full = run.iter().position(|e| window(e) == 8).unwrap_or(run.len());
        let (short, long) = run.split_at_mut(full);
        for group in short.chunk_by_mut(|a, b| window(a) == window(b)) {
            group.sort_unstable_by_key(|e| e.off);
        }
        if long.len() > 1 {
            deeper(long, arena, d);
        }
        return;
    }
    deeper(run, arena, d);
}

/// Sorts `run`, whose keys all agree on their first `d + 8` bytes, by what follows.
fn deeper(run: &mut [Entry], arena: &[u8], d: usize) {
    if run.len() < SETTLE_SMALL || d + 8 >= SETTLE_MAX_DEPTH {
        // Small or deep (long shared prefixes, many copies of a long key): compare the rest of the keys.
        let tail = |e: &Entry| &arena[e.off as usize + d..e.off as usize + e.klen as usize];
        let cmp = |a: &Entry, b: &Entry| tail(a).cmp(tail(b)).then(a.off.cmp(&b.off));
        if run.len() >= SETTLE_PAR {
            run.par_sort_unstable_by(cmp);
        } else {
            run.sort_unstable_by(cmp);
        }
        return;
    }
    let d = d + 8;
    let load = |e: &mut Entry| e.prefix = prefix8(&arena[e.off as usize + d..e.off as usize + e.klen as usize]);
    if run.len() >= SETTLE_PAR {
        run.par_iter_mut().for_each(load);
        run.par_sort_unstable_by_key(|e| e.prefix);
    } else {
        run.iter_mut().for_each(load);
        run.sort_unstable_by_key(|e| e.prefix);
    }
    settle_runs(run, arena, d);
}

/// How many entries ahead of the one being written its record is fetched into cache ([`prefetch`]).
const PREFETCH: usize = 16;

/// Asks the CPU to fetch `e`'s record (key and the start of its metadata) into cache. Entries are
/// read in sorted order, records sit in the arena in push order: without this, every record read
/// is a cache miss that stalls the writer (a third of keyrecon-sort's samples on 10M keys, in the
/// chunk writer's first look at the key).
#[inline(always)]
fn prefetch(arena: &[u8], e: &Entry) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = arena.as_ptr().wrapping_add(e.off as usize);
        // SAFETY: a prefetch is a hint that never faults, whatever the address; nothing is read here.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(e.klen as usize) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (arena, e);
}

/// One buffer of records: their bytes in push order (key, then varint meta length + meta unless the
/// schema is keys-only) and one 16-byte entry per record, sorted by prefix settling and written as one
/// chunk. The [`Sorter`]'s buffers, and the Cassandra lister's per-worker runs. Records must stay
/// below 4 GiB in all (offsets are 32-bit).
#[derive(Default)]
pub struct RecordBuffer {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl RecordBuffer {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held: record bytes and entries.
    pub fn bytes(&self) -> usize {
        self.arena.len() + self.entries.len() * std::mem::size_of::<Entry>()
    }

    /// Appends a record (`meta` is dropped for a keys-only `schema`).
    #[inline]
    pub fn push(&mut self, key: &[u8], meta: &[u8], schema: Schema) {
        let off = u32::try_from(self.arena.len()).expect("a record buffer holds less than 4 GiB");
        self.arena.extend_from_slice(key);
        if !schema.is_keys_only() {
            put_varint(&mut self.arena, meta.len() as u64);
            self.arena.extend_from_slice(meta);
        }
        self.entries.push(Entry { prefix: prefix8(key), off, klen: key.len() as u32 });
    }

    /// Sorts (first pushed wins among equal keys) and writes the records into the chunk `path`;
    /// `None` when there are none. Returns the chunk's stats and the duplicates dropped, and leaves the
    /// buffer empty.
    pub fn sort_into_chunk(&mut self, path: &Path, schema: Schema) -> Result<Option<(ChunkStats, u64)>> {
        if self.is_empty() {
            return Ok(None);
        }
        let dups = self.sort();
        let st = self.write(path, schema)?;
        self.clear();
        Ok(Some((st, dups)))
    }

    fn key(&self, e: &Entry) -> &[u8] {
        &self.arena[e.off as usize..e.off as usize + e.klen as usize]
    }

    fn meta(&self, e: &Entry, schema: Schema) -> &[u8] {
        if schema.is_keys_only() {
            return &[];
        }
        let mut rest = &self.arena[e.off as usize + e.klen as usize..];
        let n = get_varint(&mut rest).expect("arena holds what push wrote") as usize;
        &rest[..n]
    }

    /// Sorts the entries and drops duplicates (first pushed wins); returns how many were dropped.
    ///
    /// Comparing whole keys costs two cache misses into the arena per comparison, and a comparison
    /// sort makes log2(n) of them per entry wherever 8-byte prefixes tie (date paths, `t01` ids,
    /// duplicates). So the entries are sorted by prefix alone first, and each run of equal prefixes is
    /// then settled by [`settle`]: the prefix reloaded from the next 8 key bytes (one miss per entry
    /// and level) and the run sorted by it, level by level, like an MSD radix sort on 8-byte digits.
    fn sort(&mut self) -> u64 {
        let arena = &self.arena[..];
        self.entries.par_sort_unstable_by_key(|e| e.prefix);
        settle_runs(&mut self.entries, arena, 0);
        let key = |e: &Entry| &arena[e.off as usize..e.off as usize + e.klen as usize];
        let before = self.entries.len();
        // Equal keys went down the same runs, so their prefixes were loaded from the same depth.
        self.entries.dedup_by(|b, a| a.prefix == b.prefix && a.klen == b.klen && key(a) == key(b));
        (before - self.entries.len()) as u64
    }

    /// Writes the sorted entries' records into the chunk `path`.
    fn write(&self, path: &Path, schema: Schema) -> Result<ChunkStats> {
        let mut w = ChunkWriter::create(path, schema)?;
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(ahead) = self.entries.get(i + PREFETCH) {
                prefetch(&self.arena, ahead);
            }
            w.push(self.key(e), self.meta(e, schema))?;
        }
        Ok(w.finish()?.expect("a spill is never empty"))
    }

    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }
}

/// A full buffer being sorted and written into the spill `path` on a thread of its own; the thread
/// hands the buffer back (emptied) with the duplicates it dropped and the chunk's stats.
struct Spilling {
    path: PathBuf,
    job: std::thread::JoinHandle<Result<(RecordBuffer, u64, ChunkStats)>>,
}

/// The external sort. The budget is split between two buffers of half of it each, so that reading and
/// pushing never waits for a spill:
/// ```text
///  push ──► buffer A (filling)           buffer B: sorted (rayon) and written to spill N on the
///              │ full                              spill thread, then handed back empty
///              ▼
///           wait for B's spill; A goes to the spill thread as spill N+1; push fills B
/// ```
/// One spill is in flight at a time and spills are numbered when they are handed over, so the
/// spilled chunks stay in push order and the merge's ties by input order still keep the first
/// pushed record. A spill's error comes back at the next spill or at [`finish`](Self::finish).
pub struct Sorter {
    cfg: SortConfig,
    /// The buffer being filled.
    buf: RecordBuffer,
    /// The other buffer's memory, back from its spill (or not yet allocated).
    spare: RecordBuffer,
    spilling: Option<Spilling>,
    /// Capacity of each buffer's arena (bytes) and entries.
    arena_cap: usize,
    entries_cap: usize,
    spill_dir: Option<ScratchDir>,
    spilled: Vec<PathBuf>,
    next_spill: u64,
    stats: SortStats,
}

impl Sorter {
    pub fn new(mut cfg: SortConfig) -> Self {
        // Bytes decide: two buffers of half the budget each; in each, 3/4 for record bytes, 1/4 for
        // entries (~40-byte keys fill both about evenly).
        let mem = cfg.mem.max(4096);
        cfg.fanin = cfg.fanin.min(fanin(mem));
        let half = mem / 2;
        let entries_cap = (half / 4 / std::mem::size_of::<Entry>()).max(16);
        let arena_cap = (half - entries_cap * std::mem::size_of::<Entry>()).min(u32::MAX as usize);
        Sorter {
            cfg,
            buf: RecordBuffer::default(),
            spare: RecordBuffer::default(),
            spilling: None,
            arena_cap,
            entries_cap,
            spill_dir: None,
            spilled: Vec::new(),
            next_spill: 0,
            stats: SortStats::default(),
        }
    }

    pub fn stats(&self) -> &SortStats {
        &self.stats
    }

    #[inline]
    pub fn push(&mut self, key: &[u8], meta: &[u8]) -> Result<()> {
        let need = key.len() + if self.cfg.schema.is_keys_only() { 0 } else { meta.len() + 10 };
        if self.buf.arena.len() + need > self.arena_cap || self.buf.entries.len() >= self.entries_cap {
            if need > self.arena_cap {
                return Err(Error::Usage(format!(
                    "a record of {need} bytes does not fit in half of --mem {} (one of its two buffers)",
                    self.cfg.mem
                )));
            }
            self.spill()?;
        }
        let b = &mut self.buf;
        if b.arena.capacity() == 0 {
            b.arena.reserve_exact(self.arena_cap);
            b.entries.reserve_exact(self.entries_cap);
        }
        b.push(key, meta, self.cfg.schema);
        self.stats.records_in += 1;
        Ok(())
    }

    fn spill_dir(&mut self) -> Result<PathBuf> {
        if self.spill_dir.is_none() {
            self.spill_dir = Some(ScratchDir::create(&self.cfg.tmp_dir, "sort")?);
        }
        Ok(self.spill_dir.as_ref().expect("just created").path().to_path_buf())
    }

    fn next_spill_path(&mut self) -> Result<PathBuf> {
        let dir = self.spill_dir()?;
        self.next_spill += 1;
        Ok(dir.join(format!("spill-{:06}.krc", self.next_spill)))
    }

    /// Hands the full buffer to the spill thread (after the spill before it is done) and goes on
    /// with the other one.
    fn spill(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wait_spill()?;
        let path = self.next_spill_path()?;
        let schema = self.cfg.schema;
        if rayon::current_thread_index().is_some() {
            // Pushed from a rayon worker (the hash diff's outcome collectors, its sorting fallback):
            // spill here. A spill thread sorts on the global rayon pool, and waiting for it from a
            // worker can leave no worker to sort: the 2 x 50M hash diff hung with one worker waiting
            // for a spill and the other for the collector's lock. Sorting here, the worker takes part.
            let (st, dups) = self.buf.sort_into_chunk(&path, schema)?.expect("a full buffer");
            self.spilled(path, dups, &st);
            return Ok(());
        }
        let mut full = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare));
        let to = path.clone();
        let job = std::thread::Builder::new()
            .name("keyrecon-spill".into())
            .spawn(move || {
                let (st, dups) = full.sort_into_chunk(&to, schema)?.expect("a full buffer");
                Ok((full, dups, st))
            })
            .ctx(&path)?;
        self.spilling = Some(Spilling { path, job });
        Ok(())
    }

    /// Waits for the spill in flight, if any, and takes its buffer back as the spare.
    fn wait_spill(&mut self) -> Result<()> {
        let Some(Spilling { path, job }) = self.spilling.take() else {
            return Ok(());
        };
        let (buf, dups, st) = job.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        self.spare = buf;
        self.spilled(path, dups, &st);
        Ok(())
    }

    fn spilled(&mut self, path: PathBuf, dups: u64, st: &ChunkStats) {
        self.stats.duplicates += dups;
        self.stats.chunks_spilled += 1;
        self.stats.bytes_spilled += st.data_len;
        self.spilled.push(path);
    }

    /// Merges the spilled chunks level by level ([`reduce`]) until one merge can take them all. They stay in push
    /// order, which keeps "first pushed wins" among duplicates.
    fn reduce_spilled(&mut self) -> Result<()> {
        let mut ms = MergeStats::default();
        let dir = self.spill_dir()?;
        let left = reduce(std::mem::take(&mut self.spilled), self.cfg.fanin, &dir, self.cfg.schema, true, &mut ms)?;
        self.spilled = left.into_iter().map(|(f, _)| f).collect();
        self.stats.merge_passes += ms.passes;
        self.stats.duplicates += ms.duplicates;
        Ok(())
    }

    /// Ends input and returns the sorted, duplicate-free records as a cursor. Spill files are removed
    /// when the cursor is dropped.
    pub fn finish(mut self) -> Result<SortedOutput> {
        if self.spilled.is_empty() && self.spilling.is_none() {
            self.stats.duplicates += self.buf.sort();
            self.stats.unique = self.buf.entries.len() as u64;
            self.spare = RecordBuffer::default();
            let stats = self.stats.clone();
            return Ok(SortedOutput {
                inner: Inner::Mem { sorter: Box::new(self), at: usize::MAX },
                stats,
                dup_base: 0,
                _spill: None,
            });
        }
        // The last buffer is sorted and written here while the spill thread finishes the one before;
        // its chunk goes after that one's.
        let last = if self.buf.is_empty() {
            None
        } else {
            let path = self.next_spill_path()?;
            let (st, dups) = self.buf.sort_into_chunk(&path, self.cfg.schema)?.expect("not empty");
            Some((path, dups, st))
        };
        self.wait_spill()?;
        if let Some((path, dups, st)) = last {
            self.spilled(path, dups, &st);
        }
        // The buffers' work is done: give their memory back before the merge's cursors take theirs, so
        // the two never add up past the budget.
        self.buf = RecordBuffer::default();
        self.spare = RecordBuffer::default();
        self.reduce_spilled()?;
        let cursors = self.spilled.iter().map(ChunkCursor::open).collect::<Result<Vec<_>>>()?;
        let stats = self.stats.clone();
        Ok(SortedOutput {
            inner: Inner::Merge(Merge::new(cursors, true)),
            dup_base: stats.duplicates,
            stats,
            _spill: self.spill_dir.take(),
        })
    }

    /// Ends input and writes the result into `out` as disjoint chunks of about `chunk_bytes` each.
    pub fn finish_into(self, out: &ChunkSetWriter, chunk_bytes: u64) -> Result<SortStats> {
        let mut sorted = self.finish()?;
        write_set(&mut sorted, out, chunk_bytes)?;
        Ok(sorted.stats())
    }
}

impl Drop for Sorter {
    /// A sorter dropped with a spill in flight (an error upstream) waits for it, so that the spill
    /// directory is removed after its last file is written, not before.
    fn drop(&mut self) {
        if let Some(s) = self.spilling.take() {
            let _ = s.job.join();
        }
    }
}

enum Inner {
    Mem { sorter: Box<Sorter>, at: usize },
    Merge(Merge<ChunkCursor>),
}

/// The sorted result of a [`Sorter`].
pub struct SortedOutput {
    inner: Inner,
    stats: SortStats,
    dup_base: u64,
    /// Declared last: the spilled chunks are removed after the cursors over them are dropped.
    _spill: Option<ScratchDir>,
}

impl SortedOutput {
    /// Statistics; `duplicates` and `unique` are final once the cursor is exhausted.
    pub fn stats(&self) -> SortStats {
        let mut s = self.stats.clone();
        if let Inner::Merge(m) = &self.inner {
            s.duplicates = self.dup_base + m.duplicates();
            s.unique = m.records();
        }
        s
    }
}

impl SortedCursor for SortedOutput {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        match &mut self.inner {
            Inner::Mem { sorter, at } => {
                *at = at.wrapping_add(1);
                let b = &sorter.buf;
                if let Some(ahead) = b.entries.get(at.wrapping_add(PREFETCH)) {
                    prefetch(&b.arena, ahead);
                }
                Ok(*at < b.entries.len())
            }
            Inner::Merge(m) => m.advance(),
        }
    }
    #[inline]
    fn key(&self) -> &[u8] {
        match &self.inner {
            Inner::Mem { sorter, at } => sorter.buf.key(&sorter.buf.entries[*at]),
            Inner::Merge(m) => m.key(),
        }
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        match &self.inner {
            Inner::Mem { sorter, at } => sorter.buf.meta(&sorter.buf.entries[*at], sorter.cfg.schema),
            Inner::Merge(m) => m.meta(),
        }
    }
}

/// Default spill directory: `$TMPDIR` or /tmp.
pub fn default_tmp() -> PathBuf {
    std::env::temp_dir()
}

/// Appends the sort key of record number `seq` of `key`, for sorting records of which a key may have
/// many and all must be kept, in arrival order. The [`Sorter`] keeps the first of equal keys; a reader
/// that needs another (repair's journal: the last final record of a key wins) sorts by this instead:
/// ```text
///  key bytes, each 0x00 written as 0x00 0xff │ 0x00 0x00 │ seq: u64 big endian
/// ```
/// The escaping keeps byte order and no escaped key is a prefix of another, so these sort keys order
/// by (key bytes, seq): a key's records come out together in `seq` order, keys in byte order.
#[inline]
pub fn push_seq_key(out: &mut Vec<u8>, key: &[u8], seq: u64) {
    out.reserve(key.len() + 10);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&seq.to_be_bytes());
}

/// Splits a [`push_seq_key`] sort key: the key into `key` (replacing what it held) and the sequence
/// number returned. `None` if `b` is not such a sort key.
#[inline]
pub fn split_seq_key(b: &[u8], key: &mut Vec<u8>) -> Option<u64> {
    key.clear();
    let mut at = 0;
    loop {
        let zero = at + memchr::memchr(0, &b[at..])?;
        key.extend_from_slice(&b[at..zero]);
        match *b.get(zero + 1)? {
            0xff => key.push(0),
            0 => return Some(u64::from_be_bytes(b.get(zero + 2..)?.try_into().ok()?)),
            _ => return None,
        }
        at = zero + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Regression: sorters pushed from rayon workers (the hash diff's outcome collectors) handed full
    /// buffers to a spill thread whose sort runs on the global pool, and waited for it at the next
    /// spill; with every worker busy or waiting, nothing sorted (the 2 x 50M hash diff hung). Here every
    /// worker of the global pool pushes into a sorter of its own until it spills several times, and no
    /// worker returns to the pool before all are done: without spilling in place, that hangs.
    #[test]
    fn sorters_pushed_from_every_rayon_worker_spill_without_hanging() {
        const N: u64 = 400_000;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let done = std::sync::Barrier::new(rayon::current_num_threads());
            let counts = rayon::broadcast(|ctx| {
                // Buffers of 8 MiB (as the collectors of a 256M diff have): sorts large enough for rayon
                // to split them (small ones it sorts on the calling thread).
                let mut s = Sorter::new(SortConfig::new(16 << 20, dir.path(), Schema::KEYS_ONLY));
                for i in 0..N {
                    s.push(format!("{}/2024/01/{:020}", ctx.index(), (i * 7919) % N).as_bytes(), b"").unwrap();
                }
                let spilled = s.stats().chunks_spilled;
                let mut out = s.finish().unwrap();
                let mut n = 0u64;
                while out.advance().unwrap() {
                    n += 1;
                }
                done.wait();
                (spilled, n)
            });
            tx.send(counts).unwrap();
        });
        let counts = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("sorters on rayon workers hung");
        for (spilled, n) in counts {
            assert!(spilled >= 3, "each sorter must spill several times ({spilled})");
            assert_eq!(n, N);
        }
    }

    fn sorted(keys: &[Vec<u8>], mem: usize, fanin: usize) -> (Vec<Vec<u8>>, SortStats) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SortConfig::new(mem, dir.path(), Schema::KEYS_ONLY);
        cfg.fanin = fanin;
        let mut s = Sorter::new(cfg);
        for k in keys {
            s.push(k, b"").unwrap();
        }
        let mut out = s.finish().unwrap();
        let mut v = Vec::new();
        while out.advance().unwrap() {
            v.push(out.key().to_vec());
        }
        let st = out.stats();
        drop(out);
        // Spill directories are cleaned up.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        (v, st)
    }

    #[test]
    fn random_against_sort_dedup_many_budgets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for round in 0..12 {
            let n = rng.gen_range(0..5000);
            let alphabet: &[u8] = if round % 2 == 0 { b"ab" } else { b"\x00\x01\x7f\x80\xff/x" };
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = rng.gen_range(1..if round % 3 == 0 { 40 } else { 12 });
                    let mut k: Vec<u8> = if round % 4 == 1 { b"images/2024/01/".to_vec() } else { vec![] };
                    k.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
                    k
                })
                .collect();
            let mut want = keys.clone();
            want.sort();
            want.dedup();
            for (mem, fanin) in [(4096, 2), (4096, 3), (1 << 14, 4), (1 << 30, 128)] {
                let (got, st) = sorted(&keys, mem, fanin);
                assert_eq!(got, want, "round {round} mem {mem} fanin {fanin}");
                assert_eq!(st.unique + st.duplicates, n as u64, "round {round} mem {mem}");
                if mem == 4096 && n > 3000 {
                    assert!(
                        st.chunks_spilled > 2 && st.merge_passes > 0,
                        "budget should force multi-level merges: {st:?}"
                    );
                }
            }
        }
    }

    /// The prefix-by-prefix sort ([`settle`]) on buffers large enough to split across threads: keys that
    /// tie on 8, 16, .. 80 bytes, keys that end inside a prefix (zero padding vs real zero bytes), many
    /// copies of one long key; in memory and spilled, against sort + dedup, first pushed wins.
    #[test]
    fn settle_levels_against_sort_dedup_on_large_buffers() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let long = vec![b'p'; 75];
        let keys: Vec<Vec<u8>> = (0..300_000)
            .map(|i| {
                let mut k = match i % 5 {
                    0 => b"images/2024/01/01/".to_vec(),
                    1 => long.clone(),
                    2 => vec![0u8; rng.gen_range(0..12)],
                    3 => b"t01".to_vec(),
                    _ => Vec::new(),
                };
                let tail = rng.gen_range(0..if i % 7 == 0 { 3 } else { 14 });
                k.extend((0..tail).map(|_| *b"\x00\x01ab\xff".get(rng.gen_range(0..5)).unwrap()));
                k
            })
            .collect();
        let mut want: Vec<(Vec<u8>, u32)> = keys.iter().cloned().zip(0..).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        want.dedup_by(|b, a| a.0 == b.0);
        for mem in [1 << 30, 1 << 22] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Sorter::new(SortConfig::new(mem, dir.path(), Schema(Schema::SIZE)));
            for (i, k) in keys.iter().enumerate() {
                s.push(k, &(i as u32).to_le_bytes()).unwrap();
            }
            let mut out = s.finish().unwrap();
            let mut got = Vec::new();
            while out.advance().unwrap() {
                got.push((out.key().to_vec(), u32::from_le_bytes(out.meta().try_into().unwrap())));
            }
            assert_eq!(got.len(), want.len(), "mem {mem}");
            assert!(got == want, "mem {mem}: sorted output or first-pushed metadata differs");
        }
    }

    /// Issue 15: the two buffers (one filling while the other is sorted and written on the spill thread)
    /// at budgets that force many spills and multi-level merges, with keys that share long prefixes
    /// (18, 28 and 70 bytes) and duplicates pushed far apart, so that copies of a key land in both
    /// buffers and in many spills: against sort + dedup, the first pushed record's metadata winning.
    #[test]
    fn overlapped_spills_keep_the_first_pushed_record_across_multi_level_merges() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1515);
        for round in 0..6 {
            let distinct = rng.gen_range(300..2500);
            let base: Vec<Vec<u8>> = (0..distinct)
                .map(|i| {
                    let mut k = match i % 4 {
                        0 => b"images/2024/01/01/0000000000".to_vec(),
                        1 => vec![b'p'; 70],
                        2 => b"t01".to_vec(),
                        _ => b"images/2024/01/01/".to_vec(),
                    };
                    k.extend((0..rng.gen_range(0..7)).map(|_| *b"\x00\x01ab\xff".get(rng.gen_range(0..5)).unwrap()));
                    k
                })
                .collect();
            let n = distinct * rng.gen_range(2..5);
            let keys: Vec<&Vec<u8>> = (0..n).map(|_| &base[rng.gen_range(0..base.len())]).collect();
            let mut want = std::collections::BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                want.entry(k.to_vec()).or_insert(i as u32);
            }
            for mem in [4096, 1 << 13, 1 << 15] {
                let dir = tempfile::tempdir().unwrap();
                let mut s = Sorter::new(SortConfig::new(mem, dir.path(), Schema(Schema::SIZE)));
                for (i, k) in keys.iter().enumerate() {
                    s.push(k, &(i as u32).to_le_bytes()).unwrap();
                }
                let mut out = s.finish().unwrap();
                let mut got = std::collections::BTreeMap::new();
                let mut prev: Option<Vec<u8>> = None;
                while out.advance().unwrap() {
                    assert!(prev.as_deref() < Some(out.key()), "round {round} mem {mem}: out of order");
                    prev = Some(out.key().to_vec());
                    got.insert(out.key().to_vec(), u32::from_le_bytes(out.meta().try_into().unwrap()));
                }
                let st = out.stats();
                assert!(got == want, "round {round} mem {mem}: keys or first-pushed metadata differ");
                assert_eq!(st.unique + st.duplicates, n as u64, "round {round} mem {mem}");
                assert!(st.chunks_spilled > 4 && st.merge_passes > 1, "round {round} mem {mem}: {st:?}");
            }
        }
    }

    /// The multi-level merge at any fan-in (the sorter's own fan-in is bounded by its budget, so small
    /// budgets only ever use 2): sort + dedup, the earliest file's record winning, inputs kept.
    #[test]
    fn reduce_at_any_fanin_keeps_the_earliest_files_record() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        let mut want = std::collections::BTreeMap::new();
        for f in 0..20u8 {
            let mut keys: Vec<Vec<u8>> = (0..rng.gen_range(0..300))
                .map(|_| vec![b'k', rng.gen_range(0..4u8), rng.gen_range(0..200u8)])
                .collect();
            keys.sort();
            keys.dedup();
            let p = dir.path().join(format!("in-{f:02}.krc"));
            let mut w = ChunkWriter::create(&p, Schema(Schema::SIZE)).unwrap();
            for k in &keys {
                w.push(k, &[f]).unwrap();
                want.entry(k.clone()).or_insert(f);
            }
            if w.finish().unwrap().is_some() {
                files.push(p);
            }
        }
        for fanin in [2, 3, 4, 7, 128] {
            let work = tempfile::tempdir().unwrap();
            let mut st = MergeStats::default();
            let left = reduce(files.clone(), fanin, work.path(), Schema(Schema::SIZE), false, &mut st).unwrap();
            assert!(left.len() <= fanin, "fanin {fanin}: {} files left", left.len());
            assert_eq!(st.passes > 0, files.len() > fanin, "fanin {fanin}");
            let mut m = Merge::new(left.iter().map(|(f, _)| ChunkCursor::open(f).unwrap()).collect(), true);
            let mut got = std::collections::BTreeMap::new();
            while m.advance().unwrap() {
                got.insert(m.key().to_vec(), m.meta()[0]);
            }
            assert_eq!(got, want, "fanin {fanin}");
            assert!(files.iter().all(|f| f.exists()), "inputs are the caller's");
        }
    }

    #[test]
    fn seq_keys_order_by_key_then_seq_and_split_back() {
        let keys: [&[u8]; 9] =
            [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff", b"a", b"a\x00", b"a\x00b", b"\xff"];
        let mut all = Vec::new();
        for k in keys {
            for seq in [0u64, 1, 255, 256, u64::MAX] {
                let mut sk = Vec::new();
                push_seq_key(&mut sk, k, seq);
                all.push((k.to_vec(), seq, sk));
            }
        }
        let mut by_tuple = all.clone();
        by_tuple.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(all, by_tuple, "byte order of seq keys = order by (key, seq)");
        let mut key = b"junk".to_vec();
        for (k, seq, sk) in &all {
            assert_eq!(split_seq_key(sk, &mut key), Some(*seq));
            assert_eq!(&key, k);
        }
        for bad in [&b""[..], b"ab", b"a\x00", b"a\x00\x01", b"a\x00\x00\x01"] {
            assert_eq!(split_seq_key(bad, &mut key), None, "{bad:?}");
        }
    }

    /// The sorter keeps the first of equal keys; by seq key it keeps all of them, and the last record
    /// of each key is there to take, whatever was spilled.
    #[test]
    fn seq_keys_keep_every_record_across_spills() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(SortConfig::new(1 << 14, dir.path(), Schema(Schema::SIZE)));
        let mut sk = Vec::new();
        for seq in 0..6000u64 {
            sk.clear();
            push_seq_key(&mut sk, format!("k{}", seq % 7).as_bytes(), seq);
            s.push(&sk, &seq.to_le_bytes()).unwrap();
        }
        let mut out = s.finish().unwrap();
        assert!(out.stats().chunks_spilled > 1);
        let (mut key, mut last) = (Vec::new(), std::collections::BTreeMap::new());
        let mut n = 0;
        while out.advance().unwrap() {
            let seq = split_seq_key(out.key(), &mut key).unwrap();
            assert_eq!(u64::from_le_bytes(out.meta().try_into().unwrap()), seq);
            last.insert(key.clone(), seq);
            n += 1;
        }
        assert_eq!(n, 6000);
        assert_eq!(last.get(&b"k0"[..]), Some(&5999), "the last record of k0 came out last");
        assert_eq!(last.len(), 7);
    }

    #[test]
    fn first_pushed_metadata_wins_across_spills() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(SortConfig::new(1 << 16, dir.path(), Schema(Schema::SIZE)));
        for i in 0..20000u32 {
            let k = format!("k{:05}", i % 5000);
            s.push(k.as_bytes(), &i.to_le_bytes()).unwrap();
        }
        let mut out = s.finish().unwrap();
        let mut n = 0;
        while out.advance().unwrap() {
            let i = u32::from_le_bytes(out.meta().try_into().unwrap());
            assert!(i < 5000, "key {:?} kept a later duplicate's metadata ({i})", String::from_utf8_lossy(out.key()));
            n += 1;
        }
        assert_eq!(n, 5000);
        assert_eq!(out.stats().duplicates, 15000);
    }
}
