//! EventBridge: PutEvents for findings at or above a severity, one event per
//! finding (Source `scanfleet`, DetailType `scanfleet finding`, Detail the
//! finding as the `jsonl` export writes it), at most [`MAX_BATCH_ENTRIES`] entries
//! and [`MAX_BATCH_BYTES`] a call. Throttled calls are retried with backoff;
//! entries that PutEvents refuses (FailedEntryCount) are sent once more, and
//! what fails again is an error naming the findings.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use scanfleet_common::aws::ClientSettings;

use crate::export::Export;
use crate::export::retry::with_backoff;
use crate::findings::{Finding, Severity};

/// The event's Source.
pub const SOURCE: &str = "scanfleet";
/// The event's DetailType.
pub const DETAIL_TYPE: &str = "scanfleet finding";
/// PutEvents takes at most 10 entries...
pub const MAX_BATCH_ENTRIES: usize = 10;
/// ...of at most 256 KB together (as EventBridge counts: Source, DetailType,
/// Detail, Resources and the bus name).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Attempts of one call when [`EventOptions::max_attempts`] is 0.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// Where events go.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Event bus name or ARN (default: `default`).
    pub bus: Option<String>,
    pub min_severity: Severity,
    /// Attempts of each call under throttling or transient errors (0: [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: u32,
}

/// The findings [`put`] sends: at or above `min`, suppressed ones left out.
pub fn selected<'a>(ex: &'a Export<'_>, min: Severity) -> Vec<&'a Finding> {
    ex.findings
        .iter()
        .filter(|f| f.severity >= min && f.suppressed.is_none())
        .collect()
}

/// One finding as a PutEvents entry, and its size as EventBridge counts it.
fn entry(f: &Finding, bus: &str) -> anyhow::Result<(PutEventsRequestEntry, usize)> {
    let detail = serde_json::to_string(f)?;
    let resource = match (&f.region, &f.account_id) {
        (Some(r), Some(a)) if f.asset_id.starts_with("i-") => Some(format!(
            "arn:{}:ec2:{r}:{a}:instance/{}",
            crate::export::asff::partition_of(r),
            f.asset_id
        )),
        _ => None,
    };
    let size = SOURCE.len()
        + DETAIL_TYPE.len()
        + detail.len()
        + bus.len()
        + resource.as_ref().map_or(0, String::len);
    let e = PutEventsRequestEntry::builder()
        .source(SOURCE)
        .detail_type(DETAIL_TYPE)
        .detail(detail)
        .event_bus_name(bus)
        .set_resources(resource.map(|r| vec![r]))
        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
            i64::try_from(f.last_observed_unix_ms).unwrap_or(i64::MAX),
        ))
        .build();
    Ok((e, size))
}

/// Send one event per finding at or above `opts.min_severity` (suppressed
/// findings are not sent); returns how many were sent.
///
/// # Errors
/// When EventBridge cannot be reached, refuses the call, keeps throttling past
/// the attempts, or refuses an event twice (the error names the findings);
/// events sent before the error stay sent.
pub async fn put(opts: &EventOptions, ex: &Export<'_>) -> anyhow::Result<usize> {
    let base = scanfleet_common::aws::load(opts.region.as_deref()).await;
    put_with(&base, opts, ex).await
}

/// [`put`] with an AWS configuration the caller loaded (its credentials; the
/// options' region and endpoint apply on top).
///
/// # Errors
/// As [`put`].
pub async fn put_with(
    base: &aws_config::SdkConfig,
    opts: &EventOptions,
    ex: &Export<'_>,
) -> anyhow::Result<usize> {
    let bus = opts.bus.clone().unwrap_or_else(|| "default".into());
    let mut entries = Vec::new();
    for f in selected(ex, opts.min_severity) {
        let (e, size) = entry(f, &bus)?;
        if size > MAX_BATCH_BYTES {
            anyhow::bail!(
                "finding {} is {size} bytes as an event; EventBridge takes at most {MAX_BATCH_BYTES}",
                f.id
            );
        }
        entries.push((f.id.as_str(), e, size));
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let sdk = scanfleet_common::aws::configure(
        base,
        &ClientSettings {
            region: opts.region.clone(),
            fallback_region: Some(crate::export::asff::DEFAULT_REGION.into()),
            endpoint_url: opts.endpoint_url.clone(),
            max_attempts: 1,
            attempt_timeout: Duration::from_secs(30),
        },
    );
    let client = aws_sdk_eventbridge::Client::new(&sdk);
    let attempts = if opts.max_attempts == 0 {
        DEFAULT_MAX_ATTEMPTS
    } else {
        opts.max_attempts
    };

    let sizes: Vec<usize> = entries.iter().map(|(_, _, s)| *s).collect();
    let mut sent = 0;
    let mut again = Vec::new();
    for range in crate::export::securityhub::batches(&sizes, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES) {
        let batch = &entries[range];
        let refused = send(&client, attempts, batch).await?;
        sent += batch.len() - refused.len();
        again.extend(refused.into_iter().map(|(i, _)| batch[i].clone()));
    }
    let mut failed = Vec::new();
    if !again.is_empty() {
        let sizes: Vec<usize> = again.iter().map(|(_, _, s)| *s).collect();
        for range in crate::export::securityhub::batches(&sizes, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES)
        {
            let batch = &again[range];
            let refused = send(&client, attempts, batch).await?;
            sent += batch.len() - refused.len();
            failed.extend(
                refused
                    .into_iter()
                    .map(|(i, why)| format!("{}: {why}", batch[i].0)),
            );
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "EventBridge refused {} of {} events twice ({sent} sent): {}",
            failed.len(),
            entries.len(),
            failed.join("; ")
        );
    }
    Ok(sent)
}

/// One PutEvents call; the positions in `batch` of the entries it refused, with why.
async fn send(
    client: &aws_sdk_eventbridge::Client,
    attempts: u32,
    batch: &[(&str, PutEventsRequestEntry, usize)],
) -> anyhow::Result<Vec<(usize, String)>> {
    let (out, _) = with_backoff(attempts, || {
        client
            .put_events()
            .set_entries(Some(batch.iter().map(|(_, e, _)| e.clone()).collect()))
            .send()
    })
    .await;
    let out = out.map_err(|e| {
        let info = scanfleet_common::aws::inspect(&e);
        anyhow::anyhow!(
            "EventBridge PutEvents: {}{}",
            info.code.map(|c| format!("{c}: ")).unwrap_or_default(),
            info.message
        )
    })?;
    if out.failed_entry_count() == 0 {
        return Ok(Vec::new());
    }
    Ok(out
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.error_code().is_some())
        .map(|(i, r)| {
            (
                i,
                format!(
                    "{} {}",
                    r.error_code().unwrap_or(""),
                    r.error_message().unwrap_or("")
                ),
            )
        })
        .collect())
}
