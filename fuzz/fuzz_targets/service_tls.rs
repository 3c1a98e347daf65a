//! The TLS probe's reply parsers (worker/src/service/tls.rs): the certificate
//! facts extractor on arbitrary DER, the RFC 3339 formatter on arbitrary
//! times, and the detector's rustls client fed arbitrary server bytes (as
//! `Detector` does through `tls_probe`), with the handshake error classified by
//! `peer_speaks_tls`. The functions are crate-private, so this target compiles
//! the worker's very source file (#[path]).
//!
//! Invariants: every certificate fact is printable ASCII and bounded; times
//! have the RFC 3339 shape.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../worker/src/service/tls.rs"]
mod tls;

use std::io::{self, Read};
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

static CONFIG: LazyLock<Arc<rustls::ClientConfig>> =
    LazyLock::new(|| tls::client_config().expect("client config"));

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fuzz_target!(|data: &[u8]| {
    // The TLS 1.0/1.1 ServerHello check behind `tls.versions`.
    for minor in [1, 2] {
        if tls::legacy_accepted(data, minor) {
            assert_eq!((data[0], data[10]), (0x16, minor));
        }
    }
    for (k, v) in tls::cert_facts(data) {
        assert!(k.starts_with("tls."), "{k}");
        assert!(printable(&v), "unescaped {k} {v:?}");
        assert!(v.len() <= 1024 * 4 + 3, "{k} too long");
    }
    if let Some(b) = data.get(..8) {
        let ts = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        // ASN.1 times are years 0000-9999; stay within what the formatter claims.
        let ts = ts.rem_euclid(253_402_300_800);
        let s = tls::rfc3339(ts);
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
    // The server's side of a handshake.
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let Ok(mut conn) = ClientConnection::new(CONFIG.clone(), name) else {
        return;
    };
    let mut rd: &[u8] = data;
    while !rd.is_empty() {
        match conn.read_tls(&mut rd) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Err(e) = conn.process_new_packets() {
            let err = io::Error::new(io::ErrorKind::InvalidData, e);
            if let Some(inner) = tls::peer_speaks_tls(&err) {
                let _ = inner.to_string();
            }
            return;
        }
    }
    if !conn.is_handshaking() {
        for v in tls::session_facts(&conn).values() {
            assert!(printable(v));
        }
    }
    let mut plain = Vec::new();
    let _ = conn.reader().read_to_end(&mut plain);
});
