//! Raw-socket SYN scan, in the style of masscan and ZMap.
//!
//! * **Stateless validation.** The TCP sequence number of each probe is a SYN
//!   cookie: SipHash-1-3, keyed per scan, of (our address, target, target port,
//!   our source port) ([`cookie`]). A SYN-ACK or RST-ACK is ours iff its
//!   `ack - 1` equals the cookie of the addresses and ports it carries; an ICMP
//!   unreachable iff the sequence number it quotes does. Nothing is stored per
//!   probe.
//! * **Two threads per scan** ([`engine`]). The transmit thread walks the
//!   keyed permutation of `targets x ports` ([`crate::probe::order`]), paced by
//!   a global token bucket and one per target, and writes IPv4/IPv6 packets
//!   (built with pnet, [`packet`]) to an `IPPROTO_RAW` socket in `sendmmsg`
//!   batches of up to 256 ([`sock`]; about 1.5x the packet rate of
//!   `sendto`). The receive thread reads `IPPROTO_TCP` and `IPPROTO_ICMP(V6)`
//!   raw sockets (BPF-filtered, 32 MiB forced receive
//!   buffers) with `recvmmsg`, validates cookies and sets one bit per answered
//!   probe in a bitmap over the index space: `targets * ports` bits, 160 KiB
//!   for 20 hosts x 65535 ports. The bitmap also drops duplicate replies.
//! * **Retransmits.** After each pass the transmit thread waits one RTO
//!   (RFC 6298 over RTT samples read from the source port, which encodes the
//!   send time: [`timing`]) and sends again to every index with no answer, up
//!   while the retransmission model ([`retransmit`]) asks for more for that
//!   target (until an open port is unlikely to be missed); what is still silent is reported filtered,
//!   `no-response`.
//! * **Source ports** come from [`SynConfig::source_ports`], by default
//!   61000-65535: above Linux's default ephemeral range (32768-60999), so no
//!   local socket owns them and the kernel answers each SYN-ACK with an RST,
//!   which tears down the half-open connection on the target (masscan has to
//!   firewall its port for the opposite reason: it runs its own TCP stack).
//!   When the ephemeral range overlaps, a warning says so (then reserve the
//!   range with `net.ipv4.ip_local_reserved_ports`).
//! * **Source addresses** are the kernel's route source for each target
//!   (a connected UDP socket, which sends nothing).
//!
//! Sockets are created on the thread that calls [`SynProber::scan`], so a scan
//! runs in that thread's network namespace.

pub mod cookie;
pub mod engine;
pub mod packet;
pub mod plan;
pub mod retransmit;
pub mod sock;
pub mod timing;

#[cfg(test)]
mod netns;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scanfleet_common::PortState;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::cookie::CookieKey;
use self::engine::{Found, RxParams, RxSockets, Scan, Shared, TxParams, TxReport, TxSockets};
use self::plan::{PortIndex, TargetTable};
use self::sock::{Family, SendBatch};
use self::timing::PortClock;
use super::order::Permutation;
use super::{Engine, PortObservation, ProbeError, ProbeStats, Run};

/// Settings of the SYN engine (the worker's, not the job's: the job's profile
/// brings timeout, retries and rates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynConfig {
    /// Source ports of probes, inclusive. Keep the range outside the kernel's
    /// ephemeral range (`net.ipv4.ip_local_port_range`) or reserve it
    /// (`net.ipv4.ip_local_reserved_ports`); at least 1000 ports lets RTTs be
    /// measured from replies (the port encodes the send time in ms).
    pub source_ports: (u16, u16),
    /// Packets per `sendmmsg`; 1 means plain `sendto`. Batches only fill at
    /// high rates: the sender flushes whenever it waits for tokens. Measured
    /// on the 2-core lab (release, one veth target, send path alone): sendto
    /// 195-205k packets/s, batches of 64 235-290k, of 256 310-320k.
    pub send_batch: usize,
    /// Receive buffer of the TCP raw socket, in bytes (forced with
    /// CAP_NET_ADMIN, else capped by `net.core.rmem_max`). A full 65535-port
    /// sweep of one host queues up to 65535 replies of about 1 KiB each.
    pub recv_buffer_bytes: usize,
    /// Shortest wait for answers after a pass, however small the measured RTT.
    pub min_rtt_wait: Duration,
}

impl Default for SynConfig {
    fn default() -> Self {
        SynConfig {
            source_ports: (61000, 65535),
            send_batch: 256,
            recv_buffer_bytes: 32 << 20,
            min_rtt_wait: Duration::from_millis(100),
        }
    }
}

