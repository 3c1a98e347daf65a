//! The signature file: which answer, to which probe, names which service.
//!
//! Format (`data/service-signatures.toml`, TOML): a list of `[[signature]]` tables,
//! tried in file order within each probe; the first match wins, so specific
//! products come before generic catch-alls.
//!
//! ```toml
//! [[signature]]
//! probe = "banner"                          # which answer: see `Probe::name`
//! service = "ssh"                           # lowercase service name
//! pattern = '^SSH-([\d.]+)-OpenSSH_([\w.]+)' # bytes regex, in a TOML literal string
//! product = "OpenSSH"                       # optional templates: `$1`..`$9`, `$$`
//! version = "$2"
//! cpe = "cpe:/a:openbsd:openssh:$2"
//! extra = { "ssh.protocol" = "$1" }         # optional, keys are free-form
//! ```
//!
//! Patterns are compiled as byte regexes with Unicode off (`\d`, `\w`, `\s` and
//! `(?i)` are ASCII, `\xNN` is one byte) and `.` matching any byte, newlines
//! included, because half the protocols are binary; use `[^\r\n]` to stay on a
//! line. The regex engine runs in linear time, so no answer can make matching slow.
//!
//! Captures are escaped with `escape_bytes` before they enter a template, and a
//! field whose expansion is empty is left out (a CPE loses its trailing `:`), so
//! an optional version group simply disappears when the service hides it.
//!
//! Banner signatures are tried on every probe's answer after that probe's own
//! signatures: a service that speaks first puts its greeting in front of whatever
//! it says to the probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use regex::bytes::{Regex, RegexBuilder};
use scanfleet_common::escape_bytes;
use serde::Deserialize;

use super::probes::Probe;

/// The signature file shipped with the worker.
pub const SHIPPED: &str = include_str!("../../../data/service-signatures.toml");

/// Longest capture kept, in input bytes (before escaping).
const MAX_CAPTURE: usize = 128;
/// Longest answer handed to the regexes; reads are bounded well below this already.
const MAX_MATCH_INPUT: usize = 64 * 1024;
/// Cap on one compiled regex, so a careless pattern fails at load, not at scan time.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// Why a signature file was refused. Always permanent: the file must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read signature file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signature file is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// `index` counts `[[signature]]` tables from 1, in file order.
    #[error("signature #{index} ({service}): {reason}")]
    Invalid {
        index: usize,
        service: String,
        reason: String,
    },
    #[error("signature #{index} ({service}): bad pattern: {source}")]
    Regex {
        index: usize,
        service: String,
        #[source]
        source: regex::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    signature: Vec<RawSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    probe: String,
    service: String,
    pattern: String,
    product: Option<String>,
    version: Option<String>,
    cpe: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

/// Literal text and capture-group references, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    /// `$1`..`$9` name groups, `$$` is a dollar; any other `$` is an error, so a
    /// typo cannot silently produce a literal.
    fn parse(s: &str, groups: usize) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '$' {
                text.push(c);
                continue;
            }
            match chars.next() {
                Some('$') => text.push('$'),
                Some(d @ '1'..='9') => {
                    let n = d as usize - '0' as usize;
                    if n >= groups {
                        return Err(format!(
                            "template {s:?} uses ${n} but the pattern has {} groups",
                            groups - 1
                        ));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Group(n));
                }
                _ => {
                    return Err(format!(
                        "template {s:?}: `$` must be followed by 1-9 or `$`"
                    ));
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    /// The expansion, or `None` when it would be empty or when the template uses
    /// groups and all of them came out empty (so `"$1.$2"` does not leave a lone
    /// `.`). `keep_literal` keeps the literal text in that case, which CPEs want:
    /// `cpe:/a:f5:nginx:$1` without a version is still the right product.
    fn expand(&self, caps: &regex::bytes::Captures<'_>, keep_literal: bool) -> Option<String> {
        let mut out = String::new();
        let mut uses_group = false;
        let mut any_group_filled = false;
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(n) => {
                    uses_group = true;
                    if let Some(m) = caps.get(*n)
                        && !m.is_empty()
                    {
                        any_group_filled = true;
                        out.push_str(&escape_bytes(m.as_bytes(), MAX_CAPTURE));
                    }
                }
            }
        }
        if out.is_empty() || (uses_group && !any_group_filled && !keep_literal) {
            return None;
        }
        Some(out)
    }
}

/// One compiled signature.
#[derive(Debug)]
struct Signature {
    service: String,
    regex: Regex,
    product: Option<Template>,
    version: Option<Template>,
    cpe: Option<Template>,
    extra: Vec<(String, Template)>,
}

/// What a matching signature says about a service. Every string that came from
/// a capture is escaped; the rest is the signature file's own text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureMatch {
    /// The signature's `service`, e.g. `ssh`.
    pub service: String,
    pub product: Option<String>,
    pub version: Option<String>,
    /// CPE 2.2 URI, e.g. `cpe:/a:openbsd:openssh:9.2p1`.
    pub cpe: Option<String>,
    /// The signature's `extra` templates that expanded to something.
    pub extra: BTreeMap<String, String>,
}

/// A compiled signature file, grouped by probe.
#[derive(Default)]
pub struct SignatureSet {
    /// Indexed by `Probe::index`, each in file order.
    by_probe: [Vec<Signature>; Probe::ALL.len()],
}

impl std::fmt::Debug for SignatureSet {
    /// A count, not the regexes: a `Detector` shows up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureSet")
            .field("signatures", &self.len())
            .finish()
    }
}

