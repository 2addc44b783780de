//! The apply thread: the only place that opens write transactions.
//!
//! Writes reach the store already ordered and durable in the Raft log (`crate::raft`); the
//! state machine hands each run of committed entries here as one [`ApplyJob`] and returns at
//! once. LMDB allows one writer at a time and a write transaction must commit on the thread
//! that began it, so one dedicated OS thread takes every job queued (a round), applies them in
//! one transaction with the Raft applied state, and then, in this order:
//! 1. marks them applied ([`ApplyProgress`]) and sends each proposal its outcomes: the entry is
//!    durable in the log and its effect is decided, so the client may be answered;
//! 2. commits (LMDB's fdatasync runs while the proposer's next entry is fsynced in the log);
//! 3. marks them visible (reads waiting on the barrier go on), moves the head and publishes
//!    the committed events (so a subscriber never reads past what LMDB holds).
//!
//! The commit does not need to be durable for an acknowledgement (the log is), so the
//! environment runs with `NO_META_SYNC`: one fdatasync of data pages per commit and the meta
//! page synced by the next one. That keeps LMDB's integrity on power loss (a commit is lost at
//! worst, and the log replays it), which `NO_SYNC` would not (see `Store::open`). A round that
//! fails to apply or commit stops the store for good ([`ApplyProgress::fail`]): the log holds
//! those entries, so they must never be answered as failed; a restart replays them.

use std::sync::Arc;
use std::time::Instant;

use heed::{Env, WithoutTls};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::metrics::StoreMetrics;
use crate::store::command::{apply, Command, Outcome};
use crate::store::committed::CommittedBatch;
use crate::store::progress::{ApplyProgress, EntryOutcomes, ProposalId, Waiters};
use crate::store::schema::{Databases, META_NEXT_POSITION, RAFT_APPLIED};
use crate::store::{Rejection, StoreError};

/// Most commands one proposal (one log entry) carries: bounds the latency a batch adds to its
/// last member.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Most payload bytes in one proposal.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Depth of the queue in front of the proposer. When full, submitters wait: backpressure to the
/// connections instead of unbounded memory.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Apply jobs queued for the apply thread (one job per openraft `apply` call).
const APPLY_QUEUE_CAPACITY: usize = 64;
/// Most commands one round (one LMDB transaction) applies: bounds the transaction's dirty
/// pages and how long the round's last reader waits.
pub const MAX_COMMANDS_PER_ROUND: usize = 8 * MAX_BATCH_COMMANDS;

pub type WriteResult = Result<Outcome, StoreError>;

