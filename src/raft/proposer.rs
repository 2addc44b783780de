//! The proposer: batching in front of `client_write`.
//!
//! openraft 0.9 writes (and fsyncs) each `client_write` as its own log entry, one after the
//! other. So the proposer turns every write queued meanwhile, from all connections, into one
//! entry: it waits for the first request, then for a free in-flight slot, drains whatever else
//! is queued by then (bounded by count and bytes), and proposes it as one [`Proposal`]. With
//! [`MAX_PROPOSALS_IN_FLIGHT`] of 2, the next entry is being written and fsynced while the one
//! before it is committed. There is no linger timer: a lone append waits for nothing but its
//! own fsync and apply.
//!
//! Each proposal carries an id registered, with its commands' submitters, in the store's
//! [`Waiters`](crate::store::Waiters) before it is proposed; the apply thread answers each
//! submitter there directly once the entry is applied.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::raft::types::{Proposal, Raft};

use crate::store::writer::{MAX_BATCH_BYTES, MAX_BATCH_COMMANDS};
use crate::store::{ProposalId, StoreError, Waiters, WriteRequest};

/// Proposals written or applied at once. Two keep the disk (log) and the apply thread busy at
/// the same time; more would only split batches that could have been one.
pub const MAX_PROPOSALS_IN_FLIGHT: usize = 2;

/// Runs until `stop` fires or the queue closes, then waits for proposals in flight.
pub async fn run(
    raft: Raft,
    waiters: Arc<Waiters>,
    mut queue: mpsc::Receiver<WriteRequest>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_PROPOSALS_IN_FLIGHT));
    let in_flight = TaskTracker::new();
    let origin = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut seq = 0u64;
    loop {
        let first = tokio::select! {
            request = queue.recv() => request,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let batch = drain(first, &mut queue);
        let mut commands = Vec::with_capacity(batch.len());
        let mut submitters = Vec::with_capacity(batch.len());
        for request in batch {
            commands.push(request.command);
            submitters.push((request.reply, request._budget));
        }
        seq += 1;
        let id = ProposalId { origin, seq };
        let count = submitters.len();
        waiters.register(id, submitters);
        // Proposed here, in queue order (a connection's writes take effect in the order it
        // sent them); only the wait for the commit runs beside the next proposal.
        let written = raft
            .client_write_ff(Proposal {
                id: Some(id),
                commands: Arc::from(commands),
            })
            .await;
        let waiters = waiters.clone();
        in_flight.spawn(async move {
            let committed = match written {
                Ok(receiver) => receiver
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|result| result.map(|_| ()).map_err(|e| e.to_string())),
                Err(fatal) => Err(fatal.to_string()),
            };
            // Committed and queued for apply (the apply thread answers the submitters): the
            // next proposal may go.
            drop(slot);
            if let Err(error) = committed {
                // Not the leader (a single node is, once started) or the node stopped: the
                // entry was not committed here. Its submitters, unless the apply thread
                // answered them already, hear that the store is shutting down; the outcome is
                // unknown to them, and they may retry with the same event ids.
                tracing::error!(%error, commands = count, "proposal failed");
                if let Some(submitters) = waiters.cancel(id) {
                    for (reply, _budget) in submitters {
                        let _ = reply.send(Err(StoreError::ShuttingDown));
                    }
                }
            }
        });
    }
    in_flight.close();
    in_flight.wait().await;
    // Requests still queued are dropped: their submitters see the store shutting down.
}

/// The first request and every one queued behind it, within the batch limits.
fn drain(first: WriteRequest, queue: &mut mpsc::Receiver<WriteRequest>) -> Vec<WriteRequest> {
    let mut bytes = first.command.size_bytes();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
        match queue.try_recv() {
            Ok(request) => {
                bytes += request.command.size_bytes();
                batch.push(request);
            }
            Err(_) => break,
        }
    }
    batch
}
