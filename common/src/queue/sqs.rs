//! Amazon SQS backend of [`JobQueue`]: one standard queue per network zone and a
//! shared dead-letter queue, all named after one base name.
//!
//! | zone | queue |
//! |---|---|
//! | `default` | `NAME` |
//! | `Z` | `NAME-Z` |
//! | (dead letters) | `NAME-dlq` |
//!
//! The lease is the SQS visibility timeout: `receive` leases one message for
//! [`SqsConfig::visibility_timeout`], `extend_lease` is ChangeMessageVisibility, a
//! retry makes the message visible again at once. The queues carry a redrive policy
//! to the dead-letter queue after [`SqsConfig::max_receive_count`] receives, so a
//! job whose worker keeps crashing ends there too; a job retried that often by a
//! live worker is dead-lettered explicitly, with a reason, before the redrive
//! policy would move it silently (and for emulators that do not redrive at all).
//!
//! Payloads are bytes, SQS bodies are text: a payload that is valid UTF-8 made of
//! the characters SQS allows (JSON envelopes always are) travels as is, anything
//! else as base64 marked by the `scanfleet-encoding` message attribute.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Region, SharedHttpClient};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::time::Instant;

use super::memory::DeadLetter;
use super::{Delivery, JobQueue, Nack, QueueError};

/// Longest long poll SQS allows for one ReceiveMessage.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(20);
/// Longest visibility timeout SQS allows, counted from the first receive.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
pub use crate::types::DEFAULT_ZONE;

/// Longest SQS queue name.
const MAX_QUEUE_NAME: usize = 80;
/// Suffix of the dead-letter queue; also why no zone may be called `dlq`.
const DLQ_SUFFIX: &str = "dlq";
/// Message attribute holding the reason a message was dead-lettered.
pub const ATTR_REASON: &str = "scanfleet-reason";
/// Message attribute holding the zone a dead-lettered message came from.
pub const ATTR_ZONE: &str = "scanfleet-zone";
/// Message attribute marking a base64 body; its value is `base64`.
pub const ATTR_ENCODING: &str = "scanfleet-encoding";
/// Entries per SendMessageBatch, an SQS limit.
const BATCH_ENTRIES: usize = 10;
/// Payload bytes per SendMessageBatch: the classic 256 KiB request limit, with room
/// for attributes.
const BATCH_BYTES: usize = 250 * 1024;
/// Dead letters are kept as long as SQS allows (14 days), longer than the zone
/// queues' default of 4 days, since SQS keeps a redriven message's enqueue time.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 60 * 60;
/// How long reading the dead-letter queue holds each message before deleting it.
const DLQ_READ_VISIBILITY_SECS: i32 = 30;
/// Longest reason kept on a dead letter, in characters.
const MAX_REASON_CHARS: usize = 1024;
/// TCP connect timeout of the HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach SQS and how the queues behave. Credentials are never configured
/// here: they come from the standard AWS provider chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsConfig {
    /// Endpoint override (an emulator such as moto). Without it, the endpoint of a
    /// full queue URL target, then `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` or the
    /// profile's endpoint, then the region's SQS endpoint.
    pub endpoint: Option<String>,
    /// Region override. Without it, the region of an `amazonaws.com` queue URL,
    /// then the provider chain (`AWS_REGION`, the profile, instance metadata).
    pub region: Option<String>,
    /// The lease: how long a received message stays invisible to other workers
    /// unless extended. Whole seconds (rounded up), 1 s to 12 h. Workers must
    /// heartbeat well within it (the worker extends every lease / 3).
    pub visibility_timeout: Duration,
    /// Deliveries after which a message goes to the dead-letter queue (the queues'
    /// redrive policy, and the explicit limit of `nack(Retry)`), 1 to 1000.
    pub max_receive_count: u32,
    /// Longest single ReceiveMessage long poll, at most 20 s (an SQS limit); a
    /// longer `receive` wait polls again. Zero means one short poll per receive.
    pub long_poll: Duration,
    /// Timeout of one HTTP attempt; must exceed `long_poll`.
    pub attempt_timeout: Duration,
    /// HTTP attempts per call (the SDK's standard retry with backoff), at least 1.
    pub max_attempts: u32,
}

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            endpoint: None,
            region: None,
            visibility_timeout: Duration::from_secs(60),
            max_receive_count: 5,
            long_poll: MAX_LONG_POLL,
            attempt_timeout: MAX_LONG_POLL + Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

