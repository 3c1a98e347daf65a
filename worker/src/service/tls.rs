//! TLS probing: a rustls client that accepts any certificate, because the point is
//! to learn what a server presents, not to trust it; and the facts we keep from
//! the handshake and the certificate.
//!
//! Extra keys set here (all escaped): `tls` = `true`, `tls.version` (`TLSv1.3`),
//! `tls.cipher`, `tls.subject` (the whole DN), `tls.subject_cn`, `tls.sans`
//! (comma-separated DNS names and IPs), `tls.issuer`, `tls.not_before`,
//! `tls.not_after` (RFC 3339, UTC), `tls.self_signed`, and `tls.error` when the
//! server speaks TLS but the handshake failed.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, SignatureScheme,
};
use scanfleet_common::escape_bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Longest DN or name kept, in input bytes.
const MAX_NAME: usize = 256;
/// Longest SAN list kept, in input bytes.
const MAX_SANS: usize = 1024;
/// SAN entries looked at; a certificate with thousands says enough with these.
const MAX_SAN_ENTRIES: usize = 64;

/// Accepts every certificate and every handshake signature. Used only to read what
/// a server presents during detection; nothing sent over these connections is
/// secret, and nothing received is trusted.
#[derive(Debug)]
struct AcceptAnyCert;

/// The handshake signature checks of [`AcceptAnyCert`], one per TLS version,
/// alike: every signature passes.
macro_rules! accept_signatures {
    ($($method:ident),+) => {$(
        fn $method(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
    )+};
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    accept_signatures!(verify_tls12_signature, verify_tls13_signature);

    /// Offer every common scheme, including ones ring cannot verify: we verify
    /// nothing, and a wider offer lets more servers complete the handshake.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP521_SHA512,
            SignatureScheme::ED25519,
            SignatureScheme::ED448,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA1,
            SignatureScheme::ECDSA_SHA1_Legacy,
        ]
    }
}

/// The client configuration for detection: TLS 1.2 and 1.3 over ring, any
/// certificate, no session resumption (each probe stands alone and no state is
/// carried from one target to another), no ALPN (some servers refuse a handshake
/// whose ALPN offer they do not support, and HTTP/1.1 is the default anyway).
///
/// # Errors
/// Only if the crypto provider lacks both protocol versions, which ring does not.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A client configuration like [`client_config`] that offers only `version`,
/// to learn which versions a server accepts (`tls.versions`).
pub(crate) fn single_version_config(
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A TLS 1.0 or 1.1 ClientHello (RFC 2246 / RFC 4346 section 7.4.1.2), which
/// rustls cannot send: `minor` is 1 (TLS 1.0) or 2 (TLS 1.1). CBC suites of
/// that era, the elliptic-curve extensions (RFC 4492) so ECDHE servers answer.
pub(crate) fn legacy_client_hello(minor: u8) -> Vec<u8> {
    const SUITES: [u16; 8] = [
        0xc014, 0xc013, 0xc00a, 0xc009, 0x0035, 0x002f, 0x0039, 0x000a,
    ];
    let mut body = vec![3, minor];
    body.extend_from_slice(b"scanfleet-detect-legacy-hello-32"); // random, 32 bytes
    body.push(0); // no session id
    body.extend_from_slice(&((SUITES.len() * 2) as u16).to_be_bytes());
    for s in SUITES {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19, // groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // point formats: uncompressed
        0xff, 0x01, 0x00, 0x01, 0x00, // renegotiation_info (RFC 5746)
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Whether `reply` starts with a ServerHello that accepted TLS 1.`minor - 1`.
pub(crate) fn legacy_accepted(reply: &[u8], minor: u8) -> bool {
    reply.len() >= 11 && reply[0] == 0x16 && reply[5] == 2 && reply[9] == 3 && reply[10] == minor
}

/// Whether a handshake error proves the peer speaks TLS (it sent an alert, or a
/// well-formed handshake we cannot accept), as opposed to speaking something else.
pub(crate) fn peer_speaks_tls(err: &io::Error) -> Option<&rustls::Error> {
    let inner = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    matches!(
        inner,
        rustls::Error::AlertReceived(_)
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::PeerMisbehaved(_)
    )
    .then_some(inner)
}

/// Facts from a completed handshake: protocol version, cipher and the leaf
/// certificate.
pub(crate) fn session_facts(conn: &ClientConnection) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("tls".into(), "true".into());
    if let Some(v) = conn.protocol_version() {
        out.insert("tls.version".into(), version_name(v));
    }
    if let Some(suite) = conn.negotiated_cipher_suite() {
        let name = format!("{:?}", suite.suite());
        out.insert("tls.cipher".into(), escape_bytes(name.as_bytes(), 64));
    }
    if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
        out.extend(cert_facts(leaf.as_ref()));
    }
    out
}

fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".into(),
        ProtocolVersion::TLSv1_0 => "TLSv1.0".into(),
        other => escape_bytes(format!("{other:?}").as_bytes(), 32),
    }
}

