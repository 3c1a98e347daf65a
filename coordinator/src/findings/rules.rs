//! The severity rules (`data/findings-rules.toml`, documented in its header): load,
//! validate, match an open port against them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use regex::Regex;
use scanfleet_common::ServiceInfo;
use serde::Deserialize;

/// The rules scanfleet ships, used without `--rules`.
pub const DEFAULT_RULES: &str = include_str!("../../../data/findings-rules.toml");

/// A rules file that cannot be used: the message names the file, the rule and what
/// is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    score: f64,
    title: String,
    remediation: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    service: Vec<String>,
    #[serde(default)]
    port: Vec<u16>,
    #[serde(default)]
    on_port: Vec<u16>,
    product: Option<String>,
    version: Option<String>,
    banner: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
    #[serde(default)]
    extra_any: BTreeMap<String, String>,
    #[serde(default)]
    tls_expired: bool,
    #[serde(default)]
    any: bool,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub score: f64,
    pub title: String,
    pub remediation: String,
    services: Vec<String>,
    ports: Vec<u16>,
    on_ports: Vec<u16>,
    product: Option<Regex>,
    version: Option<Regex>,
    banner: Option<Regex>,
    extra: Vec<(String, Regex)>,
    extra_any: Vec<(String, Regex)>,
    tls_expired: bool,
    any: bool,
}

/// What a rule is matched against: an open port and what detection learned of it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub port: u16,
    pub service: Option<&'a ServiceInfo>,
    /// Now, in unix ms (for `tls_expired`).
    pub now_unix_ms: u64,
}

impl Subject<'_> {
    /// The service name, when detection named one.
    fn name(&self) -> Option<&str> {
        self.service
            .map(|s| s.name.as_str())
            .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("unknown"))
    }
}

impl Rule {
    /// Whether this rule matches `s`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        if self.any {
            return true;
        }
        // `service` OR (nothing identified AND `port`).
        if !self.services.is_empty() || !self.ports.is_empty() {
            let by_name = s
                .name()
                .is_some_and(|n| self.services.iter().any(|w| w.eq_ignore_ascii_case(n)));
            let by_port = s.name().is_none() && self.ports.contains(&s.port);
            if !(by_name || by_port) {
                return false;
            }
        }
        if !self.on_ports.is_empty() && !self.on_ports.contains(&s.port) {
            return false;
        }
        let svc = s.service;
        let field = |re: &Option<Regex>, v: Option<&String>| match re {
            None => true,
            Some(re) => v.is_some_and(|v| re.is_match(v)),
        };
        if !field(&self.product, svc.and_then(|x| x.product.as_ref()))
            || !field(&self.version, svc.and_then(|x| x.version.as_ref()))
            || !field(&self.banner, svc.and_then(|x| x.banner.as_ref()))
        {
            return false;
        }
        let fact = |k: &str| svc.and_then(|x| x.extra.get(k));
        if !self
            .extra
            .iter()
            .all(|(k, re)| fact(k).is_some_and(|v| re.is_match(v)))
        {
            return false;
        }
        if !self.extra_any.is_empty()
            && !self
                .extra_any
                .iter()
                .any(|(k, re)| fact(k).is_some_and(|v| re.is_match(v)))
        {
            return false;
        }
        if self.tls_expired {
            let expired = fact("tls.not_after")
                .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| (d.as_millis() as u64) < s.now_unix_ms);
            if !expired {
                return false;
            }
        }
        true
    }
}

/// A validated set of rules, in file order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Where they came from, for messages (`built-in` or the file).
    pub origin: String,
}

impl RuleSet {
    /// The built-in rules.
    ///
    /// # Errors
    /// Only if the shipped file is broken (a unit test guards it).
    pub fn builtin() -> Result<RuleSet, RulesError> {
        RuleSet::parse(DEFAULT_RULES, "built-in rules (data/findings-rules.toml)")
    }

