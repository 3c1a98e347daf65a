//! Worker metrics in one prometheus registry. The `/metrics` listener that
//! serves them is [`scanfleet_common::telemetry::MetricsServer`].

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use scanfleet_common::metrics::{self as names, DeadLetterReason, NicAllowance, Outcome};
use scanfleet_common::telemetry::render;

/// The counters of one worker process (shared by its in-process workers).
#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    pub jobs_received: IntCounter,
    pub jobs_completed: IntCounterVec,
    pub job_duration: Histogram,
    pub probes_sent: IntCounterVec,
    pub results_written: IntCounter,
    pub lease_extensions: IntCounter,
    pub errors: IntCounterVec,
    pub shards_in_flight: IntGauge,
    pub dead_lettered: IntCounterVec,
    pub ports: IntCounterVec,
    pub retransmits: IntCounterVec,
    pub target_backoffs: IntCounter,
    pub target_answer_ratio: Histogram,
    pub target_miss_chance: Histogram,
    pub target_rate: Histogram,
    pub nic_exceeded: IntCounterVec,
    pub nic_conntrack_available: IntGauge,
    pub nic_backoffs: IntCounter,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help))
        .unwrap_or_else(|e| unreachable!("valid metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("valid histogram {name}: {e}"));
    let _ = r.register(Box::new(h.clone()));
    h
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("valid metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

impl WorkerMetrics {
    /// Fresh metrics in their own registry. Labelled series that should read 0
    /// before anything happens are created up front, so dashboards see them.
    pub fn new() -> Self {
        let r = Registry::new();
        let job_duration = Histogram::with_opts(
            HistogramOpts::new(
                names::JOB_DURATION_SECONDS,
                "Wall time of one shard, from receive to settle",
            )
            .buckets(vec![
                0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("valid histogram: {e}"));
        let _ = r.register(Box::new(job_duration.clone()));
        let shards_in_flight = IntGauge::new(names::SHARDS_IN_FLIGHT, "Shards being worked on now")
            .unwrap_or_else(|e| unreachable!("valid gauge: {e}"));
        let _ = r.register(Box::new(shards_in_flight.clone()));
        let m = WorkerMetrics {
            jobs_received: counter(
                &r,
                names::JOBS_RECEIVED_TOTAL,
                "Job messages received from the queue",
            ),
            jobs_completed: counter_vec(
                &r,
                names::JOBS_COMPLETED_TOTAL,
                "Jobs settled, by outcome",
                &["outcome"],
            ),
            job_duration,
            probes_sent: counter_vec(
                &r,
                names::PROBES_SENT_TOTAL,
                "Probes sent, retransmits included",
                &["engine"],
            ),
            results_written: counter(
                &r,
                names::RESULTS_WRITTEN_TOTAL,
                "Port results written to the result store",
            ),
            lease_extensions: counter(
                &r,
                names::LEASE_EXTENSIONS_TOTAL,
                "Lease extensions (heartbeats) sent",
            ),
            errors: counter_vec(
                &r,
                names::ERRORS_TOTAL,
                "Errors by stage and kind",
                &["stage", "kind"],
            ),
            shards_in_flight,
            dead_lettered: counter_vec(
                &r,
                names::JOBS_DEAD_LETTERED_TOTAL,
                "Jobs sent to the dead-letter queue",
                &["reason"],
            ),
            ports: counter_vec(
                &r,
                names::PORTS_TOTAL,
                "Ports classified, by state",
                &["state"],
            ),
            retransmits: counter_vec(
                &r,
                names::RETRANSMITS_TOTAL,
                "Probes sent again to silent ports",
                &["engine"],
            ),
            target_backoffs: counter(
                &r,
                names::TARGET_BACKOFFS_TOTAL,
                "Per-target rate cuts by the SYN engine's controller",
            ),
            target_answer_ratio: histogram(
                &r,
                names::TARGET_ANSWER_RATIO,
                "Share of a target's ports that answered, per target of each shard",
                vec![0.01, 0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0],
            ),
            target_miss_chance: histogram(
                &r,
                names::TARGET_MISS_CHANCE,
                "Estimated chance of a missed open port, per target of each shard",
                vec![1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0],
            ),
            target_rate: histogram(
                &r,
                names::TARGET_RATE_PPS,
                "Highest per-target rate the controller used, per target of each shard",
                vec![
                    100.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 50_000.0,
                ],
            ),
            nic_exceeded: counter_vec(
                &r,
                names::NIC_ALLOWANCE_EXCEEDED_TOTAL,
                "Growth of the NIC's (ENA) allowance-exceeded counters",
                &["allowance"],
            ),
            nic_conntrack_available: {
                let g = IntGauge::new(
                    names::NIC_CONNTRACK_AVAILABLE,
                    "The NIC's (ENA) conntrack_allowance_available",
                )
                .unwrap_or_else(|e| unreachable!("valid gauge: {e}"));
                let _ = r.register(Box::new(g.clone()));
                g
            },
            nic_backoffs: counter(
                &r,
                names::NIC_BACKOFFS_TOTAL,
                "Global rate cuts because a NIC allowance counter grew",
            ),
            registry: r,
        };
        for a in NicAllowance::ALL {
            m.nic_exceeded.with_label_values(&[a.as_str()]);
        }
        m.retransmits.with_label_values(&["syn"]);
        for o in Outcome::ALL {
            m.jobs_completed.with_label_values(&[o.as_str()]);
        }
        for reason in DeadLetterReason::ALL {
            m.dead_lettered.with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// The registry in the prometheus text format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::telemetry::serve;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn scrape_shows_every_metric_name() {
        let m = WorkerMetrics::new();
        m.probes_sent.with_label_values(&["connect"]).inc_by(3);
        m.ports.with_label_values(&["open"]).inc();
        m.errors.with_label_values(&["store", "transient"]).inc();
        m.lease_extensions.inc();
        m.results_written.inc();
        m.jobs_received.inc();
        m.job_duration.observe(0.2);
        let stop = CancellationToken::new();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            m.registry.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"));
        for name in names::ALL.iter().chain(names::PACING_ALL.iter()) {
            assert!(text.contains(name), "{name} missing from scrape");
        }
        assert!(text.contains("scanfleet_probes_sent_total{engine=\"connect\"} 3"));
        stop.cancel();
    }
}
