//! Job envelopes as a worker reads them off a queue: `JobEnvelope::from_bytes`,
//! then `open` with a fixed secret and without one. Also feeds the bytes as the
//! body of an unsigned envelope, so the `ScanJob` decoder behind `open` is
//! reached without forging a signature.
//!
//! Invariants: what parses re-serialises to the same envelope; `open` only
//! succeeds before the deadline and with header and body agreeing; a job that
//! opens, sealed again with the secret, opens to the same job.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanfleet_common::JobEnvelope;
use scanfleet_common::envelope::ENVELOPE_VERSION;

const SECRET: &[u8] = b"fuzz-fleet-secret-of-32-bytes-ok";

fn check(env: &JobEnvelope) {
    for secret in [Some(SECRET), None] {
        for now in [
            0,
            env.deadline_unix_ms,
            env.deadline_unix_ms.saturating_add(1),
            u64::MAX,
        ] {
            let Ok(job) = env.open(secret, now) else {
                continue;
            };
            assert!(now <= env.deadline_unix_ms, "opened after its deadline");
            assert_eq!(env.version, ENVELOPE_VERSION);
            assert_eq!(job.scan_id, env.scan_id);
            assert_eq!(job.shard_id, env.shard_id);
            let sealed = JobEnvelope::seal(&job, env.attempt, u64::MAX, Some(SECRET));
            let back = JobEnvelope::from_bytes(&sealed.to_bytes()).expect("sealed envelope parses");
            assert_eq!(
                back.open(Some(SECRET), 0).as_ref(),
                Ok(&job),
                "seal/open round trip"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = JobEnvelope::from_bytes(data) {
        let back = JobEnvelope::from_bytes(&env.to_bytes()).expect("re-serialised envelope parses");
        assert_eq!(back, env, "to_bytes/from_bytes round trip");
        check(&env);
    }
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    // The body decoder: an unsigned envelope whose header matches a job "s"/0.
    let env = JobEnvelope {
        version: ENVELOPE_VERSION,
        scan_id: "s".into(),
        shard_id: 0,
        attempt: 1,
        deadline_unix_ms: u64::MAX,
        body: body.to_string(),
        signature: String::new(),
    };
    check(&env);
});
