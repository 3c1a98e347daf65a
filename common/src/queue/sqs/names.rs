//! Queue names: the `--queue` target, a zone's queue, the dead-letter queue.

use super::{DEFAULT_ZONE, SqsQueue};
use crate::queue::QueueError;

/// Longest SQS queue name.
pub(super) const MAX_QUEUE_NAME: usize = 80;

/// Suffix of the dead-letter queue; also why no zone may be called `dlq`.
pub(super) const DLQ_SUFFIX: &str = "dlq";

/// How queue URLs are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Locate {
    /// `sqs://NAME`: each queue's URL comes from GetQueueUrl.
    ByName,
    /// A full queue URL: every queue lives at this prefix (`<endpoint>/<account>/`)
    /// plus its name, as SQS URLs always do.
    Prefix(String),
}

/// A parsed `--queue` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) name: String,
    pub(super) locate: Locate,
    /// The endpoint a non-AWS queue URL points at (an emulator).
    pub(super) endpoint: Option<String>,
    /// The region an `amazonaws.com` queue URL names.
    pub(super) region: Option<String>,
}

impl SqsQueue {
    /// The SQS queue name of `zone`.
    ///
    /// # Errors
    /// [`QueueError::Permanent`] when the zone cannot be part of a queue name: it
    /// is empty, is `dlq`, has characters other than `A-Za-z0-9_-`, or makes the
    /// name longer than 80 characters.
    pub fn queue_name(&self, zone: &str) -> Result<String, QueueError> {
        if zone == DEFAULT_ZONE {
            return Ok(self.name.clone());
        }
        if zone == DLQ_SUFFIX {
            return Err(QueueError::Permanent(format!(
                "zone {zone:?} is reserved: {}-{DLQ_SUFFIX} is the dead-letter queue",
                self.name
            )));
        }
        if zone.is_empty() || !zone.chars().all(is_name_char) {
            return Err(QueueError::Permanent(format!(
                "zone {zone:?} cannot be part of an SQS queue name: use only A-Z, a-z, 0-9, '-' and '_'"
            )));
        }
        let name = format!("{}-{zone}", self.name);
        if name.len() > MAX_QUEUE_NAME {
            return Err(QueueError::Permanent(format!(
                "SQS queue name {name} for zone {zone:?} is longer than {MAX_QUEUE_NAME} characters"
            )));
        }
        Ok(name)
    }

    /// The dead-letter queue's name.
    pub fn dlq_name(&self) -> String {
        format!("{}-{DLQ_SUFFIX}", self.name)
    }

    /// The zone whose queue is called `queue`, if it is one of ours.
    pub(super) fn zone_of(&self, queue: &str) -> Option<String> {
        if queue == self.name {
            return Some(DEFAULT_ZONE.to_string());
        }
        let zone = queue.strip_prefix(&self.name)?.strip_prefix('-')?;
        (zone != DLQ_SUFFIX).then(|| zone.to_string())
    }
}

/// Parse `sqs://NAME` or a full queue URL.
pub(super) fn parse_target(target: &str) -> Result<Target, QueueError> {
    let usage = || {
        QueueError::Permanent(format!(
            "SQS target {target:?}: expected sqs://NAME or a queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
        ))
    };
    if let Some(name) = target.strip_prefix("sqs://") {
        check_base_name(name, target)?;
        return Ok(Target {
            name: name.to_string(),
            locate: Locate::ByName,
            endpoint: None,
            region: None,
        });
    }
    let (scheme, rest) = if let Some(rest) = target.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = target.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(usage());
    };
    let (host, path) = rest.split_once('/').ok_or_else(usage)?;
    let (account, name) = path
        .trim_end_matches('/')
        .split_once('/')
        .ok_or_else(usage)?;
    if host.is_empty() || account.is_empty() || account.contains(['?', '#']) {
        return Err(usage());
    }
    check_base_name(name, target)?;
    let hostname = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let hostname = hostname.split(':').next().unwrap_or(hostname);
    let region = aws_region_of(hostname);
    Ok(Target {
        name: name.to_string(),
        locate: Locate::Prefix(format!("{scheme}://{host}/{account}/")),
        // AWS hosts are found from the region (FIPS, dual-stack and custom
        // endpoints then still apply); anything else is an emulator at that host.
        endpoint: region.is_none().then(|| format!("{scheme}://{host}")),
        region,
    })
}

