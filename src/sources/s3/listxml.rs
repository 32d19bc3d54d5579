//! ListObjectsV2 responses parsed by keyrecon, not by the SDK.
//!
//! Profiling a 1M-object listing showed ~70% of the lister's CPU in the SDK's XML deserialisation
//! (a generic tokenizer, a `String` per field, a `Vec<Object>` per page). The request still goes through
//! the SDK (credentials, SigV4 signing, endpoint, timeouts, error parsing); only the body of a
//! successful ListObjectsV2 response is taken by a wrapping HTTP connector ([`capture_client`]) and
//! handed to the lister, the SDK gets an empty `<ListBucketResult/>` instead. The lister then parses
//! the bytes here with a byte-level scanner straight into its page arena: no allocation per key.
//!
//! ```text
//!  lister ── capture(send()) ──► SDK: sign, send ──► CaptureConnector ──► hyper ──► S3
//!     ▲                                                     │ 2xx and a capture is waiting:
//!     └──── body bytes (task-local slot) ◄──────────────────┘ body read whole, SDK gets an empty result
//! ```
//! Capture is opt-in per request (a tokio task-local set around `send()`), so every other request
//! (GetObject of inventories, errors, fixtures) is untouched. A request that should have been captured
//! but was not is an error, never an empty page.
//!
//! The parser understands what S3 servers send for ListObjectsV2: elements, attributes (ignored),
//! self-closing tags, the XML prolog, comments, CDATA, and the five named plus numeric character
//! references. Unknown elements (Owner, ChecksumAlgorithm, RestoreStatus, ...) are skipped at any depth.
//! Malformed input is an error naming the byte offset; the lister retries such a page like a garbled one.

use super::Cutoff;
use crate::record::{show_key, MetaRef};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::primitives::{AggregatedBytes, ByteStream, SdkBody};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::cell::RefCell;
use std::future::Future;

/// A ListObjectsV2 body that does not parse: what is wrong and at which byte offset. The lister retries
/// such a page like a garbled one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PageError(pub String);

type Result<T> = std::result::Result<T, PageError>;

macro_rules! bad {
    ($($t:tt)*) => { PageError(format!($($t)*)) };
}
macro_rules! fail {
    ($($t:tt)*) => { return Err(PageError(format!($($t)*))) };
}

tokio::task_local! {
    static CAPTURED: RefCell<Option<AggregatedBytes>>;
}

/// Runs `send` (an SDK request future) with capture on: returns its result and, if it was a 2xx
/// response, the raw body (the SDK saw an empty `<ListBucketResult/>`).
pub async fn capture<T>(send: impl Future<Output = T>) -> (T, Option<AggregatedBytes>) {
    CAPTURED
        .scope(RefCell::new(None), async move {
            let r = send.await;
            (r, CAPTURED.with(|c| c.borrow_mut().take()))
        })
        .await
}

/// Wraps `inner` so that requests made under [`capture`] hand their successful response body over.
pub fn capture_client(inner: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(CaptureClient(inner))
}

#[derive(Debug)]
struct CaptureClient(SharedHttpClient);

impl HttpClient for CaptureClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(CaptureConnector(self.0.http_connector(settings, components)))
    }
}

#[derive(Debug)]
struct CaptureConnector(SharedHttpConnector);

/// What the SDK deserialises instead of a captured body.
const EMPTY_RESULT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult></ListBucketResult>";

impl HttpConnector for CaptureConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let fut = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let mut resp: HttpResponse = fut.await?;
            let wanted = CAPTURED.try_with(|_| ()).is_ok();
            if !wanted || !resp.status().is_success() {
                return Ok(resp);
            }
            let body = resp.take_body();
            // A connection that breaks mid-body is an I/O error: the lister retries the page.
            let bytes = ByteStream::new(body).collect().await.map_err(|e| ConnectorError::io(e.into()))?;
            CAPTURED.with(|c| *c.borrow_mut() = Some(bytes));
            resp.headers_mut().remove("content-length");
            *resp.body_mut() = SdkBody::from(EMPTY_RESULT);
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// The parser

