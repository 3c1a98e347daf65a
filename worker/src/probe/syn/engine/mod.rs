//! The two threads of a scan. The transmit thread walks the probe permutation
//! pass after pass; the receive thread validates replies by their cookie and
//! records them in the answered bitmap. They share nothing per probe: only the
//! bitmap, a stop flag and a few counters.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cookie::CookieKey;
use super::packet::{self, Probe, Reply};
use super::plan::{AtomicBitmap, PortIndex, TargetTable};
use super::retransmit::{LossModel, Next};
use super::sock::{self, SendBatch};
use super::timing::PortClock;
use crate::probe::order::Permutation;
use crate::rate::{Aimd, AimdParams, TokenBucket};

mod rx;
mod tx;
pub use rx::{Found, RxParams, RxSockets, rx_loop};
pub use tx::tx_loop;

/// Longest single sleep of either thread, so that a stop is seen quickly.
const TICK: Duration = Duration::from_millis(5);
/// Probes set aside for targets whose own budget is spent (see [`Pacer`]).
const DEFERRED_CAP: usize = 1 << 16;
/// `recvmmsg` calls per socket before the receive loop looks at the others.
const RECV_ROUNDS: usize = 32;

/// What a scan is about; read-only once the threads start.
#[derive(Debug)]
pub struct Scan {
    pub key: CookieKey,
    pub targets: TargetTable,
    pub ports: PortIndex,
    pub perm: Permutation,
    pub clock: PortClock,
    /// `targets * ports`.
    pub n: u64,
    /// Indices whose target is probed at all (not skipped).
    pub probeable: u64,
}

impl Scan {
    fn split(&self, idx: u64) -> (usize, u32) {
        let nt = u64::from(self.targets.len());
        ((idx % nt) as usize, (idx / nt) as u32)
    }

    /// The index a validated reply answers, if it is one of ours.
    fn index_of(&self, r: &Reply) -> Option<u64> {
        let t = self.targets.index_of(&r.target)?;
        let rank = self.ports.rank(r.target_port)?;
        Some(u64::from(rank) * u64::from(self.targets.len()) + u64::from(t))
    }
}

/// State both threads touch.
#[derive(Debug)]
pub struct Shared {
    pub answered: AtomicBitmap,
    pub answered_count: AtomicU64,
    /// First answers per target (the answered bits of its indices).
    pub answered_by_target: Vec<AtomicU64>,
    /// Multiplier of the global rate in per mille, set from outside (the
    /// NIC's allowance counters, [`crate::ena`]): 1000 = the profile's cap.
    pub global_permille: std::sync::atomic::AtomicU32,
    pub stop: AtomicBool,
    /// The current wait after a pass, in µs (from the RTT estimator).
    pub rto_us: AtomicU64,
    /// When (µs since `epoch`) the receive thread last found every queue empty.
    pub rx_idle_us: AtomicU64,
    pub epoch: Instant,
    /// Replies that passed the cookie check, duplicates included.
    pub replies: AtomicU64,
    /// TCP/ICMP packets that matched the BPF filter but not a cookie.
    pub strays: AtomicU64,
    /// Packets the kernel dropped because the receive queue was full.
    pub rx_dropped: AtomicU64,
    pub rtt_samples: AtomicU64,
    pub srtt_us: AtomicU64,
}

