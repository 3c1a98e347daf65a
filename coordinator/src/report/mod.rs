//! The report stage: a finished (or interrupted) scan's results and summary, in
//! the format the user asked for, to the file or to standard output; and the
//! lines a person reads on stderr. Every mode (embedded, fleet, `results`) builds
//! its summary with [`summary`] and writes it with [`emit`].

mod format;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use scanfleet_common::scope::Skipped;
use scanfleet_common::{ProbeResult, Progress, text};
use serde::Serialize;

use crate::cli::Format;
use crate::error::CliError;
/// CSV cell escaping, shared with the findings exports.
pub(crate) use format::csv_field;
pub use format::{open_count, visible, write};

/// What a finished scan reports besides its results.
#[derive(Debug, Clone, Serialize)]
pub struct ScanSummary {
    pub scan_id: String,
    pub engine: String,
    pub started_at_unix_ms: u64,
    pub finished_at_unix_ms: u64,
    pub targets: usize,
    pub hosts_up: Option<usize>,
    pub ports_per_target: usize,
    pub open_ports: usize,
    pub shards_total: u64,
    pub shards_failed: u64,
    pub skipped: Vec<Skipped>,
    /// Things the user should know: engine fallback, ICMP without privileges, failed shards.
    pub notes: Vec<String>,
}

/// What the pipeline knows of a scan before its results are read.
#[derive(Debug, Clone, Default)]
pub struct ScanHead {
    pub scan_id: String,
    pub engine: String,
    pub started_at_unix_ms: u64,
    /// `None` when not known (`results` of a scan planned elsewhere): counted from the results.
    pub targets: Option<usize>,
    pub ports_per_target: usize,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// The one way a summary is put together.
pub fn summary(head: ScanHead, progress: &Progress, results: &[ProbeResult]) -> ScanSummary {
    let targets = head.targets.unwrap_or_else(|| {
        results
            .iter()
            .map(|r| r.ip)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    });
    ScanSummary {
        scan_id: head.scan_id,
        engine: head.engine,
        started_at_unix_ms: head.started_at_unix_ms,
        finished_at_unix_ms: scanfleet_common::envelope::now_unix_ms(),
        targets,
        hosts_up: None,
        ports_per_target: head.ports_per_target,
        open_ports: open_count(results),
        shards_total: progress.shards_total,
        shards_failed: progress.shards_failed,
        skipped: head.skipped,
        notes: head.notes,
    }
}

/// Where a report goes: a file checked writable before the first probe, or stdout.
#[derive(Debug, Clone, Default)]
pub struct Output {
    path: Option<PathBuf>,
}

impl Output {
    /// Check that `path` can be written, before anything is sent: an existing
    /// regular file that opens for writing (it will be replaced, as nmap's -oN
    /// does), or a new file in an existing directory (made and removed again).
    ///
    /// # Errors
    /// [`CliError::Input`] naming the path and why it cannot be written.
    pub fn check(path: Option<&Path>) -> Result<Output, CliError> {
        let Some(path) = path else {
            return Ok(Output { path: None });
        };
        let bad = |why: String| CliError::Input(format!("-o {}: {why}", path.display()));
        // Kernel file systems take writes that are not files (and root may open
        // their read-only files for writing): never a place for a report.
        let real = std::fs::canonicalize(path)
            .or_else(|_| {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                std::fs::canonicalize(parent.unwrap_or(Path::new(".")))
            })
            .unwrap_or_else(|_| path.to_path_buf());
        if real.starts_with("/proc") || real.starts_with("/sys") {
            return Err(bad(format!(
                "is on {}, a kernel file system, not a place for a report",
                if real.starts_with("/proc") {
                    "/proc"
                } else {
                    "/sys"
                }
            )));
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(bad("is a directory".into())),
            Ok(m) if !m.is_file() && !is_stream(path) => {
                return Err(bad("is not a regular file".into()));
            }
            Ok(_) => {
                // Opened without truncating: nothing is lost if the scan fails.
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| bad(format!("cannot be written: {e}")))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                if !parent.is_dir() {
                    return Err(bad(format!(
                        "directory {} does not exist",
                        parent.display()
                    )));
                }
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| bad(format!("cannot be created: {e}")))?;
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(bad(format!("cannot be checked: {e}"))),
        }
        Ok(Output {
            path: Some(path.to_path_buf()),
        })
    }

    /// The file, or `None` for stdout.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// `/dev/stdout`, `/dev/null` and pipes are fine targets for `-o`.
fn is_stream(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_char_device() || m.file_type().is_fifo())
        .unwrap_or(false)
}

/// Write the report to the output file or stdout.
///
/// # Errors
/// [`CliError::Runtime`] when the output cannot be written.
pub fn emit(
    output: &Output,
    format: Format,
    summary: &ScanSummary,
    visible: &[&ProbeResult],
) -> Result<(), CliError> {
    match output.path() {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("creating output file {}", path.display()))?;
            // Buffered: the JSON and CSV writers make several small writes per record.
            let mut w = std::io::BufWriter::new(f);
            write(&mut w, format, summary, visible)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            write(&mut lock, format, summary, visible).context("writing results to stdout")?;
            lock.flush().ok();
        }
    }
    Ok(())
}

/// Say each skipped asset on stderr, its id and reason escaped (asset ids and tags
/// come from inventories and AWS tags, which anyone in the estate can write).
pub fn say_skipped(skipped: &[Skipped]) {
    for s in skipped {
        eprintln!(
            "scanfleet: skipped {} ({}): {}",
            text::escape(&s.asset_id, text::ECHO_MAX),
            s.ip,
            text::escape(&s.reason.to_string(), 400)
        );
    }
}

/// The one-line summary on stderr.
pub fn say_summary(summary: &ScanSummary, started: Instant, how: &str) {
    eprintln!(
        "scanfleet: scan {} {how} in {:.1} s: {} ({} skipped), {} each, {}, engine {}",
        text::escape(&summary.scan_id, text::ECHO_MAX),
        started.elapsed().as_secs_f64(),
        count(summary.targets as u64, "target"),
        summary.skipped.len(),
        count(summary.ports_per_target as u64, "port"),
        count(summary.open_ports as u64, "open port"),
        summary.engine
    );
}

/// `1 target`, `2 targets`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_checked_before_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let e = |p: &Path| match Output::check(Some(p)) {
            Err(CliError::Input(m)) => m,
            other => panic!("{p:?}: expected an input error, got {other:?}"),
        };
        assert!(e(dir.path()).ends_with("is a directory"));
        assert!(e(&dir.path().join("missing/out.json")).contains("does not exist"));
        assert!(e(Path::new("/proc/self/status")).contains("kernel file system"));
        assert!(e(Path::new("/proc/scanfleet-out")).contains("kernel file system"));
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::write(ro.join("old.json"), "").unwrap();
        if !crate::report::tests::is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            assert!(e(&ro.join("new.json")).contains("cannot be created"));
        }
        let fresh = dir.path().join("out.json");
        assert!(Output::check(Some(&fresh)).is_ok());
        assert!(!fresh.exists(), "the check leaves no file behind");
        std::fs::write(&fresh, "old").unwrap();
        assert!(Output::check(Some(&fresh)).is_ok());
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            "old",
            "nothing truncated yet"
        );
        assert!(Output::check(Some(Path::new("/dev/null"))).is_ok());
        assert!(Output::check(None).unwrap().path().is_none());
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }

    #[test]
    fn counts_have_plurals() {
        assert_eq!(count(1, "target"), "1 target");
        assert_eq!(count(0, "open port"), "0 open ports");
    }
}
