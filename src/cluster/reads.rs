//! Linearizable reads on any node: read index, coalesced.
//!
//! Before a read runs, this node learns the leader's read index: the leader confirms with a
//! quorum that it still leads (openraft's `get_read_log_id`, a heartbeat round) and names the
//! last log index committed by then. This node then waits until its store has committed that
//! index, so the read sees every write acknowledged before it began, on whichever node.
//! Reads that arrive while a round is under way share the next round: one round serves every
//! read waiting when it starts (a read never joins a round that began before it).
//!
//! A read with `after <position>` ([`wait_for_position`]) skips the round: the node waits
//! until it has applied that `$all` position itself, so a client reads its own writes (and
//! never goes back in time when it moves to another node) without asking the leader, on any
//! node that has caught up that far, even one cut off from the leader.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::wire::{Answer, Call};
use crate::cluster::{Cluster, LEADER_WAIT_TIMEOUT_MS};
use crate::raft::types::{NodeId, Raft};
use crate::store::{Store, StoreError};

/// Reads waiting for a read-index round, per store, before new ones wait for room.
pub const MAX_WAITING_READS: usize = 4_096;
/// How long a request with `after <position>` waits for this node to apply the position
/// before it is answered `unavailable` (PROTOCOL.md, `after_wait_ms`).
pub const AFTER_WAIT_TIMEOUT_MS: u64 = 5_000;
/// Pause between tries when no leader can confirm a read index.
const RETRY_MS: u64 = 50;

type Waiter = oneshot::Sender<Result<u64, StoreError>>;

/// One store's read-index rounds.
#[derive(Clone)]
pub struct Linearizer {
    waiting: mpsc::Sender<Waiter>,
    raft: Raft,
}

impl Linearizer {
    /// Starts the rounds' task for `store`'s group.
    pub fn start(cluster: Arc<Cluster>, store: String, raft: Raft) -> Linearizer {
        let (waiting, queue) = mpsc::channel(MAX_WAITING_READS);
        tokio::spawn(rounds(cluster, store, raft.clone(), queue));
        Linearizer { waiting, raft }
    }

    /// Waits until `store` has committed everything committed in the cluster when this was
    /// called; `unavailable` when no leader confirms within [`LEADER_WAIT_TIMEOUT_MS`].
    pub async fn wait(&self, store: &Store) -> Result<(), StoreError> {
        let (sender, receiver) = oneshot::channel();
        self.waiting
            .send(sender)
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        let index = receiver.await.map_err(|_| StoreError::ShuttingDown)??;
        store.progress().wait_committed(index).await
    }

    /// On the leader: confirms leadership with a quorum and returns the read index; `None`
    /// if this node does not lead.
    pub async fn leader_index(&self) -> Option<u64> {
        let timeout = Duration::from_millis(LEADER_WAIT_TIMEOUT_MS);
        match tokio::time::timeout(timeout, self.raft.get_read_log_id()).await {
            Ok(Ok((read_log_id, _))) => Some(read_log_id.map_or(0, |id| id.index)),
            _ => None,
        }
    }
}

async fn rounds(
    cluster: Arc<Cluster>,
    store: String,
    raft: Raft,
    mut queue: mpsc::Receiver<Waiter>,
) {
    let linearizer = Linearizer {
        waiting: mpsc::channel(1).0,
        raft: raft.clone(),
    };
    while let Some(first) = queue.recv().await {
        let mut waiters = vec![first];
        while let Ok(waiter) = queue.try_recv() {
            waiters.push(waiter);
        }
        let result = read_index(&cluster, &store, &raft, &linearizer).await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

async fn read_index(
    cluster: &Arc<Cluster>,
    store: &str,
    raft: &Raft,
    linearizer: &Linearizer,
) -> Result<u64, StoreError> {
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_TIMEOUT_MS);
    let me: NodeId = cluster.node_id();
    loop {
        let leader = raft.metrics().borrow().current_leader;
        let index = match leader {
            Some(leader) if leader == me => linearizer.leader_index().await,
            Some(leader) => match cluster.client_peer(leader) {
                Some(peer) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let call = Call::ReadIndex {
                        store: store.to_owned(),
                    };
                    match peer
                        .call(&call, left.max(Duration::from_millis(RETRY_MS)))
                        .await
                    {
                        Ok(Answer::ReadIndex(index)) => index,
                        _ => None,
                    }
                }
                None => None,
            },
            None => None,
        };
        if let Some(index) = index {
            return Ok(index);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "store {store}: no leader confirmed a read within {LEADER_WAIT_TIMEOUT_MS} ms \
                 (an election or a partition); retry"
            )));
        }
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
    }
}

/// Waits until `store` has applied `$all` position `position` (its head, the next position to
/// be written, is past it); `unavailable` after [`AFTER_WAIT_TIMEOUT_MS`]. A read that starts
/// after this waits for the commit of what it covers (`Store::with_read`), so it sees the
/// event at `position` and everything before it.
pub async fn wait_for_position(store: &Store, position: u64) -> Result<(), StoreError> {
    let mut head = store.head();
    let reached = async { head.wait_for(|&next| next > position).await.map(|_| ()) };
    match tokio::time::timeout(Duration::from_millis(AFTER_WAIT_TIMEOUT_MS), reached).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(StoreError::ShuttingDown),
        Err(_) => Err(StoreError::Unavailable(format!(
            "store {}: this node has not applied position {position} within \
             {AFTER_WAIT_TIMEOUT_MS} ms (it is behind or cut off from the leader, or the \
             position was never written); retry, here or on another node",
            store.name()
        ))),
    }
}
