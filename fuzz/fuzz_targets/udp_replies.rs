//! Fuzz every UDP reply parser (DNS, mDNS, NTP, SNMP, memcached, SSDP,
//! NetBIOS, IKE, TFTP): the first 8 bytes are the probe's nonce (so the fuzzer
//! can match transaction ids and cookies and reach the deep parts), the rest is
//! the datagram. Nothing may panic, and what parses is bounded.
//!
//!   scripts/fuzz.sh 60   (or: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none udp_replies)
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_worker::probe::udp::Payload;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let nonce = u64::from_be_bytes(data[..8].try_into().unwrap_or_default());
    let reply = &data[8..];
    for p in Payload::ALL {
        let info = p.describe(reply, nonce);
        assert_eq!(info.extra.get("udp").map(String::as_str), Some(p.name()));
        for v in info.extra.values() {
            assert!(v.len() <= 4096, "unbounded fact from {p:?}");
            assert!(!v.chars().any(char::is_control), "unescaped fact from {p:?}");
        }
    }
});
