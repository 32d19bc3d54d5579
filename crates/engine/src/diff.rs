//! The two-sided walk and its outcomes, after rclone's `march` + `check`.
//!
//! [`walk`] moves through two sorted, duplicate-free streams in lock step and calls the [`DiffWriter`]
//! for each key: only in the source, only in the target, or in both (then metadata decides "differ" or
//! "match"). The writer owns the output directory:
//!
//! | file | holds |
//! |---|---|
//! | `missing-on-target.txt` | keys in SOURCE, not in TARGET (to repair) |
//! | `missing-on-source.txt` | keys in TARGET, not in SOURCE (orphans) |
//! | `differ.txt` | keys in both whose compared metadata differ |
//! | `match.txt` | keys in both that match (`--match`) |
//! | `combined.txt` | every key with rclone's marker: `+ ` only in source, `- ` only in target, `* ` differ, `= ` match (`--combined`) |
//! | `missing-on-target.csv` | when the source carries metadata: key and every source field (drives repair) |
//! | `missing-on-source.csv` | when the target carries metadata: key and every target field |
//! | `differ.csv` | when metadata was compared: key, what differs, both sides' values, source origin |
//! | `summary.json` | counts, per-side statistics, timings (see [`DiffSummary`]) |
//!
//! Every key file is in byte order (`LC_ALL=C sort`), one key per line (NUL with `-z`). A key that holds
//! the terminator byte cannot be written to a `.txt` without becoming two keys: it is written to the CSV
//! files only and counted in `unwritable_keys`, which makes the run exit 2.
//!
//! Metadata rules (`--compare`): `size` differs if both sides know it and it is unequal; `etag` compares
//! the values without quotes or `W/`, case-insensitively; a multipart ETag (`...-N`, an MD5 of the part
//! MD5s, not of the content) against a plain one is skipped and counted in `etag_uncomparable`, while
//! two multipart ETags are compared: unequal ones mean other content or another part size, and either is
//! worth a look (the data-safe side: a false "differ" costs a check, a false "match" loses a change);
//! `mtime` differs when the source was written after the target (edited after copying).

use crate::csvout::CsvOut;
use crate::error::{IoContext, Result};
use crate::merge::SortedCursor;
use crate::record::{MetaRef, Schema};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const OUT_BUF: usize = 1 << 20;

/// Walks two sorted, duplicate-free streams. Returns when both are exhausted. Generic, so that the
/// cursors' `key`/`advance` inline into the loop (through `dyn` they were a quarter of a chunk-set diff).
pub fn walk<A, B>(src: &mut A, tgt: &mut B, w: &mut DiffWriter) -> Result<()>
where
    A: SortedCursor + ?Sized,
    B: SortedCursor + ?Sized,
{
    let mut hs = src.advance()?;
    let mut ht = tgt.advance()?;
    while hs && ht {
        match src.key().cmp(tgt.key()) {
            std::cmp::Ordering::Less => {
                w.only_source(src.key(), src.meta())?;
                hs = src.advance()?;
            }
            std::cmp::Ordering::Greater => {
                w.only_target(tgt.key(), tgt.meta())?;
                ht = tgt.advance()?;
            }
            std::cmp::Ordering::Equal => {
                w.both(src.key(), src.meta(), tgt.meta())?;
                hs = src.advance()?;
                ht = tgt.advance()?;
            }
        }
    }
    while hs {
        w.only_source(src.key(), src.meta())?;
        hs = src.advance()?;
    }
    while ht {
        w.only_target(tgt.key(), tgt.meta())?;
        ht = tgt.advance()?;
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct DiffOptions {
    pub out_dir: PathBuf,
    /// Schema bits of the fields to compare (SIZE, ETAG, MTIME).
    pub compare: u8,
    pub write_match: bool,
    pub combined: bool,
    /// Record terminator of the key files: `\n` or NUL.
    pub term: u8,
    pub source_schema: Schema,
    pub target_schema: Schema,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub missing_on_target: u64,
    pub missing_on_source: u64,
    pub differ: u64,
    pub matched: u64,
    pub differ_size: u64,
    pub differ_etag: u64,
    pub differ_mtime: u64,
    pub etag_uncomparable: u64,
    pub unwritable_keys: u64,
    pub bad_metadata: u64,
}

struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Out {
    fn create(dir: &Path, name: &str) -> Result<Out> {
        let path = dir.join(name);
        let f = File::create(&path).ctx(&path)?;
        Ok(Out { path, w: BufWriter::with_capacity(OUT_BUF, f) })
    }
    #[inline]
    fn key(&mut self, prefix: &[u8], key: &[u8], term: u8) -> Result<()> {
        self.w.write_all(prefix).ctx(&self.path)?;
        self.w.write_all(key).ctx(&self.path)?;
        self.w.write_all(&[term]).ctx(&self.path)
    }
    fn finish(mut self) -> Result<()> {
        self.w.flush().ctx(&self.path)
    }
    /// Appends the bytes of the file at `part`.
    fn append(&mut self, part: &Path) -> Result<()> {
        self.w.flush().ctx(&self.path)?;
        crate::csvout::append_file(self.w.get_ref(), &self.path, part)
    }
}

/// Receives the walk's outcomes and writes the output directory. Keys must arrive in increasing order.
pub struct DiffWriter {
    opt: DiffOptions,
    mot: Out,
    mos: Out,
    differ: Out,
    matched: Option<Out>,
    combined: Option<Out>,
    mot_csv: Option<CsvOut>,
    mos_csv: Option<CsvOut>,
    differ_csv: Option<CsvOut>,
    pub counts: Counts,
    /// The CSV row being built, reused for every row.
    row: Row,
}

/// One CSV row's cells in one reused buffer: no allocation per cell or per row once warm.
#[derive(Default)]
struct Row {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Row {
    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        self.ends.push(self.buf.len());
    }
    /// A number's decimal text, or an empty cell.
    fn num(&mut self, v: Option<impl std::fmt::Display>) {
        if let Some(v) = v {
            use std::io::Write;
            let _ = write!(self.buf, "{v}");
        }
        self.ends.push(self.buf.len());
    }
    fn cells(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let cell = &self.buf[start..end];
            start = end;
            cell
        })
    }
}

