//! The scan history: every finished scan's record, assets and results, and per
//! finding id the first and last time a scan observed it, so that `scanfleet
//! findings|diff|export SCAN_ID` work after the scan (embedded or fleet) is over.
//!
//! Two backends behind [`History`]:
//! - [`dir`]: a local state directory (`--state-dir`, `SCANFLEET_STATE_DIR`, else
//!   `$XDG_STATE_HOME/scanfleet`, else `~/.local/state/scanfleet`, else
//!   `/var/lib/scanfleet` for a process without a home), versioned JSON files
//!   written atomically (temp file + rename) under a lock file.
//! - [`redis`]: the fleet's Redis (`--redis URL`), keys in the `history` namespace
//!   of [`scanfleet_common::store::redis::history_keys`]; never expire.
//!
//! Results are stored grouped by asset, so that findings are computed one asset
//! at a time ([`ResultGroups`]) and a scan of a million results is never held
//! whole.

pub mod dir;
pub mod redis;

use std::collections::HashMap;
use std::path::PathBuf;

use scanfleet_common::{Asset, ProbeResult};
use serde::{Deserialize, Serialize};

use crate::findings::ScanRecord;

/// The one file format version the history writes and reads.
pub const VERSION: u32 = 1;
/// The `format` field of every history file and record.
pub const FORMAT: &str = "scanfleet-history";

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    /// A Redis URL (`redis://...`), checked.
    Redis(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "state directory {}", p.display()),
            Location::Redis(u) => write!(f, "Redis {}", scanfleet_common::telemetry::redact(u)),
        }
    }
}

/// What can go wrong with the history, split as the commands' exit statuses are.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The scan is not in the history (or there is no history at all): exit 2.
    #[error("{0}")]
    UnknownScan(String),
    /// A history file or key that is not what scanfleet writes (corrupt, or of
    /// another version): the message names it. Exit 2.
    #[error("{0}")]
    Corrupt(String),
    /// The store cannot be reached or written: exit 1.
    #[error("{0}")]
    Io(String),
}

/// The versioned envelope of a scan record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RecordFile {
    pub format: String,
    pub version: u32,
    pub record: ScanRecord,
}

/// The first line of a JSON-lines history file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub format: String,
    pub version: u32,
    /// `assets`, `results` or `observed`.
    pub kind: String,
}

impl Header {
    pub fn new(kind: &str) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            kind: kind.into(),
        }
    }

    /// # Errors
    /// [`HistoryError::Corrupt`] naming `what` when the header is not ours.
    pub fn check(line: &str, kind: &str, what: &str) -> Result<(), HistoryError> {
        let h: Header = serde_json::from_str(line).map_err(|e| {
            HistoryError::Corrupt(format!(
                "{what}: not a scanfleet history file (first line: {e})"
            ))
        })?;
        check_version(&h.format, h.version, what)?;
        if h.kind != kind {
            return Err(HistoryError::Corrupt(format!(
                "{what}: holds {}, expected {kind}",
                scanfleet_common::text::echo(&h.kind)
            )));
        }
        Ok(())
    }
}

pub(crate) fn check_version(format: &str, version: u32, what: &str) -> Result<(), HistoryError> {
    if format != FORMAT {
        return Err(HistoryError::Corrupt(format!(
            "{what}: format {} is not {FORMAT}",
            scanfleet_common::text::echo(format)
        )));
    }
    if version != VERSION {
        return Err(HistoryError::Corrupt(format!(
            "{what}: history format version {version}, this scanfleet reads version {VERSION} only"
        )));
    }
    Ok(())
}

/// First and last observed (unix ms) of a finding id.
pub type Observed = (u64, u64);

/// An open history.
#[derive(Debug)]
pub enum History {
    Dir(dir::DirHistory),
    Redis(redis::RedisHistory),
}

