//! Exports of a scan's findings and results: `asff` (Security Hub), `inspector`,
//! `nmap-xml`, `html`, `jsonl`, `csv`; and the two senders, Security Hub's
//! BatchImportFindings ([`securityhub`]) and EventBridge's PutEvents ([`eventbridge`]).
//!
//! Every writer takes the same [`Export`] and writes to any `Write`, so `scanfleet
//! scan --export FORMAT=FILE` and `scanfleet export SCAN_ID --to FORMAT` produce the
//! same bytes.

pub mod asff;
pub mod eventbridge;
mod flat;
mod html;
pub mod inspector;
mod nmap;
mod retry;
pub mod securityhub;

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use scanfleet_common::ProbeResult;

use crate::findings::{Finding, ScanRecord};

/// What every export reads.
#[derive(Debug, Clone, Copy)]
pub struct Export<'a> {
    pub record: &'a ScanRecord,
    /// Sorted by score, highest first.
    pub findings: &'a [Finding],
    /// Every stored result of the scan (open ports, and closed and filtered ones
    /// when the scan kept them).
    pub results: &'a [ProbeResult],
}

/// An export format, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Asff,
    Inspector,
    NmapXml,
    Html,
    Jsonl,
    Csv,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Asff,
        Format::Inspector,
        Format::NmapXml,
        Format::Html,
        Format::Jsonl,
        Format::Csv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Asff => "asff",
            Format::Inspector => "inspector",
            Format::NmapXml => "nmap-xml",
            Format::Html => "html",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown export format {s:?}: expected asff, inspector, nmap-xml, html, jsonl or csv")
            })
    }
}

/// Write `ex` in `format`.
///
/// # Errors
/// When writing fails, or the findings cannot be expressed in the format.
pub fn write(format: Format, ex: &Export<'_>, w: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Jsonl => flat::jsonl(ex, w)?,
        Format::Csv => flat::csv(ex, w)?,
        Format::NmapXml => nmap::write(ex, w)?,
        Format::Asff => asff::write(&asff::AsffTarget::default(), ex, w)?,
        Format::Html => html::write(ex, w)?,
        Format::Inspector => inspector::write(ex, w)?,
    }
    w.flush()?;
    Ok(())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-12-03T13:40:00.000Z`),
/// the form ASFF, Inspector and the HTML report use.
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// What to do about a finding: its rule's remediation, else the general advice
/// for an exposed port.
pub(crate) fn remediation_of(f: &Finding) -> &str {
    f.remediation.as_deref().unwrap_or(
        "Stop the service if it is not needed, or restrict the security group and network \
         ACL rules that admit it to the sources that need it.",
    )
}
