//! The UDP part of a shard (`-sU`): after the TCP ports, the job's UDP ports are
//! probed by [`crate::probe::udp`] with the same targets (scope already
//! checked, host discovery already applied), the same rate budgets and the same
//! profile. An open UDP port's service comes from the probe's own answer, so
//! there is no separate detection step; results carry `"protocol":"udp"`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use scanfleet_common::{PortState, ProbeResult, Protocol, ScanJob, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PROGRESS_EVERY, ShardError, Worker};
use crate::probe::udp::{self, UdpObservation, UdpProber};

impl Worker {
    /// Probe the job's UDP ports on `targets` and store the results. `decided`
    /// is how many pairs of the shard were decided before (its TCP ports), so
    /// that the shard's progress only grows.
    pub(super) async fn run_udp(
        &self,
        job: &ScanJob,
        targets: &[Target],
        asset_of: &HashMap<IpAddr, String>,
        decided: u64,
        cancel: &CancellationToken,
    ) -> Result<(), ShardError> {
        let ports = &job.profile.udp_ports;
        // Load-test mode sends nothing at all.
        if ports.is_empty() || targets.is_empty() || self.config.synthetic_probes {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::channel::<UdpObservation>(4096);
        let prober = UdpProber::new();
        let scan = prober.scan(
            targets,
            ports,
            &job.profile,
            rand::random(),
            tx,
            cancel.clone(),
        );
        let collect = async {
            let mut batch = Vec::new();
            let mut decided = decided;
            let mut reported = tokio::time::Instant::now();
            while let Some(UdpObservation { obs, service }) = rx.recv().await {
                self.metrics
                    .ports
                    .with_label_values(&[obs.state.as_str()])
                    .inc();
                decided += 1;
                if reported.elapsed() >= PROGRESS_EVERY {
                    self.report_ports(job, decided).await;
                    reported = tokio::time::Instant::now();
                }
                if obs.state != PortState::Open && !job.profile.all_states {
                    continue;
                }
                batch.push(ProbeResult {
                    scan_id: job.scan_id.clone(),
                    asset_id: asset_of
                        .get(&obs.ip)
                        .cloned()
                        .unwrap_or_else(|| obs.ip.to_string()),
                    ip: obs.ip,
                    port: obs.port,
                    protocol: Protocol::Udp,
                    state: obs.state,
                    reason: obs.reason.to_string(),
                    service: service.filter(|_| job.profile.service_detection),
                });
                if batch.len() >= self.config.result_batch.max(1) {
                    self.write(cancel, &job.scan_id, &batch).await?;
                    batch.clear();
                }
            }
            self.write(cancel, &job.scan_id, &batch).await?;
            Ok::<(), ShardError>(())
        };
        let (stats, written) = tokio::join!(scan, collect);
        let stats = stats?;
        written?;
        self.stats
            .probes_sent
            .fetch_add(stats.probes_sent, Ordering::Relaxed);
        self.metrics
            .probes_sent
            .with_label_values(&[udp::NAME])
            .inc_by(stats.probes_sent);
        Ok(())
    }
}
