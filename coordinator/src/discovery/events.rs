//! Continuous discovery: EC2 instance state-change events (EventBridge's JSON,
//! delivered to an SQS queue by an EventBridge rule, directly or through SNS)
//! and a full rediscovery on a schedule.
//!
//! [`watch`] long-polls the queue; each event makes the account-region it names
//! be described afresh ([`AwsDiscoverer::discover_region`]), and what changed in
//! the inventory is sent on a channel as a [`WatchEvent`], for the caller to scope
//! and queue. A message is deleted only after its change was sent; a message
//! whose rediscovery failed stays on the queue and comes back after its visibility
//! timeout (the queue's redrive policy dead-letters it after a few tries). A
//! message that is not a state-change event is deleted with a warning: it can
//! never succeed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::aws::AwsDiscoverer;
use super::{AssetDiff, Discovery, DiscoveryError, Failure};
use crate::estate::network::Location;

/// EventBridge's `detail-type` of EC2 instance state changes.
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
/// Instance states EC2 reports.
pub const STATES: [&str; 6] = [
    "pending",
    "running",
    "shutting-down",
    "terminated",
    "stopping",
    "stopped",
];
/// Longest long poll SQS allows.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest pause between retries of a failing receive.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One instance state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down` or `terminated`.
    pub state: String,
    /// When EC2 saw the change (RFC 3339), as the event says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// EventBridge's event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl StateChange {
    pub fn location(&self) -> Location {
        Location {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
        }
    }
}

/// Why a message is not a usable state-change event. Always permanent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The body does not parse; the parser's error says where. Shown whole,
    /// because the reason travels as one line in [`WatchEvent::Dropped`].
    #[error("not JSON: {0}")]
    NotJson(#[source] Arc<serde_json::Error>),
    #[error(
        "not an EC2 instance state-change event (source {event_source:?}, detail-type {detail_type:?})"
    )]
    NotStateChange {
        event_source: Option<String>,
        detail_type: Option<String>,
    },
    #[error("event has no {0}")]
    Missing(&'static str),
    #[error("event field {field} has an invalid value {value:?}")]
    Invalid { field: &'static str, value: String },
}

#[derive(Deserialize)]
struct Envelope {
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    account: Option<String>,
    region: Option<String>,
    time: Option<String>,
    id: Option<String>,
    detail: Option<Detail>,
    /// SNS notification wrapping the event.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    sns_message: Option<String>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "instance-id")]
    instance_id: Option<String>,
    state: Option<String>,
}

/// Parse an EventBridge EC2 instance state-change event, as the body of an SQS
/// message (directly, or wrapped in an SNS notification).
///
/// # Errors
/// [`EventError`] saying what is wrong; every such message is unusable as it is.
pub fn parse_state_change(body: &str) -> Result<StateChange, EventError> {
    let e: Envelope = serde_json::from_str(body).map_err(|e| EventError::NotJson(Arc::new(e)))?;
    if e.sns_type.as_deref() == Some("Notification")
        && let Some(inner) = &e.sns_message
    {
        return parse_state_change(inner);
    }
    if e.source.as_deref() != Some("aws.ec2") || e.detail_type.as_deref() != Some(STATE_CHANGE) {
        return Err(EventError::NotStateChange {
            event_source: e.source,
            detail_type: e.detail_type,
        });
    }
    let account_id = e.account.ok_or(EventError::Missing("account"))?;
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EventError::Invalid {
            field: "account",
            value: account_id,
        });
    }
    let region = e.region.ok_or(EventError::Missing("region"))?;
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(EventError::Invalid {
            field: "region",
            value: region,
        });
    }
    let detail = e.detail.ok_or(EventError::Missing("detail"))?;
    let instance_id = detail
        .instance_id
        .ok_or(EventError::Missing("detail.instance-id"))?;
    let valid_id = instance_id.strip_prefix("i-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 32 && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !valid_id {
        return Err(EventError::Invalid {
            field: "detail.instance-id",
            value: instance_id,
        });
    }
    let state = detail.state.ok_or(EventError::Missing("detail.state"))?;
    if !STATES.contains(&state.as_str()) {
        return Err(EventError::Invalid {
            field: "detail.state",
            value: state,
        });
    }
    Ok(StateChange {
        account_id,
        region,
        instance_id,
        state,
        time: e.time,
        event_id: e.id,
    })
}

