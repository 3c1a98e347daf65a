//! Follow-up dialogues once a service is named: STARTTLS for SMTP (RFC 3207),
//! IMAP (RFC 3501 section 6.2.1), POP3 (RFC 2595), FTP (AUTH TLS, RFC 4217),
//! PostgreSQL (SSLRequest) and LDAP (the StartTLS extended operation, RFC 4511
//! section 4.14); FTP anonymous login (RFC 1635); PostgreSQL's authentication
//! method; VNC's security types (RFC 6143 section 7.1.2).
//!
//! Each runs on a fresh connection within what is left of the port budget and
//! only adds facts (`starttls`, the `tls.*` certificate keys, `anonymous`,
//! `auth`); a dialogue that fails midway leaves what the detection found.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use memchr::memmem;
use scanfleet_common::ServiceInfo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::probes::{self, Probe, ReadLimits, Step, ldap, pg};
use super::{Detector, Handshake, MIN_STEP, tls};

/// The line protocols with a STARTTLS verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mail {
    Smtp,
    Imap,
    Pop3,
    Ftp,
}

/// An SMTP or FTP reply is whole when its last line has a space after the code.
fn coded_reply_complete(buf: &[u8]) -> bool {
    if !buf.ends_with(b"\n") {
        return false;
    }
    let body = &buf[..buf.len() - 1];
    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    last.len() >= 4 && last[..3].iter().all(u8::is_ascii_digit) && last[3] == b' '
}

/// A line-protocol reply is whole: a tagged IMAP result, a one-line POP3 or
/// IMAP greeting, a POP3 multi-line answer's terminating dot.
fn reply_complete(mail: Mail, buf: &[u8]) -> bool {
    match mail {
        Mail::Smtp | Mail::Ftp => coded_reply_complete(buf),
        Mail::Imap => {
            buf.ends_with(b"\n")
                && buf.split(|&b| b == b'\n').any(|l| {
                    l.starts_with(b"* OK") || l.starts_with(b"a1 ") || l.starts_with(b"a2 ")
                })
        }
        Mail::Pop3 => {
            buf.ends_with(b"\r\n.\r\n") || (buf.ends_with(b"\n") && buf.starts_with(b"-ERR"))
        }
    }
}

impl Detector {
    /// The follow-up dialogue for the service just found, if it has one.
    pub(super) async fn enrich(
        &self,
        addr: SocketAddr,
        step: Step,
        mut info: ServiceInfo,
        deadline: Instant,
    ) -> ServiceInfo {
        if deadline.saturating_duration_since(Instant::now()) < MIN_STEP {
            return info;
        }
        if step.tls {
            if info.extra.contains_key("tls.version") {
                self.tls_versions(addr, &mut info, deadline).await;
            }
            return info;
        }
        match info.name.as_str() {
            "smtp" => {
                self.mail_starttls(addr, Mail::Smtp, &mut info, deadline)
                    .await
            }
            "imap" => {
                self.mail_starttls(addr, Mail::Imap, &mut info, deadline)
                    .await
            }
            "pop3" => {
                self.mail_starttls(addr, Mail::Pop3, &mut info, deadline)
                    .await
            }
            "ftp" => {
                self.mail_starttls(addr, Mail::Ftp, &mut info, deadline)
                    .await;
                self.ftp_anonymous(addr, &mut info, deadline).await;
            }
            "postgresql" => self.postgresql(addr, &mut info, deadline).await,
            "ldap" if info.extra.get("starttls").is_some_and(|v| v == "offered") => {
                self.ldap_starttls(addr, &mut info, deadline).await;
            }
            "vnc" => self.vnc_security(addr, &mut info, deadline).await,
            _ => {}
        }
        info
    }

    /// `tls.versions`: which of TLS 1.0 to 1.3 the server completes a
    /// handshake with, one connection each (1.0 and 1.1 by a hand-made
    /// ClientHello, since rustls does not speak them).
    async fn tls_versions(&self, addr: SocketAddr, info: &mut ServiceInfo, deadline: Instant) {
        let mut accepted = Vec::new();
        for (minor, name) in [(1u8, "TLSv1.0"), (2, "TLSv1.1")] {
            let Some(mut s) = self.open(addr, deadline).await else {
                return;
            };
            let reply = self
                .say(
                    &mut s,
                    &tls::legacy_client_hello(minor),
                    deadline,
                    |b: &[u8]| b.len() >= 11,
                )
                .await;
            if tls::legacy_accepted(&reply, minor) {
                accepted.push(name);
            }
        }
        for (version, name) in [
            (&rustls::version::TLS12, "TLSv1.2"),
            (&rustls::version::TLS13, "TLSv1.3"),
        ] {
            let Ok(config) = tls::single_version_config(version) else {
                continue;
            };
            let Some(s) = self.open(addr, deadline).await else {
                return;
            };
            if let Handshake::Done(_) = self
                .handshake(config, addr, s, self.config.probe_timeout, deadline)
                .await
            {
                accepted.push(name);
            }
        }
        if !accepted.is_empty() {
            info.extra.insert("tls.versions".into(), accepted.join(","));
        }
    }

