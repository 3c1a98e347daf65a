//! Telemetry shared by both binaries: the `/metrics` listener
//! ([`MetricsServer`]), the prometheus text rendering, and URL redaction for
//! logs and messages. Metric names and label sets live in
//! [`crate::metrics`].

mod redact;
mod server;
#[cfg(test)]
mod tests;

pub use redact::redact;
pub use server::{CONTENT_TYPE, MetricsServer, ServerConfig, serve};

use prometheus::{Encoder, Registry, TextEncoder};

/// A registry in the prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec fails only for a metric family without metrics of a
    // known type, which the registry never yields; an empty scrape is then shown.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
