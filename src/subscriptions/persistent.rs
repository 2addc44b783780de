//! Persistent (named) subscriptions: at-least-once delivery to competing consumers.
//!
//! A running subscription is a *group* task, started when its first consumer joins and
//! stopped when the last one leaves. It takes matching events from a [`feed`] starting at the
//! stored checkpoint and hands each to one consumer:
//!
//! - **Per-stream order.** While any event of a stream is in flight, later events of that
//!   stream go to the same consumer; otherwise a stream is assigned by hashing its id over the
//!   live consumers. So all events of one stream go to one consumer at a time, and streams
//!   move to other consumers when one joins or leaves (only between in-flight events).
//! - **Bounded in-flight window** per consumer (`max_in_flight`). Events wait in a bounded
//!   buffer ([`MAX_BUFFERED_EVENTS`]); when it is full the feed is not read (it falls back to
//!   storage later, losing nothing).
//! - **Acks** remove events from flight. An event not acked within `ack_timeout_ms`, nacked
//!   with `retry`, or in flight to a consumer that left, is delivered again; once delivered
//!   `1 + max_retries` times, a further failure parks it. `NACK skip` drops it, `NACK park`
//!   parks it at once. Parked events are stored and can be listed and replayed.
//! - **Checkpoint**: every matching event before it is done (acked, skipped or parked). It is
//!   saved with newly parked events in one command every [`CHECKPOINT_INTERVAL_MS`] and when
//!   the group stops. After a crash, delivery resumes from the saved checkpoint, so events
//!   acked in the last interval may be delivered again: at-least-once, never lost.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use esdb_protocol::ops::subscribe::{AckItem, NackAction};
use esdb_protocol::{ErrorCode, ProtocolError};

use crate::store::subscriptions::{
    self as stored, ParkedEvent, SubscriptionDefinition, REPLAY_REQUESTED,
};
use crate::store::{Command, CommittedEvent, Store, StoreError};
use crate::subscriptions::feed::{self, FeedItem};
use crate::subscriptions::history::read_matching;
use crate::subscriptions::selector::{Delivery as Matched, Matcher};
use crate::subscriptions::SubscriptionHub;

/// Matching events a group holds that are not yet in flight.
pub const MAX_BUFFERED_EVENTS: usize = 2048;
/// How often a group checks ack deadlines and saves its checkpoint.
pub const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// Parked events one `PSUB REPLAY` brings back into a running group at most (the rest stay
/// flagged and come back the next time).
pub const MAX_REPLAY_EVENTS: usize = 10_000;

pub type ConsumerId = u64;

/// One delivery to a consumer.
#[derive(Debug)]
pub struct Delivery {
    pub event: CommittedEvent,
    /// 1 for the first delivery.
    pub attempt: u32,
}

pub enum GroupMessage {
    Join {
        consumer: ConsumerId,
        deliveries: mpsc::Sender<Delivery>,
    },
    Leave {
        consumer: ConsumerId,
    },
    Ack {
        consumer: ConsumerId,
        items: Vec<AckItem>,
        reply: oneshot::Sender<()>,
    },
    Nack {
        consumer: ConsumerId,
        action: NackAction,
        items: Vec<AckItem>,
        reply: oneshot::Sender<()>,
    },
    Replay,
    Deleted,
}

/// How connections talk to a running group. The channel is unbounded so that joining (under
/// the registry lock) and leaving (from `Drop`) never wait; every message comes from a client
/// request, and each connection has at most `MAX_PIPELINED_REQUESTS` in flight.
#[derive(Clone)]
pub struct GroupHandle {
    control: mpsc::UnboundedSender<GroupMessage>,
    next_consumer: Arc<std::sync::atomic::AtomicU64>,
}

impl GroupHandle {
    pub fn send(&self, message: GroupMessage) -> bool {
        self.control.send(message).is_ok()
    }
}

/// A consumer's membership; leaving happens when it is dropped.
pub struct Membership {
    pub group: GroupHandle,
    pub consumer: ConsumerId,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.group.send(GroupMessage::Leave {
            consumer: self.consumer,
        });
    }
}

fn not_found(name: &str) -> StoreError {
    StoreError::Rejected(crate::store::Rejection::SubscriptionNotFound {
        name: name.to_owned(),
    })
}