/// Name prefix of the part directories of a walk in key ranges ([`DiffWriter::part`]).
const PART: &str = ".part-";

pub const FILES: [&str; 5] =
    ["missing-on-target.txt", "missing-on-source.txt", "differ.txt", "match.txt", "combined.txt"];

impl DiffWriter {
    pub fn create(opt: DiffOptions) -> Result<Self> {
        Self::create_with(opt, true)
    }

    /// A writer for the outcomes of one key range of a walk split into ranges: the same files, without
    /// CSV headers, in `OUT/.part-NNNNN/`, to be [`append`](Self::append)ed in range order.
    pub fn part(opt: &DiffOptions, index: usize) -> Result<Self> {
        let out_dir = opt.out_dir.join(format!("{PART}{index:05}"));
        Self::create_with(DiffOptions { out_dir, ..opt.clone() }, false)
    }

    /// Removes every part directory in `out_dir` (of a failed or killed run).
    pub fn remove_parts(out_dir: &Path) -> Result<()> {
        for e in std::fs::read_dir(out_dir).ctx(out_dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(PART) {
                std::fs::remove_dir_all(e.path()).ctx(e.path())?;
            }
        }
        Ok(())
    }

    pub fn options(&self) -> &DiffOptions {
        &self.opt
    }

    /// Finishes `part` ([`part`](Self::part)), appends its files to this writer's and adds its counts;
    /// the part's directory is removed.
    pub fn append(&mut self, part: DiffWriter) -> Result<()> {
        let dir = part.opt.out_dir.clone();
        let counts = part.finish()?;
        self.counts.add(&counts);
        for out in [
            Some(&mut self.mot),
            Some(&mut self.mos),
            Some(&mut self.differ),
            self.matched.as_mut(),
            self.combined.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let name = out.path.file_name().expect("outcome files have names").to_owned();
            out.append(&dir.join(name))?;
        }
        for csv in [&mut self.mot_csv, &mut self.mos_csv, &mut self.differ_csv].into_iter().flatten() {
            let name = csv.path().file_name().expect("outcome files have names").to_owned();
            csv.append(&dir.join(name))?;
        }
        std::fs::remove_dir_all(&dir).ctx(&dir)
    }

    fn create_with(opt: DiffOptions, headers: bool) -> Result<Self> {
        let d = opt.out_dir.clone();
        std::fs::create_dir_all(&d).ctx(&d)?;
        let fields = |s: Schema| -> Vec<&'static str> { std::iter::once("key").chain(s.names()).collect() };
        let csv = |name: &str, header: &[&str]| CsvOut::create_with(&d, name, headers.then_some(header));
        let mot_csv = if opt.source_schema.is_keys_only() {
            None
        } else {
            Some(csv("missing-on-target.csv", &fields(opt.source_schema))?)
        };
        let mos_csv = if opt.target_schema.is_keys_only() {
            None
        } else {
            Some(csv("missing-on-source.csv", &fields(opt.target_schema))?)
        };
        let differ_csv = if opt.compare == 0 {
            None
        } else {
            Some(csv(
                "differ.csv",
                &[
                    "key",
                    "differs",
                    "source_size",
                    "target_size",
                    "source_etag",
                    "target_etag",
                    "source_mtime",
                    "target_mtime",
                    "origin",
                ],
            )?)
        };
        Ok(DiffWriter {
            mot: Out::create(&d, FILES[0])?,
            mos: Out::create(&d, FILES[1])?,
            differ: Out::create(&d, FILES[2])?,
            matched: if opt.write_match { Some(Out::create(&d, FILES[3])?) } else { None },
            combined: if opt.combined { Some(Out::create(&d, FILES[4])?) } else { None },
            mot_csv,
            mos_csv,
            differ_csv,
            counts: Counts::default(),
            row: Row::default(),
            opt,
        })
    }

