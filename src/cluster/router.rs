//! Where a store's writes go on a cluster node.
//!
//! The router drains the store's write queue (in submission order): while this node leads, a
//! request goes to the local proposer as on a single node; while another node leads, every
//! request queued is forwarded to it in one call (calls to the leader leave in order on one
//! connection, and the leader proposes them in arrival order, so a connection's writes take
//! effect in the order it sent them); while no leader is known, the router waits up to
//! [`LEADER_WAIT_TIMEOUT_MS`] for one, then answers `unavailable`.
//!
//! Outcomes: a forward the leader refused before proposing (it no longer leads) or that never
//! left this node is tried again, within the wait. A write whose answer was lost (the
//! connection broke, the leader changed, no commit within [`WRITE_OUTCOME_TIMEOUT_MS`]) has an
//! unknown outcome and is answered `unavailable`: the client retries with the same event ids.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::peer::CallError;
use crate::cluster::wire::{Answer, Call, Forwarded};
use crate::cluster::{Cluster, LEADER_WAIT_TIMEOUT_MS, WRITE_OUTCOME_TIMEOUT_MS};
use crate::raft::types::{NodeId, Raft};
use crate::store::writer::{MAX_BATCH_BYTES, MAX_BATCH_COMMANDS};
use crate::store::{StoreError, WriteRequest, WriteResult};

/// Forward calls to the leader awaiting their answers at once, per store.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 8;
/// Pause between looks for a leader that can be reached.
const LEADER_RETRY_MS: u64 = 50;

/// Runs until `stop` fires or the queue closes.
pub async fn run(
    cluster: Arc<Cluster>,
    store: String,
    raft: Raft,
    mut queue: mpsc::Receiver<WriteRequest>,
    local: mpsc::Sender<WriteRequest>,
    stop: CancellationToken,
) {
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
    loop {
        let first = tokio::select! {
            request = queue.recv() => request,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_TIMEOUT_MS);
        loop {
            let Some(leader) = wait_for_leader(&raft, deadline, &stop).await else {
                let reason = format!(
                    "store {store}: no leader within {LEADER_WAIT_TIMEOUT_MS} ms (an election \
                     or a partition); nothing was written, retry"
                );
                for request in batch.drain(..) {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Unavailable(reason.clone())));
                }
                break;
            };
            if leader == cluster.node_id() {
                for request in batch.drain(..) {
                    propose_locally(&local, request).await;
                }
                break;
            }
            drain(&mut batch, &mut queue);
            match forward(&cluster, &store, leader, &mut batch, &forwards).await {
                Ok(()) => break,
                // Not sent, or refused before anything was proposed: look again.
                Err(()) if Instant::now() < deadline => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(LEADER_RETRY_MS)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Err(()) => {
                    let reason = format!(
                        "store {store}: the leader (node {leader}) could not be reached within \
                         {LEADER_WAIT_TIMEOUT_MS} ms; nothing was written, retry"
                    );
                    for request in batch.drain(..) {
                        let _ = request
                            .reply
                            .send(Err(StoreError::Unavailable(reason.clone())));
                    }
                    break;
                }
            }
        }
    }
}

/// The leader's id once one is known, or `None` at the deadline.
async fn wait_for_leader(
    raft: &Raft,
    deadline: Instant,
    stop: &CancellationToken,
) -> Option<NodeId> {
    let mut metrics = raft.metrics();
    loop {
        if let Some(leader) = metrics.borrow_and_update().current_leader {
            return Some(leader);
        }
        tokio::select! {
            changed = metrics.changed() => changed.ok()?,
            _ = tokio::time::sleep_until(deadline) => return None,
            _ = stop.cancelled() => return None,
        }
    }
}

/// More queued requests behind the batch, within the proposer's limits.
fn drain(batch: &mut Vec<WriteRequest>, queue: &mut mpsc::Receiver<WriteRequest>) {
    let mut bytes: usize = batch.iter().map(|r| r.command.size_bytes()).sum();
    while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
        match queue.try_recv() {
            Ok(request) => {
                bytes += request.command.size_bytes();
                batch.push(request);
            }
            Err(_) => break,
        }
    }
}

