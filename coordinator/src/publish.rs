//! The publish step, one for every mode: seal each shard (signed in a fleet),
//! declare the zones' queues with the topology, register the scan with its shard
//! count, then publish the shards zone by zone. The embedded mode publishes onto
//! its in-memory queue, fleet mode and `watch` onto RabbitMQ or SQS; all three
//! go through [`Publisher::publish`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scanfleet_common::JobEnvelope;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::{JobQueue, QueueAdmin, QueueError, Topology};
use scanfleet_common::store::{ResultStore, StoreError};

use crate::plan::Planned;

/// Why a scan could not be published. Each keeps the backend's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("declaring the queues of zone(s) {zones}")]
    Declare {
        zones: String,
        #[source]
        source: QueueError,
    },
    #[error("registering scan {scan_id} in the result store")]
    Register {
        scan_id: String,
        #[source]
        source: StoreError,
    },
    #[error("publishing the shards of zone {zone}")]
    Publish {
        zone: String,
        #[source]
        source: QueueError,
    },
}

/// Zone names for a message: up to 10, then how many more.
fn zone_list(zones: &[String]) -> String {
    let mut s = zones
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if zones.len() > 10 {
        s.push_str(&format!(" and {} more", zones.len() - 10));
    }
    s
}

/// Everything publishing needs: where the shards go, where the scan is
/// registered, how they are signed and how long they stay valid.
#[derive(Clone)]
pub struct Publisher {
    pub queue: Arc<dyn JobQueue>,
    pub admin: Arc<dyn QueueAdmin>,
    pub store: Arc<dyn ResultStore>,
    /// HMAC key of the envelopes; `None` publishes unsigned jobs (embedded only:
    /// fleet workers refuse them).
    pub secret: Option<Vec<u8>>,
    /// How long a shard stays valid after publishing.
    pub ttl: Duration,
    pub topology: Topology,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub shards: usize,
    pub zones: Vec<String>,
}

impl Publisher {
    /// Publish a planned scan. The scan is registered before its first shard is
    /// on a queue, so a worker never finds a shard of a scan the store does not
    /// know; the queues are declared before that, so a refused topology leaves
    /// no registered scan behind.
    ///
    /// # Errors
    /// [`PublishError`] naming the step and the zone.
    pub async fn publish(&self, planned: &Planned) -> Result<Published, PublishError> {
        let deadline =
            now_unix_ms().saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let mut by_zone: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
        for job in &planned.jobs {
            let env = JobEnvelope::seal(job, 1, deadline, self.secret.as_deref());
            by_zone.entry(&job.zone).or_default().push(env.to_bytes());
        }
        let zones: Vec<String> = by_zone.keys().map(|z| z.to_string()).collect();
        if !zones.is_empty() {
            self.admin
                .init(&zones, &self.topology)
                .await
                .map_err(|source| PublishError::Declare {
                    zones: zone_list(&zones),
                    source,
                })?;
        }
        self.store
            .begin_scan(&planned.scan_id, planned.jobs.len() as u64)
            .await
            .map_err(|source| PublishError::Register {
                scan_id: planned.scan_id.clone(),
                source,
            })?;
        // The shards as planned, for `scanfleet resume`.
        let saved: Vec<(u32, String)> = planned
            .jobs
            .iter()
            .filter_map(|j| serde_json::to_string(j).ok().map(|json| (j.shard_id, json)))
            .collect();
        self.store
            .save_jobs(&planned.scan_id, &saved)
            .await
            .map_err(|source| PublishError::Register {
                scan_id: planned.scan_id.clone(),
                source,
            })?;
        self.send(&by_zone).await?;
        Ok(Published {
            shards: planned.jobs.len(),
            zones,
        })
    }

    /// Publish again some shards of a registered scan (`scanfleet resume`),
    /// sealed anew with a fresh validity; the scan's registration and progress stay.
    ///
    /// # Errors
    /// [`PublishError`] naming the step and the zone.
    pub async fn republish(&self, jobs: &[scanfleet_common::ScanJob]) -> Result<(), PublishError> {
        let deadline =
            now_unix_ms().saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let mut by_zone: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
        for job in jobs {
            let env = JobEnvelope::seal(job, 1, deadline, self.secret.as_deref());
            by_zone.entry(&job.zone).or_default().push(env.to_bytes());
        }
        let zones: Vec<String> = by_zone.keys().map(|z| z.to_string()).collect();
        if !zones.is_empty() {
            self.admin
                .init(&zones, &self.topology)
                .await
                .map_err(|source| PublishError::Declare {
                    zones: zone_list(&zones),
                    source,
                })?;
        }
        self.send(&by_zone).await
    }

    async fn send(&self, by_zone: &BTreeMap<&str, Vec<Vec<u8>>>) -> Result<(), PublishError> {
        for (zone, payloads) in by_zone {
            self.queue
                .publish_batch(zone, payloads)
                .await
                .map_err(|source| PublishError::Publish {
                    zone: zone.to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::queue::memory::MemoryQueue;
    use scanfleet_common::store::memory::MemoryStore;
    use scanfleet_common::{PortSpec, ProbeProfile, ScanJob, Target};

    fn planned(zones: &[&str]) -> Planned {
        let jobs = zones
            .iter()
            .enumerate()
            .map(|(i, z)| ScanJob {
                scan_id: "s-pub".into(),
                shard_id: i as u32,
                zone: z.to_string(),
                targets: vec![Target {
                    ip: format!("10.0.0.{}", i + 1).parse().unwrap(),
                    asset_id: format!("a{i}"),
                    rate_pps: 100,
                }],
                ports: PortSpec::parse("22,80").unwrap(),
                profile: ProbeProfile::default(),
                scope: None,
            })
            .collect::<Vec<_>>();
        Planned {
            scan_id: "s-pub".into(),
            targets: jobs.iter().flat_map(|j| j.targets.clone()).collect(),
            skipped: vec![],
            pairs: 2 * jobs.len() as u64,
            jobs,
        }
    }

    #[tokio::test]
    async fn registers_then_publishes_each_zone_signed_and_dated() {
        let q = Arc::new(MemoryQueue::new(
            Duration::from_secs(60),
            scanfleet_common::queue::DEFAULT_DELIVERY_LIMIT,
        ));
        let store = Arc::new(MemoryStore::new());
        let secret = b"k".repeat(32);
        let p = Publisher {
            queue: q.clone(),
            admin: q.clone(),
            store: store.clone(),
            secret: Some(secret.clone()),
            ttl: Duration::from_secs(3600),
            topology: Topology::default(),
        };
        let out = p.publish(&planned(&["z1", "z2", "z1"])).await.unwrap();
        assert_eq!(out.shards, 3);
        assert_eq!(out.zones, vec!["z1".to_string(), "z2".to_string()]);
        assert_eq!(store.progress("s-pub").await.unwrap().shards_total, 3);
        let mut got = 0;
        for zone in ["z1", "z2"] {
            while let Some(d) = q.receive(zone, Duration::from_millis(10)).await.unwrap() {
                let env = JobEnvelope::from_bytes(&d.payload).unwrap();
                let now = now_unix_ms();
                let job = env.open(Some(&secret), now).unwrap();
                assert_eq!(job.zone, zone);
                assert!(
                    env.deadline_unix_ms > now + 3_500_000
                        && env.deadline_unix_ms <= now + 3_600_000
                );
                q.ack(&d).await.unwrap();
                got += 1;
            }
        }
        assert_eq!(got, 3);
    }
}
