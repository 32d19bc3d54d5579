//! Key files into keys: the one reader of every tool's key input. Plain lines (default), NUL-terminated
//! (`-z`), CSV (`--format csv`), or `auto`: CSV with a header when the first line is `key` or starts
//! with `key,` (keyrecon-diff's `missing-on-target.csv`, repair's `ok.csv`), plain lines otherwise.
//!
//! Plain lines follow comm(1): a key is every byte of a line except the terminating `\n` (no trimming, a
//! `\r` stays part of the key), and a last line without a terminator still counts. An empty line is not a
//! key: it is skipped and counted as `blank`. Keys are bytes; invalid UTF-8 is fine.
//!
//! A CSV with a header may carry, beside the key column, an `origin` column (the source store's own key
//! the key was mapped from) and a `size` column: [`for_each_record`] hands them on with the key, which
//! is how keyrecon-repair learns which Cassandra key to fetch for a missing S3 key.
//!
//! The hot loop is ripgrep's line buffer: one reused `Vec<u8>`, `memchr` for terminators, the buffer grows
//! only when one line does not fit. A key that cannot become a record (longer than `max_key_len`, a CSV
//! row without the key column, a `size` that is not a number) goes to the [`Rejects`] file with its line
//! number and the reason.

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const READ_BUF: usize = 4 << 20;
/// S3 keys are at most 1024 bytes; Cassandra keys up to 64 KiB. Anything longer is almost surely a
/// framing mistake (wrong `-z`, a binary file).
pub const DEFAULT_MAX_KEY_LEN: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyColumn {
    Index(usize),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// One key per line, `\n` terminated.
    Lines,
    /// One key per record, NUL terminated (S3 keys may contain newlines).
    Nul,
    /// CSV, key in one column. `header`: the first row names the columns (required for a named column).
    Csv { column: KeyColumn, header: bool, delimiter: u8 },
    /// CSV with a header and a `key` column when the first line says so (`key` or `key,...`), else
    /// plain lines (`\n`-terminated, or NUL-terminated when `nul`).
    Auto { nul: bool },
}

/// The first line of a CSV that [`Format::Auto`] reads as CSV.
fn looks_like_key_csv(first: &[u8]) -> bool {
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    first == b"key" || first.starts_with(b"key,")
}

impl Format {
    pub fn terminator(&self) -> u8 {
        match self {
            Format::Nul | Format::Auto { nul: true } => 0,
            _ => b'\n',
        }
    }
}

/// Where keys come from: a path, or `-` for standard input.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub path: PathBuf,
    pub format: Format,
    pub max_key_len: usize,
}

impl InputSpec {
    pub fn new(path: impl Into<PathBuf>, format: Format) -> Self {
        InputSpec { path: path.into(), format, max_key_len: DEFAULT_MAX_KEY_LEN }
    }
    pub fn is_stdin(&self) -> bool {
        self.path.as_os_str() == "-"
    }
    /// Size in bytes if known (regular file), for progress and partition sizing.
    pub fn len_hint(&self) -> Option<u64> {
        if self.is_stdin() {
            return None;
        }
        std::fs::metadata(&self.path).ok().filter(|m| m.is_file()).map(|m| m.len())
    }
    pub fn display(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else {
            self.path.display().to_string()
        }
    }
    /// Opens the input and settles an `Auto` format by peeking at the first line (the bytes peeked at
    /// are read again).
    fn open(&self) -> Result<(Box<dyn Read + Send>, Format)> {
        let mut r: Box<dyn Read + Send> = if self.is_stdin() {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(&self.path).ctx(&self.path)?)
        };
        let Format::Auto { nul } = self.format else { return Ok((r, self.format.clone())) };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while head.len() < 64 << 10 && memchr::memchr(b'\n', &head).is_none() {
            let n = match r.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            };
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let format = if !nul && looks_like_key_csv(first) {
            Format::Csv { column: KeyColumn::Name("key".into()), header: true, delimiter: b',' }
        } else if nul {
            Format::Nul
        } else {
            Format::Lines
        };
        Ok((Box::new(std::io::Cursor::new(head).chain(r)), format))
    }
}

/// Counts for one input, reported in summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InputStats {
    /// Keys handed on (before deduplication).
    pub records_read: u64,
    /// Empty lines skipped.
    pub blank: u64,
    /// Inputs sent to the rejects file.
    pub rejected: u64,
    pub bytes: u64,
}

/// The rejects file: `file,line,reason,key` as CSV (key bytes raw, CSV-quoted), created on first use.
/// Shared by parallel readers.
#[derive(Clone)]
pub struct Rejects {
    inner: Arc<RejectsInner>,
}

