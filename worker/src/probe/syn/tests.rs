//! End-to-end tests of the SYN engine. Scan traffic stays inside network
//! namespaces these tests create (the scanner runs inside one too); without
//! root they print why they skip.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use scanfleet_common::{PortSpec, PortState, ProbeProfile, ScanMode, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::netns::{self, Netns};
use super::*;
use crate::probe::{PortObservation, ProbeRequest, ProbeStats, Prober};

macro_rules! skip_unless_root {
    () => {
        if let Some(why) = netns::skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn target(ip: IpAddr, rate_pps: u32) -> Target {
    Target {
        ip,
        asset_id: ip.to_string(),
        rate_pps,
    }
}

fn request(
    targets: Vec<Target>,
    ports: &str,
    retries: u8,
    global_rate_pps: u32,
    timeout_ms: u64,
) -> ProbeRequest {
    ProbeRequest {
        targets,
        ports: PortSpec::parse(ports).expect("port spec"),
        profile: ProbeProfile {
            timeout_ms,
            retries,
            global_rate_pps,
            ..ProbeProfile::default()
        },
        seed: rand::random(),
    }
}

/// Every observation with the time it arrived (since the scan started).
struct Outcome {
    stats: Result<ProbeStats, String>,
    seen: Vec<(PortObservation, Duration)>,
    elapsed: Duration,
}

impl Outcome {
    /// (ip, port) -> observations, asserting exactly one per key.
    fn by_port(&self) -> HashMap<(IpAddr, u16), (PortState, &'static str)> {
        let mut m = HashMap::new();
        for (o, _) in &self.seen {
            let prev = m.insert((o.ip, o.port), (o.state, o.reason));
            assert!(
                prev.is_none(),
                "{}:{} reported twice: {prev:?} then {:?}",
                o.ip,
                o.port,
                (o.state, o.reason)
            );
        }
        m
    }

    fn count(&self, ip: IpAddr, state: PortState, reason: &str) -> usize {
        self.seen
            .iter()
            .filter(|(o, _)| o.ip == ip && o.state == state && o.reason == reason)
            .count()
    }
}

/// Run one SYN scan inside `ns` and collect what it reports.
fn scan_in(
    ns: &Netns,
    config: SynConfig,
    req: ProbeRequest,
    cancel_after: Option<Duration>,
) -> Outcome {
    ns.block_on(move || async move {
        let prober = SynProber::new(config).expect("SynProber::new as root");
        let (tx, mut rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        if let Some(d) = cancel_after {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                c.cancel();
            });
        }
        let start = Instant::now();
        let collect = async {
            let mut seen = Vec::new();
            while let Some(o) = rx.recv().await {
                seen.push((o, start.elapsed()));
            }
            seen
        };
        let (stats, seen) = tokio::join!(prober.scan(&req, tx, cancel), collect);
        Outcome {
            stats: stats.map_err(|e| e.to_string()),
            seen,
            elapsed: start.elapsed(),
        }
    })
}

/// [`scan_in`] with the default settings and no cancel.
fn scan_default(ns: &Netns, req: ProbeRequest) -> Outcome {
    scan_in(ns, SynConfig::default(), req, None)
}

/// The default settings but `send_batch` probes per `sendmmsg`.
fn with_batch(send_batch: usize) -> SynConfig {
    SynConfig {
        send_batch,
        ..SynConfig::default()
    }
}

/// The ports `listeners` are bound to.
fn ports_of(listeners: &[std::net::TcpListener]) -> Vec<u16> {
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A loopback port that was free a moment ago, in the current namespace.
fn free_port() -> u16 {
    ports_of(&[std::net::TcpListener::bind("127.0.0.1:0").unwrap()])[0]
}

/// Three ports a target's firewall treats apart, each with a listener behind it.
struct Rules {
    /// Dropped: no answer at all.
    drop: u16,
    /// Refused with a TCP reset.
    reset: u16,
    /// Refused with an ICMP administratively-prohibited unreachable.
    admin: u16,
}

impl Rules {
    /// The nftables ruleset that applies the rules to traffic from `scanner`.
    fn nft(&self, scanner: IpAddr) -> String {
        let (ip, icmp) = if scanner.is_ipv4() {
            ("ip", "icmp")
        } else {
            ("ip6", "icmpv6")
        };
        let Rules { drop, reset, admin } = self;
        format!(
            "table inet sfsyn {{ chain input {{ type filter hook input priority 0; policy accept;
               {ip} saddr {scanner} tcp dport {drop} drop
               {ip} saddr {scanner} tcp dport {reset} reject with tcp reset
               {ip} saddr {scanner} tcp dport {admin} reject with {icmp} type admin-prohibited
             }}
             }}"
        )
    }

    /// What a scan must report for `port` of the target, which listens on `open` too.
    fn want(&self, port: u16, open: &[u16]) -> (PortState, &'static str) {
        match port {
            p if p == self.drop => (PortState::Filtered, "no-response"),
            p if p == self.reset => (PortState::Closed, "rst"),
            p if p == self.admin => (PortState::Filtered, "icmp-unreachable"),
            p if open.contains(&p) => (PortState::Open, "syn-ack"),
            _ => (PortState::Closed, "rst"),
        }
    }

    fn ports(&self) -> [u16; 3] {
        [self.drop, self.reset, self.admin]
    }
}