/// What a page says besides its objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub truncated: bool,
    pub next_token: Option<String>,
    /// `<EncodingType>url</EncodingType>`: keys are URL-encoded (and were decoded).
    pub url_encoded: bool,
}

/// One decoded page: keys and record metadata in one reused arena.
#[derive(Default)]
pub struct Page {
    pub arena: Vec<u8>,
    /// (key start, key end = meta start, meta end, in age window, size)
    pub recs: Vec<(usize, usize, usize, bool, u64)>,
    /// Raw (escaped) field spans of the body, per object; reused.
    raw: Vec<RawObject>,
    scratch: Vec<u8>,
}

/// Byte spans `(start, end)` into the body of one `<Contents>`'s fields; `None` = absent.
#[derive(Clone, Copy, Default)]
struct RawObject {
    key: Option<(usize, usize)>,
    mtime: Option<(usize, usize)>,
    etag: Option<(usize, usize)>,
    size: Option<(usize, usize)>,
    class: Option<(usize, usize)>,
}

impl Page {
    pub fn key(&self, i: usize) -> &[u8] {
        let r = self.recs[i];
        &self.arena[r.0..r.1]
    }
    pub fn meta(&self, i: usize) -> &[u8] {
        let r = self.recs[i];
        &self.arena[r.1..r.2]
    }

    /// Parses a ListObjectsV2 response body into this page (keys decoded, metadata encoded, checked to
    /// be strictly increasing). Errors name the byte offset.
    pub fn parse(&mut self, body: &[u8], cutoff: &Cutoff) -> Result<PageInfo> {
        self.arena.clear();
        self.recs.clear();
        self.raw.clear();
        let mut info = PageInfo::default();
        let mut token_span = None;
        scan(body, &mut self.raw, &mut info, &mut token_span)?;
        if let Some((s, e)) = token_span {
            self.scratch.clear();
            unescape_into(body, s, e, &mut self.scratch)?;
            info.next_token = Some(
                String::from_utf8(std::mem::take(&mut self.scratch))
                    .map_err(|_| bad!("NextContinuationToken is not UTF-8"))?,
            );
        }
        for (n, o) in self.raw.iter().enumerate() {
            let (ks, ke) = o.key.ok_or_else(|| bad!("object {n} of the page has no Key"))?;
            let start = self.arena.len();
            if info.url_encoded {
                self.scratch.clear();
                unescape_into(body, ks, ke, &mut self.scratch)?;
                url_decode_into(&self.scratch, &mut self.arena)
                    .map_err(|e| bad!("undecodable key {:?}: {e}", show_key(&self.scratch)))?;
            } else {
                unescape_into(body, ks, ke, &mut self.arena)?;
            }
            let kend = self.arena.len();
            let size = match o.size {
                Some((s, e)) => {
                    parse_size(&body[s..e]).ok_or_else(|| bad!("bad Size {:?} at byte {s}", show_key(&body[s..e])))?
                }
                None => 0,
            };
            let mtime = match o.mtime {
                Some((s, e)) => Some(
                    parse_mtime(&body[s..e])
                        .ok_or_else(|| bad!("bad LastModified {:?} at byte {s}", show_key(&body[s..e])))?,
                ),
                None => None,
            };
            self.scratch.clear();
            let etag = match o.etag {
                Some((s, e)) => {
                    unescape_into(body, s, e, &mut self.scratch)?;
                    let t = &self.scratch[..];
                    let t = t.strip_prefix(b"\"").unwrap_or(t);
                    let t = t.strip_suffix(b"\"").unwrap_or(t);
                    Some((t.as_ptr() as usize - self.scratch.as_ptr() as usize, t.len()))
                }
                None => None,
            };
            let class = o.class.map(|(s, e)| &body[s..e]);
            MetaRef {
                size: Some(size),
                etag: etag.map(|(off, len)| &self.scratch[off..off + len]),
                mtime,
                origin: None,
                class,
            }
            .encode(&mut self.arena);
            self.recs.push((start, kend, self.arena.len(), cutoff.admits(mtime), size));
        }
        for w in self.recs.windows(2) {
            if self.arena[w[0].0..w[0].1] >= self.arena[w[1].0..w[1].1] {
                fail!(
                    "server returned keys out of order: {:?} then {:?}",
                    show_key(&self.arena[w[0].0..w[0].1]),
                    show_key(&self.arena[w[1].0..w[1].1])
                );
            }
        }
        Ok(info)
    }
}

