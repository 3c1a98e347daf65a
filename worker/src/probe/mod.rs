//! The probe seam: a [`Prober`] decides the state of every (target, port) of a
//! request. Service detection and result storage happen elsewhere.

pub mod connect;
pub mod order;
pub mod ping;
pub mod syn;
pub mod synthetic;
pub mod udp;

use std::future::Future;
use std::net::IpAddr;

use async_trait::async_trait;
use scanfleet_common::{PortSpec, PortState, ProbeProfile, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What one port answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortObservation {
    pub ip: IpAddr,
    pub port: u16,
    pub state: PortState,
    /// `syn-ack`, `rst`, `no-response`, `icmp-unreachable`, `connect`, `refused`, ...
    pub reason: &'static str,
}

/// The work of one probe run.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    pub targets: Vec<Target>,
    pub ports: PortSpec,
    pub profile: ProbeProfile,
    /// Seeds the probe order permutation and the SYN cookies; a fresh one per shard.
    pub seed: u64,
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    /// Probes sent (SYN packets, or connection attempts), retransmits included.
    pub probes_sent: u64,
    pub retransmits: u64,
    /// Passes over the (target, port) pairs (0 when the engine does not count them).
    pub passes: u32,
    /// How each target was probed, when the engine measures it (the SYN engine).
    pub targets: Vec<scanfleet_common::TargetAccuracy>,
}

/// Why a probe run failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The process lacks a privilege the engine needs (CAP_NET_RAW for raw
    /// sockets); the cause is the refused socket call.
    #[error(
        "raw sockets need root or CAP_NET_RAW ({0}); run the worker as root, grant the capability \
         (setcap cap_net_raw,cap_net_admin+ep, or docker --cap-add NET_RAW --cap-add NET_ADMIN), or use the connect scan"
    )]
    Permission(#[source] std::io::Error),
    /// A setting the engine cannot work with; the message names it. Permanent.
    #[error("probe engine configuration: {0}")]
    Config(String),
    #[error("probe I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("probe run cancelled")]
    Cancelled,
}

impl ProbeError {
    /// Transient errors put the shard back on the queue; permission errors do not heal by retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProbeError::Io(_))
    }
}

/// A port-scanning engine.
#[async_trait]
pub trait Prober: Send + Sync {
    /// `connect` or `syn`: shown to users and in metrics.
    fn name(&self) -> &'static str;

    /// Probe every (target, port) of `req` and send exactly one final observation
    /// for each to `out` (closed and filtered included; the caller filters). Honour
    /// each target's `rate_pps` and the profile's global rate, timeout and retries.
    /// Returns early with [`ProbeError::Cancelled`] when `cancel` fires.
    async fn scan(
        &self,
        req: &ProbeRequest,
        out: mpsc::Sender<PortObservation>,
        cancel: CancellationToken,
    ) -> Result<ProbeStats, ProbeError>;
}

/// One probe run as an [`Engine`] receives it: the arguments of [`Prober::scan`].
pub struct Run<'a> {
    pub req: &'a ProbeRequest,
    pub out: mpsc::Sender<PortObservation>,
    pub cancel: CancellationToken,
}

/// What a scanning engine implements; every `Engine` is a [`Prober`], named
/// [`Engine::NAME`] and scanning with [`Engine::run`].
pub trait Engine: Send + Sync {
    /// What [`Prober::name`] returns.
    const NAME: &'static str;

    /// [`Prober::scan`], with the same contract.
    fn run(&self, run: Run<'_>) -> impl Future<Output = Result<ProbeStats, ProbeError>> + Send;
}

#[async_trait]
impl<E: Engine> Prober for E {
    fn name(&self) -> &'static str {
        E::NAME
    }

    async fn scan(
        &self,
        req: &ProbeRequest,
        out: mpsc::Sender<PortObservation>,
        cancel: CancellationToken,
    ) -> Result<ProbeStats, ProbeError> {
        self.run(Run { req, out, cancel }).await
    }
}

/// The engine chosen for a run, and what the user should be told about the choice.
pub struct Selected {
    pub prober: std::sync::Arc<dyn Prober>,
    /// Set when `auto` fell back to connect: say it once on stderr.
    pub fallback_note: Option<String>,
}

/// Pick the engine for a mode: `syn` requires raw sockets, `connect` never does,
/// `auto` tries SYN and falls back to connect with a note.
///
/// # Errors
/// [`ProbeError::Permission`] when `syn` is asked for and raw sockets are not allowed.
pub fn select(
    mode: scanfleet_common::ScanMode,
    syn: syn::SynConfig,
) -> Result<Selected, ProbeError> {
    use scanfleet_common::ScanMode;
    use std::sync::Arc;
    match mode {
        ScanMode::Connect => Ok(Selected {
            prober: Arc::new(connect::ConnectProber::new()),
            fallback_note: None,
        }),
        ScanMode::Syn => Ok(Selected {
            prober: Arc::new(syn::SynProber::new(syn)?),
            fallback_note: None,
        }),
        ScanMode::Auto => match syn::SynProber::new(syn) {
            Ok(p) => Ok(Selected {
                prober: Arc::new(p),
                fallback_note: None,
            }),
            Err(e) => Ok(Selected {
                prober: Arc::new(connect::ConnectProber::new()),
                fallback_note: Some(format!(
                    "SYN scan unavailable ({e}); using TCP connect scan"
                )),
            }),
        },
    }
}
