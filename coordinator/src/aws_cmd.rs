//! The AWS commands: `scanfleet discover --aws`, `scanfleet zones`, and the
//! discovery step of `scanfleet scan --discover aws`. Thin glue over
//! [`crate::discovery`], [`crate::zones`] and the scope policy.

use std::collections::BTreeMap;

use scanfleet_common::Asset;
use scanfleet_common::scope::{self, ScopePolicy};

use crate::CliError;
use crate::cli::{AwsArgs, DiscoverArgs, ZonesArgs};
use crate::discovery::aws::{self, AccountSource, AwsDiscoveryOptions};
use crate::discovery::{Discovery, Summary};
use crate::zones::{self, Zone};

/// Options of a discovery run from the flags.
///
/// # Errors
/// [`CliError::Input`] naming the flag or file that is wrong.
pub fn options(args: &AwsArgs) -> Result<AwsDiscoveryOptions, CliError> {
    let accounts = if args.org {
        AccountSource::Organization
    } else if let Some(path) = &args.accounts {
        AccountSource::List(
            aws::load_accounts(path).map_err(|e| CliError::Input(format!("--accounts: {e}")))?,
        )
    } else {
        AccountSource::Caller
    };
    let opts = AwsDiscoveryOptions {
        accounts,
        role_name: args.role_name.clone(),
        external_id: args.external_id.clone(),
        regions: (!args.regions.is_empty()).then(|| args.regions.clone()),
        endpoint_url: args.endpoint_url.clone(),
        concurrency: args.aws_concurrency,
        ..AwsDiscoveryOptions::default()
    };
    opts.validate()
        .map_err(|e| CliError::Input(e.to_string()))?;
    Ok(opts)
}

/// Discover, compute zones, put each asset in its zone, and say on stderr what failed.
///
/// # Errors
/// [`CliError::Input`] for bad options, [`CliError::Runtime`] when discovery cannot run at all.
pub async fn discover(args: &AwsArgs) -> Result<(Discovery, Vec<Zone>), CliError> {
    let opts = options(args)?;
    let mut d = aws::discover(opts)
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("AWS discovery: {e}")))?;
    let zones = zones::compute(&d);
    zones::assign(&mut d.assets, &zones);
    for f in &d.failures {
        eprintln!("scanfleet: discovery failed: {f}");
    }
    Ok((d, zones))
}

/// The at-a-glance summary of a discovery under a scope policy, on stderr.
pub fn print_summary(
    d: &Discovery,
    zones: &[Zone],
    policy: &ScopePolicy,
    rate: &scanfleet_common::rate::RatePolicy,
) {
    let (targets, skipped) = scope::apply(&d.assets, policy, rate);
    eprint!("{}", Summary::new(d, zones, &targets, &skipped));
}

/// `scanfleet discover --aws`.
///
/// # Errors
/// As [`discover`], plus writing the inventory.
pub async fn discover_cmd(args: DiscoverArgs) -> Result<(), CliError> {
    let (d, zones) = discover(&args.aws_args).await?;
    print_summary(
        &d,
        &zones,
        &ScopePolicy::aws_preauthorized(),
        &Default::default(),
    );
    match &args.output {
        Some(path) => d
            .write_inventory(path)
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("{e}")))?,
        None => print!("{}", d.inventory_json()),
    }
    Ok(())
}

/// `scanfleet zones`.
///
/// # Errors
/// As [`discover`], or a bad inventory.
pub async fn zones_cmd(args: ZonesArgs) -> Result<(), CliError> {
    match &args.inventory {
        Some(path) => {
            let assets = scanfleet_common::inventory::load(path)
                .map_err(|e| CliError::Input(e.to_string()))?;
            print!("{}", inventory_zones(&assets));
        }
        None => {
            let (_, zones) = discover(&args.aws_args).await?;
            print!("{}", zones::Listing(&zones));
        }
    }
    Ok(())
}

/// Zones as an inventory records them: zone -> VPCs and asset count.
fn inventory_zones(assets: &[Asset]) -> String {
    let mut by_zone: BTreeMap<&str, (std::collections::BTreeSet<&str>, usize)> = BTreeMap::new();
    for a in assets {
        let e = by_zone
            .entry(a.zone.as_deref().unwrap_or(scanfleet_common::DEFAULT_ZONE))
            .or_default();
        if let Some(v) = a.vpc_id.as_deref() {
            e.0.insert(v);
        }
        e.1 += 1;
    }
    let mut out = String::new();
    for (zone, (vpcs, n)) in by_zone {
        let vpcs: Vec<&str> = vpcs.into_iter().collect();
        out.push_str(&format!(
            "{zone}: {n} asset(s), VPCs {}\n",
            if vpcs.is_empty() {
                "-".into()
            } else {
                vpcs.join(", ")
            }
        ));
    }
    out
}

