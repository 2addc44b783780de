//! What each request does: one function per operation, each turning a parsed request into a
//! future of its reply.
//!
//! Writes are submitted to the store's writer *here*, in request order, so a connection's
//! pipelined appends reach the writer in the order they were sent; their replies resolve when
//! the batch holding them is fsynced.
//!
//! A connection sees its requests take effect in the order it sent them, as if one at a time:
//! a read waits for the connection's earlier writes to be durable, and a write is submitted
//! only once the connection's earlier reads have opened their snapshot (so a pipelined read
//! never sees a write sent after it). Runs of writes, the common pipeline, are never
//! serialised behind each other's fsync.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

use esdb_protocol::ops::append::parse_events;
use esdb_protocol::ops::meta::{parse_metadata, StreamMetadata};
use esdb_protocol::ops::session::{ConnectOptions, HELP_TEXT};
use esdb_protocol::ops::snap::{parse_snapshot_payload, SnapRequest};
use esdb_protocol::{
    Direction, ErrorCode, ExpectedVersion, ProtocolError, ReadStart, Reply, Request,
};

use crate::server::append_multi;
use crate::server::erasure;
use crate::server::subscribe::{self, Subscriptions};
use crate::server::ServerContext;
use crate::store::read::{self, EventsPage};
use crate::store::schema::StreamLimits;
use crate::store::{aggregate, snapshots};
use crate::store::{AppendCommand, Command, NewEvent, Outcome, SaveSnapshotCommand};
use crate::store::{Store, StoreError};
use crate::subscriptions::SubscriptionHub;
use crate::telemetry;

type WriteFuture = Shared<BoxFuture<'static, Reply>>;

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
    /// The `after <position>` of the read being dispatched (taken by [`read`]).
    read_after: Option<u64>,
    /// The reply of this connection's latest `ENCRYPT`, resolved once applied: the next
    /// append waits for it before it looks up its stream's key ([`erasure::seal`]).
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
}

