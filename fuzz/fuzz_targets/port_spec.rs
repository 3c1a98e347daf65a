//! Port specs in nmap syntax (`-p`): `PortSpec::parse`, and its serde form.
//!
//! Invariants: errors are printable ASCII; ranges are sorted, merged and within
//! 1-65535; `len`, `iter`, `nth` and `contains` agree; JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_common::PortSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match PortSpec::parse(text) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.bytes().all(|b| (0x20..=0x7e).contains(&b)),
                "unescaped error {msg:?}"
            );
            return;
        }
    };
    let ranges = spec.ranges();
    assert!(!ranges.is_empty());
    for &(lo, hi) in ranges {
        assert!(lo >= 1 && lo <= hi, "bad range {lo}-{hi}");
    }
    for w in ranges.windows(2) {
        assert!(
            u32::from(w[0].1) + 1 < u32::from(w[1].0),
            "unmerged ranges {w:?}"
        );
    }
    let len = spec.len();
    assert_eq!(spec.iter().count(), len);
    assert_eq!(spec.nth(len), None);
    for i in [0, len / 2, len - 1] {
        let p = spec.nth(i).expect("nth within len");
        assert_eq!(spec.iter().nth(i), Some(p));
        assert!(spec.contains(p));
    }
    let json = serde_json::to_string(&spec).expect("port spec serialises");
    let back: PortSpec = serde_json::from_str(&json).expect("port spec parses back");
    assert_eq!(back, spec, "serde round trip");
    // Whatever the JSON form accepts must be a valid spec too.
    if let Ok(s) = serde_json::from_slice::<PortSpec>(data) {
        assert!(s.ranges().iter().all(|&(lo, hi)| lo >= 1 && lo <= hi));
    }
});