/// Joins the named subscription as a consumer, starting its group if it is not running.
/// Deliveries arrive on `deliveries` (its capacity should be at least the window).
pub async fn join(
    hub: &Arc<SubscriptionHub>,
    name: &str,
    deliveries: mpsc::Sender<Delivery>,
) -> Result<Membership, StoreError> {
    let mut groups = hub.groups.lock().await;
    if let Some(group) = groups.get(name) {
        let consumer = group
            .next_consumer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if group.send(GroupMessage::Join {
            consumer,
            deliveries: deliveries.clone(),
        }) {
            return Ok(Membership {
                group: group.clone(),
                consumer,
            });
        }
        groups.remove(name);
    }
    let store = hub.store.clone();
    let load_name = name.to_owned();
    let loaded = tokio::task::spawn_blocking(move || {
        store.with_read(|txn, dbs| {
            let Some(state) = stored::load_state(txn, dbs, &load_name)? else {
                return Ok(None);
            };
            let replays: Vec<u64> =
                stored::parked(txn, dbs, &load_name, 0, MAX_REPLAY_EVENTS as u64)?
                    .into_iter()
                    .filter(|entry| entry.flag == REPLAY_REQUESTED)
                    .map(|entry| entry.position)
                    .collect();
            let replays = load_events(txn, dbs, &replays)?;
            Ok(Some((state.definition, state.checkpoint, replays)))
        })
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("loading subscription: {e}")))??;
    let Some((definition, checkpoint, replays)) = loaded else {
        return Err(not_found(name));
    };
    let (control, control_rx) = mpsc::unbounded_channel();
    let handle = GroupHandle {
        control,
        next_consumer: Arc::new(1.into()),
    };
    let matcher = Arc::new(Matcher::new(definition.selector.clone()));
    let feed = feed::spawn(hub.store.clone(), hub.emitters.clone(), matcher, checkpoint);
    let mut group = Group::new(hub.store.clone(), definition, checkpoint, feed);
    for event in replays {
        group.pending.insert(
            event.position,
            Pending {
                event,
                attempts: 0,
                replay: true,
            },
        );
    }
    let consumer = handle
        .next_consumer
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    handle.send(GroupMessage::Join {
        consumer,
        deliveries,
    });
    groups.insert(name.to_owned(), handle.clone());
    tokio::spawn(group.run(hub.clone(), control_rx));
    Ok(Membership {
        group: handle,
        consumer,
    })
}

/// Tells a running group its subscription was deleted or has replays waiting.
pub async fn notify(hub: &SubscriptionHub, name: &str, message: GroupMessage) {
    let mut groups = hub.groups.lock().await;
    if let GroupMessage::Deleted = message {
        // Unregister at once, so a subscription created again under the same name starts a
        // group of its own instead of joining the one that is stopping.
        if let Some(group) = groups.remove(name) {
            group.send(message);
        }
    } else if let Some(group) = groups.get(name) {
        group.send(message);
    }
}

fn load_events(
    txn: &heed::RoTxn,
    dbs: &crate::store::schema::Databases,
    positions: &[u64],
) -> Result<Vec<CommittedEvent>, StoreError> {
    let all = Matcher::new(esdb_protocol::ops::subscribe::Selector::Stream(
        "$all".into(),
    ));
    let mut events = Vec::with_capacity(positions.len());
    for &position in positions {
        let page = read_matching(txn, dbs, &all, position, Some(position + 1), 1)?;
        events.extend(page.events.into_iter().map(|delivery| delivery.event));
    }
    Ok(events)
}

struct Pending {
    event: CommittedEvent,
    /// Deliveries so far.
    attempts: u32,
    /// Replayed from the parked set: tracked there, not by the checkpoint.
    replay: bool,
}

struct InFlight {
    pending: Pending,
    consumer: ConsumerId,
    deadline: Instant,
}

struct Consumer {
    deliveries: mpsc::Sender<Delivery>,
    in_flight: usize,
}

