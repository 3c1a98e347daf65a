//! Security Hub: BatchImportFindings of a scan's findings in ASFF ([`super::asff`]).
//!
//! - Batches of at most [`MAX_BATCH_FINDINGS`] findings and [`MAX_BATCH_BYTES`];
//!   a finding larger than Security Hub's [`MAX_FINDING_BYTES`] is reported as
//!   failed without being sent.
//! - Throttling (`ThrottlingException`, `TooManyRequestsException`, HTTP 429) and
//!   transient errors are retried with exponential backoff and jitter, at most
//!   [`ImportOptions::max_attempts`] attempts a call.
//! - `FailedFindings` of a batch are sent once more; what fails again is in
//!   [`ImportReport::failed`].
//! - A finding keeps its `Id` across scans, so a re-import updates it (its
//!   `UpdatedAt` is the newer observation) instead of adding a second one.
//! - Findings that an earlier import left ACTIVE for this account (GetFindings on
//!   the ProductArn, the `scanfleet/` GeneratorId prefix and RecordState ACTIVE)
//!   and that are not in this scan are re-imported with RecordState ARCHIVED,
//!   within [`ImportOptions::archive`]'s scope.
//!
//! Account model: see [`AccountModel`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, RecordState, StringFilter,
    StringFilterComparison,
};
use scanfleet_common::aws::ClientSettings;

use crate::export::asff::{self, AsffTarget, GENERATOR_PREFIX};
use crate::export::retry::{retrying, with_backoff};
use crate::export::{Export, rfc3339_ms};
use crate::findings::Finding;

/// BatchImportFindings takes at most 100 findings a call...
pub const MAX_BATCH_FINDINGS: usize = 100;
/// ...and a request of at most 6 MB (kept a little under, for the envelope).
pub const MAX_BATCH_BYTES: usize = 6_000_000 - 16 * 1024;
/// Security Hub refuses a finding larger than 240 KB.
pub const MAX_FINDING_BYTES: usize = 240 * 1024;
/// Attempts of one call when [`ImportOptions::max_attempts`] is 0.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// Which Security Hub receives the findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccountModel {
    /// Every finding goes to the Security Hub of the account the coordinator runs
    /// as (the organization's delegated Security Hub administrator): AwsAccountId
    /// and ProductArn are that account's, as BatchImportFindings with the default
    /// product requires; each resource keeps its own account in its ARN and in
    /// `ProductFields["scanfleet/ResourceAccountId"]`. One set of credentials, one
    /// place to look.
    #[default]
    Central,
    /// Each member account's findings go to that account's own Security Hub,
    /// through the role discovery assumes there
    /// (`arn:aws:iam::<account>:role/<role_name>`, which then needs
    /// `securityhub:BatchImportFindings` and `securityhub:GetFindings`); with a
    /// delegated administrator they are aggregated there as member findings.
    /// Findings of assets without an account go to the caller's Security Hub.
    PerMember {
        role_name: String,
        external_id: Option<String>,
    },
}

/// Which earlier findings an import may archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArchiveScope {
    /// Findings of assets this scan probed (a port that closed on a scanned
    /// asset); assets outside this scan keep their findings.
    #[default]
    ScannedAssets,
    /// Every earlier scanfleet finding of the account that this scan does not
    /// have (a scan of the whole estate: instances that are gone are archived too).
    All,
    /// Archive nothing.
    Nothing,
}

/// Where and how findings are imported.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// AWS region of the Security Hub to import into (default: the AWS
    /// configuration's, else us-east-1).
    pub region: Option<String>,
    /// Endpoint override (moto in tests), as for every AWS client of scanfleet.
    pub endpoint_url: Option<String>,
    /// The importing account; `None` asks STS (GetCallerIdentity).
    pub account_id: Option<String>,
    pub accounts: AccountModel,
    pub archive: ArchiveScope,
    /// Attempts of each call under throttling or transient errors (0: [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// The time archived findings are updated at (unix ms; default: now).
    pub now_unix_ms: Option<u64>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Findings Security Hub accepted (created or updated).
    pub imported: usize,
    /// Earlier findings set to RecordState ARCHIVED.
    pub archived: usize,
    /// Findings refused twice (or too large to send): (finding id, why).
    pub failed: Vec<(String, String)>,
    /// BatchImportFindings calls that succeeded, retries of failed findings included.
    pub batches: usize,
    /// Calls tried again after throttling or a transient error.
    pub retries: usize,
}

