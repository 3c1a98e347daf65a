//! Topology: queue and exchange names, the declarations of the job queues, the
//! dead-letter exchange and queue, and the admin calls over them.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use tokio::time::timeout;

use super::AmqpQueue;
use super::headers::{ZONE_HEADER, dead_reason, header_str, headers};
use super::link::{Link, classify, elapsed};
use crate::queue::QueueError;
use crate::queue::memory::DeadLetter;

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
    /// Declare the dead-letter exchange and queue and the job queues of `zones` now
    /// (`scanfleet queues init`), instead of on first use.
    ///
    /// # Errors
    /// Transient while the broker is unreachable; permanent when a queue exists with
    /// other arguments or the user may not declare it.
    pub async fn init(&self, zones: &[&str]) -> Result<(), QueueError> {
        for z in zones {
            check_zone(z)?;
        }
        let mut link = self.link().await?;
        for z in zones {
            self.ensure_zone(&mut link, z).await?;
        }
        Ok(())
    }

    /// Take up to `max` messages off the dead-letter queue (they are acked: this
    /// consumes them), with the reason and zone of each. For tests and tooling.
    ///
    /// # Errors
    /// As [`Self::init`].
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
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
            d.acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| classify("ack dead letter", &e))?;
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
    /// As [`Self::init`].
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
        for z in zones {
            link.zones_declared.remove(*z);
            link.consumers.remove(*z);
        }
        link.shared_declared = false;
        res.map_err(|_| elapsed("delete topology", self.config.op_timeout))?
            .map_err(|e| classify("delete topology", &e))
    }

    pub(super) fn quorum_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        t
    }

    pub(super) fn jobs_args(&self, zone: &str) -> FieldTable {
        let mut t = self.quorum_args();
        let limit = i64::from(self.config.delivery_limit.saturating_sub(1));
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
    pub(super) async fn declare<F, Fut>(
        &self,
        link: &Link,
        what: &str,
        f: F,
    ) -> Result<(), QueueError>
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
        res.map_err(|_| elapsed(what, self.config.op_timeout))?
            .map_err(|e| classify(what, &e))
    }

    /// Declare the dead-letter exchange and queue once per connection.
    pub(super) async fn ensure_shared(&self, link: &mut Link) -> Result<(), QueueError> {
        if link.shared_declared {
            return Ok(());
        }
        let (dlx, dead, args) = (self.names.dlx(), self.names.dead(), self.quorum_args());
        self.declare(
            link,
            "declare the dead-letter exchange and queue",
            |ch| async move {
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
            },
        )
        .await?;
        link.shared_declared = true;
        Ok(())
    }

    /// Declare a zone's job queue and its dead-letter binding once per connection.
    pub(super) async fn ensure_zone(&self, link: &mut Link, zone: &str) -> Result<(), QueueError> {
        self.ensure_shared(link).await?;
        if link.zones_declared.contains(zone) {
            return Ok(());
        }
        let (jobs, dlx, dead) = (self.names.jobs(zone), self.names.dlx(), self.names.dead());
        let args = self.jobs_args(zone);
        let key = zone.to_owned();
        self.declare(link, &format!("declare queue {jobs}"), |ch| async move {
            ch.queue_declare(
                jobs.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
            ch.queue_bind(
                dead.into(),
                dlx.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await?;
        link.zones_declared.insert(zone.to_owned());
        Ok(())
    }
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
