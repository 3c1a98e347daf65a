//! Feeds arbitrary bytes to the signature matcher as the answer to every probe.
//! The matcher must never panic, and whatever it returns must be escaped
//! (printable ASCII only), because every field ends up in reports and terminals.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_worker::service::{Probe, SignatureSet};

fuzz_target!(|data: &[u8]| {
    let Ok(set) = SignatureSet::shipped() else {
        return;
    };
    for probe in Probe::ALL {
        let Some(m) = set.match_response(probe, data) else {
            continue;
        };
        let fields = [
            Some(&m.service),
            m.product.as_ref(),
            m.version.as_ref(),
            m.cpe.as_ref(),
        ];
        for v in fields.into_iter().flatten().chain(m.extra.values()) {
            assert!(
                v.bytes().all(|b| (0x20..=0x7e).contains(&b)),
                "unescaped output {v:?}"
            );
        }
    }
});