/// Import `ex`'s findings into Security Hub.
///
/// # Errors
/// When Security Hub cannot be reached, refuses a call for good (access denied,
/// not subscribed), or keeps throttling past the attempts; what was imported
/// before the error stays imported.
pub async fn import(opts: &ImportOptions, ex: &Export<'_>) -> anyhow::Result<ImportReport> {
    let base = scanfleet_common::aws::load(opts.region.as_deref()).await;
    import_with(&base, opts, ex).await
}

/// [`import`] with an AWS configuration the caller loaded (its credentials; the
/// options' region and endpoint apply on top).
///
/// # Errors
/// As [`import`].
pub async fn import_with(
    base: &SdkConfig,
    opts: &ImportOptions,
    ex: &Export<'_>,
) -> anyhow::Result<ImportReport> {
    let sdk = scanfleet_common::aws::configure(
        base,
        &ClientSettings {
            region: opts.region.clone(),
            fallback_region: Some(asff::DEFAULT_REGION.into()),
            endpoint_url: opts.endpoint_url.clone(),
            // Retries are ours (bounded, counted, throttling-aware): one SDK attempt.
            max_attempts: 1,
            attempt_timeout: Duration::from_secs(30),
        },
    );
    let region = sdk
        .region()
        .map_or_else(|| asff::DEFAULT_REGION.to_string(), |r| r.to_string());
    let attempts = if opts.max_attempts == 0 {
        DEFAULT_MAX_ATTEMPTS
    } else {
        opts.max_attempts
    };
    let caller = match &opts.account_id {
        Some(a) => a.clone(),
        None => caller_account(&sdk, attempts).await?,
    };
    let now = opts.now_unix_ms.unwrap_or_else(now_ms);
    let scanned: BTreeSet<&str> = ex
        .results
        .iter()
        .map(|r| r.asset_id.as_str())
        .chain(ex.findings.iter().map(|f| f.asset_id.as_str()))
        .chain(ex.record.skipped.iter().map(|s| s.asset_id.as_str()))
        .collect();

    // Which account's hub gets which findings.
    let mut groups: BTreeMap<String, Vec<&Finding>> = BTreeMap::new();
    match &opts.accounts {
        AccountModel::Central => {
            groups.insert(caller.clone(), ex.findings.iter().collect());
        }
        AccountModel::PerMember { .. } => {
            groups.entry(caller.clone()).or_default();
            for f in ex.findings {
                let acct = f.account_id.clone().unwrap_or_else(|| caller.clone());
                groups.entry(acct).or_default().push(f);
            }
        }
    }

    let mut report = ImportReport::default();
    for (account, findings) in groups {
        let hub_sdk = match &opts.accounts {
            AccountModel::PerMember {
                role_name,
                external_id,
            } if account != caller => {
                assume(
                    &sdk,
                    &region,
                    &account,
                    role_name,
                    external_id.as_deref(),
                    attempts,
                )
                .await?
            }
            _ => sdk.clone(),
        };
        let client = aws_sdk_securityhub::Client::new(&hub_sdk);
        let hub = Hub {
            client: &client,
            account: &account,
            region: &region,
            attempts,
        };
        hub.import_group(&findings, opts.archive, &scanned, now, &mut report)
            .await?;
    }
    Ok(report)
}

/// One account's Security Hub in one region.
struct Hub<'a> {
    client: &'a aws_sdk_securityhub::Client,
    account: &'a str,
    region: &'a str,
    attempts: u32,
}

