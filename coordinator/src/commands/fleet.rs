//! Fleet mode of `scanfleet scan`: the plan, publish, follow and report steps
//! over RabbitMQ or SQS and Redis, for `scanfleet-worker` processes.

use std::time::{Duration, Instant};

use anyhow::Context;
use scanfleet_common::envelope::now_unix_ms;
use tokio_util::sync::CancellationToken;

use crate::backends;
use crate::config::ScanSettings;
use crate::error::CliError;
use crate::follow::Followed;
use crate::plan;
use crate::report;

/// Publish a scan to the fleet and, unless detached, follow it to the end.
///
/// # Errors
/// [`CliError::Input`] when `--metrics-addr` cannot be bound (checked before
/// anything is published); [`CliError::Runtime`] when the backends fail or shards fail.
pub async fn scan(settings: ScanSettings, shutdown: CancellationToken) -> Result<(), CliError> {
    let Some(fleet) = settings.fleet.clone() else {
        return Err(CliError::Input("fleet mode needs --queue".into()));
    };
    let started = Instant::now();
    let started_ms = now_unix_ms();

    // Every listener is bound before anything is published: a scan nobody can
    // follow must not be put on the queues.
    let registry = prometheus::Registry::new();
    let scan_metrics = crate::metrics::ScanMetrics::new(&registry);
    let stop_metrics = shutdown.child_token();
    if let (Some(addr), false) = (settings.metrics_addr, settings.detach) {
        crate::metrics::serve(addr, registry.clone(), stop_metrics.clone()).await?;
    }

    let planned = plan::prepare(&settings);
    report::say_skipped(&planned.skipped);
    let publisher = backends::publisher(&fleet, settings.job_ttl).await?;
    publisher
        .publish(&planned)
        .await
        .context("publishing the scan")?;
    eprintln!(
        "scanfleet: scan {}: {} published for {}",
        planned.scan_id,
        report::count(planned.jobs.len() as u64, "shard"),
        report::count(planned.targets.len() as u64, "target"),
    );
    if settings.detach {
        println!("{}", planned.scan_id);
        return Ok(());
    }

    let end = super::follow_scan(
        &settings,
        &planned,
        publisher.store.as_ref(),
        &scan_metrics,
        Duration::from_millis(250),
        &shutdown,
    )
    .await;
    stop_metrics.cancel();
    if let Followed::Interrupted(_) = end.context("following the scan")? {
        eprintln!(
            "scanfleet: stopped following scan {id}; workers go on. Follow it with `scanfleet status {id}`",
            id = planned.scan_id
        );
        return Err(CliError::Runtime(anyhow::anyhow!("interrupted")));
    }
    let ending = super::Ending {
        engine: format!("fleet ({:?})", settings.profile.mode).to_lowercase(),
        notes: Vec::new(),
        started,
        started_ms,
        how: "done",
    };
    super::report_scan(
        &settings,
        &planned,
        publisher.store.as_ref(),
        ending,
        " failed; see `scanfleet queues dead-letters`",
    )
    .await?;
    Ok(())
}
