//! `scanfleet cancel` and `scanfleet resume`: a fleet scan's shards as planned are
//! kept in the store when it is published; cancel marks the scan so that workers
//! drain its shards unprobed, resume publishes again those that never finished
//! (no outcome, or failed) and follows the scan to its end like `scan`.

use std::time::Instant;

use anyhow::Context;
use scanfleet_common::ScanJob;
use scanfleet_common::envelope::now_unix_ms;
use tokio_util::sync::CancellationToken;

use super::status::{check_scan_id, lookup_error};
use crate::backends;
use crate::cli::{CancelArgs, ResumeArgs};
use crate::config::{self, ScanSettings};
use crate::error::CliError;
use crate::plan::Planned;
use crate::report;
use scanfleet_common::config::Sources;

/// `scanfleet cancel SCAN_ID`.
///
/// # Errors
/// An unknown scan is bad input (exit 2); Redis trouble is a runtime failure.
pub async fn cancel(args: CancelArgs, src: &Sources) -> Result<(), CliError> {
    check_scan_id(&args.scan_id)?;
    let redis = args.redis.resolve(src)?;
    let store = backends::store(&redis.value).await?;
    let p = store.progress(&args.scan_id).await.map_err(lookup_error)?;
    let first = store
        .cancel_scan(&args.scan_id)
        .await
        .map_err(lookup_error)?;
    let pending = p.shards_pending();
    eprintln!(
        "scanfleet: scan {} {}: workers refuse its {} from now on (nothing more is probed) and drain them; `scanfleet resume {}` takes it up again",
        args.scan_id,
        if first {
            "cancelled"
        } else {
            "was already cancelled"
        },
        report::count(pending, "unfinished shard"),
        args.scan_id,
    );
    Ok(())
}

/// `scanfleet resume SCAN_ID`.
///
/// # Errors
/// An unknown scan, or one whose shards were not kept, is bad input (exit 2);
/// the backends' trouble and failed shards are runtime failures, as for `scan`.
pub async fn resume(
    args: ResumeArgs,
    src: &Sources,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    check_scan_id(&args.scan_id)?;
    let Some(fleet) = config::fleet(&args.publish, src)? else {
        return Err(CliError::Input(
            "resume needs --queue: the fleet the scan was published to".into(),
        ));
    };
    let job_ttl = config::job_ttl(&args.publish, src)?;
    let (format, output) = config::output(&args.output, src)?;
    let deadline = args
        .deadline
        .map(|d| {
            if (1..=30 * 24 * 3600).contains(&d) {
                Ok(std::time::Duration::from_secs(d))
            } else {
                Err(CliError::Input(format!(
                    "--deadline {d}: expected 1 to 2592000 seconds"
                )))
            }
        })
        .transpose()?;
    let publisher = backends::publisher(&fleet, job_ttl).await?;
    let store = publisher.store.clone();
    let id = &args.scan_id;
    store.progress(id).await.map_err(lookup_error)?;
    let saved = store.jobs(id).await.map_err(lookup_error)?;
    if saved.is_empty() {
        return Err(CliError::Input(format!(
            "scan {id}: its shards were not kept (published by a scanfleet without resume, or expired from Redis); run the scan again"
        )));
    }
    let mut jobs = Vec::with_capacity(saved.len());
    for (shard, json) in &saved {
        let job: ScanJob = serde_json::from_str(json).map_err(|e| {
            CliError::Runtime(anyhow::anyhow!(
                "scan {id}: kept shard {shard} is not a job ({e}); the store was changed outside scanfleet"
            ))
        })?;
        if job.scan_id != *id || job.shard_id != *shard {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "scan {id}: kept shard {shard} names scan {:?} shard {}; the store was changed outside scanfleet",
                scanfleet_common::text::escape(&job.scan_id, 80),
                job.shard_id
            )));
        }
        jobs.push(job);
    }
    let mut again: Vec<u32> = store.unfinished_shards(id).await.map_err(lookup_error)?;
    again.extend(store.failed_shards(id).await.map_err(lookup_error)?);
    again.sort_unstable();
    again.dedup();
    // Failed shards count as pending again, so that following waits for them.
    store
        .reopen_failed(id, &again)
        .await
        .context("reopening the failed shards")?;
    let was_cancelled = store.is_cancelled(id).await.map_err(lookup_error)?;
    if was_cancelled {
        store
            .uncancel_scan(id)
            .await
            .context("taking the cancel mark off")?;
    }
    let first = &jobs[0];
    let targets: Vec<_> = {
        let mut seen = std::collections::BTreeSet::new();
        jobs.iter()
            .flat_map(|j| j.targets.iter())
            .filter(|t| seen.insert((t.ip, t.asset_id.clone())))
            .cloned()
            .collect()
    };
    let republish: Vec<ScanJob> = jobs
        .iter()
        .filter(|j| again.binary_search(&j.shard_id).is_ok())
        .cloned()
        .collect();
    let planned = Planned {
        scan_id: id.clone(),
        targets,
        skipped: Vec::new(),
        pairs: jobs.iter().map(ScanJob::pairs).sum(),
        jobs: republish.clone(),
    };
    publisher
        .republish(&republish)
        .await
        .context("publishing the unfinished shards")?;
    eprintln!(
        "scanfleet: scan {id}{}: {} of {} published again ({} already done)",
        if was_cancelled {
            " (was cancelled)"
        } else {
            ""
        },
        report::count(republish.len() as u64, "shard"),
        jobs.len(),
        jobs.len() - republish.len(),
    );
    if args.detach {
        println!("{id}");
        return Ok(());
    }
    let mut profile = first.profile.clone();
    profile.all_states |= args.all_states;
    let settings = ScanSettings {
        assets: Vec::new(),
        source: config::Source::Specs(Vec::new()),
        ports: first.ports.clone(),
        profile,
        scope: first
            .scope
            .as_ref()
            .map(|s| s.policy.clone())
            .unwrap_or_default(),
        rate: Default::default(),
        workers: 1,
        format,
        output,
        progress: args.progress,
        shard_size: first.targets.len().max(1),
        metrics_addr: None,
        history: crate::history::Location::Redis(fleet.redis_url.clone()),
        fleet: Some(fleet),
        detach: false,
        job_ttl,
        deadline,
        judge: crate::findings::Judge::builtin().map_err(|e| CliError::Input(e.0))?,
        exports: Vec::new(),
    };
    let registry = prometheus::Registry::new();
    let scan_metrics = crate::metrics::ScanMetrics::new(&registry);
    super::fleet::follow_to_end(
        &settings,
        &planned,
        &publisher,
        &scan_metrics,
        (Instant::now(), now_unix_ms()),
        &shutdown,
    )
    .await
}
