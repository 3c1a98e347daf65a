//! Topology: creating the zones' queues and the dead-letter queue with their
//! redrive policy, reading a queue's delivery limit back from that policy,
//! finding queue URLs, reading the dead-letter queue.

use std::collections::HashMap;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tokio::time::Instant;

use super::SqsQueue;
use super::body::*;
use super::config::whole_secs;
use super::error::{is_missing_queue_code, sdk_error};
use super::names::*;
use crate::queue::{DeadLetter, QueueError, Topology};

/// Dead letters are kept as long as SQS allows (14 days), longer than the zone
/// queues' default of 4 days, since SQS keeps a redriven message's enqueue time.
pub(super) const DLQ_RETENTION_SECS: u32 = 14 * 24 * 60 * 60;

/// How long reading the dead-letter queue holds each message before deleting it.
pub(super) const DLQ_READ_VISIBILITY_SECS: i32 = 30;

/// How long a queue's delivery limit, read from its RedrivePolicy, is trusted
/// before it is read again: a policy edited on AWS reaches consumers within this.
pub(super) const LIMIT_TTL: Duration = Duration::from_secs(60);

/// A queue's RedrivePolicy: where its dead letters go and after how many receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Redrive {
    pub(super) target_arn: String,
    pub(super) max_receive_count: u32,
}

/// Parse a RedrivePolicy attribute; SQS writes `maxReceiveCount` as a string or
/// a number depending on who set it.
pub(super) fn parse_redrive(policy: &str) -> Option<Redrive> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let target_arn = v.get("deadLetterTargetArn")?.as_str()?.to_string();
    let count = v.get("maxReceiveCount")?;
    let max_receive_count = count
        .as_u64()
        .or_else(|| count.as_str()?.trim().parse().ok())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)?;
    Some(Redrive {
        target_arn,
        max_receive_count,
    })
}

