//! Service detection on open ports: banner grabbing, protocol probes and the
//! project's own signature file.
//!
//! Per port, within one time budget ([`DetectConfig::port_budget`]), probes run
//! in the order of [`probes::plan`]: first the probes of the service the port
//! usually carries (443 -> TLS then HTTP inside, 5432 -> PostgreSQL SSLRequest,
//! 1883 -> MQTT, 22 -> listen for the SSH greeting, ...), then listening for a
//! spontaneous greeting, then generic probes (HTTP, TLS, Redis, then the binary
//! protocols). Each probe runs on a fresh connection; the first signature match
//! wins. Any probe can run inside TLS: the answer inside is matched with that
//! probe's signatures. Once a service is named, a short follow-up dialogue may
//! add facts (STARTTLS and the certificate behind it, anonymous FTP, VNC and
//! PostgreSQL authentication; see `starttls`).
//!
//! A silent port costs at most [`DetectConfig::quiet_budget`]: every probe that
//! sits on an open connection without an answer spends it, probes that are
//! refused or hung up on cost (almost) nothing, so a port that closes on
//! unknown input still meets every probe in the list.
//!
//! Naming convention for TLS: HTTP inside TLS is reported as `https`; any other
//! recognised protocol inside TLS keeps its own name (`imap`, `smtp`, ...); a TLS
//! server whose inner protocol is unknown, or whose handshake we could not
//! complete, is `tls`. All three carry `extra["tls"] = "true"` and the
//! certificate facts (see [`tls`]'s module docs for the keys). A plaintext
//! service that offers STARTTLS has `starttls = offered` and the `tls.*` facts
//! of the upgraded session, but no `tls` key.
//!
//! Outcomes: `None` for a port that never said anything (silent, or closed every
//! connection without a byte); `Some` with name `unknown` and the escaped banner
//! for a port that talked but matched no signature; otherwise the match.
//!
//! Everything read is untrusted: reads are bounded ([`DetectConfig::max_read_bytes`]),
//! only regexes and small decoders look at it, and every stored string is
//! escaped and capped (the banner at [`BANNER_MAX`] input bytes).

mod http;
mod probes;
pub mod signatures;
mod starttls;
mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scanfleet_common::{ServiceInfo, escape_bytes};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

pub use probes::{Decoded, Probe};
pub use signatures::{SignatureError, SignatureMatch, SignatureSet};

use probes::{Connect, Plan, ReadLimits};

/// Longest banner kept, in input bytes (escaping may make the string longer).
pub const BANNER_MAX: usize = 256;

/// Below this much budget left, starting another probe is pointless.
const MIN_STEP: Duration = Duration::from_millis(50);

/// Knobs of service detection. The defaults cost about 2.5 s on a port that
/// accepts connections and never answers, and well under a second on a service
/// that answers its first probe.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Total time one port may cost, all probes included.
    pub port_budget: Duration,
    /// Wait for each TCP connection. Over 3 s so that the kernel's SYN
    /// retransmits (at 1 s and 3 s) get through a lossy path.
    pub connect_timeout: Duration,
    /// Listen this long for a spontaneous banner on ports without a client-first
    /// hint. Servers that speak first do so at once, so this can be short; a
    /// greeting that comes later still shows up in the next probe's answer.
    pub banner_wait: Duration,
    /// Wait for the first byte of the answer to the port's hinted probe (and for
    /// a TLS handshake or the HTTP answer inside TLS): the service probably is
    /// what the port says, so give it time.
    pub probe_timeout: Duration,
    /// Wait for the first byte of the answer to a fallback probe. Short, because
    /// on a silent port every fallback probe costs this much.
    pub fallback_timeout: Duration,
    /// Once an answer flows, a pause this long ends it.
    pub read_idle: Duration,
    /// Most bytes read per probe (enough for HTTP headers and a page title).
    pub max_read_bytes: usize,
    /// Most time all probes of one port may sit on open connections without an
    /// answer. The default is what a silent port cost before this limit
    /// existed: the greeting wait plus three fallback probes.
    pub quiet_budget: Duration,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            port_budget: Duration::from_secs(6),
            connect_timeout: Duration::from_millis(3200),
            banner_wait: Duration::from_millis(700),
            probe_timeout: Duration::from_millis(1500),
            fallback_timeout: Duration::from_millis(600),
            read_idle: Duration::from_millis(150),
            max_read_bytes: 8 * 1024,
            quiet_budget: Duration::from_millis(700 + 3 * 600),
        }
    }
}

impl DetectConfig {
    /// `max_read_bytes` kept within sane bounds: a zero would read nothing, and a
    /// huge value would let one service make us buffer megabytes.
    fn read_cap(&self) -> usize {
        self.max_read_bytes.clamp(256, 1 << 20)
    }
}