fn parse_size(b: &[u8]) -> Option<u64> {
    let b = trim(b);
    if b.first() == Some(&b'-') {
        // The SDK's reading was `max(0)`: a negative size is clamped, not an error.
        return b[1..].iter().all(u8::is_ascii_digit).then_some(0);
    }
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64))
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &b[s..e]
}

/// `2024-05-01T10:00:00.123Z` (what S3 servers send) without allocating; anything else RFC 3339 through
/// the SDK's parser. Microseconds since the epoch.
fn parse_mtime(b: &[u8]) -> Option<i64> {
    let b = trim(b);
    fast_rfc3339_utc(b).or_else(|| super::parse_time_us(std::str::from_utf8(b).ok()?).ok())
}

fn fast_rfc3339_utc(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || *b.last()? != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + (d - b'0') as i64))
    };
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut us = 0i64;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        let frac = rest.strip_prefix(b".")?;
        if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Microseconds, truncating digits beyond the sixth like the SDK's DateTime does.
        for i in 0..6 {
            us = us * 10 + frac.get(i).map_or(0, |d| (d - b'0') as i64);
        }
    }
    let days = crate::civil::days_from_civil(y, mo, d);
    Some(((days * 86400 + h * 3600 + mi * 60 + s) * 1_000_000) + us)
}

/// Which leaf we are in while scanning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    Key,
    Mtime,
    Etag,
    Size,
    Class,
    Truncated,
    Token,
    Encoding,
}