impl SqsConfig {
    /// Check the limits SQS imposes, naming the field at fault.
    ///
    /// # Errors
    /// [`QueueError::Permanent`] for a value SQS would refuse or that cannot work.
    pub fn validate(&self) -> Result<(), QueueError> {
        let bad = |field: &str, why: String| {
            Err(QueueError::Permanent(format!("SQS config: {field} {why}")))
        };
        if self.visibility_timeout.is_zero() || self.visibility_timeout > MAX_VISIBILITY {
            return bad(
                "visibility_timeout",
                format!("is {:?}; SQS allows 1 s to 12 h", self.visibility_timeout),
            );
        }
        if !(1..=1000).contains(&self.max_receive_count) {
            return bad(
                "max_receive_count",
                format!("is {}; SQS allows 1 to 1000", self.max_receive_count),
            );
        }
        if self.long_poll > MAX_LONG_POLL {
            return bad(
                "long_poll",
                format!("is {:?}; SQS allows at most 20 s", self.long_poll),
            );
        }
        if self.attempt_timeout <= ceil_duration(self.long_poll) {
            return bad(
                "attempt_timeout",
                format!(
                    "is {:?}; it must exceed long_poll ({:?}) or every idle long poll times out",
                    self.attempt_timeout, self.long_poll
                ),
            );
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "is 0; it must be at least 1".into());
        }
        Ok(())
    }
}

/// How queue URLs are found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Locate {
    /// `sqs://NAME`: each queue's URL comes from GetQueueUrl.
    ByName,
    /// A full queue URL: every queue lives at this prefix (`<endpoint>/<account>/`)
    /// plus its name, as SQS URLs always do.
    Prefix(String),
}

/// A parsed `--queue` target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    name: String,
    locate: Locate,
    /// The endpoint a non-AWS queue URL points at (an emulator).
    endpoint: Option<String>,
    /// The region an `amazonaws.com` queue URL names.
    region: Option<String>,
}

/// The SQS job queue. Cheap to share behind an `Arc`; queue URLs are resolved on
/// first use and cached.
#[derive(Debug)]
pub struct SqsQueue {
    client: Client,
    /// The base name: the default zone's queue.
    name: String,
    locate: Locate,
    config: SqsConfig,
    /// Queue name -> queue URL.
    urls: RwLock<HashMap<String, String>>,
}

impl SqsQueue {
    /// Connect to `target`, `sqs://NAME` or a full queue URL
    /// (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or an emulator's
    /// `http://127.0.0.1:<port>/<account>/<name>`), with credentials, region and
    /// endpoint from the standard AWS configuration (environment, profile, instance
    /// role) under the overrides in `config`. Nothing is sent until first use.
    ///
    /// # Errors
    /// [`QueueError::Permanent`] for a malformed target, an invalid config or no
    /// region anywhere.
    pub async fn connect(target: &str, config: SqsConfig) -> Result<Self, QueueError> {
        config.validate()?;
        let parsed = parse_target(target)?;
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        // A known region keeps the loader from asking instance metadata for one.
        if let Some(region) = config.region.clone().or_else(|| parsed.region.clone()) {
            loader = loader.region(Region::new(region));
        }
        let sdk = loader.load().await;
        Self::build(parsed, config, &sdk)
    }

    /// Like [`SqsQueue::connect`], with an AWS configuration the caller already
    /// loaded (shared with other AWS clients, or made by a test).
    ///
    /// # Errors
    /// As [`SqsQueue::connect`].
    pub fn with_sdk_config(
        target: &str,
        config: SqsConfig,
        sdk: &SdkConfig,
    ) -> Result<Self, QueueError> {
        config.validate()?;
        Self::build(parse_target(target)?, config, sdk)
    }