    /// Can `key` go into a key file without being split?
    #[inline]
    fn writable(&mut self, key: &[u8]) -> bool {
        if memchr::memchr(self.opt.term, key).is_some() {
            self.counts.unwritable_keys += 1;
            false
        } else {
            true
        }
    }

    /// A key only in the source (missing on target).
    #[inline]
    pub fn only_source(&mut self, key: &[u8], meta: &[u8]) -> Result<()> {
        self.counts.missing_on_target += 1;
        self.one_sided(true, key, meta)
    }

    /// A key only in the target (missing on source).
    #[inline]
    pub fn only_target(&mut self, key: &[u8], meta: &[u8]) -> Result<()> {
        self.counts.missing_on_source += 1;
        self.one_sided(false, key, meta)
    }

    #[inline]
    fn one_sided(&mut self, source: bool, key: &[u8], meta: &[u8]) -> Result<()> {
        let t = self.opt.term;
        if self.writable(key) {
            let (file, marker) = if source { (&mut self.mot, b"+ ") } else { (&mut self.mos, b"- ") };
            file.key(b"", key, t)?;
            if let Some(c) = &mut self.combined {
                c.key(marker, key, t)?;
            }
        }
        let (csv, schema) = if source {
            (&mut self.mot_csv, self.opt.source_schema)
        } else {
            (&mut self.mos_csv, self.opt.target_schema)
        };
        if let Some(csv) = csv {
            let ok = meta_row(&mut self.row, key, meta, schema);
            self.counts.bad_metadata += !ok as u64;
            csv.row(self.row.cells())?;
        }
        Ok(())
    }

    #[inline]
    pub fn both(&mut self, key: &[u8], smeta: &[u8], tmeta: &[u8]) -> Result<()> {
        let bits = Comparator { fields: self.opt.compare }.differs(smeta, tmeta, &mut self.counts);
        if bits != 0 {
            self.differ(key, smeta, tmeta, bits)
        } else {
            self.matched(key)
        }
    }

    /// A key in both whose metadata differs in `bits` (Schema bits), already counted by a [`Comparator`].
    pub fn differ(&mut self, key: &[u8], smeta: &[u8], tmeta: &[u8], bits: u8) -> Result<()> {
        self.counts.differ += 1;
        let t = self.opt.term;
        if self.writable(key) {
            self.differ.key(b"", key, t)?;
            if let Some(c) = &mut self.combined {
                c.key(b"* ", key, t)?;
            }
        }
        if let Some(csv) = &mut self.differ_csv {
            let (s, tm) = (MetaRef::decode(smeta).unwrap_or_default(), MetaRef::decode(tmeta).unwrap_or_default());
            let row = &mut self.row;
            row.clear();
            row.bytes(key);
            // What differs: `size+etag`.
            for (i, (_, name)) in Schema::FIELDS.iter().filter(|(bit, _)| bits & bit != 0).enumerate() {
                if i > 0 {
                    row.buf.push(b'+');
                }
                row.buf.extend_from_slice(name.as_bytes());
            }
            row.ends.push(row.buf.len());
            row.num(s.size);
            row.num(tm.size);
            row.bytes(s.etag.unwrap_or_default());
            row.bytes(tm.etag.unwrap_or_default());
            row.num(s.mtime);
            row.num(tm.mtime);
            row.bytes(s.origin.unwrap_or_default());
            csv.row(row.cells())?;
        }
        Ok(())
    }

    /// A key in both whose metadata matches.
    #[inline]
    pub fn matched(&mut self, key: &[u8]) -> Result<()> {
        self.counts.matched += 1;
        if (self.matched.is_some() || self.combined.is_some()) && self.writable(key) {
            {
                let t = self.opt.term;
                if let Some(m) = &mut self.matched {
                    m.key(b"", key, t)?;
                }
                if let Some(c) = &mut self.combined {
                    c.key(b"= ", key, t)?;
                }
            }
        }
        Ok(())
    }

    /// Does this run need matched keys written anywhere?
    pub fn wants_matches(&self) -> bool {
        self.matched.is_some() || self.combined.is_some()
    }

    pub fn comparator(&self) -> Comparator {
        Comparator { fields: self.opt.compare }
    }

