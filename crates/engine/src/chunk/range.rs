//! Key ranges of chunk sets, so that two sides can be walked range by range on every core.
//!
//! ```text
//!  source  |chunk 0 ......|chunk 1 .........|chunk 2 ....|
//!  target  |chunk 0 .........|chunk 1 ...|chunk 2 ......|
//!                         ^ cut             ^ cut
//!  ranges  [   range 0    )[     range 1    )[  range 2  ]
//! ```
//! [`plan_cuts`] picks cut keys among the chunks' first keys (from the manifests, nothing is read), so
//! that the ranges hold about equal bytes and few chunks straddle a cut. A range's stream
//! ([`ChunkSets::range`]) reads only the chunks whose keys meet the range. A chunk holds no index, so a
//! chunk that straddles the range's lower cut is read from its start and its records below the cut are
//! passed over (decoded and checked, not handed out); that is the price of a cut, and the planner
//! weighs it. The stream ends at the first key at or above the upper cut, leaving that chunk unfinished.
//!
//! Every record is still checked once in full: every range reads each of its chunks from the start, so
//! the range that holds a chunk's last key reads the whole chunk and checks its record count and
//! checksum at its end, as a single walk would. A range that stops inside a chunk checks what it read
//! (order, decoding) and leaves the checksum to that range.

use super::set::{ChunkSet, ChunkSets, SetStream};
use crate::error::Result;
use crate::merge::{prefix8, SortedCursor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A half-open key range: `lo <= key < hi`, `None` unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub lo: Option<Vec<u8>>,
    pub hi: Option<Vec<u8>>,
}

impl KeyRange {
    /// The ranges between consecutive `cuts` (strictly increasing), from the first key to the last.
    pub fn between(cuts: &[Vec<u8>]) -> Vec<KeyRange> {
        let mut bounds: Vec<Option<Vec<u8>>> = vec![None];
        bounds.extend(cuts.iter().cloned().map(Some));
        bounds.push(None);
        bounds.windows(2).map(|w| KeyRange { lo: w[0].clone(), hi: w[1].clone() }).collect()
    }

    /// The range of every key.
    pub fn is_whole(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }

    /// Does a chunk holding `first..=last` hold keys of this range?
    pub fn meets(&self, first: &[u8], last: &[u8]) -> bool {
        self.lo.as_deref().is_none_or(|lo| last >= lo) && self.hi.as_deref().is_none_or(|hi| first < hi)
    }
}

/// One chunk as the planner sees it: its key span and its bytes.
struct Span {
    first: Vec<u8>,
    last: Vec<u8>,
    bytes: u64,
}

/// The chunks of one chunk set, as the planner sees them.
struct SetSpans {
    /// In manifest order; for a disjoint set that is key order.
    spans: Vec<Span>,
    disjoint: bool,
    /// `below[i]`: bytes of `spans[..i]`.
    below: Vec<u64>,
}

impl SetSpans {
    fn of(set: &ChunkSet) -> Result<SetSpans> {
        let mut spans = Vec::new();
        for c in set.manifest.chunks.iter().filter(|c| c.records > 0) {
            spans.push(Span { first: c.first_key()?, last: c.last_key()?, bytes: c.data_len });
        }
        let below = std::iter::once(0)
            .chain(spans.iter().scan(0, |acc, s| {
                *acc += s.bytes;
                Some(*acc)
            }))
            .collect();
        Ok(SetSpans { spans, disjoint: set.manifest.disjoint, below })
    }

    /// (bytes of the set's records below `k`, bytes a range starting at `k` reads to pass over them):
    /// a chunk that straddles `k` counts in both, by where `k` falls between its first and last key.
    fn at(&self, k: &[u8]) -> (f64, f64) {
        let straddle =
            |s: &Span| if s.first.as_slice() < k && k <= s.last.as_slice() { s.bytes as f64 * frac(s, k) } else { 0.0 };
        if self.disjoint {
            // Chunks before the one that starts last below `k` are wholly below it.
            let n = self.spans.partition_point(|s| s.first.as_slice() < k);
            if n == 0 {
                return (0.0, 0.0);
            }
            let s = &self.spans[n - 1];
            let (part, skip) = if s.last.as_slice() < k {
                (s.bytes as f64, 0.0)
            } else {
                let p = straddle(s);
                (p, p)
            };
            (self.below[n - 1] as f64 + part, skip)
        } else {
            let (mut below, mut skip) = (0.0, 0.0);
            for s in &self.spans {
                if s.last.as_slice() < k {
                    below += s.bytes as f64;
                } else {
                    let part = straddle(s);
                    below += part;
                    skip += part;
                }
            }
            (below, skip)
        }
    }
}

