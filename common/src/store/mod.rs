//! The result store seam. Workers write through [`ResultStore`]; reports read
//! through it. Backends: [`memory`] for the embedded mode (Redis joins in the
//! fleet work).

pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::types::{ProbeResult, Progress, ScanTimes, ShardOutcome, ShardStats};

/// The outcome reason of a shard a worker refused because its scan was cancelled.
pub const CANCELLED: &str = "scan cancelled (scanfleet cancel)";

/// Store errors know whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("result store unavailable: {0}")]
    Transient(String),
    #[error("result store error: {0}")]
    Permanent(String),
    #[error("scan {0} is not known to the result store")]
    UnknownScan(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Durable, idempotent storage of scan results and progress.
#[async_trait]
pub trait ResultStore: Send + Sync {
    /// Register a scan and how many shards it has.
    async fn begin_scan(&self, scan_id: &str, shards_total: u64) -> Result<(), StoreError>;
    /// Store results; a result with the same (ip, port, protocol) replaces the old
    /// one, so a redelivered shard never double counts. Durable when this returns.
    async fn write_results(&self, scan_id: &str, results: &[ProbeResult])
    -> Result<(), StoreError>;
    /// Record a shard's outcome. Idempotent: returns true only the first time the
    /// shard is recorded as done; `Done` overrides an earlier `Failed`, never the reverse.
    async fn finish_shard(
        &self,
        scan_id: &str,
        shard_id: u32,
        outcome: &ShardOutcome,
    ) -> Result<bool, StoreError>;
    /// A shard has decided `ports_done` of its (target, port) pairs so far; workers
    /// call this per result batch so that progress moves while a shard runs. A
    /// shard's count only grows (a smaller value, as from a redelivery starting
    /// over, is ignored), so the scan's [`Progress::ports_done`] never counts a
    /// pair twice.
    async fn record_ports(
        &self,
        scan_id: &str,
        shard_id: u32,
        ports_done: u64,
    ) -> Result<(), StoreError>;
    /// Record what the probe engine measured over a shard (probes, retransmissions,
    /// answer ratios, budgets, estimated miss chance); a redelivered shard's record
    /// replaces the earlier one.
    async fn record_shard_stats(&self, scan_id: &str, stats: &ShardStats)
    -> Result<(), StoreError>;
    /// Every recorded [`ShardStats`] of a scan, by shard id.
    async fn shard_stats(&self, scan_id: &str) -> Result<Vec<ShardStats>, StoreError>;
    /// Shards and results counted so far.
    async fn progress(&self, scan_id: &str) -> Result<Progress, StoreError>;
    /// All stored results of a scan, ordered by ip then port.
    async fn results(&self, scan_id: &str) -> Result<Vec<ProbeResult>, StoreError>;
    /// The shards of a scan that have no outcome yet, in order: what a scan that
    /// ends at its deadline is missing.
    async fn unfinished_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError>;
    /// When the scan was registered, and when its last shard got an outcome.
    async fn times(&self, scan_id: &str) -> Result<ScanTimes, StoreError>;
    /// The shards of a scan whose recorded outcome is a failure (dead-lettered,
    /// refused as cancelled), in order: what `scanfleet resume` runs again with
    /// those that have no outcome yet.
    async fn failed_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError>;
    /// Take the failure outcome off these shards (those that have one), so that
    /// the scan counts them pending again (`scanfleet resume`). Returns how many.
    async fn reopen_failed(&self, scan_id: &str, shards: &[u32]) -> Result<u64, StoreError>;
    /// Keep the scan's shards as planned (shard id, the job's JSON), so that
    /// `scanfleet resume` can publish again those that never finished.
    async fn save_jobs(&self, scan_id: &str, jobs: &[(u32, String)]) -> Result<(), StoreError>;
    /// The shards [`ResultStore::save_jobs`] kept, by shard id.
    async fn jobs(&self, scan_id: &str) -> Result<Vec<(u32, String)>, StoreError>;
    /// Mark the scan cancelled (`scanfleet cancel`): workers refuse its shards
    /// from now on. Returns false when it already was.
    async fn cancel_scan(&self, scan_id: &str) -> Result<bool, StoreError>;
    /// Take the cancel mark off (`scanfleet resume` of a cancelled scan).
    async fn uncancel_scan(&self, scan_id: &str) -> Result<(), StoreError>;
    /// True when the scan was cancelled.
    async fn is_cancelled(&self, scan_id: &str) -> Result<bool, StoreError>;
}
