//! The openraft type configuration of a store's Raft group.
//!
//! One store is one Raft group (the seed runs one Ra cluster per store). A log entry's payload
//! is a [`Proposal`]: every command the proposer drained from the store's queue while the
//! previous entry was being written, so one entry (one fsync) serves many appends.
//!
//! openraft's response to a `client_write` is `()`: it comes once the entry is committed and
//! queued for the apply thread. What each command did reaches its proposer through the store's
//! [`Waiters`](crate::store::Waiters), as soon as the apply thread has decided it, without
//! waiting for LMDB's commit (see `store::writer`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Command, ProposalId};

/// The commands of one log entry, applied in order in one LMDB transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proposal {
    /// Who waits for the outcomes; `None` for entries nobody waits for (tests).
    pub id: Option<ProposalId>,
    /// Shared, so the log's cache of recent entries and the apply job hold them without copies.
    pub commands: Arc<[Command]>,
}

openraft::declare_raft_types!(
    /// The type configuration of every esdb Raft group.
    pub TypeConfig:
        D = Proposal,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type Raft = openraft::Raft<TypeConfig>;
