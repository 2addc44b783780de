//! The subscription operations of a connection: `SUB`, `UNSUB`, `ACK`, `NACK` and `PSUB`.
//!
//! Each subscription of a connection is a task pushing `EVENT`s into the connection's outbound
//! queue; it starts only after its `SUB`'s `+OK` has been queued, so no `EVENT` overtakes it.
//! Closing the connection or `UNSUB` aborts the task; a persistent consumer then leaves its
//! group, and its unacked events go to the other consumers.
//!
//! The operations of one connection take effect in the order it sent them, as its replies
//! come: each waits for the effect of the one before it ([`Subscriptions::in_order`]), so a
//! pipelined `ACK` then `UNSUB` acknowledges before leaving, and `PSUB LIST` after a named `SUB`
//! lists it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use esdb_protocol::limits::MAX_READ_REPLY_BYTES;
use esdb_protocol::ops::psub::PsubOp;
use esdb_protocol::ops::subscribe::{AckItem, NackAction, SubscribeRequest};
use esdb_protocol::{ErrorCode, ProtocolError, Reply};

use crate::server::session::{Dispatched, Session};
use crate::store::subscriptions::{self as stored, SubscriptionDefinition};
use crate::store::{Command, StoreError};
use crate::subscriptions::catchup::{self, event_reply};
use crate::subscriptions::persistent::{self, ConsumerId, GroupHandle, GroupMessage};
use crate::subscriptions::selector::Matcher;

/// Subscriptions one connection may hold at once.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 256;

type Setup = Shared<BoxFuture<'static, Result<(GroupHandle, ConsumerId), ProtocolError>>>;

/// A subscription of this connection, by sid.
pub struct SubscriptionEntry {
    task: JoinHandle<()>,
    /// For persistent subscriptions: resolves to the group and consumer once joined.
    setup: Option<Setup>,
}

/// Resolves once a subscription operation has taken effect (its reply is decided).
type Effect = Shared<BoxFuture<'static, ()>>;

/// The subscriptions of one connection; aborted when dropped (the connection closed).
#[derive(Default)]
pub struct Subscriptions {
    by_sid: HashMap<String, SubscriptionEntry>,
    /// The effect of the connection's latest subscription operation.
    last_effect: Option<Effect>,
}