impl Hub<'_> {
    async fn import_group(
        &self,
        findings: &[&Finding],
        archive: ArchiveScope,
        scanned: &BTreeSet<&str>,
        now: u64,
        report: &mut ImportReport,
    ) -> anyhow::Result<()> {
        let target = AsffTarget {
            account_id: Some(self.account.to_string()),
            region: Some(self.region.to_string()),
            ..AsffTarget::default()
        };
        let built: Vec<AwsSecurityFinding> = findings
            .iter()
            .map(|f| asff::security_hub_finding(&target, f))
            .collect();
        let imported = self.send(built, report).await?;
        report.imported += imported;

        if archive == ArchiveScope::Nothing {
            return Ok(());
        }
        let current: BTreeSet<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        let stale: Vec<AwsSecurityFinding> = self
            .active()
            .await?
            .into_iter()
            .filter(|f| f.id.as_deref().is_some_and(|id| !current.contains(id)))
            .filter(|f| match archive {
                ArchiveScope::All => true,
                _ => f
                    .product_fields
                    .as_ref()
                    .and_then(|p| p.get("scanfleet/AssetId"))
                    .is_some_and(|a| scanned.contains(a.as_str())),
            })
            .map(|f| archived(f, now))
            .collect();
        let archived = self.send(stale, report).await?;
        report.archived += archived;
        Ok(())
    }

    /// Send findings in batches; returns how many Security Hub accepted. Failed
    /// findings are sent once more, then reported.
    async fn send(
        &self,
        findings: Vec<AwsSecurityFinding>,
        report: &mut ImportReport,
    ) -> anyhow::Result<usize> {
        let mut sizes = Vec::with_capacity(findings.len());
        let mut sendable = Vec::with_capacity(findings.len());
        for f in findings {
            let size = serde_json::to_vec(&asff::to_json(&f)).map_or(0, |v| v.len());
            if size > MAX_FINDING_BYTES {
                report.failed.push((
                    f.id.clone().unwrap_or_default(),
                    format!(
                        "FindingTooLarge: {size} bytes, Security Hub takes at most {MAX_FINDING_BYTES}"
                    ),
                ));
            } else {
                sizes.push(size);
                sendable.push(f);
            }
        }
        let mut ok = 0;
        let mut retry_once = Vec::new();
        for range in batches(&sizes, MAX_BATCH_FINDINGS, MAX_BATCH_BYTES) {
            let batch = &sendable[range];
            let failed = self.batch_import(batch, report).await?;
            ok += batch.len() - failed.len();
            for (id, _) in failed {
                if let Some(f) = batch.iter().find(|f| f.id.as_deref() == Some(id.as_str())) {
                    retry_once.push(f.clone());
                }
            }
        }
        if !retry_once.is_empty() {
            let sizes: Vec<usize> = retry_once
                .iter()
                .map(|f| serde_json::to_vec(&asff::to_json(f)).map_or(0, |v| v.len()))
                .collect();
            for range in batches(&sizes, MAX_BATCH_FINDINGS, MAX_BATCH_BYTES) {
                let batch = &retry_once[range];
                let failed = self.batch_import(batch, report).await?;
                ok += batch.len() - failed.len();
                report.failed.extend(failed);
            }
        }
        Ok(ok)
    }

    /// One BatchImportFindings call (retried under throttling); the findings it
    /// refused, with their error.
    async fn batch_import(
        &self,
        batch: &[AwsSecurityFinding],
        report: &mut ImportReport,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let (out, retries) = with_backoff(self.attempts, || {
            self.client
                .batch_import_findings()
                .set_findings(Some(batch.to_vec()))
                .send()
        })
        .await;
        report.retries += retries;
        let out = out.map_err(|e| {
            let info = scanfleet_common::aws::inspect(&e);
            anyhow::anyhow!(
                "Security Hub BatchImportFindings in {} for account {}: {}{}",
                self.region,
                self.account,
                info.code.map(|c| format!("{c}: ")).unwrap_or_default(),
                info.message
            )
        })?;
        report.batches += 1;
        Ok(out
            .failed_findings()
            .iter()
            .map(|e| {
                (
                    e.id().unwrap_or_default().to_string(),
                    format!(
                        "{}: {}",
                        e.error_code().unwrap_or("Failed"),
                        e.error_message().unwrap_or("")
                    ),
                )
            })
            .collect())
    }

    /// scanfleet's ACTIVE findings in this hub (this ProductArn and account, the
    /// `scanfleet/` generators). The same filter is applied to the answer, for
    /// emulators that ignore filters.
    async fn active(&self) -> anyhow::Result<Vec<AwsSecurityFinding>> {
        let arn = asff::product_arn(self.region, self.account);
        let eq = |v: &str| {
            StringFilter::builder()
                .value(v)
                .comparison(StringFilterComparison::Equals)
                .build()
        };
        let filters = AwsSecurityFindingFilters::builder()
            .product_arn(eq(&arn))
            .aws_account_id(eq(self.account))
            .record_state(eq(RecordState::Active.as_str()))
            .generator_id(
                StringFilter::builder()
                    .value(GENERATOR_PREFIX)
                    .comparison(StringFilterComparison::Prefix)
                    .build(),
            )
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: 10,000 pages of 100 is a million findings.
        for _ in 0..10_000 {
            let (page, _) = with_backoff(self.attempts, || {
                self.client
                    .get_findings()
                    .filters(filters.clone())
                    .max_results(100)
                    .set_next_token(token.clone())
                    .send()
            })
            .await;
            let page = page.map_err(|e| {
                let info = scanfleet_common::aws::inspect(&e);
                anyhow::anyhow!(
                    "Security Hub GetFindings in {} for account {}: {}{}",
                    self.region,
                    self.account,
                    info.code.map(|c| format!("{c}: ")).unwrap_or_default(),
                    info.message
                )
            })?;
            out.extend(page.findings().iter().cloned());
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.retain(|f| {
            f.product_arn.as_deref() == Some(arn.as_str())
                && f.aws_account_id.as_deref() == Some(self.account)
                && f.generator_id
                    .as_deref()
                    .is_some_and(|g| g.starts_with(GENERATOR_PREFIX))
                && f.record_state
                    .as_ref()
                    .is_none_or(|s| *s == RecordState::Active)
        });
        Ok(out)
    }
}

