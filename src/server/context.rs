//! State shared by every connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::{metrics, ConnectionMetrics, Transport};
use crate::raft::RaftStatus;
use crate::store::{Store, StoreStats, Stores};
use crate::subscriptions::SubscriptionHub;

/// Reads running at once on the blocking pool, server-wide. Each holds an LMDB reader slot and
/// a blocking thread; bounding them keeps both well under their limits.
pub const MAX_CONCURRENT_READS: usize = 64;

/// A live view of one store's Raft group.
pub type RaftWatch = tokio::sync::watch::Receiver<
    openraft::RaftMetrics<crate::raft::types::NodeId, openraft::BasicNode>,
>;

pub struct ServerContext {
    pub config: Config,
    /// Users, tokens and permissions (src/auth).
    pub auth: Arc<crate::auth::Auth>,
    /// Each store's subscription machinery (emitter pool, persistent groups).
    hubs: Mutex<BTreeMap<String, Arc<SubscriptionHub>>>,
    /// Taken out at shutdown so the stores can be closed once connections are gone.
    stores: Mutex<Option<Arc<Stores>>>,
    pub reads: Arc<Semaphore>,
    /// One permit per open client connection, TCP and WebSocket alike (`--max-connections`).
    pub connections: Arc<Semaphore>,
    /// Reply bytes built and not yet written, all connections (`--max-pending-bytes-total`).
    pub pending_reply_bytes: Arc<Semaphore>,
    /// Bytes of partly received payloads, all connections (`--max-read-bytes-in-flight`).
    pub read_bytes: Arc<Semaphore>,
    pub server_id: String,
    /// Each store's Raft group state, for `INFO` and `STATS`.
    raft: BTreeMap<String, RaftWatch>,
    tcp_metrics: ConnectionMetrics,
    ws_metrics: ConnectionMetrics,
    /// This node's cluster, when it is one of several (`--peers`).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The protocol port's bound address (`--listen` may say port 0), once listening.
    pub listening_on: Option<std::net::SocketAddr>,
}

impl ServerContext {
    /// Builds the context and starts each store's emitters (call inside the runtime).
    pub fn new(
        config: Config,
        auth: Arc<crate::auth::Auth>,
        stores: Stores,
        raft: BTreeMap<String, RaftWatch>,
    ) -> ServerContext {
        let hubs = stores
            .names()
            .into_iter()
            .map(|name| {
                let store = stores.get(&name).expect("listed").clone();
                (name, SubscriptionHub::start(store, config.emitters))
            })
            .collect();
        ServerContext {
            auth,
            hubs: Mutex::new(hubs),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            pending_reply_bytes: crate::server::outbound::ReplyBudget::server_pool(
                config.max_pending_bytes_total,
            ),
            read_bytes: crate::server::outbound::ReplyBudget::server_pool(
                config.max_read_bytes_in_flight,
            ),
            config,
            stores: Mutex::new(Some(Arc::new(stores))),
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
            tcp_metrics: metrics().connections(Transport::Tcp),
            ws_metrics: metrics().connections(Transport::Ws),
            server_id: uuid::Uuid::new_v4().simple().to_string(),
            raft,
            cluster: None,
            listening_on: None,
        }
    }

    /// Each store's Raft group: `{"<store>": {"node_id":…, "state":…, "term":…, …}}`.
    pub fn raft_status(&self) -> serde_json::Value {
        let by_store: serde_json::Map<String, serde_json::Value> = self
            .raft
            .iter()
            .map(|(name, watch)| {
                let status = RaftStatus::of(&watch.borrow());
                (
                    name.clone(),
                    serde_json::to_value(status).expect("status serialises"),
                )
            })
            .collect();
        serde_json::Value::Object(by_store)
    }

    pub fn store(&self, name: &str) -> Option<Arc<Store>> {
        self.stores
            .lock()
            .expect("stores mutex")
            .as_ref()?
            .get(name)
            .cloned()
    }

    pub fn hub(&self, name: &str) -> Option<Arc<SubscriptionHub>> {
        self.hubs.lock().expect("hubs mutex").get(name).cloned()
    }

    /// Pre-resolved connection metrics for a transport.
    pub fn connection_metrics(&self, transport: Transport) -> &ConnectionMetrics {
        match transport {
            Transport::Tcp => &self.tcp_metrics,
            Transport::Ws => &self.ws_metrics,
        }
    }

    /// Whether the stores are open (they are, from start until shutdown closes them).
    pub fn stores_open(&self) -> bool {
        self.stores.lock().expect("stores mutex").is_some()
    }

