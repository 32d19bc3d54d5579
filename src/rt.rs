//! The one tokio runtime of a tool that talks to servers. Multi-threaded, with as many workers as
//! cores (at least 2, so a worker blocked on the disk never stops the others; at most 8: the work is
//! waiting on servers, not computing).

use crate::error::{Error, Result};

/// Builds the runtime a tool's library call runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| Error::context("starting the tokio runtime", e))
}
