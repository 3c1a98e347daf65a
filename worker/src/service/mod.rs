//! Service detection on open ports (being written): banner grabbing and protocol probes.

use std::net::IpAddr;
use std::time::Duration;

use scanfleet_common::ServiceInfo;

/// Knobs of service detection.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Total time one port may cost, all probes included.
    pub port_budget: Duration,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { port_budget: Duration::from_secs(6) }
    }
}

/// Identifies services on open ports.
#[derive(Debug, Clone)]
pub struct Detector {
    pub config: DetectConfig,
}

impl Detector {
    pub fn new(config: DetectConfig) -> Self {
        Detector { config }
    }

    /// Identify the service on an open port, within the port budget. `None` when
    /// nothing could be learned (the port still counts as open).
    pub async fn detect(&self, _ip: IpAddr, _port: u16) -> Option<ServiceInfo> {
        None
    }
}
