//! `html`: one self-contained report file. Summary, a severity chart (inline
//! SVG), the findings table (sortable and filterable by a small inline script,
//! rendered on the server so it reads without script too), each asset's ports,
//! findings and path from the internet, the skipped assets with their reasons.
//!
//! Nothing is fetched: no external script, style, font or image, and a
//! Content-Security-Policy of `default-src 'none'` says so to the browser. Every
//! string from the scan (banners, tags, titles, ids, reasons) is escaped for the
//! HTML context it lands in by [`esc`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use scanfleet_common::{PortState, ProbeResult, text};

use crate::export::{Export, rfc3339_ms};
use crate::findings::{Finding, Severity};

const SCRIPT: &str = include_str!("report.js");
const STYLE: &str = include_str!("report.css");

/// Untrusted text for HTML text and quoted attribute values: control characters
/// escaped as the results table escapes them, then `& < > " '` as entities.
pub(crate) fn esc(s: &str) -> String {
    let cleaned;
    let s = if s.chars().any(char::is_control) {
        cleaned = text::escape(s, usize::MAX);
        cleaned.as_str()
    } else {
        s
    };
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn sev_num(s: Severity) -> usize {
    Severity::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// A key that sorts addresses numerically as text.
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("4-{:010}", u32::from(v4)),
        IpAddr::V6(v6) => format!("6-{:039}", u128::from(v6)),
    }
}

