//! State shared by every connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::store::{Store, Stores};
use crate::subscriptions::SubscriptionHub;

/// Reads running at once on the blocking pool, server-wide. Each holds an LMDB reader slot and
/// a blocking thread; bounding them keeps both well under their limits.
pub const MAX_CONCURRENT_READS: usize = 64;

pub struct ServerContext {
    pub config: Config,
    /// Each store's subscription machinery (emitter pool, persistent groups).
    hubs: Mutex<BTreeMap<String, Arc<SubscriptionHub>>>,
    /// Taken out at shutdown so the stores can be closed once connections are gone.
    stores: Mutex<Option<Arc<Stores>>>,
    pub reads: Arc<Semaphore>,
    pub server_id: String,
}

impl ServerContext {
    /// Builds the context and starts each store's emitters (call inside the runtime).
    pub fn new(config: Config, stores: Stores) -> ServerContext {
        let hubs = stores
            .names()
            .into_iter()
            .map(|name| {
                let store = stores.get(&name).expect("listed").clone();
                (name, SubscriptionHub::start(store, config.emitters))
            })
            .collect();
        ServerContext {
            hubs: Mutex::new(hubs),
            config,
            stores: Mutex::new(Some(Arc::new(stores))),
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
            server_id: uuid::Uuid::new_v4().simple().to_string(),
        }
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
            "stores": self.config.stores,
            "store": self.config.default_store(),
            "auth_required": false,
            "ping_interval_ms": self.config.ping_interval_ms,
        });
        Bytes::from(serde_json::to_vec(&info).expect("json serialises"))
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
