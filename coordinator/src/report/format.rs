//! Result formats: table (for people), JSON lines, one JSON document, CSV. Every
//! string that came from the network is escaped by the worker, but results are
//! read back from a store that others can write to, so the table escapes every
//! cell again ([`text::escape`]) and CSV escapes control characters and defuses
//! spreadsheet formulas.

use std::io::{self, Write};

use scanfleet_common::text;
use scanfleet_common::{PortState, ProbeResult};
use serde::Serialize;

use super::ScanSummary;
use crate::cli::Format;

/// Longest table cell; longer untrusted text is cut with `...`.
const CELL_MAX: usize = 200;

/// Keep what the user asked to see: open ports, or every state with `all_states`.
pub fn visible(results: &[ProbeResult], all_states: bool) -> Vec<&ProbeResult> {
    results
        .iter()
        .filter(|r| all_states || r.state == PortState::Open)
        .collect()
}

/// How many results are open ports.
pub fn open_count(results: &[ProbeResult]) -> usize {
    results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .count()
}

/// Write results in a format.
///
/// # Errors
/// I/O errors of the writer.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    summary: &ScanSummary,
    results: &[&ProbeResult],
) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for r in results {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                #[serde(flatten)]
                summary: &'a ScanSummary,
                results: &'a [&'a ProbeResult],
            }
            serde_json::to_writer_pretty(&mut *out, &Doc { summary, results })?;
            out.write_all(b"\n")?;
        }
        Format::Csv => write_csv(out, results)?,
        Format::Table => write_table(out, results)?,
    }
    out.flush()
}

pub(crate) fn csv_field(s: &str) -> String {
    // Control characters from the store are escaped, as in the table; other text
    // (UTF-8 included) is kept as it is.
    let escaped;
    let s = if s.chars().any(char::is_control) {
        escaped = text::escape(s, usize::MAX);
        escaped.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(['=', '+', '-', '@']) {
        // Quote, and defuse spreadsheet formulas in untrusted text.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(out: &mut dyn Write, results: &[&ProbeResult]) -> io::Result<()> {
    writeln!(
        out,
        "scan_id,asset_id,ip,port,protocol,state,reason,service,product,version,cpe,banner"
    )?;
    for r in results {
        let s = r.service.as_ref();
        let cols = [
            r.scan_id.clone(),
            r.asset_id.clone(),
            r.ip.to_string(),
            r.port.to_string(),
            r.protocol.as_str().to_string(),
            r.state.as_str().to_string(),
            r.reason.clone(),
            s.map(|s| s.name.clone()).unwrap_or_default(),
            s.and_then(|s| s.product.clone()).unwrap_or_default(),
            s.and_then(|s| s.version.clone()).unwrap_or_default(),
            s.and_then(|s| s.cpe.clone()).unwrap_or_default(),
            s.and_then(|s| s.banner.clone()).unwrap_or_default(),
        ];
        let line: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

fn write_table(out: &mut dyn Write, results: &[&ProbeResult]) -> io::Result<()> {
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            let s = r.service.as_ref();
            let version = s
                .map(|s| {
                    [s.product.as_deref(), s.version.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            [
                r.ip.to_string(),
                format!("{}/{}", r.port, r.protocol.as_str()),
                r.state.as_str().to_string(),
                text::escape(s.map_or("", |s| s.name.as_str()), CELL_MAX),
                text::escape(&version, CELL_MAX),
            ]
        })
        .collect();
    let head = ["HOST", "PORT", "STATE", "SERVICE", "VERSION"];
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(head))?;
    for row in &rows {
        writeln!(
            out,
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]])
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::{Protocol, ServiceInfo};

    fn result(port: u16, state: PortState, banner: &str) -> ProbeResult {
        ProbeResult {
            scan_id: "s1".into(),
            asset_id: "i-1".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            state,
            reason: "syn-ack".into(),
            service: Some(ServiceInfo {
                name: "ssh".into(),
                product: Some("OpenSSH".into()),
                version: Some("9.2p1".into()),
                banner: Some(banner.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn table_cells_from_the_store_are_escaped() {
        let mut r = result(22, PortState::Open, "");
        if let Some(s) = r.service.as_mut() {
            s.name = "ssh\u{1b}]0;pwned\u{7}".into();
            s.product = Some("Open\u{202e}SSH".into());
        }
        let mut buf = Vec::new();
        write(&mut buf, Format::Table, &summary(), &[&r]).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(
            t.contains("ssh\\x1b]0;pwned\\x07") && t.contains("Open\\xe2\\x80\\xaeSSH"),
            "{t}"
        );
    }

    fn summary() -> ScanSummary {
        ScanSummary {
            scan_id: "s1".into(),
            engine: "syn".into(),
            started_at_unix_ms: 0,
            finished_at_unix_ms: 1,
            targets: 1,
            hosts_up: Some(1),
            ports_per_target: 2,
            open_ports: 1,
            shards_total: 1,
            shards_failed: 0,
            skipped: vec![],
            notes: vec![],
        }
    }

    fn render(format: Format, all: bool) -> String {
        let rs = vec![
            result(22, PortState::Open, "=cmd|\"x\",y"),
            result(23, PortState::Closed, ""),
        ];
        let mut buf = Vec::new();
        write(&mut buf, format, &summary(), &visible(&rs, all)).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn jsonl_has_the_contract_fields() {
        let text = render(Format::Jsonl, false);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        let v = &lines[0];
        for k in [
            "scan_id", "asset_id", "ip", "port", "protocol", "state", "service",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(
            (
                v["protocol"].as_str(),
                v["state"].as_str(),
                v["service"]["name"].as_str()
            ),
            (Some("tcp"), Some("open"), Some("ssh"))
        );
        assert_eq!(render(Format::Jsonl, true).lines().count(), 2);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let text = render(Format::Csv, false);
        let row = text.lines().nth(1).unwrap();
        assert!(row.ends_with(r#","'=cmd|""x"",y""#), "{row}");
    }

    #[test]
    fn table_and_json() {
        let t = render(Format::Table, false);
        assert!(t.starts_with("HOST"));
        assert!(t.contains("22/tcp") && t.contains("OpenSSH 9.2p1"));
        let j: serde_json::Value = serde_json::from_str(&render(Format::Json, false)).unwrap();
        assert_eq!(j["scan_id"], "s1");
        assert_eq!(j["results"].as_array().unwrap().len(), 1);
    }
}
