//! Reads one chunk file one record at a time, checking everything the format promises (see the module
//! doc of `chunk`). The file is read with read(2) into one reused buffer per cursor (ripgrep's line
//! buffer: refill when the next record is not whole, grow only when one record does not fit) and the
//! cursor hands out keys borrowed from it: no copy and no allocation per record.
//!
//! Why not a memory map: a merge reads many chunks at once, and every page of a mapped file that was
//! touched counts in the process's resident memory until it is unmapped or advised away, however
//! tidily the pages behind the cursor are released; a sort's merge of 98 spilled chunks at `--mem 32M`
//! peaked at 514 MiB of mapped file pages against 30 MiB of its own memory. With read(2) a cursor holds
//! [`BUF`] bytes (more only for a larger record) and the page cache stays the kernel's business.

use super::{FOOTER_LEN, FOOTER_MAGIC, HEADER_LEN, HEADER_MAGIC, VERSION};
use crate::error::{Error, IoContext, Result};
use crate::merge::{prefix8, SortedCursor};
use crate::record::{get_varint, show_key, Schema};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// Bytes a cursor reads at a time (and holds, unless one record is larger).
pub const BUF: usize = 256 << 10;

pub struct ChunkCursor {
    path: PathBuf,
    file: File,
    schema: Schema,
    /// File offset of `buf[0]`.
    buf_off: u64,
    /// `buf[..filled]` holds file bytes; allocated on the first read, freed at the end.
    buf: Vec<u8>,
    filled: usize,
    /// Start of the next record in `buf`.
    pos: usize,
    /// End of the data region (file offset).
    data_end: u64,
    expect_records: u64,
    expect_checksum: u64,
    records: u64,
    /// The current record's key and metadata in `buf`.
    cur_key: (usize, usize),
    /// [`prefix8`] of the current key: most order checks are settled by it.
    cur_prefix: u64,
    cur_meta: (usize, usize),
    hasher: Xxh3,
    done: bool,
}