    pub fn finish(self) -> Result<Counts> {
        self.mot.finish()?;
        self.mos.finish()?;
        self.differ.finish()?;
        if let Some(m) = self.matched {
            m.finish()?;
        }
        if let Some(c) = self.combined {
            c.finish()?;
        }
        for c in [self.mot_csv, self.mos_csv, self.differ_csv].into_iter().flatten() {
            c.finish()?;
        }
        Ok(self.counts)
    }
}

/// Decides whether two records' metadata differ, by the `--compare` fields (module doc has the rules).
#[derive(Clone, Copy, Debug)]
pub struct Comparator {
    pub fields: u8,
}

impl Comparator {
    /// Schema bits of the compared fields that differ (0: match); counts per-field reasons in `counts`.
    #[inline]
    pub fn differs(&self, smeta: &[u8], tmeta: &[u8], counts: &mut Counts) -> u8 {
        if self.fields == 0 {
            return 0;
        }
        let (s, t) = match (MetaRef::decode(smeta), MetaRef::decode(tmeta)) {
            (Ok(s), Ok(t)) => (s, t),
            _ => {
                counts.bad_metadata += 1;
                return 0;
            }
        };
        let mut d = 0u8;
        if self.fields & Schema::SIZE != 0 {
            if let (Some(a), Some(b)) = (s.size, t.size) {
                if a != b {
                    d |= Schema::SIZE;
                    counts.differ_size += 1;
                }
            }
        }
        if self.fields & Schema::ETAG != 0 {
            if let (Some(a), Some(b)) = (s.etag, t.etag) {
                match etag_equal(a, b) {
                    Some(true) => {}
                    Some(false) => {
                        d |= Schema::ETAG;
                        counts.differ_etag += 1;
                    }
                    None => counts.etag_uncomparable += 1,
                }
            }
        }
        if self.fields & Schema::MTIME != 0 {
            if let (Some(a), Some(b)) = (s.mtime, t.mtime) {
                if a > b {
                    d |= Schema::MTIME;
                    counts.differ_mtime += 1;
                }
            }
        }
        d
    }
}

impl Counts {
    /// Adds every counter of `o`.
    pub fn add(&mut self, o: &Counts) {
        self.missing_on_target += o.missing_on_target;
        self.missing_on_source += o.missing_on_source;
        self.differ += o.differ;
        self.matched += o.matched;
        self.unwritable_keys += o.unwritable_keys;
        self.add_comparisons(o);
    }

    /// Adds the per-field comparison counters of `o` (gathered by parallel workers).
    pub fn add_comparisons(&mut self, o: &Counts) {
        self.differ_size += o.differ_size;
        self.differ_etag += o.differ_etag;
        self.differ_mtime += o.differ_mtime;
        self.etag_uncomparable += o.etag_uncomparable;
        self.bad_metadata += o.bad_metadata;
    }
}

/// Fills `row` with key + the schema's fields of `meta`, as CSV cells. False when `meta` does not
/// decode (its cells are then empty).
fn meta_row(row: &mut Row, key: &[u8], meta: &[u8], schema: Schema) -> bool {
    row.clear();
    row.bytes(key);
    let decoded = MetaRef::decode(meta);
    let ok = decoded.is_ok();
    let m = decoded.unwrap_or_default();
    for (bit, _) in Schema::FIELDS {
        if !schema.has(bit) {
            continue;
        }
        match bit {
            Schema::SIZE => row.num(m.size),
            Schema::ETAG => row.bytes(m.etag.unwrap_or_default()),
            Schema::MTIME => row.num(m.mtime),
            Schema::ORIGIN => row.bytes(m.origin.unwrap_or_default()),
            Schema::CLASS => row.bytes(m.class.unwrap_or_default()),
            _ => unreachable!(),
        }
    }
    ok
}

/// Compares two ETags/checksums. `None` when they cannot be compared: one is multipart (an MD5 of part
/// MD5s) and the other is not. Two multipart ETags are compared (module doc).
pub fn etag_equal(a: &[u8], b: &[u8]) -> Option<bool> {
    fn strip(x: &[u8]) -> &[u8] {
        let x = x.strip_prefix(b"W/").unwrap_or(x);
        let x = x.strip_prefix(b"\"").unwrap_or(x);
        x.strip_suffix(b"\"").unwrap_or(x)
    }
    let (a, b) = (strip(a), strip(b));
    if a.contains(&b'-') != b.contains(&b'-') {
        return None;
    }
    Some(a.eq_ignore_ascii_case(b))
}

