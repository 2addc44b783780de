//! Membership changes: a node added as a learner and promoted to voter once caught up, a
//! voter removed; for every store's group, through its leader.
//!
//! `CLUSTER ADD` / `CLUSTER REMOVE` (any node; a follower sends the change to the leader over
//! the inter-node port), and `--join` (a new node asks a member to add it). openraft does the
//! work: `add_learner` (blocking until the learner has caught up, from the log or from a
//! snapshot of the state machine), then `change_membership` (joint consensus) to make it a
//! voter; a removal is one `change_membership` that drops the node from the voters and the
//! members. Each step is idempotent, so an operator or a joining node retries a change that
//! timed out by sending it again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cluster::wire::{self, Answer, Call};
use crate::cluster::{Cluster, Group, LEADER_WAIT_TIMEOUT_MS};
use crate::raft::types::NodeId;

/// How long one store's membership change may take, the new node's catch-up included; past
/// it the caller is told to send the change again (nothing is undone: a learner keeps
/// catching up).
pub const MEMBERSHIP_CHANGE_TIMEOUT_MS: u64 = 60_000;
/// Pause between looks for a leader that takes the change.
const LEADER_RETRY_MS: u64 = 100;
/// Pause between a joining node's attempts (every `--join` address in turn).
pub const JOIN_RETRY_MS: u64 = 1_000;

/// A membership change, on the wire between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Add {
        node_id: NodeId,
        raft_addr: String,
        client_url: Option<String>,
    },
    Remove {
        node_id: NodeId,
    },
}

impl From<esdb_protocol::ops::cluster::MemberChange> for Change {
    fn from(change: esdb_protocol::ops::cluster::MemberChange) -> Change {
        use esdb_protocol::ops::cluster::MemberChange;
        match change {
            MemberChange::Add {
                node_id,
                raft_addr,
                client_addr,
            } => Change::Add {
                node_id,
                raft_addr,
                client_url: client_addr,
            },
            MemberChange::Remove { node_id } => Change::Remove { node_id },
        }
    }
}

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChangeError {
    /// The node asked does not lead the group (nothing was done; ask the leader).
    #[error("not the leader")]
    NotLeader,
    /// The change contradicts the membership (a node id already used at another address, a
    /// node that is not a member, the last voter).
    #[error("{0}")]
    Invalid(String),
    /// No leader in time, or the change did not finish in time: send it again.
    #[error("{0}")]
    Unavailable(String),
}

impl ChangeError {
    pub fn to_protocol_error(&self) -> esdb_protocol::ProtocolError {
        use esdb_protocol::{ErrorCode, ProtocolError};
        match self {
            ChangeError::Invalid(message) => ProtocolError::invalid_argument(message.clone()),
            ChangeError::NotLeader | ChangeError::Unavailable(_) => {
                ProtocolError::new(ErrorCode::Unavailable, self.to_string())
            }
        }
    }
}

impl Cluster {
    /// Makes `change` in every store's group, one store after the other (each through its
    /// leader); returns once every group has it.
    pub async fn change_members(self: &Arc<Self>, change: Change) -> Result<(), ChangeError> {
        if let Change::Add {
            node_id,
            client_url: Some(url),
            ..
        } = &change
        {
            self.hint_client_url(*node_id, url.clone());
        }
        let stores: Vec<String> = self.group_names();
        for store in stores {
            self.change_group(&store, &change).await?;
            self.wait_until_seen(&store, &change).await;
        }
        if let Change::Remove { node_id } = change {
            self.forget_peer_unless_member(node_id);
        }
        Ok(())
    }