    fn build(target: Target, config: SqsConfig, sdk: &SdkConfig) -> Result<Self, QueueError> {
        let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
        if sdk.http_client().is_none() {
            builder = builder.http_client(https_client());
        }
        if let Some(endpoint) = config.endpoint.clone().or_else(|| target.endpoint.clone()) {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(region) = config.region.clone().or_else(|| target.region.clone()) {
            builder = builder.region(Region::new(region));
        }
        builder = builder
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(config.attempt_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
        let conf = builder.build();
        if conf.region().is_none() {
            return Err(QueueError::Permanent(format!(
                "SQS queue {}: no AWS region: set AWS_REGION, a profile region or the queue's region setting",
                target.name
            )));
        }
        Ok(SqsQueue {
            client: Client::from_conf(conf),
            name: target.name,
            locate: target.locate,
            config,
            urls: RwLock::new(HashMap::new()),
        })
    }

    /// The base name (the default zone's queue).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration in force.
    pub fn config(&self) -> &SqsConfig {
        &self.config
    }

    /// The SQS queue name of `zone`.
    ///
    /// # Errors
    /// [`QueueError::Permanent`] when the zone cannot be part of a queue name: it
    /// is empty, is `dlq`, has characters other than `A-Za-z0-9_-`, or makes the
    /// name longer than 80 characters.
    pub fn queue_name(&self, zone: &str) -> Result<String, QueueError> {
        if zone == DEFAULT_ZONE {
            return Ok(self.name.clone());
        }
        if zone == DLQ_SUFFIX {
            return Err(QueueError::Permanent(format!(
                "zone {zone:?} is reserved: {}-{DLQ_SUFFIX} is the dead-letter queue",
                self.name
            )));
        }
        if zone.is_empty() || !zone.chars().all(is_name_char) {
            return Err(QueueError::Permanent(format!(
                "zone {zone:?} cannot be part of an SQS queue name: use only A-Z, a-z, 0-9, '-' and '_'"
            )));
        }
        let name = format!("{}-{zone}", self.name);
        if name.len() > MAX_QUEUE_NAME {
            return Err(QueueError::Permanent(format!(
                "SQS queue name {name} for zone {zone:?} is longer than {MAX_QUEUE_NAME} characters"
            )));
        }
        Ok(name)
    }

    /// The dead-letter queue's name.
    pub fn dlq_name(&self) -> String {
        format!("{}-{DLQ_SUFFIX}", self.name)
    }

    /// Create the dead-letter queue and the queues of `zones` (`default` is the
    /// base name), with the visibility timeout and a redrive policy to the
    /// dead-letter queue after `max_receive_count` receives. Idempotent: a queue
    /// that exists gets its attributes set to these.
    ///
    /// # Errors
    /// An invalid zone name, before anything is created; then any SQS error, with
    /// the queue and the operation named.
    pub async fn init<S: AsRef<str>>(&self, zones: &[S]) -> Result<(), QueueError> {
        let mut names = Vec::new();
        for zone in zones {
            let name = self.queue_name(zone.as_ref())?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let visibility = whole_secs(self.config.visibility_timeout).to_string();
        let dlq_name = self.dlq_name();
        let dlq_url = self
            .ensure_queue(
                &dlq_name,
                &[
                    (QueueAttributeName::VisibilityTimeout, visibility.clone()),
                    (
                        QueueAttributeName::MessageRetentionPeriod,
                        DLQ_RETENTION_SECS.to_string(),
                    ),
                ],
            )
            .await?;
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &dlq_name, e))?;
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| {
                QueueError::Permanent(format!(
                    "SQS GetQueueAttributes on queue {dlq_name}: no QueueArn in the answer"
                ))
            })?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": self.config.max_receive_count.to_string(),
        })
        .to_string();
        for name in names {
            self.ensure_queue(
                &name,
                &[
                    (QueueAttributeName::VisibilityTimeout, visibility.clone()),
                    (QueueAttributeName::RedrivePolicy, redrive.clone()),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Take up to `max` messages off the dead-letter queue (they are deleted), with
    /// the reason and zone they were dead-lettered with. A message moved there by
    /// the redrive policy has no recorded reason; its zone comes from SQS's
    /// `DeadLetterQueueSourceArn` where the service sets it, else it is empty.
    ///
    /// # Errors
    /// Any SQS error, with the queue and the operation named.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq_name = self.dlq_name();
        let url = self.url_of(&dlq_name).await?;
        let mut out = Vec::new();
        while out.len() < max {
            let want = (max - out.len()).min(BATCH_ENTRIES) as i32;
            let got = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(want)
                .wait_time_seconds(1)
                .visibility_timeout(DLQ_READ_VISIBILITY_SECS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| sdk_error("ReceiveMessage", &dlq_name, e))?;
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                let receipt = receipt_of(m, &dlq_name)?;
                let zone = string_attr(m, ATTR_ZONE)
                    .or_else(|| {
                        let source = m
                            .attributes()?
                            .get(&MessageSystemAttributeName::DeadLetterQueueSourceArn)?;
                        self.zone_of(source.rsplit(':').next()?)
                    })
                    .unwrap_or_default();
                let reason = string_attr(m, ATTR_REASON).unwrap_or_else(|| {
                    "moved to the dead-letter queue by the SQS redrive policy (receive limit reached)".to_string()
                });
                self.client
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteMessage", &dlq_name, e))?;
                out.push(DeadLetter {
                    zone,
                    payload: decode_body(m),
                    reason,
                });
            }
        }
        Ok(out)
    }

    /// The zone whose queue is called `queue`, if it is one of ours.
    fn zone_of(&self, queue: &str) -> Option<String> {
        if queue == self.name {
            return Some(DEFAULT_ZONE.to_string());
        }
        let zone = queue.strip_prefix(&self.name)?.strip_prefix('-')?;
        (zone != DLQ_SUFFIX).then(|| zone.to_string())
    }

    fn read_urls(&self) -> RwLockReadGuard<'_, HashMap<String, String>> {
        // The map holds plain strings; a panic elsewhere cannot leave it torn.
        self.urls.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_urls(&self) -> RwLockWriteGuard<'_, HashMap<String, String>> {
        self.urls.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of queue `name`: cached, derived from a full-URL target, or asked of
    /// GetQueueUrl.
    async fn url_of(&self, name: &str) -> Result<String, QueueError> {
        if let Some(url) = self.read_urls().get(name) {
            return Ok(url.clone());
        }
        let url = match &self.locate {
            Locate::Prefix(prefix) => format!("{prefix}{name}"),
            Locate::ByName => self
                .client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("GetQueueUrl", name, e))?
                .queue_url()
                .map(str::to_string)
                .ok_or_else(|| {
                    QueueError::Permanent(format!(
                        "SQS GetQueueUrl on queue {name}: no URL in the answer"
                    ))
                })?,
        };
        self.write_urls().insert(name.to_string(), url.clone());
        Ok(url)
    }

    /// The queue name and URL of `zone`.
    async fn zone_url(&self, zone: &str) -> Result<(String, String), QueueError> {
        let name = self.queue_name(zone)?;
        let url = self.url_of(&name).await?;
        Ok((name, url))
    }

    /// CreateQueue with `attrs`; if the queue exists with other attributes, set
    /// them. Caches and returns the URL.
    async fn ensure_queue(
        &self,
        name: &str,
        attrs: &[(QueueAttributeName, String)],
    ) -> Result<String, QueueError> {
        let mut create = self.client.create_queue().queue_name(name);
        for (k, v) in attrs {
            create = create.attributes(k.clone(), v);
        }
        let url = match create.send().await {
            Ok(out) => out.queue_url().map(str::to_string).ok_or_else(|| {
                QueueError::Permanent(format!(
                    "SQS CreateQueue on queue {name}: no URL in the answer"
                ))
            })?,
            Err(e) if matches!(e.code(), Some("QueueAlreadyExists" | "QueueNameExists")) => {
                let url = self
                    .client
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetQueueUrl", name, e))?
                    .queue_url()
                    .map(str::to_string)
                    .ok_or_else(|| {
                        QueueError::Permanent(format!(
                            "SQS GetQueueUrl on queue {name}: no URL in the answer"
                        ))
                    })?;
                self.client
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attrs.iter().cloned().collect()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("SetQueueAttributes", name, e))?;
                url
            }
            Err(e) => return Err(sdk_error("CreateQueue", name, e)),
        };
        self.write_urls().insert(name.to_string(), url.clone());
        Ok(url)
    }

    /// Send `payload` to the dead-letter queue with `reason` and `zone`, then delete
    /// the original. In that order: a failure in between leaves a duplicate dead
    /// letter, never a lost message.
    async fn dead_letter(
        &self,
        zone: &str,
        (name, url): (&str, &str),
        receipt: &str,
        payload: &[u8],
        reason: &str,
    ) -> Result<(), QueueError> {
        let dlq_name = self.dlq_name();
        let dlq_url = self.url_of(&dlq_name).await?;
        let body = Body::encode(payload, &dlq_name)?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&dlq_url)
            .message_body(body.text)
            .message_attributes(ATTR_REASON, string_value(&clean_reason(reason))?)
            .message_attributes(ATTR_ZONE, string_value(zone)?);
        if body.base64 {
            send = send.message_attributes(ATTR_ENCODING, string_value("base64")?);
        }
        send.send()
            .await
            .map_err(|e| sdk_error("SendMessage", &dlq_name, e))?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessage", name, e))?;
        Ok(())
    }

    /// One SendMessageBatch of `indices` into `bodies`; returns the entries that
    /// failed, as (index, sender's fault, "code: message").
    async fn send_batch(
        &self,
        (name, url): (&str, &str),
        bodies: &[Body],
        indices: &[usize],
    ) -> Result<Vec<(usize, bool, String)>, QueueError> {
        let mut entries = Vec::with_capacity(indices.len());
        for &i in indices {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(bodies[i].text.clone());
            if bodies[i].base64 {
                entry = entry.message_attributes(ATTR_ENCODING, string_value("base64")?);
            }
            entries.push(entry.build().map_err(|e| {
                QueueError::Permanent(format!(
                    "SQS SendMessageBatch on queue {name}: bad entry: {e}"
                ))
            })?);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("SendMessageBatch", name, e))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| {
                let i = f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .filter(|i| indices.contains(i))?;
                Some((
                    i,
                    f.sender_fault(),
                    format!("{}: {}", f.code(), f.message().unwrap_or("")),
                ))
            })
            .collect())
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn publish(&self, zone: &str, payload: &[u8]) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(zone).await?;
        let body = Body::encode(payload, &name)?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&url)
            .message_body(body.text);
        if body.base64 {
            send = send.message_attributes(ATTR_ENCODING, string_value("base64")?);
        }
        send.send()
            .await
            .map_err(|e| sdk_error("SendMessage", &name, e))?;
        Ok(())
    }

    /// SendMessageBatch in groups of up to 10 messages and 250 KiB. Entries that
    /// fail are retried once. On error, some messages may have been sent: a
    /// caller that publishes the batch again publishes those twice (jobs are
    /// idempotent, so that costs work, not correctness).
    async fn publish_batch(&self, zone: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let (name, url) = self.zone_url(zone).await?;
        let bodies = payloads
            .iter()
            .map(|p| Body::encode(p, &name))
            .collect::<Result<Vec<_>, _>>()?;
        let total = payloads.len();
        let mut rejected = Vec::new();
        let mut failed = Vec::new();
        let mut sent = 0;
        for group in batch_groups(&bodies) {
            let mut pending = group;
            for attempt in 0..2 {
                let failures = self
                    .send_batch((&name, &url), &bodies, &pending)
                    .await
                    .map_err(|e| {
                        prefix_error(
                            e,
                            &format!("{sent} of {total} messages were sent before this error: "),
                        )
                    })?;
                sent += pending.len() - failures.len();
                pending.clear();
                for (i, sender_fault, detail) in failures {
                    if sender_fault {
                        rejected.push(detail);
                    } else if attempt == 0 {
                        pending.push(i);
                    } else {
                        failed.push(detail);
                    }
                }
                if pending.is_empty() {
                    break;
                }
            }
        }
        if let Some(first) = rejected.first() {
            return Err(QueueError::Permanent(format!(
                "SQS SendMessageBatch on queue {name}: {} of {total} messages rejected (first: {first}); {} others failed",
                rejected.len(),
                failed.len()
            )));
        }
        if let Some(first) = failed.first() {
            return Err(QueueError::Transient(format!(
                "SQS SendMessageBatch on queue {name}: {} of {total} messages failed after a retry (first: {first}); the others were sent",
                failed.len()
            )));
        }
        Ok(())
    }

    /// ReceiveMessage of one message, long polling up to `wait` (in polls of at
    /// most [`SqsConfig::long_poll`], rounded up to whole seconds, 0 allowed). One
    /// message per call: buffered messages would burn their lease while waiting.
    /// A message delivered more than `max_receive_count` times (a backend that did
    /// not redrive it) is dead-lettered here instead of being returned.
    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let (name, url) = self.zone_url(zone).await?;
        let deadline = Instant::now() + wait;
        let limit = self.config.max_receive_count;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let poll = whole_secs(left.min(self.config.long_poll));
            let got = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(1)
                .wait_time_seconds(poll as i32)
                .visibility_timeout(whole_secs(self.config.visibility_timeout) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| sdk_error("ReceiveMessage", &name, e))?;
            if let Some(m) = got.messages().first() {
                let receipt = receipt_of(m, &name)?;
                let deliveries = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(1);
                let payload = decode_body(m);
                if deliveries <= limit {
                    return Ok(Some(Delivery {
                        handle: receipt.to_string(),
                        zone: zone.to_string(),
                        payload,
                        deliveries,
                    }));
                }
                let reason = format!("delivery limit of {limit} reached");
                tracing::warn!(queue = %name, deliveries, "message past its delivery limit; dead-lettering it");
                self.dead_letter(zone, (&name, &url), receipt, &payload, &reason)
                    .await?;
            }
            if poll == 0 || Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// DeleteMessage.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(&delivery.zone).await?;
        self.client
            .delete_message()
            .queue_url(&url)
            .receipt_handle(&delivery.handle)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessage", &name, e))?;
        Ok(())
    }

    /// Retry: ChangeMessageVisibility to 0, so the message is delivered again at
    /// once; at the delivery limit it is dead-lettered instead, with the reason
    /// `delivery limit of N reached`. DeadLetter: SendMessage to the dead-letter
    /// queue with the reason and zone as message attributes, then DeleteMessage.
    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(&delivery.zone).await?;
        let limit = self.config.max_receive_count;
        let reason = match what {
            Nack::DeadLetter { reason } => reason,
            Nack::Retry if delivery.deliveries >= limit => {
                format!("delivery limit of {limit} reached")
            }
            Nack::Retry => {
                self.client
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(&delivery.handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(|e| sdk_error("ChangeMessageVisibility", &name, e))?;
                return Ok(());
            }
        };
        self.dead_letter(
            &delivery.zone,
            (&name, &url),
            &delivery.handle,
            &delivery.payload,
            &reason,
        )
        .await
    }

    /// ChangeMessageVisibility to `by` from now (whole seconds, at most 12 h; SQS
    /// also caps the total at 12 h from the first receive).
    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(&delivery.zone).await?;
        self.client
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(&delivery.handle)
            .visibility_timeout(whole_secs(by.min(MAX_VISIBILITY)) as i32)
            .send()
            .await
            .map_err(|e| sdk_error("ChangeMessageVisibility", &name, e))?;
        Ok(())
    }
}