impl Outcome {
    /// The statistics of a scan that must have succeeded.
    fn ok(&self) -> ProbeStats {
        self.stats.clone().expect("scan")
    }

    /// (port, state, reason) of every observation, sorted.
    fn sorted(&self) -> Vec<(u16, PortState, &'static str)> {
        let mut got: Vec<_> = self
            .seen
            .iter()
            .map(|(o, _)| (o.port, o.state, o.reason))
            .collect();
        got.sort();
        got
    }
}

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn syn_loopback_full_sweep_finds_exactly_its_listeners() {
    skip_unless_root!();
    // A fresh namespace has its own loopback with nothing listening: every
    // port but ours must come back closed, so the whole sweep is exact.
    let ns = Netns::create("lo").unwrap();
    let listeners = ns.listeners(LO, &[22, 8080, 61500]);
    let open = ports_of(&listeners);
    // 10.214.255.1 has no route in this namespace: reported, never probed.
    let unroutable = IpAddr::V4(Ipv4Addr::new(10, 214, 255, 1));
    let req = request(
        vec![target(LO, 200_000), target(unroutable, 1000)],
        "1-65535",
        2,
        200_000,
        1000,
    );
    let out = scan_default(&ns, req);
    let stats = out.ok();
    let got = out.by_port();
    assert_eq!(got.len(), 2 * 65535, "every (target, port) once");
    for port in 1..=65535u16 {
        let want = if open.contains(&port) {
            (PortState::Open, "syn-ack")
        } else {
            (PortState::Closed, "rst")
        };
        assert_eq!(got[&(LO, port)], want, "127.0.0.1:{port}");
        assert_eq!(got[&(unroutable, port)], (PortState::Filtered, "no-route"));
    }
    // Nothing went to the unroutable host, and loopback answers nearly
    // everything on the first pass (a loaded machine may resend a few).
    assert_eq!(stats.probes_sent, 65535 + stats.retransmits);
    assert!(stats.retransmits <= 655, "{stats:?}");
    eprintln!("loopback sweep: {:?} for 65535 ports", out.elapsed);
    drop(listeners);
}

