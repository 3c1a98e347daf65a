//! `nmap-xml`: the scan as nmap's `-oX` output (nmap.dtd, xmloutputversion 1.05),
//! so that `ndiff`, nmap's XSL and the tools that read nmap XML read it: hosts,
//! their ports (open, and closed and filtered when the results kept them), each
//! with its state, reason and service (name, product, version, cpe), the banner as
//! nmap's `banner` script does, the finding (rule, severity, score) as a
//! `scanfleet-finding` script, skipped assets as hosts in state `skipped`,
//! `scaninfo` and `runstats`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use scanfleet_common::{PortState, ProbeResult, Protocol, ServiceInfo, text};

use crate::export::{Export, rfc3339_ms};
use crate::findings::Finding;

/// What `xmloutputversion` nmap 7.9x writes.
const XML_OUTPUT_VERSION: &str = "1.05";

/// One port of one host, from a result or (for a finding whose result the scan
/// did not keep, such as a latent exposure) from the finding.
struct Port<'a> {
    protocol: Protocol,
    port: u16,
    state: PortState,
    reason: &'a str,
    service: Option<&'a ServiceInfo>,
    finding: Option<&'a Finding>,
}

/// A host's asset id and its ports by (port, protocol).
type HostPorts<'a> = (String, BTreeMap<(u16, &'static str), Port<'a>>);

pub(crate) fn write(ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    let mut hosts: BTreeMap<IpAddr, HostPorts<'_>> = BTreeMap::new();
    let findings: BTreeMap<(IpAddr, u16, &str), &Finding> = ex
        .findings
        .iter()
        .map(|f| ((f.ip, f.port, f.protocol.as_str()), f))
        .collect();
    for r in ex.results {
        let host = hosts
            .entry(r.ip)
            .or_insert_with(|| (r.asset_id.clone(), BTreeMap::new()));
        host.1
            .insert((r.port, r.protocol.as_str()), port_of_result(r, &findings));
    }
    for f in ex.findings {
        let host = hosts
            .entry(f.ip)
            .or_insert_with(|| (f.asset_id.clone(), BTreeMap::new()));
        host.1
            .entry((f.port, f.protocol.as_str()))
            .or_insert_with(|| Port {
                protocol: f.protocol,
                port: f.port,
                state: f.state,
                reason: "",
                service: f.service.as_ref(),
                finding: Some(f),
            });
    }

    let rec = ex.record;
    let start = rec.started_unix_ms / 1000;
    let end_ms = rec.finished_unix_ms.unwrap_or(rec.started_unix_ms);
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nmaprun>\n");
    let _ = writeln!(
        out,
        "<nmaprun scanner=\"nmap\" args=\"{}\" start=\"{start}\" startstr=\"{}\" version=\"{}\" \
         xmloutputversion=\"{XML_OUTPUT_VERSION}\">",
        attr(&rec.args),
        attr(&ctime(rec.started_unix_ms)),
        attr(concat!("scanfleet-", env!("CARGO_PKG_VERSION"))),
    );
    let scan_type = if rec.engine == "connect" {
        "connect"
    } else {
        "syn"
    };
    // One scaninfo per protocol the results hold, as nmap writes for -sS -sU.
    for (proto, kind) in [("tcp", scan_type), ("udp", "udp")] {
        let mut ports: Vec<u16> = hosts
            .values()
            .flat_map(|(_, ports)| ports.keys().filter(|(_, p)| *p == proto).map(|(p, _)| *p))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() && proto == "udp" {
            continue;
        }
        let _ = writeln!(
            out,
            "<scaninfo type=\"{kind}\" protocol=\"{proto}\" numservices=\"{}\" services=\"{}\"/>",
            ports.len(),
            ranges(&ports),
        );
    }
    out.push_str("<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n");
    w.write_all(out.as_bytes())?;

    let mut up = 0usize;
    for (ip, (asset, ports)) in &hosts {
        up += 1;
        let mut h = String::with_capacity(1024);
        let responded = ports
            .values()
            .find(|p| p.state != PortState::Filtered)
            .map(|p| nmap_reason(p.state, p.reason));
        let _ = writeln!(
            h,
            "<host starttime=\"{start}\" endtime=\"{}\"><status state=\"up\" reason=\"{}\" \
             reason_ttl=\"0\"/>",
            end_ms / 1000,
            attr(responded.unwrap_or("user-set")),
        );
        address(&mut h, *ip);
        hostname(&mut h, asset, *ip);
        h.push_str("<ports>");
        for p in ports.values() {
            port(&mut h, p);
        }
        h.push_str("</ports>\n</host>\n");
        w.write_all(h.as_bytes())?;
    }
    for s in &rec.skipped {
        let mut h = String::new();
        let _ = writeln!(
            h,
            "<host comment=\"{}\"><status state=\"skipped\" reason=\"{}\" reason_ttl=\"0\"/>",
            attr(&format!("skipped by scope: {}", s.reason)),
            attr(s.reason.kind()),
        );
        address(&mut h, s.ip);
        hostname(&mut h, &s.asset_id, s.ip);
        h.push_str("</host>\n");
        w.write_all(h.as_bytes())?;
    }

    let total = rec.targets.max(up);
    let elapsed = end_ms.saturating_sub(rec.started_unix_ms) as f64 / 1000.0;
    let mut tail = String::new();
    let _ = writeln!(
        tail,
        "<runstats><finished time=\"{}\" timestr=\"{}\" elapsed=\"{elapsed:.2}\" summary=\"{}\" \
         exit=\"success\"/><hosts up=\"{up}\" down=\"{}\" total=\"{total}\"/>\n</runstats>\n\
         </nmaprun>",
        end_ms / 1000,
        attr(&ctime(end_ms)),
        attr(&format!(
            "scanfleet done at {}; {total} IP addresses ({up} hosts up) scanned in {elapsed:.2} \
             seconds",
            ctime(end_ms)
        )),
        total - up,
    );
    w.write_all(tail.as_bytes())
}

