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
        let path = dir.join(name);
        let f = File::create(&path).ctx(&path)?;
        let mut w = csv::WriterBuilder::new().buffer_capacity(BUF).from_writer(f);
        w.write_record(header).map_err(|e| Error::csv(&path, e))?;
        Ok(CsvOut { path, w })
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