struct Group {
    store: Arc<Store>,
    definition: SubscriptionDefinition,
    feed: mpsc::Receiver<FeedItem>,
    feed_ended: bool,
    /// Every matching event before this position has come from the feed.
    received_up_to: u64,
    pending: BTreeMap<u64, Pending>,
    in_flight: BTreeMap<u64, InFlight>,
    consumers: BTreeMap<ConsumerId, Consumer>,
    /// Streams with events in flight: their consumer and how many.
    stream_owners: HashMap<Arc<str>, (ConsumerId, usize)>,
    to_park: Vec<ParkedEvent>,
    to_unpark: Vec<u64>,
    saved_checkpoint: u64,
    deleted: bool,
}

impl Group {
    fn new(
        store: Arc<Store>,
        definition: SubscriptionDefinition,
        checkpoint: u64,
        feed: mpsc::Receiver<FeedItem>,
    ) -> Group {
        Group {
            store,
            definition,
            feed,
            feed_ended: false,
            received_up_to: checkpoint,
            pending: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            consumers: BTreeMap::new(),
            stream_owners: HashMap::new(),
            to_park: Vec::new(),
            to_unpark: Vec::new(),
            saved_checkpoint: checkpoint,
            deleted: false,
        }
    }

    async fn run(
        mut self,
        hub: Arc<SubscriptionHub>,
        mut control: mpsc::UnboundedReceiver<GroupMessage>,
    ) {
        let name = self.definition.name.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
        let mut saved = false;
        loop {
            let can_buffer = !self.feed_ended && self.pending.len() < MAX_BUFFERED_EVENTS;
            tokio::select! {
                message = control.recv() => match message {
                    Some(message) => self.handle(message),
                    None => break,
                },
                item = self.feed.recv(), if can_buffer => self.take_from_feed(item),
                _ = tick.tick() => {
                    self.expire(Instant::now());
                    self.save().await;
                }
            }
            if self.deleted {
                break;
            }
            self.dispatch();
            if self.consumers.is_empty() {
                // Stop unless someone joined meanwhile: joins are sent under the registry
                // lock, so checking the queue under it cannot miss one.
                let mut groups = hub.groups.lock().await;
                match control.try_recv() {
                    Ok(message) => {
                        drop(groups);
                        self.handle(message);
                        self.dispatch();
                        continue;
                    }
                    Err(_) => {
                        // Saved before it is unregistered, still under the registry lock: a
                        // consumer joining now starts a new group from this checkpoint, not
                        // from the one saved before (which would deliver acknowledged events
                        // again). Only this subscription's store's joins wait, for one write.
                        self.requeue_all_in_flight();
                        self.save().await;
                        groups.remove(&name);
                        saved = true;
                        break;
                    }
                }
            }
        }
        // A deleted group was unregistered by `notify`, and its state is gone.
        if !self.deleted && !saved {
            self.requeue_all_in_flight();
            self.save().await;
        }

        tracing::debug!(subscription = %name, "persistent subscription stopped");
    }

    fn handle(&mut self, message: GroupMessage) {
        match message {
            GroupMessage::Join {
                consumer,
                deliveries,
            } => {
                self.consumers.insert(
                    consumer,
                    Consumer {
                        deliveries,
                        in_flight: 0,
                    },
                );
            }
            GroupMessage::Leave { consumer } => self.leave(consumer),
            GroupMessage::Ack {
                consumer,
                items,
                reply,
            } => {
                for position in self.matching_in_flight(consumer, &items) {
                    let done = self.take_in_flight(position);
                    if done.replay {
                        self.to_unpark.push(position);
                    }
                }
                let _ = reply.send(());
            }
            GroupMessage::Nack {
                consumer,
                action,
                items,
                reply,
            } => {
                for position in self.matching_in_flight(consumer, &items) {
                    let event = self.take_in_flight(position);
                    match action {
                        NackAction::Retry => self.retry(event),
                        NackAction::Skip => {
                            if event.replay {
                                self.to_unpark.push(position);
                            }
                        }
                        NackAction::Park => self.park(event),
                    }
                }
                let _ = reply.send(());
            }
            GroupMessage::Replay => self.load_replays(),
            GroupMessage::Deleted => {
                self.deleted = true;
                self.consumers.clear();
            }
        }
    }

