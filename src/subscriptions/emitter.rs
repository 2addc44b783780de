//! The emitter pool: fans committed events out to live subscribers.
//!
//! The writer publishes every committed batch once (a broadcast channel). Each emitter task
//! (a shard) receives every batch and serves its own share of the live subscribers: it looks
//! up candidates through an index (by stream id, by event type; only `$all`, pattern and
//! payload selectors are checked against every event), matches them, and pushes matches into
//! each subscriber's bounded queue with `try_send`. A subscriber is served by exactly one
//! shard, so it receives events in position order.
//!
//! Nothing here ever waits for a subscriber. When a subscriber's queue is full (it is slow),
//! the shard drops it from live delivery; its feed notices the closed queue and catches up from
//! storage, then registers again. When a shard itself falls behind the broadcast, it drops all
//! its subscribers the same way. Either way no event is lost: storage has them all.
//!
//! Registration returns a *boundary* position: the shard delivers every matching event at or
//! after it (and possibly some before it, which the feed skips); the feed reads from storage
//! everything before it. So the switch from history to live has no gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::store::CommittedBatch;
use crate::subscriptions::selector::{Candidate, Delivery, IndexKey, Matcher};

/// Events a live subscriber may have queued before it counts as slow and falls back to
/// catching up from storage.
pub const LIVE_QUEUE_EVENTS: usize = 1024;
/// Registration requests queued per shard.
const CONTROL_QUEUE_CAPACITY: usize = 1024;

pub type SubscriberId = u64;

enum Control {
    Register {
        id: SubscriberId,
        matcher: Arc<Matcher>,
        queue: mpsc::Sender<Delivery>,
        reply: oneshot::Sender<u64>,
    },
    Unregister {
        id: SubscriberId,
    },
}

/// Handles to the emitter shards of one store.
pub struct EmitterPool {
    shards: Vec<mpsc::Sender<Control>>,
    next_id: AtomicU64,
}

impl EmitterPool {
    /// Starts `shard_count` emitter tasks fed by `batches`. They end when the store closes.
    pub fn start(
        shard_count: usize,
        batches: impl Fn() -> broadcast::Receiver<Arc<CommittedBatch>>,
        head: watch::Receiver<u64>,
    ) -> EmitterPool {
        assert!(shard_count > 0, "at least one emitter");
        let shards = (0..shard_count)
            .map(|_| {
                let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_CAPACITY);
                // Subscribe before reading the head: every batch not covered by the head
                // read is then received (the writer moves the head before publishing).
                let receiver = batches();
                let processed_up_to = *head.borrow();
                let shard = Shard {
                    subscribers: HashMap::new(),
                    by_stream: HashMap::new(),
                    by_type: HashMap::new(),
                    scanned: Vec::new(),
                    processed_up_to,
                };
                tokio::spawn(shard.run(control_rx, receiver, head.clone()));
                control
            })
            .collect();
        EmitterPool {
            shards,
            next_id: AtomicU64::new(1),
        }
    }

    /// Registers a live subscriber. Returns its id and the boundary (see the module doc), or
    /// `None` if the store is closing.
    pub async fn register(
        &self,
        matcher: Arc<Matcher>,
        queue: mpsc::Sender<Delivery>,
    ) -> Option<(SubscriberId, u64)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shard = &self.shards[(id as usize) % self.shards.len()];
        let (reply, boundary) = oneshot::channel();
        shard
            .send(Control::Register {
                id,
                matcher,
                queue,
                reply,
            })
            .await
            .ok()?;
        Some((id, boundary.await.ok()?))
    }

    /// Removes a subscriber (dropping its queue's receiver does so too, at the next match).
    pub fn unregister(&self, id: SubscriberId) {
        let shard = &self.shards[(id as usize) % self.shards.len()];
        let _ = shard.try_send(Control::Unregister { id });
    }
}

struct LiveSubscriber {
    matcher: Arc<Matcher>,
    queue: mpsc::Sender<Delivery>,
    index_key: IndexKey,
}

