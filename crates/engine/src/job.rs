//! The jobs behind the binaries: a validated config in, a summary out. Binaries only parse flags into
//! these configs and map the summary to an exit code.

use crate::chunk::set::Producer;
use crate::chunk::{ChunkSet, ChunkSetWriter, ChunkSets, KeyRange, RangeStream};
use crate::diff::{walk, DiffOptions, DiffSummary, DiffWriter, SideInput, SideStats, Timings};
use crate::error::{Error, Result};
use crate::hashdiff::{hash_diff, HashDiffConfig};
use crate::input::{FileSource, InputSpec, InputStats, RecordSource, Rejects};
use crate::merge::SortedCursor;
use crate::progress::{peak_rss_bytes, Progress, Unit};
use crate::record::Schema;
use crate::sort::{SortConfig, SortStats, Sorter};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// One side of a diff: one or more chunk sets (merged into one stream), or a key file / stdin.
pub enum Side {
    ChunkSets(ChunkSets),
    File(InputSpec),
}

impl Side {
    /// A directory with a manifest is a chunk set; a directory without one is an error (an unfinished
    /// chunk set must not be read as "no keys"); anything else is a key file. A chunk set that is one
    /// shard of several is refused (the other shards are missing; see [`Side::open_all`]).
    pub fn open(spec: InputSpec) -> Result<Side> {
        if !spec.is_stdin() && spec.path.is_dir() {
            return Ok(Side::ChunkSets(ChunkSets::open(std::slice::from_ref(&spec.path))?));
        }
        // Checked here, before the job creates its output directory for a run that cannot start.
        if !spec.is_stdin() {
            std::fs::metadata(&spec.path).map_err(|e| Error::io(&spec.path, e))?;
        }
        Ok(Side::File(spec))
    }

    /// A side of one or more inputs. Several inputs must all be chunk sets (e.g. the shards of one
    /// listing, or keyrecon-sort outputs); they are checked before anything is read (see
    /// [`ChunkSets::open`]: a missing, doubled or foreign shard is an [`Error::Shards`]).
    pub fn open_all(specs: Vec<InputSpec>) -> Result<Side> {
        if specs.len() <= 1 {
            let spec = specs.into_iter().next().ok_or_else(|| Error::Usage("a diff side needs an input".into()))?;
            return Side::open(spec);
        }
        if let Some(s) = specs.iter().find(|s| s.is_stdin() || !s.path.is_dir()) {
            return Err(Error::Usage(format!(
                "{}: a side of several inputs takes chunk sets only (sort key files into one chunk set with \
                 keyrecon-sort first)",
                s.display()
            )));
        }
        let dirs: Vec<PathBuf> = specs.into_iter().map(|s| s.path).collect();
        Ok(Side::ChunkSets(ChunkSets::open(&dirs)?))
    }

    /// Refuses a side holding an incomplete listing ([`ChunkSet::incomplete`]).
    pub fn check_complete(&self) -> Result<()> {
        if let Side::ChunkSets(c) = self {
            if let Some(why) = c.sets.iter().find_map(ChunkSet::incomplete) {
                return Err(Error::Usage(why));
            }
        }
        Ok(())
    }

