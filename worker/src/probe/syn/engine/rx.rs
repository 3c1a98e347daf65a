//! The receive thread: validate replies by their cookie, record them in the
//! answered bitmap, and pass the findings on.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scanfleet_common::PortState;
use tokio::sync::mpsc::UnboundedSender;

use super::{RECV_ROUNDS, Scan, Shared, TICK};
use crate::probe::syn::packet::{self, Reply, ReplyKind};
use crate::probe::syn::sock::{self, RecvBatch};
use crate::probe::syn::timing::RttEstimator;

/// A port decided by a reply, for the async side to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub target: u32,
    pub port: u16,
    pub state: PortState,
    pub reason: &'static str,
}

fn classify(kind: ReplyKind) -> (PortState, &'static str) {
    match kind {
        ReplyKind::SynAck => (PortState::Open, "syn-ack"),
        ReplyKind::Rst => (PortState::Closed, "rst"),
        ReplyKind::Unreachable { .. } => (PortState::Filtered, "icmp-unreachable"),
    }
}

// ----------------------------------------------------------------- receive --

/// The receive sockets of a scan (a family is absent when no target uses it).
#[derive(Debug, Default)]
pub struct RxSockets {
    pub tcp4: Option<OwnedFd>,
    pub icmp4: Option<OwnedFd>,
    pub tcp6: Option<OwnedFd>,
    pub icmp6: Option<OwnedFd>,
}

#[derive(Clone, Copy)]
enum RxKind {
    Tcp4,
    Icmp4,
    Tcp6,
    Icmp6,
}

/// Settings of the receive loop.
#[derive(Debug, Clone, Copy)]
pub struct RxParams {
    /// Bounds of the wait after a pass (see [`RttEstimator::rto`]).
    pub rto_floor: Duration,
    pub rto_ceiling: Duration,
}

/// Receive until `shared.stop`, then drain what is already queued and return.
pub fn rx_loop(
    scan: &Scan,
    shared: &Shared,
    socks: RxSockets,
    params: RxParams,
    found: UnboundedSender<Found>,
) {
    let mut socks_list: Vec<(OwnedFd, RxKind)> = Vec::with_capacity(4);
    for (s, k) in [
        (socks.tcp4, RxKind::Tcp4),
        (socks.icmp4, RxKind::Icmp4),
        (socks.tcp6, RxKind::Tcp6),
        (socks.icmp6, RxKind::Icmp6),
    ] {
        if let Some(s) = s {
            socks_list.push((s, k));
        }
    }
    let fds: Vec<_> = socks_list.iter().map(|(s, _)| s.as_raw_fd()).collect();
    let mut batch = RecvBatch::new();
    let mut rtt = RttEstimator::default();
    let mut drops = vec![0u32; socks_list.len()];
    let mut warned = false;
    loop {
        let stopping = shared.stopped();
        if let Err(e) = sock::poll_readable(&fds, if stopping { Duration::ZERO } else { TICK }) {
            tracing::warn!(error = %e, "SYN receive: poll failed");
            std::thread::sleep(TICK);
        }
        let mut all_empty = true;
        for (si, (fd, kind)) in socks_list.iter().enumerate() {
            // When stopping, drain fully (bounded) so nothing that already
            // arrived is reported as silence.
            let rounds = if stopping {
                RECV_ROUNDS * 64
            } else {
                RECV_ROUNDS
            };
            let mut emptied = false;
            for _ in 0..rounds {
                let got = match batch.recv(fd.as_raw_fd()) {
                    Ok(n) => n,
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "SYN receive: recvmmsg failed");
                            warned = true;
                        }
                        0
                    }
                };
                let now = Instant::now();
                for i in 0..got {
                    if let Some(d) = batch.drops(i) {
                        drops[si] = drops[si].max(d);
                    }
                    let reply = match kind {
                        RxKind::Tcp4 => packet::parse_tcp_v4(batch.packet(i)),
                        RxKind::Icmp4 => packet::parse_icmp_v4(batch.packet(i)),
                        RxKind::Tcp6 => match batch.source(i) {
                            Some(IpAddr::V6(src)) => scan
                                .targets
                                .index_of(&IpAddr::V6(src))
                                .and_then(|t| match scan.targets.entries[t as usize].local {
                                    Some(IpAddr::V6(local)) => Some(local),
                                    _ => None,
                                })
                                .and_then(|local| {
                                    packet::parse_tcp_v6(batch.packet(i), src, local)
                                }),
                            _ => None,
                        },
                        RxKind::Icmp6 => packet::parse_icmp_v6(batch.packet(i)),
                    };
                    if let Some(r) = reply {
                        accept(scan, shared, &r, now, &mut rtt, params, &found);
                    }
                }
                if got < super::sock::RECV_BATCH {
                    emptied = true;
                    break;
                }
            }
            all_empty &= emptied;
        }
        shared
            .rx_dropped
            .store(drops.iter().map(|&d| u64::from(d)).sum(), Ordering::Relaxed);
        if all_empty {
            shared
                .rx_idle_us
                .store(shared.micros(Instant::now()), Ordering::Release);
        }
        if stopping {
            return;
        }
    }
}

fn accept(
    scan: &Scan,
    shared: &Shared,
    r: &Reply,
    now: Instant,
    rtt: &mut RttEstimator,
    params: RxParams,
    found: &UnboundedSender<Found>,
) {
    if !scan.key.validates(r) {
        shared.strays.fetch_add(1, Ordering::Relaxed);
        return;
    }
    shared.replies.fetch_add(1, Ordering::Relaxed);
    let Some(idx) = scan.index_of(r) else { return };
    if !shared.answered.set(idx) {
        return; // a duplicate (retransmitted SYN-ACK, answer to a retransmit)
    }
    shared.answered_count.fetch_add(1, Ordering::AcqRel);
    let (t, _) = scan.split(idx);
    if let Some(c) = shared.answered_by_target.get(t) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    // Only first answers are timed: a target's own SYN-ACK retransmits would
    // read as very long RTTs.
    if let Some(age) = scan.clock.age(r.local_port, now) {
        rtt.sample(age);
        shared.rto_us.store(
            rtt.rto(params.rto_floor, params.rto_ceiling).as_micros() as u64,
            Ordering::Relaxed,
        );
        shared.rtt_samples.store(rtt.samples(), Ordering::Relaxed);
        shared.srtt_us.store(
            rtt.srtt().unwrap_or_default().as_micros() as u64,
            Ordering::Relaxed,
        );
    }
    let (state, reason) = classify(r.kind);
    // The receiver is gone only when the scan was abandoned.
    let _ = found.send(Found {
        target: t as u32,
        port: r.target_port,
        state,
        reason,
    });
}

// ---------------------------------------------------------------- transmit --