impl Subscriptions {
    /// The effect the next operation waits for, and records that operation's own: `reply`
    /// resolves once it has taken effect. Each effect holds only the one before it, until it
    /// resolves, so the chain stays as short as the operations in flight.
    fn in_order(&mut self, reply: BoxFuture<'static, Reply>) -> BoxFuture<'static, Reply> {
        let reply = reply.shared();
        self.last_effect = Some(reply.clone().map(|_| ()).boxed().shared());
        reply.boxed()
    }

    /// Resolves when the latest operation has taken effect (at once if there is none).
    fn previous(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let previous = self.last_effect.clone();
        async move {
            if let Some(previous) = previous {
                previous.await;
            }
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for entry in self.by_sid.values() {
            entry.task.abort();
        }
    }
}

fn ready(reply: Reply) -> Dispatched {
    Dispatched::Reply(futures::future::ready(reply).boxed())
}

fn error(code: ErrorCode, message: String) -> Dispatched {
    ready(Reply::Err(ProtocolError::new(code, message)))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub fn subscribe(session: &mut Session, request: SubscribeRequest) -> Dispatched {
    let hub = session.hub.clone();
    let outbound = session.outbound.clone();
    let scope = session.subscription_scope.take();
    if let Some(existing) = session.subscriptions.by_sid.get(&request.sid) {
        if !existing.task.is_finished() {
            return error(
                ErrorCode::SubscriptionConflict,
                format!("sid {} is already in use on this connection", request.sid),
            );
        }
    }
    session
        .subscriptions
        .by_sid
        .retain(|_, entry| !entry.task.is_finished());
    if session.subscriptions.by_sid.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
        return error(
            ErrorCode::InvalidArgument,
            format!("at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection"),
        );
    }
    // Held by the subscription's task: the store's count goes down when the task ends.
    let slot = match hub.store.quota().subscribe() {
        Ok(slot) => slot,
        Err(refusal) => {
            return crate::server::session::ready(Reply::Err(
                StoreError::Quota(refusal).to_protocol_error(),
            ))
        }
    };
    let (go, go_rx) = oneshot::channel();
    let sid = request.sid.clone();
    let matcher = Matcher::new(request.selector.clone()).scoped(scope);
    crate::telemetry::subscription_created(
        hub.store.name(),
        request.selector.type_name(),
        &request.selector.text(),
        request.name.as_deref().unwrap_or(""),
    );
    let (entry, reply) = match request.name.clone() {
        None => {
            let task = catchup::start(
                &hub,
                sid.clone(),
                matcher,
                request.options.start,
                outbound,
                go_rx,
                slot,
            );
            let entry = SubscriptionEntry { task, setup: None };
            (entry, futures::future::ready(Reply::Ok).boxed())
        }
        Some(name) => {
            let (setup_tx, setup_rx) = oneshot::channel();
            let previous = session.subscriptions.previous();
            let task = tokio::spawn(async move {
                let _slot = slot;
                previous.await;
                run_consumer(hub, outbound, request, name, setup_tx, go_rx).await;
            });
            let setup: Setup = setup_rx
                .map(|result| {
                    result.unwrap_or_else(|_| {
                        Err(ProtocolError::new(
                            ErrorCode::Internal,
                            "subscription setup failed",
                        ))
                    })
                })
                .boxed()
                .shared();
            let reply = setup
                .clone()
                .map(|result| match result {
                    Ok(_) => Reply::Ok,
                    Err(error) => Reply::Err(error),
                })
                .boxed();
            (
                SubscriptionEntry {
                    task,
                    setup: Some(setup),
                },
                reply,
            )
        }
    };
    session.subscriptions.by_sid.insert(sid, entry);
    let reply = session.subscriptions.in_order(reply);
    Dispatched::ReplyThen(reply, go)
}

/// A persistent consumer: ensure the subscription exists, join its group, then forward its
/// deliveries once `go` fires. Leaving the group happens when this task ends or is aborted
/// (the membership is dropped).
async fn run_consumer(
    hub: Arc<crate::subscriptions::SubscriptionHub>,
    outbound: crate::server::outbound::Outbound,
    request: SubscribeRequest,
    name: String,
    setup: oneshot::Sender<Result<(GroupHandle, ConsumerId), ProtocolError>>,
    go: oneshot::Receiver<()>,
) {
    let mut active = hub.track_active(&request.selector);
    let definition = SubscriptionDefinition {
        name: name.clone(),
        selector: request.selector,
        options: request.options,
        created_epoch_us: now_us(),
    };
    if let Err(e) = hub
        .store
        .execute(Command::CreateSubscription(definition))
        .await
    {
        let _ = setup.send(Err(e.to_protocol_error()));
        return;
    }
    // The group never has more than the stored window in flight to one consumer, and the
    // window is at most the limit, so this channel never fills.
    let capacity = esdb_protocol::limits::MAX_IN_FLIGHT_LIMIT as usize + 1;
    let (deliveries, mut delivered) = mpsc::channel(capacity);
    let membership = match persistent::join(&hub, &name, deliveries).await {
        Ok(membership) => membership,
        Err(e) => {
            let _ = setup.send(Err(e.to_protocol_error()));
            return;
        }
    };
    let _ = setup.send(Ok((membership.group.clone(), membership.consumer)));
    if go.await.is_err() {
        return;
    }
    while let Some(delivery) = delivered.recv().await {
        active.delivered(delivery.event.position, || *hub.store.head().borrow());
        if outbound
            .send(event_reply(&request.sid, delivery.event))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(membership);
}

pub fn unsubscribe(session: &mut Session, sid: &str) -> Dispatched {
    match session.subscriptions.by_sid.remove(sid) {
        Some(entry) => {
            // The sid is free at once; the subscription stops once the operations sent
            // before this one have taken effect (an `ACK` just before it counts).
            let previous = session.subscriptions.previous();
            let stopped = async move {
                previous.await;
                entry.task.abort();
                Reply::Ok
            };
            Dispatched::Reply(session.subscriptions.in_order(stopped.boxed()))
        }
        None => error(
            ErrorCode::SubscriptionNotFound,
            format!("no subscription {sid} here"),
        ),
    }
}

fn persistent_setup(session: &Session, sid: &str) -> Result<Setup, ProtocolError> {
    let entry = session.subscriptions.by_sid.get(sid).ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::SubscriptionNotFound,
            format!("no subscription {sid} here"),
        )
    })?;
    entry
        .setup
        .clone()
        .ok_or_else(|| persistent::not_persistent(sid))
}

pub fn ack(session: &mut Session, sid: &str, items: Vec<AckItem>) -> Dispatched {
    to_group(session, sid, move |consumer, reply| GroupMessage::Ack {
        consumer,
        items,
        reply,
    })
}

pub fn nack(
    session: &mut Session,
    sid: &str,
    action: NackAction,
    items: Vec<AckItem>,
) -> Dispatched {
    to_group(session, sid, move |consumer, reply| GroupMessage::Nack {
        consumer,
        action,
        items,
        reply,
    })
}

fn to_group(
    session: &mut Session,
    sid: &str,
    message: impl FnOnce(ConsumerId, oneshot::Sender<()>) -> GroupMessage + Send + 'static,
) -> Dispatched {
    let setup = match persistent_setup(session, sid) {
        Ok(setup) => setup,
        Err(e) => return ready(Reply::Err(e)),
    };
    let previous = session.subscriptions.previous();
    Dispatched::Reply(
        session.subscriptions.in_order(
            async move {
                previous.await;
                let (group, consumer) = match setup.await {
                    Ok(joined) => joined,
                    Err(error) => return Reply::Err(error),
                };
                let (reply, done) = oneshot::channel();
                if !group.send(message(consumer, reply)) || done.await.is_err() {
                    return Reply::error(
                        ErrorCode::SubscriptionNotFound,
                        "the subscription stopped",
                    );
                }
                Reply::Ok
            }
            .boxed(),
        ),
    )
}