impl SqsQueue {
    /// Create the dead-letter queue and the queues of `zones` (`default` is the
    /// base name) with the visibility timeout and a redrive policy to the
    /// dead-letter queue after `topology.delivery_limit` receives. Idempotent. A
    /// zone queue that exists keeps its redrive policy: one with the same limit is
    /// fine (its visibility timeout is set), one without a policy gets ours, one
    /// with another limit or dead-letter queue is an error and is left as it is.
    pub(super) async fn declare(
        &self,
        zones: &[String],
        topology: &Topology,
    ) -> Result<(), QueueError> {
        topology.validate()?;
        let mut names = Vec::new();
        for zone in zones {
            let name = self.queue_name(zone)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let visibility = whole_secs(self.config.visibility_timeout).to_string();
        let dlq_name = self.dlq_name();
        let dlq_attrs = [
            (QueueAttributeName::VisibilityTimeout, visibility.clone()),
            (
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECS.to_string(),
            ),
        ];
        let (dlq_url, created) = self.create_or_find(&dlq_name, &dlq_attrs).await?;
        if !created {
            self.set_attributes(&dlq_name, &dlq_url, &dlq_attrs).await?;
        }
        let arn = self
            .attribute(&dlq_name, &dlq_url, QueueAttributeName::QueueArn)
            .await?
            .ok_or_else(|| {
                QueueError::Permanent(format!(
                    "SQS GetQueueAttributes on queue {dlq_name}: no QueueArn in the answer"
                ))
            })?;
        let limit = topology.delivery_limit;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": limit.to_string(),
        })
        .to_string();
        let visibility_attr = (QueueAttributeName::VisibilityTimeout, visibility);
        let redrive_attr = (QueueAttributeName::RedrivePolicy, redrive);
        for name in names {
            let (url, created) = self
                .create_or_find(&name, &[visibility_attr.clone(), redrive_attr.clone()])
                .await?;
            let policy = self
                .attribute(&name, &url, QueueAttributeName::RedrivePolicy)
                .await?;
            match policy.as_deref().map(parse_redrive) {
                None | Some(None) => {
                    self.set_attributes(
                        &name,
                        &url,
                        &[visibility_attr.clone(), redrive_attr.clone()],
                    )
                    .await?;
                }
                Some(Some(r)) if r.max_receive_count == limit && r.target_arn == arn => {
                    if !created {
                        self.set_attributes(&name, &url, std::slice::from_ref(&visibility_attr))
                            .await?;
                    }
                }
                Some(Some(r)) => {
                    return Err(QueueError::Permanent(format!(
                        "SQS queue {name} exists with a delivery limit (RedrivePolicy maxReceiveCount) \
                         of {} to {}, not {limit} to {dlq_name}; scanfleet does not rewrite it: declare it \
                         with --delivery-limit {}, or change its RedrivePolicy (aws sqs \
                         set-queue-attributes) yourself",
                        r.max_receive_count, r.target_arn, r.max_receive_count
                    )));
                }
            }
            self.write_limits()
                .insert(name.clone(), (Some(limit), Instant::now()));
        }
        Ok(())
    }

    /// Whether the queue of `zone` exists; reads its delivery limit on the way.
    pub(super) async fn queue_exists(&self, zone: &str) -> Result<bool, QueueError> {
        let name = self.queue_name(zone)?;
        let url = match &self.locate {
            Locate::Prefix(prefix) => format!("{prefix}{name}"),
            Locate::ByName => match self.client.get_queue_url().queue_name(&name).send().await {
                Ok(out) => match out.queue_url() {
                    Some(u) => u.to_string(),
                    None => return Ok(false),
                },
                Err(e) if e.code().is_some_and(is_missing_queue_code) => return Ok(false),
                Err(e) => return Err(sdk_error("GetQueueUrl", &name, e)),
            },
        };
        let got = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await;
        match got {
            Ok(out) => {
                let limit = out
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                    .and_then(|p| parse_redrive(p))
                    .map(|r| r.max_receive_count);
                self.write_urls().insert(name.clone(), url);
                self.write_limits().insert(name, (limit, Instant::now()));
                Ok(true)
            }
            Err(e) if e.code().is_some_and(is_missing_queue_code) => Ok(false),
            Err(e) => Err(sdk_error("GetQueueAttributes", &name, e)),
        }
    }

    /// The delivery limit of queue `name` at `url`: its RedrivePolicy's
    /// maxReceiveCount, read at most every [`LIMIT_TTL`]; `None` without a policy.
    pub(super) async fn queue_limit(
        &self,
        name: &str,
        url: &str,
    ) -> Result<Option<u32>, QueueError> {
        if let Some((limit, at)) = self.read_limits().get(name)
            && at.elapsed() < LIMIT_TTL
        {
            return Ok(*limit);
        }
        let limit = self
            .attribute(name, url, QueueAttributeName::RedrivePolicy)
            .await?
            .as_deref()
            .and_then(parse_redrive)
            .map(|r| r.max_receive_count);
        self.write_limits()
            .insert(name.to_string(), (limit, Instant::now()));
        Ok(limit)
    }

    /// Take up to `max` messages off the dead-letter queue (they are deleted), with
    /// the reason and zone they were dead-lettered with. A message moved there by
    /// the redrive policy has no recorded reason; its zone comes from SQS's
    /// `DeadLetterQueueSourceArn` where the service sets it, else it is empty.
    ///
    /// # Errors
    /// Any SQS error, with the queue and the operation named.
    ///
    /// With `keep` the messages are only read: they stay invisible while the read
    /// goes on (so none is read twice) and are made visible again at its end.
    pub(super) async fn take_dead(
        &self,
        max: usize,
        keep: bool,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq_name = self.dlq_name();
        let url = self.url_of(&dlq_name).await?;
        let mut out = Vec::new();
        let mut kept: Vec<String> = Vec::new();
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
                if keep {
                    kept.push(receipt.to_owned());
                } else {
                    self.delete((&dlq_name, &url), receipt).await?;
                }
                out.push(DeadLetter {
                    zone,
                    payload: decode_body(m),
                    reason,
                });
            }
        }
        for receipt in &kept {
            self.set_visibility((&dlq_name, &url), receipt, 0).await?;
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

    fn read_limits(&self) -> RwLockReadGuard<'_, HashMap<String, (Option<u32>, Instant)>> {
        self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_limits(&self) -> RwLockWriteGuard<'_, HashMap<String, (Option<u32>, Instant)>> {
        self.limits.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of queue `name`: cached, derived from a full-URL target, or asked of
    /// GetQueueUrl.
    pub(super) async fn url_of(&self, name: &str) -> Result<String, QueueError> {
        if let Some(url) = self.read_urls().get(name) {
            return Ok(url.clone());
        }
        let url = match &self.locate {
            Locate::Prefix(prefix) => format!("{prefix}{name}"),
            Locate::ByName => self.get_queue_url(name).await?,
        };
        self.write_urls().insert(name.to_string(), url.clone());
        Ok(url)
    }

    /// GetQueueUrl of queue `name`, uncached.
    async fn get_queue_url(&self, name: &str) -> Result<String, QueueError> {
        self.client
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
            })
    }

    /// The queue name and URL of `zone`.
    pub(super) async fn zone_url(&self, zone: &str) -> Result<(String, String), QueueError> {
        let name = self.queue_name(zone)?;
        let url = self.url_of(&name).await?;
        Ok((name, url))
    }

    /// CreateQueue with `attrs`, or, if the queue exists (with other attributes),
    /// its URL. Caches and returns the URL, and whether the queue was created or
    /// already had exactly these attributes.
    async fn create_or_find(
        &self,
        name: &str,
        attrs: &[(QueueAttributeName, String)],
    ) -> Result<(String, bool), QueueError> {
        let mut create = self.client.create_queue().queue_name(name);
        for (k, v) in attrs {
            create = create.attributes(k.clone(), v);
        }
        let (url, created) = match create.send().await {
            Ok(out) => (
                out.queue_url().map(str::to_string).ok_or_else(|| {
                    QueueError::Permanent(format!(
                        "SQS CreateQueue on queue {name}: no URL in the answer"
                    ))
                })?,
                true,
            ),
            Err(e) if matches!(e.code(), Some("QueueAlreadyExists" | "QueueNameExists")) => {
                (self.get_queue_url(name).await?, false)
            }
            Err(e) => return Err(sdk_error("CreateQueue", name, e)),
        };
        self.write_urls().insert(name.to_string(), url.clone());
        Ok((url, created))
    }

    async fn set_attributes(
        &self,
        name: &str,
        url: &str,
        attrs: &[(QueueAttributeName, String)],
    ) -> Result<(), QueueError> {
        self.client
            .set_queue_attributes()
            .queue_url(url)
            .set_attributes(Some(attrs.iter().cloned().collect()))
            .send()
            .await
            .map_err(|e| sdk_error("SetQueueAttributes", name, e))?;
        Ok(())
    }

    /// One attribute of a queue, `None` when the queue does not have it.
    async fn attribute(
        &self,
        name: &str,
        url: &str,
        which: QueueAttributeName,
    ) -> Result<Option<String>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(which.clone())
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", name, e))?;
        Ok(out.attributes().and_then(|a| a.get(&which)).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_parse_either_way() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:jobs-dlq";
        let want = Some(Redrive {
            target_arn: arn.into(),
            max_receive_count: 2,
        });
        let s = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"2"}}"#);
        assert_eq!(parse_redrive(&s), want);
        let n = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":2}}"#);
        assert_eq!(parse_redrive(&n), want);
        for bad in [
            "",
            "{}",
            r#"{"deadLetterTargetArn":"x"}"#,
            r#"{"deadLetterTargetArn":"x","maxReceiveCount":"0"}"#,
            r#"{"deadLetterTargetArn":"x","maxReceiveCount":"many"}"#,
        ] {
            assert_eq!(parse_redrive(bad), None, "{bad}");
        }
    }
}
