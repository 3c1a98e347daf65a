//! One module per command, each thin glue over the pipeline steps
//! ([`crate::plan`], [`crate::publish`], [`crate::follow`], [`crate::report`]).

pub mod diff;
pub mod embedded;
pub mod export;
pub mod findings;
pub mod fleet;
pub mod queues;
pub mod resume;
pub mod status;
pub mod watch;

use std::time::Instant;

use anyhow::Context;
use scanfleet_common::Progress;
use scanfleet_common::store::ResultStore;
use tokio_util::sync::CancellationToken;

use crate::config::ScanSettings;
use crate::error::CliError;
use crate::follow::{self, FollowError, Followed, Rules, Watchers};
use crate::metrics::ScanMetrics;
use crate::plan::Planned;
use crate::progress::Bar;
use crate::report::{self, ScanHead};

/// Follow a published scan with a progress bar (and the scan's gauges) until every
/// shard has an outcome, the deadline passes or `shutdown` fires.
async fn follow_scan(
    settings: &ScanSettings,
    planned: &Planned,
    store: &dyn ResultStore,
    metrics: &ScanMetrics,
    rules: Rules<'_>,
    shutdown: &CancellationToken,
) -> Result<Followed, FollowError> {
    let bar = Bar::new(settings.progress, planned.pairs);
    let end = follow::follow(
        store,
        &planned.scan_id,
        Watchers {
            bar: &bar,
            metrics: Some(metrics),
        },
        rules,
        shutdown,
    )
    .await;
    bar.finish();
    end
}

/// How a scan that was followed ended, for its report.
struct Ending {
    engine: String,
    notes: Vec<String>,
    started: Instant,
    started_ms: u64,
    /// `done` or `interrupted`, as the summary line says it.
    how: &'static str,
}

/// Read a scan's results back, write its report and its summary line, and fail when
/// shards failed (`hint` says where to look).
async fn report_scan(
    settings: &ScanSettings,
    planned: &Planned,
    store: &dyn ResultStore,
    ending: Ending,
    hint: &str,
) -> Result<Progress, CliError> {
    let progress = store
        .progress(&planned.scan_id)
        .await
        .context("reading progress")?;
    let results = store
        .results(&planned.scan_id)
        .await
        .context("reading results")?;
    let record = crate::findings::ScanRecord {
        scan_id: planned.scan_id.clone(),
        started_unix_ms: ending.started_ms,
        finished_unix_ms: Some(scanfleet_common::envelope::now_unix_ms()),
        engine: ending.engine.clone(),
        ports: settings.ports.to_string(),
        udp_ports: settings.profile.udp_ports.to_string(),
        // The command line as nmap XML's `args` and the HTML report show it, with
        // the passwords of broker and Redis URLs taken out (it is stored and exported).
        args: std::env::args()
            .map(|a| scanfleet_common::telemetry::redact(&a))
            .collect::<Vec<_>>()
            .join(" "),
        targets: planned.targets.len(),
        skipped: planned.skipped.clone(),
        notes: ending.notes.clone(),
    };
    let summary = report::summary(
        ScanHead {
            scan_id: planned.scan_id.clone(),
            engine: ending.engine,
            started_at_unix_ms: ending.started_ms,
            targets: Some(planned.targets.len()),
            ports_per_target: settings.ports.len() + settings.profile.udp_ports.len(),
            skipped: planned.skipped.clone(),
            notes: ending.notes,
        },
        &progress,
        &results,
    );
    let visible = report::visible(&results, settings.profile.all_states);
    report::emit(&settings.output, settings.format, &summary, &visible)?;
    report::say_summary(&summary, ending.started, ending.how);
    export::finish_scan(settings, &record, &results).await?;
    if ending.how != "interrupted" && progress.shards_failed > 0 {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} of {}{hint}",
            progress.shards_failed,
            report::count(progress.shards_total, "shard"),
        )));
    }
    Ok(progress)
}
