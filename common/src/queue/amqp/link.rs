//! The connection: connect and reconnect with back-off, the publisher-confirm
//! channel, one consumer channel per zone, and how lapin errors are classified.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio::time::{Instant, timeout};

use super::AmqpQueue;
use crate::queue::QueueError;

/// One consumer: its own channel (so `basic.qos` applies to it alone) and its stream.
pub(super) struct ZoneConsumer {
    pub(super) generation: u64,
    pub(super) serial: u64,
    pub(super) channel: Channel,
    pub(super) stream: Mutex<lapin::Consumer>,
}

/// An established connection and what was set up on it.
pub(super) struct Link {
    pub(super) generation: u64,
    pub(super) conn: Connection,
    /// Publisher-confirm channel shared by all publishes; recreated when it dies.
    pub(super) publisher: Option<Channel>,
    pub(super) shared_declared: bool,
    /// Zones whose job queue this connection declared (declarers only).
    pub(super) zones_declared: HashSet<String>,
    /// Zones whose dead-letter binding this connection declared.
    pub(super) zones_bound: HashSet<String>,
    pub(super) consumers: HashMap<String, Arc<ZoneConsumer>>,
    /// Consumers cancelled by `stop_receiving`, kept so their channels stay open
    /// (dropping the last handle closes a channel) until their deliveries in hand
    /// are settled; they go with the connection.
    pub(super) cancelled: Vec<Arc<ZoneConsumer>>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) link: Option<Link>,
    /// Generation of the last connection made; handles carry it.
    pub(super) generation: u64,
    /// Delay before the next reconnect attempt after this one fails.
    pub(super) backoff: Duration,
    /// No reconnect attempt before this instant.
    pub(super) retry_at: Option<Instant>,
    pub(super) last_error: String,
}

/// Whether a lapin error can heal by itself (I/O, broker restart, closed channel)
/// or needs an operator (refused credentials, inequivalent declarations, ...).
pub(super) fn classify(what: &str, e: &lapin::Error) -> QueueError {
    let msg = format!("{what}: {e}");
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(
                AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::ACCESSREFUSED
                | AMQPSoftError::NOTFOUND
                | AMQPSoftError::RESOURCELOCKED
                | AMQPSoftError::CONTENTTOOLARGE,
            ) => QueueError::Permanent(msg),
            AMQPErrorKind::Soft(_) => QueueError::Transient(msg),
            AMQPErrorKind::Hard(
                AMQPHardError::CONNECTIONFORCED
                | AMQPHardError::RESOURCEERROR
                | AMQPHardError::INTERNALERROR
                | AMQPHardError::CHANNELERROR
                | AMQPHardError::UNEXPECTEDFRAME,
            ) => QueueError::Transient(msg),
            AMQPErrorKind::Hard(_) => QueueError::Permanent(msg),
        },
        ErrorKind::InvalidProtocolVersion(_)
        | ErrorKind::AuthProviderError(_)
        | ErrorKind::SerialisationError(_)
        | ErrorKind::NoDefaultRuntime => QueueError::Permanent(msg),
        _ => QueueError::Transient(msg),
    }
}

pub(super) fn elapsed(what: &str, after: Duration) -> QueueError {
    QueueError::Transient(format!(
        "{what}: no answer from the broker within {after:?}"
    ))
}

impl AmqpQueue {
    /// Close the connection. Unsettled deliveries go back to their queues and can no
    /// longer be acked; the next call connects again. For graceful shutdown.
    pub async fn close(&self) {
        let mut inner = self.inner.lock().await;
        if let Some(link) = inner.link.take() {
            let _ = link.conn.close(200, "OK".into()).await;
            self.drop_link_state("connection closed by this client");
        }
        inner.retry_at = None;
    }

    /// Cancel every zone's consumer (basic.cancel), keeping their channels open so
    /// deliveries in hand can still be acked or released. The next receive starts a
    /// new consumer.
    pub(super) async fn cancel_consumers(&self) {
        let consumers: Vec<_> = {
            let mut inner = self.inner.lock().await;
            let Some(link) = inner.link.as_mut() else {
                return;
            };
            let drained: Vec<_> = link.consumers.drain().collect();
            link.cancelled
                .extend(drained.iter().map(|(_, c)| c.clone()));
            drained
        };
        for (zone, c) in consumers {
            let tag = match c.stream.try_lock() {
                Ok(stream) => stream.tag(),
                // A receive is waiting on it; cancelling its channel's only consumer
                // by closing the channel would return the deliveries in hand, so skip.
                Err(_) => continue,
            };
            let cancelled = timeout(
                self.config.op_timeout,
                c.channel.basic_cancel(tag, BasicCancelOptions::default()),
            )
            .await;
            match cancelled {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(zone, error = %e, "basic.cancel failed"),
                Err(_) => tracing::warn!(zone, "basic.cancel: no answer from the broker"),
            }
        }
    }

