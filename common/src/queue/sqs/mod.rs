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
//! retry makes the message visible again at once.
//!
//! # The delivery limit is the redrive policy
//! [`QueueAdmin::init`] gives each zone queue a redrive policy to the dead-letter
//! queue after [`Topology::delivery_limit`] receives, so a job whose worker keeps
//! crashing ends there too. A queue that exists with another limit is an error and
//! keeps its policy: scanfleet never rewrites it. Consumers never set it: they read
//! it back (GetQueueAttributes `RedrivePolicy`, `maxReceiveCount`, cached for a
//! minute) into [`Delivery::delivery_limit`]. A job retried that often by a live
//! worker is dead-lettered explicitly, with a reason, before the redrive policy
//! would move it silently (and for emulators that do not redrive at all).
//!
//! Payloads are bytes, SQS bodies are text: a payload that is valid UTF-8 made of
//! the characters SQS allows (JSON envelopes always are) travels as is, anything
//! else as base64 marked by the `scanfleet-encoding` message attribute.

mod body;
mod config;
mod error;
mod names;
mod topology;

pub use crate::types::DEFAULT_ZONE;
pub use body::{ATTR_ENCODING, ATTR_REASON, ATTR_ZONE};
pub use config::{MAX_LONG_POLL, MAX_VISIBILITY, SqsConfig};

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use tokio::time::Instant;

use super::{DeadLetter, Delivery, JobQueue, Nack, QueueAdmin, QueueError, Topology};
use crate::aws::{ClientSettings, configure};
use body::*;
use config::whole_secs;
use error::*;
use names::*;

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
    /// Queue name -> its delivery limit (`None`: no redrive policy) and when it
    /// was read; see [`topology::LIMIT_TTL`].
    limits: RwLock<HashMap<String, (Option<u32>, Instant)>>,
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
        // A known region keeps the loader from asking instance metadata for one.
        let region = config.region.clone().or_else(|| parsed.region.clone());
        let sdk = crate::aws::load(region.as_deref()).await;
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
        let settings = ClientSettings {
            region: config.region.clone().or_else(|| target.region.clone()),
            max_attempts: config.max_attempts,
            attempt_timeout: config.attempt_timeout,
            ..ClientSettings::default()
        };
        let mut builder = aws_sdk_sqs::config::Builder::from(&configure(sdk, &settings));
        // Set here rather than in the shared configuration, so that it wins over
        // AWS_ENDPOINT_URL_SQS too.
        if let Some(endpoint) = config.endpoint.clone().or_else(|| target.endpoint.clone()) {
            builder = builder.endpoint_url(endpoint);
        }
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
            limits: RwLock::new(HashMap::new()),
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
        self.delete((name, url), receipt).await
    }

    /// DeleteMessage of `receipt` on queue `name` at `url`.
    async fn delete(&self, (name, url): (&str, &str), receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessage", name, e))?;
        Ok(())
    }

    /// ChangeMessageVisibility of `receipt` on queue `name` at `url`: invisible
    /// for `secs` from now.
    async fn set_visibility(
        &self,
        (name, url): (&str, &str),
        receipt: &str,
        secs: u64,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(secs as i32)
            .send()
            .await
            .map_err(|e| sdk_error("ChangeMessageVisibility", name, e))?;
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
    /// A message delivered more often than the queue's redrive policy allows (a
    /// backend that did not redrive it) is dead-lettered here instead of being
    /// returned.
    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let (name, url) = self.zone_url(zone).await?;
        let deadline = Instant::now() + wait;
        let limit = self.queue_limit(&name, &url).await?;
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
                match limit {
                    Some(limit) if deliveries > limit => {
                        let reason = format!("delivery limit of {limit} reached");
                        tracing::warn!(queue = %name, deliveries, "message past its delivery limit; dead-lettering it");
                        self.dead_letter(zone, (&name, &url), receipt, &payload, &reason)
                            .await?;
                    }
                    _ => {
                        return Ok(Some(Delivery {
                            handle: receipt.to_string(),
                            zone: zone.to_string(),
                            payload,
                            deliveries,
                            delivery_limit: limit,
                        }));
                    }
                }
            }
            if poll == 0 || Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// DeleteMessage.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(&delivery.zone).await?;
        self.delete((&name, &url), &delivery.handle).await
    }

    /// Retry: ChangeMessageVisibility to 0, so the message is delivered again at
    /// once; at the delivery's limit it is dead-lettered instead, with the reason
    /// `delivery limit of N reached`. DeadLetter: SendMessage to the dead-letter
    /// queue with the reason and zone as message attributes, then DeleteMessage.
    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError> {
        let (name, url) = self.zone_url(&delivery.zone).await?;
        let reason = match what {
            Nack::DeadLetter { reason } => reason,
            Nack::Retry if delivery.last_attempt() => {
                let limit = delivery.delivery_limit.unwrap_or(delivery.deliveries);
                format!("delivery limit of {limit} reached")
            }
            Nack::Retry => {
                return self
                    .set_visibility((&name, &url), &delivery.handle, 0)
                    .await;
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
        let secs = whole_secs(by.min(MAX_VISIBILITY));
        self.set_visibility((&name, &url), &delivery.handle, secs)
            .await
    }
}

/// Topology on SQS; see the module docs.
#[async_trait]
impl QueueAdmin for SqsQueue {
    async fn init(&self, zones: &[String], topology: &Topology) -> Result<(), QueueError> {
        self.declare(zones, topology).await
    }

    async fn zone_exists(&self, zone: &str) -> Result<bool, QueueError> {
        self.queue_exists(zone).await
    }

    /// A message moved to the dead-letter queue by the redrive policy has no
    /// recorded reason; its zone comes from SQS's `DeadLetterQueueSourceArn`
    /// where the service sets it, else it is empty.
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.take_dead(max, false).await
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.take_dead(max, true).await
    }
}
