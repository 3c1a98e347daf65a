//! Topology: queue and exchange names, the declarations of the job queues, the
//! dead-letter exchange and queue, and the admin calls over them.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use std::collections::HashMap;

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ErrorKind, ExchangeKind};
use tokio::time::timeout;

use super::AmqpQueue;
use super::headers::{ZONE_HEADER, dead_reason, header_str, headers};
use super::link::{Link, classify, elapsed};
use crate::queue::{DeadLetter, QueueError, Topology};

/// Longest zone name: queue names and routing keys are AMQP short strings (255 bytes).
pub(super) const MAX_ZONE_LEN: usize = 200;

/// Queue and exchange names of one prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) prefix: String,
}

impl Names {
    pub(super) fn jobs(&self, zone: &str) -> String {
        format!("{}.jobs.{zone}", self.prefix)
    }
    pub(super) fn dlx(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    pub(super) fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

pub(super) fn check_zone(zone: &str) -> Result<(), QueueError> {
    if valid_name(zone) && zone.len() <= MAX_ZONE_LEN {
        Ok(())
    } else {
        Err(QueueError::Permanent(format!(
            "zone {zone:?} cannot name a queue: expected 1 to {MAX_ZONE_LEN} characters of A-Z a-z 0-9 . _ - :"
        )))
    }
}

impl AmqpQueue {
    /// Declare the dead-letter exchange and queue and the job queues of `zones`
    /// with `topology`, sending every declaration even if this connection made it
    /// before, and remember the limit of each zone for the messages this client
    /// publishes (see the module docs).
    pub(super) async fn declare_zones(
        &self,
        zones: &[String],
        topology: &Topology,
    ) -> Result<(), QueueError> {
        topology.validate()?;
        for z in zones {
            check_zone(z)?;
        }
        let mut link = self.link().await?;
        for z in zones {
            link.zones_declared.remove(z);
            self.declare_jobs(&mut link, z, topology.delivery_limit)
                .await?;
            self.limits_mut().insert(z.clone(), topology.delivery_limit);
        }
        Ok(())
    }

    /// Whether the zone's job queue exists: a passive declaration, which creates
    /// nothing and checks no argument.
    pub(super) async fn jobs_queue_exists(&self, zone: &str) -> Result<bool, QueueError> {
        check_zone(zone)?;
        let link = self.link().await?;
        let jobs = self.names.jobs(zone);
        let what = format!("check queue {jobs}");
        let res = self
            .declare_raw(&link, &what, |ch| async move {
                ch.queue_declare(
                    jobs.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ())
            })
            .await?;
        match res {
            Ok(()) => Ok(true),
            Err(e) if is_soft(&e, AMQPSoftError::NOTFOUND) => Ok(false),
            Err(e) => Err(classify(&what, &e)),
        }
    }

    /// Take up to `max` messages off the dead-letter queue (they are acked: this
    /// consumes them), with the reason and zone of each.
    /// Take up to `max` dead letters, or with `keep` only read them: unacked, they
    /// go back to the queue when the channel closes.
    pub(super) async fn take_dead(
        &self,
        max: usize,
        keep: bool,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let ch = {
            let mut link = self.link().await?;
            self.ensure_shared(&mut link).await?;
            link.conn
                .create_channel()
                .await
                .map_err(|e| classify("open channel", &e))?
        };
        let dead = self.names.dead();
        let mut out = Vec::new();
        while out.len() < max {
            let got = timeout(
                self.config.op_timeout,
                ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false }),
            )
            .await
            .map_err(|_| elapsed("basic.get", self.config.op_timeout))?
            .map_err(|e| classify("basic.get from the dead-letter queue", &e))?;
            let Some(msg) = got else { break };
            let d = msg.delivery;
            let zone = headers(&d.properties)
                .and_then(|h| h.inner().get(ZONE_HEADER))
                .and_then(header_str)
                .unwrap_or_else(|| d.routing_key.as_str().to_owned());
            let reason = dead_reason(&d.properties);
            if !keep {
                d.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| classify("ack dead letter", &e))?;
            }
            out.push(DeadLetter {
                zone,
                payload: d.data,
                reason,
            });
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(out)
    }