impl Shared {
    pub fn new(n: u64, targets: usize, epoch: Instant, initial_rto: Duration) -> Self {
        Shared {
            answered: AtomicBitmap::new(n),
            answered_count: AtomicU64::new(0),
            answered_by_target: (0..targets).map(|_| AtomicU64::new(0)).collect(),
            global_permille: std::sync::atomic::AtomicU32::new(1000),
            stop: AtomicBool::new(false),
            rto_us: AtomicU64::new(initial_rto.as_micros() as u64),
            rx_idle_us: AtomicU64::new(0),
            epoch,
            replies: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            rtt_samples: AtomicU64::new(0),
            srtt_us: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The send sockets of a scan, already wrapped in batches.
pub struct TxSockets {
    pub v4: Option<SendBatch>,
    pub v6: Option<SendBatch>,
}

/// Settings of the transmit loop.
#[derive(Debug, Clone, Copy)]
pub struct TxParams {
    pub retries: u8,
    pub global_rate_pps: u32,
    /// Adaptive pacing and the retransmission model (the job's profile).
    pub pacing: PacingParams,
    /// Upper bound of every wait after a pass (the profile's timeout).
    pub rto_ceiling: Duration,
}

/// The job's pacing settings as the transmit loop uses them.
#[derive(Debug, Clone, Copy)]
pub struct PacingParams {
    pub adaptive: bool,
    /// Where each target starts, in percent of its ceiling.
    pub start_percent: u32,
    pub miss_one_in: u32,
    pub max_retries: u8,
    pub aimd: AimdParams,
}

impl PacingParams {
    /// From the job's profile.
    pub fn from_profile(p: &scanfleet_common::Pacing) -> Self {
        PacingParams {
            adaptive: p.adaptive,
            start_percent: p.start_percent.clamp(1, 100),
            miss_one_in: p.miss_one_in,
            max_retries: p.max_retries,
            aimd: AimdParams::default(),
        }
    }
}

/// What the transmit thread did to one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetReport {
    pub probes_sent: u64,
    pub retransmits: u64,
    /// Ports that answered / ports probed.
    pub answered: u64,
    pub ports: u64,
    pub loss: f64,
    pub miss_chance: f64,
    pub ceiling_pps: u32,
    pub max_rate_pps: u32,
    pub backoffs: u32,
    pub attempts: u32,
}

/// What the transmit thread did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxReport {
    pub probes_sent: u64,
    pub retransmits: u64,
    pub send_failures: u64,
    pub last_send_error: Option<i32>,
    pub passes: u32,
    pub stopped: bool,
    /// One per target of the scan's table, in its order.
    pub targets: Vec<TargetReport>,
}

struct Stopped;

/// Paces probes under the global bucket and one bucket per target.
///
/// Probes come in permutation order. When a target's own budget is spent,
/// its probe is set aside in that target's FIFO instead of holding up every
/// other target (a t2.nano at 100 pps must not slow a whole shard down to
/// 100 pps times the number of hosts); set-aside probes go out as soon as their
/// target has tokens again. At most [`DEFERRED_CAP`] probes wait like this,
/// beyond that the walk blocks on the slow targets.
struct Tx<'a> {
    scan: &'a Scan,
    shared: &'a Shared,
    socks: TxSockets,
    buckets: Vec<TokenBucket>,
    global: TokenBucket,
    global_base_pps: u32,
    global_permille: u32,
    /// Per target: its controller, probes sent, first-pass answers seen.
    aimd: Vec<Aimd>,
    adaptive: bool,
    sent: Vec<u64>,
    retrans: Vec<u64>,
    /// Targets the retransmission model is done with.
    done: Vec<bool>,
    next_control: Instant,
    deferred: Vec<VecDeque<u64>>,
    pending: Vec<usize>,
    deferred_total: usize,
    next_service: Instant,
    pass: u32,
    report: TxReport,
    sent_this_pass: u64,
}