impl Session {
    /// Later requests go to this store, if its connection quota has room (the connection
    /// then leaves its old store's count). Subscriptions already made stay where they are.
    fn switch_store(&mut self, hub: Arc<SubscriptionHub>) -> Result<(), ProtocolError> {
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
}

/// What a request produced.
pub enum Dispatched {
    Reply(BoxFuture<'static, Reply>),
    /// A reply, and a signal to fire once it is queued for sending (a subscription starts
    /// pushing events only after its `+OK`).
    ReplyThen(BoxFuture<'static, Reply>, oneshot::Sender<()>),
    /// `PONG` answers the server's PING and gets no reply.
    NoReply,
}

pub(crate) fn ready(reply: Reply) -> Dispatched {
    Dispatched::Reply(futures::future::ready(reply).boxed())
}

fn error(error: ProtocolError) -> Dispatched {
    ready(Reply::Err(error))
}

pub async fn dispatch(
    context: &Arc<ServerContext>,
    session: &mut Session,
    request: Request,
) -> Dispatched {
    match request {
        Request::Connect(options) => connect(context, session, options),
        Request::Ping => ready(Reply::Pong),
        Request::Pong => Dispatched::NoReply,
        Request::Use { store } => use_store(context, session, &store),
        Request::Help => ready(Reply::Help {
            body: Bytes::from_static(HELP_TEXT.as_bytes()),
        }),
        Request::Append {
            stream,
            expected,
            payload,
        } => append(session, stream, expected, &payload).await,
        Request::Delete {
            stream,
            expected,
            hard,
        } => {
            session.store.metrics().delete_requests.inc();
            let command = if hard {
                Command::Tombstone { stream, expected }
            } else {
                Command::Delete { stream, expected }
            };
            write(session, command, |_| Reply::Ok).await
        }
        Request::Encrypt { stream } => erasure::encrypt(session, stream).await,
        Request::Shred { stream } => erasure::shred(session, stream).await,
        Request::Meta {
            stream,
            payload: None,
        } => read(context, session, move |txn, dbs| {
            let limits = read::stream_limits(txn, dbs, &stream)?.unwrap_or_default();
            Ok(Reply::Meta {
                stream,
                body: Bytes::from(wire_metadata(&limits).to_json()),
            })
        }),
        Request::Meta {
            stream,
            payload: Some(payload),
        } => {
            let metadata = match parse_metadata(&payload) {
                Ok(metadata) => metadata,
                Err(e) => return error(e),
            };
            let limits = StreamLimits {
                max_count: metadata.max_count,
                max_age_ms: metadata.max_age_ms,
                truncate_before: metadata.truncate_before,
            };
            let command = Command::SetStreamLimits { stream, limits };
            write(session, command, |_| Reply::Ok).await
        }
        Request::Read {
            stream,
            from,
            count,
            direction,
        } => {
            let start = read_start(session, &stream, from, count, direction);
            read(context, session, move |txn, dbs| {
                let page = read::read_stream(txn, dbs, &stream, from, count, direction);
                read_stop(start, &page);
                page.map(events_reply)
            })
        }
        Request::ReadAll {
            from,
            count,
            direction,
        } => {
            let start = read_start(session, "$all", from, count, direction);
            read(context, session, move |txn, dbs| {
                let page = read::read_all(txn, dbs, from, count, direction);
                read_stop(start, &page);
                page.map(events_reply)
            })
        }
        Request::ReadTypes {
            types,
            from_position,
            count,
        } => read(context, session, move |txn, dbs| {
            read::read_types(txn, dbs, &types, from_position, count).map(events_reply)
        }),
        Request::ReadTags {
            tags,
            from_position,
            count,
        } => read(context, session, move |txn, dbs| {
            read::read_tags(txn, dbs, &tags, from_position, count).map(events_reply)
        }),
        Request::AppendMulti(multi) => append_multi::append_multi(session, multi).await,
        Request::Version { stream } => read(context, session, move |txn, dbs| {
            let version = read::stream_version(txn, dbs, &stream)?;
            Ok(Reply::Version { stream, version })
        }),
        Request::Exists { stream } => read(context, session, move |txn, dbs| {
            let exists = read::stream_version(txn, dbs, &stream)? >= 0;
            Ok(Reply::Exists { stream, exists })
        }),
        Request::Streams { after, count } => read(context, session, move |txn, dbs| {
            let page = read::list_streams(txn, dbs, after.as_deref(), count)?;
            Ok(Reply::Streams {
                count: page.count,
                body: page.body,
            })
        }),
        Request::Subscribe(request) => subscribe::subscribe(session, request),
        Request::Unsubscribe { sid } => subscribe::unsubscribe(session, &sid),
        Request::Ack { sid, positions } => subscribe::ack(session, &sid, positions),
        Request::Nack {
            sid,
            action,
            positions,
        } => subscribe::nack(session, &sid, action, positions),
        Request::Psub(op) => subscribe::psub(session, op),
        Request::Snap(snap) => snap_request(context, session, snap).await,
        Request::Agg(agg) => read(context, session, move |txn, dbs| {
            let aggregated = aggregate::aggregate(txn, dbs, &agg)?;
            Ok(Reply::Aggregate {
                stream: agg.stream,
                version: aggregated.version,
                body: aggregated.body,
            })
        }),
        Request::Stats => stats(context, session),
        Request::Scavenge { status: true } => crate::server::scavenge::status(context, session),
        Request::Scavenge { status: false } => {
            crate::server::scavenge::start(context, session).await
        }
        Request::Cluster => ready(Reply::Cluster {
            body: context.cluster_json(),
        }),
        Request::ClusterChange(change) => cluster_change(context, change),
        Request::After { position, request } => {
            Box::pin(dispatch_after(context, session, position, *request)).await
        }
    }
}

/// `CLUSTER ADD` / `CLUSTER REMOVE`: the change in every store's group, then the new view.
fn cluster_change(
    context: &Arc<ServerContext>,
    change: esdb_protocol::ops::cluster::MemberChange,
) -> Dispatched {
    let Some(cluster) = context.cluster.clone() else {
        return error(ProtocolError::invalid_argument(
            "this server is not a cluster node (started without --node-id and --raft): it has \
             no members to change",
        ));
    };
    let context = context.clone();
    Dispatched::Reply(
        async move {
            match cluster.change_members(change.into()).await {
                Ok(()) => Reply::Cluster {
                    body: context.cluster_json(),
                },
                Err(e) => Reply::Err(e.to_protocol_error()),
            }
        }
        .boxed(),
    )
}

/// A read or `SUB` with `after <position>`: served once this node has applied the position,
/// instead of after a read-index round (`crate::cluster::reads`).
async fn dispatch_after(
    context: &Arc<ServerContext>,
    session: &mut Session,
    position: u64,
    request: Request,
) -> Dispatched {
    match request {
        Request::Subscribe(subscribe) => {
            // The SUB's history then covers the position. Waiting here holds the connection's
            // later requests back, as the SUB's +OK would anyway.
            let store = session.store.clone();
            if let Err(e) = crate::cluster::reads::wait_for_position(&store, position).await {
                return error(e.to_protocol_error());
            }
            subscribe::subscribe(session, subscribe)
        }
        request @ (Request::Read { .. }
        | Request::ReadAll { .. }
        | Request::ReadTypes { .. }
        | Request::ReadTags { .. }
        | Request::Agg(_)) => {
            session.read_after = Some(position);
            let dispatched = dispatch(context, session, request).await;
            session.read_after = None;
            dispatched
        }
        other => error(ProtocolError::invalid_argument(format!(
            "{} takes no after option",
            other.operation()
        ))),
    }
}

/// `STATS`: every store's counts, read on the blocking pool. Ordered like a read: it sees the
/// connection's earlier writes, and its later writes wait for it.
fn stats(context: &Arc<ServerContext>, session: &mut Session) -> Dispatched {
    let context = context.clone();
    let earlier_write = session.last_write.clone();
    let (done, done_rx) = oneshot::channel::<()>();
    session.last_read_started = Some(done_rx.map(|_| ()).boxed().shared());
    // Its own task, so it progresses while the connection task waits on it (as `read`).
    let task = tokio::spawn(async move {
        if let Some(write) = earlier_write {
            write.await;
        }
        let stats = tokio::task::spawn_blocking(move || context.stats_json()).await;
        let _ = done.send(());
        match stats {
            Ok(Ok(body)) => Reply::Stats { body },
            Ok(Err(e)) => Reply::Err(e.to_protocol_error()),
            Err(_) => Reply::error(ErrorCode::Internal, "stats failed"),
        }
    });
    Dispatched::Reply(
        async move {
            task.await
                .unwrap_or_else(|_| Reply::error(ErrorCode::Internal, "stats failed"))
        }
        .boxed(),
    )
}

/// `stream.read.start`; returns what `stream.read.stop` needs (only when telemetry is on).
fn read_start(
    session: &Session,
    stream: &str,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Option<ReadTelemetry> {
    if !telemetry::enabled() {
        return None;
    }
    let start_version = match from {
        ReadStart::At(at) => at.to_string(),
        ReadStart::End => "end".to_owned(),
        ReadStart::Time(epoch_us) => format!("from_time {epoch_us}"),
    };
    let direction = match direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    };
    crate::telemetry!(
        "stream.read.start",
        system_time = telemetry::system_time_us(),
        store_id = session.store.name(),
        stream_id = stream,
        start_version,
        count,
        direction
    );
    Some(ReadTelemetry {
        started: Instant::now(),
        store: session.store.name().to_owned(),
        stream: stream.to_owned(),
    })
}

/// What `stream.read.stop` repeats from its start.
struct ReadTelemetry {
    started: Instant,
    store: String,
    stream: String,
}

/// `stream.read.stop`, when `read_start` emitted a start.
fn read_stop(start: Option<ReadTelemetry>, page: &Result<EventsPage, StoreError>) {
    if let Some(start) = start {
        let event_count = page.as_ref().map_or(0, |page| page.count);
        crate::telemetry!(
            "stream.read.stop",
            store_id = start.store.as_str(),
            stream_id = start.stream.as_str(),
            duration_us = start.started.elapsed().as_micros() as u64,
            event_count
        );
    }
}

/// `SNAP …`: saves and deletes are writes (commands, like appends); the rest are reads.
async fn snap_request(
    context: &Arc<ServerContext>,
    session: &mut Session,
    request: SnapRequest,
) -> Dispatched {
    match request {
        SnapRequest::Save {
            stream,
            version,
            payload,
        } => {
            let input = match parse_snapshot_payload(&payload) {
                Ok(input) => input,
                Err(e) => return error(e),
            };
            let size_bytes = (input.data.get().len()
                + input.metadata.as_ref().map_or(2, |m| m.get().len()))
                as u64;
            let command = Command::SaveSnapshot(SaveSnapshotCommand {
                stream: stream.clone(),
                version,
                epoch_us: session.store.stamp_epoch_us(),
                data: input.data,
                metadata: input.metadata,
                keep: input.keep,
            });
            let (metrics, store) = (
                session.store.metrics().clone(),
                session.store.name().to_owned(),
            );
            let started = Instant::now();
            write(session, command, move |_| {
                metrics.snapshots.saved.inc();
                metrics.snapshots.size_bytes.observe(size_bytes as f64);
                let duration_us = started.elapsed().as_micros() as u64;
                telemetry::snapshot_created(&store, &stream, version, size_bytes, duration_us);
                Reply::Ok
            })
            .await
        }
        SnapRequest::Delete { stream, version } => {
            let command = Command::DeleteSnapshots { stream, version };
            write(session, command, |_| Reply::Ok).await
        }
        SnapRequest::Load { stream, version } => {
            let metrics = session.store.metrics().clone();
            read(context, session, move |txn, dbs| {
                let (version, record) = snapshots::load(txn, dbs, &stream, version)?;
                metrics.snapshots.loaded.inc();
                let body = Bytes::copy_from_slice(record);
                Ok(Reply::Snapshot {
                    stream,
                    version,
                    body,
                })
            })
        }
        SnapRequest::List {
            stream,
            from_version,
            count,
        } => read(context, session, move |txn, dbs| {
            let page = snapshots::list(txn, dbs, &stream, from_version, count)?;
            Ok(Reply::Snapshots {
                count: page.count,
                body: page.body,
            })
        }),
        SnapRequest::Exists { stream, version } => read(context, session, move |txn, dbs| {
            let exists = snapshots::exists(txn, dbs, &stream, version)?;
            Ok(Reply::Exists { stream, exists })
        }),
    }
}

/// The store's limits in the wire's shape (the store owns its own type).
fn wire_metadata(limits: &StreamLimits) -> StreamMetadata {
    StreamMetadata {
        max_count: limits.max_count,
        max_age_ms: limits.max_age_ms,
        truncate_before: limits.truncate_before,
    }
}

fn events_reply(page: EventsPage) -> Reply {
    Reply::Events {
        count: page.count,
        body: page.body,
    }
}

pub fn store_not_found(name: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::StoreNotFound,
        format!("no store named {name} on this server"),
    )
}

fn connect(context: &ServerContext, session: &mut Session, options: ConnectOptions) -> Dispatched {
    if let Some(name) = &options.store {
        match context.hub(name) {
            Some(hub) => {
                if let Err(refused) = session.switch_store(hub) {
                    return error(refused);
                }
            }
            None => return error(store_not_found(name)),
        }
    }
    session.client = options;
    ready(Reply::Ok)
}

fn use_store(context: &ServerContext, session: &mut Session, name: &str) -> Dispatched {
    match context.hub(name) {
        Some(hub) => match session.switch_store(hub) {
            Ok(()) => ready(Reply::Ok),
            Err(refused) => error(refused),
        },
        None => error(store_not_found(name)),
    }
}

async fn append(
    session: &mut Session,
    stream: String,
    expected: ExpectedVersion,
    payload: &[u8],
) -> Dispatched {
    let received = Instant::now();
    let metrics = session.store.metrics().clone();
    metrics.append_requests.inc();
    let events = match parse_events(payload) {
        Ok(events) => events,
        Err(e) => {
            metrics
                .append_latency
                .observe(received.elapsed().as_secs_f64());
            return error(e);
        }
    };
    // Store and stream ids for the stop/error events, only copied when telemetry is on.
    let telemetry_ids =
        telemetry::enabled().then(|| (session.store.name().to_owned(), stream.clone()));
    if telemetry_ids.is_some() {
        crate::telemetry!(
            "stream.write.start",
            system_time = telemetry::system_time_us(),
            store_id = session.store.name(),
            stream_id = stream.as_str(),
            event_count = events.len(),
            expected_version = %expected
        );
    }
    // Ids are time-ordered (v7) rather than random (v4): consecutive events then land next to
    // each other in the event-id index, so a commit dirties a few pages, not one per event.
    let mut events: Vec<NewEvent> = events.into_iter().map(append_multi::new_event).collect();
    let sealed = match erasure::seal(session, &stream, &mut events).await {
        Ok(sealed) => sealed,
        Err(e) => return error(e),
    };
    // Taken here, never inside `apply`, and never before the store's last commit time.
    let epoch_us = session.store.stamp_epoch_us();
    let reply_stream = stream.clone();
    let event_count = events.len();
    let command = Command::Append(AppendCommand {
        stream,
        expected,
        epoch_us,
        events,
        sealed,
    });
    let dispatched = write(session, command, move |outcome| match outcome {
        Outcome::Appended {
            last_version,
            last_position,
            ..
        }
        | Outcome::AlreadyAppended {
            last_version,
            last_position,
        } => Reply::Appended {
            stream: reply_stream,
            last_version,
            last_position,
        },
        other => unreachable!("an append only appends: {other:?}"),
    })
    .await;
    // Latency ends when the reply is ready (fsynced); events, bytes and conflicts are counted
    // by the writer, once per batch.
    let Dispatched::Reply(reply) = dispatched else {
        return dispatched;
    };
    Dispatched::Reply(
        async move {
            let reply = reply.await;
            let elapsed = received.elapsed();
            metrics.append_latency.observe(elapsed.as_secs_f64());
            if let Some((store, stream)) = telemetry_ids {
                write_telemetry(
                    &reply,
                    &store,
                    &stream,
                    elapsed.as_micros() as u64,
                    event_count,
                );
            }
            reply
        }
        .boxed(),
    )
}

/// `stream.write.stop` or `stream.write.error`, as the seed reports them.
fn write_telemetry(reply: &Reply, store: &str, stream: &str, duration_us: u64, event_count: usize) {
    match reply {
        Reply::Appended { last_version, .. } => crate::telemetry!(
            "stream.write.stop",
            store_id = store,
            stream_id = stream,
            duration_us,
            event_count,
            new_version = last_version
        ),
        Reply::Err(error) => crate::telemetry!(
            "stream.write.error",
            store_id = store,
            stream_id = stream,
            duration_us,
            reason = error.code.as_str()
        ),
        _ => {}
    }
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
    let earlier_write = session.last_write.clone();
    let reads = context.reads.clone();
    let (started, started_rx) = oneshot::channel::<()>();
    session.last_read_started = Some(started_rx.map(|_| ()).boxed().shared());
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
