//! A connection's session: the state its requests change or depend on, and the order in which
//! they take effect. A handler in [`crate::cmd`] that touches a store submits its write with
//! [`write`] or runs its read with [`read`] (`STATS`, which reads every store, takes its place
//! with [`Session::begin_read`]); both keep that order.
//!
//! Writes are submitted to the store's writer in request order, so a connection's pipelined
//! appends reach the writer in the order they were sent; their replies resolve when the batch
//! holding them is fsynced.
//!
//! A connection sees its requests take effect in the order it sent them, as if one at a time:
//! a read waits for the connection's earlier writes to be durable, and a write is submitted
//! only once the connection's earlier reads have opened their snapshot (so a pipelined read
//! never sees a write sent after it). Runs of writes, the common pipeline, are never
//! serialised behind each other's fsync.
//!
//! Not yet here: `SUB`, `UNSUB`, `ACK`, `NACK` and `PSUB` keep their own order
//! ([`crate::server::subscribe`]) and bypass the read limit.

use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

use esdb_protocol::ops::session::ConnectOptions;
use esdb_protocol::{ErrorCode, ProtocolError, Reply};

use crate::server::subscribe::Subscriptions;
use crate::server::ServerContext;
use crate::store::{Command, Outcome, Store, StoreError};
use crate::subscriptions::SubscriptionHub;

/// The reply of a write, shared: the connection's later reads wait for it too.
pub(crate) type WriteFuture = Shared<BoxFuture<'static, Reply>>;

