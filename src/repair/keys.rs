//! The keys to repair (or verify): read from keyrecon-diff's `missing-on-target.csv`, a repair/verify
//! outcome CSV, a plain key file, or stdin.
//!
//! Formats (`--format auto` picks CSV when the first line is `key` or starts with `key,`):
//! - **CSV with a header** (diff's `missing-on-target.csv`: `key,size,...,origin`; repair's `ok.csv`):
//!   the `key` column is the target key (the comparison key after key mapping); `origin`, when present
//!   and non-empty, is the Cassandra key it was mapped from; `size`, when present, the source size.
//! - **lines**: one key per line, every byte but `\n` (`-z`: NUL-terminated); empty lines are skipped.
//!
//! Keys are bytes. A key given twice is repaired once (the first occurrence wins; counted).

use crate::error::{Error, IoContext, Result};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

/// One key to work on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The target key (before `--prefix`).
    pub key: Vec<u8>,
    /// The Cassandra key, when the input names one that differs from `key`.
    pub origin: Option<Vec<u8>>,
    /// Size the listing saw in the source (from a `size` column).
    pub size: Option<u64>,
}

impl Item {
    /// The key to look up in Cassandra.
    pub fn origin(&self) -> &[u8] {
        self.origin.as_deref().unwrap_or(&self.key)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysFormat {
    Auto,
    Csv,
    Lines,
}

/// The keys of one input and what was dropped on the way.
#[derive(Debug, Default)]
pub struct Keys {
    pub items: Vec<Item>,
    pub duplicates: u64,
    /// `-` was read as stdin.
    pub source: String,
}

/// Reads `path` (`-` = stdin). `nul`: keys are NUL-terminated (lines format only).
pub fn read(path: &Path, format: KeysFormat, nul: bool) -> Result<Keys> {
    let (data, shown) = if path.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::stdin().lock().read_to_end(&mut v).ctx("(stdin)")?;
        (v, Path::new("(stdin)"))
    } else {
        (std::fs::read(path).ctx(path)?, path)
    };
    parse(&data, shown, format, nul)
}

pub fn parse(data: &[u8], path: &Path, format: KeysFormat, nul: bool) -> Result<Keys> {
    let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let csv = match format {
        KeysFormat::Csv => true,
        KeysFormat::Lines => false,
        KeysFormat::Auto => !nul && (first == b"key" || first.starts_with(b"key,")),
    };
    if csv && nul {
        return Err(Error::Usage("-z applies to plain key files, not CSV".into()));
    }
    let items = if csv { parse_csv(data, path)? } else { parse_lines(data, if nul { 0 } else { b'\n' }) };
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(items.len());
    let mut keep = vec![true; items.len()];
    let mut duplicates = 0;
    for (i, it) in items.iter().enumerate() {
        if !seen.insert(&it.key) {
            keep[i] = false;
            duplicates += 1;
        }
    }
    drop(seen);
    let mut k = keep.into_iter();
    let items = items.into_iter().filter(|_| k.next().unwrap()).collect();
    Ok(Keys { items, duplicates, source: path.display().to_string() })
}

fn parse_lines(data: &[u8], term: u8) -> Vec<Item> {
    data.split(|b| *b == term)
        .filter(|l| !l.is_empty())
        .map(|l| Item { key: l.to_vec(), origin: None, size: None })
        .collect()
}

fn parse_csv(data: &[u8], path: &Path) -> Result<Vec<Item>> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(data);
    let perr = |line: u64, msg: String| Error::Parse { path: path.to_path_buf(), line, msg };
    let hdr = r.byte_headers().map_err(|e| perr(1, e.to_string()))?.clone();
    let col = |name: &str| hdr.iter().position(|h| h == name.as_bytes());
    let k = col("key").ok_or_else(|| perr(1, "no `key` column in the CSV header".into()))?;
    let (o, s) = (col("origin"), col("size"));
    let mut out = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match r.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(perr(line, e.to_string()));
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        let key = rec.get(k).unwrap_or_default();
        if key.is_empty() {
            return Err(perr(line, "empty key".into()));
        }
        let origin = o.and_then(|o| rec.get(o)).filter(|v| !v.is_empty() && *v != key).map(<[u8]>::to_vec);
        let size = match s.and_then(|s| rec.get(s)).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| perr(line, format!("size {:?} is not a number", String::from_utf8_lossy(v))))?,
            ),
        };
        out.push(Item { key: key.to_vec(), origin, size });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn p(data: &[u8], nul: bool) -> Result<Keys> {
        parse(data, Path::new("in.csv"), KeysFormat::Auto, nul)
    }

    #[test]
    fn missing_on_target_csv_with_origin_and_size() {
        let k = p(b"key,size,origin\nt01a,10,t01a_1\n\"t0,2\",,\nt01a,10,t01a_1\n", false).unwrap();
        assert_eq!(
            k.items,
            vec![
                Item { key: b"t01a".to_vec(), origin: Some(b"t01a_1".to_vec()), size: Some(10) },
                Item { key: b"t0,2".to_vec(), origin: None, size: None }
            ]
        );
        assert_eq!(k.duplicates, 1);
        assert_eq!(k.items[1].origin(), b"t0,2");
    }

    #[test]
    fn plain_lines_nul_and_bytes() {
        let k = p(b"a\xff\n\nb\n", false).unwrap();
        assert_eq!(k.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![b"a\xff".to_vec(), b"b".to_vec()]);
        let k = p(b"key,x\0b\nc\0", true).unwrap();
        assert_eq!(
            k.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
            vec![b"key,x".to_vec(), b"b\nc".to_vec()]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = p(b"key,size\na,1\nb,zz\n", false).err().unwrap().to_string();
        assert!(e.contains("in.csv: line 3") && e.contains("zz"), "{e}");
        let e = parse(b"k,size\n", Path::new("x"), KeysFormat::Csv, false).err().unwrap().to_string();
        assert!(e.contains("no `key` column"), "{e}");
        let e = p(b"key,size\na,1\nb\n", false).err().unwrap().to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
