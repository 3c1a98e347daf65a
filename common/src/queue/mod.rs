//! The job queue seam. The pipeline sees only [`JobQueue`]; backends: [`memory`]
//! for the embedded mode (RabbitMQ and SQS join in the fleet work).

pub mod amqp;
pub mod memory;
pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;

/// A message handed to a consumer, held until acked or nacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Backend handle: a delivery tag, a receipt handle, an in-memory id.
    pub handle: String,
    pub zone: String,
    pub payload: Vec<u8>,
    /// How many times this message has been delivered, this time included.
    pub deliveries: u32,
}

/// What to do with a message that was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nack {
    /// Transient failure: deliver again (up to the delivery limit).
    Retry,
    /// Permanent failure: straight to the dead-letter queue with this reason.
    DeadLetter { reason: String },
}

/// Queue errors know whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Transient(String),
    #[error("queue error: {0}")]
    Permanent(String),
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient(_))
    }
}

/// A work queue with leases, one logical queue per network zone.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueue one message on a zone's queue; durable when this returns.
    async fn publish(&self, zone: &str, payload: &[u8]) -> Result<(), QueueError>;
    /// Enqueue several messages on a zone's queue; backends batch where they can.
    async fn publish_batch(&self, zone: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        for p in payloads {
            self.publish(zone, p).await?;
        }
        Ok(())
    }
    /// Wait up to `wait` for a message of `zone`; the message is leased to the caller.
    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError>;
    /// The message is done; it will not come back.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// The message was not done; retry it or dead-letter it.
    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError>;
    /// Keep the lease alive while a long shard runs.
    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError>;
}