/// Identifies services on open ports. Cheap to clone: the compiled signatures and
/// the TLS configuration are shared.
#[derive(Debug, Clone)]
pub struct Detector {
    pub config: DetectConfig,
    signatures: Arc<SignatureSet>,
    /// `None` only if rustls could not be configured; TLS probes are then skipped.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What one step learned.
enum Outcome {
    /// A service was identified: stop.
    Found(ServiceInfo),
    /// The port talked, but nothing matched.
    Spoke(Vec<u8>),
    /// Nothing said. `silent` is how long an open connection sat without a
    /// byte (what the quiet budget counts); `closed` when the peer hung up.
    Quiet { silent: Duration, closed: bool },
    /// The port no longer accepts connections: stop probing.
    Gone,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Found(_) => "found",
            Outcome::Spoke(_) => "unmatched",
            Outcome::Quiet { .. } => "quiet",
            Outcome::Gone => "gone",
        }
    }

    /// Nothing said on a connection held open for `silent` since `since`.
    fn quiet(since: Instant, closed: bool) -> Outcome {
        Outcome::Quiet {
            silent: since.elapsed(),
            closed,
        }
    }
}

impl Detector {
    /// A detector with the signature file shipped in the binary.
    pub fn new(config: DetectConfig) -> Self {
        let signatures = SignatureSet::shipped().unwrap_or_else(|e| {
            // Unit tests prove the shipped file compiles; if it somehow did not,
            // keep scanning (ports are still reported) rather than fail the worker.
            tracing::error!(error = %e, "shipped service signatures are broken; detection will only report banners");
            Arc::new(SignatureSet::default())
        });
        Detector::with_signatures(config, signatures)
    }

    /// A detector with signatures loaded from `path` instead of the shipped file.
    ///
    /// # Errors
    /// The file cannot be read or is invalid; the error names the bad signature.
    pub fn from_file(config: DetectConfig, path: impl AsRef<Path>) -> Result<Self, SignatureError> {
        let signatures = SignatureSet::from_file(path.as_ref())?;
        Ok(Detector::with_signatures(config, Arc::new(signatures)))
    }