    fn take_from_feed(&mut self, item: Option<FeedItem>) {
        match item {
            Some(FeedItem::Event(Matched {
                event,
                unreadable: Some(reason),
            })) => {
                // Nothing can be delivered for it: park it at once, with the reason, so it
                // shows in PSUB PARKED and the checkpoint can move past it.
                self.received_up_to = event.position + 1;
                self.store.metrics().unreadable_events.inc();
                tracing::error!(
                    subscription = %self.definition.name,
                    position = event.position,
                    %reason,
                    "unreadable record parked"
                );
                self.to_unpark.retain(|p| *p != event.position);
                self.to_park.push(ParkedEvent {
                    position: event.position,
                    reason: Some(format!("unreadable: {reason}")),
                });
            }
            Some(FeedItem::Event(Matched { event, .. })) => {
                self.received_up_to = event.position + 1;
                self.pending.insert(
                    event.position,
                    Pending {
                        event,
                        attempts: 0,
                        replay: false,
                    },
                );
            }
            Some(FeedItem::Progress(position)) => {
                self.received_up_to = self.received_up_to.max(position)
            }
            Some(FeedItem::Live) => {}
            Some(FeedItem::Failed(error)) => {
                tracing::error!(subscription = %self.definition.name, %error, "feed failed");
                self.feed_ended = true;
            }
            None => self.feed_ended = true,
        }
    }

    fn matching_in_flight(&self, consumer: ConsumerId, items: &[AckItem]) -> Vec<u64> {
        self.in_flight
            .iter()
            .filter(|(position, flight)| {
                flight.consumer == consumer && items.iter().any(|item| item.contains(**position))
            })
            .map(|(position, _)| *position)
            .collect()
    }

    fn take_in_flight(&mut self, position: u64) -> Pending {
        let flight = self
            .in_flight
            .remove(&position)
            .expect("position is in flight");
        if let Some(consumer) = self.consumers.get_mut(&flight.consumer) {
            consumer.in_flight -= 1;
        }
        let stream = &flight.pending.event.stream;
        if let Some((_, count)) = self.stream_owners.get_mut(stream) {
            *count -= 1;
            if *count == 0 {
                self.stream_owners.remove(stream);
            }
        }
        flight.pending
    }

    /// Delivered `1 + max_retries` times already: park; otherwise deliver again.
    fn retry(&mut self, pending: Pending) {
        if pending.attempts > self.definition.options.max_retries {
            self.park(pending);
        } else {
            self.pending.insert(pending.event.position, pending);
        }
    }

    fn park(&mut self, pending: Pending) {
        tracing::info!(
            subscription = %self.definition.name,
            position = pending.event.position,
            attempts = pending.attempts,
            "event parked"
        );
        self.to_unpark.retain(|p| *p != pending.event.position);
        self.to_park.push(ParkedEvent {
            position: pending.event.position,
            reason: None,
        });
    }

