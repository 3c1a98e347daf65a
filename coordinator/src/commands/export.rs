//! `scanfleet export SCAN_ID --to FORMAT`, and the end of every scan: record the
//! history, then write the `--export FORMAT=FILE` files (the same bytes as a
//! later `scanfleet export`).

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use scanfleet_common::ProbeResult;
use scanfleet_common::config::Sources;
use scanfleet_common::envelope::now_unix_ms;

use crate::cli::ExportArgs;
use crate::config::ScanSettings;
use crate::config::history as hconfig;
use crate::error::CliError;
use crate::export::{self, Export, Format};
use crate::findings::{self, Judge, ScanRecord};
use crate::history::{self, History, HistoryError};
use crate::report::Output;

/// The exit status of a history error: unknown scans and unreadable history are
/// bad input (exit 2), a store that cannot be reached is a runtime failure.
pub fn history_error(e: HistoryError) -> CliError {
    match e {
        HistoryError::UnknownScan(m) | HistoryError::Corrupt(m) => CliError::Input(m),
        HistoryError::Io(m) => CliError::Runtime(anyhow::anyhow!(m)),
    }
}

/// Record a finished scan in its history and write its `--export` files.
///
/// # Errors
/// [`CliError::Runtime`] when the history or an export cannot be written.
pub async fn finish_scan(
    settings: &ScanSettings,
    record: &ScanRecord,
    results: &[ProbeResult],
) -> Result<(), CliError> {
    let mut h = History::open(&settings.history)
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("recording the scan's history: {e}")))?;
    let ordered = history::storage_order(results);
    let ids = findings::observed_ids(record, &settings.assets, &ordered).map_err(history_error)?;
    let at = record.finished_unix_ms.unwrap_or(record.started_unix_ms);
    h.record(record, &settings.assets, &ordered, &ids, at)
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("recording the scan's history: {e}")))?;
    eprintln!(
        "scanfleet: scan {} recorded in {}; `scanfleet findings {}` ranks its findings",
        record.scan_id,
        h.describe(),
        record.scan_id
    );
    if settings.exports.is_empty() {
        return Ok(());
    }
    let now = now_unix_ms();
    let (record, all, results) = findings::collect(&mut h, &record.scan_id, &settings.judge, now)
        .await
        .map_err(history_error)?;
    let ex = Export {
        record: &record,
        findings: &all,
        results: &results,
    };
    for e in &settings.exports {
        write_export(e.format, &ex, &e.output)?;
        if let Some(p) = e.output.path() {
            eprintln!("scanfleet: wrote {} export {}", e.format, p.display());
        }
    }
    Ok(())
}

fn write_export(format: Format, ex: &Export<'_>, output: &Output) -> Result<(), CliError> {
    match output.path() {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("creating export file {}", path.display()))?;
            let mut w = BufWriter::new(f);
            export::write(format, ex, &mut w)
                .and_then(|()| w.flush().map_err(Into::into))
                .with_context(|| format!("writing the {format} export {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            export::write(format, ex, &mut w)
                .and_then(|()| w.flush().map_err(Into::into))
                .with_context(|| format!("writing the {format} export to stdout"))?;
        }
    }
    Ok(())
}

/// Say the suppressions that no longer apply.
pub fn say_expired(judge: &Judge, now: u64) {
    for s in judge.suppressions.expired(now) {
        let when = s
            .expires_unix_ms
            .map(|ms| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                )
                .to_string()
            })
            .unwrap_or_default();
        eprintln!(
            "scanfleet: warning: {}: suppression {} expired at {when}; the findings it matched are no longer suppressed",
            scanfleet_common::text::escape(judge.suppressions.origin(), 300),
            scanfleet_common::text::escape(&s.id, 100)
        );
    }
}

/// `scanfleet export SCAN_ID ...`.
///
/// # Errors
/// Bad flags, an unknown scan or an unreadable history are bad input (exit 2);
/// writing, Security Hub and EventBridge trouble are runtime failures.
pub async fn export(args: ExportArgs, src: &Sources) -> Result<(), CliError> {
    super::status::check_scan_id(&args.scan_id)?;
    if args.to.is_none() && !args.import && args.eventbridge_min_severity.is_none() {
        return Err(CliError::Input(
            "export: nothing to do: give --to FORMAT (asff, inspector, nmap-xml, html, jsonl, csv), --import or --eventbridge-min-severity S".into(),
        ));
    }
    if args.output.is_some() && args.to.is_none() {
        return Err(CliError::Input("-o FILE needs --to FORMAT".into()));
    }
    let output = Output::check(args.output.as_deref())?;
    let judge = hconfig::judge(&args.judge)?;
    let loc = hconfig::location(&args.store, &args.redis, src)?;
    let now = now_unix_ms();
    say_expired(&judge, now);
    let mut h = History::open(&loc).await.map_err(history_error)?;
    let (record, all, results) = findings::collect(&mut h, &args.scan_id, &judge, now)
        .await
        .map_err(history_error)?;
    let ex = Export {
        record: &record,
        findings: &all,
        results: &results,
    };
    if let Some(format) = args.to {
        write_export(format, &ex, &output)?;
    }
    let endpoint_url = args
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if args.import {
        let opts = export::securityhub::ImportOptions {
            region: args.region.clone(),
            endpoint_url: endpoint_url.clone(),
            accounts: match &args.per_member_role {
                Some(role) => export::securityhub::AccountModel::PerMember {
                    role_name: role.clone(),
                    external_id: args.external_id.clone(),
                },
                None => export::securityhub::AccountModel::Central,
            },
            archive: match args.archive.as_str() {
                "all" => export::securityhub::ArchiveScope::All,
                "none" => export::securityhub::ArchiveScope::Nothing,
                _ => export::securityhub::ArchiveScope::ScannedAssets,
            },
            ..Default::default()
        };
        let rep = export::securityhub::import(&opts, &ex)
            .await
            .context("importing into Security Hub")?;
        eprintln!(
            "scanfleet: Security Hub: {} imported, {} archived, {} failed",
            rep.imported,
            rep.archived,
            rep.failed.len()
        );
        for (id, why) in &rep.failed {
            eprintln!("scanfleet: Security Hub refused {id}: {why}");
        }
        if !rep.failed.is_empty() {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "Security Hub refused {} finding(s)",
                rep.failed.len()
            )));
        }
    }
    if let Some(min) = args.eventbridge_min_severity {
        let opts = export::eventbridge::EventOptions {
            region: args.region.clone(),
            endpoint_url,
            bus: args.event_bus.clone(),
            min_severity: min,
            max_attempts: 0,
        };
        let n = export::eventbridge::put(&opts, &ex)
            .await
            .context("sending findings to EventBridge")?;
        eprintln!("scanfleet: EventBridge: {n} event(s) sent (severity {min} and above)");
    }
    Ok(())
}