/// Per-side statistics in the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideStats {
    /// The input; a side of several chunk sets names them all, joined by `, ` (see `inputs`).
    pub input: String,
    /// "chunkset" (one or more) or "file".
    pub kind: String,
    /// Every input of the side, in merge order, with what it lists when a lister wrote it.
    pub inputs: Vec<SideInput>,
    pub records_read: u64,
    pub unique_keys: u64,
    pub duplicates: u64,
    pub blank_lines: u64,
    pub rejected: u64,
    pub bytes: u64,
}

/// One input of a diff side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideInput {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<crate::chunk::Listing>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub total_ms: u64,
    /// Reading and partitioning/sorting inputs.
    pub read_ms: u64,
    /// Matching and writing outcomes.
    pub diff_ms: u64,
}

/// `summary.json` of keyrecon-diff.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiffSummary {
    pub missing_on_target: u64,
    pub missing_on_source: u64,
    pub differ: u64,
    pub matched: u64,
    pub source: SideStats,
    pub target: SideStats,
    pub details: Counts,
    pub compared: Vec<String>,
    pub engine: String,
    /// Engine internals (partitions, spilled bytes, fallbacks) for tuning and tests.
    pub engine_stats: serde_json::Value,
    pub mem_budget_bytes: u64,
    pub peak_rss_bytes: u64,
    pub timings: Timings,
    pub errors: Vec<String>,
    pub exit_code: i32,
}

impl DiffSummary {
    pub fn differences(&self) -> bool {
        self.missing_on_target + self.missing_on_source + self.differ > 0
    }
    /// diff(1) convention: 0 same, 1 different, 2 trouble.
    pub fn compute_exit_code(&self) -> i32 {
        if !self.errors.is_empty()
            || self.details.unwritable_keys > 0
            || self.details.bad_metadata > 0
            || self.source.rejected + self.target.rejected > 0
        {
            2
        } else if self.differences() {
            1
        } else {
            0
        }
    }
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::summary::write_json(dir, self)
    }
}

impl crate::summary::Summary for DiffSummary {
    fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// One paragraph for stderr.
    fn paragraph(&self) -> String {
        let mut s = format!(
            "{} missing on target, {} missing on source, {} differ, {} match. source: {} records, {} unique, {} duplicates; target: {} records, {} unique, {} duplicates. {:.2}s, peak RSS {} MiB, engine {}.",
            self.missing_on_target,
            self.missing_on_source,
            self.differ,
            self.matched,
            self.source.records_read,
            self.source.unique_keys,
            self.source.duplicates,
            self.target.records_read,
            self.target.unique_keys,
            self.target.duplicates,
            self.timings.total_ms as f64 / 1000.0,
            self.peak_rss_bytes >> 20,
            self.engine
        );
        let rej = self.source.rejected + self.target.rejected;
        if rej > 0 {
            s.push_str(&format!(" {rej} inputs rejected (see rejects.csv)."));
        }
        if self.details.unwritable_keys > 0 {
            s.push_str(&format!(
                " {} keys contain the line terminator and are only in the CSV files: rerun with -z.",
                self.details.unwritable_keys
            ));
        }
        for e in &self.errors {
            s.push_str(&format!(" ERROR: {e}."));
        }
        s
    }
}

/// The two-sided cases shared by the table tests of [`walk`] (below) and of the hash join
/// (`hashdiff::tests`), after rclone's `march_test`: two record lists and what the diff must report.
/// Every case here has duplicate-free sides listed in byte order, as [`walk`] requires; the hash join
/// also runs them in reverse and adds cases with duplicates.
#[cfg(test)]
pub(crate) mod cases {
    use super::{Counts, DiffOptions, DiffWriter};
    use crate::record::{Meta, Schema};
    use std::path::Path;

    /// What the table compares unless a case says otherwise (`--compare size,etag,mtime`).
    pub const SIZE_ETAG_MTIME: u8 = Schema::SIZE | Schema::ETAG | Schema::MTIME;

    /// One record of a case: a key and its metadata (nothing known by default).
    #[derive(Clone, Debug)]
    pub struct Rec {
        pub key: Vec<u8>,
        pub meta: Meta,
    }

    pub fn rec(key: impl AsRef<[u8]>) -> Rec {
        Rec { key: key.as_ref().to_vec(), meta: Meta::default() }
    }

    impl Rec {
        pub fn size(mut self, v: u64) -> Rec {
            self.meta.size = Some(v);
            self
        }
        pub fn etag(mut self, v: &str) -> Rec {
            self.meta.etag = Some(v.as_bytes().to_vec());
            self
        }
        pub fn mtime(mut self, v: i64) -> Rec {
            self.meta.mtime = Some(v);
            self
        }
        /// The record as the engine moves it: key and encoded metadata.
        pub fn encoded(&self) -> (Vec<u8>, Vec<u8>) {
            (self.key.clone(), self.meta.to_bytes())
        }
    }

