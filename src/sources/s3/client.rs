//! An aws-sdk-s3 client built the way AWS tools build one: the default credential chain (environment,
//! shared config/credentials files and `--profile`, SSO, web identity, IMDS), `--region` or the
//! configured region, and `--endpoint-url` for S3-compatible servers, which then get path-style
//! addressing (Garage, Ceph, MinIO rarely serve virtual-host buckets).
//!
//! The SDK's own retries are turned off: the lister retries pages itself so it can count every retry,
//! slow every stream down on `503 SlowDown`, and report a page that never succeeded. Checksums are
//! computed and validated only when an operation requires them: Garage and Ceph reject the SDK's
//! default streaming checksums on uploads. The HTTP client is the SDK's default one wrapped by
//! [`super::listxml::capture_client`], which is inert unless the lister asks for a body.

use crate::error::{Error, Result};
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use std::time::Duration;

/// How to reach S3. Every field is optional: `Default` means "like the aws CLI with no flags".
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Path-style addressing; `None` = on when `endpoint_url` is set.
    pub path_style: Option<bool>,
    /// Timeout of one HTTP attempt (a LIST page). `None` = 120 s.
    pub attempt_timeout: Option<Duration>,
}

/// Region used when neither `--region` nor the AWS configuration names one.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Builds the client. Needs a tokio runtime (credential providers are async).
pub async fn build(opts: &ClientOptions) -> Result<aws_sdk_s3::Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(u) = &opts.endpoint_url {
        loader = loader.endpoint_url(u);
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(opts.attempt_timeout.unwrap_or(Duration::from_secs(120)))
                .build(),
        )
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .force_path_style(opts.path_style.unwrap_or(opts.endpoint_url.is_some()));
    if shared.region().is_none() {
        b = b.region(Region::new(FALLBACK_REGION));
    }
    if shared.credentials_provider().is_none() {
        return Err(Error::Usage(
            "no AWS credentials: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a --profile, or an instance role"
                .into(),
        ));
    }
    // The SDK's default HTTPS client (hyper 1, rustls with aws-lc, proxy from the environment), wrapped
    // so the lister can take ListObjectsV2 bodies and parse them itself (see `listxml`).
    let inner = aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        use aws_smithy_http_client::{proxy::ProxyConfig, tls, ConnectorBuilder};
        let mut cb =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        cb.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            cb.set_sleep_impl(c.sleep_impl());
        }
        cb.set_proxy_config(Some(ProxyConfig::from_env()));
        cb.build()
    });
    b = b.http_client(super::listxml::capture_client(inner));
    let conf = b.build();
    Ok(aws_sdk_s3::Client::from_conf(conf))
}
