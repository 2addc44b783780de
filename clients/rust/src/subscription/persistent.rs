//! Persistent subscriptions: named, checkpointed by the server, delivered at least once until
//! acknowledged. This side remembers what its consumer holds and what it settled, so that the
//! events the server delivers again after a reconnect (those not yet acknowledged, or whose
//! acknowledgement the server had not saved when it crashed) are not yielded twice: a held
//! event is waited for, an acknowledged or skipped one is settled again on the new
//! subscription. Parked and retried events are yielded again when they come back (a retry or
//! `PSUB REPLAY` asks for exactly that).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use esdb_protocol::limits::MAX_ACK_ITEMS;
use esdb_protocol::ops::subscribe::{
    validate_name, AckItem, NackAction, Selector, SubscriptionOptions,
};
use esdb_protocol::{ErrorCode, Reply, Request};
use futures::future::BoxFuture;
use futures::Stream;

use super::{Attached, Spec};
use crate::client::Client;
use crate::connection::{encode, Connection, Overflow, Push};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// Settled positions remembered to recognise redeliveries; the oldest are forgotten first
/// (they are long behind the server's checkpoint).
const MAX_REMEMBERED_SETTLEMENTS: usize = 65_536;
/// Events buffered per persistent subscription beyond its in-flight window: room for
/// redeliveries of events the consumer still holds.
const BUFFER_HEADROOM_EVENTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    Ack,
    Skip,
}

#[derive(Default)]
struct Settlements {
    /// The connection and sid deliveries come on now.
    current: Option<(Arc<Connection>, String)>,
    /// Yielded to the consumer, not yet settled.
    holding: BTreeSet<u64>,
    /// Acknowledged or skipped by the consumer.
    settled: BTreeMap<u64, Settlement>,
}

/// A persistent subscription: a `Stream` of events to acknowledge with [`Self::ack`] or
/// [`Self::nack`] (or an [`Acker`] from [`Self::acker`], to do so from another task).
pub struct PersistentSubscription {
    client: Client,
    name: String,
    spec: Spec,
    state: Arc<Mutex<Settlements>>,
    rx: Option<tokio::sync::mpsc::Receiver<Push>>,
    /// Bytes buffered in `rx` (counted by the reader; not limited: the window bounds them).
    buffered_bytes: Arc<std::sync::atomic::AtomicUsize>,
    reattach: Option<BoxFuture<'static, Result<Attached>>>,
    finished: bool,
    resumes: u64,
}

impl Client {
    /// Joins the persistent subscription `name`, creating it with `selector` and `options` the
    /// first time; later joins must name the same selector (else `subscription_conflict`) and
    /// get its stored options. Several joins of one name share its events.
    pub async fn subscribe_persistent(
        &self,
        name: &str,
        selector: Selector,
        options: SubscriptionOptions,
    ) -> Result<PersistentSubscription> {
        let name = validate_name(name).map_err(Error::invalid)?;
        // A subscription that exists keeps the options it was created with: size the buffer
        // for its window, not the one asked for now.
        let max_in_flight = match self.persistent_subscriptions().get(&name).await {
            Ok(info) => info.options.max_in_flight,
            Err(error) if error.code() == Some(ErrorCode::SubscriptionNotFound) => {
                options.max_in_flight
            }
            Err(error) => return Err(error),
        };
        let spec = Spec {
            selector,
            name: Some(name.clone()),
            options,
            capacity: max_in_flight as usize + BUFFER_HEADROOM_EVENTS,
            overflow: Overflow::Drop,
        };
        let attached = self.attach(&spec).await?;
        let state = Settlements {
            current: Some((attached.connection.clone(), attached.sid.clone())),
            ..Settlements::default()
        };
        Ok(PersistentSubscription {
            client: self.clone(),
            name,
            spec,
            state: Arc::new(Mutex::new(state)),
            rx: Some(attached.rx),
            buffered_bytes: attached.buffered_bytes,
            reattach: None,
            finished: false,
            resumes: 0,
        })
    }
}

impl PersistentSubscription {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times the subscription joined again after a lost connection.
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// Acknowledges an event: it will not be delivered again.
    pub async fn ack(&self, event: &RecordedEvent) -> Result<()> {
        self.acker().ack(event).await
    }