static SHIPPED_SET: LazyLock<Result<Arc<SignatureSet>, SignatureError>> =
    LazyLock::new(|| SignatureSet::from_toml(SHIPPED).map(Arc::new));

impl SignatureSet {
    /// The shipped signatures, compiled once per process and shared.
    ///
    /// # Errors
    /// When the shipped file is broken, which the unit tests rule out.
    pub fn shipped() -> Result<Arc<SignatureSet>, &'static SignatureError> {
        SHIPPED_SET.as_ref().map(Arc::clone)
    }

    /// Compile a signature file from its text.
    ///
    /// # Errors
    /// Invalid TOML, an unknown field or probe, a bad regex, or a template that
    /// refers to a group the pattern lacks; the error names the signature.
    pub fn from_toml(text: &str) -> Result<SignatureSet, SignatureError> {
        let raw: RawFile = toml::from_str(text)?;
        let mut set = SignatureSet::default();
        for (i, r) in raw.signature.into_iter().enumerate() {
            let index = i + 1;
            let invalid = |reason: String| SignatureError::Invalid {
                index,
                service: r.service.clone(),
                reason,
            };
            let probe = match Probe::from_name(&r.probe) {
                None if r.probe == "tls" => {
                    return Err(invalid("probe \"tls\" has no signatures: the answer inside TLS is matched with the inner probe's (\"http\", \"banner\", ...)".into()));
                }
                Some(p) => p,
                None => return Err(invalid(format!("unknown probe {:?}", r.probe))),
            };
            let name_ok = !r.service.is_empty()
                && r.service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return Err(invalid(
                    "service must be lowercase letters, digits and '-'".into(),
                ));
            }
            let regex = RegexBuilder::new(&r.pattern)
                .unicode(false)
                .dot_matches_new_line(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|source| SignatureError::Regex {
                    index,
                    service: r.service.clone(),
                    source,
                })?;
            let groups = regex.captures_len();
            let template =
                |t: &Option<String>| t.as_deref().map(|s| Template::parse(s, groups)).transpose();
            let product = template(&r.product).map_err(invalid)?;
            let version = template(&r.version).map_err(invalid)?;
            let cpe = template(&r.cpe).map_err(invalid)?;
            let mut extra = Vec::with_capacity(r.extra.len());
            for (k, v) in &r.extra {
                if k.is_empty() {
                    return Err(invalid("empty extra key".into()));
                }
                extra.push((k.clone(), Template::parse(v, groups).map_err(invalid)?));
            }
            set.by_probe[probe.index()].push(Signature {
                service: r.service,
                regex,
                product,
                version,
                cpe,
                extra,
            });
        }
        Ok(set)
    }

    /// Compile a signature file from disk.
    ///
    /// # Errors
    /// As [`SignatureSet::from_toml`], plus the file being unreadable.
    pub fn from_file(path: &Path) -> Result<SignatureSet, SignatureError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignatureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SignatureSet::from_toml(&text)
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.by_probe.iter().map(Vec::len).sum()
    }

    /// Whether there are no signatures at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of signatures for one probe.
    pub fn len_for(&self, probe: Probe) -> usize {
        self.by_probe[probe.index()].len()
    }

    /// Match what a service answered to `probe`: that probe's signatures first,
    /// then (for the HTTP probes on other paths) the `http` signatures, then the
    /// banner signatures. When one of the probe's own signatures matched, the
    /// probe's decoder fills in what the signature left empty (binary version
    /// fields, lists) and adds its facts. Safe on any input.
    pub fn match_response(&self, probe: Probe, answer: &[u8]) -> Option<SignatureMatch> {
        let answer = answer.get(..MAX_MATCH_INPUT).unwrap_or(answer);
        if answer.is_empty() {
            return None;
        }
        let own = &self.by_probe[probe.index()];
        if let Some(mut m) = own.iter().find_map(|sig| sig.apply(answer)) {
            let d = probe.decode(answer);
            m.product = m.product.or(d.product);
            m.version = m.version.or(d.version);
            m.cpe = m.cpe.or(d.cpe);
            for (k, v) in d.extra {
                m.extra.entry(k).or_insert(v);
            }
            return Some(m);
        }
        let http = self.by_probe[Probe::Http.index()]
            .iter()
            .filter(|_| probe.is_http() && probe != Probe::Http);
        let banner = self.by_probe[Probe::Banner.index()]
            .iter()
            .filter(|_| probe != Probe::Banner);
        http.chain(banner).find_map(|sig| sig.apply(answer))
    }
}

