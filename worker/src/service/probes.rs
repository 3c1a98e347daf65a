//! Protocol probes: what to send, in which order for a given port, and how to read
//! the answer without trusting it.
//!
//! Every probe runs on a fresh connection, so one confused service cannot spoil the
//! next probe. Reads are bounded in bytes and in time; the answer is only ever
//! handed to the signature matcher and the fact extractors, never interpreted
//! further.

use std::net::SocketAddr;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// One way of making a service talk. The names are the `probe` values of the
/// signature file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Send nothing and listen: SSH, SMTP, FTP, POP3, IMAP, MySQL, VNC and Telnet
    /// speak first. Banner signatures are also tried on every other probe's
    /// answer, because a service that speaks first puts its greeting in front of
    /// whatever it says to our probe.
    Banner,
    /// `GET / HTTP/1.1`.
    Http,
    /// A TLS handshake, then an HTTP request inside the tunnel. It has no
    /// signatures of its own: the answer inside is matched as `http`.
    Tls,
    /// RESP `PING` and `INFO server`, pipelined.
    Redis,
    /// PostgreSQL `SSLRequest`: any PostgreSQL server answers one byte, `S` or `N`.
    PostgreSql,
    /// memcached text protocol `version`.
    Memcached,
    /// MongoDB legacy `isMaster` on `admin.$cmd`, which every version still answers
    /// (drivers use it for the handshake).
    MongoDb,
    /// AMQP 0-9-1 protocol header: the broker answers `Connection.Start`.
    Amqp,
}

impl Probe {
    /// Every probe, in a fixed order (used to validate the signature file).
    pub const ALL: [Probe; 8] = [
        Probe::Banner,
        Probe::Http,
        Probe::Tls,
        Probe::Redis,
        Probe::PostgreSql,
        Probe::Memcached,
        Probe::MongoDb,
        Probe::Amqp,
    ];

    /// The name used in the signature file.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Banner => "banner",
            Probe::Http => "http",
            Probe::Tls => "tls",
            Probe::Redis => "redis",
            Probe::PostgreSql => "postgresql",
            Probe::Memcached => "memcached",
            Probe::MongoDb => "mongodb",
            Probe::Amqp => "amqp",
        }
    }

    /// The probe a signature file name refers to.
    pub fn from_name(name: &str) -> Option<Probe> {
        Probe::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Position in [`Probe::ALL`], for per-probe tables.
    pub(crate) fn index(self) -> usize {
        Probe::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// Bytes to send for a plain (non-TLS) probe. `Banner` sends nothing; `Http`
    /// and `Tls` are built by [`super::http::request`] because they carry the host.
    pub(crate) fn payload(self) -> Vec<u8> {
        match self {
            Probe::Banner | Probe::Http | Probe::Tls => Vec::new(),
            Probe::Redis => REDIS_PROBE.to_vec(),
            Probe::PostgreSql => POSTGRES_SSL_REQUEST.to_vec(),
            Probe::Memcached => b"version\r\n".to_vec(),
            Probe::MongoDb => mongodb_is_master(),
            Probe::Amqp => AMQP_091_HEADER.to_vec(),
        }
    }

    /// Whether `buf` already holds a whole answer to this probe, so the read can
    /// stop without waiting for the idle gap.
    pub(crate) fn is_complete(self, buf: &[u8]) -> bool {
        match self {
            Probe::Banner | Probe::Tls => false,
            Probe::Http => super::http::is_complete(buf),
            Probe::Redis => resp_replies(buf) >= 2 || buf.starts_with(b"-DENIED"),
            Probe::PostgreSql => matches!(buf.first(), Some(b'S' | b'N')),
            Probe::Memcached => buf.ends_with(b"\r\n"),
            Probe::MongoDb => le_length_prefixed_complete(buf),
            Probe::Amqp => amqp_frame_complete(buf),
        }
    }
}

/// `PING` then `INFO server`: PING proves Redis even when INFO is renamed or
/// forbidden, INFO gives the version.
const REDIS_PROBE: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";

/// Length 8, request code 80877103.
const POSTGRES_SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

const AMQP_091_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// An `OP_QUERY` of `{isMaster: 1}` against `admin.$cmd`.
pub(crate) fn mongodb_is_master() -> Vec<u8> {
    // BSON document {isMaster: int32 1}.
    let mut doc = Vec::with_capacity(32);
    doc.extend_from_slice(&[0; 4]);
    doc.push(0x10); // int32 element
    doc.extend_from_slice(b"isMaster\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0);
    let doc_len = doc.len() as i32;
    doc[..4].copy_from_slice(&doc_len.to_le_bytes());

    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&0i32.to_le_bytes()); // flags
    body.extend_from_slice(b"admin.$cmd\0");
    body.extend_from_slice(&0i32.to_le_bytes()); // numberToSkip
    body.extend_from_slice(&(-1i32).to_le_bytes()); // numberToReturn
    body.extend_from_slice(&doc);

    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&0x5343_4e46i32.to_le_bytes()); // requestID, arbitrary
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2004i32.to_le_bytes()); // OP_QUERY
    msg.extend_from_slice(&body);
    msg
}

