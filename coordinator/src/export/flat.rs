//! `jsonl` (one finding as JSON per line, every field) and `csv` (one finding per
//! row, nested fields flattened, cells escaped as the results CSV escapes them).

use std::io::{self, Write};

use crate::export::{Export, rfc3339_ms};
use crate::findings::Finding;
use crate::report::csv_field;

/// The CSV header; [`csv_row`] writes the cells in this order.
pub(crate) const CSV_HEADER: [&str; 35] = [
    "id",
    "kind",
    "scan_id",
    "asset_id",
    "ip",
    "port",
    "protocol",
    "state",
    "region",
    "account_id",
    "vpc_id",
    "subnet_id",
    "instance_type",
    "tags",
    "service",
    "product",
    "version",
    "cpe",
    "banner",
    "extra",
    "rules",
    "title",
    "base_score",
    "score",
    "severity",
    "reasons",
    "internet_reachable",
    "network_path",
    "public_ip",
    "first_observed",
    "last_observed",
    "suppressed",
    "suppressed_rule",
    "suppressed_reason",
    "suppressed_expires",
];

pub(crate) fn jsonl(ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    for f in ex.findings {
        serde_json::to_writer(&mut *w, f)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

pub(crate) fn csv(ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{}", CSV_HEADER.join(","))?;
    for f in ex.findings {
        let cells: Vec<String> = csv_row(f).iter().map(|c| csv_field(c)).collect();
        writeln!(w, "{}", cells.join(","))?;
    }
    Ok(())
}

/// `key=value` pairs joined with `;`.
fn pairs<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    it.map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Reasons as `code (+delta): text`, joined with ` | `.
pub(crate) fn reasons_text(f: &Finding) -> String {
    f.reasons
        .iter()
        .map(|r| format!("{} ({:+.1}): {}", r.code, r.delta, r.text))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The raw (unescaped) cells of one finding, in [`CSV_HEADER`] order.
fn csv_row(f: &Finding) -> [String; 35] {
    let s = f.service.as_ref();
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let sup = f.suppressed.as_ref();
    [
        f.id.clone(),
        serde_plain(&f.kind),
        f.scan_id.clone(),
        f.asset_id.clone(),
        f.ip.to_string(),
        f.port.to_string(),
        f.protocol.as_str().to_string(),
        f.state.as_str().to_string(),
        opt(&f.region),
        opt(&f.account_id),
        opt(&f.vpc_id),
        opt(&f.subnet_id),
        opt(&f.instance_type),
        pairs(f.tags.iter()),
        s.map(|s| s.name.clone()).unwrap_or_default(),
        s.and_then(|s| s.product.clone()).unwrap_or_default(),
        s.and_then(|s| s.version.clone()).unwrap_or_default(),
        s.and_then(|s| s.cpe.clone()).unwrap_or_default(),
        s.and_then(|s| s.banner.clone()).unwrap_or_default(),
        s.map(|s| pairs(s.extra.iter())).unwrap_or_default(),
        f.rules.join(";"),
        f.title.clone(),
        format!("{:.1}", f.base_score),
        format!("{:.1}", f.score),
        f.severity.as_str().to_string(),
        reasons_text(f),
        f.internet_reachable.to_string(),
        f.network_path
            .iter()
            .map(|p| format!("{}:{}", p.kind, p.id))
            .collect::<Vec<_>>()
            .join(" > "),
        f.exposure
            .as_ref()
            .map(|e| e.public_ip.to_string())
            .unwrap_or_default(),
        rfc3339_ms(f.first_observed_unix_ms),
        rfc3339_ms(f.last_observed_unix_ms),
        sup.is_some().to_string(),
        sup.map(|s| s.rule.clone()).unwrap_or_default(),
        sup.map(|s| s.reason.clone()).unwrap_or_default(),
        sup.and_then(|s| s.expires_unix_ms)
            .map(rfc3339_ms)
            .unwrap_or_default(),
    ]
}

/// A unit enum's serde name (`open-port`).
pub(crate) fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