    fn schema(&self) -> Schema {
        match self {
            Side::ChunkSets(c) => c.schema,
            Side::File(_) => Schema::KEYS_ONLY,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Engine {
    /// Sorted merge when both sides are chunk sets, hash partitioning otherwise.
    Auto,
    Hash,
    /// External sort of each file side, then the sorted walk (a second, independent implementation).
    Sort,
}

/// A metadata field keyrecon-diff can compare for keys on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Field {
    Size,
    Etag,
    /// Differs when the source was written after the target.
    Mtime,
}

impl Field {
    /// The field's bit in a record [`Schema`].
    pub fn bit(self) -> u8 {
        match self {
            Field::Size => Schema::SIZE,
            Field::Etag => Schema::ETAG,
            Field::Mtime => Schema::MTIME,
        }
    }
}

pub struct DiffConfig {
    pub source: Side,
    pub target: Side,
    pub out_dir: PathBuf,
    /// Fields to compare; `None`: `size` when both sides carry it.
    pub compare: Option<Vec<Field>>,
    pub write_match: bool,
    pub combined: bool,
    pub term: u8,
    pub mem: usize,
    pub tmp_dir: PathBuf,
    pub engine: Engine,
    pub quiet: bool,
    /// Key ranges the merge engine walks in parallel when both sides are chunk sets (`None`: as many as
    /// suit the rayon threads and the chunks; `Some(n)`: up to `n`, cut wherever chunks start, for
    /// tests).
    pub merge_ranges: Option<usize>,
}

fn compare_bits(cfg: &DiffConfig) -> Result<u8> {
    let (s, t) = (cfg.source.schema(), cfg.target.schema());
    match &cfg.compare {
        None => Ok(if s.has(Schema::SIZE) && t.has(Schema::SIZE) { Schema::SIZE } else { 0 }),
        Some(fields) => {
            let mut bits = 0;
            for f in fields {
                let (b, n) = (f.bit(), Schema(f.bit()).names().join(","));
                for (side, schema) in [("source", s), ("target", t)] {
                    if !schema.has(b) {
                        return Err(Error::Usage(format!(
                            "--compare {n}: the {side} carries no {n} (its records have {schema})"
                        )));
                    }
                }
                bits |= b;
            }
            Ok(bits)
        }
    }
}

fn side_stats(side: &Side) -> SideStats {
    match side {
        Side::ChunkSets(c) => SideStats {
            input: c.names().join(", "),
            kind: "chunkset".into(),
            inputs: c
                .names()
                .into_iter()
                .zip(&c.listings)
                .map(|(path, l)| SideInput { path, listing: l.clone() })
                .collect(),
            ..Default::default()
        },
        Side::File(f) => SideStats {
            input: f.display(),
            kind: "file".into(),
            inputs: vec![SideInput { path: f.display(), listing: None }],
            ..Default::default()
        },
    }
}

fn fill(st: &mut SideStats, input: &InputStats, unique: u64, duplicates: u64) {
    st.records_read = input.records_read;
    st.blank_lines = input.blank;
    st.rejected = input.rejected;
    st.bytes = input.bytes;
    st.unique_keys = unique;
    st.duplicates = duplicates;
}

/// Runs keyrecon-diff. Errors that stop the run are returned; the summary carries everything else.
pub fn diff(cfg: DiffConfig) -> Result<DiffSummary> {
    let t0 = Instant::now();
    if let (Side::File(a), Side::File(b)) = (&cfg.source, &cfg.target) {
        if a.is_stdin() && b.is_stdin() {
            return Err(Error::Usage("SOURCE and TARGET cannot both be - (stdin)".into()));
        }
    }
    let compare = compare_bits(&cfg)?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| Error::io(&cfg.out_dir, e))?;
    let rejects = Rejects::new(Some(cfg.out_dir.join("rejects.csv")));
    let mut w = DiffWriter::create(DiffOptions {
        out_dir: cfg.out_dir.clone(),
        compare,
        write_match: cfg.write_match,
        combined: cfg.combined,
        term: cfg.term,
        source_schema: cfg.source.schema(),
        target_schema: cfg.target.schema(),
    })?;
    let mut summary = DiffSummary {
        source: side_stats(&cfg.source),
        target: side_stats(&cfg.target),
        mem_budget_bytes: cfg.mem as u64,
        ..Default::default()
    };
    summary.compared = Schema(compare).names().into_iter().map(String::from).collect();
    let both_sets = matches!((&cfg.source, &cfg.target), (Side::ChunkSets(_), Side::ChunkSets(_)));
    let engine = match cfg.engine {
        Engine::Auto if both_sets => Engine::Sort,
        Engine::Auto => Engine::Hash,
        e => e,
    };
    let total = size_hint(&cfg.source).zip(size_hint(&cfg.target)).map(|(a, b)| a + b);
    let progress = if cfg.quiet {
        Progress::hidden()
    } else {
        Progress::start("keyrecon-diff", "reading", Unit::Bytes, total, false)
    };
    match engine {
        Engine::Hash => {
            summary.engine = "hash".into();
            let (fs, ft) = (file_source(&cfg.source, &rejects), file_source(&cfg.target, &rejects));
            let hc = HashDiffConfig { mem: cfg.mem, tmp_dir: cfg.tmp_dir.clone(), partitions: None, sub_keys: None };
            let (a, b, hs) =
                hash_diff(as_source(&cfg.source, &fs), as_source(&cfg.target, &ft), &hc, &mut w, &progress.counter)?;
            fill(&mut summary.source, &a.source.input, a.unique, a.duplicates);
            fill(&mut summary.target, &b.source.input, b.unique, b.duplicates);
            // A chunk set's bytes are its stored size, whichever engine read it.
            for (st, side) in [(&mut summary.source, &cfg.source), (&mut summary.target, &cfg.target)] {
                if let Side::ChunkSets(c) = side {
                    st.bytes = c.data_len();
                }
            }
            summary.timings.read_ms = hs.read_ms;
            summary.engine_stats = serde_json::to_value(&hs).unwrap_or_default();
            summary.timings.diff_ms = hs.match_ms + hs.output_ms;
        }
        Engine::Sort | Engine::Auto if both_sets => {
            summary.engine = "merge".into();
            let (Side::ChunkSets(a), Side::ChunkSets(b)) = (&cfg.source, &cfg.target) else {
                unreachable!("both_sets")
            };
            let t1 = Instant::now();
            let (sa, sb, ranges) = merge_sets(a, b, cfg.merge_ranges, &mut w, &progress.counter)?;
            summary.timings.diff_ms = t1.elapsed().as_millis() as u64;
            summary.engine_stats = serde_json::json!({ "ranges": ranges });
            fill(&mut summary.source, &sa.0, sa.1, sa.2);
            fill(&mut summary.target, &sb.0, sb.1, sb.2);
        }
        Engine::Sort | Engine::Auto => {
            summary.engine = "sort".into();
            let half = cfg.mem / 2;
            let mut a = sorted_side(&cfg.source, half, &cfg.tmp_dir, &rejects, &progress.counter)?;
            let mut b = sorted_side(&cfg.target, half, &cfg.tmp_dir, &rejects, &progress.counter)?;
            summary.timings.read_ms = t0.elapsed().as_millis() as u64;
            let t1 = Instant::now();
            walk(&mut a, &mut b, &mut w)?;
            summary.timings.diff_ms = t1.elapsed().as_millis() as u64;
            let (ia, ua, da) = a.stats();
            let (ib, ub, db) = b.stats();
            fill(&mut summary.source, &ia, ua, da);
            fill(&mut summary.target, &ib, ub, db);
        }
    }
    progress.finish();
    rejects.flush()?;
    let counts = w.finish()?;
    summary.missing_on_target = counts.missing_on_target;
    summary.missing_on_source = counts.missing_on_source;
    summary.differ = counts.differ;
    summary.matched = counts.matched;
    summary.details = counts;
    summary.timings = Timings { total_ms: t0.elapsed().as_millis() as u64, ..summary.timings };
    summary.peak_rss_bytes = peak_rss_bytes();
    summary.exit_code = summary.compute_exit_code();
    summary.write(&cfg.out_dir)?;
    Ok(summary)
}

fn size_hint(s: &Side) -> Option<u64> {
    match s {
        Side::ChunkSets(c) => Some(c.data_len()),
        Side::File(f) => f.len_hint(),
    }
}

/// The file source of a file side (a chunk set is its own record source).
fn file_source(side: &Side, rejects: &Rejects) -> Option<FileSource> {
    match side {
        Side::ChunkSets(_) => None,
        Side::File(f) => Some(FileSource { spec: f.clone(), rejects: rejects.clone() }),
    }
}

fn as_source<'a>(side: &'a Side, file: &'a Option<FileSource>) -> &'a dyn RecordSource {
    match (side, file) {
        (Side::ChunkSets(c), _) => c,
        (Side::File(_), Some(f)) => f,
        (Side::File(_), None) => unreachable!("file_source made one for every file side"),
    }
}

/// (input statistics, unique keys, duplicates) of a diff side.
type SideCounts = (InputStats, u64, u64);

/// The merge engine: both sides are chunk sets, walked in key ranges ([`crate::chunk::range`]) on the
/// rayon threads, each range's outcomes into a part of the output appended in range order (the first
/// range writes straight into `w`). Returns each side's counts and the number of ranges.
fn merge_sets(
    a: &ChunkSets,
    b: &ChunkSets,
    ranges: Option<usize>,
    w: &mut DiffWriter,
    progress: &Arc<AtomicU64>,
) -> Result<(SideCounts, SideCounts, usize)> {
    use rayon::prelude::*;
    // Twice the threads, so that a range that runs long on a busy core is balanced by the others; none
    // smaller than 32 MiB of records, where a thread's start and the output parts cost more than they win.
    const MIN_RANGE: u64 = 32 << 20;
    let want = ranges.unwrap_or_else(|| match rayon::current_num_threads() {
        1 => 1,
        threads => (threads * 2).min(((a.data_len() + b.data_len()) / MIN_RANGE) as usize),
    });
    let cuts = crate::chunk::range::plan_cuts(&[a, b], want, ranges.is_some())?;
    let ranges = KeyRange::between(&cuts);
    let opt = w.options().clone();
    // Parts a killed run left behind (its outcome files are replaced anyway).
    DiffWriter::remove_parts(&opt.out_dir)?;
    let first = std::sync::Mutex::new(Some(&mut *w));
    let walked: Vec<Result<(Option<DiffWriter>, [u64; 4])>> = ranges
        .par_iter()
        .enumerate()
        .map(|(i, range)| {
            let (mut sa, mut sb) = (side_range(a, range, progress)?, side_range(b, range, progress)?);
            let part = if i == 0 {
                let w = first.lock().expect("no walk panics holding it").take().expect("one first range");
                walk(&mut sa, &mut sb, w)?;
                None
            } else {
                let mut p = DiffWriter::part(&opt, i)?;
                walk(&mut sa, &mut sb, &mut p)?;
                Some(p)
            };
            Ok((part, [sa.records(), sa.duplicates(), sb.records(), sb.duplicates()]))
        })
        .collect();
    let mut n = [0u64; 4];
    let mut failed = None;
    for r in walked {
        match r {
            Ok((part, c)) => {
                n.iter_mut().zip(c).for_each(|(t, c)| *t += c);
                if let Some(p) = part {
                    if failed.is_none() {
                        if let Err(e) = w.append(p) {
                            failed = Some(e);
                        }
                    }
                }
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        // Parts of ranges that ran are still on disk; the run failed, so the output is not whole anyway.
        let _ = DiffWriter::remove_parts(&opt.out_dir);
        return Err(e);
    }
    Ok((set_counts(a.data_len(), n[0], n[1]), set_counts(b.data_len(), n[2], n[3]), ranges.len()))
}

/// A chunk-set side's counts: `unique` records handed out and `dups` dropped, of `data_len` bytes.
fn set_counts(data_len: u64, unique: u64, dups: u64) -> SideCounts {
    (InputStats { records_read: unique + dups, bytes: data_len, ..Default::default() }, unique, dups)
}

/// A side's records in `range`, counted into `progress`.
fn side_range(side: &ChunkSets, range: &KeyRange, progress: &Arc<AtomicU64>) -> Result<RangeStream> {
    Ok(side.range(range)?.with_progress(progress.clone(), side.bytes_per_record()))
}

/// A side as one sorted, duplicate-free stream, with its statistics.
enum SortedSide {
    Set { stream: RangeStream, data_len: u64 },
    Sorted { out: crate::sort::SortedOutput, input: InputStats },
}

impl SortedSide {
    /// (input statistics, unique keys, duplicates); final once the stream is exhausted.
    fn stats(&self) -> (InputStats, u64, u64) {
        match self {
            SortedSide::Set { stream, data_len } => set_counts(*data_len, stream.records(), stream.duplicates()),
            SortedSide::Sorted { out, input } => {
                let st = out.stats();
                (input.clone(), st.unique, st.duplicates)
            }
        }
    }
}

impl SortedCursor for SortedSide {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        match self {
            SortedSide::Set { stream, .. } => stream.advance(),
            SortedSide::Sorted { out, .. } => out.advance(),
        }
    }
    #[inline]
    fn key(&self) -> &[u8] {
        match self {
            SortedSide::Set { stream, .. } => stream.key(),
            SortedSide::Sorted { out, .. } => out.key(),
        }
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        match self {
            SortedSide::Set { stream, .. } => stream.meta(),
            SortedSide::Sorted { out, .. } => out.meta(),
        }
    }
}

fn sorted_side(
    side: &Side,
    mem: usize,
    tmp: &std::path::Path,
    rejects: &Rejects,
    progress: &Arc<AtomicU64>,
) -> Result<SortedSide> {
    match side {
        Side::ChunkSets(c) => {
            Ok(SortedSide::Set { stream: side_range(c, &KeyRange::default(), progress)?, data_len: c.data_len() })
        }
        Side::File(spec) => {
            let mut sorter = Sorter::new(SortConfig::new(mem, tmp, Schema::KEYS_ONLY));
            let input = crate::input::for_each_key(spec, rejects, progress, |k, _| sorter.push(k, b""))?;
            Ok(SortedSide::Sorted { out: sorter.finish()?, input })
        }
    }
}

/// Runs keyrecon-sort: inputs into a chunk set of disjoint chunks.
pub struct SortJobConfig {
    pub inputs: Vec<InputSpec>,
    pub out: PathBuf,
    pub overwrite: bool,
    pub mem: usize,
    pub tmp_dir: PathBuf,
    pub chunk_bytes: u64,
    pub quiet: bool,
    /// Key mapping rules (see `keymap`): records get the mapped key and keep the original as `origin`.
    pub key_map: Option<crate::keymap::KeyMap>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SortSummary {
    pub inputs: Vec<String>,
    /// The chunk set written.
    pub out: String,
    /// `input.rejected`: keys that could not be read (too long, bad CSV rows): exit 2.
    pub input: InputStats,
    /// Keys a `--key-map` rule rejected: deliberate filtering, reported in rejects.csv, not trouble.
    pub key_map_rejected: u64,
    pub sort: SortStats,
    pub chunks: usize,
    pub records: u64,
    pub peak_rss_bytes: u64,
    pub total_ms: u64,
    pub exit_code: i32,
}

impl crate::summary::Summary for SortSummary {
    fn exit_code(&self) -> i32 {
        self.exit_code
    }

    fn paragraph(&self) -> String {
        format!(
            "{} records read, {} unique, {} duplicates, {} blank, {} unreadable, {} rejected by --key-map; {} chunks in {} ({} chunks spilled, {} merge passes); {:.2}s, peak RSS {} MiB.",
            self.input.records_read,
            self.records,
            self.sort.duplicates,
            self.input.blank,
            self.input.rejected,
            self.key_map_rejected,
            self.chunks,
            self.out,
            self.sort.chunks_spilled,
            self.sort.merge_passes,
            self.total_ms as f64 / 1000.0,
            self.peak_rss_bytes >> 20
        )
    }
}

pub fn sort(cfg: SortJobConfig) -> Result<SortSummary> {
    let t0 = Instant::now();
    let schema = if cfg.key_map.is_some() { Schema(Schema::ORIGIN) } else { Schema::KEYS_ONLY };
    let writer = ChunkSetWriter::create(&cfg.out, schema, cfg.overwrite)?;
    let rejects = Rejects::new(Some(cfg.out.join("rejects.csv")));
    let total = cfg.inputs.iter().map(|i| i.len_hint()).sum::<Option<u64>>();
    let progress = if cfg.quiet {
        Progress::hidden()
    } else {
        Progress::start("keyrecon-sort", "reading", Unit::Bytes, total, false)
    };
    let mut sorter = Sorter::new(SortConfig::new(cfg.mem, &cfg.tmp_dir, schema));
    let mut input = InputStats::default();
    let (mut mapped, mut meta) = (Vec::new(), Vec::new());
    let mut map_rejects = 0u64;
    for spec in &cfg.inputs {
        let name = spec.display();
        let st = crate::input::for_each_key(spec, &rejects, &progress.counter, |k, line| match &cfg.key_map {
            None => sorter.push(k, b""),
            Some(km) => match km.map_into(k, &mut mapped) {
                Ok(()) => {
                    meta.clear();
                    crate::record::MetaRef { origin: Some(k), ..Default::default() }.encode(&mut meta);
                    sorter.push(&mapped, &meta)
                }
                Err(reason) => {
                    map_rejects += 1;
                    rejects.reject(&name, line, &reason, k)
                }
            },
        })?;
        input.records_read += st.records_read;
        input.blank += st.blank;
        input.rejected += st.rejected;
        input.bytes += st.bytes;
    }

    let sort = sorter.finish_into(&writer, cfg.chunk_bytes)?;
    progress.finish();
    rejects.flush()?;
    let info = serde_json::json!({
        "inputs": cfg.inputs.iter().map(|i| i.display()).collect::<Vec<_>>(),
        "records_read": input.records_read, "duplicates": sort.duplicates, "blank": input.blank, "rejected": input.rejected,
        "key_map_rejected": map_rejects,
    });
    let m = writer.finish(Producer::current("keyrecon-sort"), true, info)?;
    let mut s = SortSummary {
        inputs: cfg.inputs.iter().map(|i| i.display()).collect(),
        out: cfg.out.display().to_string(),
        input,
        key_map_rejected: map_rejects,
        sort,
        chunks: m.chunks.len(),
        records: m.records,
        peak_rss_bytes: peak_rss_bytes(),
        total_ms: t0.elapsed().as_millis() as u64,
        exit_code: 0,
    };
    s.exit_code = if s.input.rejected > 0 { 2 } else { 0 };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MetaRef;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    use std::path::Path;

    /// A chunk set in `dir` of `recs` (key -> size), cut into chunks of about `chunk` records.
    fn write_set(dir: &Path, recs: &BTreeMap<Vec<u8>, u64>, chunk: usize) -> PathBuf {
        let w = ChunkSetWriter::create(dir, Schema(Schema::SIZE), false).unwrap();
        let mut c = w.new_chunk().unwrap();
        let mut meta = Vec::new();
        for (i, (k, size)) in recs.iter().enumerate() {
            if i > 0 && i % chunk == 0 {
                w.add_chunk(std::mem::replace(&mut c, w.new_chunk().unwrap())).unwrap();
            }
            meta.clear();
            MetaRef { size: Some(*size), ..Default::default() }.encode(&mut meta);
            c.push(k, &meta).unwrap();
        }
        w.add_chunk(c).unwrap();
        w.finish(Producer::default(), true, serde_json::Value::Null).unwrap();
        dir.to_path_buf()
    }

    fn run(source: Vec<PathBuf>, target: Vec<PathBuf>, engine: Engine, out: &Path, tmp: &Path) -> DiffSummary {
        run_ranges(source, target, engine, out, tmp, None)
    }

    fn run_ranges(
        source: Vec<PathBuf>,
        target: Vec<PathBuf>,
        engine: Engine,
        out: &Path,
        tmp: &Path,
        merge_ranges: Option<usize>,
    ) -> DiffSummary {
        let side = |dirs: Vec<PathBuf>| {
            Side::open_all(dirs.into_iter().map(|d| InputSpec::new(d, crate::input::Format::Lines)).collect()).unwrap()
        };
        diff(DiffConfig {
            source: side(source),
            target: side(target),
            out_dir: out.to_path_buf(),
            compare: None,
            write_match: true,
            combined: true,
            term: b'\n',
            mem: 1 << 20,
            tmp_dir: tmp.to_path_buf(),
            engine,
            quiet: true,
            merge_ranges,
        })
        .unwrap()
    }

    /// Every file a diff wrote but summary.json (which names its inputs), with its bytes.
    fn outcome_files(out: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "summary.json")
            .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        assert!(
            v.len() >= 7,
            "match, combined and the CSVs were asked for: {:?}",
            v.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        v
    }

    /// A side of several overlapping chunk sets diffs exactly like one chunk set of their union, with the
    /// sorted engine and the hash engine: same outcome files byte for byte, same counts.
    #[test]
    fn several_sets_per_side_diff_like_their_union() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for round in 0..4 {
            let t = tempfile::tempdir().unwrap();
            let p = |n: &str| t.path().join(n);
            let universe: Vec<Vec<u8>> = (0..3000).map(|i| format!("k{:05}", i * 7919 % 10007).into_bytes()).collect();
            let (mut union, mut target) = (BTreeMap::new(), BTreeMap::new());
            let mut parts = vec![BTreeMap::new(); 1 + round * 2];
            for k in &universe {
                let size = rng.gen_range(0..3u64);
                if rng.gen_bool(0.9) {
                    union.insert(k.clone(), size);
                    // Each source key in one part, some in two (as token order scatters a mapped key).
                    let n = parts.len();
                    parts[rng.gen_range(0..n)].insert(k.clone(), size);
                    if rng.gen_bool(0.1) {
                        parts[rng.gen_range(0..n)].insert(k.clone(), size);
                    }
                }
                if rng.gen_bool(0.85) {
                    target.insert(k.clone(), if rng.gen_bool(0.05) { size + 1 } else { size });
                }
            }
            let sets: Vec<PathBuf> =
                parts.iter().enumerate().map(|(i, m)| write_set(&p(&format!("s{i}")), m, 97)).collect();
            let whole = write_set(&p("union"), &union, 500);
            let tgt = write_set(&p("target"), &target, 300);
            for engine in [Engine::Sort, Engine::Hash] {
                let (a, b) = (p(&format!("{engine:?}-parts")), p(&format!("{engine:?}-whole")));
                let sa = run(sets.clone(), vec![tgt.clone()], engine, &a, t.path());
                let sb = run(vec![whole.clone()], vec![tgt.clone()], engine, &b, t.path());
                assert_eq!(outcome_files(&a), outcome_files(&b), "{engine:?}, round {round}");
                assert_eq!(
                    (sa.missing_on_target, sa.missing_on_source, sa.differ, sa.matched),
                    (sb.missing_on_target, sb.missing_on_source, sb.differ, sb.matched)
                );
                assert!(sa.differences());
                assert_eq!(sa.source.unique_keys, union.len() as u64);
                assert_eq!(sa.source.inputs.len(), parts.len());
            }
        }
    }

    /// A chunk set in `dir` of `recs` spread over `chunks` overlapping chunks (`disjoint: false`), each
    /// record in one chunk and some in two, as a lister's token ranges scatter keys.
    fn write_overlapping(dir: &Path, recs: &BTreeMap<Vec<u8>, u64>, chunks: usize, rng: &mut impl Rng) -> PathBuf {
        let w = ChunkSetWriter::create(dir, Schema(Schema::SIZE), false).unwrap();
        let mut parts = vec![Vec::new(); chunks];
        for (k, size) in recs {
            parts[rng.gen_range(0..chunks)].push((k, *size));
            if rng.gen_bool(0.05) {
                parts[rng.gen_range(0..chunks)].push((k, *size));
            }
        }
        let mut meta = Vec::new();
        for mut part in parts {
            part.sort();
            part.dedup();
            let mut c = w.new_chunk().unwrap();
            for (k, size) in part {
                meta.clear();
                MetaRef { size: Some(size), ..Default::default() }.encode(&mut meta);
                c.push(k, &meta).unwrap();
            }
            w.add_chunk(c).unwrap();
        }
        w.finish(Producer::default(), false, serde_json::Value::Null).unwrap();
        dir.to_path_buf()
    }

    /// Issue 15 goal 3: the merge engine walks key ranges in parallel; whatever the cuts, the outcome
    /// files are byte for byte a single walk's, the counts and side statistics are the same (duplicates
    /// dropped inside overlapping sets counted once), and no part of the output is left behind.
    #[test]
    fn a_walk_in_key_ranges_writes_what_one_walk_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for round in 0..6 {
            let t = tempfile::tempdir().unwrap();
            let p = |n: &str| t.path().join(n);
            // Long shared prefixes, so that cuts fall where 8-byte prefixes are equal.
            let universe: Vec<Vec<u8>> =
                (0..4000).map(|i| format!("photos/2024/{:05}", i * 7919 % 10007).into_bytes()).collect();
            let (mut source, mut target) = (BTreeMap::new(), BTreeMap::new());
            for k in &universe {
                let size = rng.gen_range(0..3u64);
                if rng.gen_bool(0.9) {
                    source.insert(k.clone(), size);
                }
                if rng.gen_bool(0.85) {
                    target.insert(k.clone(), if rng.gen_bool(0.05) { size + 1 } else { size });
                }
            }
            // Round 1 leaves the target empty: every key is missing on the target.
            if round == 1 {
                target.clear();
            }
            let src: Vec<PathBuf> = match round % 3 {
                0 => vec![write_set(&p("source"), &source, rng.gen_range(50..700))],
                1 => vec![write_overlapping(&p("source"), &source, 7, &mut rng)],
                _ => {
                    // Two sets of one side, a record in either or both.
                    let (mut x, mut y) = (BTreeMap::new(), BTreeMap::new());
                    for (k, v) in &source {
                        match rng.gen_range(0..5) {
                            0 => {
                                x.insert(k.clone(), *v);
                                y.insert(k.clone(), *v);
                            }
                            1 | 2 => drop(x.insert(k.clone(), *v)),
                            _ => drop(y.insert(k.clone(), *v)),
                        }
                    }
                    vec![write_set(&p("x"), &x, 301), write_overlapping(&p("y"), &y, 4, &mut rng)]
                }
            };
            let tgt = write_set(&p("target"), &target, rng.gen_range(50..700));
            let one = run_ranges(src.clone(), vec![tgt.clone()], Engine::Auto, &p("one"), t.path(), Some(1));
            assert_eq!(one.engine_stats["ranges"], 1);
            for n in [2, 3, 5, 9] {
                let out = p(&format!("ranges-{n}"));
                // A part a killed run left behind is cleared away.
                std::fs::create_dir_all(out.join(".part-00042")).unwrap();
                let s =
                    pool.install(|| run_ranges(src.clone(), vec![tgt.clone()], Engine::Auto, &out, t.path(), Some(n)));
                let ranges = s.engine_stats["ranges"].as_u64().unwrap();
                assert!(ranges > 1 && ranges <= n as u64, "round {round}: {n} ranges asked, {ranges} walked");
                assert_eq!(outcome_files(&out), outcome_files(&p("one")), "round {round}, {n} ranges");
                assert_eq!(serde_json::to_value(&s.details).unwrap(), serde_json::to_value(&one.details).unwrap());
                for (a, b) in [(&s.source, &one.source), (&s.target, &one.target)] {
                    assert_eq!(
                        (a.records_read, a.unique_keys, a.duplicates, a.bytes),
                        (b.records_read, b.unique_keys, b.duplicates, b.bytes),
                        "round {round}, {n} ranges"
                    );
                }
            }
            assert_eq!(one.source.unique_keys, source.len() as u64);
            if round % 3 != 0 {
                assert!(one.source.duplicates > 0, "round {round}: overlapping chunks drop duplicates");
            }
        }
    }

    /// A damaged chunk fails a walk in key ranges as it fails one walk, naming the chunk, and the
    /// ranges' parts of the output are removed.
    #[test]
    fn a_damaged_chunk_fails_a_walk_in_ranges_and_leaves_no_parts() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        let keys: BTreeMap<Vec<u8>, u64> = (0..5000).map(|i| (format!("k{i:06}").into_bytes(), 1)).collect();
        let src = write_set(&p("source"), &keys, 1000);
        let tgt = write_set(&p("target"), &keys, 700);
        // The first key of the source's third chunk, "k002000", becomes "k00200/": still in order, so
        // only the chunk's checksum tells, and a cut inside it leaves its first keys to a range that
        // passes over them.
        let chunk = src.join("chunk-000002.krc");
        let mut bytes = std::fs::read(&chunk).unwrap();
        let at = bytes.windows(7).position(|w| w == b"k002000").unwrap();
        bytes[at + 6] = b'/';
        std::fs::write(&chunk, bytes).unwrap();
        let side = |d: &PathBuf| Side::open(InputSpec::new(d, crate::input::Format::Lines)).unwrap();
        for ranges in [1, 3, 8] {
            let out = p(&format!("out-{ranges}"));
            let e = diff(DiffConfig {
                source: side(&src),
                target: side(&tgt),
                out_dir: out.clone(),
                compare: None,
                write_match: true,
                combined: true,
                term: b'\n',
                mem: 1 << 20,
                tmp_dir: t.path().to_path_buf(),
                engine: Engine::Auto,
                quiet: true,
                merge_ranges: Some(ranges),
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("checksum") && e.contains("chunk-000002.krc"), "{ranges} ranges: {e}");
            let left: Vec<_> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with(".part"))
                .collect();
            assert!(left.is_empty(), "{ranges} ranges: parts left behind: {left:?}");
        }
    }
}
