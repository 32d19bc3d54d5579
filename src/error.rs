//! One error type for the library. Every variant carries the context a user needs to find the problem:
//! the file, and the byte offset or line where it went wrong. Binaries wrap these with `anyhow` and print
//! them with `{:#}`.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The io error is part of the message, not a `source()`: `{:#}` would print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },

    /// A chunk file or manifest does not hold what its own footer/manifest promises: truncated, bit-flipped,
    /// or written by something else. Never treated as "fewer keys".
    #[error("{path}: corrupt at byte offset {offset}: {msg}")]
    Corrupt { path: PathBuf, offset: u64, msg: String },

    /// Keys in a chunk are not strictly increasing (byte order).
    #[error("{path}: keys out of order at byte offset {offset}: {msg}")]
    Order { path: PathBuf, offset: u64, msg: String },

    /// Input that cannot be parsed at all (as opposed to a single bad key, which goes to the rejects file).
    #[error("{path}: line {line}: {msg}")]
    Parse { path: PathBuf, line: u64, msg: String },

    #[error("{path}: {msg}")]
    Manifest { path: PathBuf, msg: String },

    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error: source }
    }
    pub fn corrupt(path: impl AsRef<Path>, offset: u64, msg: impl Into<String>) -> Self {
        Error::Corrupt { path: path.as_ref().to_path_buf(), offset, msg: msg.into() }
    }
}

/// `.ctx(path)` on io results: attach the path an I/O error happened on.
pub trait IoContext<T> {
    fn ctx(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// True for errors that mean "the reader of our output went away" (e.g. `| head`). Not an error for a Unix tool.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        if let Some(Error::Io { error, .. }) = err.downcast_ref::<Error>() {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = err.source();
    }
    false
}
