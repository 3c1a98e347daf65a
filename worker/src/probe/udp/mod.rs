//! UDP scan (nmap's `-sU`): one datagram per port, a protocol request where the
//! port has a known protocol ([`payload`]), an empty datagram otherwise.
//!
//! * an answer from the target            -> `open`, with what the answer tells
//! * ICMP port unreachable                -> `closed`
//! * other ICMP unreachable (host, admin) -> `filtered`
//! * silence after every attempt          -> `open|filtered`
//!
//! Ordinary UDP sockets, no privilege: each probe has its own socket with
//! `IP_RECVERR`, so the kernel hands the ICMP error for our datagram to that
//! socket even though it is not connected, and the socket still takes a TFTP
//! answer that comes from another port. Probes go out in the same keyed
//! pseudo-random order as the TCP engines, and every datagram, retransmits
//! included, takes a token from its target's bucket and from the worker's
//! global bucket ([`crate::rate::TokenBucket`]).

pub mod dns;
pub mod ike;
pub mod memcached;
pub mod netbios;
pub mod ntp;
pub mod payload;
pub mod snmp;
pub mod ssdp;
pub mod tftp;
mod wire;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scanfleet_common::{PortSpec, PortState, ProbeProfile, ServiceInfo, Target};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::order::Permutation;
use super::{PortObservation, ProbeError, ProbeStats};
use crate::rate::TokenBucket;
pub use payload::Payload;

/// The engine name in metrics and notes.
pub const NAME: &str = "udp";
/// Largest datagram read.
const RECV_MAX: usize = 2048;

/// What one UDP port answered, with the service its answer named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpObservation {
    pub obs: PortObservation,
    /// Set for open ports: what the answer told ([`Payload::describe`]).
    pub service: Option<ServiceInfo>,
}

/// The UDP scanner.
#[derive(Debug, Clone)]
pub struct UdpProber {
    window: usize,
}

impl Default for UdpProber {
    fn default() -> Self {
        Self::new()
    }
}

/// The buckets every datagram of a run draws from.
struct Pace {
    global: Mutex<TokenBucket>,
    per_target: Vec<Mutex<TokenBucket>>,
}

impl Pace {
    async fn take(&self, target: usize) {
        if let Some(b) = self.per_target.get(target) {
            b.lock().await.take(1).await;
        }
        self.global.lock().await.take(1).await;
    }
}

/// How one probe ended.
struct Outcome {
    state: PortState,
    reason: &'static str,
    service: Option<ServiceInfo>,
    retransmits: u64,
}

fn socket_for(addr: SocketAddr) -> io::Result<UdpSocket> {
    let (domain, level, opt, any): (_, _, _, SocketAddr) = if addr.is_ipv4() {
        (
            Domain::IPV4,
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            "0.0.0.0:0".parse().expect("literal"),
        )
    } else {
        (
            Domain::IPV6,
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVERR,
            "[::]:0".parse().expect("literal"),
        )
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from the pointer we pass, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sock.bind(&any.into())?;
    UdpSocket::from_std(sock.into())
}

/// An ICMP error (or a local refusal) as a final state; `None` for errors that
/// say nothing about the target.
fn classify(e: &io::Error) -> Option<(PortState, &'static str)> {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Some((PortState::Closed, "port-unreach")),
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => {
            Some((PortState::Filtered, "icmp-unreachable"))
        }
        Some(libc::EACCES) | Some(libc::EPERM) => Some((PortState::Filtered, "admin-prohibited")),
        _ => None,
    }
}

/// One (target, port) to probe.
struct Probe {
    addr: SocketAddr,
    /// Index of the target (its bucket in [`Pace`]).
    target: usize,
    payload: Payload,
    nonce: u64,
}

/// How long to wait for the answer to a payload's other request once one came.
const OTHER_ANSWER_WAIT: Duration = Duration::from_millis(300);

/// Facts of a second answer added to the first: its product and version where
/// the first had none, and the facts the first did not have.
fn merge_info(info: &mut ServiceInfo, other: ServiceInfo) {
    if info.product.is_none() {
        info.product = other.product;
    }
    if info.version.is_none() {
        info.version = other.version;
    }
    if info.banner.is_none() {
        info.banner = other.banner;
    }
    for (k, v) in other.extra {
        info.extra.entry(k).or_insert(v);
    }
}

