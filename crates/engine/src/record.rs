//! Records: key bytes plus optional metadata, and their compact byte encoding.
//!
//! A record is what a lister knows about one object: its **key** (the comparison key, raw bytes, compared
//! in byte order like `LC_ALL=C sort`) and, depending on the [`Schema`] of the chunk set, its size, an
//! etag/checksum, a modification time, the **origin** key it was mapped from (the source store's own key,
//! which repair needs to fetch the object), and a storage class.
//!
//! Hot loops never build a [`Record`]; they move `(key, meta)` byte slices. `meta` is the encoding below,
//! opaque to sorting and merging and decoded only where metadata is compared or printed.
//!
//! ```text
//! meta := presence:u8  [size:varint] [etag:bytes] [mtime:zigzag-varint] [origin:bytes] [class:bytes]
//! bytes := len:varint  data[len]
//! ```
//! `presence` has one bit per field (the [`Schema`] bit of that field); a field whose bit is clear is
//! absent from the bytes. varint is unsigned LEB128. `mtime` is microseconds since the Unix epoch
//! (Cassandra's writetime unit; S3 LastModified converts exactly).

use std::fmt;

/// Which metadata fields the records of a chunk set may carry. Bit values are part of the on-disk format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schema(pub u8);

impl Schema {
    pub const SIZE: u8 = 1;
    pub const ETAG: u8 = 2;
    pub const MTIME: u8 = 4;
    pub const ORIGIN: u8 = 8;
    pub const CLASS: u8 = 16;
    pub const ALL: u8 = 31;
    pub const KEYS_ONLY: Schema = Schema(0);
    /// Records carry metadata in an encoding of their producer's own, not the one below: chunks that
    /// never leave the tool that wrote them (spills of repair's journal, verify's results). It names no
    /// field, so such a chunk is never mistaken for a listing.
    pub const OPAQUE: Schema = Schema(0x80);

    pub const FIELDS: [(u8, &'static str); 5] = [
        (Self::SIZE, "size"),
        (Self::ETAG, "etag"),
        (Self::MTIME, "mtime"),
        (Self::ORIGIN, "origin"),
        (Self::CLASS, "class"),
    ];

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    pub fn is_keys_only(self) -> bool {
        self.0 == 0
    }
    /// Field names, in format order (used in manifests and CSV headers).
    pub fn names(self) -> Vec<&'static str> {
        Self::FIELDS.iter().filter(|(b, _)| self.has(*b)).map(|(_, n)| *n).collect()
    }
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Schema, String> {
        let mut bits = 0;
        for name in names {
            let name = name.trim();
            if name.is_empty() || name == "key" {
                continue;
            }
            match Self::FIELDS.iter().find(|(_, n)| *n == name) {
                Some((b, _)) => bits |= b,
                None => {
                    return Err(format!("unknown record field {name:?} (known: key, size, etag, mtime, origin, class)"))
                }
            }
        }
        Ok(Schema(bits))
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = vec!["key"];
        names.extend(self.names());
        f.write_str(&names.join(","))
    }
}

/// Decoded metadata of one record. Built only off the hot path (comparison of metadata, CSV output).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub size: Option<u64>,
    pub etag: Option<Vec<u8>>,
    /// Microseconds since the Unix epoch.
    pub mtime: Option<i64>,
    pub origin: Option<Vec<u8>>,
    pub class: Option<Vec<u8>>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }

    /// Appends the encoding of `self` to `out` (see [`MetaRef::encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.as_ref().encode(out)
    }

    /// The same fields, borrowed.
    pub fn as_ref(&self) -> MetaRef<'_> {
        MetaRef {
            size: self.size,
            etag: self.etag.as_deref(),
            mtime: self.mtime,
            origin: self.origin.as_deref(),
            class: self.class.as_deref(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes a meta encoding. An empty slice is "no metadata".
    pub fn decode(buf: &[u8]) -> Result<Meta, String> {
        let r = MetaRef::decode(buf)?;
        Ok(Meta {
            size: r.size,
            etag: r.etag.map(<[u8]>::to_vec),
            mtime: r.mtime,
            origin: r.origin.map(<[u8]>::to_vec),
            class: r.class.map(<[u8]>::to_vec),
        })
    }
}

/// Decoded metadata borrowing from the encoded bytes: no allocation, for per-record comparisons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaRef<'a> {
    pub size: Option<u64>,
    pub etag: Option<&'a [u8]>,
    pub mtime: Option<i64>,
    pub origin: Option<&'a [u8]>,
    pub class: Option<&'a [u8]>,
}