struct RejectsInner {
    path: Option<PathBuf>,
    writer: Mutex<Option<csv::Writer<File>>>,
    count: AtomicU64,
}

impl Rejects {
    /// Rejects go to `path` (created lazily). `None`: rejects are only counted (tests, `--rejects -`).
    pub fn new(path: Option<PathBuf>) -> Self {
        Rejects { inner: Arc::new(RejectsInner { path, writer: Mutex::new(None), count: AtomicU64::new(0) }) }
    }
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
    pub fn reject(&self, file: &str, line: u64, reason: &str, key: &[u8]) -> Result<()> {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let Some(path) = &self.inner.path else { return Ok(()) };
        let mut g = self.inner.writer.lock().unwrap();
        if g.is_none() {
            let f = File::create(path).ctx(path)?;
            let mut w = csv::Writer::from_writer(f);
            w.write_record(["file", "line", "reason", "key"]).map_err(|e| Error::csv(path, e))?;
            *g = Some(w);
        }
        let w = g.as_mut().unwrap();
        let line_s = line.to_string();
        w.write_record([file.as_bytes(), line_s.as_bytes(), reason.as_bytes(), key])
            .map_err(|e| Error::csv(path, e))?;
        Ok(())
    }
    pub fn flush(&self) -> Result<()> {
        if let Some(w) = self.inner.writer.lock().unwrap().as_mut() {
            w.flush().map_err(|e| Error::io(self.inner.path.as_ref().unwrap(), e))?;
        }
        Ok(())
    }
}

/// One key of an input and what a CSV row may carry with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRecord<'a> {
    pub key: &'a [u8],
    /// The `origin` column, when the CSV has one and the cell is not empty.
    pub origin: Option<&'a [u8]>,
    /// The `size` column, when the CSV has one and the cell is not empty.
    pub size: Option<u64>,
    /// 1-based line (CSV: the row's line) or record number, for messages and rejects.
    pub line: u64,
}

/// Calls `f(key, line)` for every key of `spec`, in input order (`line`: 1-based line or record number,
/// for messages and rejects). `progress` is advanced by bytes read.
pub fn for_each_key(
    spec: &InputSpec,
    rejects: &Rejects,
    progress: &AtomicU64,
    mut f: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<InputStats> {
    for_each_record(spec, rejects, progress, |r| f(r.key, r.line))
}

/// Calls `f` for every key of `spec` with its `origin` and `size` cells (CSV with a header), in input
/// order. `progress` is advanced by bytes read.
pub fn for_each_record(
    spec: &InputSpec,
    rejects: &Rejects,
    progress: &AtomicU64,
    mut f: impl FnMut(KeyRecord) -> Result<()>,
) -> Result<InputStats> {
    let (reader, format) = spec.open()?;
    match &format {
        Format::Csv { column, header, delimiter } => {
            read_csv(reader, spec, column, *header, *delimiter, rejects, progress, &mut f)
        }
        other => read_delimited(reader, spec, other.terminator(), rejects, progress, &mut f),
    }
}

fn read_delimited(
    mut reader: Box<dyn Read + Send>,
    spec: &InputSpec,
    term: u8,
    rejects: &Rejects,
    progress: &AtomicU64,
    f: &mut dyn FnMut(KeyRecord) -> Result<()>,
) -> Result<InputStats> {
    let mut st = InputStats::default();
    let mut buf = vec![0u8; READ_BUF];
    // buf[start..end] holds unconsumed bytes.
    let (mut start, mut end) = (0usize, 0usize);
    let mut line_no: u64 = 0;
    let mut eof = false;
    let name = spec.display();
    loop {
        // Emit every complete line in buf[start..end].
        let mut pos = start;
        for nl in memchr::memchr_iter(term, &buf[start..end]) {
            let nl = start + nl;
            line_no += 1;
            emit(
                KeyRecord { key: &buf[pos..nl], origin: None, size: None, line: line_no },
                spec,
                &name,
                rejects,
                &mut st,
                f,
            )?;
            pos = nl + 1;
        }
        start = pos;
        if eof {
            if start < end {
                line_no += 1;
                let r = KeyRecord { key: &buf[start..end], origin: None, size: None, line: line_no };
                emit(r, spec, &name, rejects, &mut st, f)?;
            }
            break;
        }
        // Move the partial line to the front; grow only if a single line fills the whole buffer.
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            let new_len = buf.len() * 2;
            buf.resize(new_len, 0);
        }
        let n = loop {
            match reader.read(&mut buf[end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&spec.path, e)),
            }
        };
        if n == 0 {
            eof = true;
        }
        end += n;
        st.bytes += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(st)
}

