//! Host discovery (being written): ICMP echo and TCP pings.

use std::net::IpAddr;

/// Which hosts answered.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOutcome {
    pub up: Vec<IpAddr>,
    pub down: Vec<IpAddr>,
    /// Said once to the user, e.g. that ICMP needs CAP_NET_RAW and only TCP pings were used.
    pub notes: Vec<String>,
}

/// Find which of `ips` are up.
pub async fn discover(ips: &[IpAddr], _timeout: std::time::Duration) -> DiscoveryOutcome {
    DiscoveryOutcome { up: ips.to_vec(), ..Default::default() }
}