impl SynConfig {
    /// Check the settings; the message names the offending field.
    ///
    /// # Errors
    /// A human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        let (a, b) = self.source_ports;
        if a == 0 || a > b {
            return Err(format!(
                "syn.source_ports: {a}-{b} is not a range of ports 1-65535 (first <= last)"
            ));
        }
        if !(1..=1024).contains(&self.send_batch) {
            return Err(format!(
                "syn.send_batch: {} is outside 1-1024",
                self.send_batch
            ));
        }
        if self.recv_buffer_bytes < 64 << 10 {
            return Err(format!(
                "syn.recv_buffer_bytes: {} is below 64 KiB",
                self.recv_buffer_bytes
            ));
        }
        if self.min_rtt_wait > Duration::from_secs(60) {
            return Err(format!(
                "syn.min_rtt_wait: {:?} is above 60 s",
                self.min_rtt_wait
            ));
        }
        Ok(())
    }
}

/// The raw-socket SYN scanner. Cheap to share: each scan opens its own
/// sockets and threads, so concurrent scans do not see each other's replies
/// (their cookie keys differ).
#[derive(Debug)]
pub struct SynProber {
    config: SynConfig,
}

/// A failed socket call as a probe error: refused for lack of privilege, or other I/O.
fn socket_error(e: io::Error) -> ProbeError {
    if is_permission(&e) {
        ProbeError::Permission(e)
    } else {
        ProbeError::Io(e)
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

impl SynProber {
    /// Check that raw sockets can be opened (by opening one) and the settings.
    ///
    /// # Errors
    /// [`ProbeError::Permission`] without CAP_NET_RAW; [`ProbeError::Config`] for
    /// a bad [`SynConfig`]; [`ProbeError::Io`] for another socket error.
    pub fn new(config: SynConfig) -> Result<Self, ProbeError> {
        config.validate().map_err(ProbeError::Config)?;
        sock::raw_socket(Family::V4, libc::IPPROTO_RAW).map_err(socket_error)?;
        warn_on_ephemeral_overlap(config.source_ports);
        Ok(SynProber { config })
    }

    pub fn config(&self) -> &SynConfig {
        &self.config
    }
}

fn warn_on_ephemeral_overlap((first, last): (u16, u16)) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next())
        && first <= hi
        && lo <= last
    {
        tracing::warn!(
            source_ports = %format!("{first}-{last}"),
            ephemeral = %format!("{lo}-{hi}"),
            "SYN source ports overlap the kernel's ephemeral range; a local connection could \
             share a port with a probe (reserve them with net.ipv4.ip_local_reserved_ports)"
        );
    }
}

/// Everything a scan opened before its threads start.
struct Opened {
    rx: RxSockets,
    tx: TxSockets,
}

/// Open the sockets the targets need, on the calling thread (and so in its
/// network namespace). IPv6 failing marks the IPv6 targets skipped; IPv4
/// failing fails the scan.
fn open_sockets(cfg: &SynConfig, targets: &mut TargetTable) -> Result<Opened, ProbeError> {
    let need4 = targets
        .entries
        .iter()
        .any(|e| e.skip.is_none() && e.ip.is_ipv4());
    let need6 = targets
        .entries
        .iter()
        .any(|e| e.skip.is_none() && e.ip.is_ipv6());
    let (first, last) = cfg.source_ports;
    let mut rx = RxSockets::default();
    let mut tx = TxSockets { v4: None, v6: None };
    if need4 {
        let send = sock::raw_socket(Family::V4, libc::IPPROTO_RAW).map_err(socket_error)?;
        let _ = sock::set_send_buffer(&send, 4 << 20);
        let tcp = sock::raw_socket(Family::V4, libc::IPPROTO_TCP).map_err(socket_error)?;
        let icmp = sock::raw_socket(Family::V4, libc::IPPROTO_ICMP).map_err(socket_error)?;
        setup_rx(
            &tcp,
            cfg.recv_buffer_bytes,
            &sock::tcp_filter(true, first, last),
        )?;
        setup_rx(
            &icmp,
            (cfg.recv_buffer_bytes / 8).max(1 << 20),
            &sock::icmp4_filter(),
        )?;
        tx.v4 = Some(SendBatch::new(send, cfg.send_batch));
        rx.tcp4 = Some(tcp);
        rx.icmp4 = Some(icmp);
    }
    if need6 {
        let opened = (|| -> io::Result<_> {
            let send = sock::raw_socket(Family::V6, libc::IPPROTO_RAW)?;
            let _ = sock::set_send_buffer(&send, 4 << 20);
            let tcp = sock::raw_socket(Family::V6, libc::IPPROTO_TCP)?;
            let icmp = sock::raw_socket(Family::V6, libc::IPPROTO_ICMPV6)?;
            setup_rx(
                &tcp,
                cfg.recv_buffer_bytes,
                &sock::tcp_filter(false, first, last),
            )
            .map_err(io::Error::other)?;
            sock::icmp6_pass_only_unreachable(&icmp)?;
            let _ = sock::set_recv_buffer(&icmp, (cfg.recv_buffer_bytes / 8).max(1 << 20));
            let _ = sock::enable_drop_counter(&icmp);
            Ok((send, tcp, icmp))
        })();
        match opened {
            Ok((send, tcp, icmp)) => {
                tx.v6 = Some(SendBatch::new(send, cfg.send_batch));
                rx.tcp6 = Some(tcp);
                rx.icmp6 = Some(icmp);
            }
            Err(e) if is_permission(&e) => return Err(ProbeError::Permission(e)),
            Err(e) => {
                tracing::warn!(error = %e, "IPv6 raw sockets unavailable; IPv6 targets are reported filtered (ipv6-unavailable)");
                for t in targets
                    .entries
                    .iter_mut()
                    .filter(|t| t.ip.is_ipv6() && t.skip.is_none())
                {
                    t.skip = Some("ipv6-unavailable");
                }
            }
        }
    }
    Ok(Opened { rx, tx })
}