/// The HTTPS client: rustls on ring, the crypto the rest of the workspace uses.
/// Plain `http://` endpoints (emulators) work too.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Parse `sqs://NAME` or a full queue URL.
fn parse_target(target: &str) -> Result<Target, QueueError> {
    let usage = || {
        QueueError::Permanent(format!(
            "SQS target {target:?}: expected sqs://NAME or a queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
        ))
    };
    if let Some(name) = target.strip_prefix("sqs://") {
        check_base_name(name, target)?;
        return Ok(Target {
            name: name.to_string(),
            locate: Locate::ByName,
            endpoint: None,
            region: None,
        });
    }
    let (scheme, rest) = if let Some(rest) = target.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = target.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(usage());
    };
    let (host, path) = rest.split_once('/').ok_or_else(usage)?;
    let (account, name) = path
        .trim_end_matches('/')
        .split_once('/')
        .ok_or_else(usage)?;
    if host.is_empty() || account.is_empty() || account.contains(['?', '#']) {
        return Err(usage());
    }
    check_base_name(name, target)?;
    let hostname = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let hostname = hostname.split(':').next().unwrap_or(hostname);
    let region = aws_region_of(hostname);
    Ok(Target {
        name: name.to_string(),
        locate: Locate::Prefix(format!("{scheme}://{host}/{account}/")),
        // AWS hosts are found from the region (FIPS, dual-stack and custom
        // endpoints then still apply); anything else is an emulator at that host.
        endpoint: region.is_none().then(|| format!("{scheme}://{host}")),
        region,
    })
}

