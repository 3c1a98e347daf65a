//! `scanfleet status` and `scanfleet results`: read a fleet scan back from Redis.

use scanfleet_common::ShardStats;
use scanfleet_common::config::Sources;
use scanfleet_common::store::StoreError;
use scanfleet_common::text;

use crate::backends;
use crate::cli::{ResultsArgs, StatusArgs};
use crate::config;
use crate::error::CliError;
use crate::report::{self, ScanHead};

/// Longest scan id accepted; the ids `scanfleet scan` prints are about 20 bytes.
const MAX_SCAN_ID: usize = 128;

/// A scan id as the store can hold it: what `scanfleet scan` printed.
///
/// # Errors
/// [`CliError::Input`] for an empty, overlong or oddly spelled id (echoed escaped and bounded).
pub fn check_scan_id(id: &str) -> Result<(), CliError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SCAN_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Input(format!(
            "scan id {}: expected the id `scanfleet scan` printed, such as sf-1764700000-a1b2c3 \
             (1 to {MAX_SCAN_ID} letters, digits, -, _, . or :)",
            text::echo(id)
        )))
    }
}

/// A scan id the store does not know is bad input (exit 2); anything else is a runtime failure.
pub(crate) fn lookup_error(e: StoreError) -> CliError {
    match e {
        StoreError::UnknownScan(id) => CliError::Input(format!(
            "scan {} is not known to the result store",
            text::echo(&id)
        )),
        e => CliError::Runtime(anyhow::Error::new(e).context("reading the scan")),
    }
}

/// `scanfleet status SCAN_ID`.
///
/// # Errors
/// Bad flags or an unknown scan are bad input (exit 2); Redis trouble is a runtime failure.
pub async fn status(args: StatusArgs, src: &Sources) -> Result<(), CliError> {
    check_scan_id(&args.scan_id)?;
    let redis = args.redis.resolve(src)?;
    let store = backends::store(&redis.value).await?;
    let p = store.progress(&args.scan_id).await.map_err(lookup_error)?;
    let times = store.times(&args.scan_id).await.map_err(lookup_error)?;
    let stats = store
        .shard_stats(&args.scan_id)
        .await
        .map_err(lookup_error)?;
    let cancelled = store
        .is_cancelled(&args.scan_id)
        .await
        .map_err(lookup_error)?;
    // More outcomes than shards: the store was written outside scanfleet.
    let consistent = p.shards_done + p.shards_failed <= p.shards_total;
    let took = times
        .finished_unix_ms
        .map(|f| f.saturating_sub(times.started_unix_ms) as f64 / 1000.0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "scan_id": args.scan_id,
                "progress": p,
                "shards_pending": p.shards_pending(),
                "finished": p.finished() && consistent,
                "consistent": consistent,
                "cancelled": cancelled,
                "started_unix_ms": times.started_unix_ms,
                "finished_unix_ms": times.finished_unix_ms,
                "accuracy": accuracy_json(&stats),
            })
        );
    } else {
        let end = match took {
            Some(secs) if consistent && p.finished() => format!("; finished in {secs:.1} s"),
            _ => String::new(),
        };
        println!(
            "{}{}: {}: {} done, {} failed, {} pending; {}{}{}",
            args.scan_id,
            if cancelled { " (cancelled)" } else { "" },
            report::count(p.shards_total, "shard"),
            p.shards_done,
            p.shards_failed,
            p.shards_pending(),
            report::count(p.results, "result"),
            if consistent {
                ""
            } else {
                "; INCONSISTENT: the store counts more shard outcomes than the scan has shards"
            },
            end,
        );
        print!("{}", accuracy_table(&stats));
    }
    if !consistent {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "scan {}: {} shard outcome(s) recorded for {} shard(s); its keys in Redis were changed outside scanfleet",
            args.scan_id,
            p.shards_done + p.shards_failed,
            p.shards_total
        )));
    }
    Ok(())
}

/// The accuracy of a scan in JSON: totals, then every shard's [`ShardStats`].
pub fn accuracy_json(stats: &[ShardStats]) -> serde_json::Value {
    let probes: u64 = stats.iter().map(|s| s.probes_sent).sum();
    let retransmits: u64 = stats.iter().map(|s| s.retransmits).sum();
    serde_json::json!({
        "probes_sent": probes,
        "retransmits": retransmits,
        "miss_chance": stats.iter().map(|s| s.miss_chance).fold(0.0, f64::max),
        "shards": stats,
    })
}