impl<'a> Tx<'a> {
    fn check_stop(&self) -> Result<(), Stopped> {
        if self.shared.stopped() {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) {
        for b in [&mut self.socks.v4, &mut self.socks.v6]
            .into_iter()
            .flatten()
        {
            if b.is_empty() {
                continue;
            }
            let f = b.flush();
            self.report.probes_sent += f.sent;
            self.sent_this_pass += f.sent;
            if self.pass > 0 {
                self.report.retransmits += f.sent;
            }
            if f.failed > 0 {
                if self.report.send_failures == 0 {
                    tracing::warn!(
                        errno = f.last_error,
                        "SYN send: the kernel refused probes (route or local firewall); they count as unanswered"
                    );
                }
                self.report.send_failures += f.failed;
                self.report.last_send_error = f.last_error;
            }
        }
    }

    fn sleep(&mut self, d: Duration) -> Result<(), Stopped> {
        self.flush();
        self.check_stop()?;
        std::thread::sleep(d.clamp(Duration::from_micros(20), TICK));
        self.check_stop()
    }

    /// Take one token from the global bucket, sleeping as needed.
    fn take_global(&mut self) -> Result<(), Stopped> {
        loop {
            let now = tokio::time::Instant::now();
            let w = self.global.wait_for(1, now);
            if w.is_zero() && self.global.try_take(1, now) {
                return Ok(());
            }
            self.sleep(w)?;
        }
    }

    /// Build probe `idx` into its family's batch.
    fn send(&mut self, idx: u64) {
        let scan = self.scan;
        let (t, rank) = scan.split(idx);
        let Some(port) = scan.ports.port(rank) else {
            return;
        };
        let e = &scan.targets.entries[t];
        let Some(local) = e.local else { return };
        self.sent[t] += 1;
        if self.pass > 0 {
            self.retrans[t] += 1;
        }
        let sport = scan.clock.port_at(Instant::now());
        let seq = scan.key.cookie(local, e.ip, port, sport);
        let batch = match (local, e.ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => self.socks.v4.as_mut(),
            (IpAddr::V6(_), IpAddr::V6(_)) => self.socks.v6.as_mut(),
            _ => None,
        };
        let probe = Probe {
            local,
            target: e.ip,
            local_port: sport,
            target_port: port,
            seq,
        };
        let batch = batch.map(|b| {
            let len = packet::build_syn(b.slot(), &probe);
            b.commit(len, e.ip);
            b.is_full()
        });
        if batch == Some(true) {
            self.flush();
        }
    }

    fn has_token(&mut self, t: usize) -> bool {
        self.buckets[t]
            .wait_for(1, tokio::time::Instant::now())
            .is_zero()
    }

    /// Send set-aside probes whose targets have tokens again. With `block`,
    /// wait until at least one goes out (or none is left).
    fn service_deferred(&mut self, block: bool) -> Result<(), Stopped> {
        loop {
            let mut progressed = false;
            let mut earliest = TICK;
            let mut k = 0;
            while k < self.pending.len() {
                let t = self.pending[k];
                loop {
                    let now = tokio::time::Instant::now();
                    let w = self.buckets[t].wait_for(1, now);
                    if !w.is_zero() {
                        earliest = earliest.min(w);
                        break;
                    }
                    let Some(idx) = self.deferred[t].pop_front() else {
                        break;
                    };
                    self.deferred_total -= 1;
                    if self.pass > 0 && self.shared.answered.get(idx) {
                        continue;
                    }
                    if self.deferred_total.is_multiple_of(1024) {
                        self.control();
                    }
                    self.take_global()?;
                    self.buckets[t].try_take(1, tokio::time::Instant::now());
                    self.send(idx);
                    progressed = true;
                }
                if self.deferred[t].is_empty() {
                    self.pending.swap_remove(k);
                } else {
                    k += 1;
                }
            }
            self.next_service = Instant::now() + Duration::from_millis(1);
            if !block || progressed || self.pending.is_empty() {
                return Ok(());
            }
            self.sleep(earliest)?;
        }
    }

    /// One walk over the permutation: every index on pass 0, the unanswered
    /// ones after. Returns the number of probes sent.
    fn pass(&mut self) -> Result<u64, Stopped> {
        let scan = self.scan;
        self.sent_this_pass = 0;
        for i in 0..scan.n {
            if i % 1024 == 0 {
                self.check_stop()?;
                self.control();
            }
            let idx = scan.perm.at(i);
            if self.pass > 0 && self.shared.answered.get(idx) {
                continue;
            }
            let (t, _) = scan.split(idx);
            if scan.targets.entries[t].skip.is_some() || self.done[t] {
                continue;
            }
            if !self.pending.is_empty() && Instant::now() >= self.next_service {
                self.service_deferred(false)?;
            }
            if !self.deferred[t].is_empty() || !self.has_token(t) {
                while self.deferred_total >= DEFERRED_CAP {
                    self.service_deferred(true)?;
                }
                if self.deferred[t].is_empty() {
                    self.pending.push(t);
                }
                self.deferred[t].push_back(idx);
                self.deferred_total += 1;
                continue;
            }
            self.take_global()?;
            self.buckets[t].try_take(1, tokio::time::Instant::now());
            self.send(idx);
        }
        while !self.pending.is_empty() {
            self.service_deferred(true)?;
        }
        self.flush();
        Ok(self.sent_this_pass)
    }

    /// Adapt the rates: every target's controller sees its running totals,
    /// and the global bucket follows the NIC's back-off. At most every 10 ms.
    fn control(&mut self) {
        let now = Instant::now();
        if now < self.next_control {
            return;
        }
        self.next_control = now + Duration::from_millis(10);
        let tnow = tokio::time::Instant::now();
        let permille = self
            .shared
            .global_permille
            .load(Ordering::Relaxed)
            .clamp(1, 1000);
        if permille != self.global_permille {
            self.global_permille = permille;
            let rate = (u64::from(self.global_base_pps) * u64::from(permille) / 1000).max(1);
            self.global.set_rate(rate as u32, tnow);
        }
        if !self.adaptive {
            return;
        }
        for t in 0..self.aimd.len() {
            let answered = self.shared.answered_by_target[t].load(Ordering::Relaxed);
            if let Some(r) = self.aimd[t].observe(tnow, self.sent[t], answered) {
                self.buckets[t].set_rate(r, tnow);
            }
        }
    }

    fn all_answered(&self) -> bool {
        self.shared.answered_count.load(Ordering::Acquire) >= self.scan.probeable
    }

    /// Wait for the answers to the pass that ended at `end`: at least the
    /// current RTO, and until the receive thread has caught up (found its
    /// queues empty after that point), at most RTO + the profile timeout.
    fn wait_for_answers(&mut self, end: Instant, ceiling: Duration) -> Result<(), Stopped> {
        loop {
            self.check_stop()?;
            if self.all_answered() {
                return Ok(());
            }
            let rto = Duration::from_micros(self.shared.rto_us.load(Ordering::Relaxed));
            let deadline = end + rto;
            let now = Instant::now();
            if now >= deadline
                && (self.shared.rx_idle_us.load(Ordering::Acquire) >= self.shared.micros(deadline)
                    || now >= deadline + ceiling)
            {
                return Ok(());
            }
            std::thread::sleep(
                TICK.min(deadline.saturating_duration_since(now))
                    .max(Duration::from_millis(1)),
            );
        }
    }
}
