//! TCP connect scan: needs no privileges, works everywhere, costs a socket per
//! probe. The window of sockets in flight is sized from the fd limit, probes go
//! out in keyed pseudo-random order, paced by a global token bucket and one bucket
//! per target.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use scanfleet_common::PortState;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::order::Permutation;
use super::{Engine, PortObservation, ProbeError, ProbeStats, Run};
use crate::rate::TokenBucket;

/// File descriptors kept free for everything else the process does.
const FD_RESERVE: u64 = 256;
/// Upper bound on sockets in flight, whatever the fd limit.
const MAX_WINDOW: usize = 8192;

/// The connect scanner.
#[derive(Debug, Clone)]
pub struct ConnectProber {
    window: usize,
}

impl Default for ConnectProber {
    fn default() -> Self {
        Self::new()
    }
}

/// Raise the soft fd limit to the hard limit and size the window from it.
pub fn window_from_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 256;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    let cur = lim.rlim_cur;
    let usable = cur.saturating_sub(FD_RESERVE).max(cur / 2).max(16);
    (usable.min(MAX_WINDOW as u64)) as usize
}

enum Attempt {
    Final(PortState, &'static str),
    /// No answer within the timeout: retry or call it filtered.
    Silent,
    /// A local resource ran out (ports, fds): try again without counting an attempt.
    Local,
}

async fn attempt(addr: SocketAddr, timeout: Duration) -> Attempt {
    let sock = match if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    } {
        Ok(s) => s,
        Err(_) => return Attempt::Local,
    };
    // Close with RST (linger 0): no TIME_WAIT piles up over a 65535-port sweep.
    let _ = SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    match tokio::time::timeout(timeout, sock.connect(addr)).await {
        Err(_) => Attempt::Silent,
        Ok(Ok(stream)) => {
            // On loopback, connecting to a free port can succeed as a TCP
            // simultaneous-open with ourselves: that is no listener.
            if stream.local_addr().ok() == Some(addr) {
                Attempt::Final(PortState::Closed, "self-connect")
            } else {
                Attempt::Final(PortState::Open, "connect")
            }
        }
        Ok(Err(e)) => classify_error(&e),
    }
}

fn classify_error(e: &io::Error) -> Attempt {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Attempt::Final(PortState::Closed, "conn-refused"),
        io::ErrorKind::TimedOut => Attempt::Silent,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            Attempt::Final(PortState::Filtered, "icmp-unreachable")
        }
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => Attempt::Local,
        _ => match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) => Attempt::Local,
            Some(libc::EACCES) | Some(libc::EPERM) => {
                Attempt::Final(PortState::Filtered, "admin-prohibited")
            }
            _ => Attempt::Final(PortState::Filtered, "error"),
        },
    }
}

/// Probe one port to a final state with up to `retries` extra attempts.
async fn probe_port(
    addr: SocketAddr,
    timeout: Duration,
    retries: u8,
    sent: &std::sync::atomic::AtomicU64,
) -> (PortState, &'static str, u64) {
    let mut tries = 0u64;
    let mut local_failures = 0u32;
    loop {
        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match attempt(addr, timeout).await {
            Attempt::Final(state, why) => return (state, why, tries),
            Attempt::Silent if tries < u64::from(retries) => tries += 1,
            Attempt::Silent => return (PortState::Filtered, "no-response", tries),
            Attempt::Local if local_failures < 50 => {
                local_failures += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Attempt::Local => return (PortState::Filtered, "local-resource-exhausted", tries),
        }
    }
}

impl ConnectProber {
    /// A prober with its window sized from the fd limit.
    pub fn new() -> Self {
        ConnectProber {
            window: window_from_fd_limit(),
        }
    }

    /// A prober with an explicit window (tests, small machines).
    pub fn with_window(window: usize) -> Self {
        ConnectProber {
            window: window.max(1),
        }
    }

    /// Sockets in flight at most.
    pub fn window(&self) -> usize {
        self.window
    }
}

/// True when this process can create TCP sockets at all (always, barring seccomp).
pub fn available() -> bool {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).is_ok()
}

impl Engine for ConnectProber {
    const NAME: &'static str = "connect";

    async fn run(&self, Run { req, out, cancel }: Run<'_>) -> Result<ProbeStats, ProbeError> {
        let nt = req.targets.len() as u64;
        let total = nt * req.ports.len() as u64;
        let perm = Permutation::new(total, req.seed);
        let timeout = Duration::from_millis(req.profile.timeout_ms.max(1));
        let retries = req.profile.retries;
        let window = Arc::new(Semaphore::new(self.window));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut global = TokenBucket::smooth(req.profile.global_rate_pps);
        let mut per_target: HashMap<usize, TokenBucket> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut retransmits = 0u64;

        for idx in perm.iter() {
            let t = (idx % nt) as usize;
            let Some(port) = req.ports.nth((idx / nt) as usize) else {
                continue;
            };
            let target = &req.targets[t];
            let bucket = per_target
                .entry(t)
                .or_insert_with(|| TokenBucket::smooth(target.rate_pps));
            tokio::select! {
                _ = cancel.cancelled() => { tasks.abort_all(); return Err(ProbeError::Cancelled) }
                _ = async { bucket.take(1).await; global.take(1).await; } => {}
            }
            let permit = tokio::select! {
                _ = cancel.cancelled() => { tasks.abort_all(); return Err(ProbeError::Cancelled) }
                p = window.clone().acquire_owned() => p.map_err(|_| ProbeError::Cancelled)?,
            };
            let ip: IpAddr = target.ip;
            let out = out.clone();
            let sent = sent.clone();
            tasks.spawn(async move {
                let (state, reason, retries_used) =
                    probe_port(SocketAddr::new(ip, port), timeout, retries, &sent).await;
                drop(permit);
                let _ = out
                    .send(PortObservation {
                        ip,
                        port,
                        state,
                        reason,
                    })
                    .await;
                retries_used
            });
            // Reap finished tasks as we go so the set stays window-sized.
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
            probes_sent: sent.load(std::sync::atomic::Ordering::Relaxed),
            retransmits,
            ..ProbeStats::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ProbeRequest, Prober};
    use scanfleet_common::{PortSpec, ProbeProfile, Target};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn finds_its_own_listeners_on_loopback_and_reports_every_port() {
        // Two listeners we own; every other port of the spec is whatever the
        // machine has, so assert only on ours and on the count.
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let spec = PortSpec::parse(&format!("{pa},{pb},{free}")).unwrap();
        let req = ProbeRequest {
            targets: vec![Target {
                ip: "127.0.0.1".parse().unwrap(),
                asset_id: "lo".into(),
                rate_pps: 1000,
            }],
            ports: spec,
            profile: ProbeProfile {
                timeout_ms: 500,
                ..ProbeProfile::default()
            },
            seed: 1,
        };
        let (tx, mut rx) = mpsc::channel(16);
        let stats = ConnectProber::with_window(8)
            .scan(&req, tx, CancellationToken::new())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(o) = rx.recv().await {
            got.push((o.port, o.state));
        }
        got.sort();
        let mut want = vec![
            (pa, PortState::Open),
            (pb, PortState::Open),
            (free, PortState::Closed),
        ];
        want.sort();
        assert_eq!(got, want);
        assert!(stats.probes_sent >= 3);
    }

    #[test]
    fn window_respects_fd_limit() {
        let w = window_from_fd_limit();
        assert!((16..=MAX_WINDOW).contains(&w));
    }
}
