//! The binary protocol decoders of service detection
//! (worker/src/service/probes/*.rs: MQTT, epmd and Erlang distribution, LDAP
//! BER, SMB2 NEGOTIATE, DNS, Kafka ApiVersions, TDS PRELOGIN, Oracle TNS, CQL
//! SUPPORTED, RDP, PostgreSQL startup replies) through their public entry
//! point `Probe::decode`, and the signature matcher that calls them, on
//! whatever a server answers.
//!
//! Invariants: no panic; every decoded product, version, CPE and fact is
//! printable ASCII and bounded (the decoders escape everything they keep).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_worker::service::{Probe, SignatureSet};

/// Escaped values are at most 4 bytes per input byte plus the "..." marker.
const MAX_ESCAPED: usize = 256 * 4 + 3;

fn check(what: &str, v: &str) {
    assert!(
        v.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "{what}: unescaped {v:?}"
    );
    assert!(v.len() <= MAX_ESCAPED, "{what}: {} bytes", v.len());
}

fuzz_target!(|data: &[u8]| {
    let set = SignatureSet::shipped().ok();
    for probe in Probe::ALL {
        let d = probe.decode(data);
        for v in [&d.product, &d.version, &d.cpe].into_iter().flatten() {
            check(probe.name(), v);
        }
        for (k, v) in &d.extra {
            check(k, v);
        }
        if let Some(m) = set.as_ref().and_then(|s| s.match_response(probe, data)) {
            for v in m.extra.values() {
                check(probe.name(), v);
            }
        }
    }
});
