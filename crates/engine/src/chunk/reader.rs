//! Reads one chunk file through a memory map, one record at a time, checking everything the format
//! promises (see the module doc of `chunk`). The cursor borrows keys straight from the map: no copy, no
//! allocation per record. Pages already consumed are dropped from the mapping every
//! `RELEASE_EVERY` bytes so reading a large chunk set keeps resident memory flat: a cursor keeps at most
//! [`RESIDENT_MAX`] bytes of its chunk mapped, and a merge of k chunks k times that. (Mapped file pages
//! count in a process's RSS like any other.)

use super::{FOOTER_LEN, FOOTER_MAGIC, HEADER_LEN, HEADER_MAGIC, VERSION};
use crate::error::{Error, IoContext, Result};
use crate::merge::SortedCursor;
use crate::record::{get_varint, show_key, Schema};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

const RELEASE_EVERY: usize = 4 << 20;
const HASH_BLOCK: usize = 1 << 20;
/// Most bytes of its chunk a cursor keeps resident: up to `RELEASE_EVERY` behind the current record
/// before they are dropped, and the checksum's block reaching ahead.
pub const RESIDENT_MAX: usize = RELEASE_EVERY + 2 * HASH_BLOCK;

pub struct ChunkCursor {
    path: PathBuf,
    map: Mmap,
    schema: Schema,
    /// Start of the next record.
    pos: usize,
    data_end: usize,
    expect_records: u64,
    expect_checksum: u64,
    records: u64,
    cur_key: (usize, usize),
    cur_meta: (usize, usize),
    hasher: Xxh3,
    hashed_to: usize,
    released_to: usize,
    done: bool,
}

impl ChunkCursor {
    /// Opens a chunk and validates its header and footer (not yet its records).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).ctx(&path)?;
        let len = file.metadata().ctx(&path)?.len() as usize;
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(Error::corrupt(
                &path,
                len as u64,
                format!("file is {len} bytes, shorter than header + footer: truncated"),
            ));
        }
        // SAFETY: chunk files are written once under a temporary name and renamed; nobody modifies them
        // while they are read. A concurrent truncation would be a user error that can crash the reader.
        let map = unsafe { Mmap::map(&file) }.ctx(&path)?;
        let _ = map.advise(memmap2::Advice::Sequential);
        if &map[..8] != HEADER_MAGIC {
            return Err(Error::corrupt(&path, 0, "not a keyrecon chunk (bad header magic)"));
        }
        if map[8] != VERSION {
            return Err(Error::corrupt(&path, 8, format!("unsupported chunk version {}", map[8])));
        }
        let schema = Schema(map[9]);
        let f = &map[len - FOOTER_LEN..];
        if &f[32..40] != FOOTER_MAGIC {
            return Err(Error::corrupt(
                &path,
                (len - 8) as u64,
                "footer magic missing: chunk is truncated or was not finished",
            ));
        }
        let records = u64::from_le_bytes(f[0..8].try_into().unwrap());
        let data_len = u64::from_le_bytes(f[8..16].try_into().unwrap());
        let checksum = u64::from_le_bytes(f[16..24].try_into().unwrap());
        if f[24] != schema.0 {
            return Err(Error::corrupt(
                &path,
                (len - FOOTER_LEN + 24) as u64,
                "footer schema differs from header schema",
            ));
        }
        if HEADER_LEN as u64 + data_len + FOOTER_LEN as u64 != len as u64 {
            return Err(Error::corrupt(
                &path,
                (len - FOOTER_LEN) as u64,
                format!(
                    "footer says {data_len} data bytes but the file has {}: truncated or corrupt",
                    len - HEADER_LEN - FOOTER_LEN
                ),
            ));
        }
        Ok(ChunkCursor {
            path,
            map,
            schema,
            pos: HEADER_LEN,
            data_end: len - FOOTER_LEN,
            expect_records: records,
            expect_checksum: checksum,
            records: 0,
            cur_key: (0, 0),
            cur_meta: (0, 0),
            hasher: Xxh3::new(),
            hashed_to: HEADER_LEN,
            released_to: 0,
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
        (self.data_end - HEADER_LEN) as u64
    }
    /// Bytes of the data region consumed so far (for progress).
    pub fn consumed(&self) -> u64 {
        (self.pos - HEADER_LEN) as u64
    }

    /// Reads the whole chunk once to verify it, without keeping anything.
    pub fn verify(mut self) -> Result<u64> {
        while self.advance()? {}
        Ok(self.records)
    }

    fn corrupt(&self, offset: usize, msg: impl Into<String>) -> Error {
        Error::corrupt(&self.path, offset as u64, msg)
    }

    #[cold]
    fn finish_checks(&mut self) -> Result<bool> {
        self.hash_to(self.data_end);
        if self.records != self.expect_records {
            return Err(self.corrupt(
                self.pos,
                format!("footer promises {} records, data holds {}", self.expect_records, self.records),
            ));
        }
        let got = self.hasher.digest();
        if got != self.expect_checksum {
            return Err(self.corrupt(
                HEADER_LEN,
                format!("checksum mismatch (data {got:016x}, footer {:016x}): corrupt chunk", self.expect_checksum),
            ));
        }
        self.release_to(self.data_end);
        Ok(false)
    }

    #[inline]
    fn hash_to(&mut self, upto: usize) {
        while self.hashed_to < upto {
            let end = (self.hashed_to + HASH_BLOCK).min(self.data_end);
            self.hasher.update(&self.map[self.hashed_to..end]);
            self.hashed_to = end;
        }
    }

    fn release_to(&mut self, upto: usize) {
        let page = 4096;
        let end = upto / page * page;
        if end > self.released_to {
            // SAFETY: read-only private file mapping; DONTNEED only drops clean pages, which the kernel
            // reloads from the file if touched again. We never touch them again.
            unsafe {
                let _ = self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released_to,
                    end - self.released_to,
                );
            }
            self.released_to = end;
        }
    }
}

