//! How the SQS backend is configured, and the limits SQS puts on those settings.

use std::time::Duration;

use crate::queue::QueueError;

/// Longest long poll SQS allows for one ReceiveMessage.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(20);

/// Longest visibility timeout SQS allows, counted from the first receive.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

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

/// Whole seconds, rounded up.
pub(super) fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub(super) fn ceil_duration(d: Duration) -> Duration {
    Duration::from_secs(whole_secs(d))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn seconds_round_up() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(2000)), 2);
        assert_eq!(whole_secs(Duration::from_millis(2001)), 3);
    }
}