    /// `--rules FILE`, or the built-in rules without one.
    ///
    /// # Errors
    /// [`RulesError`] naming the file, the rule and what is wrong.
    pub fn load(path: Option<&Path>) -> Result<RuleSet, RulesError> {
        match path {
            None => RuleSet::builtin(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    RulesError(format!("--rules {}: cannot be read: {e}", p.display()))
                })?;
                RuleSet::parse(&text, &format!("--rules {}", p.display()))
            }
        }
    }

    /// Parse and check rules text; `origin` starts every message.
    ///
    /// # Errors
    /// [`RulesError`] naming `origin`, the rule and what is wrong.
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RulesError> {
        let file: RulesFile = toml::from_str(text)
            .map_err(|e| RulesError(format!("{origin}: {}", e.to_string().trim_end())))?;
        if file.rules.is_empty() {
            return Err(RulesError(format!(
                "{origin}: no [[rule]]: a rules file needs at least one rule"
            )));
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let name = if r.id.is_empty() {
                format!("rule {} (no id)", i + 1)
            } else {
                format!("rule {}", r.id)
            };
            let bad = |why: String| RulesError(format!("{origin}: {name}: {why}"));
            let id_ok = r.id.starts_with("SF-")
                && r.id.len() <= 64
                && r.id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
                return Err(bad(
                    "id must start with SF- and hold only upper-case letters, digits and -".into(),
                ));
            }
            if !seen.insert(r.id.clone()) {
                return Err(bad("id is used by an earlier rule too".into()));
            }
            if !(0.0..=10.0).contains(&r.score) || r.score.is_nan() {
                return Err(bad(format!("score {} is outside 0.0 to 10.0", r.score)));
            }
            if r.title.trim().is_empty() {
                return Err(bad("title is empty".into()));
            }
            let m = r.matcher;
            let re = |field: &str, src: &Option<String>| -> Result<Option<Regex>, RulesError> {
                src.as_deref()
                    .map(|s| compile(s).map_err(|e| bad(format!("match.{field}: {e}"))))
                    .transpose()
            };
            let facts = |field: &str,
                         map: &BTreeMap<String, String>|
             -> Result<Vec<(String, Regex)>, RulesError> {
                map.iter()
                    .map(|(k, v)| {
                        compile(v)
                            .map(|re| (k.clone(), re))
                            .map_err(|e| bad(format!("match.{field}.{k:?}: {e}")))
                    })
                    .collect()
            };
            let rule = Rule {
                id: r.id.clone(),
                score: r.score,
                title: r.title,
                remediation: r.remediation,
                services: m.service.clone(),
                ports: m.port.clone(),
                on_ports: m.on_port.clone(),
                product: re("product", &m.product)?,
                version: re("version", &m.version)?,
                banner: re("banner", &m.banner)?,
                extra: facts("extra", &m.extra)?,
                extra_any: facts("extra_any", &m.extra_any)?,
                tls_expired: m.tls_expired,
                any: m.any,
            };
            let empty = rule.services.is_empty()
                && rule.ports.is_empty()
                && rule.on_ports.is_empty()
                && rule.product.is_none()
                && rule.version.is_none()
                && rule.banner.is_none()
                && rule.extra.is_empty()
                && rule.extra_any.is_empty()
                && !rule.tls_expired
                && !rule.any;
            if empty {
                return Err(bad(
                    "[rule.match] has no condition (use `any = true` for a catch-all)".into(),
                ));
            }
            if rule.any && (rule.services.len() + rule.ports.len() + rule.on_ports.len() > 0) {
                return Err(bad(
                    "match.any = true cannot be combined with conditions".into()
                ));
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            rules,
            origin: origin.to_string(),
        })
    }

    /// The rules that match `s`, most severe first (file order among equals).
    pub fn matching(&self, s: &Subject<'_>) -> Vec<&Rule> {
        let mut m: Vec<&Rule> = self.rules.iter().filter(|r| r.matches(s)).collect();
        m.sort_by(|a, b| b.score.total_cmp(&a.score));
        m
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Case-insensitive unless the pattern says otherwise, bounded in size.
fn compile(src: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(src)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regex {src:?}: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    fn svc(
        name: &str,
        product: Option<&str>,
        version: Option<&str>,
        extra: &[(&str, &str)],
    ) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            product: product.map(String::from),
            version: version.map(String::from),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ServiceInfo::default()
        }
    }

    /// The ids of the rules matching (port, service), most severe first.
    fn ids(port: u16, s: Option<&ServiceInfo>) -> Vec<String> {
        let rules = RuleSet::builtin().unwrap();
        rules
            .matching(&Subject {
                port,
                service: s,
                now_unix_ms: NOW,
            })
            .into_iter()
            .map(|r| r.id.clone())
            .collect()
    }

    fn top(port: u16, s: Option<&ServiceInfo>) -> String {
        ids(port, s).remove(0)
    }

    #[test]
    fn builtin_rules_parse_and_end_with_the_default() {
        let r = RuleSet::builtin().unwrap();
        assert!(r.rules().len() > 30);
        assert_eq!(r.rules().last().unwrap().id, "SF-OPEN-PORT");
        // Every rule has a remediation a person can act on.
        assert!(
            r.rules().iter().all(|x| x.remediation.len() > 20),
            "remediation"
        );
    }

    #[test]
    fn cleartext_logins() {
        assert_eq!(top(23, Some(&svc("telnet", None, None, &[]))), "SF-TELNET");
        assert_eq!(
            top(23, None),
            "SF-TELNET",
            "port alone when nothing was identified"
        );
        assert_eq!(
            top(23, Some(&svc("http", None, None, &[]))),
            "SF-OPEN-PORT",
            "http on 23 is not telnet"
        );
        for p in [512, 513, 514] {
            assert_eq!(top(p, None), "SF-RSH");
        }
        assert_eq!(top(2121, Some(&svc("rlogin", None, None, &[]))), "SF-RSH");
        assert_eq!(top(21, Some(&svc("ftp", None, None, &[]))), "SF-FTP");
        let anon = svc(
            "ftp",
            Some("vsftpd"),
            Some("3.0.3"),
            &[("anonymous", "allowed")],
        );
        assert_eq!(ids(21, Some(&anon))[..2], ["SF-FTP-ANONYMOUS", "SF-FTP"]);
        let refused = svc("ftp", None, None, &[("anonymous", "refused")]);
        assert_eq!(top(21, Some(&refused)), "SF-FTP");
    }

    #[test]
    fn remote_access_and_files() {
        assert_eq!(top(445, None), "SF-SMB");
        assert_eq!(
            top(
                445,
                Some(&svc(
                    "microsoft-ds",
                    None,
                    None,
                    &[("anonymous", "allowed")]
                ))
            ),
            "SF-SMB-NULL-SESSION"
        );
        assert_eq!(top(3389, None), "SF-RDP");
        assert_eq!(
            top(3390, Some(&svc("ms-wbt-server", None, None, &[]))),
            "SF-RDP"
        );
        assert_eq!(top(5900, Some(&svc("vnc", None, None, &[]))), "SF-VNC");
        assert_eq!(
            top(5901, Some(&svc("vnc", None, None, &[("auth", "none")]))),
            "SF-VNC-NOAUTH"
        );
    }

    #[test]
    fn databases() {
        for (port, name, id) in [
            (5432, "postgresql", "SF-POSTGRESQL"),
            (3306, "mysql", "SF-MYSQL"),
            (3307, "mariadb", "SF-MYSQL"),
            (1433, "ms-sql-s", "SF-MSSQL"),
            (1521, "oracle-tns", "SF-ORACLE"),
            (27017, "mongodb", "SF-MONGODB"),
            (9042, "cassandra", "SF-CASSANDRA"),
        ] {
            assert_eq!(top(port, Some(&svc(name, None, None, &[]))), id, "{name}");
            // A service off its standard port is judged by its name only.
            if port != 3307 {
                assert_eq!(top(port, None), id, "{port} alone");
            } else {
                assert_eq!(top(port, None), "SF-OPEN-PORT", "{port} alone");
            }
        }
    }

    #[test]
    fn stores_without_auth_rank_above_stores_with_auth() {
        for (port, name, open, noauth) in [
            (6379, "redis", "SF-REDIS", "SF-REDIS-NOAUTH"),
            (11211, "memcached", "SF-MEMCACHED", "SF-MEMCACHED-NOAUTH"),
            (
                9200,
                "elasticsearch",
                "SF-ELASTICSEARCH",
                "SF-ELASTICSEARCH-NOAUTH",
            ),
            (27017, "mongodb", "SF-MONGODB", "SF-MONGODB-NOAUTH"),
            (2379, "etcd", "SF-ETCD", "SF-ETCD-NOAUTH"),
        ] {
            assert_eq!(
                top(port, Some(&svc(name, None, None, &[("auth", "required")]))),
                open,
                "{name}"
            );
            let m = ids(port, Some(&svc(name, None, None, &[("auth", "none")])));
            assert_eq!(m[0], noauth, "{name}");
            assert!(m.contains(&open.to_string()), "{name}: {m:?}");
        }
        // A Redis on a non-standard port is still Redis.
        assert_eq!(
            top(6380, Some(&svc("redis", None, None, &[("auth", "none")]))),
            "SF-REDIS-NOAUTH"
        );
    }

    #[test]
    fn control_planes_and_consoles() {
        assert_eq!(
            top(2375, Some(&svc("http", None, None, &[]))),
            "SF-DOCKER-API"
        );
        assert_eq!(
            top(2375, Some(&svc("docker", None, None, &[]))),
            "SF-DOCKER-API"
        );
        assert_eq!(
            top(8080, Some(&svc("docker", None, None, &[]))),
            "SF-OPEN-PORT",
            "on_port holds"
        );
        let kube = svc("https", None, None, &[("tls.subject_cn", "kube-apiserver")]);
        assert_eq!(top(6443, Some(&kube)), "SF-KUBE-API");
        assert_eq!(top(6443, None), "SF-KUBE-API-PORT");
        assert_eq!(
            top(10250, Some(&svc("https", None, None, &[]))),
            "SF-KUBELET"
        );
        assert_eq!(
            top(15672, Some(&svc("http", None, None, &[]))),
            "SF-RABBITMQ-MGMT"
        );
        let jenkins = svc("http", None, None, &[("http.title", "Dashboard [Jenkins]")]);
        assert_eq!(top(8080, Some(&jenkins)), "SF-MGMT-CONSOLE");
        let plain = svc("http", None, None, &[("http.title", "Welcome to nginx")]);
        assert_eq!(top(8080, Some(&plain)), "SF-OPEN-PORT");
        assert_eq!(top(5601, None), "SF-MGMT-PORT");
    }

    #[test]
    fn tls_facts() {
        let old = svc(
            "https",
            None,
            None,
            &[("tls.versions", "TLSv1.0,TLSv1.2,TLSv1.3")],
        );
        assert_eq!(top(443, Some(&old)), "SF-TLS-OLD");
        let neg = svc("https", None, None, &[("tls.version", "TLSv1.1")]);
        assert_eq!(top(443, Some(&neg)), "SF-TLS-OLD");
        let new = svc(
            "https",
            None,
            None,
            &[
                ("tls.version", "TLSv1.3"),
                ("tls.versions", "TLSv1.2,TLSv1.3"),
            ],
        );
        assert_eq!(top(443, Some(&new)), "SF-OPEN-PORT");
        let ssl3 = svc("https", None, None, &[("tls.versions", "SSLv3,TLSv1.2")]);
        assert_eq!(top(443, Some(&ssl3)), "SF-SSL-OLD");
        let expired = svc(
            "https",
            None,
            None,
            &[("tls.not_after", "2020-01-01T00:00:00Z")],
        );
        assert_eq!(top(443, Some(&expired)), "SF-TLS-EXPIRED");
        let valid = svc(
            "https",
            None,
            None,
            &[("tls.not_after", "2099-01-01T00:00:00Z")],
        );
        assert_eq!(top(443, Some(&valid)), "SF-OPEN-PORT");
        let garbage = svc("https", None, None, &[("tls.not_after", "yesterday")]);
        assert_eq!(
            top(443, Some(&garbage)),
            "SF-OPEN-PORT",
            "an unreadable date is not expired"
        );
        let selfsigned = svc("https", None, None, &[("tls.self_signed", "true")]);
        assert_eq!(top(443, Some(&selfsigned)), "SF-TLS-SELF-SIGNED");
        let signed = svc("https", None, None, &[("tls.self_signed", "false")]);
        assert_eq!(top(443, Some(&signed)), "SF-OPEN-PORT");
    }

    #[test]
    fn known_weak_versions() {
        let v = |p: &str, ver: &str| svc("ftp", Some(p), Some(ver), &[]);
        assert_eq!(top(21, Some(&v("vsftpd", "2.3.4"))), "SF-VSFTPD-BACKDOOR");
        assert_eq!(top(21, Some(&v("vsftpd", "2.3.5"))), "SF-FTP");
        assert_eq!(
            top(21, Some(&v("ProFTPD", "1.3.3c"))),
            "SF-PROFTPD-BACKDOOR"
        );
        let ssh = |ver: &str| svc("ssh", Some("OpenSSH"), Some(ver), &[]);
        assert_eq!(top(22, Some(&ssh("5.3p1"))), "SF-OPENSSH-OLD");
        assert_eq!(top(22, Some(&ssh("7.3"))), "SF-OPENSSH-OLD");
        assert_eq!(top(22, Some(&ssh("7.4p1"))), "SF-OPEN-PORT");
        assert_eq!(top(22, Some(&ssh("9.2p1"))), "SF-OPENSSH-REGRESSHION");
        assert_eq!(top(22, Some(&ssh("9.8p1"))), "SF-OPEN-PORT");
        let apache = svc(
            "http",
            None,
            None,
            &[("http.server", "Apache/2.4.49 (Unix)")],
        );
        assert_eq!(top(80, Some(&apache)), "SF-APACHE-TRAVERSAL");
        let apache = svc(
            "http",
            None,
            None,
            &[("http.server", "Apache/2.4.51 (Unix)")],
        );
        assert_eq!(top(80, Some(&apache)), "SF-OPEN-PORT");
        assert_eq!(
            top(
                25,
                Some(&svc("smtp", Some("Exim smtpd"), Some("4.89"), &[]))
            ),
            "SF-EXIM-OLD"
        );
    }

    #[test]
    fn any_other_open_port_is_low() {
        assert_eq!(ids(31337, None), ["SF-OPEN-PORT"]);
        assert_eq!(top(80, Some(&svc("http", None, None, &[]))), "SF-OPEN-PORT");
    }

    fn err(text: &str) -> String {
        RuleSet::parse(text, "--rules my.toml").unwrap_err().0
    }

    const OK: &str = "[[rule]]\nid = \"SF-X\"\nscore = 5.0\ntitle = \"x\"\nremediation = \"y\"\n[rule.match]\nport = [1]\n";

    #[test]
    fn bad_rules_name_the_file_the_rule_and_the_problem() {
        assert!(RuleSet::parse(OK, "f").is_ok());
        let e = err(&OK.replace("port = [1]", "prot = [1]"));
        assert!(
            e.starts_with("--rules my.toml: ") && e.contains("prot"),
            "{e}"
        );
        let e = err(&OK.replace("port = [1]", "product = \"(unclosed\""));
        assert!(
            e.contains("rule SF-X: match.product: bad regex \"(unclosed\""),
            "{e}"
        );
        let e = err(&OK.replace("port = [1]", "extra = { auth = \"[\" }"));
        assert!(
            e.contains("rule SF-X: match.extra.\"auth\": bad regex"),
            "{e}"
        );
        let e = err(&OK.replace("5.0", "11.0"));
        assert!(
            e.contains("rule SF-X: score 11 is outside 0.0 to 10.0"),
            "{e}"
        );
        let e = err(&OK.replace("5.0", "-1.0"));
        assert!(e.contains("outside"), "{e}");
        let e = err(&format!("{OK}{OK}"));
        assert!(
            e.contains("rule SF-X: id is used by an earlier rule too"),
            "{e}"
        );
        let e = err(&OK.replace("SF-X", "telnet"));
        assert!(e.contains("rule telnet: id must start with SF-"), "{e}");
        let e = err(&OK.replace("port = [1]", ""));
        assert!(e.contains("has no condition"), "{e}");
        let e = err(&OK.replace("port = [1]", "port = [70000]"));
        assert!(e.starts_with("--rules my.toml: "), "{e}");
        let e = err(&OK.replace("remediation = \"y\"\n", ""));
        assert!(e.contains("remediation"), "{e}");
        assert!(err("").contains("no [[rule]]"));
        let e = RuleSet::load(Some(Path::new("/nonexistent/r.toml")))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("--rules /nonexistent/r.toml: cannot be read"),
            "{e}"
        );
    }
}
