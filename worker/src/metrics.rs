//! Worker metrics (prometheus text format) and the optional `/metrics` listener,
//! the only thing a worker ever listens on.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use scanfleet_common::metrics as names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
            registry: r,
        };
        for o in names::OUTCOMES {
            m.jobs_completed.with_label_values(&[o]);
        }
        for reason in names::DEAD_LETTER_REASONS {
            m.dead_lettered.with_label_values(&[reason]);
        }
        m
    }

    /// The registry in the prometheus text format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// A registry in the prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Serve `GET /metrics` on `addr` until `shutdown`. Anything else gets 404.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let m = registry.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let head = &buf[..n];
                let (status, body) =
                    if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
                        ("200 OK", render(&m))
                    } else {
                        ("404 Not Found", "not found\n".to_string())
                    };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for name in names::ALL {
            assert!(text.contains(name), "{name} missing from scrape");
        }
        assert!(text.contains("scanfleet_probes_sent_total{engine=\"connect\"} 3"));
        stop.cancel();
    }
}
