//! AWS discovery: Organizations ListAccounts (or a list of accounts) -> STS
//! AssumeRole per account -> DescribeRegions (or the given regions) -> per region
//! DescribeInstances, DescribeVpcs, DescribeVpcPeeringConnections,
//! DescribeSubnets, DescribeSecurityGroups, DescribeNetworkAcls,
//! DescribeRouteTables, DescribeAddresses and DescribeImages.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{
    BehaviorVersion, ConfigBag, Credentials, Region, SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ipnet::IpNet;
use scanfleet_common::PortRange;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::model::{
    AclEntry, ElasticIp, Instance, Interface, InterfaceAddress, Location, Network, NetworkAcl,
    Peering, PeeringSide, Route, RouteTable, SecurityGroup, SgRule, Subnet, Vpc,
};
use super::{AccountReport, AccountStatus, ApiCalls, Discovery, DiscoveryError, Failure};

/// Role assumed in every account unless told otherwise (the terraform module's
/// per-account read-only role).
pub const DEFAULT_ROLE_NAME: &str = "scanfleet-discovery";
/// Session name of the assumed roles: shows up in each account's CloudTrail.
pub const DEFAULT_SESSION_NAME: &str = "scanfleet-discovery";
/// Region of the global calls (Organizations, STS, DescribeRegions) when the
/// AWS configuration names none.
pub const DEFAULT_HOME_REGION: &str = "us-east-1";
/// TCP connect timeout of the HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Image ids per DescribeImages call (a filter takes up to 200 values).
const IMAGE_BATCH: usize = 200;
/// AWS error codes that mean "slow down" or "try again".
const TRANSIENT_CODES: [&str; 12] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottledException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
];

/// Which accounts to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    /// Every active account of the organization (Organizations ListAccounts with
    /// the caller's credentials: the management or a delegated administrator
    /// account), each through AssumeRole.
    Organization,
    /// These accounts (`--accounts FILE`), each through AssumeRole.
    List(Vec<AccountRef>),
    /// Only the caller's own account, with the caller's credentials (no AssumeRole).
    Caller,
}

/// One account to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// Twelve digits.
    pub account_id: String,
    pub name: Option<String>,
}

/// How to discover. [`AwsDiscoveryOptions::default`] discovers the organization
/// in every enabled region with the default role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsDiscoveryOptions {
    pub accounts: AccountSource,
    /// Role assumed in each account (a name; the ARN is built per account).
    pub role_name: String,
    /// External ID the roles' trust policies require.
    pub external_id: Option<String>,
    pub session_name: String,
    /// ARN partition of the roles: `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// Regions to discover; `None` asks each account's DescribeRegions (enabled
    /// regions only).
    pub regions: Option<Vec<String>>,
    /// Region of the global calls; `None` takes the AWS configuration's region,
    /// else [`DEFAULT_HOME_REGION`].
    pub home_region: Option<String>,
    /// Endpoint of every AWS API (an emulator); `None` keeps AWS's endpoints, or
    /// `AWS_ENDPOINT_URL` when set.
    pub endpoint_url: Option<String>,
    /// Calls in flight at once (AssumeRole, DescribeRegions, region walks).
    pub concurrency: usize,
    /// Attempts per call, the first included, under the SDK's standard retry mode
    /// (exponential backoff with jitter, throttling errors retried).
    pub max_attempts: u32,
    /// Limit on one HTTP attempt.
    pub attempt_timeout: Duration,
    /// DescribeInstances page size (5 to 1000).
    pub page_size: i32,
    /// Look up image names (DescribeImages).
    pub describe_images: bool,
}