/// What the watch loop tells its caller.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// Instances of one account-region changed state: the region was described
    /// again and this is what changed in the inventory. New running instances are
    /// in `diff.new` (or in `diff.changed` when they were known but stopped).
    Changed {
        location: Location,
        events: Vec<StateChange>,
        diff: AssetDiff,
    },
    /// The scheduled full rediscovery finished; accounts and regions that failed
    /// kept what was known of them.
    Rediscovered {
        diff: AssetDiff,
        failures: Vec<Failure>,
    },
    /// A message that is not a state-change event was deleted.
    Dropped {
        message_id: Option<String>,
        reason: String,
    },
    /// Describing an account-region after its events failed; the messages stay
    /// on the queue and come back.
    Failed {
        location: Location,
        failure: Failure,
    },
}

/// How to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// The SQS queue EventBridge delivers the events to.
    pub queue_url: String,
    /// Long-poll wait per ReceiveMessage (at most 20 s).
    pub wait: Duration,
    /// Messages per ReceiveMessage (1 to 10).
    pub batch: i32,
    /// Rediscover the whole estate this often; `None` never does.
    pub rediscover_every: Option<Duration>,
}

impl WatchOptions {
    pub fn new(queue_url: impl Into<String>) -> Self {
        WatchOptions {
            queue_url: queue_url.into(),
            wait: MAX_WAIT,
            batch: 10,
            rediscover_every: Some(Duration::from_secs(6 * 3600)),
        }
    }
}

/// Why the watch loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch: {0}")]
    Invalid(String),
    /// The queue cannot be read and retrying will not help (no such queue,
    /// access denied), as [`scanfleet_common::aws::classify`] decides.
    #[error("watch: receiving from {queue}: {detail}")]
    Queue {
        queue: String,
        /// The AWS error code and message.
        detail: String,
        #[source]
        source: Box<SdkError<ReceiveMessageError>>,
    },
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// Carry what was known of the accounts and regions that failed in `fresh`
/// over from `old`, so that a failure never reads as "everything there is gone".
pub fn carry_over(old: &Discovery, fresh: &mut Discovery) {
    let mut keep: Vec<Location> = Vec::new();
    for f in &fresh.failures {
        let Some(account) = &f.account_id else {
            continue;
        };
        let lost_instances = f.region.is_none() || f.operation == "ec2:DescribeInstances";
        if !lost_instances {
            continue;
        }
        let known = old
            .instances
            .iter()
            .map(|i| &i.location)
            .chain(old.network.vpcs.iter().map(|v| &v.location));
        for at in known {
            if &at.account_id == account
                && f.region.as_ref().is_none_or(|r| r == &at.region)
                && !keep.contains(at)
            {
                keep.push(at.clone());
            }
        }
    }
    for at in keep {
        let instances = old
            .instances
            .iter()
            .filter(|i| i.location == at)
            .cloned()
            .collect();
        fresh.replace_region(
            &at,
            instances,
            old.network.of(&at),
            !old.incomplete.contains(&at),
        );
    }
}