fn port_of_result<'a>(
    r: &'a ProbeResult,
    findings: &BTreeMap<(IpAddr, u16, &str), &'a Finding>,
) -> Port<'a> {
    Port {
        protocol: r.protocol,
        port: r.port,
        state: r.state,
        reason: &r.reason,
        service: r.service.as_ref(),
        finding: findings.get(&(r.ip, r.port, r.protocol.as_str())).copied(),
    }
}

fn address(h: &mut String, ip: IpAddr) {
    let kind = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
    let _ = writeln!(h, "<address addr=\"{ip}\" addrtype=\"{kind}\"/>");
}

/// The asset id (an instance id) as a user-set hostname, when it is not the address.
fn hostname(h: &mut String, asset: &str, ip: IpAddr) {
    if asset.is_empty() || asset == ip.to_string() {
        h.push_str("<hostnames/>\n");
    } else {
        let _ = writeln!(
            h,
            "<hostnames><hostname name=\"{}\" type=\"user\"/></hostnames>",
            attr(asset)
        );
    }
}

fn port(h: &mut String, p: &Port<'_>) {
    let _ = write!(
        h,
        "\n<port protocol=\"{}\" portid=\"{}\"><state state=\"{}\" reason=\"{}\" reason_ttl=\"0\"/>",
        p.protocol.as_str(),
        p.port,
        p.state.as_str(),
        attr(nmap_reason(p.state, p.reason)),
    );
    if let Some(s) = p.service.filter(|s| !s.name.is_empty()) {
        let probed = s.product.is_some() || s.version.is_some() || s.banner.is_some();
        let _ = write!(h, "<service name=\"{}\"", attr(&s.name));
        if let Some(v) = &s.product {
            let _ = write!(h, " product=\"{}\"", attr(v));
        }
        if let Some(v) = &s.version {
            let _ = write!(h, " version=\"{}\"", attr(v));
        }
        if s.extra.contains_key("tls.version") {
            h.push_str(" tunnel=\"ssl\"");
        }
        let _ = write!(
            h,
            " method=\"{}\" conf=\"{}\">",
            if probed { "probed" } else { "table" },
            if probed { 10 } else { 3 }
        );
        if let Some(cpe) = &s.cpe {
            let _ = write!(h, "<cpe>{}</cpe>", text_node(cpe));
        }
        h.push_str("</service>");
        // One script per port: ndiff (Debian's, Python 3) cannot sort two. The
        // banner is nmap's `banner` script, or an elem of the finding's script.
        if let (Some(b), None) = (&s.banner, p.finding) {
            let _ = write!(h, "<script id=\"banner\" output=\"{}\"/>", attr(b));
        }
    }
    if let Some(f) = p.finding {
        let output = format!(
            "{} {} {:.1}: {}",
            f.rules.first().map_or("-", String::as_str),
            f.severity,
            f.score,
            f.title
        );
        let _ = write!(
            h,
            "<script id=\"scanfleet-finding\" output=\"{}\"><elem key=\"id\">{}</elem>\
             <elem key=\"severity\">{}</elem><elem key=\"score\">{:.1}</elem>\
             <elem key=\"rules\">{}</elem><elem key=\"first_observed\">{}</elem>",
            attr(&output),
            text_node(&f.id),
            f.severity,
            f.score,
            text_node(&f.rules.join(",")),
            rfc3339_ms(f.first_observed_unix_ms),
        );
        if let Some(b) = p.service.and_then(|s| s.banner.as_ref()) {
            let _ = write!(h, "<elem key=\"banner\">{}</elem>", text_node(b));
        }
        if let Some(s) = &f.suppressed {
            let _ = write!(
                h,
                "<elem key=\"suppressed\">{}</elem>",
                text_node(&format!("{}: {}", s.rule, s.reason))
            );
        }
        h.push_str("</script>");
    }
    h.push_str("</port>");
}

