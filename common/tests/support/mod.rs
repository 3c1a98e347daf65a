//! What the queue test binaries share: the AWS configuration and raw client for
//! moto, and the small steps every backend's tests repeat. Servers, ports and
//! names come from `scanfleet_testkit`.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use aws_config::SdkConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use scanfleet_common::queue::{DeadLetter, Delivery, JobQueue, Nack};

/// AWS configuration for moto: dummy static credentials, us-east-1. Built here
/// rather than read from the environment so that no test changes the process
/// environment and nothing asks instance metadata for credentials.
pub fn moto_sdk() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "scanfleet-tests",
        )))
        .build()
}

/// A plain SQS client of the moto server at `endpoint`, outside the backend: for
/// making queues by hand and reading their attributes back.
pub fn raw_sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&moto_sdk())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Nack `d` straight to the dead-letter queue with `reason`.
pub async fn dead_letter(q: &(impl JobQueue + ?Sized), d: &Delivery, reason: &str) {
    q.nack(
        d,
        Nack::DeadLetter {
            reason: reason.into(),
        },
    )
    .await
    .expect("nack to the dead-letter queue");
}

/// A dead letter's zone, payload and reason, for comparing in one assert.
pub fn parts(d: &DeadLetter) -> (&str, &[u8], &str) {
    (d.zone.as_str(), d.payload.as_slice(), d.reason.as_str())
}
