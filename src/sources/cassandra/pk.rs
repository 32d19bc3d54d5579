//! A partition key as text, and back: the comparison key of a row whose partition key has one or more
//! columns, and the parse that turns such a key (a diff's `origin`) into the values that fetch exactly
//! that row.
//!
//! ```text
//!  cells of (service, id) ──render──► "PHOTO/12345"          --key-column service,id
//!  "PHOTO/12345" ──parse──► service = 'PHOTO', id = 12345     WHERE service = ? AND id = ?
//! ```
//! The key's form is a template ([`KeyFormat`]): `{service}/{id}` (every column, in key order, joined
//! by `/`) by default, or `--key-template '{service}:{id}'`. A one-column key without a template is the
//! value itself, as it always was. Each type has exactly one text per value (canonical), and parsing
//! accepts only that text, so a key names one row or none:
//!
//! | type | text |
//! |---|---|
//! | text, ascii | the string as stored |
//! | blob | lowercase hex (a one-column key without a template: the bytes as stored) |
//! | tinyint, smallint, int, bigint | decimal, `-` for negatives, no `+`, no leading zeros |
//! | uuid, timeuuid | lowercase `8-4-4-4-12` hex |
//! | timestamp | `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds; years 0000 to 9999) |
//!
//! Round trip, without escaping (an escape would make the key differ from the S3 key it is compared
//! with): a text value may contain the template's separators as long as the key still splits back one
//! way only. `{bucket}/{id}` with bucket `a/b` and id 7 is `a/b/7`, and only one split gives an
//! integer id. [`KeyCodec::finish`] checks every rendered key: one that splits back more than one way
//! (`{a}/{b}` with a = `x/y`, b = `z`: is it `x` and `y/z`?) or not at all is refused with the reason,
//! and the lister rejects the row (rejects.csv, exit status 2) instead of listing a key that could
//! name another row. A template where two columns touch (`{a}{b}`) never splits back and is refused at
//! start ([`KeyFormat::new`]).
//!
//! Cost of the check: when no column's text contains a byte of the template's literals, the split is
//! unique (every literal byte of the key belongs to a literal, so the literals can only sit where they
//! were written) and nothing more is done. Only the other keys are split back in full: a backtracking
//! match over the literals' occurrences, stopped at the second solution or after [`MAX_STEPS`].

use crate::civil::{civil_from_days, days_from_civil};
use std::io::Write;

/// The types a partition key column may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Text,
    Ascii,
    Blob,
    /// A big-endian signed integer of this many bytes (tinyint 1 .. bigint 8).
    Int(u8),
    Uuid,
    Timeuuid,
    /// Milliseconds since the epoch, big-endian i64.
    Timestamp,
}

const SUPPORTED: &str = "text, ascii, blob, tinyint, smallint, int, bigint, uuid, timeuuid, timestamp";