/// What a request produced.
pub enum Dispatched {
    Reply(BoxFuture<'static, Reply>),
    /// A reply, and a signal to fire once it is queued for sending (a subscription starts
    /// pushing events only after its `+OK`).
    ReplyThen(BoxFuture<'static, Reply>, oneshot::Sender<()>),
    /// `PONG` answers the server's PING and gets no reply.
    NoReply,
}

/// A reply known at once.
pub(crate) fn ready(reply: Reply) -> Dispatched {
    Dispatched::Reply(futures::future::ready(reply).boxed())
}

/// An error known at once (nothing was submitted or read).
pub(crate) fn error(error: ProtocolError) -> Dispatched {
    ready(Reply::Err(error))
}

/// Per-connection state that requests change or depend on.
pub struct Session {
    /// The store requests go to (`USE`, `CONNECT {"store":…}`).
    pub store: Arc<Store>,
    /// That store's subscription machinery.
    pub hub: Arc<SubscriptionHub>,
    /// The connection's outbound queue, for subscriptions pushing `EVENT`s.
    pub outbound: crate::server::outbound::Outbound,
    /// This connection's subscriptions by sid; aborted when the session ends.
    pub subscriptions: Subscriptions,
    pub client: ConnectOptions,
    /// The streams the next catch-up `SUB` may deliver from, set by the auth gate
    /// (`crate::auth::Gate`) just before it; `None`: every stream.
    pub subscription_scope: Option<Arc<crate::auth::StreamScope>>,
    /// The reply future of this connection's latest write, awaited by later reads.
    last_write: Option<WriteFuture>,
    /// Resolves when this connection's latest read has opened its snapshot; awaited by later
    /// writes.
    last_read_started: Option<Shared<BoxFuture<'static, ()>>>,
    /// The `after <position>` of the read being dispatched (set by [`crate::cmd::after`],
    /// taken by [`read`]).
    pub(crate) read_after: Option<u64>,
    /// The reply of this connection's latest `ENCRYPT`, resolved once applied: the next
    /// append waits for it before it looks up its stream's key ([`crate::cmd::erasure::seal`]).
    pub(crate) last_encrypt: Option<WriteFuture>,
    /// This connection's place in its store's `max_connections` quota.
    _connection_slot: crate::store::quota::Slot,
}

impl Session {
    pub fn new(
        hub: Arc<SubscriptionHub>,
        connection_slot: crate::store::quota::Slot,
        outbound: crate::server::outbound::Outbound,
    ) -> Session {
        Session {
            _connection_slot: connection_slot,
            store: hub.store.clone(),
            hub,
            outbound,
            subscriptions: Subscriptions::default(),
            client: ConnectOptions::default(),
            subscription_scope: None,
            last_write: None,
            last_read_started: None,
            read_after: None,
            last_encrypt: None,
        }
    }

    /// Later requests go to this store, if its connection quota has room (the connection
    /// then leaves its old store's count). Subscriptions already made stay where they are.
    pub(crate) fn switch_store(&mut self, hub: Arc<SubscriptionHub>) -> Result<(), ProtocolError> {
        if Arc::ptr_eq(&hub.store, &self.store) {
            return Ok(());
        }
        self._connection_slot = hub
            .store
            .quota()
            .connect()
            .map_err(|refusal| StoreError::Quota(refusal).to_protocol_error())?;
        self.store = hub.store.clone();
        self.hub = hub;
        Ok(())
    }

    /// Takes a read's place in the connection's order: the read waits for the returned
    /// earlier write, and the connection's next write waits until the read fires `started`.
    pub(crate) fn begin_read(&mut self) -> ReadTurn {
        let earlier_write = self.last_write.clone();
        let (started, started_rx) = oneshot::channel::<()>();
        self.last_read_started = Some(started_rx.map(|_| ()).boxed().shared());
        ReadTurn {
            earlier_write,
            started,
        }
    }
}

/// A read's place in its connection's order (see [`Session::begin_read`]).
pub(crate) struct ReadTurn {
    /// The reply of the connection's latest write before the read, to wait for.
    pub earlier_write: Option<WriteFuture>,
    /// Fired once the read has opened its snapshot (or ended without one).
    pub started: oneshot::Sender<()>,
}

/// Submits a write in request order and returns the future of its reply.
pub(crate) async fn write(
    session: &mut Session,
    command: Command,
    on_success: impl FnOnce(Outcome) -> Reply + Send + 'static,
) -> Dispatched {
    if let Some(read_started) = session.last_read_started.take() {
        read_started.await;
    }
    let receiver = match session.store.submit(command).await {
        Ok(receiver) => receiver,
        Err(e) => return error(e.to_protocol_error()),
    };
    let reply = async move {
        match receiver.await {
            Ok(Ok(outcome)) => on_success(outcome),
            Ok(Err(e)) => Reply::Err(e.to_protocol_error()),
            Err(_) => Reply::Err(StoreError::ShuttingDown.to_protocol_error()),
        }
    }
    .boxed()
    .shared();
    session.last_write = Some(reply.clone());
    Dispatched::Reply(reply.boxed())
}

/// Runs a read on the blocking pool (LMDB page faults block), after the connection's earlier
/// writes are answered, under the server-wide read limit. The read runs in its own task so it
/// progresses while the connection task waits on it (see the module doc).
pub(crate) fn read(
    context: &Arc<ServerContext>,
    session: &mut Session,
    f: impl FnOnce(&heed::RoTxn, &crate::store::schema::Databases) -> Result<Reply, StoreError>
        + Send
        + 'static,
) -> Dispatched {
    let received = Instant::now();
    let store = session.store.clone();
    store.metrics().read_requests.inc();
    let ReadTurn {
        earlier_write,
        started,
    } = session.begin_read();
    let reads = context.reads.clone();
    let store_metrics = store.metrics().clone();
    let after = session.read_after.take();
    let linearizer = context.linearizer(store.name());
    let task = tokio::spawn(async move {
        if let Some(write) = earlier_write {
            write.await;
        }
        if let Some(position) = after {
            if let Err(e) = crate::cluster::reads::wait_for_position(&store, position).await {
                let _ = started.send(());
                return Reply::Err(e.to_protocol_error());
            }
        } else if let Some(linearizer) = linearizer {
            if let Err(e) = linearizer.wait(&store).await {
                let _ = started.send(());
                return Reply::Err(e.to_protocol_error());
            }
        }
        let Ok(_permit) = reads.acquire_owned().await else {
            return Reply::Err(StoreError::ShuttingDown.to_protocol_error());
        };
        let result = tokio::task::spawn_blocking(move || {
            store.with_read(|txn, dbs| {
                let _ = started.send(());
                f(txn, dbs)
            })
        })
        .await;
        let metrics = store_metrics;
        metrics
            .read_latency
            .observe(received.elapsed().as_secs_f64());
        if let Ok(Ok(Reply::Events { count, .. })) = &result {
            metrics.read_events.inc_by(*count);
        }
        match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(e @ StoreError::Unreadable(_))) => {
                metrics.unreadable_events.inc();
                tracing::error!(error = %e, "a read met an unreadable record");
                Reply::Err(e.to_protocol_error())
            }
            Ok(Err(e)) => Reply::Err(e.to_protocol_error()),
            Err(join_error) => {
                tracing::error!(%join_error, "read task failed");
                Reply::error(ErrorCode::Internal, "read failed")
            }
        }
    });
    Dispatched::Reply(
        async move {
            task.await.unwrap_or_else(|join_error| {
                tracing::error!(%join_error, "read task failed");
                Reply::error(ErrorCode::Internal, "read failed")
            })
        }
        .boxed(),
    )
}
