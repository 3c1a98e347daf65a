//! Fleet mode: publish signed shards to RabbitMQ or SQS for `scanfleet-worker`
//! processes, follow progress in Redis, report from Redis. Also `status`,
//! `results` and `queues` for any machine with access to the backends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use scanfleet_common::JobEnvelope;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::fleet::{self, FleetQueue, QueueOptions};
use scanfleet_common::store::ResultStore;
use tokio_util::sync::CancellationToken;

use crate::CliError;
use crate::cli::{QueuesAction, QueuesArgs, ResultsArgs, StatusArgs};
use crate::config::ScanSettings;
use crate::embedded::{Planned, emit, prepare, print_summary_line};
use crate::plan;
use crate::progress::Progress;
use crate::report::{self, ScanSummary};

/// How long a fleet job may wait in a queue before workers refuse it as stale.
const JOB_TTL: Duration = Duration::from_secs(24 * 3600);

/// Publish a scan to the fleet and, unless detached, follow it to the end.
///
/// # Errors
/// [`CliError::Runtime`] when the backends fail or shards fail.
pub async fn scan(settings: ScanSettings, shutdown: CancellationToken) -> Result<(), CliError> {
    let Some(fleet_cfg) = settings.fleet.clone() else {
        return Err(CliError::Input("fleet mode needs --queue".into()));
    };
    let started = Instant::now();
    let started_ms = now_unix_ms();
    let scan_id = plan::new_scan_id();
    let Planned {
        targets,
        skipped,
        jobs,
    } = prepare(&settings, &scan_id, &settings.profile, 1, true);

    let queue = FleetQueue::connect(&fleet_cfg.queue_url, &QueueOptions::default())
        .await
        .with_context(|| {
            format!(
                "connecting to the queue {}",
                scanfleet_common::telemetry::redact(&fleet_cfg.queue_url)
            )
        })?;
    let store = fleet::connect_store(&fleet_cfg.redis_url)
        .await
        .context("connecting to Redis")?;
    let mut by_zone: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let deadline = now_unix_ms() + JOB_TTL.as_millis() as u64;
    for job in &jobs {
        let env = JobEnvelope::seal(job, 1, deadline, Some(&fleet_cfg.secret));
        by_zone
            .entry(job.zone.clone())
            .or_default()
            .push(env.to_bytes());
    }
    let zones: Vec<String> = by_zone.keys().cloned().collect();
    queue
        .init(&zones)
        .await
        .context("declaring the zones' queues")?;
    store
        .begin_scan(&scan_id, jobs.len() as u64)
        .await
        .context("registering the scan in Redis")?;
    let q = queue.dyn_queue();
    for (zone, payloads) in &by_zone {
        q.publish_batch(zone, payloads)
            .await
            .with_context(|| format!("publishing the shards of zone {zone}"))?;
    }
    eprintln!(
        "scanfleet: scan {scan_id}: {} shard(s) published for {} target(s)",
        jobs.len(),
        targets.len()
    );
    if fleet_cfg.detach {
        println!("{scan_id}");
        return Ok(());
    }

    let registry = prometheus::Registry::new();
    let scan_metrics = crate::metrics::ScanMetrics::new(&registry);
    if let Some(addr) = settings.metrics_addr {
        scanfleet_common::telemetry::serve(addr, registry.clone(), shutdown.clone())
            .await
            .map_err(|e| CliError::Input(format!("--metrics-addr {addr}: {e}")))?;
    }
    let bar = Progress::new(settings.progress, jobs.len() as u64);
    let mut interrupted = false;
    let mut last_err = None;
    loop {
        match store.progress(&scan_id).await {
            Ok(p) => {
                scan_metrics.set(&p);
                bar.update(
                    p.shards_done + p.shards_failed,
                    format!("{} results", p.results),
                );
                if p.finished() || jobs.is_empty() {
                    break;
                }
                last_err = None;
            }
            Err(e) if e.is_transient() => {
                if last_err.is_none() {
                    eprintln!("scanfleet: Redis unavailable ({e}); still waiting");
                }
                last_err = Some(e);
            }
            Err(e) => return Err(CliError::Runtime(anyhow::anyhow!("reading progress: {e}"))),
        }
        tokio::select! {
            _ = shutdown.cancelled() => { interrupted = true; break; }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    bar.finish();
    if interrupted {
        eprintln!(
            "scanfleet: stopped following scan {scan_id}; workers go on. Follow it with `scanfleet status {scan_id}`"
        );
        return Err(CliError::Runtime(anyhow::anyhow!("interrupted")));
    }
    let progress = store.progress(&scan_id).await.context("reading progress")?;
    let results = store.results(&scan_id).await.context("reading results")?;
    let visible = report::visible(&results, settings.profile.all_states);
    let summary = ScanSummary {
        scan_id: scan_id.clone(),
        engine: format!("fleet ({:?})", settings.profile.mode).to_lowercase(),
        started_at_unix_ms: started_ms,
        finished_at_unix_ms: now_unix_ms(),
        targets: targets.len(),
        hosts_up: None,
        ports_per_target: settings.ports.len(),
        open_ports: report::open_count(&results),
        shards_total: progress.shards_total,
        shards_failed: progress.shards_failed,
        skipped,
        notes: Vec::new(),
    };
    emit(&settings.output, settings.format, &summary, &visible)?;
    print_summary_line(&summary, started, "done");
    if progress.shards_failed > 0 {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} of {} shard(s) failed; see `scanfleet queues dead-letters`",
            progress.shards_failed,
            progress.shards_total
        )));
    }
    Ok(())
}