/// `scanfleet watch`: one JSON line per event on stdout; with `--queue`, every
/// newly running in-scope instance gets a scan of its own on the fleet's queues.
///
/// # Errors
/// Bad flags are input errors; discovery or queue failures are runtime errors.
pub async fn watch_cmd(
    args: crate::cli::WatchArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), CliError> {
    use crate::discovery::events::{self, WatchEvent, WatchOptions};
    use scanfleet_common::fleet::{self, FleetQueue, QueueOptions};

    let ports = scanfleet_common::PortSpec::parse(&args.ports)
        .map_err(|e| CliError::Input(format!("-p {:?}: {e}", args.ports)))?;
    let publisher = match &args.queue {
        None => None,
        Some(q) => {
            fleet::queue_kind(q).map_err(CliError::Input)?;
            let secret = std::env::var("SCANFLEET_JOB_SECRET").unwrap_or_default();
            if secret.is_empty() {
                return Err(CliError::Input(
                    "--queue needs SCANFLEET_JOB_SECRET, the secret the workers share".into(),
                ));
            }
            let queue = FleetQueue::connect(q, &QueueOptions::default())
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            let store = fleet::connect_store(&args.redis)
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            Some((queue, store, secret.into_bytes()))
        }
    };
    let opts = options(&args.aws_args)?;
    let discoverer = std::sync::Arc::new(
        aws::AwsDiscoverer::new(opts)
            .await
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("AWS discovery: {e}")))?,
    );
    let initial = discoverer
        .clone()
        .discover()
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("AWS discovery: {e}")))?;
    eprintln!(
        "scanfleet: watching {} with {} known asset(s)",
        args.events_queue,
        initial.assets.len()
    );
    let mut wopts = WatchOptions::new(args.events_queue.clone());
    wopts.rediscover_every = (args.rediscover_every_secs > 0)
        .then(|| std::time::Duration::from_secs(args.rediscover_every_secs));
    let sqs = aws_sdk_sqs::Client::new(discoverer.sdk_config());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(events::watch(
        discoverer.clone(),
        initial,
        wopts,
        sqs,
        tx,
        shutdown.clone(),
    ));
    let policy = ScopePolicy::aws_preauthorized();
    let rate = scanfleet_common::rate::RatePolicy::default();
    while let Some(ev) = rx.recv().await {
        let ids = |v: &[Asset]| v.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
        let (line, fresh) = match &ev {
            WatchEvent::Changed { diff, .. } => (
                serde_json::json!({"event": "changed", "new": ids(&diff.new), "changed": ids(&diff.changed), "gone": ids(&diff.gone)}),
                diff.new
                    .iter()
                    .chain(&diff.changed)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            WatchEvent::Rediscovered { diff, failures } => (
                serde_json::json!({"event": "rediscovered", "new": ids(&diff.new), "changed": ids(&diff.changed), "gone": ids(&diff.gone), "failures": failures.len()}),
                diff.new.clone(),
            ),
            WatchEvent::Dropped { reason, .. } => (
                serde_json::json!({"event": "dropped", "reason": reason}),
                Vec::new(),
            ),
            WatchEvent::Failed { failure, .. } => (
                serde_json::json!({"event": "failed", "reason": failure.to_string()}),
                Vec::new(),
            ),
        };
        println!("{line}");
        let (targets, skipped) = scope::apply(&fresh, &policy, &rate);
        for s in &skipped {
            eprintln!("scanfleet: skipped {} ({}): {}", s.asset_id, s.ip, s.reason);
        }
        if let (Some((queue, store, secret)), false) = (&publisher, targets.is_empty()) {
            let scan_id = crate::plan::new_scan_id();
            let zoned = zones::group_targets(&fresh, targets);
            let jobs = crate::plan::plan(
                &scan_id,
                zoned,
                &ports,
                &scanfleet_common::ProbeProfile::default(),
                Default::default(),
            );
            let zones_used: Vec<String> = jobs
                .iter()
                .map(|j| j.zone.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let publish = async {
                queue.init(&zones_used).await?;
                scanfleet_common::store::ResultStore::begin_scan(
                    store.as_ref(),
                    &scan_id,
                    jobs.len() as u64,
                )
                .await
                .map_err(|e| scanfleet_common::queue::QueueError::Transient(e.to_string()))?;
                let deadline = scanfleet_common::envelope::now_unix_ms() + 24 * 3600 * 1000;
                for job in &jobs {
                    let env = scanfleet_common::JobEnvelope::seal(job, 1, deadline, Some(secret));
                    queue
                        .dyn_queue()
                        .publish(&job.zone, &env.to_bytes())
                        .await?;
                }
                Ok::<_, scanfleet_common::queue::QueueError>(())
            };
            match publish.await {
                Ok(()) => eprintln!("scanfleet: scan {scan_id} queued: {} shard(s)", jobs.len()),
                Err(e) => eprintln!("scanfleet: could not queue the scan of new instances: {e}"),
            }
        }
    }
    match task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CliError::Runtime(anyhow::anyhow!("{e}"))),
        Err(e) => Err(CliError::Runtime(anyhow::anyhow!("watch task: {e}"))),
    }
}
