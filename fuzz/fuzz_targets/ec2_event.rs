//! EventBridge EC2 instance state-change events, as SQS message bodies (direct
//! or wrapped in SNS): `scanfleet_coordinator::discovery::events::parse_state_change`.
//!
//! Invariants: an accepted event has a 12-digit account, a region of
//! `[a-z0-9-]`, an `i-<hex>` instance id and one of EC2's states, and survives
//! a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_coordinator::discovery::events::{STATES, StateChange, parse_state_change};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let c = match parse_state_change(body) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(c.account_id.len() == 12 && c.account_id.bytes().all(|b| b.is_ascii_digit()));
    assert!(!c.region.is_empty());
    assert!(
        c.region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
    let hex = c
        .instance_id
        .strip_prefix("i-")
        .expect("instance id starts i-");
    assert!(!hex.is_empty() && hex.len() <= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(STATES.contains(&c.state.as_str()));
    let json = serde_json::to_string(&c).expect("state change serialises");
    let back: StateChange = serde_json::from_str(&json).expect("state change parses back");
    assert_eq!(back, c);
});
