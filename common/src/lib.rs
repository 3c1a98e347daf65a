//! Shared vocabulary of scanfleet: the domain types that travel between the
//! coordinator and its workers, the [`queue::JobQueue`] and [`store::ResultStore`]
//! seams with their backends, the parsers for what users type (ports, targets,
//! inventories) and the scope and rate policies.
//!
//! Everything here is pure or backend code; nothing in this crate sends a probe.

pub mod address;
pub mod aws;
pub mod backend;
pub mod config;
pub mod envelope;
pub mod inventory;
pub mod metrics;
pub mod ports;
pub mod queue;
pub mod rate;
pub mod scope;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod text;
pub mod types;

pub use envelope::{EnvelopeError, JobEnvelope};
pub use ports::{PortSpec, PortSpecError};
pub use types::*;
