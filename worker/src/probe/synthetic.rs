//! A prober that sends nothing: for the fleet load test only (`scanfleet-worker
//! --synthetic-probes`). Every (target, port) gets a result decided by a hash,
//! about one port in 500 open, so the queue, store and worker plumbing can be
//! loaded without a network. Never selected by `auto`; results carry the reason
//! `synthetic` so they cannot pass for real ones.

use scanfleet_common::PortState;
use siphasher::sip::SipHasher13;
use std::hash::{Hash, Hasher};

use super::{Engine, PortObservation, ProbeError, ProbeStats, Run};

/// The synthetic prober.
#[derive(Debug, Clone, Default)]
pub struct SyntheticProber;

/// The state the synthetic prober gives a port: deterministic, so reruns agree.
pub fn synthetic_state(ip: std::net::IpAddr, port: u16) -> PortState {
    let mut h = SipHasher13::new_with_keys(0x5ca9, 0xf1ee7);
    ip.hash(&mut h);
    port.hash(&mut h);
    match h.finish() % 500 {
        0 => PortState::Open,
        1 => PortState::Filtered,
        _ => PortState::Closed,
    }
}

impl Engine for SyntheticProber {
    const NAME: &'static str = "synthetic";

    async fn run(&self, Run { req, out, cancel }: Run<'_>) -> Result<ProbeStats, ProbeError> {
        let mut sent = 0u64;
        for t in &req.targets {
            for port in req.ports.iter() {
                if cancel.is_cancelled() {
                    return Err(ProbeError::Cancelled);
                }
                let state = synthetic_state(t.ip, port);
                out.send(PortObservation {
                    ip: t.ip,
                    port,
                    state,
                    reason: "synthetic",
                })
                .await
                .map_err(|_| ProbeError::Cancelled)?;
                sent += 1;
            }
        }
        Ok(ProbeStats {
            probes_sent: sent,
            retransmits: 0,
            ..ProbeStats::default()
        })
    }
}
