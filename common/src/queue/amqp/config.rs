//! How the RabbitMQ backend is configured, and the checks of those settings.

use std::time::Duration;

use super::topology::valid_name;

/// How the RabbitMQ backend names, declares and uses its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// First part of every queue and exchange name: `<prefix>.jobs.<zone>`,
    /// `<prefix>.dlx`, `<prefix>.dead`.
    pub prefix: String,
    /// Unacked messages the broker hands to one zone's consumer (`basic.qos`). Set it
    /// to the worker's shard concurrency: more would park shards in this worker's
    /// buffer while other workers idle.
    pub prefetch: u16,
    /// Declared as `x-consumer-timeout`: how long a delivery may stay unacked before
    /// the broker closes the channel and requeues it. `None` leaves the server's
    /// setting. Honoured by RabbitMQ 3.12 and later; see the module docs for older
    /// servers.
    pub consumer_timeout: Option<Duration>,
    /// Declare `x-dead-letter-strategy=at-least-once` (with the `x-overflow=reject-publish`
    /// it requires) so that the broker never drops a message it dead-letters after the
    /// delivery limit. Needs RabbitMQ 3.10 or later with the `stream_queue` feature flag;
    /// otherwise the broker falls back to at-most-once.
    pub at_least_once_dead_letter: bool,
    /// Bound on establishing one connection (TCP, TLS and AMQP handshake).
    pub connect_timeout: Duration,
    /// Bound on one broker round trip: declarations, publisher confirms, `basic.get`.
    pub op_timeout: Duration,
    /// First delay before a reconnect attempt after a failed one; doubles per failure.
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            prefix: "scanfleet".into(),
            prefetch: 1,
            consumer_timeout: Some(Duration::from_secs(6 * 3600)),
            at_least_once_dead_letter: true,
            connect_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

impl AmqpConfig {
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.prefix) || self.prefix.len() > 40 {
            return Err(format!(
                "amqp prefix {:?}: expected 1 to 40 characters of A-Z a-z 0-9 . _ -",
                self.prefix
            ));
        }
        if self.prefetch == 0 {
            return Err("amqp prefetch must be at least 1".into());
        }
        if let Some(t) = self.consumer_timeout
            && (t.as_millis() == 0 || t.as_millis() > i64::MAX as u128)
        {
            return Err("amqp consumer_timeout must be positive".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("reconnect_max", self.reconnect_max),
        ] {
            if d.is_zero() {
                return Err(format!("amqp {name} must be positive"));
            }
        }
        if self.reconnect_min > self.reconnect_max {
            return Err("amqp reconnect_min must not exceed reconnect_max".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        assert!(AmqpConfig::default().validate().is_ok());
        let bad = AmqpConfig {
            prefetch: 0,
            ..AmqpConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("prefetch"));
        let bad = AmqpConfig {
            prefix: "a b".into(),
            ..AmqpConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("prefix"));
    }
}
