//! The embedded mode: the whole pipeline in one process. The same plan,
//! publish, follow and report steps as a fleet, over the in-memory queue and
//! store, with N in-process workers behind the same `JobQueue`/`ResultStore`
//! seams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use scanfleet_common::ScanMode;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::queue::{JobQueue, QueueAdmin, Topology};
use scanfleet_common::store::ResultStore;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_worker::probe::{self, syn::SynConfig};
use scanfleet_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::ScanSettings;
use crate::error::CliError;
use crate::follow::{Followed, Rules};
use crate::plan;
use crate::publish::Publisher;
use crate::report;

/// Deliveries of a shard in one process: a shard that fails three times on the
/// same machine will not do better on a fourth.
const DELIVERY_LIMIT: u32 = 3;
/// Lease of a shard in the in-memory queue; workers extend it while they work.
const LEASE: Duration = Duration::from_secs(600);

/// Run a scan in this process and write its report.
///
/// # Errors
/// [`CliError::Input`] when the engine asked for cannot run or `--metrics-addr`
/// cannot be bound (before any probe); [`CliError::Runtime`] when shards failed,
/// the output cannot be written, or the scan was interrupted.
pub async fn scan(mut settings: ScanSettings, shutdown: CancellationToken) -> Result<(), CliError> {
    let started = Instant::now();
    let started_ms = now_unix_ms();

    // Choose the engine once up front, so that `--mode syn` without privileges
    // fails before anything is sent and an `auto` fallback is said exactly once.
    let selected = probe::select(settings.profile.mode, SynConfig::default()).map_err(|e| {
        CliError::Input(format!("--mode {}: {e}", mode_name(settings.profile.mode)))
    })?;
    let engine = selected.prober.name().to_string();
    let mut notes: Vec<String> = selected.fallback_note.iter().cloned().collect();
    for n in &notes {
        eprintln!("scanfleet: {n}");
    }
    // Workers use the engine that was found to work, not a second guess.
    settings.profile.mode = if engine == "syn" {
        ScanMode::Syn
    } else {
        ScanMode::Connect
    };
    drop(selected);

    let stop_workers = CancellationToken::new();
    let metrics = scanfleet_worker::metrics::WorkerMetrics::new();
    let scan_metrics = crate::metrics::ScanMetrics::new(&metrics.registry);
    if let Some(addr) = settings.metrics_addr {
        crate::metrics::serve(addr, metrics.registry.clone(), stop_workers.clone()).await?;
    }

    let mut planned = plan::prepare(&settings);
    report::say_skipped(&planned.skipped);
    // `--rate` caps this process: the in-process workers that run at once share it
    // (a fleet worker is a process of its own and gets the whole cap).
    let running = settings.workers.min(planned.jobs.len()).max(1) as u32;
    for job in &mut planned.jobs {
        job.profile.global_rate_pps = job.profile.global_rate_pps.div_ceil(running).max(1);
    }
    let queue = Arc::new(MemoryQueue::new(LEASE, DELIVERY_LIMIT));
    let store = Arc::new(MemoryStore::new());
    Publisher {
        queue: queue.clone(),
        admin: queue.clone(),
        store: store.clone(),
        secret: None,
        ttl: settings.job_ttl,
        topology: Topology::with_delivery_limit(DELIVERY_LIMIT),
    }
    .publish(&planned)
    .await
    .context("publishing the scan in process")?;

    let workers: Vec<Arc<Worker>> = (0..settings.workers.min(planned.jobs.len().max(1)))
        .map(|_| {
            let config = WorkerConfig {
                lease: LEASE,
                receive_wait: Duration::from_millis(200),
                // Ctrl-C in the embedded mode means stop now: nothing else would take the shards.
                grace: Duration::ZERO,
                ..WorkerConfig::default()
            };
            Arc::new(Worker::with_metrics(
                queue.clone() as Arc<dyn JobQueue>,
                store.clone() as Arc<dyn ResultStore>,
                config,
                metrics.clone(),
            ))
        })
        .collect();
    let handles: Vec<_> = workers
        .iter()
        .map(|w| tokio::spawn(w.clone().run(stop_workers.clone())))
        .collect();

    let end = super::follow_scan(
        &settings,
        &planned,
        store.as_ref(),
        &scan_metrics,
        // In one process every shard ends: its workers record what they cannot do.
        Rules {
            poll: Duration::from_millis(100),
            deadline: None,
            dead_letters: None,
        },
        &shutdown,
    )
    .await;
    stop_workers.cancel();
    for h in handles {
        let _ = h.await;
    }
    let end = end.context("following the scan")?;
    for w in &workers {
        for n in w.notes() {
            if !notes.contains(&n) {
                eprintln!("scanfleet: {n}");
                notes.push(n);
            }
        }
    }
    let dead = queue
        .take_dead_letters(usize::MAX)
        .await
        .context("reading the failed shards")?;
    for d in &dead {
        let n = format!("a shard failed: {}", d.reason);
        eprintln!("scanfleet: {n}");
        notes.push(n);
    }

    let interrupted = !matches!(end, Followed::Finished(_));
    // The engines that ran: the TCP one when there were TCP ports, `udp` for -sU.
    let engine = match (
        settings.ports.is_empty(),
        settings.profile.udp_ports.is_empty(),
    ) {
        (true, false) => "udp".to_string(),
        (false, false) => format!("{engine}+udp"),
        _ => engine,
    };
    let ending = super::Ending {
        engine,
        notes,
        started,
        started_ms,
        how: if interrupted { "interrupted" } else { "done" },
    };
    super::report_scan(&settings, &planned, store.as_ref(), ending, " failed").await?;
    if interrupted {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "scan interrupted; the results above are partial"
        )));
    }
    Ok(())
}

fn mode_name(m: ScanMode) -> &'static str {
    match m {
        ScanMode::Auto => "auto",
        ScanMode::Syn => "syn",
        ScanMode::Connect => "connect",
    }
}
