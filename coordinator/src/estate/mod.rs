//! The estate: reasoning about what discovery found, with no AWS call in it.
//!
//! [`network`] is the model (instances, VPCs, peerings, subnets, route tables,
//! ACLs, security groups, Elastic IPs); [`assets`] turns instances into the
//! assets scope and the planner read; [`reachability`] decides which ports the
//! internet can reach; [`zones`] groups peered VPCs into the network zones the
//! planner shards by. Everything here is a pure function of the model, so tests
//! build estates by hand (`testing` in unit tests); nothing here imports
//! discovery.

pub mod assets;
pub mod network;
pub mod reachability;
#[cfg(test)]
pub(crate) mod testing;
pub mod zones;
