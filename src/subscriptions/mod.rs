//! Subscriptions: catch-up and persistent, fed from the commit path.
//!
//! - [`selector`]: what a subscription matches (the four selector types).
//! - [`history`]: reading matching events from storage (catch-up).
//! - [`emitter`]: the emitter pool fanning committed batches out to live subscribers.
//! - [`feed`]: history then live, without gap or duplicate, falling back to storage when slow.
//! - [`catchup`]: a connection's catch-up subscription (no name).
//! - [`persistent`]: named subscriptions with checkpoints, competing consumers, acks, retries
//!   and parking; their stored form is in `store::subscriptions`.

pub mod catchup;
pub mod emitter;
pub mod feed;
pub mod history;
pub mod persistent;
pub mod selector;

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::Store;
use emitter::EmitterPool;
use persistent::GroupHandle;

/// The subscription machinery of one store.
pub struct SubscriptionHub {
    pub store: Arc<Store>,
    pub emitters: Arc<EmitterPool>,
    /// Running persistent subscriptions (those with at least one consumer), by name. A tokio
    /// mutex: joining may await while holding it, so a group cannot stop mid-join.
    groups: tokio::sync::Mutex<HashMap<String, GroupHandle>>,
}

impl SubscriptionHub {
    /// Starts the store's emitter pool (`emitter_count` tasks).
    pub fn start(store: Arc<Store>, emitter_count: usize) -> Arc<SubscriptionHub> {
        let emitters = {
            let (batches, head) = (store.clone(), store.head());
            EmitterPool::start(emitter_count, move || batches.subscribe_committed(), head)
        };
        Arc::new(SubscriptionHub {
            store,
            emitters: Arc::new(emitters),
            groups: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Names of persistent subscriptions running now, with their consumer counts.
    pub async fn running_groups(&self) -> Vec<String> {
        self.groups.lock().await.keys().cloned().collect()
    }
}
