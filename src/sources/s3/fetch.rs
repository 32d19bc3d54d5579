//! One ListObjectsV2 page, retried: the request goes through the SDK (credentials, signing, timeouts),
//! its body is captured and parsed by [`super::listxml`], and a page that fails is retried with
//! backoff and jitter until [`RetryPolicy::retries`]. A `503 SlowDown` pauses every stream
//! ([`SharedPause`]). A page that still fails is returned as an error: the caller reports it and leaves
//! its range unfinished. A failed page is never skipped (a skipped page would show up as "missing" keys).

use super::listxml::{Page, PageInfo};
use super::Cutoff;
use crate::limit::{Backoff, SharedPause};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::EncodingType;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Retries of one page: up to `retries` more attempts, sleeping a random time in
/// `[0, min(cap, base * 2^attempt))` before each ("full jitter").
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The sleeps between attempts: full jitter, doublings stop at 2^20 (the cap is reached long before).
    pub fn backoff(&self) -> Backoff {
        Backoff { base: self.base, cap: self.cap, max_doublings: 20, jitter: [0.0, 1.0] }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 10, base: Duration::from_millis(100), cap: Duration::from_secs(20) }
    }
}

/// Fetches pages of one bucket and prefix, counting what it did.
pub struct Pager {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    cutoff: Cutoff,
    retry: RetryPolicy,
    pause: SharedPause,
    /// Pages received (parsed or not).
    pub pages: AtomicU64,
    pub retries: AtomicU64,
    pub slowdowns: AtomicU64,
}

impl Pager {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str, cutoff: Cutoff, retry: RetryPolicy) -> Pager {
        Pager {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            cutoff,
            retry,
            pause: SharedPause::default(),
            pages: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            slowdowns: AtomicU64::new(0),
        }
    }

    /// One page into `page`: the first of a range (`start_after`) or the next one (`token`). `Err` = the
    /// page failed for good after the retries (already counted), with why.
    pub async fn fetch(
        &self,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: i32,
        page: &mut Page,
    ) -> std::result::Result<PageInfo, String> {
        let mut attempt = 0u32;
        loop {
            self.pause.wait().await;
            let mut req =
                self.client.list_objects_v2().bucket(&self.bucket).max_keys(max_keys).encoding_type(EncodingType::Url);
            if !self.prefix.is_empty() {
                req = req.prefix(&self.prefix);
            }
            match token {
                Some(t) => req = req.continuation_token(t),
                None => {
                    if let Some(s) = start_after {
                        req = req.start_after(s);
                    }
                }
            }
            let (retryable, slow, msg) = match super::listxml::capture(req.send()).await {
                (Ok(_), Some(body)) => match page.parse(&body.into_bytes(), &self.cutoff) {
                    // An empty truncated page is normal (Ceph returns them while it skips index entries),
                    // but one whose continuation is this very request would be asked again forever.
                    Ok(info) if page.recs.is_empty() && info.truncated && info.next_token.as_deref() == token => {
                        self.pages.fetch_add(1, Relaxed);
                        (true, false, "an empty truncated page handed back the continuation it was asked with".into())
                    }
                    Ok(info) => {
                        self.pause.ok();
                        self.pages.fetch_add(1, Relaxed);
                        return Ok(info);
                    }
                    Err(e) => (true, false, format!("unreadable ListObjectsV2 response: {e}")),
                },
                // The capturing connector did not see this request: a bug, not a page to skip.
                (Ok(_), None) => return Err("internal error: the ListObjectsV2 response body was not captured".into()),
                (Err(e), _) => {
                    let (retryable, slow) = classify(&e);
                    (retryable, slow, format!("{}", DisplayErrorContext(&e)))
                }
            };
            if slow {
                self.slowdowns.fetch_add(1, Relaxed);
                self.pause.slow_down();
            }
            if !retryable || attempt >= self.retry.retries {
                return Err(format!("after {} attempts: {msg}", attempt + 1));
            }
            let sleep = self.retry.backoff().delay(attempt);
            self.retries.fetch_add(1, Relaxed);
            attempt += 1;
            tokio::time::sleep(sleep).await;
        }
    }
}

/// Whether an S3 error is worth another attempt, and whether it says "slow down" to every stream.
pub fn classify<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (bool, bool) {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = Some(se.raw().status().as_u16());
            let slow = status == Some(503) || status == Some(429) || code == "SlowDown" || code == "Throttling";
            // A 2xx that could not be parsed (truncated or garbled body) is worth another try too.
            let garbled = code.is_empty() && status.is_some_and(|s| (200..300).contains(&s));
            let retryable = slow
                || garbled
                || status.is_some_and(|s| s >= 500)
                || matches!(code, "InternalError" | "RequestTimeout");
            (retryable, slow)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (true, false),
        _ => (false, false),
    }
}