/// Number of complete RESP replies at the start of `buf` (simple strings, errors,
/// integers and bulk strings; anything else ends the count).
pub(crate) fn resp_replies(buf: &[u8]) -> usize {
    let mut rest = buf;
    let mut count = 0;
    loop {
        let Some(line_end) = memmem::find(rest, b"\r\n") else {
            return count;
        };
        let (line, after) = (&rest[..line_end], &rest[line_end + 2..]);
        match line.first() {
            Some(b'+' | b'-' | b':') => rest = after,
            Some(b'$') => {
                let len = std::str::from_utf8(&line[1..])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok());
                match len {
                    Some(-1) => rest = after,
                    Some(n) if n >= 0 => {
                        let need = (n as usize).saturating_add(2);
                        if after.len() < need {
                            return count;
                        }
                        rest = &after[need..];
                    }
                    _ => return count,
                }
            }
            _ => return count,
        }
        count += 1;
    }
}

/// MongoDB messages start with their total length, little endian.
fn le_length_prefixed_complete(buf: &[u8]) -> bool {
    match buf.get(..4) {
        Some(&[a, b, c, d]) => {
            let len = u32::from_le_bytes([a, b, c, d]) as usize;
            buf.len() >= len
        }
        _ => false,
    }
}

/// An AMQP frame is 7 header bytes, the payload and a frame-end octet; a broker
/// that refuses our version answers its own 8-byte protocol header instead.
fn amqp_frame_complete(buf: &[u8]) -> bool {
    if buf.starts_with(b"AMQP") {
        return buf.len() >= 8;
    }
    match buf.get(3..7) {
        Some(&[a, b, c, d]) => {
            let size = u32::from_be_bytes([a, b, c, d]) as usize;
            buf.len() >= size.saturating_add(8)
        }
        _ => false,
    }
}

/// The probes to try on one port, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Listen for a spontaneous banner before sending anything. Skipped on ports
    /// whose usual service never speaks first: waiting there only burns budget,
    /// and a greeting that does come shows up in the first probe's answer anyway.
    pub passive_first: bool,
    /// Probes in order; `true` marks one chosen by the port hint (it gets the
    /// longer timeout, because the service is probably what the port says).
    pub probes: Vec<(Probe, bool)>,
}

/// Tried on every port after the hinted probes, cheapest and most common first.
const FALLBACK: [Probe; 3] = [Probe::Http, Probe::Tls, Probe::Redis];

/// Ports where TLS is the usual first layer.
const TLS_PORTS: &[u16] = &[
    443, 465, 563, 636, 853, 990, 992, 993, 995, 2376, 4443, 5671, 5986, 6443, 8443, 8883, 9443,
    10443,
];

/// Ports where plain HTTP is the usual service.
const HTTP_PORTS: &[u16] = &[
    80, 81, 591, 3000, 5000, 7001, 8000, 8001, 8008, 8080, 8081, 8088, 8180, 8888, 9000, 9090,
    9200, 15672,
];