    /// Makes `change` in `store`'s group: here if this node leads it, else on the leader.
    pub async fn change_group(
        self: &Arc<Self>,
        store: &str,
        change: &Change,
    ) -> Result<(), ChangeError> {
        let group = self
            .group(store)
            .ok_or_else(|| ChangeError::Invalid(format!("no store {store} here")))?;
        let deadline = Instant::now() + Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS);
        let leader_deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_TIMEOUT_MS);
        loop {
            let leader = group.raft.metrics().borrow().current_leader;
            let result = match leader {
                Some(leader) if leader == self.node_id() => {
                    match tokio::time::timeout_at(deadline, change_here(&group, change)).await {
                        Ok(result) => result,
                        Err(_) => Err(timed_out(store, change)),
                    }
                }
                Some(leader) => self.change_on(leader, store, change, deadline).await,
                None => Err(ChangeError::NotLeader),
            };
            match result {
                Err(ChangeError::NotLeader) if Instant::now() < leader_deadline => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(LEADER_RETRY_MS)) => {}
                        _ = self.stop.cancelled() => {
                            return Err(ChangeError::Unavailable("the node is stopping".into()));
                        }
                    }
                }
                Err(ChangeError::NotLeader) => {
                    return Err(ChangeError::Unavailable(format!(
                        "store {store}: no leader took the change within \
                         {LEADER_WAIT_TIMEOUT_MS} ms (an election or a partition); retry"
                    )))
                }
                result => return result,
            }
        }
    }

    /// Waits (a bounded time) until this node's own view of `store`'s group shows the change,
    /// so the `CLUSTER` reply it gives next shows it; the change is made either way.
    async fn wait_until_seen(&self, store: &str, change: &Change) {
        let Some(group) = self.group(store) else {
            return;
        };
        let change = change.clone();
        let seen = group
            .raft
            .wait(Some(Duration::from_millis(LEADER_WAIT_TIMEOUT_MS)))
            .metrics(
                move |metrics| {
                    let membership = metrics.membership_config.membership();
                    match &change {
                        Change::Add { node_id, .. } => {
                            membership.voter_ids().any(|id| id == *node_id)
                        }
                        Change::Remove { node_id } => membership.get_node(node_id).is_none(),
                    }
                },
                "the membership change applied here",
            )
            .await;
        if let Err(error) = seen {
            tracing::warn!(%store, %error, "the membership change is made, not yet seen here");
        }
    }

    /// Sends the change to the leader; `NotLeader` if it did not lead (or was unreachable).
    async fn change_on(
        &self,
        leader: NodeId,
        store: &str,
        change: &Change,
        deadline: Instant,
    ) -> Result<(), ChangeError> {
        let Some(peer) = self.client_peer(leader) else {
            return Err(ChangeError::NotLeader);
        };
        let call = Call::ChangeMembers {
            store: store.to_owned(),
            change: change.clone(),
        };
        let started = match peer.start(&call).await {
            Ok(started) => started,
            Err(_) => return Err(ChangeError::NotLeader),
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match started.answer(wait).await {
            Ok(Answer::MembersChanged(result)) => result,
            Ok(Answer::Refused(_)) => Err(ChangeError::NotLeader),
            Ok(other) => Err(ChangeError::Unavailable(format!(
                "node {leader} answered a membership change with {other:?}"
            ))),
            Err(error) => Err(ChangeError::Unavailable(format!(
                "store {store}: {error}; the change may or may not have been made: send it again"
            ))),
        }
    }

    /// The names of the stores with a group on this node.
    pub fn group_names(&self) -> Vec<String> {
        self.groups_by_name().into_keys().collect()
    }

    /// `--join`: until every store's group here is initialized (this node was added), asks
    /// the members at `addrs` in turn to add it; each passes the change on to its leader.
    pub async fn join(self: Arc<Self>, addrs: Vec<String>) {
        let me = Change::Add {
            node_id: self.node_id(),
            raft_addr: self.config.raft_addr.to_string(),
            client_url: Some(self.client_url.clone()),
        };
        let mut attempt: u64 = 0;
        loop {
            let mut pending = Vec::new();
            for (store, group) in self.groups_by_name() {
                if !group.raft.is_initialized().await.unwrap_or(false) {
                    pending.push(store);
                }
            }
            if pending.is_empty() {
                tracing::info!("joined the cluster");
                return;
            }
            let addr = &addrs[(attempt as usize) % addrs.len()];
            attempt += 1;
            for store in pending {
                match ask(&self, addr, &store, &me).await {
                    Ok(()) => tracing::info!(%store, %addr, "added to the cluster"),
                    Err(error) => {
                        tracing::warn!(%store, %addr, %error, "joining the cluster: not yet")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(JOIN_RETRY_MS)) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

/// The node id of whoever listens at `addr` (proven by the handshake), on a connection of
/// its own, closed at once.
pub(crate) async fn identify(cluster: &Cluster, addr: &str) -> Result<NodeId, String> {
    let (_stream, id) = cluster
        .dialer
        .dial(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(id)
}

/// One request to a member at `addr` (not a known peer yet: its id is learnt from the
/// handshake), on a connection of its own.
pub(crate) async fn ask(
    cluster: &Cluster,
    addr: &str,
    store: &str,
    change: &Change,
) -> Result<(), String> {
    let (mut stream, member) = cluster
        .dialer
        .dial(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    if member == cluster.node_id() {
        return Err(format!("{addr} is this node"));
    }
    let call = Call::ChangeMembers {
        store: store.to_owned(),
        change: change.clone(),
    };
    let frame = wire::encode_frame(1, &call)
        .map_err(|e| e.to_string())?
        .ok_or("a join call does not fit in a frame")?;
    tokio::io::AsyncWriteExt::write_all(&mut stream, &frame)
        .await
        .map_err(|e| e.to_string())?;
    // The member answers once the change is made (its own timeout bounds it), plus a margin.
    let wait = Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS + LEADER_WAIT_TIMEOUT_MS * 2);
    let answer = tokio::time::timeout(wait, wire::read_frame::<_, Answer>(&mut stream))
        .await
        .map_err(|_| format!("{addr} did not answer within {} ms", wait.as_millis()))?
        .map_err(|e| e.to_string())?;
    match answer {
        Some((_, Answer::MembersChanged(result))) => result.map_err(|e| e.to_string()),
        Some((_, other)) => Err(format!("{addr} answered {other:?}")),
        None => Err(format!("{addr} closed the connection")),
    }
}

fn timed_out(store: &str, change: &Change) -> ChangeError {
    ChangeError::Unavailable(format!(
        "store {store}: {change:?} did not finish within {MEMBERSHIP_CHANGE_TIMEOUT_MS} ms (a \
         new node may still be catching up as a learner); send it again"
    ))
}

/// Makes the change in a group this node leads.
pub async fn change_here(group: &Group, change: &Change) -> Result<(), ChangeError> {
    let raft = &group.raft;
    let membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    match change {
        Change::Add {
            node_id, raft_addr, ..
        } => {
            if let Some(node) = membership.get_node(node_id) {
                if node.addr != *raft_addr {
                    return Err(ChangeError::Invalid(format!(
                        "node {node_id} is a member already, at {}; remove it first",
                        node.addr
                    )));
                }
            }
            if membership.voter_ids().any(|id| id == *node_id) {
                return Ok(());
            }
            // Blocks until the learner has caught up (log or snapshot).
            raft.add_learner(*node_id, BasicNode::new(raft_addr), true)
                .await
                .map_err(refusal)?;
            raft.change_membership(
                ChangeMembers::AddVoterIds(BTreeSet::from([*node_id])),
                false,
            )
            .await
            .map_err(refusal)?;
            Ok(())
        }
        Change::Remove { node_id } => {
            let voter = membership.voter_ids().any(|id| id == *node_id);
            if membership.get_node(node_id).is_none() {
                return Err(ChangeError::Invalid(format!(
                    "node {node_id} is not a member"
                )));
            }
            let changes = if voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([*node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([*node_id]))
            };
            raft.change_membership(changes, false)
                .await
                .map_err(refusal)?;
            Ok(())
        }
    }
}

fn refusal(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ChangeError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ChangeError::NotLeader,
        // Another change still being committed: this one may go through after it.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            openraft::error::ChangeMembershipError::InProgress(busy),
        )) => ChangeError::Unavailable(format!("{busy}; retry")),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            ChangeError::Invalid(error.to_string())
        }
        RaftError::Fatal(fatal) => ChangeError::Unavailable(fatal.to_string()),
    }
}