    /// Delete the job queues of `zones`, the dead-letter queue and the dead-letter
    /// exchange, with every message in them. For tests and `scanfleet queues` tooling.
    ///
    /// # Errors
    /// Transient while the broker is unreachable; permanent for an invalid zone or
    /// a refused deletion.
    pub async fn delete_topology(&self, zones: &[&str]) -> Result<(), QueueError> {
        for z in zones {
            check_zone(z)?;
        }
        let mut link = self.link().await?;
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open channel", &e))?;
        let ops = async {
            for z in zones {
                ch.queue_delete(self.names.jobs(z).into(), QueueDeleteOptions::default())
                    .await?;
            }
            ch.queue_delete(self.names.dead().into(), QueueDeleteOptions::default())
                .await?;
            ch.exchange_delete(self.names.dlx().into(), ExchangeDeleteOptions::default())
                .await
        };
        let res = timeout(self.config.op_timeout, ops).await;
        let _ = ch.close(200, "OK".into()).await;
        let mut limits = self.limits_mut();
        for z in zones {
            link.zones_declared.remove(*z);
            link.zones_bound.remove(*z);
            link.consumers.remove(*z);
            limits.remove(*z);
        }
        link.zones_bound.clear();
        link.shared_declared = false;
        res.map_err(|_| elapsed("delete topology", self.config.op_timeout))?
            .map_err(|e| classify("delete topology", &e))
    }

    /// The delivery limit this client declared for `zone`, if it declared it.
    pub(super) fn declared_limit(&self, zone: &str) -> Option<u32> {
        self.limits_mut().get(zone).copied()
    }

    fn limits_mut(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // Plain numbers behind the lock: a panic elsewhere cannot leave them torn.
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn quorum_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        t
    }