    /// Asks for an event to be retried, skipped or parked.
    pub async fn nack(&self, event: &RecordedEvent, action: NackAction) -> Result<()> {
        self.acker().nack(event, action).await
    }

    /// A handle that acknowledges events of this subscription from anywhere.
    pub fn acker(&self) -> Acker {
        Acker {
            state: self.state.clone(),
            request_timeout_ms: self.client.options().request_timeout_ms,
        }
    }

    /// Leaves the subscription (it stays on the server; its unacknowledged events go to its
    /// other consumers, or wait for the next one).
    pub async fn unsubscribe(mut self) -> Result<()> {
        self.finished = true;
        self.rx = None;
        let current = self.state.lock().expect("settlements lock").current.take();
        let Some((connection, sid)) = current else {
            return Ok(());
        };
        connection.remove_route(&sid);
        match connection
            .request(encode(&Request::Unsubscribe { sid }))
            .await
        {
            Ok(Reply::Ok) | Err(Error::Disconnected(_)) => Ok(()),
            Ok(Reply::Err(error)) if error.code == ErrorCode::SubscriptionNotFound => Ok(()),
            Ok(Reply::Err(error)) => Err(Error::server(error)),
            Ok(other) => Err(Error::unexpected("UNSUB", &other)),
            Err(error) => Err(error),
        }
    }

    fn start_reattach(&mut self) {
        let client = self.client.clone();
        let spec = self.spec.clone();
        self.resumes += 1;
        self.reattach = Some(Box::pin(async move { client.attach(&spec).await }));
    }

    /// What to do with a delivery: `None` to skip it (held or settled already).
    fn admit(&self, position: u64) -> bool {
        let mut state = self.state.lock().expect("settlements lock");
        if state.holding.contains(&position) {
            // Delivered again while the consumer still has it (after a reconnect or an ack
            // timeout): its settlement will go to the current subscription.
            return false;
        }
        if let Some(settlement) = state.settled.get(&position).copied() {
            // Settled, but the server did not get (or did not save) it: settle it again.
            if let Some((connection, sid)) = &state.current {
                connection.send_discarding(encode(&settle_request(
                    sid,
                    settlement_action(settlement),
                    vec![AckItem::Position(position)],
                )));
            }
            return false;
        }
        state.holding.insert(position);
        true
    }
}

impl Stream for PersistentSubscription {
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(reattach) = this.reattach.as_mut() {
                match reattach.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(attached)) => {
                        this.reattach = None;
                        this.state.lock().expect("settlements lock").current =
                            Some((attached.connection, attached.sid));
                        this.rx = Some(attached.rx);
                        this.buffered_bytes = attached.buffered_bytes;
                    }
                    Poll::Ready(Err(error)) => {
                        this.reattach = None;
                        this.finished = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            let Some(rx) = this.rx.as_mut() else {
                this.start_reattach();
                continue;
            };
            match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Push::Event { position, body })) => {
                    this.buffered_bytes
                        .fetch_sub(body.len(), std::sync::atomic::Ordering::AcqRel);
                    if !this.admit(position) {
                        continue;
                    }
                    let event = serde_json::from_slice::<RecordedEvent>(&body).map_err(Error::from);
                    return Poll::Ready(Some(event));
                }
                // The server parks such an event for a persistent subscription instead (see
                // `parked`); should one be reported anyway, it is an error item, not a silence.
                Poll::Ready(Some(Push::Unreadable(unreadable))) => {
                    return Poll::Ready(Some(Err(Error::Server {
                        code: ErrorCode::UnreadableEvent,
                        message: unreadable.to_string(),
                    })));
                }
                Poll::Ready(Some(Push::Live)) => {}
                Poll::Ready(None) => {
                    // The connection closed: join again under a new sid; the server delivers
                    // from the checkpoint, and what the consumer holds or settled is skipped.
                    this.rx = None;
                    this.state.lock().expect("settlements lock").current = None;
                    this.start_reattach();
                }
            }
        }
    }
}

impl Drop for PersistentSubscription {
    fn drop(&mut self) {
        let current = match self.state.lock() {
            Ok(mut state) => state.current.take(),
            Err(_) => None,
        };
        if let Some((connection, sid)) = current {
            connection.unsubscribe_quietly(&sid);
        }
    }
}