impl Signature {
    /// This signature's match on `answer`, templates expanded.
    fn apply(&self, answer: &[u8]) -> Option<SignatureMatch> {
        let caps = self.regex.captures(answer)?;
        let expand = |t: &Option<Template>| t.as_ref().and_then(|t| t.expand(&caps, false));
        let cpe = self.cpe.as_ref().and_then(|t| t.expand(&caps, true));
        let cpe = cpe.map(|c| c.trim_end_matches(':').to_string());
        Some(SignatureMatch {
            service: self.service.clone(),
            product: expand(&self.product),
            version: expand(&self.version),
            cpe,
            extra: self
                .extra
                .iter()
                .filter_map(|(k, t)| Some((k.clone(), t.expand(&caps, false)?)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set() -> Arc<SignatureSet> {
        match SignatureSet::shipped() {
            Ok(s) => s,
            Err(e) => panic!("shipped signature file is broken: {e}"),
        }
    }

    fn m(probe: Probe, answer: &[u8]) -> SignatureMatch {
        set()
            .match_response(probe, answer)
            .unwrap_or_else(|| panic!("no match for {}", escape_bytes(answer, 200)))
    }

    /// (service, product, version, cpe)
    fn facts(x: &SignatureMatch) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        (
            x.service.as_str(),
            x.product.as_deref(),
            x.version.as_deref(),
            x.cpe.as_deref(),
        )
    }

    #[test]
    fn shipped_file_parses_and_every_regex_compiles() {
        let s = SignatureSet::from_toml(SHIPPED).expect("shipped file");
        assert!(s.len() >= 50, "only {} signatures", s.len());
        for p in Probe::ALL {
            assert!(s.len_for(p) > 0, "no signatures for probe {}", p.name());
        }
    }

    #[test]
    fn ssh_banners() {
        let x = m(Probe::Banner, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
        assert_eq!(
            facts(&x),
            (
                "ssh",
                Some("OpenSSH"),
                Some("9.2p1"),
                Some("cpe:/a:openbsd:openssh:9.2p1")
            )
        );
        assert_eq!(x.extra["ssh.protocol"], "2.0");
        assert_eq!(x.extra["ssh.comment"], "Debian-2+deb12u3");
        let x = m(Probe::Banner, b"SSH-2.0-OpenSSH_8.9\r\n");
        assert_eq!(x.version.as_deref(), Some("8.9"));
        assert!(!x.extra.contains_key("ssh.comment"));
        let x = m(Probe::Banner, b"SSH-2.0-dropbear_2022.83\r\n");
        assert_eq!(facts(&x).1, Some("Dropbear sshd"));
        assert_eq!(x.version.as_deref(), Some("2022.83"));
        let x = m(Probe::Banner, b"SSH-2.0-Go\r\n");
        assert_eq!(facts(&x), ("ssh", None, None, None));
        assert_eq!(x.extra["ssh.software"], "Go");
    }

    #[test]
    fn mail_and_ftp_banners() {
        let x = m(
            Probe::Banner,
            b"220 lab-t1.scanfleet.test ESMTP Postfix\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "smtp",
                Some("Postfix"),
                None,
                Some("cpe:/a:postfix:postfix")
            )
        );
        assert_eq!(x.extra["hostname"], "lab-t1.scanfleet.test");
        let x = m(
            Probe::Banner,
            b"220 mx.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 00:00:00 +0000\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "smtp",
                Some("Exim"),
                Some("4.96"),
                Some("cpe:/a:exim:exim:4.96")
            )
        );
        assert_eq!(
            facts(&m(Probe::Banner, b"220 mail.example.com ESMTP ready\r\n")).0,
            "smtp"
        );
        let x = m(Probe::Banner, b"220 (vsFTPd 3.0.3)\r\n");
        assert_eq!(
            facts(&x),
            (
                "ftp",
                Some("vsftpd"),
                Some("3.0.3"),
                Some("cpe:/a:beasts:vsftpd:3.0.3")
            )
        );
        let x = m(
            Probe::Banner,
            b"220 ProFTPD 1.3.5e Server (Debian) [::ffff:10.0.0.1]\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "ftp",
                Some("ProFTPD"),
                Some("1.3.5e"),
                Some("cpe:/a:proftpd:proftpd:1.3.5e")
            )
        );
        assert_eq!(
            facts(&m(Probe::Banner, b"220 Welcome to the FTP service\r\n")).0,
            "ftp"
        );
        let x = m(Probe::Banner, b"+OK Dovecot (Debian) ready.\r\n");
        assert_eq!(
            facts(&x),
            (
                "pop3",
                Some("Dovecot pop3d"),
                None,
                Some("cpe:/a:dovecot:dovecot")
            )
        );
        assert_eq!(
            facts(&m(Probe::Banner, b"+OK POP3 server ready\r\n")).0,
            "pop3"
        );
        let x = m(Probe::Banner, b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n");
        assert_eq!(
            facts(&x),
            (
                "imap",
                Some("Dovecot imapd"),
                None,
                Some("cpe:/a:dovecot:dovecot")
            )
        );
        assert_eq!(facts(&m(Probe::Banner, b"* OK IMAP4 ready\r\n")).0, "imap");
    }

    #[test]
    fn binary_greetings() {
        let mysql = b"\x4a\x00\x00\x00\x0a8.0.36-0ubuntu0.22.04.1\x00\x08\x00\x00\x00abcdefgh\x00";
        let x = m(Probe::Banner, mysql);
        assert_eq!(
            facts(&x),
            (
                "mysql",
                Some("MySQL"),
                Some("8.0.36-0ubuntu0.22.04.1"),
                Some("cpe:/a:oracle:mysql:8.0.36")
            )
        );
        let maria = b"\x5b\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x08\x00\x00\x00";
        let x = m(Probe::Banner, maria);
        assert_eq!(
            facts(&x),
            (
                "mysql",
                Some("MariaDB"),
                Some("10.11.6"),
                Some("cpe:/a:mariadb:mariadb:10.11.6")
            )
        );
        let denied = b"\x45\x00\x00\x00\xff\x6a\x04Host '10.0.0.9' is not allowed to connect to this MySQL server";
        assert_eq!(
            facts(&m(Probe::Banner, denied)),
            ("mysql", Some("MySQL"), None, None)
        );
        let x = m(Probe::Banner, b"RFB 003.008\n");
        assert_eq!(facts(&x).0, "vnc");
        assert_eq!(x.extra["vnc.protocol"], "003.008");
        assert_eq!(
            facts(&m(Probe::Banner, b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23")).0,
            "telnet"
        );
    }

    #[test]
    fn http_servers() {
        let x = m(
            Probe::Http,
            b"HTTP/1.1 200 OK\r\nDate: x\r\nServer: nginx/1.24.0\r\n\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "http",
                Some("nginx"),
                Some("1.24.0"),
                Some("cpe:/a:f5:nginx:1.24.0")
            )
        );
        let x = m(
            Probe::Http,
            b"HTTP/1.1 404 Not Found\r\nserver: nginx\r\n\r\n",
        );
        assert_eq!(
            facts(&x),
            ("http", Some("nginx"), None, Some("cpe:/a:f5:nginx"))
        );
        let x = m(
            Probe::Http,
            b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.57 (Debian)\r\n\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "http",
                Some("Apache httpd"),
                Some("2.4.57"),
                Some("cpe:/a:apache:http_server:2.4.57")
            )
        );
        assert_eq!(x.extra["http.os"], "Debian");
        let x = m(
            Probe::Http,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nServer: Microsoft-IIS/10.0\r\n\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "http",
                Some("Microsoft IIS httpd"),
                Some("10.0"),
                Some("cpe:/a:microsoft:internet_information_services:10.0")
            )
        );
        let x = m(
            Probe::Http,
            b"HTTP/1.0 200 OK\r\nServer: scanfleet-lab-httpd/1.0\r\n\r\n<title>x</title>",
        );
        assert_eq!(
            facts(&x),
            ("http", Some("scanfleet-lab-httpd"), Some("1.0"), None)
        );
        let x = m(
            Probe::Http,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(facts(&x), ("http", None, None, None));
        let es = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\n  \"name\" : \"n1\",\n  \"version\" : {\n    \"number\" : \"8.11.1\",\n    \"build_flavor\" : \"default\"\n  },\n  \"tagline\" : \"You Know, for Search\"\n}\n";
        let x = m(Probe::Http, es);
        assert_eq!(
            facts(&x),
            (
                "elasticsearch",
                Some("Elasticsearch REST API"),
                Some("8.11.1"),
                Some("cpe:/a:elastic:elasticsearch:8.11.1")
            )
        );
        // The Server header only counts inside the header block.
        let x = m(
            Probe::Http,
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n\r\nServer: nginx/1.0\r\n",
        );
        assert_eq!(facts(&x), ("http", None, None, None));
    }

    #[test]
    fn client_first_protocols() {
        let x = m(
            Probe::Redis,
            b"+PONG\r\n$30\r\n# Server\r\nredis_version:7.0.15\r\n\r\n",
        );
        assert_eq!(
            facts(&x),
            (
                "redis",
                Some("Redis"),
                Some("7.0.15"),
                Some("cpe:/a:redis:redis:7.0.15")
            )
        );
        assert_eq!(
            facts(&m(Probe::Redis, b"+PONG\r\n-NOPERM x\r\n")),
            ("redis", Some("Redis"), None, Some("cpe:/a:redis:redis"))
        );
        assert_eq!(
            facts(&m(Probe::Redis, b"-NOAUTH Authentication required.\r\n")).0,
            "redis"
        );
        assert_eq!(
            facts(&m(
                Probe::Redis,
                b"-DENIED Redis is running in protected mode because\r\n"
            ))
            .0,
            "redis"
        );
        // Redis saying no to a TLS ClientHello or an HTTP request.
        assert_eq!(
            facts(&m(
                Probe::Http,
                b"-ERR unknown command '\\x16\\x03', with args beginning with: \r\n"
            ))
            .0,
            "redis"
        );
        let x = m(Probe::PostgreSql, b"N");
        assert_eq!(
            facts(&x),
            (
                "postgresql",
                Some("PostgreSQL"),
                None,
                Some("cpe:/a:postgresql:postgresql")
            )
        );
        assert_eq!(x.extra["postgresql.ssl"], "false");
        assert_eq!(m(Probe::PostgreSql, b"S").extra["postgresql.ssl"], "true");
        assert!(set().match_response(Probe::PostgreSql, b"NO").is_none());
        let x = m(Probe::Memcached, b"VERSION 1.6.21\r\n");
        assert_eq!(
            facts(&x),
            (
                "memcached",
                Some("memcached"),
                Some("1.6.21"),
                Some("cpe:/a:memcached:memcached:1.6.21")
            )
        );
        let start = b"\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\x00\x0ccapabilitiesF\x00\x00\x00\x00\x07productS\x00\x00\x00\x08RabbitMQ\x07versionS\x00\x00\x00\x063.12.1\x08platformS\x00\x00\x00\x03x\xce";
        let x = m(Probe::Amqp, start);
        assert_eq!(
            facts(&x),
            (
                "amqp",
                Some("RabbitMQ"),
                Some("3.12.1"),
                Some("cpe:/a:pivotal_software:rabbitmq:3.12.1")
            )
        );
        assert_eq!(facts(&m(Probe::Http, b"AMQP\x00\x00\x09\x01")).0, "amqp");
        let mut reply = vec![
            0x40, 0, 0, 0, 1, 0, 0, 0, 0x46, 0x4e, 0x43, 0x53, 1, 0, 0, 0,
        ];
        reply.extend_from_slice(b"\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x20\x00\x00\x00\x08ismaster\x00\x01");
        assert_eq!(facts(&m(Probe::MongoDb, &reply)).0, "mongodb");
    }

    /// A reply from worker/tests/fixtures/greetings (see SPEC-BUILT.md there
    /// for the few built from specifications; the rest are captured replies).
    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/greetings/", $name)).as_slice()
        };
    }

    #[test]
    fn loopback_daemon_fixtures() {
        let x = m(Probe::Mqtt, fixture!("mqtt-mosquitto.bin"));
        assert_eq!(
            facts(&x),
            (
                "mqtt",
                Some("Mosquitto"),
                Some("2.0.11"),
                Some("cpe:/a:eclipse:mosquitto:2.0.11")
            )
        );
        assert_eq!(
            (x.extra["auth"].as_str(), x.extra["mqtt.connack"].as_str()),
            ("none", "0")
        );
        let x = m(Probe::Banner, fixture!("nats-nats-server.bin"));
        assert_eq!(
            facts(&x),
            (
                "nats",
                Some("NATS Server"),
                Some("2.9.10"),
                Some("cpe:/a:linuxfoundation:nats-server:2.9.10")
            )
        );
        assert_eq!(
            (x.extra["auth"].as_str(), x.extra["nats.go"].as_str()),
            ("none", "go1.19.8")
        );
        let x = m(Probe::Epmd, fixture!("epmd-erlang.bin"));
        assert_eq!(x.service, "epmd");
        assert_eq!(x.extra["epmd.nodes"], "rabbit:25672");
        let x = m(Probe::ErlangDist, fixture!("erlang-dist-rabbitmq.bin"));
        assert_eq!(
            (x.service.as_str(), x.product.as_deref()),
            ("erlang-dist", Some("RabbitMQ"))
        );
        assert_eq!(
            (
                x.extra["erlang.status"].as_str(),
                x.extra["erlang.node"].as_str()
            ),
            ("ok", "rabbit@localhost")
        );
        let x = m(Probe::Amqp, fixture!("amqp-rabbitmq.bin"));
        assert_eq!(
            facts(&x),
            (
                "amqp",
                Some("RabbitMQ"),
                Some("3.10.8"),
                Some("cpe:/a:pivotal_software:rabbitmq:3.10.8")
            )
        );
        let x = m(Probe::PostgreSql, fixture!("postgresql-postgresql.bin"));
        assert_eq!(
            (x.service.as_str(), x.extra["postgresql.ssl"].as_str()),
            ("postgresql", "true")
        );
        let x = m(
            Probe::PostgreSqlStartup,
            fixture!("postgresql-startup-postgresql.bin"),
        );
        assert_eq!(x.service, "postgresql");
        assert_eq!(
            (
                x.extra["auth"].as_str(),
                x.extra["postgresql.auth"].as_str()
            ),
            ("none", "trust")
        );
        assert!(
            x.extra["postgresql.error"].starts_with("28000 role"),
            "{:?}",
            x.extra
        );
        let x = m(Probe::Banner, fixture!("mysql-mariadb.bin"));
        assert_eq!(
            facts(&x),
            (
                "mysql",
                Some("MariaDB"),
                Some("10.11.19"),
                Some("cpe:/a:mariadb:mariadb:10.11.19")
            )
        );
        assert_eq!(x.extra["mysql.auth_plugin"], "mysql_native_password");
        let x = m(Probe::Redis, fixture!("redis-redis.bin"));
        assert_eq!(
            facts(&x),
            (
                "redis",
                Some("Redis"),
                Some("7.0.15"),
                Some("cpe:/a:redis:redis:7.0.15")
            )
        );
        assert_eq!(x.extra["auth"], "none");
    }

    #[test]
    fn debian_daemon_fixtures() {
        let x = m(Probe::Ldap, fixture!("ldap-slapd.bin"));
        assert_eq!(
            facts(&x),
            (
                "ldap",
                Some("OpenLDAP"),
                None,
                Some("cpe:/a:openldap:openldap")
            )
        );
        assert_eq!(x.extra["anonymous"], "allowed");
        assert_eq!(x.extra["ldap.naming_contexts"], "dc=scanfleet,dc=test");
        assert_eq!(x.extra["ldap.versions"], "3");
        let x = m(Probe::Smb, fixture!("smb-samba.bin"));
        assert_eq!(x.service, "smb");
        assert_eq!(
            (
                x.extra["smb.dialect"].as_str(),
                x.extra["smb.signing"].as_str()
            ),
            ("3.1.1", "enabled")
        );
        let x = m(Probe::Dns, fixture!("dns-bind9.bin"));
        assert_eq!(
            facts(&x),
            (
                "dns",
                Some("ISC BIND"),
                Some("9.18.49"),
                Some("cpe:/a:isc:bind:9.18.49")
            )
        );
        assert_eq!(x.extra["dns.rcode"], "0");
        let x = m(Probe::Banner, fixture!("rsync-rsync.bin"));
        assert_eq!(
            (x.service.as_str(), x.extra["rsync.protocol"].as_str()),
            ("rsync", "32.0")
        );
        let x = m(Probe::HttpVersion, fixture!("etcd-etcd.bin"));
        assert_eq!(
            facts(&x),
            (
                "etcd",
                Some("etcd"),
                Some("3.4.23"),
                Some("cpe:/a:etcd:etcd:3.4.23")
            )
        );
        assert_eq!(x.extra["etcd.cluster"], "3.4.0");
        let x = m(Probe::HttpProxy, fixture!("http-proxy-squid.bin"));
        assert_eq!(
            facts(&x),
            (
                "http-proxy",
                Some("Squid http proxy"),
                Some("5.7"),
                Some("cpe:/a:squid-cache:squid:5.7")
            )
        );
        let x = m(Probe::Http, fixture!("http-squid.bin"));
        assert_eq!(
            facts(&x),
            (
                "http-proxy",
                Some("Squid http proxy"),
                Some("5.7"),
                Some("cpe:/a:squid-cache:squid:5.7")
            )
        );
        let x = m(Probe::Http, fixture!("http-haproxy.bin"));
        assert_eq!(
            facts(&x),
            (
                "http",
                Some("HAProxy http proxy stats"),
                Some("2.6.12"),
                Some("cpe:/a:haproxy:haproxy:2.6.12")
            )
        );
        assert_eq!(x.extra["haproxy.stats"], "open");
        let x = m(Probe::Banner, fixture!("ftp-vsftpd.bin"));
        assert_eq!(
            facts(&x),
            (
                "ftp",
                Some("vsftpd"),
                Some("3.0.3"),
                Some("cpe:/a:beasts:vsftpd:3.0.3")
            )
        );
        let x = m(Probe::Banner, fixture!("ssh-openssh.bin"));
        assert_eq!(
            facts(&x),
            (
                "ssh",
                Some("OpenSSH"),
                Some("9.2p1"),
                Some("cpe:/a:openbsd:openssh:9.2p1")
            )
        );
        let x = m(Probe::Http, fixture!("http-nginx.bin"));
        assert_eq!(
            facts(&x),
            (
                "http",
                Some("nginx"),
                Some("1.22.1"),
                Some("cpe:/a:f5:nginx:1.22.1")
            )
        );
        let x = m(Probe::Metrics, fixture!("prometheus-prometheus.bin"));
        assert_eq!(
            facts(&x),
            (
                "prometheus",
                Some("Prometheus"),
                Some("2.42.0+ds"),
                Some("cpe:/a:prometheus:prometheus:2.42.0+ds")
            )
        );
        let x = m(Probe::Memcached, fixture!("memcached-memcached.bin"));
        assert_eq!(
            facts(&x),
            (
                "memcached",
                Some("memcached"),
                Some("1.6.18"),
                Some("cpe:/a:memcached:memcached:1.6.18")
            )
        );
    }

    /// The daemon lab's captures (`<service>-debian.bin`, listed with their
    /// package and the request that drew them in index.json, written by
    /// `loadtest/daemons.sh capture`): each must get the lab's service name, and
    /// a version when one is announced must be the package's upstream version.
    #[test]
    fn daemon_lab_fixtures_match_their_truth() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/greetings");
        let Ok(index) = std::fs::read_to_string(dir.join("index.json")) else {
            return;
        };
        let entries: Vec<serde_json::Value> = serde_json::from_str(&index).expect("index.json");
        let mut checked = 0;
        for e in &entries {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let (file, port, service, request) = (
                field("file"),
                field("port"),
                field("service"),
                field("request"),
            );
            if port.ends_with("/udp") {
                continue;
            }
            // Only the requests detection itself sends (or whose answer is the same).
            let probe = match request.as_str() {
                "none (greeting)" => Probe::Banner,
                r if r.starts_with("GET / HTTP/1.1") || r.starts_with("TLS, then GET / ") => {
                    Probe::Http
                }
                r if r.starts_with("GET /version ") => Probe::HttpVersion,
                r if r.starts_with("version") => Probe::Memcached,
                r if r.starts_with("TCP (2-byte length) query version.bind") => Probe::Dns,
                r if r.starts_with("LDAPv3 anonymous")
                    || r.starts_with("anonymous bind, then rootDSE") =>
                {
                    Probe::Ldap
                }
                r if r.starts_with("SMB2 NEGOTIATE") => Probe::Smb,
                // (The lab's "CONNECT, then SUBSCRIBE" file holds only what followed
                // the CONNACK, which detection never sees alone.)
                r if r.starts_with("MQTT 3.1.1 CONNECT") => Probe::Mqtt,
                "SSLRequest" => Probe::PostgreSql,
                r if r.starts_with("StartupMessage") => Probe::PostgreSqlStartup,
                r if r.starts_with("PING") => Probe::Redis,
                _ => continue,
            };
            let bytes = std::fs::read(dir.join(&file)).expect("fixture");
            let x = m(probe, &bytes);
            let want = if service == "https" {
                "http"
            } else {
                service.as_str()
            };
            assert_eq!(x.service, want, "{file}: {x:?}");
            if let Some(v) = &x.version {
                let pkg = field("package_version");
                let pkg = pkg.split_once(':').map_or(pkg.as_str(), |(_, r)| r);
                let upstream = pkg.split(['-', '+', '~']).next().unwrap_or_default();
                assert_eq!(v, upstream, "{file}: {x:?}");
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} lab fixtures checked");
    }

    #[test]
    fn svn_and_dict_fixtures() {
        let x = m(Probe::Banner, fixture!("svn-svnserve.bin"));
        assert_eq!(
            (x.service.as_str(), x.product.as_deref()),
            ("svn", Some("Subversion svnserve"))
        );
        assert_eq!(x.extra["svn.protocol"], "2-2");
        let x = m(Probe::Banner, fixture!("dict-dictd.bin"));
        assert_eq!(
            facts(&x),
            (
                "dict",
                Some("dictd"),
                Some("1.13.0"),
                Some("cpe:/a:dict:dictd:1.13.0")
            )
        );
    }

    /// Greetings as their specifications or vendors document them; not
    /// captured (no daemon run here), so parser inputs rather than evidence.
    #[test]
    fn documented_greetings() {
        let x = m(Probe::Banner, b"220 VMware Authentication Daemon Version 1.10: SSL Required, ServerDaemonProtocol:SOAP, MKSDisplayProtocol:VNC , , NFCSSL supported/t\r\n");
        assert_eq!(
            facts(&x),
            (
                "vmware-auth",
                Some("VMware Authentication Daemon"),
                Some("1.10"),
                None
            )
        );
        assert_eq!(
            m(
                Probe::Banner,
                b":irc.example.net NOTICE * :*** Looking up your hostname...\r\n"
            )
            .service,
            "irc"
        );
        assert_eq!(
            m(
                Probe::Banner,
                b"200 news.example.net InterNetNews NNRP server INN 2.7.1 ready (posting ok)\r\n"
            )
            .service,
            "nntp"
        );
        let x = m(Probe::Banner, b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto\"\r\nOK \"ready\"\r\n");
        assert_eq!(
            (x.service.as_str(), x.product.as_deref()),
            ("managesieve", Some("Dovecot Pigeonhole"))
        );
        let x = m(Probe::Banner, b"INFO {\"server_id\":\"N1\",\"version\":\"2.10.4\",\"go\":\"go1.21\",\"auth_required\":true}\r\n");
        assert_eq!(
            (x.service.as_str(), x.extra["auth"].as_str()),
            ("nats", "required")
        );
        let x = m(Probe::Http, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"couchdb\":\"Welcome\",\"version\":\"3.3.2\",\"git_sha\":\"11a234070\"}\n");
        assert_eq!(
            facts(&x),
            (
                "couchdb",
                Some("Apache CouchDB"),
                Some("3.3.2"),
                Some("cpe:/a:apache:couchdb:3.3.2")
            )
        );
        let x = m(Probe::HttpProxy, b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n\r\n");
        assert_eq!(
            (x.service.as_str(), x.extra["auth"].as_str()),
            ("http-proxy", "required")
        );
        let x = m(Probe::Metrics, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 8\nnode_exporter_build_info{branch=\"\",goversion=\"go1.19.8\",revision=\"\",tags=\"\",version=\"1.5.0\"} 1\n");
        assert_eq!(
            facts(&x),
            (
                "prometheus-exporter",
                Some("node_exporter"),
                Some("1.5.0"),
                None
            )
        );
        assert_eq!(
            m(
                Probe::ZooKeeper,
                b"srvr is not executed because it is not in the whitelist.\n"
            )
            .service,
            "zookeeper"
        );
        let x = m(
            Probe::Redis,
            b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n",
        );
        assert_eq!(x.extra["auth"], "required");
    }

    #[test]
    fn spec_built_fixtures() {
        let x = m(Probe::Kafka, fixture!("kafka-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "kafka",
                Some("Apache Kafka"),
                None,
                Some("cpe:/a:apache:kafka")
            )
        );
        assert_eq!(
            (
                x.extra["kafka.api_keys"].as_str(),
                x.extra["kafka.api_versions_max"].as_str()
            ),
            ("3", "3")
        );
        let x = m(Probe::Cassandra, fixture!("cassandra-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "cassandra",
                Some("Apache Cassandra"),
                None,
                Some("cpe:/a:apache:cassandra")
            )
        );
        assert_eq!(x.extra["cql.version"], "3.4.6");
        assert_eq!(x.extra["cql.protocol_versions"], "3/v3,4/v4,5/v5,6/v6-beta");
        let x = m(Probe::Mssql, fixture!("mssql-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "mssql",
                Some("Microsoft SQL Server 2019"),
                Some("15.0.2000"),
                Some("cpe:/a:microsoft:sql_server:2019")
            )
        );
        assert_eq!(x.extra["mssql.encryption"], "unsupported");
        let x = m(Probe::OracleTns, fixture!("oracle-tns-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "oracle-tns",
                Some("Oracle TNS listener"),
                Some("19.0.0.0.0"),
                Some("cpe:/a:oracle:database_server:19.0.0.0.0")
            )
        );
        assert_eq!(x.extra["oracle.error"], "12514");
        let x = m(Probe::Rdp, fixture!("rdp-spec.bin"));
        assert_eq!(
            (x.service.as_str(), x.extra["rdp.security"].as_str()),
            ("rdp", "credssp")
        );
        let x = m(Probe::HttpVersion, fixture!("kubernetes-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "kubernetes",
                Some("Kubernetes API server"),
                Some("1.28.3"),
                Some("cpe:/a:kubernetes:kubernetes:1.28.3")
            )
        );
        let x = m(Probe::HttpVersion, fixture!("kubernetes-401-spec.bin"));
        assert_eq!(
            (x.service.as_str(), x.extra["auth"].as_str()),
            ("kubernetes", "required")
        );
        let x = m(Probe::HttpVersion, fixture!("kubernetes-403-spec.bin"));
        assert_eq!(
            (x.service.as_str(), x.extra["anonymous"].as_str()),
            ("kubernetes", "refused")
        );
        let x = m(Probe::VaultHealth, fixture!("vault-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "vault",
                Some("HashiCorp Vault"),
                Some("1.15.4"),
                Some("cpe:/a:hashicorp:vault:1.15.4")
            )
        );
        assert_eq!(
            (
                x.extra["vault.sealed"].as_str(),
                x.extra["vault.initialized"].as_str()
            ),
            ("false", "true")
        );
        let x = m(Probe::ConsulSelf, fixture!("consul-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "consul",
                Some("HashiCorp Consul"),
                Some("1.17.1"),
                Some("cpe:/a:hashicorp:consul:1.17.1")
            )
        );
        assert_eq!(x.extra["consul.datacenter"], "dc1");
        let x = m(Probe::HttpVersion, fixture!("docker-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "docker",
                Some("Docker Engine API"),
                Some("24.0.7"),
                Some("cpe:/a:docker:engine:24.0.7")
            )
        );
        assert_eq!(x.extra["docker.api_version"], "1.43");
        // The same Docker answer to GET / is still Docker, by its Server header.
        assert_eq!(
            m(Probe::Http, fixture!("docker-spec.bin")).service,
            "docker"
        );
        let x = m(Probe::Http, fixture!("opensearch-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "opensearch",
                Some("OpenSearch"),
                Some("2.11.1"),
                Some("cpe:/a:amazon:opensearch:2.11.1")
            )
        );
        let x = m(Probe::ZooKeeper, fixture!("zookeeper-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "zookeeper",
                Some("Apache ZooKeeper"),
                Some("3.8.0"),
                Some("cpe:/a:apache:zookeeper:3.8.0")
            )
        );
        assert_eq!(x.extra["zookeeper.mode"], "standalone");
        let x = m(Probe::Sip, fixture!("sip-spec.bin"));
        assert_eq!(
            facts(&x),
            (
                "sip",
                Some("Asterisk"),
                Some("20.5.0"),
                Some("cpe:/a:digium:asterisk:20.5.0")
            )
        );
        let x = m(Probe::Rtsp, fixture!("rtsp-spec.bin"));
        assert_eq!(
            (x.service.as_str(), x.product.as_deref()),
            ("rtsp", Some("GStreamer"))
        );
    }

    #[test]
    fn captures_are_escaped_and_bounded() {
        let x = m(
            Probe::Http,
            b"HTTP/1.1 200 OK\r\nServer: \x1b[2Jx\x00y/1\x07\r\n\r\n",
        );
        assert_eq!(x.product.as_deref(), Some("\\x1b[2Jx\\x00y"));
        assert_eq!(x.version.as_deref(), Some("1\\x07"));
        let long = [
            b"HTTP/1.1 200 OK\r\nServer: ".as_slice(),
            &[b'A'; 10_000],
            b"\r\n\r\n",
        ]
        .concat();
        let x = m(Probe::Http, &long);
        assert_eq!(x.product.map(|p| p.len()), Some(MAX_CAPTURE + 3));
    }

    #[test]
    fn templates() {
        let t = Template::parse("a$1-$$-$2", 3).unwrap();
        assert_eq!(
            t.0,
            vec![
                Piece::Text("a".into()),
                Piece::Group(1),
                Piece::Text("-$-".into()),
                Piece::Group(2)
            ]
        );
        assert!(Template::parse("$3", 3).is_err());
        assert!(Template::parse("$x", 3).is_err());
        assert!(Template::parse("tail$", 3).is_err());
    }

    #[test]
    fn bad_files_name_the_signature() {
        let bad_regex =
            "[[signature]]\nprobe = \"banner\"\nservice = \"x\"\npattern = '(unclosed'\n";
        let e = SignatureSet::from_toml(bad_regex).unwrap_err();
        assert!(matches!(e, SignatureError::Regex { index: 1, .. }), "{e}");
        let bad_probe = "[[signature]]\nprobe = \"gopher\"\nservice = \"x\"\npattern = 'x'\n";
        assert!(
            SignatureSet::from_toml(bad_probe)
                .unwrap_err()
                .to_string()
                .contains("unknown probe")
        );
        let tls = "[[signature]]\nprobe = \"tls\"\nservice = \"x\"\npattern = 'x'\n";
        assert!(SignatureSet::from_toml(tls).is_err());
        let bad_group = "[[signature]]\nprobe = \"banner\"\nservice = \"x\"\npattern = '(a)'\nversion = \"$2\"\n";
        let e = SignatureSet::from_toml(bad_group).unwrap_err().to_string();
        assert!(e.contains("#1 (x)") && e.contains("$2"), "{e}");
        let unknown_field =
            "[[signature]]\nprobe = \"banner\"\nservice = \"x\"\npattern = 'x'\nprodukt = \"y\"\n";
        assert!(matches!(
            SignatureSet::from_toml(unknown_field),
            Err(SignatureError::Toml(_))
        ));
        let bad_name = "[[signature]]\nprobe = \"banner\"\nservice = \"X Y\"\npattern = 'x'\n";
        assert!(SignatureSet::from_toml(bad_name).is_err());
        assert!(SignatureSet::from_toml("").unwrap().is_empty());
        assert!(matches!(
            SignatureSet::from_file(Path::new("/nonexistent/sigs.toml")),
            Err(SignatureError::Io { .. })
        ));
    }

    #[test]
    fn file_order_decides() {
        let text = "[[signature]]\nprobe = \"banner\"\nservice = \"first\"\npattern = '^ab'\n\n[[signature]]\nprobe = \"banner\"\nservice = \"second\"\npattern = '^a(x?)'\nproduct = \"P$1\"\n";
        let s = SignatureSet::from_toml(text).unwrap();
        assert_eq!(
            s.match_response(Probe::Banner, b"abc").unwrap().service,
            "first"
        );
        let x = s.match_response(Probe::Http, b"ax").unwrap();
        assert_eq!(
            (x.service.as_str(), x.product.as_deref()),
            ("second", Some("Px"))
        );
        assert!(s.match_response(Probe::Banner, b"").is_none());
    }

    proptest! {
        #[test]
        fn matcher_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let s = set();
            for p in Probe::ALL {
                if let Some(x) = s.match_response(p, &bytes) {
                    let all = [Some(&x.service), x.product.as_ref(), x.version.as_ref(), x.cpe.as_ref()];
                    for v in all.into_iter().flatten().chain(x.extra.values()) {
                        prop_assert!(v.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                    }
                }
            }
        }

        #[test]
        fn matcher_survives_mutated_greetings(
            base in prop::sample::select(vec![
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.2\r\n\r\n".to_vec(),
                b"\x4a\x00\x00\x00\x0a8.0.36\x00".to_vec(),
                b"220 h ESMTP Postfix\r\n".to_vec(),
            ]),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = base;
            let i = at.index(bytes.len());
            bytes[i] = byte;
            for p in Probe::ALL {
                let _ = set().match_response(p, &bytes);
            }
        }
    }
}
