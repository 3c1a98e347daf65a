//! Fuzz the SYN engine's reply parsers: arbitrary bytes from a raw socket must
//! never panic, and whatever parses must go through the cookie check cleanly.
//!
//!   scripts/fuzz.sh 60   (or: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none syn_parse)
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use scanfleet_worker::probe::syn::cookie::CookieKey;
use scanfleet_worker::probe::syn::packet;

fuzz_target!(|data: &[u8]| {
    let key = CookieKey::from_keys(1, 2);
    let local = Ipv6Addr::LOCALHOST;
    for reply in [
        packet::parse_tcp_v4(data),
        packet::parse_icmp_v4(data),
        packet::parse_tcp_v6(data, Ipv6Addr::UNSPECIFIED, local),
        packet::parse_icmp_v6(data),
    ]
    .into_iter()
    .flatten()
    {
        let _ = key.validates(&reply);
    }
});