    /// Records of these keys, without metadata.
    macro_rules! recs {
        ($($k:expr),* $(,)?) => { vec![$($crate::diff::cases::rec($k)),*] };
    }
    /// A list of keys (byte strings or `&str`).
    macro_rules! keys {
        ($($k:expr),* $(,)?) => { vec![$(AsRef::<[u8]>::as_ref($k).to_vec()),*] };
    }
    pub(crate) use {keys, recs};

    /// The per-field counters of [`Counts`] a case expects.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Fields {
        pub size: u64,
        pub etag: u64,
        pub mtime: u64,
        pub etag_uncomparable: u64,
    }

    impl Fields {
        pub fn of(c: &Counts) -> Fields {
            Fields {
                size: c.differ_size,
                etag: c.differ_etag,
                mtime: c.differ_mtime,
                etag_uncomparable: c.etag_uncomparable,
            }
        }
    }

    #[derive(Clone, Debug)]
    pub struct Case {
        pub name: &'static str,
        /// Records in input order.
        pub src: Vec<Rec>,
        pub tgt: Vec<Rec>,
        /// Schema bits of the compared fields.
        pub compare: u8,
        pub missing_on_target: Vec<Vec<u8>>,
        pub missing_on_source: Vec<Vec<u8>>,
        pub differ: Vec<Vec<u8>>,
        pub matched: Vec<Vec<u8>>,
        pub fields: Fields,
        /// Duplicate records removed (source, target).
        pub duplicates: (u64, u64),
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                name: "",
                src: vec![],
                tgt: vec![],
                compare: SIZE_ETAG_MTIME,
                missing_on_target: vec![],
                missing_on_source: vec![],
                differ: vec![],
                matched: vec![],
                fields: Fields::default(),
                duplicates: (0, 0),
            }
        }
    }

    /// Duplicate-free cases in byte order.
    pub fn table() -> Vec<Case> {
        vec![
            Case { name: "both empty", ..Case::default() },
            Case { name: "target empty", src: recs!["a", "b"], missing_on_target: keys!["a", "b"], ..Case::default() },
            Case { name: "source empty", tgt: recs!["a", "b"], missing_on_source: keys!["a", "b"], ..Case::default() },
            Case {
                name: "identical",
                src: recs!["a", "b", "c"],
                tgt: recs!["a", "b", "c"],
                matched: keys!["a", "b", "c"],
                ..Case::default()
            },
            Case {
                name: "interleaved",
                src: recs!["a", "c", "e", "g"],
                tgt: recs!["b", "c", "d", "g", "h"],
                missing_on_target: keys!["a", "e"],
                missing_on_source: keys!["b", "d", "h"],
                matched: keys!["c", "g"],
                ..Case::default()
            },
            Case {
                name: "prefix keys",
                src: recs!["a", "abc"],
                tgt: recs!["ab", "abc", "abcd"],
                missing_on_target: keys!["a"],
                missing_on_source: keys!["ab", "abcd"],
                matched: keys!["abc"],
                ..Case::default()
            },
            Case {
                name: "bytes 0x00 0x7f 0x80 0xff order as unsigned",
                src: recs![b"\x00", b"a", b"a\x00", b"\x7f", b"\xff"],
                tgt: recs![b"\x00", b"a\x00", b"\x80", b"\xff", b"\xff\xff"],
                missing_on_target: keys![b"a", b"\x7f"],
                missing_on_source: keys![b"\x80", b"\xff\xff"],
                matched: keys![b"\x00", b"a\x00", b"\xff"],
                ..Case::default()
            },
            Case {
                name: "utf-8 sorts by bytes",
                src: recs!["e", "z", "é", "😀"],
                tgt: recs!["é", "ë", "😀x"],
                missing_on_target: keys!["e", "z", "😀"],
                missing_on_source: keys!["ë", "😀x"],
                matched: keys!["é"],
                ..Case::default()
            },
            Case {
                name: "size differs",
                src: vec![rec("k").size(1)],
                tgt: vec![rec("k").size(2)],
                differ: keys!["k"],
                fields: Fields { size: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "size equal",
                src: vec![rec("k").size(7)],
                tgt: vec![rec("k").size(7)],
                matched: keys!["k"],
                ..Case::default()
            },
            Case {
                name: "size unknown on one side is a match",
                src: vec![rec("a").size(1), rec("b")],
                tgt: vec![rec("a"), rec("b").size(2)],
                matched: keys!["a", "b"],
                ..Case::default()
            },
            Case {
                name: "etag with quotes, W/ and other case is a match",
                src: vec![rec("a").etag("\"ABCdef\""), rec("b").etag("W/\"abc\"")],
                tgt: vec![rec("a").etag("abcDEF"), rec("b").etag("ABC")],
                matched: keys!["a", "b"],
                ..Case::default()
            },
            Case {
                name: "etag differs",
                src: vec![rec("k").etag("\"abc\"")],
                tgt: vec![rec("k").etag("\"abd\"")],
                differ: keys!["k"],
                fields: Fields { etag: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "multipart etag against a plain one is uncomparable",
                src: vec![rec("a").etag("\"abc-2\""), rec("b").etag("abc")],
                tgt: vec![rec("a").etag("abc"), rec("b").etag("\"abd-3\"")],
                matched: keys!["a", "b"],
                fields: Fields { etag_uncomparable: 2, ..Fields::default() },
                ..Case::default()
            },
            Case {
                // Two multipart ETags are compared: unequal means other content or another part size.
                name: "two multipart etags are compared",
                src: vec![rec("a").etag("\"abc-2\""), rec("b").etag("\"abc-2\"")],
                tgt: vec![rec("a").etag("ABC-2"), rec("b").etag("\"abd-2\"")],
                differ: keys!["b"],
                matched: keys!["a"],
                fields: Fields { etag: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "etag unknown on one side is a match",
                src: vec![rec("a").etag("abc"), rec("b")],
                tgt: vec![rec("a"), rec("b").etag("abc-2")],
                matched: keys!["a", "b"],
                ..Case::default()
            },
            Case {
                name: "mtime: source written after target differs",
                src: vec![rec("k").mtime(1_700_000_000_000_001)],
                tgt: vec![rec("k").mtime(1_700_000_000_000_000)],
                differ: keys!["k"],
                fields: Fields { mtime: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "mtime: source older or equal matches",
                src: vec![rec("a").mtime(5), rec("b").mtime(-3), rec("c").mtime(9)],
                tgt: vec![rec("a").mtime(6), rec("b").mtime(-3), rec("c")],
                matched: keys!["a", "b", "c"],
                ..Case::default()
            },
            Case {
                name: "several fields differ: one differ, each field counted",
                src: vec![rec("k").size(1).etag("abc").mtime(10)],
                tgt: vec![rec("k").size(2).etag("abd").mtime(9)],
                differ: keys!["k"],
                fields: Fields { size: 1, etag: 1, mtime: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "only the compared fields count",
                src: vec![rec("k").size(1).etag("abc").mtime(10)],
                tgt: vec![rec("k").size(2).etag("abd").mtime(9)],
                compare: Schema::ETAG,
                differ: keys!["k"],
                fields: Fields { etag: 1, ..Fields::default() },
                ..Case::default()
            },
            Case {
                name: "nothing compared: keys decide",
                src: vec![rec("k").size(1).etag("abc").mtime(10), rec("s").size(1)],
                tgt: vec![rec("k").size(2).etag("abd").mtime(9), rec("t").size(1)],
                compare: 0,
                missing_on_target: keys!["s"],
                missing_on_source: keys!["t"],
                matched: keys!["k"],
                ..Case::default()
            },
            Case {
                name: "keys equal except metadata, mixed with one-sided keys",
                src: vec![rec("a").size(1), rec("b").size(1), rec("d").size(4), rec("e").mtime(2)],
                tgt: vec![rec("b").size(2), rec("c").size(3), rec("d").size(4), rec("e").mtime(1)],
                missing_on_target: keys!["a"],
                missing_on_source: keys!["c"],
                differ: keys!["b", "e"],
                matched: keys!["d"],
                fields: Fields { size: 1, mtime: 1, ..Fields::default() },
                ..Case::default()
            },
        ]
    }

    /// A writer of every outcome file (match.txt and combined.txt too) for `compare` into `dir`.
    pub fn writer(dir: &Path, compare: u8) -> DiffWriter {
        DiffWriter::create(DiffOptions {
            out_dir: dir.to_path_buf(),
            compare,
            write_match: true,
            combined: true,
            term: b'\n',
            source_schema: Schema(SIZE_ETAG_MTIME),
            target_schema: Schema(SIZE_ETAG_MTIME),
        })
        .unwrap()
    }

    /// Keys shown exactly (escaped bytes), so that a failing assertion is readable.
    pub fn show(keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter().map(|k| k.escape_ascii().to_string()).collect()
    }

    /// The keys of a key file written with `\n`, except those starting with `skip` (filler records).
    pub fn key_file(path: &Path, skip: &[u8]) -> Vec<Vec<u8>> {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(data.is_empty() || data.ends_with(b"\n"), "{}: last key unterminated", path.display());
        let mut keys: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        keys.pop();
        keys.into_iter().filter(|k| skip.is_empty() || !k.starts_with(skip)).map(<[u8]>::to_vec).collect()
    }

    /// Checks the key files and counters in `dir` against `case`. `skip`: a key prefix of filler records
    /// to leave out of the key files (their counts are not in `counts`' comparison either: the caller
    /// subtracts them).
    pub fn check(case: &Case, dir: &Path, counts: &Counts, skip: &[u8], ctx: &str) {
        let ctx = format!("{ctx}, case {:?}", case.name);
        let lists = [
            ("missing-on-target.txt", &case.missing_on_target, counts.missing_on_target, "+ "),
            ("missing-on-source.txt", &case.missing_on_source, counts.missing_on_source, "- "),
            ("differ.txt", &case.differ, counts.differ, "* "),
            ("match.txt", &case.matched, counts.matched, "= "),
        ];
        let mut combined: Vec<(Vec<u8>, &str)> = Vec::new();
        for (file, want, n, marker) in lists {
            let got = key_file(&dir.join(file), skip);
            assert_eq!(show(&got), show(want), "{ctx}: {file}");
            assert_eq!(n, want.len() as u64, "{ctx}: count of {file}");
            combined.extend(want.iter().map(|k| (k.clone(), marker)));
        }
        assert_eq!(Fields::of(counts), case.fields, "{ctx}: per-field counts");
        assert_eq!((counts.unwritable_keys, counts.bad_metadata), (0, 0), "{ctx}");
        // combined.txt: every key once, in byte order, with its marker.
        combined.sort();
        let want: Vec<String> = combined.iter().map(|(k, m)| format!("{m}{}", k.escape_ascii())).collect();
        let got: Vec<String> = key_file(&dir.join("combined.txt"), b"")
            .iter()
            .filter(|l| skip.is_empty() || !l[2..].starts_with(skip))
            .map(|l| format!("{}{}", String::from_utf8_lossy(&l[..2]), l[2..].escape_ascii()))
            .collect();
        assert_eq!(got, want, "{ctx}: combined.txt");
    }
}

#[cfg(test)]
mod tests {
    use super::cases::{self, rec, Case};
    use super::*;
    use crate::merge::VecCursor;

    #[test]
    fn etags() {
        assert_eq!(etag_equal(b"\"ABC\"", b"abc"), Some(true));
        assert_eq!(etag_equal(b"\"abc\"", b"abd"), Some(false));
        assert_eq!(etag_equal(b"\"abc-2\"", b"abc"), None);
        assert_eq!(etag_equal(b"\"abc-2\"", b"\"abc-2\""), Some(true));
    }

    /// A case side as the sorted, duplicate-free run [`walk`] needs (the table must list it so).
    fn sorted_run(case: &Case, recs: &[cases::Rec]) -> VecCursor {
        let run: Vec<(Vec<u8>, Vec<u8>)> = recs.iter().map(cases::Rec::encoded).collect();
        assert!(run.windows(2).all(|w| w[0].0 < w[1].0), "case {:?}: a side is not strictly increasing", case.name);
        VecCursor::new(run)
    }

    /// Runs `walk` on a case into `dir`.
    fn walk_case(case: &Case, dir: &Path) -> Counts {
        let mut w = cases::writer(dir, case.compare);
        walk(&mut sorted_run(case, &case.src), &mut sorted_run(case, &case.tgt), &mut w).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn walk_table() {
        for case in cases::table() {
            assert_eq!(case.duplicates, (0, 0), "case {:?}: walk takes duplicate-free sides", case.name);
            let dir = tempfile::tempdir().unwrap();
            let counts = walk_case(&case, dir.path());
            cases::check(&case, dir.path(), &counts, b"", "walk");
        }
    }

    /// combined.txt and differ.csv spelled out for one case: rclone's markers, what differs and both
    /// sides' values.
    #[test]
    fn walk_combined_markers_and_differ_csv() {
        let case = Case {
            name: "markers",
            src: vec![rec("a").size(1), rec("b").size(1).etag("\"x\"").mtime(5), rec("d").size(4)],
            tgt: vec![rec("b").size(2).etag("y").mtime(4), rec("c"), rec("d").size(4)],
            ..Case::default()
        };
        let dir = tempfile::tempdir().unwrap();
        walk_case(&case, dir.path());
        let read = |f: &str| String::from_utf8(std::fs::read(dir.path().join(f)).unwrap()).unwrap();
        assert_eq!(read("combined.txt"), "+ a\n* b\n- c\n= d\n");
        assert_eq!(
            read("differ.csv"),
            "key,differs,source_size,target_size,source_etag,target_etag,source_mtime,target_mtime,origin\n\
             b,size+etag+mtime,1,2,\"\"\"x\"\"\",y,5,4,\n"
        );
        assert_eq!(read("missing-on-target.csv"), "key,size,etag,mtime\na,1,,\n");
        assert_eq!(read("missing-on-source.csv"), "key,size,etag,mtime\nc,,,\n");
    }
}
