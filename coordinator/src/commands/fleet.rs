//! Fleet mode of `scanfleet scan`: the plan, publish, follow and report steps
//! over RabbitMQ or SQS and Redis, for `scanfleet-worker` processes.

use std::time::{Duration, Instant};

use anyhow::Context;
use scanfleet_common::envelope::now_unix_ms;
use tokio_util::sync::CancellationToken;

use crate::backends;
use crate::config::ScanSettings;
use crate::error::CliError;
use crate::follow::{Followed, Rules};
use crate::plan;
use crate::reconcile::DeadLetters;
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
    let end = follow_to_end(
        &settings,
        &planned,
        &publisher,
        &scan_metrics,
        (started, started_ms),
        &shutdown,
    )
    .await;
    stop_metrics.cancel();
    end
}

/// Follow a published fleet scan until every shard has an outcome, its deadline
/// passes or the user interrupts, then report it (`scan` and `resume`).
///
/// # Errors
/// [`CliError::Runtime`] when interrupted, when shards failed or stayed unfinished.
pub(crate) async fn follow_to_end(
    settings: &ScanSettings,
    planned: &plan::Planned,
    publisher: &crate::publish::Publisher,
    scan_metrics: &crate::metrics::ScanMetrics,
    (started, started_ms): (Instant, u64),
    shutdown: &CancellationToken,
) -> Result<(), CliError> {
    let deadline = settings
        .deadline
        .unwrap_or_else(|| plan::default_deadline(planned));
    let rules = Rules {
        poll: Duration::from_millis(250),
        deadline: Some(deadline),
        dead_letters: Some(DeadLetters {
            admin: publisher.admin.as_ref(),
            store: publisher.store.as_ref(),
            secret: publisher.secret.as_deref(),
            scan_id: &planned.scan_id,
        }),
    };
    let end = super::follow_scan(
        settings,
        planned,
        publisher.store.as_ref(),
        scan_metrics,
        rules,
        shutdown,
    )
    .await;
    let how = match end.context("following the scan")? {
        Followed::Finished(_) => "done",
        Followed::Interrupted(_) => {
            eprintln!(
                "scanfleet: stopped following scan {id}; workers go on. See it with `scanfleet status {id}`; `scanfleet resume {id}` follows it to the end (and publishes again what never finished)",
                id = planned.scan_id
            );
            return Err(CliError::Runtime(anyhow::anyhow!("interrupted")));
        }
        Followed::DeadlineReached(_) => "ended at its deadline",
    };
    let unfinished = if how == "done" {
        Vec::new()
    } else {
        publisher
            .store
            .unfinished_shards(&planned.scan_id)
            .await
            .context("reading the unfinished shards")?
    };
    if !unfinished.is_empty() {
        eprintln!(
            "scanfleet: scan {} reached its deadline of {} s with {} unfinished (no outcome, not dead-lettered): {}; workers may still finish them: `scanfleet status {}`",
            planned.scan_id,
            deadline.as_secs(),
            report::count(unfinished.len() as u64, "shard"),
            shard_list(&unfinished),
            planned.scan_id,
        );
    }
    let ending = super::Ending {
        engine: format!("fleet ({:?})", settings.profile.mode).to_lowercase(),
        notes: Vec::new(),
        started,
        started_ms,
        how,
    };
    super::report_scan(
        settings,
        planned,
        publisher.store.as_ref(),
        ending,
        " failed; see `scanfleet queues dead-letters`",
    )
    .await?;
    if !unfinished.is_empty() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} unfinished at the deadline: {}",
            report::count(unfinished.len() as u64, "shard"),
            shard_list(&unfinished)
        )));
    }
    Ok(())
}

/// Shard ids for a message: all of them up to 20, then how many more.
fn shard_list(ids: &[u32]) -> String {
    let mut s = ids
        .iter()
        .take(20)
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > 20 {
        s.push_str(&format!(" and {} more", ids.len() - 20));
    }
    s
}
