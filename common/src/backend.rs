//! From URLs to backends: what `--queue` and `--redis` mean, in one place for the
//! coordinator and the worker.
//!
//! - `amqp://user:pass@host:port/vhost` (or `amqps://`): RabbitMQ, one quorum queue per zone.
//! - `sqs://NAME`: Amazon SQS, the URL resolved with GetQueueUrl through the
//!   standard AWS configuration (AWS_ENDPOINT_URL included); `https://sqs...` or
//!   any `http(s)://` queue URL: that queue.
//! - `redis://host:port[/db]` (or `rediss://`): the Redis result store.
//!
//! [`connect_queue`] gives a [`QueueHandle`]: the queue behind [`JobQueue`] for
//! publishing and consuming, and the same backend behind [`QueueAdmin`] for the
//! commands that declare the topology (with its delivery limit) and read dead
//! letters. Connecting declares nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::queue::amqp::{AmqpConfig, AmqpQueue};
use crate::queue::sqs::{SqsConfig, SqsQueue};
use crate::queue::{JobQueue, QueueAdmin, QueueError};
use crate::store::redis::{RedisConfig, RedisStore};
use crate::store::{ResultStore, StoreError};

/// Which broker a queue URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// RabbitMQ (`amqp://`, `amqps://`).
    Amqp,
    /// Amazon SQS (`sqs://NAME`, a queue URL).
    Sqs,
}

/// Classify a `--queue` value.
///
/// # Errors
/// A message naming the value and the schemes that are accepted.
pub fn queue_kind(url: &str) -> Result<QueueKind, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("amqp") | Some("amqps") => Ok(QueueKind::Amqp),
        Some("sqs") | Some("http") | Some("https") => Ok(QueueKind::Sqs),
        _ => Err(format!(
            "--queue {url:?}: expected amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL"
        )),
    }
}

/// How a client uses the fleet's queues, whatever the broker. The delivery limit
/// is not here: it is topology, given to [`QueueAdmin::init`].
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Messages one consumer holds unacked (AMQP prefetch).
    pub prefetch: u16,
    /// The lease (SQS visibility timeout); workers extend it every lease / 3.
    pub lease: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            prefetch: 1,
            lease: Duration::from_secs(60),
        }
    }
}

/// A connected queue: one backend seen through its two seams.
#[derive(Clone)]
pub struct QueueHandle {
    /// Publish, receive, ack, nack, extend leases.
    pub queue: Arc<dyn JobQueue>,
    /// Declare the topology, check a zone's queue, take dead letters.
    pub admin: Arc<dyn QueueAdmin>,
    /// The broker behind both.
    pub kind: QueueKind,
}

impl QueueHandle {
    /// Both seams of one backend.
    pub fn new<B>(backend: Arc<B>, kind: QueueKind) -> Self
    where
        B: JobQueue + QueueAdmin + 'static,
    {
        QueueHandle {
            queue: backend.clone(),
            admin: backend,
            kind,
        }
    }
}

impl fmt::Debug for QueueHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueHandle")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Connect to the broker a URL names. Nothing is declared: a declarer calls
/// [`QueueAdmin::init`] next, a consumer may check [`QueueAdmin::zone_exists`].
///
/// # Errors
/// [`QueueError`]; a bad scheme or URL is permanent, an unreachable broker transient.
pub async fn connect_queue(url: &str, opts: &QueueOptions) -> Result<QueueHandle, QueueError> {
    match queue_kind(url).map_err(QueueError::Permanent)? {
        QueueKind::Amqp => {
            let config = AmqpConfig {
                prefetch: opts.prefetch.max(1),
                ..AmqpConfig::default()
            };
            let q = AmqpQueue::connect(url, config).await?;
            Ok(QueueHandle::new(Arc::new(q), QueueKind::Amqp))
        }
        QueueKind::Sqs => {
            let config = SqsConfig {
                visibility_timeout: opts.lease,
                ..SqsConfig::default()
            };
            let q = SqsQueue::connect(url, config).await?;
            Ok(QueueHandle::new(Arc::new(q), QueueKind::Sqs))
        }
    }
}

/// Connect the Redis result store.
///
/// # Errors
/// [`StoreError`] naming the URL.
pub async fn connect_store(url: &str) -> Result<Arc<dyn ResultStore>, StoreError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(StoreError::Permanent(format!(
            "--redis {url:?}: expected redis://host:port"
        )));
    }
    Ok(Arc::new(
        RedisStore::connect(url, RedisConfig::default()).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_are_classified() {
        assert_eq!(
            queue_kind("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Ok(QueueKind::Amqp)
        );
        assert_eq!(queue_kind("sqs://scanfleet"), Ok(QueueKind::Sqs));
        assert_eq!(
            queue_kind("https://sqs.eu-west-1.amazonaws.com/123/scanfleet"),
            Ok(QueueKind::Sqs)
        );
        let e = queue_kind("kafka://x").unwrap_err();
        assert!(e.contains("\"kafka://x\""), "{e}");
        assert!(queue_kind("scanfleet").is_err());
    }
}