impl History {
    /// Open (a directory is created on first write, not here).
    ///
    /// # Errors
    /// [`HistoryError::Io`] when Redis cannot be reached.
    pub async fn open(loc: &Location) -> Result<History, HistoryError> {
        Ok(match loc {
            Location::Dir(p) => History::Dir(dir::DirHistory::new(p.clone())),
            Location::Redis(url) => History::Redis(redis::RedisHistory::connect(url).await?),
        })
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            History::Dir(d) => format!("the history in {}", d.root().display()),
            History::Redis(r) => format!("the history in {}", r.describe()),
        }
    }

    /// Record a finished scan: its record, assets and results, and `observed`
    /// (the finding ids it observed) at `at_unix_ms`.
    ///
    /// # Errors
    /// [`HistoryError::Io`] when it cannot be written, [`HistoryError::Corrupt`]
    /// when the existing observed index is unreadable.
    pub async fn record(
        &self,
        record: &ScanRecord,
        assets: &[Asset],
        results: &[&ProbeResult],
        observed: &[String],
        at_unix_ms: u64,
    ) -> Result<(), HistoryError> {
        match self {
            History::Dir(d) => d.record(record, assets, results, observed, at_unix_ms),
            History::Redis(r) => {
                r.record(record, assets, results, observed, at_unix_ms)
                    .await
            }
        }
    }

    /// Every recorded scan, oldest first.
    ///
    /// # Errors
    /// As [`History::record_of`].
    pub async fn list(&self) -> Result<Vec<ScanRecord>, HistoryError> {
        match self {
            History::Dir(d) => d.list(),
            History::Redis(r) => r.list().await,
        }
    }

    /// The record of a scan.
    ///
    /// # Errors
    /// [`HistoryError::UnknownScan`] when it is not recorded.
    pub async fn record_of(&self, scan_id: &str) -> Result<ScanRecord, HistoryError> {
        match self {
            History::Dir(d) => d.record_of(scan_id),
            History::Redis(r) => r.record_of(scan_id).await,
        }
    }

    /// The assets of a scan.
    ///
    /// # Errors
    /// As [`History::record_of`], or a corrupt entry.
    pub async fn assets(&self, scan_id: &str) -> Result<Vec<Asset>, HistoryError> {
        match self {
            History::Dir(d) => d.assets(scan_id),
            History::Redis(r) => r.assets(scan_id).await,
        }
    }

    /// The results of a scan, one asset at a time.
    ///
    /// # Errors
    /// As [`History::record_of`].
    pub async fn results(&self, scan_id: &str) -> Result<ResultGroups, HistoryError> {
        let lines = match self {
            History::Dir(d) => Lines::File(d.result_lines(scan_id)?),
            History::Redis(r) => Lines::Redis(r.result_lines(scan_id).await?),
        };
        Ok(ResultGroups {
            lines,
            pending: None,
        })
    }

    /// First/last observed of these finding ids of `scan_id`, asked in the order
    /// the scan's findings are computed; ids never observed are missing.
    ///
    /// # Errors
    /// A corrupt index, or Redis unreachable.
    pub async fn observed(
        &mut self,
        scan_id: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Observed>, HistoryError> {
        match self {
            History::Dir(d) => d.observed(scan_id, ids),
            History::Redis(r) => r.observed(ids).await,
        }
    }
}

/// Where result lines come from.
enum Lines {
    File(dir::FileLines),
    Redis(redis::ListLines),
}

/// A scan's results, read one asset's worth at a time (the history stores them
/// grouped by asset id).
pub struct ResultGroups {
    lines: Lines,
    pending: Option<ProbeResult>,
}

impl ResultGroups {
    /// The next asset's results, or `None` at the end.
    ///
    /// # Errors
    /// [`HistoryError::Corrupt`] naming the file or key and the line of a bad
    /// entry; [`HistoryError::Io`].
    pub async fn next_group(&mut self) -> Result<Option<Vec<ProbeResult>>, HistoryError> {
        let mut group: Vec<ProbeResult> = self.pending.take().into_iter().collect();
        loop {
            let next = match &mut self.lines {
                Lines::File(f) => f.next_result()?,
                Lines::Redis(r) => r.next_result().await?,
            };
            match next {
                None => break,
                Some(r) => {
                    if group.first().is_some_and(|g| g.asset_id != r.asset_id) {
                        self.pending = Some(r);
                        break;
                    }
                    group.push(r);
                }
            }
        }
        Ok(if group.is_empty() { None } else { Some(group) })
    }

    /// Every result (the exports take the whole list).
    ///
    /// # Errors
    /// As [`ResultGroups::next_group`].
    pub async fn all(mut self) -> Result<Vec<ProbeResult>, HistoryError> {
        let mut out = Vec::new();
        while let Some(g) = self.next_group().await? {
            out.extend(g);
        }
        Ok(out)
    }
}

/// The results in the order the history stores them: by asset id, then address,
/// port and protocol.
pub fn storage_order(results: &[ProbeResult]) -> Vec<&ProbeResult> {
    let mut v: Vec<&ProbeResult> = results.iter().collect();
    v.sort_by(|a, b| {
        (&a.asset_id, a.ip, a.port, a.protocol).cmp(&(&b.asset_id, b.ip, b.port, b.protocol))
    });
    v
}

/// The message of a scan id the history does not hold.
pub(crate) fn unknown(scan_id: &str, where_: &str, hint: &str) -> HistoryError {
    HistoryError::UnknownScan(format!(
        "scan {} is not in {where_}{hint}",
        scanfleet_common::text::echo(scan_id)
    ))
}
