//! Writes one chunk file: records are appended in strictly increasing key order into a reused buffer,
//! hashed and written in large blocks, and the file is renamed into place by [`ChunkWriter::finish`].

use super::{FOOTER_MAGIC, HEADER_LEN, HEADER_MAGIC, VERSION, WRITE_BUF};
use crate::error::{Error, IoContext, Result};
use crate::merge::prefix8;
use crate::record::{put_varint, show_key, Schema};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// What a finished chunk holds; goes into the chunk set manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkStats {
    pub records: u64,
    pub data_len: u64,
    pub checksum: u64,
    pub first_key: Vec<u8>,
    pub last_key: Vec<u8>,
}

pub struct ChunkWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<File>,
    schema: Schema,
    buf: Vec<u8>,
    /// Flush when `buf` holds this much.
    buf_bytes: usize,
    hasher: Xxh3,
    records: u64,
    data_len: u64,
    first_key: Vec<u8>,
    last_key: Vec<u8>,
    /// [`prefix8`] of `last_key`: most order checks are settled by it.
    last_prefix: u64,
}

impl ChunkWriter {
    /// Creates `.NAME.tmp` next to `path`; nothing exists at `path` until [`finish`](Self::finish).
    pub fn create(path: impl AsRef<Path>, schema: Schema) -> Result<Self> {
        Self::create_with_buffer(path, schema, WRITE_BUF)
    }

