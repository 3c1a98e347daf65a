//! Protocol probes: what to send, in which order for a given port, and how to read
//! the answer without trusting it.
//!
//! Every probe runs on a fresh connection, so one confused service cannot spoil the
//! next probe. Reads are bounded in bytes and in time; the answer is only ever
//! handed to the signature matcher and the decoders (one small module per binary
//! protocol, each written from that protocol's specification), never interpreted
//! further.

pub mod cql;
pub mod decoded;
pub mod dns;
pub mod epmd;
pub mod kafka;
pub mod ldap;
pub mod mqtt;
pub mod mssql;
pub mod pg;
pub mod rdp;
pub mod smb;
pub mod tns;
mod wire;

use wire::{
    AMQP_091_HEADER, POSTGRES_SSL_REQUEST, REDIS_PROBE, amqp_frame_complete, host_port,
    le_length_prefixed_complete, sip_options, text_head_complete,
};
pub(crate) use wire::{mongodb_is_master, resp_replies};

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

pub use decoded::Decoded;

/// One way of making a service talk. The names are the `probe` values of the
/// signature file. Any probe can also run inside TLS (see [`Step::tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Send nothing and listen: SSH, SMTP, FTP, POP3, IMAP, MySQL, VNC, NATS,
    /// rsync and Telnet speak first. Banner signatures are also tried on every
    /// other probe's answer, because a service that speaks first puts its
    /// greeting in front of whatever it says to our probe.
    Banner,
    /// `GET / HTTP/1.1`.
    Http,
    /// `GET /version`: etcd, Docker Engine API, Kubernetes API server.
    HttpVersion,
    /// `GET /v1/sys/health`: HashiCorp Vault (answers without a token).
    VaultHealth,
    /// `GET /v1/agent/self`: HashiCorp Consul agent.
    ConsulSelf,
    /// `GET /metrics`: Prometheus and its exporters (text exposition format).
    Metrics,
    /// `CONNECT` to a `.invalid` name (RFC 2606, never resolves): a forward
    /// proxy answers with its own error, an origin server refuses the method.
    HttpProxy,
    /// RESP `PING` and `INFO server`, pipelined.
    Redis,
    /// PostgreSQL `SSLRequest`: any PostgreSQL server answers one byte, `S` or `N`.
    PostgreSql,
    /// PostgreSQL StartupMessage: which authentication the server wants.
    PostgreSqlStartup,
    /// memcached text protocol `version`.
    Memcached,
    /// MongoDB legacy `isMaster` on `admin.$cmd`, which every version still answers
    /// (drivers use it for the handshake).
    MongoDb,
    /// AMQP 0-9-1 protocol header: the broker answers `Connection.Start`.
    Amqp,
    /// MQTT 3.1.1 CONNECT and SUBSCRIBE `$SYS/broker/version`.
    Mqtt,
    /// epmd NAMES_REQ.
    Epmd,
    /// Erlang distribution handshake `send_name`.
    ErlangDist,
    /// LDAP anonymous bind and root DSE search.
    Ldap,
    /// SMB2 NEGOTIATE.
    Smb,
    /// DNS `version.bind` CHAOS TXT over TCP.
    Dns,
    /// Kafka ApiVersions v0.
    Kafka,
    /// ZooKeeper four-letter word `srvr`.
    ZooKeeper,
    /// RDP X.224 Connection Request with RDP_NEG_REQ.
    Rdp,
    /// Microsoft SQL Server TDS PRELOGIN.
    Mssql,
    /// Oracle TNS CONNECT for a service that does not exist.
    OracleTns,
    /// Cassandra CQL OPTIONS (protocol v4).
    Cassandra,
    /// SIP `OPTIONS` over TCP (RFC 3261 section 11).
    Sip,
    /// RTSP `OPTIONS` (RFC 2326 section 10.1).
    Rtsp,
}