/// The client-first protocol a port usually carries.
fn hint(port: u16) -> Option<Probe> {
    match port {
        p if TLS_PORTS.contains(&p) => Some(Probe::Tls),
        p if HTTP_PORTS.contains(&p) => Some(Probe::Http),
        6379 | 6380 | 26379 => Some(Probe::Redis),
        5432 => Some(Probe::PostgreSql),
        11211 => Some(Probe::Memcached),
        27017..=27019 => Some(Probe::MongoDb),
        5672 => Some(Probe::Amqp),
        _ => None,
    }
}

/// What to try on `port`: the hinted probe first when the port suggests one,
/// otherwise listen first (SSH, SMTP and friends speak first), then the fallback.
pub(crate) fn plan(port: u16) -> Plan {
    let hinted = hint(port);
    let mut probes: Vec<(Probe, bool)> = hinted.into_iter().map(|p| (p, true)).collect();
    for p in FALLBACK {
        if Some(p) != hinted {
            probes.push((p, false));
        }
    }
    Plan {
        passive_first: hinted.is_none(),
        probes,
    }
}

/// How a connection attempt ended.
#[derive(Debug)]
pub(crate) enum Connect {
    Ok(TcpStream),
    /// Refused or unreachable: the port is gone, stop probing it.
    Gone,
    /// No answer in time: worth no further connection attempts either.
    TimedOut,
}

/// Connect within `wait`, never past `deadline`.
pub(crate) async fn connect(addr: SocketAddr, wait: Duration, deadline: Instant) -> Connect {
    let until = (Instant::now() + wait).min(deadline);
    match timeout_at(until, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            // Probes are single small writes followed by a read; Nagle only delays them.
            let _ = s.set_nodelay(true);
            Connect::Ok(s)
        }
        Ok(Err(_)) => Connect::Gone,
        Err(_) => Connect::TimedOut,
    }
}

/// Send `payload` within `wait`. `false` when the peer would not take it.
pub(crate) async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    payload: &[u8],
    wait: Duration,
    deadline: Instant,
) -> bool {
    if payload.is_empty() {
        return true;
    }
    let until = (Instant::now() + wait).min(deadline);
    let write = async {
        stream.write_all(payload).await?;
        stream.flush().await
    };
    matches!(timeout_at(until, write).await, Ok(Ok(())))
}

/// What a service said to one probe.
#[derive(Debug, Default)]
pub(crate) struct Response {
    /// At most the read limit, as received.
    pub bytes: Vec<u8>,
    /// The peer closed or reset the connection (as opposed to going quiet).
    pub closed: bool,
}

/// Bounds of one read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// Wait for the first byte.
    pub first_wait: Duration,
    /// Once bytes flow, a pause this long ends the answer.
    pub idle: Duration,
    /// Never read past this instant.
    pub deadline: Instant,
    /// Never keep more than this many bytes.
    pub max_bytes: usize,
}

