//! Shards that end in the dead-letter queue without a word to the store: the
//! broker dead-letters a shard whose workers all died on it (the delivery limit
//! counts deliveries, and a killed worker says nothing), and a worker that refuses
//! a job (a secret that differs from the coordinator's, a scope it does not allow)
//! dead-letters it before it trusts the shard id. The coordinator following the
//! scan reads the dead-letter queue, leaves the letters there for `scanfleet
//! queues dead-letters`, and records each of its own unfinished shards it finds as
//! failed with the letter's reason, so that the scan ends.

use scanfleet_common::JobEnvelope;
use scanfleet_common::ShardOutcome;
use scanfleet_common::queue::{QueueAdmin, QueueError};
use scanfleet_common::store::{ResultStore, StoreError};

/// How many dead letters one look reads at most.
pub const PEEK_MAX: usize = 1000;

/// Why a look at the dead-letter queue failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the dead-letter queue")]
    Queue(#[source] QueueError),
    #[error("recording a dead-lettered shard")]
    Store(#[source] StoreError),
}

/// One scan's view of the dead-letter queue.
pub struct DeadLetters<'a> {
    pub admin: &'a dyn QueueAdmin,
    pub store: &'a dyn ResultStore,
    /// The secret the scan's jobs were signed with: a letter that does not open
    /// with it is not this scan's.
    pub secret: Option<&'a [u8]>,
    pub scan_id: &'a str,
}

impl DeadLetters<'_> {
    /// Record as failed every unfinished shard of the scan whose job is in the
    /// dead-letter queue (among its first [`PEEK_MAX`] letters). Returns the shards
    /// recorded now, with the reason each was dead-lettered for.
    ///
    /// # Errors
    /// [`ReconcileError`] when the queue or the store cannot be read or written.
    pub async fn reconcile(&self) -> Result<Vec<(u32, String)>, ReconcileError> {
        let unfinished = self
            .store
            .unfinished_shards(self.scan_id)
            .await
            .map_err(ReconcileError::Store)?;
        if unfinished.is_empty() {
            return Ok(Vec::new());
        }
        let letters = self
            .admin
            .peek_dead_letters(PEEK_MAX)
            .await
            .map_err(ReconcileError::Queue)?;
        let mut recorded: Vec<(u32, String)> = Vec::new();
        for letter in letters {
            let Ok(env) = JobEnvelope::from_bytes(&letter.payload) else {
                continue;
            };
            if env.scan_id != self.scan_id
                || !unfinished.contains(&env.shard_id)
                || recorded.iter().any(|(id, _)| *id == env.shard_id)
            {
                continue;
            }
            // Signed by us (an expired job is still ours: it is opened as of its
            // own deadline), so the shard id can be trusted.
            if env.open(self.secret, env.deadline_unix_ms).is_err() {
                continue;
            }
            let reason = format!("dead-lettered: {}", letter.reason);
            self.store
                .finish_shard(
                    self.scan_id,
                    env.shard_id,
                    &ShardOutcome::Failed {
                        reason: reason.clone(),
                    },
                )
                .await
                .map_err(ReconcileError::Store)?;
            recorded.push((env.shard_id, letter.reason));
        }
        Ok(recorded)
    }
}

/// Dead letters made by hand, for the tests of this module and of the follow.
#[cfg(test)]
pub(crate) mod testing {
    use scanfleet_common::JobEnvelope;
    use scanfleet_common::queue::memory::MemoryQueue;
    use scanfleet_common::queue::{JobQueue, Nack};
    use scanfleet_common::{PortSpec, ProbeProfile, ScanJob};
    use std::time::Duration;

    /// An envelope of shard `shard` of `scan`, signed with `secret`.
    pub fn sealed(scan: &str, shard: u32, secret: &[u8]) -> Vec<u8> {
        let job = ScanJob {
            scan_id: scan.into(),
            shard_id: shard,
            zone: "default".into(),
            targets: Vec::new(),
            ports: PortSpec::parse("22").unwrap(),
            profile: ProbeProfile::default(),
            scope: None,
        };
        JobEnvelope::seal(&job, 1, 1_000, Some(secret)).to_bytes()
    }

    /// Publish `payload` and dead-letter it with `reason`, as a worker would.
    pub async fn dead_letter(q: &MemoryQueue, payload: &[u8], reason: &str) {
        q.publish("default", payload).await.unwrap();
        let d = q
            .receive("default", Duration::from_millis(50))
            .await
            .unwrap()
            .unwrap();
        q.nack(
            &d,
            Nack::DeadLetter {
                reason: reason.into(),
            },
        )
        .await
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{dead_letter, sealed};
    use super::*;
    use scanfleet_common::queue::Topology;
    use scanfleet_common::queue::memory::MemoryQueue;
    use scanfleet_common::store::memory::MemoryStore;
    use std::time::Duration;

    #[tokio::test]
    async fn only_this_scans_unfinished_shards_signed_by_us_are_failed() {
        let ours = b"o".repeat(32);
        let theirs = b"t".repeat(32);
        let q = MemoryQueue::new(Duration::from_secs(30), 5);
        q.init(&["default".into()], &Topology::with_delivery_limit(5))
            .await
            .unwrap();
        let store = MemoryStore::new();
        store.begin_scan("s1", 4).await.unwrap();
        store
            .finish_shard("s1", 3, &ShardOutcome::Done)
            .await
            .unwrap();
        dead_letter(&q, &sealed("s1", 0, &ours), "delivery limit of 2 reached").await;
        dead_letter(&q, &sealed("s1", 1, &theirs), "forged").await;
        dead_letter(&q, &sealed("s2", 2, &ours), "another scan").await;
        dead_letter(&q, &sealed("s1", 3, &ours), "a duplicate of a done shard").await;
        dead_letter(&q, b"not an envelope", "malformed").await;
        let dl = DeadLetters {
            admin: &q,
            store: &store,
            secret: Some(&ours),
            scan_id: "s1",
        };
        let got = dl.reconcile().await.unwrap();
        assert_eq!(got, [(0, "delivery limit of 2 reached".to_string())]);
        let p = store.progress("s1").await.unwrap();
        assert_eq!((p.shards_done, p.shards_failed), (1, 1));
        assert_eq!(store.unfinished_shards("s1").await.unwrap(), [1, 2]);
        // Nothing is recorded twice, and the letters stay for `queues dead-letters`.
        assert!(dl.reconcile().await.unwrap().is_empty());
        assert_eq!(q.peek_dead_letters(100).await.unwrap().len(), 5);
    }
}
