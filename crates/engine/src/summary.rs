//! What every tool's summary shares. A job returns a summary; the binary prints [`Summary::paragraph`]
//! on stderr (unless `--quiet`) and exits with [`Summary::exit_code`]; the job has already written it
//! as `summary.json` with [`write_json`].
//!
//! Exit codes follow diff(1): 0 no differences / every key ended well, 1 differences (or keys not
//! found), 2 trouble (an error that did not stop the run still counts).

use crate::error::{Error, IoContext, Result};
use std::path::Path;

pub trait Summary {
    /// One paragraph for stderr: what was done, the counts that matter, where the outputs are.
    fn paragraph(&self) -> String;
    /// 0, 1 or 2 (see the module doc).
    fn exit_code(&self) -> i32;
}

/// Writes `value` as pretty JSON to `DIR/summary.json` (through a temporary file and a rename, so a
/// reader never sees half of it).
pub fn write_json(dir: &Path, value: &impl serde::Serialize) -> Result<()> {
    let p = dir.join("summary.json");
    let mut body = serde_json::to_vec_pretty(value).map_err(|e| Error::json(&p, e))?;
    body.push(b'\n');
    let tmp = dir.join(".summary.json.tmp");
    std::fs::write(&tmp, body).ctx(&tmp)?;
    std::fs::rename(&tmp, &p).ctx(&p)
}
