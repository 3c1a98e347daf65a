//! Suppressions (`--suppressions FILE`, see `data/suppressions.example.toml`): a
//! finding a suppression matches is kept, shown and exported, marked
//! `suppressed` with the suppression's id and reason; never dropped.
//!
//! A suppression matches when every condition it gives holds: `rule` (the
//! finding's base rule, the first of its `rules`), `tag` (`key=value`, or `key`
//! for any value), `account`, `cidr` (the finding's address), `port`. Each needs
//! a `reason`; `expires` (RFC 3339) ends it. The first matching suppression in
//! file order wins.

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::model::{Finding, Suppressed};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "suppression")]
    suppressions: Vec<Raw>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: Option<String>,
    reason: Option<String>,
    expires: Option<String>,
    rule: Option<String>,
    tag: Option<String>,
    account: Option<String>,
    cidr: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

/// One validated suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub id: String,
    pub reason: String,
    pub expires_unix_ms: Option<u64>,
    rule: Option<String>,
    tag: Option<(String, Option<String>)>,
    account: Option<String>,
    cidr: Option<IpNet>,
    port: Option<u16>,
}

impl Suppression {
    fn applies(&self, f: &Finding, now_unix_ms: u64) -> bool {
        if self.expires_unix_ms.is_some_and(|e| e <= now_unix_ms) {
            return false;
        }
        if let Some(r) = &self.rule
            && f.rules.first() != Some(r)
        {
            return false;
        }
        if let Some((k, v)) = &self.tag {
            match (f.tags.get(k), v) {
                (None, _) => return false,
                (Some(have), Some(want)) if have != want => return false,
                _ => {}
            }
        }
        if let Some(a) = &self.account
            && f.account_id.as_ref() != Some(a)
        {
            return false;
        }
        if let Some(c) = &self.cidr
            && !c.contains(&f.ip)
        {
            return false;
        }
        if let Some(p) = self.port
            && f.port != p
        {
            return false;
        }
        true
    }
}

/// A validated suppressions file; empty without `--suppressions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suppressions {
    list: Vec<Suppression>,
    /// Where they came from (`--suppressions FILE`), for warnings.
    origin: String,
}

