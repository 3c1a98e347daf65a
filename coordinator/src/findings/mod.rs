//! The findings stage: a scan's results and its assets become risk-ranked
//! findings (rules file, context, suppressions), kept across scans in the history
//! so that first/last observed times and diffs work. [`model`] is the contract the
//! exporters ([`crate::export`]) read.

pub mod model;

pub use model::{Finding, FindingKind, PathStep, Reason, ScanRecord, Severity, Suppressed};