    /// Sets every store's LMDB size gauges; called when `/metrics` is scraped.
    pub fn refresh_storage_gauges(&self) {
        if let Some(stores) = self.stores.lock().expect("stores mutex").as_ref() {
            stores
                .iter()
                .for_each(|store| store.refresh_storage_gauges());
        }
    }

    /// `{"stores":{"<name>":{"streams":…,"events":…,"last_position":…,"subscriptions":…}}}`
    /// for `STATS` and `/stats`. Blocking (a read transaction per store).
    pub fn stats_json(&self) -> Result<Bytes, crate::store::StoreError> {
        let stores: Vec<Arc<Store>> = match self.stores.lock().expect("stores mutex").as_ref() {
            Some(stores) => stores.iter().cloned().collect(),
            None => return Err(crate::store::StoreError::ShuttingDown),
        };
        let mut by_name = serde_json::Map::new();
        for store in stores {
            let stats: StoreStats = store.stats()?;
            let mut value = serde_json::to_value(stats).expect("stats serialise");
            // Only a store with a quota shows one (no key: unlimited).
            if store.quota().limits() != crate::store::quota::QuotaLimits::default() {
                value["quota"] = store.quota().stats_json();
            }
            if let Some(watch) = self.raft.get(store.name()) {
                value["raft"] = serde_json::to_value(RaftStatus::of(&watch.borrow()))
                    .expect("status serialises");
            }
            by_name.insert(store.name().to_owned(), value);
        }
        let json = serde_json::json!({ "stores": by_name });
        Ok(Bytes::from(
            serde_json::to_vec(&json).expect("json serialises"),
        ))
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.config.ping_interval_ms)
    }

    /// The `INFO` JSON sent to every new connection.
    pub fn info_json(&self) -> Bytes {
        use esdb_protocol::limits::*;
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": "esdb",
            "version": env!("CARGO_PKG_VERSION"),
            "proto": esdb_protocol::PROTOCOL_VERSION,
            "max_payload": MAX_PAYLOAD_BYTES,
            "max_control_line": MAX_CONTROL_LINE_BYTES,
            "max_events_per_append": MAX_EVENTS_PER_APPEND,
            "max_read_count": MAX_READ_COUNT,
            // Store names are told only to those who may see them (after CONNECT, USE).
            "stores": if self.auth.enabled() { &[][..] } else { &self.config.stores[..] },
            "store": self.config.default_store(),
            "auth_required": self.auth.enabled(),
            "tls_required": self.config.tls_cert.is_some(),
            "ping_interval_ms": self.config.ping_interval_ms,
            "raft": if self.auth.enabled() { serde_json::json!({}) } else { self.raft_status() },
        });
        let mut info = info;
        if let Some(cluster) = &self.cluster {
            info["cluster"] = cluster.info_json(self.config.default_store());
        }
        Bytes::from(serde_json::to_vec(&info).expect("json serialises"))
    }

    /// `CLUSTER`: how this node sees each store's group (a single server: a group of one).
    pub fn cluster_json(&self) -> Bytes {
        let mut stores = serde_json::Map::new();
        for (name, watch) in &self.raft {
            let value = match &self.cluster {
                Some(cluster) => cluster.group_json(name, &watch.borrow()),
                None => crate::cluster::group_json(name, &watch.borrow(), &BTreeMap::new(), |_| {
                    Some(self.listening_on.unwrap_or(self.config.listen).to_string())
                }),
            };
            stores.insert(name.clone(), value);
        }
        let node_id = match &self.cluster {
            Some(cluster) => cluster.node_id(),
            None => crate::raft::node::SINGLE_NODE_ID,
        };
        let json = serde_json::json!({ "node_id": node_id, "stores": stores });
        Bytes::from(serde_json::to_vec(&json).expect("json serialises"))
    }

    /// What a read in `store` waits for first: on a cluster node, the leader's read index
    /// (`crate::cluster::reads`); a single node leads alone, and reads as before.
    pub fn linearizer(&self, store: &str) -> Option<crate::cluster::reads::Linearizer> {
        Some(self.cluster.as_ref()?.group(store)?.reads.clone())
    }

    /// Removes the stores for closing. Connections must be gone.
    pub fn take_stores(&self) -> Stores {
        self.hubs.lock().expect("hubs mutex").clear();
        let stores = self
            .stores
            .lock()
            .expect("stores mutex")
            .take()
            .expect("taken once");
        match Arc::try_unwrap(stores) {
            Ok(stores) => stores,
            Err(_) => unreachable!("only the context holds the Stores map"),
        }
    }
}
