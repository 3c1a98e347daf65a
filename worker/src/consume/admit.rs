//! What a worker checks of a verified job before it probes anything: the job's
//! targets against its own scope and the full scope the job carries, and whether
//! the scan was cancelled.

use scanfleet_common::metrics::DeadLetterReason;
use scanfleet_common::{ScanJob, ShardOutcome};
use tokio_util::sync::CancellationToken;

use super::{ShardError, Worker};

impl Worker {
    /// `Ok(true)`: probe the job. `Ok(false)`: its scan was cancelled, the shard is
    /// recorded failed and is to be acknowledged unprobed. A target out of scope is
    /// a permanent error (dead-lettered with reason `scope`).
    pub(super) async fn admit(
        &self,
        job: &ScanJob,
        cancel: &CancellationToken,
    ) -> Result<bool, ShardError> {
        // Address classes (multicast, link-local, ...) pass only when the signed job
        // says the user allowed them by name.
        let allowed = &job.profile.allow_address_classes;
        if let Some((t, why)) = job.targets.iter().find_map(|t| {
            self.config
                .scope
                .check_job_target(t.ip, allowed)
                .map(|why| (t, why))
        }) {
            return Err(ShardError::Permanent {
                class: DeadLetterReason::Scope,
                reason: format!("target {} is out of this worker's scope: {why}", t.ip),
            });
        }
        // The full rules the coordinator planned under (instance type, discovered
        // only, state, accounts, VPCs, tags, public addresses, CIDRs), carried in
        // the signed job: a planner bug must not become a probe.
        if let Some(js) = &job.scope
            && let Some((t, why)) = job
                .targets
                .iter()
                .find_map(|t| js.check(t).map(|why| (t, why)))
        {
            return Err(ShardError::Permanent {
                class: DeadLetterReason::Scope,
                reason: format!(
                    "target {} ({}) is out of the job's own scope: {why}",
                    t.ip,
                    scanfleet_common::text::escape(&t.asset_id, 80)
                ),
            });
        }
        // And the worker's own rules on what the job says of each asset (its own
        // prohibited instance types, account and tag exclusions).
        if let Some(js) = &job.scope
            && let Some((t, why)) = job.targets.iter().find_map(|t| {
                self.config
                    .scope
                    .check_asset(&js.asset_of(t))
                    .map(|why| (t, why))
            })
        {
            return Err(ShardError::Permanent {
                class: DeadLetterReason::Scope,
                reason: format!("target {} is out of this worker's scope: {why}", t.ip),
            });
        }
        // A cancelled scan's shards are drained unprobed: recorded as failed (so
        // whoever follows the scan sees it end) and acknowledged.
        if self
            .with_store_retry(cancel, || self.store.is_cancelled(&job.scan_id))
            .await?
        {
            tracing::info!(scan = %job.scan_id, shard = job.shard_id, "scan cancelled: shard drained unprobed");
            let refused = ShardOutcome::Failed {
                reason: scanfleet_common::store::CANCELLED.into(),
            };
            self.with_store_retry(cancel, || {
                self.store
                    .finish_shard(&job.scan_id, job.shard_id, &refused)
            })
            .await?;
            return Ok(false);
        }
        Ok(true)
    }
}