    /// A detector with an already compiled signature set.
    pub fn with_signatures(config: DetectConfig, signatures: Arc<SignatureSet>) -> Self {
        let tls = match tls::client_config() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot configure TLS probing; TLS services will not be identified");
                None
            }
        };
        Detector {
            config,
            signatures,
            tls,
        }
    }

    /// The signatures in use.
    pub fn signatures(&self) -> &Arc<SignatureSet> {
        &self.signatures
    }

    /// Identify the service on an open port, within the port budget. `None` when
    /// the port said nothing at all (it still counts as open).
    pub async fn detect(&self, ip: IpAddr, port: u16) -> Option<ServiceInfo> {
        self.detect_with_plan(SocketAddr::new(ip, port), probes::plan(port))
            .await
    }

    /// [`Detector::detect`] with an explicit plan, so tests can exercise a port's
    /// hints against a listener on a random port.
    async fn detect_with_plan(&self, addr: SocketAddr, plan: Plan) -> Option<ServiceInfo> {
        let deadline = Instant::now() + self.config.port_budget;
        // Every step already stops at the deadline; this only guards against a
        // step that forgot to.
        timeout_at(deadline + MIN_STEP, self.run(addr, plan, deadline))
            .await
            .ok()
            .flatten()
    }

    async fn run(&self, addr: SocketAddr, plan: Plan, deadline: Instant) -> Option<ServiceInfo> {
        let mut spoke: Option<Vec<u8>> = None;
        let mut quiet_spent = Duration::ZERO;
        // An earlier probe held a connection open long enough for a greeting
        // to arrive, and none did: listening again would only repeat that.
        let mut greeting_ruled_out = false;
        for step in plan.steps {
            let quiet_left = self.config.quiet_budget.saturating_sub(quiet_spent);
            if deadline.saturating_duration_since(Instant::now()) < MIN_STEP
                || quiet_left < MIN_STEP
            {
                break;
            }
            if step.probe == Probe::Banner && !step.tls && greeting_ruled_out {
                continue;
            }
            let wait = match (step.probe, step.hinted) {
                (_, true) => self.config.probe_timeout,
                (Probe::Banner, false) => self.config.banner_wait,
                (_, false) => self.config.fallback_timeout,
            };
            // A silent port costs at most the quiet budget, whatever the plan.
            let wait = wait.min(quiet_left);
            let outcome = if step.tls {
                self.tls_step(addr, step.probe, wait, deadline).await
            } else {
                self.plain_step(addr, step.probe, wait, deadline).await
            };
            tracing::trace!(
                probe = step.probe.name(),
                tls = step.tls,
                outcome = outcome.label(),
                "service probe"
            );
            match outcome {
                Outcome::Found(info) => {
                    return Some(self.enrich(addr, step, info, deadline).await);
                }
                Outcome::Spoke(bytes) => {
                    spoke.get_or_insert(bytes);
                }
                Outcome::Quiet { silent, closed } => {
                    quiet_spent += silent;
                    if !closed && silent >= self.config.banner_wait {
                        greeting_ruled_out = true;
                    }
                }
                Outcome::Gone => break,
            }
        }
        spoke.map(|bytes| ServiceInfo {
            name: "unknown".into(),
            banner: Some(escape_bytes(&bytes, BANNER_MAX)),
            ..ServiceInfo::default()
        })
    }

    fn limits(&self, probe: Probe, first_wait: Duration, deadline: Instant) -> ReadLimits {
        ReadLimits {
            first_wait,
            idle: self.config.read_idle,
            deadline,
            max_bytes: probe.read_cap(self.config.read_cap()),
        }
    }

    /// A fresh connection for one probe, or the outcome to report when there is none.
    async fn connect(&self, addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Outcome> {
        match probes::connect(addr, self.config.connect_timeout, deadline).await {
            Connect::Ok(s) => Ok(s),
            Connect::Gone => Err(Outcome::Gone),
            // A lost SYN on a lossy path: the next probe connects again. The
            // connection never opened, so no quiet budget was spent.
            Connect::TimedOut => Err(Outcome::Quiet {
                silent: Duration::ZERO,
                closed: true,
            }),
        }
    }

    /// Connect, send the probe's payload (nothing for the banner), read the answer.
    async fn plain_step(
        &self,
        addr: SocketAddr,
        probe: Probe,
        wait: Duration,
        deadline: Instant,
    ) -> Outcome {
        let mut stream = match self.connect(addr, deadline).await {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let since = Instant::now();
        let payload = probe.payload(addr, false);
        // A failed send is not fatal: a service that speaks first and then hangs
        // up on us has still said something worth reading.
        let _ = probes::send(&mut stream, &payload, wait, deadline).await;
        let response =
            probes::read_response(&mut stream, self.limits(probe, wait, deadline), |b| {
                probe.is_complete(b)
            })
            .await;
        if response.bytes.is_empty() {
            return Outcome::quiet(since, response.closed);
        }
        self.classify(probe, response.bytes, BTreeMap::new())
    }

    fn classify(&self, probe: Probe, bytes: Vec<u8>, base: BTreeMap<String, String>) -> Outcome {
        match self.signatures.match_response(probe, &bytes) {
            Some(m) => Outcome::Found(service_info(probe, m, &bytes, base)),
            None => Outcome::Spoke(bytes),
        }
    }

    /// TLS handshake, then the probe inside. See the module docs for naming.
    async fn tls_step(
        &self,
        addr: SocketAddr,
        probe: Probe,
        wait: Duration,
        deadline: Instant,
    ) -> Outcome {
        let Some(config) = self.tls.clone() else {
            return Outcome::Quiet {
                silent: Duration::ZERO,
                closed: true,
            };
        };
        let tcp = match self.connect(addr, deadline).await {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let since = Instant::now();
        let mut stream = match self.handshake(config, addr, tcp, wait, deadline).await {
            Handshake::Done(s) => s,
            Handshake::Failed(info) => return Outcome::Found(info),
            Handshake::NotTls(seen) if seen.is_empty() => return Outcome::quiet(since, true),
            Handshake::NotTls(seen) => {
                // Not TLS: whatever the peer said instead (an SSH banner, an
                // HTTP 400) may still name it.
                let as_probe = if probe.is_http() {
                    Probe::Http
                } else {
                    Probe::Banner
                };
                return self.classify(as_probe, seen, BTreeMap::new());
            }
            Handshake::TimedOut => return Outcome::quiet(since, false),
        };
        let tls_facts = tls::session_facts(stream.get_ref().1);
        let request = probe.payload(addr, true);
        let _ = probes::send(&mut stream, &request, self.config.probe_timeout, deadline).await;
        let limits = self.limits(probe, self.config.probe_timeout, deadline);
        let inner = probes::read_response(&mut stream, limits, |b| probe.is_complete(b)).await;
        let info = match self.signatures.match_response(probe, &inner.bytes) {
            Some(m) => {
                let mut info = service_info(probe, m, &inner.bytes, tls_facts);
                if info.name == "http" {
                    info.name = "https".into();
                }
                info
            }
            None => ServiceInfo {
                name: "tls".into(),
                banner: (!inner.bytes.is_empty()).then(|| escape_bytes(&inner.bytes, BANNER_MAX)),
                extra: tls_facts,
                ..ServiceInfo::default()
            },
        };
        Outcome::Found(info)
    }

    /// A TLS handshake over an open connection, within `wait`.
    async fn handshake<S>(
        &self,
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        tcp: S,
        wait: Duration,
        deadline: Instant,
    ) -> Handshake<S>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let handshake = TlsConnector::from(config)
            .connect(server_name, tls::Recorder::new(tcp, self.config.read_cap()))
            .into_fallible();
        let until = (Instant::now() + wait).min(deadline);
        match timeout_at(until, handshake).await {
            Err(_) => Handshake::TimedOut,
            Ok(Ok(s)) => Handshake::Done(Box::new(s)),
            Ok(Err((err, recorder))) => {
                if let Some(tls_err) = tls::peer_speaks_tls(&err) {
                    let mut extra = BTreeMap::from([("tls".to_string(), "true".to_string())]);
                    extra.insert(
                        "tls.error".into(),
                        escape_bytes(tls_err.to_string().as_bytes(), 128),
                    );
                    return Handshake::Failed(ServiceInfo {
                        name: "tls".into(),
                        extra,
                        ..ServiceInfo::default()
                    });
                }
                Handshake::NotTls(recorder.into_seen())
            }
        }
    }
}

/// How a TLS handshake ended.
enum Handshake<S> {
    Done(Box<tokio_rustls::client::TlsStream<tls::Recorder<S>>>),
    /// The peer speaks TLS but the handshake failed (alert, incompatible).
    Failed(ServiceInfo),
    /// The peer answered something that is not TLS (these bytes) or hung up.
    NotTls(Vec<u8>),
    TimedOut,
}

/// A match turned into the stored record: the banner escaped and capped, HTTP
/// facts added for answers to HTTP probes, `base` (TLS facts) underneath the rest.
fn service_info(
    probe: Probe,
    m: SignatureMatch,
    answer: &[u8],
    base: BTreeMap<String, String>,
) -> ServiceInfo {
    let mut extra = base;
    if m.service == "http" || probe.is_http() {
        extra.extend(http::facts(answer));
    }
    extra.extend(m.extra);
    ServiceInfo {
        name: m.service,
        product: m.product,
        version: m.version,
        cpe: m.cpe,
        banner: Some(escape_bytes(answer, BANNER_MAX)),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A fake service on 127.0.0.1:0 running `handler` for every connection.
    async fn serve<F, Fut>(handler: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(handler(s));
            }
        });
        addr
    }

    /// A service that greets every connection with `banner` and then idles.
    async fn greeter(banner: &'static [u8]) -> SocketAddr {
        serve(move |mut s| async move {
            let _ = s.write_all(banner).await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await
    }

    /// Reads until the peer has sent `until` (or 8 KiB, or EOF).
    async fn read_until(s: &mut TcpStream, until: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while memchr::memmem::find(&got, until).is_none() && got.len() < 8192 {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        got
    }

    const PAGE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: scanfleet-lab-httpd/1.0\r\nContent-Type: text/html\r\nContent-Length: 60\r\nConnection: close\r\n\r\n<html><head><title>Lab target t1</title></head></html>\n\n\n\n\n";

    async fn http_server() -> SocketAddr {
        serve(|mut s| async move {
            let req = read_until(&mut s, b"\r\n\r\n").await;
            if req.starts_with(b"GET / HTTP/1.1\r\n") {
                let _ = s.write_all(PAGE).await;
            }
        })
        .await
    }

    fn detector() -> Detector {
        Detector::new(DetectConfig::default())
    }

    async fn detect(addr: SocketAddr) -> Option<ServiceInfo> {
        detector().detect(addr.ip(), addr.port()).await
    }

    /// Detection at `addr` with the plan of `port`, as if the service listened there.
    async fn detect_as(addr: SocketAddr, port: u16) -> ServiceInfo {
        detector()
            .detect_with_plan(addr, probes::plan(port))
            .await
            .expect("a service")
    }

    /// Name, product and version.
    fn identity(info: &ServiceInfo) -> (&str, Option<&str>, Option<&str>) {
        (
            info.name.as_str(),
            info.product.as_deref(),
            info.version.as_deref(),
        )
    }

    #[tokio::test]
    async fn ssh_banner() {
        let addr = greeter(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n").await;
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "ssh");
        assert_eq!(info.product.as_deref(), Some("OpenSSH"));
        assert_eq!(info.version.as_deref(), Some("9.2p1"));
        assert_eq!(info.cpe.as_deref(), Some("cpe:/a:openbsd:openssh:9.2p1"));
        assert_eq!(
            info.banner.as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\\r\\n")
        );
        assert_eq!(info.extra["ssh.protocol"], "2.0");
        assert_eq!(info.extra["ssh.comment"], "Debian-2+deb12u3");
    }

    #[tokio::test]
    async fn smtp_banner() {
        let addr = greeter(b"220 lab-t1.scanfleet.test ESMTP Postfix\r\n").await;
        let info = detect(addr).await.unwrap();
        assert_eq!(identity(&info), ("smtp", Some("Postfix"), None));
        assert_eq!(info.cpe.as_deref(), Some("cpe:/a:postfix:postfix"));
        assert_eq!(info.extra["hostname"], "lab-t1.scanfleet.test");
    }

    #[tokio::test]
    async fn ftp_banner() {
        let addr = greeter(b"220 (vsFTPd 3.0.3)\r\n").await;
        let info = detect(addr).await.unwrap();
        assert_eq!(identity(&info), ("ftp", Some("vsftpd"), Some("3.0.3")));
    }

    #[tokio::test]
    async fn mysql_greeting() {
        let addr =
            greeter(b"\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00abcdefgh\x00\xff\xf7").await;
        let info = detect(addr).await.unwrap();
        assert_eq!(identity(&info), ("mysql", Some("MySQL"), Some("8.0.36")));
        assert!(
            info.banner
                .unwrap()
                .starts_with("J\\x00\\x00\\x00\\n8.0.36\\x00")
        );
    }

    #[tokio::test]
    async fn http_with_server_header_and_title() {
        let addr = http_server().await;
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "http");
        assert_eq!(info.product.as_deref(), Some("scanfleet-lab-httpd"));
        assert_eq!(info.version.as_deref(), Some("1.0"));
        assert_eq!(info.cpe, None);
        assert_eq!(info.extra["http.title"], "Lab target t1");
        assert_eq!(info.extra["http.server"], "scanfleet-lab-httpd/1.0");
        assert_eq!(info.extra["http.status"], "200");
        assert!(
            info.banner
                .unwrap()
                .starts_with("HTTP/1.1 200 OK\\r\\nServer: ")
        );
    }

    #[tokio::test]
    async fn http_hint_skips_the_banner_wait() {
        let addr = http_server().await;
        let config = DetectConfig {
            banner_wait: Duration::from_secs(5),
            ..DetectConfig::default()
        };
        let started = Instant::now();
        let info = Detector::new(config)
            .detect_with_plan(addr, probes::plan(80))
            .await
            .unwrap();
        assert_eq!(info.name, "http");
        // Without the hint the 5 s banner wait would come first.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    /// A TLS acceptor with a self-signed certificate for `lab-t1.scanfleet.test`.
    fn test_acceptor(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> tokio_rustls::TlsAcceptor {
        let mut params =
            rcgen::CertificateParams::new(vec!["lab-t1.scanfleet.test".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lab-t1.scanfleet.test");
        params.not_after = rcgen::date_time_ymd(2035, 6, 30);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// A TLS server with [`test_acceptor`]'s certificate and HTTP inside, like the
    /// lab's port 443.
    async fn tls_http_server(versions: &[&'static rustls::SupportedProtocolVersion]) -> SocketAddr {
        let acceptor = test_acceptor(versions);
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while memchr::memmem::find(&got, b"\r\n\r\n").is_none() {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = tls.write_all(PAGE).await;
                let _ = tls.shutdown().await;
            }
        })
        .await
    }

    #[tokio::test]
    async fn https_with_certificate_facts() {
        let addr = tls_http_server(rustls::DEFAULT_VERSIONS).await;
        // As on port 443: TLS first.
        let info = detect_as(addr, 443).await;
        assert_eq!(info.name, "https");
        assert_eq!(info.product.as_deref(), Some("scanfleet-lab-httpd"));
        assert_eq!(info.version.as_deref(), Some("1.0"));
        assert_eq!(info.extra["tls"], "true");
        assert_eq!(info.extra["tls.version"], "TLSv1.3");
        assert_eq!(info.extra["tls.subject_cn"], "lab-t1.scanfleet.test");
        assert_eq!(info.extra["tls.sans"], "lab-t1.scanfleet.test");
        assert_eq!(info.extra["tls.issuer"], "CN=lab-t1.scanfleet.test");
        assert_eq!(info.extra["tls.not_after"], "2035-06-30T00:00:00Z");
        assert_eq!(info.extra["tls.self_signed"], "true");
        assert_eq!(info.extra["http.title"], "Lab target t1");
        assert!(info.extra.contains_key("tls.cipher"));

        // rustls servers speak neither TLS 1.0 nor 1.1.
        assert_eq!(info.extra["tls.versions"], "TLSv1.2,TLSv1.3");

        // On a port without a hint, TLS is found after the banner wait and HTTP.
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "https");
        assert_eq!(info.extra["tls.subject_cn"], "lab-t1.scanfleet.test");
    }

    /// An SMTP server that offers STARTTLS and AUTH in its EHLO answer and
    /// upgrades on STARTTLS, as RFC 3207 describes.
    async fn starttls_smtp_server() -> SocketAddr {
        let acceptor = test_acceptor(rustls::DEFAULT_VERSIONS);
        serve(move |mut s| {
            let acceptor = acceptor.clone();
            async move {
                let _ = s.write_all(b"220 mx.scanfleet.test ESMTP Postfix\r\n").await;
                loop {
                    let line = read_until(&mut s, b"\r\n").await;
                    if line.starts_with(b"EHLO ") {
                        let _ = s
                            .write_all(b"250-mx.scanfleet.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                            .await;
                    } else if line == b"STARTTLS\r\n" {
                        let _ = s.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
                        let _ = acceptor.accept(s).await;
                        return;
                    } else {
                        return;
                    }
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn smtp_starttls_adds_certificate_facts() {
        let addr = starttls_smtp_server().await;
        let info = detect_as(addr, 25).await;
        assert_eq!(identity(&info), ("smtp", Some("Postfix"), None));
        assert_eq!(info.extra["starttls"], "offered");
        assert_eq!(info.extra["smtp.auth"], "PLAIN LOGIN");
        assert_eq!(info.extra["tls.subject_cn"], "lab-t1.scanfleet.test");
        assert_eq!(info.extra["tls.version"], "TLSv1.3");
        assert!(!info.extra.contains_key("tls"), "{:?}", info.extra);
    }

    /// An FTP server that lets `anonymous` in (or not) after a password.
    async fn ftp_server(anonymous: bool) -> SocketAddr {
        serve(move |mut s| async move {
            let _ = s.write_all(b"220 (vsFTPd 3.0.3)\r\n").await;
            loop {
                let line = read_until(&mut s, b"\r\n").await;
                let reply: &[u8] = if line.starts_with(b"FEAT") {
                    b"211-Features:\r\n EPSV\r\n PASV\r\n211 End\r\n"
                } else if line.starts_with(b"USER anonymous") {
                    b"331 Please specify the password.\r\n"
                } else if line.starts_with(b"PASS ") && anonymous {
                    b"230 Login successful.\r\n"
                } else if line.starts_with(b"PASS ") {
                    b"530 Login incorrect.\r\n"
                } else {
                    return;
                };
                let _ = s.write_all(reply).await;
            }
        })
        .await
    }

    #[tokio::test]
    async fn ftp_anonymous_login_is_reported() {
        let info = detect_as(ftp_server(true).await, 21).await;
        assert_eq!(identity(&info), ("ftp", Some("vsftpd"), Some("3.0.3")));
        assert_eq!(info.extra["anonymous"], "allowed");
        assert!(!info.extra.contains_key("starttls"));
        let info = detect_as(ftp_server(false).await, 21).await;
        assert_eq!(info.extra["anonymous"], "refused");
    }

    #[tokio::test]
    async fn tls12_only_server() {
        let addr = tls_http_server(&[&rustls::version::TLS12]).await;
        let info = detect_as(addr, 8443).await;
        assert_eq!(info.name, "https");
        assert_eq!(info.extra["tls.version"], "TLSv1.2");
        assert_eq!(info.extra["tls.versions"], "TLSv1.2");
        assert!(
            info.extra["tls.cipher"].starts_with("TLS_ECDHE_"),
            "{:?}",
            info.extra
        );
    }

    #[tokio::test]
    async fn tls_alert_is_reported_as_tls() {
        // A server that answers any ClientHello with a fatal handshake_failure alert.
        let addr = serve(|mut s| async move {
            let _ = read_until(&mut s, b"\x16\x03").await;
            let _ = s.write_all(b"\x15\x03\x03\x00\x02\x02\x28").await;
        })
        .await;
        let info = detect_as(addr, 443).await;
        assert_eq!(info.name, "tls");
        assert_eq!(info.extra["tls"], "true");
        assert!(
            info.extra["tls.error"].contains("HandshakeFailure"),
            "{:?}",
            info.extra
        );
    }

    #[tokio::test]
    async fn ssh_on_a_tls_port_is_still_ssh() {
        let addr = greeter(b"SSH-2.0-OpenSSH_8.4p1\r\n").await;
        let info = detect_as(addr, 443).await;
        assert_eq!(
            (info.name.as_str(), info.version.as_deref()),
            ("ssh", Some("8.4p1"))
        );
    }

    /// Like redis-server: answers RESP PING and INFO, drops HTTP requests
    /// (redis treats a `Host:` line as a cross-protocol attack), errors on garbage.
    async fn redis_server(version: &'static str) -> SocketAddr {
        serve(move |mut s| async move {
            let mut buf = [0u8; 4096];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            let got = &buf[..n];
            if memchr::memmem::find(got, b"Host:").is_some() {
                return;
            }
            if memchr::memmem::find(got, b"PING").is_some() {
                let info =
                    format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n");
                let reply = format!("+PONG\r\n${}\r\n{info}\r\n", info.len());
                let _ = s.write_all(reply.as_bytes()).await;
            } else {
                let _ = s
                    .write_all(b"-ERR unknown command '\\x16\\x03', with args beginning with: \r\n")
                    .await;
            }
            let _ = s.read(&mut buf).await;
        })
        .await
    }

    #[tokio::test]
    async fn redis_with_hint_and_without() {
        let addr = redis_server("7.0.15").await;
        let info = detect_as(addr, 6379).await;
        assert_eq!(identity(&info), ("redis", Some("Redis"), Some("7.0.15")));
        assert_eq!(info.cpe.as_deref(), Some("cpe:/a:redis:redis:7.0.15"));
        // Unhinted: HTTP is dropped, the TLS ClientHello draws Redis' error.
        let info = detect(addr).await.unwrap();
        assert_eq!(
            (info.name.as_str(), info.product.as_deref()),
            ("redis", Some("Redis"))
        );
    }

    #[tokio::test]
    async fn redis_that_only_pongs() {
        let addr = serve(|mut s| async move {
            let _ = read_until(&mut s, b"PING\r\n").await;
            let _ = s.write_all(b"+PONG\r\n").await;
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
        })
        .await;
        let info = detect_as(addr, 6379).await;
        assert_eq!(
            (info.name.as_str(), info.version.as_deref()),
            ("redis", None)
        );
    }

    /// Starts a real `redis-server` on a free loopback port with `args`, if one is
    /// installed. The child is killed when the returned handle drops.
    async fn real_redis(args: &[&str]) -> Option<(tokio::process::Child, SocketAddr)> {
        let free = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let addr = free.local_addr().ok()?;
        drop(free);
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", "/dev/null"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Some((child, addr));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    #[tokio::test]
    async fn real_redis_server_when_installed() {
        let Some((_child, addr)) = real_redis(&[]).await else {
            eprintln!("redis-server not installed: skipped");
            return;
        };
        let info = detect_as(addr, 6379).await;
        assert_eq!(
            (info.name.as_str(), info.product.as_deref()),
            ("redis", Some("Redis"))
        );
        let version = info.version.unwrap_or_default();
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{version:?}"
        );
        assert_eq!(info.cpe, Some(format!("cpe:/a:redis:redis:{version}")));
        // On a port without the hint (HTTP draws a hang-up, then TLS an error).
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "redis");

        let Some((_child, addr)) = real_redis(&["--requirepass", "s3cret"]).await else {
            return;
        };
        let info = detect_as(addr, 6379).await;
        assert_eq!((info.name.as_str(), info.version), ("redis", None));
    }

    #[tokio::test]
    async fn postgresql_ssl_request() {
        let addr = serve(|mut s| async move {
            let mut req = [0u8; 8];
            if s.read_exact(&mut req).await.is_ok() && req == [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f] {
                let _ = s.write_all(b"N").await;
                let _ = s.read(&mut req).await;
            }
        })
        .await;
        let info = detect_as(addr, 5432).await;
        assert_eq!(
            (info.name.as_str(), info.product.as_deref()),
            ("postgresql", Some("PostgreSQL"))
        );
        assert_eq!(info.extra["postgresql.ssl"], "false");
    }

    #[tokio::test]
    async fn memcached_version() {
        let addr = serve(|mut s| async move {
            if read_until(&mut s, b"\r\n").await == b"version\r\n" {
                let _ = s.write_all(b"VERSION 1.6.21\r\n").await;
                let _ = read_until(&mut s, b"\r\n").await;
            }
        })
        .await;
        let info = detect_as(addr, 11211).await;
        assert_eq!(
            (info.name.as_str(), info.version.as_deref()),
            ("memcached", Some("1.6.21"))
        );
    }

    #[tokio::test]
    async fn amqp_broker() {
        let addr = serve(|mut s| async move {
            let mut hdr = [0u8; 8];
            if s.read_exact(&mut hdr).await.is_ok() && &hdr == b"AMQP\x00\x00\x09\x01" {
                let mut table = Vec::new();
                for (k, v) in [("product", "RabbitMQ"), ("version", "3.12.1")] {
                    table.push(k.len() as u8);
                    table.extend_from_slice(k.as_bytes());
                    table.push(b'S');
                    table.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    table.extend_from_slice(v.as_bytes());
                }
                let mut payload = vec![0, 10, 0, 10, 0, 9];
                payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
                payload.extend_from_slice(&table);
                payload.extend_from_slice(b"\x00\x00\x00\x05PLAIN\x00\x00\x00\x05en_US");
                let mut frame = vec![1, 0, 0];
                frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                frame.extend_from_slice(&payload);
                frame.push(0xce);
                let _ = s.write_all(&frame).await;
                let _ = s.read(&mut hdr).await;
            }
        })
        .await;
        let info = detect_as(addr, 5672).await;
        assert_eq!(identity(&info), ("amqp", Some("RabbitMQ"), Some("3.12.1")));
    }

    #[tokio::test]
    async fn mongodb_is_master() {
        let addr = serve(|mut s| async move {
            let mut query = vec![0u8; probes::mongodb_is_master().len()];
            if s.read_exact(&mut query).await.is_err() || query[12..16] != 2004i32.to_le_bytes() {
                return;
            }
            let mut doc = Vec::new();
            doc.extend_from_slice(&[0; 4]);
            doc.extend_from_slice(
                b"\x08ismaster\x00\x01\x10maxWireVersion\x00\x11\x00\x00\x00\x00",
            );
            let len = doc.len() as i32;
            doc[..4].copy_from_slice(&len.to_le_bytes());
            let mut body = vec![0u8; 4 + 8 + 4 + 4];
            body[16..20].copy_from_slice(&1i32.to_le_bytes()); // numberReturned
            body.extend_from_slice(&doc);
            let mut reply = Vec::new();
            reply.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
            reply.extend_from_slice(&7i32.to_le_bytes());
            reply.extend_from_slice(&query[4..8]);
            reply.extend_from_slice(&1i32.to_le_bytes()); // OP_REPLY
            reply.extend_from_slice(&body);
            let _ = s.write_all(&reply).await;
            let _ = s.read(&mut query).await;
        })
        .await;
        let info = detect_as(addr, 27017).await;
        assert_eq!(
            (info.name.as_str(), info.product.as_deref()),
            ("mongodb", Some("MongoDB"))
        );
    }

    #[tokio::test]
    async fn silent_listener_is_none_within_budget() {
        let addr = serve(|mut s| async move {
            let mut buf = [0u8; 1024];
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        let config = DetectConfig {
            port_budget: Duration::from_millis(1500),
            ..DetectConfig::default()
        };
        let started = Instant::now();
        assert_eq!(
            Detector::new(config).detect(addr.ip(), addr.port()).await,
            None
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // With the default budget a silent port costs well under it.
        let started = Instant::now();
        assert_eq!(detect(addr).await, None);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn port_that_hangs_up_at_once_is_none() {
        let addr = serve(|s| async move { drop(s) }).await;
        assert_eq!(detect(addr).await, None);
    }

    #[tokio::test]
    async fn closed_port_is_none() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(detect(addr).await, None);
    }

    #[tokio::test]
    async fn unknown_banner_is_kept_escaped() {
        let addr = greeter(b"\x1b[31mHELLO\x00 operator\x07\r\n").await;
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "unknown");
        assert_eq!(info.product, None);
        assert_eq!(
            info.banner.as_deref(),
            Some("\\x1b[31mHELLO\\x00 operator\\x07\\r\\n")
        );
    }

    #[tokio::test]
    async fn hostile_server_header_is_escaped() {
        let addr = serve(|mut s| async move {
            let _ = read_until(&mut s, b"\r\n\r\n").await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nServer: \x1b]0;pwned\x07evil/\x1b[2J1.0\r\n\r\n<title>\x1b[5m\x00x</title>")
                .await;
        })
        .await;
        let info = detect_as(addr, 8080).await;
        assert_eq!(info.name, "http");
        assert_eq!(info.product.as_deref(), Some("\\x1b]0;pwned\\x07evil"));
        assert_eq!(info.version.as_deref(), Some("\\x1b[2J1.0"));
        assert_eq!(info.extra["http.title"], "\\x1b[5m\\x00x");
        for v in [info.banner.as_deref().unwrap_or_default()]
            .into_iter()
            .chain(info.extra.values().map(String::as_str))
        {
            assert!(v.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{v:?}");
        }
    }

    #[tokio::test]
    async fn megabyte_of_junk_is_bounded() {
        let addr = serve(|mut s| async move {
            let junk: Vec<u8> = (0..1_048_576u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            let _ = s.write_all(&junk).await;
        })
        .await;
        let started = Instant::now();
        let info = detect(addr).await.unwrap();
        assert_eq!(info.name, "unknown");
        let banner = info.banner.unwrap();
        assert!(banner.ends_with("..."));
        assert!(banner.len() <= BANNER_MAX * 4 + 3);
        assert!(banner.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert!(started.elapsed() < Duration::from_secs(7));
    }

    #[tokio::test]
    async fn probe_reads_stop_at_the_limit() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let _ = server.write_all(&vec![b'x'; 50_000]).await;
        });
        let limits = ReadLimits {
            first_wait: Duration::from_secs(1),
            idle: Duration::from_millis(100),
            deadline: Instant::now() + Duration::from_secs(2),
            max_bytes: 4096,
        };
        let r = probes::read_response(&mut client, limits, |_| false).await;
        assert_eq!(r.bytes.len(), 4096);
    }

    #[tokio::test]
    async fn detectors_share_compiled_state() {
        let a = detector();
        let b = a.clone();
        assert!(Arc::ptr_eq(a.signatures(), b.signatures()));
        assert!(Arc::ptr_eq(
            a.signatures(),
            &Detector::new(DetectConfig::default()).signatures
        ));
        assert!(a.tls.is_some());
    }

    #[tokio::test]
    async fn from_file_loads_or_names_the_problem() {
        let dir = std::env::temp_dir().join(format!("scanfleet-sigs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[[signature]]\nprobe = \"banner\"\nservice = \"hello\"\npattern = '^HELLO'\n",
        )
        .unwrap();
        let d = Detector::from_file(DetectConfig::default(), &good).unwrap();
        assert_eq!(d.signatures().len(), 1);
        let addr = greeter(b"HELLO there\r\n").await;
        assert_eq!(
            d.detect(addr.ip(), addr.port()).await.unwrap().name,
            "hello"
        );
        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[signature]]\nprobe = \"banner\"\nservice = \"x\"\npattern = '('\n",
        )
        .unwrap();
        assert!(matches!(
            Detector::from_file(DetectConfig::default(), &bad),
            Err(SignatureError::Regex { index: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Captures fixtures: for each `probe[+tls]@127.0.0.1:port=file` in
    /// `SCANFLEET_CAPTURE` (comma separated), sends exactly what detection sends
    /// and writes the raw reply (inside TLS for `+tls`) to
    /// `worker/tests/fixtures/greetings/file`. Loopback only: run it inside the
    /// namespace that holds the daemon (`ip netns exec sfs-cap cargo test ...`).
    #[tokio::test]
    #[ignore = "writes fixtures from daemons started by hand"]
    async fn capture_fixtures() {
        let spec = std::env::var("SCANFLEET_CAPTURE").unwrap_or_default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/greetings");
        let d = detector();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (what, file) = item.split_once('=').expect("probe@addr=file");
            let (probe, addr) = what.split_once('@').expect("probe@addr");
            let (probe, over_tls) = match probe.strip_suffix("+tls") {
                Some(p) => (p, true),
                None => (probe, false),
            };
            let probe = Probe::from_name(probe).expect("probe name");
            let addr: SocketAddr = addr.parse().expect("address");
            assert!(addr.ip().is_loopback(), "captures only from loopback");
            let deadline = Instant::now() + Duration::from_secs(10);
            let limits = ReadLimits {
                first_wait: Duration::from_secs(3),
                idle: Duration::from_millis(500),
                deadline,
                max_bytes: probe.read_cap(64 * 1024),
            };
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let bytes = if over_tls {
                let Handshake::Done(mut s) = d
                    .handshake(
                        d.tls.clone().unwrap(),
                        addr,
                        tcp,
                        Duration::from_secs(3),
                        deadline,
                    )
                    .await
                else {
                    panic!("no TLS at {addr}");
                };
                probes::send(
                    &mut s,
                    &probe.payload(addr, true),
                    Duration::from_secs(2),
                    deadline,
                )
                .await;
                probes::read_response(&mut s, limits, |b| probe.is_complete(b))
                    .await
                    .bytes
            } else {
                probes::send(
                    &mut tcp,
                    &probe.payload(addr, false),
                    Duration::from_secs(2),
                    deadline,
                )
                .await;
                probes::read_response(&mut tcp, limits, |b| probe.is_complete(b))
                    .await
                    .bytes
            };
            eprintln!(
                "{file}: {} bytes: {}",
                bytes.len(),
                escape_bytes(&bytes, 200)
            );
            std::fs::write(dir.join(file), &bytes).unwrap();
        }
    }

    /// Prints what detection says about each `127.0.0.1:port` in
    /// `SCANFLEET_DETECT` (comma separated), as the worker would run it. For
    /// trying daemons started by hand in a namespace.
    #[tokio::test]
    #[ignore = "inspects daemons started by hand"]
    async fn detect_listed_addresses() {
        let spec = std::env::var("SCANFLEET_DETECT").unwrap_or_default();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let addr: SocketAddr = item.parse().expect("address");
            assert!(addr.ip().is_loopback(), "loopback only");
            let started = Instant::now();
            let info = detect(addr).await;
            eprintln!("{addr} ({:?}): {info:?}", started.elapsed());
        }
    }
}
