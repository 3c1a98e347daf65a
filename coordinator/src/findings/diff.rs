//! `scanfleet diff OLD NEW`: the open ports of two scans, keyed by finding id
//! (so an instance whose address changed is still the same exposure), as new,
//! gone and changed (service name, product or version).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

/// What a diff compares of one open port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    pub id: String,
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl PortView {
    /// `ssh OpenSSH 9.2p1`, or `-` when nothing was identified.
    pub fn service_line(&self) -> String {
        let parts: Vec<&str> = [&self.service, &self.product, &self.version]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

/// A port open in both scans whose service changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub old: PortView,
    pub new: PortView,
}

/// The difference of two scans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub old_scan: String,
    pub new_scan: String,
    /// Open in the new scan only.
    pub new: Vec<PortView>,
    /// Open in the old scan only.
    pub gone: Vec<PortView>,
    /// Open in both, with a different service, product or version.
    pub changed: Vec<Changed>,
    /// Open in both, unchanged.
    pub unchanged: usize,
}

impl Diff {
    /// Compare the open ports of two scans, each keyed by finding id.
    pub fn of(
        old_scan: &str,
        new_scan: &str,
        old: BTreeMap<String, PortView>,
        mut new: BTreeMap<String, PortView>,
    ) -> Diff {
        let mut d = Diff {
            old_scan: old_scan.into(),
            new_scan: new_scan.into(),
            ..Diff::default()
        };
        for (id, o) in old {
            match new.remove(&id) {
                None => d.gone.push(o),
                Some(n) => {
                    let same = (&o.service, &o.product, &o.version)
                        == (&n.service, &n.product, &n.version);
                    if same {
                        d.unchanged += 1;
                    } else {
                        d.changed.push(Changed { old: o, new: n });
                    }
                }
            }
        }
        d.new = new.into_values().collect();
        d
    }

    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.gone.is_empty() && self.changed.is_empty()
    }

    /// The table: one line per difference, `+` new, `-` gone, `~` changed.
    pub fn table(&self) -> String {
        use scanfleet_common::text::escape;
        let mut s = format!(
            "diff {} -> {}: {} new, {} gone, {} changed, {} unchanged\n",
            self.old_scan,
            self.new_scan,
            self.new.len(),
            self.gone.len(),
            self.changed.len(),
            self.unchanged
        );
        let addr = |p: &PortView| format!("{}:{}/{}", p.ip, p.port, p.protocol);
        for p in &self.new {
            s.push_str(&format!(
                "+ {:<28} {:<40} {}\n",
                addr(p),
                escape(&p.service_line(), 60),
                p.id
            ));
        }
        for p in &self.gone {
            s.push_str(&format!(
                "- {:<28} {:<40} {}\n",
                addr(p),
                escape(&p.service_line(), 60),
                p.id
            ));
        }
        for c in &self.changed {
            s.push_str(&format!(
                "~ {:<28} {} -> {}   {}\n",
                addr(&c.new),
                escape(&c.old.service_line(), 60),
                escape(&c.new.service_line(), 60),
                c.new.id
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, port: u16, service: Option<&str>, version: Option<&str>) -> (String, PortView) {
        (
            id.to_string(),
            PortView {
                id: id.into(),
                ip: "10.0.0.1".parse().unwrap(),
                port,
                protocol: "tcp".into(),
                service: service.map(String::from),
                product: None,
                version: version.map(String::from),
            },
        )
    }

    #[test]
    fn new_gone_changed_and_unchanged() {
        let old = BTreeMap::from([
            v("a/22", 22, Some("ssh"), Some("8.9")),
            v("a/80", 80, Some("http"), None),
            v("a/25", 25, Some("smtp"), None),
        ]);
        let new = BTreeMap::from([
            v("a/22", 22, Some("ssh"), Some("9.6")),
            v("a/80", 80, Some("http"), None),
            v("a/443", 443, Some("https"), None),
        ]);
        let d = Diff::of("s1", "s2", old, new);
        assert_eq!(d.new.iter().map(|p| p.port).collect::<Vec<_>>(), [443]);
        assert_eq!(d.gone.iter().map(|p| p.port).collect::<Vec<_>>(), [25]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].old.version.as_deref(), Some("8.9"));
        assert_eq!(d.unchanged, 1);
        let t = d.table();
        assert!(
            t.starts_with("diff s1 -> s2: 1 new, 1 gone, 1 changed, 1 unchanged"),
            "{t}"
        );
        assert!(
            t.contains("+ 10.0.0.1:443/tcp") && t.contains("- 10.0.0.1:25/tcp"),
            "{t}"
        );
        assert!(t.contains("ssh 8.9 -> ssh 9.6"), "{t}");
        assert!(!d.is_empty());
        let same = Diff::of(
            "a",
            "b",
            BTreeMap::from([v("x", 1, None, None)]),
            BTreeMap::from([v("x", 1, None, None)]),
        );
        assert!(same.is_empty());
        assert_eq!(same.unchanged, 1);
    }

    #[test]
    fn banners_are_escaped_in_the_table() {
        let new = BTreeMap::from([v("a/1", 1, Some("x\u{1b}[31m"), None)]);
        let t = Diff::of("s1", "s2", BTreeMap::new(), new).table();
        assert!(!t.contains('\u{1b}'), "{t}");
    }
}
