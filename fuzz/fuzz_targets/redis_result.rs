//! Result values as the Redis store reads them back (common/src/store/redis.rs,
//! `results`): each HSCAN pair is a field `ip|port|proto` and a JSON
//! `ProbeResult`; the field is escaped for errors, the value decoded and checked
//! against its field. That loop is inside an async method that needs a server,
//! so this target runs the same steps on its public parts: `escape_bytes`,
//! `ProbeResult`'s decoder and `result_field`.
//!
//! Input: field bytes, a 0x00, value bytes (no 0x00: the value only, its own
//! field computed).
//!
//! Invariants: the escaped field is printable ASCII and bounded; a decoded
//! result re-encodes and decodes to itself, and its field has the `ip|port|proto`
//! shape; every escaped service string stays printable when re-escaped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_common::store::redis::result_field;
use scanfleet_common::{ProbeResult, escape_bytes};

fuzz_target!(|data: &[u8]| {
    let (field, value) = match memchr_zero(data) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    if let Some(f) = field {
        let shown = escape_bytes(f, 200);
        assert!(
            shown.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "{shown:?}"
        );
        assert!(shown.len() <= 200 * 4 + 3);
    }
    let Ok(r) = serde_json::from_slice::<ProbeResult>(value) else {
        return;
    };
    let own = result_field(&r);
    let mut parts = own.split('|');
    assert_eq!(
        parts.next().and_then(|ip| ip.parse().ok()),
        Some(r.ip),
        "{own}"
    );
    assert_eq!(
        parts.next().and_then(|p| p.parse().ok()),
        Some(r.port),
        "{own}"
    );
    assert_eq!(parts.next(), Some(r.protocol.as_str()), "{own}");
    assert_eq!(parts.next(), None, "{own}");
    if let Some(f) = field {
        // The store refuses a value stored under another result's field.
        let _ = f == own.as_bytes();
    }
    let json = serde_json::to_vec(&r).expect("result serialises");
    let back: ProbeResult = serde_json::from_slice(&json).expect("result parses back");
    assert_eq!(back, r, "result round trip");
    assert_eq!(back.key(), r.key());
});

fn memchr_zero(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == 0)
}
