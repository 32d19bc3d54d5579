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
//! the values without quotes, case-insensitively, and skips (counts `etag_uncomparable`) multipart ETags
//! (`...-N`), which are not MD5s of the content; `mtime` differs when the source was written after the
//! target (edited after copying).

use crate::error::{Error, IoContext, Result};
use crate::merge::SortedCursor;
use crate::record::{MetaRef, Schema};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const OUT_BUF: usize = 1 << 20;

/// Walks two sorted, duplicate-free streams. Returns when both are exhausted.
pub fn walk(src: &mut dyn SortedCursor, tgt: &mut dyn SortedCursor, w: &mut DiffWriter) -> Result<()> {
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
}

struct CsvOut {
    path: PathBuf,
    w: csv::Writer<File>,
}

impl CsvOut {
    fn create(dir: &Path, name: &str, header: &[&str]) -> Result<CsvOut> {
        let path = dir.join(name);
        let f = File::create(&path).ctx(&path)?;
        let mut w = csv::WriterBuilder::new().buffer_capacity(OUT_BUF).from_writer(f);
        w.write_record(header).map_err(|e| csv_err(&path, e))?;
        Ok(CsvOut { path, w })
    }
    fn row(&mut self, row: &Row) -> Result<()> {
        self.w.write_record(row.cells()).map_err(|e| csv_err(&self.path, e))
    }
    fn finish(mut self) -> Result<()> {
        self.w.flush().ctx(&self.path)
    }
}

fn csv_err(path: &Path, e: csv::Error) -> Error {
    Error::csv(path, e)
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

pub const FILES: [&str; 5] =
    ["missing-on-target.txt", "missing-on-source.txt", "differ.txt", "match.txt", "combined.txt"];

impl DiffWriter {
    pub fn create(opt: DiffOptions) -> Result<Self> {
        let d = opt.out_dir.clone();
        std::fs::create_dir_all(&d).ctx(&d)?;
        let fields = |s: Schema| -> Vec<&'static str> { std::iter::once("key").chain(s.names()).collect() };
        let mot_csv = if opt.source_schema.is_keys_only() {
            None
        } else {
            Some(CsvOut::create(&d, "missing-on-target.csv", &fields(opt.source_schema))?)
        };
        let mos_csv = if opt.target_schema.is_keys_only() {
            None
        } else {
            Some(CsvOut::create(&d, "missing-on-source.csv", &fields(opt.target_schema))?)
        };
        let differ_csv = if opt.compare == 0 {
            None
        } else {
            Some(CsvOut::create(
                &d,
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
            csv.row(&self.row)?;
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
            csv.row(row)?;
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

/// Compares two ETags/checksums. `None` when they cannot be compared (a multipart ETag is an MD5 of
/// part MD5s, not of the content).
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
    pub input: String,
    /// "chunkset" or "file".
    pub kind: String,
    pub records_read: u64,
    pub unique_keys: u64,
    pub duplicates: u64,
    pub blank_lines: u64,
    pub rejected: u64,
    pub bytes: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(etag_equal(b"\"ABC\"", b"abc"), Some(true));
        assert_eq!(etag_equal(b"\"abc\"", b"abd"), Some(false));
        assert_eq!(etag_equal(b"\"abc-2\"", b"abc"), None);
        assert_eq!(etag_equal(b"\"abc-2\"", b"\"abc-2\""), Some(true));
    }
}