/// A scan id the store does not know is bad input (exit 2); anything else is a runtime failure.
fn lookup_error(e: scanfleet_common::store::StoreError) -> CliError {
    match e {
        scanfleet_common::store::StoreError::UnknownScan(_) => CliError::Input(e.to_string()),
        e => CliError::Runtime(e.into()),
    }
}

/// `scanfleet status SCAN_ID`.
///
/// # Errors
/// Unknown scan is bad input (exit 2); Redis trouble is a runtime failure.
pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let store = fleet::connect_store(&args.redis)
        .await
        .map_err(|e| CliError::Runtime(e.into()))?;
    let p = store.progress(&args.scan_id).await.map_err(lookup_error)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scan_id": args.scan_id, "progress": p, "finished": p.finished()})
        );
    } else {
        println!(
            "{}: {} shard(s): {} done, {} failed, {} pending; {} result(s){}",
            args.scan_id,
            p.shards_total,
            p.shards_done,
            p.shards_failed,
            p.shards_total
                .saturating_sub(p.shards_done + p.shards_failed),
            p.results,
            if p.finished() { "; finished" } else { "" }
        );
    }
    Ok(())
}

/// `scanfleet results SCAN_ID`.
///
/// # Errors
/// Unknown scan is bad input (exit 2); Redis trouble is a runtime failure.
pub async fn results(args: ResultsArgs) -> Result<(), CliError> {
    let store = fleet::connect_store(&args.redis)
        .await
        .map_err(|e| CliError::Runtime(e.into()))?;
    let p = store.progress(&args.scan_id).await.map_err(lookup_error)?;
    let results = store.results(&args.scan_id).await.map_err(lookup_error)?;
    let visible = report::visible(&results, args.all_states);
    let summary = ScanSummary {
        scan_id: args.scan_id.clone(),
        engine: "fleet".into(),
        started_at_unix_ms: 0,
        finished_at_unix_ms: 0,
        targets: results
            .iter()
            .map(|r| r.ip)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        hosts_up: None,
        ports_per_target: 0,
        open_ports: report::open_count(&results),
        shards_total: p.shards_total,
        shards_failed: p.shards_failed,
        skipped: Vec::new(),
        notes: if p.finished() {
            Vec::new()
        } else {
            vec!["scan not finished; results are partial".into()]
        },
    };
    emit(&args.output, args.format, &summary, &visible)
}

/// `scanfleet queues init|dead-letters`.
///
/// # Errors
/// Bad URL is bad input; broker trouble is a runtime failure.
pub async fn queues(args: QueuesArgs) -> Result<(), CliError> {
    match args.action {
        QueuesAction::Init { queue, zones } => {
            fleet::queue_kind(&queue).map_err(CliError::Input)?;
            let q = FleetQueue::connect(&queue, &QueueOptions::default())
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            q.init(&zones)
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            eprintln!("scanfleet: queues ready for zone(s) {}", zones.join(", "));
            Ok(())
        }
        QueuesAction::DeadLetters { queue, max } => {
            fleet::queue_kind(&queue).map_err(CliError::Input)?;
            let q = FleetQueue::connect(&queue, &QueueOptions::default())
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            for d in q
                .take_dead_letters(max)
                .await
                .map_err(|e| CliError::Runtime(e.into()))?
            {
                let env = JobEnvelope::from_bytes(&d.payload).ok();
                println!(
                    "{}",
                    serde_json::json!({
                        "zone": d.zone,
                        "reason": d.reason,
                        "scan_id": env.as_ref().map(|e| e.scan_id.clone()),
                        "shard_id": env.as_ref().map(|e| e.shard_id),
                        "bytes": d.payload.len(),
                    })
                );
            }
            Ok(())
        }
    }
}
