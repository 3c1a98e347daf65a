//! `jsonl` and `csv` exports: one finding per line or row, every field, CSV cells
//! escaped (control characters) and defused (formula-leading characters).

#[path = "fixtures/export/findings.rs"]
mod fixture;

use scanfleet_coordinator::export::{self, Format};
use scanfleet_coordinator::findings::Finding;

fn render(format: Format, scan: &fixture::Scan) -> String {
    let mut out = Vec::new();
    export::write(format, &scan.export(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn jsonl_is_one_complete_finding_per_line() {
    let scan = fixture::scan("exp-flat-1");
    let text = render(Format::Jsonl, &scan);
    let back: Vec<Finding> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Every field survives: the lines read back as the findings, in order.
    assert_eq!(back, scan.findings);
    assert_eq!(text.lines().count(), 5);
    assert!(!text.contains('\u{1b}'), "raw control character in {text}");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["id"],
        "us-east-1/111122223333/i-0abc1234def567890/tcp/23"
    );
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["reasons"][1]["code"], "internet-reachable");
}

/// A minimal RFC 4180 reader (quoted cells, doubled quotes), to read the CSV back.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

#[test]
fn csv_has_every_field_escaped_and_defused() {
    let scan = fixture::scan("exp-flat-2");
    let text = render(Format::Csv, &scan);
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 6, "{text}");
    let head = &rows[0];
    assert!(
        rows.iter().all(|r| r.len() == head.len()),
        "ragged rows: {text}"
    );
    let col = |name: &str| {
        head.iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let telnet = &rows[1];
    assert_eq!(
        telnet[col("id")],
        "us-east-1/111122223333/i-0abc1234def567890/tcp/23"
    );
    assert_eq!(telnet[col("kind")], "open-port");
    assert_eq!(telnet[col("port")], "23");
    assert_eq!(telnet[col("severity")], "critical");
    assert_eq!(telnet[col("score")], "9.5");
    assert_eq!(telnet[col("base_score")], "8.0");
    assert_eq!(telnet[col("banner")], fixture::EVIL_BANNER);
    assert_eq!(
        telnet[col("reasons")],
        "SF-TELNET (+8.0): telnet exposes a risky service | internet-reachable (+1.5): \
         the internet reaches this port through igw-0a1b2c"
    );
    assert_eq!(
        telnet[col("network_path")],
        "internet-gateway:igw-0a1b2c > route-table:rtb-0d1e2f > network-acl:acl-0a0b0c > \
         security-group:sg-0123456789abcdef0 > instance:i-0abc1234def567890"
    );
    assert_eq!(telnet[col("public_ip")], "203.0.113.10");
    assert_eq!(telnet[col("first_observed")], "2026-05-28T20:26:40.000Z");
    // Control characters are escaped, not written raw.
    assert_eq!(telnet[col("extra")], "note=line1\\nline2\\x1b[31m");
    assert!(!text.contains('\u{1b}'));
    // A tag starting with `=` is defused; other tags keep their text.
    assert_eq!(
        telnet[col("tags")],
        "Name=<b>web</b> & \"db\";Owner==HYPERLINK(\"http://x\")"
    );
    let owner_first = fixture::scan("exp-flat-3");
    let mut f = owner_first.findings[0].clone();
    f.title = "=1+2".into();
    f.tags.clear();
    let one = fixture::Scan {
        findings: vec![f],
        ..owner_first
    };
    let rows = parse_csv(&render(Format::Csv, &one));
    assert_eq!(rows[1][col("title")], "'=1+2");
    // The latent exposure and the suppression are in their columns.
    let rdp = rows_by_port(&parse_csv(&text), col("port"), "3389");
    assert_eq!(rdp[col("kind")], "latent-exposure");
    assert_eq!(rdp[col("state")], "closed");
    let https = rows_by_port(&parse_csv(&text), col("port"), "443");
    assert_eq!(https[col("suppressed")], "true");
    assert_eq!(https[col("suppressed_rule")], "sup-lab");
    assert_eq!(https[col("suppressed_expires")], "2026-05-29T20:26:40.000Z");
    let redis = rows_by_port(&parse_csv(&text), col("port"), "6379");
    assert_eq!(redis[col("account_id")], "");
    assert_eq!(redis[col("asset_id")], "10.0.0.9");
}

fn rows_by_port(rows: &[Vec<String>], col: usize, port: &str) -> Vec<String> {
    rows.iter().find(|r| r[col] == port).cloned().unwrap()
}