    /// [`create`](Self::create) with a write buffer of `buf_bytes` (at least 64 KiB): producers that keep
    /// many chunks open at once (one per stream) trade a few more write(2) calls for less memory.
    pub fn create_with_buffer(path: impl AsRef<Path>, schema: Schema, buf_bytes: usize) -> Result<Self> {
        let buf_bytes = buf_bytes.max(64 << 10);
        let final_path = path.as_ref().to_path_buf();
        let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp_path = final_path.with_file_name(format!(".{name}.tmp"));
        let mut file = File::create(&tmp_path).ctx(&tmp_path)?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(HEADER_MAGIC);
        header[8] = VERSION;
        header[9] = schema.0;
        file.write_all(&header).ctx(&tmp_path)?;
        let buf = Vec::with_capacity(buf_bytes + 4096);
        Ok(ChunkWriter {
            final_path,
            tmp_path,
            file: Some(file),
            schema,
            buf,
            buf_bytes,
            hasher: Xxh3::new(),
            records: 0,
            data_len: 0,
            first_key: Vec::new(),
            last_key: Vec::new(),
            last_prefix: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.final_path
    }
    pub fn records(&self) -> u64 {
        self.records
    }
    /// Bytes of records written so far (used to cut output into chunks of a target size).
    pub fn data_len(&self) -> u64 {
        self.data_len + self.buf.len() as u64
    }
    pub fn last_key(&self) -> Option<&[u8]> {
        (self.records > 0).then_some(&self.last_key[..])
    }

    /// Appends a record. `key` must be strictly greater than the previous key: chunk writers are fed by
    /// sorts and merges that already deduplicated, so an out-of-order key is a bug upstream and an error.
    #[inline]
    pub fn push(&mut self, key: &[u8], meta: &[u8]) -> Result<()> {
        let prefix = prefix8(key);
        // A larger prefix settles it; an equal one needs the whole keys.
        if self.records > 0 && (prefix < self.last_prefix || prefix == self.last_prefix && key <= &self.last_key[..]) {
            return Err(Error::Order {
                path: self.final_path.clone(),
                offset: self.data_len + self.buf.len() as u64,
                msg: format!("writer got {:?} after {:?}", show_key(key), show_key(&self.last_key)),
            });
        }
        self.last_prefix = prefix;
        if self.records == 0 {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        put_varint(&mut self.buf, key.len() as u64);
        self.buf.extend_from_slice(key);
        if !self.schema.is_keys_only() {
            put_varint(&mut self.buf, meta.len() as u64);
            self.buf.extend_from_slice(meta);
        } else {
            debug_assert!(meta.is_empty(), "metadata pushed into a keys-only chunk");
        }
        self.records += 1;
        if self.buf.len() >= self.buf_bytes {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<()> {
        self.hasher.update(&self.buf);
        self.data_len += self.buf.len() as u64;
        let f = self.file.as_mut().expect("writer used after finish");
        f.write_all(&self.buf).ctx(&self.tmp_path)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the footer, renames the file into place and returns its stats. An empty chunk is not kept:
    /// returns `None` and removes the temporary file (lazy creation, as in DataFusion's spill writer).
    pub fn finish(mut self) -> Result<Option<ChunkStats>> {
        if self.records == 0 {
            drop(self.file.take());
            std::fs::remove_file(&self.tmp_path).ctx(&self.tmp_path)?;
            return Ok(None);
        }
        self.flush_buf()?;
        let checksum = self.hasher.digest();
        let mut footer = Vec::with_capacity(super::FOOTER_LEN);
        footer.extend_from_slice(&self.records.to_le_bytes());
        footer.extend_from_slice(&self.data_len.to_le_bytes());
        footer.extend_from_slice(&checksum.to_le_bytes());
        footer.push(self.schema.0);
        footer.extend_from_slice(&[0u8; 7]);
        footer.extend_from_slice(FOOTER_MAGIC);
        let mut f = self.file.take().expect("writer used after finish");
        f.write_all(&footer).ctx(&self.tmp_path)?;
        drop(f);
        std::fs::rename(&self.tmp_path, &self.final_path).ctx(&self.final_path)?;
        Ok(Some(ChunkStats {
            records: self.records,
            data_len: self.data_len,
            checksum,
            first_key: std::mem::take(&mut self.first_key),
            last_key: std::mem::take(&mut self.last_key),
        }))
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        // An abandoned writer (error path) leaves no temporary file behind.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkCursor;
    use crate::merge::SortedCursor;

    /// Pairs (earlier key, later key) that are not strictly increasing, whether their first 8 bytes
    /// differ, tie, or one key ends inside them (zero padding against a real zero byte).
    const NOT_INCREASING: [(&[u8], &[u8]); 6] = [
        (b"b", b"a"),
        (b"abcdefgh", b"abcdefgh"),
        (b"abcdefgh2", b"abcdefgh1"),
        (b"ab\x00", b"ab"),
        (b"images/2024/01/01/b", b"images/2024/01/01/a"),
        (b"abcdefgh\x00", b"abcdefgh"),
    ];

    #[test]
    fn writer_refuses_keys_that_do_not_increase() {
        let dir = tempfile::tempdir().unwrap();
        for (a, b) in NOT_INCREASING {
            let mut w = ChunkWriter::create(dir.path().join("c.krc"), Schema::KEYS_ONLY).unwrap();
            w.push(a, b"").unwrap();
            assert!(matches!(w.push(b, b""), Err(Error::Order { .. })), "{a:?} then {b:?}");
            w.push(&[a, b"\x00"].concat(), b"").unwrap();
        }
    }

    /// A chunk whose records do not increase (written by hand, footer and checksum right) is refused
    /// by the reader at the second record.
    #[test]
    fn reader_refuses_keys_that_do_not_increase() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.krc");
        for (a, b) in NOT_INCREASING {
            let mut data = Vec::new();
            for k in [a, b] {
                put_varint(&mut data, k.len() as u64);
                data.extend_from_slice(k);
            }
            let mut file = Vec::new();
            file.extend_from_slice(HEADER_MAGIC);
            file.extend_from_slice(&[VERSION, Schema::KEYS_ONLY.0, 0, 0, 0, 0, 0, 0]);
            file.extend_from_slice(&data);
            file.extend_from_slice(&2u64.to_le_bytes());
            file.extend_from_slice(&(data.len() as u64).to_le_bytes());
            file.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&data).to_le_bytes());
            file.extend_from_slice(&[Schema::KEYS_ONLY.0, 0, 0, 0, 0, 0, 0, 0]);
            file.extend_from_slice(FOOTER_MAGIC);
            std::fs::write(&p, &file).unwrap();
            let mut c = ChunkCursor::open(&p).unwrap();
            assert!(c.advance().unwrap());
            assert!(matches!(c.advance(), Err(Error::Order { .. })), "{a:?} then {b:?}");
        }
    }
}