impl SortedCursor for ChunkCursor {
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        if self.pos >= self.data_end {
            if !self.done {
                self.done = true;
                self.finish_checks()?;
            }
            return Ok(false);
        }
        let start = self.pos;
        let mut rest = &self.map[start..self.data_end];
        let before = rest.len();
        let klen = get_varint(&mut rest).ok_or_else(|| self.corrupt(start, "bad key length varint"))? as usize;
        if klen > rest.len() {
            return Err(self.corrupt(start, format!("key length {klen} runs past the end of the data region")));
        }
        let kstart = start + (before - rest.len());
        rest = &rest[klen..];
        let mut mstart = kstart + klen;
        let mut mlen = 0;
        if !self.schema.is_keys_only() {
            let b2 = rest.len();
            mlen = get_varint(&mut rest).ok_or_else(|| self.corrupt(kstart + klen, "bad metadata length varint"))?
                as usize;
            if mlen > rest.len() {
                return Err(
                    self.corrupt(kstart + klen, format!("metadata length {mlen} runs past the end of the data region"))
                );
            }
            mstart += b2 - rest.len();
        }
        if self.records > 0 {
            let prev = &self.map[self.cur_key.0..self.cur_key.0 + self.cur_key.1];
            let key = &self.map[kstart..kstart + klen];
            if key <= prev {
                return Err(Error::Order {
                    path: self.path.clone(),
                    offset: start as u64,
                    msg: format!("{:?} follows {:?}", show_key(key), show_key(prev)),
                });
            }
        }
        self.cur_key = (kstart, klen);
        self.cur_meta = (mstart, mlen);
        self.pos = mstart + mlen;
        self.records += 1;
        if self.pos > self.hashed_to {
            self.hash_to(self.pos);
            // Release well behind the current key: the previous key must stay mapped for the order check.
            if kstart > self.released_to + RELEASE_EVERY + HASH_BLOCK {
                self.release_to(kstart - HASH_BLOCK);
            }
        }
        Ok(true)
    }

    #[inline]
    fn key(&self) -> &[u8] {
        &self.map[self.cur_key.0..self.cur_key.0 + self.cur_key.1]
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        &self.map[self.cur_meta.0..self.cur_meta.0 + self.cur_meta.1]
    }
}
