//! Which accounts and regions to walk, and the credentials for each account:
//! an accounts file, Organizations ListAccounts or the caller's own account;
//! STS AssumeRole per account, cached until near expiry; DescribeRegions.

use std::path::Path;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};

use super::AwsDiscoverer;
use super::calls::{CountCalls, failure};
use super::options::{AccountRef, AccountSource, is_account_id};
use crate::discovery::{AccountReport, AccountStatus, DiscoveryError, Failure};

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
/// [`DiscoveryError::AccountsFile`] when it cannot be read,
/// [`DiscoveryError::AccountsFileInvalid`] naming the path and the line that is
/// wrong.
pub fn load_accounts(path: &Path) -> Result<Vec<AccountRef>, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::AccountsFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_accounts(&text).map_err(|e| DiscoveryError::AccountsFileInvalid {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

impl AwsDiscoverer {
    /// The accounts to discover, with those not to discover already decided.
    pub(super) async fn accounts(
        &self,
    ) -> Result<(Vec<AccountRef>, Vec<AccountReport>), DiscoveryError> {
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
    pub(super) async fn session(&self, account_id: &str) -> Result<SdkConfig, Failure> {
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

    pub(super) async fn regions(
        &self,
        sdk: &SdkConfig,
        account_id: &str,
    ) -> Result<Vec<String>, Failure> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_wrong_accounts_file_names_itself_and_keeps_the_line_as_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.txt");
        std::fs::write(&path, "12345\n").unwrap();
        let e = load_accounts(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "accounts file {}: accounts line 1: \"12345\" is not a 12-digit account id",
                path.display()
            )
        );
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        assert_eq!(
            cause.as_deref(),
            Some("accounts line 1: \"12345\" is not a 12-digit account id")
        );
    }
}
