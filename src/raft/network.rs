//! The inter-node network of a Raft group. A single node has no peers, so every RPC target is
//! unreachable; the cluster issue (11) replaces this with framed, authenticated connections.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::raft::types::{NodeId, TypeConfig};

/// Builds [`NoPeer`]s.
pub struct SingleNodeNetwork;

/// A peer that cannot be reached.
pub struct NoPeer {
    target: NodeId,
}

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let reason = std::io::Error::other(format!(
            "node {} is not reachable: this server runs a single-node group",
            self.target
        ));
        RPCError::Unreachable(Unreachable::new(&reason))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

/// Builds [`PeerNetwork`]s: a store's group reaching its peers over the inter-node port.
pub struct ClusterNetwork {
    pub cluster: std::sync::Arc<crate::cluster::Cluster>,
    pub store: String,
}

/// One peer of one store's group; calls share the node's connection to that peer.
pub struct PeerNetwork {
    target: NodeId,
    peer: Option<std::sync::Arc<crate::cluster::peer::Peer>>,
    store: String,
}

impl RaftNetworkFactory<TypeConfig> for ClusterNetwork {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        // The membership carries every member's inter-node address (a node added with
        // `CLUSTER ADD` is known by it alone).
        self.cluster.learn_peer(target, &node.addr);
        PeerNetwork {
            target,
            peer: self.cluster.raft_peer(target),
            store: self.store.clone(),
        }
    }
}

impl PeerNetwork {
    async fn call<E: std::error::Error>(
        &self,
        call: crate::cluster::wire::Call,
        option: &RPCOption,
        entries: u64,
    ) -> Result<crate::cluster::wire::Answer, RPCError<NodeId, BasicNode, E>> {
        use crate::cluster::peer::CallError;
        let Some(peer) = &self.peer else {
            let reason = std::io::Error::other(format!(
                "node {} has no known inter-node address",
                self.target
            ));
            return Err(RPCError::Unreachable(Unreachable::new(&reason)));
        };
        match peer.call(&call, option.hard_ttl()).await {
            Ok(answer) => Ok(answer),
            Err(CallError::TooLarge) => Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            )),
            Err(error @ CallError::Unreachable(..)) => {
                Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(error @ CallError::Lost(..)) => Err(RPCError::Network(
                openraft::error::NetworkError::new(&error),
            )),
        }
    }

    fn odd<E: std::error::Error>(
        &self,
        answer: crate::cluster::wire::Answer,
    ) -> RPCError<NodeId, BasicNode, E> {
        let reason = std::io::Error::other(format!("node {}: {answer:?}", self.target));
        RPCError::Network(openraft::error::NetworkError::new(&reason))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        use crate::cluster::wire::{Answer, Call};
        let entries = rpc.entries.len() as u64;
        let call = Call::AppendEntries {
            store: self.store.clone(),
            rpc,
        };
        match self.call(call, &option, entries).await? {
            Answer::AppendEntries(Ok(response)) => Ok(response),
            Answer::AppendEntries(Err(error)) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, error),
            )),
            other => Err(self.odd(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        use crate::cluster::wire::{Answer, Call};
        let call = Call::InstallSnapshot {
            store: self.store.clone(),
            rpc,
        };
        match self.call(call, &option, 1).await? {
            Answer::InstallSnapshot(Ok(response)) => Ok(response),
            Answer::InstallSnapshot(Err(error)) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, error),
            )),
            other => Err(self.odd(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        use crate::cluster::wire::{Answer, Call};
        let call = Call::Vote {
            store: self.store.clone(),
            rpc,
        };
        match self.call(call, &option, 1).await? {
            Answer::Vote(Ok(response)) => Ok(response),
            Answer::Vote(Err(error)) => Err(RPCError::RemoteError(
                openraft::error::RemoteError::new(self.target, error),
            )),
            other => Err(self.odd(other)),
        }
    }
}