impl Default for AwsDiscoveryOptions {
    fn default() -> Self {
        AwsDiscoveryOptions {
            accounts: AccountSource::Organization,
            role_name: DEFAULT_ROLE_NAME.into(),
            external_id: None,
            session_name: DEFAULT_SESSION_NAME.into(),
            partition: "aws".into(),
            regions: None,
            home_region: None,
            endpoint_url: None,
            concurrency: 16,
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(30),
            page_size: 1000,
            describe_images: true,
        }
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl AwsDiscoveryOptions {
    /// Check every option, naming the one that is wrong.
    ///
    /// # Errors
    /// [`DiscoveryError::Invalid`].
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let bad = |m: String| Err(DiscoveryError::Invalid(m));
        let role_ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
        if self.role_name.is_empty()
            || self.role_name.len() > 64
            || !self.role_name.chars().all(role_ok)
        {
            return bad(format!(
                "role name {:?}: expected 1 to 64 of A-Z a-z 0-9 + = , . @ _ - /",
                self.role_name
            ));
        }
        let session_ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
        if !(2..=64).contains(&self.session_name.len())
            || !self.session_name.chars().all(session_ok)
        {
            return bad(format!(
                "session name {:?}: expected 2 to 64 of A-Z a-z 0-9 + = , . @ _ -",
                self.session_name
            ));
        }
        if let Some(x) = &self.external_id
            && !(2..=1224).contains(&x.len())
        {
            return bad("external ID: expected 2 to 1224 characters".into());
        }
        if !["aws", "aws-cn", "aws-us-gov"].contains(&self.partition.as_str()) {
            return bad(format!(
                "partition {:?}: expected aws, aws-cn or aws-us-gov",
                self.partition
            ));
        }
        if let AccountSource::List(list) = &self.accounts {
            if list.is_empty() {
                return bad("no accounts to discover".into());
            }
            if let Some(a) = list.iter().find(|a| !is_account_id(&a.account_id)) {
                return bad(format!("account {:?}: expected 12 digits", a.account_id));
            }
        }
        if let Some(regions) = &self.regions {
            if regions.is_empty() {
                return bad("no regions to discover".into());
            }
            if let Some(r) = regions
                .iter()
                .chain(&self.home_region)
                .find(|r| !is_region(r))
            {
                return bad(format!("region {r:?} is not a region name"));
            }
        }
        if !(1..=1024).contains(&self.concurrency) {
            return bad(format!(
                "concurrency {}: expected 1 to 1024",
                self.concurrency
            ));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return bad(format!(
                "max attempts {}: expected 1 to 10",
                self.max_attempts
            ));
        }
        if !(5..=1000).contains(&self.page_size) {
            return bad(format!("page size {}: expected 5 to 1000", self.page_size));
        }
        if self.attempt_timeout.is_zero() {
            return bad("attempt timeout must be more than zero".into());
        }
        Ok(())
    }
}

/// Parse an accounts file: one account per line, its 12-digit id optionally
/// followed by a name (after whitespace or a comma); blank lines and `#`
/// comments are ignored; a repeated id counts once.
///
/// # Errors
/// [`DiscoveryError::Invalid`] naming the line.
pub fn parse_accounts(text: &str) -> Result<Vec<AccountRef>, DiscoveryError> {
    let mut out: Vec<AccountRef> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (id, name) = match line.find(|c: char| c.is_whitespace() || c == ',') {
            Some(i) => (
                &line[..i],
                line[i + 1..].trim_matches(|c: char| c.is_whitespace() || c == ','),
            ),
            None => (line, ""),
        };
        if !is_account_id(id) {
            return Err(DiscoveryError::Invalid(format!(
                "accounts line {}: {id:?} is not a 12-digit account id",
                n + 1
            )));
        }
        if !out.iter().any(|a| a.account_id == id) {
            out.push(AccountRef {
                account_id: id.into(),
                name: (!name.is_empty()).then(|| name.to_string()),
            });
        }
    }
    if out.is_empty() {
        return Err(DiscoveryError::Invalid(
            "accounts: no account id in the list".into(),
        ));
    }
    Ok(out)
}

/// Read an accounts file ([`parse_accounts`]).
///
/// # Errors
/// [`DiscoveryError::Invalid`] naming the path and what is wrong.
pub fn load_accounts(path: &Path) -> Result<Vec<AccountRef>, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DiscoveryError::Invalid(format!(
            "accounts file {}: cannot read: {e}",
            path.display()
        ))
    })?;
    parse_accounts(&text)
        .map_err(|e| DiscoveryError::Invalid(format!("accounts file {}: {e}", path.display())))
}

/// Counts requests and attempts per operation, for every client it is attached to.
#[derive(Debug, Default)]
struct CallCounter {
    calls: Mutex<ApiCalls>,
}