/// The region of an SQS host on AWS (`sqs.R.amazonaws.com`, `R.queue.amazonaws.com`,
/// `queue.amazonaws.com`), or `None` for any other host.
fn aws_region_of(host: &str) -> Option<String> {
    let base = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    if base == "queue" {
        return Some("us-east-1".to_string());
    }
    let region = base
        .strip_prefix("sqs.")
        .or_else(|| base.strip_suffix(".queue"))?;
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| region.to_string())
}

/// A base name must leave room for `-dlq` within SQS's 80 characters.
fn check_base_name(name: &str, target: &str) -> Result<(), QueueError> {
    let max = MAX_QUEUE_NAME - DLQ_SUFFIX.len() - 1;
    if name.is_empty() || name.len() > max || !name.chars().all(is_name_char) {
        return Err(QueueError::Permanent(format!(
            "SQS target {target:?}: queue name {name:?} must be 1 to {max} characters of A-Z, a-z, 0-9, '-' and '_' \
             (FIFO queues are not supported)"
        )));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Characters SQS accepts in message bodies and string attributes.
fn is_sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// A message body: the payload as text, or base64.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    text: String,
    base64: bool,
}

impl Body {
    fn encode(payload: &[u8], queue: &str) -> Result<Body, QueueError> {
        if payload.is_empty() {
            return Err(QueueError::Permanent(format!(
                "SQS SendMessage on queue {queue}: SQS cannot carry an empty message"
            )));
        }
        Ok(match std::str::from_utf8(payload) {
            Ok(text) if text.chars().all(is_sqs_char) => Body {
                text: text.to_string(),
                base64: false,
            },
            _ => Body {
                text: BASE64.encode(payload),
                base64: true,
            },
        })
    }

    /// Rough request bytes of this entry, for batch sizing.
    fn size(&self) -> usize {
        self.text.len() + if self.base64 { 64 } else { 0 }
    }
}

/// The payload of a received message. A body marked base64 that does not decode
/// is passed on as is: the consumer's envelope check rejects it as malformed.
fn decode_body(m: &Message) -> Vec<u8> {
    let body = m.body().unwrap_or_default();
    if string_attr(m, ATTR_ENCODING).as_deref() == Some("base64")
        && let Ok(bytes) = BASE64.decode(body)
    {
        return bytes;
    }
    body.as_bytes().to_vec()
}

fn string_attr(m: &Message, key: &str) -> Option<String> {
    m.message_attributes()?
        .get(key)?
        .string_value()
        .map(str::to_string)
}

fn string_value(v: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Permanent(format!("SQS message attribute: {e}")))
}

