//! The openraft type configuration of a store's Raft group.
//!
//! One store is one Raft group (the seed runs one Ra cluster per store). A log entry's payload
//! is a [`Proposal`]: every command the proposer drained from the store's queue while the
//! previous entry was being written, so one entry (one fsync) serves many appends.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::store::{Command, Outcome, Rejection};

/// The commands of one log entry, applied in order in one LMDB transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proposal {
    pub commands: Vec<Command>,
}

/// What each command of a [`Proposal`] did, in the same order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProposalResult {
    pub outcomes: Vec<Result<Outcome, Rejection>>,
}

openraft::declare_raft_types!(
    /// The type configuration of every esdb Raft group.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type Raft = openraft::Raft<TypeConfig>;
