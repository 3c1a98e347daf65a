//! The findings stage: a scan's results and its assets become risk-ranked
//! findings (rules file, context, suppressions), kept across scans in the history
//! so that first/last observed times and diffs work. [`model`] is the contract the
//! exporters ([`crate::export`]) read.
//!
//! - [`rules`]: the severity rules (`data/findings-rules.toml`, `--rules FILE`).
//! - [`evaluate`]: identity, base score, context adjustments with reasons,
//!   latent exposures.
//! - [`suppress`]: suppressions (`--suppressions FILE`).
//! - [`diff`]: new, gone and changed ports between two scans.
//! - [`output`]: the `findings` command's table, JSON lines, CSV and JSON.
//!
//! [`for_each`] computes a recorded scan's findings one asset at a time from the
//! [history](crate::history), so a scan of a million results is never held whole.

pub mod diff;
pub mod evaluate;
pub mod model;
pub mod output;
pub mod rules;
pub mod suppress;

use std::collections::{BTreeMap, HashMap, HashSet};

use scanfleet_common::{Asset, PortSpec, PortState, ProbeResult};

pub use model::{Finding, FindingKind, PathStep, Reason, ScanRecord, Severity, Suppressed};
pub use rules::RuleSet;
pub use suppress::Suppressions;

use crate::history::{History, HistoryError};

/// How findings are judged: the rules and the suppressions.
#[derive(Debug, Clone)]
pub struct Judge {
    pub rules: RuleSet,
    pub suppressions: Suppressions,
}

impl Judge {
    /// The built-in rules, no suppressions.
    ///
    /// # Errors
    /// Only if the shipped rules are broken (a unit test guards them).
    pub fn builtin() -> Result<Judge, rules::RulesError> {
        Ok(Judge {
            rules: RuleSet::builtin()?,
            suppressions: Suppressions::default(),
        })
    }
}

/// The port list of a record (`ScanRecord::ports` is the spec's display form).
///
/// # Errors
/// [`HistoryError::Corrupt`] when the record's ports do not parse.
pub fn record_ports(record: &ScanRecord) -> Result<PortSpec, HistoryError> {
    if record.ports.trim().is_empty() {
        // A UDP-only scan probed no TCP port.
        return Ok(PortSpec::default());
    }
    PortSpec::parse(&record.ports).map_err(|e| {
        HistoryError::Corrupt(format!(
            "scan {}: its recorded port list does not parse: {e}",
            record.scan_id
        ))
    })
}

/// The finding ids a scan observed (open ports and latent exposures), for the
/// history's first/last observed index. `results` in storage order.
pub fn observed_ids(
    record: &ScanRecord,
    assets: &[Asset],
    results: &[&ProbeResult],
) -> Result<Vec<String>, HistoryError> {
    let ports = record_ports(record)?;
    let by_id: HashMap<&str, &Asset> = assets.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let mut i = 0;
    while i < results.len() {
        let asset_id = &results[i].asset_id;
        let mut j = i;
        while j < results.len() && &results[j].asset_id == asset_id {
            j += 1;
        }
        let group: Vec<ProbeResult> = results[i..j].iter().map(|r| (*r).clone()).collect();
        seen.insert(asset_id.as_str());
        let asset = by_id.get(asset_id.as_str()).copied();
        for o in evaluate::observations(&ports, &record.skipped, asset, &group) {
            ids.push(o.id);
        }
        i = j;
    }
    for a in assets.iter().filter(|a| !seen.contains(a.id.as_str())) {
        for o in evaluate::observations(&ports, &record.skipped, Some(a), &[]) {
            ids.push(o.id);
        }
    }
    Ok(ids)
}