impl Suppressions {
    /// `--suppressions FILE`, or none.
    ///
    /// # Errors
    /// A message naming the file, the suppression and what is wrong.
    pub fn load(path: Option<&Path>) -> Result<Suppressions, String> {
        let Some(p) = path else {
            return Ok(Suppressions::default());
        };
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("--suppressions {}: cannot be read: {e}", p.display()))?;
        Suppressions::parse(&text, &format!("--suppressions {}", p.display()))
    }

    /// Parse suppressions text; `origin` starts every message.
    ///
    /// # Errors
    /// A message naming `origin`, the suppression and what is wrong.
    pub fn parse(text: &str, origin: &str) -> Result<Suppressions, String> {
        let file: File =
            toml::from_str(text).map_err(|e| format!("{origin}: {}", e.to_string().trim_end()))?;
        let mut list = Vec::new();
        for (i, r) in file.suppressions.into_iter().enumerate() {
            let id =
                r.id.clone()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| format!("suppression-{}", i + 1));
            let bad = |why: &str| format!("{origin}: suppression {} ({id}): {why}", i + 1);
            let reason = match r.reason {
                Some(s) if !s.trim().is_empty() => s,
                _ => {
                    return Err(bad(
                        "has no reason: every suppression says why (reason = \"...\")",
                    ));
                }
            };
            let expires_unix_ms = r
                .expires
                .as_deref()
                .map(|e| {
                    humantime::parse_rfc3339_weak(e)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64)
                        .ok_or_else(|| {
                            bad(&format!(
                                "expires {e:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z"
                            ))
                        })
                })
                .transpose()?;
            let tag = r.tag.as_deref().map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (t.to_string(), None),
            });
            if tag.as_ref().is_some_and(|(k, _)| k.is_empty()) {
                return Err(bad("tag needs a key: `key=value` or `key`"));
            }
            let cidr = r
                .cidr
                .as_deref()
                .map(|c| {
                    c.parse::<IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| bad(&format!("cidr {c:?} is not a CIDR such as 10.0.0.0/16")))
                })
                .transpose()?;
            if r.rule.is_none()
                && tag.is_none()
                && r.account.is_none()
                && cidr.is_none()
                && r.port.is_none()
            {
                return Err(bad(
                    "matches everything: give at least one of rule, tag, account, cidr, port",
                ));
            }
            list.push(Suppression {
                id,
                reason,
                expires_unix_ms,
                rule: r.rule,
                tag,
                account: r.account,
                cidr,
                port: r.port,
            });
        }
        Ok(Suppressions {
            list,
            origin: origin.to_string(),
        })
    }

    /// The first suppression that applies to `f` now.
    pub fn matching(&self, f: &Finding, now_unix_ms: u64) -> Option<Suppressed> {
        self.list
            .iter()
            .find(|s| s.applies(f, now_unix_ms))
            .map(|s| Suppressed {
                rule: s.id.clone(),
                reason: s.reason.clone(),
                expires_unix_ms: s.expires_unix_ms,
            })
    }

    /// Suppressions that have expired by `now`: said once on stderr, so that a
    /// finding coming back is not a surprise.
    pub fn expired(&self, now_unix_ms: u64) -> impl Iterator<Item = &Suppression> {
        self.list
            .iter()
            .filter(move |s| s.expires_unix_ms.is_some_and(|e| e <= now_unix_ms))
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Where the suppressions came from (`--suppressions FILE`; empty without).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::model::{FindingKind, Severity};
    use scanfleet_common::{PortState, Protocol};

    fn finding() -> Finding {
        Finding {
            id: "eu-west-1/111122223333/i-1/tcp/22".into(),
            kind: FindingKind::OpenPort,
            scan_id: "s".into(),
            asset_id: "i-1".into(),
            ip: "10.1.2.3".parse().unwrap(),
            port: 22,
            protocol: Protocol::Tcp,
            state: PortState::Open,
            region: Some("eu-west-1".into()),
            account_id: Some("111122223333".into()),
            vpc_id: None,
            subnet_id: None,
            instance_type: None,
            tags: [("env".to_string(), "dev".to_string())].into(),
            service: None,
            rules: vec!["SF-OPENSSH-OLD".into(), "SF-OPEN-PORT".into()],
            title: "t".into(),
            base_score: 6.5,
            score: 6.5,
            severity: Severity::Medium,
            reasons: vec![],
            internet_reachable: false,
            network_path: vec![],
            exposure: None,
            first_observed_unix_ms: 0,
            last_observed_unix_ms: 0,
            suppressed: None,
            remediation: None,
        }
    }

    fn one(body: &str) -> Result<Suppressions, String> {
        Suppressions::parse(
            &format!("[[suppression]]\n{body}\n"),
            "--suppressions s.toml",
        )
    }

    const NOW: u64 = 1_780_000_000_000;

    #[test]
    fn each_condition_narrows() {
        let f = finding();
        for (body, hit) in [
            ("reason = \"r\"\nrule = \"SF-OPENSSH-OLD\"", true),
            ("reason = \"r\"\nrule = \"SF-OPEN-PORT\"", false),
            ("reason = \"r\"\ntag = \"env=dev\"", true),
            ("reason = \"r\"\ntag = \"env=prod\"", false),
            ("reason = \"r\"\ntag = \"env\"", true),
            ("reason = \"r\"\ntag = \"team\"", false),
            ("reason = \"r\"\naccount = \"111122223333\"", true),
            ("reason = \"r\"\naccount = \"999999999999\"", false),
            ("reason = \"r\"\ncidr = \"10.1.0.0/16\"", true),
            ("reason = \"r\"\ncidr = \"10.2.0.0/16\"", false),
            ("reason = \"r\"\ncidr = \"10.1.2.3\"", true),
            ("reason = \"r\"\nport = 22", true),
            ("reason = \"r\"\nport = 23", false),
            (
                "reason = \"r\"\nport = 22\naccount = \"999999999999\"",
                false,
            ),
        ] {
            let s = one(body).unwrap();
            assert_eq!(s.matching(&f, NOW).is_some(), hit, "{body}");
        }
        let s = one("id = \"bastion\"\nreason = \"jump host\"\nport = 22").unwrap();
        let m = s.matching(&f, NOW).unwrap();
        assert_eq!(
            (m.rule.as_str(), m.reason.as_str()),
            ("bastion", "jump host")
        );
    }

    #[test]
    fn expired_suppressions_do_not_apply() {
        let f = finding();
        let s = one("reason = \"r\"\nport = 22\nexpires = \"2020-01-01T00:00:00Z\"").unwrap();
        assert!(s.matching(&f, NOW).is_none());
        assert_eq!(s.expired(NOW).count(), 1);
        let s = one("reason = \"r\"\nport = 22\nexpires = \"2099-01-01T00:00:00Z\"").unwrap();
        let m = s.matching(&f, NOW).unwrap();
        assert_eq!(m.expires_unix_ms, Some(4_070_908_800_000));
    }

    #[test]
    fn bad_suppressions_are_input_errors_naming_the_file() {
        let e = one("port = 22").unwrap_err();
        assert_eq!(
            e,
            "--suppressions s.toml: suppression 1 (suppression-1): has no reason: every suppression says why (reason = \"...\")"
        );
        let e = one("id = \"x\"\nreason = \"  \"\nport = 22").unwrap_err();
        assert!(e.contains("suppression 1 (x): has no reason"), "{e}");
        let e = one("reason = \"r\"").unwrap_err();
        assert!(e.contains("matches everything"), "{e}");
        let e = one("reason = \"r\"\nport = 22\nexpires = \"soon\"").unwrap_err();
        assert!(e.contains("expires \"soon\" is not an RFC 3339"), "{e}");
        let e = one("reason = \"r\"\ncidr = \"10.0.0/8\"").unwrap_err();
        assert!(e.contains("cidr"), "{e}");
        let e = one("reason = \"r\"\nprot = 22").unwrap_err();
        assert!(
            e.starts_with("--suppressions s.toml: ") && e.contains("prot"),
            "{e}"
        );
        let e = Suppressions::load(Some(Path::new("/nonexistent/s.toml"))).unwrap_err();
        assert!(e.contains("/nonexistent/s.toml: cannot be read"), "{e}");
    }

    #[test]
    fn the_example_file_parses() {
        let s = Suppressions::parse(
            include_str!("../../../data/suppressions.example.toml"),
            "example",
        )
        .unwrap();
        assert!(!s.is_empty());
    }
}