impl Probe {
    /// Every probe, in a fixed order (used to validate the signature file).
    pub const ALL: [Probe; 27] = [
        Probe::Banner,
        Probe::Http,
        Probe::HttpVersion,
        Probe::VaultHealth,
        Probe::ConsulSelf,
        Probe::Metrics,
        Probe::HttpProxy,
        Probe::Redis,
        Probe::PostgreSql,
        Probe::PostgreSqlStartup,
        Probe::Memcached,
        Probe::MongoDb,
        Probe::Amqp,
        Probe::Mqtt,
        Probe::Epmd,
        Probe::ErlangDist,
        Probe::Ldap,
        Probe::Smb,
        Probe::Dns,
        Probe::Kafka,
        Probe::ZooKeeper,
        Probe::Rdp,
        Probe::Mssql,
        Probe::OracleTns,
        Probe::Cassandra,
        Probe::Sip,
        Probe::Rtsp,
    ];

    /// The name used in the signature file.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Banner => "banner",
            Probe::Http => "http",
            Probe::HttpVersion => "http-version",
            Probe::VaultHealth => "vault-health",
            Probe::ConsulSelf => "consul-self",
            Probe::Metrics => "metrics",
            Probe::HttpProxy => "http-proxy",
            Probe::Redis => "redis",
            Probe::PostgreSql => "postgresql",
            Probe::PostgreSqlStartup => "postgresql-startup",
            Probe::Memcached => "memcached",
            Probe::MongoDb => "mongodb",
            Probe::Amqp => "amqp",
            Probe::Mqtt => "mqtt",
            Probe::Epmd => "epmd",
            Probe::ErlangDist => "erlang-dist",
            Probe::Ldap => "ldap",
            Probe::Smb => "smb",
            Probe::Dns => "dns",
            Probe::Kafka => "kafka",
            Probe::ZooKeeper => "zookeeper",
            Probe::Rdp => "rdp",
            Probe::Mssql => "mssql",
            Probe::OracleTns => "oracle-tns",
            Probe::Cassandra => "cassandra",
            Probe::Sip => "sip",
            Probe::Rtsp => "rtsp",
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