impl<'a> MetaRef<'a> {
    /// Appends the encoding (module doc) of the fields that are `Some` to `out`. The one encoder of
    /// record metadata: listers, the key mapper and the sort all write through it, allocation-free.
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let presence = self.size.map_or(0, |_| Schema::SIZE)
            | self.etag.map_or(0, |_| Schema::ETAG)
            | self.mtime.map_or(0, |_| Schema::MTIME)
            | self.origin.map_or(0, |_| Schema::ORIGIN)
            | self.class.map_or(0, |_| Schema::CLASS);
        out.push(presence);
        if let Some(s) = self.size {
            put_varint(out, s);
        }
        if let Some(e) = self.etag {
            put_bytes(out, e);
        }
        if let Some(m) = self.mtime {
            put_varint(out, zigzag(m));
        }
        if let Some(o) = self.origin {
            put_bytes(out, o);
        }
        if let Some(c) = self.class {
            put_bytes(out, c);
        }
    }

    /// Only the fields `schema` holds (a lister that read a field the chunk set does not carry).
    #[inline]
    pub fn only(self, schema: Schema) -> MetaRef<'a> {
        MetaRef {
            size: self.size.filter(|_| schema.has(Schema::SIZE)),
            etag: self.etag.filter(|_| schema.has(Schema::ETAG)),
            mtime: self.mtime.filter(|_| schema.has(Schema::MTIME)),
            origin: self.origin.filter(|_| schema.has(Schema::ORIGIN)),
            class: self.class.filter(|_| schema.has(Schema::CLASS)),
        }
    }

    pub fn decode(mut buf: &'a [u8]) -> Result<MetaRef<'a>, String> {
        let mut m = MetaRef::default();
        if buf.is_empty() {
            return Ok(m);
        }
        let presence = buf[0];
        buf = &buf[1..];
        if presence & !Schema::ALL != 0 {
            return Err(format!("unknown metadata presence bits {presence:#04x}"));
        }
        if presence & Schema::SIZE != 0 {
            m.size = Some(get_varint(&mut buf).ok_or("truncated size")?);
        }
        if presence & Schema::ETAG != 0 {
            m.etag = Some(get_bytes(&mut buf).ok_or("truncated etag")?);
        }
        if presence & Schema::MTIME != 0 {
            m.mtime = Some(unzigzag(get_varint(&mut buf).ok_or("truncated mtime")?));
        }
        if presence & Schema::ORIGIN != 0 {
            m.origin = Some(get_bytes(&mut buf).ok_or("truncated origin")?);
        }
        if presence & Schema::CLASS != 0 {
            m.class = Some(get_bytes(&mut buf).ok_or("truncated class")?);
        }
        if !buf.is_empty() {
            return Err(format!("{} trailing bytes after metadata", buf.len()));
        }
        Ok(m)
    }
}

/// An owned record, for APIs where convenience beats speed (listers' pages, tests).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub key: Vec<u8>,
    /// Encoded [`Meta`] (empty for keys-only records).
    pub meta: Vec<u8>,
}

impl Record {
    pub fn key_only(key: impl Into<Vec<u8>>) -> Self {
        Record { key: key.into(), meta: Vec::new() }
    }
    pub fn with_meta(key: impl Into<Vec<u8>>, meta: &Meta) -> Self {
        Record { key: key.into(), meta: if meta.is_empty() { Vec::new() } else { meta.to_bytes() } }
    }
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint from the front of `buf`, advancing it. `None` if truncated or > 10 bytes.
#[inline(always)]
pub fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let b0 = *buf.first()?;
    if b0 < 0x80 {
        *buf = &buf[1..];
        return Some(b0 as u64);
    }
    get_long_varint(buf)
}

/// `get_varint` of two or more bytes, kept out of line so the one-byte case inlines into hot loops.
#[inline(never)]
fn get_long_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
        shift += 7;
    }
    None
}

#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[inline]
pub fn get_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = get_varint(buf)? as usize;
    if buf.len() < n {
        return None;
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Some(a)
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Writes key bytes for humans in messages: valid UTF-8 as is, anything else escaped.
pub fn show_key(key: &[u8]) -> String {
    const MAX: usize = 200;
    let shown = &key[..key.len().min(MAX)];
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if std::str::from_utf8(shown).is_err() {
        s = shown.escape_ascii().to_string();
    }
    if key.len() > MAX {
        s.push_str(&format!("...({} bytes)", key.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_edges() {
        for v in [0u64, 1, 127, 128, 255, 16383, 16384, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut s = &b[..];
            assert_eq!(get_varint(&mut s), Some(v));
            assert!(s.is_empty());
            // Truncated encodings are detected, not misread.
            if b.len() > 1 {
                let mut t = &b[..b.len() - 1];
                assert_eq!(get_varint(&mut t), None);
            }
        }
    }

    #[test]
    fn meta_roundtrip() {
        let cases = [
            Meta::default(),
            Meta { size: Some(0), ..Default::default() },
            Meta {
                size: Some(1 << 40),
                etag: Some(b"\"d41d8cd98f00b204e9800998ecf8427e\"".to_vec()),
                mtime: Some(-5),
                origin: Some(vec![0xff, 0, b'\n']),
                class: Some(b"STANDARD".to_vec()),
            },
            Meta { mtime: Some(i64::MIN), origin: Some(vec![]), ..Default::default() },
        ];
        for m in cases {
            let b = m.to_bytes();
            assert_eq!(Meta::decode(&b).unwrap(), m);
            if b.len() > 1 {
                assert!(Meta::decode(&b[..b.len() - 1]).is_err(), "truncation of {m:?} not detected");
            }
        }
    }

    #[test]
    fn schema_names() {
        let s = Schema::from_names("size,etag,origin".split(',')).unwrap();
        assert_eq!(s.to_string(), "key,size,etag,origin");
        assert!(Schema::from_names(["bogus"]).is_err());
    }

    #[test]
    fn show_key_escapes_invalid_utf8() {
        assert_eq!(show_key(b"abc"), "abc");
        assert_eq!(show_key(b"a\xffb"), "a\\xffb");
    }
}
