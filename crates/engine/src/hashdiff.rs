//! Diff of unsorted inputs without sorting them: hash partitioning, then a hash join per partition.
//!
//! A set difference does not need byte order, only equality. So instead of sorting 2 x N keys we:
//! ```text
//!  phase 1 (one thread per side)               phase 2 (rayon, one partition per task)
//!  key ─► h = xxh3_64(key) ─► partition h>>s    load both sides of partition p (spill file + tail),
//!          append to fixed buffer of (side,p)    each record copied into sub-partition (h<<s)>>t
//!          full ─► append to spill file          per sub-partition (sized to stay in L2):
//!                                                  source side ─► open-addressing table (first wins)
//!                                                  target side streams through it: only-target,
//!                                                  both (metadata compared), and what is left of
//!                                                  the table is only-source ─► outcome collectors
//!  end: the outcome collectors (external sorters; outcomes are few next to the inputs) are sorted into
//!       byte order and replayed through the DiffWriter in one ordered pass, so the output files equal
//!       the sorted walk's byte for byte.
//! ```
//! Exactness: a table slot holds a 32-bit tag of the hash and an index; equal tags are confirmed by the
//! full hash and then the key bytes, so collisions only cost time. Deduplication keeps the first
//! occurrence of a key in input order, like `sort -u` (the source side on insert into the table, the
//! target side in a second table of target-only keys).
//!
//! Memory: the phase-1 buffers are allocated once at a fixed size (first touch of fresh memory is slow
//! on our VMs; large buffers are advised to use huge pages), and the partition count is chosen from the
//! input sizes so that one partition of both sides fits in a worker's share of `--mem`; its
//! sub-partitions keep the join's tables and keys in cache. When the inputs fit in memory nothing is
//! spilled at all. A partition that still exceeds its share (unknown input sizes, or one key repeated millions of times) is diffed by the
//! external sorter and the sorted walk instead (`diff_partition_by_sorting`), which spills.

use crate::diff::{Comparator, Counts, DiffWriter};
use crate::error::{Error, IoContext, Result};
use crate::input::{RecordSource, SourceStats};
use crate::merge::SortedCursor;
use crate::record::{get_varint, put_varint, Schema};
use crate::scratch::ScratchDir;
use crate::sort::{SortConfig, SortedOutput, Sorter};
use rayon::prelude::*;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use xxhash_rust::xxh3::xxh3_64;

#[derive(Clone, Debug)]
pub struct HashDiffConfig {
    pub mem: usize,
    pub tmp_dir: PathBuf,
    /// Force a partition count (power of two); `None` chooses from input sizes.
    pub partitions: Option<usize>,
    /// Keys per side a sub-partition aims at; `None` is [`Split::KEYS`]. Tests set it small so that
    /// small inputs are split too.
    pub sub_keys: Option<usize>,
}