/// One pass over the document: records the raw spans of the fields we need. Text of a field is the span
/// between its start and end tags (entities and CDATA are resolved later by [`unescape_into`]).
fn scan(b: &[u8], objects: &mut Vec<RawObject>, info: &mut PageInfo, token: &mut Option<(usize, usize)>) -> Result<()> {
    let mut depth = 0usize;
    let mut root_seen = false;
    // depth 1 = children of ListBucketResult; 2 = children of a Contents.
    let mut in_contents = false;
    let mut field = Field::None;
    let mut field_start = 0usize;
    let mut i = 0usize;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let lt = i + off;
        let rest = &b[lt + 1..];
        if rest.starts_with(b"?") {
            i = lt + 2 + find(&b[lt + 2..], b"?>").ok_or_else(|| bad!("unterminated <? at byte {lt}"))? + 2;
            continue;
        }
        if rest.starts_with(b"!--") {
            i = lt + 4 + find(&b[lt + 4..], b"-->").ok_or_else(|| bad!("unterminated comment at byte {lt}"))? + 3;
            continue;
        }
        if rest.starts_with(b"![CDATA[") {
            // Part of a field's text: skip over it (resolved by unescape_into).
            i = lt + 9 + find(&b[lt + 9..], b"]]>").ok_or_else(|| bad!("unterminated CDATA at byte {lt}"))? + 3;
            continue;
        }
        if rest.starts_with(b"!") {
            i = lt + 2 + memchr::memchr(b'>', &b[lt + 2..]).ok_or_else(|| bad!("unterminated <! at byte {lt}"))? + 1;
            continue;
        }
        let gt = lt + 1 + memchr::memchr(b'>', rest).ok_or_else(|| bad!("unterminated tag at byte {lt}"))?;
        let closing = rest.first() == Some(&b'/');
        let self_closing = !closing && b[gt - 1] == b'/';
        let name_start = lt + 1 + closing as usize;
        let name_end =
            b[name_start..gt].iter().position(|c| c.is_ascii_whitespace() || *c == b'/').map_or(gt, |p| name_start + p);
        let name = local_name(&b[name_start..name_end]);
        if name.is_empty() {
            fail!("tag without a name at byte {lt}");
        }
        i = gt + 1;
        if closing {
            if depth == 0 {
                fail!("unbalanced </{}> at byte {lt}", String::from_utf8_lossy(name));
            }
            if field != Field::None && depth == if in_contents { 3 } else { 2 } {
                let span = (field_start, lt);
                let o = objects.last_mut();
                match (field, o) {
                    (Field::Key, Some(o)) => o.key = Some(span),
                    (Field::Mtime, Some(o)) => o.mtime = Some(span),
                    (Field::Etag, Some(o)) => o.etag = Some(span),
                    (Field::Size, Some(o)) => o.size = Some(span),
                    (Field::Class, Some(o)) => o.class = Some(span),
                    (Field::Truncated, _) => info.truncated = trim(&b[span.0..span.1]).eq_ignore_ascii_case(b"true"),
                    (Field::Token, _) => *token = Some(span),
                    (Field::Encoding, _) => info.url_encoded = trim(&b[span.0..span.1]).eq_ignore_ascii_case(b"url"),
                    _ => {}
                }
                field = Field::None;
            }
            depth -= 1;
            if depth == 1 && in_contents {
                in_contents = false;
            }
            continue;
        }
        if depth == 0 {
            if root_seen {
                fail!("a second root element at byte {lt}");
            }
            if name != b"ListBucketResult" {
                fail!("root element is <{}>, not <ListBucketResult>", String::from_utf8_lossy(name));
            }
            root_seen = true;
        }
        if self_closing {
            // An empty element: `<Prefix/>`, `<StorageClass/>`. Only empty Contents matters (an object
            // without a key: reported below).
            if depth == 1 && name == b"Contents" {
                objects.push(RawObject::default());
            } else if depth == 2 && in_contents {
                let o = objects.last_mut().expect("in Contents");
                let empty = Some((gt, gt));
                match name {
                    b"Key" => o.key = empty,
                    b"ETag" => o.etag = empty,
                    b"StorageClass" => o.class = empty,
                    _ => {}
                }
            }
            continue;
        }
        depth += 1;
        field = Field::None;
        if depth == 2 {
            match name {
                b"Contents" => {
                    in_contents = true;
                    objects.push(RawObject::default());
                }
                b"IsTruncated" => field = Field::Truncated,
                b"NextContinuationToken" => field = Field::Token,
                b"EncodingType" => field = Field::Encoding,
                _ => {}
            }
        } else if depth == 3 && in_contents {
            field = match name {
                b"Key" => Field::Key,
                b"LastModified" => Field::Mtime,
                b"ETag" => Field::Etag,
                b"Size" => Field::Size,
                b"StorageClass" => Field::Class,
                _ => Field::None,
            };
        }
        field_start = gt + 1;
    }
    if depth != 0 || !root_seen {
        fail!("truncated document ({} bytes, {} elements still open)", b.len(), depth);
    }
    if !trim(&b[i..]).is_empty() {
        fail!("text after the root element at byte {i}");
    }
    Ok(())
}

fn local_name(n: &[u8]) -> &[u8] {
    n.iter().rposition(|&c| c == b':').map_or(n, |p| &n[p + 1..])
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, needle)
}

