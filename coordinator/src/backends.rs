//! From validated fleet settings to connected backends, for the commands that
//! talk to a fleet (`scan --queue`, `watch --queue`, `status`, `results`,
//! `queues`). URLs were checked when the settings were read; what fails here is
//! the connection, a runtime error.

use std::sync::Arc;

use anyhow::Context;
use scanfleet_common::backend::{self, QueueHandle, QueueOptions};
use scanfleet_common::queue::Topology;
use scanfleet_common::store::ResultStore;
use scanfleet_common::telemetry::redact;

use crate::config::FleetSettings;
use crate::error::CliError;
use crate::publish::Publisher;

/// Connect the queue a URL names.
///
/// # Errors
/// [`CliError::Runtime`] naming the queue (its password redacted).
pub async fn queue(url: &str) -> Result<QueueHandle, CliError> {
    backend::connect_queue(url, &QueueOptions::default())
        .await
        .with_context(|| format!("connecting to the queue {}", redact(url)))
        .map_err(CliError::Runtime)
}

/// Connect the Redis result store.
///
/// # Errors
/// [`CliError::Runtime`] naming the store (its password redacted).
pub async fn store(url: &str) -> Result<Arc<dyn ResultStore>, CliError> {
    let s = backend::connect_store(url)
        .await
        .with_context(|| format!("connecting to the result store {}", redact(url)))?;
    Ok(s)
}

/// A publisher onto the fleet's queue and store.
///
/// # Errors
/// As [`queue`] and [`store`].
pub async fn publisher(
    fleet: &FleetSettings,
    ttl: std::time::Duration,
) -> Result<Publisher, CliError> {
    let q = queue(&fleet.queue_url).await?;
    Ok(Publisher {
        queue: q.queue,
        admin: q.admin,
        store: store(&fleet.redis_url).await?,
        secret: Some(fleet.secret.clone()),
        ttl,
        topology: Topology::with_delivery_limit(fleet.delivery_limit),
    })
}
