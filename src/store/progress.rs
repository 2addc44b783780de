//! How far the apply thread has got, and who waits for which entry's outcome.
//!
//! An append is acknowledged once its log entry is durable (the Raft log's fdatasync) and the
//! apply thread has worked out what it did, inside a write transaction that is not committed
//! yet. LMDB's own commit (and its fdatasync) then runs while the next entries are written to
//! the log, instead of before the reply. So a reply can reach a client before its write is
//! visible to LMDB readers; [`ApplyProgress`] closes that gap: every read first waits until
//! everything applied when the read began is committed ([`ApplyProgress::wait_visible`]). A
//! client that was answered, and anyone it told, therefore reads its write (reads stay
//! linearizable), at the cost of a read waiting for at most one commit while writes run.
//!
//! Positions are Raft log indexes: `applied` is the last index applied inside the open
//! transaction, `visible` the last one committed. Both only grow.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};

use crate::store::writer::WriteResult;
use crate::store::{Outcome, Rejection, StoreError};

/// What each command of one log entry did, in order.
pub type EntryOutcomes = Vec<Result<Outcome, Rejection>>;

/// Longest a read waits for the commit it must see. A commit takes one fdatasync; far longer
/// means the disk is failing, and the read answers `storage_error` rather than hang.
pub const VISIBLE_WAIT_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Default)]
struct Marks {
    applied: u64,
    visible: u64,
    failed: Option<String>,
}

/// The apply thread's progress (see the module doc).
#[derive(Debug)]
pub struct ApplyProgress {
    marks: Mutex<Marks>,
    committed: Condvar,
    /// The same failure, for tasks that watch for it (the node stops the server).
    failure: watch::Sender<Option<String>>,
    /// `visible`, for tasks that wait for it.
    visible: watch::Sender<u64>,
    /// A reader waits for the open transaction: the apply thread commits it now instead of
    /// at its deadline.
    commit_wanted: Notify,
}

impl ApplyProgress {
    /// Starts at `index`, the last log index the store already holds.
    pub fn new(index: u64) -> ApplyProgress {
        ApplyProgress {
            marks: Mutex::new(Marks {
                applied: index,
                visible: index,
                failed: None,
            }),
            committed: Condvar::new(),
            failure: watch::channel(None).0,
            visible: watch::channel(index).0,
            commit_wanted: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().expect("apply progress mutex")
    }

    /// The store holds everything through `index` already (start-up, before any apply).
    pub(crate) fn resume_at(&self, index: u64) {
        let mut marks = self.lock();
        assert!(
            marks.applied == marks.visible,
            "resumed while a round is open"
        );
        if index > marks.visible {
            marks.applied = index;
            marks.visible = index;
            drop(marks);
            self.visible.send_replace(index);
        }
    }

    /// Entries through `index` are applied in the open transaction; called before any of
    /// their outcomes is sent.
    pub(crate) fn set_applied(&self, index: u64) {
        let mut marks = self.lock();
        assert!(index >= marks.applied, "applied index goes back");
        marks.applied = index;
    }

    /// The transaction holding entries through `index` is committed.
    pub(crate) fn set_visible(&self, index: u64) {
        let mut marks = self.lock();
        assert!(
            index >= marks.visible && index <= marks.applied,
            "visible index out of order"
        );
        marks.visible = index;
        drop(marks);
        self.committed.notify_all();
        self.visible.send_replace(index);
    }

    /// The apply thread cannot go on: every waiting and future read fails with `reason`.
    pub(crate) fn fail(&self, reason: String) {
        self.lock().failed.get_or_insert(reason.clone());
        self.committed.notify_all();
        self.failure.send_replace(Some(reason));
    }

    /// Why the apply thread stopped, if it did.
    pub fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Resolves with the reason once the apply thread has failed.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }

    /// Resolves when a reader asks for the open transaction to be committed.
    pub(crate) async fn commit_requested(&self) {
        self.commit_wanted.notified().await;
    }

    /// The last index committed to LMDB.
    pub fn visible(&self) -> u64 {
        self.lock().visible
    }

