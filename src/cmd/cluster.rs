//! `CLUSTER` and `CLUSTER ADD` / `CLUSTER REMOVE` (syntax in `esdb_protocol::ops::cluster`):
//! this node's view of each store's Raft group, and membership changes ([`crate::cluster`]).

use std::sync::Arc;

use futures::FutureExt;

use esdb_protocol::ops::cluster::MemberChange;
use esdb_protocol::{ProtocolError, Reply};

use crate::server::session::{error, ready, Dispatched};
use crate::server::ServerContext;

/// `CLUSTER`: how this node sees each store's group (a single server: a one-member group).
pub fn cluster(context: &ServerContext) -> Dispatched {
    ready(Reply::Cluster {
        body: context.cluster_json(),
    })
}

/// `CLUSTER ADD` / `CLUSTER REMOVE`: the change in every store's group, then the new view.
pub fn change(context: &Arc<ServerContext>, change: MemberChange) -> Dispatched {
    let Some(cluster) = context.cluster.clone() else {
        return error(ProtocolError::invalid_argument(
            "this server is not a cluster node (started without --node-id and --raft): it has \
             no members to change",
        ));
    };
    let context = context.clone();
    Dispatched::Reply(
        async move {
            match cluster.change_members(change.into()).await {
                Ok(()) => Reply::Cluster {
                    body: context.cluster_json(),
                },
                Err(e) => Reply::Err(e.to_protocol_error()),
            }
        }
        .boxed(),
    )
}