/// Compute the findings of a recorded scan one asset at a time, calling `sink`
/// with each asset's findings (in address and port order). Returns the record.
///
/// # Errors
/// The history's errors; or what `sink` returns, as [`HistoryError::Io`].
pub async fn for_each(
    history: &mut History,
    scan_id: &str,
    judge: &Judge,
    now_unix_ms: u64,
    mut sink: impl FnMut(Vec<Finding>) -> anyhow::Result<()>,
) -> Result<ScanRecord, HistoryError> {
    let record = history.record_of(scan_id).await?;
    let ports = record_ports(&record)?;
    let assets = history.assets(scan_id).await?;
    let by_id: HashMap<&str, &Asset> = assets.iter().map(|a| (a.id.as_str(), a)).collect();
    let ctx = evaluate::Context {
        scan_id,
        rules: &judge.rules,
        suppressions: &judge.suppressions,
        ports: &ports,
        skipped: &record.skipped,
        now_unix_ms,
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut groups = history.results(scan_id).await?;
    let sink_err = |e: anyhow::Error| HistoryError::Io(format!("{e:#}"));
    loop {
        let Some(group) = groups.next_group().await? else {
            break;
        };
        let asset = by_id.get(group[0].asset_id.as_str()).copied();
        seen.insert(group[0].asset_id.clone());
        let found = score_group(history, &ctx, asset, &group).await?;
        sink(found).map_err(sink_err)?;
    }
    // Assets with no result at all may still have latent exposures.
    for a in assets.iter().filter(|a| !seen.contains(&a.id)) {
        let found = score_group(history, &ctx, Some(a), &[]).await?;
        if !found.is_empty() {
            sink(found).map_err(sink_err)?;
        }
    }
    Ok(record)
}

async fn score_group(
    history: &mut History,
    ctx: &evaluate::Context<'_>,
    asset: Option<&Asset>,
    group: &[ProbeResult],
) -> Result<Vec<Finding>, HistoryError> {
    let obs = evaluate::observations(ctx.ports, ctx.skipped, asset, group);
    let ids: Vec<&str> = obs.iter().map(|o| o.id.as_str()).collect();
    let seen = history.observed(ctx.scan_id, &ids).await?;
    let at = ctx.now_unix_ms;
    Ok(obs
        .iter()
        .map(|o| evaluate::finding(ctx, asset, o, seen.get(&o.id).copied().unwrap_or((at, at))))
        .collect())
}

/// Every finding of a recorded scan, highest score first, with the scan's record
/// and results (what an export takes).
///
/// # Errors
/// As [`for_each`].
pub async fn collect(
    history: &mut History,
    scan_id: &str,
    judge: &Judge,
    now_unix_ms: u64,
) -> Result<(ScanRecord, Vec<Finding>, Vec<ProbeResult>), HistoryError> {
    let mut all = Vec::new();
    let record = for_each(history, scan_id, judge, now_unix_ms, |f| {
        all.extend(f);
        Ok(())
    })
    .await?;
    evaluate::sort(&mut all);
    let results = history.results(scan_id).await?.all().await?;
    Ok((record, all, results))
}

/// The open ports of a recorded scan keyed by finding id, for `diff`.
///
/// # Errors
/// The history's errors.
pub async fn open_ports(
    history: &History,
    scan_id: &str,
) -> Result<BTreeMap<String, diff::PortView>, HistoryError> {
    history.record_of(scan_id).await?;
    let assets = history.assets(scan_id).await?;
    let by_id: HashMap<&str, &Asset> = assets.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut out = BTreeMap::new();
    let mut groups = history.results(scan_id).await?;
    while let Some(group) = groups.next_group().await? {
        for r in group.iter().filter(|r| r.state == PortState::Open) {
            let asset = by_id.get(r.asset_id.as_str()).copied();
            let id = evaluate::finding_id(asset, r.ip, r.protocol, r.port);
            let s = r.service.as_ref();
            out.insert(
                id.clone(),
                diff::PortView {
                    id,
                    ip: r.ip,
                    port: r.port,
                    protocol: r.protocol.as_str().to_string(),
                    service: s.map(|s| s.name.clone()).filter(|n| !n.is_empty()),
                    product: s.and_then(|s| s.product.clone()),
                    version: s.and_then(|s| s.version.clone()),
                },
            );
        }
    }
    Ok(out)
}
