//! Discovery: talking to AWS to learn what is out there to scan.
//!
//! [`aws::discover`] walks an AWS estate (Organizations, STS, EC2) into a
//! [`Discovery`]: the inventory of assets (what `scanfleet scan --inventory`
//! reads), the network model around them, the zones, and what failed where.
//! What the model means (assets, reachability, zones) is worked out in
//! [`crate::estate`]; [`events`] keeps a discovery current from EC2
//! state-change events. [`Summary`] is the at-a-glance report of a run.

pub mod aws;
pub mod events;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use scanfleet_common::scope::{Skipped, count_by_reason};
use scanfleet_common::{Asset, Target};
use serde::{Deserialize, Serialize};

use crate::estate::assets::build_assets;
use crate::estate::network::{Instance, Location, Network};
use crate::estate::zones::{self, Zone};

/// Why discovery could not run at all. Failures of single accounts or regions
/// are not errors: they are listed in [`Discovery::failures`].
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Options that cannot work (no account, a malformed account id, ...).
    #[error("{0}")]
    Invalid(String),
    /// The list of accounts could not be read (Organizations ListAccounts, the
    /// caller's identity, or the accounts file).
    #[error("{0}")]
    Accounts(Box<Failure>),
    /// The accounts file could not be read. The cause is shown too: callers put
    /// this error into one line of a usage message.
    #[error("accounts file {path}: cannot read: {source}")]
    AccountsFile {
        path: String,
        source: std::io::Error,
    },
    /// The accounts file was read but a line of it is wrong; the cause (the
    /// [`DiscoveryError::Invalid`] naming the line) is shown too, as above.
    #[error("accounts file {path}: {source}")]
    AccountsFileInvalid {
        path: String,
        source: Box<DiscoveryError>,
    },
    /// Writing the inventory failed. The cause is the source only: shown by
    /// whoever prints the chain (`{:#}` of an `anyhow::Error`).
    #[error("inventory {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl DiscoveryError {
    /// True when running again later may succeed (throttling, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, DiscoveryError::Accounts(f) if f.transient)
    }
}

