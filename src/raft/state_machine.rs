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
//! Building a snapshot is a checkpoint: it waits until the apply thread has committed
//! everything through the snapshot's log id, then forces LMDB's unsynced pages and meta page to
//! disk, so the state at the snapshot's log id is durable and the log before it may be purged.
//! It records only the snapshot's meta (a small file): copying the environment at every
//! checkpoint would cost a full copy a second under writes.
//!
//! The data goes to another node only when one needs it (a follower or a new node behind the
//! purged log): `get_current_snapshot` then makes a consistent copy of the LMDB environment
//! (`store::install`) and describes it by the applied state read from the copy, which may be
//! later than the last checkpoint (never earlier: the checkpoint's state is committed), so the
//! log after it is still there. openraft streams the file in chunks of
//! [`SNAPSHOT_CHUNK_BYTES`]; the receiver writes them to a file of its own, and installing it
//! replaces the store's contents on the apply thread.

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
/// The copy of the environment being sent to another node, beside the log.
const OUTGOING_DIR: &str = "snapshot-out";
/// A snapshot being received from the leader, beside the log.
const INCOMING_DIR: &str = "snapshot-in";
/// What a built checkpoint hands openraft as its data (openraft keeps only the meta).
const PLACEHOLDER_FILE: &str = "raft-snapshot.none";
/// The largest chunk of a snapshot one InstallSnapshot call carries (openraft's
/// `snapshot_max_chunk_size`); JSON frames encode each byte as up to four characters, so a
/// chunk stays far below the frame limit.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;

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
    /// openraft asks for the current snapshot once at start-up, for its meta alone
    /// (`storage::helper`): that call gets the checkpoint record, not a copy of the store.
    started: bool,
    /// Copies made for other nodes by this process (names their directories).
    copies: u64,
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
        // Copies an earlier process was sending or receiving when it stopped: a transfer
        // starts over from the beginning.
        for leftover in [OUTGOING_DIR, INCOMING_DIR] {
            let _ = std::fs::remove_dir_all(dir.join(leftover));
        }
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
            started: false,
            copies: 0,
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
                install: None,
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let dir = self.dir.join(INCOMING_DIR);
        let open = || -> std::io::Result<std::fs::File> {
            std::fs::create_dir_all(&dir)?;
            let _ = std::fs::remove_file(dir.join("lock.mdb"));
            std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(crate::store::install::DATA_FILE))
        };
        let file = open().map_err(|e| sm_error(ErrorVerb::Write, e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        snapshot
            .sync_all()
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        drop(snapshot);
        let installed = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let applied_state =
            serde_json::to_vec(&installed).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let index = meta.last_log_id.map_or(0, |id| id.index);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            index,
            "installing a snapshot of the state machine from the leader"
        );
        self.applier
            .install(self.dir.join(INCOMING_DIR), index, applied_state)
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        self.applied = installed;
        crate::metrics::metrics()
            .raft_snapshots_installed
            .with_label_values(&[self.applier.store_name()])
            .inc();
        // Durable before the log behind it is purged, like a checkpoint.
        self.applier
            .sync_through(index)
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        write_record(&self.dir, meta).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let _ = std::fs::remove_dir_all(self.dir.join(INCOMING_DIR));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let at_startup = !std::mem::replace(&mut self.started, true);
        let checkpoint = match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let meta: SnapshotMeta<u64, openraft::BasicNode> =
                    serde_json::from_slice(&bytes).map_err(|e| sm_error(ErrorVerb::Read, e))?;
                meta
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(sm_error(ErrorVerb::Read, error)),
        };
        if at_startup {
            return Ok(Some(Snapshot {
                meta: checkpoint,
                snapshot: Box::new(
                    placeholder(&self.dir).map_err(|e| sm_error(ErrorVerb::Read, e))?,
                ),
            }));
        }
        // A copy for another node, in a directory of its own: each follower that needs one
        // streams its own copy, and the copy is unlinked once open (the open file keeps it
        // until the transfer drops it), so nothing is left on disk after a transfer.
        self.copies += 1;
        let dir = self.dir.join(OUTGOING_DIR).join(self.copies.to_string());
        let applier = self.applier.clone();
        let copy_dir = dir.clone();
        let applied = tokio::task::spawn_blocking(move || applier.copy_to(&copy_dir))
            .await
            .map_err(|e| sm_error(ErrorVerb::Read, e))?
            .map_err(|e| sm_error(ErrorVerb::Read, e))?;
        let applied: AppliedState = match applied {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| sm_error(ErrorVerb::Read, e))?
            }
            None => AppliedState::default(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id: snapshot_id(applied.last_applied),
        };
        tracing::info!(snapshot = %meta.snapshot_id, "copied the state machine for a follower");
        crate::metrics::metrics()
            .raft_snapshots_sent
            .with_label_values(&[self.applier.store_name()])
            .inc();
        let file = tokio::fs::File::open(dir.join(crate::store::install::DATA_FILE))
            .await
            .map_err(|e| sm_error(ErrorVerb::Read, e))?;
        std::fs::remove_dir_all(&dir).map_err(|e| sm_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

fn snapshot_id(last_applied: Option<LogId>) -> String {
    match last_applied {
        Some(id) => format!("{}-{}", id.leader_id.term, id.index),
        None => "empty".to_owned(),
    }
}

/// An empty file standing for a checkpoint's data (openraft reads only its meta).
fn placeholder(dir: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(PLACEHOLDER_FILE))?;
    Ok(tokio::fs::File::from_std(file))
}

/// Writes the checkpoint record durably (temp file, fsync, rename, directory fsync).
fn write_record(
    dir: &std::path::Path,
    meta: &SnapshotMeta<u64, openraft::BasicNode>,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let temp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let file = std::fs::File::create(&temp)?;
    std::io::Write::write_all(&mut &file, &bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(SNAPSHOT_FILE))?;
    sync_dir(dir)
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
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id: snapshot_id(self.applied.last_applied),
        };
        write_record(&self.dir, &meta).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let data = placeholder(&self.dir).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}