impl CallCounter {
    fn bump(&self, cfg: &ConfigBag, attempt: bool) {
        let name = cfg.load::<Metadata>().map_or_else(
            || "unknown".to_string(),
            |m| format!("{}:{}", m.service().to_ascii_lowercase(), m.name()),
        );
        if let Ok(mut c) = self.calls.lock() {
            let map = if attempt {
                &mut c.attempts
            } else {
                &mut c.requests
            };
            *map.entry(name).or_insert(0) += 1;
        }
    }

    fn snapshot(&self) -> ApiCalls {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct CountCalls(Arc<CallCounter>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "scanfleet-count-calls"
    }

    /// Once per operation (an attempt does not serialize again).
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.bump(cfg, false);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.bump(cfg, true);
        Ok(())
    }
}

/// The HTTPS client: rustls on ring, as the rest of the workspace. Plain
/// `http://` endpoints (emulators) work too.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Turn an SDK error into a [`Failure`] that says whether retrying later may help.
fn failure<E>(
    op: &str,
    err: &SdkError<E, HttpResponse>,
    at: Option<&Location>,
    account: Option<&str>,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut code = err.code().map(str::to_string);
    let mut message = err.message().map(str::to_string);
    let mut status = None;
    if let SdkError::ServiceError(se) = err {
        status = Some(se.raw().status().as_u16());
        // Some endpoints (moto's IAM enforcement, proxies) answer with an error
        // document of another protocol that the SDK cannot parse: read the code
        // and message from the body then.
        if code.is_none()
            && let Some(body) = se
                .raw()
                .body()
                .bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
        {
            code = xml_element(body, "Code");
            message = message.or_else(|| xml_element(body, "Message"));
        }
    }
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            code.as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status.is_some_and(|s| s == 429 || s >= 500)
        }
        _ => false,
    };
    Failure {
        account_id: at
            .map(|l| l.account_id.clone())
            .or_else(|| account.map(str::to_string)),
        region: at.map(|l| l.region.clone()),
        operation: op.to_string(),
        code,
        message: message.unwrap_or_else(|| DisplayErrorContext(err).to_string()),
        transient,
    }
}

