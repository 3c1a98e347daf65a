//! Host pings (what nmap calls host discovery): is anybody there? ICMP echo
//! (needs root or CAP_NET_RAW: this machine's `net.ipv4.ping_group_range`
//! disables unprivileged ping sockets) and TCP pings on common ports, where a
//! refused connection proves the host up just as well as an accepted one. A host
//! that drops ICMP but runs any TCP stack is still found.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Ports tried by TCP ping, as nmap's default discovery does (80, 443) plus remote access.
pub const TCP_PING_PORTS: [u16; 4] = [80, 443, 22, 3389];
/// Hosts pinged at the same time.
const WINDOW: usize = 256;

/// Which hosts answered.
#[derive(Debug, Clone, Default)]
pub struct PingOutcome {
    pub up: Vec<IpAddr>,
    pub down: Vec<IpAddr>,
    /// Said once to the user, e.g. that ICMP needs CAP_NET_RAW and only TCP pings were used.
    pub notes: Vec<String>,
}

/// Open ICMP clients for v4 and v6, or explain why not.
fn icmp_clients() -> (Option<Client>, Option<Client>, Option<String>) {
    let v4 = Client::new(
        &Config::builder()
            .kind(ICMP::V4)
            .sock_type_hint(socket2::Type::RAW)
            .build(),
    );
    let v6 = Client::new(
        &Config::builder()
            .kind(ICMP::V6)
            .sock_type_hint(socket2::Type::RAW)
            .build(),
    );
    let note = match &v4 {
        Err(e) => Some(format!(
            "ICMP host discovery needs root or CAP_NET_RAW ({e}); hosts were discovered with TCP pings only"
        )),
        Ok(_) => None,
    };
    (v4.ok(), v6.ok(), note)
}

async fn icmp_up(client: Option<Client>, ip: IpAddr, timeout: Duration) -> bool {
    let Some(client) = client else { return false };
    let mut pinger = client.pinger(ip, PingIdentifier(rand::random())).await;
    pinger.timeout(timeout);
    for seq in 0..2u16 {
        if pinger.ping(PingSequence(seq), &[0u8; 16]).await.is_ok() {
            return true;
        }
    }
    false
}

async fn tcp_up(ip: IpAddr, timeout: Duration) -> bool {
    let mut set = JoinSet::new();
    for port in TCP_PING_PORTS {
        set.spawn(async move {
            match tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::new(ip, port))).await
            {
                Ok(Ok(s)) => s.local_addr().ok() != Some(SocketAddr::new(ip, port)),
                Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                Err(_) => false,
            }
        });
    }
    while let Some(r) = set.join_next().await {
        if r.unwrap_or(false) {
            return true;
        }
    }
    false
}

/// Find which of `ips` are up: a host is up when it answers an ICMP echo or any
/// TCP ping (SYN-ACK or RST), each waited on for `timeout`.
pub async fn sweep(ips: &[IpAddr], timeout: Duration) -> PingOutcome {
    let (v4, v6, note) = icmp_clients();
    let window = Arc::new(Semaphore::new(WINDOW));
    let mut set = JoinSet::new();
    for &ip in ips {
        let client = if ip.is_ipv4() { v4.clone() } else { v6.clone() };
        let window = window.clone();
        set.spawn(async move {
            let _p = window.acquire_owned().await;
            let up = tokio::select! {
                biased;
                true = icmp_up(client, ip, timeout) => true,
                true = tcp_up(ip, timeout) => true,
                else => false,
            };
            (ip, up)
        });
    }
    let mut out = PingOutcome {
        notes: note.into_iter().collect(),
        ..Default::default()
    };
    while let Some(r) = set.join_next().await {
        if let Ok((ip, up)) = r {
            if up {
                out.up.push(ip)
            } else {
                out.down.push(ip)
            }
        }
    }
    out.up.sort();
    out.down.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_is_up_and_ping_privilege_is_explained() {
        let got = sweep(&["127.0.0.1".parse().unwrap()], Duration::from_millis(500)).await;
        assert_eq!(got.up, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(got.notes.is_empty(), root, "notes: {:?}", got.notes);
    }
}
