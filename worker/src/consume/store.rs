//! The worker's writes to the result store: results, progress and the retry
//! that holds a shard while the store is away.

use std::sync::atomic::Ordering;
use std::time::Duration;

use scanfleet_common::metrics::{DeadLetterReason, ErrorKind, Stage};
use scanfleet_common::store::StoreError;
use scanfleet_common::{ProbeResult, ScanJob};
use tokio_util::sync::CancellationToken;

use super::{ShardError, Worker};

impl Worker {
    /// Write to the store, retrying transient failures with backoff for as long as
    /// the shard is not cancelled: the shard is held (not acked) meanwhile.
    pub(super) async fn with_store_retry<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut op: F,
    ) -> Result<T, ShardError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    self.metrics
                        .errors
                        .with_label_values(&[Stage::Store.as_str(), ErrorKind::Transient.as_str()])
                        .inc();
                    tracing::warn!(error = %e, "result store write failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(ShardError::Cancelled),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.metrics
                        .errors
                        .with_label_values(&[Stage::Store.as_str(), ErrorKind::Permanent.as_str()])
                        .inc();
                    // Its scan is gone from the store: every further delivery would
                    // probe again for nothing. Other permanent errors may be one bad
                    // write, so they are retried within the delivery limit.
                    if let StoreError::UnknownScan(scan) = &e {
                        return Err(ShardError::Permanent {
                            class: DeadLetterReason::UnknownScan,
                            reason: format!(
                                "scan {} is not known to the result store (expired, or its Redis restarted without persistence)",
                                scanfleet_common::text::echo(scan)
                            ),
                        });
                    }
                    return Err(ShardError::Transient(e.to_string()));
                }
            }
        }
    }

    pub(super) async fn write(
        &self,
        cancel: &CancellationToken,
        scan_id: &str,
        batch: &[ProbeResult],
    ) -> Result<(), ShardError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with_store_retry(cancel, || self.store.write_results(scan_id, batch))
            .await?;
        self.stats
            .results_written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.metrics.results_written.inc_by(batch.len() as u64);
        Ok(())
    }

    /// Tell the store how many (target, port) pairs of the shard are decided, so
    /// that progress moves while the shard runs. Best effort: progress is a view,
    /// the shard's results and outcome are what must not be lost, so a failed
    /// report is not retried and does not hold the shard.
    pub(super) async fn report_ports(&self, job: &ScanJob, decided: u64) {
        if let Err(e) = self
            .store
            .record_ports(&job.scan_id, job.shard_id, decided)
            .await
        {
            tracing::debug!(error = %e, "progress report failed; the next one catches up");
        }
    }
}
