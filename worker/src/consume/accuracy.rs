//! What the probe engine measured over a shard, kept next to its outcome
//! ([`ShardStats`] in the store, for `scanfleet status`) and exported as metrics.

use scanfleet_common::{ScanJob, ShardStats};
use tokio_util::sync::CancellationToken;

use super::{ShardError, Worker};
use crate::probe::ProbeStats;

/// The shard's stats as the store keeps them.
pub(super) fn shard_stats(job: &ScanJob, engine: &str, stats: &ProbeStats) -> ShardStats {
    ShardStats {
        shard_id: job.shard_id,
        engine: engine.to_string(),
        probes_sent: stats.probes_sent,
        retransmits: stats.retransmits,
        passes: stats.passes,
        miss_chance: stats
            .targets
            .iter()
            .map(|t| t.miss_chance)
            .fold(0.0, f64::max),
        targets: stats.targets.clone(),
    }
}

impl Worker {
    /// Bring the NIC counters of the metrics up to the process totals.
    fn sync_nic_metrics(&self) {
        use scanfleet_common::metrics::NicAllowance;
        use std::sync::atomic::Ordering;
        let t = crate::ena::totals();
        for (i, a) in NicAllowance::ALL.iter().enumerate() {
            let c = self.metrics.nic_exceeded.with_label_values(&[a.as_str()]);
            let total = t.exceeded[i].load(Ordering::Relaxed);
            c.inc_by(total.saturating_sub(c.get()));
        }
        let b = t.backoffs.load(Ordering::Relaxed);
        self.metrics
            .nic_backoffs
            .inc_by(b.saturating_sub(self.metrics.nic_backoffs.get()));
        self.metrics
            .nic_conntrack_available
            .set(t.conntrack_available.load(Ordering::Relaxed));
    }

    /// Export the shard's accuracy as metrics and record it in the store.
    pub(super) async fn record_accuracy(
        &self,
        job: &ScanJob,
        engine: &str,
        stats: &ProbeStats,
        cancel: &CancellationToken,
    ) -> Result<(), ShardError> {
        self.metrics
            .retransmits
            .with_label_values(&[engine])
            .inc_by(stats.retransmits);
        for t in &stats.targets {
            self.metrics.target_backoffs.inc_by(u64::from(t.backoffs));
            self.metrics.target_answer_ratio.observe(t.answer_ratio);
            self.metrics.target_miss_chance.observe(t.miss_chance);
            self.metrics.target_rate.observe(f64::from(t.max_rate_pps));
        }
        self.sync_nic_metrics();
        let s = shard_stats(job, engine, stats);
        self.with_store_retry(cancel, || self.store.record_shard_stats(&job.scan_id, &s))
            .await
    }
}
