//! What the server tells about itself: the `INFO` greeting and `STATS`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

impl crate::Client {
    /// `STATS`: counts of every store the server serves (it sees this client's earlier writes).
    pub async fn stats(&self) -> crate::Result<Stats> {
        match self.call(&esdb_protocol::Request::Stats).await? {
            esdb_protocol::Reply::Stats { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(crate::Error::unexpected("STATS", &other)),
        }
    }
}
