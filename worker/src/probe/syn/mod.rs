//! Raw-socket SYN engine (being written).

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PortObservation, ProbeError, ProbeRequest, ProbeStats, Prober};

/// Settings of the SYN engine.
#[derive(Debug, Clone, Default)]
pub struct SynConfig {}

/// The raw-socket SYN scanner.
pub struct SynProber {
    _config: SynConfig,
}

impl SynProber {
    /// Open the raw sockets.
    ///
    /// # Errors
    /// [`ProbeError::Permission`] without CAP_NET_RAW.
    pub fn new(_config: SynConfig) -> Result<Self, ProbeError> {
        Err(ProbeError::Permission("the SYN engine is not built yet".into()))
    }
}

#[async_trait]
impl Prober for SynProber {
    fn name(&self) -> &'static str {
        "syn"
    }

    async fn scan(
        &self,
        _req: &ProbeRequest,
        _out: mpsc::Sender<PortObservation>,
        _cancel: CancellationToken,
    ) -> Result<ProbeStats, ProbeError> {
        Err(ProbeError::Permission("the SYN engine is not built yet".into()))
    }
}