/// The region of an SQS host on AWS (`sqs.R.amazonaws.com`, `R.queue.amazonaws.com`,
/// `queue.amazonaws.com`), or `None` for any other host.
pub(super) fn aws_region_of(host: &str) -> Option<String> {
    let base = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    if base == "queue" {
        return Some("us-east-1".to_string());
    }
    let region = base
        .strip_prefix("sqs.")
        .or_else(|| base.strip_suffix(".queue"))?;
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| region.to_string())
}

/// A base name must leave room for `-dlq` within SQS's 80 characters.
pub(super) fn check_base_name(name: &str, target: &str) -> Result<(), QueueError> {
    let max = MAX_QUEUE_NAME - DLQ_SUFFIX.len() - 1;
    if name.is_empty() || name.len() > max || !name.chars().all(is_name_char) {
        return Err(QueueError::Permanent(format!(
            "SQS target {target:?}: queue name {name:?} must be 1 to {max} characters of A-Z, a-z, 0-9, '-' and '_' \
             (FIFO queues are not supported)"
        )));
    }
    Ok(())
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::SdkConfig;
    use aws_sdk_sqs::config::BehaviorVersion;

    use crate::queue::sqs::SqsConfig;

    #[test]
    fn targets_parse() {
        let t = parse_target("sqs://scan-jobs").unwrap();
        assert_eq!(
            (t.name.as_str(), &t.locate, &t.endpoint, &t.region),
            ("scan-jobs", &Locate::ByName, &None, &None)
        );

        let t = parse_target("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs").unwrap();
        assert_eq!(t.name, "jobs");
        assert_eq!(
            t.locate,
            Locate::Prefix("https://sqs.eu-west-1.amazonaws.com/123456789012/".into())
        );
        assert_eq!((t.endpoint, t.region.as_deref()), (None, Some("eu-west-1")));

        let t = parse_target("https://us-west-2.queue.amazonaws.com/1/jobs").unwrap();
        assert_eq!(t.region.as_deref(), Some("us-west-2"));

        let t = parse_target("http://127.0.0.1:5000/123456789012/jobs/").unwrap();
        assert_eq!(t.name, "jobs");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(t.region, None);
        assert_eq!(
            t.locate,
            Locate::Prefix("http://127.0.0.1:5000/123456789012/".into())
        );

        for bad in [
            "jobs",
            "sqs://",
            "sqs://a.fifo",
            "sqs://a/b",
            "amqp://x/y/z",
            "http://host/only-name",
            "http://host/1/a/b",
            "http:///1/a",
            &format!("sqs://{}", "x".repeat(77)),
        ] {
            assert!(
                matches!(parse_target(bad), Err(QueueError::Permanent(_))),
                "{bad}"
            );
        }
        assert!(parse_target(&format!("sqs://{}", "x".repeat(76))).is_ok());
    }

    fn queue(name: &str) -> SqsQueue {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let config = SqsConfig {
            region: Some("us-east-1".into()),
            ..SqsConfig::default()
        };
        SqsQueue::with_sdk_config(&format!("sqs://{name}"), config, &sdk).unwrap()
    }

    #[test]
    fn zone_names() {
        let q = queue("jobs");
        assert_eq!(q.queue_name("default").unwrap(), "jobs");
        assert_eq!(q.queue_name("vpc-0abc_1").unwrap(), "jobs-vpc-0abc_1");
        assert_eq!(q.dlq_name(), "jobs-dlq");
        for bad in ["", "dlq", "a.b", "a/b", "zoné", &"z".repeat(76)] {
            let err = q.queue_name(bad).unwrap_err();
            assert!(matches!(err, QueueError::Permanent(_)), "{bad}: {err}");
        }
        assert!(
            q.queue_name("a.b")
                .unwrap_err()
                .to_string()
                .contains("\"a.b\"")
        );
        assert_eq!(q.zone_of("jobs").as_deref(), Some("default"));
        assert_eq!(q.zone_of("jobs-z1").as_deref(), Some("z1"));
        assert_eq!(q.zone_of("jobs-dlq"), None);
        assert_eq!(q.zone_of("other-z1"), None);
    }
}