    /// Whether the answer is HTTP, so the `http` signatures (Server header and
    /// friends) apply after the probe's own, and HTTP facts are kept.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Probe::Http
                | Probe::HttpVersion
                | Probe::VaultHealth
                | Probe::ConsulSelf
                | Probe::Metrics
                | Probe::HttpProxy
        )
    }

    /// Bytes to send to `addr` (HTTP, SIP and RTSP carry the target's address).
    /// `Banner` sends nothing.
    pub(crate) fn payload(self, addr: SocketAddr, tls: bool) -> Vec<u8> {
        let (ip, port) = (addr.ip(), addr.port());
        match self {
            Probe::Banner => Vec::new(),
            Probe::Http => super::http::request(ip, port, tls),
            Probe::HttpVersion => super::http::request_path(ip, port, tls, "/version"),
            Probe::VaultHealth => super::http::request_path(ip, port, tls, "/v1/sys/health"),
            Probe::ConsulSelf => super::http::request_path(ip, port, tls, "/v1/agent/self"),
            Probe::Metrics => super::http::request_path(ip, port, tls, "/metrics"),
            Probe::HttpProxy => super::http::connect_request(),
            Probe::Redis => REDIS_PROBE.to_vec(),
            Probe::PostgreSql => POSTGRES_SSL_REQUEST.to_vec(),
            Probe::PostgreSqlStartup => pg::startup(),
            Probe::Memcached => b"version\r\n".to_vec(),
            Probe::MongoDb => mongodb_is_master(),
            Probe::Amqp => AMQP_091_HEADER.to_vec(),
            Probe::Mqtt => mqtt::request(),
            Probe::Epmd => epmd::NAMES_REQUEST.to_vec(),
            Probe::ErlangDist => epmd::send_name(),
            Probe::Ldap => ldap::request(),
            Probe::Smb => smb::request(),
            Probe::Dns => dns::request(),
            Probe::Kafka => kafka::request(),
            Probe::ZooKeeper => b"srvr".to_vec(),
            Probe::Rdp => rdp::CONNECTION_REQUEST.to_vec(),
            Probe::Mssql => mssql::request(),
            Probe::OracleTns => tns::request(),
            Probe::Cassandra => cql::OPTIONS.to_vec(),
            Probe::Sip => sip_options(addr),
            Probe::Rtsp => format!(
                "OPTIONS rtsp://{}/ RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: scanfleet-service-detection/{}\r\n\r\n",
                host_port(addr),
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes(),
        }
    }

    /// Whether `buf` already holds a whole answer to this probe, so the read can
    /// stop without waiting for the idle gap.
    pub(crate) fn is_complete(self, buf: &[u8]) -> bool {
        match self {
            Probe::Banner | Probe::Epmd | Probe::ZooKeeper => false,
            p if p.is_http() => super::http::is_complete(buf),
            Probe::Redis => resp_replies(buf) >= 2 || buf.starts_with(b"-DENIED"),
            Probe::PostgreSql => matches!(buf.first(), Some(b'S' | b'N')),
            Probe::PostgreSqlStartup => pg::is_complete(buf),
            Probe::Memcached => buf.ends_with(b"\r\n"),
            Probe::MongoDb => le_length_prefixed_complete(buf),
            Probe::Amqp => amqp_frame_complete(buf),
            Probe::Mqtt => mqtt::is_complete(buf),
            Probe::ErlangDist => epmd::dist_complete(buf),
            Probe::Ldap => ldap::is_complete(buf),
            Probe::Smb => smb::is_complete(buf),
            Probe::Dns => dns::is_complete(buf),
            Probe::Kafka => kafka::is_complete(buf),
            Probe::Rdp => rdp::is_complete(buf),
            Probe::Mssql => mssql::is_complete(buf),
            Probe::OracleTns => tns::is_complete(buf),
            Probe::Cassandra => cql::is_complete(buf),
            Probe::Sip | Probe::Rtsp => text_head_complete(buf),
            _ => false,
        }
    }

    /// Most bytes worth reading for this probe: a metrics page names its
    /// build far down, everything else says what it is early.
    pub(crate) fn read_cap(self, default: usize) -> usize {
        match self {
            Probe::Metrics => default.max(64 * 1024),
            _ => default,
        }
    }

    /// The probe's decoder: facts the regexes cannot extract. Empty when the
    /// probe has none or the reply does not parse.
    pub fn decode(self, buf: &[u8]) -> Decoded {
        match self {
            Probe::PostgreSqlStartup => pg::decode(buf),
            Probe::Mqtt => mqtt::decode(buf),
            Probe::Epmd => epmd::decode_names(buf),
            Probe::ErlangDist => epmd::decode_dist(buf),
            Probe::Ldap => ldap::decode(buf),
            Probe::Smb => smb::decode(buf),
            Probe::Dns => dns::decode(buf),
            Probe::Kafka => kafka::decode(buf),
            Probe::Rdp => rdp::decode(buf),
            Probe::Mssql => mssql::decode(buf),
            Probe::OracleTns => tns::decode(buf),
            Probe::Cassandra => cql::decode(buf),
            _ => Decoded::default(),
        }
    }
}

/// One probe of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub probe: Probe,
    /// Run the probe inside a TLS session (handshake first, then the probe's
    /// bytes; a `Banner` inside TLS waits for the greeting after the handshake).
    pub tls: bool,
    /// Chosen by the port: it gets the longer timeout, because the service is
    /// probably what the port says.
    pub hinted: bool,
}

/// The probes to try on one port, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
}

const fn plain(probe: Probe) -> (Probe, bool) {
    (probe, false)
}

const fn tls(probe: Probe) -> (Probe, bool) {
    (probe, true)
}