fn version(f: &Finding) -> String {
    f.service
        .as_ref()
        .map(|s| {
            [s.product.as_deref(), s.version.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub(crate) fn write(ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    let rec = ex.record;
    let mut h = String::with_capacity(64 * 1024 + ex.findings.len() * 1024);
    let title = format!("scanfleet report: scan {}", rec.scan_id);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; \
         base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    let finished = rec
        .finished_unix_ms
        .map_or_else(|| "not finished".to_string(), rfc3339_ms);
    let _ = writeln!(
        h,
        "<p class=\"meta\">Started {} &middot; finished {} &middot; engine {} &middot; ports \
         <code>{}</code> &middot; {} targets</p>",
        esc(&rfc3339_ms(rec.started_unix_ms)),
        esc(&finished),
        esc(&rec.engine),
        esc(&rec.ports),
        rec.targets
    );
    if !rec.args.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"meta\">Command: <code>{}</code></p>",
            esc(&rec.args)
        );
    }

    summary(&mut h, ex);
    findings_table(&mut h, ex.findings);
    assets(&mut h, ex);
    skipped(&mut h, ex);
    if !rec.notes.is_empty() {
        h.push_str("<h2 id=\"notes\">Notes</h2>\n<ul>\n");
        for n in &rec.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }
    let _ = write!(
        h,
        "<footer class=\"meta\"><p>Written by scanfleet {}.</p></footer>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    w.write_all(h.as_bytes())
}

fn summary(h: &mut String, ex: &Export<'_>) {
    let mut by_sev = [0usize; 5];
    for f in ex.findings {
        by_sev[sev_num(f.severity)] += 1;
    }
    let hosts: std::collections::BTreeSet<IpAddr> = ex.results.iter().map(|r| r.ip).collect();
    let open = ex
        .results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .count();
    let suppressed = ex
        .findings
        .iter()
        .filter(|f| f.suppressed.is_some())
        .count();
    let reachable = ex.findings.iter().filter(|f| f.internet_reachable).count();
    h.push_str("<h2 id=\"summary\">Summary</h2>\n<div class=\"cards\">\n");
    for (label, n) in [
        ("findings", ex.findings.len()),
        ("internet reachable", reachable),
        ("hosts with results", hosts.len()),
        ("open ports", open),
        ("suppressed", suppressed),
        ("skipped assets", ex.record.skipped.len()),
    ] {
        let _ = writeln!(h, "<div class=\"card\"><b>{n}</b>{label}</div>");
    }
    h.push_str("</div>\n");

    // The chart: one bar per severity, most severe first.
    let max = by_sev.iter().copied().max().unwrap_or(0).max(1);
    let (bar_h, gap, label_w, width) = (22, 8, 110, 520);
    let height = 5 * (bar_h + gap) + gap;
    let _ = writeln!(
        h,
        "<svg id=\"severity-chart\" role=\"img\" aria-label=\"Findings by severity\" \
         width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    let colors = ["#607d8b", "#f9a825", "#ef6c00", "#c62828", "#7b1fa2"];
    for (row, i) in (0..5).rev().enumerate() {
        let y = gap + row * (bar_h + gap);
        let len = (width - label_w - 50) * by_sev[i] / max;
        let _ = writeln!(
            h,
            "<g data-severity=\"{}\"><text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{len}\" height=\"{bar_h}\" fill=\"{}\"/>\
             <text class=\"count\" x=\"{}\" y=\"{}\" font-size=\"13\">{}</text></g>",
            Severity::ALL[i],
            y + 16,
            Severity::ALL[i],
            colors[i],
            label_w + len + 6,
            y + 16,
            by_sev[i]
        );
    }
    h.push_str("</svg>\n");
}

fn findings_table(h: &mut String, findings: &[Finding]) {
    let _ = writeln!(
        h,
        "<h2 id=\"findings-title\">Findings</h2>\n<div class=\"controls\">\
         <label>Filter <input id=\"filter-text\" type=\"search\" placeholder=\"address, service, rule, tag...\"></label>\
         <label>At least <select id=\"filter-severity\">{}</select></label>\
         <label><input id=\"filter-suppressed\" type=\"checkbox\" checked> show suppressed</label>\
         <span><span id=\"shown\">{}</span> of {} shown</span></div>",
        Severity::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| format!("<option value=\"{i}\">{s}</option>"))
            .collect::<String>(),
        findings.len(),
        findings.len()
    );
    h.push_str(
        "<table id=\"findings\">\n<thead><tr>\
         <th data-key=\"score\">Score</th><th data-key=\"severity\">Severity</th>\
         <th data-key=\"asset\">Asset</th><th data-key=\"ipkey\">Address</th>\
         <th data-key=\"port\">Port</th><th data-key=\"service\">Service</th><th>Version</th>\
         <th data-key=\"rule\">Rule</th><th>Title and reasons</th>\
         <th data-key=\"first\">First observed</th><th data-key=\"last\">Last observed</th>\
         </tr></thead>\n<tbody>\n",
    );
    for f in findings {
        let svc = f.service.as_ref().map_or("", |s| s.name.as_str());
        let rule = f.rules.first().map_or("", String::as_str);
        let tags = f
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let search = [
            f.id.clone(),
            f.asset_id.clone(),
            f.ip.to_string(),
            f.port.to_string(),
            svc.to_string(),
            version(f),
            f.rules.join(" "),
            f.title.clone(),
            tags,
        ]
        .join(" ")
        .to_lowercase();
        let sev = sev_num(f.severity);
        let _ = write!(
            h,
            "<tr id=\"f-{}\" data-id=\"{}\" data-score=\"{:.1}\" data-severity=\"{sev}\" \
             data-asset=\"{}\" data-ipkey=\"{}\" data-port=\"{}\" data-service=\"{}\" \
             data-rule=\"{}\" data-first=\"{}\" data-last=\"{}\" data-suppressed=\"{}\" \
             data-text=\"{}\"{}>",
            anchor(&f.id),
            esc(&f.id),
            f.score,
            esc(&f.asset_id),
            ip_key(f.ip),
            f.port,
            esc(svc),
            esc(rule),
            f.first_observed_unix_ms,
            f.last_observed_unix_ms,
            f.suppressed.is_some(),
            esc(&search),
            if f.suppressed.is_some() {
                " class=\"suppressed\""
            } else {
                ""
            },
        );
        let _ = write!(
            h,
            "<td class=\"num\">{:.1}</td><td><span class=\"sev sev-{sev}\">{}</span></td>\
             <td><a href=\"#asset-{}\">{}</a></td><td class=\"mono\">{}</td>\
             <td class=\"num\">{}/{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}",
            f.score,
            f.severity,
            anchor(&f.asset_id),
            esc(&f.asset_id),
            f.ip,
            f.port,
            f.protocol.as_str(),
            esc(svc),
            esc(&version(f)),
            esc(rule),
            esc(&f.title),
        );
        if let Some(s) = &f.suppressed {
            let _ = write!(
                h,
                " <em>(suppressed by {}: {}{})</em>",
                esc(&s.rule),
                esc(&s.reason),
                s.expires_unix_ms
                    .map(|e| format!(", until {}", rfc3339_ms(e)))
                    .unwrap_or_default()
            );
        }
        h.push_str("<ul class=\"reasons\">");
        for r in &f.reasons {
            let _ = write!(
                h,
                "<li><code>{}</code> {:+.1}: {}</li>",
                esc(&r.code),
                r.delta,
                esc(&r.text)
            );
        }
        let _ = writeln!(
            h,
            "</ul></td><td>{}</td><td>{}</td></tr>",
            rfc3339_ms(f.first_observed_unix_ms),
            rfc3339_ms(f.last_observed_unix_ms)
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// An id attribute value from untrusted text: only `[A-Za-z0-9_-]`, the rest as `_xx`.
fn anchor(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "_{b:02x}");
        }
    }
    out
}

fn assets(h: &mut String, ex: &Export<'_>) {
    #[derive(Default)]
    struct Asset<'a> {
        ips: std::collections::BTreeSet<IpAddr>,
        results: Vec<&'a ProbeResult>,
        findings: Vec<&'a Finding>,
    }
    let mut by: BTreeMap<&str, Asset<'_>> = BTreeMap::new();
    for r in ex.results {
        let a = by.entry(&r.asset_id).or_default();
        a.ips.insert(r.ip);
        a.results.push(r);
    }
    for f in ex.findings {
        let a = by.entry(&f.asset_id).or_default();
        a.ips.insert(f.ip);
        a.findings.push(f);
    }
    h.push_str("<h2 id=\"assets\">Assets</h2>\n");
    for (id, a) in &by {
        let first = a.findings.first();
        let _ = writeln!(
            h,
            "<section class=\"asset\" id=\"asset-{}\"><h3>{}</h3>",
            anchor(id),
            esc(id)
        );
        let mut facts: Vec<(&str, String)> = vec![(
            "Addresses",
            a.ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        )];
        if let Some(f) = first {
            for (k, v) in [
                ("Account", &f.account_id),
                ("Region", &f.region),
                ("VPC", &f.vpc_id),
                ("Subnet", &f.subnet_id),
                ("Instance type", &f.instance_type),
            ] {
                if let Some(v) = v {
                    facts.push((k, v.clone()));
                }
            }
            if !f.tags.is_empty() {
                facts.push((
                    "Tags",
                    f.tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            if let Some(e) = a.findings.iter().find_map(|f| f.exposure.as_ref()) {
                facts.push(("Public address", e.public_ip.to_string()));
            }
        }
        h.push_str("<table class=\"facts\">");
        for (k, v) in facts {
            let _ = write!(
                h,
                "<tr><th>{k}</th><td class=\"mono\">{}</td></tr>",
                esc(&v)
            );
        }
        h.push_str("</table>\n");

        let mut results = a.results.clone();
        results.sort_by_key(|r| (r.ip, r.port));
        if !results.is_empty() {
            h.push_str(
                "<h4>Ports</h4><table class=\"ports\"><thead><tr><th>Port</th><th>State</th>\
                 <th>Reason</th><th>Service</th><th>Version</th><th>Banner and facts</th></tr></thead><tbody>",
            );
            for r in results {
                let s = r.service.as_ref();
                let ver = s
                    .map(|s| {
                        [s.product.as_deref(), s.version.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let mut facts = String::new();
                if let Some(s) = s {
                    if let Some(b) = &s.banner {
                        let _ = write!(facts, "<code class=\"banner\">{}</code>", esc(b));
                    }
                    for (k, v) in &s.extra {
                        let _ = write!(facts, "<br><code>{}={}</code>", esc(k), esc(v));
                    }
                }
                let _ = write!(
                    h,
                    "<tr><td class=\"num\">{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{facts}</td></tr>",
                    r.port,
                    r.protocol.as_str(),
                    r.state.as_str(),
                    esc(&r.reason),
                    esc(s.map_or("", |s| s.name.as_str())),
                    esc(&ver),
                );
            }
            h.push_str("</tbody></table>\n");
        }
        if !a.findings.is_empty() {
            h.push_str("<h4>Findings</h4><ul>");
            for f in &a.findings {
                let _ = write!(
                    h,
                    "<li><a href=\"#f-{}\">{}</a> <span class=\"sev sev-{}\">{}</span> {:.1}",
                    anchor(&f.id),
                    esc(&f.title),
                    sev_num(f.severity),
                    f.severity,
                    f.score
                );
                if !f.network_path.is_empty() {
                    let _ = write!(
                        h,
                        "<br>Path from the internet: <code>{}</code>",
                        esc(&f
                            .network_path
                            .iter()
                            .map(|p| format!("{} {}", p.kind, p.id))
                            .collect::<Vec<_>>()
                            .join(" \u{2192} "))
                    );
                }
                h.push_str("</li>");
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</section>\n");
    }
}

fn skipped(h: &mut String, ex: &Export<'_>) {
    let _ = writeln!(
        h,
        "<h2 id=\"skipped\">Skipped assets ({})</h2>",
        ex.record.skipped.len()
    );
    if ex.record.skipped.is_empty() {
        h.push_str("<p>None: scope kept every asset.</p>\n");
        return;
    }
    h.push_str(
        "<table id=\"skipped-table\"><thead><tr><th>Asset</th><th>Address</th><th>Reason</th></tr></thead><tbody>\n",
    );
    for s in &ex.record.skipped {
        let _ = writeln!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&s.asset_id),
            s.ip,
            esc(&s.reason.to_string())
        );
    }
    h.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\"\u{1b}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\\x1b"
        );
        assert_eq!(
            anchor("us-east-1/1/i-0a/tcp/22"),
            "us-east-1_2f1_2fi-0a_2ftcp_2f22"
        );
        assert!(ip_key("10.0.0.9".parse().unwrap()) < ip_key("10.0.0.10".parse().unwrap()));
    }
}