    /// The job queue's arguments; `delivery_limit` counts the last delivery, the
    /// broker's `x-delivery-limit` counts redeliveries.
    fn jobs_args(&self, zone: &str, delivery_limit: u32) -> FieldTable {
        let mut t = self.quorum_args();
        let limit = i64::from(delivery_limit.saturating_sub(1));
        t.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.names.dlx().into()),
        );
        t.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(zone.into()),
        );
        if self.config.at_least_once_dead_letter {
            t.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            t.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        if let Some(ct) = self.config.consumer_timeout {
            let ms = i64::try_from(ct.as_millis()).unwrap_or(i64::MAX);
            t.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(ms));
        }
        t
    }

    /// Run declarations on a channel of their own: a refused declaration closes the
    /// channel it was made on, and that must not be a channel anything else uses.
    /// The outer error is the channel or a timeout, the inner one the broker's answer.
    async fn declare_raw<F, Fut>(
        &self,
        link: &Link,
        what: &str,
        f: F,
    ) -> Result<Result<(), lapin::Error>, QueueError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let ch = timeout(self.config.op_timeout, link.conn.create_channel())
            .await
            .map_err(|_| elapsed("open channel", self.config.op_timeout))?
            .map_err(|e| classify("open channel", &e))?;
        let res = timeout(self.config.op_timeout, f(ch.clone())).await;
        if ch.status().connected() {
            let _ = ch.close(200, "OK".into()).await;
        }
        res.map_err(|_| elapsed(what, self.config.op_timeout))
    }

    /// Declare the dead-letter exchange and queue once per connection. They carry
    /// no delivery limit, so consumers may declare them too.
    pub(super) async fn ensure_shared(&self, link: &mut Link) -> Result<(), QueueError> {
        if link.shared_declared {
            return Ok(());
        }
        let (dlx, dead, args) = (self.names.dlx(), self.names.dead(), self.quorum_args());
        let what = "declare the dead-letter exchange and queue";
        self.declare_raw(link, what, |ch| async move {
            ch.exchange_declare(
                dlx.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
            ch.queue_declare(
                dead.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
            Ok(())
        })
        .await?
        .map_err(|e| classify(what, &e))?;
        link.shared_declared = true;
        Ok(())
    }

    /// Bind the dead-letter queue to the exchange with the zone's routing key, once
    /// per connection (idempotent, no arguments: safe for consumers).
    pub(super) async fn ensure_binding(
        &self,
        link: &mut Link,
        zone: &str,
    ) -> Result<(), QueueError> {
        self.ensure_shared(link).await?;
        if link.zones_bound.contains(zone) {
            return Ok(());
        }
        let (dlx, dead, key) = (self.names.dlx(), self.names.dead(), zone.to_owned());
        let what = format!("bind {dead} to {dlx} for zone {zone}");
        self.declare_raw(link, &what, |ch| async move {
            ch.queue_bind(
                dead.into(),
                dlx.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await?
        .map_err(|e| classify(&what, &e))?;
        link.zones_bound.insert(zone.to_owned());
        Ok(())
    }

    /// Declare, once per connection, a zone's job queue with the limit this client
    /// declared it with before (redeclaring it after a reconnect).
    ///
    /// # Errors
    /// [`QueueError::Permanent`] when this client never declared the zone: it does
    /// not know the limit to declare and to stamp on its messages.
    pub(super) async fn ensure_zone(&self, link: &mut Link, zone: &str) -> Result<u32, QueueError> {
        let Some(limit) = self.declared_limit(zone) else {
            return Err(QueueError::Permanent(format!(
                "zone {zone:?}: its queue {} was not declared by this client; declare it first \
                 (QueueAdmin::init, `scanfleet queues init`) so that the delivery limit is known",
                self.names.jobs(zone)
            )));
        };
        if !link.zones_declared.contains(zone) {
            self.declare_jobs(link, zone, limit).await?;
        }
        Ok(limit)
    }

    /// Declare a zone's job queue with `delivery_limit` and its dead-letter binding.
    async fn declare_jobs(
        &self,
        link: &mut Link,
        zone: &str,
        delivery_limit: u32,
    ) -> Result<(), QueueError> {
        self.ensure_binding(link, zone).await?;
        let jobs = self.names.jobs(zone);
        let args = self.jobs_args(zone, delivery_limit);
        let what = format!("declare queue {jobs}");
        let name = jobs.clone();
        let res = self
            .declare_raw(link, &what, |ch| async move {
                ch.queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args,
                )
                .await
                .map(|_| ())
            })
            .await?;
        match res {
            Ok(()) => {
                link.zones_declared.insert(zone.to_owned());
                Ok(())
            }
            Err(e) if is_soft(&e, AMQPSoftError::PRECONDITIONFAILED) => {
                Err(QueueError::Permanent(format!(
                    "queue {jobs} exists with other arguments than a delivery limit of \
                     {delivery_limit} (and this client's consumer timeout and dead-letter \
                     settings); RabbitMQ cannot change them: declare it with the limit it has, \
                     or delete it (its messages are lost) and declare it again. Broker: {e}"
                )))
            }
            Err(e) => Err(classify(&what, &e)),
        }
    }
}

/// Whether a lapin error is this channel-level refusal by the broker.
fn is_soft(e: &lapin::Error, which: AMQPSoftError) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if p.kind() == &AMQPErrorKind::Soft(which))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_zone_checks() {
        let n = Names {
            prefix: "scanfleet".into(),
        };
        assert_eq!(n.jobs("vpc-1"), "scanfleet.jobs.vpc-1");
        assert_eq!(n.dlx(), "scanfleet.dlx");
        assert_eq!(n.dead(), "scanfleet.dead");
        assert!(check_zone("vpc-0a1b:eu-west-1").is_ok());
        assert!(check_zone("").is_err());
        assert!(check_zone("a/b").is_err());
        assert!(check_zone(&"z".repeat(MAX_ZONE_LEN + 1)).is_err());
    }
}
