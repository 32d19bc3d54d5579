//! What every keyrecon binary shares: size arguments, input-format flags, and the exit-code contract
//! (0 same/success, 1 differences, 2 trouble; a closed pipe downstream is not trouble).

use crate::input::{Format, InputSpec, KeyColumn};
use std::path::PathBuf;

/// Parses `256M`, `1G`, `1.5GiB`, `64k`, `1000` (bytes). Suffixes are binary (K = 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (examples: 256M, 1G, 65536)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown size unit {other:?} in {s:?} (use K, M, G, T)")),
    };
    Ok((n * mult) as usize)
}

/// Input-format flags shared by keyrecon-sort and keyrecon-diff.
#[derive(clap::Args, Clone, Debug)]
pub struct FormatArgs {
    /// Keys are NUL-terminated instead of newline-terminated (S3 keys may contain newlines). Output key
    /// files are then NUL-terminated too.
    #[arg(short = 'z', long = "null-data")]
    pub null: bool,
    /// Input format: `lines` (one key per line, every byte but the `\n`, like comm) or `csv`.
    #[arg(long, default_value = "lines", value_parser = ["lines", "csv"])]
    pub format: String,
    /// CSV key column: a 1-based number or, with --header, a column name.
    #[arg(long, value_name = "N|NAME", default_value = "1")]
    pub key_column: String,
    /// CSV: the first row holds column names (it is not a key).
    #[arg(long)]
    pub header: bool,
    /// CSV field delimiter (one byte).
    #[arg(long, default_value = ",")]
    pub delimiter: String,
    /// Keys longer than this go to the rejects file instead of being processed.
    #[arg(long, value_name = "BYTES", default_value_t = crate::input::DEFAULT_MAX_KEY_LEN)]
    pub max_key_len: usize,
}

impl FormatArgs {
    pub fn format(&self) -> Result<Format, String> {
        if self.format == "csv" {
            if self.null {
                return Err("-z and --format csv cannot be combined".into());
            }
            let d = self.delimiter.as_bytes();
            if d.len() != 1 {
                return Err(format!("--delimiter must be one byte, got {:?}", self.delimiter));
            }
            let column = match self.key_column.parse::<usize>() {
                Ok(0) => return Err("--key-column numbers start at 1".into()),
                Ok(n) => KeyColumn::Index(n - 1),
                Err(_) => KeyColumn::Name(self.key_column.clone()),
            };
            Ok(Format::Csv { column, header: self.header, delimiter: d[0] })
        } else if self.null {
            Ok(Format::Nul)
        } else {
            Ok(Format::Lines)
        }
    }

    pub fn spec(&self, path: PathBuf) -> Result<InputSpec, String> {
        let mut s = InputSpec::new(path, self.format()?);
        s.max_key_len = self.max_key_len;
        Ok(s)
    }

    pub fn terminator(&self) -> u8 {
        if self.null {
            0
        } else {
            b'\n'
        }
    }
}

/// Runs a binary's body and exits with its code. Errors print as `TOOL: error: ...` with their whole
/// context chain and exit 2; an error caused by a closed stdout/pipe exits 0 silently (like `| head`).
pub fn main_with(tool: &str, body: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    let code = match body() {
        Ok(c) => c,
        Err(e) => {
            if e.chain().any(crate::error::is_broken_pipe) {
                0
            } else {
                eprintln!("{tool}: error: {e:#}");
                2
            }
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }
}
