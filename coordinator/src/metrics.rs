//! Coordinator metrics: progress of the scan being followed, served at
//! `--metrics-addr` next to the in-process workers' metrics in the embedded mode.

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use scanfleet_common::Progress;
use scanfleet_common::metrics as names;

/// Serve `/metrics` of `registry` at `addr` until `stop`, bound now so that an
/// address in use is found before anything is published or sent.
///
/// # Errors
/// [`CliError::Input`] naming `--metrics-addr` when the address cannot be bound.
pub async fn serve(
    addr: std::net::SocketAddr,
    registry: Registry,
    stop: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr, crate::error::CliError> {
    scanfleet_common::telemetry::serve(addr, registry, stop)
        .await
        .map_err(|e| crate::error::CliError::Input(format!("--metrics-addr {addr}: {e}")))
}

/// Gauges of one followed scan.
#[derive(Clone)]
pub struct ScanMetrics {
    shards: IntGaugeVec,
    results: IntGauge,
}

impl ScanMetrics {
    /// Register the scan gauges in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let shards = IntGaugeVec::new(
            Opts::new(names::SCAN_SHARDS, "Shards of the followed scan, by state"),
            &["state"],
        )
        .unwrap_or_else(|e| unreachable!("valid gauge: {e}"));
        let results = IntGauge::new(
            names::SCAN_RESULTS,
            "Port results stored for the followed scan",
        )
        .unwrap_or_else(|e| unreachable!("valid gauge: {e}"));
        let _ = registry.register(Box::new(shards.clone()));
        let _ = registry.register(Box::new(results.clone()));
        ScanMetrics { shards, results }
    }

    /// Show a progress reading.
    pub fn set(&self, p: &Progress) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.shards
            .with_label_values(&["total"])
            .set(clamp(p.shards_total));
        self.shards
            .with_label_values(&["done"])
            .set(clamp(p.shards_done));
        self.shards
            .with_label_values(&["failed"])
            .set(clamp(p.shards_failed));
        self.results.set(clamp(p.results));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_in_the_scrape() {
        let registry = Registry::new();
        let m = ScanMetrics::new(&registry);
        m.set(&Progress {
            shards_total: 4,
            shards_done: 3,
            shards_failed: 1,
            results: 17,
            ports_done: 0,
        });
        let text = scanfleet_common::telemetry::render(&registry);
        assert!(
            text.contains("scanfleet_scan_shards{state=\"total\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("scanfleet_scan_shards{state=\"failed\"} 1"),
            "{text}"
        );
        assert!(text.contains("scanfleet_scan_results 17"), "{text}");
    }
}