/// Hands a request to the local proposer; its outcome comes back through a watcher that
/// turns a lost proposal (the proposer answers `shutting_down` when this node stopped leading
/// before the entry committed) or a commit that never comes into `unavailable`.
async fn propose_locally(local: &mpsc::Sender<WriteRequest>, request: WriteRequest) {
    let WriteRequest {
        command,
        reply,
        _budget,
    } = request;
    let (inner, outcome) = oneshot::channel();
    let request = WriteRequest {
        command,
        reply: inner,
        _budget,
    };
    if let Err(mpsc::error::SendError(request)) = local.send(request).await {
        drop(request);
        let _ = reply.send(Err(StoreError::ShuttingDown));
        return;
    }
    tokio::spawn(async move {
        let timeout = Duration::from_millis(WRITE_OUTCOME_TIMEOUT_MS);
        let result = match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(Err(StoreError::ShuttingDown))) | Ok(Err(_)) => Err(unknown_outcome(
                "this node stopped leading before the write committed",
            )),
            Ok(Ok(result)) => result,
            Err(_) => Err(unknown_outcome(&format!(
                "the write was not committed within {WRITE_OUTCOME_TIMEOUT_MS} ms (this leader \
                 may be cut off from its followers)"
            ))),
        };
        let _ = reply.send(result);
    });
}

fn unknown_outcome(why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{why}: its outcome is unknown; retry with the same event ids"
    ))
}

/// Forwards `batch` to `leader`. `Err(())`: nothing reached the leader's proposer, the batch
/// is still here to try again. `Ok(())`: the batch is gone (answered, or will be).
async fn forward(
    cluster: &Arc<Cluster>,
    store: &str,
    leader: NodeId,
    batch: &mut Vec<WriteRequest>,
    forwards: &Arc<Semaphore>,
) -> Result<(), ()> {
    let Some(peer) = cluster.client_peer(leader) else {
        // A leader this node has no address for (not in --peers): wait for another.
        return Err(());
    };
    let Ok(slot) = forwards.clone().acquire_owned().await else {
        return Err(());
    };
    let commands = batch.iter().map(|r| r.command.clone()).collect();
    let call = Call::Forward {
        store: store.to_owned(),
        commands,
    };
    let started = match peer.start(&call).await {
        Ok(started) => started,
        Err(CallError::TooLarge) => {
            let requests: Vec<WriteRequest> = std::mem::take(batch);
            answer_all(
                requests,
                Err(StoreError::Storage(
                    "the writes are too large to forward to the leader".into(),
                )),
            );
            return Ok(());
        }
        Err(error) => {
            tracing::debug!(%error, "forwarding to the leader");
            return Err(());
        }
    };
    let requests: Vec<WriteRequest> = std::mem::take(batch);
    tokio::spawn(async move {
        // The leader's own wait, and the trip back.
        let timeout = Duration::from_millis(WRITE_OUTCOME_TIMEOUT_MS + LEADER_WAIT_TIMEOUT_MS);
        let answer = started.answer(timeout).await;
        drop(slot);
        match answer {
            Ok(Answer::Forwarded(Forwarded::Outcomes(outcomes)))
                if outcomes.len() == requests.len() =>
            {
                for (request, outcome) in requests.into_iter().zip(outcomes) {
                    let result: WriteResult = outcome.map_err(StoreError::from);
                    let _ = request.reply.send(result);
                }
            }
            Ok(Answer::Forwarded(Forwarded::NotLeader)) | Ok(Answer::Refused(_)) => {
                // Nothing proposed; the client may retry at once.
                answer_all(
                    requests,
                    Err(StoreError::Unavailable(
                        "the leader changed as the write was forwarded; nothing was written, \
                         retry"
                            .into(),
                    )),
                );
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a forward");
                answer_all(requests, Err(unknown_outcome("the leader answered oddly")));
            }
            Err(error) => answer_all(requests, Err(unknown_outcome(&error.to_string()))),
        }
    });
    Ok(())
}

fn answer_all(requests: Vec<WriteRequest>, result: WriteResult) {
    for request in requests {
        let _ = request.reply.send(result.clone());
    }
}