impl KeyType {
    /// The type of a key column as the driver describes it (a prepared statement's columns).
    pub fn of(t: &scylla::frame::response::result::ColumnType) -> Result<KeyType, String> {
        use scylla::frame::response::result::{ColumnType, NativeType as N};
        Ok(match t {
            ColumnType::Native(N::Text) => KeyType::Text,
            ColumnType::Native(N::Ascii) => KeyType::Ascii,
            ColumnType::Native(N::Blob) => KeyType::Blob,
            ColumnType::Native(N::BigInt) => KeyType::Int(8),
            ColumnType::Native(N::Int) => KeyType::Int(4),
            ColumnType::Native(N::SmallInt) => KeyType::Int(2),
            ColumnType::Native(N::TinyInt) => KeyType::Int(1),
            ColumnType::Native(N::Uuid) => KeyType::Uuid,
            ColumnType::Native(N::Timeuuid) => KeyType::Timeuuid,
            ColumnType::Native(N::Timestamp) => KeyType::Timestamp,
            o => return Err(format!("key column type {o:?} is not supported ({SUPPORTED})")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Text => "text",
            KeyType::Ascii => "ascii",
            KeyType::Blob => "blob",
            KeyType::Int(1) => "tinyint",
            KeyType::Int(2) => "smallint",
            KeyType::Int(4) => "int",
            KeyType::Int(_) => "bigint",
            KeyType::Uuid => "uuid",
            KeyType::Timeuuid => "timeuuid",
            KeyType::Timestamp => "timestamp",
        }
    }

    /// Appends the text of the value whose serialized bytes are `cell`. `raw`: a one-column key without
    /// a template (blobs as they are).
    #[inline]
    pub fn render(self, cell: &[u8], raw: bool, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            KeyType::Text | KeyType::Ascii => out.extend_from_slice(cell),
            KeyType::Blob if raw => out.extend_from_slice(cell),
            KeyType::Blob => crate::hex::push(out, cell),
            KeyType::Int(n) => {
                if cell.len() != n as usize {
                    return Err(format!("a {} of {} bytes", self.name(), cell.len()));
                }
                let _ = write!(out, "{}", be_int(cell)?);
            }
            KeyType::Uuid | KeyType::Timeuuid => {
                if cell.len() != 16 {
                    return Err(format!("a {} of {} bytes", self.name(), cell.len()));
                }
                for (i, b) in cell.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push(b'-');
                    }
                    crate::hex::push(out, std::slice::from_ref(b));
                }
            }
            KeyType::Timestamp => {
                if cell.len() != 8 {
                    return Err(format!("a timestamp of {} bytes", cell.len()));
                }
                render_millis(be_int(cell)?, out)?;
            }
        }
        Ok(())
    }

    /// Appends the serialized value whose text is `text`, or says why `text` is not this type's text
    /// of a value (only the text [`KeyType::render`] writes is accepted).
    pub fn parse(self, text: &[u8], raw: bool, out: &mut Vec<u8>) -> Result<(), String> {
        let not = |what: &str| Err(format!("{:?} is not {what}", String::from_utf8_lossy(text)));
        match self {
            KeyType::Text => match std::str::from_utf8(text) {
                Ok(_) => out.extend_from_slice(text),
                Err(_) => return not("valid UTF-8 (the column is text)"),
            },
            KeyType::Ascii if text.is_ascii() => out.extend_from_slice(text),
            KeyType::Ascii => return not("ASCII (the column is ascii)"),
            KeyType::Blob if raw => out.extend_from_slice(text),
            KeyType::Blob => {
                if text.len() % 2 != 0 || !text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                    return not("lowercase hex (the column is a blob)");
                }
                out.extend(text.chunks(2).map(|p| (nibble(p[0]) << 4) | nibble(p[1])));
            }
            KeyType::Int(n) => {
                let digits = text.strip_prefix(b"-").unwrap_or(text);
                let canonical =
                    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && (digits[0] != b'0' || text == b"0");
                let v: Option<i64> =
                    if canonical { std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()) } else { None };
                let Some(v) = v else {
                    return not(&format!(
                        "a {} in decimal (digits, a leading - for negatives, no leading zeros)",
                        self.name()
                    ));
                };
                let bytes = v.to_be_bytes();
                let (hi, lo) = bytes.split_at(8 - n as usize);
                // In range iff the dropped high bytes are the sign extension of the kept ones.
                let sign = if lo[0] & 0x80 != 0 { 0xff } else { 0 };
                if hi.iter().any(|b| *b != sign) {
                    return not(&format!("in the range of a {}", self.name()));
                }
                out.extend_from_slice(lo);
            }
            KeyType::Uuid | KeyType::Timeuuid => {
                let shape = text.len() == 36
                    && text.iter().enumerate().all(|(i, c)| match i {
                        8 | 13 | 18 | 23 => *c == b'-',
                        _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
                    });
                if !shape {
                    return not(&format!("a lowercase hyphenated UUID (the column is a {})", self.name()));
                }
                if self == KeyType::Timeuuid && text[14] != b'1' {
                    return not("a time-based (version 1) UUID (the column is a timeuuid)");
                }
                let hex = text.iter().filter(|c| **c != b'-');
                let v: Vec<u8> = hex.copied().collect();
                out.extend(v.chunks(2).map(|p| (nibble(p[0]) << 4) | nibble(p[1])));
            }
            KeyType::Timestamp => match parse_millis(text) {
                Some(ms) => out.extend_from_slice(&ms.to_be_bytes()),
                None => return not("a timestamp written as YYYY-MM-DDTHH:MM:SS.mmmZ (UTC, milliseconds)"),
            },
        }
        Ok(())
    }
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// A big-endian signed integer of 1 to 8 bytes.
pub fn be_int(b: &[u8]) -> Result<i64, String> {
    if b.is_empty() || b.len() > 8 {
        return Err(format!("integer of {} bytes", b.len()));
    }
    let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for &x in b {
        v = (v << 8) | x as i64;
    }
    Ok(v)
}

