//! What to discover and how: the accounts, the role, the regions, concurrency,
//! retries and page sizes, each checked with a message naming what is wrong.

use std::time::Duration;

use super::DiscoveryError;

/// Role assumed in every account unless told otherwise (the terraform module's
/// per-account read-only role).
pub const DEFAULT_ROLE_NAME: &str = "scanfleet-discovery";
/// Session name of the assumed roles: shows up in each account's CloudTrail.
pub const DEFAULT_SESSION_NAME: &str = "scanfleet-discovery";
/// Region of the global calls (Organizations, STS, DescribeRegions) when the
/// AWS configuration names none.
pub const DEFAULT_HOME_REGION: &str = "us-east-1";
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

pub(super) fn is_account_id(s: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
