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

    /// Counts an active subscriber of this selector type until the returned guard is dropped.
    pub fn track_active(&self, selector: &esdb_protocol::ops::subscribe::Selector) -> Active {
        Active::new(self.store.metrics().clone(), selector)
    }

    /// Names of persistent subscriptions running now, with their consumer counts.
    pub async fn running_groups(&self) -> Vec<String> {
        self.groups.lock().await.keys().cloned().collect()
    }
}

/// One active subscriber in the `esdb_subscription_active_subscriptions` gauge, and the
/// delivery counters; the gauge goes down when this is dropped.
pub struct Active {
    metrics: Arc<crate::metrics::StoreMetrics>,
    kind: &'static str,
    delivered: u64,
}

/// Lag is observed on one delivery in this many (reading the head costs a lock).
const LAG_SAMPLE_EVERY_EVENTS: u64 = 64;

impl Active {
    fn new(
        metrics: Arc<crate::metrics::StoreMetrics>,
        selector: &esdb_protocol::ops::subscribe::Selector,
    ) -> Active {
        use esdb_protocol::ops::subscribe::{Selector, ALL_STREAMS};
        let kind = match selector {
            Selector::Stream(stream) if stream == ALL_STREAMS => "all",
            other => other.type_name(),
        };
        metrics.subscriptions.active(kind).inc();
        Active {
            metrics,
            kind,
            delivered: 0,
        }
    }

    /// Counts one delivered event, sampling the subscriber's lag behind `head`.
    pub fn delivered(&mut self, position: u64, head: impl FnOnce() -> u64) {
        let subscriptions = &self.metrics.subscriptions;
        subscriptions.events_delivered.inc();
        if self.delivered % LAG_SAMPLE_EVERY_EVENTS == 0 {
            subscriptions
                .lag_events
                .observe(head().saturating_sub(position + 1) as f64);
        }
        self.delivered += 1;
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.metrics.subscriptions.active(self.kind).dec();
    }
}