fn receipt_of<'m>(m: &'m Message, queue: &str) -> Result<&'m str, QueueError> {
    m.receipt_handle().ok_or_else(|| {
        QueueError::Transient(format!(
            "SQS ReceiveMessage on queue {queue}: a message without a receipt handle"
        ))
    })
}

/// A reason SQS will store: allowed characters only, bounded length.
fn clean_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if is_sqs_char(c) { c } else { '\u{FFFD}' })
        .collect();
    if cleaned.is_empty() {
        "no reason given".to_string()
    } else {
        cleaned
    }
}

/// Groups of indices into `bodies` that fit one SendMessageBatch each.
fn batch_groups(bodies: &[Body]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        if !current.is_empty()
            && (current.len() == BATCH_ENTRIES || bytes + body.size() > BATCH_BYTES)
        {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += body.size();
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Whole seconds, rounded up.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn ceil_duration(d: Duration) -> Duration {
    Duration::from_secs(whole_secs(d))
}

fn prefix_error(e: QueueError, prefix: &str) -> QueueError {
    match e {
        QueueError::Transient(m) => QueueError::Transient(format!("{prefix}{m}")),
        QueueError::Permanent(m) => QueueError::Permanent(format!("{prefix}{m}")),
    }
}

/// Error codes that mean "later": throttling, overload, a server-side hiccup.
fn is_transient_code(code: &str) -> bool {
    code.contains("Throttl")
        || code.ends_with("ServiceUnavailable")
        || code.ends_with("InternalError")
        || code.ends_with("InternalFailure")
        || matches!(
            code,
            "RequestThrottled"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "OverLimit"
                | "RequestTimeout"
                | "RequestTimeoutException"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "KmsThrottled"
        )
}

fn is_missing_queue_code(code: &str) -> bool {
    matches!(
        code,
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" | "NonExistentQueue"
    )
}

/// Turn an SDK error into a [`QueueError`] that says whether to retry, naming the
/// operation and the queue. Connection failures, timeouts, throttling, 5xx and a
/// failing credentials provider are transient; a missing queue, denied access, an
/// invalid receipt handle, other client errors and no credentials at all are
/// permanent.
fn sdk_error<E>(op: &str, queue: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let at = format!("SQS {op} on queue {queue}");
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown error");
            let detail = match ctx.err().message() {
                Some(m) if !m.is_empty() => format!("{code} (HTTP {status}): {m}"),
                _ => format!("{code} (HTTP {status})"),
            };
            if is_missing_queue_code(code) {
                QueueError::Permanent(format!(
                    "{at}: the queue does not exist ({detail}); create it with `scanfleet queues init`"
                ))
            } else if is_transient_code(code) || status >= 500 || status == 429 {
                QueueError::Transient(format!("{at}: {detail}"))
            } else {
                QueueError::Permanent(format!("{at}: {detail}"))
            }
        }
        SdkError::TimeoutError(_) => QueueError::Transient(format!("{at}: timed out")),
        SdkError::DispatchFailure(f) => {
            let text = chain(&err);
            match credentials_error(&err) {
                Some(
                    CredentialsError::CredentialsNotLoaded(_)
                    | CredentialsError::InvalidConfiguration(_),
                ) => QueueError::Permanent(format!("{at}: no usable AWS credentials: {text}")),
                // The provider timed out or failed (instance metadata, STS): later.
                Some(_) => QueueError::Transient(format!("{at}: {text}")),
                // Connection refused or reset, DNS, TLS.
                None if f.is_io() || f.is_timeout() || f.as_other().is_some() => {
                    QueueError::Transient(format!("{at}: {text}"))
                }
                // A bad endpoint URL, no way to sign, and the like: retrying cannot help.
                None => QueueError::Permanent(format!("{at}: {text}")),
            }
        }
        SdkError::ConstructionFailure(_) => QueueError::Permanent(format!("{at}: {}", chain(&err))),
        // An unreadable response, or whatever later SDKs add.
        _ => QueueError::Transient(format!("{at}: {}", chain(&err))),
    }
}