    fn chat_limits(&self, deadline: Instant) -> ReadLimits {
        ReadLimits {
            first_wait: self.config.probe_timeout,
            idle: self.config.read_idle,
            deadline,
            max_bytes: self.config.read_cap(),
        }
    }

    /// Send `cmd` (nothing when empty) and read the reply.
    async fn say(
        &self,
        stream: &mut TcpStream,
        cmd: &[u8],
        deadline: Instant,
        complete: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        if !probes::send(stream, cmd, self.config.probe_timeout, deadline).await {
            return Vec::new();
        }
        probes::read_response(stream, self.chat_limits(deadline), complete)
            .await
            .bytes
    }

    async fn open(&self, addr: SocketAddr, deadline: Instant) -> Option<TcpStream> {
        match probes::connect(addr, self.config.connect_timeout, deadline).await {
            probes::Connect::Ok(s) => Some(s),
            _ => None,
        }
    }

    /// Upgrade `tcp` to TLS and add the certificate facts (every `tls.*` key
    /// the session gives, but not `tls` itself: the service is plaintext).
    async fn upgrade(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
        info: &mut ServiceInfo,
        deadline: Instant,
    ) {
        let Some(config) = self.tls.clone() else {
            return;
        };
        let facts: BTreeMap<String, String> = match self
            .handshake(config, addr, tcp, self.config.probe_timeout, deadline)
            .await
        {
            Handshake::Done(s) => tls::session_facts(s.get_ref().1),
            Handshake::Failed(failed) => failed.extra,
            _ => return,
        };
        for (k, v) in facts {
            if k != "tls" {
                info.extra.entry(k).or_insert(v);
            }
        }
    }

    async fn mail_starttls(
        &self,
        addr: SocketAddr,
        mail: Mail,
        info: &mut ServiceInfo,
        deadline: Instant,
    ) {
        let Some(mut s) = self.open(addr, deadline).await else {
            return;
        };
        let done = |b: &[u8]| reply_complete(mail, b);
        let greeting = self.say(&mut s, b"", deadline, done).await;
        if greeting.is_empty() {
            return;
        }
        let (ask, verb, go): (&[u8], &[u8], &[u8]) = match mail {
            Mail::Smtp => (b"EHLO scanfleet.invalid\r\n", b"STARTTLS\r\n", b"220"),
            Mail::Imap => (b"a1 CAPABILITY\r\n", b"a2 STARTTLS\r\n", b"a2 OK"),
            Mail::Pop3 => (b"CAPA\r\n", b"STLS\r\n", b"+OK"),
            Mail::Ftp => (b"FEAT\r\n", b"AUTH TLS\r\n", b"234"),
        };
        let caps = self.say(&mut s, ask, deadline, done).await;
        let upper = caps.to_ascii_uppercase();
        let offered = match mail {
            Mail::Smtp => {
                memmem::find(&upper, b"250-STARTTLS").or(memmem::find(&upper, b"250 STARTTLS"))
            }
            Mail::Imap => memmem::find(&upper, b" STARTTLS")
                .or(memmem::find(&greeting.to_ascii_uppercase(), b" STARTTLS")),
            Mail::Pop3 => memmem::find(&upper, b"\nSTLS"),
            Mail::Ftp => memmem::find(&upper, b" AUTH TLS").or(memmem::find(&upper, b" AUTH SSL")),
        }
        .is_some();
        if mail == Mail::Smtp
            && let Some(at) =
                memmem::find(&upper, b"250-AUTH ").or(memmem::find(&upper, b"250 AUTH "))
        {
            let line = caps[at + 9..]
                .split(|&b| b == b'\r' || b == b'\n')
                .next()
                .unwrap_or_default();
            info.extra.insert(
                "smtp.auth".into(),
                scanfleet_common::escape_bytes(line, 128),
            );
        }
        if !offered {
            return;
        }
        info.extra.insert("starttls".into(), "offered".into());
        // The reply to the STARTTLS verb is one line in every dialect.
        let reply = self
            .say(&mut s, verb, deadline, |b: &[u8]| b.ends_with(b"\n"))
            .await;
        if reply.starts_with(go) {
            self.upgrade(addr, s, info, deadline).await;
        }
    }

