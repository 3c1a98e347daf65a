//! The scanfleet worker: takes shards off a [`JobQueue`](scanfleet_common::queue::JobQueue),
//! verifies them, probes the targets, identifies services and writes results to a
//! [`ResultStore`](scanfleet_common::store::ResultStore), acking only after the
//! results are stored.
//!
//! The probe engine sits behind the [`probe::Prober`] seam: a TCP connect scan
//! ([`probe::connect`]) that needs no privileges, and the raw-socket SYN engine
//! ([`probe::syn`]).

pub mod consume;
pub mod ena;
pub mod lifecycle;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod rate;
pub mod service;

pub use consume::{Worker, WorkerConfig};
