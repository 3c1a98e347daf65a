//! The HTTP probe's reply parser (worker/src/service/http.rs): `facts` and
//! `is_complete` on whatever a server answers. They are crate-private and the
//! only public way in is `Detector::detect` over a real socket, so this target
//! compiles the worker's very source file (#[path]) and calls them directly.
//!
//! Invariants: every fact is one of the known keys, printable ASCII and bounded;
//! a request we build parses as no answer.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../worker/src/service/http.rs"]
mod http;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 5] = [
    "http.status",
    "http.server",
    "http.title",
    "http.location",
    "http.powered_by",
];

fuzz_target!(|data: &[u8]| {
    let _ = http::is_complete(data);
    for (k, v) in http::facts(data) {
        assert!(KEYS.contains(&k.as_str()), "unknown fact {k}");
        assert!(
            v.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "unescaped {k} {v:?}"
        );
        // At most 128 input bytes kept, each at most 4 output bytes, plus "...".
        assert!(v.len() <= 128 * 4 + 3, "{k} too long: {}", v.len());
        if k == "http.status" {
            assert!(v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    if let [a, b, c, d, p0, p1, tls, ..] = *data {
        let ip = if tls & 2 == 0 {
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                u16::from(a),
                u16::from(b),
                0,
                0,
                0,
                0,
                u16::from(c),
                u16::from(d),
            ))
        };
        let req = http::request(ip, u16::from_be_bytes([p0, p1]), tls & 1 == 1);
        assert!(req.starts_with(b"GET / HTTP/1.1\r\nHost: ") && req.ends_with(b"\r\n\r\n"));
        assert!(http::facts(&req).is_empty());
    }
});
