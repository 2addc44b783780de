//! The Raft layer: every write of a store goes through its own openraft group, whose log is the
//! write-ahead log, and is applied to the store (LMDB) behind it.
//!
//! server → raft → store: the server submits commands with `Store::submit`; the [`proposer`]
//! drains that queue into log entries; openraft writes them to the [`log_store`] (segment
//! files, [`segments`]: one fdatasync per entry) and, once committed, hands them to the
//! [`state_machine`], which applies them with the store's deterministic `apply`. A single
//! server is a one-member group that initializes itself ([`node`]); on a cluster node the
//! [`network`] reaches the peers over the inter-node port (`crate::cluster`). A snapshot is a
//! checkpoint, and a copy of the store for a node behind the purged log ([`state_machine`]).
//!
//! - [`types`]: the openraft type configuration.
//! - [`node`]: starting a store's group, its status (`INFO`, `STATS`), shutdown.
//! - [`observe`]: the group's metrics on `/metrics` and its `cluster.leader.elected` events.
//! - [`log_check`]: the read-only check of a log's segments, for `esdb verify`.
//! - [`scavenger`]: the job that proposes a running scavenge's slices while this node leads.

pub mod log_check;
pub mod log_store;
pub mod network;
pub mod node;
pub mod observe;
pub mod proposer;
pub mod scavenger;
pub mod segments;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod conformance_tests;

pub use node::{Node, RaftStatus};