/// Watch the queue until `shutdown`, keeping `current` up to date and sending
/// every change on `tx`. Returns the last state of the discovery.
///
/// # Errors
/// [`WatchError::Invalid`] for bad options, [`WatchError::Queue`] when the queue
/// cannot be read for a reason retrying will not fix. Transient receive failures
/// are retried with backoff.
pub async fn watch(
    discoverer: Arc<AwsDiscoverer>,
    mut current: Discovery,
    opts: WatchOptions,
    sqs: aws_sdk_sqs::Client,
    tx: mpsc::Sender<WatchEvent>,
    shutdown: CancellationToken,
) -> Result<Discovery, WatchError> {
    if !(1..=10).contains(&opts.batch) {
        return Err(WatchError::Invalid(format!(
            "batch {}: expected 1 to 10",
            opts.batch
        )));
    }
    if opts.wait > MAX_WAIT {
        return Err(WatchError::Invalid(format!(
            "wait {:?}: at most 20 s",
            opts.wait
        )));
    }
    let mut tick = opts.rediscover_every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut backoff = Duration::from_millis(500);
    loop {
        let rediscover = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let receive = sqs
            .receive_message()
            .queue_url(&opts.queue_url)
            .max_number_of_messages(opts.batch)
            .wait_time_seconds(opts.wait.as_secs() as i32)
            .send();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(current),
            _ = rediscover => {
                let mut fresh = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(current),
                    d = discoverer.discover() => d?,
                };
                carry_over(&current, &mut fresh);
                let diff = fresh.diff(&current.assets);
                let failures = fresh.failures.clone();
                current = fresh;
                if tx.send(WatchEvent::Rediscovered { diff, failures }).await.is_err() {
                    return Ok(current);
                }
            }
            received = receive => {
                let out = match received {
                    Ok(out) => { backoff = Duration::from_millis(500); out }
                    Err(e) => {
                        let info = scanfleet_common::aws::inspect(&e);
                        if !info.class.is_retryable() {
                            let detail = match &info.code {
                                Some(c) => format!("{c}: {}", info.message),
                                None => info.message,
                            };
                            return Err(WatchError::Queue { queue: opts.queue_url.clone(), detail, source: Box::new(e) });
                        }
                        tracing::warn!(error = %info.message, class = ?info.class, "watch: receiving events failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(current),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                if !handle_batch(&discoverer, &mut current, &opts, &sqs, &tx, out.messages()).await {
                    return Ok(current);
                }
            }
        }
    }
}

