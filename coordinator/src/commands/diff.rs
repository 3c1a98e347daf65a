//! `scanfleet diff OLD_SCAN NEW_SCAN`.

use scanfleet_common::config::Sources;

use super::export::history_error;
use crate::cli::{DiffArgs, TableOrJson};
use crate::config::history as hconfig;
use crate::error::CliError;
use crate::findings::{self, diff::Diff};
use crate::history::History;

/// `scanfleet diff OLD NEW`: new, gone and changed open ports.
///
/// # Errors
/// An unknown scan or unreadable history is bad input (exit 2).
pub async fn diff(args: DiffArgs, src: &Sources) -> Result<(), CliError> {
    super::status::check_scan_id(&args.old_scan)?;
    super::status::check_scan_id(&args.new_scan)?;
    let loc = hconfig::location(&args.store, &args.redis, src)?;
    let h = History::open(&loc).await.map_err(history_error)?;
    let old = findings::open_ports(&h, &args.old_scan)
        .await
        .map_err(history_error)?;
    let new = findings::open_ports(&h, &args.new_scan)
        .await
        .map_err(history_error)?;
    let d = Diff::of(&args.old_scan, &args.new_scan, old, new);
    match args.format {
        TableOrJson::Table => print!("{}", d.table()),
        TableOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).map_err(|e| CliError::Runtime(e.into()))?
        ),
    }
    Ok(())
}
