//! One error type for the library. Every variant carries the context a user needs to find the problem:
//! the file and the byte offset or line where it went wrong, or what was being done (`Context`,
//! `Remote`) with the cause kept as the `source()` chain. Binaries wrap these with `anyhow` and print
//! them with `{:#}`, which prints the chain: `listing s3://b/: ListObjectsV2: 403 AccessDenied`.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, as the cause of a [`Error::Context`] or [`Error::Remote`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The io error is part of the message, not a `source()`: `{:#}` would print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },

    /// A chunk file or manifest does not hold what its own footer/manifest promises: truncated, bit-flipped,
    /// or written by something else. Never treated as "fewer keys".
    #[error("{}: corrupt at byte offset {offset}: {msg}", path.display())]
    Corrupt { path: PathBuf, offset: u64, msg: String },

    /// Keys in a chunk are not strictly increasing (byte order).
    #[error("{}: keys out of order at byte offset {offset}: {msg}", path.display())]
    Order { path: PathBuf, offset: u64, msg: String },

    /// Input that cannot be parsed at all (as opposed to a single bad key, which goes to the rejects file).
    #[error("{}: line {line}: {msg}", path.display())]
    Parse { path: PathBuf, line: u64, msg: String },

    /// A chunk set's manifest is missing or does not describe its chunks.
    #[error("{}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },

    /// JSON we write or read (manifests, summaries, checkpoints, journals).
    #[error("{}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A CSV file we write or read (outcome files, rejects, inventories).
    #[error("{}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    /// A server (Cassandra, S3) refused, failed for good, or could not be reached; `context` says which
    /// request, `source` what the client library said.
    #[error("{context}")]
    Remote {
        context: String,
        #[source]
        source: BoxError,
    },

    /// What was being done when `source` happened.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: BoxError,
    },

    /// The chunk sets of one diff side are not one complete set of shards of one listing (a shard is
    /// missing or given twice, or the sets list different things); the message names the sets.
    #[error("{0}")]
    Shards(String),

    /// Flags or inputs that do not make sense together; the message says what to do instead.
    #[error("{0}")]
    Usage(String),

    /// A Cassandra table is not what the flags say (`--key-column` is not its partition key, a column
    /// holds one value per row where one per partition is needed); the message shows the real table.
    #[error("{table}: {msg}")]
    Schema { table: String, msg: String },

    /// keyrecon broke one of its own invariants (a panicked task, an overlapping "disjoint" set): a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error: source }
    }
    pub fn corrupt(path: impl AsRef<Path>, offset: u64, msg: impl Into<String>) -> Self {
        Error::Corrupt { path: path.as_ref().to_path_buf(), offset, msg: msg.into() }
    }
    pub fn json(path: impl AsRef<Path>, source: serde_json::Error) -> Self {
        Error::Json { path: path.as_ref().to_path_buf(), source }
    }
    /// A CSV error; an I/O error underneath becomes [`Error::Io`] (the path and what the OS said).
    pub fn csv(path: impl AsRef<Path>, source: csv::Error) -> Self {
        if source.is_io_error() {
            if let csv::ErrorKind::Io(io) = source.into_kind() {
                return Error::io(path, io);
            }
            unreachable!("is_io_error");
        }
        Error::Csv { path: path.as_ref().to_path_buf(), source }
    }
    pub fn remote(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Remote { context: context.into(), source: source.into() }
    }
    pub fn context(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Context { context: context.into(), source: source.into() }
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

/// `.context(..)` / `.remote(..)` on any result: say what was being done, keep the error as the cause.
pub trait ResultExt<T> {
    /// Wraps the error in [`Error::Context`].
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// [`Self::context`] with the message built only on error.
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
    /// Wraps the error in [`Error::Remote`]: a request to a server failed.
    fn remote(self, what: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::context(what, e))
    }
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::context(what(), e))
    }
    fn remote(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::remote(what, e))
    }
}

/// The error and its causes as one line, `a: b: c` (what anyhow's `{:#}` prints), for messages kept in
/// summaries and outcome files.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_cause_chain_and_io_prints_once() {
        let io = Error::io("/x/chunk", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(chain(&io), "/x/chunk: gone");
        let r: Result<()> = Err(io);
        let e = r.context("opening the source chunk set").unwrap_err();
        assert_eq!(chain(&e), "opening the source chunk set: /x/chunk: gone");
        let bad: std::result::Result<(), serde_json::Error> = serde_json::from_str::<()>("{");
        let e = bad.remote("ListObjectsV2 s3://b/").unwrap_err();
        assert!(chain(&e).starts_with("ListObjectsV2 s3://b/: "), "{}", chain(&e));
    }

    #[test]
    fn broken_pipe_is_found_through_context() {
        let r: Result<()> = Err(Error::io("-", std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        let e = r.context("writing keys").unwrap_err();
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&Error::Usage("x".into())));
    }
}