/// Per-side results.
#[derive(Clone, Debug, Default)]
pub struct SideResult {
    pub source: SourceStats,
    /// Distinct keys.
    pub unique: u64,
    /// Duplicate records removed (including those the source removed itself).
    pub duplicates: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HashDiffStats {
    pub partitions: usize,
    pub spilled_bytes: u64,
    pub oversized_partitions: u64,
    /// Sub-partitions joined (over all partitions).
    pub sub_partitions: u64,
    pub read_ms: u64,
    pub match_ms: u64,
    pub output_ms: u64,
}

/// Bytes one record takes in a partition buffer.
#[inline]
fn encoded_len(key: &[u8], meta: &[u8], with_meta: bool) -> usize {
    key.len() + 5 + if with_meta { meta.len() + 5 } else { 0 }
}

/// Allocates an empty Vec with `cap` bytes of capacity and asks for transparent huge pages on it:
/// first touch of 4 KiB pages costs more than the work we do on them.
pub fn huge_vec(cap: usize) -> Vec<u8> {
    let v: Vec<u8> = Vec::with_capacity(cap);
    #[cfg(target_os = "linux")]
    if cap >= 4 << 20 {
        let start = v.as_ptr() as usize;
        let align = 2 << 20;
        let a = (start + align - 1) & !(align - 1);
        let end = (start + cap) & !(align - 1);
        if end > a {
            // SAFETY: advisory only, on memory we own; failure is harmless.
            unsafe {
                libc::madvise(a as *mut libc::c_void, end - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

struct Part {
    buf: Vec<u8>,
    /// Where the partition's flushed buffers are in its side's [`Spill`] file: (offset, length), in
    /// input order; each holds whole records.
    extents: Vec<(u64, usize)>,
    records: u64,
}

impl Part {
    /// Bytes in the spill file.
    fn spilled(&self) -> usize {
        self.extents.iter().map(|&(_, len)| len).sum()
    }
    /// Bytes held: spilled, then in `buf`.
    fn len(&self) -> usize {
        self.spilled() + self.buf.len()
    }
}

/// One side's spill file: the partitions' buffers appended as they fill. One file a side, not one a
/// partition: creating and unlinking a thousand files cost 8% of a 2 x 50M diff's CPU (ext4 scans its
/// inode bitmaps, and the directory is locked for each). The file is unlinked as soon as it is created,
/// so a killed run leaves nothing behind; `path` only names it in errors.
struct Spill {
    path: PathBuf,
    file: Option<File>,
    len: u64,
}

impl Spill {
    /// Appends `bytes` and returns where they went.
    fn append(&mut self, bytes: &[u8]) -> Result<(u64, usize)> {
        if self.file.is_none() {
            let path = &self.path;
            let f = File::options().create(true).read(true).write(true).truncate(true).open(path).ctx(path)?;
            std::fs::remove_file(path).ctx(path)?;
            self.file = Some(f);
        }
        self.file.as_mut().expect("opened above").write_all(bytes).ctx(&self.path)?;
        let at = self.len;
        self.len += bytes.len() as u64;
        Ok((at, bytes.len()))
    }

    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let f =
            self.file.as_ref().ok_or_else(|| Error::Internal(format!("{}: nothing spilled", self.path.display())))?;
        f.read_exact_at(buf, offset).ctx(&self.path)
    }
}

/// Phase 1 state of one side.
struct Partitioner {
    parts: Vec<Part>,
    cap: usize,
    shift: u32,
    with_meta: bool,
    spill: Spill,
}

impl Partitioner {
    fn new(nparts: usize, cap: usize, with_meta: bool, dir: &Path, side: char) -> Self {
        let parts = (0..nparts).map(|_| Part { buf: Vec::new(), extents: Vec::new(), records: 0 }).collect();
        let spill = Spill { path: dir.join(format!("{side}.spill")), file: None, len: 0 };
        Partitioner { parts, cap, shift: 64 - nparts.trailing_zeros(), with_meta, spill }
    }

    #[inline]
    fn push(&mut self, key: &[u8], meta: &[u8]) -> Result<()> {
        let h = xxh3_64(key);
        // One partition: a shift by 64 would overflow (the whole hash shifted out is partition 0).
        let p = h.checked_shr(self.shift).unwrap_or(0) as usize;
        let need = encoded_len(key, meta, self.with_meta);
        let part = &mut self.parts[p];
        if part.buf.len() + need > part.buf.capacity() {
            if part.buf.capacity() == 0 {
                part.buf = huge_vec(self.cap.max(need));
            } else {
                Self::flush(part, &mut self.spill)?;
                if need > part.buf.capacity() {
                    part.buf.reserve_exact(need);
                }
            }
        }
        part.records += 1;
        put_varint(&mut part.buf, key.len() as u64);
        part.buf.extend_from_slice(key);
        if self.with_meta {
            put_varint(&mut part.buf, meta.len() as u64);
            part.buf.extend_from_slice(meta);
        }
        Ok(())
    }

    fn flush(part: &mut Part, spill: &mut Spill) -> Result<()> {
        part.extents.push(spill.append(&part.buf)?);
        part.buf.clear();
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Ent {
    h: u64,
    /// Offset of the key in its sub-partition's bytes (the record's metadata follows the key).
    off: u32,
    klen: u32,
}

/// One side of one sub-partition: its records (key, then metadata if any) and an entry per record, in
/// input order.
#[derive(Default)]
struct Sub {
    bytes: Vec<u8>,
    ents: Vec<Ent>,
}

impl Sub {
    #[inline]
    fn key(&self, e: &Ent) -> &[u8] {
        &self.bytes[e.off as usize..e.off as usize + e.klen as usize]
    }
    #[inline]
    fn meta(&self, e: &Ent, with_meta: bool) -> &[u8] {
        if !with_meta {
            return &[];
        }
        let mut rest = &self.bytes[e.off as usize + e.klen as usize..];
        let n = get_varint(&mut rest).unwrap_or(0) as usize;
        &rest[..n]
    }
}

/// One side of one partition, loaded and split into sub-partitions (reused across partitions).
#[derive(Default)]
struct Loaded {
    subs: Vec<Sub>,
    /// Read buffer for the spill file.
    block: Vec<u8>,
}

/// Which sub-partition a hash belongs to: the `bits` bits below the partition's `pbits` top bits (the
/// join tables index by the low bits, so the three uses of the hash are independent).
#[derive(Clone, Copy)]
struct Split {
    pbits: u32,
    bits: u32,
}

impl Split {
    /// Keys per side a sub-partition aims at: its records, entries and join table (~80 B a key) stay
    /// inside a core's L2 cache (1 MiB on our EPYC VMs, 256 KiB-2 MiB elsewhere).
    const KEYS: usize = 8192;

    fn for_records(pbits: u32, records: usize, keys: usize) -> Split {
        let bits = (records / keys.max(1)).next_power_of_two().trailing_zeros().min(10).min(64 - pbits);
        Split { pbits, bits }
    }
    fn count(self) -> usize {
        1 << self.bits
    }
    #[inline(always)]
    fn of(self, h: u64) -> usize {
        (h << self.pbits).checked_shr(64 - self.bits).unwrap_or(0) as usize
    }
}

/// Outcomes gathered by phase 2, sorted at the end.
struct Collectors {
    mot: Mutex<Sorter>,
    mos: Mutex<Sorter>,
    differ: Mutex<Sorter>,
    matched: Option<Mutex<Sorter>>,
}

/// Local outcome list of one partition, pushed to the collectors under one lock each.
#[derive(Default)]
struct LocalOut {
    /// Source entries (indices into `a.ents`) only in the source.
    mot: Vec<u32>,
    /// Target entries (indices into `b.ents`) only in the target.
    mos: Vec<u32>,
    /// (source entry, target entry, differing fields).
    differ: Vec<(u32, u32, u8)>,
    matched: Vec<u32>,
    /// Keys in both with equal metadata (counted here; written only when the run wants them).
    matched_n: u64,
    counts: Counts,
    unique_a: u64,
    unique_b: u64,
    dup_a: u64,
    dup_b: u64,
}

#[derive(Default)]
struct Workspace {
    a: Loaded,
    b: Loaded,
    out: LocalOut,
    scratch: Vec<u8>,
    /// Hash join tables (reused across sub-partitions): source keys, target-only keys.
    table: Vec<u64>,
    btable: Vec<u64>,
    /// Per source entry of the sub-partition: a later duplicate, unmatched, or matched.
    state: Vec<u8>,
}

/// Runs the diff. `w` receives every outcome in key byte order.
pub fn hash_diff(
    src: &dyn RecordSource,
    tgt: &dyn RecordSource,
    cfg: &HashDiffConfig,
    w: &mut DiffWriter,
    progress: &AtomicU64,
) -> Result<(SideResult, SideResult, HashDiffStats)> {
    let t0 = std::time::Instant::now();
    let (sm, tm) = (!src.schema().is_keys_only(), !tgt.schema().is_keys_only());
    let mem = cfg.mem.max(1 << 20);
    let workers = rayon::current_num_threads().max(1);
    // Budget: phase-1 buffers 40%, phase-2 workers 40% (shared), outcome sorters 20%.
    let per_worker = mem * 2 / 5 / workers;
    let known = src.size_hint().zip(tgt.size_hint()).map(|(a, b)| a + b);
    let total_est = known.unwrap_or(64 << 30) as usize;
    // Loaded partition: record bytes (about input bytes) + 16 B entries (about half again for ~35 B keys).
    let load_factor = 2;
    // Enough partitions that one partition fits a worker's memory share, and small ones (~32K keys a
    // side, assuming ~32-byte keys: a few sub-partitions at most) while there are keys enough; but not
    // so many that phase-1 buffers drop under 64 KiB (small writes) within their 40% of the budget.
    // Larger partitions (at 50M keys a side, ~100K) are joined in sub-partitions (`Split`).
    let by_mem = total_est * load_factor / per_worker.max(1);
    let by_cache = total_est / 32 / 2 / 32_768;
    let max_by_buffers = (mem * 2 / 5 / (2 * (64 << 10))).max(16);
    let max_by_buffers = 1usize << (usize::BITS - 1 - max_by_buffers.leading_zeros());
    let nparts = cfg
        .partitions
        .map(usize::next_power_of_two)
        .unwrap_or_else(|| by_mem.max(by_cache.min(max_by_buffers)).next_power_of_two().clamp(16, 4096));
    let fits = known.is_some() && total_est * 11 / 10 <= mem * 3 / 4;
    // Phase-1 buffer of one partition of a side.
    let cap = |side_bytes: Option<u64>| match side_bytes {
        // Everything stays in memory: size buffers for the side's expected share plus hashing skew
        // headroom (per side: one side may be much larger than the other).
        Some(b) if fits => (b as usize / nparts * 3 / 2).max(64 << 10),
        _ => (mem * 2 / 5 / (2 * nparts)).max(64 << 10),
    };
    let (cap_a, cap_b) = (cap(src.size_hint()), cap(tgt.size_hint()));
    let scratch = ScratchDir::create(&cfg.tmp_dir, "diff")?;
    let spill_dir = scratch.path().to_path_buf();

    // Phase 1: both sides at once, one thread each.
    let (ra, rb) = std::thread::scope(|s| {
        let dir = &spill_dir;
        let ha = s.spawn(move || -> Result<(Partitioner, SourceStats)> {
            let mut p = Partitioner::new(nparts, cap_a, sm, dir, 's');
            let st = src.for_each(progress, &mut |k, m| p.push(k, m))?;
            Ok((p, st))
        });
        let hb = s.spawn(move || -> Result<(Partitioner, SourceStats)> {
            let mut p = Partitioner::new(nparts, cap_b, tm, dir, 't');
            let st = tgt.for_each(progress, &mut |k, m| p.push(k, m))?;
            Ok((p, st))
        });
        (ha.join().expect("source reader panicked"), hb.join().expect("target reader panicked"))
    });
    let (pa, sa) = ra?;
    let (pb, sb) = rb?;
    let mut stats =
        HashDiffStats { partitions: nparts, spilled_bytes: pa.spill.len + pb.spill.len, ..Default::default() };
    stats.read_ms = t0.elapsed().as_millis() as u64;
    let t1 = std::time::Instant::now();

    // Phase 2.
    let sort_mem = (mem / 5 / if w.wants_matches() { 4 } else { 3 }).max(1 << 20);
    let sorter = |schema: Schema| Mutex::new(Sorter::new(SortConfig::new(sort_mem, &cfg.tmp_dir, schema)));
    let coll = Collectors {
        mot: sorter(if sm { Schema(Schema::ALL) } else { Schema::KEYS_ONLY }),
        mos: sorter(if tm { Schema(Schema::ALL) } else { Schema::KEYS_ONLY }),
        differ: sorter(Schema(Schema::ALL)),
        matched: w.wants_matches().then(|| sorter(Schema::KEYS_ONLY)),
    };
    let cmp = w.comparator();
    let (spill_a, spill_b) = (&pa.spill, &pb.spill);
    let parts: Vec<(Part, Part)> = pa.parts.into_iter().zip(pb.parts).collect();
    let oversized = AtomicU64::new(0);
    let totals = Mutex::new(LocalOut::default());
    let limit = per_worker;
    let pbits = nparts.trailing_zeros();
    let sub_keys = cfg.sub_keys.unwrap_or(Split::KEYS);
    let subs = AtomicU64::new(0);
    parts
        .into_par_iter()
        .map_init(Workspace::default, |ws, (a, b)| -> Result<()> {
            let size = a.len() + b.len();
            let est_load = size * load_factor;
            if est_load > limit * 3 / 2 {
                oversized.fetch_add(1, Ordering::Relaxed);
                diff_partition_by_sorting(a, spill_a, b, spill_b, sm, tm, cfg, limit, &coll, &cmp, ws)?;
            } else {
                let split = Split::for_records(pbits, a.records.max(b.records) as usize, sub_keys);
                subs.fetch_add(split.count() as u64, Ordering::Relaxed);
                load(&mut ws.a, a, spill_a, sm, split)?;
                load(&mut ws.b, b, spill_b, tm, split)?;
                for s in 0..split.count() {
                    join_sub(ws, s, sm, tm, &cmp, coll.matched.is_some());
                    emit_sub(ws, s, sm, tm, &coll)?;
                }
            }
            let mut t = totals.lock().unwrap();
            add_local(&mut t, &ws.out);
            ws.out = LocalOut::default();
            Ok(())
        })
        .collect::<Result<()>>()?;
    stats.oversized_partitions = oversized.into_inner();
    stats.sub_partitions = subs.into_inner();
    stats.match_ms = t1.elapsed().as_millis() as u64;
    let t2 = std::time::Instant::now();

    // Replay in byte order.
    let totals = totals.into_inner().unwrap();
    w.counts.add_comparisons(&totals.counts);
    if !w.wants_matches() {
        // Matches were counted, not collected: nothing to replay for them.
        w.counts.matched += totals.matched_n;
    }
    let fin = |m: Mutex<Sorter>| m.into_inner().unwrap().finish();
    let mut mot = fin(coll.mot)?;
    let mut mos = fin(coll.mos)?;
    let mut dif = fin(coll.differ)?;
    let mut mat = coll.matched.map(fin).transpose()?;
    replay([Some(&mut mot), Some(&mut mos), Some(&mut dif), mat.as_mut()], w)?;
    stats.output_ms = t2.elapsed().as_millis() as u64;

    let side = |s: SourceStats, unique: u64, dup: u64| SideResult { duplicates: dup + s.duplicates, source: s, unique };
    Ok((side(sa, totals.unique_a, totals.dup_a), side(sb, totals.unique_b, totals.dup_b), stats))
}

fn add_local(t: &mut LocalOut, o: &LocalOut) {
    t.counts.add_comparisons(&o.counts);
    t.unique_a += o.unique_a;
    t.unique_b += o.unique_b;
    t.dup_a += o.dup_a;
    t.dup_b += o.dup_b;
    t.matched_n += o.matched_n;
}

/// Bytes read from a spill file at a time while loading it.
/// (Small in unit tests, so that their spill files straddle blocks.)
const LOAD_BLOCK: usize = if cfg!(test) { 4 << 10 } else { 256 << 10 };

/// Brings one side of a partition into memory, split into sub-partitions by hash: spilled records first
/// (input order), then the tail. Each record is hashed once here and copied into its sub-partition, so
/// the join that follows works on a few hundred KiB at a time instead of missing cache on every probe.
fn load(l: &mut Loaded, part: Part, spill: &Spill, with_meta: bool, split: Split) -> Result<()> {
    let total = part.len();
    if total > u32::MAX as usize {
        return Err(Error::Usage(format!(
            "{}: a hash partition of {total} bytes exceeds the 4 GiB a partition may hold; use a smaller --mem or --engine sort",
            spill.path.display()
        )));
    }
    let n = split.count();
    if l.subs.len() < n {
        l.subs.resize_with(n, Sub::default);
    }
    let subs = &mut l.subs[..n];
    for s in subs.iter_mut() {
        s.bytes.clear();
        s.ents.clear();
    }
    if n == 1 {
        // One sub-partition (the partition fits in cache as it is): read the records in place.
        return load_whole(&mut subs[0], part, spill, with_meta);
    }
    read_part(part, spill, &mut l.block, |bytes| Ok(route(subs, bytes, with_meta, split)))
}

/// Streams one side of a partition through `feed` in input order: its extents of the spill file (read
/// in blocks into `block`), then its tail. `feed` takes the whole records at the front of the bytes it
/// is given and returns how many bytes they were; the rest is given again with the next block.
fn read_part(
    part: Part,
    spill: &Spill,
    block: &mut Vec<u8>,
    mut feed: impl FnMut(&[u8]) -> Result<usize>,
) -> Result<()> {
    if block.len() < LOAD_BLOCK {
        block.resize(LOAD_BLOCK, 0);
    }
    for &(offset, len) in &part.extents {
        // block[..have]: bytes read and not yet fed (the start of a record cut by the read).
        let (mut have, mut read) = (0, 0);
        while read < len {
            if have == block.len() {
                // One record larger than the block.
                block.resize(block.len() * 2, 0);
            }
            let n = (block.len() - have).min(len - read);
            spill.read_at(&mut block[have..have + n], offset + read as u64)?;
            (have, read) = (have + n, read + n);
            let used = feed(&block[..have])?;
            block.copy_within(used..have, 0);
            have -= used;
        }
        // A flush writes whole records.
        if have != 0 {
            return Err(Error::corrupt(&spill.path, offset + len as u64, "spill extent ends inside a record"));
        }
    }
    if feed(&part.buf)? != part.buf.len() {
        return Err(Error::Internal(format!("{}: corrupt partition buffer", spill.path.display())));
    }
    Ok(())
}

/// `load` into one sub-partition: the spilled extents and the tail go into its bytes as they are, and
/// the entries point at the keys inside the records.
fn load_whole(s: &mut Sub, part: Part, spill: &Spill, with_meta: bool) -> Result<()> {
    s.bytes.resize(part.spilled(), 0);
    let mut at = 0;
    for &(offset, len) in &part.extents {
        spill.read_at(&mut s.bytes[at..at + len], offset)?;
        at += len;
    }
    s.bytes.extend_from_slice(&part.buf);
    let mut pos = 0;
    while let Some(Rec { koff, klen, end, .. }) = whole_record(&s.bytes, pos, with_meta) {
        let h = xxh3_64(&s.bytes[koff..koff + klen]);
        s.ents.push(Ent { h, off: koff as u32, klen: klen as u32 });
        pos = end;
    }
    if pos != s.bytes.len() {
        return Err(Error::Internal(format!(
            "{}: a partition ends inside a record, {pos} bytes into it",
            spill.path.display()
        )));
    }
    Ok(())
}

/// Appends every whole record at the front of `bytes` to its sub-partition; returns the bytes used.
#[inline]
fn route(subs: &mut [Sub], bytes: &[u8], with_meta: bool, split: Split) -> usize {
    let mut pos = 0;
    while let Some(Rec { koff, klen, end, .. }) = whole_record(bytes, pos, with_meta) {
        let h = xxh3_64(&bytes[koff..koff + klen]);
        let s = &mut subs[split.of(h)];
        s.ents.push(Ent { h, off: s.bytes.len() as u32, klen: klen as u32 });
        s.bytes.extend_from_slice(&bytes[koff..end]);
        pos = end;
    }
    pos
}

/// Where a record's parts are in its bytes: the key at `koff..koff + klen`, the metadata at
/// `moff..end` (empty without metadata).
struct Rec {
    koff: usize,
    klen: usize,
    moff: usize,
    end: usize,
}

/// The record at `pos` if all of it is in `bytes`.
#[inline(always)]
fn whole_record(bytes: &[u8], pos: usize, with_meta: bool) -> Option<Rec> {
    let mut rest = &bytes[pos..];
    let klen = get_varint(&mut rest)? as usize;
    let koff = bytes.len() - rest.len();
    let mut end = koff.checked_add(klen)?;
    if end > bytes.len() {
        return None;
    }
    let mut moff = end;
    if with_meta {
        let mut r = &bytes[end..];
        let mlen = get_varint(&mut r)? as usize;
        moff = bytes.len() - r.len();
        end = moff.checked_add(mlen)?;
        if end > bytes.len() {
            return None;
        }
    }
    Some(Rec { koff, klen, moff, end })
}

const DUPLICATE: u8 = 0;
const UNMATCHED: u8 = 1;
const MATCHED: u8 = 2;

/// Diffs sub-partition `s` of the loaded partition by a hash join: the source side goes into an
/// open-addressing table in input order (a duplicate is found on insert, so the first occurrence wins,
/// like `sort -u`), then the target side streams through it in input order. A sub-partition is sized to
/// stay in cache. Nothing is sorted here: outcomes are sorted at the end, and they are few. (This
/// replaced a sort-by-hash + merge walk that spent most of its time sorting and in cache-missing
/// `memcmp`s; joining whole partitions missed cache too once they outgrew L2, at 50M keys a side.)
fn join_sub(ws: &mut Workspace, s: usize, sm: bool, tm: bool, cmp: &Comparator, want_matches: bool) {
    let Workspace { a, b, out, table, btable, state, .. } = ws;
    let (a, b) = (&a.subs[s], &b.subs[s]);
    // The probes below read source keys in table order. The sub-partition was written while the whole
    // partition was loaded, so its bytes have left the cache since; fetch them back in one sequential
    // sweep, which the memory system streams, instead of one miss per key (half the join's time).
    prefetch_all(&a.bytes);
    table.clear();
    table.resize((a.ents.len() * 2).next_power_of_two().max(64), 0);
    state.clear();
    state.resize(a.ents.len(), DUPLICATE);
    for (i, e) in a.ents.iter().enumerate() {
        match probe(table, e.h, a.key(e), &a.ents, &a.bytes) {
            Ok(_) => out.dup_a += 1,
            Err(slot) => {
                table[slot] = slot_value(e.h, i);
                state[i] = UNMATCHED;
                out.unique_a += 1;
            }
        }
    }
    // Target side: probe; target-only keys are deduplicated in a second table.
    btable.clear();
    btable.resize((b.ents.len() * 2).next_power_of_two().max(64), 0);
    for (j, e) in b.ents.iter().enumerate() {
        let key = b.key(e);
        match probe(table, e.h, key, &a.ents, &a.bytes) {
            Ok(i) if state[i] == MATCHED => out.dup_b += 1,
            Ok(i) => {
                state[i] = MATCHED;
                out.unique_b += 1;
                let bits = cmp.differs(a.meta(&a.ents[i], sm), b.meta(e, tm), &mut out.counts);
                if bits != 0 {
                    out.differ.push((i as u32, j as u32, bits));
                } else {
                    out.matched_n += 1;
                    if want_matches {
                        out.matched.push(i as u32);
                    }
                }
            }
            Err(_) => match probe(btable, e.h, key, &b.ents, &b.bytes) {
                Ok(_) => out.dup_b += 1,
                Err(slot) => {
                    btable[slot] = slot_value(e.h, j);
                    out.mos.push(j as u32);
                    out.unique_b += 1;
                }
            },
        }
    }
    for (i, st) in state.iter().enumerate() {
        if *st == UNMATCHED {
            out.mot.push(i as u32);
        }
    }
}

/// Looks up `key` (hash `h`) in an open-addressing table of indices into `ents` (whose keys live in
/// `bytes`): `Ok(index)` if present, `Err(free slot)` where it would go. Slots are `tag << 32 | index`,
/// 0 is empty; the slot comes from the low bits of `h` (the partition took the top bits) and the tag from
/// the high 32, so almost every false probe is rejected without touching `ents`.
#[inline(always)]
fn probe(table: &[u64], h: u64, key: &[u8], ents: &[Ent], bytes: &[u8]) -> std::result::Result<usize, usize> {
    let mask = table.len() - 1;
    let tag = ((h >> 32) as u32) | 1;
    let mut slot = h as usize & mask;
    loop {
        let v = table[slot];
        if v == 0 {
            return Err(slot);
        }
        if (v >> 32) as u32 == tag {
            let j = (v & 0xffff_ffff) as usize;
            let e = &ents[j];
            if e.h == h && same_key(&bytes[e.off as usize..e.off as usize + e.klen as usize], key) {
                return Ok(j);
            }
        }
        slot = (slot + 1) & mask;
    }
}

/// Asks the CPU to bring all of `bytes` into cache (L2), one hint per cache line.
#[inline]
fn prefetch_all(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        for i in (0..bytes.len()).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults; the address is inside `bytes` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(bytes.as_ptr().add(i) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// `a == b`, inlined: keys are short, and a call to `memcmp` cost more than the comparison.
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
    if n < 8 {
        return a == b;
    }
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last word, overlapping the one before when n is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

#[inline(always)]
fn slot_value(h: u64, index: usize) -> u64 {
    ((((h >> 32) as u32) | 1) as u64) << 32 | index as u64
}

/// Pushes sub-partition `s`'s outcomes to the shared collectors.
fn emit_sub(ws: &mut Workspace, s: usize, sm: bool, tm: bool, coll: &Collectors) -> Result<()> {
    let (a, b, out) = (&ws.a.subs[s], &ws.b.subs[s], &mut ws.out);
    if !out.mot.is_empty() {
        let mut c = coll.mot.lock().unwrap();
        for &i in &out.mot {
            let e = &a.ents[i as usize];
            c.push(a.key(e), a.meta(e, sm))?;
        }
    }
    if !out.mos.is_empty() {
        let mut c = coll.mos.lock().unwrap();
        for &j in &out.mos {
            let e = &b.ents[j as usize];
            c.push(b.key(e), b.meta(e, tm))?;
        }
    }
    if !out.differ.is_empty() {
        let mut c = coll.differ.lock().unwrap();
        for &(i, j, bits) in &out.differ {
            let (x, y) = (&a.ents[i as usize], &b.ents[j as usize]);
            ws.scratch.clear();
            encode_differ(&mut ws.scratch, bits, a.meta(x, sm), b.meta(y, tm));
            c.push(a.key(x), &ws.scratch)?;
        }
    }
    if let Some(m) = &coll.matched {
        if !out.matched.is_empty() {
            let mut c = m.lock().unwrap();
            for &i in &out.matched {
                c.push(a.key(&a.ents[i as usize]), b"")?;
            }
        }
    }
    out.mot.clear();
    out.mos.clear();
    out.differ.clear();
    out.matched.clear();
    Ok(())
}

fn encode_differ(out: &mut Vec<u8>, bits: u8, smeta: &[u8], tmeta: &[u8]) {
    out.push(bits);
    put_varint(out, smeta.len() as u64);
    out.extend_from_slice(smeta);
    out.extend_from_slice(tmeta);
}

fn decode_differ(m: &[u8]) -> (u8, &[u8], &[u8]) {
    let bits = m[0];
    let mut rest = &m[1..];
    let n = get_varint(&mut rest).unwrap_or(0) as usize;
    (bits, &rest[..n], &rest[n..])
}

/// Feeds the writer from the sorted outcome streams (missing on target, missing on source, differ,
/// matched) in global key order; each key is in exactly one stream.
fn replay(mut streams: [Option<&mut SortedOutput>; 4], w: &mut DiffWriter) -> Result<()> {
    let mut live = [false; 4];
    for (l, s) in live.iter_mut().zip(streams.iter_mut()) {
        *l = match s {
            Some(s) => s.advance()?,
            None => false,
        };
    }
    loop {
        let key = |i: usize| streams[i].as_ref().expect("live stream").key();
        let Some(i) = (0..4).filter(|&i| live[i]).min_by(|&a, &b| key(a).cmp(key(b))) else { return Ok(()) };
        let s = streams[i].as_mut().expect("live stream");
        match i {
            0 => w.only_source(s.key(), s.meta())?,
            1 => w.only_target(s.key(), s.meta())?,
            2 => {
                let (bits, sm, tm) = decode_differ(s.meta());
                w.differ(s.key(), sm, tm, bits)?
            }
            _ => w.matched(s.key())?,
        }
        live[i] = s.advance()?;
    }
}

/// Fallback for a partition too large for a worker's memory share: external sort of both sides, then
/// the ordinary sorted walk. Slower, but bounded in memory whatever the key distribution.
#[allow(clippy::too_many_arguments)]
fn diff_partition_by_sorting(
    a: Part,
    ap: &Spill,
    b: Part,
    bp: &Spill,
    sm: bool,
    tm: bool,
    cfg: &HashDiffConfig,
    limit: usize,
    coll: &Collectors,
    cmp: &Comparator,
    ws: &mut Workspace,
) -> Result<()> {
    let sort_side = |part: Part, spill: &Spill, with_meta: bool, block: &mut Vec<u8>| -> Result<SortedOutput> {
        let schema = if with_meta { Schema(Schema::ALL) } else { Schema::KEYS_ONLY };
        let mut s = Sorter::new(SortConfig::new(limit / 2, &cfg.tmp_dir, schema));
        read_part(part, spill, block, |bytes| {
            let mut pos = 0;
            while let Some(r) = whole_record(bytes, pos, with_meta) {
                s.push(&bytes[r.koff..r.koff + r.klen], &bytes[r.moff..r.end])?;
                pos = r.end;
            }
            Ok(pos)
        })?;
        s.finish()
    };
    let mut sa = sort_side(a, ap, sm, &mut ws.a.block)?;
    let mut sb = sort_side(b, bp, tm, &mut ws.b.block)?;
    let out = &mut ws.out;
    let (mut ha, mut hb) = (sa.advance()?, sb.advance()?);
    let mut mot = coll.mot.lock().unwrap();
    let mut mos = coll.mos.lock().unwrap();
    let mut dif = coll.differ.lock().unwrap();
    let mut mat = coll.matched.as_ref().map(|m| m.lock().unwrap());
    while ha || hb {
        let ord = match (ha, hb) {
            (true, true) => sa.key().cmp(sb.key()),
            (true, false) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                mot.push(sa.key(), sa.meta())?;
                ha = sa.advance()?;
            }
            std::cmp::Ordering::Greater => {
                mos.push(sb.key(), sb.meta())?;
                hb = sb.advance()?;
            }
            std::cmp::Ordering::Equal => {
                let bits = cmp.differs(sa.meta(), sb.meta(), &mut out.counts);
                if bits != 0 {
                    ws.scratch.clear();
                    encode_differ(&mut ws.scratch, bits, sa.meta(), sb.meta());
                    dif.push(sa.key(), &ws.scratch)?;
                } else {
                    out.matched_n += 1;
                    if let Some(m) = mat.as_mut() {
                        m.push(sa.key(), b"")?;
                    }
                }
                ha = sa.advance()?;
                hb = sb.advance()?;
            }
        }
    }
    let (xa, xb) = (sa.stats(), sb.stats());
    out.unique_a += xa.unique;
    out.unique_b += xb.unique;
    out.dup_a += xa.duplicates;
    out.dup_b += xb.duplicates;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::cases::{self, keys, rec, recs, Case, Fields, Rec, SIZE_ETAG_MTIME};
    use crate::input::InputStats;

    /// Records in input order, duplicates allowed: what a key file with metadata would yield.
    struct Recs {
        recs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Tell `hash_diff` the input size (as a file or chunk set does), or not (stdin).
        hint: bool,
    }

    impl RecordSource for Recs {
        fn describe(&self) -> String {
            "test records".into()
        }
        fn schema(&self) -> Schema {
            Schema(SIZE_ETAG_MTIME)
        }
        fn size_hint(&self) -> Option<u64> {
            self.hint.then(|| self.recs.iter().map(|(k, m)| (k.len() + m.len() + 2) as u64).sum())
        }
        fn for_each(&self, _progress: &AtomicU64, f: &mut crate::input::RecordFn) -> Result<SourceStats> {
            for (k, m) in &self.recs {
                f(k, m)?;
            }
            let input = InputStats { records_read: self.recs.len() as u64, ..Default::default() };
            Ok(SourceStats { input, duplicates: 0 })
        }
    }

    /// Regression: a forced partition count of 1 shifted the 64-bit hash right by 64 bits to find the
    /// partition (a panic: shift overflow in debug builds, an index out of bounds in release builds).
    #[test]
    fn one_forced_partition_does_not_overflow_the_hash_shift() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let src = Recs { recs: vec![(b"a".to_vec(), vec![]), (b"b".to_vec(), vec![])], hint: true };
        let tgt = Recs { recs: vec![(b"b".to_vec(), vec![]), (b"c".to_vec(), vec![])], hint: true };
        let cfg =
            HashDiffConfig { mem: 64 << 20, tmp_dir: dir.path().to_path_buf(), partitions: Some(1), sub_keys: None };
        let mut w = cases::writer(&out, 0);
        let (_, _, stats) = hash_diff(&src, &tgt, &cfg, &mut w, &AtomicU64::new(0)).unwrap();
        let c = w.finish().unwrap();
        assert_eq!(stats.partitions, 1);
        assert_eq!((c.missing_on_target, c.missing_on_source, c.matched), (1, 1, 1));
    }

    /// Regression: inputs that fit in the budget are not spilled (module doc), also when one side is much
    /// larger than the other. Phase-1 buffers were sized for half the total input on each side, so the
    /// larger side overflowed them and spilled (found by tests/metadata.rs: a 1.4 MB diff spilled 1 MB
    /// with `--mem 1G`).
    #[test]
    fn inputs_that_fit_do_not_spill_when_one_side_is_much_larger() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let key = |i: u64| format!("images/2024/01/{i:016}").into_bytes();
        let recs = |keys: std::ops::Range<u64>, step: u64| Recs {
            recs: keys.map(|i| (key(i * step), rec("").size(i * step).encoded().1)).collect(),
            hint: true,
        };
        // ~1.8 MB against ~0.4 KB, in a budget of 64 MiB.
        let (big, small) = (recs(0..50_000, 1), recs(0..10, 7));
        for (src, tgt, side) in [(&big, &small, "source"), (&small, &big, "target")] {
            let cfg =
                HashDiffConfig { mem: 64 << 20, tmp_dir: dir.path().to_path_buf(), partitions: None, sub_keys: None };
            let mut w = cases::writer(&out, SIZE_ETAG_MTIME);
            let (_, _, stats) = hash_diff(src, tgt, &cfg, &mut w, &AtomicU64::new(0)).unwrap();
            assert_eq!(w.finish().unwrap().matched, 10);
            assert_eq!(stats.spilled_bytes, 0, "the larger side is the {side}: {stats:?}");
        }
    }

    /// Keys of filler records: padding that makes partitions big enough to spill, kept out of the checks.
    const FILLER: &[u8] = b"~filler/";

    /// How `hash_diff` is run on a case.
    struct Run {
        name: &'static str,
        partitions: Option<usize>,
        mem: usize,
        hint: bool,
        /// Filler records (only in the source, or only in the target), put in the middle of that side's
        /// records: a duplicate's first occurrence is then spilled and the later one still in memory.
        filler: usize,
        filler_in_source: bool,
        /// What the run must have done: spill partitions to disk; diff an oversized partition by sorting.
        spills: bool,
        oversized: bool,
        /// Keys per sub-partition to aim at (`None`: the default, so small cases are not split), and the
        /// fewest sub-partitions the run must have joined.
        sub_keys: Option<usize>,
        min_subs: u64,
    }

    const IN_MEMORY: Run = Run {
        name: "",
        partitions: None,
        mem: 64 << 20,
        hint: true,
        filler: 0,
        filler_in_source: true,
        spills: false,
        oversized: false,
        sub_keys: None,
        min_subs: 0,
    };

    /// Run with 2 workers (`hash_diff` sizes partitions by the worker count). With `--mem` at its 1 MiB
    /// floor and no size hint, a partition buffer holds 64 KiB before it spills, and a partition is
    /// joined while its estimated load (2 x its bytes) stays under 1.5 x a worker's 200 KiB share:
    /// 4,000 filler records (~240 KiB) in 2 partitions spill and are still joined, in 1 partition they
    /// take the sorting fallback. The spilling runs aim at 64 keys a sub-partition: ~2,000 records a
    /// partition make 32 sub-partitions, loaded from spill files read in 4 KiB blocks (records straddle
    /// the blocks).
    const RUNS: [Run; 7] = [
        Run { name: "partitions chosen from sizes", ..IN_MEMORY },
        Run { name: "1 partition", partitions: Some(1), ..IN_MEMORY },
        Run { name: "1 partition, about a key a sub-partition", partitions: Some(1), sub_keys: Some(1), ..IN_MEMORY },
        Run { name: "16 partitions", partitions: Some(16), ..IN_MEMORY },
        Run {
            name: "source spills",
            partitions: Some(2),
            mem: 1 << 20,
            hint: false,
            filler: 4_000,
            spills: true,
            sub_keys: Some(64),
            min_subs: 64,
            ..IN_MEMORY
        },
        Run {
            name: "target spills",
            partitions: Some(2),
            mem: 1 << 20,
            hint: false,
            filler: 4_000,
            filler_in_source: false,
            spills: true,
            sub_keys: Some(64),
            min_subs: 64,
            ..IN_MEMORY
        },
        Run {
            name: "oversized partition: sorting fallback",
            partitions: Some(1),
            mem: 1 << 20,
            hint: false,
            filler: 4_000,
            spills: true,
            oversized: true,
            ..IN_MEMORY
        },
    ];

    /// One side's records, with `filler` records in the middle.
    fn side(recs: &[Rec], filler: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = recs.iter().map(Rec::encoded).collect();
        let pad = (0..filler).map(|i| {
            // ~60 bytes a record: few records, enough bytes.
            let mut k = FILLER.to_vec();
            k.extend_from_slice(format!("{i:050}").as_bytes());
            rec(k).size(i as u64).encoded()
        });
        let mid = v.len() / 2;
        v.splice(mid..mid, pad);
        v
    }

    /// Runs `hash_diff` on a case as `run` says and checks everything against the case.
    fn check_case(case: &Case, run: &Run, reverse: bool) {
        let ctx = format!("hash_diff {:?}{}", run.name, if reverse { ", input reversed" } else { "" });
        let order = |recs: &[Rec]| -> Vec<Rec> {
            let mut v = recs.to_vec();
            if reverse {
                v.reverse();
            }
            v
        };
        let (sf, tf) = if run.filler_in_source { (run.filler, 0) } else { (0, run.filler) };
        let src = Recs { recs: side(&order(&case.src), sf), hint: run.hint };
        let tgt = Recs { recs: side(&order(&case.tgt), tf), hint: run.hint };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cfg = HashDiffConfig {
            mem: run.mem,
            tmp_dir: dir.path().to_path_buf(),
            partitions: run.partitions,
            sub_keys: run.sub_keys,
        };
        let mut w = cases::writer(&out, case.compare);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (a, b, stats) = pool.install(|| hash_diff(&src, &tgt, &cfg, &mut w, &AtomicU64::new(0))).unwrap();
        let mut counts = w.finish().unwrap();
        counts.missing_on_target -= sf as u64;
        counts.missing_on_source -= tf as u64;
        cases::check(case, &out, &counts, FILLER, &ctx);
        let ctx = format!("{ctx}, case {:?}", case.name);
        let both = (case.differ.len() + case.matched.len()) as u64;
        assert_eq!(a.unique, (case.missing_on_target.len() + sf) as u64 + both, "{ctx}: unique source keys");
        assert_eq!(b.unique, (case.missing_on_source.len() + tf) as u64 + both, "{ctx}: unique target keys");
        assert_eq!((a.duplicates, b.duplicates), case.duplicates, "{ctx}: duplicates");
        assert_eq!(stats.spilled_bytes > 0, run.spills, "{ctx}: spilled? {stats:?}");
        assert_eq!(stats.oversized_partitions > 0, run.oversized, "{ctx}: sorting fallback? {stats:?}");
        assert!(stats.sub_partitions >= run.min_subs, "{ctx}: sub-partitions? {stats:?}");
        if run.sub_keys == Some(1) && case.src.len().max(case.tgt.len()) >= 4 {
            assert!(stats.sub_partitions >= 4, "{ctx}: sub-partitions? {stats:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "{ctx}: spill files left behind");
    }

    /// Cases only an unsorted input has: a key more than once on a side. The first occurrence in input
    /// order is the record (like `sort -u`); the others are counted as duplicates.
    fn duplicate_cases() -> Vec<Case> {
        vec![
            Case {
                name: "source duplicate: the first occurrence matches",
                src: vec![rec("k").size(1), rec("k").size(2)],
                tgt: vec![rec("k").size(1)],
                matched: keys!["k"],
                duplicates: (1, 0),
                ..Case::default()
            },
            Case {
                name: "source duplicate: the first occurrence differs",
                src: vec![rec("k").size(2), rec("k").size(1)],
                tgt: vec![rec("k").size(1)],
                differ: keys!["k"],
                fields: Fields { size: 1, ..Fields::default() },
                duplicates: (1, 0),
                ..Case::default()
            },
            Case {
                name: "target duplicate: the first occurrence matches",
                src: vec![rec("k").etag("abc")],
                tgt: vec![rec("k").etag("\"ABC\""), rec("k").etag("abd")],
                matched: keys!["k"],
                duplicates: (0, 1),
                ..Case::default()
            },
            Case {
                name: "target duplicate: the first occurrence differs",
                src: vec![rec("k").mtime(5)],
                tgt: vec![rec("k").mtime(4), rec("k").mtime(6), rec("k").mtime(5)],
                differ: keys!["k"],
                fields: Fields { mtime: 1, ..Fields::default() },
                duplicates: (0, 2),
                ..Case::default()
            },
            Case {
                name: "duplicates on both sides, different metadata",
                src: vec![rec("k").size(1), rec("k").size(2)],
                tgt: vec![rec("k").size(2), rec("k").size(1)],
                differ: keys!["k"],
                fields: Fields { size: 1, ..Fields::default() },
                duplicates: (1, 1),
                ..Case::default()
            },
            Case {
                name: "one-sided duplicates are reported once",
                src: recs!["a", "b", "a", "a"],
                tgt: recs!["c", "b", "c", "b"],
                missing_on_target: keys!["a"],
                missing_on_source: keys!["c"],
                matched: keys!["b"],
                duplicates: (2, 2),
                ..Case::default()
            },
            Case {
                name: "unsorted, interleaved duplicates",
                src: recs!["z", "é", b"\xff", "a", "z", b"\x00", "é"],
                tgt: recs![b"\x00", "m", "a", "m", b"\xff", b"\x00"],
                missing_on_target: keys!["z", "é"],
                missing_on_source: keys!["m"],
                matched: keys![b"\x00", "a", b"\xff"],
                duplicates: (2, 2),
                ..Case::default()
            },
        ]
    }

    #[test]
    fn hash_join_table() {
        for run in &RUNS {
            for case in cases::table() {
                check_case(&case, run, false);
                check_case(&case, run, true);
            }
            for case in duplicate_cases() {
                check_case(&case, run, false);
            }
        }
    }

    /// A key only on one side, more than once: its CSV row carries the first occurrence's metadata.
    #[test]
    fn one_sided_duplicates_keep_the_first_metadata_in_the_csv() {
        let src = vec![rec("a").size(1), rec("a").size(2)];
        let tgt = vec![rec("b").etag("first"), rec("b").etag("second")];
        for run in &RUNS {
            let (sf, tf) = if run.filler_in_source { (run.filler, 0) } else { (0, run.filler) };
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out");
            let cfg = HashDiffConfig {
                mem: run.mem,
                tmp_dir: dir.path().to_path_buf(),
                partitions: run.partitions,
                sub_keys: run.sub_keys,
            };
            let mut w = cases::writer(&out, SIZE_ETAG_MTIME);
            let (s, t) = (Recs { recs: side(&src, sf), hint: run.hint }, Recs { recs: side(&tgt, tf), hint: run.hint });
            hash_diff(&s, &t, &cfg, &mut w, &AtomicU64::new(0)).unwrap();
            w.finish().unwrap();
            let rows = |f: &str| -> Vec<String> {
                let text = String::from_utf8(std::fs::read(out.join(f)).unwrap()).unwrap();
                text.lines().filter(|l| !l.starts_with("~filler/")).map(String::from).collect()
            };
            assert_eq!(rows("missing-on-target.csv"), ["key,size,etag,mtime", "a,1,,"], "{}", run.name);
            assert_eq!(rows("missing-on-source.csv"), ["key,size,etag,mtime", "b,,first,"], "{}", run.name);
        }
    }
}
