//! Inventory JSON (`scanfleet scan --inventory`, `scanfleet discover` output):
//! `scanfleet_common::inventory::parse`.
//!
//! Invariants: every asset has an id; addresses are canonical (no
//! IPv4-mapped IPv6); what parses serialises and parses back to itself.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanfleet_common::address::canonical;
use scanfleet_common::inventory;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.json");
    match inventory::parse(path, text) {
        Ok(assets) => {
            assert!(!assets.is_empty());
            for a in &assets {
                assert!(!a.id.is_empty(), "asset without id");
                assert_eq!(
                    canonical(a.private_ip),
                    a.private_ip,
                    "non-canonical private_ip"
                );
                for ip in a.private_ips.iter().chain(&a.public_ips) {
                    assert_eq!(canonical(*ip), *ip, "non-canonical address {ip}");
                }
            }
            let json = serde_json::to_string(&assets).expect("assets serialise");
            let back = inventory::parse(path, &json).expect("written inventory parses back");
            assert_eq!(back, assets, "inventory round trip");
        }
        Err(e) => assert!(e.to_string().starts_with("inventory fuzz.json: "), "{e}"),
    }
});
