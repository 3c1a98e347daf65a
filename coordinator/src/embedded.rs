//! The embedded mode: the whole pipeline in one process. Targets are planned into
//! shards, published on the in-memory queue, worked by N in-process workers over
//! the same `JobQueue`/`ResultStore` seams the fleet uses, and reported.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::JobQueue;
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::scope;
use scanfleet_common::store::ResultStore;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_common::{JobEnvelope, ScanMode};
use scanfleet_worker::probe::{self, syn::SynConfig};
use scanfleet_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::CliError;
use crate::config::ScanSettings;
use crate::plan::{self, ShardLimits};
use crate::progress::Progress;
use crate::report::{self, ScanSummary};

/// How long an embedded job stays valid.
const JOB_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Run a scan in this process and write its report.
///
/// # Errors
/// [`CliError::Input`] when the engine asked for cannot run (before any probe);
/// [`CliError::Runtime`] when shards failed, the output cannot be written, or the
/// scan was interrupted.
pub async fn scan(settings: ScanSettings, shutdown: CancellationToken) -> Result<(), CliError> {
    let started = Instant::now();
    let started_ms = now_unix_ms();
    let scan_id = plan::new_scan_id();

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
    let mut profile = settings.profile.clone();
    profile.mode = if engine == "syn" {
        ScanMode::Syn
    } else {
        ScanMode::Connect
    };
    drop(selected);

    // One process reaches whatever it reaches: the embedded mode puts every target in one zone.
    let Planned {
        targets,
        skipped,
        jobs,
    } = prepare(&settings, &scan_id, &profile, settings.workers, false);
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(600), 3));
    let store = Arc::new(MemoryStore::new());
    store
        .begin_scan(&scan_id, jobs.len() as u64)
        .await
        .context("registering the scan")?;
    let deadline = now_unix_ms() + JOB_TTL.as_millis() as u64;
    for job in &jobs {
        let env = JobEnvelope::seal(job, 1, deadline, None);
        queue
            .publish(&job.zone, &env.to_bytes())
            .await
            .context("publishing a shard")?;
    }

    let stop_workers = CancellationToken::new();
    let metrics = scanfleet_worker::metrics::WorkerMetrics::new();
    let scan_metrics = crate::metrics::ScanMetrics::new(&metrics.registry);
    if let Some(addr) = settings.metrics_addr {
        scanfleet_common::telemetry::serve(addr, metrics.registry.clone(), stop_workers.clone())
            .await
            .map_err(|e| CliError::Input(format!("--metrics-addr {addr}: {e}")))?;
    }
    let workers: Vec<Arc<Worker>> = (0..settings.workers.min(jobs.len().max(1)))
        .map(|_| {
            let config = WorkerConfig {
                lease: Duration::from_secs(600),
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

    let total_probes = (targets.len() as u64) * settings.ports.len() as u64;
    let bar = Progress::new(settings.progress, total_probes);
    let interrupted = loop {
        let p = store.progress(&scan_id).await.context("reading progress")?;
        scan_metrics.set(&p);
        let dead = queue.dead_letters().len() as u64;
        let sent: u64 = workers
            .iter()
            .map(|w| w.stats.probes_sent.load(Ordering::Relaxed))
            .sum();
        bar.update(sent, format!("{}/{} shards", p.shards_done, p.shards_total));
        if jobs.is_empty() || p.shards_done + p.shards_failed.max(dead) >= p.shards_total {
            break false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break true,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    bar.finish();
    stop_workers.cancel();
    for h in handles {
        let _ = h.await;
    }
    for w in &workers {
        for n in w.notes() {
            if !notes.contains(&n) {
                eprintln!("scanfleet: {n}");
                notes.push(n);
            }
        }
    }
    let dead = queue.dead_letters();
    for d in &dead {
        let n = format!("a shard failed: {}", d.reason);
        eprintln!("scanfleet: {n}");
        notes.push(n);
    }

    let results = store.results(&scan_id).await.context("reading results")?;
    let visible = report::visible(&results, settings.profile.all_states);
    let summary = ScanSummary {
        scan_id: scan_id.clone(),
        engine: engine.clone(),
        started_at_unix_ms: started_ms,
        finished_at_unix_ms: now_unix_ms(),
        targets: targets.len(),
        hosts_up: None,
        ports_per_target: settings.ports.len(),
        open_ports: report::open_count(&results),
        shards_total: jobs.len() as u64,
        shards_failed: dead.len() as u64,
        skipped,
        notes,
    };
    emit(&settings.output, settings.format, &summary, &visible)?;
    print_summary_line(
        &summary,
        started,
        if interrupted { "interrupted" } else { "done" },
    );
    if interrupted {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "scan interrupted; the results above are partial"
        )));
    }
    if !dead.is_empty() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} of {} shard(s) failed",
            dead.len(),
            jobs.len()
        )));
    }
    Ok(())
}

/// Targets, skips and shards of a scan.
pub(crate) struct Planned {
    pub targets: Vec<scanfleet_common::Target>,
    pub skipped: Vec<scope::Skipped>,
    pub jobs: Vec<scanfleet_common::ScanJob>,
}

/// Apply scope and rate policy (saying every skip on stderr) and plan the shards.
pub(crate) fn prepare(
    settings: &ScanSettings,
    scan_id: &str,
    profile: &scanfleet_common::ProbeProfile,
    min_shards: usize,
    zoned: bool,
) -> Planned {
    let (targets, skipped) = scope::apply(&settings.assets, &settings.scope, &settings.rate);
    for s in &skipped {
        eprintln!("scanfleet: skipped {} ({}): {}", s.asset_id, s.ip, s.reason);
    }
    let jobs = plan::plan(
        scan_id,
        if zoned {
            crate::zones::group_targets(&settings.assets, targets.clone())
        } else {
            BTreeMap::from([(scanfleet_common::DEFAULT_ZONE.to_string(), targets.clone())])
        },
        &settings.ports,
        profile,
        ShardLimits {
            min_shards,
            max_targets: settings.shard_size,
            ..ShardLimits::default()
        },
    );
    Planned {
        targets,
        skipped,
        jobs,
    }
}

/// Write the report to the output file or stdout.
pub(crate) fn emit(
    output: &Option<std::path::PathBuf>,
    format: crate::cli::Format,
    summary: &ScanSummary,
    visible: &[&scanfleet_common::ProbeResult],
) -> Result<(), CliError> {
    match output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating output file {}", path.display()))?;
            // Buffered: the JSON and CSV writers make several small writes per record.
            let mut w = std::io::BufWriter::new(f);
            report::write(&mut w, format, summary, visible)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            report::write(&mut lock, format, summary, visible)
                .context("writing results to stdout")?;
            lock.flush().ok();
        }
    }
    Ok(())
}

/// The one-line summary on stderr.
pub(crate) fn print_summary_line(summary: &ScanSummary, started: Instant, how: &str) {
    eprintln!(
        "scanfleet: scan {} {how} in {:.1} s: {} target(s) ({} skipped), {} port(s) each, {} open port(s), engine {}",
        summary.scan_id,
        started.elapsed().as_secs_f64(),
        summary.targets,
        summary.skipped.len(),
        summary.ports_per_target,
        summary.open_ports,
        summary.engine
    );
}

fn mode_name(m: ScanMode) -> &'static str {
    match m {
        ScanMode::Auto => "auto",
        ScanMode::Syn => "syn",
        ScanMode::Connect => "connect",
    }
}