/// An error and its sources, `a: b: c`, without the repeats some layers add.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The credentials provider's error behind a failed call, if that is what failed.
fn credentials_error<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = parse_target("sqs://scan-jobs").unwrap();
        assert_eq!(
            (t.name.as_str(), &t.locate, &t.endpoint, &t.region),
            ("scan-jobs", &Locate::ByName, &None, &None)
        );

        let t = parse_target("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs").unwrap();
        assert_eq!(t.name, "jobs");
        assert_eq!(
            t.locate,
            Locate::Prefix("https://sqs.eu-west-1.amazonaws.com/123456789012/".into())
        );
        assert_eq!((t.endpoint, t.region.as_deref()), (None, Some("eu-west-1")));

        let t = parse_target("https://us-west-2.queue.amazonaws.com/1/jobs").unwrap();
        assert_eq!(t.region.as_deref(), Some("us-west-2"));

        let t = parse_target("http://127.0.0.1:5000/123456789012/jobs/").unwrap();
        assert_eq!(t.name, "jobs");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(t.region, None);
        assert_eq!(
            t.locate,
            Locate::Prefix("http://127.0.0.1:5000/123456789012/".into())
        );

        for bad in [
            "jobs",
            "sqs://",
            "sqs://a.fifo",
            "sqs://a/b",
            "amqp://x/y/z",
            "http://host/only-name",
            "http://host/1/a/b",
            "http:///1/a",
            &format!("sqs://{}", "x".repeat(77)),
        ] {
            assert!(
                matches!(parse_target(bad), Err(QueueError::Permanent(_))),
                "{bad}"
            );
        }
        assert!(parse_target(&format!("sqs://{}", "x".repeat(76))).is_ok());
    }

    fn queue(name: &str) -> SqsQueue {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let config = SqsConfig {
            region: Some("us-east-1".into()),
            ..SqsConfig::default()
        };
        SqsQueue::with_sdk_config(&format!("sqs://{name}"), config, &sdk).unwrap()
    }

    #[test]
    fn zone_names() {
        let q = queue("jobs");
        assert_eq!(q.queue_name("default").unwrap(), "jobs");
        assert_eq!(q.queue_name("vpc-0abc_1").unwrap(), "jobs-vpc-0abc_1");
        assert_eq!(q.dlq_name(), "jobs-dlq");
        for bad in ["", "dlq", "a.b", "a/b", "zoné", &"z".repeat(76)] {
            let err = q.queue_name(bad).unwrap_err();
            assert!(matches!(err, QueueError::Permanent(_)), "{bad}: {err}");
        }
        assert!(
            q.queue_name("a.b")
                .unwrap_err()
                .to_string()
                .contains("\"a.b\"")
        );
        assert_eq!(q.zone_of("jobs").as_deref(), Some("default"));
        assert_eq!(q.zone_of("jobs-z1").as_deref(), Some("z1"));
        assert_eq!(q.zone_of("jobs-dlq"), None);
        assert_eq!(q.zone_of("other-z1"), None);
    }

    #[test]
    fn config_limits_name_the_field() {
        let ok = SqsConfig::default();
        ok.validate().unwrap();
        let cases = [
            (
                "visibility_timeout",
                SqsConfig {
                    visibility_timeout: Duration::ZERO,
                    ..ok.clone()
                },
            ),
            (
                "visibility_timeout",
                SqsConfig {
                    visibility_timeout: MAX_VISIBILITY * 2,
                    ..ok.clone()
                },
            ),
            (
                "max_receive_count",
                SqsConfig {
                    max_receive_count: 0,
                    ..ok.clone()
                },
            ),
            (
                "long_poll",
                SqsConfig {
                    long_poll: Duration::from_secs(21),
                    ..ok.clone()
                },
            ),
            (
                "attempt_timeout",
                SqsConfig {
                    attempt_timeout: Duration::from_secs(20),
                    ..ok.clone()
                },
            ),
            (
                "max_attempts",
                SqsConfig {
                    max_attempts: 0,
                    ..ok.clone()
                },
            ),
        ];
        for (field, c) in cases {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn bodies_are_text_or_base64() {
        let json = Body::encode(br#"{"v":1,"s":"tab\there"}"#, "q").unwrap();
        assert!(!json.base64);
        let bin = Body::encode(&[0, 159, 146, 150], "q").unwrap();
        assert!(bin.base64);
        assert_eq!(BASE64.decode(&bin.text).unwrap(), [0, 159, 146, 150]);
        // Valid UTF-8 with a control character SQS refuses.
        assert!(Body::encode(b"a\x01b", "q").unwrap().base64);
        assert!(Body::encode(b"", "q").is_err());
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small = Body {
            text: "x".into(),
            base64: false,
        };
        let sizes: Vec<usize> = batch_groups(&vec![small; 25])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big = Body {
            text: "y".repeat(100 * 1024),
            base64: false,
        };
        let sizes: Vec<usize> = batch_groups(&vec![big; 5]).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(batch_groups(&[]).is_empty());
    }

    #[test]
    fn reasons_are_cleaned() {
        assert_eq!(clean_reason("bad\u{1}sig"), "bad\u{FFFD}sig");
        assert_eq!(clean_reason("").as_str(), "no reason given");
        assert_eq!(clean_reason(&"r".repeat(5000)).len(), MAX_REASON_CHARS);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(2000)), 2);
        assert_eq!(whole_secs(Duration::from_millis(2001)), 3);
    }
}
