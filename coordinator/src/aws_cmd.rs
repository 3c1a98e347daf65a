//! The AWS commands: `scanfleet discover --aws`, `scanfleet zones`, and the
//! discovery step of `scanfleet scan --discover aws`. Thin glue over
//! [`crate::discovery`], [`crate::estate::zones`] and the scope policy.

use std::collections::BTreeMap;

use scanfleet_common::Asset;
use scanfleet_common::config::{Sources, in_range};
use scanfleet_common::scope::{self, ScopePolicy};

use crate::cli::{AwsArgs, DiscoverArgs, ZonesArgs};
use crate::discovery::aws::{self, AccountSource, AwsDiscoveryOptions};
use crate::discovery::{Discovery, Summary};
use crate::error::CliError;
use crate::estate::zones::{self, Zone};
use crate::report::Output;

/// Options of a discovery run from the flags, the environment and the config
/// file's `[aws]`.
///
/// # Errors
/// [`CliError::Input`] naming the flag, variable, key or file that is wrong.
pub fn options(args: &AwsArgs, src: &Sources) -> Result<AwsDiscoveryOptions, CliError> {
    let f = &src.file.aws;
    let accounts = if args.org {
        AccountSource::Organization
    } else if let Some(path) = &args.accounts {
        AccountSource::List(
            aws::load_accounts(path).map_err(|e| CliError::Input(format!("--accounts: {e}")))?,
        )
    } else {
        AccountSource::Caller
    };
    let defaults = AwsDiscoveryOptions::default();
    let role_name = src
        .pick_or(
            ("--role-name", args.role_name.clone()),
            Some("SCANFLEET_ROLE_NAME"),
            ("aws.role_name", f.role_name.clone()),
            defaults.role_name.clone(),
        )?
        .value;
    let external_id = src
        .pick(
            ("--external-id", args.external_id.clone()),
            Some("SCANFLEET_EXTERNAL_ID"),
            ("aws.external_id", f.external_id.clone()),
            None,
        )?
        .map(|s| s.value);
    let endpoint_url = src
        .pick(
            ("--endpoint-url", args.endpoint_url.clone()),
            None,
            ("aws.endpoint_url", f.endpoint_url.clone()),
            None,
        )?
        .map(|s| s.value);
    let concurrency = src.pick_or(
        ("--aws-concurrency", args.aws_concurrency),
        None,
        ("aws.concurrency", f.concurrency),
        16,
    )?;
    let regions = if !args.regions.is_empty() {
        Some(args.regions.clone())
    } else if !f.regions.is_empty() {
        Some(f.regions.clone())
    } else {
        None
    };
    let opts = AwsDiscoveryOptions {
        accounts,
        role_name,
        external_id,
        regions,
        endpoint_url,
        concurrency: in_range(&concurrency, 1, 1024)?,
        ..defaults
    };
    opts.validate()
        .map_err(|e| CliError::Input(e.to_string()))?;
    Ok(opts)
}

/// Discover (the result comes with its zones, each asset in its zone) and say on
/// stderr what failed.
///
/// # Errors
/// [`CliError::Input`] for bad options, [`CliError::Runtime`] when discovery cannot run at all.
pub async fn discover(args: &AwsArgs, src: &Sources) -> Result<(Discovery, Vec<Zone>), CliError> {
    let opts = options(args, src)?;
    let d = aws::discover(opts)
        .await
        .map_err(|e| CliError::Runtime(anyhow::Error::new(e).context("AWS discovery")))?;
    for f in &d.failures {
        eprintln!("scanfleet: discovery failed: {f}");
    }
    let zones = d.zones.clone();
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
pub async fn discover_cmd(args: DiscoverArgs, src: &Sources) -> Result<(), CliError> {
    let out = Output::check(args.output.as_deref())?;
    let (d, zones) = discover(&args.aws_args, src).await?;
    print_summary(
        &d,
        &zones,
        &ScopePolicy::aws_preauthorized(),
        &Default::default(),
    );
    match out.path() {
        Some(path) => d
            .write_inventory(path)
            .map_err(|e| CliError::Runtime(anyhow::Error::new(e)))?,
        None => print!("{}", d.inventory_json()),
    }
    Ok(())
}

/// `scanfleet zones`.
///
/// # Errors
/// As [`discover`], or a bad inventory.
pub async fn zones_cmd(args: ZonesArgs, src: &Sources) -> Result<(), CliError> {
    match &args.inventory {
        Some(path) => {
            let assets = scanfleet_common::inventory::load(path)
                .map_err(|e| CliError::Input(e.to_string()))?;
            print!("{}", inventory_zones(&assets));
        }
        None => {
            let (_, zones) = discover(&args.aws_args, src).await?;
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