    fn leave(&mut self, consumer: ConsumerId) {
        self.consumers.remove(&consumer);
        let theirs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.consumer == consumer)
            .map(|(position, _)| *position)
            .collect();
        for position in theirs {
            let pending = self.take_in_flight(position);
            self.pending.insert(position, pending);
        }
    }

    fn requeue_all_in_flight(&mut self) {
        let positions: Vec<u64> = self.in_flight.keys().copied().collect();
        for position in positions {
            let pending = self.take_in_flight(position);
            self.pending.insert(position, pending);
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.deadline <= now)
            .map(|(position, _)| *position)
            .collect();
        for position in expired {
            let pending = self.take_in_flight(position);
            self.retry(pending);
        }
    }

    fn load_replays(&mut self) {
        let (store, name) = (self.store.clone(), self.definition.name.clone());
        // A point read per event, from the page cache: short enough to run inline here.
        let loaded = store.with_read(|txn, dbs| {
            let flagged: Vec<u64> = stored::parked(txn, dbs, &name, 0, MAX_REPLAY_EVENTS as u64)?
                .into_iter()
                .filter(|entry| entry.flag == REPLAY_REQUESTED)
                .map(|entry| entry.position)
                .collect();
            load_events(txn, dbs, &flagged)
        });
        match loaded {
            Ok(events) => {
                for event in events {
                    let position = event.position;
                    if !self.pending.contains_key(&position)
                        && !self.in_flight.contains_key(&position)
                    {
                        self.pending.insert(
                            position,
                            Pending {
                                event,
                                attempts: 0,
                                replay: true,
                            },
                        );
                    }
                }
            }
            Err(error) => tracing::error!(%error, "loading parked events for replay"),
        }
    }

    /// Every matching event before this position is done (replays are tracked by the parked
    /// set instead).
    fn checkpoint(&self) -> u64 {
        let pending = self
            .pending
            .iter()
            .find(|(_, e)| !e.replay)
            .map(|(p, _)| *p);
        let flying = self
            .in_flight
            .iter()
            .find(|(_, f)| !f.pending.replay)
            .map(|(p, _)| *p);
        [pending, flying]
            .into_iter()
            .flatten()
            .fold(self.received_up_to, u64::min)
    }

    async fn save(&mut self) {
        let checkpoint = self.checkpoint().max(self.saved_checkpoint);
        if checkpoint == self.saved_checkpoint
            && self.to_park.is_empty()
            && self.to_unpark.is_empty()
        {
            return;
        }
        let command = Command::SaveSubscriptionState {
            name: self.definition.name.clone(),
            checkpoint,
            park: std::mem::take(&mut self.to_park),
            unpark: std::mem::take(&mut self.to_unpark),
        };
        match self.store.execute(command.clone()).await {
            Ok(_) => self.saved_checkpoint = checkpoint,
            Err(error) => {
                tracing::error!(subscription = %self.definition.name, %error, "saving checkpoint");
                if let Command::SaveSubscriptionState { park, unpark, .. } = command {
                    self.to_park.extend(park);
                    self.to_unpark.extend(unpark);
                }
            }
        }
    }

    fn pick_consumer(&self, stream: &str) -> Option<ConsumerId> {
        if self.consumers.is_empty() {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        stream.hash(&mut hasher);
        let index = (hasher.finish() % self.consumers.len() as u64) as usize;
        self.consumers.keys().nth(index).copied()
    }

    /// Hands buffered events to consumers with room, keeping each stream on one consumer
    /// while it has events in flight, and each stream's events in position order.
    fn dispatch(&mut self) {
        let window = self.definition.options.max_in_flight as usize;
        let ack_timeout = Duration::from_millis(self.definition.options.ack_timeout_ms);
        let mut blocked: HashSet<Arc<str>> = HashSet::new();
        let mut sent: Vec<u64> = Vec::new();
        let mut gone: Vec<ConsumerId> = Vec::new();
        for (position, pending) in &self.pending {
            if self.consumers.values().all(|c| c.in_flight >= window) {
                break;
            }
            let stream = &pending.event.stream;
            if blocked.contains(stream) {
                continue;
            }
            let owner = self.stream_owners.get(stream).map(|(owner, _)| *owner);
            let Some(chosen) = owner.or_else(|| self.pick_consumer(stream)) else {
                break;
            };
            let Some(consumer) = self.consumers.get(&chosen) else {
                blocked.insert(stream.clone());
                continue;
            };
            if consumer.in_flight >= window || gone.contains(&chosen) {
                // Later events of this stream must wait behind this one.
                blocked.insert(stream.clone());
                continue;
            }
            let delivery = Delivery {
                event: pending.event.clone(),
                attempt: pending.attempts + 1,
            };
            if consumer.deliveries.try_send(delivery).is_err() {
                gone.push(chosen);
                blocked.insert(stream.clone());
                continue;
            }
            sent.push(*position);
            let consumer = self.consumers.get_mut(&chosen).expect("present");
            consumer.in_flight += 1;
            self.stream_owners
                .entry(stream.clone())
                .or_insert((chosen, 0))
                .1 += 1;
            // Record the owner before the next event of the same stream is considered.
            let _ = self.stream_owners.get(stream);
        }
        let deadline = Instant::now() + ack_timeout;
        for position in sent {
            let mut pending = self.pending.remove(&position).expect("pending");
            let consumer = self.stream_owners[&pending.event.stream].0;
            pending.attempts += 1;
            self.in_flight.insert(
                position,
                InFlight {
                    pending,
                    consumer,
                    deadline,
                },
            );
        }
        for consumer in gone {
            self.leave(consumer);
        }
    }
}

/// Checks that a consumer may ack: it must be a persistent subscriber.
pub fn not_persistent(sid: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidArgument,
        format!(
            "subscription {sid} is not persistent: only persistent subscriptions take ACK and NACK"
        ),
    )
}
