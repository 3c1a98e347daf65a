//! `scanfleet queues init|dead-letters`: the broker's layout, owned by the
//! coordinator side (workers never declare it).

use scanfleet_common::JobEnvelope;
use scanfleet_common::config::Sources;
use scanfleet_common::config::args::check_zone;
use scanfleet_common::queue::Topology;

use crate::backends;
use crate::cli::{QueuesAction, QueuesArgs};
use crate::error::CliError;

/// `scanfleet queues init|dead-letters`.
///
/// # Errors
/// Bad flags are bad input (exit 2, before connecting); broker trouble is a runtime failure.
pub async fn queues(args: QueuesArgs, src: &Sources) -> Result<(), CliError> {
    match args.action {
        QueuesAction::Init {
            queue,
            delivery_limit,
            zones,
        } => {
            let url = queue.require(src)?;
            let limit = delivery_limit.resolve(src)?;
            for z in &zones {
                check_zone(z, "--zone")?;
            }
            let q = backends::queue(&url.value).await?;
            q.admin
                .init(&zones, &Topology::with_delivery_limit(limit))
                .await
                .map_err(|e| {
                    CliError::Runtime(anyhow::Error::new(e).context("declaring the queues"))
                })?;
            eprintln!(
                "scanfleet: queues ready for zone(s) {} (delivery limit {limit})",
                zones.join(", ")
            );
            Ok(())
        }
        QueuesAction::DeadLetters { queue, max } => {
            let url = queue.require(src)?;
            let q = backends::queue(&url.value).await?;
            let dead = q.admin.take_dead_letters(max).await.map_err(|e| {
                CliError::Runtime(anyhow::Error::new(e).context("reading the dead-letter queue"))
            })?;
            for d in dead {
                let env = JobEnvelope::from_bytes(&d.payload).ok();
                println!(
                    "{}",
                    serde_json::json!({
                        "zone": d.zone,
                        "reason": d.reason,
                        "scan_id": env.as_ref().map(|e| e.scan_id.clone()),
                        "shard_id": env.as_ref().map(|e| e.shard_id),
                        "bytes": d.payload.len(),
                    })
                );
            }
            Ok(())
        }
    }
}