/// Handle one batch of messages; false when the receiver is gone.
async fn handle_batch(
    discoverer: &AwsDiscoverer,
    current: &mut Discovery,
    opts: &WatchOptions,
    sqs: &aws_sdk_sqs::Client,
    tx: &mpsc::Sender<WatchEvent>,
    messages: &[aws_sdk_sqs::types::Message],
) -> bool {
    let mut done: Vec<String> = Vec::new();
    let mut by_location: BTreeMap<Location, (Vec<StateChange>, Vec<String>)> = BTreeMap::new();
    for m in messages {
        let Some(handle) = m.receipt_handle() else {
            continue;
        };
        match parse_state_change(m.body().unwrap_or_default()) {
            Ok(change) => {
                let entry = by_location.entry(change.location()).or_default();
                entry.0.push(change);
                entry.1.push(handle.to_string());
            }
            Err(e) => {
                tracing::warn!(message_id = m.message_id().unwrap_or("-"), error = %e, "watch: dropping a message that is not a state-change event");
                done.push(handle.to_string());
                let dropped = WatchEvent::Dropped {
                    message_id: m.message_id().map(str::to_string),
                    reason: e.to_string(),
                };
                if tx.send(dropped).await.is_err() {
                    return false;
                }
            }
        }
    }
    for (location, (events, handles)) in by_location {
        match discoverer
            .discover_region(&location.account_id, &location.region)
            .await
        {
            Ok(s) if s.instances_ok => {
                let before = current.assets.clone();
                current.replace_region(&location, s.instances, s.network, s.network_ok);
                let diff = current.diff(&before);
                if tx
                    .send(WatchEvent::Changed {
                        location,
                        events,
                        diff,
                    })
                    .await
                    .is_err()
                {
                    return false;
                }
                done.extend(handles);
            }
            Ok(s) => {
                let failure = s.failures.into_iter().next().unwrap_or_else(|| Failure {
                    account_id: Some(location.account_id.clone()),
                    region: Some(location.region.clone()),
                    operation: "ec2:DescribeInstances".into(),
                    code: None,
                    message: "no answer".into(),
                    transient: true,
                });
                if tx
                    .send(WatchEvent::Failed { location, failure })
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            Err(failure) => {
                if tx
                    .send(WatchEvent::Failed { location, failure })
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
    for chunk in done.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs
            .delete_message_batch()
            .queue_url(&opts.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // The messages come back after their visibility timeout and are handled
            // again; rediscovering a region twice is harmless.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "watch: deleting handled messages failed");
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::testing::{instance, location};

    const EVENT: &str = r#"{
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2015-11-11T21:29:54Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {"instance-id": "i-abcd1111", "state": "running"}
    }"#;

    #[test]
    fn parses_eventbridge_state_changes() {
        let c = parse_state_change(EVENT).unwrap();
        assert_eq!(
            c,
            StateChange {
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                instance_id: "i-abcd1111".into(),
                state: "running".into(),
                time: Some("2015-11-11T21:29:54Z".into()),
                event_id: Some("7bf73129-1428-4cd3-a780-95db273d1602".into()),
            }
        );
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": EVENT})
            .to_string();
        assert_eq!(parse_state_change(&sns).unwrap(), c);
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(EVENT).unwrap();
            f(&mut v);
            parse_state_change(&v.to_string()).unwrap_err().to_string()
        };
        assert!(
            parse_state_change("{")
                .unwrap_err()
                .to_string()
                .starts_with("not JSON")
        );
        assert!(
            with(&|v| v["source"] = "aws.s3".into())
                .contains("not an EC2 instance state-change event")
        );
        assert!(
            with(&|v| v["detail-type"] = "EC2 Spot Instance Interruption Warning".into())
                .contains("not an EC2")
        );
        assert_eq!(
            with(&|v| {
                v.as_object_mut().unwrap().remove("account");
            }),
            "event has no account"
        );
        assert!(with(&|v| v["account"] = "1234".into()).contains("account"));
        assert!(with(&|v| v["region"] = "US East".into()).contains("region"));
        assert!(
            with(&|v| v["detail"]["instance-id"] = "i-zz; rm -rf".into()).contains("instance-id")
        );
        assert!(with(&|v| v["detail"]["state"] = "exploded".into()).contains("detail.state"));
        assert_eq!(
            with(&|v| {
                v.as_object_mut().unwrap().remove("detail");
            }),
            "event has no detail"
        );
    }

    #[test]
    fn a_failed_account_or_region_keeps_what_was_known() {
        let known = [
            ("i-a1", "111111111111", "us-east-1", "10.0.0.1"),
            ("i-a2", "111111111111", "eu-west-1", "10.0.0.2"),
            ("i-b1", "222222222222", "us-east-1", "10.0.0.3"),
            ("i-c1", "333333333333", "us-east-1", "10.0.0.4"),
        ];
        let mut old = Discovery {
            instances: known
                .iter()
                .map(|(id, account, region, ip)| {
                    instance(id, location(account, region), None, &[ip])
                })
                .collect(),
            ..Discovery::default()
        };
        old.rebuild_assets();
        // Account 1 could not be entered, account 2 lost us-east-1's instances,
        // account 3 answered: its instance is really gone.
        let fail = |account: &str, region: Option<&str>, op: &str| Failure {
            account_id: Some(account.into()),
            region: region.map(str::to_string),
            operation: op.into(),
            code: Some("Throttling".into()),
            message: "slow down".into(),
            transient: true,
        };
        let mut fresh = Discovery {
            failures: vec![
                fail("111111111111", None, "sts:AssumeRole"),
                fail("222222222222", Some("us-east-1"), "ec2:DescribeInstances"),
            ],
            ..Discovery::default()
        };
        carry_over(&old, &mut fresh);
        let ids: Vec<&str> = fresh.assets.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["i-a2", "i-a1", "i-b1"]);
        let d = fresh.diff(&old.assets);
        assert_eq!(
            d.gone.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["i-c1"]
        );
        assert!(d.new.is_empty() && d.changed.is_empty());
    }
}
