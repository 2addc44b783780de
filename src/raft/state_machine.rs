//! openraft's state machine over the store's deterministic `apply`.
//!
//! Each `apply` call queues every committed entry it receives for the store's apply thread as
//! one job and returns: the thread applies whatever jobs are queued in one LMDB transaction,
//! with the last applied log id and the membership written in the same transaction, and sends
//! each proposal's outcomes to its waiter. So after a crash the store knows exactly which
//! entries it holds, and openraft replays the rest of the log onto it. openraft's own
//! `last_applied` therefore runs ahead of LMDB's commit by the jobs queued; nothing relies on
//! it but the checkpoint below, which waits for the commit first.
//!
//! A snapshot here is a checkpoint: building one waits until the apply thread has committed
//! everything through the snapshot's log id, then forces LMDB's unsynced pages and meta page to
//! disk, so the state at the snapshot's log id is durable and the log before it may be purged.
//! Sending a copy of the environment to another node (and installing one) belongs to clusters
//! (issue 11); until then installing refuses loudly.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::raft::segments::sync_dir;
use crate::raft::types::{Entry, LogId, StorageError, StoredMembership, TypeConfig};
use crate::store::{Applier, ApplyJob, JobEntry};

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
        if let Some(applied) = applied.last_applied {
            applier.resume_at(applied.index);
        }
        Ok(StateMachine {
            applier,
            applied,
            dir,
        })
    }

    /// The last log id the store has applied.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.last_applied
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Checkpointer;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut job = Vec::new();
        let mut next = self.applied.clone();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            let (proposal, commands) = match entry.payload {
                EntryPayload::Normal(proposal) => (proposal.id, proposal.commands),
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    (None, Arc::from(Vec::new()))
                }
                EntryPayload::Blank => (None, Arc::from(Vec::new())),
            };
            job.push(JobEntry {
                index: entry.log_id.index,
                proposal,
                commands,
            });
        }
        if job.is_empty() {
            return Ok(Vec::new());
        }
        let responses = vec![(); job.len()];
        let applied_state = serde_json::to_vec(&next).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        // A committed entry whose apply fails stops the node (openraft treats a storage error
        // as fatal): the log holds the write, so it must never be answered as failed.
        self.applier
            .enqueue(ApplyJob {
                entries: job,
                applied_state,
            })
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        self.applied = next;
        Ok(responses)
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
        // Everything through `self.applied` becomes durable (it may still be queued for the
        // apply thread: `sync_through` waits for its commit).
        if let Some(applied) = self.applied.last_applied {
            self.applier
                .sync_through(applied.index)
                .await
                .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        }
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