/// Tried on every port after the hinted probes. The first four are today's
/// silent-port cost (listen, HTTP, TLS, Redis); the rest only run when the
/// port keeps answering or hanging up at once, because every probe that sits
/// in silence spends the port's quiet budget ([`super::DetectConfig::quiet_budget`]).
/// Ordered by how common the service is on an unexpected port.
const GENERIC: &[(Probe, bool)] = &[
    plain(Probe::Banner),
    plain(Probe::Http),
    tls(Probe::Http),
    plain(Probe::Redis),
    plain(Probe::PostgreSql),
    plain(Probe::Mqtt),
    plain(Probe::Amqp),
    plain(Probe::MongoDb),
    plain(Probe::Kafka),
    plain(Probe::Ldap),
    plain(Probe::Smb),
    plain(Probe::Rdp),
    plain(Probe::Mssql),
    plain(Probe::Dns),
    plain(Probe::Memcached),
    plain(Probe::ZooKeeper),
    plain(Probe::Cassandra),
    plain(Probe::OracleTns),
    plain(Probe::Epmd),
    plain(Probe::ErlangDist),
    plain(Probe::Rtsp),
    plain(Probe::Sip),
];

/// Ports where plain HTTP is the usual service.
const HTTP_PORTS: &[u16] = &[
    80, 81, 591, 3000, 5000, 5601, 7001, 8000, 8001, 8008, 8080, 8081, 8088, 8180, 8888, 9000,
    9200, 15672,
];

/// Ports of Prometheus and its usual exporters (node, mysqld, nginx, blackbox,
/// redis, postgres, process, windows, kafka, rabbitmq ...).
const METRICS_PORTS: &[u16] = &[
    9090, 9091, 9093, 9100, 9101, 9102, 9104, 9113, 9115, 9117, 9121, 9150, 9182, 9187, 9256, 9308,
    9419,
];

/// Ports whose usual service speaks first.
const GREETING_PORTS: &[u16] = &[
    21, 22, 23, 25, 110, 119, 143, 194, 587, 873, 902, 2222, 2525, 2628, 3306, 3690, 4190, 4222,
    6667,
];

/// The probes a port's usual service answers, most likely first.
fn hints(port: u16) -> &'static [(Probe, bool)] {
    use Probe::*;
    match port {
        p if GREETING_PORTS.contains(&p) => &[(Banner, false)],
        5900..=5909 => &[(Banner, false)],
        p if HTTP_PORTS.contains(&p) => &[(Http, false)],
        p if METRICS_PORTS.contains(&p) => &[(Metrics, false), (Http, false)],
        443 | 4443 | 5986 | 8443 | 9443 | 10443 => &[(Http, true)],
        6443 => &[(HttpVersion, true), (Http, true)],
        2376 => &[(HttpVersion, true)],
        2375 => &[(HttpVersion, false)],
        2379 | 2380 => &[(HttpVersion, false), (HttpVersion, true)],
        8200 => &[(VaultHealth, false), (VaultHealth, true)],
        8500 => &[(ConsulSelf, false)],
        8501 => &[(ConsulSelf, true)],
        3128 | 3129 | 8118 => &[(HttpProxy, false), (Http, false)],
        465 | 563 | 990 | 992 | 993 | 995 | 6697 => &[(Banner, true)],
        389 | 3268 => &[(Ldap, false)],
        636 | 3269 => &[(Ldap, true)],
        445 => &[(Smb, false)],
        53 => &[(Dns, false)],
        853 => &[(Dns, true)],
        6379 | 6380 | 26379 => &[(Redis, false)],
        5432 => &[(PostgreSql, false)],
        11211 => &[(Memcached, false)],
        27017..=27019 => &[(MongoDb, false)],
        5672 => &[(Amqp, false)],
        5671 => &[(Amqp, true)],
        1883 => &[(Mqtt, false)],
        8883 => &[(Mqtt, true)],
        4369 => &[(Epmd, false)],
        25672 => &[(ErlangDist, false)],
        9092 => &[(Kafka, false)],
        2181 => &[(ZooKeeper, false)],
        3389 => &[(Rdp, false)],
        1433 => &[(Mssql, false)],
        1521 => &[(OracleTns, false)],
        9042 => &[(Cassandra, false)],
        5060 => &[(Sip, false)],
        5061 => &[(Sip, true)],
        554 | 8554 => &[(Rtsp, false)],
        _ => &[],
    }
}

