//! Topology: creating the zones' queues and the dead-letter queue with their
//! redrive policy, finding queue URLs, reading the dead-letter queue.

use std::collections::HashMap;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::SqsQueue;
use super::body::*;
use super::config::whole_secs;
use super::error::sdk_error;
use super::names::*;
use crate::queue::QueueError;
use crate::queue::memory::DeadLetter;

/// Dead letters are kept as long as SQS allows (14 days), longer than the zone
/// queues' default of 4 days, since SQS keeps a redriven message's enqueue time.
pub(super) const DLQ_RETENTION_SECS: u32 = 14 * 24 * 60 * 60;

/// How long reading the dead-letter queue holds each message before deleting it.
pub(super) const DLQ_READ_VISIBILITY_SECS: i32 = 30;

impl SqsQueue {
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

    pub(super) fn read_urls(&self) -> RwLockReadGuard<'_, HashMap<String, String>> {
        // The map holds plain strings; a panic elsewhere cannot leave it torn.
        self.urls.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write_urls(&self) -> RwLockWriteGuard<'_, HashMap<String, String>> {
        self.urls.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of queue `name`: cached, derived from a full-URL target, or asked of
    /// GetQueueUrl.
    pub(super) async fn url_of(&self, name: &str) -> Result<String, QueueError> {
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
    pub(super) async fn zone_url(&self, zone: &str) -> Result<(String, String), QueueError> {
        let name = self.queue_name(zone)?;
        let url = self.url_of(&name).await?;
        Ok((name, url))
    }

    /// CreateQueue with `attrs`; if the queue exists with other attributes, set
    /// them. Caches and returns the URL.
    pub(super) async fn ensure_queue(
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
}
