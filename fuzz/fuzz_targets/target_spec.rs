//! Target specs as typed on the command line: `TargetSpec::parse` and `expand`.
//!
//! Invariants: errors are printable ASCII (the spec is echoed escaped); a spec's
//! `count` is exactly what it expands to; `expand` never goes over its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_common::address::canonical;
use scanfleet_common::targets::{TargetSpec, expand};

const LIMIT: u64 = 4096;

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TargetSpec::parse(text) {
        Ok(spec) => {
            if let Some(n) = spec.count().filter(|&n| n <= u128::from(LIMIT)) {
                let ips =
                    expand(&[text.to_string()], LIMIT).expect("a spec within the limit expands");
                assert_eq!(
                    ips.len() as u128,
                    n,
                    "count disagrees with expansion of {text:?}"
                );
                assert!(
                    ips.iter().all(|ip| canonical(*ip) == *ip),
                    "non-canonical address"
                );
            } else {
                assert!(
                    expand(&[text.to_string()], LIMIT).is_err(),
                    "over the limit but expanded"
                );
            }
        }
        Err(e) => assert!(printable(&e.to_string()), "unescaped error {e}"),
    }
    // Several specs at once, as a comma-separated list would give them.
    let specs: Vec<String> = text.split(',').take(16).map(str::to_string).collect();
    match expand(&specs, LIMIT) {
        Ok(ips) => {
            assert!(ips.len() as u64 <= LIMIT);
            let mut seen = std::collections::HashSet::new();
            assert!(ips.iter().all(|ip| seen.insert(*ip)), "duplicate address");
        }
        Err(e) => assert!(printable(&e.to_string()), "unescaped error {e}"),
    }
});
