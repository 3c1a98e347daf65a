//! The protocol probes' reply readers (worker/src/service/probes/): each
//! probe's `is_complete` (Redis RESP, PostgreSQL, memcached, MongoDB, AMQP,
//! HTTP, MQTT, LDAP, SMB, DNS, Kafka, TDS, TNS, CQL, RDP, Erlang) and the RESP
//! reply counter, on whatever a server answers (the decoders themselves are
//! the service_decoders target). They are
//! crate-private and only reachable through `Detector::detect` over a real
//! socket, so this target compiles the worker's very source files (#[path]).
//! The answers themselves then go to the signature matcher (banner_matcher).
//!
//! Invariants: no panic; the RESP counter never counts more replies than there
//! are CRLFs; completeness only grows as more bytes arrive (a prefix that was
//! complete stays complete, for the length-prefixed protocols).
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../worker/src/service/http.rs"]
mod http;
#[path = "../../worker/src/service/probes/mod.rs"]
mod probes;

use libfuzzer_sys::fuzz_target;
use probes::Probe;

fuzz_target!(|data: &[u8]| {
    let crlfs = memchr::memmem::find_iter(data, b"\r\n").count();
    let replies = probes::resp_replies(data);
    assert!(replies <= crlfs, "{replies} replies from {crlfs} lines");
    for p in Probe::ALL {
        assert_eq!(Probe::from_name(p.name()), Some(p));
        let whole = p.is_complete(data);
        if matches!(
            p,
            Probe::MongoDb
                | Probe::Amqp
                | Probe::PostgreSql
                | Probe::Smb
                | Probe::Dns
                | Probe::Kafka
        ) && !data.is_empty()
        {
            // A complete answer stays complete when more bytes follow it.
            let mut longer = data.to_vec();
            longer.push(0);
            assert!(
                !whole || p.is_complete(&longer),
                "{} became incomplete",
                p.name()
            );
        }
    }
    for port in [
        0,
        22,
        80,
        443,
        5432,
        5672,
        6379,
        11211,
        27017,
        u16::from_le_bytes([
            data.first().copied().unwrap_or(0),
            data.get(1).copied().unwrap_or(0),
        ]),
    ] {
        let plan = probes::plan(port);
        assert!(!plan.steps.is_empty());
    }
});
