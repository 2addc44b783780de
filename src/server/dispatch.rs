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
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

use esdb_protocol::ops::append::parse_events;
use esdb_protocol::ops::session::{ConnectOptions, HELP_TEXT};
use esdb_protocol::ops::snap::{parse_snapshot_payload, SnapRequest};
use esdb_protocol::{ErrorCode, ExpectedVersion, ProtocolError, Reply, Request};

use crate::server::ServerContext;
use crate::store::read::{self, EventsPage};
use crate::store::{aggregate, snapshots};
use crate::store::{AppendCommand, Command, NewEvent, Outcome, SaveSnapshotCommand};
use crate::store::{Store, StoreError};

type WriteFuture = Shared<BoxFuture<'static, Reply>>;

/// Per-connection state that requests change or depend on.
pub struct Session {
    /// The store requests go to (`USE`, `CONNECT {"store":…}`).
    pub store: Arc<Store>,
    pub client: ConnectOptions,
    /// The reply future of this connection's latest write, awaited by later reads.
    last_write: Option<WriteFuture>,
    /// Resolves when this connection's latest read has opened its snapshot; awaited by later
    /// writes.
    last_read_started: Option<Shared<BoxFuture<'static, ()>>>,
}

impl Session {
    pub fn new(store: Arc<Store>) -> Session {
        Session {
            store,
            client: ConnectOptions::default(),
            last_write: None,
            last_read_started: None,
        }
    }
}

/// What a request produced.
pub enum Dispatched {
    Reply(BoxFuture<'static, Reply>),
    /// `PONG` answers the server's PING and gets no reply.
    NoReply,
}

fn ready(reply: Reply) -> Dispatched {
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
        Request::Delete { stream, expected } => {
            let command = Command::Delete { stream, expected };
            write(session, command, |_| Reply::Ok).await
        }
        Request::Read {
            stream,
            from,
            count,
            direction,
        } => read(context, session, move |txn, dbs| {
            read::read_stream(txn, dbs, &stream, from, count, direction).map(events_reply)
        }),
        Request::ReadAll {
            from,
            count,
            direction,
        } => read(context, session, move |txn, dbs| {
            read::read_all(txn, dbs, from, count, direction).map(events_reply)
        }),
        Request::ReadTypes {
            types,
            from_position,
            count,
        } => read(context, session, move |txn, dbs| {
            read::read_types(txn, dbs, &types, from_position, count).map(events_reply)
        }),
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
        Request::Snap(snap) => snap_request(context, session, snap).await,
        Request::Agg(agg) => read(context, session, move |txn, dbs| {
            let aggregated = aggregate::aggregate(txn, dbs, &agg)?;
            Ok(Reply::Aggregate {
                stream: agg.stream,
                version: aggregated.version,
                body: aggregated.body,
            })
        }),
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
            let command = Command::SaveSnapshot(SaveSnapshotCommand {
                stream,
                version,
                epoch_us: epoch_us_now(),
                data: input.data,
                metadata: input.metadata,
                keep: input.keep,
            });
            write(session, command, |_| Reply::Ok).await
        }
        SnapRequest::Delete { stream, version } => {
            let command = Command::DeleteSnapshots { stream, version };
            write(session, command, |_| Reply::Ok).await
        }
        SnapRequest::Load { stream, version } => read(context, session, move |txn, dbs| {
            let (version, record) = snapshots::load(txn, dbs, &stream, version)?;
            let body = Bytes::copy_from_slice(record);
            Ok(Reply::Snapshot {
                stream,
                version,
                body,
            })
        }),
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

/// Now, for the `epoch_us` a command carries (taken here, never inside `apply`).
fn epoch_us_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

fn events_reply(page: EventsPage) -> Reply {
    Reply::Events {
        count: page.count,
        body: page.body,
    }
}

fn store_not_found(name: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::StoreNotFound,
        format!("no store named {name} on this server"),
    )
}

fn connect(context: &ServerContext, session: &mut Session, options: ConnectOptions) -> Dispatched {
    if let Some(name) = &options.store {
        match context.store(name) {
            Some(store) => session.store = store,
            None => return error(store_not_found(name)),
        }
    }
    session.client = options;
    ready(Reply::Ok)
}

fn use_store(context: &ServerContext, session: &mut Session, name: &str) -> Dispatched {
    match context.store(name) {
        Some(store) => {
            session.store = store;
            ready(Reply::Ok)
        }
        None => error(store_not_found(name)),
    }
}

async fn append(
    session: &mut Session,
    stream: String,
    expected: ExpectedVersion,
    payload: &[u8],
) -> Dispatched {
    let events = match parse_events(payload) {
        Ok(events) => events,
        Err(e) => return error(e),
    };
    let events = events
        .into_iter()
        .map(|event| NewEvent {
            event_id: event.event_id.unwrap_or_else(uuid::Uuid::new_v4),
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
        })
        .collect();
    let epoch_us = epoch_us_now();
    let reply_stream = stream.clone();
    let command = Command::Append(AppendCommand {
        stream,
        expected,
        epoch_us,
        events,
    });
    write(session, command, move |outcome| match outcome {
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
    .await
}

/// Submits a write in request order and returns the future of its reply.
async fn write(
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
fn read(
    context: &Arc<ServerContext>,
    session: &mut Session,
    f: impl FnOnce(&heed::RoTxn, &crate::store::schema::Databases) -> Result<Reply, StoreError>
        + Send
        + 'static,
) -> Dispatched {
    let store = session.store.clone();
    let earlier_write = session.last_write.clone();
    let reads = context.reads.clone();
    let (started, started_rx) = oneshot::channel::<()>();
    session.last_read_started = Some(started_rx.map(|_| ()).boxed().shared());
    let task = tokio::spawn(async move {
        if let Some(write) = earlier_write {
            write.await;
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
        match result {
            Ok(Ok(reply)) => reply,
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