/// The accuracy of a scan for people: one line for the scan, one per target.
/// Empty when no shard recorded any (an old worker, or nothing finished yet).
pub fn accuracy_table(stats: &[ShardStats]) -> String {
    use std::fmt::Write;
    if stats.is_empty() {
        return String::new();
    }
    let probes: u64 = stats.iter().map(|s| s.probes_sent).sum();
    let retransmits: u64 = stats.iter().map(|s| s.retransmits).sum();
    let miss = stats.iter().map(|s| s.miss_chance).fold(0.0, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "accuracy: {probes} probes sent, {retransmits} retransmitted; estimated chance of a missed open port: {}",
        chance(miss)
    );
    let rows: Vec<_> = stats
        .iter()
        .flat_map(|s| s.targets.iter().map(move |t| (s.shard_id, t)))
        .collect();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<6} {:<40} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>9} {:>10}",
        "shard",
        "target",
        "probes",
        "retrans",
        "answered",
        "loss",
        "ceiling",
        "max pps",
        "backoffs",
        "miss"
    );
    for (shard, t) in rows {
        let _ = writeln!(
            out,
            "{:<6} {:<40} {:>9} {:>8} {:>7.1}% {:>6.2}% {:>8} {:>8} {:>9} {:>10}",
            shard,
            t.ip,
            t.probes_sent,
            t.retransmits,
            100.0 * t.answer_ratio,
            100.0 * t.loss,
            t.ceiling_pps,
            t.max_rate_pps,
            t.backoffs,
            chance(t.miss_chance)
        );
    }
    out
}

/// A small probability the way people read it: `< 1e-12`, `3.2e-5`, `0`.
fn chance(p: f64) -> String {
    if p <= 0.0 {
        "0".into()
    } else if p < 1e-12 {
        "< 1e-12".into()
    } else {
        format!("{p:.1e}")
    }
}

/// `scanfleet results SCAN_ID`.
///
/// # Errors
/// Bad flags or an unknown scan are bad input (exit 2); Redis trouble is a runtime failure.
pub async fn results(args: ResultsArgs, src: &Sources) -> Result<(), CliError> {
    check_scan_id(&args.scan_id)?;
    let redis = args.redis.resolve(src)?;
    let (format, output) = config::output(&args.output, src)?;
    let store = backends::store(&redis.value).await?;
    let p = store.progress(&args.scan_id).await.map_err(lookup_error)?;
    let results = store.results(&args.scan_id).await.map_err(lookup_error)?;
    let summary = report::summary(
        ScanHead {
            scan_id: args.scan_id.clone(),
            engine: "fleet".into(),
            notes: if p.finished() {
                Vec::new()
            } else {
                vec!["scan not finished; results are partial".into()]
            },
            ..ScanHead::default()
        },
        &p,
        &results,
    );
    let visible = report::visible(&results, args.all_states);
    report::emit(&output, format, &summary, &visible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_is_shown_per_scan_and_target() {
        use scanfleet_common::TargetAccuracy;
        let t = TargetAccuracy {
            ip: "10.0.0.5".parse().unwrap(),
            probes_sent: 80_000,
            retransmits: 14_465,
            answer_ratio: 0.9999,
            loss: 0.2,
            ceiling_pps: 19_046,
            max_rate_pps: 19_046,
            backoffs: 1,
            miss_chance: 6.4e-5,
        };
        let stats = vec![ShardStats {
            shard_id: 3,
            engine: "syn".into(),
            probes_sent: 80_000,
            retransmits: 14_465,
            passes: 6,
            miss_chance: 6.4e-5,
            targets: vec![t],
        }];
        let table = accuracy_table(&stats);
        assert!(
            table.contains("80000 probes sent, 14465 retransmitted"),
            "{table}"
        );
        assert!(table.contains("6.4e-5"), "{table}");
        assert!(
            table.contains("10.0.0.5") && table.contains("20.00%") && table.contains("19046"),
            "{table}"
        );
        let j = accuracy_json(&stats);
        assert_eq!(j["retransmits"], 14_465);
        assert_eq!(j["shards"][0]["targets"][0]["ceiling_pps"], 19_046);
        assert_eq!(j["shards"][0]["targets"][0]["loss"], 0.2);
        assert!(accuracy_table(&[]).is_empty());
        assert_eq!(chance(0.0), "0");
        assert_eq!(chance(1e-20), "< 1e-12");
    }

    #[test]
    fn scan_ids_are_checked_and_echoed_bounded() {
        assert!(check_scan_id("sf-1764700000-a1b2c3").is_ok());
        for bad in ["", "a{b", "x\u{1b}]0;t\u{7}"] {
            assert!(check_scan_id(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(100_000);
        let CliError::Input(m) = check_scan_id(&long).unwrap_err() else {
            panic!()
        };
        assert!(
            m.len() < 400,
            "a 100 KB id is not echoed whole: {} bytes",
            m.len()
        );
        let CliError::Input(m) = check_scan_id("x\u{1b}]0;t\u{7}").unwrap_err() else {
            panic!()
        };
        assert!(!m.contains('\u{1b}') && m.contains("\\x1b"), "{m}");
    }
}
