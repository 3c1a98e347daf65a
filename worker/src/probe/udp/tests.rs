//! The engine against UDP sockets of our own on loopback.

use std::net::UdpSocket as StdSocket;
use std::time::Duration;

use super::*;

fn target(ip: &str) -> Target {
    Target {
        ip: ip.parse().unwrap(),
        asset_id: "lo".into(),
        rate_pps: 1000,
    }
}

/// A socket that echoes every datagram, on a thread of its own.
fn echo() -> (u16, std::thread::JoinHandle<()>) {
    let s = StdSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = s.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&[b"echo:", &buf[..n]].concat(), from);
        }
    });
    (port, h)
}

async fn run(ports: &str, retries: u8) -> (Vec<UdpObservation>, ProbeStats) {
    let spec = PortSpec::parse(ports).unwrap();
    let profile = ProbeProfile {
        timeout_ms: 300,
        retries,
        ..ProbeProfile::default()
    };
    let (tx, mut rx) = mpsc::channel(64);
    let stats = UdpProber::with_window(16)
        .scan(
            &[target("127.0.0.1")],
            &spec,
            &profile,
            7,
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(o) = rx.recv().await {
        got.push(o);
    }
    got.sort_by_key(|o| o.obs.port);
    (got, stats)
}

#[tokio::test]
async fn open_closed_and_silent_ports_on_loopback() {
    let (open, h) = echo();
    // Bound but never answering: silence, so open|filtered.
    let silent = StdSocket::bind("127.0.0.1:0").unwrap();
    let quiet = silent.local_addr().unwrap().port();
    // Nothing bound: the kernel answers ICMP port unreachable.
    let free = StdSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (got, stats) = run(&format!("{open},{quiet},{free}"), 2).await;
    h.join().unwrap();
    let by_port = |p: u16| got.iter().find(|o| o.obs.port == p).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");

    let o = by_port(open);
    assert_eq!(
        (o.obs.state, o.obs.reason),
        (PortState::Open, "udp-response")
    );
    let svc = o.service.as_ref().unwrap();
    assert_eq!(svc.name, "unknown");
    assert_eq!(svc.banner.as_deref(), Some("echo:"));
    assert_eq!(svc.extra["udp"], "empty");

    let c = by_port(free);
    assert_eq!(
        (c.obs.state, c.obs.reason),
        (PortState::Closed, "port-unreach")
    );
    assert!(c.service.is_none());

    let s = by_port(quiet);
    assert_eq!(
        (s.obs.state, s.obs.reason),
        (PortState::OpenFiltered, "no-response")
    );
    // The silent port got all three attempts, and each counted as sent.
    silent.set_nonblocking(true).unwrap();
    let mut n = 0;
    let mut buf = [0u8; 64];
    while silent.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    assert_eq!(n, 3, "datagrams the silent port received");
    assert!(
        stats.probes_sent >= 5 && stats.retransmits >= 2,
        "{stats:?}"
    );
}

#[tokio::test]
async fn cancel_ends_the_run() {
    let spec = PortSpec::parse("40000-40100").unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = UdpProber::with_window(4)
        .scan(
            &[target("127.0.0.1")],
            &spec,
            &ProbeProfile::default(),
            1,
            tx,
            cancel,
        )
        .await;
    assert!(matches!(r, Err(ProbeError::Cancelled)));
}

/// The engine alone against the UDP lab's real daemons (loadtest/lab/udp.sh).
/// Runs when SCANFLEET_UDP_LAB=1 and the test binary runs inside `sfu-scan`
/// (`ip netns exec sfu-scan <test binary> probe::udp::tests::udp_lab --nocapture`);
/// the full CLI run is coordinator/tests/udp_lab.rs.
#[tokio::test]
async fn udp_lab_daemons_answer_the_engine() {
    if std::env::var("SCANFLEET_UDP_LAB").as_deref() != Ok("1") {
        eprintln!("skipped: set SCANFLEET_UDP_LAB=1 and run inside sfu-scan");
        return;
    }
    let spec = PortSpec::parse("9,53,69,123,137,161,500,514,1900,5353,11211").unwrap();
    let targets = [target("10.218.0.11"), target("10.218.0.12")];
    let (tx, mut rx) = mpsc::channel(64);
    let started = std::time::Instant::now();
    let stats = UdpProber::with_window(64)
        .scan(
            &targets,
            &spec,
            &ProbeProfile::default(),
            3,
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let mut got = std::collections::BTreeMap::new();
    while let Some(o) = rx.recv().await {
        got.insert(
            (o.obs.ip.to_string(), o.obs.port),
            (o.obs.state, o.service.map(|s| s.name)),
        );
    }
    for (k, v) in &got {
        eprintln!("{k:?} {v:?}");
    }
    eprintln!("{} ports in {secs:.2} s, {stats:?}", got.len());
    let want = [
        (("10.218.0.11", 53), PortState::Open, Some("dns")),
        (("10.218.0.11", 69), PortState::Open, Some("tftp")),
        (("10.218.0.11", 123), PortState::Open, Some("ntp")),
        (("10.218.0.11", 161), PortState::Open, Some("snmp")),
        (("10.218.0.11", 5353), PortState::Open, Some("mdns")),
        (("10.218.0.11", 11211), PortState::Open, Some("memcached")),
        (("10.218.0.11", 514), PortState::OpenFiltered, None),
        (("10.218.0.11", 9), PortState::Closed, None),
        (("10.218.0.12", 161), PortState::Open, Some("snmp")),
        (("10.218.0.12", 500), PortState::OpenFiltered, None),
        (("10.218.0.12", 53), PortState::Closed, None),
    ];
    assert_eq!(got.len(), 22);
    for ((ip, port), state, name) in want {
        let (s, n) = &got[&(ip.to_string(), port)];
        assert_eq!((s, n.as_deref()), (&state, name), "{ip}:{port}");
    }
}
