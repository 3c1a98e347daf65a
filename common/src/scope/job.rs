//! The scope a job carries: the coordinator's policy and its targets' asset facts,
//! which the worker applies again before any probe.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{ScopePolicy, SkipReason};
use crate::address;
use crate::types::{Asset, Target};

/// The scope a coordinator applied, carried in the signed job so that the worker
/// applies the same rules again before any probe (defence in depth against a
/// planner bug): the whole policy, and for each target's asset what the rules
/// need to know of it (type, account, region, VPC, state, the tags the rules name,
/// public addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobScope {
    pub policy: ScopePolicy,
    /// By asset id ([`Target::asset_id`]).
    #[serde(default)]
    pub assets: BTreeMap<String, AssetFacts>,
}

/// What scope needs to know of an asset, as a job carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only the tags whose keys the policy's tag rules name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "address::deserialize_canonical_vec"
    )]
    pub public_ips: Vec<IpAddr>,
}

impl JobScope {
    /// The job scope of `targets` under `policy`, with the facts of their assets
    /// (`asset` finds an asset by id; see [`JobScope::index`]).
    pub fn of<'a>(
        policy: &ScopePolicy,
        targets: &[Target],
        asset: impl Fn(&str) -> Option<&'a Asset>,
    ) -> Self {
        let keys: BTreeSet<&str> = policy
            .include_tags
            .iter()
            .chain(&policy.exclude_tags)
            .map(|r| r.key.as_str())
            .collect();
        let mut facts = BTreeMap::new();
        for t in targets {
            if facts.contains_key(&t.asset_id) {
                continue;
            }
            let Some(a) = asset(&t.asset_id) else {
                continue;
            };
            let f = AssetFacts {
                instance_type: a.instance_type.clone(),
                account_id: a.account_id.clone(),
                region: a.region.clone(),
                vpc_id: a.vpc_id.clone(),
                state: a.state.clone(),
                tags: a
                    .tags
                    .iter()
                    .filter(|(k, _)| keys.contains(k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                public_ips: a.public_ips.clone(),
            };
            facts.insert(t.asset_id.clone(), f);
        }
        JobScope {
            policy: policy.clone(),
            assets: facts,
        }
    }

    /// Assets by id, for [`JobScope::of`].
    pub fn index(assets: &[Asset]) -> HashMap<&str, &Asset> {
        assets.iter().map(|a| (a.id.as_str(), a)).collect()
    }

    /// Decide one target of the job as the coordinator should have: `None` when
    /// in scope. A target whose asset the job does not describe is judged as a
    /// hand-typed address (so `discovered_only` refuses it). The fixed
    /// [`PROHIBITED_INSTANCE_TYPES`] hold whatever the policy says.
    pub fn check(&self, target: &Target) -> Option<SkipReason> {
        let asset = self.asset_of(target);
        self.policy
            .check_asset(&asset)
            .or_else(|| self.policy.check_address(&asset, target.ip))
    }

    /// The asset of `target` rebuilt from the job's facts.
    pub fn asset_of(&self, target: &Target) -> Asset {
        let mut asset = Asset::from_ip(target.ip);
        asset.id = target.asset_id.clone();
        if let Some(f) = self.assets.get(&target.asset_id) {
            asset.instance_type = f.instance_type.clone();
            asset.account_id = f.account_id.clone();
            asset.region = f.region.clone();
            asset.vpc_id = f.vpc_id.clone();
            asset.state = f.state.clone();
            asset.tags = f.tags.clone();
            asset.public_ips = f.public_ips.clone();
        }
        asset
    }
}