struct Shard {
    subscribers: HashMap<SubscriberId, LiveSubscriber>,
    by_stream: HashMap<String, Vec<SubscriberId>>,
    by_type: HashMap<String, Vec<SubscriberId>>,
    scanned: Vec<SubscriberId>,
    /// Every batch before this position has been processed.
    processed_up_to: u64,
}

impl Shard {
    async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut batches: broadcast::Receiver<Arc<CommittedBatch>>,
        head: watch::Receiver<u64>,
    ) {
        loop {
            tokio::select! {
                biased;
                message = control.recv() => match message {
                    Some(message) => self.handle_control(message),
                    None => return,
                },
                batch = batches.recv() => match batch {
                    Ok(batch) => self.deliver(&batch),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "emitter fell behind; subscribers catch up from storage");
                        self.drop_everyone();
                        // Resubscribe, then read the head: batches published from now on are
                        // received, and the head covers every one before.
                        batches = batches.resubscribe();
                        self.processed_up_to = self.processed_up_to.max(*head.borrow());
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    fn handle_control(&mut self, message: Control) {
        match message {
            Control::Register {
                id,
                matcher,
                queue,
                reply,
            } => {
                let index_key = matcher.index_key();
                match &index_key {
                    IndexKey::Stream(stream) => {
                        self.by_stream.entry(stream.clone()).or_default().push(id)
                    }
                    IndexKey::Types(types) => {
                        for event_type in types {
                            self.by_type.entry(event_type.clone()).or_default().push(id);
                        }
                    }
                    IndexKey::Scan => self.scanned.push(id),
                }
                self.subscribers.insert(
                    id,
                    LiveSubscriber {
                        matcher,
                        queue,
                        index_key,
                    },
                );
                let _ = reply.send(self.processed_up_to);
            }
            Control::Unregister { id } => self.remove(id),
        }
    }

    fn remove(&mut self, id: SubscriberId) {
        let Some(subscriber) = self.subscribers.remove(&id) else {
            return;
        };
        let unlist = |map: &mut HashMap<String, Vec<SubscriberId>>, key: &str| {
            if let Some(ids) = map.get_mut(key) {
                ids.retain(|other| *other != id);
                if ids.is_empty() {
                    map.remove(key);
                }
            }
        };
        match subscriber.index_key {
            IndexKey::Stream(stream) => unlist(&mut self.by_stream, &stream),
            IndexKey::Types(types) => {
                for event_type in types {
                    unlist(&mut self.by_type, &event_type);
                }
            }
            IndexKey::Scan => self.scanned.retain(|other| *other != id),
        }
    }

    fn drop_everyone(&mut self) {
        self.subscribers.clear();
        self.by_stream.clear();
        self.by_type.clear();
        self.scanned.clear();
    }

    fn deliver(&mut self, batch: &CommittedBatch) {
        let mut slow: Vec<SubscriberId> = Vec::new();
        if !self.subscribers.is_empty() {
            for event in &batch.events {
                let candidate = Candidate::new(event);
                let by_stream = self.by_stream.get(&*event.stream).map(Vec::as_slice);
                let by_type = self.by_type.get(&*event.event_type).map(Vec::as_slice);
                let candidates = by_stream
                    .unwrap_or_default()
                    .iter()
                    .chain(by_type.unwrap_or_default())
                    .chain(&self.scanned);
                for id in candidates {
                    let Some(subscriber) = self.subscribers.get(id) else {
                        continue;
                    };
                    if slow.contains(id) {
                        continue;
                    }
                    let Some(delivery) = subscriber.matcher.delivery(&candidate) else {
                        continue;
                    };
                    // Full (slow) or closed (gone): either way it leaves live delivery.
                    if subscriber.queue.try_send(delivery).is_err() {
                        slow.push(*id);
                    }
                }
            }
        }
        for id in slow {
            self.remove(id);
        }
        if let Some(end) = batch.end_position() {
            self.processed_up_to = self.processed_up_to.max(end);
        }
    }
}
