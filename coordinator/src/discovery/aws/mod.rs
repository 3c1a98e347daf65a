//! AWS discovery: Organizations ListAccounts (or a list of accounts) -> STS
//! AssumeRole per account -> DescribeRegions (or the given regions) -> per region
//! DescribeInstances, DescribeVpcs, DescribeVpcPeeringConnections,
//! DescribeSubnets, DescribeSecurityGroups, DescribeNetworkAcls,
//! DescribeRouteTables, DescribeAddresses and DescribeImages, and
//! DescribeInstanceTypes once per instance type and region (the network
//! performance each target's probe budget is derived from).
//!
//! Accounts x regions are walked concurrently under one [`Semaphore`] (each
//! AssumeRole, DescribeRegions and region walk holds one permit), every list is
//! paginated, and the SDK's standard retry mode backs off on throttling. An
//! account or region that fails is recorded with its reason in
//! [`Discovery::failures`] and the rest of the estate is still discovered.
//!
//! Credentials come from the standard AWS provider chain (environment, profile,
//! instance or task role) and are never logged; an endpoint override
//! (`AWS_ENDPOINT_URL` or [`AwsDiscoveryOptions::endpoint_url`]) points every
//! client at an emulator such as moto's server.

mod accounts;
mod calls;
mod instances;
mod network;
mod options;
mod types;
mod walk;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_ec2::config::Region;
use ipnet::IpNet;
use tokio::sync::Semaphore;

pub use accounts::{load_accounts, parse_accounts};
pub use options::{
    AccountRef, AccountSource, AwsDiscoveryOptions, DEFAULT_HOME_REGION, DEFAULT_ROLE_NAME,
    DEFAULT_SESSION_NAME,
};
pub use walk::RegionSnapshot;

use super::{ApiCalls, Discovery, DiscoveryError};
use calls::{CallCounter, CountCalls};

/// A configured discovery: AWS configuration loaded once, reusable for full
/// runs ([`AwsDiscoverer::discover`]) and single account-regions
/// ([`AwsDiscoverer::discover_region`], the watch loop's rediscovery).
pub struct AwsDiscoverer {
    opts: AwsDiscoveryOptions,
    base: SdkConfig,
    counter: Arc<CallCounter>,
    sem: Arc<Semaphore>,
    /// Assumed-role configurations by account, reused until they near expiry.
    sessions: tokio::sync::Mutex<HashMap<String, (SdkConfig, Option<std::time::SystemTime>)>>,
    /// Instance types described so far, per region.
    types: types::TypeCache,
}

impl fmt::Debug for AwsDiscoverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsDiscoverer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Discover the estate `opts` describes. Shorthand for
/// [`AwsDiscoverer::new`] then [`AwsDiscoverer::discover`].
///
/// # Errors
/// [`DiscoveryError::Invalid`] for bad options; [`DiscoveryError::Accounts`] when
/// the accounts cannot be listed. Failures of single accounts or regions are in
/// [`Discovery::failures`].
pub async fn discover(opts: AwsDiscoveryOptions) -> Result<Discovery, DiscoveryError> {
    Arc::new(AwsDiscoverer::new(opts).await?).discover().await
}

impl AwsDiscoverer {
    /// Validate the options and load the AWS configuration (credentials chain,
    /// region, endpoint). Nothing is sent yet.
    ///
    /// # Errors
    /// [`DiscoveryError::Invalid`] for bad options.
    pub async fn new(opts: AwsDiscoveryOptions) -> Result<Self, DiscoveryError> {
        opts.validate()?;
        let sdk = scanfleet_common::aws::load(opts.home_region.as_deref()).await;
        Self::with_sdk_config(opts, &sdk)
    }

    /// Like [`AwsDiscoverer::new`], with an AWS configuration the caller loaded
    /// (shared with other clients, or made by a test with its own credentials).
    /// The options' retry, timeout, endpoint and home region apply on top of it.
    ///
    /// # Errors
    /// [`DiscoveryError::Invalid`] for bad options.
    pub fn with_sdk_config(
        opts: AwsDiscoveryOptions,
        sdk: &SdkConfig,
    ) -> Result<Self, DiscoveryError> {
        opts.validate()?;
        let base = scanfleet_common::aws::configure(
            sdk,
            &scanfleet_common::aws::ClientSettings {
                region: opts.home_region.clone(),
                fallback_region: Some(DEFAULT_HOME_REGION.into()),
                endpoint_url: opts.endpoint_url.clone(),
                max_attempts: opts.max_attempts,
                attempt_timeout: opts.attempt_timeout,
            },
        );
        Ok(AwsDiscoverer {
            sem: Arc::new(Semaphore::new(opts.concurrency)),
            opts,
            base,
            counter: Arc::new(CallCounter::default()),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            types: types::TypeCache::default(),
        })
    }

    /// The options this discoverer runs with.
    pub fn options(&self) -> &AwsDiscoveryOptions {
        &self.opts
    }

    /// API calls made so far by this discoverer (every run and region walk).
    pub fn api_calls(&self) -> ApiCalls {
        self.counter.snapshot()
    }

    /// The AWS configuration with the caller's credentials (for other clients,
    /// such as the watch loop's SQS client).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.base
    }

    fn home_region(&self) -> String {
        self.base
            .region()
            .map_or_else(|| DEFAULT_HOME_REGION.to_string(), |r| r.to_string())
    }

    fn ec2(&self, sdk: &SdkConfig, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(sdk)
            .region(Region::new(region.to_string()))
            .interceptor(CountCalls(self.counter.clone()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    fn sts(&self) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(&self.base)
            .interceptor(CountCalls(self.counter.clone()))
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }
}

fn ip(s: Option<&str>) -> Option<IpAddr> {
    s.and_then(|s| s.parse().ok())
}

fn net(s: Option<&str>) -> Option<IpNet> {
    s.and_then(|s| s.parse::<IpNet>().ok())
}

fn tags(t: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    t.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}