/// Read an answer: wait up to `first_wait` for the first byte, then keep reading
/// until the peer pauses for `idle`, closes, `complete` says the answer is whole,
/// or `max_bytes` are in. Errors end the read like a close: what arrived so far is
/// still evidence.
pub(crate) async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: ReadLimits,
    complete: impl Fn(&[u8]) -> bool,
) -> Response {
    let mut out = Response {
        bytes: Vec::with_capacity(limits.max_bytes.min(4096)),
        closed: false,
    };
    let mut chunk = [0u8; 4096];
    while out.bytes.len() < limits.max_bytes {
        let wait = if out.bytes.is_empty() {
            limits.first_wait
        } else {
            limits.idle
        };
        let until = (Instant::now() + wait).min(limits.deadline);
        let room = (limits.max_bytes - out.bytes.len()).min(chunk.len());
        let Some(window) = chunk.get_mut(..room) else {
            break;
        };
        match timeout_at(until, stream.read(window)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.closed = true;
                break;
            }
            Ok(Ok(n)) => {
                out.bytes
                    .extend_from_slice(window.get(..n).unwrap_or_default());
                if complete(&out.bytes) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_port_hints() {
        let p = plan(443);
        assert!(!p.passive_first);
        assert_eq!(
            p.probes,
            vec![
                (Probe::Tls, true),
                (Probe::Http, false),
                (Probe::Redis, false)
            ]
        );
        let p = plan(8081);
        assert_eq!(p.probes[0], (Probe::Http, true));
        assert_eq!(p.probes.len(), 3);
        assert_eq!(plan(6379).probes[0], (Probe::Redis, true));
        assert_eq!(plan(5432).probes[0], (Probe::PostgreSql, true));
        assert_eq!(plan(11211).probes[0], (Probe::Memcached, true));
        assert_eq!(plan(27017).probes[0], (Probe::MongoDb, true));
        assert_eq!(plan(5672).probes[0], (Probe::Amqp, true));
        assert_eq!(plan(5432).probes.len(), 4);
        for port in [22, 25, 21, 9999, 3306] {
            let p = plan(port);
            assert!(p.passive_first, "{port}");
            assert_eq!(
                p.probes,
                vec![
                    (Probe::Http, false),
                    (Probe::Tls, false),
                    (Probe::Redis, false)
                ]
            );
        }
    }

    #[test]
    fn probe_names_round_trip() {
        for p in Probe::ALL {
            assert_eq!(Probe::from_name(p.name()), Some(p));
            assert_eq!(Probe::ALL[p.index()], p);
        }
        assert_eq!(Probe::from_name("nope"), None);
    }

    #[test]
    fn mongodb_message_is_self_consistent() {
        let m = mongodb_is_master();
        assert_eq!(m.len(), 58);
        assert_eq!(
            u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[12..16], &2004i32.to_le_bytes());
        let doc = &m[16 + 4 + 11 + 8..];
        assert_eq!(
            u32::from_le_bytes([doc[0], doc[1], doc[2], doc[3]]) as usize,
            doc.len()
        );
        assert_eq!(doc.last(), Some(&0));
    }

    #[test]
    fn resp_reply_counting() {
        assert_eq!(resp_replies(b""), 0);
        assert_eq!(resp_replies(b"+PONG\r\n"), 1);
        assert_eq!(resp_replies(b"+PONG\r\n$5\r\nab"), 1);
        assert_eq!(resp_replies(b"+PONG\r\n$5\r\nabcde\r\n"), 2);
        assert_eq!(resp_replies(b"-NOAUTH x\r\n-NOAUTH x\r\n"), 2);
        assert_eq!(resp_replies(b"$-1\r\n:1\r\n"), 2);
        assert_eq!(resp_replies(b"$99999999999999999999\r\n"), 0);
        assert_eq!(resp_replies(b"$-7\r\n"), 0);
        assert_eq!(resp_replies(b"HTTP/1.1 400\r\n"), 0);
    }

    #[test]
    fn completeness_checks() {
        assert!(Probe::PostgreSql.is_complete(b"N"));
        assert!(!Probe::PostgreSql.is_complete(b"E"));
        assert!(Probe::Memcached.is_complete(b"VERSION 1.6.21\r\n"));
        assert!(Probe::Amqp.is_complete(b"AMQP\x00\x00\x09\x01"));
        assert!(!Probe::Amqp.is_complete(b"\x01\x00\x00\x00\x00\x00\x04ab"));
        assert!(Probe::Amqp.is_complete(b"\x01\x00\x00\x00\x00\x00\x02ab\xce"));
        assert!(Probe::MongoDb.is_complete(&[5, 0, 0, 0, 9]));
        assert!(!Probe::MongoDb.is_complete(&[50, 0, 0, 0, 9]));
        assert!(!Probe::Banner.is_complete(b"SSH-2.0-x\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn completeness_checks_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for p in Probe::ALL {
                let _ = p.is_complete(&bytes);
            }
            let _ = resp_replies(&bytes);
        }
    }
}
