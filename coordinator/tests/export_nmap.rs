//! `nmap-xml`: valid against nmap's DTD (Debian's nmap-common ships it; nothing is
//! fetched), the structure nmap tools read, and Debian's `ndiff` on two exports
//! that differ reports the port that went, the port that came and the service
//! that changed.

#[path = "fixtures/export/findings.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use scanfleet_coordinator::export::{self, Format};

const DTD: &str = "/usr/share/nmap/nmap.dtd";

fn render(scan: &fixture::Scan) -> String {
    let mut out = Vec::new();
    export::write(Format::NmapXml, &scan.export(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn save(dir: &Path, name: &str, xml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, xml).unwrap();
    p
}

#[test]
fn export_is_valid_against_nmaps_dtd() {
    assert!(
        Path::new(DTD).exists(),
        "{DTD} is missing: scripts/setup.sh installs nmap (Debian's nmap-common ships the DTD)"
    );
    let dir = tempfile::tempdir().unwrap();
    let xml = render(&fixture::scan("exp-nmap-dtd"));
    let file = save(dir.path(), "scan.xml", &xml);
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--dtdvalid", DTD])
        .arg(&file)
        .output()
        .expect("xmllint (libxml2-utils; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "xmllint: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_lists_hosts_ports_states_reasons_and_services() {
    let xml = render(&fixture::scan("exp-nmap-structure"));
    let doc = roxmltree::Document::parse_with_options(
        &xml,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "nmaprun");
    assert_eq!(root.attribute("scanner"), Some("nmap"));
    assert_eq!(root.attribute("start"), Some("1780000000"));
    let info = root
        .children()
        .find(|n| n.has_tag_name("scaninfo"))
        .unwrap();
    assert_eq!(info.attribute("type"), Some("syn"));
    assert_eq!(info.attribute("services"), Some("22-23,443,3389,6379,8080"));
    assert_eq!(info.attribute("numservices"), Some("6"));

    let hosts: Vec<_> = root.children().filter(|n| n.has_tag_name("host")).collect();
    let addr = |h: &roxmltree::Node| {
        h.children()
            .find(|n| n.has_tag_name("address"))
            .and_then(|a| a.attribute("addr"))
            .unwrap()
            .to_string()
    };
    let status = |h: &roxmltree::Node| {
        h.children()
            .find(|n| n.has_tag_name("status"))
            .and_then(|a| a.attribute("state"))
            .unwrap()
            .to_string()
    };
    let listed: Vec<(String, String)> = hosts.iter().map(|h| (addr(h), status(h))).collect();
    assert_eq!(
        listed,
        [
            ("10.0.0.5".to_string(), "up".to_string()),
            ("10.0.0.9".into(), "up".into()),
            ("10.0.0.7".into(), "skipped".into())
        ]
    );
    // The skipped asset's id (hostile markup) is an attribute value, not markup.
    let skipped_name = hosts[2]
        .descendants()
        .find(|n| n.has_tag_name("hostname"))
        .and_then(|n| n.attribute("name"));
    assert_eq!(skipped_name, Some("i-0fff<img src=x onerror=alert(2)>"));
    assert_eq!(
        hosts[2]
            .children()
            .find(|n| n.has_tag_name("status"))
            .unwrap()
            .attribute("reason"),
        Some("not-running")
    );

    let ports: Vec<(String, String, String, String)> = hosts[..2]
        .iter()
        .flat_map(|h| h.descendants().filter(|n| n.has_tag_name("port")))
        .map(|p| {
            let st = p.children().find(|n| n.has_tag_name("state")).unwrap();
            let svc = p.children().find(|n| n.has_tag_name("service"));
            (
                p.attribute("portid").unwrap().to_string(),
                st.attribute("state").unwrap().to_string(),
                st.attribute("reason").unwrap().to_string(),
                svc.and_then(|s| s.attribute("name"))
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("22", "open", "syn-ack", "ssh"),
        ("23", "open", "syn-ack", "telnet"),
        ("443", "open", "syn-ack", "https"),
        ("3389", "closed", "reset", ""),
        ("6379", "open", "syn-ack", "redis"),
        ("8080", "filtered", "no-response", ""),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(ports, want);

    let ssh = doc
        .descendants()
        .find(|n| n.has_tag_name("port") && n.attribute("portid") == Some("22"))
        .unwrap();
    let svc = ssh.children().find(|n| n.has_tag_name("service")).unwrap();
    assert_eq!(svc.attribute("product"), Some("OpenSSH"));
    assert_eq!(svc.attribute("version"), Some("9.2p1"));
    assert_eq!(
        svc.children()
            .find(|n| n.has_tag_name("cpe"))
            .and_then(|c| c.text()),
        Some("cpe:/a:ssh:openssh:9.2p1")
    );
    // The hostile banner is text of the finding script (one script per port).
    let telnet = doc
        .descendants()
        .find(|n| n.has_tag_name("port") && n.attribute("portid") == Some("23"))
        .unwrap();
    let banner = telnet
        .descendants()
        .find(|n| n.has_tag_name("elem") && n.attribute("key") == Some("banner"))
        .unwrap();
    assert_eq!(banner.text(), Some(fixture::EVIL_BANNER));
    let finding = telnet
        .children()
        .find(|n| n.attribute("id") == Some("scanfleet-finding"))
        .unwrap();
    assert_eq!(
        finding.attribute("output"),
        Some("SF-TELNET critical 9.5: telnet open on 10.0.0.5:23/tcp")
    );

    let runstats = root
        .children()
        .find(|n| n.has_tag_name("runstats"))
        .unwrap();
    let counts = runstats
        .children()
        .find(|n| n.has_tag_name("hosts"))
        .unwrap();
    assert_eq!(
        (
            counts.attribute("up"),
            counts.attribute("down"),
            counts.attribute("total")
        ),
        (Some("2"), Some("1"), Some("3"))
    );
    let finished = runstats
        .children()
        .find(|n| n.has_tag_name("finished"))
        .unwrap();
    assert_eq!(finished.attribute("elapsed"), Some("60.00"));
    assert_eq!(finished.attribute("exit"), Some("success"));
}

#[test]
fn ndiff_reads_two_exports_and_reports_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old = fixture::scan("exp-nmap-old");
    let mut new = fixture::scan("exp-nmap-new");
    // A port gone, a port new, a service changed.
    new.remove("10.0.0.5", 22);
    new.add(fixture::finding(
        "exp-nmap-new",
        "i-0abc1234def567890",
        "10.0.0.5",
        5900,
        "SF-VNC",
        7.0,
        7.0,
        Some(fixture::service("vnc", "RealVNC", "6.1", "RFB 003.008")),
    ));
    for r in &mut new.results {
        if r.port == 6379
            && let Some(s) = r.service.as_mut()
        {
            s.version = Some("7.2.4".into());
        }
    }
    let a = save(dir.path(), "old.xml", &render(&old));
    let b = save(dir.path(), "new.xml", &render(&new));
    let out = Command::new("ndiff")
        .arg(&a)
        .arg(&b)
        .output()
        .expect("ndiff (Debian package ndiff; scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    // ndiff exits 1 when the scans differ, 2 on an error (a file it cannot read).
    assert_eq!(
        out.status.code(),
        Some(1),
        "ndiff: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let has = |prefix: &str, words: &[&str]| {
        lines.iter().any(|l| {
            l.starts_with(prefix) && words.iter().all(|w| l.split_whitespace().any(|x| x == *w))
        })
    };
    assert!(
        has("-22/tcp", &["open", "ssh", "OpenSSH", "9.2p1"]),
        "{text}"
    );
    assert!(
        has("+5900/tcp", &["open", "vnc", "RealVNC", "6.1"]),
        "{text}"
    );
    assert!(has("-6379/tcp", &["open", "redis", "7.0.15"]), "{text}");
    assert!(has("+6379/tcp", &["open", "redis", "7.2.4"]), "{text}");
    // Ports that did not change are not reported as changed.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(['-', '+']) && l.contains("23/tcp")),
        "{text}"
    );
    // The same export twice: no difference (exit 0).
    let same = Command::new("ndiff").arg(&a).arg(&a).output().unwrap();
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
}