/// `PSUB` management operations.
pub fn psub(session: &mut Session, op: PsubOp) -> Dispatched {
    let hub = session.hub.clone();
    let previous = session.subscriptions.previous();
    Dispatched::Reply(
        session.subscriptions.in_order(
            async move {
                previous.await;
                let result = match op {
                    PsubOp::List => {
                        read(&hub, |txn, dbs| {
                            let states = stored::list(txn, dbs)?;
                            let body = serde_json::to_vec(&states).expect("serialises");
                            Ok(Reply::Subs {
                                count: states.len() as u64,
                                body: Bytes::from(body),
                            })
                        })
                        .await
                    }
                    PsubOp::Get { name } => {
                        read(&hub, move |txn, dbs| {
                            let state = stored::load_state(txn, dbs, &name)?
                                .ok_or_else(|| not_found(&name))?;
                            let body = serde_json::to_vec(&state).expect("serialises");
                            Ok(Reply::SubInfo {
                                body: Bytes::from(body),
                            })
                        })
                        .await
                    }
                    PsubOp::Exists { name } => {
                        read(&hub, move |txn, dbs| {
                            let exists = stored::load_definition(txn, dbs, &name)?.is_some();
                            Ok(Reply::SubExists { name, exists })
                        })
                        .await
                    }
                    PsubOp::Parked {
                        name,
                        from_position,
                        count,
                    } => {
                        read(&hub, move |txn, dbs| {
                            if stored::load_definition(txn, dbs, &name)?.is_none() {
                                return Err(not_found(&name));
                            }
                            parked_events(txn, dbs, &name, from_position, count)
                        })
                        .await
                    }
                    PsubOp::Delete { name, type_name } => {
                        let command = Command::DeleteSubscription {
                            name: name.clone(),
                            type_name,
                        };
                        match hub.store.execute(command).await {
                            Ok(_) => {
                                crate::telemetry::subscription_deleted(hub.store.name(), &name);
                                persistent::notify(&hub, &name, GroupMessage::Deleted).await;
                                Ok(Reply::Ok)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    PsubOp::Replay { name } => {
                        match hub
                            .store
                            .execute(Command::RequestReplay { name: name.clone() })
                            .await
                        {
                            Ok(_) => {
                                persistent::notify(&hub, &name, GroupMessage::Replay).await;
                                Ok(Reply::Ok)
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                result.unwrap_or_else(|e| Reply::Err(e.to_protocol_error()))
            }
            .boxed(),
        ),
    )
}

fn not_found(name: &str) -> StoreError {
    StoreError::Rejected(crate::store::Rejection::SubscriptionNotFound {
        name: name.to_owned(),
    })
}

fn parked_events(
    txn: &heed::RoTxn,
    dbs: &crate::store::schema::Databases,
    name: &str,
    from_position: u64,
    count: u64,
) -> Result<Reply, StoreError> {
    let mut body = vec![b'['];
    let mut listed = 0u64;
    for entry in stored::parked(txn, dbs, name, from_position, count)? {
        if body.len() >= MAX_READ_REPLY_BYTES {
            break;
        }
        let position = entry.position;
        let stored = dbs.events.get(txn, &position)?.ok_or_else(|| {
            StoreError::Corrupt(format!("parked position {position} has no event"))
        })?;
        let record = crate::store::read::checked(txn, dbs, (position, stored))?;
        let record = &record[..];
        if listed > 0 {
            body.push(b',');
        }
        match &entry.reason {
            None => body.extend_from_slice(record),
            Some(reason) => put_with_reason(&mut body, record, position, reason),
        }
        listed += 1;
    }
    body.push(b']');
    Ok(Reply::Events {
        count: listed,
        body: Bytes::from(body),
    })
}

/// A parked record with `"parked_reason"` as its first field. The record is as stored (it may
/// be one the server itself could not parse); one not even shaped as an object is shown as a
/// string instead.
fn put_with_reason(body: &mut Vec<u8>, record: &[u8], position: u64, reason: &str) {
    let reason = serde_json::to_string(reason).expect("a string serialises");
    match record.strip_prefix(b"{") {
        Some(rest) => {
            body.extend_from_slice(b"{\"parked_reason\":");
            body.extend_from_slice(reason.as_bytes());
            if rest.trim_ascii_start().first() != Some(&b'}') {
                body.push(b',');
            }
            body.extend_from_slice(rest);
        }
        None => {
            let raw = serde_json::to_string(&String::from_utf8_lossy(record)).expect("string");
            body.extend_from_slice(
                format!(r#"{{"parked_reason":{reason},"position":{position},"record":{raw}}}"#)
                    .as_bytes(),
            );
        }
    }
}

async fn read(
    hub: &Arc<crate::subscriptions::SubscriptionHub>,
    f: impl FnOnce(&heed::RoTxn, &crate::store::schema::Databases) -> Result<Reply, StoreError>
        + Send
        + 'static,
) -> Result<Reply, StoreError> {
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || store.with_read(f))
        .await
        .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
}
