//! The writer thread: the only place that opens write transactions, doing group commit.
//!
//! LMDB allows one writer at a time and a write transaction must commit on the thread that
//! began it, so one dedicated OS thread takes every command. It blocks for the first request,
//! drains whatever else is already queued (up to the batch limits), applies them all in one
//! transaction and commits once: one fsync pair serves every append in the batch. Batches grow
//! with load by themselves; there is no timer, so a lone append waits for nothing but its own
//! fsync.

use std::sync::Arc;
use std::time::Instant;

use heed::{Env, WithoutTls};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::metrics::StoreMetrics;
use crate::store::command::{apply, Command, Outcome};
use crate::store::committed::{CommittedBatch, CommittedEvent};
use crate::store::schema::{Databases, META_NEXT_POSITION};
use crate::store::{Rejection, StoreError};

/// Most commands in one write transaction: bounds the latency a batch adds to its last member.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Most payload bytes in one write transaction.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Depth of the queue in front of the writer. When full, submitters wait: backpressure to the
/// connections instead of unbounded memory.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;

pub type WriteResult = Result<Outcome, StoreError>;

pub struct WriteRequest {
    pub command: Command,
    pub reply: oneshot::Sender<WriteResult>,
    /// The command's share of [`MAX_QUEUED_WRITE_BYTES`], given back when the request is done.
    pub _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Payload bytes of all commands queued for or inside the writer, per store. The queue depth
/// alone would allow `WRITE_QUEUE_CAPACITY` × 1 MiB; this caps the memory writes can pin, and
/// submitters wait (backpressure) when it is reached.
pub const MAX_QUEUED_WRITE_BYTES: usize = 256 * 1024 * 1024;

/// Runs until every sender of `requests` is dropped, then returns.
pub fn run(
    env: Env<WithoutTls>,
    dbs: Databases,
    mut requests: mpsc::Receiver<WriteRequest>,
    head: watch::Sender<u64>,
    published: broadcast::Sender<Arc<CommittedBatch>>,
    metrics: Arc<StoreMetrics>,
) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(MAX_BATCH_COMMANDS);
    while let Some(first) = requests.blocking_recv() {
        let mut batch_bytes = first.command.size_bytes();
        batch.push(first);
        while batch.len() < MAX_BATCH_COMMANDS && batch_bytes < MAX_BATCH_BYTES {
            match requests.try_recv() {
                Ok(request) => {
                    batch_bytes += request.command.size_bytes();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match commit_batch(&env, &dbs, &batch) {
            Ok((outcomes, next_position, events)) => {
                debug_assert_eq!(outcomes.len(), batch.len());
                // The head moves before the batch is published: an emitter that
                // resubscribes and then reads the head knows every batch it will not receive.
                head.send_replace(next_position);
                if !events.is_empty() {
                    debug_assert_eq!(events.last().map(|e| e.position + 1), Some(next_position));
                    // No receivers (no emitters) is fine: nothing subscribes.
                    let _ = published.send(Arc::new(CommittedBatch { events }));
                }
                record_batch(&metrics, &batch, &outcomes, started, next_position);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    // A dropped receiver means the client went away; its write still stands.
                    let _ = request.reply.send(outcome.map_err(StoreError::from));
                }
            }
            Err(error) => {
                tracing::error!(%error, commands = batch.len(), "write batch failed");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

type BatchOutcome = (
    Vec<Result<Outcome, crate::store::Rejection>>,
    u64,
    Vec<CommittedEvent>,
);

/// Updates the store's metrics once per batch: a handful of atomic adds, whatever its size.
fn record_batch(
    metrics: &StoreMetrics,
    batch: &[WriteRequest],
    outcomes: &[Result<Outcome, Rejection>],
    started: Instant,
    next_position: u64,
) {
    let (mut events, mut bytes, mut conflicts) = (0u64, 0u64, 0u64);
    for (request, outcome) in batch.iter().zip(outcomes) {
        let Command::Append(_) = &request.command else {
            continue;
        };
        match outcome {
            Ok(Outcome::Appended { event_count, .. }) => {
                events += event_count;
                bytes += request.command.size_bytes() as u64;
            }
            Err(Rejection::WrongExpectedVersion { .. }) => conflicts += 1,
            _ => {}
        }
    }
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_commands.observe(batch.len() as f64);
    metrics.batch_events.observe(events as f64);
    metrics.append_events.inc_by(events);
    metrics.append_bytes.inc_by(bytes);
    metrics.append_conflicts.inc_by(conflicts);
    metrics.last_position.set(next_position as i64 - 1);
}

/// Applies every command in one transaction and commits (fsyncs) it. Rejected commands wrote
/// nothing and do not affect the others; a storage failure aborts the whole batch.
fn commit_batch(
    env: &Env<WithoutTls>,
    dbs: &Databases,
    batch: &[WriteRequest],
) -> Result<BatchOutcome, StoreError> {
    let mut txn = env.write_txn()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for request in batch {
        outcomes.push(apply(&mut txn, dbs, &request.command, &mut events)?);
    }
    let next_position = dbs.meta.get(&txn, META_NEXT_POSITION)?.unwrap_or(0);
    txn.commit()?;
    Ok((outcomes, next_position, events))
}
