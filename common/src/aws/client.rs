//! The SDK configuration and its HTTPS client.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// TCP connect timeout of every AWS client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTPS client of every AWS client: rustls on ring, the crypto the rest of
/// the workspace uses (the SDK's default would pull in aws-lc). Plain `http://`
/// endpoints (emulators such as moto's server) work too.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Load the standard AWS configuration (credentials chain, profile, region,
/// `AWS_ENDPOINT_URL`) with [`https_client`]. A `region` given here keeps the
/// loader from asking instance metadata for one. Nothing is sent to AWS.
pub async fn load(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// How a client talks to AWS, on top of the loaded configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Region to use instead of the configuration's; `None` keeps it.
    pub region: Option<String>,
    /// Region to use when neither `region` nor the configuration names one.
    pub fallback_region: Option<String>,
    /// Endpoint of every API (an emulator); `None` keeps the configuration's.
    pub endpoint_url: Option<String>,
    /// Attempts per call, the first included, under the SDK's standard retry
    /// mode (exponential backoff with jitter; the SDK's throttling and transient
    /// errors retried).
    pub max_attempts: u32,
    /// Limit on one HTTP attempt.
    pub attempt_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            region: None,
            fallback_region: None,
            endpoint_url: None,
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// `sdk` with `settings` applied: standard retries, [`CONNECT_TIMEOUT`] and the
/// attempt timeout, the region and endpoint overrides, and [`https_client`] when
/// the configuration has no HTTP client yet (one a test built by hand). Every
/// service client built from the result (`aws_sdk_x::config::Builder::from`)
/// shares these.
pub fn configure(sdk: &SdkConfig, settings: &ClientSettings) -> SdkConfig {
    let mut b = sdk
        .to_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        );
    if sdk.http_client().is_none() {
        b = b.http_client(https_client());
    }
    if let Some(r) = &settings.region {
        b = b.region(Region::new(r.clone()));
    } else if sdk.region().is_none()
        && let Some(r) = &settings.fallback_region
    {
        b = b.region(Region::new(r.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        b = b.endpoint_url(url.clone());
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_over_the_loaded_configuration() {
        let bare = SdkConfig::builder().build();
        let s = ClientSettings {
            fallback_region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            max_attempts: 7,
            attempt_timeout: Duration::from_secs(3),
            ..ClientSettings::default()
        };
        let c = configure(&bare, &s);
        assert!(c.http_client().is_some());
        assert_eq!(c.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(c.retry_config().map(|r| r.max_attempts()), Some(7));
        let t = c.timeout_config().expect("timeouts set");
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(3)));

        // A region of the configuration wins over the fallback, an explicit one over both.
        let eu = SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .build();
        assert_eq!(
            configure(&eu, &s).region().map(|r| r.as_ref()),
            Some("eu-west-1")
        );
        let explicit = ClientSettings {
            region: Some("ap-south-1".into()),
            ..s
        };
        assert_eq!(
            configure(&eu, &explicit).region().map(|r| r.as_ref()),
            Some("ap-south-1")
        );
    }
}