#[test]
fn syn_root_namespace_loopback_few_ports() {
    // The worker's normal setting: the host's own namespace, where the raw
    // socket also sees everyone else's TCP traffic. Only our own listeners and
    // a port we just freed are probed (127.0.0.1 only).
    skip_unless_root!();
    let listeners = [
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let open = ports_of(&listeners);
    let (pa, pb) = (open[0], open[1]);
    let free = free_port();
    let req = request(
        vec![target(LO, 1000)],
        &format!("{pa},{pb},{free}"),
        2,
        1000,
        500,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut got = rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(16);
        let stats = SynProber::new(SynConfig::default())
            .unwrap()
            .scan(&req, tx, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(stats.probes_sent, 3);
        let mut got = Vec::new();
        while let Some(o) = rx.recv().await {
            got.push((o.port, o.state, o.reason));
        }
        got
    });
    got.sort();
    let mut want = vec![
        (pa, PortState::Open, "syn-ack"),
        (pb, PortState::Open, "syn-ack"),
        (free, PortState::Closed, "rst"),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn syn_loopback_few_ports_with_duplicate_target() {
    skip_unless_root!();
    let ns = Netns::create("dup").unwrap();
    let listeners = ns.listeners(LO, &[0, 0]);
    let open = ports_of(&listeners);
    let free = ns.enter(free_port);
    let spec = format!("{},{},{free}", open[0], open[1]);
    // The same address twice: each copy gets its own observations.
    let req = request(
        vec![target(LO, 1000), target(LO, 1000)],
        &spec,
        2,
        1000,
        500,
    );
    let out = scan_in(&ns, with_batch(1), req, None);
    out.ok();
    let got = out.sorted();
    let mut want = vec![
        (open[0], PortState::Open, "syn-ack"),
        (open[0], PortState::Open, "syn-ack"),
        (open[1], PortState::Open, "syn-ack"),
        (open[1], PortState::Open, "syn-ack"),
        (free, PortState::Closed, "rst"),
        (free, PortState::Closed, "rst"),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn syn_namespace_sweep_classifies_every_port_despite_loss() {
    skip_unless_root!();
    let scanner = Netns::create("scan").unwrap();
    let ruled = Netns::create("ta").unwrap();
    let lossy = Netns::create("tb").unwrap();
    let la = netns::veth(&scanner, &ruled, 11).unwrap();
    let lb = netns::veth(&scanner, &lossy, 12).unwrap();
    let (s_a, s_b) = (la.a, lb.a);
    let (a, b) = (IpAddr::V4(la.b), IpAddr::V4(lb.b));

    // Target A: listeners, and three rules over ports that have listeners too.
    let rules = Rules {
        drop: 5432,
        reset: 9000,
        admin: 3306,
    };
    let a_open = [22u16, 80, 443, 8080, 65000];
    let _la = ruled.listeners(a, &[&a_open[..], &rules.ports()].concat());
    ruled.nft(&rules.nft(IpAddr::V4(s_a))).unwrap();
    // Target B: listeners behind 20 % random loss of everything the scanner sends.
    let b_open = [25u16, 3000, 40000, 61001];
    let _lb = lossy.listeners(b, &b_open);
    lossy
        .nft(&format!(
            "table inet sfsyn {{ chain input {{ type filter hook input priority 0; policy accept;
               ip saddr {s_b} numgen random mod 100 < 20 drop
             }}
             }}"
        ))
        .unwrap();

    // Six retransmits: a port is missed only if 7 probes in a row are lost
    // (0.2^7 = 1.3e-5), so recall of the open ports is 100 % in practice.
    let req = request(
        vec![target(a, 100_000), target(b, 100_000)],
        "-",
        6,
        150_000,
        1000,
    );
    let out = scan_default(&scanner, req);
    let stats = out.ok();
    let got = out.by_port();
    assert_eq!(got.len(), 2 * 65535, "every (target, port) exactly once");

    for port in 1..=65535u16 {
        assert_eq!(got[&(a, port)], rules.want(port, &a_open), "{a}:{port}");
    }
    for p in b_open {
        assert_eq!(
            got[&(b, p)],
            (PortState::Open, "syn-ack"),
            "{b}:{p} missed despite retries"
        );
    }
    let b_open_n = out.count(b, PortState::Open, "syn-ack");
    let b_closed = out.count(b, PortState::Closed, "rst");
    let b_silent = out.count(b, PortState::Filtered, "no-response");
    assert_eq!(b_open_n, b_open.len());
    assert_eq!(b_open_n + b_closed + b_silent, 65535);
    assert!(
        b_silent <= 30,
        "{b_silent} ports of the lossy target silent after 7 tries"
    );
    // About a fifth of B's probes were lost and resent, plus A's dropped port 6 times.
    assert!(stats.retransmits >= 6 + 10_000, "{stats:?}");
    assert_eq!(stats.probes_sent, 2 * 65535 + stats.retransmits);
    eprintln!(
        "namespace sweep: {:?}, {stats:?}, {b_silent} lossy ports silent",
        out.elapsed
    );
}

#[test]
fn syn_ipv6_namespace_sweep() {
    skip_unless_root!();
    let scanner = Netns::create("s6").unwrap();
    let tgt = Netns::create("t6").unwrap();
    netns::veth(&scanner, &tgt, 13).unwrap();
    let (s, t): (IpAddr, IpAddr) = (
        "fd00:214:13::1".parse().unwrap(),
        "fd00:214:13::2".parse().unwrap(),
    );
    let open = [22u16, 443, 61234];
    let rules = Rules {
        drop: 1000,
        reset: 1001,
        admin: 1002,
    };
    let _l = tgt.listeners(t, &[&open[..], &rules.ports()].concat());
    tgt.nft(&rules.nft(s)).unwrap();
    let req = request(vec![target(t, 100_000)], "1-65535", 2, 100_000, 1000);
    let out = scan_default(&scanner, req);
    let stats = out.ok();
    eprintln!("IPv6 sweep: {:?}, {stats:?}", out.elapsed);
    let got = out.by_port();
    assert_eq!(got.len(), 65535);
    for port in 1..=65535u16 {
        assert_eq!(got[&(t, port)], rules.want(port, &open), "[{t}]:{port}");
    }
}

#[test]
fn syn_per_target_rates_are_honoured_independently() {
    skip_unless_root!();
    let scanner = Netns::create("rs").unwrap();
    let tgt = Netns::create("rt").unwrap();
    let link = netns::veth(&scanner, &tgt, 14).unwrap();
    // A second address on the target side: a slow host and a fast one.
    tgt.ip(&["addr", "add", "10.214.14.3/24", "dev", &link.b_dev])
        .unwrap();
    let slow = IpAddr::V4(Ipv4Addr::new(10, 214, 14, 2));
    let fast = IpAddr::V4(Ipv4Addr::new(10, 214, 14, 3));
    // slow: 400 ports at 200 pps (>= 1.98 s); fast: the same 400 ports at 40k pps.
    let req = request(
        vec![target(slow, 200), target(fast, 40_000)],
        "1-400",
        0,
        100_000,
        500,
    );
    let out = scan_default(&scanner, req);
    out.ok();
    let at = |ip: IpAddr| -> Vec<Duration> {
        out.seen
            .iter()
            .filter(|(o, _)| o.ip == ip)
            .map(|(_, t)| *t)
            .collect()
    };
    let (ts, tf) = (at(slow), at(fast));
    assert_eq!((ts.len(), tf.len()), (400, 400));
    let fast_done = tf.iter().max().copied().unwrap();
    let slow_done = ts.iter().max().copied().unwrap();
    let slow_in_first_second = ts.iter().filter(|t| **t < Duration::from_secs(1)).count();
    eprintln!(
        "fast host done after {fast_done:?}, slow host after {slow_done:?}; slow answers in the first second: {slow_in_first_second}"
    );
    assert!(
        slow_done >= Duration::from_millis(1900),
        "slow host got more than 200 pps: {slow_done:?}"
    );
    assert!(
        slow_in_first_second <= 200 + 4 + 10,
        "{slow_in_first_second}"
    );
    // The slow host must not hold the fast one back (it would take ~2 s then).
    assert!(
        fast_done < Duration::from_millis(1000),
        "fast host waited for the slow one: {fast_done:?}"
    );
}

#[test]
fn syn_cancel_stops_promptly() {
    skip_unless_root!();
    let ns = Netns::create("cx").unwrap();
    // 65535 probes at 2000 pps would take 33 s; cancel after 300 ms.
    let req = request(vec![target(LO, 2000)], "-", 2, 2000, 1000);
    let out = scan_in(
        &ns,
        SynConfig::default(),
        req,
        Some(Duration::from_millis(300)),
    );
    assert_eq!(out.stats, Err(ProbeError::Cancelled.to_string()));
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
    assert!(
        !out.seen.is_empty() && out.seen.len() < 5000,
        "{}",
        out.seen.len()
    );
}

#[test]
fn syn_permission_error_without_cap_net_raw() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root: the real thing.
        let e = SynProber::new(SynConfig::default()).unwrap_err();
        assert!(matches!(e, ProbeError::Permission(_)), "{e}");
        return;
    }
    // As root: drop CAP_NET_RAW on one thread (capabilities are per thread).
    let (err, note) = std::thread::spawn(|| {
        netns::drop_net_raw_on_this_thread().expect("capset");
        let err = SynProber::new(SynConfig::default()).err();
        let note = crate::probe::select(ScanMode::Auto, SynConfig::default())
            .ok()
            .and_then(|s| s.fallback_note);
        (err, note)
    })
    .join()
    .unwrap();
    match err {
        Some(e @ ProbeError::Permission(_)) => {
            assert!(e.to_string().contains("CAP_NET_RAW"), "{e}")
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    assert!(
        note.is_some_and(|n| n.contains("connect")),
        "auto falls back to connect with a note"
    );
    // And a thread that became `nobody` (raw setresuid: this thread only).
    let err = std::thread::spawn(|| {
        // SAFETY: the raw system call changes the credentials of this thread only.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        SynProber::new(SynConfig::default()).err()
    })
    .join()
    .unwrap();
    assert!(matches!(err, Some(ProbeError::Permission(_))), "{err:?}");
    // Root itself can.
    assert!(SynProber::new(SynConfig::default()).is_ok());
}

#[test]
fn syn_config_is_validated() {
    assert!(SynConfig::default().validate().is_ok());
    let bad = SynConfig {
        source_ports: (2000, 1000),
        ..SynConfig::default()
    };
    assert!(bad.validate().unwrap_err().contains("syn.source_ports"));
    let bad = SynConfig {
        send_batch: 0,
        ..SynConfig::default()
    };
    assert!(bad.validate().unwrap_err().contains("syn.send_batch"));
    assert!(matches!(
        SynProber::new(SynConfig {
            source_ports: (0, 10),
            ..SynConfig::default()
        }),
        Err(ProbeError::Config(m)) if m.contains("syn.source_ports")
    ));
}

/// Throughput of a full sweep: `cargo test --release -p scanfleet-worker bench_syn -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_syn_sweeps() {
    skip_unless_root!();
    let scanner = Netns::create("bs").unwrap();
    let tgt = Netns::create("bt").unwrap();
    let t = IpAddr::V4(netns::veth(&scanner, &tgt, 15).unwrap().b);
    let _l = tgt.listeners(t, &[22, 80, 443]);
    let _ll = scanner.listeners(LO, &[22, 80, 443]);
    // Transmit path alone: a second target that drops everything from us
    // before its TCP stack sees it (nothing answers, so the send loop is all
    // that is measured; the scan ends after one 100 ms wait).
    let sink = Netns::create("bk").unwrap();
    let link = netns::veth(&scanner, &sink, 16).unwrap();
    sink.nft(&format!(
        "table ip sfsyn {{ chain pre {{ type filter hook prerouting priority raw; policy accept;
           ip saddr {} drop
         }}
         }}",
        link.a
    ))
    .unwrap();
    for batch in [1usize, 16, 64, 256] {
        let req = request(
            vec![target(IpAddr::V4(link.b), u32::MAX)],
            "-",
            0,
            10_000_000,
            100,
        );
        let out = scan_in(&scanner, with_batch(batch), req, None);
        let stats = out.ok();
        let send_time = out.elapsed.saturating_sub(Duration::from_millis(100));
        eprintln!(
            "bench   send only  batch {batch:>3}: {} sent in about {send_time:?} ({:.0} packets/s)",
            stats.probes_sent,
            stats.probes_sent as f64 / send_time.as_secs_f64()
        );
    }
    for batch in [1usize, 16, 64, 256] {
        for (name, ip) in [("netns target", t), ("127.0.0.1", LO)] {
            let req = request(vec![target(ip, u32::MAX)], "-", 2, 10_000_000, 1000);
            let out = scan_in(&scanner, with_batch(batch), req, None);
            let stats = out.ok();
            let open = out
                .seen
                .iter()
                .filter(|(o, _)| o.state == PortState::Open)
                .count();
            // Time to the last answer of the first pass (the rest is the final RTO wait).
            let last = out
                .seen
                .iter()
                .filter(|(o, _)| o.reason != "no-response")
                .map(|(_, t)| *t)
                .max()
                .unwrap_or_default();
            eprintln!(
                "bench {name:>12} batch {batch:>3}: {} sent, {} retransmits, {open} open, answers done {:?} ({:.0} probes/s), scan {:?}",
                stats.probes_sent,
                stats.retransmits,
                last,
                stats.probes_sent as f64 / last.as_secs_f64(),
                out.elapsed
            );
        }
    }
}