const DAY_MS: i64 = 86_400_000;

fn render_millis(ms: i64, out: &mut Vec<u8>) -> Result<(), String> {
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(format!("timestamp {ms} ms is outside the years 0000 to 9999 that a key can spell"));
    }
    let (h, mi, s, f) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:03}Z");
    Ok(())
}

/// Milliseconds of `YYYY-MM-DDTHH:MM:SS.mmmZ`, only as [`render_millis`] writes it.
fn parse_millis(t: &[u8]) -> Option<i64> {
    if t.len() != 24 {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        t[a..b].iter().try_fold(0i64, |v, c| c.is_ascii_digit().then(|| v * 10 + (c - b'0') as i64))
    };
    let (y, mo, d, h, mi, s, f) =
        (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 60 {
        let ms = days_from_civil(y, mo, d) * DAY_MS + ((h * 60 + mi) * 60 + s) * 1000 + f;
        // Canonical only: 02-30 or a missing separator renders differently.
        let mut back = Vec::with_capacity(24);
        render_millis(ms, &mut back).ok()?;
        return (back == t).then_some(ms);
    }
    None
}

/// Pieces of a key's text form.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(Vec<u8>),
    /// The text of the key column with this index (key order).
    Col(usize),
}

/// The key's text form: which columns (in partition key order) and how they are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    columns: Vec<String>,
    pieces: Vec<Piece>,
    /// One column and no template: the value as it is (blobs unencoded), as before composite keys.
    raw: bool,
    template: String,
    /// Bytes that occur in the literals (the fast path of [`KeyCodec::finish`]).
    lit: [bool; 256],
}

impl KeyFormat {
    /// The form of a key of `columns` (partition key order): `template`, or `{a}/{b}/..`. Refuses a
    /// template that cannot be split back into its columns.
    pub fn new(columns: &[String], template: Option<&str>) -> Result<KeyFormat, String> {
        if columns.is_empty() || columns.iter().any(|c| c.is_empty()) {
            return Err("--key-column: name every partition key column, in order (e.g. bucket,id)".into());
        }
        if let Some(c) = columns.iter().enumerate().find_map(|(i, c)| columns[..i].contains(c).then_some(c)) {
            return Err(format!("--key-column names {c} twice"));
        }
        let (pieces, raw, template) = match template {
            None if columns.len() == 1 => (vec![Piece::Col(0)], true, format!("{{{}}}", columns[0])),
            None => {
                let t: Vec<String> = columns.iter().map(|c| format!("{{{c}}}")).collect();
                let mut p = Vec::new();
                for i in 0..columns.len() {
                    if i > 0 {
                        p.push(Piece::Lit(b"/".to_vec()));
                    }
                    p.push(Piece::Col(i));
                }
                (p, false, t.join("/"))
            }
            Some(t) => (parse_template(t, columns)?, false, t.to_string()),
        };
        let mut lit = [false; 256];
        for p in &pieces {
            if let Piece::Lit(l) = p {
                for b in l {
                    lit[*b as usize] = true;
                }
            }
        }
        Ok(KeyFormat { columns: columns.to_vec(), pieces, raw, template, lit })
    }

    /// The partition key columns, in key order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The template (`{id}` for a plain one-column key).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// A one-column key written as the value itself (no template given).
    pub fn is_raw(&self) -> bool {
        self.raw
    }
}

