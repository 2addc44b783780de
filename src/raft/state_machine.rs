//! openraft's state machine over the store's deterministic `apply`.
//!
//! Each `apply` call hands every committed entry it receives to the store's apply thread as one
//! job: one LMDB transaction (one fdatasync) for however many entries openraft committed since
//! the last call, with the last applied log id and the membership written in the same
//! transaction. So after a crash the store knows exactly which entries it holds, and openraft
//! replays the rest of the log onto it.
//!
//! A snapshot here is a checkpoint: building one forces LMDB's unsynced meta page to disk, so
//! the state at or after the snapshot's log id is durable and the log before it may be purged.
//! Sending a copy of the environment to another node (and installing one) belongs to clusters
//! (issue 11); until then installing refuses loudly.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::raft::segments::sync_dir;
use crate::raft::types::{
    Entry, LogId, ProposalResult, StorageError, StoredMembership, TypeConfig,
};
use crate::store::{Applier, Command};

/// The checkpoint record, beside the log.
const SNAPSHOT_FILE: &str = "raft-snapshot.json";

/// What the store keeps for Raft in the same transaction as the data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

pub struct StateMachine {
    applier: Applier,
    applied: AppliedState,
    /// Where the checkpoint record is kept (the log directory).
    dir: PathBuf,
}

fn sm_error(verb: ErrorVerb, error: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(error.to_string()),
    )
}

impl StateMachine {
    /// Opens over the store's applier, reading what it last applied.
    pub fn open(applier: Applier, dir: PathBuf) -> Result<StateMachine, String> {
        let applied = match applier.applied_state().map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the store's raft applied state: {e}"))?,
            None => AppliedState::default(),
        };
        Ok(StateMachine {
            applier,
            applied,
            dir,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Checkpointer;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut job: Vec<Arc<[Command]>> = Vec::new();
        let mut next = self.applied.clone();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(proposal) => job.push(Arc::from(proposal.commands)),
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    job.push(Arc::from(Vec::new()));
                }
                EntryPayload::Blank => job.push(Arc::from(Vec::new())),
            }
        }
        if job.is_empty() {
            return Ok(Vec::new());
        }
        let state = serde_json::to_vec(&next).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        // A committed entry whose apply fails stops the node (openraft treats a storage error
        // as fatal): the log holds the write, so it must never be answered as failed.
        let outcomes = self
            .applier
            .apply(job, state)
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        self.applied = next;
        Ok(outcomes
            .into_iter()
            .map(|outcomes| ProposalResult { outcomes })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Checkpointer {
            applier: self.applier.clone(),
            applied: self.applied.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, openraft::BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(sm_error(
            ErrorVerb::Write,
            "installing a state-machine snapshot from another node is not supported before \
             clusters (issue 11)",
        ))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let meta: SnapshotMeta<u64, openraft::BasicNode> =
                    serde_json::from_slice(&bytes).map_err(|e| sm_error(ErrorVerb::Read, e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(Vec::new())),
                }))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(sm_error(ErrorVerb::Read, error)),
        }
    }
}

/// Builds checkpoints (see the module doc).
pub struct Checkpointer {
    applier: Applier,
    applied: AppliedState,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Checkpointer {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let applier = self.applier.clone();
        // Everything applied so far (at least `self.applied`) becomes durable.
        tokio::task::spawn_blocking(move || applier.sync())
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let snapshot_id = match self.applied.last_applied {
            Some(id) => format!("{}-{}", id.leader_id.term, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id,
        };
        let bytes = serde_json::to_vec(&meta).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let temp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut &file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, self.dir.join(SNAPSHOT_FILE))?;
            sync_dir(&self.dir)
        };
        write().map_err(|e| sm_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}
