//! The apply thread: the only place that opens write transactions.
//!
//! Writes reach the store already ordered and durable in the Raft log (`crate::raft`); the
//! state machine hands each run of committed entries here as one [`ApplyJob`]. LMDB allows one
//! writer at a time and a write transaction must commit on the thread that began it, so one
//! dedicated OS thread applies every job in one transaction, records the Raft applied state in
//! the same transaction, commits, then moves the head and publishes the committed events.
//!
//! The commit does not need to be durable for an acknowledgement (the log is), so the
//! environment runs with `NO_META_SYNC`: one fdatasync of data pages per commit and the meta
//! page synced by the next one. That keeps LMDB's integrity on power loss (a commit is lost at
//! worst, and the log replays it), which `NO_SYNC` would not (see `Store::open`).

use std::sync::Arc;
use std::time::Instant;

use heed::{Env, WithoutTls};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::metrics::StoreMetrics;
use crate::store::command::{apply, Command, Outcome};
use crate::store::committed::{CommittedBatch, CommittedEvent};
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
/// Apply jobs queued for the apply thread.
const APPLY_QUEUE_CAPACITY: usize = 64;

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

/// The outcome of each command of each entry of a job.
pub type JobOutcome = Result<Vec<Vec<Result<Outcome, Rejection>>>, StoreError>;

/// Committed log entries to apply in one transaction. An entry with no commands (a blank or a
/// membership entry) only moves the applied state.
pub struct ApplyJob {
    pub entries: Vec<Arc<[Command]>>,
    /// Stored under [`RAFT_APPLIED`] in the same transaction.
    pub applied_state: Vec<u8>,
    pub reply: oneshot::Sender<JobOutcome>,
}

pub(crate) fn channel() -> (mpsc::Sender<ApplyJob>, mpsc::Receiver<ApplyJob>) {
    mpsc::channel(APPLY_QUEUE_CAPACITY)
}

/// Runs until every sender of `jobs` is dropped, then returns.
pub fn run(
    env: Env<WithoutTls>,
    dbs: Databases,
    mut jobs: mpsc::Receiver<ApplyJob>,
    head: watch::Sender<u64>,
    published: broadcast::Sender<Arc<CommittedBatch>>,
    metrics: Arc<StoreMetrics>,
) {
    while let Some(job) = jobs.blocking_recv() {
        let started = Instant::now();
        match commit_job(&env, &dbs, &job) {
            Ok((outcomes, next_position, events)) => {
                // The head moves before the batch is published: an emitter that
                // resubscribes and then reads the head knows every batch it will not receive.
                head.send_replace(next_position);
                if !events.is_empty() {
                    debug_assert_eq!(events.last().map(|e| e.position + 1), Some(next_position));
                    // No receivers (no emitters) is fine: nothing subscribes.
                    let _ = published.send(Arc::new(CommittedBatch { events }));
                }
                record_job(&metrics, &job, &outcomes, started, next_position);
                let _ = job.reply.send(Ok(outcomes));
            }
            Err(error) => {
                tracing::error!(%error, entries = job.entries.len(), "applying committed entries failed");
                let _ = job.reply.send(Err(error));
            }
        }
    }
}

type CommitOutcome = (
    Vec<Vec<Result<Outcome, Rejection>>>,
    u64,
    Vec<CommittedEvent>,
);

/// Updates the store's metrics once per job: a handful of atomic adds, whatever its size.
fn record_job(
    metrics: &StoreMetrics,
    job: &ApplyJob,
    outcomes: &[Vec<Result<Outcome, Rejection>>],
    started: Instant,
    next_position: u64,
) {
    let (mut events, mut bytes, mut conflicts, mut commands) = (0u64, 0u64, 0u64, 0usize);
    for (entry, entry_outcomes) in job.entries.iter().zip(outcomes) {
        commands += entry.len();
        for (command, outcome) in entry.iter().zip(entry_outcomes) {
            let Command::Append(_) = command else {
                continue;
            };
            match outcome {
                Ok(Outcome::Appended { event_count, .. }) => {
                    events += event_count;
                    bytes += command.size_bytes() as u64;
                }
                Err(Rejection::WrongExpectedVersion { .. }) => conflicts += 1,
                _ => {}
            }
        }
    }
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_commands.observe(commands as f64);
    metrics.batch_events.observe(events as f64);
    metrics.append_events.inc_by(events);
    metrics.append_bytes.inc_by(bytes);
    metrics.append_conflicts.inc_by(conflicts);
    metrics.last_position.set(next_position as i64 - 1);
}

/// Applies every command of every entry in one transaction, records the applied state, and
/// commits. Rejected commands wrote nothing and do not affect the others; a storage failure
/// aborts the whole job.
fn commit_job(
    env: &Env<WithoutTls>,
    dbs: &Databases,
    job: &ApplyJob,
) -> Result<CommitOutcome, StoreError> {
    let mut txn = env.write_txn()?;
    let mut outcomes = Vec::with_capacity(job.entries.len());
    let mut events = Vec::new();
    for entry in &job.entries {
        let mut entry_outcomes = Vec::with_capacity(entry.len());
        for command in entry.iter() {
            entry_outcomes.push(apply(&mut txn, dbs, command, &mut events)?);
        }
        outcomes.push(entry_outcomes);
    }
    dbs.raft.put(&mut txn, RAFT_APPLIED, &job.applied_state)?;
    let next_position = dbs.meta.get(&txn, META_NEXT_POSITION)?.unwrap_or(0);
    // Positions are gapless within the job: each event follows the one before it.
    assert!(
        events
            .windows(2)
            .all(|w| w[1].position == w[0].position + 1),
        "positions of one job are contiguous"
    );
    txn.commit()?;
    Ok((outcomes, next_position, events))
}
