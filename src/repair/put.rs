//! The S3 side: HEAD, and PUT of an in-memory body with Content-MD5 (the server verifies the bytes),
//! multipart above a threshold with a Content-MD5 per part, Content-Type sniffed from the first bytes.
//!
//! Each function here is one request (or, for multipart, one request per step through [`Retry`]), and
//! turns SDK errors into a [`RequestError`]: status, S3 error code, whether to retry, whether it means "slow
//! down". The client is `sources::s3::client::build`'s: SDK retries off (ours count and throttle) and
//! checksums only when required (Garage rejects the SDK's streaming checksums; Content-MD5 is the
//! portable way to have the server check the body).

use super::retry::{RequestError, Retry};
use super::throttle::Side;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};

impl RequestError {
    /// A failed S3 request: status and S3 error code, and whether to retry / slow down.
    fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        what: &str,
        key: &str,
        e: SdkError<E, HttpResponse>,
    ) -> RequestError {
        let ctx = |m: String| format!("{what} {key:?}: {m}");
        match &e {
            SdkError::ServiceError(se) => {
                let status = status_of(&e);
                let code = se.err().code().map(str::to_string);
                let message = se.err().message().unwrap_or("");
                let s = status.unwrap_or(0);
                let load = s == 503 || s == 429 || code.as_deref() == Some("SlowDown");
                let retry = load
                    || matches!(s, 500 | 502 | 504 | 408)
                    || code.as_deref().is_some_and(|c| matches!(c, "InternalError" | "RequestTimeout"));
                RequestError {
                    status,
                    msg: ctx(format!(
                        "{s} {}{}{message}",
                        code.as_deref().unwrap_or(""),
                        if message.is_empty() { "" } else { ": " }
                    )),
                    code,
                    retry,
                    load,
                }
            }
            SdkError::TimeoutError(_) => {
                RequestError { status: None, code: None, msg: ctx("timeout".into()), retry: true, load: true }
            }
            SdkError::DispatchFailure(d) => {
                let load = d.is_timeout();
                RequestError {
                    status: None,
                    code: None,
                    msg: ctx(format!("connection: {}", aws_sdk_s3::error::DisplayErrorContext(&e))),
                    retry: true,
                    load,
                }
            }
            SdkError::ResponseError(_) => RequestError {
                status: status_of(&e),
                code: None,
                msg: ctx(format!("bad response: {}", aws_sdk_s3::error::DisplayErrorContext(&e))),
                retry: true,
                load: false,
            },
            _ => RequestError {
                status: None,
                code: None,
                msg: ctx(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
                retry: false,
                load: false,
            },
        }
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// What a HEAD saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

/// A completed upload.
#[derive(Clone, Debug)]
pub struct Put {
    pub etag: Option<String>,
    /// 0 = single PUT.
    pub parts: u32,
}

/// What to upload: the body in memory (retries resend it), its MD5 and headers.
pub struct Upload {
    pub body: Bytes,
    pub md5: [u8; 16],
    pub content_type: Option<String>,
    /// Ask the server to refuse if the key exists (412; Garage ignores it).
    pub if_none_match: bool,
}

pub struct Target {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// Bodies larger than this go multipart.
    pub multipart_threshold: usize,
    pub part_size: usize,
}

/// The blob's MD5.
pub fn md5(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

pub fn md5_b64(d: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// The ETag S3 gives a multipart upload of `body` cut into `part_size` parts: MD5 of the parts' binary
/// MD5s, `-N`. (Equal to `md5(body)` only as a plain hex MD5 when not multipart.)
pub fn multipart_etag(body: &[u8], part_size: usize) -> String {
    let mut all = Vec::new();
    let mut n = 0;
    for p in body.chunks(part_size.max(1)) {
        all.extend_from_slice(&md5(p));
        n += 1;
    }
    format!("{}-{n}", crate::hex::encode(&md5(&all)))
}

/// Content-Type from magic bytes: jpeg, png, gif, webp; `None` for anything else.
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

impl Target {
    /// HEAD `key`: `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<Head>, RequestError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some(Head {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(unquote),
                content_type: o.content_type().map(str::to_string),
            })),
            Err(e) => {
                if status_of(&e) == Some(404) {
                    return Ok(None);
                }
                Err(RequestError::from_sdk("HEAD", key, e))
            }
        }
    }

    /// The size of part 1 of a multipart object (`HEAD ?partNumber=1`), from which its ETag can be
    /// recomputed. `None` when the server does not answer per-part HEADs.
    pub async fn first_part_size(&self, key: &str) -> Result<Option<u64>, RequestError> {
        match self.client.head_object().bucket(&self.bucket).key(key).part_number(1).send().await {
            Ok(o) => Ok(o.content_length().filter(|l| *l > 0).map(|l| l as u64)),
            Err(e) => match status_of(&e) {
                Some(400 | 404 | 416 | 501) => Ok(None),
                _ => Err(RequestError::from_sdk("HEAD partNumber=1", key, e)),
            },
        }
    }

    /// Uploads `up.body` under `key` (single PUT or multipart), each request retried by `retry`.
    pub async fn put(
        &self,
        retry: &Retry<'_>,
        attempts: &mut u32,
        key: &str,
        up: &Upload,
    ) -> Result<Put, RequestError> {
        let (body, md5sum, content_type, if_none_match) =
            (&up.body, &up.md5, up.content_type.as_deref(), up.if_none_match);
        if body.len() > self.multipart_threshold {
            return self.put_multipart(retry, attempts, key, body, content_type, if_none_match).await;
        }
        let b64 = md5_b64(md5sum);
        let want = crate::hex::encode(md5sum);
        let out = retry
            .run(Side::S3, attempts, || {
                let mut req = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(body.clone()))
                    .content_md5(&b64)
                    .content_length(body.len() as i64);
                if let Some(ct) = content_type {
                    req = req.content_type(ct);
                }
                if if_none_match {
                    req = req.if_none_match("*");
                }
                async move { req.send().await.map_err(|e| RequestError::from_sdk("PUT", key, e)) }
            })
            .await?;
        let etag = out.e_tag().map(unquote);
        if let Some(e) = &etag {
            if !e.eq_ignore_ascii_case(&want) {
                return Err(RequestError {
                    status: None,
                    code: None,
                    msg: format!("PUT {key:?}: server ETag {e} is not the body's MD5 {want}"),
                    retry: false,
                    load: false,
                });
            }
        }
        Ok(Put { etag, parts: 0 })
    }

    async fn put_multipart(
        &self,
        retry: &Retry<'_>,
        attempts: &mut u32,
        key: &str,
        body: &Bytes,
        content_type: Option<&str>,
        if_none_match: bool,
    ) -> Result<Put, RequestError> {
        let created = retry
            .run(Side::S3, attempts, || {
                let mut req = self.client.create_multipart_upload().bucket(&self.bucket).key(key);
                if let Some(ct) = content_type {
                    req = req.content_type(ct);
                }
                async move { req.send().await.map_err(|e| RequestError::from_sdk("CreateMultipartUpload", key, e)) }
            })
            .await?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let r = self.upload_parts(retry, attempts, key, body, &upload_id, if_none_match).await;
        if r.is_err() {
            // Best effort: an unfinished upload only costs storage until a lifecycle rule removes it.
            let _ =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
        }
        r
    }

    async fn upload_parts(
        &self,
        retry: &Retry<'_>,
        attempts: &mut u32,
        key: &str,
        body: &Bytes,
        upload_id: &str,
        if_none_match: bool,
    ) -> Result<Put, RequestError> {
        let mut parts = Vec::new();
        let ps = self.part_size.max(1);
        let mut off = 0;
        let mut n = 0i32;
        while off < body.len() {
            n += 1;
            let end = (off + ps).min(body.len());
            let part = body.slice(off..end);
            let sum = md5(&part);
            let b64 = md5_b64(&sum);
            let out = retry
                .run(Side::S3, attempts, || {
                    let req = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(n)
                        .content_md5(&b64)
                        .content_length(part.len() as i64)
                        .body(ByteStream::from(part.clone()));
                    async move { req.send().await.map_err(|e| RequestError::from_sdk("UploadPart", key, e)) }
                })
                .await?;
            parts.push(CompletedPart::builder().part_number(n).set_e_tag(out.e_tag().map(str::to_string)).build());
            off = end;
        }
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let out = retry
            .run(Side::S3, attempts, || {
                let mut req = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(done.clone());
                if if_none_match {
                    req = req.if_none_match("*");
                }
                async move { req.send().await.map_err(|e| RequestError::from_sdk("CompleteMultipartUpload", key, e)) }
            })
            .await?;
        Ok(Put { etag: out.e_tag().map(unquote), parts: n as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_images_only() {
        assert_eq!(sniff(b"\xff\xd8\xff\xe0rest"), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"GIF89a.."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVE"), None);
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn md5_and_multipart_etag() {
        assert_eq!(crate::hex::encode(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_b64(&md5(b"")), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let body = vec![7u8; 10];
        let mut cat = md5(&body[..4]).to_vec();
        cat.extend_from_slice(&md5(&body[4..8]));
        cat.extend_from_slice(&md5(&body[8..]));
        assert_eq!(multipart_etag(&body, 4), format!("{}-3", crate::hex::encode(&md5(&cat))));
    }
}