/// Send the probe's payload up to `1 + retries` times, each after a token.
async fn probe_port(
    Probe {
        addr,
        target,
        payload,
        nonce,
    }: Probe,
    timeout: Duration,
    retries: u8,
    pace: &Pace,
    sent: &AtomicU64,
) -> Outcome {
    let outcome = |state, reason, service, retransmits| Outcome {
        state,
        reason,
        service,
        retransmits,
    };
    let sock = match socket_for(addr) {
        Ok(s) => s,
        Err(_) => return outcome(PortState::Filtered, "local-resource-exhausted", None, 0),
    };
    let requests = payload.requests(nonce);
    let mut buf = vec![0u8; RECV_MAX];
    for attempt in 0..=u64::from(retries) {
        for request in &requests {
            pace.take(target).await;
            sent.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = sock.send_to(request, addr).await
                // The ICMP error of an earlier datagram can surface on a send.
                && let Some((state, reason)) = classify(&e)
            {
                return outcome(state, reason, None, attempt);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Ok((n, from))) => {
                    let ours = from.ip() == addr.ip()
                        && (from.port() == addr.port() || payload.any_source_port());
                    if ours {
                        let mut info = payload.describe(&buf[..n], nonce);
                        if requests.len() > 1 {
                            // Several requests (SNMP v2c and v3 discovery): the other
                            // answer may tell what this one does not (the vendor of an
                            // agent that answered sysDescr), so listen a little longer.
                            let more = tokio::time::Instant::now() + OTHER_ANSWER_WAIT;
                            let until = more.min(deadline);
                            let mut answers = 1;
                            while answers < requests.len() {
                                match tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await
                                {
                                    Ok(Ok((n, from))) if from.ip() == addr.ip() => {
                                        if let Some(other) = payload.parse(&buf[..n], nonce) {
                                            merge_info(&mut info, other);
                                            answers += 1;
                                        }
                                    }
                                    Ok(Ok(_)) => {}
                                    _ => break,
                                }
                            }
                        }
                        return outcome(PortState::Open, "udp-response", Some(info), attempt);
                    }
                }
                Ok(Err(e)) => {
                    if let Some((state, reason)) = classify(&e) {
                        return outcome(state, reason, None, attempt);
                    }
                    break;
                }
            }
        }
    }
    outcome(
        PortState::OpenFiltered,
        "no-response",
        None,
        u64::from(retries),
    )
}

impl UdpProber {
    /// A prober whose sockets in flight are sized from the fd limit.
    pub fn new() -> Self {
        UdpProber {
            window: super::connect::window_from_fd_limit(),
        }
    }

    /// A prober with an explicit window (tests, small machines).
    pub fn with_window(window: usize) -> Self {
        UdpProber {
            window: window.max(1),
        }
    }

    /// Probe every (target, UDP port) and send exactly one final observation for
    /// each to `out`, as [`super::Prober::scan`] does for TCP: each target's
    /// `rate_pps` and the profile's global rate, timeout and retries honoured.
    ///
    /// # Errors
    /// [`ProbeError::Cancelled`] when `cancel` fires.
    pub async fn scan(
        &self,
        targets: &[Target],
        ports: &PortSpec,
        profile: &ProbeProfile,
        seed: u64,
        out: mpsc::Sender<UdpObservation>,
        cancel: CancellationToken,
    ) -> Result<ProbeStats, ProbeError> {
        let nt = targets.len() as u64;
        let total = nt * ports.len() as u64;
        let perm = Permutation::new(total, seed);
        let timeout = Duration::from_millis(profile.timeout_ms.max(1));
        let retries = profile.retries;
        let pace = Arc::new(Pace {
            global: Mutex::new(TokenBucket::smooth(profile.global_rate_pps)),
            per_target: targets
                .iter()
                .map(|t| Mutex::new(TokenBucket::smooth(t.rate_pps)))
                .collect(),
        });
        let window = Arc::new(Semaphore::new(self.window));
        let sent = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let mut retransmits = 0u64;
        for idx in perm.iter() {
            let t = (idx % nt) as usize;
            let Some(port) = ports.nth((idx / nt) as usize) else {
                continue;
            };
            let permit = tokio::select! {
                _ = cancel.cancelled() => { tasks.abort_all(); return Err(ProbeError::Cancelled) }
                p = window.clone().acquire_owned() => p.map_err(|_| ProbeError::Cancelled)?,
            };
            let ip: IpAddr = targets[t].ip;
            let (out, sent, pace) = (out.clone(), sent.clone(), pace.clone());
            // A fresh nonce per port: answers must echo it where the protocol can.
            let nonce = seed.rotate_left(17) ^ idx.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tasks.spawn(async move {
                let probe = Probe {
                    addr: SocketAddr::new(ip, port),
                    target: t,
                    payload: Payload::for_port(port),
                    nonce,
                };
                let o = probe_port(probe, timeout, retries, &pace, &sent).await;
                drop(permit);
                let _ = out
                    .send(UdpObservation {
                        obs: PortObservation {
                            ip,
                            port,
                            state: o.state,
                            reason: o.reason,
                        },
                        service: o.service,
                    })
                    .await;
                o.retransmits
            });
            while let Some(done) = tasks.try_join_next() {
                retransmits += done.unwrap_or(0);
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => { tasks.abort_all(); return Err(ProbeError::Cancelled) }
                next = tasks.join_next() => match next {
                    Some(done) => retransmits += done.unwrap_or(0),
                    None => break,
                },
            }
        }
        Ok(ProbeStats {
            probes_sent: sent.load(Ordering::Relaxed),
            retransmits,
            ..ProbeStats::default()
        })
    }
}

#[cfg(test)]
mod tests;