/// One call that failed, after the SDK's retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `None` when the whole account failed (AssumeRole, DescribeRegions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The API operation, as `service:Operation`.
    pub operation: String,
    /// The AWS error code (`AccessDenied`, `Throttling`, ...) when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// Throttling, timeouts, connection failures and 5xx: trying later may work.
    pub transient: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.account_id, &self.region) {
            (Some(a), Some(r)) => write!(f, "account {a} region {r}: ")?,
            (Some(a), None) => write!(f, "account {a}: ")?,
            (None, Some(r)) => write!(f, "region {r}: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.operation)?;
        if let Some(c) = &self.code {
            write!(f, ": {c}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How discovery of one account went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Every region was discovered.
    Ok,
    /// Some regions (or some calls of a region) failed.
    Partial,
    /// Nothing could be discovered (the role could not be assumed, ...).
    Failed,
    /// Not discovered on purpose (a suspended account).
    Skipped,
}

/// One account of the estate and how its discovery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReport {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: AccountStatus,
    /// Regions fully discovered.
    pub regions_ok: usize,
    /// Regions that failed, entirely or in part.
    pub regions_failed: usize,
    /// Why it was skipped or failed, in short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// API calls made, per `service:Operation`: requests (each page counts) and HTTP
/// attempts (requests plus the SDK's retries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCalls {
    pub requests: BTreeMap<String, u64>,
    pub attempts: BTreeMap<String, u64>,
}

impl ApiCalls {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn total_attempts(&self) -> u64 {
        self.attempts.values().sum()
    }

    /// Add another count (a watch loop's rediscoveries).
    pub fn add(&mut self, other: &ApiCalls) {
        for (k, v) in &other.requests {
            *self.requests.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.attempts {
            *self.attempts.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Everything one discovery run learned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Discovery {
    /// The inventory: one asset per instance that exists (not terminated) and has a
    /// private address, sorted
    /// by account, region and instance id, with zone and exposure set.
    pub assets: Vec<Asset>,
    /// Instances as EC2 described them (including those without an address).
    pub instances: Vec<Instance>,
    pub network: Network,
    /// The network zones of [`Discovery::network`], sorted by name; the assets'
    /// zones are set from them.
    #[serde(default)]
    pub zones: Vec<Zone>,
    pub accounts: Vec<AccountReport>,
    /// Regions discovered in at least one account, sorted.
    pub regions: Vec<String>,
    pub failures: Vec<Failure>,
    /// Account-regions whose network configuration could not be read in full:
    /// their assets carry no exposure (unknown, never reported as closed).
    #[serde(default)]
    pub incomplete: BTreeSet<Location>,
    pub api_calls: ApiCalls,
    #[serde(with = "duration_ms")]
    pub elapsed: Duration,
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Discovery {
    /// True when every account and region was discovered in full.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Rebuild the assets (addresses, exposure) and the zones from instances and
    /// network, and put each asset in its zone. Call after changing `instances`
    /// or `network`.
    pub fn rebuild_assets(&mut self) {
        self.assets = build_assets(&self.instances, &self.network, &self.incomplete);
        self.zones = zones::from_network(
            &self.network,
            self.assets.iter().filter_map(|a| a.vpc_id.as_deref()),
        );
        zones::assign(&mut self.assets, &self.zones);
    }

    /// Replace one account-region with a fresh copy (a watch event, a region
    /// rediscovered), then rebuild the assets.
    pub fn replace_region(
        &mut self,
        at: &Location,
        instances: Vec<Instance>,
        network: Network,
        complete: bool,
    ) {
        self.instances.retain(|i| &i.location != at);
        self.instances.extend(instances);
        self.instances
            .sort_by(|a, b| (&a.location, &a.instance_id).cmp(&(&b.location, &b.instance_id)));
        self.network.remove(at);
        self.network.extend(network);
        self.network.normalize();
        if complete {
            self.incomplete.remove(at);
        } else {
            self.incomplete.insert(at.clone());
        }
        self.rebuild_assets();
    }

    /// The inventory as `scanfleet scan --inventory` reads it: a JSON array of assets.
    pub fn inventory_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(&self.assets).unwrap_or_else(|_| "[]".into()) + "\n"
    }

    /// Write the inventory to `path` (through a temporary file, so a reader never
    /// sees half of it).
    ///
    /// # Errors
    /// [`DiscoveryError::Write`] naming the path.
    pub fn write_inventory(&self, path: &Path) -> Result<(), DiscoveryError> {
        let err = |source| DiscoveryError::Write {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.inventory_json()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// What changed from `before` to `self`, by asset id.
    pub fn diff(&self, before: &[Asset]) -> AssetDiff {
        diff_assets(before, &self.assets)
    }
}

/// Assets that appeared, disappeared or changed between two inventories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDiff {
    pub new: Vec<Asset>,
    pub gone: Vec<Asset>,
    /// Same id, something else changed (state, addresses, exposure, tags, ...).
    pub changed: Vec<Asset>,
}

impl AssetDiff {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.gone.is_empty() && self.changed.is_empty()
    }
}

/// Compare two inventories by asset id.
pub fn diff_assets(before: &[Asset], after: &[Asset]) -> AssetDiff {
    let old: BTreeMap<&str, &Asset> = before.iter().map(|a| (a.id.as_str(), a)).collect();
    let new: BTreeMap<&str, &Asset> = after.iter().map(|a| (a.id.as_str(), a)).collect();
    AssetDiff {
        new: after
            .iter()
            .filter(|a| !old.contains_key(a.id.as_str()))
            .cloned()
            .collect(),
        gone: before
            .iter()
            .filter(|a| !new.contains_key(a.id.as_str()))
            .cloned()
            .collect(),
        changed: after
            .iter()
            .filter(|a| old.get(a.id.as_str()).is_some_and(|o| *o != *a))
            .cloned()
            .collect(),
    }
}

/// The at-a-glance summary a security lead reads: accounts, regions, VPCs,
/// zones, instances, targets in scope, skips by reason, exposure, failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub accounts_ok: usize,
    pub accounts_partial: usize,
    pub accounts_failed: usize,
    pub accounts_skipped: usize,
    pub regions: usize,
    pub vpcs: usize,
    pub zones: usize,
    pub instances: usize,
    pub running: usize,
    /// Instances with at least one port reachable from the internet.
    pub internet_exposed: usize,
    /// Instances whose exposure is unknown (network configuration not read).
    pub exposure_unknown: usize,
    pub targets: usize,
    /// Skipped addresses by reason kind.
    pub skipped: BTreeMap<String, usize>,
    pub failures: Vec<String>,
    pub api_requests: u64,
    pub api_attempts: u64,
    pub elapsed_ms: u64,
}

impl Summary {
    /// Summarise a discovery and what scope made of it.
    pub fn new(d: &Discovery, zones: &[Zone], targets: &[Target], skipped: &[Skipped]) -> Summary {
        let count = |s: AccountStatus| d.accounts.iter().filter(|a| a.status == s).count();
        Summary {
            accounts_ok: count(AccountStatus::Ok),
            accounts_partial: count(AccountStatus::Partial),
            accounts_failed: count(AccountStatus::Failed),
            accounts_skipped: count(AccountStatus::Skipped),
            regions: d.regions.len(),
            vpcs: d.network.vpcs.len(),
            zones: zones.len(),
            instances: d.instances.len(),
            running: d.instances.iter().filter(|i| i.state == "running").count(),
            internet_exposed: d
                .assets
                .iter()
                .filter(|a| a.exposure.as_ref().is_some_and(|e| !e.is_closed()))
                .count(),
            exposure_unknown: d.assets.iter().filter(|a| a.exposure.is_none()).count(),
            targets: targets.len(),
            skipped: count_by_reason(skipped)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            failures: d.failures.iter().map(|f| f.to_string()).collect(),
            api_requests: d.api_calls.total_requests(),
            api_attempts: d.api_calls.total_attempts(),
            elapsed_ms: d.elapsed.as_millis() as u64,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accounts =
            self.accounts_ok + self.accounts_partial + self.accounts_failed + self.accounts_skipped;
        write!(f, "accounts   {accounts}: {} ok", self.accounts_ok)?;
        if self.accounts_partial > 0 {
            write!(f, ", {} partial", self.accounts_partial)?;
        }
        write!(f, ", {} failed", self.accounts_failed)?;
        if self.accounts_skipped > 0 {
            write!(f, ", {} skipped", self.accounts_skipped)?;
        }
        writeln!(f)?;
        writeln!(f, "regions    {}", self.regions)?;
        writeln!(f, "network    {} VPCs in {} zones", self.vpcs, self.zones)?;
        write!(
            f,
            "instances  {} ({} running), {} exposed to the internet",
            self.instances, self.running, self.internet_exposed
        )?;
        if self.exposure_unknown > 0 {
            write!(f, ", {} with unknown exposure", self.exposure_unknown)?;
        }
        writeln!(f)?;
        let skipped: usize = self.skipped.values().sum();
        write!(
            f,
            "scope      {} targets in scope, {skipped} addresses skipped",
            self.targets
        )?;
        if !self.skipped.is_empty() {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "api        {} requests, {} attempts, {:.1} s",
            self.api_requests,
            self.api_attempts,
            self.elapsed_ms as f64 / 1000.0
        )?;
        for fail in &self.failures {
            writeln!(f, "failed     {fail}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::network::Vpc;
    use crate::estate::testing::{self, location};

    fn inst(id: &str, ips: &[&str]) -> Instance {
        let at = location("111111111111", "us-east-1");
        testing::instance(id, at, Some("vpc-1"), ips)
    }

    #[test]
    fn inventory_round_trips_through_the_scan_reader() {
        let d = Discovery {
            instances: vec![inst("i-1", &["10.0.0.1", "10.0.0.2"])],
            ..Discovery::default()
        };
        let mut d = d;
        d.rebuild_assets();
        let text = d.inventory_json();
        let back = scanfleet_common::inventory::parse(Path::new("inv.json"), &text).unwrap();
        assert_eq!(back, d.assets);
        assert_eq!(back[0].exposure.as_ref().map(|e| e.is_closed()), Some(true));
    }

    #[test]
    fn a_rebuilt_discovery_comes_with_its_zones_assigned() {
        let mut d = Discovery {
            instances: vec![inst("i-1", &["10.0.0.1"]), inst("i-2", &["10.0.0.2"])],
            ..Discovery::default()
        };
        d.network.vpcs.push(Vpc {
            vpc_id: "vpc-1".into(),
            location: d.instances[0].location.clone(),
            cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            is_default: false,
            tags: BTreeMap::new(),
        });
        d.rebuild_assets();
        let names: Vec<&str> = d.zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["zone-vpc-1"]);
        assert_eq!(d.zones[0].instances(), 2);
        assert!(
            d.assets
                .iter()
                .all(|a| a.zone.as_deref() == Some("zone-vpc-1"))
        );
        // The zones survive the JSON a bench or a cache keeps.
        let back: Discovery = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back.zones, d.zones);
    }

    #[test]
    fn diff_finds_new_gone_and_changed() {
        let a = Asset::from_ip("10.0.0.1".parse().unwrap());
        let b = Asset::from_ip("10.0.0.2".parse().unwrap());
        let mut b2 = b.clone();
        b2.state = Some("stopped".into());
        let c = Asset::from_ip("10.0.0.3".parse().unwrap());
        let d = diff_assets(&[a.clone(), b], &[b2.clone(), c.clone()]);
        assert_eq!((d.new, d.gone, d.changed), (vec![c], vec![a], vec![b2]));
    }
}
