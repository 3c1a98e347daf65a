//! The walk: every account concurrently under one semaphore, every region of
//! an account concurrently, every Describe call of a region in turn; what
//! failed is recorded where it failed and the rest is still discovered.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::task::JoinSet;

use super::AwsDiscoverer;
use super::calls::subtract;
use super::instances::{describe_images, describe_instances};
use super::network::{
    describe_addresses, describe_network_acls, describe_peerings, describe_route_tables,
    describe_security_groups, describe_subnets, describe_vpcs,
};
use super::options::AccountRef;
use crate::discovery::{AccountReport, AccountStatus, Discovery, DiscoveryError, Failure};
use crate::estate::network::{Instance, Location, Network};

/// What one account-region walk found.
#[derive(Debug, Clone, Default)]
pub struct RegionSnapshot {
    pub location: Location,
    pub instances: Vec<Instance>,
    pub network: Network,
    /// DescribeInstances answered: the instances are all there.
    pub instances_ok: bool,
    /// Every network call answered too: exposure can be computed.
    pub network_ok: bool,
    pub failures: Vec<Failure>,
}

impl AwsDiscoverer {
    /// Discover every account and region; see the module documentation.
    ///
    /// # Errors
    /// [`DiscoveryError::Accounts`] when the accounts cannot be listed. Failures of
    /// single accounts or regions are in [`Discovery::failures`].
    pub async fn discover(self: &Arc<Self>) -> Result<Discovery, DiscoveryError> {
        let started = Instant::now();
        let calls_before = self.counter.snapshot();
        let (accounts, mut reports) = self.accounts().await?;
        tracing::info!(accounts = accounts.len(), "discovering AWS accounts");
        let mut tasks = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, AccountRef> = HashMap::new();
        for a in accounts {
            let me = self.clone();
            let id = a.account_id.clone();
            let handle = tasks.spawn(async move { me.discover_account(&id).await });
            names.insert(handle.id(), a);
        }
        let mut d = Discovery::default();
        let mut regions: BTreeSet<String> = BTreeSet::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (task, result) = match joined {
                Ok((task, r)) => (task, r),
                Err(e) => (e.id(), Err(panicked(e))),
            };
            let Some(acct) = names.remove(&task) else {
                continue;
            };
            let mut report = AccountReport {
                account_id: acct.account_id.clone(),
                name: acct.name.clone(),
                status: AccountStatus::Ok,
                regions_ok: 0,
                regions_failed: 0,
                reason: None,
            };
            match result {
                Err(mut f) => {
                    f.account_id = Some(acct.account_id.clone());
                    report.status = AccountStatus::Failed;
                    report.reason = Some(short_reason(&f));
                    d.failures.push(f);
                }
                Ok(snapshots) => {
                    for s in snapshots {
                        if s.instances_ok && s.network_ok {
                            report.regions_ok += 1;
                        } else {
                            report.regions_failed += 1;
                            report.reason.get_or_insert_with(|| {
                                s.failures.first().map(short_reason).unwrap_or_default()
                            });
                        }
                        if s.instances_ok {
                            regions.insert(s.location.region.clone());
                            if !s.network_ok {
                                d.incomplete.insert(s.location.clone());
                            }
                        }
                        d.failures.extend(s.failures);
                        d.instances.extend(s.instances);
                        d.network.extend(s.network);
                    }
                    report.status = match (report.regions_ok, report.regions_failed) {
                        (_, 0) => AccountStatus::Ok,
                        (0, _) => AccountStatus::Failed,
                        _ => AccountStatus::Partial,
                    };
                }
            }
            reports.push(report);
        }
        reports.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        d.accounts = reports;
        d.regions = regions.into_iter().collect();
        d.network.normalize();
        d.instances
            .sort_by(|a, b| (&a.location, &a.instance_id).cmp(&(&b.location, &b.instance_id)));
        d.failures.sort_by(|a, b| {
            (&a.account_id, &a.region, &a.operation).cmp(&(&b.account_id, &b.region, &b.operation))
        });
        d.rebuild_assets();
        let mut calls = self.counter.snapshot();
        subtract(&mut calls, &calls_before);
        d.api_calls = calls;
        d.elapsed = started.elapsed();
        for f in &d.failures {
            tracing::warn!(failure = %f, "discovery failure");
        }
        Ok(d)
    }

    /// One account: credentials, regions, then every region concurrently.
    async fn discover_account(&self, account_id: &str) -> Result<Vec<RegionSnapshot>, Failure> {
        let sdk = self.session(account_id).await?;
        let regions = self.regions(&sdk, account_id).await?;
        let mut walks: FuturesUnordered<_> = regions
            .iter()
            .map(|r| {
                let sdk = &sdk;
                async move {
                    let _permit = self.sem.acquire().await.ok();
                    self.walk_region(
                        sdk,
                        Location {
                            account_id: account_id.to_string(),
                            region: r.clone(),
                        },
                    )
                    .await
                }
            })
            .collect();
        let mut out = Vec::with_capacity(regions.len());
        while let Some(s) = walks.next().await {
            out.push(s);
        }
        Ok(out)
    }

    /// Describe one account-region afresh (the watch loop, after an event).
    ///
    /// # Errors
    /// The [`Failure`] of AssumeRole. Failures of the region's calls are in the
    /// snapshot.
    pub async fn discover_region(
        &self,
        account_id: &str,
        region: &str,
    ) -> Result<RegionSnapshot, Failure> {
        let sdk = self.session(account_id).await?;
        let _permit = self.sem.acquire().await.ok();
        let mut s = self
            .walk_region(
                &sdk,
                Location {
                    account_id: account_id.into(),
                    region: region.into(),
                },
            )
            .await;
        s.network.normalize();
        Ok(s)
    }

    /// Every Describe call of one account-region. DescribeInstances failing fails
    /// the region; a network call failing leaves the network incomplete (exposure
    /// unknown) but keeps the instances.
    async fn walk_region(&self, sdk: &SdkConfig, at: Location) -> RegionSnapshot {
        let ec2 = self.ec2(sdk, &at.region);
        let mut s = RegionSnapshot {
            location: at.clone(),
            ..RegionSnapshot::default()
        };
        match describe_instances(&ec2, &at, self.opts.page_size).await {
            Ok(i) => {
                s.instances = i;
                s.instances_ok = true;
            }
            Err(f) => {
                s.failures.push(f);
                return s;
            }
        }
        let n = &mut s.network;
        let mut fails = Vec::new();
        let mut keep = |r: Result<(), Failure>| {
            if let Err(f) = r {
                fails.push(f);
            }
        };
        keep(describe_vpcs(&ec2, &at).await.map(|v| n.vpcs = v));
        keep(describe_peerings(&ec2, &at).await.map(|v| n.peerings = v));
        keep(describe_subnets(&ec2, &at).await.map(|v| n.subnets = v));
        keep(
            describe_route_tables(&ec2, &at)
                .await
                .map(|v| n.route_tables = v),
        );
        keep(
            describe_network_acls(&ec2, &at)
                .await
                .map(|v| n.network_acls = v),
        );
        keep(
            describe_security_groups(&ec2, &at)
                .await
                .map(|v| n.security_groups = v),
        );
        keep(
            describe_addresses(&ec2, &at)
                .await
                .map(|v| n.elastic_ips = v),
        );
        s.network_ok = fails.is_empty();
        if self.opts.describe_images {
            match describe_images(&ec2, &at, &s.instances).await {
                Ok(names) => {
                    for i in &mut s.instances {
                        i.image_name = i.image_id.as_ref().and_then(|id| names.get(id)).cloned();
                    }
                }
                // Image names are a nicety: their absence leaves the region complete.
                Err(f) => fails.push(f),
            }
        }
        // Budgets fall back to the shipped table without it: not a failed region.
        if let Err(f) = self.types.annotate(&ec2, &at, &mut s.instances).await {
            fails.push(f);
        }
        s.failures = fails;
        s
    }
}

fn panicked(e: tokio::task::JoinError) -> Failure {
    Failure {
        account_id: None,
        region: None,
        operation: "discovery".into(),
        code: None,
        message: format!("the account's discovery task ended abnormally: {e}"),
        transient: true,
    }
}

fn short_reason(f: &Failure) -> String {
    match &f.code {
        Some(c) => format!("{}: {c}", f.operation),
        None => format!("{}: {}", f.operation, f.message),
    }
}