    /// Blocks until everything applied now is committed (a read's barrier). Blocking, for
    /// the threads reads run on; waits at most [`VISIBLE_WAIT_TIMEOUT_MS`].
    pub fn wait_visible(&self) -> Result<(), StoreError> {
        let marks = self.lock();
        let needed = marks.applied;
        if marks.visible >= needed {
            return Ok(());
        }
        self.commit_wanted.notify_one();
        let (marks, timeout) = self
            .committed
            .wait_timeout_while(
                marks,
                Duration::from_millis(VISIBLE_WAIT_TIMEOUT_MS),
                |marks| marks.visible < needed && marks.failed.is_none(),
            )
            .expect("apply progress mutex");
        if let Some(reason) = &marks.failed {
            return Err(StoreError::Storage(format!(
                "the store stopped applying writes: {reason}"
            )));
        }
        if timeout.timed_out() {
            return Err(StoreError::Storage(format!(
                "a commit of the store did not finish within {VISIBLE_WAIT_TIMEOUT_MS} ms"
            )));
        }
        Ok(())
    }

    /// Waits (asynchronously) until everything applied now is committed: the async form of
    /// a read's barrier, for readers of the head.
    pub async fn settled(&self) -> Result<(), StoreError> {
        let needed = self.lock().applied;
        self.wait_committed(needed).await
    }

    /// Waits (asynchronously) until `index` is committed: start-up waits so for the log's
    /// replay, and a checkpoint for what it is about to make durable.
    pub async fn wait_committed(&self, index: u64) -> Result<(), StoreError> {
        let mut visible = self.visible.subscribe();
        let mut failure = self.failure.subscribe();
        if *visible.borrow() < index {
            self.commit_wanted.notify_one();
        }
        let wait = async {
            tokio::select! {
                reached = visible.wait_for(|&visible| visible >= index) => {
                    reached.map(|_| ()).map_err(|_| StoreError::ShuttingDown)
                }
                failed = failure.wait_for(Option::is_some) => Err(StoreError::Storage(
                    failed.ok().and_then(|f| f.clone()).unwrap_or_default(),
                )),
            }
        };
        tokio::time::timeout(Duration::from_millis(VISIBLE_WAIT_TIMEOUT_MS), wait)
            .await
            .map_err(|_| {
                StoreError::Storage(format!(
                    "log index {index} was not committed to the store within \
                     {VISIBLE_WAIT_TIMEOUT_MS} ms"
                ))
            })?
    }
}

/// Identifies one proposal of one proposer: `origin` is drawn at random when the proposer
/// starts, so an entry proposed before a restart (replayed from the log) or by another node
/// never completes a waiter of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProposalId {
    pub origin: u64,
    pub seq: u64,
}

/// The submitters of one proposal's commands, in command order: each gets its own outcome.
/// A submitter's budget permit is held until it has been answered.
pub type Submitters = Vec<(
    oneshot::Sender<WriteResult>,
    tokio::sync::OwnedSemaphorePermit,
)>;

/// Proposals waiting for their outcomes, by id. The proposer registers one, with its commands'
/// submitters, before proposing; the apply thread answers each submitter directly once the
/// entry is applied (no hop through the proposer: one wake-up fewer on every append's path).
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<ProposalId, Submitters>>,
}

impl Waiters {
    pub fn register(&self, id: ProposalId, submitters: Submitters) {
        let previous = self
            .waiting
            .lock()
            .expect("waiters mutex")
            .insert(id, submitters);
        assert!(previous.is_none(), "proposal id registered twice");
    }

    /// Takes back the submitters of a proposal that will not be applied here (its proposing
    /// failed), or `None` when the apply thread already answered them.
    pub fn cancel(&self, id: ProposalId) -> Option<Submitters> {
        self.waiting.lock().expect("waiters mutex").remove(&id)
    }

    pub(crate) fn complete(&self, id: ProposalId, outcomes: EntryOutcomes) {
        let submitters = self.waiting.lock().expect("waiters mutex").remove(&id);
        if let Some(submitters) = submitters {
            assert_eq!(outcomes.len(), submitters.len(), "one outcome per command");
            for ((reply, _budget), outcome) in submitters.into_iter().zip(outcomes) {
                // A dropped receiver means the client went away; its write still stands.
                let _ = reply.send(outcome.map_err(StoreError::from));
            }
        }
    }

    /// Answers every waiting submitter that the store is stopping.
    pub(crate) fn clear(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("waiters mutex"));
        for (reply, _budget) in waiting.into_values().flatten() {
            let _ = reply.send(Err(StoreError::ShuttingDown));
        }
    }
}
