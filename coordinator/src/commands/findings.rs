//! `scanfleet findings SCAN_ID` and `scanfleet history`.

use std::io::Write;

use anyhow::Context;
use scanfleet_common::config::Sources;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::text::escape;

use super::export::{history_error, say_expired};
use crate::cli::{FindingsArgs, HistoryArgs, TableOrJson};
use crate::config::history as hconfig;
use crate::error::CliError;
use crate::findings::output::{self, FindingsFormat};
use crate::findings::{self, evaluate};
use crate::history::History;

/// `scanfleet findings SCAN_ID`.
///
/// # Errors
/// Bad flags or files, an unknown scan or an unreadable history are bad input
/// (exit 2); a store that cannot be reached or stdout that cannot be written
/// are runtime failures.
pub async fn findings(args: FindingsArgs, src: &Sources) -> Result<(), CliError> {
    super::status::check_scan_id(&args.scan_id)?;
    let judge = hconfig::judge(&args.judge)?;
    let loc = hconfig::location(&args.store, &args.redis, src)?;
    let now = now_unix_ms();
    say_expired(&judge, now);
    let mut h = History::open(&loc).await.map_err(history_error)?;
    let min = args.min_severity.unwrap_or_default();
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let format = args.format;
    let mut kept = Vec::new();
    // The table spills each finding's lines to a temporary file and sorts only
    // the keys: no list of findings in memory. The JSON document holds them.
    let mut spill = match format {
        FindingsFormat::Table => Some(output::TableSpill::new().context("the table's spill file")?),
        _ => None,
    };
    if format == FindingsFormat::Csv {
        writeln!(w, "{}", output::CSV_HEADER).context("writing to stdout")?;
    }
    let record = findings::for_each(&mut h, &args.scan_id, &judge, now, |group| {
        for f in group.into_iter().filter(|f| f.severity >= min) {
            match format {
                FindingsFormat::Jsonl => output::jsonl_row(&mut w, &f)?,
                FindingsFormat::Csv => output::csv_row(&mut w, &f)?,
                FindingsFormat::Table => {
                    if let Some(t) = spill.as_mut() {
                        t.push(&f)?;
                    }
                }
                FindingsFormat::Json => kept.push(f),
            }
        }
        Ok(())
    })
    .await
    .map_err(history_error)?;
    if let Some(t) = spill {
        t.finish(&mut w, &record).context("writing to stdout")?;
    } else if format == FindingsFormat::Json {
        evaluate::sort(&mut kept);
        output::json(&mut w, &record, &kept).context("writing to stdout")?;
    }
    w.flush().context("writing to stdout")?;
    Ok(())
}

/// `scanfleet history`: the recorded scans, oldest first.
///
/// # Errors
/// An unreadable history is bad input (exit 2).
pub async fn history(args: HistoryArgs, src: &Sources) -> Result<(), CliError> {
    let loc = hconfig::location(&args.store, &args.redis, src)?;
    let h = History::open(&loc).await.map_err(history_error)?;
    let list = h.list().await.map_err(history_error)?;
    match args.format {
        TableOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| CliError::Runtime(e.into()))?
        ),
        TableOrJson::Table => {
            if list.is_empty() {
                eprintln!("scanfleet: no scans in {}", h.describe());
                return Ok(());
            }
            println!(
                "{:<32} {:<20} {:>8} {:>8} {:<10} PORTS",
                "SCAN", "STARTED (UTC)", "SECONDS", "TARGETS", "ENGINE"
            );
            for r in &list {
                let started = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_unix_ms),
                )
                .to_string();
                let secs = r.finished_unix_ms.map_or_else(
                    || "-".to_string(),
                    |f| format!("{:.1}", f.saturating_sub(r.started_unix_ms) as f64 / 1000.0),
                );
                println!(
                    "{:<32} {:<20} {:>8} {:>8} {:<10} {}",
                    escape(&r.scan_id, 128),
                    started.trim_end_matches('Z').replace('T', " "),
                    secs,
                    r.targets,
                    escape(&r.engine, 40),
                    escape(&r.ports, 60)
                );
            }
        }
    }
    Ok(())
}
