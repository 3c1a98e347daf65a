//! What the queue test binaries share: the AWS configuration and raw client for
//! moto, and the small steps every backend's tests repeat. Servers, ports and
//! names come from `scanfleet_testkit`.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::QueueAttributeName;
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

/// Every attribute of queue `name`, read with `raw` (see [`raw_sqs`]).
pub async fn queue_attributes(
    raw: &aws_sdk_sqs::Client,
    name: &str,
) -> HashMap<QueueAttributeName, String> {
    let url = raw.get_queue_url().queue_name(name).send().await.unwrap();
    raw.get_queue_attributes()
        .queue_url(url.queue_url().unwrap())
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes()
        .cloned()
        .unwrap_or_default()
}

/// Receive `n` messages of `zone`, each on its first delivery, and ack them;
/// their payloads, sorted (standard SQS queues do not keep order).
pub async fn take_first_deliveries(
    q: &(impl JobQueue + ?Sized),
    zone: &str,
    n: usize,
) -> Vec<Vec<u8>> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let d = q
            .receive(zone, Duration::from_secs(5))
            .await
            .expect("receive")
            .unwrap_or_else(|| panic!("a message on zone {zone}"));
        assert_eq!((d.zone.as_str(), d.deliveries), (zone, 1));
        q.ack(&d).await.unwrap();
        got.push(d.payload);
    }
    got.sort();
    got
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