    /// Forget everything that belonged to the connection that just went away.
    pub(super) fn drop_link_state(&self, why: &str) {
        self.live.store(0, Ordering::Release);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            tracing::warn!(
                unsettled = pending.len(),
                reason = why,
                "AMQP connection lost; unsettled deliveries return to their queues"
            );
        }
        pending.clear();
    }

    /// The live connection, reconnecting first if it died and the back-off allows.
    pub(super) async fn link(&self) -> Result<MappedMutexGuard<'_, Link>, QueueError> {
        let mut inner = self.inner.lock().await;
        if inner
            .link
            .as_ref()
            .is_some_and(|l| !l.conn.status().connected())
        {
            inner.link = None;
            inner.retry_at = None;
            inner.last_error = "connection lost".into();
            self.drop_link_state("connection lost");
            tracing::warn!(endpoint = %self.endpoint, "AMQP connection lost; reconnecting");
        }
        if inner.link.is_none() {
            let now = Instant::now();
            if let Some(at) = inner.retry_at
                && now < at
            {
                return Err(QueueError::Transient(format!(
                    "broker {} unavailable ({}); next reconnect in {:?}",
                    self.endpoint,
                    inner.last_error,
                    at - now
                )));
            }
            let props = ConnectionProperties::default().with_connection_name(
                format!("{}-{}", self.config.prefix, std::process::id()).into(),
            );
            let connect = async {
                match &self.tls {
                    None => Connection::connect(&self.url, props).await,
                    Some(tls) => {
                        let runtime = lapin::runtime::default_runtime()?;
                        Connection::connect_with_config(&self.url, props, tls.clone(), runtime)
                            .await
                    }
                }
            };
            let attempt = timeout(self.config.connect_timeout, connect).await;
            let err = match attempt {
                Ok(Ok(conn)) => {
                    inner.generation += 1;
                    inner.backoff = self.config.reconnect_min;
                    inner.retry_at = None;
                    let generation = inner.generation;
                    inner.link = Some(Link {
                        generation,
                        conn,
                        publisher: None,
                        shared_declared: false,
                        zones_declared: HashSet::new(),
                        zones_bound: HashSet::new(),
                        consumers: HashMap::new(),
                        cancelled: Vec::new(),
                    });
                    self.live.store(generation, Ordering::Release);
                    tracing::info!(endpoint = %self.endpoint, generation, "AMQP connected");
                    None
                }
                Ok(Err(e)) => Some(classify(&format!("connect to {}", self.endpoint), &e)),
                Err(_) => Some(elapsed(
                    &format!("connect to {}", self.endpoint),
                    self.config.connect_timeout,
                )),
            };
            if let Some(e) = err {
                let backoff = inner.backoff;
                inner.retry_at = Some(now + backoff);
                inner.backoff = (backoff * 2).min(self.config.reconnect_max);
                inner.last_error = e.to_string();
                return Err(e);
            }
        }
        MutexGuard::try_map(inner, |i| i.link.as_mut())
            .map_err(|_| QueueError::Transient(format!("broker {} unavailable", self.endpoint)))
    }

    /// The publisher-confirm channel, opened again if it died.
    pub(super) async fn publisher(&self, link: &mut Link) -> Result<Channel, QueueError> {
        if let Some(ch) = &link.publisher
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        link.publisher = None;
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open publisher channel", &e))?;
        timeout(
            self.config.op_timeout,
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|_| elapsed("confirm.select", self.config.op_timeout))?
        .map_err(|e| classify("confirm.select", &e))?;
        link.publisher = Some(ch.clone());
        Ok(ch)
    }

    /// The zone's consumer, started again if its channel died.
    pub(super) async fn consumer(
        &self,
        link: &mut Link,
        zone: &str,
    ) -> Result<Arc<ZoneConsumer>, QueueError> {
        if let Some(c) = link.consumers.get(zone)
            && c.channel.status().connected()
        {
            return Ok(c.clone());
        }
        link.consumers.remove(zone);
        // A consumer declares nothing: the job queue belongs to its declarer.
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open consumer channel", &e))?;
        let queue = self.names.jobs(zone);
        let started = async {
            ch.basic_qos(self.config.prefetch, BasicQosOptions { global: false })
                .await?;
            ch.basic_consume(
                queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        };
        let stream = match timeout(self.config.op_timeout, started).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // The queue may have been deleted behind our back: declare it again next time.
                link.zones_declared.remove(zone);
                let what = format!("consume from {queue}");
                return Err(match classify(&what, &e) {
                    // Not declared yet, or deleted: it may be declared any moment.
                    QueueError::Permanent(_) if matches!(e.kind(), ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))) => {
                        QueueError::Transient(format!(
                            "{what}: the queue does not exist; create it with `scanfleet queues init` \
                             (or publish a scan to zone {zone})"
                        ))
                    }
                    other => other,
                });
            }
            Err(_) => return Err(elapsed("basic.consume", self.config.op_timeout)),
        };
        let c = Arc::new(ZoneConsumer {
            generation: link.generation,
            serial: self.serial.fetch_add(1, Ordering::Relaxed) + 1,
            channel: ch,
            stream: Mutex::new(stream),
        });
        link.consumers.insert(zone.to_owned(), c.clone());
        Ok(c)
    }

    /// Drop a consumer whose stream ended, unless it was already replaced.
    pub(super) async fn forget_consumer(&self, zone: &str, serial: u64) {
        let mut inner = self.inner.lock().await;
        if let Some(link) = inner.link.as_mut()
            && link.consumers.get(zone).is_some_and(|c| c.serial == serial)
        {
            link.consumers.remove(zone);
            // A cancelled consumer usually means the queue was deleted.
            link.zones_declared.remove(zone);
        }
    }
}
