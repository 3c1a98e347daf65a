//! DescribeInstanceTypes: the network performance of each instance type the
//! walk found, which the rate policy derives each target's budget from
//! ([`scanfleet_common::rate`]). Asked once per type and region for the whole
//! discovery (every account shares the answer: instance types are the same in
//! every account of a region), and cached in the inventory on each instance.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_ec2::types::InstanceTypeInfo;
use scanfleet_common::rate::InstanceNetwork;
use tokio::sync::Mutex;

use super::calls::failure;
use crate::discovery::Failure;
use crate::estate::network::{Instance, Location};

/// DescribeInstanceTypes takes at most 100 types per call.
const TYPE_BATCH: usize = 100;

/// What each region's DescribeInstanceTypes answered, by type; `None` for a
/// type the API did not describe. One lock per region, held across its call,
/// so that two accounts walking the same region ask once.
#[derive(Debug, Default)]
pub(super) struct TypeCache {
    regions: Mutex<HashMap<String, Arc<Mutex<RegionTypes>>>>,
}

/// One region's answers: type -> its network, `None` when not described.
type RegionTypes = HashMap<String, Option<InstanceNetwork>>;

/// The default network card's figures of one type, in Mbit/s.
fn network_of(t: &InstanceTypeInfo) -> Option<InstanceNetwork> {
    let net = t.network_info()?;
    let idx = net.default_network_card_index().unwrap_or(0);
    let card = net
        .network_cards()
        .iter()
        .find(|c| c.network_card_index().unwrap_or(0) == idx)
        .or_else(|| net.network_cards().first())?;
    let baseline = card.baseline_bandwidth_in_gbps()?;
    let peak = card.peak_bandwidth_in_gbps().unwrap_or(baseline);
    let mbps = |g: f64| (g * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
    Some(InstanceNetwork {
        baseline_mbps: mbps(baseline),
        peak_mbps: mbps(peak),
        performance: net
            .network_performance()
            .or(card.network_performance())
            .unwrap_or_default()
            .to_string(),
    })
}

impl TypeCache {
    /// Set `network` on every instance from its type's description, calling
    /// DescribeInstanceTypes for the types this region has not been asked about.
    ///
    /// # Errors
    /// The [`Failure`] of the call; the instances keep `network: None` and the
    /// rate policy falls back to the shipped table.
    pub(super) async fn annotate(
        &self,
        ec2: &aws_sdk_ec2::Client,
        at: &Location,
        instances: &mut [Instance],
    ) -> Result<(), Failure> {
        let region = self
            .regions
            .lock()
            .await
            .entry(at.region.clone())
            .or_default()
            .clone();
        let mut known = region.lock().await;
        let wanted: BTreeSet<String> = instances
            .iter()
            .filter_map(|i| i.instance_type.clone())
            .filter(|t| !known.contains_key(t))
            .collect();
        let wanted: Vec<String> = wanted.into_iter().collect();
        let mut result = Ok(());
        for chunk in wanted.chunks(TYPE_BATCH) {
            let types = chunk
                .iter()
                .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                .collect();
            let mut pages = ec2
                .describe_instance_types()
                .set_instance_types(Some(types))
                .into_paginator()
                .send();
            let mut answered = true;
            while let Some(p) = pages.next().await {
                match p {
                    Ok(p) => {
                        for t in p.instance_types() {
                            if let Some(ty) = t.instance_type() {
                                known.insert(ty.as_str().to_string(), network_of(t));
                            }
                        }
                    }
                    Err(e) => {
                        result = Err(failure("ec2:DescribeInstanceTypes", &e, Some(at), None));
                        answered = false;
                        break;
                    }
                }
            }
            if answered {
                for t in chunk {
                    known.entry(t.clone()).or_insert(None);
                }
            }
        }
        for i in instances.iter_mut() {
            i.network = i
                .instance_type
                .as_ref()
                .and_then(|t| known.get(t).cloned().flatten());
        }
        result
    }
}