/// An earlier finding as the import that archives it: the provider's fields of
/// what Security Hub holds, RecordState ARCHIVED, UpdatedAt now.
fn archived(held: AwsSecurityFinding, now: u64) -> AwsSecurityFinding {
    let mut f = AwsSecurityFinding::builder().build();
    f.schema_version = held.schema_version;
    f.id = held.id;
    f.product_arn = held.product_arn;
    f.product_name = held.product_name;
    f.company_name = held.company_name;
    f.generator_id = held.generator_id;
    f.aws_account_id = held.aws_account_id;
    f.types = held.types;
    f.created_at = held.created_at;
    f.first_observed_at = held.first_observed_at;
    f.last_observed_at = held.last_observed_at;
    f.severity = held.severity;
    f.finding_provider_fields = held.finding_provider_fields;
    f.title = held.title;
    f.description = held.description;
    f.resources = held.resources;
    f.network = held.network;
    f.network_path = held.network_path;
    f.product_fields = held.product_fields;
    f.updated_at = Some(rfc3339_ms(now));
    f.record_state = Some(RecordState::Archived);
    f
}

/// Consecutive ranges of items whose count is at most `max_count` and whose
/// sizes add up to at most `max_bytes` (an item larger than `max_bytes` alone).
pub fn batches(sizes: &[usize], max_count: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &s) in sizes.iter().enumerate() {
        // A comma between findings.
        let add = s + 1;
        if i > start && (i - start >= max_count.max(1) || bytes + add > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += add;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

async fn caller_account(sdk: &SdkConfig, attempts: u32) -> anyhow::Result<String> {
    let sts = aws_sdk_sts::Client::new(sdk);
    let (out, _) = retrying(
        attempts,
        &mut || sts.get_caller_identity().send(),
        scanfleet_common::aws::classify,
    )
    .await;
    let out = out.map_err(|e| {
        anyhow::anyhow!(
            "STS GetCallerIdentity (the account to import findings into): {}",
            scanfleet_common::aws::inspect(&e).message
        )
    })?;
    out.account()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("STS GetCallerIdentity answered without an account"))
}

/// The member account's credentials through the discovery role.
async fn assume(
    sdk: &SdkConfig,
    region: &str,
    account: &str,
    role_name: &str,
    external_id: Option<&str>,
    attempts: u32,
) -> anyhow::Result<SdkConfig> {
    use aws_sdk_securityhub::config::{Credentials, SharedCredentialsProvider};
    let arn = format!(
        "arn:{}:iam::{account}:role/{role_name}",
        asff::partition_of(region)
    );
    let sts = aws_sdk_sts::Client::new(sdk);
    let (out, _) = retrying(
        attempts,
        &mut || {
            sts.assume_role()
                .role_arn(&arn)
                .role_session_name("scanfleet-securityhub")
                .set_external_id(external_id.map(str::to_string))
                .send()
        },
        scanfleet_common::aws::classify,
    )
    .await;
    let out = out.map_err(|e| {
        anyhow::anyhow!(
            "STS AssumeRole {arn} (per-member Security Hub import): {}",
            scanfleet_common::aws::inspect(&e).message
        )
    })?;
    let c = out
        .credentials()
        .ok_or_else(|| anyhow::anyhow!("STS AssumeRole {arn} answered without credentials"))?;
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        SystemTime::try_from(*c.expiration()).ok(),
        "scanfleet-securityhub",
    );
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_bytes() {
        assert!(batches(&[], 100, 1000).is_empty());
        let r = batches(&[10; 250], 100, 1_000_000);
        assert_eq!(r, vec![0..100, 100..200, 200..250]);
        // 4 items of 300 (+1 each) under 700 bytes: two per batch.
        assert_eq!(batches(&[300; 4], 100, 700), vec![0..2, 2..4]);
        // An item larger than the limit goes alone.
        assert_eq!(batches(&[10, 5000, 10], 100, 1000), vec![0..1, 1..2, 2..3]);
    }
}
