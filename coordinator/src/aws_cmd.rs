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
            .entry(a.zone.as_deref().unwrap_or("default"))
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