/// Where `k` falls between a chunk's first and last key, 0 to 1, reading the 8 bytes after their common
/// prefix as numbers (keys spread evenly between the two, as hashes and ids do).
fn frac(s: &Span, k: &[u8]) -> f64 {
    let common = s.first.iter().zip(&s.last).take_while(|(a, b)| a == b).count();
    let num = |x: &[u8]| prefix8(x.get(common..).unwrap_or_default()) as f64;
    let (f, l, k) = (num(&s.first), num(&s.last), num(k));
    if l > f {
        ((k - f) / (l - f)).clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// Cut keys (strictly increasing) that split the keys of `sides` into at most `ranges` ranges of about
/// equal bytes. A cut is a chunk's first key, so that chunk starts its range; chunks of other sets that
/// straddle the cut are read from their start up to it by the range above ([module doc](self)). Each cut
/// is placed where imbalance plus bytes read twice is least (where a cut falls inside a chunk is
/// reckoned from the keys, [`frac`]); a cut that would read more than half a range's bytes twice is not
/// made (unless `force`, for tests). Fewer cuts, or none, when the chunks do not allow them.
pub fn plan_cuts(sides: &[&ChunkSets], ranges: usize, force: bool) -> Result<Vec<Vec<u8>>> {
    let sets = sides.iter().flat_map(|s| &s.sets).map(SetSpans::of).collect::<Result<Vec<_>>>()?;
    let total: u64 = sets.iter().map(|s| s.below[s.spans.len()]).sum();
    let mut keys: Vec<&[u8]> = sets.iter().flat_map(|s| s.spans.iter().map(|c| c.first.as_slice())).collect();
    keys.sort_unstable();
    keys.dedup();
    if ranges <= 1 || keys.len() < 2 || total == 0 {
        return Ok(Vec::new());
    }
    // Every chunk start but the first is a candidate: (key, bytes below it, bytes read twice).
    let cands: Vec<(&[u8], f64, f64)> = keys[1..]
        .iter()
        .map(|k| sets.iter().map(|s| s.at(k)).fold((*k, 0.0, 0.0), |(k, b, x), (b1, x1)| (k, b + b1, x + x1)))
        .collect();
    let share = total as f64 / ranges as f64;
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    let mut from = 0usize;
    for j in 1..ranges {
        let want = share * j as f64;
        let best = cands[from..]
            .iter()
            .enumerate()
            .filter(|(_, c)| force || c.2 <= share / 2.0)
            .min_by(|(_, a), (_, b)| ((a.1 - want).abs() + a.2).total_cmp(&((b.1 - want).abs() + b.2)));
        if let Some((i, c)) = best {
            cuts.push(c.0.to_vec());
            from += i + 1;
            if from >= cands.len() {
                break;
            }
        }
    }
    Ok(cuts)
}

/// A side's records in one [`KeyRange`]: the records below `lo` are read, checked and passed over, and
/// the first key at or above `hi` ends the stream. Duplicates (dropped by the merges inside) are counted
/// for the range's own keys only, so the ranges' counts add up to a single walk's.
pub struct RangeStream {
    inner: SetStream,
    range: KeyRange,
    hi_prefix: u64,
    started: bool,
    done: bool,
    /// `inner`'s duplicates when the range's first key came up.
    dup_base: u64,
    /// `inner`'s duplicates when the stream ended.
    dup_end: u64,
    /// Records handed out.
    records: u64,
    /// Records handed out and not yet added to `progress`.
    pending: u64,
    /// Where progress goes, and the side's mean bytes a record.
    progress: Option<(Arc<AtomicU64>, u64)>,
}

impl RangeStream {
    pub fn new(inner: SetStream, range: KeyRange) -> Self {
        let hi_prefix = range.hi.as_deref().map_or(u64::MAX, prefix8);
        RangeStream {
            inner,
            range,
            hi_prefix,
            started: false,
            done: false,
            dup_base: 0,
            dup_end: 0,
            records: 0,
            pending: 0,
            progress: None,
        }
    }

    /// Adds the bytes of the records handed out to `counter`, for a progress line: `bytes_per_record`
    /// each ([`ChunkSets::bytes_per_record`]: the records' own lengths would cost two more calls into the
    /// side's stream a record), every 64K records.
    pub fn with_progress(mut self, counter: Arc<AtomicU64>, bytes_per_record: u64) -> Self {
        self.progress = Some((counter, bytes_per_record));
        self
    }

    /// Records handed out: the range's unique keys, once the stream has ended.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Duplicate records dropped among the range's keys (final once the stream has ended).
    pub fn duplicates(&self) -> u64 {
        if self.done {
            self.dup_end - self.dup_base
        } else {
            self.inner.duplicates() - self.dup_base
        }
    }

    fn end(&mut self) -> Result<bool> {
        self.done = true;
        self.dup_end = self.inner.duplicates();
        self.report();
        Ok(false)
    }

    fn report(&mut self) {
        if let Some((p, per)) = &self.progress {
            p.fetch_add(std::mem::take(&mut self.pending) * per, Ordering::Relaxed);
        }
    }
}

impl SortedCursor for RangeStream {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        if !self.started {
            self.started = true;
            loop {
                if !self.inner.advance()? {
                    self.dup_base = self.inner.duplicates();
                    return self.end();
                }
                if self.range.lo.as_deref().is_none_or(|lo| self.inner.key() >= lo) {
                    break;
                }
            }
            self.dup_base = self.inner.duplicates();
        } else if !self.inner.advance()? {
            return self.end();
        }
        // A smaller prefix settles most keys; an equal one needs the whole key.
        let p = self.inner.prefix();
        if p > self.hi_prefix
            || p == self.hi_prefix && self.range.hi.as_deref().is_some_and(|hi| self.inner.key() >= hi)
        {
            return self.end();
        }
        self.records += 1;
        self.pending += 1;
        if self.pending >= 1 << 16 {
            self.report();
        }
        Ok(true)
    }
    #[inline]
    fn key(&self) -> &[u8] {
        self.inner.key()
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        self.inner.meta()
    }
    #[inline]
    fn prefix(&self) -> u64 {
        self.inner.prefix()
    }
}

impl ChunkSets {
    /// Mean bytes a record takes in the side's chunks (for progress in bytes).
    pub fn bytes_per_record(&self) -> u64 {
        let records: u64 = self.sets.iter().map(ChunkSet::records).sum();
        self.data_len() / records.max(1)
    }

    /// The side's records in `range` ([`RangeStream`]); the unbounded range is the whole side.
    pub fn range(&self, range: &KeyRange) -> Result<RangeStream> {
        Ok(RangeStream::new(self.stream_in(range)?, range.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::set::Producer;
    use crate::chunk::ChunkSetWriter;
    use crate::record::Schema;
    use std::path::Path;

    /// A disjoint chunk set in `dir`: `keys` cut into chunks of `per` keys.
    fn set(dir: &Path, keys: &[String], per: usize) -> ChunkSets {
        let w = ChunkSetWriter::create(dir, Schema::KEYS_ONLY, false).unwrap();
        for part in keys.chunks(per) {
            let mut c = w.new_chunk().unwrap();
            for k in part {
                c.push(k.as_bytes(), b"").unwrap();
            }
            w.add_chunk(c).unwrap();
        }
        w.finish(Producer::default(), true, serde_json::Value::Null).unwrap();
        ChunkSets::open(&[dir.to_path_buf()]).unwrap()
    }

    fn keys(n: usize, step: usize) -> Vec<String> {
        (0..n).map(|i| format!("key/{:08}", i * step)).collect()
    }

    fn read(s: &ChunkSets, r: &KeyRange) -> Result<Vec<String>> {
        let mut st = s.range(r)?;
        let mut v = Vec::new();
        while st.advance()? {
            v.push(String::from_utf8(st.key().to_vec()).unwrap());
        }
        Ok(v)
    }

    /// A progress line counts the records handed out in bytes: a whole set of keys of one length adds up
    /// to its data length, over ranges as over one stream.
    #[test]
    fn ranges_report_progress_in_bytes() {
        let t = tempfile::tempdir().unwrap();
        let s = set(t.path(), &keys(3000, 1), 700);
        for cuts in [vec![], vec![b"key/00001234".to_vec(), b"key/00002100".to_vec()]] {
            let counter = Arc::new(AtomicU64::new(0));
            for r in KeyRange::between(&cuts) {
                let mut st = s.range(&r).unwrap().with_progress(counter.clone(), s.bytes_per_record());
                while st.advance().unwrap() {}
            }
            assert_eq!(counter.load(Ordering::Relaxed), s.data_len(), "cuts {cuts:?}");
        }
    }

    #[test]
    fn ranges_between_cuts_partition_a_side() {
        let t = tempfile::tempdir().unwrap();
        let all = keys(1000, 3);
        let s = set(t.path(), &all, 128);
        // Cuts inside chunks, on a chunk's first key, below and above every key, and between keys.
        let cuts: Vec<Vec<u8>> = ["a", "key/00000300", "key/00000384", "key/00001000", "key/00002997", "zz"]
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let parts: Vec<Vec<String>> = KeyRange::between(&cuts).iter().map(|r| read(&s, r).unwrap()).collect();
        assert_eq!(parts.len(), 7);
        assert_eq!(parts.concat(), all);
        assert!(parts[0].is_empty() && parts[6].is_empty());
        assert_eq!(parts[2], all[100..128], "from the cut up to the next chunk's first key");
        assert_eq!(parts[5], ["key/00002997"]);
    }

    /// A range that starts inside a chunk reads the chunk from its start, so the chunk's checksum is
    /// still checked: a key changed in the part of the chunk below the cut (still in order, so only the
    /// checksum can tell) fails the range that reads the chunk to its end.
    #[test]
    fn the_range_that_ends_a_chunk_checks_its_checksum() {
        let t = tempfile::tempdir().unwrap();
        let s = set(t.path(), &keys(100, 1), 1000);
        let chunk = t.path().join(&s.sets[0].manifest.chunks[0].file);
        let mut bytes = std::fs::read(&chunk).unwrap();
        // The first key "key/00000000" becomes "key/0000000/": smaller, so the order holds.
        let at = bytes.windows(12).position(|w| w == b"key/00000000").unwrap();
        bytes[at + 11] = b'/';
        std::fs::write(&chunk, bytes).unwrap();
        let cut = b"key/00000050".to_vec();
        let [below, above] = <[KeyRange; 2]>::try_from(KeyRange::between(&[cut])).unwrap();
        assert_eq!(read(&s, &below).unwrap().len(), 50, "stops at the cut, before the checksum");
        let e = read(&s, &above).unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains(&s.sets[0].manifest.chunks[0].file), "{e}");
    }

    #[test]
    fn cuts_balance_bytes_and_spare_straddled_chunks() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        // Two sides of 8 chunks each over the same keys: their first keys line up, so cuts skip nothing
        // and split the bytes evenly.
        let (sa, sb) = (set(&a, &keys(8000, 1), 1000), set(&b, &keys(8000, 1), 1000));
        let cuts = plan_cuts(&[&sa, &sb], 4, false).unwrap();
        assert_eq!(cuts, ["key/00002000", "key/00004000", "key/00006000"].map(|c| c.as_bytes().to_vec()));
        assert!(plan_cuts(&[&sa, &sb], 1, false).unwrap().is_empty());
        assert_eq!(plan_cuts(&[&sa, &sb], 100, false).unwrap().len(), 7, "no more cuts than chunk starts");
        // One side in one chunk: a cut reads the chunk twice up to the cut. With two ranges, a cut near
        // the middle reads half a range twice (1.5 + 0.5 chunks' work on two threads beats 2 on one);
        // with four, only cuts in the chunk's first quarter stay under half a range (1/4 of 2 chunks),
        // unless forced.
        let (c, d) = (t.path().join("c"), t.path().join("d"));
        let (sc, sd) = (set(&c, &keys(8000, 1), 8000), set(&d, &keys(8000, 1), 500));
        let near_middle = |cuts: Vec<Vec<u8>>| matches!(&cuts[..], [c] if c.as_slice() >= b"key/00003000".as_slice() && c.as_slice() <= b"key/00004500".as_slice());
        assert!(near_middle(plan_cuts(&[&sc, &sd], 2, false).unwrap()));
        let four = plan_cuts(&[&sc, &sd], 4, false).unwrap();
        assert!(!four.is_empty() && four.iter().all(|c| c.as_slice() < b"key/00002000".as_slice()), "{four:?}");
        assert_eq!(plan_cuts(&[&sc, &sd], 4, true).unwrap().len(), 3);
        // Chunk starts a little apart on the two sides: a cut at the later start reads only the few keys
        // between the two twice; one at the earlier would read nearly the whole other chunk twice.
        let (e, f) = (t.path().join("e"), t.path().join("f"));
        let (se, sf) = (set(&e, &keys(8000, 1), 1000), set(&f, &keys(8000, 1)[40..], 1000));
        let cuts = plan_cuts(&[&se, &sf], 2, false).unwrap();
        assert_eq!(cuts, [b"key/00004040".to_vec()], "{:?}", String::from_utf8_lossy(&cuts[0]));
    }
}