impl ChunkCursor {
    /// Opens a chunk and validates its header and footer (not yet its records).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).ctx(&path)?;
        let len = file.metadata().ctx(&path)?.len();
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(Error::corrupt(
                &path,
                len,
                format!("file is {len} bytes, shorter than header + footer: truncated"),
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header).ctx(&path)?;
        if &header[..8] != HEADER_MAGIC {
            return Err(Error::corrupt(&path, 0, "not a keyrecon chunk (bad header magic)"));
        }
        if header[8] != VERSION {
            return Err(Error::corrupt(&path, 8, format!("unsupported chunk version {}", header[8])));
        }
        let schema = Schema(header[9]);
        let mut f = [0u8; FOOTER_LEN];
        file.seek(SeekFrom::Start(len - FOOTER_LEN as u64)).ctx(&path)?;
        file.read_exact(&mut f).ctx(&path)?;
        if &f[32..40] != FOOTER_MAGIC {
            return Err(Error::corrupt(&path, len - 8, "footer magic missing: chunk is truncated or was not finished"));
        }
        let records = u64::from_le_bytes(f[0..8].try_into().unwrap());
        let data_len = u64::from_le_bytes(f[8..16].try_into().unwrap());
        let checksum = u64::from_le_bytes(f[16..24].try_into().unwrap());
        if f[24] != schema.0 {
            return Err(Error::corrupt(
                &path,
                len - FOOTER_LEN as u64 + 24,
                "footer schema differs from header schema",
            ));
        }
        if HEADER_LEN as u64 + data_len + FOOTER_LEN as u64 != len {
            return Err(Error::corrupt(
                &path,
                len - FOOTER_LEN as u64,
                format!(
                    "footer says {data_len} data bytes but the file has {}: truncated or corrupt",
                    len - (HEADER_LEN + FOOTER_LEN) as u64
                ),
            ));
        }
        file.seek(SeekFrom::Start(HEADER_LEN as u64)).ctx(&path)?;
        Ok(ChunkCursor {
            path,
            file,
            schema,
            buf_off: HEADER_LEN as u64,
            buf: Vec::new(),
            filled: 0,
            pos: 0,
            data_end: len - FOOTER_LEN as u64,
            expect_records: records,
            expect_checksum: checksum,
            records: 0,
            cur_key: (0, 0),
            cur_prefix: 0,
            cur_meta: (0, 0),
            hasher: Xxh3::new(),
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn schema(&self) -> Schema {
        self.schema
    }
    /// Records promised by the footer.
    pub fn expected_records(&self) -> u64 {
        self.expect_records
    }
    pub fn data_len(&self) -> u64 {
        self.data_end - HEADER_LEN as u64
    }
    /// Bytes of the data region consumed so far (for progress).
    pub fn consumed(&self) -> u64 {
        self.buf_off + self.pos as u64 - HEADER_LEN as u64
    }

    /// Reads the whole chunk once to verify it, without keeping anything.
    pub fn verify(mut self) -> Result<u64> {
        while self.advance()? {}
        Ok(self.records)
    }

    /// Corruption at `off` bytes into the buffer.
    fn corrupt(&self, off: usize, msg: impl Into<String>) -> Error {
        Error::corrupt(&self.path, self.buf_off + off as u64, msg)
    }

    /// Bytes of the data region not yet in the buffer.
    fn unread(&self) -> u64 {
        self.data_end - (self.buf_off + self.filled as u64)
    }

    /// Makes room and reads more of the data region. Keeps `buf[keep..]` (the current record, which the
    /// next key is compared with); grows the buffer only when that alone fills it. False at the end.
    fn refill(&mut self, keep: usize) -> Result<bool> {
        let unread = self.unread();
        if unread == 0 {
            return Ok(false);
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; BUF];
        }
        if keep > 0 {
            self.buf.copy_within(keep..self.filled, 0);
            self.filled -= keep;
            self.pos -= keep;
            self.buf_off += keep as u64;
            for r in [&mut self.cur_key, &mut self.cur_meta] {
                r.0 = r.0.saturating_sub(keep);
            }
        }
        if self.filled == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let want = ((self.buf.len() - self.filled) as u64).min(unread) as usize;
        let got = &mut self.buf[self.filled..self.filled + want];
        self.file.read_exact(got).ctx(&self.path)?;
        self.hasher.update(got);
        self.filled += want;
        Ok(true)
    }

    /// Parses the record at `pos`: its [`Span`], or `None` when it is not whole in the buffer.
    #[inline]
    fn parse(&self) -> Result<Option<Span>> {
        let start = self.pos;
        let mut rest = &self.buf[start..self.filled];
        let before = rest.len();
        let Some(klen) = get_varint(&mut rest) else {
            // A varint cut by the buffer's end, or a bad one (10 bytes without an end).
            return if before >= 10 { Err(self.corrupt(start, "bad key length varint")) } else { Ok(None) };
        };
        let klen = klen as usize;
        let kstart = start + (before - rest.len());
        if klen > rest.len() {
            return Ok(None);
        }
        rest = &rest[klen..];
        let (mut mstart, mut mlen) = (kstart + klen, 0);
        if !self.schema.is_keys_only() {
            let b2 = rest.len();
            let Some(m) = get_varint(&mut rest) else {
                return if b2 >= 10 {
                    Err(self.corrupt(kstart + klen, "bad metadata length varint"))
                } else {
                    Ok(None)
                };
            };
            mlen = m as usize;
            if mlen > rest.len() {
                return Ok(None);
            }
            mstart += b2 - rest.len();
        }
        Ok(Some((kstart, klen, mstart, mlen, mstart + mlen)))
    }

    #[cold]
    fn finish_checks(&mut self) -> Result<bool> {
        if self.pos < self.filled {
            return Err(self.corrupt(self.pos, "the data region ends inside a record"));
        }
        if self.records != self.expect_records {
            return Err(self.corrupt(
                self.pos,
                format!("footer promises {} records, data holds {}", self.expect_records, self.records),
            ));
        }
        let got = self.hasher.digest();
        if got != self.expect_checksum {
            return Err(Error::corrupt(
                &self.path,
                HEADER_LEN as u64,
                format!("checksum mismatch (data {got:016x}, footer {:016x}): corrupt chunk", self.expect_checksum),
            ));
        }
        // Done: the buffer is not needed any more (a chunk set's later chunks get theirs).
        self.buf = Vec::new();
        self.filled = 0;
        self.pos = 0;
        Ok(false)
    }
}

/// Where a record lies in the buffer: key start, key length, metadata start, metadata length, end.
type Span = (usize, usize, usize, usize, usize);

impl SortedCursor for ChunkCursor {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let rec = loop {
            match self.parse()? {
                Some(r) => break r,
                None => {
                    // Keep the current record (the next key is compared with it).
                    let keep = if self.records > 0 { self.cur_key.0.min(self.pos) } else { self.pos };
                    if !self.refill(keep)? {
                        self.done = true;
                        return self.finish_checks();
                    }
                }
            }
        };
        let (kstart, klen, mstart, mlen, end) = rec;
        let prefix = prefix8(&self.buf[kstart..kstart + klen]);
        // A larger prefix settles it; an equal one needs the whole keys.
        if self.records > 0 && prefix <= self.cur_prefix {
            let prev = &self.buf[self.cur_key.0..self.cur_key.0 + self.cur_key.1];
            let key = &self.buf[kstart..kstart + klen];
            if prefix < self.cur_prefix || key <= prev {
                return Err(Error::Order {
                    path: self.path.clone(),
                    offset: self.buf_off + self.pos as u64,
                    msg: format!("{:?} follows {:?}", show_key(key), show_key(prev)),
                });
            }
        }
        self.cur_key = (kstart, klen);
        self.cur_prefix = prefix;
        self.cur_meta = (mstart, mlen);
        self.pos = end;
        self.records += 1;
        Ok(true)
    }

    #[inline]
    fn key(&self) -> &[u8] {
        &self.buf[self.cur_key.0..self.cur_key.0 + self.cur_key.1]
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        &self.buf[self.cur_meta.0..self.cur_meta.0 + self.cur_meta.1]
    }
    #[inline]
    fn prefix(&self) -> u64 {
        self.cur_prefix
    }
}
