//! `scanfleet status` and `scanfleet results`: read a fleet scan back from Redis.

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
fn lookup_error(e: StoreError) -> CliError {
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
                "started_unix_ms": times.started_unix_ms,
                "finished_unix_ms": times.finished_unix_ms,
            })
        );
    } else {
        let end = match took {
            Some(secs) if consistent && p.finished() => format!("; finished in {secs:.1} s"),
            _ => String::new(),
        };
        println!(
            "{}: {}: {} done, {} failed, {} pending; {}{}{}",
            args.scan_id,
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