/// What to try on `port`: the probes its usual service answers, then the
/// generic list (listen for a greeting first, then the common protocols).
pub(crate) fn plan(port: u16) -> Plan {
    let mut steps: Vec<Step> = hints(port)
        .iter()
        .map(|&(probe, tls)| Step {
            probe,
            tls,
            hinted: true,
        })
        .collect();
    for &(probe, tls) in GENERIC {
        if !steps.iter().any(|s| s.probe == probe && s.tls == tls) {
            steps.push(Step {
                probe,
                tls,
                hinted: false,
            });
        }
    }
    Plan { steps }
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

    fn step(probe: Probe, tls: bool, hinted: bool) -> Step {
        Step { probe, tls, hinted }
    }

    #[test]
    fn plans_follow_port_hints() {
        let p = plan(443);
        assert_eq!(p.steps[0], step(Probe::Http, true, true));
        assert_eq!(p.steps[1], step(Probe::Banner, false, false));
        assert_eq!(p.steps[2], step(Probe::Http, false, false));
        assert_eq!(p.steps.len(), GENERIC.len());
        assert_eq!(plan(8081).steps[0], step(Probe::Http, false, true));
        assert_eq!(plan(6379).steps[0], step(Probe::Redis, false, true));
        assert_eq!(plan(5432).steps[0], step(Probe::PostgreSql, false, true));
        assert_eq!(plan(1883).steps[0], step(Probe::Mqtt, false, true));
        assert_eq!(plan(4369).steps[0], step(Probe::Epmd, false, true));
        assert_eq!(plan(4222).steps[0], step(Probe::Banner, false, true));
        assert_eq!(plan(993).steps[0], step(Probe::Banner, true, true));
        assert_eq!(
            plan(2379).steps[..2],
            [
                step(Probe::HttpVersion, false, true),
                step(Probe::HttpVersion, true, true)
            ]
        );
        for port in [9999, 31337] {
            let p = plan(port);
            assert!(p.steps.iter().all(|s| !s.hinted), "{port}");
            assert_eq!(
                p.steps[..4],
                [
                    step(Probe::Banner, false, false),
                    step(Probe::Http, false, false),
                    step(Probe::Http, true, false),
                    step(Probe::Redis, false, false),
                ]
            );
        }
        // Every probe is reachable from an unhinted port except the ones that
        // only make sense after another probe (PostgreSQL startup) or need a
        // path on an HTTP server.
        let unhinted = plan(31337);
        for p in Probe::ALL {
            let expected = !p.is_http() || p == Probe::Http;
            let expected = expected && p != Probe::PostgreSqlStartup;
            assert_eq!(
                unhinted.steps.iter().any(|s| s.probe == p),
                expected,
                "{}",
                p.name()
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
    fn payloads_are_bounded_and_only_banner_is_empty() {
        let addr: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        for p in Probe::ALL {
            let bytes = p.payload(addr, false);
            assert_eq!(bytes.is_empty(), p == Probe::Banner, "{}", p.name());
            assert!(bytes.len() < 1024, "{}", p.name());
        }
        let sip = String::from_utf8(Probe::Sip.payload(addr, false)).unwrap();
        assert!(sip.starts_with("OPTIONS sip:10.0.0.1:1234 SIP/2.0\r\n"));
        let v6: SocketAddr = "[::1]:554".parse().unwrap();
        let rtsp = String::from_utf8(Probe::Rtsp.payload(v6, false)).unwrap();
        assert!(rtsp.starts_with("OPTIONS rtsp://[::1]:554/ RTSP/1.0\r\nCSeq: 1\r\n"));
        let proxy = String::from_utf8(Probe::HttpProxy.payload(addr, false)).unwrap();
        assert!(proxy.starts_with("CONNECT scanfleet-proxy-check.invalid:443 HTTP/1.1\r\n"));
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
        assert!(Probe::Sip.is_complete(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(Probe::Metrics.is_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn completeness_checks_and_decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for p in Probe::ALL {
                let _ = p.is_complete(&bytes);
                let d = p.decode(&bytes);
                for v in d.extra.values().chain(d.product.iter()).chain(d.version.iter()).chain(d.cpe.iter()) {
                    proptest::prop_assert!(v.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                }
            }
            let _ = resp_replies(&bytes);
        }
    }
}
