//! What `scanfleet findings` prints: a table for people (sorted by adjusted
//! score, each finding with its reasons), JSON lines and CSV (one finding per
//! line, streamed asset by asset), or one JSON document (sorted).

use std::io::Write;

use scanfleet_common::text::escape;

use super::model::{Finding, ScanRecord};

/// Output formats of `scanfleet findings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindingsFormat {
    /// Aligned columns, highest score first, reasons under each finding.
    Table,
    /// One finding per line (in asset order, streamed).
    Jsonl,
    /// Comma-separated, one finding per row, with a header (in asset order, streamed).
    Csv,
    /// One JSON document: the scan record and the findings, highest score first.
    Json,
}

impl FindingsFormat {
    /// Whether the format needs every finding before the first line (sorted).
    pub fn sorted(self) -> bool {
        matches!(self, FindingsFormat::Table | FindingsFormat::Json)
    }
}

/// The CSV columns.
pub const CSV_HEADER: &str = "id,kind,score,severity,base_score,ip,port,protocol,state,service,product,version,region,account_id,asset_id,rules,internet_reachable,suppressed_by,first_observed_unix_ms,last_observed_unix_ms,title,reasons";

/// One CSV field: quoted when it must be, escaped (banners are untrusted), and a
/// leading `=`, `+`, `-` or `@` defused so a spreadsheet does not run it.
fn csv(s: &str) -> String {
    let mut v = escape(s, 4096);
    if v.starts_with(['=', '+', '-', '@']) && v.parse::<f64>().is_err() {
        v.insert(0, '\'');
    }
    if v.contains([',', '"']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// Write one finding as a CSV row.
///
/// # Errors
/// When writing fails.
pub fn csv_row(w: &mut dyn Write, f: &Finding) -> std::io::Result<()> {
    let s = f.service.as_ref();
    let reasons: Vec<String> = f
        .reasons
        .iter()
        .map(|r| format!("{} ({:+.1})", r.code, r.delta))
        .collect();
    let row = [
        csv(&f.id),
        csv(kind(f)),
        format!("{:.1}", f.score),
        f.severity.as_str().to_string(),
        format!("{:.1}", f.base_score),
        f.ip.to_string(),
        f.port.to_string(),
        f.protocol.as_str().to_string(),
        f.state.as_str().to_string(),
        csv(s.map_or("", |s| s.name.as_str())),
        csv(s.and_then(|s| s.product.as_deref()).unwrap_or("")),
        csv(s.and_then(|s| s.version.as_deref()).unwrap_or("")),
        csv(f.region.as_deref().unwrap_or("")),
        csv(f.account_id.as_deref().unwrap_or("")),
        csv(&f.asset_id),
        csv(&f.rules.join(" ")),
        f.internet_reachable.to_string(),
        csv(f.suppressed.as_ref().map_or("", |s| s.rule.as_str())),
        f.first_observed_unix_ms.to_string(),
        f.last_observed_unix_ms.to_string(),
        csv(&f.title),
        csv(&reasons.join("; ")),
    ];
    writeln!(w, "{}", row.join(","))
}

fn kind(f: &Finding) -> &'static str {
    match f.kind {
        super::FindingKind::OpenPort => "open-port",
        super::FindingKind::LatentExposure => "latent-exposure",
    }
}

/// Write one finding as a JSON line.
///
/// # Errors
/// When writing fails.
pub fn jsonl_row(w: &mut dyn Write, f: &Finding) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, f)?;
    w.write_all(b"\n")
}

/// The table: a head line, then per finding its score, severity, address,
/// service and title, and its reasons indented beneath.
///
/// # Errors
/// When writing fails.
pub fn table(w: &mut dyn Write, record: &ScanRecord, findings: &[Finding]) -> std::io::Result<()> {
    let suppressed = findings.iter().filter(|f| f.suppressed.is_some()).count();
    table_head(w, record, findings.len(), suppressed)?;
    for f in findings {
        table_block(w, f)?;
    }
    Ok(())
}

fn table_head(
    w: &mut dyn Write,
    record: &ScanRecord,
    n: usize,
    suppressed: usize,
) -> std::io::Result<()> {
    writeln!(
        w,
        "scan {}: {} finding{} ({} suppressed)",
        escape(&record.scan_id, 128),
        n,
        if n == 1 { "" } else { "s" },
        suppressed
    )?;
    if n == 0 {
        return Ok(());
    }
    writeln!(
        w,
        "{:<5} {:<13} {:<26} {:<22} {:<22} TITLE",
        "SCORE", "SEVERITY", "ADDRESS", "SERVICE", "RULE"
    )
}