#[inline]
fn emit(
    r: KeyRecord,
    spec: &InputSpec,
    name: &str,
    rejects: &Rejects,
    st: &mut InputStats,
    f: &mut dyn FnMut(KeyRecord) -> Result<()>,
) -> Result<()> {
    let (key, line) = (r.key, r.line);
    if key.is_empty() {
        st.blank += 1;
        return Ok(());
    }
    if key.len() > spec.max_key_len {
        st.rejected += 1;
        return rejects.reject(
            name,
            line,
            &format!("key is {} bytes, longer than --max-key-len {}", key.len(), spec.max_key_len),
            &key[..256.min(key.len())],
        );
    }
    st.records_read += 1;
    f(r)
}

#[allow(clippy::too_many_arguments)]
fn read_csv(
    reader: Box<dyn Read + Send>,
    spec: &InputSpec,
    column: &KeyColumn,
    header: bool,
    delimiter: u8,
    rejects: &Rejects,
    progress: &AtomicU64,
    f: &mut dyn FnMut(KeyRecord) -> Result<()>,
) -> Result<InputStats> {
    let name = spec.display();
    let counting = CountingReader { inner: reader, progress, bytes: 0 };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(1 << 20)
        .from_reader(counting);
    let idx = match column {
        KeyColumn::Index(i) => *i,
        KeyColumn::Name(n) => {
            if !header {
                return Err(Error::Usage(format!(
                    "{name}: --key-column {n:?} is a name; pass --header so the first row names the columns"
                )));
            }
            let h = rdr.byte_headers().map_err(|e| Error::Parse {
                path: spec.path.clone(),
                line: 1,
                msg: e.to_string(),
            })?;
            h.iter().position(|c| c == n.as_bytes()).ok_or_else(|| Error::Parse {
                path: spec.path.clone(),
                line: 1,
                msg: format!("no column named {n:?} in the header ({})", String::from_utf8_lossy(h.as_slice())),
            })?
        }
    };
    // The cells that travel with the key, when the header names them.
    let (origin_col, size_col) = if header {
        let h =
            rdr.byte_headers().map_err(|e| Error::Parse { path: spec.path.clone(), line: 1, msg: e.to_string() })?;
        (h.iter().position(|c| c == b"origin"), h.iter().position(|c| c == b"size"))
    } else {
        (None, None)
    };
    let mut st = InputStats::default();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(Error::Parse { path: spec.path.clone(), line, msg: e.to_string() });
                }
                st.rejected += 1;
                rejects.reject(&name, line, &format!("unparsable CSV: {e}"), b"")?;
                continue;
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        match rec.get(idx) {
            None => {
                st.rejected += 1;
                let raw = rec.iter().collect::<Vec<_>>().join(&delimiter);
                rejects.reject(
                    &name,
                    line,
                    &format!("row has {} columns, key column is #{} (1-based)", rec.len(), idx + 1),
                    &raw,
                )?;
            }
            Some(key) => {
                let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).filter(|v| !v.is_empty());
                let size = match cell(size_col) {
                    None => None,
                    Some(v) => match std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()) {
                        Some(n) => Some(n),
                        None => {
                            st.rejected += 1;
                            let why = format!("size {:?} is not a number", String::from_utf8_lossy(v));
                            rejects.reject(&name, line, &why, key)?;
                            continue;
                        }
                    },
                };
                emit(KeyRecord { key, origin: cell(origin_col), size, line }, spec, &name, rejects, &mut st, f)?
            }
        }
    }
    st.bytes = rdr.into_inner().bytes;
    Ok(st)
}