/// `{name}` names a key column; `{{` and `}}` are literal braces.
fn parse_template(t: &str, columns: &[String]) -> Result<Vec<Piece>, String> {
    let bad = |why: String| Err(format!("--key-template {t:?}: {why}"));
    let mut pieces: Vec<Piece> = Vec::new();
    let mut lit = Vec::new();
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("}}") {
            lit.push(c as u8);
            rest = &rest[2..];
        } else if c == '{' {
            let Some(end) = rest.find('}') else { return bad("a { without its }".into()) };
            let name = &rest[1..end];
            let Some(i) = columns.iter().position(|k| k == name) else {
                return bad(format!("{{{name}}} is not one of the --key-column columns ({})", columns.join(", ")));
            };
            if pieces.contains(&Piece::Col(i)) {
                return bad(format!("{{{name}}} appears twice"));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            if let Some(Piece::Col(j)) = pieces.last() {
                return bad(format!(
                    "nothing separates {{{}}} and {{{name}}}, so a key could not be split back into its columns; \
                     put a separator between them, e.g. {{{}}}/{{{name}}}",
                    columns[*j], columns[*j]
                ));
            }
            pieces.push(Piece::Col(i));
            rest = &rest[end + 1..];
        } else if c == '}' {
            return bad("a } without its { (write }} for a literal brace)".into());
        } else {
            lit.extend_from_slice(c.to_string().as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    let missing: Vec<&str> =
        (0..columns.len()).filter(|i| !pieces.contains(&Piece::Col(*i))).map(|i| columns[i].as_str()).collect();
    if !missing.is_empty() {
        return bad(format!(
            "{} missing: the key must carry every partition key column to name exactly one row",
            missing.iter().map(|m| format!("{{{m}}}")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(pieces)
}

/// Most steps a split may take before the key is refused as too ambiguous to check.
pub const MAX_STEPS: u32 = 100_000;

/// A [`KeyFormat`] over one table's column types: renders rows' keys and parses keys back.
#[derive(Clone, Debug)]
pub struct KeyCodec {
    format: KeyFormat,
    types: Vec<KeyType>,
}

/// A worker's reusable buffers for [`KeyCodec`]: nothing is allocated per row once they have grown.
#[derive(Default)]
pub struct Rendered {
    /// The columns' texts, back to back, and where each ends.
    parts: Vec<u8>,
    ends: Vec<usize>,
    /// The key.
    key: Vec<u8>,
    split: Split,
}

impl Rendered {
    /// The key [`KeyCodec::finish`] assembled last, also when it refused it.
    pub fn last_key(&self) -> &[u8] {
        &self.key
    }
}

/// State of one split of a key into its columns.
#[derive(Default)]
struct Split {
    /// Per column (key order): `(start, end)` in the key.
    spans: Vec<(usize, usize)>,
    first: Vec<(usize, usize)>,
    second: Vec<(usize, usize)>,
    found: u32,
    steps: u32,
    scratch: Vec<u8>,
}

impl KeyCodec {
    /// `types`: the key columns' types, in key order.
    pub fn new(format: KeyFormat, types: Vec<KeyType>) -> KeyCodec {
        assert_eq!(format.columns.len(), types.len(), "a type per key column");
        KeyCodec { format, types }
    }

    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    pub fn types(&self) -> &[KeyType] {
        &self.types
    }

    /// Starts a row's key.
    #[inline]
    pub fn begin(&self, r: &mut Rendered) {
        r.parts.clear();
        r.ends.clear();
    }

    /// Adds the next key column's cell (key order).
    #[inline]
    pub fn push(&self, r: &mut Rendered, cell: &[u8]) -> Result<(), String> {
        let i = r.ends.len();
        let t = self.types[i];
        t.render(cell, self.format.raw, &mut r.parts).map_err(|e| format!("{}: {e}", self.format.columns[i]))?;
        r.ends.push(r.parts.len());
        Ok(())
    }

    /// The row's key, after every column was pushed; or why it cannot be listed (it would not split
    /// back into these columns exactly).
    #[inline]
    pub fn finish<'r>(&self, r: &'r mut Rendered) -> Result<&'r [u8], String> {
        let Rendered { parts, ends, key, split } = r;
        let part = |i: usize| &parts[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        if self.format.raw {
            return Ok(part(0));
        }
        key.clear();
        for p in &self.format.pieces {
            match p {
                Piece::Lit(l) => key.extend_from_slice(l),
                Piece::Col(i) => key.extend_from_slice(part(*i)),
            }
        }
        if !parts.iter().any(|b| self.format.lit[*b as usize]) {
            return Ok(key);
        }
        match self.split(key, split) {
            Ok(()) => Ok(key),
            Err(why) => Err(why),
        }
    }

    /// The serialized value of each key column (key order) of `key`, or why `key` names no row.
    pub fn parse(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        if self.format.raw {
            let mut v = Vec::with_capacity(key.len());
            self.types[0].parse(key, true, &mut v)?;
            return Ok(vec![v]);
        }
        let mut s = Split::default();
        self.split(key, &mut s)?;
        let mut out = Vec::with_capacity(self.types.len());
        for (i, (a, b)) in s.first.iter().enumerate() {
            let mut v = Vec::new();
            self.types[i].parse(&key[*a..*b], false, &mut v)?;
            out.push(v);
        }
        Ok(out)
    }

    /// Splits `key` into its columns: exactly one way, left in `s.first`, or why not.
    fn split(&self, key: &[u8], s: &mut Split) -> Result<(), String> {
        let n = self.types.len();
        s.spans.clear();
        s.spans.resize(n, (0, 0));
        s.found = 0;
        s.steps = 0;
        self.solve(key, 0, 0, s);
        let show = |spans: &[(usize, usize)]| {
            let cols: Vec<String> = (0..n)
                .map(|i| {
                    let (a, b) = spans[i];
                    format!("{} = {:?}", self.format.columns[i], String::from_utf8_lossy(&key[a..b]))
                })
                .collect();
            cols.join(", ")
        };
        let k = String::from_utf8_lossy(key);
        if s.steps > MAX_STEPS {
            return Err(format!(
                "key {k:?} has too many ways to split into {} to check which one is meant",
                self.format.template
            ));
        }
        match s.found {
            1 => Ok(()),
            0 => Err(format!("key {k:?} does not have the form {}{}", self.format.template, self.first_error(key))),
            _ => Err(format!(
                "key {k:?} splits into {} more than one way ({}; or {}): a text value contains the template's \
                 separator",
                self.format.template,
                show(&s.first),
                show(&s.second)
            )),
        }
    }

    /// Backtracking match of `pieces[p..]` against `key[pos..]`; counts solutions up to two.
    fn solve(&self, key: &[u8], p: usize, pos: usize, s: &mut Split) {
        s.steps += 1;
        if s.found >= 2 || s.steps > MAX_STEPS {
            return;
        }
        let Some(piece) = self.format.pieces.get(p) else {
            if pos == key.len() {
                s.found += 1;
                let into = if s.found == 1 { &mut s.first } else { &mut s.second };
                into.clone_from(&s.spans);
            }
            return;
        };
        match piece {
            Piece::Lit(l) => {
                if key[pos..].starts_with(l) {
                    self.solve(key, p + 1, pos + l.len(), s);
                }
            }
            Piece::Col(c) => {
                let t = self.types[*c];
                let try_end = |end: usize, s: &mut Split| {
                    s.scratch.clear();
                    if t.parse(&key[pos..end], false, &mut s.scratch).is_ok() {
                        s.spans[*c] = (pos, end);
                        self.solve(key, p + 1, end, s);
                    }
                };
                match self.format.pieces.get(p + 1) {
                    // The template ends with this column: it takes the rest.
                    None => try_end(key.len(), s),
                    Some(Piece::Lit(l)) => {
                        // Every occurrence, overlapping ones too (`::` occurs twice in `:::`).
                        let finder = memchr::memmem::Finder::new(l);
                        let mut from = pos;
                        while let Some(at) = finder.find(&key[from..]) {
                            try_end(from + at, s);
                            if s.found >= 2 || s.steps > MAX_STEPS {
                                return;
                            }
                            from += at + 1;
                        }
                    }
                    Some(Piece::Col(_)) => unreachable!("KeyFormat::new refuses touching columns"),
                }
            }
        }
    }

    /// Why a key that matched no way does not fit: the first column whose text (split at the first
    /// occurrence of each separator) is not of its type, or nothing.
    fn first_error(&self, key: &[u8]) -> String {
        let mut pos = 0;
        let mut v = Vec::new();
        for (p, piece) in self.format.pieces.iter().enumerate() {
            match piece {
                Piece::Lit(l) => {
                    if !key[pos..].starts_with(l) {
                        return String::new();
                    }
                    pos += l.len();
                }
                Piece::Col(c) => {
                    let end = match self.format.pieces.get(p + 1) {
                        Some(Piece::Lit(l)) => match memchr::memmem::find(&key[pos..], l) {
                            Some(at) => pos + at,
                            None => return String::new(),
                        },
                        _ => key.len(),
                    };
                    if let Err(e) = self.types[*c].parse(&key[pos..end], false, &mut v) {
                        return format!(" ({}: {e})", self.format.columns[*c]);
                    }
                    pos = end;
                }
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    fn codec(columns: &str, template: Option<&str>, types: &[KeyType]) -> KeyCodec {
        KeyCodec::new(KeyFormat::new(&cols(columns), template).unwrap(), types.to_vec())
    }

    /// Renders cells through the hot-path API.
    fn render(c: &KeyCodec, cells: &[&[u8]]) -> Result<String, String> {
        let mut r = Rendered::default();
        c.begin(&mut r);
        for cell in cells {
            c.push(&mut r, cell)?;
        }
        c.finish(&mut r).map(|k| String::from_utf8(k.to_vec()).unwrap())
    }

    const UUID: [u8; 16] =
        [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x16, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    #[test]
    fn every_type_renders_canonically_and_parses_back() {
        use KeyType::*;
        let cases: &[(KeyType, &[u8], &str)] = &[
            (Text, "é/x".as_bytes(), "é/x"),
            (Ascii, b"PHOTO", "PHOTO"),
            (Blob, b"\x00\xfe", "00fe"),
            (Blob, b"", ""),
            (Int(8), &(-12345i64).to_be_bytes(), "-12345"),
            (Int(8), &i64::MIN.to_be_bytes(), "-9223372036854775808"),
            (Int(4), &7i32.to_be_bytes(), "7"),
            (Int(2), &0i16.to_be_bytes(), "0"),
            (Int(1), &[0x80], "-128"),
            (Uuid, &UUID, "00112233-4455-1677-8899-aabbccddeeff"),
            (Timeuuid, &UUID, "00112233-4455-1677-8899-aabbccddeeff"),
            (Timestamp, &1_700_000_000_123i64.to_be_bytes(), "2023-11-14T22:13:20.123Z"),
            (Timestamp, &(-1i64).to_be_bytes(), "1969-12-31T23:59:59.999Z"),
            (Timestamp, &(-62_167_219_200_000i64).to_be_bytes(), "0000-01-01T00:00:00.000Z"),
            (Timestamp, &253_402_300_799_999i64.to_be_bytes(), "9999-12-31T23:59:59.999Z"),
        ];
        for (t, cell, text) in cases {
            let mut out = Vec::new();
            t.render(cell, false, &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), *text, "{t:?}");
            let mut back = Vec::new();
            t.parse(text.as_bytes(), false, &mut back).unwrap();
            assert_eq!(back, *cell, "{t:?} {text}");
        }
        // Raw one-column blobs are the bytes themselves, both ways, as before composite keys.
        let mut out = Vec::new();
        Blob.render(b"a\xff", true, &mut out).unwrap();
        assert_eq!(out, b"a\xff");
        let c = codec("id", None, &[Blob]);
        assert_eq!(c.parse(b"a\xff").unwrap(), vec![b"a\xff".to_vec()]);
        let mut r = Rendered::default();
        c.begin(&mut r);
        c.push(&mut r, b"a/\xff").unwrap();
        assert_eq!(c.finish(&mut r).unwrap(), b"a/\xff");
    }

    #[test]
    fn only_the_canonical_text_parses() {
        use KeyType::*;
        let bad: &[(KeyType, &str, &str)] = &[
            (Int(8), "007", "decimal"),
            (Int(8), "+7", "decimal"),
            (Int(8), "-0", "decimal"),
            (Int(8), "", "decimal"),
            (Int(8), "9223372036854775808", "decimal"),
            (Int(1), "128", "range of a tinyint"),
            (Int(4), "1x", "decimal"),
            (Blob, "0A", "lowercase hex"),
            (Blob, "abc", "lowercase hex"),
            (Uuid, "00112233445516778899aabbccddeeff", "hyphenated"),
            (Uuid, "00112233-4455-1677-8899-AABBCCDDEEFF", "hyphenated"),
            (Timeuuid, "00112233-4455-4677-8899-aabbccddeeff", "version 1"),
            (Timestamp, "2023-11-14T22:13:20Z", "YYYY"),
            (Timestamp, "2023-02-30T00:00:00.000Z", "YYYY"),
            (Timestamp, "2023-11-14 22:13:20.000Z", "YYYY"),
            (Ascii, "é", "ASCII"),
        ];
        for (t, text, why) in bad {
            let e = t.parse(text.as_bytes(), false, &mut Vec::new()).unwrap_err();
            assert!(e.contains(why), "{t:?} {text:?}: {e}");
        }
        assert!(Text.parse(b"a\xff", false, &mut Vec::new()).unwrap_err().contains("UTF-8"));
        let far = (253_402_300_800_000i64).to_be_bytes();
        assert!(Timestamp.render(&far, false, &mut Vec::new()).unwrap_err().contains("0000 to 9999"));
    }

    #[test]
    fn templates_that_cannot_split_back_are_refused() {
        let c = cols("a,b");
        let cases: &[(&str, &str)] = &[
            ("{a}{b}", "nothing separates {a} and {b}"),
            ("{a}:{a}", "appears twice"),
            ("{a}", "{b} missing"),
            ("{a}/{c}", "{c} is not one of the --key-column columns (a, b)"),
            ("{a/{b}", "not one of"),
            ("{a}/{b", "without its }"),
            ("{a}}/{b}", "} without its {"),
        ];
        for (t, why) in cases {
            let e = KeyFormat::new(&c, Some(t)).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
        assert!(KeyFormat::new(&cols("a,a"), None).unwrap_err().contains("twice"));
        assert!(KeyFormat::new(&cols("a,"), None).is_err());
        let f = KeyFormat::new(&c, Some("{{{b}}}:{a}")).unwrap();
        assert_eq!(f.template(), "{{{b}}}:{a}");
        assert_eq!(KeyFormat::new(&c, None).unwrap().template(), "{a}/{b}");
        assert!(KeyFormat::new(&cols("id"), None).unwrap().is_raw());
    }

    #[test]
    fn keys_render_by_template_and_parse_back_into_columns() {
        use KeyType::*;
        let c = codec("service,id", None, &[Text, Int(8)]);
        let id = 12345i64.to_be_bytes();
        assert_eq!(render(&c, &[b"PHOTO", &id]).unwrap(), "PHOTO/12345");
        assert_eq!(c.parse(b"PHOTO/12345").unwrap(), vec![b"PHOTO".to_vec(), id.to_vec()]);
        // The separator inside the text still splits one way: the id must be an integer.
        assert_eq!(render(&c, &[b"a/b", &id]).unwrap(), "a/b/12345");
        assert_eq!(c.parse(b"a/b/12345").unwrap(), vec![b"a/b".to_vec(), id.to_vec()]);
        assert!(c.parse(b"PHOTO/x").unwrap_err().contains("(id: \"x\" is not a bigint"));
        assert!(c.parse(b"PHOTO").unwrap_err().contains("does not have the form {service}/{id}"));
        assert!(c.parse(b"PHOTO/0012").unwrap_err().contains("does not have the form"));

        // Reordered template, literal braces, prefix.
        let c = codec("a,b", Some("img/{b}:{{{a}}}"), &[Blob, Uuid]);
        let k = render(&c, &[b"\x01\x02", &UUID]).unwrap();
        assert_eq!(k, "img/00112233-4455-1677-8899-aabbccddeeff:{0102}");
        assert_eq!(c.parse(k.as_bytes()).unwrap(), vec![b"\x01\x02".to_vec(), UUID.to_vec()]);

        // A uuid holds the template's '-' and still splits one way (its shape is fixed).
        let c = codec("u,n", Some("{u}-{n}"), &[Uuid, Int(4)]);
        let k = render(&c, &[&UUID, &(-3i32).to_be_bytes()]).unwrap();
        assert_eq!(k, "00112233-4455-1677-8899-aabbccddeeff--3");
        assert_eq!(c.parse(k.as_bytes()).unwrap()[1], (-3i32).to_be_bytes());
    }

    #[test]
    fn ambiguous_keys_are_refused_with_the_reason() {
        use KeyType::*;
        let c = codec("a,b", None, &[Text, Text]);
        assert_eq!(render(&c, &[b"x", b"y"]).unwrap(), "x/y");
        let e = render(&c, &[b"x/y", b"z"]).unwrap_err();
        assert!(e.contains("more than one way") && e.contains("a = \"x\", b = \"y/z\""), "{e}");
        assert!(e.contains("a = \"x/y\", b = \"z\""), "{e}");
        assert!(c.parse(b"x/y/z").unwrap_err().contains("more than one way"));
        // Empty values are values: "/" is a = "", b = "".
        assert_eq!(render(&c, &[b"", b""]).unwrap(), "/");
        assert_eq!(c.parse(b"/").unwrap(), vec![Vec::<u8>::new(), Vec::new()]);
        // A multi-byte separator that overlaps itself.
        let c = codec("a,b", Some("{a}::{b}"), &[Text, Text]);
        assert!(render(&c, &[b"x:", b"y"]).unwrap_err().contains("more than one way"));
        assert!(render(&c, &[b"x", b":y"]).unwrap_err().contains("more than one way"));
        assert_eq!(render(&c, &[b"x.y", b"z"]).unwrap(), "x.y::z");
        // Pathological keys stop at the step budget instead of spinning.
        let c = codec("a,b,c,d,e", None, &[Text, Text, Text, Text, Text]);
        let key = "/".repeat(400);
        let e = c.parse(key.as_bytes()).unwrap_err();
        assert!(e.contains("more than one way") || e.contains("too many ways"), "{e}");
    }

    /// Random tuples of every type mix: a key either parses back to exactly its cells, or was refused
    /// at render time and its parse does not return other cells silently.
    #[test]
    fn random_keys_round_trip_or_are_refused() {
        use rand::{Rng, SeedableRng};
        use KeyType::*;
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let all = [Text, Ascii, Blob, Int(8), Int(4), Int(2), Int(1), Uuid, Timestamp];
        let templates = [None, Some("{a}:{b}:{c}"), Some("k/{c}-{a}_{b}"), Some("{b}//{a}//{c}")];
        let alphabet = b"ab/:-_0";
        let (mut refused, mut listed) = (0, 0);
        for round in 0..3000 {
            let types: Vec<KeyType> = (0..3).map(|_| all[rng.gen_range(0..all.len())]).collect();
            let c = codec("a,b,c", templates[round % templates.len()], &types);
            let cells: Vec<Vec<u8>> = types
                .iter()
                .map(|t| match t {
                    Text | Ascii | Blob => {
                        (0..rng.gen_range(0..5)).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect()
                    }
                    Int(n) => rng.gen::<i64>().to_be_bytes()[8 - *n as usize..].to_vec(),
                    Uuid => (0..16).map(|_| rng.gen()).collect(),
                    Timestamp => rng.gen_range(-62_167_219_200_000i64..253_402_300_799_999).to_be_bytes().to_vec(),
                    _ => unreachable!(),
                })
                .collect();
            let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
            match render(&c, &refs) {
                Ok(k) => {
                    listed += 1;
                    assert_eq!(c.parse(k.as_bytes()).unwrap(), cells, "{types:?} {k}");
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.contains("more than one way"), "{e}");
                }
            }
        }
        assert!(refused > 50 && listed > 2000, "refused {refused}, listed {listed}");
    }
}
