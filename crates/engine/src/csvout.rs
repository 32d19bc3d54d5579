//! One CSV output file (diff sets with metadata, repair and verify outcome files): created with its
//! header, written a row of byte cells at a time through a 1 MiB buffer, flushed at the end. Errors
//! name the file.

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

const BUF: usize = 1 << 20;

pub struct CsvOut {
    path: PathBuf,
    w: csv::Writer<File>,
}

impl CsvOut {
    /// Creates (or replaces) `dir/name` and writes `header`.
    pub fn create(dir: &Path, name: &str, header: &[&str]) -> Result<CsvOut> {
        Self::create_with(dir, name, Some(header))
    }

    /// [`create`](Self::create), without a header when `header` is `None`: a part of a file that is
    /// appended to a whole one ([`append`](Self::append)).
    pub fn create_with(dir: &Path, name: &str, header: Option<&[&str]>) -> Result<CsvOut> {
        let path = dir.join(name);
        let f = File::create(&path).ctx(&path)?;
        let mut w = csv::WriterBuilder::new().buffer_capacity(BUF).from_writer(f);
        if let Some(header) = header {
            w.write_record(header).map_err(|e| Error::csv(&path, e))?;
        }
        Ok(CsvOut { path, w })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the bytes of the file at `part` (rows written by another, headerless `CsvOut`).
    pub fn append(&mut self, part: &Path) -> Result<()> {
        self.w.flush().ctx(&self.path)?;
        append_file(self.w.get_ref(), &self.path, part)
    }

    /// One row; cells are bytes (keys need not be UTF-8) and are quoted as CSV requires.
    pub fn row<I, T>(&mut self, cells: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.w.write_record(cells).map_err(|e| Error::csv(&self.path, e))
    }

    pub fn finish(mut self) -> Result<()> {
        self.w.flush().ctx(&self.path)
    }
}

/// Appends the bytes of the file at `part` to `to` (the file at `path`, its writer flushed): in the
/// kernel on Linux (`io::copy` between files is `copy_file_range`).
pub fn append_file(mut to: &File, path: &Path, part: &Path) -> Result<()> {
    let mut from = File::open(part).ctx(part)?;
    std::io::copy(&mut from, &mut to).ctx(path)?;
    Ok(())
}
