//! Result values as the Redis store reads them back (common/src/store/redis.rs,
//! `results`): each HSCAN pair is a field `ip|port|proto` and a value, compact
//! (`1{...}`) or a whole `ProbeResult` as older stores wrote it; the field is
//! escaped for errors and the pair decoded by `decode_result`.
//!
//! Input: field bytes, a 0x00, value bytes (no 0x00: the value only, under the
//! field `10.0.0.1|22|tcp`).
//!
//! Invariants: the escaped field is printable ASCII and bounded; a decoded
//! result has the field it was read under, and encodes (compact) and decodes to
//! itself; errors are messages, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_common::escape_bytes;
use scanfleet_common::store::redis::{decode_result, encode_result, result_field};

fuzz_target!(|data: &[u8]| {
    let (field, value) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"10.0.0.1|22|tcp"[..], data),
    };
    let shown = escape_bytes(field, 200);
    assert!(
        shown.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "{shown:?}"
    );
    assert!(shown.len() <= 200 * 4 + 3);
    let Ok(r) = decode_result("sf-fuzz", field, value) else {
        return;
    };
    assert_eq!(result_field(&r).as_bytes(), field, "read under another field");
    let back = decode_result("sf-fuzz", field, &encode_result(&r)).expect("compact round trip");
    assert_eq!(back.key(), r.key());
    if r.scan_id == "sf-fuzz" {
        assert_eq!(back, r, "result round trip");
    }
});