/// Acknowledges events of one persistent subscription; cheap to clone.
///
/// A settlement is remembered before it is sent, so one that a lost connection swallowed is
/// sent again when the server delivers the event again: the calls succeed in that case.
#[derive(Clone)]
pub struct Acker {
    state: Arc<Mutex<Settlements>>,
    request_timeout_ms: u64,
}

impl Acker {
    pub async fn ack(&self, event: &RecordedEvent) -> Result<()> {
        self.settle(&[event.position], None).await
    }

    /// Acknowledges events by position.
    pub async fn ack_positions(&self, positions: &[u64]) -> Result<()> {
        self.settle(positions, None).await
    }

    pub async fn nack(&self, event: &RecordedEvent, action: NackAction) -> Result<()> {
        self.settle(&[event.position], Some(action)).await
    }

    pub async fn nack_positions(&self, positions: &[u64], action: NackAction) -> Result<()> {
        self.settle(positions, Some(action)).await
    }

    /// `action`: `None` acknowledges.
    async fn settle(&self, positions: &[u64], action: Option<NackAction>) -> Result<()> {
        let current = {
            let mut state = self.state.lock().expect("settlements lock");
            for &position in positions {
                state.holding.remove(&position);
                match settlement(action) {
                    Some(settlement) => {
                        state.settled.insert(position, settlement);
                    }
                    None => {
                        state.settled.remove(&position);
                    }
                }
            }
            while state.settled.len() > MAX_REMEMBERED_SETTLEMENTS {
                state.settled.pop_first();
            }
            state.current.clone()
        };
        let Some((connection, sid)) = current else {
            // Between connections: settled when the server delivers the events again.
            return Ok(());
        };
        let timeout = Duration::from_millis(self.request_timeout_ms);
        for items in ack_items(positions).chunks(MAX_ACK_ITEMS) {
            let request = settle_request(&sid, action, items.to_vec());
            match tokio::time::timeout(timeout, connection.request(encode(&request))).await {
                Ok(Ok(Reply::Ok)) => {}
                // The sid ended meanwhile (the subscription joined again): the redelivery on
                // the new one is settled from memory.
                Ok(Ok(Reply::Err(error))) if error.code == ErrorCode::SubscriptionNotFound => {}
                Ok(Ok(Reply::Err(error))) => return Err(Error::server(error)),
                Ok(Ok(other)) => return Err(Error::unexpected(request.operation(), &other)),
                Ok(Err(_)) => {}
                Err(_) => connection.close("an ACK reply timed out"),
            }
        }
        Ok(())
    }
}

/// What to remember of a settlement. A retry should come back, and so should a parked event
/// (`PSUB REPLAY` delivers it again, from whichever client asked), so neither is remembered.
fn settlement(action: Option<NackAction>) -> Option<Settlement> {
    match action {
        None => Some(Settlement::Ack),
        Some(NackAction::Skip) => Some(Settlement::Skip),
        Some(NackAction::Park | NackAction::Retry) => None,
    }
}

fn settlement_action(settlement: Settlement) -> Option<NackAction> {
    match settlement {
        Settlement::Ack => None,
        Settlement::Skip => Some(NackAction::Skip),
    }
}

fn settle_request(sid: &str, action: Option<NackAction>, positions: Vec<AckItem>) -> Request {
    let sid = sid.to_owned();
    match action {
        None => Request::Ack { sid, positions },
        Some(action) => Request::Nack {
            sid,
            action,
            positions,
        },
    }
}

/// Positions as few `ACK` items as possible: consecutive runs become ranges.
fn ack_items(positions: &[u64]) -> Vec<AckItem> {
    let mut sorted = positions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut items = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    for position in sorted {
        run = match run {
            Some((low, high)) if high + 1 == position => Some((low, position)),
            Some(done) => {
                items.push(run_item(done));
                Some((position, position))
            }
            None => Some((position, position)),
        };
    }
    items.extend(run.map(run_item));
    items
}

fn run_item((low, high): (u64, u64)) -> AckItem {
    if low == high {
        AckItem::Position(low)
    } else {
        AckItem::Range(low, high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_ranges() {
        assert_eq!(
            ack_items(&[5, 1, 2, 3, 9, 10, 3]),
            vec![
                AckItem::Range(1, 3),
                AckItem::Position(5),
                AckItem::Range(9, 10)
            ]
        );
        assert!(ack_items(&[]).is_empty());
    }
}