/// One command waiting for the proposer, with where its outcome goes.
pub struct WriteRequest {
    pub command: Command,
    pub reply: oneshot::Sender<WriteResult>,
    /// The command's share of [`MAX_QUEUED_WRITE_BYTES`], given back when the request is done.
    pub _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Payload bytes of all commands queued for or inside the write path, per store. The queue
/// depth alone would allow `WRITE_QUEUE_CAPACITY` × 1 MiB; this caps the memory writes can pin,
/// and submitters wait (backpressure) when it is reached.
pub const MAX_QUEUED_WRITE_BYTES: usize = 256 * 1024 * 1024;

/// One committed log entry: its index, who proposed it (to send its outcomes to, if that
/// proposer is this process), and its commands.
pub struct JobEntry {
    pub index: u64,
    pub proposal: Option<ProposalId>,
    pub commands: Arc<[Command]>,
}

/// Committed log entries, in log order. An entry with no commands (a blank or a membership
/// entry) only moves the applied state.
pub struct ApplyJob {
    pub entries: Vec<JobEntry>,
    /// Stored under [`RAFT_APPLIED`] in the same transaction.
    pub applied_state: Vec<u8>,
}

pub(crate) fn channel() -> (mpsc::Sender<ApplyJob>, mpsc::Receiver<ApplyJob>) {
    mpsc::channel(APPLY_QUEUE_CAPACITY)
}

/// What the apply thread works with.
pub(crate) struct Applying {
    pub env: Env<WithoutTls>,
    pub dbs: Databases,
    pub progress: Arc<ApplyProgress>,
    pub waiters: Arc<Waiters>,
    pub head: watch::Sender<u64>,
    pub published: broadcast::Sender<Arc<CommittedBatch>>,
    pub metrics: Arc<StoreMetrics>,
}

/// Runs until every sender of `jobs` is dropped, then returns.
pub(crate) fn run(applying: Applying, mut jobs: mpsc::Receiver<ApplyJob>) {
    while let Some(first) = jobs.blocking_recv() {
        let round = drain(first, &mut jobs);
        if applying.progress.failed().is_some() {
            // Stopped: the entries stay in the log for the next start.
            applying.waiters.clear();
            continue;
        }
        if let Err(error) = apply_round(&applying, &round) {
            tracing::error!(%error, jobs = round.len(), "applying committed entries failed; the store stops");
            applying.progress.fail(error.to_string());
            applying.waiters.clear();
        }
    }
}

/// The first job and every one queued behind it, within [`MAX_COMMANDS_PER_ROUND`].
fn drain(first: ApplyJob, jobs: &mut mpsc::Receiver<ApplyJob>) -> Vec<ApplyJob> {
    let commands = |job: &ApplyJob| job.entries.iter().map(|e| e.commands.len()).sum::<usize>();
    let mut total = commands(&first);
    let mut round = vec![first];
    while total < MAX_COMMANDS_PER_ROUND {
        match jobs.try_recv() {
            Ok(job) => {
                total += commands(&job);
                round.push(job);
            }
            Err(_) => break,
        }
    }
    round
}

/// One round (see the module doc): apply, answer, commit, publish.
fn apply_round(applying: &Applying, round: &[ApplyJob]) -> Result<(), StoreError> {
    let started = Instant::now();
    let Applying { env, dbs, .. } = applying;
    let mut txn = env.write_txn()?;
    let mut answers: Vec<(ProposalId, EntryOutcomes)> = Vec::new();
    let mut events = Vec::new();
    let mut tally = Tally::default();
    let mut last_index = None;
    for job in round {
        for entry in &job.entries {
            assert!(
                last_index.is_none_or(|last| entry.index > last),
                "entries applied in log order"
            );
            last_index = Some(entry.index);
            let mut outcomes = Vec::with_capacity(entry.commands.len());
            for command in entry.commands.iter() {
                let outcome = apply(&mut txn, dbs, command, &mut events)?;
                tally.count(command, &outcome);
                outcomes.push(outcome);
            }
            if let Some(id) = entry.proposal {
                answers.push((id, outcomes));
            }
        }
    }
    let Some(last_index) = last_index else {
        return Ok(());
    };
    let last_job = round.last().expect("a round holds a job");
    dbs.raft
        .put(&mut txn, RAFT_APPLIED, &last_job.applied_state)?;
    let next_position = dbs.meta.get(&txn, META_NEXT_POSITION)?.unwrap_or(0);
    // Positions are gapless within the round: each event follows the one before it.
    assert!(
        events
            .windows(2)
            .all(|w| w[1].position == w[0].position + 1),
        "positions of one round are contiguous"
    );
    applying.progress.set_applied(last_index);
    for (id, outcomes) in answers {
        applying.waiters.complete(id, outcomes);
    }
    txn.commit()?;
    // The head moves before the reads waiting on the barrier go on (they may read the head)
    // and before the batch is published: an emitter that resubscribes and then reads the head
    // knows every batch it will not receive.
    applying.head.send_replace(next_position);
    applying.progress.set_visible(last_index);
    if !events.is_empty() {
        debug_assert_eq!(events.last().map(|e| e.position + 1), Some(next_position));
        // No receivers (no emitters) is fine: nothing subscribes.
        let _ = applying.published.send(Arc::new(CommittedBatch { events }));
    }
    tally.record(&applying.metrics, started, next_position);
    Ok(())
}

/// What one round did, for the store's metrics: a handful of atomic adds per round.
#[derive(Default)]
struct Tally {
    commands: u64,
    events: u64,
    bytes: u64,
    conflicts: u64,
}

impl Tally {
    fn count(&mut self, command: &Command, outcome: &Result<Outcome, Rejection>) {
        self.commands += 1;
        let Command::Append(_) = command else {
            return;
        };
        match outcome {
            Ok(Outcome::Appended { event_count, .. }) => {
                self.events += event_count;
                self.bytes += command.size_bytes() as u64;
            }
            Err(Rejection::WrongExpectedVersion { .. }) => self.conflicts += 1,
            _ => {}
        }
    }

    fn record(&self, metrics: &StoreMetrics, started: Instant, next_position: u64) {
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_commands.observe(self.commands as f64);
        metrics.batch_events.observe(self.events as f64);
        metrics.append_events.inc_by(self.events);
        metrics.append_bytes.inc_by(self.bytes);
        metrics.append_conflicts.inc_by(self.conflicts);
        metrics.last_position.set(next_position as i64 - 1);
    }
}