/// Facts from a DER certificate. A certificate that does not parse yields only
/// `tls.cert_error`: the server still speaks TLS.
pub(crate) fn cert_facts(der: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let cert = match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            out.insert(
                "tls.cert_error".into(),
                escape_bytes(e.to_string().as_bytes(), MAX_NAME),
            );
            return out;
        }
    };
    let subject = cert.subject().to_string();
    if !subject.is_empty() {
        out.insert(
            "tls.subject".into(),
            escape_bytes(subject.as_bytes(), MAX_NAME),
        );
    }
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        out.insert(
            "tls.subject_cn".into(),
            escape_bytes(cn.as_bytes(), MAX_NAME),
        );
    }
    let issuer = cert.issuer().to_string();
    if !issuer.is_empty() {
        out.insert(
            "tls.issuer".into(),
            escape_bytes(issuer.as_bytes(), MAX_NAME),
        );
    }
    out.insert(
        "tls.not_before".into(),
        rfc3339(cert.validity().not_before.timestamp()),
    );
    out.insert(
        "tls.not_after".into(),
        rfc3339(cert.validity().not_after.timestamp()),
    );
    // Compared as encoded bytes: equal names mean nobody else vouched for the key.
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    out.insert("tls.self_signed".into(), self_signed.to_string());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .take(MAX_SAN_ENTRIES)
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_string()),
                GeneralName::IPAddress(ip) => ip_from_bytes(ip),
                _ => None,
            })
            .collect();
        if !names.is_empty() {
            out.insert(
                "tls.sans".into(),
                escape_bytes(names.join(",").as_bytes(), MAX_SANS),
            );
        }
    }
    out
}

fn ip_from_bytes(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| Ipv4Addr::from(a).to_string()),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| Ipv6Addr::from(a).to_string()),
        _ => None,
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC). Certificate
/// times fit easily: ASN.1 limits them to years 0000-9999.
pub(crate) fn rfc3339(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Days to civil date, after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A stream that keeps a copy of the first bytes it reads, so that when a TLS
/// handshake fails because the peer speaks something else (an SSH banner on 443),
/// what it said can still be matched.
#[derive(Debug)]
pub(crate) struct Recorder<S> {
    inner: S,
    seen: Vec<u8>,
    cap: usize,
}

impl<S> Recorder<S> {
    pub(crate) fn new(inner: S, cap: usize) -> Self {
        Recorder {
            inner,
            seen: Vec::new(),
            cap,
        }
    }

    /// The first bytes read, at most `cap`.
    pub(crate) fn into_seen(self) -> Vec<u8> {
        self.seen
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let room = this.cap.saturating_sub(this.seen.len());
            let new = buf.filled().get(before..).unwrap_or_default();
            this.seen
                .extend_from_slice(new.get(..room.min(new.len())).unwrap_or_default());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_893_456_000), "2030-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn facts_from_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec![
            "lab-t1.scanfleet.test".to_string(),
            "10.1.2.3".to_string(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lab-t1.scanfleet.test");
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = cert_facts(cert.der());
        assert_eq!(f["tls.subject_cn"], "lab-t1.scanfleet.test");
        assert_eq!(f["tls.subject"], "CN=lab-t1.scanfleet.test");
        assert_eq!(f["tls.issuer"], "CN=lab-t1.scanfleet.test");
        assert_eq!(f["tls.sans"], "lab-t1.scanfleet.test,10.1.2.3");
        assert_eq!(f["tls.not_before"], "2024-01-01T00:00:00Z");
        assert_eq!(f["tls.not_after"], "2030-01-01T00:00:00Z");
        assert_eq!(f["tls.self_signed"], "true");
    }

    #[test]
    fn garbage_certificate_is_reported_not_fatal() {
        let f = cert_facts(b"\x30\x03\x02\x01");
        assert!(f.contains_key("tls.cert_error"));
        assert!(cert_facts(&[]).contains_key("tls.cert_error"));
    }

    #[test]
    fn client_config_builds() {
        assert!(client_config().is_ok());
    }

    #[test]
    fn non_tls_errors_are_not_tls() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::General("x".into()),
        );
        assert!(peer_speaks_tls(&e).is_none());
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert!(peer_speaks_tls(&e).is_some());
        assert!(peer_speaks_tls(&io::Error::from(io::ErrorKind::UnexpectedEof)).is_none());
    }

    #[test]
    fn legacy_hello_is_well_formed() {
        for minor in [1, 2] {
            let h = legacy_client_hello(minor);
            assert_eq!(usize::from(u16::from_be_bytes([h[3], h[4]])), h.len() - 5);
            assert_eq!((h[5], h[9], h[10]), (1, 3, minor));
            let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
            assert_eq!(hs_len, h.len() - 9);
        }
        assert!(legacy_accepted(
            b"\x16\x03\x01\x00\x31\x02\x00\x00\x2d\x03\x01",
            1
        ));
        assert!(!legacy_accepted(b"\x15\x03\x01\x00\x02\x02\x46", 1));
        assert!(!legacy_accepted(
            b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03",
            1
        ));
    }
}