/// nmap's spelling of a state reason (`reset` for a RST, `conn-refused` for a
/// refused connect), or the reason as the worker wrote it.
fn nmap_reason(state: PortState, reason: &str) -> &str {
    match (state, reason) {
        (_, "rst") => "reset",
        (PortState::Open, "connect" | "") => "syn-ack",
        (PortState::Closed, "connect" | "") => "conn-refused",
        (PortState::Filtered, "") => "no-response",
        (_, "icmp-unreachable") => "host-unreach",
        (_, r) => r,
    }
}

/// `22-23,80,443`.
fn ranges(ports: &[u16]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = ports[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// nmap's `startstr` form: `Thu Dec  3 13:40:00 2026` (UTC).
fn ctime(unix_ms: u64) -> String {
    // 2026-12-03T13:40:00.000Z -> parts; the weekday from days since the epoch.
    let iso = rfc3339_ms(unix_ms);
    let (date, time) = iso.split_once('T').unwrap_or((&iso, ""));
    let mut d = date.split('-');
    let (y, m, day) = (
        d.next().unwrap_or("1970"),
        d.next().and_then(|m| m.parse::<usize>().ok()).unwrap_or(1),
        d.next().and_then(|x| x.parse::<u32>().ok()).unwrap_or(1),
    );
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let weekday = DAYS[((unix_ms / 86_400_000) % 7) as usize];
    format!(
        "{weekday} {} {day:>2} {} {y}",
        MONTHS[m.clamp(1, 12) - 1],
        time.get(..8).unwrap_or("00:00:00")
    )
}

/// Untrusted text made safe for XML: control characters and other bytes XML 1.0
/// cannot hold are escaped as the results table escapes them, then markup is escaped.
fn clean(s: &str) -> String {
    if s.chars().any(char::is_control) {
        text::escape(s, usize::MAX)
    } else {
        s.to_string()
    }
}

fn text_node(s: &str) -> String {
    clean(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn attr(s: &str) -> String {
    text_node(s).replace('"', "&quot;").replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_and_times() {
        assert_eq!(ranges(&[22, 23, 80, 443, 444, 445]), "22-23,80,443-445");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[65535]), "65535");
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_780_000_000_000), "Thu May 28 20:26:40 2026");
    }

    #[test]
    fn untrusted_text_cannot_break_out() {
        assert_eq!(attr("a\"<b>&'\u{1}"), "a&quot;&lt;b&gt;&amp;&apos;\\x01");
    }
}