fn setup_rx(
    fd: &std::os::fd::OwnedFd,
    bytes: usize,
    filter: &[libc::sock_filter],
) -> Result<(), ProbeError> {
    // The filter first: nothing unrelated queues up while we set the rest.
    sock::attach_filter(fd, filter)?;
    let granted = sock::set_recv_buffer(fd, bytes)?;
    if granted < bytes {
        tracing::warn!(
            requested = bytes,
            granted,
            "SYN receive buffer capped (no CAP_NET_ADMIN: raise net.core.rmem_max); replies may be dropped at high rates"
        );
    }
    let _ = sock::enable_drop_counter(fd);
    Ok(())
}

/// Run a blocking closure on its own named thread; the receiver yields its
/// result (or an error if the thread panicked).
fn spawn_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<oneshot::Receiver<T>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    Ok(rx)
}

/// Send one observation per copy of target `t`.
async fn emit(
    out: &mpsc::Sender<PortObservation>,
    cancel: &CancellationToken,
    targets: &TargetTable,
    t: u32,
    port: u16,
    state: PortState,
    reason: &'static str,
) -> Result<(), ProbeError> {
    let Some(e) = targets.entries.get(t as usize) else {
        return Ok(());
    };
    for _ in 0..e.copies {
        let o = PortObservation {
            ip: e.ip,
            port,
            state,
            reason,
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProbeError::Cancelled),
            r = out.send(o) => r.map_err(|_| ProbeError::Cancelled)?,
        }
    }
    Ok(())
}

impl Engine for SynProber {
    const NAME: &'static str = "syn";

    async fn run(&self, Run { req, out, cancel }: Run<'_>) -> Result<ProbeStats, ProbeError> {
        if cancel.is_cancelled() {
            return Err(ProbeError::Cancelled);
        }
        let ports = PortIndex::new(&req.ports);
        let mut targets = TargetTable::new(&req.targets);
        let n = u64::from(targets.len()) * u64::from(ports.len());
        if n == 0 {
            return Ok(ProbeStats::default());
        }
        for e in &mut targets.entries {
            match sock::route_source(e.ip) {
                Ok(local) => e.local = Some(local),
                Err(err) => {
                    tracing::debug!(target_ip = %e.ip, error = %err, "no route to target");
                    e.skip = Some(
                        if e.ip.is_ipv6() && err.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                            "ipv6-unavailable"
                        } else {
                            "no-route"
                        },
                    );
                }
            }
        }
        let opened = open_sockets(&self.config, &mut targets)?;
        let probeable = targets.entries.iter().filter(|e| e.skip.is_none()).count() as u64
            * u64::from(ports.len());
        let epoch = Instant::now();
        let timeout = Duration::from_millis(req.profile.timeout_ms.max(1));
        let (first, last) = self.config.source_ports;
        let scan = Arc::new(Scan {
            key: CookieKey::for_scan(req.seed),
            targets,
            ports,
            perm: Permutation::new(n, req.seed),
            clock: PortClock::new(epoch, first, last),
            n,
            probeable,
        });
        let shared = Arc::new(Shared::new(n, scan.targets.entries.len(), epoch, timeout));
        let rx_params = RxParams {
            rto_floor: self.config.min_rtt_wait,
            rto_ceiling: timeout,
        };
        let tx_params = TxParams {
            retries: req.profile.retries,
            global_rate_pps: req.profile.global_rate_pps,
            pacing: engine::PacingParams::from_profile(&req.profile.pacing),
            rto_ceiling: timeout,
        };