/// The text of the first `<name>` element of an XML document, unescaped for the
/// five predefined entities; `None` when absent or empty.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{name}>"))?;
    let text = body[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
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
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(r) = &opts.home_region {
            loader = loader.region(Region::new(r.clone()));
        }
        Self::with_sdk_config(opts, &loader.load().await)
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
        let mut b = sdk
            .to_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(opts.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(opts.attempt_timeout)
                    .build(),
            );
        if sdk.http_client().is_none() {
            b = b.http_client(https_client());
        }
        if let Some(r) = &opts.home_region {
            b = b.region(Region::new(r.clone()));
        } else if sdk.region().is_none() {
            b = b.region(Region::new(DEFAULT_HOME_REGION));
        }
        if let Some(url) = &opts.endpoint_url {
            b = b.endpoint_url(url.clone());
        }
        Ok(AwsDiscoverer {
            sem: Arc::new(Semaphore::new(opts.concurrency)),
            opts,
            base: b.build(),
            counter: Arc::new(CallCounter::default()),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
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

    /// The accounts to discover, with those not to discover already decided.
    async fn accounts(&self) -> Result<(Vec<AccountRef>, Vec<AccountReport>), DiscoveryError> {
        match &self.opts.accounts {
            AccountSource::List(list) => Ok((list.clone(), Vec::new())),
            AccountSource::Caller => {
                let out = self.sts().get_caller_identity().send().await.map_err(|e| {
                    DiscoveryError::Accounts(Box::new(failure(
                        "sts:GetCallerIdentity",
                        &e,
                        None,
                        None,
                    )))
                })?;
                let id = out.account().unwrap_or_default().to_string();
                Ok((
                    vec![AccountRef {
                        account_id: id,
                        name: None,
                    }],
                    Vec::new(),
                ))
            }
            AccountSource::Organization => {
                let conf = aws_sdk_organizations::config::Builder::from(&self.base)
                    .interceptor(CountCalls(self.counter.clone()))
                    .build();
                let org = aws_sdk_organizations::Client::from_conf(conf);
                let mut pages = org.list_accounts().into_paginator().send();
                let mut active = Vec::new();
                let mut skipped = Vec::new();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        DiscoveryError::Accounts(Box::new(failure(
                            "organizations:ListAccounts",
                            &e,
                            None,
                            None,
                        )))
                    })?;
                    for a in page.accounts() {
                        let Some(id) = a.id() else { continue };
                        let state = a
                            .state()
                            .map(|s| s.as_str().to_string())
                            .or_else(|| a.status().map(|s| s.as_str().to_string()))
                            .unwrap_or_else(|| "ACTIVE".into());
                        let r = AccountRef {
                            account_id: id.to_string(),
                            name: a.name().map(str::to_string),
                        };
                        if state == "ACTIVE" {
                            active.push(r);
                        } else {
                            skipped.push(AccountReport {
                                account_id: r.account_id,
                                name: r.name,
                                status: AccountStatus::Skipped,
                                regions_ok: 0,
                                regions_failed: 0,
                                reason: Some(format!("account is {state}")),
                            });
                        }
                    }
                }
                Ok((active, skipped))
            }
        }
    }

    /// Credentials for one account: the caller's own for [`AccountSource::Caller`],
    /// else an assumed role, cached until five minutes before it expires.
    async fn session(&self, account_id: &str) -> Result<SdkConfig, Failure> {
        if self.opts.accounts == AccountSource::Caller {
            return Ok(self.base.clone());
        }
        let fresh = |exp: &Option<std::time::SystemTime>| {
            exp.is_none_or(|t| t > std::time::SystemTime::now() + Duration::from_secs(300))
        };
        if let Some((sdk, exp)) = self.sessions.lock().await.get(account_id)
            && fresh(exp)
        {
            return Ok(sdk.clone());
        }
        let arn = format!(
            "arn:{}:iam::{account_id}:role/{}",
            self.opts.partition, self.opts.role_name
        );
        let out = {
            let _permit = self.sem.acquire().await.ok();
            self.sts()
                .assume_role()
                .role_arn(&arn)
                .role_session_name(&self.opts.session_name)
                .set_external_id(self.opts.external_id.clone())
                .send()
                .await
                .map_err(|e| failure("sts:AssumeRole", &e, None, Some(account_id)))?
        };
        let c = out.credentials().ok_or_else(|| Failure {
            account_id: Some(account_id.to_string()),
            region: None,
            operation: "sts:AssumeRole".into(),
            code: None,
            message: format!("no credentials in the answer for {arn}"),
            transient: true,
        })?;
        let expires = std::time::SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expires,
            "scanfleet-assume-role",
        );
        let sdk = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        self.sessions
            .lock()
            .await
            .insert(account_id.to_string(), (sdk.clone(), expires));
        Ok(sdk)
    }

    async fn regions(&self, sdk: &SdkConfig, account_id: &str) -> Result<Vec<String>, Failure> {
        if let Some(r) = &self.opts.regions {
            return Ok(r.clone());
        }
        let _permit = self.sem.acquire().await.ok();
        let home = self.home_region();
        let out = self
            .ec2(sdk, &home)
            .describe_regions()
            .send()
            .await
            .map_err(|e| failure("ec2:DescribeRegions", &e, None, Some(account_id)))?;
        let mut regions: Vec<String> = out
            .regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect();
        regions.sort();
        Ok(regions)
    }

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

fn subtract(calls: &mut ApiCalls, before: &ApiCalls) {
    for (k, v) in &before.requests {
        if let Some(x) = calls.requests.get_mut(k) {
            *x = x.saturating_sub(*v);
        }
    }
    for (k, v) in &before.attempts {
        if let Some(x) = calls.attempts.get_mut(k) {
            *x = x.saturating_sub(*v);
        }
    }
    calls.requests.retain(|_, v| *v > 0);
    calls.attempts.retain(|_, v| *v > 0);
}

async fn describe_instances(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
    page: i32,
) -> Result<Vec<Instance>, Failure> {
    let mut out = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .max_results(page)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        let p = p.map_err(|e| failure("ec2:DescribeInstances", &e, Some(at), None))?;
        for r in p.reservations() {
            out.extend(r.instances().iter().filter_map(|i| instance(i, at)));
        }
    }
    Ok(out)
}