    async fn ftp_anonymous(&self, addr: SocketAddr, info: &mut ServiceInfo, deadline: Instant) {
        let Some(mut s) = self.open(addr, deadline).await else {
            return;
        };
        let greeting = self.say(&mut s, b"", deadline, coded_reply_complete).await;
        if !greeting.starts_with(b"220") {
            return;
        }
        let user = self
            .say(
                &mut s,
                b"USER anonymous\r\n",
                deadline,
                coded_reply_complete,
            )
            .await;
        let verdict = if user.starts_with(b"230") {
            "allowed"
        } else if user.starts_with(b"331") {
            let pass = self
                .say(
                    &mut s,
                    b"PASS scanfleet@scanfleet.invalid\r\n",
                    deadline,
                    coded_reply_complete,
                )
                .await;
            if pass.starts_with(b"230") {
                "allowed"
            } else if pass.starts_with(b"5") {
                "refused"
            } else {
                return;
            }
        } else if user.starts_with(b"5") {
            "refused"
        } else {
            return;
        };
        info.extra.insert("anonymous".into(), verdict.into());
        let _ = probes::send(&mut s, b"QUIT\r\n", self.config.read_idle, deadline).await;
    }

    async fn postgresql(&self, addr: SocketAddr, info: &mut ServiceInfo, deadline: Instant) {
        if info
            .extra
            .get("postgresql.ssl")
            .is_some_and(|v| v == "true")
        {
            info.extra.insert("starttls".into(), "offered".into());
            if let Some(mut s) = self.open(addr, deadline).await {
                let ssl = Probe::PostgreSql.payload(addr, false);
                let answer = self
                    .say(&mut s, &ssl, deadline, |b: &[u8]| !b.is_empty())
                    .await;
                if answer == b"S" {
                    self.upgrade(addr, s, info, deadline).await;
                }
            }
        }
        let Some(mut s) = self.open(addr, deadline).await else {
            return;
        };
        let answer = self
            .say(&mut s, &pg::startup(), deadline, pg::is_complete)
            .await;
        let d = pg::decode(&answer);
        info.version = info.version.take().or(d.version);
        for (k, v) in d.extra {
            info.extra.entry(k).or_insert(v);
        }
    }

    async fn ldap_starttls(&self, addr: SocketAddr, info: &mut ServiceInfo, deadline: Instant) {
        let Some(mut s) = self.open(addr, deadline).await else {
            return;
        };
        let answer = self
            .say(
                &mut s,
                &ldap::starttls_request(),
                deadline,
                ldap::is_complete,
            )
            .await;
        if ldap::starttls_accepted(&answer) {
            self.upgrade(addr, s, info, deadline).await;
        }
    }

    async fn vnc_security(&self, addr: SocketAddr, info: &mut ServiceInfo, deadline: Instant) {
        let Some(mut s) = self.open(addr, deadline).await else {
            return;
        };
        let hello = self
            .say(&mut s, b"", deadline, |b: &[u8]| b.len() >= 12)
            .await;
        let Some(version) = hello.get(..12).filter(|v| v.starts_with(b"RFB ")) else {
            return;
        };
        // Answer with the server's own version, capped at 3.8 (RFC 6143 7.1.1).
        let ours: &[u8] = if version >= b"RFB 003.008\n".as_slice() {
            b"RFB 003.008\n"
        } else {
            version
        };
        let old = ours < b"RFB 003.007\n".as_slice();
        let types = self
            .say(&mut s, ours, deadline, |b: &[u8]| {
                if old {
                    b.len() >= 4
                } else {
                    b.first().is_some_and(|&n| b.len() > usize::from(n))
                }
            })
            .await;
        let list: Vec<u8> = if old {
            // 3.3: the server picks one type, a big-endian u32.
            types.get(3).copied().into_iter().collect()
        } else {
            match types.split_first() {
                Some((&n, rest)) if n > 0 => rest.iter().take(usize::from(n)).copied().collect(),
                _ => return,
            }
        };
        if list.is_empty() {
            return;
        }
        let names: Vec<String> = list.iter().map(u8::to_string).collect();
        info.extra.insert("vnc.security".into(), names.join(","));
        let auth = if list.contains(&1) {
            "none"
        } else {
            "required"
        };
        info.extra.insert("auth".into(), auth.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ends() {
        assert!(coded_reply_complete(b"250-a\r\n250 b\r\n"));
        assert!(!coded_reply_complete(b"250-a\r\n"));
        assert!(!coded_reply_complete(b"\n"));
        assert!(reply_complete(Mail::Pop3, b"+OK\r\nSTLS\r\n.\r\n"));
        assert!(reply_complete(
            Mail::Imap,
            b"* CAPABILITY x\r\na1 OK done\r\n"
        ));
    }
}