/// Appends the text of `b[s..e]` with character references and CDATA sections resolved.
fn unescape_into(b: &[u8], s: usize, e: usize, out: &mut Vec<u8>) -> Result<()> {
    let t = &b[s..e];
    if memchr::memchr2(b'&', b'<', t).is_none() {
        out.extend_from_slice(t);
        return Ok(());
    }
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            b'&' => {
                let semi = memchr::memchr(b';', &t[i..])
                    .ok_or_else(|| bad!("unterminated character reference at byte {}", s + i))?;
                let ent = &t[i + 1..i + semi];
                match ent {
                    b"amp" => out.push(b'&'),
                    b"lt" => out.push(b'<'),
                    b"gt" => out.push(b'>'),
                    b"quot" => out.push(b'"'),
                    b"apos" => out.push(b'\''),
                    _ => {
                        let cp = if let Some(h) = ent.strip_prefix(b"#x").or_else(|| ent.strip_prefix(b"#X")) {
                            std::str::from_utf8(h).ok().and_then(|h| u32::from_str_radix(h, 16).ok())
                        } else if let Some(d) = ent.strip_prefix(b"#") {
                            std::str::from_utf8(d).ok().and_then(|d| d.parse::<u32>().ok())
                        } else {
                            None
                        };
                        let c = cp.and_then(char::from_u32).ok_or_else(|| {
                            bad!("unknown character reference &{}; at byte {}", String::from_utf8_lossy(ent), s + i)
                        })?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
                i += semi + 1;
            }
            b'<' if t[i..].starts_with(b"<![CDATA[") => {
                let end = find(&t[i + 9..], b"]]>").ok_or_else(|| bad!("unterminated CDATA at byte {}", s + i))?;
                out.extend_from_slice(&t[i + 9..i + 9 + end]);
                i += 9 + end + 3;
            }
            b'<' if t[i..].starts_with(b"<!--") => {
                let end = find(&t[i + 4..], b"-->").ok_or_else(|| bad!("unterminated comment at byte {}", s + i))?;
                i += 4 + end + 3;
            }
            b'<' => fail!("markup inside a text field at byte {}", s + i),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(())
}

/// Decodes S3's `encoding-type=url` form (`%XX` escapes, `+` for space) onto `out` (listing pages and
/// inventory CSVs alike).
pub fn url_decode_into(s: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let h = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.ok_or_else(|| bad!("bad %-escape at byte {i}"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Meta;

    const AWS_STYLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix/><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>a%20b%2Bc+d</Key><LastModified>2024-05-01T10:00:00.123Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <Size>1234</Size><Owner><ID>x</ID><DisplayName>Key</DisplayName></Owner><StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents><Key>caf%C3%A9/%E6%97%A5</Key><LastModified>1970-01-01T00:00:01Z</LastModified><ETag>"e-2"</ETag><Size>0</Size><StorageClass>GLACIER</StorageClass></Contents>
  <!-- a comment with <Contents> inside -->
  <Contents><Key>x&amp;y%25</Key><Size>5</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;

    fn parse(body: &str) -> Result<(Page, PageInfo)> {
        let mut p = Page::default();
        let info = p.parse(body.as_bytes(), &Cutoff::default())?;
        Ok((p, info))
    }

    #[test]
    fn parses_an_aws_style_page() {
        let (p, info) = parse(AWS_STYLE).unwrap();
        assert_eq!(
            info,
            PageInfo {
                truncated: true,
                next_token: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()),
                url_encoded: true
            }
        );
        let keys: Vec<&[u8]> = (0..p.recs.len()).map(|i| p.key(i)).collect();
        assert_eq!(keys, [&b"a b+c d"[..], "café/日".as_bytes(), b"x&y%"]);
        let m0 = Meta::decode(p.meta(0)).unwrap();
        assert_eq!(m0.size, Some(1234));
        assert_eq!(m0.etag.as_deref(), Some(&b"9b2cf535f27731c974343645a3985328"[..]));
        assert_eq!(m0.mtime, Some(super::super::parse_time_us("2024-05-01T10:00:00.123Z").unwrap()));
        assert_eq!(m0.class.as_deref(), Some(&b"STANDARD"[..]));
        let m1 = Meta::decode(p.meta(1)).unwrap();
        assert_eq!((m1.mtime, m1.etag.as_deref(), m1.size), (Some(1_000_000), Some(&b"e-2"[..]), Some(0)));
        let m2 = Meta::decode(p.meta(2)).unwrap();
        assert_eq!((m2.mtime, m2.etag, m2.class, m2.size), (None, None, None, Some(5)), "absent fields stay absent");
    }

    #[test]
    fn keys_are_not_decoded_without_encoding_type_url() {
        let (p, info) = parse("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a%20b+c</Key></Contents><Contents><Key><![CDATA[b<&>]]></Key></Contents></ListBucketResult>").unwrap();
        assert!(!info.truncated && !info.url_encoded && info.next_token.is_none());
        assert_eq!((p.key(0), p.key(1)), (&b"a%20b+c"[..], &b"b<&>"[..]));
    }

    #[test]
    fn empty_and_odd_pages() {
        let (p, info) = parse("<ListBucketResult/>").unwrap();
        assert!(p.recs.is_empty() && !info.truncated);
        let (p, _) = parse("<?xml version='1.0'?>\n<s3:ListBucketResult xmlns:s3='x'><s3:Contents><s3:Key>k</s3:Key></s3:Contents></s3:ListBucketResult>\n").unwrap();
        assert_eq!(p.key(0), b"k", "namespace prefixes are ignored");
        let (p, _) =
            parse("<ListBucketResult><Contents><Key>&#x41;&#66;</Key><StorageClass/></Contents></ListBucketResult>")
                .unwrap();
        assert_eq!(p.key(0), b"AB");
        assert_eq!(Meta::decode(p.meta(0)).unwrap().class.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn malformed_pages_are_errors_not_short_pages() {
        let cases = [
            ("", "truncated"),
            ("<ListBucketResult><Contents><Key>a</Key></Contents>", "truncated"),
            ("<ListBucketResult><Contents><Key>a</Key></Contents><Contents><Key>b</Ke", "unterminated"),
            ("<Error><Code>SlowDown</Code></Error>", "not <ListBucketResult>"),
            ("<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", "no Key"),
            ("<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>", "character reference"),
            ("<ListBucketResult><Contents><Key>b</Key></Contents><Contents><Key>a</Key></Contents></ListBucketResult>", "out of order"),
            ("<ListBucketResult><Contents><Key>a</Key><Size>x1</Size></Contents></ListBucketResult>", "bad Size"),
            ("<ListBucketResult><Contents><Key>a</Key><LastModified>yesterday</LastModified></Contents></ListBucketResult>", "bad LastModified"),
            ("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%zz</Key></Contents></ListBucketResult>", "undecodable"),
        ];
        for (body, want) in cases {
            let e = format!("{:#}", parse(body).err().unwrap_or_else(|| panic!("{body:?} parsed")));
            assert!(e.contains(want), "{body:?}: {e}");
        }
    }

    #[test]
    fn fast_time_parser_agrees_with_the_sdk() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-11-22T05:01:02.1Z",
            "1999-12-31T12:00:00.123456789Z",
            "2100-03-01T00:00:00.000Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            assert_eq!(fast_rfc3339_utc(t.as_bytes()), Some(super::super::parse_time_us(t).unwrap()), "{t}");
        }
        assert_eq!(fast_rfc3339_utc(b"2024-05-01T10:00:00+02:00"), None, "anything but ...Z goes to the SDK parser");
        assert_eq!(
            parse_mtime(b"\n 2024-05-01T10:00:00Z "),
            Some(super::super::parse_time_us("2024-05-01T10:00:00Z").unwrap())
        );
        assert_eq!(fast_rfc3339_utc(b"2024-13-01T10:00:00Z"), None);
    }
}