/// One finding's lines of the table.
fn table_block(w: &mut dyn Write, f: &Finding) -> std::io::Result<()> {
    let addr = format!("{}:{}/{}", f.ip, f.port, f.protocol.as_str());
    let svc = f.service.as_ref().map_or_else(
        || "-".to_string(),
        |s| {
            [Some(&s.name), s.product.as_ref(), s.version.as_ref()]
                .into_iter()
                .flatten()
                .filter(|x| !x.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        },
    );
    let mark = match &f.suppressed {
        Some(s) => format!(" [suppressed: {}]", escape(&s.rule, 64)),
        None => String::new(),
    };
    writeln!(
        w,
        "{:<5.1} {:<13} {:<26} {:<22} {:<22} {}{}",
        f.score,
        f.severity.as_str(),
        addr,
        escape(&svc, 22),
        f.rules.first().map_or("-", |s| s.as_str()),
        escape(&f.title, 200),
        mark
    )?;
    for r in &f.reasons {
        writeln!(
            w,
            "      {:+.1} {}: {}",
            r.delta,
            r.code,
            escape(&r.text, 400)
        )?;
    }
    Ok(())
}

/// The table for any number of findings without holding them: each finding's
/// lines are rendered as it arrives and spilled to an unlinked temporary file;
/// memory keeps only its sort key (score, id) and where its lines are. At the
/// end the keys are sorted (score descending, then id, as
/// [`super::evaluate::sort`]) and the lines copied out in that order.
pub struct TableSpill {
    file: std::io::BufWriter<std::fs::File>,
    keys: Vec<(f64, Box<str>, u64, u32)>,
    len: u64,
    suppressed: usize,
    buf: Vec<u8>,
}

impl TableSpill {
    /// A spill file in the temporary directory, unlinked at once.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn new() -> std::io::Result<TableSpill> {
        let dir = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!(
            "scanfleet-findings-{}-{nanos}.spill",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("temporary file {}: {e}", path.display()))
            })?;
        let _ = std::fs::remove_file(&path);
        Ok(TableSpill {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            keys: Vec::new(),
            len: 0,
            suppressed: 0,
            buf: Vec::new(),
        })
    }

    /// Render and spill one finding.
    ///
    /// # Errors
    /// When the spill file cannot be written.
    pub fn push(&mut self, f: &Finding) -> std::io::Result<()> {
        self.buf.clear();
        table_block(&mut self.buf, f)?;
        self.file.write_all(&self.buf)?;
        let n = u32::try_from(self.buf.len()).map_err(std::io::Error::other)?;
        self.keys
            .push((f.score, f.id.clone().into_boxed_str(), self.len, n));
        self.len += u64::from(n);
        self.suppressed += usize::from(f.suppressed.is_some());
        Ok(())
    }

    /// Write the whole table, sorted.
    ///
    /// # Errors
    /// When the spill file cannot be read or `w` written.
    pub fn finish(mut self, w: &mut dyn Write, record: &ScanRecord) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        self.keys
            .sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        table_head(w, record, self.keys.len(), self.suppressed)?;
        for (_, _, at, n) in &self.keys {
            self.buf.resize(*n as usize, 0);
            file.read_exact_at(&mut self.buf, *at)?;
            w.write_all(&self.buf)?;
        }
        Ok(())
    }
}

/// The JSON document.
///
/// # Errors
/// When writing fails.
pub fn json(w: &mut dyn Write, record: &ScanRecord, findings: &[Finding]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(
        &mut *w,
        &serde_json::json!({ "scan": record, "findings": findings }),
    )?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_escaped_and_defused() {
        assert_eq!(csv("plain"), "plain");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\", ok"), "\"say \"\"hi\"\", ok\"");
        assert_eq!(csv("=cmd|calc"), "'=cmd|calc");
        assert_eq!(csv("-1.5"), "-1.5");
        assert_eq!(csv("a\nb\u{1b}"), "a\\nb\\x1b");
    }

    fn finding(id: &str, port: u16, score: f64, suppressed: bool) -> Finding {
        use super::super::model::{FindingKind, Reason, Severity, Suppressed};
        Finding {
            id: id.into(),
            kind: FindingKind::OpenPort,
            scan_id: "s".into(),
            asset_id: "i-1".into(),
            ip: "10.1.2.3".parse().unwrap(),
            port,
            protocol: scanfleet_common::Protocol::Tcp,
            state: scanfleet_common::PortState::Open,
            region: None,
            account_id: None,
            vpc_id: None,
            subnet_id: None,
            instance_type: None,
            tags: Default::default(),
            service: None,
            rules: vec!["SF-OPEN-PORT".into()],
            title: format!("finding {id}"),
            base_score: score,
            score,
            severity: Severity::from_score(score),
            reasons: vec![Reason {
                code: "SF-OPEN-PORT".into(),
                text: "Open port".into(),
                delta: score,
            }],
            internet_reachable: false,
            network_path: vec![],
            exposure: None,
            first_observed_unix_ms: 0,
            last_observed_unix_ms: 0,
            suppressed: suppressed.then(|| Suppressed {
                rule: "waiver".into(),
                reason: "r".into(),
                expires_unix_ms: None,
            }),
            remediation: None,
        }
    }

    #[test]
    fn the_spilled_table_is_the_sorted_table() {
        let record: ScanRecord = serde_json::from_value(serde_json::json!({
            "scan_id": "sf-t", "started_unix_ms": 1, "finished_unix_ms": 2, "engine": "connect",
            "ports": "1-100", "udp_ports": "", "args": "", "targets": 1, "skipped": [], "notes": []
        }))
        .unwrap();
        // Arrival order is asset order, not score order; equal scores sort by id.
        let mut list = vec![
            finding("b/22", 22, 2.0, false),
            finding("a/80", 80, 9.5, true),
            finding("c/25", 25, 4.0, false),
            finding("a/23", 23, 2.0, false),
        ];
        let mut spill = TableSpill::new().unwrap();
        for f in &list {
            spill.push(f).unwrap();
        }
        let mut got = Vec::new();
        spill.finish(&mut got, &record).unwrap();
        crate::findings::evaluate::sort(&mut list);
        let mut want = Vec::new();
        table(&mut want, &record, &list).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
        let ids: Vec<&str> = list.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a/80", "c/25", "a/23", "b/22"]);
        let mut empty = Vec::new();
        TableSpill::new()
            .unwrap()
            .finish(&mut empty, &record)
            .unwrap();
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            "scan sf-t: 0 findings (0 suppressed)\n"
        );
    }
}
