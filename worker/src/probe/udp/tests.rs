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