fn instance(i: &aws_sdk_ec2::types::Instance, at: &Location) -> Option<Instance> {
    let id = i.instance_id()?.to_string();
    let mut interfaces: Vec<Interface> = i
        .network_interfaces()
        .iter()
        .map(|n| {
            let mut addresses: Vec<InterfaceAddress> = n
                .private_ip_addresses()
                .iter()
                .filter_map(|a| {
                    Some(InterfaceAddress {
                        private_ip: ip(a.private_ip_address())?,
                        public_ip: ip(a.association().and_then(|x| x.public_ip())),
                        primary: a.primary().unwrap_or(false),
                    })
                })
                .collect();
            if addresses.is_empty()
                && let Some(p) = ip(n.private_ip_address())
            {
                addresses.push(InterfaceAddress {
                    private_ip: p,
                    public_ip: ip(n.association().and_then(|x| x.public_ip())),
                    primary: true,
                });
            }
            Interface {
                interface_id: n.network_interface_id().unwrap_or_default().to_string(),
                subnet_id: n.subnet_id().map(str::to_string),
                vpc_id: n.vpc_id().map(str::to_string),
                device_index: n.attachment().and_then(|a| a.device_index()).unwrap_or(0),
                addresses,
                ipv6: n
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| ip(a.ipv6_address()))
                    .collect(),
                security_groups: n
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
            }
        })
        .collect();
    interfaces.sort_by_key(|n| n.device_index);
    Some(Instance {
        instance_id: id,
        location: at.clone(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        vpc_id: i.vpc_id().map(str::to_string),
        subnet_id: i.subnet_id().map(str::to_string),
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or_else(|| "unknown".into(), |n| n.as_str().to_string()),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()),
        platform: i
            .platform()
            .map(|p| p.as_str().to_ascii_lowercase())
            .or_else(|| i.platform_details().map(str::to_string)),
        image_id: i.image_id().map(str::to_string),
        image_name: None,
        private_ip: ip(i.private_ip_address()),
        public_ip: ip(i.public_ip_address()),
        interfaces,
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: tags(i.tags()),
    })
}

async fn describe_vpcs(ec2: &aws_sdk_ec2::Client, at: &Location) -> Result<Vec<Vpc>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_vpcs().into_paginator().items().send();
    while let Some(v) = items.next().await {
        let v = v.map_err(|e| failure("ec2:DescribeVpcs", &e, Some(at), None))?;
        let Some(id) = v.vpc_id() else { continue };
        let mut cidrs: Vec<IpNet> = v
            .cidr_block_association_set()
            .iter()
            .filter_map(|c| net(c.cidr_block()))
            .chain(
                v.ipv6_cidr_block_association_set()
                    .iter()
                    .filter_map(|c| net(c.ipv6_cidr_block())),
            )
            .collect();
        if cidrs.is_empty() {
            cidrs.extend(net(v.cidr_block()));
        }
        cidrs.sort();
        cidrs.dedup();
        out.push(Vpc {
            vpc_id: id.to_string(),
            location: at.clone(),
            cidrs,
            is_default: v.is_default().unwrap_or(false),
            tags: tags(v.tags()),
        });
    }
    Ok(out)
}

async fn describe_peerings(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<Peering>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2
        .describe_vpc_peering_connections()
        .into_paginator()
        .items()
        .send();
    while let Some(p) = items.next().await {
        let p = p.map_err(|e| failure("ec2:DescribeVpcPeeringConnections", &e, Some(at), None))?;
        let side = |v: Option<&aws_sdk_ec2::types::VpcPeeringConnectionVpcInfo>| {
            let v = v?;
            Some(PeeringSide {
                vpc_id: v.vpc_id()?.to_string(),
                account_id: v.owner_id().map(str::to_string),
                region: v.region().map(str::to_string),
            })
        };
        let (Some(id), Some(requester), Some(accepter)) = (
            p.vpc_peering_connection_id(),
            side(p.requester_vpc_info()),
            side(p.accepter_vpc_info()),
        ) else {
            continue;
        };
        out.push(Peering {
            peering_id: id.to_string(),
            status: p
                .status()
                .and_then(|s| s.code())
                .map_or_else(|| "unknown".into(), |c| c.as_str().to_string()),
            requester,
            accepter,
        });
    }
    Ok(out)
}

