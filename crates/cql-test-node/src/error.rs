//! The library's error type (setup and fixture mistakes, not CQL errors).
//!
//! Role: errors returned to the *test* that configures the node: a bad table
//! definition, a row that does not fit its table, an address that cannot be
//! bound. Errors sent to the *driver* are [`crate::protocol::CqlError`]s.
//! Every variant names what it was working on (table, key, address).

use std::io;

/// A setup or fixture error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("table {table}: {reason}")]
    Schema { table: String, reason: String },
    #[error("no table {0} is defined on the test node")]
    UnknownTable(String),
    #[error("row with key {key} in {table}: {reason}")]
    Row { table: String, key: String, reason: String },
    #[error("test node configuration: {0}")]
    Config(String),
    #[error("test node runtime: {0}")]
    Runtime(io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders a key for messages: text if printable UTF-8, hex otherwise.
pub fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_render_as_text_or_hex() {
        assert_eq!(show_key(b"abc"), "\"abc\"");
        assert_eq!(show_key(&[0, 0xff]), "0x00ff");
    }
}