        // The worker's own NIC allowances, read every second while the scan runs.
        if let Some(local) = scan.targets.entries.iter().find_map(|e| e.local) {
            let shared = shared.clone();
            let _ = std::thread::Builder::new()
                .name("syn-nic".into())
                .spawn(move || crate::ena::monitor(local, &shared.stop, &shared.global_permille));
        }
        let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Found>();
        let rx_done = {
            let (scan, shared) = (scan.clone(), shared.clone());
            spawn_thread("syn-rx", move || {
                engine::rx_loop(&scan, &shared, opened.rx, rx_params, found_tx)
            })?
        };
        let tx_done = {
            let (scan, shared2) = (scan.clone(), shared.clone());
            match spawn_thread("syn-tx", move || {
                engine::tx_loop(&scan, &shared2, opened.tx, tx_params)
            }) {
                Ok(r) => r,
                Err(e) => {
                    shared
                        .stop
                        .store(true, std::sync::atomic::Ordering::Release);
                    return Err(ProbeError::Io(e));
                }
            }
        };
        // Whatever happens below, the threads stop when this scope ends.
        struct StopOnDrop(Arc<Shared>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0
                    .stop
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let _stop = StopOnDrop(shared.clone());

        // Forward answers while the transmit thread works.
        let mut tx_done = tx_done;
        let mut rx_open = true;
        let report: TxReport = loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ProbeError::Cancelled),
                f = found_rx.recv(), if rx_open => match f {
                    Some(f) => emit(&out, &cancel, &scan.targets, f.target, f.port, f.state, f.reason).await?,
                    // Only a panic ends the receive thread before the stop flag.
                    None => rx_open = false,
                },
                r = &mut tx_done => break r.map_err(|_| ProbeError::Io(io::Error::other("SYN transmit thread died")))?,
            }
        };
        if !rx_open {
            return Err(ProbeError::Io(io::Error::other("SYN receive thread died")));
        }
        // Stop the receiver; it drains what already arrived, then its sender
        // half of the channel closes.
        shared
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        while let Some(f) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProbeError::Cancelled),
            f = found_rx.recv() => f,
        } {
            emit(
                &out,
                &cancel,
                &scan.targets,
                f.target,
                f.port,
                f.state,
                f.reason,
            )
            .await?;
        }
        let _ = rx_done.await;
        if report.stopped {
            return Err(ProbeError::Cancelled);
        }

        // Everything still unanswered is silence (or a target never probed).
        let nt = u64::from(scan.targets.len());
        for idx in 0..scan.n {
            if shared.answered.get(idx) {
                continue;
            }
            let (t, rank) = ((idx % nt) as u32, (idx / nt) as u32);
            let Some(port) = scan.ports.port(rank) else {
                continue;
            };
            let reason = scan.targets.entries[t as usize]
                .skip
                .unwrap_or("no-response");
            emit(
                &out,
                &cancel,
                &scan.targets,
                t,
                port,
                PortState::Filtered,
                reason,
            )
            .await?;
        }

        let o = std::sync::atomic::Ordering::Relaxed;
        let dropped = shared.rx_dropped.load(o);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "SYN receive queue overflowed; lost replies were covered by retransmits where retries allowed"
            );
        }
        tracing::debug!(
            probes = scan.n,
            sent = report.probes_sent,
            retransmits = report.retransmits,
            passes = report.passes,
            answered = shared.answered_count.load(o),
            replies = shared.replies.load(o),
            strays = shared.strays.load(o),
            rx_dropped = dropped,
            srtt_us = shared.srtt_us.load(o),
            rtt_samples = shared.rtt_samples.load(o),
            elapsed_ms = epoch.elapsed().as_millis() as u64,
            "SYN scan done"
        );
        let targets = scan
            .targets
            .entries
            .iter()
            .zip(&report.targets)
            .filter(|(e, _)| e.skip.is_none())
            .map(|(e, r)| scanfleet_common::TargetAccuracy {
                ip: e.ip,
                probes_sent: r.probes_sent,
                retransmits: r.retransmits,
                answer_ratio: if r.ports > 0 {
                    r.answered as f64 / r.ports as f64
                } else {
                    0.0
                },
                loss: r.loss,
                ceiling_pps: r.ceiling_pps,
                max_rate_pps: r.max_rate_pps,
                backoffs: r.backoffs,
                miss_chance: r.miss_chance,
            })
            .collect();
        Ok(ProbeStats {
            probes_sent: report.probes_sent,
            retransmits: report.retransmits,
            passes: report.passes,
            targets,
        })
    }
}
