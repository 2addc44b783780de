//! What the server tells about itself: the `INFO` greeting and `STATS`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The server's `INFO` greeting. Fields the client does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_events_per_append: usize,
    pub max_read_count: u64,
    pub stores: Vec<String>,
    /// The store a new connection starts in.
    pub store: String,
    pub auth_required: bool,
    pub ping_interval_ms: u64,
    /// Each store's Raft group when the connection opened (empty from a server without it).
    #[serde(deserialize_with = "raft_by_store")]
    pub raft: BTreeMap<String, RaftStatus>,
    /// On a node of a cluster: the node, the leader, the voters, and where clients reach each
    /// node (`None` from a single server). The client fails over to those addresses too.
    #[serde(deserialize_with = "lenient")]
    pub cluster: Option<ClusterInfo>,
}

/// `INFO`'s `cluster`: a cluster as the node that greeted the client sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    pub node_id: u64,
    /// `None` during an election.
    pub leader_id: Option<u64>,
    /// The voters' node ids.
    pub members: Vec<u64>,
    /// Node id (as a string) → the `host:port` its clients connect to, for the nodes the
    /// greeting node heard from lately (itself included).
    pub client_urls: BTreeMap<String, String>,
}

/// A store's Raft group as one node sees it (`raft` in `INFO` and `STATS`). Every write goes
/// through this log before it is applied; a single server is a one-member group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `learner`, as sent.
    pub state: String,
    pub term: u64,
    /// The node leading the group now, `None` during an election.
    pub leader_id: Option<u64>,
    pub last_log_index: u64,
    /// The last entry applied to the store: reads see everything up to it.
    pub applied_index: u64,
    /// The last entry the store has durably checkpointed, `None` before the first.
    pub checkpoint_index: Option<u64>,
}

/// `STATS`: counts per store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub stores: BTreeMap<String, StoreStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreStats {
    /// Events in `$all`, deleted streams' included.
    pub events: u64,
    /// Position of the newest event, -1 when the store is empty.
    pub last_position: i64,
    /// Streams ever created, deleted ones included.
    pub streams: u64,
    /// Subscriptions active now.
    pub subscriptions: u64,
    /// The store's Raft group as this node sees it (`None` from a server without it).
    #[serde(deserialize_with = "lenient")]
    pub raft: Option<RaftStatus>,
}

/// A field the client only reports: one the server shapes differently one day is left at
/// its default, so the greeting (and with it every connection) never fails over it.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// `{"<store>": {…}}`, leniently per store.
fn raft_by_store<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, RaftStatus>, D::Error> {
    let serde_json::Value::Object(stores) = serde_json::Value::deserialize(deserializer)? else {
        return Ok(BTreeMap::new());
    };
    Ok(stores
        .into_iter()
        .filter_map(|(store, status)| Some((store, RaftStatus::deserialize(status).ok()?)))
        .collect())
}

impl crate::Client {
    /// `STATS`: counts of every store the server serves (it sees this client's earlier writes).
    pub async fn stats(&self) -> crate::Result<Stats> {
        match self.call(&esdb_protocol::Request::Stats).await? {
            esdb_protocol::Reply::Stats { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(crate::Error::unexpected("STATS", &other)),
        }
    }

    /// `SCAVENGE`: starts a scavenge of the current store unless one runs, and returns its
    /// state (PROTOCOL.md lists the fields); `SCAVENGE STATUS` with `status_only`.
    pub async fn scavenge(&self, status_only: bool) -> crate::Result<serde_json::Value> {
        let request = esdb_protocol::Request::Scavenge {
            status: status_only,
        };
        match self.call(&request).await? {
            esdb_protocol::Reply::Scavenge { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(crate::Error::unexpected("SCAVENGE", &other)),
        }
    }

    /// `CLUSTER`: how the server sees each store's Raft group (members, roles, leader, term,
    /// applied index and replication lag per member); PROTOCOL.md lists the fields.
    pub async fn cluster(&self) -> crate::Result<serde_json::Value> {
        match self.call(&esdb_protocol::Request::Cluster).await? {
            esdb_protocol::Reply::Cluster { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(crate::Error::unexpected("CLUSTER", &other)),
        }
    }

    /// `CLUSTER ADD` / `CLUSTER REMOVE`: changes every store's membership (a node added
    /// becomes a learner, then a voter once caught up) and returns the new `CLUSTER` view.
    /// Safe to send again after a timeout or `unavailable`.
    pub async fn cluster_change(
        &self,
        change: esdb_protocol::ops::cluster::MemberChange,
    ) -> crate::Result<serde_json::Value> {
        match self
            .call(&esdb_protocol::Request::ClusterChange(change))
            .await?
        {
            esdb_protocol::Reply::Cluster { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(crate::Error::unexpected("CLUSTER", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAFT: &str = r#"{"applied_index":3,"checkpoint_index":null,"last_log_index":4,"leader_id":1,"node_id":1,"state":"leader","term":2,"from_the_future":true}"#;

    #[test]
    fn info_and_stats_carry_the_raft_group() {
        let info: ServerInfo = serde_json::from_str(&format!(
            r#"{{"stores":["default","odd"],"raft":{{"default":{RAFT},"odd":7}},"new_field":[1]}}"#
        ))
        .unwrap();
        let expected = RaftStatus {
            node_id: 1,
            state: "leader".into(),
            term: 2,
            leader_id: Some(1),
            last_log_index: 4,
            applied_index: 3,
            checkpoint_index: None,
        };
        assert_eq!(
            info.raft.len(),
            1,
            "a store whose status is not an object is left out"
        );
        assert_eq!(info.raft["default"], expected);
        let stats: Stats = serde_json::from_str(&format!(
            r#"{{"stores":{{"default":{{"events":1,"raft":{RAFT}}},"weird":{{"raft":"x"}},"old":{{}}}}}}"#
        ))
        .unwrap();
        assert_eq!(stats.stores["default"].raft.as_ref(), Some(&expected));
        assert_eq!(stats.stores["weird"].raft, None);
        assert_eq!(stats.stores["old"].raft, None);
        let old: ServerInfo = serde_json::from_str(r#"{"stores":["a"],"raft":null}"#).unwrap();
        assert!(old.raft.is_empty());
        assert_eq!(old.cluster, None);
        let node: ServerInfo = serde_json::from_str(
            r#"{"cluster":{"node_id":2,"leader_id":null,"members":[1,2],"client_urls":{"1":"h:1","2":"h:2"}}}"#,
        )
        .unwrap();
        let cluster = node.cluster.expect("cluster");
        assert_eq!((cluster.node_id, cluster.leader_id), (2, None));
        assert_eq!(cluster.client_urls["1"], "h:1");
        let odd: ServerInfo = serde_json::from_str(r#"{"cluster":"one"}"#).unwrap();
        assert_eq!(odd.cluster, None, "a cluster of another shape is left out");
        let electing: RaftStatus =
            serde_json::from_str(r#"{"state":"candidate","leader_id":null}"#).unwrap();
        assert_eq!(
            (electing.state.as_str(), electing.leader_id),
            ("candidate", None)
        );
    }
}