async fn describe_subnets(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<Subnet>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_subnets().into_paginator().items().send();
    while let Some(s) = items.next().await {
        let s = s.map_err(|e| failure("ec2:DescribeSubnets", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (s.subnet_id(), s.vpc_id()) else {
            continue;
        };
        out.push(Subnet {
            subnet_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            availability_zone: s.availability_zone().map(str::to_string),
            cidr: net(s.cidr_block()),
        });
    }
    Ok(out)
}

async fn describe_route_tables(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<RouteTable>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_route_tables().into_paginator().items().send();
    while let Some(t) = items.next().await {
        let t = t.map_err(|e| failure("ec2:DescribeRouteTables", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (t.route_table_id(), t.vpc_id()) else {
            continue;
        };
        let live = |a: &&aws_sdk_ec2::types::RouteTableAssociation| {
            a.association_state()
                .and_then(|s| s.state())
                .is_none_or(|s| s.as_str() == "associated")
        };
        let routes = t
            .routes()
            .iter()
            .map(|r| Route {
                destination: net(r.destination_cidr_block())
                    .or_else(|| net(r.destination_ipv6_cidr_block())),
                target: r
                    .gateway_id()
                    .or(r.nat_gateway_id())
                    .or(r.transit_gateway_id())
                    .or(r.vpc_peering_connection_id())
                    .or(r.egress_only_internet_gateway_id())
                    .or(r.network_interface_id())
                    .or(r.instance_id())
                    .or(r.local_gateway_id())
                    .or(r.carrier_gateway_id())
                    .map(str::to_string),
                state: r.state().map(|s| s.as_str().to_string()),
            })
            .collect();
        out.push(RouteTable {
            route_table_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            main: t
                .associations()
                .iter()
                .filter(live)
                .any(|a| a.main().unwrap_or(false)),
            subnet_ids: t
                .associations()
                .iter()
                .filter(live)
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect(),
            routes,
        });
    }
    Ok(out)
}

async fn describe_network_acls(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<NetworkAcl>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_network_acls().into_paginator().items().send();
    while let Some(a) = items.next().await {
        let a = a.map_err(|e| failure("ec2:DescribeNetworkAcls", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (a.network_acl_id(), a.vpc_id()) else {
            continue;
        };
        let entries = a
            .entries()
            .iter()
            .filter_map(|e| {
                let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
                Some(AclEntry {
                    rule_number: e.rule_number()?,
                    egress: e.egress().unwrap_or(false),
                    protocol: e.protocol().unwrap_or("-1").to_string(),
                    allow: e.rule_action().is_some_and(|r| r.as_str() == "allow"),
                    cidr: net(e.cidr_block()).or_else(|| net(e.ipv6_cidr_block())),
                    ports: e.port_range().and_then(|r| {
                        Some(PortRange {
                            from: port(r.from())?,
                            to: port(r.to())?,
                        })
                    }),
                })
            })
            .collect();
        out.push(NetworkAcl {
            network_acl_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            is_default: a.is_default().unwrap_or(false),
            subnet_ids: a
                .associations()
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect(),
            entries,
        });
    }
    Ok(out)
}

async fn describe_security_groups(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<SecurityGroup>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2
        .describe_security_groups()
        .into_paginator()
        .items()
        .send();
    while let Some(g) = items.next().await {
        let g = g.map_err(|e| failure("ec2:DescribeSecurityGroups", &e, Some(at), None))?;
        let Some(id) = g.group_id() else { continue };
        let ingress = g
            .ip_permissions()
            .iter()
            .map(|p| SgRule {
                protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                sources: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| net(r.cidr_ip()))
                    .chain(p.ipv6_ranges().iter().filter_map(|r| net(r.cidr_ipv6())))
                    .collect(),
            })
            .collect();
        out.push(SecurityGroup {
            group_id: id.to_string(),
            group_name: g.group_name().map(str::to_string),
            vpc_id: g.vpc_id().map(str::to_string),
            location: at.clone(),
            ingress,
        });
    }
    Ok(out)
}

async fn describe_addresses(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<ElasticIp>, Failure> {
    let out = ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| failure("ec2:DescribeAddresses", &e, Some(at), None))?;
    Ok(out
        .addresses()
        .iter()
        .filter_map(|a| {
            Some(ElasticIp {
                public_ip: ip(a.public_ip())?,
                allocation_id: a.allocation_id().map(str::to_string),
                instance_id: a.instance_id().map(str::to_string),
                network_interface_id: a.network_interface_id().map(str::to_string),
                private_ip: ip(a.private_ip_address()),
                location: at.clone(),
            })
        })
        .collect())
}

/// Names of the instances' images. A filter, unlike ImageIds, does not fail on
/// images that were deregistered or are no longer shared.
async fn describe_images(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
    instances: &[Instance],
) -> Result<HashMap<String, String>, Failure> {
    let ids: BTreeSet<&str> = instances
        .iter()
        .filter_map(|i| i.image_id.as_deref())
        .collect();
    let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(IMAGE_BATCH) {
        let filter = Filter::builder()
            .name("image-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut items = ec2
            .describe_images()
            .filters(filter)
            .into_paginator()
            .items()
            .send();
        while let Some(img) = items.next().await {
            let img = img.map_err(|e| failure("ec2:DescribeImages", &e, Some(at), None))?;
            if let (Some(id), Some(name)) = (img.image_id(), img.name()) {
                out.insert(id.to_string(), name.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_of_other_protocols() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: a &amp; b</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_element(body, "Message").as_deref(), Some("User: a & b"));
        assert_eq!(xml_element(body, "RequestId"), None);
        assert_eq!(xml_element("<Code></Code>", "Code"), None);
    }

    #[test]
    fn accounts_file_lines() {
        let a = parse_accounts("# estate\n111111111111 prod\n222222222222,staging # eu\n\n111111111111\n333333333333\n").unwrap();
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.account_id.as_str(), a.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("111111111111", Some("prod")),
                ("222222222222", Some("staging")),
                ("333333333333", None)
            ]
        );
        let e = parse_accounts("111111111111\n12345\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("\"12345\""), "{e}");
        assert!(parse_accounts("# nothing\n").is_err());
    }

    #[test]
    fn options_name_what_is_wrong() {
        let ok = AwsDiscoveryOptions::default();
        ok.validate().unwrap();
        let cases: Vec<(AwsDiscoveryOptions, &str)> = vec![
            (
                AwsDiscoveryOptions {
                    role_name: "a b".into(),
                    ..ok.clone()
                },
                "role name",
            ),
            (
                AwsDiscoveryOptions {
                    session_name: "x".into(),
                    ..ok.clone()
                },
                "session name",
            ),
            (
                AwsDiscoveryOptions {
                    external_id: Some("x".into()),
                    ..ok.clone()
                },
                "external ID",
            ),
            (
                AwsDiscoveryOptions {
                    accounts: AccountSource::List(vec![]),
                    ..ok.clone()
                },
                "no accounts",
            ),
            (
                AwsDiscoveryOptions {
                    accounts: AccountSource::List(vec![AccountRef {
                        account_id: "12".into(),
                        name: None,
                    }]),
                    ..ok.clone()
                },
                "account \"12\"",
            ),
            (
                AwsDiscoveryOptions {
                    regions: Some(vec!["US East".into()]),
                    ..ok.clone()
                },
                "region \"US East\"",
            ),
            (
                AwsDiscoveryOptions {
                    concurrency: 0,
                    ..ok.clone()
                },
                "concurrency 0",
            ),
            (
                AwsDiscoveryOptions {
                    page_size: 2,
                    ..ok.clone()
                },
                "page size 2",
            ),
            (
                AwsDiscoveryOptions {
                    max_attempts: 0,
                    ..ok.clone()
                },
                "max attempts 0",
            ),
            (
                AwsDiscoveryOptions {
                    partition: "azure".into(),
                    ..ok.clone()
                },
                "partition",
            ),
        ];
        for (o, want) in cases {
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should name {want}");
        }
    }
}