struct CountingReader<'a> {
    inner: Box<dyn Read + Send>,
    progress: &'a AtomicU64,
    bytes: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(data: &[u8], format: Format) -> (Vec<Vec<u8>>, InputStats, u64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, data).unwrap();
        let mut spec = InputSpec::new(&p, format);
        spec.max_key_len = 16;
        let rej = Rejects::new(Some(dir.path().join("rejects.csv")));
        let mut out = Vec::new();
        let st = for_each_key(&spec, &rej, &AtomicU64::new(0), |k, _| {
            out.push(k.to_vec());
            Ok(())
        })
        .unwrap();
        (out, st, rej.count())
    }

    #[test]
    fn lines_like_comm() {
        let (k, st, _) = keys_of(b"a\n\nb\r\n \nlast", Format::Lines);
        assert_eq!(k, vec![b"a".to_vec(), b"b\r".to_vec(), b" ".to_vec(), b"last".to_vec()]);
        assert_eq!(st.blank, 1);
        assert_eq!(st.records_read, 4);
    }

    #[test]
    fn nul_terminated_keeps_newlines() {
        let (k, _, _) = keys_of(b"a\nb\0c\0\0\xff", Format::Nul);
        assert_eq!(k, vec![b"a\nb".to_vec(), b"c".to_vec(), vec![0xff]]);
    }

    #[test]
    fn too_long_keys_are_rejected_not_dropped() {
        let (k, st, rej) = keys_of(b"short\n01234567890123456789\nok\n", Format::Lines);
        assert_eq!(k, vec![b"short".to_vec(), b"ok".to_vec()]);
        assert_eq!((st.rejected, rej), (1, 1));
    }

    #[test]
    fn csv_by_name_and_missing_column() {
        let data = b"id,key,size\n1,alpha,3\n2\n3,\"be,ta\",4\n";
        let (k, st, rej) =
            keys_of(data, Format::Csv { column: KeyColumn::Name("key".into()), header: true, delimiter: b',' });
        assert_eq!(k, vec![b"alpha".to_vec(), b"be,ta".to_vec()]);
        assert_eq!((st.rejected, rej), (1, 1));
        let (k, _, _) = keys_of(b"x,y\n", Format::Csv { column: KeyColumn::Index(1), header: false, delimiter: b',' });
        assert_eq!(k, vec![b"y".to_vec()]);
    }

    #[test]
    fn lines_longer_than_the_buffer() {
        let mut data = vec![b'x'; READ_BUF * 2 + 3];
        data.push(b'\n');
        data.extend_from_slice(b"y\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, &data).unwrap();
        let mut spec = InputSpec::new(&p, Format::Lines);
        spec.max_key_len = usize::MAX;
        let mut lens = Vec::new();
        for_each_key(&spec, &Rejects::new(None), &AtomicU64::new(0), |k, _| {
            lens.push(k.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(lens, vec![READ_BUF * 2 + 3, 1]);
    }
}

/// The per-record callback of a [`RecordSource`]: `(key, meta)`.
pub type RecordFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Anything that yields records: a key file or a chunk set. Used by engines that do not need sorted input.
pub trait RecordSource: Send + Sync {
    fn describe(&self) -> String;
    fn schema(&self) -> crate::record::Schema;
    /// Bytes of input if known (for sizing partitions and progress).
    fn size_hint(&self) -> Option<u64>;
    /// Calls `f(key, meta)` for every record. `progress` advances by input bytes.
    fn for_each(&self, progress: &AtomicU64, f: &mut RecordFn) -> Result<SourceStats>;
}

/// What a source saw. `duplicates` are those the source itself removed (a chunk set's merge).
#[derive(Clone, Debug, Default)]
pub struct SourceStats {
    pub input: InputStats,
    pub duplicates: u64,
}

/// A key file as a record source (keys only).
pub struct FileSource {
    pub spec: InputSpec,
    pub rejects: Rejects,
}

impl RecordSource for FileSource {
    fn describe(&self) -> String {
        self.spec.display()
    }
    fn schema(&self) -> crate::record::Schema {
        crate::record::Schema::KEYS_ONLY
    }
    fn size_hint(&self) -> Option<u64> {
        self.spec.len_hint()
    }
    fn for_each(&self, progress: &AtomicU64, f: &mut RecordFn) -> Result<SourceStats> {
        let input = for_each_key(&self.spec, &self.rejects, progress, |k, _| f(k, &[]))?;
        Ok(SourceStats { input, duplicates: 0 })
    }
}

/// One or more chunk sets (a diff side), read as their sorted, deduplicated union.
impl RecordSource for crate::chunk::ChunkSets {
    fn describe(&self) -> String {
        self.names().join(", ")
    }
    fn schema(&self) -> crate::record::Schema {
        self.schema
    }
    fn size_hint(&self) -> Option<u64> {
        Some(self.data_len())
    }
    fn for_each(&self, progress: &AtomicU64, f: &mut RecordFn) -> Result<SourceStats> {
        use crate::merge::SortedCursor;
        let mut s = self.stream()?;
        let mut st = InputStats::default();
        let mut pending = 0u64;
        while s.advance()? {
            st.records_read += 1;
            let n = (s.key().len() + s.meta().len() + 2) as u64;
            st.bytes += n;
            pending += n;
            if pending > 1 << 20 {
                progress.fetch_add(pending, Ordering::Relaxed);
                pending = 0;
            }
            f(s.key(), s.meta())?;
        }
        progress.fetch_add(pending, Ordering::Relaxed);
        st.records_read += s.duplicates();
        Ok(SourceStats { input: st, duplicates: s.duplicates() })
    }
}
